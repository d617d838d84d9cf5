"""Sequence pooling with padding masks: how a host turns a sequence ``[B, L, d]`` into ``[B, d]``.

Masks are bool ``[B, L]``, True at real steps. A row with no real step pools to zeros (mean,
attention) or to step 0 (last/first), so a fully padded sequence never produces NaN.

``masked_mean``, ``last_valid``, ``first_valid`` have no parameters; :class:`AttentionPool` has a
learned scorer (one weight vector) and is what a host uses after InfoEnh by default (see
:mod:`infoenh.models.base` for why a mean would make FIA's transport plan inert).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

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
        s = self.score(h).squeeze(-1)                                   # [B, L]
        any_real = m.any(dim=1, keepdim=True)                           # [B, 1]
        # masked rows get -inf; a sample with no real row gets finite scores (then weight 0), not NaN
        s = torch.where(m, s, float("-inf"))
        s = torch.where(any_real, s, torch.zeros_like(s))
        alpha = torch.softmax(s.float(), dim=1).to(h.dtype) * any_real.to(h.dtype)   # [B, L]
        return torch.bmm(alpha.unsqueeze(1), h).squeeze(1)                # [B, d]


def pool(h: Tensor, mask: Tensor | None, how: str) -> Tensor:
    """Dispatch on ``how`` in ``POOLS``."""
    if how == "mean":
        return masked_mean(h, mask)
    if how == "last":
        return last_valid(h, mask)
    if how == "first":
        return first_valid(h, mask)
    raise ValueError(f"unknown pooling {how!r}; choose one of {POOLS}")
