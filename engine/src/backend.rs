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

/// A graphics API that wgpu computes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphicsApi {
    Vulkan,
    Metal,
    Dx12,
    OpenGl,
}

impl fmt::Display for GraphicsApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GraphicsApi::Vulkan => "Vulkan",
            GraphicsApi::Metal => "Metal",
            GraphicsApi::Dx12 => "DX12",
            GraphicsApi::OpenGl => "OpenGL",
        })
    }
}

/// The graphics APIs Burn's wgpu runtime tries, in its order, on the operating system `os`
/// (`std::env::consts::OS`): Metal on macOS; elsewhere Vulkan, then DX12 (Windows only), then
/// OpenGL. `auto` looks only at the first two kinds: OpenGL is the last resort of an explicit
/// `--backend wgpu`, never a reason to leave the CPU.
pub fn api_order(os: &str) -> &'static [GraphicsApi] {
    match os {
        "macos" | "ios" => &[GraphicsApi::Metal],
        _ => &[GraphicsApi::Vulkan, GraphicsApi::Dx12, GraphicsApi::OpenGl],
    }
}

/// What an adapter is, as wgpu reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterKind {
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A software rasteriser: lavapipe, SwiftShader, WARP.
    Cpu,
    Other,
}

/// One wgpu adapter as the system reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterInfo {
    pub name: String,
    pub api: GraphicsApi,
    pub kind: AdapterKind,
}

impl AdapterInfo {
    /// A GPU, not a software rasteriser (nor an adapter of unknown kind).
    pub fn hardware(&self) -> bool {
        matches!(self.kind, AdapterKind::DiscreteGpu | AdapterKind::IntegratedGpu | AdapterKind::VirtualGpu)
    }

    /// wgpu's order for a high-performance adapter: discrete, integrated, other, virtual, CPU.
    fn preference(&self) -> u8 {
        match self.kind {
            AdapterKind::DiscreteGpu => 0,
            AdapterKind::IntegratedGpu => 1,
            AdapterKind::Other => 2,
            AdapterKind::VirtualGpu => 3,
            AdapterKind::Cpu => 4,
        }
    }
}

/// The adapter Burn's default wgpu device comes up on, given the adapters of each API of `order`
/// (`adapters_of(api)`, asked lazily and in order, as Burn asks): the first API with an adapter
/// that is not a CPU rasteriser, or else the first API with any adapter; on it, wgpu's
/// high-performance choice (ties go to the first listed). Mirrors CubeCL's `AutoGraphicsApi`
/// selection, so that what dml prints is what it trains on.
pub fn default_adapter(order: &[GraphicsApi], mut adapters_of: impl FnMut(GraphicsApi) -> Vec<AdapterInfo>) -> Option<AdapterInfo> {
    let best = |adapters: Vec<AdapterInfo>| adapters.into_iter().enumerate().min_by_key(|(i, a)| (a.preference(), *i)).map(|(_, a)| a);
    let mut fallback = None;
    for &api in order {
        let adapters = adapters_of(api);
        if adapters.iter().any(|a| a.kind != AdapterKind::Cpu) {
            return best(adapters);
        }
        if fallback.is_none() {
            fallback = best(adapters);
        }
    }
    fallback
}

