//! NMI against scikit-learn's numbers, and k-means on separable data.

mod common;

use common::*;
use dml_engine::burn::tensor::Device;
use dml_engine::eval::{KMeansConfig, nmi_of_embeddings, normalized_mutual_information};

#[test]
fn nmi_matches_scikit_learn() {
    // sklearn.metrics.normalized_mutual_info_score (average_method="arithmetic"), 1.9.1.
    let cases: [(&[i64], &[i64], f64); 6] = [
        (&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2], 0.5158037429793889),
        (&[0, 0, 1, 1, 2, 2, 3, 3], &[1, 1, 0, 0, 3, 3, 2, 2], 1.0),
        (&[0, 0, 0, 1, 1, 1, 2, 2, 2], &[0, 0, 1, 1, 1, 2, 2, 2, 0], 0.42061983571430506),
        (&[5, 5, 5, 5], &[1, 2, 3, 4], 0.0),
        (&[1, 1, 1], &[2, 2, 2], 1.0),
        (&[0, 1, 2, 0, 1, 2, 0, 1, 2, 3], &[0, 0, 1, 1, 2, 2, 3, 3, 4, 4], 0.4246521460730576),
    ];
    for (a, b, want) in cases {
        assert_close(&format!("{a:?} vs {b:?}"), normalized_mutual_information(a, b), want, 0.0, 1e-12);
    }
}

#[test]
fn kmeans_recovers_separated_clusters() {
    let (n, d) = (120, 12);
    let (x, y) = clustered(8, 6, 20, d, 0.15);
    let nmi = nmi_of_embeddings(tensor(&x, n, d, &Device::flex()), &y, 0);
    assert_close("NMI of separated clusters", nmi, 1.0, 0.0, 1e-9);
    // Heavily overlapping classes cluster worse, deterministically for a seed.
    let (x2, y2) = clustered(9, 6, 20, d, 2.0);
    let a = nmi_of_embeddings(tensor(&x2, n, d, &Device::flex()), &y2, 3);
    let b = nmi_of_embeddings(tensor(&x2, n, d, &Device::flex()), &y2, 3);
    assert_eq!(a, b);
    assert!(a < 0.9, "overlapping classes: {a}");
}

#[test]
fn kmeans_inertia_is_a_local_optimum() {
    let (n, d) = (80, 5);
    let (x, _) = clustered(10, 4, 20, d, 0.8);
    let data: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let fit = KMeansConfig::new(4).fit(&data, d, &Device::flex());
    assert_eq!(fit.assignment.len(), n);
    // Every point is assigned to its nearest centre, and the inertia is their sum.
    let mut inertia = 0.0;
    for i in 0..n {
        let dists: Vec<f64> = (0..4).map(|c| (0..d).map(|t| (x[i * d + t] - fit.centres[c * d + t] as f64).powi(2)).sum()).collect();
        let best = dists.iter().cloned().fold(f64::MAX, f64::min);
        assert!(dists[fit.assignment[i]] <= best + 1e-5, "point {i} is not at its nearest centre");
        inertia += dists[fit.assignment[i]];
    }
    assert_close("inertia", fit.inertia, inertia, 1e-4, 1e-6);
}
