//! The exported gallery as the page holds it: embeddings, labels and 2-D map positions; a
//! query's nearest gallery images and where the query lands on the map.

use dml_engine::npy;

pub struct Gallery {
    pub dim: usize,
    /// `len × dim`, row-major, unit length (as dml writes them).
    pub embeddings: Vec<f32>,
    pub labels: Vec<i64>,
    /// One `[x, y]` per gallery image.
    pub map: Vec<[f32; 2]>,
}

/// A gallery image and its cosine similarity to the query.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Neighbour {
    pub index: usize,
    pub score: f32,
}

impl Gallery {
    /// The three `.npy` files of `dml export --web`: embeddings `[n, dim]`, labels `[n]`, map `[n, 2]`.
    pub fn from_npy(embeddings: &[u8], labels: &[u8], map: &[u8]) -> Result<Self, String> {
        let embeddings = npy::parse_matrix(embeddings).map_err(|e| format!("gallery.npy: {e}"))?;
        let labels = npy::parse_labels(labels).map_err(|e| format!("labels.npy: {e}"))?;
        let map = npy::parse_matrix(map).map_err(|e| format!("map.npy: {e}"))?;
        if labels.len() != embeddings.rows || map.rows != embeddings.rows {
            return Err(format!(
                "the gallery files disagree: {} embeddings, {} labels, {} map positions",
                embeddings.rows,
                labels.len(),
                map.rows
            ));
        }
        if map.cols != 2 {
            return Err(format!("map.npy: expected 2 columns, found {}", map.cols));
        }
        Ok(Gallery {
            dim: embeddings.cols,
            embeddings: embeddings.data.iter().map(|&v| v as f32).collect(),
            labels,
            map: map.data.chunks_exact(2).map(|p| [p[0] as f32, p[1] as f32]).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `Err` for a query of another dimension than the gallery's.
    pub fn check_query(&self, query: &[f32]) -> Result<(), String> {
        if query.len() != self.dim {
            return Err(format!("the query has {} dimensions, the gallery {}", query.len(), self.dim));
        }
        Ok(())
    }

    /// The gallery images `rows`, in that order, with their similarity to `query`.
    pub fn scored(&self, query: &[f32], rows: impl IntoIterator<Item = usize>) -> Vec<Neighbour> {
        rows.into_iter().map(|index| Neighbour { index, score: self.similarity(query, index) }).collect()
    }

    fn similarity(&self, query: &[f32], index: usize) -> f32 {
        self.embeddings[index * self.dim..(index + 1) * self.dim].iter().zip(query).map(|(a, b)| a * b).sum()
    }

    /// The `k` gallery images most similar to `query` (a unit vector), most similar first; equal
    /// scores in gallery order.
    pub fn neighbours(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, String> {
        self.check_query(query)?;
        let mut all = self.scored(query, 0..self.len());
        let k = k.min(all.len());
        let by_score = |a: &Neighbour, b: &Neighbour| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index));
        if k < all.len() {
            all.select_nth_unstable_by(k, by_score);
            all.truncate(k);
        }
        all.sort_by(by_score);
        Ok(all)
    }

    /// Where a query with these nearest gallery images lands on the map: the mean of their map
    /// positions weighted by similarity (the way openTSNE places new points before optimising
    /// them). Neighbours with negative similarity carry no weight; if none is positive, the plain
    /// mean.
    pub fn place(&self, neighbours: &[Neighbour]) -> Option<[f32; 2]> {
        if neighbours.is_empty() {
            return None;
        }
        let total: f32 = neighbours.iter().map(|n| n.score.max(0.0)).sum();
        let weight = |n: &Neighbour| if total > 0.0 { n.score.max(0.0) / total } else { 1.0 / neighbours.len() as f32 };
        let mut at = [0.0f32; 2];
        for n in neighbours {
            let p = self.map[n.index];
            at[0] += weight(n) * p[0];
            at[1] += weight(n) * p[1];
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gallery() -> Gallery {
        // Four unit vectors in 2-D at 0°, 90°, 180°, 45°.
        let s = std::f32::consts::FRAC_1_SQRT_2;
        Gallery {
            dim: 2,
            embeddings: vec![1.0, 0.0, 0.0, 1.0, -1.0, 0.0, s, s],
            labels: vec![0, 1, 2, 3],
            map: vec![[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [4.0, 4.0]],
        }
    }

    #[test]
    fn neighbours_are_sorted_by_cosine_similarity() {
        let g = gallery();
        let n = g.neighbours(&[1.0, 0.0], 3).unwrap();
        let indices: Vec<usize> = n.iter().map(|n| n.index).collect();
        assert_eq!(indices, [0, 3, 1]);
        assert!((n[1].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(g.neighbours(&[1.0, 0.0], 10).unwrap().len(), 4);
        assert!(g.neighbours(&[1.0, 0.0, 0.0], 3).is_err());
    }

    #[test]
    fn equal_scores_keep_gallery_order() {
        let g = gallery();
        let n = g.neighbours(&[0.0, 0.0], 4).unwrap();
        assert_eq!(n.iter().map(|n| n.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn a_query_lands_at_the_similarity_weighted_mean() {
        let g = gallery();
        let n = [Neighbour { index: 0, score: 0.75 }, Neighbour { index: 1, score: 0.25 }, Neighbour { index: 2, score: -0.5 }];
        assert_eq!(g.place(&n), Some([2.5, 0.0]));
        let negative = [Neighbour { index: 1, score: -0.2 }, Neighbour { index: 2, score: -0.4 }];
        assert_eq!(g.place(&negative), Some([5.0, 5.0]));
        assert_eq!(g.place(&[]), None);
    }

    #[test]
    fn files_that_disagree_are_refused() {
        let dir = std::env::temp_dir().join(format!("dml-web-gallery-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        npy::write_matrix_f32(&dir.join("e.npy"), 3, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]).unwrap();
        npy::write_labels(&dir.join("l.npy"), &[5, 6, 5]).unwrap();
        npy::write_matrix_f32(&dir.join("m.npy"), 3, 2, &[0.0; 6]).unwrap();
        npy::write_matrix_f32(&dir.join("m3.npy"), 2, 3, &[0.0; 6]).unwrap();
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let g = Gallery::from_npy(&read("e.npy"), &read("l.npy"), &read("m.npy")).unwrap();
        assert_eq!((g.len(), g.dim, g.labels[1]), (3, 2, 6));
        let err = Gallery::from_npy(&read("e.npy"), &read("l.npy"), &read("m3.npy")).err().unwrap();
        assert!(err.contains("disagree"), "{err}");
        let err = Gallery::from_npy(b"not npy", &read("l.npy"), &read("m.npy")).err().unwrap();
        assert!(err.starts_with("gallery.npy:"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
