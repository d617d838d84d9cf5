"""Feature information alignment (FIA), paper section 4.2, Algorithm 1 and eqs. 7-13.

Every ordered pair (i, j) of modalities gets an entropic OT problem per sample, with cost
C = 1 - cos (in [0, 2]) and Sinkhorn's plan P. The problems of the batch are stacked to
[B, S, n, m] and solved in ONE call to :func:`infoenh.ot.sinkhorn` (S = 3 unordered pairs for
three modalities by default, see "Symmetric pairs" below; S = 6 ordered pairs otherwise). Each
modality's output is its own embedding followed by its transported versions (eq. 13), in the
fixed order text, audio, vision (skipping itself and absent modalities):

    E'_text = concat(E_text, E_text->audio, E_text->vision)          [B, k, M*d]

Two readings of "what is transported" ship (compared in the book's chapter 5 and its reproducibility page):

- ``mode="token"`` (default): the k time steps are the points, P in R^{k x k}, and each step of
  modality i is mapped to the barycentre of the steps of j it sends mass to (Courty et al. 2017):
  E_{i->j} = diag(a)^{-1} P E_j, which is k * P E_j with uniform marginals a = 1/k. With padding
  masks the marginals are uniform over the real rows and zero on padded rows; a sample with no
  real row in a modality falls back to uniform marginals (its rows are all zero and masked).
  Computed as: the costs are blocks of one Gram matrix of the unit rows, and the maps of all
  pairs are one batched product [B, M, (M-1) k, k] @ [B, M, k, d] (for each target j, the plans
  of its sources stacked, their rows scaled by 1/a), with no [B, P, k, d] copy of the targets.
- ``mode="feature"`` (literal Algorithm 1): the d feature columns are the points, P in R^{d x d}
  with uniform marginals 1/d, and E_{i->j} = d * E_i P^T. The factor d makes the rows of d * P
  convex weights (each row of P sums to 1/d), so E_{i->j} is a per-feature average of E_i's own
  values and has the magnitude of E_i; the literal E_i P^T would be d times smaller.

Symmetric pairs (``symmetric=True``, the default; ``InfoEnh(fia_symmetric=...)``). The cosine
cost is symmetric, C_ji = C_ij^T: between rows in token mode, and between feature columns in
feature mode (there C_ij = cosine_cost(E_i^T, E_j^T), whose transpose is cosine_cost(E_j^T,
E_i^T)). The marginals of (j, i) are those of (i, j) swapped (a = w_i and b = w_j: uniform over
the real rows, or 1/d over the features). So the exact entropic plan of (j, i) is the transpose
of that of (i, j), and FIA solves only the pairs (i, j) with i before j and uses P_ij^T for
(j, i), in both modes: half the Sinkhorn problems. ``plans``, ``n_iter`` and ``converged`` still
hold every ordered pair.

This is exact at convergence only. Each Sinkhorn iteration updates the target scaling v first
and the source scaling u last, so after any number of iterations P_ij has exactly the row sums
a and column sums b + delta_ij (delta_ij: the residual whose L2 norm the solver reports as its
error under the default marginal rule), while the plan solved as (j, i) has, once transposed,
exactly the column sums b and row sums a + delta_ji. Their difference D = P_ij - P_ji^T
therefore has column sums delta_ij and row sums -delta_ji: the transposed plan deviates from the
directly solved one by the marginal residuals of the two problems (``symmetric=False`` solves
every ordered pair again). Measured on typical inputs (FIB's outputs of a SYNTHETIC MOSI-shaped
batch at initialisation, k = 16, d = 128, reg = 0.1; every problem stops at iteration 11 with
the defaults max_iter = 100, tol = 1e-6): max |P_ji - P_ij^T| = 4e-13 in float64 and 1e-8 in
float32 (the rounding of entries of about 4e-3); with max_iter = 3 it is 4.9e-5 (about 1 % of
an entry), with max_iter = 1, 1.8e-2. Over those runs and random inputs at reg 0.02-0.1 and
1-30 iterations, ||D||_1 stayed within 0.9-2.3 times the summed L1 residuals of the two
problems (a measurement, not a bound: no constant holds for every cost).

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
FIA_PLANS = ("sinkhorn", "uniform")   # the transport plan: Sinkhorn's, or the uniform control a b^T
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
        detach_plan: bool = False, symmetric: bool = True, validate: bool = True) -> FIAOutput:
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
        symmetric: True (default) solves each unordered pair {i, j} once, as (i, j) with i before
            j in text, audio, vision order, and takes P_ji = P_ij^T; False solves every ordered
            pair. Exact at convergence; see the module docstring for the difference otherwise.
        validate: ``False`` skips the NaN/inf scans of ``feats`` (shapes are still checked): for
            callers such as :class:`infoenh.InfoEnh` that validated their inputs.

    Returns:
        :class:`FIAOutput`, with ``plans``, ``n_iter`` and ``converged`` for every ordered pair
        whatever ``symmetric`` (a transposed pair repeats the iterations of the pair it was
        solved as). OT and the outputs are computed in float32 (float64 for float64 inputs)
        outside autocast, since a bf16 / fp16 plan would be too coarse.
    """
    names, (B, k, d) = _check_feats(feats, validate)
    if mode not in FIA_MODES:
        raise ValueError(f"mode must be one of {FIA_MODES}, got {mode!r}")
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be True or False, got {symmetric!r}")
    reg = check_number(reg, "reg", gt=0, meaning="the entropic regularisation")
    tol = ot_tolerance(stop, tol)
    if masks is not None:
        if set(masks) != set(names):
            raise KeyError(f"masks must have the same modalities as feats {names}, got {sorted(masks)}")
        masks = {m: check_mask(masks[m], f"masks[{m!r}]", (B, k)).to(feats[m].device) for m in names}
        feats = {m: feats[m] * masks[m].unsqueeze(-1).to(feats[m].dtype) for m in names}
    F = torch.stack([feats[m] for m in names], dim=1)                        # [B, M, k, d]
    mask = None if masks is None else torch.stack([masks[m] for m in names], dim=1)  # [B, M, k]
    return align_stacked(F, mask, names, reg=reg, mode=mode, max_iter=max_iter, tol=tol, stop=stop,
                         detach_plan=detach_plan, symmetric=symmetric)


