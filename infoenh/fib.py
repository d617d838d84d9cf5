"""Feature information bottleneck (FIB), paper section 4.1, eqs. 1-3.

For one modality:

    x [B, L, d_in] --Linear--> h [B, L, d] --top-k pool--> e [B, k, d]
    g = sigmoid(W e + b)            gate, in [0, 1]^{k x d}          (eq. 1)
    m_h = 1[g > threshold]          hard mask (threshold 0.5)
    m = m_h * g                     soft mask                        (eq. 2)
    z = e * m                       filtered embedding               (eq. 3)

The hard mask is a step function, so the gate parameters W, b get a gradient only through the
entries where m_h = 1 (there dz/dg = e); a feature switched off receives none.

Straight-through estimator (``straight_through=True``; NOT in the paper, off by default). The
forward pass is unchanged, m_h = 1[g > threshold], but the backward pass differentiates the step
as if it were the identity in g (Bengio, Leonard & Courville 2013):

    m_h = 1[g > threshold] + (g - sg(g))        (sg = stop-gradient; g - sg(g) is exactly 0)
    dz/dg = e * (m_h + g)                       (without it: e * m_h)

so an entry that is switched off (m_h = 0) still gets the gradient e * g and can switch back on;
a kept entry gets e * (1 + g) instead of e. Use it to study the gate's dynamics, not to
reproduce the paper.

Top-k pooling is not specified by the paper. Default (``score="learned"``), as gPool of Gao & Ji
(2019): a learned score s_t = w^T h_t per time step, keep the k best real steps, and scale each
kept row by sigmoid(s_t) so that w is trained by the task loss. ``score="norm"`` ranks steps by
the L2 norm of h_t and applies no scaling (no parameters).

Cost. Only k of the L steps survive top-k pooling, so FIB projects only those. The learned score
is linear in the input: with h = W x + b,

    s_t = w^T (W x_t + b) = (W^T w)^T x_t + w^T b,

so the steps are ranked in input space (one matrix-vector product, [B, L, d_in] -> [B, L]), and
the projection, the score that scales a kept row and everything after them are computed on the
k kept rows only: O(B k d_in d) instead of O(B L d_in d) forward and backward (L = 375 / 500 for
MOSI's audio / vision, k = 16). The outputs and gradients are those of the straightforward
formulation (project all, score, keep); the ranking scores differ from it only by rounding, so
two steps whose scores tie to within rounding may be ranked the other way. With
``score="norm"`` the norm of the projected step is needed: all L steps are still projected for
the ranking, but without autograd (no stored activations, no backward), and the kept rows are
projected again with it.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ._validate import check_mask, check_positive_int, check_tensor

SCORES = ("learned", "norm")


class FIBOutput(NamedTuple):
    """What :class:`FIB` returns. Shapes for a batch of B sequences pooled to k steps of width d."""

    e: Tensor          # [B, k, d]  pooled embedding before the mask (padded rows are 0)
    z: Tensor          # [B, k, d]  filtered embedding e * m_h * g (padded rows are 0)
    mask: Tensor       # [B, k]     bool, True where the row holds a real time step
    gate: Tensor       # [B, k, d]  g = sigmoid(W e + b) (all ones when the gate is off)
    hard: Tensor       # [B, k, d]  m_h = 1[g > threshold] as floats, 0 on pad rows (gate off: 1 on real rows)
    kept_frac: Tensor  # 0-dim      fraction of (real row, feature) entries with m_h = 1
    idx: Tensor        # [B, k]     int64 time index of each kept row in the input, -1 for a pad row


class TopKPool(nn.Module):
    """Keep the k highest-scoring real time steps of each sequence, in time order.

    Padded steps never win. When a sequence has fewer than k real steps the remaining output rows
    are zero and masked out; real rows always come first (``e_mask`` is right-padded).

    Args:
        d: width of the incoming steps.
        k: number of steps to keep (>= 1).
        score: ``"learned"`` (s = w^T h, kept rows scaled by sigmoid(s)) or ``"norm"`` (||h||_2).
    """

    def __init__(self, d: int, k: int, score: str = "learned"):
        super().__init__()
        self.d = check_positive_int(d, "d")
        self.k = check_positive_int(k, "k")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.score = score
        self.w = nn.Linear(d, 1, bias=False) if score == "learned" else None

    def forward(self, h: Tensor, mask: Optional[Tensor] = None, *,
                validate: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
        """h [B, L, d], mask [B, L] bool or None -> e [B, k, d], e_mask [B, k] bool, idx [B, k] int64.

        ``validate=False`` skips the input checks (shape, NaN/inf, mask): for callers that have
        checked ``h`` and ``mask`` themselves.
        """
        if validate:
            check_tensor(h, "h", ndim=3)
            if h.shape[-1] != self.d:
                raise ValueError(f"h has width {h.shape[-1]} but this TopKPool was built for d={self.d}")
            if mask is not None:
                mask = check_mask(mask, "mask", h.shape[:2])
        mask = _mask_on(h, mask)
        s = self.w(h).squeeze(-1) if self.w is not None else h.norm(dim=-1)      # [B, L]
        top, real = self.select(s.detach(), mask)
        e = h.gather(1, top.unsqueeze(-1).expand(-1, -1, h.shape[-1]))           # [B, n, d]
        if self.w is not None:
            e = e * torch.sigmoid(s.gather(1, top)).unsqueeze(-1)                # gPool scaling
        return self.finish(e, top, real)

    def select(self, s: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        """Which steps to keep: scores s [B, L] (no gradient needed), mask [B, L] bool ->
        top [B, n] int64 time indices and real [B, n] bool, n = min(k, L), in time order with
        the real steps first."""
        L = s.shape[1]
        top = s.masked_fill(~mask, float("-inf")).topk(min(self.k, L), dim=1).indices  # [B, n]
        # time order with the real steps first: sort the keys t (real step) and L + t (pad), all distinct
        key = torch.where(mask.gather(1, top), top, top + L).sort(dim=1).values
        return key.remainder(L), key < L

    def finish(self, e: Tensor, top: Tensor, real: Tensor, *, zeroed: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
        """Zero the pad rows of the kept rows e [B, n, d] and pad them to k rows -> (e, e_mask, idx).
        ``zeroed=True``: the caller has zeroed them already (no second pass over e)."""
        B, n, d = e.shape
        if not zeroed:
            e = e * real.unsqueeze(-1).to(e.dtype)
        idx = torch.where(real, top, -1)
        if n < self.k:                                                           # pad up to k rows
            pad = self.k - n
            e = torch.cat([e, e.new_zeros(B, pad, d)], dim=1)
            real = torch.cat([real, real.new_zeros(B, pad)], dim=1)
            idx = torch.cat([idx, idx.new_full((B, pad), -1)], dim=1)
        return e, real, idx


def _mask_on(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    """The padding mask [B, L] bool on x's device (all True when None)."""
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return mask.to(x.device)


