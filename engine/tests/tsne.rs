//! t-SNE against openTSNE: on ten Gaussian clusters (1,000 points in 10-D, written by
//! bench/make_tsne_data.py) openTSNE 1.0.2 with the same settings (bench/opentsne_reference.py)
//! ends at KL divergence 0.6541 with 10-nearest-neighbour preservation 0.474.

use dml_engine::npy;
use dml_engine::project::{Tsne, TsneConfig};

const OPENTSNE_KL: f64 = 0.6541;
const OPENTSNE_PRESERVATION: f64 = 0.474;

/// The `k` nearest neighbours of each row of an `n × d` matrix (itself excluded).
fn knn(x: &[f64], n: usize, d: usize, k: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| {
            let mut order: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| ((0..d).map(|c| (x[i * d + c] - x[j * d + c]).powi(2)).sum(), j))
                .collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0));
            order[..k].iter().map(|&(_, j)| j).collect()
        })
        .collect()
}

#[test]
fn matches_opentsne_on_gaussian_clusters() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tsne_clusters_1000x10.npy");
    let data = npy::read_matrix(std::path::Path::new(path)).unwrap();
    let (n, d) = (data.rows, data.cols);
    let points: Vec<f32> = data.data.iter().map(|&v| v as f32).collect();
    let mut tsne = Tsne::new(&points, n, d, &TsneConfig::default());
    tsne.run(|_, _| {});
    let kl = tsne.kl_divergence();
    assert!((kl - OPENTSNE_KL).abs() < 0.05 * OPENTSNE_KL, "KL {kl:.4} against openTSNE's {OPENTSNE_KL}");

    let (input, map) = (knn(&data.data, n, d, 10), knn(tsne.embedding(), n, 2, 10));
    let preserved: f64 =
        input.iter().zip(&map).map(|(a, b)| a.iter().filter(|j| b.contains(j)).count() as f64 / 10.0).sum::<f64>() / n as f64;
    assert!(preserved > 0.95 * OPENTSNE_PRESERVATION, "10-NN preservation {preserved:.3} against openTSNE's {OPENTSNE_PRESERVATION}");
    // The ten clusters (rows i ≡ c mod 10) stay apart: each point's map neighbour is of its cluster.
    let same = map.iter().enumerate().filter(|(i, m)| m[0] % 10 == i % 10).count();
    assert_eq!(same, n, "points whose nearest map neighbour is in their own cluster");
    println!("dml t-SNE: KL {kl:.4}, 10-NN preservation {preserved:.3}");
}
