//! dml-engine: metric losses, retrieval metrics and the pieces of a deep metric learning trainer,
//! on Burn with the backend chosen at run time.

pub use burn;
/// The hand-written kernels (the workspace's `shaders/` crate), re-exported for the command line
/// and benchmarks.
pub use dml_kernels as kernels;
pub use image;

pub mod backend;
pub mod data;
pub mod eval;
pub mod io;
pub mod loss;
pub mod memory;
pub mod model;
pub mod npy;
pub mod png;
pub mod project;
pub mod train;
#[cfg(feature = "pretrained")]
pub mod weights;
