//! What every loss derives from a batch: similarities, distances, label masks and the masked
//! reductions they are combined with.

use burn::tensor::{Bool, Int, Tensor};

/// Fill value for masked-out entries before a max or a log-sum-exp: finite, so that neither the
/// forward nor the backward pass ever meets an infinity, and far below any real logit.
pub(crate) const MASKED: f32 = -1.0e30;

/// `S = X Xᵀ`.
pub(crate) fn similarity(x: Tensor<2>) -> Tensor<2> {
    x.clone().matmul(x.transpose())
}

/// `D_ij² = max(‖x_i − x_j‖², 1e-12)` from the Gram matrix.
pub(crate) fn squared_distance(x: Tensor<2>, sim: Tensor<2>) -> Tensor<2> {
    let sq_norm = x.powi_scalar(2).sum_dim(1); // [n, 1]
    let sq = sq_norm.clone() + sq_norm.transpose() - sim * 2.0;
    sq.clamp_min(1.0e-12)
}

/// `D_ij = sqrt(max(‖x_i − x_j‖², 1e-12))`.
pub(crate) fn distance(x: Tensor<2>, sim: Tensor<2>) -> Tensor<2> {
    squared_distance(x, sim).sqrt()
}

/// `S_ij = x_i · r_j`: `[n, m]`, the batch against a reference set.
pub(crate) fn similarity_between(x: Tensor<2>, reference: Tensor<2>) -> Tensor<2> {
    x.matmul(reference.transpose())
}

/// `D_ij = sqrt(max(‖x_i − r_j‖², 1e-12))` from `S = X Rᵀ`: `[n, m]`.
pub(crate) fn distance_between(x: Tensor<2>, reference: Tensor<2>, sim: Tensor<2>) -> Tensor<2> {
    let x_norm = x.powi_scalar(2).sum_dim(1); // [n, 1]
    let r_norm = reference.powi_scalar(2).sum_dim(1).transpose(); // [1, m]
    (x_norm + r_norm - sim * 2.0).clamp_min(1.0e-12).sqrt()
}

/// Which pairs of the batch are positives (same label, not self) and negatives.
pub(crate) struct LabelMasks {
    pub pos: Tensor<2, Bool>,
    pub neg: Tensor<2, Bool>,
    /// `[n]`: anchors with at least one positive and at least one negative.
    pub valid: Tensor<1, Bool>,
}

impl LabelMasks {
    pub fn new(labels: Tensor<1, Int>) -> Self {
        let n = labels.dims()[0];
        let device = labels.device();
        let same = labels.clone().unsqueeze_dim::<2>(1).equal(labels.unsqueeze_dim::<2>(0));
        let not_self = Tensor::<2, Bool>::diag_mask([n, n], 0, &device);
        let pos = same.clone().bool_and(not_self);
        let neg = same.bool_not();
        let valid = any_in_row(pos.clone()).bool_and(any_in_row(neg.clone()));
        LabelMasks { pos, neg, valid }
    }

    /// `[n, m]` masks of the batch's labels against a reference set's: no self-exclusion, the
    /// reference never holding the batch itself.
    pub fn against(labels: Tensor<1, Int>, reference_labels: Tensor<1, Int>) -> Self {
        let pos = labels.unsqueeze_dim::<2>(1).equal(reference_labels.unsqueeze_dim::<2>(0));
        let neg = pos.clone().bool_not();
        let valid = any_in_row(pos.clone()).bool_and(any_in_row(neg.clone()));
        LabelMasks { pos, neg, valid }
    }
}

/// What the losses' `forward_against` share: `loss(X, R, masks)` with the reference detached (a
/// constant: no gradient flows into it) and the label masks without self-exclusion; an empty
/// reference has no term at all.
pub(crate) fn against(
    embeddings: Tensor<2>,
    labels: Tensor<1, Int>,
    reference: Tensor<2>,
    reference_labels: Tensor<1, Int>,
    loss: impl FnOnce(Tensor<2>, Tensor<2>, LabelMasks) -> Tensor<1>,
) -> Tensor<1> {
    if reference.dims()[0] == 0 {
        return no_term(embeddings);
    }
    loss(embeddings, reference.detach(), LabelMasks::against(labels, reference_labels))
}

