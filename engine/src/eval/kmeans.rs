//! k-means with k-means++ seeding and restarts. Assignment steps run on the tensor device
//! (blockwise matmuls); seeding and centre updates, which are sequential or cheap, on the host.

use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

#[derive(Clone, Debug)]
pub struct KMeansConfig {
    pub clusters: usize,
    /// Independent seedings; the run with the lowest inertia wins.
    pub restarts: usize,
    pub max_iterations: usize,
    /// Stop when no point changes cluster, or the inertia improves by less than this fraction.
    pub tolerance: f64,
    pub seed: u64,
}

impl KMeansConfig {
    pub fn new(clusters: usize) -> Self {
        Self { clusters, restarts: 4, max_iterations: 100, tolerance: 1.0e-6, seed: 0 }
    }

    /// Clusters the rows of `data` (`rows × dim`, row-major), computing on `device`.
    pub fn fit(&self, data: &[f32], dim: usize, device: &Device) -> KMeans {
        let rows = data.len() / dim.max(1);
        assert!(self.clusters >= 1 && self.clusters <= rows, "k-means needs 1 ≤ clusters ≤ points");
        let points = Tensor::<2>::from_data(TensorData::new(data.to_vec(), [rows, dim]), device);
        let point_norms: Vec<f32> = data.par_chunks(dim).map(|p| p.iter().map(|v| v * v).sum()).collect();
        let mut best: Option<KMeans> = None;
        for restart in 0..self.restarts.max(1) {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed.wrapping_add(restart as u64));
            let centres = seed_plus_plus(data, dim, self.clusters, &mut rng);
            let run = self.lloyd(data, dim, &points, &point_norms, centres);
            if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
                best = Some(run);
            }
        }
        best.expect("at least one restart")
    }

    fn lloyd(&self, data: &[f32], dim: usize, points: &Tensor<2>, point_norms: &[f32], mut centres: Vec<f32>) -> KMeans {
        let rows = point_norms.len();
        let k = self.clusters;
        let mut assignment = vec![usize::MAX; rows];
        let mut inertia = f64::INFINITY;
        for iteration in 0..self.max_iterations.max(1) {
            let (next, distances) = assign(points, point_norms, &centres, dim, k);
            let next_inertia: f64 = distances.iter().map(|&d| d as f64).sum();
            let changed = next.iter().zip(&assignment).any(|(a, b)| a != b);
            let small_gain = inertia.is_finite() && (inertia - next_inertia) <= self.tolerance * inertia.abs();
            assignment = next;
            inertia = next_inertia;
            // Stop before an update, so the assignment always belongs to the returned centres.
            if !changed || small_gain || iteration + 1 == self.max_iterations {
                break;
            }
            centres = update_centres(data, dim, k, &assignment, &distances);
        }
        KMeans { centres, assignment, inertia }
    }
}

/// A fitted clustering.
#[derive(Clone, Debug)]
pub struct KMeans {
    pub centres: Vec<f32>,
    pub assignment: Vec<usize>,
    /// Sum of squared distances of points to their centres.
    pub inertia: f64,
}

fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means++ (Arthur & Vassilvitskii 2007): each new centre is a point drawn with probability
/// proportional to its squared distance from the nearest centre chosen so far.
fn seed_plus_plus(data: &[f32], dim: usize, k: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f32> {
    let rows = data.len() / dim;
    let first = rng.random_range(0..rows);
    let mut centres = data[first * dim..(first + 1) * dim].to_vec();
    let mut nearest: Vec<f32> = data.par_chunks(dim).map(|p| squared_distance(p, &centres)).collect();
    for _ in 1..k {
        let total: f64 = nearest.iter().map(|&d| d as f64).sum();
        let chosen = if total > 0.0 {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0;
            nearest
                .iter()
                .position(|&d| {
                    acc += d as f64;
                    acc > target
                })
                .unwrap_or(rows - 1)
        } else {
            rng.random_range(0..rows)
        };
        let centre = data[chosen * dim..(chosen + 1) * dim].to_vec();
        nearest.par_iter_mut().zip(data.par_chunks(dim)).for_each(|(d, p)| {
            *d = d.min(squared_distance(p, &centre));
        });
        centres.extend_from_slice(&centre);
    }
    centres
}

/// Nearest centre of every point and the squared distance to it, blockwise on the device.
fn assign(points: &Tensor<2>, point_norms: &[f32], centres: &[f32], dim: usize, k: usize) -> (Vec<usize>, Vec<f32>) {
    let rows = point_norms.len();
    let device = points.device();
    let centre_norms: Vec<f32> = centres.chunks(dim).map(|c| c.iter().map(|v| v * v).sum()).collect();
    let centres_t = Tensor::<2>::from_data(TensorData::new(centres.to_vec(), [k, dim]), &device).transpose();
    let centre_norms = Tensor::<2>::from_data(TensorData::new(centre_norms, [1, k]), &device);
    let block = ((1usize << 24) / k.max(1)).clamp(1, rows);
    let mut assignment = Vec::with_capacity(rows);
    let mut distances = Vec::with_capacity(rows);
    let mut start = 0;
    while start < rows {
        let end = (start + block).min(rows);
        let block_points = points.clone().slice([start..end, 0..dim]);
        // ‖x‖² is the same for every centre of a row: leave it out of the argmin, add it back after.
        let partial = centre_norms.clone() - block_points.matmul(centres_t.clone()) * 2.0;
        let (value, index) = partial.min_dim_with_indices(1);
        let value: Vec<f32> = value.try_into_vec_as::<f32>().expect("f32");
        let index: Vec<i64> = index.try_into_vec_as::<i64>().expect("indices");
        for (i, (v, c)) in value.into_iter().zip(index).enumerate() {
            assignment.push(c as usize);
            distances.push((v + point_norms[start + i]).max(0.0));
        }
        start = end;
    }
    (assignment, distances)
}

/// Means of the assigned points. An emptied cluster takes the point farthest from its centre,
/// as scikit-learn does, so that k clusters remain.
fn update_centres(data: &[f32], dim: usize, k: usize, assignment: &[usize], distances: &[f32]) -> Vec<f32> {
    let mut sums = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (p, &c) in data.chunks(dim).zip(assignment) {
        counts[c] += 1;
        for (s, v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(p) {
            *s += *v as f64;
        }
    }
    let mut far: Vec<usize> = (0..assignment.len()).collect();
    far.sort_unstable_by(|&a, &b| distances[b].total_cmp(&distances[a]));
    let mut donors = far.into_iter();
    let mut centres = vec![0.0f32; k * dim];
    for c in 0..k {
        let target = &mut centres[c * dim..(c + 1) * dim];
        if counts[c] == 0 {
            let donor = donors.next().expect("more points than clusters");
            target.copy_from_slice(&data[donor * dim..(donor + 1) * dim]);
        } else {
            for (t, s) in target.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                *t = (*s / counts[c] as f64) as f32;
            }
        }
    }
    centres
}
