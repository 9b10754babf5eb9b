//! Retrieval metrics against a brute-force float64 reference, on data full of exact ties.

mod common;

use common::*;
use dml_engine::burn::tensor::Device;
use dml_engine::eval::{RetrievalConfig, RetrievalMetrics, Selection};
use rand::RngExt;

/// Straight from docs/losses.md: full ranking by (similarity desc, gallery index asc).
fn reference(q: &[f64], ql: &[i64], g: &[f64], gl: &[i64], d: usize, leave_one_out: bool, ks: &[usize]) -> RetrievalMetrics {
    let mut out = RetrievalMetrics::default();
    let mut hits = vec![0usize; ks.len()];
    let (mut map, mut rp) = (0.0, 0.0);
    for i in 0..ql.len() {
        let mut ranked: Vec<(f64, usize)> =
            (0..gl.len()).filter(|&j| !(leave_one_out && j == i)).map(|j| ((0..d).map(|t| q[i * d + t] * g[j * d + t]).sum(), j)).collect();
        ranked.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
        let rel: Vec<bool> = ranked.iter().map(|&(_, j)| gl[j] == ql[i]).collect();
        let r = rel.iter().filter(|&&b| b).count();
        if r == 0 {
            out.skipped += 1;
            continue;
        }
        out.queries += 1;
        for (h, &k) in hits.iter_mut().zip(ks) {
            if rel.iter().take(k).any(|&b| b) {
                *h += 1;
            }
        }
        let mut found = 0;
        let mut ap = 0.0;
        for (pos, &b) in rel.iter().take(r).enumerate() {
            if b {
                found += 1;
                ap += found as f64 / (pos + 1) as f64;
            }
        }
        map += ap / r as f64;
        rp += found as f64 / r as f64;
    }
    let n = out.queries.max(1) as f64;
    out.recall_at_k = ks.iter().zip(&hits).map(|(&k, &h)| (k, h as f64 / n)).collect();
    out.map_at_r = map / n;
    out.r_precision = rp / n;
    out
}

fn assert_same(got: &RetrievalMetrics, want: &RetrievalMetrics, what: &str) {
    assert_eq!((got.queries, got.skipped), (want.queries, want.skipped), "{what}: counts");
    for (k, w) in &want.recall_at_k {
        assert_close(&format!("{what}: Recall@{k}"), got.recall_at_k[k], *w, 0.0, 1e-12);
    }
    assert_close(&format!("{what}: MAP@R"), got.map_at_r, want.map_at_r, 0.0, 1e-12);
    assert_close(&format!("{what}: R-Precision"), got.r_precision, want.r_precision, 0.0, 1e-12);
}

fn cpu() -> Device {
    Device::flex()
}

#[test]
fn hand_computed_example_with_ties() {
    // v1 and v3 are identical; query 0 sees v1 and v3 tied at 0.5 and must rank v1 (lower index)
    // first, so its first hit is at rank 2.
    let x = vec![
        0.5, 0.5, 0.5, 0.5, //
        0.5, 0.5, 0.5, -0.5, //
        0.5, 0.5, -0.5, -0.5, //
        0.5, 0.5, 0.5, -0.5,
    ];
    let y = vec![0, 1, 0, 0];
    for selection in [Selection::Host, Selection::Device] {
        let mut config = RetrievalConfig::new(&[1, 2, 4]);
        config.selection = selection;
        let m = config.evaluate(tensor(&x, 4, 4, &cpu()), &y);
        assert_eq!((m.queries, m.skipped), (3, 1));
        assert_eq!(m.recall_at_k[&1], 0.0);
        assert_eq!(m.recall_at_k[&2], 1.0);
        assert_eq!(m.recall_at_k[&4], 1.0);
        assert_eq!(m.r_precision, 0.5);
        assert_eq!(m.map_at_r, 0.25);
    }
}

