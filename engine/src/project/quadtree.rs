//! The Barnes-Hut quadtree of t-SNE's repulsive forces: far groups of points act as one point
//! at their centre of mass.

/// A square cell: its points' centre of mass and, unless a leaf, up to four child cells.
#[derive(Clone, Debug)]
struct Node {
    center: [f64; 2],
    half: f64,
    com: [f64; 2],
    count: u32,
    /// Child node ids (0: none; the root is never a child).
    children: [u32; 4],
    /// Leaves: their points, `order[start..end]`.
    start: u32,
    end: u32,
    leaf: bool,
}

pub struct QuadTree {
    nodes: Vec<Node>,
    order: Vec<u32>,
}

/// The repulsive sums for one point: `Σ_j w_ij` and `Σ_j w_ij² (y_i − y_j)`, `w = 1 / (1 + d²)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Repulsion {
    pub z: f64,
    pub force: [f64; 2],
}

impl QuadTree {
    /// The tree over the 2-D points `y` (`n × 2`, row-major).
    pub fn new(y: &[f64]) -> Self {
        let n = y.len() / 2;
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in y.chunks_exact(2) {
            for a in 0..2 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        let center = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
        let half = ((hi[0] - lo[0]).max(hi[1] - lo[1]) / 2.0).max(1e-9) * (1.0 + 1e-9);
        let mut tree = QuadTree { nodes: Vec::with_capacity(2 * n.max(1)), order: (0..n as u32).collect() };
        if n > 0 {
            tree.build(y, 0, n, center, half, 0);
        }
        tree
    }

    fn build(&mut self, y: &[f64], start: usize, end: usize, center: [f64; 2], half: f64, depth: usize) -> u32 {
        let id = self.nodes.len() as u32;
        let mut com = [0.0; 2];
        for &i in &self.order[start..end] {
            com[0] += y[2 * i as usize];
            com[1] += y[2 * i as usize + 1];
        }
        let count = (end - start) as f64;
        com = [com[0] / count, com[1] / count];
        // Coincident points would split forever: past a depth they share a leaf.
        let leaf = end - start <= 1 || depth >= 40;
        self.nodes.push(Node {
            center,
            half,
            com,
            count: (end - start) as u32,
            children: [0; 4],
            start: start as u32,
            end: end as u32,
            leaf,
        });
        if leaf {
            return id;
        }
        let quadrant = |i: u32| -> usize {
            let p = &y[2 * i as usize..2 * i as usize + 2];
            (p[0] >= center[0]) as usize + 2 * (p[1] >= center[1]) as usize
        };
        self.order[start..end].sort_unstable_by_key(|&i| quadrant(i));
        let mut bounds = [start; 5];
        for q in 0..4 {
            bounds[q + 1] = bounds[q] + self.order[bounds[q]..end].iter().take_while(|&&i| quadrant(i) == q).count();
        }
        let quarter = half / 2.0;
        for q in 0..4 {
            if bounds[q + 1] > bounds[q] {
                let child_center =
                    [center[0] + if q & 1 == 1 { quarter } else { -quarter }, center[1] + if q & 2 == 2 { quarter } else { -quarter }];
                let child = self.build(y, bounds[q], bounds[q + 1], child_center, quarter, depth + 1);
                self.nodes[id as usize].children[q] = child;
            }
        }
        id
    }

    /// The repulsion on point `i` at `y_i`, summarising a cell when its width is less than
    /// `theta` times its distance (`theta = 0`: every pair exactly).
    pub fn repulsion(&self, i: usize, yi: [f64; 2], y: &[f64], theta: f64) -> Repulsion {
        let mut out = Repulsion::default();
        if self.nodes.is_empty() {
            return out;
        }
        let mut stack = vec![0u32];
        while let Some(id) = stack.pop() {
            let node = &self.nodes[id as usize];
            if node.leaf {
                for &j in &self.order[node.start as usize..node.end as usize] {
                    if j as usize == i {
                        continue;
                    }
                    let dx = [yi[0] - y[2 * j as usize], yi[1] - y[2 * j as usize + 1]];
                    let w = 1.0 / (1.0 + dx[0] * dx[0] + dx[1] * dx[1]);
                    out.z += w;
                    out.force[0] += w * w * dx[0];
                    out.force[1] += w * w * dx[1];
                }
                continue;
            }
            let dx = [yi[0] - node.com[0], yi[1] - node.com[1]];
            let d2 = dx[0] * dx[0] + dx[1] * dx[1];
            let width = 2.0 * node.half;
            let inside = (yi[0] - node.center[0]).abs() <= node.half && (yi[1] - node.center[1]).abs() <= node.half;
            if !inside && width * width < theta * theta * d2 {
                let count = node.count as f64;
                let w = 1.0 / (1.0 + d2);
                out.z += count * w;
                out.force[0] += count * w * w * dx[0];
                out.force[1] += count * w * w * dx[1];
            } else {
                stack.extend(node.children.iter().copied().filter(|&c| c != 0));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact sums, and `Σ_j w_ij² |y_i − y_j|` (the scale of the force before cancellation).
    fn exact(i: usize, y: &[f64]) -> (Repulsion, f64) {
        let mut out = Repulsion::default();
        let mut magnitude = 0.0;
        for j in 0..y.len() / 2 {
            if j != i {
                let dx = [y[2 * i] - y[2 * j], y[2 * i + 1] - y[2 * j + 1]];
                let w = 1.0 / (1.0 + dx[0] * dx[0] + dx[1] * dx[1]);
                out.z += w;
                out.force[0] += w * w * dx[0];
                out.force[1] += w * w * dx[1];
                magnitude += w * w * dx[0].hypot(dx[1]);
            }
        }
        (out, magnitude)
    }

    #[test]
    fn theta_zero_is_exact_and_larger_thetas_approximate() {
        let y: Vec<f64> = (0..600).map(|k| ((k * 7919 % 1000) as f64 / 50.0).sin() * 10.0 + (k % 7) as f64).collect();
        // Two coincident points and a far outlier.
        let mut y = y;
        y.extend_from_slice(&[1.5, 1.5, 1.5, 1.5, 400.0, -300.0]);
        let tree = QuadTree::new(&y);
        let n = y.len() / 2;
        for i in 0..n {
            let yi = [y[2 * i], y[2 * i + 1]];
            let (reference, magnitude) = exact(i, &y);
            let zero = tree.repulsion(i, yi, &y, 0.0);
            assert!((zero.z - reference.z).abs() < 1e-9 * reference.z.max(1.0));
            for a in 0..2 {
                assert!((zero.force[a] - reference.force[a]).abs() < 1e-9);
            }
            // The approximation error shrinks with theta.
            for (theta, tolerance) in [(0.5, 0.05), (0.2, 0.01)] {
                let approx = tree.repulsion(i, yi, &y, theta);
                let z_error = (approx.z - reference.z).abs();
                assert!(z_error < tolerance * reference.z, "theta {theta}, point {i}: z {} vs {}", approx.z, reference.z);
                let error = (approx.force[0] - reference.force[0]).hypot(approx.force[1] - reference.force[1]);
                assert!(error < tolerance * magnitude, "theta {theta}, point {i}: force error {error} of a force scale {magnitude}");
            }
        }
    }
}
