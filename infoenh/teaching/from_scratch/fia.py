"""FIA from scratch, as chapter 5 writes it: for every ordered pair of modalities a cosine cost,
its Sinkhorn plan, and the barycentric map of the target's rows; each modality's output is its
own rows followed by its maps (eqs. 12-13). The chapter checks it against
:func:`infoenh.fia.fia`; ``tests/test_from_scratch.py`` checks the same on random inputs.
"""
import torch

from .sinkhorn import sinkhorn_log

ORDER = ("text", "audio", "vision")


def cosine_cost(x, y):
    """C = 1 - cos between the rows of x [..., n, d] and y [..., m, d]: [..., n, m], in [0, 2]."""
    x = x / x.norm(dim=-1, keepdim=True)
    y = y / y.norm(dim=-1, keepdim=True)
    return 1 - x @ y.transpose(-1, -2)


def barycentric_map(P, E_j):
    """Row i of the result is the P-weighted mean of the rows of E_j that row i sends mass to:
    diag(a)^-1 P E_j with a = P 1 (k P E_j for uniform a = 1/k). P [..., k, k], E_j [..., k, d]."""
    return (P @ E_j) / P.sum(-1, keepdim=True)


def fia_scratch(feats, reg, n_iter):
    """feats: modality -> E [B, k, d] (no padding). Returns modality -> [B, k, M*d] and the
    plans of the ordered pairs, {(i, j): P [B, k, k]}."""
    names = [name for name in ORDER if name in feats]
    enhanced, plans = {}, {}
    for i in names:
        parts = [feats[i]]
        for j in names:
            if j == i:
                continue
            C = cosine_cost(feats[i], feats[j])               # [B, k, k]
            plans[i, j] = sinkhorn_log(C, reg, n_iter)[0]     # [B, k, k]
            parts.append(barycentric_map(plans[i, j], feats[j]))
        enhanced[i] = torch.cat(parts, dim=-1)               # [B, k, M*d]
    return enhanced, plans
