//! Where an operation runs: the host kernels serve tensors of Burn's CPU backend (flex), with or
//! without autodiff; every other backend keeps Burn's own operations.

use burn::backend::DispatchDevice;
use burn::tensor::{DType, Device, Tensor};

/// Whether `device` is the CPU (flex) backend's, autodiff or not: the backend whose tensors the
/// host kernels read and write in place. Also where host-side selection (top-k) is cheaper than a
/// device kernel followed by a copy.
pub fn runs_on_host(device: &Device) -> bool {
    is_flex(device.as_dispatch())
}

fn is_flex(device: &DispatchDevice) -> bool {
    #[allow(unreachable_patterns)] // a build with the CPU backend alone has no other variants
    match device {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => is_flex(inner),
        _ => false,
    }
}

/// Whether `x` is an f32 tensor on the CPU backend, what every host kernel takes.
pub(crate) fn on_host_f32<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && runs_on_host(&x.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cpu_backend_runs_on_the_host() {
        assert!(runs_on_host(&Device::flex()));
        assert!(runs_on_host(&Device::flex().autodiff()));
        assert!(!runs_on_host(&Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)));
    }
}
