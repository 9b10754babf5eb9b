//! The optimisers follow `torch.optim`'s update rules, checked step by step against a float64
//! transcription of PyTorch's documented algorithms; the backbone learning-rate multiplier scales
//! the backbone's update and only the backbone's.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use dml_engine::model::Embedder;
use dml_engine::train::{OptimizerConfig, OptimizerKind, TrainConfig, Trainer};

/// One parameter vector, the whole model of the reference comparison.
#[derive(Module, Debug)]
struct Point {
    w: Param<Tensor<1>>,
}

/// L(w) = Σ aᵢ (wᵢ − tᵢ)²: ∂L/∂wᵢ = 2 aᵢ (wᵢ − tᵢ). The last coordinate's gradient is ~1e-6, where
/// Adam's step depends on ε (1e-8 in PyTorch, 1e-5 by Burn's default).
const A: [f64; 4] = [1.0, 0.3, 4.0, 1e-6];
const T: [f64; 4] = [0.5, -1.0, 0.2, 0.0];
const W0: [f64; 4] = [-0.4, 0.7, 1.3, 1.0];

fn gradient(w: &[f64]) -> Vec<f64> {
    w.iter().zip(A).zip(T).map(|((w, a), t)| 2.0 * a * (w - t)).collect()
}

/// `torch.optim`'s algorithms as documented (Adam and AdamW with amsgrad off, SGD without
/// dampening or Nesterov), one step at a time; `t` counts from 1.
struct Reference {
    w: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Reference {
    fn step(&mut self, config: &OptimizerConfig, lr: f64) {
        let (wd, eps, (b1, b2)) = (config.weight_decay, 1e-8, (0.9, 0.999));
        let mut g = gradient(&self.w);
        self.t += 1;
        match config.name {
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                for (i, g) in g.iter_mut().enumerate() {
                    if config.name == OptimizerKind::Adam {
                        *g += wd * self.w[i];
                    } else {
                        self.w[i] *= 1.0 - lr * wd;
                    }
                    self.m[i] = b1 * self.m[i] + (1.0 - b1) * *g;
                    self.v[i] = b2 * self.v[i] + (1.0 - b2) * *g * *g;
                    let m_hat = self.m[i] / (1.0 - b1.powi(self.t));
                    let v_hat = self.v[i] / (1.0 - b2.powi(self.t));
                    self.w[i] -= lr * m_hat / (v_hat.sqrt() + eps);
                }
            }
            OptimizerKind::Sgd => {
                for (i, g) in g.iter_mut().enumerate() {
                    *g += wd * self.w[i];
                    if config.momentum > 0.0 {
                        // The buffer starts as the first gradient.
                        self.m[i] = if self.t == 1 { *g } else { config.momentum * self.m[i] + *g };
                        *g = self.m[i];
                    }
                    self.w[i] -= lr * *g;
                }
            }
        }
    }
}

/// `MultiStepLR(milestones, gamma)` after `k` calls of `scheduler.step()`.
fn multi_step_lr(lr: f64, milestones: &[u64], gamma: f64, k: u64) -> f64 {
    let reached = milestones.iter().filter(|&&m| m <= k).count();
    (0..reached).fold(lr, |lr, _| lr * gamma)
}

fn check(name: OptimizerKind, weight_decay: f64, momentum: f64) {
    let config = OptimizerConfig { name, lr: 0.05, weight_decay, momentum, lr_steps: vec![4, 9], lr_gamma: 0.5, ..Default::default() };
    let what = format!("{name:?}, weight decay {weight_decay}, momentum {momentum}");
    let device = Device::flex().autodiff();
    let vector = |v: &[f64]| {
        let values: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        Tensor::<1>::from_data(TensorData::new(values, [v.len()]), &device)
    };
    let mut point = Point { w: Param::from_tensor(vector(&W0)) };
    let mut optimizer = config.init();
    let mut reference = Reference { w: W0.to_vec(), m: vec![0.0; W0.len()], v: vec![0.0; W0.len()], t: 0 };
    let (a, t) = (vector(&A), vector(&T));
    for k in 0..12u64 {
        let lr = config.lr_at(k);
        assert_eq!(lr, multi_step_lr(config.lr, &config.lr_steps, config.lr_gamma, k), "{what}: lr after {k} steps");
        let diff = point.w.val() - t.clone();
        let loss = (a.clone() * diff.clone() * diff).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &point);
        point = optimizer.step(lr, point, grads);
        reference.step(&config, lr);
        let got: Vec<f32> = point.w.val().into_data().iter::<f32>().collect();
        for (i, (&x, &r)) in got.iter().zip(&reference.w).enumerate() {
            assert!((x as f64 - r).abs() <= 2e-6 * r.abs().max(1.0), "{what}: w[{i}] after step {}: {x} against PyTorch's rule {r}", k + 1);
        }
    }
}

