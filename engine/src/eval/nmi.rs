//! Normalised mutual information between class labels and a k-means clustering of the
//! embeddings, with arithmetic-mean normalisation (scikit-learn's default).

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::kmeans::KMeansConfig;
use super::retrieval::l2_normalize;

/// `NMI(a, b) = I(a; b) / ((H(a) + H(b)) / 2)`; 1 when both labelings are a single cluster.
/// Sums run in label order, so the result is bit-for-bit reproducible.
pub fn normalized_mutual_information<A: Copy + Ord, B: Copy + Ord>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "labelings differ in length");
    let n = a.len() as f64;
    let mut joint: BTreeMap<(A, B), usize> = BTreeMap::new();
    let mut count_a: BTreeMap<A, usize> = BTreeMap::new();
    let mut count_b: BTreeMap<B, usize> = BTreeMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1;
        *count_a.entry(x).or_default() += 1;
        *count_b.entry(y).or_default() += 1;
    }
    if count_a.len() == count_b.len() && count_a.len() <= 1 {
        return 1.0;
    }
    let entropy = |counts: &mut dyn Iterator<Item = usize>| -> f64 { counts.map(|c| c as f64 / n).map(|p| -p * p.ln()).sum() };
    let mutual: f64 = joint
        .iter()
        .map(|(&(x, y), &c)| {
            let p = c as f64 / n;
            p * (p / ((count_a[&x] as f64 / n) * (count_b[&y] as f64 / n))).ln()
        })
        .sum();
    let normaliser = (entropy(&mut count_a.values().copied()) + entropy(&mut count_b.values().copied())) / 2.0;
    if normaliser <= 0.0 { 1.0 } else { (mutual / normaliser).clamp(0.0, 1.0) }
}

/// k-means with k = number of classes on the L2-normalised embeddings, then NMI with the labels.
pub fn nmi_of_embeddings(embeddings: Tensor<2>, labels: &[i64], seed: u64) -> f64 {
    let [rows, dim] = embeddings.dims();
    assert_eq!(rows, labels.len(), "embeddings and labels differ in length");
    let classes = labels.iter().collect::<std::collections::HashSet<_>>().len();
    if rows == 0 || classes == 0 {
        return 0.0;
    }
    let device = embeddings.device();
    let data: Vec<f32> = l2_normalize(embeddings).try_into_vec_as::<f32>().expect("f32 embeddings");
    let mut config = KMeansConfig::new(classes);
    config.seed = seed;
    let clustering = config.fit(&data, dim, &device);
    normalized_mutual_information(labels, &clustering.assignment)
}
