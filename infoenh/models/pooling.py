"""Sequence pooling with padding masks: how a host turns a sequence ``[B, L, d]`` into ``[B, d]``.

Masks are bool ``[B, L]``, True at real steps. A row with no real step pools to zeros (mean,
attention) or to step 0 (last/first), so a fully padded sequence never produces NaN.

``masked_mean``, ``last_valid``, ``first_valid`` have no parameters; :class:`AttentionPool` has a
learned scorer (one weight vector) and is what a host uses after InfoEnh by default (see
:mod:`infoenh.models.base` for why a mean would make FIA's transport plan inert).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

POOLS = ("mean", "last", "first")


def _mask_or_ones(h: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
    return mask


def masked_mean(h: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over real steps: ``h [B, L, d]``, ``mask [B, L]`` -> ``[B, d]``."""
    m = _mask_or_ones(h, mask).to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def last_valid(h: Tensor, mask: Tensor | None) -> Tensor:
    """The last real step of each row (an LSTM's final state when padding is at the end):
    ``h [B, L, d]`` -> ``[B, d]``."""
    m = _mask_or_ones(h, mask)
    steps = torch.arange(h.shape[1], device=h.device).expand_as(m)
    idx = torch.where(m, steps, torch.zeros_like(steps)).amax(dim=1)
    return h[torch.arange(h.shape[0], device=h.device), idx]


def first_valid(h: Tensor, mask: Tensor | None) -> Tensor:
    """The first real step of each row (BERT's [CLS] position): ``[B, L, d]`` -> ``[B, d]``."""
    m = _mask_or_ones(h, mask)
    steps = torch.arange(h.shape[1], device=h.device).expand_as(m)
    big = torch.full_like(steps, h.shape[1] - 1)
    idx = torch.where(m, steps, big).amin(dim=1)
    return h[torch.arange(h.shape[0], device=h.device), idx]


class AttentionPool(nn.Module):
    """Attention pooling: a learned score per row, softmax over the real rows, weighted sum.

        s_r = w^T h_r                               score of row r        [B, L]
        alpha = softmax_r(s_r), padded rows -inf    weights over real rows [B, L]
        u = sum_r alpha_r h_r                       pooled                 [B, d]

    ``h [B, L, d]``, ``mask [B, L]`` bool or None -> ``[B, d]``. A sample with no real row pools
    to zeros, with zero (not NaN) gradients. The scorer has no bias: softmax ignores a constant.
    Unlike a mean, the result depends on how the rows differ from each other, so it sees what a
    transport plan does to the rows of FIA's output.

    With float32 / float64 rows outside autocast (how the hosts call it) the gradient is computed
    by :class:`_AttentionPoolFn`, the same formulas with one [B, L, d] buffer for dL/dh instead of
    the two outer products and the sum autograd would build; elsewhere autograd runs the same
    forward formulas (:func:`attention_pool_reference`).
    """

    def __init__(self, d: int):
        super().__init__()
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"AttentionPool needs the row width d >= 1, got {d!r}")
        self.d = d
        self.score = nn.Linear(d, 1, bias=False)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        if h.dim() != 3 or h.shape[-1] != self.d:
            raise ValueError(f"AttentionPool expects h [B, L, {self.d}], got shape {tuple(h.shape)}")
        m = _mask_or_ones(h, mask)
        if tuple(m.shape) != tuple(h.shape[:2]):
            raise ValueError(f"mask must have shape {tuple(h.shape[:2])} to match h, got {tuple(m.shape)}")
        w = self.score.weight
        fused = (h.dtype in (torch.float32, torch.float64) and w.dtype == h.dtype
                 and not torch.is_autocast_enabled(h.device.type) and torch.is_grad_enabled())
        if fused:
            return _AttentionPoolFn.apply(h, w, m)
        return attention_pool_reference(h, w, m)


def _weights(s: Tensor, m: Tensor, dtype: torch.dtype) -> Tensor:
    """Softmax of the scores ``s [B, L]`` over the real rows of ``m [B, L]``, in ``dtype``; a
    sample with no real row gets finite scores (then weight 0), not NaN. The softmax runs in
    float32 at least (bf16 / fp16 scores are widened), in float64 for float64 scores."""
    any_real = m.any(dim=1, keepdim=True)                           # [B, 1]
    s = torch.where(m, s, float("-inf"))
    s = torch.where(any_real, s, torch.zeros_like(s))
    wide = torch.promote_types(s.dtype, torch.float32)
    return torch.softmax(s.to(wide), dim=1).to(dtype) * any_real.to(dtype)   # [B, L]


def attention_pool_reference(h: Tensor, w: Tensor, m: Tensor) -> Tensor:
    """:class:`AttentionPool`'s forward written plainly, differentiated by autograd: ``h [B, L, d]``,
    ``w [1, d]`` (the scorer's weight), ``m [B, L]`` bool -> ``[B, d]``."""
    s = F.linear(h, w).squeeze(-1)                                  # [B, L]
    alpha = _weights(s, m, h.dtype)
    return torch.bmm(alpha.unsqueeze(1), h).squeeze(1)              # [B, d]


class _AttentionPoolFn(torch.autograd.Function):
    """Attention pooling with a hand-written backward (the values of :func:`attention_pool_reference`).

    With g = dL/du [B, d]: dL/dalpha_r = h_r . g, the softmax's backward gives
    dL/ds_r = alpha_r (dL/dalpha_r - sum_q alpha_q dL/dalpha_q) (0 on padded rows and for a
    sample with no real row, where alpha is 0), and

        dL/dh_r = alpha_r g + (dL/ds_r) w          one [B, L, d] buffer, filled by two products
        dL/dw   = sum_{b, r} (dL/ds_r) h_r         one matrix-vector product
    """

    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, m: Tensor) -> Tensor:
        s = torch.matmul(h, w[0])                                   # [B, L]
        alpha = _weights(s, m, h.dtype)
        ctx.save_for_backward(h, w, alpha)
        return torch.bmm(alpha.unsqueeze(1), h).squeeze(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        h, w, alpha = ctx.saved_tensors
        ga = torch.bmm(g.unsqueeze(1), h.mT).squeeze(1)                 # [B, L] = h_r . g
        gs = alpha * (ga - (alpha * ga).sum(1, keepdim=True))           # softmax backward
        gh = (alpha.unsqueeze(-1) * g.unsqueeze(1)).addcmul_(gs.unsqueeze(-1), w[0])
        gw = torch.mv(h.reshape(-1, h.shape[-1]).t(), gs.reshape(-1)).unsqueeze(0)
        return gh, gw, None


def pool(h: Tensor, mask: Tensor | None, how: str) -> Tensor:
    """Dispatch on ``how`` in ``POOLS``."""
    if how == "mean":
        return masked_mean(h, mask)
    if how == "last":
        return last_valid(h, mask)
    if how == "first":
        return first_valid(h, mask)
    raise ValueError(f"unknown pooling {how!r}; choose one of {POOLS}")
