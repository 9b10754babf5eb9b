//! Every loss of docs/losses.md against an independent float64 loop implementation written from the
//! spec: values, autodiff gradients against finite differences of the reference, edge cases.

mod common;

use common::*;
use dml_engine::loss::{LossConfig, MetricLoss};

// ---------------------------------------------------------------------------------------------
// Float64 references, one loop per formula of docs/losses.md.

fn softplus(x: f64) -> f64 {
    if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }
}

fn contrastive(x: &[f64], y: &[i64], d: usize, margin: f64) -> f64 {
    let n = y.len();
    let mut total = 0.0;
    for i in 0..n {
        let (p, q) = (positives(y, i), negatives(y, i));
        if p.is_empty() || q.is_empty() {
            continue;
        }
        total += p.iter().map(|&j| 1.0 - dot(x, d, i, j)).sum::<f64>();
        total += q.iter().map(|&k| dot(x, d, i, k)).filter(|&s| s > margin).sum::<f64>();
    }
    total / n as f64
}

fn binomial(x: &[f64], y: &[i64], d: usize, ps: f64, ns: f64, m: f64) -> f64 {
    let n = y.len();
    let mut total = 0.0;
    for i in 0..n {
        let (p, q) = (positives(y, i), negatives(y, i));
        if p.is_empty() || q.is_empty() {
            continue;
        }
        let pos: f64 = p.iter().map(|&j| softplus(-ps * (dot(x, d, i, j) - m))).sum::<f64>() / p.len() as f64;
        let neg: f64 = q.iter().map(|&k| softplus(ns * (dot(x, d, i, k) - m))).sum::<f64>() / q.len() as f64;
        total += pos + neg;
    }
    total / n as f64
}

fn lifted(x: &[f64], y: &[i64], d: usize, margin: f64) -> f64 {
    let n = y.len();
    let (mut total, mut pairs) = (0.0, 0usize);
    for i in 0..n {
        for j in i + 1..n {
            if y[i] != y[j] {
                continue;
            }
            pairs += 1;
            let mut s = 0.0;
            for k in negatives(y, i) {
                s += (margin - dist(x, d, i, k)).exp();
            }
            for l in negatives(y, j) {
                s += (margin - dist(x, d, j, l)).exp();
            }
            let j_ij = dist(x, d, i, j) + s.ln();
            total += j_ij.max(0.0).powi(2);
        }
    }
    if pairs == 0 { 0.0 } else { total / (2.0 * pairs as f64) }
}

fn lifted_modified(x: &[f64], y: &[i64], d: usize, alpha: f64, beta: f64) -> f64 {
    let n = y.len();
    let mut total = 0.0;
    for i in 0..n {
        let (p, q) = (positives(y, i), negatives(y, i));
        if p.is_empty() || q.is_empty() {
            continue;
        }
        let pos: f64 = p.iter().map(|&j| (-beta * dot(x, d, i, j)).exp()).sum();
        let neg: f64 = q.iter().map(|&k| (alpha * dot(x, d, i, k)).exp()).sum();
        total += 2.0 / beta * pos.ln() + 2.0 / alpha * neg.ln();
    }
    total / n as f64
}

fn multi_similarity(x: &[f64], y: &[i64], d: usize, alpha: f64, beta: f64, base: f64, eps: f64) -> f64 {
    let n = y.len();
    let mut total = 0.0;
    for i in 0..n {
        let (p, q) = (positives(y, i), negatives(y, i));
        if p.is_empty() || q.is_empty() {
            continue;
        }
        let max_neg = q.iter().map(|&k| dot(x, d, i, k)).fold(f64::MIN, f64::max);
        let min_pos = p.iter().map(|&j| dot(x, d, i, j)).fold(f64::MAX, f64::min);
        let mined_p: Vec<f64> = p.iter().map(|&j| dot(x, d, i, j)).filter(|s| s - eps < max_neg).collect();
        let mined_n: Vec<f64> = q.iter().map(|&k| dot(x, d, i, k)).filter(|s| s + eps > min_pos).collect();
        if mined_p.is_empty() || mined_n.is_empty() {
            continue;
        }
        let pos: f64 = mined_p.iter().map(|s| (-alpha * (s - base)).exp()).sum();
        let neg: f64 = mined_n.iter().map(|s| (beta * (s - base)).exp()).sum();
        total += (1.0 + pos).ln() / alpha + (1.0 + neg).ln() / beta;
    }
    total / n as f64
}