def uniform_plans(cost: Tensor, a: Optional[Tensor], b: Optional[Tensor]) -> Tensor:
    """The uniform (independent) plan ``P = a b^T`` of each problem, ``cost`` [B, S, n, m] giving
    the shape, ``a`` [B, S, n] / ``b`` [B, S, m] the marginals (None: uniform 1/n, 1/m). It has
    the marginals of the OT plan and ignores the cost: in token mode each real row of i then
    receives ``diag(a)^{-1} a b^T E_j = 1 b^T E_j``, the mean of j's real rows."""
    B, S, n, m = cost.shape
    a = cost.new_full((B, S, n), 1.0 / n) if a is None else a
    b = cost.new_full((B, S, m), 1.0 / m) if b is None else b
    return a.unsqueeze(-1) * b.unsqueeze(-2)


def align_stacked(F: Tensor, mask: Optional[Tensor], names: List[str], *, reg: float, mode: str, max_iter: int,
                  tol: float, stop: str, detach_plan: bool, symmetric: bool, plan: str = "sinkhorn") -> FIAOutput:
    """:func:`fia` on embeddings already stacked and checked: no input checks here.

    ``F`` [B, M, k, d] holds modality ``names[n]`` in ``F[:, n]``, with its padded rows zero;
    ``mask`` [B, M, k] bool or None (every row real); ``tol`` resolved (:func:`ot_tolerance`).
    :class:`infoenh.InfoEnh` calls it with FIB's filtered rows, which are zero on padded rows by
    construction, so that the rows stacked once serve both InfoNCE and FIA.
    ``plan="uniform"`` replaces Sinkhorn's plan by :func:`uniform_plans` (the control that keeps
    FIA's width and concatenation but transports nothing specific; ``n_iter`` 0, ``converged`` True).
    """
    B, M, k, d = F.shape
    # OT runs in float32 or wider and outside autocast: bf16 / fp16 plans would be too coarse
    F = F.to(torch.promote_types(F.dtype, torch.float32))
    tab = _pair_table(M, symmetric, F.device)
    with torch.autocast(device_type=F.device.type, enabled=False):
        w = None if mask is None else _marginal(mask, F.dtype)              # [B, M, k]
        if mode == "token":
            cost = _token_costs(F, tab)                                      # [B, S, k, k]
            a, b = (None, None) if w is None else (w[:, tab.src_solved], w[:, tab.tgt_solved])
        else:
            cost = cosine_cost(F[:, tab.src_solved].mT, F[:, tab.tgt_solved].mT)  # [B, S, d, d]
            a = b = None
        if plan == "uniform":
            solved = uniform_plans(cost, a, b)                               # [B, S, n, n], no gradient to the cost
            n_iter = torch.zeros(cost.shape[:2], dtype=torch.int64, device=cost.device)
            conv = torch.ones(cost.shape[:2], dtype=torch.bool, device=cost.device)
        elif plan == "sinkhorn":
            res = sinkhorn(cost, reg, a, b, max_iter=max_iter, tol=tol, stop=stop, detach=detach_plan)
            solved = res.plan.detach() if detach_plan else res.plan          # [B, S, n, n]
            n_iter, conv = res.n_iter, res.converged
        else:
            raise ValueError(f"plan must be one of {FIA_PLANS}, got {plan!r}")
        both = torch.cat([solved, solved.mT], dim=1) if symmetric else solved
        plans = both[:, tab.of_pair] if symmetric else solved                # [B, P, n, n], every ordered pair
        if mode == "token":
            moved = _token_maps(both, F, mask, w, tab)
        else:
            moved = _feature_maps(plans, F, tab)
    pieces = dict(zip(tab.order if mode == "token" else tab.pairs, moved))
    own = F.unbind(1)      # unbind, not F[:, n]: its backward is one stack, not M zero-filled copies of F
    enhanced = {i: torch.cat([own[n]] + [pieces[(p, q)] for p, q in tab.pairs if p == n], dim=-1)
                for n, i in enumerate(names)}
    pairs = [(names[i], names[j]) for i, j in tab.pairs]
    return FIAOutput(enhanced=enhanced, plans=plans, pairs=pairs, n_iter=n_iter[:, tab.solved_of_pair],
                     converged=conv[:, tab.solved_of_pair])


