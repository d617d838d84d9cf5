"""FIA from scratch, as chapter 5 writes it: for every ordered pair of modalities a cosine cost,
its Sinkhorn plan, and the barycentric map of the target's rows; each modality's output is its
own rows followed by its maps (eqs. 12-13). The chapter checks it against
:func:`infoenh.fia.fia`; ``tests/test_from_scratch.py`` checks the same on random inputs.
"""
import torch

from .sinkhorn import sinkhorn_log

ORDER = ("text", "audio", "vision")


def one_minus_cos(x, y):
    """Cosine cost between the rows of x [..., n, d] and y [..., m, d]: [..., n, m]."""
    x = x / x.norm(dim=-1, keepdim=True)
    y = y / y.norm(dim=-1, keepdim=True)
    return 1 - x @ y.transpose(-1, -2)


def barycentric_map(P, E_j):
    """Row s: the P-weighted mean of the rows of E_j that row s sends mass to.
    P [..., k, k], E_j [..., k, d] -> [..., k, d]; k P E_j for uniform marginals."""
    return (P @ E_j) / P.sum(-1, keepdim=True)


def fia_scratch(feats, reg, n_iter):
    """feats: modality -> E [B, k, d], no padding. Returns (modality -> E' [B, k, M*d],
    the plans {(i, j): P [B, k, k]} of the ordered pairs)."""
    names = [name for name in ORDER if name in feats]
    enhanced, plans = {}, {}
    for i in names:
        parts = [feats[i]]
        for j in names:
            if j == i:
                continue
            C = one_minus_cos(feats[i], feats[j])              # [B, k, k]
            plans[i, j] = sinkhorn_log(C, reg, n_iter)[0]      # [B, k, k]
            parts.append(barycentric_map(plans[i, j], feats[j]))
        enhanced[i] = torch.cat(parts, dim=-1)                # [B, k, M*d]
    return enhanced, plans
