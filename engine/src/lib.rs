//! dml-engine: metric losses, retrieval metrics and the pieces of a deep metric learning trainer,
//! on Burn with the backend chosen at run time.

pub use burn;
pub use image;

pub mod backend;
pub mod data;
pub mod eval;
pub mod io;
pub mod kernels;
pub mod loss;
pub mod memory;
pub mod model;
pub mod npy;
pub mod png;
pub mod project;
pub mod train;
#[cfg(feature = "pretrained")]
pub mod weights;
