//! Evaluation of an embedding: retrieval metrics and clustering quality (NMI).

pub mod kmeans;
pub mod nmi;
pub mod retrieval;

pub use kmeans::{KMeans, KMeansConfig};
pub use nmi::{nmi_of_embeddings, normalized_mutual_information};
pub use retrieval::{RetrievalConfig, RetrievalMetrics, Selection, l2_normalize};