fn nca(x: &[f64], y: &[i64], d: usize, scale: f64) -> f64 {
    let n = y.len();
    let mut total = 0.0;
    for i in 0..n {
        let (p, q) = (positives(y, i), negatives(y, i));
        if p.is_empty() || q.is_empty() {
            continue;
        }
        let num: f64 = p.iter().map(|&j| (-scale * dist(x, d, i, j).powi(2)).exp()).sum();
        let den: f64 = (0..n).filter(|&k| k != i).map(|k| (-scale * dist(x, d, i, k).powi(2)).exp()).sum();
        total += -(num / den).ln();
    }
    total / n as f64
}

fn triplet_semihard(x: &[f64], y: &[i64], d: usize, margin: f64) -> f64 {
    let n = y.len();
    let (mut total, mut pairs) = (0.0, 0usize);
    for a in 0..n {
        let q = negatives(y, a);
        for p in positives(y, a) {
            pairs += 1;
            if q.is_empty() {
                continue;
            }
            let d_ap = dist(x, d, a, p);
            let semihard = q.iter().map(|&k| dist(x, d, a, k)).filter(|&v| v > d_ap).fold(f64::INFINITY, f64::min);
            let d_an = if semihard.is_finite() { semihard } else { q.iter().map(|&k| dist(x, d, a, k)).fold(f64::MIN, f64::max) };
            total += (d_ap - d_an + margin).max(0.0);
        }
    }
    if pairs == 0 { 0.0 } else { total / pairs as f64 }
}

struct MarginParams {
    margin: f64,
    beta: f64,
    cutoff: f64,
    nonzero: f64,
}

/// The weights of anchor `a` over all `n` items (0 off the negatives), normalised.
fn margin_weights(x: &[f64], y: &[i64], d: usize, a: usize, m: &MarginParams) -> Vec<f64> {
    let n = y.len();
    let dim = d as f64;
    let mut log_w = vec![f64::NEG_INFINITY; n];
    for k in negatives(y, a) {
        let dk = dist(x, d, a, k);
        if dk < m.nonzero {
            let dc = dk.max(m.cutoff);
            log_w[k] = -(dim - 2.0) * dc.ln() - (dim - 3.0) / 2.0 * (1.0 - dc * dc / 4.0).ln();
        }
    }
    let top = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut w: Vec<f64> = if top.is_finite() {
        log_w.iter().map(|&l| if l.is_finite() { (l - top).exp() } else { 0.0 }).collect()
    } else {
        (0..n).map(|k| if y[k] != y[a] { 1.0 } else { 0.0 }).collect()
    };
    let total: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= total);
    w
}

/// Inverse CDF in index order: the first k whose cumulative weight exceeds u.
fn margin_draw(w: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (k, &v) in w.iter().enumerate() {
        acc += v;
        if v > 0.0 && acc > u {
            return k;
        }
    }
    w.iter().rposition(|&v| v > 0.0).unwrap()
}

/// Returns the loss and the drawn negatives, `drawn[a][j]` for the j-th positive of `a`.
fn margin(x: &[f64], y: &[i64], d: usize, m: &MarginParams, u: &[Vec<f64>]) -> (f64, Vec<Vec<usize>>) {
    let n = y.len();
    let (mut total, mut active) = (0.0, 0usize);
    let mut drawn = vec![Vec::new(); n];
    for a in 0..n {
        if negatives(y, a).is_empty() {
            continue;
        }
        let w = margin_weights(x, y, d, a, m);
        for (j, p) in positives(y, a).into_iter().enumerate() {
            let k = margin_draw(&w, u[a][j]);
            drawn[a].push(k);
            let pull = (m.margin + dist(x, d, a, p) - m.beta).max(0.0);
            let push = (m.margin + m.beta - dist(x, d, a, k)).max(0.0);
            active += (pull > 0.0) as usize + (push > 0.0) as usize;
            total += pull + push;
        }
    }
    (if active == 0 { 0.0 } else { total / active as f64 }, drawn)
}

