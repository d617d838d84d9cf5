"""FIB as a small ``nn.Module``, from scratch (chapter 3): projection, top-k pooling, gate, masks.

Equals :class:`infoenh.fib.FIB` (``score="learned"``) with the same weights (:func:`copy_weights`);
the package adds input checks, the norm scorer, the straight-through option and a faster path
that projects only the k kept steps. Assumes every sequence has at least k steps (L >= k).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
from torch import Tensor


class FIBParts(NamedTuple):
    e: Tensor      # [B, k, d] pooled rows before the mask (pad rows 0)
    z: Tensor      # [B, k, d] e * m, the filtered rows
    rows: Tensor   # [B, k] bool, True for a real row
    gate: Tensor   # [B, k, d] g
    hard: Tensor   # [B, k, d] m_h, 0 on pad rows


class MyFIB(nn.Module):
    """x [B, L, d_in], mask [B, L] bool -> :class:`FIBParts` with k rows of width d."""

    def __init__(self, in_dim: int, d: int, k: int, threshold: float = 0.5):
        super().__init__()
        self.k, self.threshold = k, threshold
        self.proj = nn.Linear(in_dim, d)               # h_t = W_p x_t + b_p
        self.w = nn.Linear(d, 1, bias=False)           # s_t = w^T h_t
        self.gate = nn.Linear(d, d)                    # g = sigmoid(W e + b)

    def forward(self, x: Tensor, mask: Tensor) -> FIBParts:
        h = self.proj(x)                                          # [B, L, d]
        s = self.w(h).squeeze(-1)                                 # [B, L]
        top = s.masked_fill(~mask, -torch.inf).topk(self.k).indices.sort().values
        rows = mask.gather(1, top)                                # [B, k]
        top = top.gather(1, (~rows).int().argsort(stable=True))   # real rows first
        rows = mask.gather(1, top)
        scale = torch.sigmoid(s.gather(1, top)) * rows            # gPool: sigma(s_t)
        e = h.gather(1, top[..., None].expand(-1, -1, h.shape[-1])) * scale[..., None]
        g = torch.sigmoid(self.gate(e))
        hard = ((g > self.threshold) & rows[..., None]).float()   # m_h
        return FIBParts(e=e, z=e * (hard * g), rows=rows, gate=g, hard=hard)


def copy_weights(mine: MyFIB, fib: nn.Module) -> MyFIB:
    """Give ``mine`` the weights of a package :class:`infoenh.fib.FIB` (learned score)."""
    mine.proj.load_state_dict(fib.proj.state_dict())
    mine.w.load_state_dict(fib.pool.w.state_dict())
    mine.gate.load_state_dict(fib.gate.state_dict())
    return mine
