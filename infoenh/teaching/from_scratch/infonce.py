"""InfoNCE with sentiment-aware negatives, from scratch (chapter 2).

Equals :func:`infoenh.infonce.sentiment_infonce` (``pool="mean"``, ``reduction="mean"``) on the
same inputs; the package adds input checks, float32 under autocast and the multi-modality path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sentiment_classes(y: Tensor, negatives: str) -> Tensor:
    """Labels y [B] -> class [B]; two samples are negatives of each other when classes differ."""
    if negatives == "sign":                   # negative, neutral, positive
        return torch.sign(y)
    if negatives == "acc7":                   # round(clip(y, -3, 3)), ties to even
        return torch.round(y.clamp(-3, 3))
    return torch.arange(len(y))               # "all": every other sample is a negative


def infonce(e: Tensor, z: Tensor, y: Tensor, rows: Tensor, tau: float = 0.1,
            negatives: str = "sign") -> Tensor:
    """e, z [B, k, d], labels y [B], real rows [B, k] bool -> mean of l_i over the
    anchors that have a negative (0 when none has)."""
    w = rows.unsqueeze(-1).float()
    e_bar = (e * w).sum(1) / w.sum(1).clamp(min=1)        # pooled e_i, [B, d]
    z_bar = (z * w).sum(1) / w.sum(1).clamp(min=1)        # pooled z_i, [B, d]
    S = F.normalize(z_bar, dim=1) @ F.normalize(e_bar, dim=1).T / tau  # T(e_j, z_i)
    c = sentiment_classes(y, negatives)
    neg = c[:, None] != c[None, :]                        # neg[i, j]: j is in D_i
    keep = neg | torch.eye(len(y), dtype=torch.bool)      # positive + negatives
    loss = torch.logsumexp(S.masked_fill(~keep, -torch.inf), dim=1) - S.diagonal()
    has = neg.any(dim=1)
    return loss[has].mean() if has.any() else S.new_zeros(())
