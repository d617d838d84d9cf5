"""Sequence pooling with padding masks: how a host turns a sequence ``[B, L, d]`` into ``[B, d]``.

Masks are bool ``[B, L]``, True at real steps. A row with no real step pools to zeros (mean) or to
step 0 (last/first), so a fully padded sequence never produces NaN.
"""
from __future__ import annotations

import torch
from torch import Tensor

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


def pool(h: Tensor, mask: Tensor | None, how: str) -> Tensor:
    """Dispatch on ``how`` in ``POOLS``."""
    if how == "mean":
        return masked_mean(h, mask)
    if how == "last":
        return last_valid(h, mask)
    if how == "first":
        return first_valid(h, mask)
    raise ValueError(f"unknown pooling {how!r}; choose one of {POOLS}")