def _check_feats(feats, validate: bool):
    """The modalities of ``feats`` in text, audio, vision order and their common ``(B, k, d)``."""
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
    return names, shapes[names[0]]


class _PairTable(NamedTuple):
    """Index bookkeeping for M modalities (numbers 0..M-1 in text, audio, vision order).

    pairs: the ordered pairs (i, j), i != j, in FIAOutput's order (by source, then target).
    Solved problems: (i, j) with i < j when symmetric, else every ordered pair, S of them; the
    plans are then ``both`` = [solved, solved^T] (symmetric) or ``solved``, [B, S or 2S, n, n].
    """

    symmetric: bool
    pairs: List[Tuple[int, int]]
    src_solved: Tensor      # [S] source modality of each solved problem
    tgt_solved: Tensor      # [S] its target modality
    cost_blocks: Tuple[Tensor, Tensor]   # [S] row and column block of each problem's cost in the Gram matrix
    of_pair: Tensor         # [P] index in ``both`` of each ordered pair's plan
    solved_of_pair: Tensor  # [P] index of the solved problem behind each ordered pair
    order: List[Tuple[int, int]]  # the pairs by target, as token mode's maps return them
    of_order: Tensor        # [P] index in ``both`` of each pair of ``order``
    src_of_order: Tensor    # [P] source modality of each pair of ``order``
    feature_src: Tensor     # [P] source modality of each pair, FIAOutput's order


_TABLES: Dict[Tuple[int, bool, str], _PairTable] = {}


