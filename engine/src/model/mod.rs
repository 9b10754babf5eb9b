//! Embedding networks.

mod small_cnn;

pub use small_cnn::{ConvBlock, SmallCnn, SmallCnnConfig};
