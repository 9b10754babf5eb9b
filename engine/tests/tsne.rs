//! t-SNE against openTSNE 1.0.2 with the same settings (bench/opentsne_reference.py):
//! - ten Gaussian clusters (1,000 points in 10-D, written by bench/make_tsne_data.py): openTSNE
//!   ends at KL divergence 0.6541 with 10-nearest-neighbour preservation 0.474;
//! - 1,000 Fashion-MNIST test embeddings of the default job (every fifth row of a trained run's
//!   embeddings.npy, 64-D, classes overlap): KL 0.8886, preservation 0.525.

use dml_engine::npy;
use dml_engine::project::{Tsne, TsneConfig};

/// The `k` nearest neighbours of each row of an `n × d` matrix (itself excluded).
fn knn(x: &[f64], n: usize, d: usize, k: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| {
            let mut order: Vec<(f64, usize)> =
                (0..n).filter(|&j| j != i).map(|j| ((0..d).map(|c| (x[i * d + c] - x[j * d + c]).powi(2)).sum(), j)).collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0));
            order[..k].iter().map(|&(_, j)| j).collect()
        })
        .collect()
}

/// Runs dml's t-SNE with its defaults on a fixture and checks KL and 10-NN preservation against
/// openTSNE's numbers on the same file; returns each point's 10 nearest neighbours on the map.
fn against_opentsne(fixture: &str, opentsne_kl: f64, opentsne_preservation: f64) -> Vec<Vec<usize>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture);
    let data = npy::read_matrix(&path).unwrap();
    let (n, d) = (data.rows, data.cols);
    let points: Vec<f32> = data.data.iter().map(|&v| v as f32).collect();
    let mut tsne = Tsne::new(&points, n, d, &TsneConfig::default());
    tsne.run(|_, _| {});
    let kl = tsne.kl_divergence();
    assert!((kl - opentsne_kl).abs() < 0.05 * opentsne_kl, "{fixture}: KL {kl:.4} against openTSNE's {opentsne_kl}");

    let (input, map) = (knn(&data.data, n, d, 10), knn(tsne.embedding(), n, 2, 10));
    let preserved: f64 =
        input.iter().zip(&map).map(|(a, b)| a.iter().filter(|j| b.contains(j)).count() as f64 / 10.0).sum::<f64>() / n as f64;
    assert!(
        preserved > 0.95 * opentsne_preservation,
        "{fixture}: 10-NN preservation {preserved:.3} against openTSNE's {opentsne_preservation}"
    );
    println!("{fixture}: dml t-SNE KL {kl:.4}, 10-NN preservation {preserved:.3}");
    map
}

#[test]
fn matches_opentsne_on_gaussian_clusters() {
    let map_neighbours = against_opentsne("tsne_clusters_1000x10.npy", 0.6541, 0.474);
    // The ten clusters (rows i ≡ c mod 10) stay apart: each point's map neighbour is of its cluster.
    let same = map_neighbours.iter().enumerate().filter(|(i, m)| m[0] % 10 == i % 10).count();
    assert_eq!(same, map_neighbours.len(), "points whose nearest map neighbour is in their own cluster");
}

#[test]
fn matches_opentsne_on_fashion_mnist_embeddings() {
    against_opentsne("tsne_fashion_mnist_1000x64.npy", 0.8886, 0.525);
}