def _pair_table(M: int, symmetric: bool, device: torch.device) -> _PairTable:
    """The :class:`_PairTable` for M modalities, built once per (M, symmetric, device)."""
    key = (M, symmetric, str(device))
    if key not in _TABLES:
        pairs = [(i, j) for i in range(M) for j in range(M) if i != j]
        solved = [(i, j) for i, j in pairs if i < j] if symmetric else pairs
        S = len(solved)

        def where(i, j):  # index of the plan of (i, j) in ``both``
            return solved.index((i, j)) if (i, j) in solved else S + solved.index((j, i))

        # token mode's Gram matrix: rows of modalities 0..M-2 against columns of 1..M-1 when only
        # the pairs i < j are needed, else all against all
        blocks = [(i, j - 1) for i, j in solved] if symmetric else solved
        by_target = [(i, j) for j in range(M) for i in range(M) if i != j]

        def idx(values):
            return torch.tensor(values, dtype=torch.int64, device=device)

        _TABLES[key] = _PairTable(
            symmetric=symmetric, pairs=pairs,
            src_solved=idx([i for i, _ in solved]), tgt_solved=idx([j for _, j in solved]),
            cost_blocks=(idx([r for r, _ in blocks]), idx([c for _, c in blocks])),
            of_pair=idx([where(i, j) for i, j in pairs]),
            solved_of_pair=idx([where(i, j) % S for i, j in pairs]),
            order=by_target, of_order=idx([where(i, j) for i, j in by_target]),
            src_of_order=idx([i for i, _ in by_target]), feature_src=idx([i for i, _ in pairs]))
    return _TABLES[key]


def _token_costs(F: Tensor, tab: _PairTable) -> Tensor:
    """Cosine costs of the solved pairs, [B, M, k, d] -> [B, S, k, k].

    The k x k costs are blocks of one Gram matrix of the unit-norm rows (the values of
    ot.cosine_cost, with one normalisation and one matmul). With the pairs i < j only, the rows of
    modalities 0..M-2 against the columns of 1..M-1 hold them all (4 blocks for 3 used at M = 3,
    instead of 9 for 6 with every ordered pair).
    """
    B, M, k, d = F.shape
    U = unit_rows(F)
    rows, cols = (U[:, :-1], U[:, 1:]) if tab.symmetric else (U, U)
    R, C = rows.shape[1], cols.shape[1]
    gram = rows.reshape(B, R * k, d) @ cols.reshape(B, C * k, d).mT          # [B, R*k, C*k]
    blocks = gram.view(B, R, k, C, k).transpose(2, 3)                         # [B, R, C, k, k]
    return 1.0 - blocks[:, tab.cost_blocks[0], tab.cost_blocks[1]]


def _token_maps(both: Tensor, F: Tensor, mask: Optional[Tensor], w: Optional[Tensor], tab: _PairTable):
    """Barycentric maps E_{i->j} = diag(a_i)^{-1} P_ij E_j of every pair, grouped by target.

    ``both`` [B, S', k, k] holds the plans, ``F`` [B, M, k, d] the (masked) embeddings. For target
    j the plans of its M-1 sources stack to [(M-1) k, k] and multiply E_j once: one batched
    matmul [B, M, (M-1) k, k] @ [B, M, k, d] does every pair, with no [B, P, k, d] copy of the
    targets. The row weights 1/a_i (k for uniform marginals) scale the plans' rows before the
    product; a padded row gets weight 0, so its output row is 0 (for a sample with no real row
    too, where a_i is uniform). Returns P tensors [B, k, d] in ``tab.order``.
    """
    B, M, k, d = F.shape
    L = both[:, tab.of_order]                                                  # [B, P, k, k]
    if w is None:
        L = L * float(k)
    else:  # 1/a on real rows (a > 0 there), 0 on padded rows, as a [B, P, k, 1] row scale
        inv = torch.where(mask, 1.0 / w, torch.zeros_like(w))
        L = L * inv[:, tab.src_of_order].unsqueeze(-1)
    moved = L.reshape(B, M, (M - 1) * k, k) @ F                               # [B, M, (M-1) k, d]
    return moved.view(B, M * (M - 1), k, d).unbind(1)


def _feature_maps(plans: Tensor, F: Tensor, tab: _PairTable):
    """E_{i->j} = d E_i P_ij^T for every pair in FIAOutput's order: [B, P, d, d] -> P tensors [B, k, d].

    Padded rows of E_i are 0 (masked before), so are their output rows: no mask is needed."""
    d = F.shape[-1]
    moved = d * (F[:, tab.feature_src] @ plans.mT)                            # [B, P, k, d]
    return moved.unbind(1)