/// The adapters wgpu sees on one graphics API (none where this build or system lacks it).
#[cfg(feature = "wgpu")]
pub fn wgpu_adapters(api: GraphicsApi) -> Vec<AdapterInfo> {
    let backend = match api {
        GraphicsApi::Vulkan => wgpu::Backend::Vulkan,
        GraphicsApi::Metal => wgpu::Backend::Metal,
        GraphicsApi::Dx12 => wgpu::Backend::Dx12,
        GraphicsApi::OpenGl => wgpu::Backend::Gl,
    };
    if !wgpu::Instance::enabled_backend_features().contains(backend.into()) {
        return Vec::new();
    }
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends = backend.into();
    let instance = wgpu::Instance::new(descriptor);
    let adapters = futures_lite::future::block_on(instance.enumerate_adapters(backend.into()));
    adapters
        .iter()
        .map(|adapter| {
            let info = adapter.get_info();
            AdapterInfo {
                name: info.name.clone(),
                api,
                kind: match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => AdapterKind::DiscreteGpu,
                    wgpu::DeviceType::IntegratedGpu => AdapterKind::IntegratedGpu,
                    wgpu::DeviceType::VirtualGpu => AdapterKind::VirtualGpu,
                    wgpu::DeviceType::Cpu => AdapterKind::Cpu,
                    wgpu::DeviceType::Other => AdapterKind::Other,
                },
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
            selected.description.push_str(" (auto: this build has no wgpu)");
            Ok(selected)
        }
        _ => Err(BackendError("this build of dml has no wgpu support; rebuild with the `wgpu` feature".into())),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_or_auto(choice: BackendChoice) -> Result<SelectedBackend, BackendError> {
    let order = api_order(std::env::consts::OS);
    let (chosen, description) = choose(choice, order, wgpu_adapters)?;
    Ok(match chosen {
        BackendChoice::Cpu => SelectedBackend { description, ..cpu() },
        _ => SelectedBackend {
            // Burn's default device lands on the adapter `default_adapter` names.
            device: Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            choice: BackendChoice::Wgpu,
            description,
        },
    })
}

/// The backend `choice` resolves to among the adapters of `order`, and how to describe it:
/// `wgpu` takes [`default_adapter`] whatever it is; `auto` takes it only if it is a GPU of
/// Vulkan, Metal or DX12, and otherwise the CPU.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
fn choose(
    choice: BackendChoice,
    order: &[GraphicsApi],
    adapters_of: impl FnMut(GraphicsApi) -> Vec<AdapterInfo>,
) -> Result<(BackendChoice, String), BackendError> {
    let describe = |a: &AdapterInfo| format!("wgpu on {} ({}{}", a.name, a.api, if a.kind == AdapterKind::Cpu { ", software" } else { "" });
    if choice == BackendChoice::Wgpu {
        let Some(adapter) = default_adapter(order, adapters_of) else {
            return Err(BackendError(format!(
                "no wgpu adapter found on {} (no GPU driver; on Debian `mesa-vulkan-drivers` provides a software one)",
                order.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            )));
        };
        return Ok((BackendChoice::Wgpu, describe(&adapter) + ")"));
    }
    let primary: Vec<GraphicsApi> = order.iter().copied().filter(|&a| a != GraphicsApi::OpenGl).collect();
    Ok(match default_adapter(&primary, adapters_of) {
        Some(gpu) if gpu.hardware() => (BackendChoice::Wgpu, describe(&gpu) + "; auto: hardware adapter found)"),
        _ => (
            BackendChoice::Cpu,
            format!(
                "cpu (flex, {} kernels; auto: no {} GPU)",
                dml_kernels::cpu_isa(),
                primary.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" or ")
            ),
        ),
    })
}

fn cpu() -> SelectedBackend {
    SelectedBackend {
        device: Device::flex(),
        choice: BackendChoice::Cpu,
        description: format!("cpu (flex, {} kernels)", dml_kernels::cpu_isa()),
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<SelectedBackend, BackendError> {
    Ok(SelectedBackend { device: Device::cuda(0), choice: BackendChoice::Cuda, description: "cuda device 0".into() })
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<SelectedBackend, BackendError> {
    Err(BackendError("this build of dml has no CUDA support; rebuild with `--features cuda`".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use AdapterKind::*;
    use GraphicsApi::*;

    fn adapter(name: &str, api: GraphicsApi, kind: AdapterKind) -> AdapterInfo {
        AdapterInfo { name: name.into(), api, kind }
    }

    /// `choose` on a machine of `os` whose APIs hold `machine`'s adapters; also the APIs asked.
    fn pick(choice: BackendChoice, os: &str, machine: &[AdapterInfo]) -> (Result<(BackendChoice, String), BackendError>, Vec<GraphicsApi>) {
        let mut asked = Vec::new();
        let result = choose(choice, api_order(os), |api| {
            asked.push(api);
            machine.iter().filter(|a| a.api == api).cloned().collect()
        });
        (result, asked)
    }

    #[test]
    fn each_system_tries_burns_apis_in_burns_order() {
        assert_eq!(api_order("macos"), [Metal]);
        assert_eq!(api_order("linux"), [Vulkan, Dx12, OpenGl]);
        assert_eq!(api_order("windows"), [Vulkan, Dx12, OpenGl]);
    }

    #[test]
    fn auto_takes_a_gpu_on_each_system_and_says_which() {
        let windows_dx12_only = [adapter("Microsoft Basic Render Driver", Dx12, Cpu), adapter("NVIDIA RTX 4070", Dx12, DiscreteGpu)];
        let (r, asked) = pick(BackendChoice::Auto, "windows", &windows_dx12_only);
        assert_eq!(r.unwrap(), (BackendChoice::Wgpu, "wgpu on NVIDIA RTX 4070 (DX12; auto: hardware adapter found)".into()));
        assert_eq!(asked, [Vulkan, Dx12], "auto never probes OpenGL");

        let windows_both = [adapter("NVIDIA RTX 4070", Dx12, DiscreteGpu), adapter("NVIDIA RTX 4070", Vulkan, DiscreteGpu)];
        let (r, _) = pick(BackendChoice::Auto, "windows", &windows_both);
        assert_eq!(r.unwrap().1, "wgpu on NVIDIA RTX 4070 (Vulkan; auto: hardware adapter found)");

        let mac = [adapter("Apple M2", Metal, IntegratedGpu)];
        let (r, asked) = pick(BackendChoice::Auto, "macos", &mac);
        assert_eq!(r.unwrap().1, "wgpu on Apple M2 (Metal; auto: hardware adapter found)");
        assert_eq!(asked, [Metal]);

        // A laptop: wgpu's high-performance choice is the discrete GPU, whatever the listing order.
        let linux = [
            adapter("Intel Iris Xe", Vulkan, IntegratedGpu),
            adapter("llvmpipe", Vulkan, Cpu),
            adapter("AMD Radeon RX 7600", Vulkan, DiscreteGpu),
        ];
        let (r, _) = pick(BackendChoice::Auto, "linux", &linux);
        assert_eq!(r.unwrap().1, "wgpu on AMD Radeon RX 7600 (Vulkan; auto: hardware adapter found)");
    }

    #[test]
    fn auto_stays_on_the_cpu_without_a_gpu_and_wgpu_then_takes_the_software_one() {
        let ci = [adapter("llvmpipe (LLVM 15.0.6, 256 bits)", Vulkan, Cpu), adapter("llvmpipe", OpenGl, Cpu)];
        let (r, asked) = pick(BackendChoice::Auto, "linux", &ci);
        let cpu = format!("cpu (flex, {} kernels; auto: no Vulkan or DX12 GPU)", dml_kernels::cpu_isa());
        assert_eq!(r.unwrap(), (BackendChoice::Cpu, cpu));
        assert_eq!(asked, [Vulkan, Dx12]);
        let (r, asked) = pick(BackendChoice::Wgpu, "linux", &ci);
        assert_eq!(r.unwrap(), (BackendChoice::Wgpu, "wgpu on llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, software)".into()));
        assert_eq!(asked, [Vulkan, Dx12, OpenGl], "like Burn, wgpu looks further for a GPU before taking the first software adapter");

        let windows_runner = [adapter("Microsoft Basic Render Driver", Dx12, Cpu)];
        let (r, _) = pick(BackendChoice::Auto, "windows", &windows_runner);
        assert_eq!(r.unwrap().0, BackendChoice::Cpu);
        let (r, _) = pick(BackendChoice::Wgpu, "windows", &windows_runner);
        assert_eq!(r.unwrap().1, "wgpu on Microsoft Basic Render Driver (DX12, software)");

        // An OpenGL-only GPU is wgpu's last resort, and not enough for auto.
        let old_gpu = [adapter("llvmpipe", Vulkan, Cpu), adapter("Mesa Intel HD 4000", OpenGl, Other)];
        let (r, _) = pick(BackendChoice::Wgpu, "linux", &old_gpu);
        assert_eq!(r.unwrap().1, "wgpu on Mesa Intel HD 4000 (OpenGL)");
        let (r, _) = pick(BackendChoice::Auto, "linux", &old_gpu);
        assert_eq!(r.unwrap().0, BackendChoice::Cpu);
    }

    #[test]
    fn wgpu_without_any_adapter_is_an_error_naming_the_apis_tried() {
        let (r, _) = pick(BackendChoice::Wgpu, "macos", &[]);
        let message = r.unwrap_err().0;
        assert!(message.starts_with("no wgpu adapter found on Metal"), "{message}");
        let (r, _) = pick(BackendChoice::Wgpu, "linux", &[]);
        assert!(r.unwrap_err().0.contains("on Vulkan, DX12, OpenGL"));
    }
}