// ---------------------------------------------------------------------------------------------
// Harness

struct Case {
    x: Vec<f64>,
    y: Vec<i64>,
    n: usize,
    d: usize,
}

fn case(seed: u64, classes: usize, per_class: usize, d: usize, spread: f64) -> Case {
    let (x, y) = clustered(seed, classes, per_class, d, spread);
    Case { n: y.len(), x, y, d }
}

/// The engine's value and gradient on the autodiff flex device.
fn engine(loss: &MetricLoss, c: &Case) -> (f64, Vec<f64>) {
    let device = device();
    let x = tensor(&c.x, c.n, c.d, &device).require_grad();
    let out = loss.forward(x.clone(), labels(&c.y, &device));
    assert_eq!(out.dims(), [1], "a loss is a tensor of shape [1]");
    let value = out.clone().into_scalar::<f32>() as f64;
    let grads = out.backward();
    let grad = x.grad(&grads).map(to_vec).unwrap_or_else(|| vec![0.0; c.n * c.d]);
    (value, grad)
}

fn check(what: &str, json: &str, c: &Case, reference: &dyn Fn(&[f64]) -> f64) -> f64 {
    let config = LossConfig::from_json(json).unwrap();
    let loss = config.init(&device());
    let (value, grad) = engine(&loss, c);
    let want = reference(&c.x);
    assert!(value.is_finite() && grad.iter().all(|g| g.is_finite()), "{what}: non-finite output");
    assert_close(&format!("{what} value"), value, want, 1e-4, 1e-7);
    let fd = finite_difference(reference, &c.x, 1e-6);
    assert_all_close(&format!("{what} gradient"), &grad, &fd, 1e-4, 1e-7);
    want
}

/// A batch where each loss's mining and margins are active: classes overlap enough that some
/// negatives are more similar than some positives.
fn active_case(seed: u64) -> Case {
    case(seed, 4, 5, 16, 0.9)
}

fn assert_active(what: &str, value: f64) {
    assert!(value.abs() > 1e-3, "{what}: the test batch should make the loss non-zero, got {value}");
}

// ---------------------------------------------------------------------------------------------
// Value and gradient, two parameter sets each.

