//! Principal component analysis: the covariance matrix of the centred data and its
//! eigen-decomposition.

use rayon::prelude::*;

use super::eigen::symmetric_eigen;

/// Points projected onto their leading principal axes.
#[derive(Clone, Debug)]
pub struct Pca {
    /// `n × components`, row-major.
    pub coordinates: Vec<f64>,
    pub components: usize,
    /// Variance along each kept axis.
    pub variances: Vec<f64>,
    /// The fraction of the total variance each kept axis explains.
    pub explained: Vec<f64>,
    /// The kept axes, `components × d`, row-major, each with its largest entry positive.
    pub axes: Vec<f64>,
}

impl Pca {
    /// Each point's first two coordinates, as a 2-D map (0 on the second axis when only one was
    /// kept).
    pub fn plane(&self) -> Vec<[f64; 2]> {
        let c = self.components;
        self.coordinates.chunks_exact(c.max(1)).map(|p| [p.first().copied().unwrap_or(0.0), if c > 1 { p[1] } else { 0.0 }]).collect()
    }
}

/// PCA of the `n × d` row-major `data` onto `components` axes.
pub fn pca(data: &[f32], n: usize, d: usize, components: usize) -> Pca {
    assert_eq!(data.len(), n * d, "data is n × d");
    assert!(components <= d, "at most d = {d} components");
    let mut mean = vec![0.0f64; d];
    for row in data.chunks_exact(d) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    // Σ (x − μ)(x − μ)ᵀ over row chunks, summed in a fixed order.
    let partial: Vec<Vec<f64>> = data
        .par_chunks(d * 256)
        .map(|rows| {
            let mut c = vec![0.0f64; d * d];
            let mut centred = vec![0.0f64; d];
            for row in rows.chunks_exact(d) {
                for ((c, &x), m) in centred.iter_mut().zip(row).zip(&mean) {
                    *c = x as f64 - m;
                }
                for i in 0..d {
                    let xi = centred[i];
                    let line = &mut c[i * d..i * d + i + 1];
                    for (slot, &xj) in line.iter_mut().zip(&centred[..=i]) {
                        *slot += xi * xj;
                    }
                }
            }
            c
        })
        .collect();
    let mut covariance = vec![0.0f64; d * d];
    for p in &partial {
        for (c, v) in covariance.iter_mut().zip(p) {
            *c += v;
        }
    }
    let denominator = (n.max(2) - 1) as f64;
    for i in 0..d {
        for j in 0..=i {
            let v = covariance[i * d + j] / denominator;
            covariance[i * d + j] = v;
            covariance[j * d + i] = v;
        }
    }
    let (values, vectors) = symmetric_eigen(&covariance, d);
    let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
    let mut axes = vec![0.0f64; components * d];
    for c in 0..components {
        let column: Vec<f64> = (0..d).map(|k| vectors[k * d + c]).collect();
        let largest = column.iter().copied().fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
        let sign = if largest < 0.0 { -1.0 } else { 1.0 };
        for k in 0..d {
            axes[c * d + k] = sign * column[k];
        }
    }
    let coordinates: Vec<f64> = data
        .par_chunks(d)
        .flat_map_iter(|row| {
            let axes = &axes;
            let mean = &mean;
            (0..components).map(move |c| (0..d).map(|k| (row[k] as f64 - mean[k]) * axes[c * d + k]).sum::<f64>())
        })
        .collect();
    let variances: Vec<f64> = values[..components].to_vec();
    let explained = variances.iter().map(|v| if total > 0.0 { v / total } else { 0.0 }).collect();
    Pca { coordinates, components, variances, explained, axes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_takes_the_first_two_coordinates() {
        let two = Pca { coordinates: vec![1.0, 2.0, 3.0, 4.0], components: 2, variances: vec![], explained: vec![], axes: vec![] };
        assert_eq!(two.plane(), [[1.0, 2.0], [3.0, 4.0]]);
        let one = Pca { coordinates: vec![5.0, 6.0], components: 1, variances: vec![], explained: vec![], axes: vec![] };
        assert_eq!(one.plane(), [[5.0, 0.0], [6.0, 0.0]]);
    }

    #[test]
    fn finds_the_axes_of_an_elongated_cloud() {
        // Points spread 10 : 3 : 0.5 along three orthonormal directions in 4-D, off the origin.
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let dirs = [[s, s, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [s, -s, 0.0, 0.0]];
        let scales = [10.0, 3.0, 0.5];
        let mut data = Vec::new();
        let n = 400;
        for i in 0..n {
            let t = i as f64;
            let coef = [(t * 0.37).sin(), (t * 1.91).cos(), (t * 0.73 + 1.0).sin()];
            for k in 0..4 {
                let x: f64 = (0..3).map(|a| scales[a] * coef[a] * dirs[a][k]).sum::<f64>() + [1.0, 2.0, 3.0, 4.0][k];
                data.push(x as f32);
            }
        }
        let p = pca(&data, n, 4, 2);
        for (c, dir) in dirs[..2].iter().enumerate() {
            let cos: f64 = (0..4).map(|k| p.axes[c * 4 + k] * dir[k]).sum();
            assert!(cos.abs() > 0.999, "axis {c}: |cos| = {}", cos.abs());
        }
        assert!(p.explained[0] > 0.85 && p.explained[0] + p.explained[1] > 0.99, "{:?}", p.explained);
        // The coordinates are centred and their variances are the eigenvalues.
        for c in 0..2 {
            let values: Vec<f64> = (0..n).map(|i| p.coordinates[i * 2 + c]).collect();
            let mean = values.iter().sum::<f64>() / n as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            assert!(mean.abs() < 1e-4 && (var - p.variances[c]).abs() < 1e-4 * p.variances[c], "{mean} {var} {}", p.variances[c]);
        }
    }
}
