//! `forward_against` (the batch against a reference set: cross-batch memory) for the four losses
//! that have it, against independent float64 implementations written from `docs/losses.md`
//! ("Against a reference set"): value to 1e-4 relative, the gradient with respect to the batch
//! against central finite differences, none into the reference. Batches with an anchor whose class
//! the reference lacks, a reference class the batch lacks, an empty reference, and a reference of
//! one class only.

mod common;

use common::*;
use dml_engine::burn::tensor::{Device, Tensor};
use dml_engine::loss::{LossConfig, MetricLoss};

/// `S_ij = x_i · r_j`.
fn sim(x: &[f64], r: &[f64], d: usize, i: usize, j: usize) -> f64 {
    (0..d).map(|t| x[i * d + t] * r[j * d + t]).sum()
}

/// `D_ij = sqrt(max(‖x_i − r_j‖², 1e-12))`.
fn distance(x: &[f64], r: &[f64], d: usize, i: usize, j: usize) -> f64 {
    (0..d).map(|t| (x[i * d + t] - r[j * d + t]).powi(2)).sum::<f64>().max(1e-12).sqrt()
}

/// `(P_i, N_i)` over the reference: same label, other label; no self-exclusion.
fn sets(y: &[i64], yr: &[i64], i: usize) -> (Vec<usize>, Vec<usize>) {
    (0..yr.len()).partition(|&j| yr[j] == y[i])
}

fn softplus(v: f64) -> f64 {
    v.max(0.0) + (-v.abs()).exp().ln_1p()
}

/// An anchor's term from its index, its positives and its negatives in the reference.
type AnchorTerm<'a> = &'a dyn Fn(usize, &[usize], &[usize]) -> f64;

/// `(1/n) Σ_i ℓ_i`, ℓ_i = 0 where P_i or N_i is empty.
fn mean_over_anchors(y: &[i64], yr: &[i64], term: AnchorTerm) -> f64 {
    let total: f64 = (0..y.len())
        .map(|i| {
            let (p, n) = sets(y, yr, i);
            if p.is_empty() || n.is_empty() { 0.0 } else { term(i, &p, &n) }
        })
        .sum();
    total / y.len() as f64
}

fn contrastive(x: &[f64], y: &[i64], r: &[f64], yr: &[i64], d: usize, margin: f64) -> f64 {
    mean_over_anchors(y, yr, &|i, p, n| {
        let pull: f64 = p.iter().map(|&j| 1.0 - sim(x, r, d, i, j)).sum();
        let push: f64 = n.iter().map(|&k| sim(x, r, d, i, k)).filter(|&s| s > margin).sum();
        pull + push
    })
}

fn binomial(x: &[f64], y: &[i64], r: &[f64], yr: &[i64], d: usize, (pos_scale, neg_scale, margin): (f64, f64, f64)) -> f64 {
    mean_over_anchors(y, yr, &|i, p, n| {
        let pos = p.iter().map(|&j| softplus(-pos_scale * (sim(x, r, d, i, j) - margin))).sum::<f64>() / p.len() as f64;
        let neg = n.iter().map(|&k| softplus(neg_scale * (sim(x, r, d, i, k) - margin))).sum::<f64>() / n.len() as f64;
        pos + neg
    })
}

fn ms(x: &[f64], y: &[i64], r: &[f64], yr: &[i64], d: usize, (alpha, beta, base, epsilon): (f64, f64, f64, f64)) -> f64 {
    mean_over_anchors(y, yr, &|i, p, n| {
        let s = |j: usize| sim(x, r, d, i, j);
        let hardest_neg = n.iter().map(|&k| s(k)).fold(f64::NEG_INFINITY, f64::max);
        let hardest_pos = p.iter().map(|&j| s(j)).fold(f64::INFINITY, f64::min);
        let mined_p: Vec<f64> = p.iter().map(|&j| s(j)).filter(|&v| v - epsilon < hardest_neg).collect();
        let mined_n: Vec<f64> = n.iter().map(|&k| s(k)).filter(|&v| v + epsilon > hardest_pos).collect();
        if mined_p.is_empty() || mined_n.is_empty() {
            return 0.0;
        }
        let pull = (1.0 + mined_p.iter().map(|v| (-alpha * (v - base)).exp()).sum::<f64>()).ln() / alpha;
        let push = (1.0 + mined_n.iter().map(|v| (beta * (v - base)).exp()).sum::<f64>()).ln() / beta;
        pull + push
    })
}

