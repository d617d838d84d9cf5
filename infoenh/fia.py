"""Feature information alignment (FIA), paper section 4.2, Algorithm 1 and eqs. 7-13.

Every ordered pair (i, j) of modalities gets an entropic OT problem per sample, with cost
C = 1 - cos (in [0, 2]) and Sinkhorn's plan P. All pairs of the batch are stacked to
[B, P, n, m] and solved in ONE call to :func:`infoenh.ot.sinkhorn`. Each modality's output is
its own embedding followed by its transported versions (eq. 13), in the fixed order
text, audio, vision (skipping itself and absent modalities):

    E'_text = concat(E_text, E_text->audio, E_text->vision)          [B, k, M*d]

Two readings of "what is transported" ship (compared in the book's chapter 5 and its reproducibility page):

- ``mode="token"`` (default): the k time steps are the points, P in R^{k x k}, and each step of
  modality i is mapped to the barycentre of the steps of j it sends mass to (Courty et al. 2017):
  E_{i->j} = diag(a)^{-1} P E_j, which is k * P E_j with uniform marginals a = 1/k. With padding
  masks the marginals are uniform over the real rows and zero on padded rows; a sample with no
  real row in a modality falls back to uniform marginals (its rows are all zero and masked).
- ``mode="feature"`` (literal Algorithm 1): the d feature columns are the points, P in R^{d x d}
  with uniform marginals 1/d, and E_{i->j} = d * E_i P^T. The factor d makes the rows of d * P
  convex weights (each row of P sums to 1/d), so E_{i->j} is a per-feature average of E_i's own
  values and has the magnitude of E_i; the literal E_i P^T would be d times smaller.

Sinkhorn's stopping rule (``stop=``) and its defaults, shared with :class:`infoenh.InfoEnh`:

- ``"marginal"`` (default): POT's rule, the L2 error of the plan's column sums,
  ||P^T 1 - b||_2 < tol, with tol = 1e-6 (:data:`OT_DEFAULT_TOL`).
- ``"scaling"``: Algorithm 1's rule, the mean absolute change of the scaling vector v over one
  iteration, (1/m) sum_j |v_j(t) - v_j(t-1)| < tol, with the paper's delta = 0.01. The threshold
  is absolute and v grows roughly like exp(min_i C_ij / reg), so the rule is looser than the marginal one at
  moderate reg (e.g. k = 16, d = 8, reg = 0.1: ~28 iterations instead of ~42) but can be the
  stricter one at small reg (reg = 0.05 with d = 128: ~25 instead of ~19).

Both rules are checked after iteration 1 and then every 10 iterations; a problem that has not met
its rule stops at the cap :data:`OT_MAX_ITER` = 100, the default of both :func:`fia` and
InfoEnh's ``ot_iters`` (iterations run and a ``converged`` flag are returned per problem). The
solver stops as soon as the rule is met, so the cap costs nothing on problems that converge: with
k = 16, d = 128 and reg = 0.1 all of them do after 11 iterations, at the start of training and
after it. It matters at small reg: at reg = 0.02, 86% of the problems converge within 50
iterations and 97% within 100, and a step then costs about 1.5x more with the cap at 100.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ._validate import MODALITIES, check_mask, check_modalities, check_number, check_same_batch, check_tensor
from .ot import STOPS as OT_STOPS
from .ot import cosine_cost, sinkhorn, unit_rows

FIA_MODES = ("token", "feature")
OT_DEFAULT_TOL = {"marginal": 1e-6, "scaling": 1e-2}   # POT-style tolerance / the paper's delta
OT_MAX_ITER = 100                                       # Sinkhorn's iteration cap for fia and InfoEnh


class FIAOutput(NamedTuple):
    enhanced: Dict[str, Tensor]   # modality -> [B, k, M*d]: (E_i, E_{i->j}, ...) in text, audio, vision order
    plans: Tensor                 # [B, P, k, k] (token) or [B, P, d, d] (feature), P = M(M-1)
    pairs: List[Tuple[str, str]]  # the ordered pairs (i, j) along dim 1 of plans
    n_iter: Tensor                # [B, P] Sinkhorn iterations run
    converged: Tensor             # [B, P] bool


def _marginal(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, k] bool -> [B, k] weights: uniform over real rows, uniform over all rows if none is real."""
    m = mask.to(dtype)
    n = m.sum(-1, keepdim=True)
    return torch.where(n > 0, m / n.clamp(min=1.0), torch.full_like(m, 1.0 / m.shape[-1]))


def ot_tolerance(stop: str, tol: Optional[float] = None) -> float:
    """The stopping threshold for Sinkhorn's rule ``stop``: ``tol`` when given (a number >= 0),
    else the rule's default from :data:`OT_DEFAULT_TOL` (1e-6 marginal, 0.01 scaling)."""
    if stop not in OT_STOPS:
        raise ValueError(f"stop must be 'marginal' (POT's marginal-error rule) or 'scaling' (the paper's "
                         f"mean change of the scaling vector), got {stop!r}")
    if tol is None:
        return OT_DEFAULT_TOL[stop]
    return check_number(tol, "tol", ge=0, meaning="Sinkhorn's stopping threshold")


