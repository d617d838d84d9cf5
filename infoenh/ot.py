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

Gradients are those of the unrolled iterations (exact, not implicit). Inside a scaling block they
are computed by a hand-written vector-Jacobian product (:class:`_ScalingSteps`) that accumulates
the gradient of the kernel in one batched matrix product instead of one outer product per step.
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

__all__ = ["SinkhornResult", "sinkhorn", "cosine_cost", "transport_cost"]

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
# the stopping rules of :func:`sinkhorn`: POT's marginal error, the paper's change of the scaling vector
STOPS = ("marginal", "scaling")


class SinkhornResult(NamedTuple):
    """Output of :func:`sinkhorn`.

    plan:      ``[..., n, m]`` the entropic transport plan.
    n_iter:    ``[...]`` int64, Sinkhorn iterations run for each problem (POT's ``log["niter"] + 1``).
    converged: ``[...]`` bool, whether the stopping criterion fell below ``tol`` at a check.
    err:       ``[...]`` the last value of the stopping criterion for each problem.
    """

    plan: Tensor
    n_iter: Tensor
    converged: Tensor
    err: Tensor


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
    detach: bool = False,
) -> SinkhornResult:
    r"""Entropic OT plans for a batch of cost matrices, with POT's iterations and stopping rule.

    Args:
        cost: ``[..., n, m]`` finite costs, float32 or float64, any leading (batch) dims. A
            float32 cost with ``max|cost| / reg`` above 1e3 is solved in float64 (float32 cannot
            hold log potentials that large precisely enough to keep the plan's mass) and the plan
            is returned in float32.
        reg: entropic regularisation :math:`\varepsilon > 0` (the paper's :math:`\lambda = 1/\varepsilon`).
        a: source marginal, ``[n]`` (shared), ``[..., n]`` (one per problem) or None (uniform 1/n).
        b: target marginal, ``[m]``, ``[..., m]`` or None (uniform 1/m). Entries must be >= 0 and
            ``a`` and ``b`` must have the same total mass per problem. Zero entries are allowed
            (their rows/columns of the plan are 0).
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
        detach: if True, no gradient flows through the solver (the plan is a constant).

    Returns:
        :class:`SinkhornResult` ``(plan [..., n, m], n_iter [...], converged [...], err [...])``,
        in the dtype of ``cost`` (float32 for a float16/bfloat16 cost, which is solved in float32).
        Autocast and TF32 never apply inside the solver (:func:`exact_matmuls`). With ``max|cost| / reg`` above 1e4 and ``tol > 0``, problems that
        do not converge also raise a ``RuntimeWarning`` naming ``reg`` and the cost's range.
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
    *batch, n, m = cost.shape
    if n == 0 or m == 0 or math.prod(batch) == 0:
        raise ValueError(f"cost must have no empty dimension, got shape {tuple(cost.shape)}")
    lo, hi = _cost_range(cost)
    span = max(abs(lo), abs(hi)) / reg  # the magnitude of the log potentials
    # float32 holds potentials of this size only to ~span * 6e-8: beyond _F32_SPAN, solve in float64
    work = torch.float64 if cost.dtype == torch.float32 and span > _F32_SPAN else cost.dtype
    C = cost.reshape(-1, n, m).to(work)
    a_, a_zero = _marginal(a, "a", C, tuple(batch), n)
    b_, b_zero = _marginal(b, "b", C, tuple(batch), m)
    _check_mass(a_, b_)

    with torch.no_grad() if detach else contextlib.nullcontext(), exact_matmuls(C.device):
        plan, n_iter, converged, err = _sinkhorn_batched(
            C, reg, a_, b_, a_zero, b_zero, max_iter, float(tol), stop, check_every
        )
    if span > _WARN_SPAN and tol > 0:
        _warn_not_converged(converged, lo, hi, reg, max_iter)
    plan, err = plan.to(cost.dtype), err.to(cost.dtype)
    return SinkhornResult(plan.reshape(cost.shape), n_iter.reshape(batch), converged.reshape(batch), err.reshape(batch))


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


def _sinkhorn_batched(C, reg, a, b, a_zero, b_zero, max_iter, tol, stop, check_every):
    """The solver on ``C [N, n, m]``; ``a`` is a float (uniform) or ``[N or 1, 1, n]``, ``b`` alike.

    State: log-scalings ``lu [N, 1, n]``, ``lv [N, 1, m]``, the absorbed kernel
    ``K = exp(lu^T + lv - C/reg) [N, n, m]`` and relative scalings ``u``, ``v`` (rows), so that
    POT's scalings are ``exp(lu) * u`` and ``exp(lv) * v`` and the plan is ``u^T * K * v``.
    """
    N, n, m = C.shape
    opts = dict(dtype=C.dtype, device=C.device)
    safe, absorb = _RANGES[C.dtype]
    loga = _log_marginal(a)
    logb = _log_marginal(b)
    Cr = None  # C / reg, made when the log domain or an absorption first needs it
    # POT starts from u = 1/n (v is overwritten by the first update). Absorb a column shift into
    # the kernel so that every column's largest entry is 1: the first v-update stays in range.
    # The shift cancels exactly in the first update, hence no gradient through it.
    lv = C.detach().amin(-2, keepdim=True) / reg  # [N, 1, m]
    lu = torch.full((N, 1, n), -math.log(n), **opts)
    K = torch.add(lv, C, alpha=-1.0 / reg).exp_()  # = exp(lu^T + lv - C / reg), two passes
    lv = lv + math.log(n)
    u = torch.ones(N, 1, n, **opts)
    v = torch.ones(N, 1, m, **opts)
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
    while t < max_iter:
        steps = 1 if t == 0 else min(check_every, max_iter - t)
        t += steps
        keep = active.view(N, 1, 1)
        save = torch.is_grad_enabled() and any(x.requires_grad for x in (K, u, a_t, b_t))
        u1, v1, us, vs = _ScalingSteps.apply(K, u, a_t, b_t, steps, a_zero, b_zero, save)
        lo, hi, lo_last, hi_last = _block_range(us, vs, a, b, a_zero or b_zero, safe)
        if lo > 1.0 / safe and hi < safe:  # the scaling block stayed in range: keep it
            v_prev = vs[-2] if steps > 1 else v
            if n_active < N:  # frozen (converged) problems keep their state
                u1, v1 = torch.where(keep, u1, u), torch.where(keep, v1, v)
            u, v = u1, v1
            if stop == "scaling":
                with torch.no_grad():
                    lv_now, lv_prev = _add_log(lv, v), _add_log(lv, v_prev)
            if lo_last < 1.0 / absorb or hi_last > absorb:  # fold the scalings into the log potentials
                Cr = C / reg if Cr is None else Cr
                lu, lv = _add_log(lu, u), _add_log(lv, v)
                K = _kernel(lu, lv, Cr)
                u, v = torch.ones_like(u), torch.ones_like(v)
        else:  # out of range: redo this block with log-sum-exp steps (never over/underflows)
            Cr = C / reg if Cr is None else Cr
            lu0, lv0 = _add_log(lu, u), _add_log(lv, v)
            lu, lv, lv_prev = _log_steps(Cr, lu0, lv0, loga, logb, steps)
            if n_active < N:
                lu, lv = torch.where(keep, lu, lu0), torch.where(keep, lv, lv0)
            K = _kernel(lu, lv, Cr)
            u, v = torch.ones_like(u), torch.ones_like(v)
            lv_now = lv
        if tol <= 0 and t < max_iter:  # nothing can stop: only the final criterion is reported
            continue
        with torch.no_grad():
            if stop == "marginal":
                e = torch.linalg.vector_norm(v * (u @ K) - b, dim=-1).view(N)
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
    if torch.is_grad_enabled() and any(x.requires_grad for x in (K, u, v)):
        plan = u.mT * K * v
    else:  # no graph to keep: scale K in place rather than allocate two [N, n, m] tensors
        plan = K.mul_(u.mT).mul_(v)
    return plan, n_iter, converged, err


class _ScalingSteps(torch.autograd.Function):
    """``steps`` Sinkhorn scaling iterations on a fixed kernel, with an exact hand-written VJP.

    Forward: ``x = u K; v = b / x; y = v K^T; u = a / y`` repeated (rows ``u [N, 1, n]``,
    ``v [N, 1, m]``). Returns the last ``u``, ``v`` and, outside the graph, the lists of all
    iterates ``[u_0, ..., u_T]`` and ``[v_1, ..., v_T]``.

    Backward walks the iterations in reverse with vector operations only, and builds the kernel
    gradient as one batched product ``[GY, U]^T [V, GX]`` rather than one outer product per step.
    """

    @staticmethod
    def forward(ctx, K, u, a, b, steps, a_zero, b_zero, save):
        Kt = K.mT
        tiny = torch.finfo(K.dtype).tiny
        us, vs, xs, ys = [u], [], [], []
        for _ in range(steps):
            x = torch.bmm(u, K)  # bmm, not @: matmul's dispatch costs more than the product here
            if b_zero:  # a zero-mass column gives 0 / tiny = 0, not 0 / 0
                x = x.clamp_min(tiny)
            v = b / x
            y = torch.bmm(v, Kt)
            if a_zero:
                y = y.clamp_min(tiny)
            u = a / y
            us.append(u)
            vs.append(v)
            if save:
                xs.append(x)
                ys.append(y)
        if save:  # only when a gradient will be asked for
            ctx.save_for_backward(K, torch.cat(us, 1), torch.cat(vs, 1), torch.cat(xs, 1), torch.cat(ys, 1))
            ctx.a_shape, ctx.b_shape = a.shape, b.shape
        return u, v, us, vs  # the lists are plain tensors, outside the graph

    @staticmethod
    @once_differentiable
    def backward(ctx, gu, gv, _gus, _gvs):
        K, U, V, X, Y = ctx.saved_tensors
        steps = V.shape[1]
        need_K, need_u, need_a, need_b = ctx.needs_input_grad[:4]
        # d u_t / d y_t = -u_t / y_t and d v_t / d x_t = -v_t / x_t, for all t at once
        Wu, Wv = -U[:, 1:] / Y, -V / X
        gu = torch.zeros_like(U[:, :1]) if gu is None else gu
        gv_last = torch.zeros_like(V[:, :1]) if gv is None else gv
        gys, gxs, ga, gb = [None] * steps, [None] * steps, 0, 0
        for t in reversed(range(steps)):
            if need_a:
                ga = ga + gu / Y[:, t : t + 1]
            gy = gu * Wu[:, t : t + 1]
            gv = torch.bmm(gy, K)
            if t == steps - 1:
                gv = gv + gv_last
            if need_b:
                gb = gb + gv / X[:, t : t + 1]
            gx = gv * Wv[:, t : t + 1]
            gu = torch.bmm(gx, K.mT)
            gys[t], gxs[t] = gy, gx
        gK = None
        if need_K:  # sum_t gy_t^T v_t + u_{t-1}^T gx_t
            gK = torch.bmm(torch.cat(gys + [U[:, :steps]], 1).mT, torch.cat([V] + gxs, 1))
        ga = _sum_to(ga, ctx.a_shape) if need_a else None
        gb = _sum_to(gb, ctx.b_shape) if need_b else None
        return gK, gu if need_u else None, ga, gb, None, None, None, None


def _log_steps(Cr, lu, lv, loga, logb, steps):
    """``steps`` log-domain Sinkhorn iterations; returns ``lu``, ``lv`` and the ``lv`` before the last."""
    lv_prev = lv
    for _ in range(steps):
        lv_prev = lv
        lv = logb - torch.logsumexp(lu.mT - Cr, dim=-2, keepdim=True)
        lu = loga - torch.logsumexp(lv - Cr, dim=-1, keepdim=True).mT
    return lu, lv, lv_prev


def _kernel(lu, lv, Cr):
    """Absorbed Gibbs kernel ``exp(lu_i + lv_j - C_ij / reg)``: ``[N, 1, n], [N, 1, m] -> [N, n, m]``."""
    return torch.exp(lu.mT + lv - Cr)


def _add_log(l, s):
    """``l + log(s)`` where a zero scaling (zero-mass point) gives -inf without a NaN gradient."""
    pos = s > 0
    return torch.where(pos, l + torch.log(torch.where(pos, s, 1.0)), -math.inf)


def _block_range(us, vs, a, b, zero_mass, safe):
    """Range of the relative scalings of a block: (min, max) over all iterates, then over the last.

    ``us = [u_0, ..., u_T]``, ``vs = [v_1, ..., v_T]``; points of zero mass are left out. The
    exact range takes a pass over every iterate; the bound of :func:`_iterate_bounds` needs only
    the first two and is used when it lies inside ``[1/safe, safe]``.
    """
    with torch.no_grad():
        if not zero_mass and len(vs) > 1:
            (u_lo, u_hi, v_lo, v_hi), (l_lo, l_hi) = _iterate_bounds(us, vs)
            if 1.0 / safe < min(u_lo, v_lo) and max(u_hi, v_hi) < safe:
                return min(u_lo, v_lo), max(u_hi, v_hi), l_lo, l_hi
        U, V = torch.cat(us, 1), torch.cat(vs, 1)  # [N, T + 1, n], [N, T, m]
        if zero_mass:
            U = torch.where(a > 0, U, 1.0) if isinstance(a, Tensor) else U
            V = torch.where(b > 0, V, 1.0) if isinstance(b, Tensor) else V
        stats = [*torch.aminmax(U), *torch.aminmax(V), *torch.aminmax(U[:, -1]), *torch.aminmax(V[:, -1])]
        u_lo, u_hi, v_lo, v_hi, ul_lo, ul_hi, vl_lo, vl_hi = torch.stack(stats).tolist()
    return min(u_lo, v_lo), max(u_hi, v_hi), min(ul_lo, vl_lo), max(ul_hi, vl_hi)


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