/// Mean over every (anchor, reference positive) pair, the negative chosen by the semi-hard rule.
fn triplet_semihard(x: &[f64], y: &[i64], r: &[f64], yr: &[i64], d: usize, margin: f64) -> f64 {
    let (mut total, mut pairs) = (0.0, 0usize);
    for a in 0..y.len() {
        let (p, n) = sets(y, yr, a);
        for &j in &p {
            pairs += 1;
            if n.is_empty() {
                continue;
            }
            let dap = distance(x, r, d, a, j);
            let dist = |k: usize| distance(x, r, d, a, k);
            let beyond = n.iter().map(|&k| dist(k)).filter(|&v| v > dap).fold(f64::INFINITY, f64::min);
            let dan = if beyond.is_finite() { beyond } else { n.iter().map(|&k| dist(k)).fold(f64::NEG_INFINITY, f64::max) };
            total += (dap - dan + margin).max(0.0);
        }
    }
    total / pairs.max(1) as f64
}

/// The engine's value, its gradient with respect to the batch, and whether any gradient reached
/// the reference.
fn engine(loss: &MetricLoss, x: &[f64], y: &[i64], r: &[f64], yr: &[i64], d: usize) -> (f64, Vec<f64>, bool) {
    let device = device();
    let xt = tensor(x, y.len(), d, &device).require_grad();
    let rt = if yr.is_empty() { Tensor::<2>::empty([0, d], &device) } else { tensor(r, yr.len(), d, &device) }.require_grad();
    let out = loss.forward_against(xt.clone(), labels(y, &device), rt.clone(), labels(yr, &device));
    assert_eq!(out.dims(), [1]);
    let value = out.clone().into_scalar::<f32>() as f64;
    let grads = out.backward();
    let gx = xt.grad(&grads).map(to_vec).unwrap_or_else(|| vec![0.0; x.len()]);
    let reached = rt.grad(&grads).map(to_vec).is_some_and(|g| g.iter().any(|&v| v != 0.0));
    (value, gx, reached)
}

/// The batch's labels and the reference set (the batch's values vary under finite differences).
struct Case {
    y: Vec<i64>,
    r: Vec<f64>,
    yr: Vec<i64>,
    d: usize,
}

fn check(what: &str, json: &str, x: &[f64], case: &Case, reference: &dyn Fn(&[f64]) -> f64) -> f64 {
    let loss = LossConfig::from_json(json).unwrap().init(&device());
    let (value, gx, reached) = engine(&loss, x, &case.y, &case.r, &case.yr, case.d);
    let want = reference(x);
    assert!(value.is_finite() && gx.iter().all(|g| g.is_finite()), "{what}: non-finite output");
    assert_close(&format!("{what} value"), value, want, 1e-4, 1e-6);
    let fd = finite_difference(reference, x, 1e-6);
    assert_all_close(&format!("{what} gradient"), &gx, &fd, 1e-4, 1e-7);
    assert!(!reached, "{what}: a gradient reached the reference, which is a constant");
    want
}

/// A batch of 4 classes × 3 and a reference of 5 classes × 5 from the same class centres (the
/// reference's fifth class is not in the batch); one batch anchor relabelled to a class the
/// reference lacks (no positives: it contributes 0 and still counts).
fn data(seed: u64, spread: f64) -> (Vec<f64>, Case) {
    let d = 16;
    let (all, labels) = clustered(seed, 5, 8, d, spread);
    let fifth = labels[4];
    let (mut x, mut y, mut r, mut yr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, &label) in labels.iter().enumerate() {
        let row = &all[i * d..(i + 1) * d];
        if i < 15 && label != fifth {
            x.extend_from_slice(row);
            y.push(label);
        } else if i >= 15 {
            r.extend_from_slice(row);
            yr.push(label);
        }
    }
    y[5] = 1000;
    (x, Case { y, r, yr, d })
}

