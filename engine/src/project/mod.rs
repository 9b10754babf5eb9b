//! 2-D maps of embeddings: PCA and t-SNE.

pub mod affinity;
pub mod eigen;
pub mod pca;
pub mod quadtree;
pub mod tsne;

pub use pca::{Pca, pca};
pub use tsne::{Tsne, TsneConfig};
