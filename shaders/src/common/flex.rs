//! Reading and making tensors of the CPU (flex) backend as plain `f32` slices, for the host
//! operations.

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape};

/// `t` itself where it is already a contiguous `f32` buffer from its first value, else a copy that is.
pub(crate) fn contiguous_f32(t: &FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().contiguous_offsets().is_some_and(|(start, _)| start == 0) { t.clone() } else { t.to_contiguous() }
}

pub(crate) fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(shape), DType::F32)
}

pub(crate) fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}