/// The loss of a batch without any term against an empty reference set: exactly 0, connected to
/// the embeddings (zero gradient) so that it can be added to a loss or differentiated alone.
fn no_term(embeddings: Tensor<2>) -> Tensor<1> {
    let everywhere = Tensor::<2, Bool>::full(embeddings.dims(), true, &embeddings.device());
    embeddings.mask_fill(everywhere, 0.0).sum()
}

/// `[n, m] -> [n]`: whether each row has a true entry.
pub(crate) fn any_in_row(mask: Tensor<2, Bool>) -> Tensor<1, Bool> {
    mask.any_dim(1).squeeze_dim(1)
}

/// `[n, m] -> [n]`: number of true entries per row, as floats.
pub(crate) fn count_in_row(mask: Tensor<2, Bool>) -> Tensor<1> {
    mask.float().sum_dim(1).squeeze_dim(1)
}

/// Row-wise `log Σ_{j: mask_ij} exp(z_ij)`, stable. With `with_one`, `log(1 + Σ ...)`.
/// Rows without a masked-in entry give `MASKED`-scale finite values (or 0 with `with_one`):
/// callers zero them through their own validity mask.
pub(crate) fn masked_logsumexp(z: Tensor<2>, mask: Tensor<2, Bool>, with_one: bool) -> Tensor<1> {
    let z = z.mask_fill(mask.clone().bool_not(), MASKED);
    // The shift carries no gradient: the log-sum-exp's derivative is the softmax either way.
    let mut shift = z.clone().detach().max_dim(1); // [n, 1]
    if with_one {
        shift = shift.clamp_min(0.0);
    }
    let mut total = (z - shift.clone()).exp().mask_fill(mask.bool_not(), 0.0).sum_dim(1);
    if with_one {
        total = total + (shift.clone().neg()).exp();
    }
    // Rows with nothing in them have total 0 (or exp(-shift) > 0 with `with_one`); keep the log
    // finite so that masked-out rows cannot poison the backward pass.
    (total.clamp_min(f32::MIN_POSITIVE).log() + shift).squeeze_dim(1)
}

/// Mean over all `n` anchors of `per_anchor`, where invalid anchors contribute exactly 0.
pub(crate) fn mean_over_anchors(per_anchor: Tensor<1>, valid: Tensor<1, Bool>) -> Tensor<1> {
    per_anchor.mask_fill(valid.bool_not(), 0.0).mean()
}

/// For each row of `sorted` (ascending), the number of entries `<= query`, for every query of the
/// same row: a vectorised binary search, `[r, c]` × `[r, q]` → `[r, q]`.
pub(crate) fn count_at_most(sorted: Tensor<2>, queries: Tensor<2>) -> Tensor<2, Int> {
    let [rows, cols] = sorted.dims();
    let q = queries.dims()[1];
    let device = sorted.device();
    // Invariant: the answer lies in [lo, hi].
    let mut lo = Tensor::<2, Int>::zeros([rows, q], &device);
    let mut hi = Tensor::<2, Int>::full([rows, q], cols as i64, &device);
    let steps = usize::BITS - cols.leading_zeros();
    for _ in 0..steps {
        // mid in [lo, hi - 1] while lo < hi; clamp keeps the gather in bounds once converged.
        let mid = ((lo.clone() + hi.clone()) / 2).clamp(0, cols as i64 - 1);
        let value = sorted.clone().gather(1, mid.clone());
        let at_most = value.lower_equal(queries.clone());
        let open = lo.clone().lower(hi.clone());
        let go_right = at_most.clone().bool_and(open.clone());
        let go_left = at_most.bool_not().bool_and(open);
        lo = lo.mask_where(go_right, mid.clone() + 1);
        hi = hi.mask_where(go_left, mid);
    }
    lo
}