#[test]
fn contrastive_matches_reference() {
    for (seed, margin) in [(1, 0.5), (2, 0.1)] {
        let c = active_case(seed);
        let json = format!(r#"{{"name":"contrastive","margin":{margin}}}"#);
        let v = check("contrastive", &json, &c, &|x| contrastive(x, &c.y, c.d, margin));
        assert_active("contrastive", v);
    }
}

#[test]
fn binomial_matches_reference() {
    for (seed, ps, ns, m) in [(3, 2.0, 40.0, 0.5), (4, 5.0, 10.0, 0.2)] {
        let c = active_case(seed);
        let json = format!(r#"{{"name":"binomial","pos_scale":{ps},"neg_scale":{ns},"margin":{m}}}"#);
        let v = check("binomial", &json, &c, &|x| binomial(x, &c.y, c.d, ps, ns, m));
        assert_active("binomial", v);
    }
}

#[test]
fn lifted_matches_reference() {
    for (seed, margin) in [(5, 1.0), (6, 0.3)] {
        let c = active_case(seed);
        let json = format!(r#"{{"name":"lifted","margin":{margin}}}"#);
        let v = check("lifted", &json, &c, &|x| lifted(x, &c.y, c.d, margin));
        assert_active("lifted", v);
    }
}

#[test]
fn lifted_modified_matches_reference() {
    for (seed, alpha, beta) in [(7, 40.0, 2.0), (8, 10.0, 5.0)] {
        let c = active_case(seed);
        let json = format!(r#"{{"name":"lifted_modified","alpha":{alpha},"beta":{beta}}}"#);
        let v = check("lifted_modified", &json, &c, &|x| lifted_modified(x, &c.y, c.d, alpha, beta));
        assert_active("lifted_modified", v);
    }
}

#[test]
fn multi_similarity_matches_reference() {
    for (seed, a, b, base, eps, name) in [(9, 2.0, 40.0, 0.5, 0.1, "ms"), (10, 5.0, 20.0, 0.3, 0.05, "weight")] {
        let c = active_case(seed);
        let json = format!(r#"{{"name":"{name}","alpha":{a},"beta":{b},"base":{base},"epsilon":{eps}}}"#);
        let v = check(name, &json, &c, &|x| multi_similarity(x, &c.y, c.d, a, b, base, eps));
        assert_active(name, v);
        // Mining is active: some anchor drops a positive or a negative.
        let n = c.y.len();
        let mined_out = (0..n).any(|i| {
            let q = negatives(&c.y, i);
            let max_neg = q.iter().map(|&k| dot(&c.x, c.d, i, k)).fold(f64::MIN, f64::max);
            positives(&c.y, i).iter().any(|&j| dot(&c.x, c.d, i, j) - eps >= max_neg)
        });
        assert!(mined_out, "the batch should exercise MS mining");
    }
}

#[test]
fn nca_matches_reference() {
    for (seed, scale) in [(11, 16.0), (12, 4.0)] {
        let c = active_case(seed);
        let json = format!(r#"{{"name":"nca","scale":{scale}}}"#);
        let v = check("nca", &json, &c, &|x| nca(x, &c.y, c.d, scale));
        assert_active("nca", v);
    }
}

#[test]
fn triplet_semihard_matches_reference() {
    for (seed, margin) in [(13, 0.2), (14, 0.5)] {
        // Wide classes, so that some pairs have a semi-hard negative and others fall back to the
        // farthest negative.
        let c = case(seed, 2, 6, 4, 3.0);
        let (mut semihard, mut fallback) = (0, 0);
        for a in 0..c.n {
            for p in positives(&c.y, a) {
                let d_ap = dist(&c.x, c.d, a, p);
                if negatives(&c.y, a).iter().any(|&k| dist(&c.x, c.d, a, k) > d_ap) {
                    semihard += 1;
                } else {
                    fallback += 1;
                }
            }
        }
        assert!(semihard > 0 && fallback > 0, "semi-hard {semihard}, fallback {fallback}");
        let json = format!(r#"{{"name":"triplet_semihard","margin":{margin}}}"#);
        let v = check("triplet_semihard", &json, &c, &|x| triplet_semihard(x, &c.y, c.d, margin));
        assert_active("triplet_semihard", v);
    }
}

fn uniforms(seed: u64, n: usize, m: usize) -> Vec<Vec<f64>> {
    use rand::RngExt;
    let mut r = rng(seed);
    (0..n).map(|_| (0..m).map(|_| r.random::<f32>() as f64).collect()).collect()
}

#[test]
fn margin_matches_reference() {
    use dml_engine::burn::tensor::{Tensor, TensorData};
    let params = [
        MarginParams { margin: 0.2, beta: 1.2, cutoff: 0.5, nonzero: 1.4 },
        MarginParams { margin: 0.3, beta: 1.0, cutoff: 0.3, nonzero: 1.2 },
    ];
    for (seed, m) in params.iter().enumerate() {
        let c = active_case(20 + seed as u64);
        let per_row = 4; // 5 per class: 4 positives each
        let u = uniforms(seed as u64, c.n, per_row);
        let json = format!(
            r#"{{"name":"margin","margin":{},"beta":{},"cutoff":{},"nonzero_loss_cutoff":{}}}"#,
            m.margin, m.beta, m.cutoff, m.nonzero
        );
        let LossConfig::Margin(config) = LossConfig::from_json(&json).unwrap() else { unreachable!() };
        let loss = config.init();
        let device = device();
        let u_flat: Vec<f32> = u.iter().flatten().map(|&v| v as f32).collect();
        let u_tensor = || Tensor::<2>::from_data(TensorData::new(u_flat.clone(), [c.n, per_row]), &device);

        let drawn = loss.sample_negatives(tensor(&c.x, c.n, c.d, &device), labels(&c.y, &device), u_tensor());
        let drawn: Vec<i64> = drawn.try_into_vec_as::<i64>().unwrap();
        let (want, ref_drawn) = margin(&c.x, &c.y, c.d, m, &u);
        for a in 0..c.n {
            for (j, &k) in ref_drawn[a].iter().enumerate() {
                assert_eq!(drawn[a * per_row + j] as usize, k, "anchor {a}, draw {j}");
            }
        }

        let x = tensor(&c.x, c.n, c.d, &device).require_grad();
        let out = loss.forward_with_uniforms(x.clone(), labels(&c.y, &device), u_tensor());
        let value = out.clone().into_scalar::<f32>() as f64;
        let grad = to_vec(x.grad(&out.backward()).unwrap());
        assert_close("margin value", value, want, 1e-4, 1e-7);
        assert_active("margin", want);
        let fd = finite_difference(&|x| margin(x, &c.y, c.d, m, &u).0, &c.x, 1e-6);
        assert_all_close("margin gradient", &grad, &fd, 1e-4, 1e-7);
    }
}

// ---------------------------------------------------------------------------------------------
// Edge cases: every loss, exactly zero and zero gradient where no valid pair exists.

const ALL: [&str; 8] = ["contrastive", "binomial", "lifted", "lifted_modified", "ms", "nca", "triplet_semihard", "margin"];

fn assert_zero_everywhere(c: &Case, what: &str) {
    for name in ALL {
        let loss = LossConfig::from_name(name).unwrap().init(&device());
        let (value, grad) = engine(&loss, c);
        assert_eq!(value, 0.0, "{name} on {what}: value");
        assert!(grad.iter().all(|&g| g == 0.0), "{name} on {what}: gradient {grad:?}");
    }
}

#[test]
fn one_class_gives_zero() {
    let (x, _) = clustered(30, 1, 6, 8, 0.5);
    assert_zero_everywhere(&Case { x, y: vec![4; 6], n: 6, d: 8 }, "one class");
}

#[test]
fn singleton_classes_give_zero() {
    let (x, y) = clustered(31, 6, 1, 8, 0.5);
    assert_zero_everywhere(&Case { x, y, n: 6, d: 8 }, "singleton classes");
}

#[test]
fn two_items_give_zero() {
    for y in [vec![0, 0], vec![0, 1]] {
        let (x, _) = clustered(32, 1, 2, 8, 0.5);
        assert_zero_everywhere(&Case { x, y, n: 2, d: 8 }, "n = 2");
    }
}

#[test]
fn singletons_among_pairs_match_reference() {
    // Items 4 and 5 are alone in their classes: they count in n but contribute nothing.
    let (x, _) = clustered(33, 3, 2, 8, 0.6);
    let c = Case { x, y: vec![0, 1, 0, 1, 2, 3], n: 6, d: 8 };
    check("contrastive singles", r#"{"name":"contrastive"}"#, &c, &|x| contrastive(x, &c.y, c.d, 0.5));
    check("ms singles", r#"{"name":"ms"}"#, &c, &|x| multi_similarity(x, &c.y, c.d, 2.0, 40.0, 0.5, 0.1));
    check("nca singles", r#"{"name":"nca"}"#, &c, &|x| nca(x, &c.y, c.d, 16.0));
    check("lifted singles", r#"{"name":"lifted"}"#, &c, &|x| lifted(x, &c.y, c.d, 1.0));
    check("triplet singles", r#"{"name":"triplet_semihard"}"#, &c, &|x| triplet_semihard(x, &c.y, c.d, 0.2));
}

#[test]
fn easy_batches_give_zero_for_hinge_losses() {
    // Tight, orthogonal classes: every positive similarity ≈ 1, every negative ≈ 0.
    let d = 8;
    let mut x = vec![0.0; 4 * d];
    for (i, axis) in [0usize, 0, 1, 1].iter().enumerate() {
        x[i * d + axis] = 1.0;
    }
    let c = Case { x, y: vec![0, 0, 1, 1], n: 4, d };
    for (name, json) in [("triplet_semihard", r#"{"name":"triplet_semihard","margin":0.2}"#), ("ms", r#"{"name":"ms"}"#)] {
        let loss = LossConfig::from_json(json).unwrap().init(&device());
        let (value, grad) = engine(&loss, &c);
        assert_eq!(value, 0.0, "{name}: all pairs easy");
        assert!(grad.iter().all(|&g| g == 0.0), "{name}: gradient");
    }
    // Margin loss: D_ap ≈ 0 is below beta − margin and D_an = √2 above beta + margin.
    let loss = LossConfig::from_json(r#"{"name":"margin","beta":1.0,"margin":0.2}"#).unwrap().init(&device());
    let (value, grad) = engine(&loss, &c);
    assert_eq!(value, 0.0, "margin: all pairs easy");
    assert!(grad.iter().all(|&g| g == 0.0));
    // Contrastive: positives sit at similarity 1 and negatives below the margin, so the value is
    // 0; its pull on positives has a gradient even there, by the formula.
    let loss = LossConfig::from_name("contrastive").unwrap().init(&device());
    assert_eq!(engine(&loss, &c).0, 0.0, "contrastive: all pairs easy");
}

#[test]
fn large_scales_stay_finite() {
    // Extreme scales overflow a naive exp; the losses must stay finite.
    let c = active_case(40);
    for json in [
        r#"{"name":"ms","alpha":50,"beta":400}"#,
        r#"{"name":"lifted_modified","alpha":400,"beta":100}"#,
        r#"{"name":"binomial","pos_scale":200,"neg_scale":400}"#,
        r#"{"name":"nca","scale":400}"#,
        r#"{"name":"lifted","margin":80}"#,
    ] {
        let loss = LossConfig::from_json(json).unwrap().init(&device());
        let (value, grad) = engine(&loss, &c);
        assert!(value.is_finite() && grad.iter().all(|g| g.is_finite()), "{json}: {value}");
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn config_names_defaults_and_errors() {
    use dml_engine::loss::*;
    assert_eq!(LossConfig::from_json(r#"{"name":"weight"}"#).unwrap(), LossConfig::Ms(MultiSimilarityConfig::default()));
    let ms = LossConfig::from_json(r#"{"name":"ms","beta":50.0}"#).unwrap();
    assert_eq!(ms, LossConfig::Ms(MultiSimilarityConfig { beta: 50.0, ..Default::default() }));
    assert_eq!(MultiSimilarityConfig::default(), MultiSimilarityConfig { alpha: 2.0, beta: 40.0, base: 0.5, epsilon: 0.1 });
    assert_eq!(BinomialConfig::default(), BinomialConfig { pos_scale: 2.0, neg_scale: 40.0, margin: 0.5 });
    assert_eq!(LiftedModifiedConfig::default(), LiftedModifiedConfig { alpha: 40.0, beta: 2.0 });
    assert_eq!(ContrastiveConfig::default().margin, 0.5);
    assert_eq!(LiftedConfig::default().margin, 1.0);
    assert_eq!(NcaConfig::default().scale, 16.0);
    assert_eq!(TripletSemihardConfig::default().margin, 0.2);
    let m = MarginConfig::default();
    assert_eq!((m.margin, m.beta, m.cutoff, m.nonzero_loss_cutoff), (0.2, 1.2, 0.5, 1.4));
    for name in LossConfig::NAMES {
        let config = LossConfig::from_name(name).unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(LossConfig::from_json(&json).unwrap(), config, "{name} round trip");
    }

    for name in LossConfig::PROXY_NAMES {
        let config = LossConfig::from_json(&format!(r#"{{"name":"{name}","num_classes":7,"dim":32}}"#)).unwrap();
        assert_eq!(config.name(), name);
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(LossConfig::from_json(&json).unwrap(), config, "{name} round trip");
    }

    let unknown = LossConfig::from_json(r#"{"name":"circle"}"#).unwrap_err().to_string();
    for name in
        ["contrastive", "binomial", "lifted", "lifted_modified", "ms", "nca", "triplet_semihard", "margin", "proxy_anchor", "arcface"]
    {
        assert!(unknown.contains(name), "{unknown}");
    }
    let field = LossConfig::from_json(r#"{"name":"ms","gamma":1}"#).unwrap_err().to_string();
    assert!(field.contains("gamma") && field.contains("alpha") && field.contains("epsilon"), "{field}");
}
