//! End-to-end tests of `dml metrics`: real .npy files in, a table or one JSON line out, and one
//! clear error line with exit code 2 for every kind of bad input.

use std::fs;
use std::path::Path;
use std::process::Output;

mod common;

use common::{dml, scratch};

/// A .npy file written here byte by byte, independently of the engine's writer.
fn npy(path: &Path, descr: &str, shape: &str, payload: &[u8]) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(payload);
    fs::write(path, bytes).unwrap();
}

fn f64s(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i32s(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fashion-mnist-pixels");

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "dml failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.trim_end().lines().count(), 1, "--json prints one line: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn shipped_example_matches_numpy_reference() {
    // examples/fashion-mnist-pixels, scored by a float64 NumPy brute force (stable argsort, so ties
    // go to the lower index): Recall@1/2/4/8 0.892 0.925 0.947 0.961, MAP@R 0.484757868925533,
    // R-Precision 0.569165829145728, 1000 queries.
    let e = format!("{EXAMPLE}/embeddings.npy");
    let l = format!("{EXAMPLE}/labels.npy");
    let v = json(&dml(&["metrics", "--embeddings", &e, "--labels", &l, "--json", "--backend", "cpu"]));
    let r = &v["recall_at_k"];
    for (k, want) in [("1", 0.892), ("2", 0.925), ("4", 0.947), ("8", 0.961)] {
        assert!((r[k].as_f64().unwrap() - want).abs() < 1e-12, "Recall@{k}: {}", r[k]);
    }
    assert!((v["map_at_r"].as_f64().unwrap() - 0.484757868925533).abs() < 1e-6);
    assert!((v["r_precision"].as_f64().unwrap() - 0.569165829145728).abs() < 1e-6);
    assert_eq!(v["queries"], 1000);
    assert_eq!(v["skipped"], 0);
    assert!(v["nmi"].is_null());
}

#[test]
fn table_with_nmi_and_custom_ks() {
    let e = format!("{EXAMPLE}/embeddings.npy");
    let l = format!("{EXAMPLE}/labels.npy");
    let out = dml(&["metrics", "--embeddings", &e, "--labels", &l, "--k", "1,10", "--nmi", "--backend", "cpu"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for row in ["Recall@1 ", "Recall@10", "MAP@R", "R-Precision", "NMI"] {
        assert!(text.contains(row), "missing {row} in\n{text}");
    }
    let nmi: f64 = text.lines().find(|l| l.contains("NMI")).unwrap().split_whitespace().last().unwrap().parse().unwrap();
    // scikit-learn KMeans(5, n_init=4) over seeds 0..3 gives 0.508-0.513 on these embeddings.
    assert!((0.45..0.58).contains(&nmi), "NMI {nmi}");
    assert!(String::from_utf8(out.stderr).unwrap().contains("backend: cpu"));
}

#[test]
fn separate_queries_float64_and_int32() {
    let dir = scratch("split");
    // Gallery: 4 unit vectors along axes, labels 0 1 2 3. Queries: near axis 0 (label 0), near
    // axis 1 but labelled 2, and a label absent from the gallery.
    let gallery = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    let queries = [0.9, 0.1, 0.0, 0.0, 0.1, 0.9, 0.3, 0.0, 0.0, 0.0, 0.0, 1.0];
    npy(&dir.join("g.npy"), "<f8", "(4, 4)", &f64s(&gallery));
    npy(&dir.join("gl.npy"), "<i4", "(4,)", &i32s(&[0, 1, 2, 3]));
    npy(&dir.join("q.npy"), "<f8", "(3, 4)", &f64s(&queries));
    npy(&dir.join("ql.npy"), "<i4", "(3,)", &i32s(&[0, 2, 9]));
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let v = json(&dml(&[
        "metrics",
        "--embeddings",
        &p("g.npy"),
        "--labels",
        &p("gl.npy"),
        "--query-embeddings",
        &p("q.npy"),
        "--query-labels",
        &p("ql.npy"),
        "--k",
        "1,2",
        "--json",
        "--backend",
        "cpu",
    ]));
    assert_eq!(v["queries"], 2);
    assert_eq!(v["skipped"], 1);
    assert_eq!(v["recall_at_k"]["1"], 0.5);
    assert_eq!(v["recall_at_k"]["2"], 1.0);
    // Query 1 finds its only relevant item at rank 2: AP 0; query 0 at rank 1: AP 1.
    assert_eq!(v["map_at_r"], 0.5);
    fs::remove_dir_all(dir).unwrap();
}

/// Runs dml and checks the one-line error: names the file, says what is wrong, exit code 2.
fn assert_bad(args: &[&str], file: &str, what: &str) {
    let out = dml(args);
    assert_eq!(out.status.code(), Some(2), "{args:?} should fail with 2");
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("backend:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    let line = lines[0];
    assert!(line.starts_with(&format!("error: {file}: ")), "{line}");
    assert!(line.contains(what), "expected `{what}` in: {line}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn bad_inputs_give_one_clear_error() {
    let dir = scratch("bad");
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    npy(&dir.join("e.npy"), "<f4", "(3, 2)", &[0u8; 24]);
    npy(&dir.join("l.npy"), "<i8", "(3,)", &[0u8; 24]);
    npy(&dir.join("l2.npy"), "<i8", "(2,)", &[0u8; 16]);
    npy(&dir.join("u8.npy"), "|u1", "(3, 2)", &[0u8; 6]);
    npy(&dir.join("rank1.npy"), "<f4", "(6,)", &[0u8; 24]);
    npy(&dir.join("rank2labels.npy"), "<i8", "(3, 1)", &[0u8; 24]);
    npy(&dir.join("short.npy"), "<f4", "(3, 2)", &[0u8; 10]);
    let nan: Vec<u8> = [1.0f32, 0.0, f32::NAN, 1.0, 0.5, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    npy(&dir.join("nan.npy"), "<f4", "(3, 2)", &nan);
    fs::write(dir.join("text.npy"), "just text").unwrap();
    // Shapes that claim more than the file holds: one wraps to 0 bytes in unchecked arithmetic.
    npy(&dir.join("wrap.npy"), "<f4", "(4, 4611686018427387904)", &[]);
    npy(&dir.join("claims.npy"), "<f4", "(100000000, 512)", &[0u8; 64]);
    npy(&dir.join("accent.npy"), "éf4", "(3, 2)", &[0u8; 24]);

    let run = |e: &str, l: &str| {
        vec!["metrics".to_string(), "--embeddings".into(), p(e), "--labels".into(), p(l), "--backend".into(), "cpu".into()]
    };
    let check = |e: &str, l: &str, bad: &str, what: &str| {
        let args = run(e, l);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_bad(&args, &p(bad), what);
    };
    check("missing.npy", "l.npy", "missing.npy", "No such file");
    check("text.npy", "l.npy", "text.npy", "not a .npy file");
    check("u8.npy", "l.npy", "u8.npy", "unsupported dtype");
    check("l.npy", "l.npy", "l.npy", "unsupported dtype");
    check("e.npy", "e.npy", "e.npy", "unsupported dtype");
    check("rank1.npy", "l.npy", "rank1.npy", "2-dimensional");
    check("e.npy", "rank2labels.npy", "rank2labels.npy", "1-dimensional");
    check("e.npy", "l2.npy", "l2.npy", "2 labels");
    check("short.npy", "l.npy", "short.npy", "truncated");
    check("nan.npy", "l.npy", "nan.npy", "non-finite value NaN at row 1");
    check("wrap.npy", "l.npy", "wrap.npy", "too large to address");
    check("claims.npy", "l.npy", "claims.npy", "needs 204800000000 bytes, file has 64");
    check("accent.npy", "l.npy", "accent.npy", "unsupported dtype `éf4`");
    fs::remove_dir_all(dir).unwrap();
}