#[test]
fn contrastive_against_the_reference_matches() {
    let (x, c) = data(1, 1.0);
    for margin in [0.5, 0.1] {
        let json = format!(r#"{{"name":"contrastive","margin":{margin}}}"#);
        let v = check(&format!("contrastive m={margin}"), &json, &x, &c, &|x| contrastive(x, &c.y, &c.r, &c.yr, c.d, margin));
        assert!(v > 0.1, "a real term: {v}");
    }
}

#[test]
fn binomial_against_the_reference_matches() {
    let (x, c) = data(2, 1.0);
    for params in [(2.0, 40.0, 0.5), (1.0, 10.0, 0.2)] {
        let json = format!(r#"{{"name":"binomial","pos_scale":{},"neg_scale":{},"margin":{}}}"#, params.0, params.1, params.2);
        check(&format!("binomial {params:?}"), &json, &x, &c, &|x| binomial(x, &c.y, &c.r, &c.yr, c.d, params));
    }
}

#[test]
fn ms_against_the_reference_matches_with_its_mining() {
    let (x, c) = data(3, 1.2);
    for params in [(2.0, 40.0, 0.5, 0.1), (2.0, 10.0, 0.3, 0.3)] {
        let json = format!(r#"{{"name":"ms","alpha":{},"beta":{},"base":{},"epsilon":{}}}"#, params.0, params.1, params.2, params.3);
        let v = check(&format!("ms {params:?}"), &json, &x, &c, &|x| ms(x, &c.y, &c.r, &c.yr, c.d, params));
        assert!(v > 0.01, "a real term: {v}");
    }
}

#[test]
fn triplet_semihard_against_the_reference_matches() {
    let (x, c) = data(4, 1.2);
    for margin in [0.2, 1.0] {
        let json = format!(r#"{{"name":"triplet_semihard","margin":{margin}}}"#);
        let v = check(&format!("triplet_semihard m={margin}"), &json, &x, &c, &|x| triplet_semihard(x, &c.y, &c.r, &c.yr, c.d, margin));
        assert!(v > 0.01, "a real term: {v}");
    }
}

#[test]
fn no_term_gives_exactly_zero_and_a_zero_gradient() {
    let (x, Case { y, r, yr, d }) = data(5, 1.0);
    // The reference holds one class only: anchors of that class have no negatives, the others no
    // positives; every anchor contributes 0. And an empty reference.
    let one_class: Vec<usize> = (0..yr.len()).filter(|&j| yr[j] == yr[0]).collect();
    let r1: Vec<f64> = one_class.iter().flat_map(|&j| r[j * d..(j + 1) * d].to_vec()).collect();
    let y1: Vec<i64> = one_class.iter().map(|&j| yr[j]).collect();
    for name in LossConfig::REFERENCE_NAMES {
        let loss = LossConfig::from_name(name).unwrap().init(&device());
        for (what, r, yr) in [("one class", &r1[..], &y1[..]), ("empty", &[][..], &[][..])] {
            let (value, gx, _) = engine(&loss, &x, &y, r, yr, d);
            assert_eq!(value, 0.0, "{name}, {what} reference");
            assert!(gx.iter().all(|&g| g == 0.0), "{name}, {what} reference: zero gradient");
        }
    }
}

#[test]
#[should_panic(expected = "only contrastive, binomial, ms, triplet_semihard can be evaluated against a reference set")]
fn other_losses_have_no_reference_form() {
    let device = Device::flex();
    let loss = LossConfig::from_name("lifted").unwrap().init(&device);
    let x = Tensor::<2>::zeros([2, 4], &device);
    let y = labels(&[0, 1], &device);
    loss.forward_against(x.clone(), y.clone(), x, y);
}
