//! Run-time choice of the Burn backend: `cpu` (flex), `wgpu`, `cuda` or `auto`.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// The backend a user asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// wgpu when a hardware adapter exists, else cpu.
    #[default]
    Auto,
    /// Burn's flex backend: portable SIMD + threads, always available.
    Cpu,
    /// wgpu: Vulkan, Metal, DX12 (or a software Vulkan such as lavapipe).
    Wgpu,
    /// CUDA, only in builds with the `cuda` feature.
    Cuda,
}

impl BackendChoice {
    pub const NAMES: [&'static str; 4] = ["auto", "cpu", "wgpu", "cuda"];
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Wgpu => "wgpu",
            BackendChoice::Cuda => "cuda",
        })
    }
}

impl FromStr for BackendChoice {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "wgpu" => Ok(BackendChoice::Wgpu),
            "cuda" => Ok(BackendChoice::Cuda),
            other => Err(BackendError(format!("unknown backend `{other}`, expected one of: {}", Self::NAMES.join(", ")))),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// A device ready for tensors, with a human-readable description of what was chosen.
#[derive(Clone, Debug)]
pub struct SelectedBackend {
    pub device: Device,
    pub choice: BackendChoice,
    pub description: String,
}

/// One wgpu adapter as the system reports it.
#[derive(Clone, Debug)]
pub struct AdapterInfo {
    pub name: String,
    pub api: String,
    pub hardware: bool,
}

/// Lists the adapters wgpu can see. Software rasterisers (lavapipe, SwiftShader, WARP) are
/// reported with `hardware: false`.
#[cfg(feature = "wgpu")]
pub fn wgpu_adapters() -> Vec<AdapterInfo> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    // Vulkan, Metal, DX12 and WebGPU only: probing OpenGL through EGL prints warnings on headless
    // machines and is not a backend Burn computes on here.
    descriptor.backends &= wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(descriptor);
    let adapters = futures_lite::future::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    adapters
        .iter()
        .map(|adapter| {
            let info = adapter.get_info();
            AdapterInfo {
                name: info.name.clone(),
                api: format!("{:?}", info.backend),
                hardware: !matches!(info.device_type, wgpu::DeviceType::Cpu | wgpu::DeviceType::Other),
            }
        })
        .collect()
}

/// Resolves a choice to a device, failing with a clear message when the backend is unavailable.
pub fn select(choice: BackendChoice) -> Result<SelectedBackend, BackendError> {
    match choice {
        BackendChoice::Cpu => Ok(cpu()),
        BackendChoice::Wgpu | BackendChoice::Auto => wgpu_or_auto(choice),
        BackendChoice::Cuda => cuda(),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_or_auto(choice: BackendChoice) -> Result<SelectedBackend, BackendError> {
    match choice {
        BackendChoice::Auto => {
            let mut selected = cpu();
            selected.description.push_str(" (auto: built without wgpu)");
            Ok(selected)
        }
        _ => Err(BackendError("this build of dml has no wgpu support; rebuild with the `wgpu` feature".into())),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_or_auto(choice: BackendChoice) -> Result<SelectedBackend, BackendError> {
    match choice {
        BackendChoice::Wgpu => {
            let adapters = wgpu_adapters();
            let Some(best) = adapters.iter().find(|a| a.hardware).or_else(|| adapters.first()) else {
                return Err(BackendError(
                    "no wgpu adapter found (no GPU driver; on Debian `mesa-vulkan-drivers` \
                     provides a software one)"
                        .into(),
                ));
            };
            Ok(SelectedBackend {
                device: Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
                choice,
                description: format!("wgpu on {} ({}{})", best.name, best.api, if best.hardware { "" } else { ", software" }),
            })
        }
        BackendChoice::Auto => {
            let adapters = wgpu_adapters();
            match adapters.iter().find(|a| a.hardware) {
                Some(gpu) => Ok(SelectedBackend {
                    device: Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
                    choice: BackendChoice::Wgpu,
                    description: format!("wgpu on {} ({}; auto: hardware adapter found)", gpu.name, gpu.api),
                }),
                None => {
                    let mut selected = cpu();
                    selected.description.push_str(" (auto: no hardware GPU adapter)");
                    Ok(selected)
                }
            }
        }
        _ => unreachable!("only wgpu and auto come here"),
    }
}

fn cpu() -> SelectedBackend {
    SelectedBackend { device: Device::flex(), choice: BackendChoice::Cpu, description: "cpu (flex)".into() }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<SelectedBackend, BackendError> {
    Ok(SelectedBackend { device: Device::cuda(0), choice: BackendChoice::Cuda, description: "cuda device 0".into() })
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<SelectedBackend, BackendError> {
    Err(BackendError("this build of dml has no CUDA support; rebuild with `--features cuda`".into()))
}

/// Whether tensors of this device live in host memory, so that host-side selection (top-k) is
/// cheaper than a device kernel followed by a copy.
pub fn selects_on_host(device: &Device) -> bool {
    format!("{:?}", device.clone().without_autodiff().as_dispatch()).starts_with("Flex")
}
