r"""Entropic optimal transport: a batched, differentiable, overflow-safe Sinkhorn solver.

The problem, for a cost matrix :math:`C \in \mathbb{R}^{n \times m}` and marginals
:math:`a \in \mathbb{R}^n_+`, :math:`b \in \mathbb{R}^m_+` with equal mass, is

.. math::
    P^\star = \arg\min_{P \ge 0,\ P 1_m = a,\ P^\top 1_n = b}
              \langle P, C \rangle - \varepsilon H(P),
    \qquad H(P) = -\sum_{ij} P_{ij} (\log P_{ij} - 1),

with :math:`\varepsilon` = ``reg`` (the paper's :math:`\lambda` is :math:`1/\varepsilon`). Its
solution is :math:`P^\star = \operatorname{diag}(u) K \operatorname{diag}(v)` with the Gibbs kernel
:math:`K = e^{-C/\varepsilon}`, and Sinkhorn's iterations (Cuturi, 2013), in POT's order,

.. math::
    v \leftarrow b \oslash K^\top u, \qquad u \leftarrow a \oslash K v .

Written with log-scalings :math:`\varphi = \log u`, :math:`\psi = \log v` (the dual potentials
divided by :math:`\varepsilon`) the same steps are

.. math::
    \psi_j \leftarrow \log b_j - \operatorname{LSE}_i(\varphi_i - C_{ij}/\varepsilon), \qquad
    \varphi_i \leftarrow \log a_i - \operatorname{LSE}_j(\psi_j - C_{ij}/\varepsilon),

which never underflow, but cost an ``exp`` per entry per step. The solver below keeps the log
form as its state and does the arithmetic in the cheap scaling form on an *absorbed* kernel
:math:`\tilde K = e^{\varphi \oplus \psi - C/\varepsilon}` (Schmitzer, 2019): between two checks
(every ``check_every`` steps) it runs plain scaling steps on :math:`\tilde K` with relative
scalings that start at 1. At each check it verifies that every relative scaling of every step
stayed inside a safe range (through a bound from the block's first two steps, see
:func:`_iterate_bounds`, or exactly when the bound is not enough); if so, the block is kept (and folded into :math:`\varphi, \psi` once
the scalings drift far from 1), otherwise the block is thrown away and recomputed with the
log-sum-exp steps. Either way the iterates are the ones of POT's ``sinkhorn_knopp`` /
``sinkhorn_log``, the plan :math:`e^{\varphi \oplus \psi - C/\varepsilon}` is always finite, and
so is its gradient.

Gradients (``grad=``) are exact in two senses. ``"unrolled"`` (default) differentiates the
iterations that ran; inside a scaling block a hand-written vector-Jacobian product
(:class:`_ScalingSteps`) accumulates the gradient of the kernel in one batched matrix product
instead of one outer product per step. ``"implicit"`` differentiates the fixed point through its
optimality conditions (:class:`_ImplicitPlan`, one linear solve per problem), keeps no iterates,
and agrees with the unrolled gradient at convergence (for zero-mass entries only once the
unrolled derivative itself has settled, which takes more iterations than the plan).

Marginals with zero entries (padded tokens) are solved in a *reduced* form, in which the scalings
are ``u = a * exp(lu) * u_rel``: a zero-mass point keeps a finite potential (its c-transform) and
its row of the kernel, so the plan's derivative with respect to that point's mass (the one-sided
derivative, mass moving in from 0) is finite in the scaling, absorbed and log-domain paths alike,
and is the derivative of the iterations that ran up to rounding. That derivative can be
ill-conditioned at small ``reg`` (``max|cost| / reg`` beyond about 100): it passes through
transients many orders of magnitude larger than its value, which float64 cannot cancel, so at
zero-mass entries it is then dominated by rounding; ``grad="implicit"`` does not have this
problem. The result also carries the dual potentials ``f = reg * log u``, ``g = reg * log v``.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import NamedTuple, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._validate import check_number, check_positive_int, check_tensor

__all__ = ["SinkhornResult", "sinkhorn", "cosine_cost", "transport_cost", "STOPS", "GRADS"]

# (safe, absorb) ranges for the relative scalings of a scaling block: a block whose scalings
# leave [1/safe, safe] at any step is recomputed in the log domain; scalings outside
# [1/absorb, absorb] after a kept block are folded into the log potentials (one exp pass).
_RANGES = {torch.float64: (1e50, 1e10), torch.float32: (1e6, 1e2)}
# Largest max|C| / reg solved in float32. The log potentials have that magnitude and float32
# rounds them to ~6e-8 of it: the plan's entries are off by ~4e-5 relative at 1e3, ~5e-4 at 1e4,
# ~5e-2 at 1e6, where the mass is lost too. Beyond it a float32 problem is solved in float64
# (the result of cost.double()) and the plan is returned in float32.
_F32_SPAN = 1e3
# Beyond this max|C| / reg, problems that miss tol get a warning: Sinkhorn needs on the order of
# max|C| / reg iterations there, so the cause is almost always reg too small for the cost's scale.
_WARN_SPAN = 1e4
# Largest max|C| / reg accepted at all: the log potentials have that magnitude, and float64 rounds
# them to ~1.1e-16 of it, so beyond 1e12 the plan's exponents are off by more than 1e-4 (and
# C / reg overflows float64 for reg near its smallest values). Larger spans are refused.
_MAX_SPAN = 1e12
# Largest max|C| / reg at which the unrolled derivative with respect to a zero-mass marginal entry
# is computed: beyond it that derivative passes through transients that overflow float64 (or the
# float32 it is returned in). Such a gradient is refused; grad="implicit" computes it.
_ZERO_MASS_GRAD_SPAN = 100.0
# the stopping rules of :func:`sinkhorn`: POT's marginal error, the paper's change of the scaling vector
STOPS = ("marginal", "scaling")
# how gradients reach cost and marginals: through the iterations, or through the fixed point
GRADS = ("unrolled", "implicit")


class SinkhornResult(NamedTuple):
    r"""Output of :func:`sinkhorn`.

    plan:      ``[..., n, m]`` the entropic transport plan.
    n_iter:    ``[...]`` int64, Sinkhorn iterations run for each problem (POT's ``log["niter"] + 1``).
    converged: ``[...]`` bool, whether the stopping criterion fell below ``tol`` at a check.
    err:       ``[...]`` the last value of the stopping criterion for each problem.
    f:         ``[..., n]`` dual potential of the source points, :math:`f = \varepsilon \log u`
               with POT's ``sinkhorn_knopp`` scaling ``u`` (its ``log["u"]``; POT's
               ``sinkhorn_log`` starts from ``u = 1`` and its ``log_u`` is ``log u + log n``,
               the same plan); ``-inf`` where ``a`` is 0.
    g:         ``[..., m]`` dual potential of the target points, :math:`g = \varepsilon \log v`
               (``sinkhorn_log``'s ``log_v`` is ``log v - log n``); ``-inf`` where ``b`` is 0.

    The plan is :math:`P_{ij} = \exp((f_i + g_j - C_{ij}) / \varepsilon)`. At convergence
    :math:`(f, g)` solve the dual problem
    :math:`\max_{f, g} \langle f, a \rangle + \langle g, b \rangle
    - \varepsilon \sum_{ij} e^{(f_i + g_j - C_{ij})/\varepsilon}`, so :math:`f_i` is what the
    optimal cost changes by per unit of extra mass at source point i (up to a constant shared by
    all points: :math:`(f + c, g - c)` gives the same plan). That reading holds for points of
    positive mass: at a zero-mass point ``f`` is ``-inf``, and the price of mass arriving there is
    the gradient of the cost with respect to that entry of ``a``. ``f`` and ``g`` carry gradients
    with ``grad="unrolled"`` and are constants with ``grad="implicit"``.
    """

    plan: Tensor
    n_iter: Tensor
    converged: Tensor
    err: Tensor
    f: Tensor
    g: Tensor


def cosine_cost(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Cosine cost :math:`C_{ij} = 1 - \cos(x_i, y_j)`, in ``[0, 2]`` up to rounding.

    x: ``[..., n, d]``, y: ``[..., m, d]`` (leading dims broadcast) -> ``[..., n, m]``.
    Each row is divided by ``max(||row||, eps)``, so a zero vector has cosine 0 with anything
    (cost 1) and a finite gradient.
    """
    check_tensor(x, "x", min_ndim=2)
    check_tensor(y, "y", min_ndim=2)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must share their last (feature) dimension, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    return 1.0 - unit_rows(x, eps) @ unit_rows(y, eps).transpose(-1, -2)


def unit_rows(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Each row of ``x [..., n, d]`` divided by ``max(||row||, eps)`` (a zero row stays zero)."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True).clamp_min(eps * eps))


def transport_cost(plan: Tensor, cost: Tensor) -> Tensor:
    r"""Transport cost :math:`\langle P, C \rangle = \sum_{ij} P_{ij} C_{ij}` per problem.

    plan, cost: ``[..., n, m]`` (broadcastable) -> ``[...]``. Note that step 13 of the paper's
    Algorithm 1 computes this scalar; the plan itself is ``plan``.
    """
    check_tensor(plan, "plan", min_ndim=2)
    check_tensor(cost, "cost", min_ndim=2)
    if plan.shape[-2:] != cost.shape[-2:]:
        raise ValueError(f"plan {tuple(plan.shape)} and cost {tuple(cost.shape)} must have the same last two dimensions")
    return (plan * cost).sum((-2, -1))


def sinkhorn(
    cost: Tensor,
    reg: float,
    a: Optional[Tensor] = None,
    b: Optional[Tensor] = None,
    max_iter: int = 1000,
    tol: float = 1e-9,
    *,
    stop: str = "marginal",
    check_every: int = 10,
    grad: str = "unrolled",
    detach: bool = False,
) -> SinkhornResult:
    r"""Entropic OT plans for a batch of cost matrices, with POT's iterations and stopping rule.

    Args:
        cost: ``[..., n, m]`` finite costs, float32 or float64, any leading (batch) dims. A
            float32 cost with ``max|cost| / reg`` above 1e3 is solved in float64 (float32 cannot
            hold log potentials that large precisely enough to keep the plan's mass) and the plan
            is returned in float32.
        reg: entropic regularisation :math:`\varepsilon > 0` (the paper's :math:`\lambda = 1/\varepsilon`).
            ``max|cost| / reg`` above 1e12 is refused with a ValueError (float64 cannot hold log
            potentials that large precisely enough for a meaningful plan); below it the plan and
            its gradients are finite, blocks that leave the scaling form being solved in the log domain.
        a: source marginal, ``[n]`` (shared), ``[..., n]`` (one per problem) or None (uniform 1/n).
        b: target marginal, ``[m]``, ``[..., m]`` or None (uniform 1/m). Entries must be >= 0 and
            ``a`` and ``b`` must have the same total mass per problem. Zero entries are allowed:
            their rows/columns of the plan are 0, and the gradient with respect to such an entry
            is the one-sided derivative (mass moving in from 0), finite in every path (see the
            module docstring for its conditioning at small ``reg``). With ``grad="unrolled"`` and
            ``max|cost| / reg`` above 100 that derivative overflows, so a marginal with zero entries
            that requires a gradient is refused there (ValueError naming ``grad="implicit"``, which
            computes it). Plan entries whose row and column both have zero mass are 0, computed
            without their kernel entry (which can overflow).
        max_iter: most iterations (one iteration = the ``v`` update then the ``u`` update).
        tol: stopping threshold; a problem stops at the first check where its criterion < tol.
            ``tol=0`` never stops early.
        stop: ``"marginal"``: POT's criterion, :math:`\lVert P^\top 1_n - b \rVert_2`.
            ``"scaling"``: the paper's, :math:`\frac1m \sum_j |v_j^{(t)} - v_j^{(t-1)}|` with
            :math:`v = e^{\psi}` in POT's normalisation (:math:`u^{(0)} = 1/n`,
            :math:`v^{(0)} = 1/m`); it depends on that normalisation and can be +inf when
            :math:`v` itself overflows the dtype (small ``reg``), which does not affect the plan.
        check_every: the criterion is checked after iterations 1, 1 + check_every, ...
            (POT: every 10, from the first) and after the last one. Problems of a batch are
            checked together but frozen one by one, so each stops exactly where it would alone.
        grad: how gradients reach ``cost``, ``a`` and ``b``.
            ``"unrolled"`` (default): backpropagate through the iterations that ran (exact for
            the plan that is returned, converged or not; memory grows with the number of
            iterations). ``"implicit"``: differentiate the fixed point instead (implicit
            function theorem: one linear solve of size ``min(n, m)`` per problem in the backward pass);
            the forward pass keeps no iterates, so memory does not depend on ``max_iter``. It
            is the gradient of the *exact* entropic plan, so it equals the unrolled one only
            for problems that converged (a ``RuntimeWarning`` names those that did not; at
            zero-mass entries the unrolled derivative needs more iterations still).
        detach: if True, no gradient flows through the solver (the plan is a constant).

    Returns:
        :class:`SinkhornResult` ``(plan [..., n, m], n_iter [...], converged [...], err [...],
        f [..., n], g [..., m])``, in the dtype of ``cost`` (float32 for a float16/bfloat16
        cost, which is solved in float32). Autocast and TF32 never apply inside the solver
        (:func:`exact_matmuls`). With ``max|cost| / reg`` above 1e4 and ``tol > 0``, problems
        that do not converge also raise a ``RuntimeWarning`` naming ``reg`` and the cost's range.
    """
    check_tensor(cost, "cost", min_ndim=2, finite=False)
    if cost.dtype in (torch.float16, torch.bfloat16):   # e.g. a cost computed under autocast
        cost = cost.float()
    if cost.dtype not in _RANGES:
        raise TypeError(f"cost must be a floating tensor (float32 or float64), got {cost.dtype}; call .float()")
    reg = check_number(reg, "reg", gt=0, meaning="the entropic regularisation")
    check_positive_int(max_iter, "max_iter")
    check_positive_int(check_every, "check_every")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if stop not in STOPS:
        raise ValueError(f"stop must be 'marginal' (POT's rule) or 'scaling' (the paper's rule), got {stop!r}")
    if grad not in GRADS:
        raise ValueError(f"grad must be 'unrolled' (backpropagate through the iterations) or 'implicit' "
                         f"(differentiate the fixed point), got {grad!r}")
    *batch, n, m = cost.shape
    if n == 0 or m == 0 or math.prod(batch) == 0:
        raise ValueError(f"cost must have no empty dimension, got shape {tuple(cost.shape)}")
    lo, hi = _cost_range(cost)
    span = max(abs(lo), abs(hi)) / reg  # the magnitude of the log potentials
    if not span <= _MAX_SPAN:
        raise ValueError(
            f"sinkhorn: reg = {reg:g} is too small for a cost spanning [{lo:.4g}, {hi:.4g}]: max|cost| / reg = "
            f"{span:.3g} exceeds {_MAX_SPAN:g}, where float64 can no longer hold the log potentials precisely enough "
            "for a meaningful plan. Use a larger reg (Sinkhorn converges in a practical number of iterations from about "
            "max|cost| / 100; for the cosine cost, whose max is 2, reg = 0.02) or normalise the cost.")
    # float32 holds potentials of this size only to ~span * 6e-8: beyond _F32_SPAN, solve in float64
    work = torch.float64 if cost.dtype == torch.float32 and span > _F32_SPAN else cost.dtype
    C = cost.reshape(-1, n, m).to(work)
    a_, a_zero = _marginal(a, "a", C, tuple(batch), n)
    b_, b_zero = _marginal(b, "b", C, tuple(batch), m)
    _check_mass(a_, b_)

    needs_grad = torch.is_grad_enabled() and not detach and any(
        isinstance(x, Tensor) and x.requires_grad for x in (C, a_, b_))
    if needs_grad and grad == "unrolled" and span > _ZERO_MASS_GRAD_SPAN:
        _refuse_zero_mass_grad(a_, a_zero, "a", b_, b_zero, "b", span)
    implicit = needs_grad and grad == "implicit"
    with torch.no_grad() if (detach or implicit) else contextlib.nullcontext(), exact_matmuls(C.device):
        plan, n_iter, converged, err, f, g = _sinkhorn_batched(
            C, reg, a_, b_, a_zero or b_zero, max_iter, float(tol), stop, check_every
        )
    if implicit:
        with exact_matmuls(C.device):
            plan = _ImplicitPlan.apply(C, a_, b_, plan, f, g, reg)
        _warn_implicit_unconverged(converged, max_iter)
    if span > _WARN_SPAN and tol > 0:
        _warn_not_converged(converged, lo, hi, reg, max_iter)
    plan, err = plan.to(cost.dtype), err.to(cost.dtype)
    f, g = (reg * f).to(cost.dtype).reshape(*batch, n), (reg * g).to(cost.dtype).reshape(*batch, m)
    return SinkhornResult(plan.reshape(cost.shape), n_iter.reshape(batch), converged.reshape(batch), err.reshape(batch),
                          f, g)


@contextlib.contextmanager
def exact_matmuls(device: torch.device):
    """Autocast off and, on CUDA, TF32 off for matrix products: the solver's products stay in
    float32/float64 whatever the caller's autocast or TF32 settings (restored on exit)."""
    cuda = device.type == "cuda"
    old = torch.backends.cuda.matmul.allow_tf32 if cuda else None
    try:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = old


def _cost_range(cost: Tensor):
    """``(min, max)`` of ``cost`` as Python floats, with one host sync; NaN or inf raise the
    error of :func:`check_tensor` (NaN and inf propagate through ``aminmax``)."""
    lo, hi = torch.stack(torch.aminmax(cost.detach())).tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        check_tensor(cost, "cost")
    return lo, hi


def _refuse_zero_mass_grad(a, a_zero, a_name, b, b_zero, b_name, span) -> None:
    """Refuse ``grad="unrolled"`` for a marginal with zero entries that asks for a gradient when
    ``max|C| / reg`` exceeds :data:`_ZERO_MASS_GRAD_SPAN` (its derivative there is not computable)."""
    for w, zero, name in ((a, a_zero, a_name), (b, b_zero, b_name)):
        if zero and isinstance(w, Tensor) and w.requires_grad:
            raise ValueError(
                f"sinkhorn: {name} has zero entries and requires a gradient, but max|cost| / reg = {span:.3g} exceeds "
                f"{_ZERO_MASS_GRAD_SPAN:g}, where the unrolled derivative at zero-mass entries overflows. Pass "
                f"grad='implicit' (the derivative of the exact plan), a larger reg, or {name}.detach().")


def _warn_not_converged(converged: Tensor, lo: float, hi: float, reg: float, max_iter: int) -> None:
    """Warn that some problems (``converged [N]`` False) missed ``tol``; called beyond ``_WARN_SPAN``."""
    n_bad = int((~converged).sum())
    if n_bad:
        warnings.warn(
            f"sinkhorn: {n_bad} of {converged.numel()} problems did not converge in max_iter={max_iter} "
            f"iterations: the cost spans [{lo:.4g}, {hi:.4g}] and reg = {reg:g}, so |cost| / reg reaches "
            f"{max(abs(lo), abs(hi)) / reg:.3g}, and Sinkhorn may need on the order of that many iterations. "
            "Use a larger reg (about max|cost| / 100 or more) or normalise the cost (e.g. cost / cost.max()).",
            RuntimeWarning, stacklevel=3)


def _warn_implicit_unconverged(converged: Tensor, max_iter: int) -> None:
    """``grad="implicit"`` differentiates the exact plan: say so when some problems stopped short."""
    n_bad = int((~converged).sum())
    if n_bad:
        warnings.warn(
            f"sinkhorn(grad='implicit'): {n_bad} of {converged.numel()} problems stopped at max_iter={max_iter} "
            "without converging; their gradient is that of the exact entropic plan, not of the plan returned. "
            "Raise max_iter (or tol), or use grad='unrolled' for the gradient of the iterations that ran.",
            RuntimeWarning, stacklevel=3)


def _sinkhorn_batched(C, reg, a, b, zero_mass, max_iter, tol, stop, check_every):
    """The solver on ``C [N, n, m]``; ``a`` is a float (uniform) or ``[N or 1, 1, n]``, ``b`` alike.

    State: log-scalings ``lu [N, 1, n]``, ``lv [N, 1, m]``, the absorbed kernel
    ``K = exp(lu^T + lv - C/reg) [N, n, m]`` and relative scalings ``u``, ``v`` (rows). With
    positive marginals POT's scalings are ``exp(lu) * u`` and ``exp(lv) * v`` and the plan is
    ``u^T * K * v``. When a marginal has a zero entry (``zero_mass``) the state is *reduced*
    instead: POT's scalings are ``a * exp(lu) * u`` and ``b * exp(lv) * v``. A zero-mass point
    then keeps a finite potential (its c-transform) and a finite row (column) of ``K``, so the
    derivative with respect to its mass, which needs that row, is finite; in the unreduced form
    its potential would be ``log 0``.

    Returns ``(plan, n_iter, converged, err, log u, log v)`` with POT's log-scalings
    ``[N, 1, n]``, ``[N, 1, m]`` (``-inf`` at zero mass).
    """
    N, n, m = C.shape
    opts = dict(dtype=C.dtype, device=C.device)
    safe, absorb = _RANGES[C.dtype]
    Cr = None  # C / reg, made when the log domain first needs it
    # POT starts from u = 1/n (v is overwritten by the first update). Absorb a column shift into
    # the kernel so that every column's largest entry is 1: the first v-update stays in range.
    # The shift cancels exactly in the first update, hence no gradient through it.
    lv = C.detach().amin(-2, keepdim=True) / reg  # [N, 1, m]
    lu = torch.full((N, 1, n), -math.log(n), **opts)
    K = torch.add(lv, C, alpha=-1.0 / reg).exp_()  # = exp(lu^T + lv - C / reg), two passes
    lv = lv + math.log(n)
    u = torch.ones(N, 1, n, **opts)
    v = torch.ones(N, 1, m, **opts)
    first = True  # u is still POT's u0 = 1/n = exp(lu) * 1 (not a reduced scaling)
    lv_start = torch.full((N, 1, m), -math.log(m), **opts)  # log v before iteration 1 (v = 1/m)

    n_iter = torch.full((N,), max_iter, dtype=torch.int64, device=C.device)
    converged = torch.zeros(N, dtype=torch.bool, device=C.device)
    err = torch.full((N,), math.inf, **opts)
    active = torch.ones(N, dtype=torch.bool, device=C.device)
    n_active = N
    t = 0
    # uniform marginals as 0-dim tensors: b / x is then one kernel (a float costs two)
    a_t = a if isinstance(a, Tensor) else torch.tensor(a, **opts)
    b_t = b if isinstance(b, Tensor) else torch.tensor(b, **opts)
    reduced = zero_mass
    void = _void_mask(a, b) if reduced else None
    # a gradient is recorded: kernels are saved by the blocks that used them, never overwritten
    recording = torch.is_grad_enabled() and any(x.requires_grad for x in (C, a_t, b_t))
    while t < max_iter:
        steps = 1 if t == 0 else min(check_every, max_iter - t)
        t += steps
        keep = active.view(N, 1, 1)
        u_in = a_t * u if reduced and not first else u  # the relative u the block starts from
        save = torch.is_grad_enabled() and any(x.requires_grad for x in (K, u_in, a_t, b_t))
        u1, v1, x1, y1, us, vs, xs, ys = _ScalingSteps.apply(K, u_in, a_t, b_t, steps, save)
        if reduced:  # the reduced scalings 1/y, 1/x: positive and finite at zero-mass points too
            u1, v1 = 1.0 / y1, 1.0 / x1
            us, vs = [u] + [1.0 / y for y in ys], [1.0 / x for x in xs]
        lo, hi, lo_last, hi_last = _block_range(us, vs, safe, exact=reduced)
        if lo > 1.0 / safe and hi < safe:  # the scaling block stayed in range: keep it
            v_prev = vs[-2] if steps > 1 else v
            if n_active < N:  # frozen (converged) problems keep their state
                u1, v1 = torch.where(keep, u1, u), torch.where(keep, v1, v)
            u, v = u1, v1
            if stop == "scaling":
                with torch.no_grad():
                    lv_now, lv_prev = _true_log(lv, v, b, reduced), _true_log(lv, v_prev, b, reduced)
            if lo_last < 1.0 / absorb or hi_last > absorb:  # fold the scalings into the log potentials
                if reduced:  # a constant shift: no log of a zero, the gradient stays in u and v
                    lu, lv = lu + torch.log(u).detach(), lv + torch.log(v).detach()
                    u, v = u / u.detach(), v / v.detach()
                else:
                    lu, lv = _add_log(lu, u), _add_log(lv, v)
                    u, v = torch.ones_like(u), torch.ones_like(v)
                K = _kernel(lu, lv, C, reg, None if recording else K, void)
        else:  # out of range: redo this block with log-sum-exp steps (never over/underflows)
            Cr = C / reg if Cr is None else Cr
            lu0, lv0 = _add_log(lu, u), _add_log(lv, v)
            if reduced:
                lu, lv, lv_prev = _log_steps_reduced(Cr, lu0, lv0, a, b, steps, first)
                lv_now, lv_prev = _true_log(lv, 1.0, b, True), _true_log(lv_prev, 1.0, b, True)
            else:
                lu, lv, lv_prev = _log_steps(Cr, lu0, lv0, _log_marginal(a), _log_marginal(b), steps)
                lv_now = lv
            if n_active < N:
                lu, lv = torch.where(keep, lu, lu0), torch.where(keep, lv, lv0)
            K = _kernel(lu, lv, C, reg, None if recording else K, void)
            u, v = torch.ones_like(u), torch.ones_like(v)
        first = False
        if tol <= 0 and t < max_iter:  # nothing can stop: only the final criterion is reported
            continue
        with torch.no_grad():
            if stop == "marginal":
                ur, vr = (a_t * u, b_t * v) if reduced else (u, v)
                e = torch.linalg.vector_norm(vr * (ur @ K) - b, dim=-1).view(N)
            else:
                e = _log_mean_abs_diff_exp(lv_now, lv_start if t == steps else lv_prev).exp().view(N)
            err = torch.where(active, e, err)
            done = active & (e < tol)
            n_iter = torch.where(done, t, n_iter)
            converged = converged | done
            active = active & ~done
            n_active = int(active.sum())
        if n_active == 0:
            break
    n_iter = torch.where(active, t, n_iter)
    if reduced:
        u, v = a_t * u, b_t * v
    log_u, log_v = _add_log(lu, u), _add_log(lv, v)
    if torch.is_grad_enabled() and any(x.requires_grad for x in (K, u, v)):
        plan = _ScaledKernel.apply(u, K, v)
    else:  # no graph to keep: scale K in place rather than allocate two [N, n, m] tensors
        plan = K.mul_(u.mT).mul_(v)
    return plan, n_iter, converged, err, log_u, log_v


class _ScaledKernel(torch.autograd.Function):
    """The plan ``u^T * K * v`` (``u [N, 1, n]``, ``K [N, n, m]``, ``v [N, 1, m]``) with a VJP
    that makes two passes over ``[N, n, m]`` (``gP * K`` and the kernel gradient) and saves no
    product, where autograd through two broadcast products makes five and saves ``u^T * K``."""

    @staticmethod
    def forward(ctx, u, K, v):
        ctx.save_for_backward(u, K, v)
        return u.mT * K * v

    @staticmethod
    @once_differentiable
    def backward(ctx, gP):
        u, K, v = ctx.saved_tensors
        need_u, need_K, need_v = ctx.needs_input_grad
        gK = gP * u.mT * v if need_K else None
        gu = gv = None
        if need_u or need_v:
            G = gP * K
            gu = torch.bmm(v, G.mT) if need_u else None    # sum_j gP_ij K_ij v_j
            gv = torch.bmm(u, G) if need_v else None       # sum_i gP_ij K_ij u_i
        return gu, gK, gv


def _true_log(l, s, w, reduced):
    """POT's log-scaling from a state ``(l, s)``: ``l + log s``, plus ``log w`` in the reduced form
    (``-inf`` where ``w`` is 0). For the scaling stop rule only (no gradient)."""
    out = l + torch.log(torch.as_tensor(s, dtype=l.dtype, device=l.device))
    return out + _log_marginal(w) if reduced else out


class _ScalingSteps(torch.autograd.Function):
    """``steps`` Sinkhorn scaling iterations on a fixed kernel, with an exact hand-written VJP.

    Forward: ``x = u K; v = b / x; y = v K^T; u = a / y`` repeated (rows ``u [N, 1, n]``,
    ``v [N, 1, m]``). Returns the last ``u``, ``v``, ``x``, ``y`` (all differentiable: the
    reduced form of :func:`_sinkhorn_batched` continues from ``1/y`` and ``1/x``) and, outside
    the graph, the lists of iterates ``[u_0, ..., u_T]``, ``[v_1, ..., v_T]``, ``[x_1, ...]``,
    ``[y_1, ...]``. A zero entry of ``a`` gives ``u_i = 0`` with the finite derivative ``1 / y_i``.

    Backward walks the iterations in reverse with vector operations only, and builds the kernel
    gradient as one batched product ``[GY, U]^T [V, GX]`` rather than one outer product per step.
    """

    @staticmethod
    def forward(ctx, K, u, a, b, steps, save):
        Kt = K.mT
        us, vs, xs, ys = [u], [], [], []
        for _ in range(steps):
            x = torch.bmm(u, K)  # bmm, not @: matmul's dispatch costs more than the product here
            v = b / x
            y = torch.bmm(v, Kt)
            u = a / y
            us.append(u)
            vs.append(v)
            xs.append(x)
            ys.append(y)
        if save:  # only when a gradient will be asked for
            ctx.save_for_backward(K, torch.cat(us, 1), torch.cat(vs, 1), torch.cat(xs, 1), torch.cat(ys, 1))
            ctx.a_shape, ctx.b_shape = a.shape, b.shape
        return u, v, x, y, us, vs, xs, ys  # the lists are plain tensors, outside the graph

    @staticmethod
    @once_differentiable
    def backward(ctx, gu, gv, gx_last, gy_last, *_lists):
        K, U, V, X, Y = ctx.saved_tensors
        steps = V.shape[1]
        need_K, need_u, need_a, need_b = ctx.needs_input_grad[:4]
        # d u_t / d y_t = -u_t / y_t and d v_t / d x_t = -v_t / x_t, for all t at once
        Wu, Wv = -U[:, 1:] / Y, -V / X
        gu = torch.zeros_like(U[:, :1]) if gu is None else gu
        gv_last = gv
        gys, gxs, ga, gb = [None] * steps, [None] * steps, 0, 0
        for t in reversed(range(steps)):
            if need_a:
                ga = ga + gu / Y[:, t : t + 1]
            gy = gu * Wu[:, t : t + 1]
            if t == steps - 1 and gy_last is not None:
                gy = gy + gy_last
            gv = torch.bmm(gy, K)
            if t == steps - 1 and gv_last is not None:
                gv = gv + gv_last
            if need_b:
                gb = gb + gv / X[:, t : t + 1]
            gx = gv * Wv[:, t : t + 1]
            if t == steps - 1 and gx_last is not None:
                gx = gx + gx_last
            gu = torch.bmm(gx, K.mT)
            gys[t], gxs[t] = gy, gx
        gK = None
        if need_K:  # sum_t gy_t^T v_t + u_{t-1}^T gx_t
            gK = torch.bmm(torch.cat(gys + [U[:, :steps]], 1).mT, torch.cat([V] + gxs, 1))
        ga = _sum_to(ga, ctx.a_shape) if need_a else None
        gb = _sum_to(gb, ctx.b_shape) if need_b else None
        return gK, gu if need_u else None, ga, gb, None, None


def _log_steps_reduced(Cr, lu, lv, a, b, steps, first):
    """``steps`` log-domain iterations on reduced log-scalings (POT's ``log u = log a + lu``,
    ``log v = log b + lv``), with marginals as weights of the log-sum-exp (:func:`_wlse`), so a
    zero-mass point keeps a finite potential and a finite derivative. ``first``: ``lu`` is POT's
    own ``log u`` (the start ``u0 = 1/n``), taken unweighted by the first v-update.
    Returns ``lu``, ``lv`` and the ``lv`` before the last iteration."""
    lv_prev = lv
    for s in range(steps):
        lv_prev = lv
        z = lu.mT - Cr  # [N, n, m]
        lv = -(torch.logsumexp(z, dim=-2, keepdim=True) if first and s == 0 else _wlse(z, a, -2))
        lu = -_wlse(lv - Cr, b, -1).mT
    return lu, lv, lv_prev


def _wlse(z, w, dim):
    """``log sum_k w_k exp(z_k)`` over ``dim`` (kept), for ``z [N, n, m]`` and a marginal ``w``
    (a float, or ``[N or 1, 1, k]`` laid along ``dim``).

    The shift is the largest ``z`` among positive weights, so the sum is at least one positive
    term; a zero weight contributes nothing to the value and its exact derivative
    ``exp(z_k - lse)`` to the gradient (``log w`` would give ``0 * inf``). That derivative is
    capped where it would overflow the dtype."""
    if not isinstance(w, Tensor):
        return math.log(w) + torch.logsumexp(z, dim=dim, keepdim=True)
    w = w.mT if dim == -2 else w
    top = torch.where(w > 0, z, -math.inf).amax(dim=dim, keepdim=True).detach()
    cap = math.log(torch.finfo(z.dtype).max) - math.log(z.shape[dim]) - 1.0
    return top + torch.log((w * torch.exp((z - top).clamp_max(cap))).sum(dim=dim, keepdim=True))


def _log_steps(Cr, lu, lv, loga, logb, steps):
    """``steps`` log-domain Sinkhorn iterations; returns ``lu``, ``lv`` and the ``lv`` before the last."""
    lv_prev = lv
    for _ in range(steps):
        lv_prev = lv
        lv = logb - torch.logsumexp(lu.mT - Cr, dim=-2, keepdim=True)
        lu = loga - torch.logsumexp(lv - Cr, dim=-1, keepdim=True).mT
    return lu, lv, lv_prev


def _kernel(lu, lv, C, reg, old=None, void=None):
    """Absorbed Gibbs kernel ``exp(lu_i + lv_j - C_ij / reg)``: ``[N, 1, n], [N, 1, m] -> [N, n, m]``.

    Made with one new ``[N, n, m]`` tensor, or written over ``old`` (the previous kernel, when no
    gradient is being recorded): a fresh buffer of that size costs page faults on every call,
    which on a CPU can take as long as several Sinkhorn iterations. ``void`` (``[N or 1, n, m]``
    bool, or None) marks the entries whose row *and* column have zero mass (:func:`_void_mask`):
    they are set to 0 before the ``exp``."""
    out = torch.add(lv, C, alpha=-1.0 / reg, out=old) if old is not None else torch.add(lv, C, alpha=-1.0 / reg)
    out = out.add_(lu.mT)
    if void is not None:
        out = out.masked_fill_(void, -math.inf)
    return out.exp_()


def _void_mask(a, b):
    """``[N or 1, n, m]`` bool, True where both ``a_i`` and ``b_j`` are 0, or None when no such entry.

    In the reduced form both potentials there are c-transforms against the *other* points, so
    ``lu_i + lv_j - C_ij / reg`` is unbounded (a zero-mass row far from every massive column and a
    zero-mass column far from every massive row): its ``exp`` overflows, and ``0 * inf`` made the
    plan NaN. The plan is ``a_i b_j exp(...)`` = 0 there whatever the kernel holds, and so is its
    derivative with respect to ``a_i``, ``b_j`` or ``C_ij``; the kernel entry is set to 0."""
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        return None
    void = (a.mT == 0) & (b == 0)
    return void if bool(void.any()) else None


def _add_log(l, s):
    """``l + log(s)`` where a zero scaling (zero-mass point) gives -inf without a NaN gradient."""
    pos = s > 0
    return torch.where(pos, l + torch.log(torch.where(pos, s, 1.0)), -math.inf)


def _block_range(us, vs, safe, exact=False):
    """Range of the relative scalings of a block: (min, max) over all iterates, then over the last.

    ``us = [u_0, ..., u_T]``, ``vs = [v_1, ..., v_T]``, all positive (zero-mass points are
    handled by the reduced form). The exact range takes a pass over every iterate; the bound of
    :func:`_iterate_bounds` needs only the first two and is used when it lies inside
    ``[1/safe, safe]`` and the last iterates are in range too (a NaN or an underflow the bound
    cannot see fails that test). ``exact``: always the exact range. The reduced form asks for it:
    a zero-mass point's scaling ``1 / y_i`` is not part of the order-preserving map the bound
    rests on, and can leave the range (even reach ``0 / 0``) while the bound holds.
    A NaN anywhere makes the range NaN, which fails every comparison: the block is redone.
    """
    with torch.no_grad():
        if len(vs) > 1 and not exact:
            (u_lo, u_hi, v_lo, v_hi), (l_lo, l_hi) = _iterate_bounds(us, vs)
            if all(1.0 / safe < x < safe for x in (u_lo, u_hi, v_lo, v_hi, l_lo, l_hi)):
                return min(u_lo, v_lo), max(u_hi, v_hi), l_lo, l_hi
        U, V = torch.cat(us, 1), torch.cat(vs, 1)  # [N, T + 1, n], [N, T, m]
        stats = [*torch.aminmax(U), *torch.aminmax(V), *torch.aminmax(U[:, -1]), *torch.aminmax(V[:, -1])]
        u_lo, u_hi, v_lo, v_hi, ul_lo, ul_hi, vl_lo, vl_hi = torch.stack(stats).tolist()
    return _nan_min(u_lo, v_lo), _nan_max(u_hi, v_hi), _nan_min(ul_lo, vl_lo), _nan_max(ul_hi, vl_hi)


def _nan_min(x, y):
    """``min`` that returns NaN when either is NaN (Python's ``min`` keeps whichever came first)."""
    return math.nan if math.isnan(x) or math.isnan(y) else min(x, y)


def _nan_max(x, y):
    return math.nan if math.isnan(x) or math.isnan(y) else max(x, y)


def _iterate_bounds(us, vs):
    """Bounds on all iterates of a scaling block from its first two, and the range of its last.

    The map ``u_{t-1} -> u_t`` is order-preserving and homogeneous of degree 1, so
    ``r_lo u_0 <= u_1 <= r_hi u_0`` implies ``r_lo u_t <= u_{t+1} <= r_hi u_t`` for every t:
    ``u_t`` lies in ``[min(u_0) min(1, r_lo)^T, max(u_0) max(1, r_hi)^T]``, and since
    ``v_{t+1} = b / (K^T u_t)`` reverses order, ``v_t`` in
    ``[min(v_1) min(1, 1/r_hi)^(T-1), max(v_1) max(1, 1/r_lo)^(T-1)]``.
    Returns ``((u_lo, u_hi, v_lo, v_hi), (last_lo, last_hi))``; the bounds are 0 / inf when the
    first two iterates are not positive and finite.
    """
    T = len(vs)
    stats = [*torch.aminmax(us[0]), *torch.aminmax(us[1] / us[0]), *torch.aminmax(vs[0])]
    stats += [*torch.aminmax(us[-1]), *torch.aminmax(vs[-1])]
    u0_lo, u0_hi, r_lo, r_hi, v1_lo, v1_hi, ul_lo, ul_hi, vl_lo, vl_hi = torch.stack(stats).tolist()
    last = (min(ul_lo, vl_lo), max(ul_hi, vl_hi))
    if not (min(u0_lo, r_lo, v1_lo) > 0 and max(u0_hi, r_hi, v1_hi) < math.inf):
        return (0.0, math.inf, 0.0, math.inf), last
    log_r_lo, log_r_hi = math.log(r_lo), math.log(r_hi)
    bounds = (
        math.log(u0_lo) + T * min(0.0, log_r_lo),
        math.log(u0_hi) + T * max(0.0, log_r_hi),
        math.log(v1_lo) - (T - 1) * max(0.0, log_r_hi),
        math.log(v1_hi) - (T - 1) * min(0.0, log_r_lo),
    )
    return tuple(math.exp(min(x, 700.0)) for x in bounds), last


def _log_mean_abs_diff_exp(x, y):
    """``log(mean_j |exp(x_j) - exp(y_j)|)`` over the last dim, computed without overflow."""
    hi = torch.maximum(x, y)
    gap = -(x - y).abs()
    terms = torch.where(x == y, -math.inf, hi + torch.log(-torch.expm1(torch.where(x == y, -1.0, gap))))
    return torch.logsumexp(terms, dim=-1) - math.log(x.shape[-1])


def _log_marginal(w):
    """log of a marginal given as a float (uniform) or a tensor (zeros give -inf)."""
    return torch.log(w) if isinstance(w, Tensor) else math.log(w)


def _sum_to(g, shape):
    """Reduce a broadcast gradient ``[N, 1, k]`` to a marginal of shape ``[1, 1, k]``."""
    return g.sum(0, keepdim=True) if shape[0] == 1 and g.shape[0] != 1 else g


def _marginal(w, name, cost, batch, size):
    """Validate a marginal and return it as a float (uniform) or ``[N or 1, 1, size]``, and whether it has zeros."""
    if w is None:
        return 1.0 / size, False
    if not isinstance(w, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None (uniform), got {type(w).__name__}")
    check_tensor(w, name)
    if w.device != cost.device:
        raise ValueError(f"{name} is on {w.device} but cost is on {cost.device}; move it with .to(cost.device)")
    if w.shape == (size,):
        w = w.reshape(1, 1, size)
    elif tuple(w.shape) == (*batch, size):
        w = w.reshape(-1, 1, size)
    else:
        raise ValueError(
            f"{name} must have shape ({size},) (shared) or {(*batch, size)} (one per problem) to match cost "
            f"{(*batch, cost.shape[-2], cost.shape[-1])}, got {tuple(w.shape)}"
        )
    w = w.to(cost.dtype)
    if bool((w < 0).any()):
        raise ValueError(f"{name} has negative entries (min {float(w.min()):.3g}); marginals must be >= 0")
    zero = bool((w == 0).any())
    return w, zero


def _check_mass(a, b):
    """Both marginals must have the same positive total mass in every problem (1e-6 relative)."""
    sa = a.sum(-1).reshape(-1) if isinstance(a, Tensor) else torch.tensor([1.0], dtype=torch.float64)
    sb = b.sum(-1).reshape(-1) if isinstance(b, Tensor) else torch.tensor([1.0], dtype=torch.float64)
    sa, sb = torch.broadcast_tensors(sa.double().cpu(), sb.double().cpu())
    if bool((sa <= 0).any()) or bool((sb <= 0).any()):
        raise ValueError("every marginal must have a positive total mass; a or b sums to 0 in some problem")
    rel = (sa - sb).abs() / torch.maximum(sa, sb)
    if bool((rel > 1e-6).any()):
        i = int(rel.argmax())
        raise ValueError(
            f"a and b must have the same total mass in every problem; problem {i} has sum(a) = {float(sa[i]):.8g} "
            f"and sum(b) = {float(sb[i]):.8g}. Normalise both (e.g. a / a.sum(-1, keepdim=True))."
        )


class _ImplicitPlan(torch.autograd.Function):
    r"""The plan as a function of ``(C, a, b)`` through its optimality conditions (``grad="implicit"``).

    Forward returns the solver's plan ``[N, n, m]`` unchanged. Backward writes the plan with
    reduced potentials, :math:`P_{ij} = a_i b_j \hat K_{ij}`,
    :math:`\hat K_{ij} = e^{\hat f_i + \hat g_j - C_{ij}/\varepsilon}`, which satisfy
    :math:`\sum_j b_j \hat K_{ij} = 1` for every row and :math:`\sum_i a_i \hat K_{ij} = 1` for
    every column (zero-mass points included: their potentials are c-transforms). Differentiating
    these conditions gives, with :math:`A = \hat K \operatorname{diag}(b)` (rows sum to 1) and
    :math:`B = \operatorname{diag}(a) \hat K` (columns sum to 1), the linear system
    :math:`\begin{pmatrix} I & A \\ B^\top & I \end{pmatrix}`; its transpose is solved once for
    the adjoint :math:`(\lambda_f, \lambda_g)` through the Schur complement of size
    :math:`\min(n, m)`, made regular by fixing the one free constant (:math:`(\hat f + c, \hat g - c)`
    is the same plan). The potentials are recomputed from POT's final ``log u`` by two c-transforms,
    so the row conditions hold exactly and the column ones to the solver's tolerance.

    A perturbation of ``a`` alone changes the total mass; like the unrolled iterations (which end
    on the u-update, so :math:`P 1 = a` exactly), the gradient treats it as moving ``b`` in
    proportion, which makes ``grad_a`` and ``grad_b`` unique.
    """

    @staticmethod
    def forward(ctx, C, a, b, plan, log_u, log_v, reg):
        ctx.save_for_backward(C, log_u, *(w for w in (a, b) if isinstance(w, Tensor)))
        ctx.a_float, ctx.b_float = (None if isinstance(w, Tensor) else w for w in (a, b))
        ctx.reg = reg
        return plan

    @staticmethod
    @once_differentiable
    def backward(ctx, gP):
        C, log_u, *ws = ctx.saved_tensors
        a = ctx.a_float if ctx.a_float is not None else ws.pop(0)
        b = ctx.b_float if ctx.b_float is not None else ws.pop(0)
        reg = ctx.reg
        N, n, m = C.shape
        Cr = C / reg
        # reduced potentials at the fixed point: the v-update, then the u-update (rows exact)
        lg = -torch.logsumexp(log_u.mT - Cr, dim=-2, keepdim=True)                    # [N, 1, m]
        lf = -torch.logsumexp(lg + _log_marginal(b) - Cr, dim=-1, keepdim=True)       # [N, n, 1]
        z = lf + lg - Cr
        void = _void_mask(a, b)
        Kh = torch.exp(z if void is None else z.masked_fill(void, -math.inf))         # [N, n, m]
        a_col = a.mT if isinstance(a, Tensor) else a                                   # [., n, 1]
        A, B = Kh * b, Kh * a_col                       # A rows sum to 1, B columns sum to 1
        P = B * b
        Q = gP * P / reg
        cf, cg = Q.sum(-1, keepdim=True), Q.sum(-2, keepdim=True).mT                   # [N, n, 1], [N, m, 1]
        if m <= n:  # (I - A^T B) lam_g = c_g - A^T c_f; 1^T is its left null vector, so + 1 1^T
            S = torch.eye(m, dtype=C.dtype, device=C.device) - torch.bmm(A.mT, B) + 1.0
            lam_g = torch.linalg.solve(S, cg - torch.bmm(A.mT, cf))
            lam_f = cf - torch.bmm(B, lam_g)
        else:       # (I - B A^T) lam_f = c_f - B c_g
            S = torch.eye(n, dtype=C.dtype, device=C.device) - torch.bmm(B, A.mT) + 1.0
            lam_f = torch.linalg.solve(S, cf - torch.bmm(B, cg))
            lam_g = cg - torch.bmm(A.mT, lam_f)
        need_C, need_a, need_b = ctx.needs_input_grad[:3]
        gC = lam_f * A + lam_g.mT * B - Q if need_C else None
        ga = gb = None
        if need_a or need_b:
            ga = (gP * A).sum(-1) - reg * torch.bmm(Kh, lam_g)[..., 0]                 # [N, n]
            gb = (gP * B).sum(-2) - reg * torch.bmm(Kh.mT, lam_f)[..., 0]              # [N, m]
            b_vec = b[:, 0] if isinstance(b, Tensor) else b
            shift = (gb * b_vec).sum(-1, keepdim=True) / (b_vec.sum(-1, keepdim=True) if isinstance(b, Tensor) else b * m)
            ga, gb = ga + shift, gb - shift
            ga = _sum_to(ga.unsqueeze(1), a.shape) if need_a else None
            gb = _sum_to(gb.unsqueeze(1), b.shape) if need_b else None
        return gC, ga, gb, None, None, None, None
