"""What chapter 5 (and its section page) measure FIA with, besides :mod:`infoenh.analysis`
(whose ``transported`` cuts E_{i->j} out of FIA's output): the synthetic testbed it aligns, a
masked mean over time, and the effective number of partners of a whole plan."""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor

MODS = ("text", "audio", "vision")


def fia_testbed(n_clips: int, d: int = 16, k: int = 12, device="cpu"):
    """The SYNTHETIC testbed chapter 5 aligns: all three modalities d wide and k long (aligned),
    in different spaces (``heterogeneity=1.0``). Returns (dataset, E, MASK) with E: modality ->
    [n_clips, k, d] float32 and MASK: modality -> [n_clips, k] bool, the training split."""
    from infoenh.data.synthetic import make_synthetic_splits

    ds = make_synthetic_splits(seed=0, aligned=True, sizes=(n_clips, 10, 10), text_dim=d,
                               audio_dim=d, vision_dim=d, text_len=k, heterogeneity=1.0,
                               audio_neg_inf_frac=0.0)
    assert ds.synthetic
    E: Dict[str, Tensor] = {m: torch.from_numpy(ds["train"].features[m]).to(device) for m in MODS}
    MASK = {m: torch.from_numpy(ds["train"].masks[m]).to(device) for m in MODS}
    return ds, E, MASK


def pool(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the real rows: x [B, k, d], mask [B, k] bool -> [B, d]."""
    w = mask.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp(min=1)


def partners(plan: Tensor) -> float:
    """Effective number of partners per source point of plans [..., n, m], one number per plan,
    exp(H(P) - H(a)) (the exponential of the mass-weighted mean row entropy), averaged over the
    plans: 1 for a matching. :func:`infoenh.analysis.plan_effective_partners` gives it per row."""
    a = plan.sum(-1)
    h_p = -(plan * plan.clamp_min(1e-30).log()).sum((-2, -1))
    h_a = -(a * a.clamp_min(1e-30).log()).sum(-1)
    return float((h_p - h_a).exp().mean())
