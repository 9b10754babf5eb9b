//! Datasets in their on-disk formats, and the P×K sampler.

pub mod fashion_mnist;
pub mod idx;
pub mod sampler;

pub use sampler::{PkSampler, SamplerError, SamplerState};