class FIB(nn.Module):
    """Feature information bottleneck for one modality: projection, top-k pooling, gated mask.

    Args:
        in_dim: width d_in of the modality's encoder output.
        d: common width after the projection.
        k: number of time steps kept by top-k pooling.
        score: top-k scorer, ``"learned"`` (default) or ``"norm"``; see :class:`TopKPool`.
        threshold: the hard mask keeps a feature where g > threshold (paper: 0.5).
        gate: False turns the mask off, z = e (the paper's "w/o FIB": top-k embeddings only).
        straight_through: beyond the paper, default False. True keeps the forward values but
            back-propagates through the hard mask as if it were g (see the module docstring), so
            switched-off features still get a gradient. No effect when ``gate=False``.

    ``self.proj`` (W, b) and ``self.pool.w`` are the parameters of the formulation above; the
    forward pass only evaluates them on the kept steps (see the module docstring).
    """

    def __init__(self, in_dim: int, d: int, k: int, score: str = "learned", threshold: float = 0.5,
                 gate: bool = True, straight_through: bool = False):
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim")
        check_positive_int(d, "d")
        if not 0.0 <= float(threshold) < 1.0:
            raise ValueError(f"threshold must lie in [0, 1) (the gate is a sigmoid), got {threshold}")
        if not isinstance(straight_through, bool):
            raise TypeError(f"straight_through must be True or False, got {straight_through!r}")
        self.threshold = float(threshold)
        self.straight_through = straight_through
        self.proj = nn.Linear(in_dim, d)
        self.pool = TopKPool(d, k, score)
        self.gate = nn.Linear(d, d) if gate else None

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, *, validate: bool = True) -> FIBOutput:
        """x [B, L, d_in], mask [B, L] bool (True = real step) or None -> :class:`FIBOutput`.

        ``x`` may have any floating dtype; it is cast to the parameters' dtype (float32 unless the
        module was converted), a no-op when they agree. ``validate=False`` skips the input checks
        (shape, dtype, NaN/inf, mask values): for callers such as :class:`infoenh.InfoEnh` that
        checked ``x`` and ``mask`` once at their own entry.
        """
        if validate:
            check_tensor(x, "x", ndim=3, finite=False)
            if x.shape[-1] != self.in_dim:
                raise ValueError(f"x has width {x.shape[-1]} but this FIB was built for in_dim={self.in_dim}")
            if x.shape[1] < 1:
                raise ValueError(f"x has no time steps (shape {tuple(x.shape)})")
            if mask is not None:
                mask = check_mask(mask, "mask", x.shape[:2])
        dtype = self.proj.weight.dtype
        name = "x" if x.dtype == dtype else f"x (cast to {dtype})"
        x = x.to(dtype)                                                # no-op when the dtypes agree
        if validate:                                                   # NaN/inf, or overflow in the cast
            check_tensor(x, name)
        mask = _mask_on(x, mask)
        e, e_mask, idx = self._pool(x, mask)                           # [B, k, d], [B, k], [B, k]
        real = e_mask.unsqueeze(-1)                                    # [B, k, 1]
        if self.gate is None:
            g = torch.ones_like(e)
            hard = real.expand_as(e).to(e.dtype)
            z = e
        else:
            g = torch.sigmoid(self.gate(e))                            # eq. 1
            hard = ((g > self.threshold) & real).to(e.dtype)           # m_h (no gradient), 0 on pad rows
            z = e * (self._mask_for_grad(hard, g) * g)                 # eqs. 2-3, pad rows stay 0
        kept_frac = hard.sum() / (e_mask.sum() * e.shape[-1]).clamp(min=1)
        return FIBOutput(e=e, z=z, mask=e_mask, gate=g, hard=hard, kept_frac=kept_frac, idx=idx)

    def _mask_for_grad(self, hard: Tensor, g: Tensor) -> Tensor:
        """The hard mask [B, k, d] as it enters z: ``hard`` itself (no gradient), or with
        ``straight_through`` the same values with the gradient of g: hard + (g - sg(g)), where
        g - sg(g) is exactly 0, so the values are bit for bit those of ``hard``."""
        if not self.straight_through:
            return hard
        return hard + (g - g.detach())

    def _pool(self, x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``self.pool(self.proj(x), mask)`` evaluated on the kept steps only.

        Ranks the steps without autograd (learned: in input space, s = x (W^T w) + w^T b;
        norm: ||W x + b||), then projects and scores the kept rows x_k with autograd, so the
        outputs and all gradients are those of the full formulation.
        """
        pool = self.pool
        with torch.no_grad():
            if pool.w is not None:
                v = pool.w.weight @ self.proj.weight                    # [1, d_in] = (W^T w)^T
                c = pool.w.weight @ self.proj.bias                      # [1]       = w^T b
                s = (x @ v.to(x.dtype).mT).squeeze(-1) + c.to(x.dtype)  # [B, L]
            else:
                s = self.proj(x).norm(dim=-1)                           # [B, L]
        top, real = pool.select(s, mask)                                # [B, n], [B, n]
        x_k = x.gather(1, top.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # [B, n, d_in]
        h_k = self.proj(x_k)                                            # [B, n, d]
        row = real.unsqueeze(-1).to(h_k.dtype)                          # [B, n, 1]: 0 on pad rows
        if pool.w is not None:
            row = torch.sigmoid(pool.w(h_k)) * row                      # gPool scaling, [B, n, 1]
        # one pass over h_k scales the kept rows and zeroes the pad rows (row is 0 or sigmoid(s))
        return pool.finish(h_k * row, top, real, zeroed=True)
