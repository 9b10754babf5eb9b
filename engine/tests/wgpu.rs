//! The wgpu backend (lavapipe on machines without a GPU) agrees with the CPU backend on a loss
//! with mining, one with sorting and searching, and on retrieval by device-side top-k and by
//! dml's retrieval shader. Kept small:
//! kernels compile slowly on a software Vulkan.
//!
//! Needs a wgpu adapter: on Linux a Vulkan driver (`mesa-vulkan-drivers` gives lavapipe), on
//! Windows DX12 (WARP is always there), on macOS Metal. `DML_SKIP_WGPU_TESTS=1` opts out
//! explicitly; `DML_WGPU_TESTS_OPTIONAL=1` skips, saying so, only where no adapter is found.

mod common;

use common::*;
use dml_engine::backend::{BackendChoice, select};
use dml_engine::burn::tensor::Device;
use dml_engine::eval::{RetrievalConfig, Selection};
use dml_engine::loss::LossConfig;

/// The wgpu device, or `None` (the test passes, saying why) where the machine is allowed to have
/// none: `DML_SKIP_WGPU_TESTS` skips outright; `DML_WGPU_TESTS_OPTIONAL` (CI runners whose GPU
/// access is not guaranteed) skips when no adapter is found. Otherwise a missing adapter fails.
fn wgpu() -> Option<Device> {
    if std::env::var_os("DML_SKIP_WGPU_TESTS").is_some() {
        eprintln!("DML_SKIP_WGPU_TESTS is set: wgpu checks skipped");
        return None;
    }
    match select(BackendChoice::Wgpu) {
        Ok(selected) => {
            eprintln!("{}", selected.description);
            Some(selected.device)
        }
        Err(e) if std::env::var_os("DML_WGPU_TESTS_OPTIONAL").is_some() => {
            eprintln!("wgpu checks skipped: {e}");
            None
        }
        Err(e) => panic!("{e} (install mesa-vulkan-drivers, or set DML_WGPU_TESTS_OPTIONAL=1 to skip)"),
    }
}

fn value_and_grad(json: &str, x: &[f64], y: &[i64], n: usize, d: usize, device: &Device) -> (f64, Vec<f64>) {
    let loss = LossConfig::from_json(json).unwrap().init(device);
    let xt = tensor(x, n, d, device).require_grad();
    let out = loss.forward(xt.clone(), labels(y, device));
    let value = out.clone().into_scalar::<f32>() as f64;
    let grad = to_vec(xt.grad(&out.backward()).unwrap());
    (value, grad)
}

#[test]
fn wgpu_matches_cpu() {
    let Some(gpu) = wgpu() else { return };
    let gpu = gpu.autodiff();
    let cpu = Device::flex().autodiff();
    let (x, y) = clustered(60, 4, 5, 16, 0.9);
    for json in [r#"{"name":"ms"}"#, r#"{"name":"triplet_semihard"}"#] {
        let (v_cpu, g_cpu) = value_and_grad(json, &x, &y, 20, 16, &cpu);
        let (v_gpu, g_gpu) = value_and_grad(json, &x, &y, 20, 16, &gpu);
        assert!(v_cpu.abs() > 1e-3, "{json}: the batch should be active");
        assert_close(&format!("{json} value"), v_gpu, v_cpu, 1e-4, 1e-7);
        assert_all_close(&format!("{json} gradient"), &g_gpu, &g_cpu, 1e-4, 1e-7);
    }

    // Device top-k (a CubeCL reduction) against host selection, on data whose similarities are
    // exact in f32 on any backend, full of ties.
    let x = tie_heavy(61, 120, 8);
    let y: Vec<i64> = (0..120).map(|i| (i * 7 % 13) as i64).collect();
    let ks = [1, 2, 4, 8];
    let mut on_device = RetrievalConfig::new(&ks);
    on_device.selection = Selection::Device;
    on_device.block_rows = Some(50);
    let mut on_host = RetrievalConfig::new(&ks);
    on_host.selection = Selection::Host;
    let mut by_shader = RetrievalConfig::new(&ks);
    by_shader.selection = Selection::Shader;
    let gpu = gpu.without_autodiff();
    let b = on_host.evaluate(tensor(&x, 120, 8, &Device::flex()), &y);
    for (what, a) in
        [("device top-k", on_device.evaluate(tensor(&x, 120, 8, &gpu), &y)), ("shader", by_shader.evaluate(tensor(&x, 120, 8, &gpu), &y))]
    {
        assert_eq!(a.queries, b.queries, "{what}");
        for k in ks {
            assert_close(&format!("{what}: Recall@{k}"), a.recall_at_k[&k], b.recall_at_k[&k], 0.0, 1e-12);
        }
        assert_close(&format!("{what}: MAP@R"), a.map_at_r, b.map_at_r, 0.0, 1e-12);
        assert_close(&format!("{what}: R-Precision"), a.r_precision, b.r_precision, 0.0, 1e-12);
    }
    // Query/gallery through the shader, as `dml metrics --backend wgpu` runs In-Shop.
    let (queries, gallery) = (&x[..40 * 8], &x[40 * 8..]);
    let split = |config: &RetrievalConfig, device: &Device| {
        config.evaluate_split(tensor(queries, 40, 8, device), &y[..40], tensor(gallery, 80, 8, device), &y[40..])
    };
    assert_eq!(split(&by_shader, &gpu), split(&on_host, &Device::flex()), "query/gallery: shader and host");
}

/// Each backend has its own random generator; the initial weights are drawn on the CPU so that a
/// seed means the same starting model everywhere, and each stays a parameter to train on wgpu.
#[test]
fn a_seed_draws_the_same_initial_model_on_wgpu_as_on_the_cpu() {
    use dml_engine::burn::module::{Module, ModuleVisitor, Param};
    use dml_engine::burn::tensor::Tensor;
    use dml_engine::model::BackboneKind;
    use dml_engine::train::TrainConfig;

    let Some(gpu) = wgpu() else { return };
    let gpu = gpu.autodiff();
    let mut config = TrainConfig::default().model;
    for (backbone, in_channels) in [(BackboneKind::SmallCnn, 1), (BackboneKind::Resnet18, 3)] {
        config.backbone = backbone;
        /// Every parameter's values, and whether it requires its gradient.
        #[derive(Debug, Default, PartialEq)]
        struct Params(Vec<f32>, Vec<bool>);
        impl ModuleVisitor for Params {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.extend(param.val().into_data().iter::<f32>());
                self.1.push(param.val().is_require_grad());
            }
        }
        let params = |device: &Device| {
            let mut params = Params::default();
            config.init_seeded(in_channels, 3, device).visit(&mut params);
            params
        };
        let (on_cpu, on_gpu) = (params(&Device::flex().autodiff()), params(&gpu));
        assert!(on_cpu.0.iter().any(|&v| v != 0.0));
        assert!(on_cpu.1.iter().filter(|&&t| t).count() > on_cpu.1.len() / 2);
        assert!(on_gpu.0 == on_cpu.0, "{backbone:?}: the same weights from seed 3");
        assert_eq!(on_gpu.1, on_cpu.1, "{backbone:?}: which parameters require their gradient");
    }
}