#[test]
fn adam_with_l2_penalty_is_torch_adam() {
    check(OptimizerKind::Adam, 0.0, 0.0);
    check(OptimizerKind::Adam, 0.1, 0.0);
}

#[test]
fn adamw_is_torch_adamw() {
    check(OptimizerKind::Adamw, 0.1, 0.0);
}

#[test]
fn sgd_is_torch_sgd() {
    check(OptimizerKind::Sgd, 0.0, 0.0);
    check(OptimizerKind::Sgd, 0.1, 0.0);
    check(OptimizerKind::Sgd, 0.1, 0.9);
}

/// Every float parameter's values, by id.
fn parameters(module: &impl Module) -> Vec<(ParamId, Vec<f32>)> {
    struct Collect(Vec<(ParamId, Vec<f32>)>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push((param.id, param.val().into_data().iter::<f32>().collect()));
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

/// (backbone, head) parameters of the small CNN after one plain-SGD step at `mult`, each
/// flattened in visiting order, and the same before the step.
fn one_step(mult: f64) -> [(Vec<f32>, Vec<f32>); 2] {
    let mut config = TrainConfig::default()
        .with_overrides(&[
            "optimizer.name=\"sgd\"".into(),
            "optimizer.momentum=0.0".into(),
            "optimizer.weight_decay=0.0".into(),
            "optimizer.lr=1.0".into(),
            format!("optimizer.backbone_lr_mult={mult:?}"),
        ])
        .unwrap();
    config.run.iterations = 1;
    let mut trainer = Trainer::new(&config, &Device::flex()).unwrap();
    let split = |model: &Embedder| {
        let Embedder::SmallCnn(cnn) = model else { unreachable!("the default model") };
        let head: Vec<_> = parameters(cnn.head()).into_iter().map(|(id, _)| id).collect();
        let (mut backbone, mut head_values) = (Vec::new(), Vec::new());
        for (id, values) in parameters(model) {
            if head.contains(&id) { head_values.extend(values) } else { backbone.extend(values) }
        }
        (backbone, head_values)
    };
    let before = split(trainer.model());
    trainer.step().unwrap();
    [before, split(trainer.model())]
}

fn delta(before: &[f32], after: &[f32]) -> Vec<f64> {
    after.iter().zip(before).map(|(a, b)| *a as f64 - *b as f64).collect()
}

/// ‖x − y‖ / ‖y‖.
fn relative_distance(x: &[f64], y: &[f64]) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|d| d * d).sum::<f64>().sqrt();
    norm(&mut x.iter().zip(y).map(|(a, b)| a - b)) / norm(&mut y.iter().copied())
}

#[test]
fn backbone_learning_rate_multiplier_scales_only_the_backbone() {
    let [(backbone0, head0), (backbone1, head1)] = one_step(1.0);
    let [(b0, h0), (b_quarter, h_quarter)] = one_step(0.25);
    let [(b0_frozen, h0_frozen), (b_frozen, h_frozen)] = one_step(0.0);
    // The same seed: the same initial model and the same first batch.
    assert_eq!((&b0, &h0), (&backbone0, &head0));
    assert_eq!((&b0_frozen, &h0_frozen), (&backbone0, &head0));

    let full = delta(&backbone0, &backbone1);
    assert!(full.iter().any(|d| d.abs() > 1e-4), "the backbone did not learn at multiplier 1");
    let quarter: Vec<f64> = full.iter().map(|d| 0.25 * d).collect();
    let backbone_gap = relative_distance(&delta(&backbone0, &b_quarter), &quarter);
    assert!(backbone_gap < 1e-3, "backbone step at 0.25 is not a quarter of the full step: {backbone_gap:e}");
    let head_gap = relative_distance(&delta(&head0, &h_quarter), &delta(&head0, &head1));
    assert!(head_gap < 1e-3, "the head's step changed with the backbone's multiplier: {head_gap:e}");

    assert_eq!(b_frozen, backbone0, "the backbone moved at multiplier 0");
    let head_gap = relative_distance(&delta(&head0, &h_frozen), &delta(&head0, &head1));
    assert!(head_gap < 1e-3, "the head did not learn at full rate with a frozen backbone: {head_gap:e}");
}
