//! The proxy losses against independent float64 implementations written from `docs/losses.md`
//! ("Proxy losses"): value to 1e-4 relative, gradients with respect to the embeddings and to the
//! proxies W against central finite differences of the float64 value. Batches where some classes
//! are absent, and ArcFace on both of its branches.

mod common;

use common::*;
use dml_engine::burn::tensor::{Device, Tensor};
use dml_engine::loss::{LossConfig, MetricLoss};

/// `x / max(‖x‖, 1e-12)` for each `d`-long row.
fn unit(x: &[f64], d: usize) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            row.iter().map(move |v| v / norm).collect::<Vec<_>>()
        })
        .collect()
}

/// `C[i][r] = x̂_i · ŵ_r`.
fn cosines(x: &[f64], w: &[f64], d: usize) -> Vec<Vec<f64>> {
    let (x, w) = (unit(x, d), unit(w, d));
    x.chunks(d).map(|xi| w.chunks(d).map(|wr| xi.iter().zip(wr).map(|(a, b)| a * b).sum()).collect()).collect()
}

/// `log Σ e^{z}` over a row, stably.
fn logsumexp(z: &[f64]) -> f64 {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// `(1/n) Σ_i CE_i(z)` for logits built per anchor by `logits(i, cosines of i)`.
fn mean_cross_entropy(c: &[Vec<f64>], y: &[i64], logits: &dyn Fn(usize, &[f64]) -> Vec<f64>) -> f64 {
    let n = c.len() as f64;
    c.iter()
        .enumerate()
        .map(|(i, ci)| {
            let z = logits(i, ci);
            logsumexp(&z) - z[y[i] as usize]
        })
        .sum::<f64>()
        / n
}

fn proxy_nca(x: &[f64], w: &[f64], y: &[i64], d: usize, scale: f64) -> f64 {
    let (xu, wu) = (unit(x, d), unit(w, d));
    let c = cosines(x, w, d);
    mean_cross_entropy(&c, y, &|i, _| {
        wu.chunks(d).map(|wc| -scale * xu[i * d..(i + 1) * d].iter().zip(wc).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()).collect()
    })
}

fn norm_softmax(x: &[f64], w: &[f64], y: &[i64], d: usize, temperature: f64) -> f64 {
    mean_cross_entropy(&cosines(x, w, d), y, &|_, ci| ci.iter().map(|v| v / temperature).collect())
}

fn arcface(x: &[f64], w: &[f64], y: &[i64], d: usize, margin_degrees: f64, scale: f64) -> f64 {
    let m = margin_degrees.to_radians();
    mean_cross_entropy(&cosines(x, w, d), y, &|i, ci| {
        let t = y[i] as usize;
        let theta = ci[t].clamp(-1.0, 1.0).acos();
        ci.iter()
            .enumerate()
            .map(|(c, &v)| {
                if c != t {
                    scale * v
                } else if theta <= std::f64::consts::PI - m {
                    scale * (theta + m).cos()
                } else {
                    scale * (v - m * m.sin())
                }
            })
            .collect()
    })
}

/// SoftTriple with `classes` classes of `k` centres and parameters `(la, gamma, margin)`.
#[allow(clippy::too_many_arguments)]
fn soft_triple(x: &[f64], w: &[f64], y: &[i64], d: usize, classes: usize, k: usize, la: f64, gamma: f64, margin: f64) -> f64 {
    mean_cross_entropy(&cosines(x, w, d), y, &|i, ci| {
        (0..classes)
            .map(|c| {
                let centres = &ci[c * k..(c + 1) * k];
                let top = centres.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = centres.iter().map(|v| ((v - top) / gamma).exp()).collect();
                let total: f64 = weights.iter().sum();
                let s: f64 = weights.iter().zip(centres).map(|(p, v)| p / total * v).sum();
                la * (s - if c == y[i] as usize { margin } else { 0.0 })
            })
            .collect()
    })
}

fn proxy_anchor(x: &[f64], w: &[f64], y: &[i64], d: usize, classes: usize, margin: f64, alpha: f64) -> f64 {
    let c = cosines(x, w, d);
    let (mut pull, mut present, mut push) = (0.0, 0usize, 0.0);
    for class in 0..classes {
        let mut pos = vec![0.0];
        let mut neg = vec![0.0];
        for (i, ci) in c.iter().enumerate() {
            if y[i] as usize == class {
                pos.push(-alpha * (ci[class] - margin));
            } else {
                neg.push(alpha * (ci[class] + margin));
            }
        }
        if pos.len() > 1 {
            present += 1;
            pull += logsumexp(&pos);
        }
        push += logsumexp(&neg);
    }
    pull / present.max(1) as f64 + push / classes as f64
}

/// Random proxies: `rows × d`, N(0, 1) from `seed`.
fn random_proxies(seed: u64, rows: usize, d: usize) -> Vec<f64> {
    let mut r = rng(seed);
    (0..rows * d).map(|_| normal(&mut r)).collect()
}

/// The engine's value and its gradients with respect to the embeddings and to W.
fn engine(loss: MetricLoss, x: &[f64], w: &[f64], y: &[i64], d: usize) -> (f64, Vec<f64>, Vec<f64>) {
    let device = device();
    let rows = w.len() / d;
    let loss = loss.with_proxies(tensor(w, rows, d, &device));
    let xt = tensor(x, y.len(), d, &device).require_grad();
    let out = loss.forward(xt.clone(), labels(y, &device));
    assert_eq!(out.dims(), [1]);
    let value = out.clone().into_scalar::<f32>() as f64;
    let grads = out.backward();
    let proxies: Tensor<2> = loss.proxies().expect("a proxy loss has proxies");
    let gx = xt.grad(&grads).map(to_vec).expect("a gradient for the embeddings");
    let gw = proxies.grad(&grads).map(to_vec).expect("a gradient for the proxies");
    (value, gx, gw)
}

/// Value and both gradients of `json`'s loss against `reference(x, w)`.
fn check(what: &str, json: &str, x: &[f64], w: &[f64], y: &[i64], d: usize, reference: &dyn Fn(&[f64], &[f64]) -> f64) -> f64 {
    let loss = LossConfig::from_json(json).unwrap().init(&device());
    let (value, gx, gw) = engine(loss, x, w, y, d);
    let want = reference(x, w);
    assert!(value.is_finite() && gx.iter().chain(&gw).all(|g| g.is_finite()), "{what}: non-finite output");
    assert_close(&format!("{what} value"), value, want, 1e-4, 1e-6);
    let fd_x = finite_difference(&|x| reference(x, w), x, 1e-6);
    assert_all_close(&format!("{what} gradient (embeddings)"), &gx, &fd_x, 1e-4, 1e-7);
    let fd_w = finite_difference(&|w| reference(x, w), w, 1e-6);
    assert_all_close(&format!("{what} gradient (proxies)"), &gw, &fd_w, 1e-4, 1e-7);
    want
}

/// 4 classes of 5 in 16 dimensions, labelled 0, 2, 3 and 5 of `num_classes` = 6: classes 1 and 4
/// are absent.
fn batch(seed: u64) -> (Vec<f64>, Vec<i64>, usize) {
    let (x, y) = clustered(seed, 4, 5, 16, 0.9);
    let mut distinct = y.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let y = y.iter().map(|l| [0, 2, 3, 5][distinct.binary_search(l).unwrap()]).collect();
    (x, y, 16)
}

#[test]
fn proxy_nca_matches_reference() {
    let (x, y, d) = batch(1);
    let w = random_proxies(2, 6, d);
    for scale in [1.0, 3.0] {
        let json = format!(r#"{{"name":"proxy_nca","num_classes":6,"dim":16,"softmax_scale":{scale}}}"#);
        let v = check(&format!("proxy_nca s={scale}"), &json, &x, &w, &y, d, &|x, w| proxy_nca(x, w, &y, d, scale));
        assert!(v > 0.1);
    }
}

#[test]
fn norm_softmax_matches_reference() {
    let (x, y, d) = batch(3);
    let w = random_proxies(4, 6, d);
    for temperature in [0.05, 0.5] {
        let json = format!(r#"{{"name":"norm_softmax","num_classes":6,"dim":16,"temperature":{temperature}}}"#);
        check(&format!("norm_softmax T={temperature}"), &json, &x, &w, &y, d, &|x, w| norm_softmax(x, w, &y, d, temperature));
    }
}

#[test]
fn proxy_anchor_matches_reference_with_absent_classes() {
    let (x, y, d) = batch(5);
    let w = random_proxies(6, 6, d);
    for (margin, alpha) in [(0.1, 32.0), (0.3, 8.0)] {
        let json = format!(r#"{{"name":"proxy_anchor","num_classes":6,"dim":16,"margin":{margin},"alpha":{alpha}}}"#);
        let v = check(&format!("proxy_anchor δ={margin} α={alpha}"), &json, &x, &w, &y, d, &|x, w| {
            proxy_anchor(x, w, &y, d, 6, margin, alpha)
        });
        assert!(v > 0.1);
    }
}

#[test]
fn soft_triple_matches_reference() {
    let (x, y, d) = batch(7);
    let w = random_proxies(8, 6 * 3, d);
    let json = r#"{"name":"soft_triple","num_classes":6,"dim":16,"centers_per_class":3}"#;
    check("soft_triple defaults", json, &x, &w, &y, d, &|x, w| soft_triple(x, w, &y, d, 6, 3, 20.0, 0.1, 0.01));
    let json = r#"{"name":"soft_triple","num_classes":6,"dim":16,"centers_per_class":3,"la":5,"gamma":0.5,"margin":0.2}"#;
    check("soft_triple", json, &x, &w, &y, d, &|x, w| soft_triple(x, w, &y, d, 6, 3, 5.0, 0.5, 0.2));
}

#[test]
fn arcface_matches_reference_on_both_branches() {
    let (x, y, d) = batch(9);
    let w = random_proxies(10, 6, d);
    // A small margin keeps every anchor on the cos(θ + m) branch; at 150° most anchors (θ near
    // 90° for random proxies) take the other one. Both cases must contain each branch they claim.
    for (margin, scale) in [(10.0, 8.0), (150.0, 4.0)] {
        let m = f64::to_radians(margin);
        let c = cosines(&x, &w, d);
        let branches: Vec<bool> = y.iter().enumerate().map(|(i, &t)| c[i][t as usize].acos() <= std::f64::consts::PI - m).collect();
        if margin < 90.0 {
            assert!(branches.iter().all(|&b| b), "margin {margin}: every anchor on the first branch");
        } else {
            assert!(branches.iter().any(|&b| !b), "margin {margin}: some anchor on the second branch");
        }
        let json = format!(r#"{{"name":"arcface","num_classes":6,"dim":16,"margin":{margin},"scale":{scale}}}"#);
        check(&format!("arcface m={margin}°"), &json, &x, &w, &y, d, &|x, w| arcface(x, w, &y, d, margin, scale));
    }
}

#[test]
fn proxies_and_with_proxies() {
    let device = device();
    let loss = LossConfig::from_json(r#"{"name":"soft_triple","num_classes":4,"dim":8,"centers_per_class":2}"#).unwrap().init(&device);
    assert_eq!(loss.proxies().unwrap().dims(), [8, 8], "num_classes·K rows");
    let same = LossConfig::from_json(r#"{"name":"soft_triple","num_classes":4,"dim":8,"centers_per_class":2}"#).unwrap().init(&device);
    assert_eq!(to_vec(loss.proxies().unwrap()), to_vec(same.proxies().unwrap()), "a seed draws the same proxies");
    let w = tensor(&random_proxies(1, 8, 8), 8, 8, &device);
    let replaced = loss.with_proxies(w.clone());
    assert_eq!(to_vec(replaced.proxies().unwrap()), to_vec(w));
    assert!(replaced.proxies().unwrap().is_require_grad(), "still trainable");
    assert!(LossConfig::from_name("ms").unwrap().init(&device).proxies().is_none(), "pair losses have none");
    // The library needs both sizes; a run config may leave them to `dml train` (`sized_for`).
    let missing = LossConfig::from_json(r#"{"name":"proxy_anchor","dim":8}"#).unwrap_err().to_string();
    assert!(missing.contains("proxy_anchor needs num_classes and dim"), "{missing}");
    let unset = LossConfig::from_name("proxy_anchor").unwrap();
    assert_eq!(unset.proxy_sizes(), Some((0, 0)));
    let sized = unset.clone().sized_for(4, 8).unwrap();
    assert_eq!(sized.proxy_sizes(), Some((4, 8)));
    assert_eq!(sized.init(&device).proxies().unwrap().dims(), [4, 8]);
    let given = LossConfig::from_json(r#"{"name":"proxy_anchor","num_classes":4,"dim":8}"#).unwrap();
    assert_eq!(given.clone().sized_for(4, 8).unwrap(), given);
    let refused = given.sized_for(3, 8).unwrap_err();
    assert!(refused.contains("loss.num_classes = 4 but the training split has 3"), "{refused}");
    assert!(std::panic::catch_unwind(|| unset.init(&Device::flex())).is_err(), "unset sizes cannot make proxies");
}
