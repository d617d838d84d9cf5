"""Sentiment-aware InfoNCE between the unfiltered embedding e and the filtered one z
(paper section 4.1, eqs. 4-5), the mutual-information term of the FIB loss.

As this project reads eq. 5 (with the typo fixed: eq. 4 already applies exp(), eq. 5 applies it
again; here exp() is applied once), for anchor i with pooled vectors e_i, z_i:

    s(a, b) = cos(a, b) / tau
    loss_i  = -log  exp(s(e_i, z_i)) / ( exp(s(e_i, z_i)) + sum_{j in N(i)} exp(s(e_j, z_i)) )

N(i) are the in-batch samples whose sentiment differs from sample i (eq. 5 pairs the negatives
e_j^- with the anchor z^i). The positive stays in the denominator (standard InfoNCE of van den
Oord et al. 2018), so loss_i >= 0. An anchor with no negative in its batch contributes 0 and is
counted in ``n_no_negative``.

Reduction over the anchors (``reduction=``):

- ``"mean"`` (default): the mean of loss_i over the anchors that have at least one negative (0 when
  none has). The term then has the scale of one anchor's loss whatever the batch size, so the
  weight alpha = 0.5 of eq. 6 means the same at batch 16 as at batch 64.
- ``"sum"``: eq. 5 as printed, the sum of loss_i over all anchors (those without a negative add 0).
  It is n_with_negatives times the mean, e.g. up to 16x at batch 16, so alpha's effective weight
  grows with the batch size.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import check_mask, check_number, check_tensor

NEGATIVES = ("sign", "acc7", "all")
POOLS = ("mean", "flatten")
REDUCTIONS = ("mean", "sum")


class InfoNCEResult(NamedTuple):
    loss: Tensor        # 0-dim, mean (default) or sum of loss_i over anchors with at least one negative
    n_no_negative: int  # anchors whose batch held no negative (they contribute 0)
    n_anchors: int      # all anchors, B


def sentiment_class(labels: Tensor, mode: str) -> Tensor:
    """Sentiment class of each regression label, [B] -> [B] int64.

    ``"sign"``: three classes, negative (-1), neutral (0, exactly 0.0) and positive (+1); a neutral
    sample is thus a negative for both positive and negative anchors. ``"acc7"``: the Acc-7 class
    round(clip(y, -3, 3)) in {-3, ..., 3}, rounding half to even like numpy (as MMSA's metrics do).
    """
    if mode == "sign":
        return torch.sign(labels).long()
    if mode == "acc7":
        return torch.round(labels.clamp(-3.0, 3.0)).long()   # torch.round is half-to-even
    raise ValueError(f"no sentiment classes for mode {mode!r}; use 'sign' or 'acc7'")


def negative_mask(labels: Optional[Tensor], mode: str = "sign", batch_size: Optional[int] = None, *,
                  validate: bool = True) -> Tensor:
    """Which in-batch samples are negatives for each anchor.

    Args:
        labels: [B] regression labels (sentiment in [-3, 3]); may be None only for ``mode="all"``,
            then ``batch_size`` gives B.
        mode: ``"sign"`` (different class among negative / neutral / positive), ``"acc7"``
            (different Acc-7 class), ``"all"`` (every other sample).
        validate: ``False`` skips the NaN/inf scan of ``labels`` (its shape is still checked).

    Returns:
        [B, B] bool, entry (i, j) True when sample j is a negative for anchor i; the diagonal is False.
    """
    if mode not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {mode!r}")
    if labels is None:
        if mode != "all":
            raise ValueError(f"negatives={mode!r} needs sentiment labels; pass labels [B] or use negatives='all'")
        if batch_size is None:
            raise ValueError("negative_mask(None, 'all') needs batch_size")
        return ~torch.eye(batch_size, dtype=torch.bool)
    check_tensor(labels, "labels", ndim=1, finite=validate)
    B = labels.shape[0]
    if mode == "all":
        return ~torch.eye(B, dtype=torch.bool, device=labels.device)
    c = sentiment_class(labels, mode)
    return c.unsqueeze(1) != c.unsqueeze(0)


def _pool(x: Tensor, mask: Tensor, pool: str) -> Tensor:
    """[..., k, d] with row mask [..., k] -> [..., d] (masked mean) or [..., k*d] (flatten, pads zeroed)."""
    w = mask.unsqueeze(-1).to(x.dtype)
    if pool == "mean":
        return (x * w).sum(-2) / w.sum(-2).clamp(min=1.0)
    return (x * w).flatten(-2)


def sentiment_infonce(e: Tensor, z: Tensor, labels: Optional[Tensor], mask: Optional[Tensor] = None,
                      tau: float = 0.1, negatives: str = "sign", pool: str = "mean", *,
                      reduction: str = "mean", validate: bool = True) -> InfoNCEResult:
    """InfoNCE between e and z with sentiment-aware in-batch negatives.

    Args:
        e: [B, k, d] embedding before the mask (FIB's ``e``).
        z: [B, k, d] filtered embedding (FIB's ``z``).
        labels: [B] regression labels; None is allowed only with ``negatives="all"``.
        mask: [B, k] bool, True for real rows; None means all rows are real.
        tau: temperature, a finite number > 0.
        negatives: ``"sign"``, ``"acc7"`` or ``"all"``, see :func:`negative_mask`.
        pool: ``"mean"`` (masked mean over real rows) or ``"flatten"`` (concatenate the k rows).
        reduction: how the per-anchor losses [B] become one number. ``"mean"`` (default): their
            mean over the anchors with at least one negative, so that alpha keeps its meaning
            whatever the batch size. ``"sum"``: their sum over all anchors, eq. 5 literally
            (= mean * number of anchors with a negative). See the module docstring.
        validate: ``False`` skips the NaN/inf scans of ``e``, ``z`` and ``labels`` (shapes are still
            checked): for callers such as :class:`infoenh.InfoEnh` that validated their inputs.

    Returns:
        :class:`InfoNCEResult`, computed in float32 (float64 for float64 inputs) even under
        autocast. A sample with no real row pools to the zero vector, whose cosine
        with anything is 0; it still takes part as anchor and as negative.
    """
    check_tensor(e, "e", ndim=3, finite=validate)
    check_tensor(z, "z", ndim=3, finite=validate)
    if e.shape != z.shape:
        raise ValueError(f"e and z must have the same shape, got {tuple(e.shape)} and {tuple(z.shape)}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    check_reduction(reduction)
    tau = check_number(tau, "tau", gt=0, meaning="the InfoNCE temperature")
    B, k, _ = e.shape
    mask = torch.ones(B, k, dtype=torch.bool) if mask is None else check_mask(mask, "mask", (B, k))
    mask = mask.to(e.device)
    if labels is not None:
        check_tensor(labels, "labels", ndim=1, finite=validate)
    if labels is not None and labels.shape != (B,):
        raise ValueError(f"labels must have shape ({B},) to match e, got {tuple(labels.shape)}; use labels.view(-1)")
    neg = negative_mask(labels, negatives, batch_size=B, validate=validate).to(e.device)   # [B, B], (i, j)
    loss, n_no_negative = infonce_per_modality(e.unsqueeze(1), z.unsqueeze(1), neg, mask.unsqueeze(1), tau=tau,
                                               pool=pool, reduction=reduction)
    return InfoNCEResult(loss=loss[0], n_no_negative=int(n_no_negative), n_anchors=B)


def infonce_per_modality(e: Tensor, z: Tensor, neg: Tensor, mask: Tensor, *, tau: float, pool: str = "mean",
                         reduction: str = "mean") -> Tuple[Tensor, Tensor]:
    """The InfoNCE term of M modalities at once, without input checks (for validated inputs).

    ``e``, ``z`` [B, M, k, d] (modality m's rows in ``[:, m]``), ``neg`` [B, B] bool from
    :func:`negative_mask`, ``mask`` [B, M, k] bool. Returns ``(loss [M], n_no_negative)``, the
    latter a 0-dim int64 tensor (no host sync). Modality m's loss is exactly what
    :func:`sentiment_infonce` computes on ``e[:, m]``, ``z[:, m]``: the negatives are within a
    modality; stacking only makes the M similarity matrices one batched product [M, B, B].
    """
    B = e.shape[0]
    work = torch.promote_types(e.dtype, torch.float32)          # float32 or wider, outside autocast
    with torch.autocast(device_type=e.device.type, enabled=False):
        pe = F.normalize(_pool(e.to(work), mask, pool), dim=-1, eps=1e-8)     # [B, M, D]
        pz = F.normalize(_pool(z.to(work), mask, pool), dim=-1, eps=1e-8)
        logits = pz.transpose(0, 1) @ pe.permute(1, 2, 0) / tau               # [M, i, j] = s(e_j, z_i)
    keep = neg | torch.eye(B, dtype=torch.bool, device=e.device)
    per_anchor = torch.logsumexp(logits.masked_fill(~keep, float("-inf")), dim=-1) - logits.diagonal(dim1=-2, dim2=-1)
    has_neg = neg.any(dim=1)                                                   # [B]
    n_with = has_neg.sum()
    total = (per_anchor * has_neg.to(per_anchor.dtype)).sum(-1)                # [M]
    loss = total if reduction == "sum" else total / n_with.clamp(min=1).to(total.dtype)
    return loss, B - n_with


def check_reduction(reduction: str) -> str:
    """``reduction`` if it is one of :data:`REDUCTIONS`, else a ValueError that lists them."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' (mean over anchors with a negative, the default) or 'sum' "
                         f"(eq. 5 literally, a sum over anchors), got {reduction!r}")
    return reduction