def fia(feats: Dict[str, Tensor], masks: Optional[Dict[str, Tensor]] = None, *, reg: float = 0.1,
        mode: str = "token", max_iter: int = OT_MAX_ITER, tol: Optional[float] = None, stop: str = "marginal",
        detach_plan: bool = False, validate: bool = True) -> FIAOutput:
    """Align every modality to every other one with entropic OT and concatenate (eqs. 12-13).

    Args:
        feats: modality -> [B, k, d]; two or three of "text", "audio", "vision", same B, k, d.
        masks: None, or modality -> [B, k] bool (True = real row) for the same modalities.
            Padded rows are zeroed in the output and carry no transport mass.
        reg: entropic regularisation (the paper's 1/lambda), a finite number > 0.
        mode: ``"token"`` (default) or ``"feature"``, see the module docstring.
        max_iter: Sinkhorn's iteration cap, default :data:`OT_MAX_ITER` (100).
        stop: Sinkhorn's stopping rule, ``"marginal"`` (default, POT's) or ``"scaling"`` (the
            paper's); see the module docstring.
        tol: its threshold, a number >= 0; None (default) takes the rule's default,
            1e-6 for ``"marginal"`` and the paper's delta = 0.01 for ``"scaling"``.
        detach_plan: stop the gradient through the plan (the transported values still get one
            through E_j in token mode and E_i in feature mode).
        validate: ``False`` skips the NaN/inf scans of ``feats`` (shapes are still checked): for
            callers such as :class:`infoenh.InfoEnh` that validated their inputs.

    Returns:
        :class:`FIAOutput`. OT and the outputs are computed in float32 (float64 for float64
        inputs) outside autocast, since a bf16 / fp16 plan would be too coarse.
    """
    if mode not in FIA_MODES:
        raise ValueError(f"mode must be one of {FIA_MODES}, got {mode!r}")
    if not isinstance(feats, dict) or not feats:
        raise TypeError("feats must be a non-empty dict modality -> tensor [B, k, d]")
    check_modalities(feats, "fia feats")
    names = [m for m in MODALITIES if m in feats]
    if len(names) < 2:
        raise ValueError(f"FIA aligns modalities with each other and needs at least two, got {names}")
    for m in names:
        check_tensor(feats[m], f"feats[{m!r}]", ndim=3, finite=validate)
    shapes = {m: tuple(feats[m].shape) for m in names}
    check_same_batch(feats, "fia")
    if len(set(shapes.values())) > 1:
        raise ValueError(f"fia needs every modality as [B, k, d] with the same k and d, got {shapes}")
    B, k, d = shapes[names[0]]
    reg = check_number(reg, "reg", gt=0, meaning="the entropic regularisation")
    tol = ot_tolerance(stop, tol)

    if masks is not None:
        if set(masks) != set(names):
            raise KeyError(f"masks must have the same modalities as feats {names}, got {sorted(masks)}")
        masks = {m: check_mask(masks[m], f"masks[{m!r}]", (B, k)).to(feats[m].device) for m in names}
        feats = {m: feats[m] * masks[m].unsqueeze(-1).to(feats[m].dtype) for m in names}
    # OT runs in float32 or wider and outside autocast: bf16 / fp16 plans would be too coarse
    work = torch.promote_types(feats[names[0]].dtype, torch.float32)
    feats = {m: feats[m].to(work) for m in names}

    pairs = [(i, j) for i in names for j in names if i != j]
    with torch.autocast(device_type=feats[names[0]].device.type, enabled=False):
        if mode == "token":
            tgt = torch.stack([feats[j] for _, j in pairs], dim=1)             # [B, P, k, d]
            # the six k x k costs are blocks of one Gram matrix of the unit-norm rows [B, Mk, Mk]
            # (the values of ot.cosine_cost, with one normalisation and one matmul)
            units = torch.cat([unit_rows(feats[m]) for m in names], dim=1)     # [B, M*k, d]
            gram = units @ units.transpose(-1, -2)
            at = {m: slice(n * k, (n + 1) * k) for n, m in enumerate(names)}
            cost = 1.0 - torch.stack([gram[:, at[i], at[j]] for i, j in pairs], dim=1)  # [B, P, k, k]
            if masks is None:
                a = b = None
                inv_a = torch.full((1, 1, k, 1), float(k), dtype=work, device=tgt.device)
            else:
                w = {m: _marginal(masks[m], work) for m in names}
                a = torch.stack([w[i] for i, _ in pairs], dim=1)               # [B, P, k]
                b = torch.stack([w[j] for _, j in pairs], dim=1)
                inv_a = torch.where(a > 0, 1.0 / a.clamp(min=1e-30), torch.zeros_like(a)).unsqueeze(-1)
            res = sinkhorn(cost, reg, a, b, max_iter=max_iter, tol=tol, stop=stop, detach=detach_plan)
            plan = res.plan.detach() if detach_plan else res.plan
            moved = inv_a * (plan @ tgt)                                       # barycentric map [B, P, k, d]
        else:
            src = torch.stack([feats[i] for i, _ in pairs], dim=1)             # [B, P, k, d]
            tgt = torch.stack([feats[j] for _, j in pairs], dim=1)
            cost = cosine_cost(src.transpose(-1, -2), tgt.transpose(-1, -2))  # [B, P, d, d]
            res = sinkhorn(cost, reg, None, None, max_iter=max_iter, tol=tol, stop=stop, detach=detach_plan)
            plan = res.plan.detach() if detach_plan else res.plan
            moved = d * (src @ plan.transpose(-1, -2))                         # [B, P, k, d]

    if masks is not None:
        moved = moved * torch.stack([masks[i] for i, _ in pairs], 1).unsqueeze(-1).to(work)
    enhanced = {
        i: torch.cat([feats[i]] + [moved[:, p] for p, (s, _) in enumerate(pairs) if s == i], dim=-1)
        for i in names
    }
    return FIAOutput(enhanced=enhanced, plans=plan, pairs=pairs, n_iter=res.n_iter, converged=res.converged)