#[test]
fn leave_one_out_matches_brute_force() {
    let (n, d) = (90, 8);
    let x = tie_heavy(1, n, d);
    let mut r = rng(2);
    let mut y: Vec<i64> = (0..n).map(|_| r.random_range(0..9)).collect();
    y[5] = 100; // a singleton class: skipped
    let ks = [1, 2, 4, 8, 16, 100];
    let want = reference(&x, &y, &x, &y, d, true, &ks);
    assert!(want.skipped >= 1);
    for selection in [Selection::Host, Selection::Device] {
        for block in [None, Some(1), Some(7), Some(200)] {
            let mut config = RetrievalConfig::new(&ks);
            config.selection = selection;
            config.block_rows = block;
            let got = config.evaluate(tensor(&x, n, d, &cpu()), &y);
            assert_same(&got, &want, &format!("{selection:?}, block {block:?}"));
        }
    }
}

#[test]
fn shallow_depth_with_many_ties_matches_brute_force() {
    // Many small classes and small K: only a few neighbours per query are needed out of a large
    // gallery, so selection must cut through long runs of tied similarities by index.
    let (n, d) = (400, 8);
    let x = tie_heavy(11, n, d);
    let mut r = rng(12);
    let y: Vec<i64> = (0..n).map(|_| r.random_range(0..120)).collect();
    let ks = [1, 2, 3];
    let want = reference(&x, &y, &x, &y, d, true, &ks);
    for selection in [Selection::Host, Selection::Device] {
        let mut config = RetrievalConfig::new(&ks);
        config.selection = selection;
        config.block_rows = Some(64);
        let got = config.evaluate(tensor(&x, n, d, &cpu()), &y);
        assert_same(&got, &want, &format!("{selection:?}"));
    }
}

#[test]
fn separate_queries_match_brute_force() {
    let d = 6;
    let (nq, ng) = (40, 70);
    let q = tie_heavy(3, nq, d);
    let g = tie_heavy(4, ng, d);
    let mut r = rng(5);
    let ql: Vec<i64> = (0..nq).map(|_| r.random_range(0..12)).collect(); // 10, 11 are not in the gallery
    let gl: Vec<i64> = (0..ng).map(|_| r.random_range(0..10)).collect();
    let ks = [1, 10, 20, 30];
    let want = reference(&q, &ql, &g, &gl, d, false, &ks);
    assert!(want.skipped >= 1, "some queries should have no gallery match");
    for selection in [Selection::Host, Selection::Device] {
        let mut config = RetrievalConfig::new(&ks);
        config.selection = selection;
        config.block_rows = Some(9);
        let got = config.evaluate_split(tensor(&q, nq, d, &cpu()), &ql, tensor(&g, ng, d, &cpu()), &gl);
        assert_same(&got, &want, &format!("{selection:?}"));
    }
}

#[test]
fn unnormalised_inputs_rank_by_cosine() {
    // Scaling rows must not change anything: ranking is by cosine similarity.
    let (n, d) = (50, 16);
    let (x, y) = clustered(6, 5, 10, d, 1.2);
    let scaled: Vec<f64> = x.iter().enumerate().map(|(i, v)| v * (1.0 + (i / d) as f64)).collect();
    let config = RetrievalConfig::new(&[1, 2, 4]);
    let a = config.evaluate(tensor(&x, n, d, &cpu()), &y);
    let b = config.evaluate(tensor(&scaled, n, d, &cpu()), &y);
    assert_close("recall@1", b.recall_at_k[&1], a.recall_at_k[&1], 0.0, 1e-12);
    assert_close("map@r", b.map_at_r, a.map_at_r, 0.0, 0.02);
    let want = reference(&x, &y, &x, &y, d, true, &[1, 2, 4]);
    assert_close("recall@2 vs reference", a.recall_at_k[&2], want.recall_at_k[&2], 0.0, 1e-12);
}

#[test]
fn k_beyond_the_gallery_and_all_skipped() {
    let x = tie_heavy(7, 5, 4);
    let config = RetrievalConfig::new(&[1, 100]);
    let m = config.evaluate(tensor(&x, 5, 4, &cpu()), &[0, 0, 1, 1, 1]);
    assert_eq!(m.recall_at_k[&100], 1.0);
    let none = config.evaluate(tensor(&x, 5, 4, &cpu()), &[0, 1, 2, 3, 4]);
    assert_eq!((none.queries, none.skipped), (0, 5));
}
