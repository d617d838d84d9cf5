"""Tests for infoenh.ot: the batched log-domain Sinkhorn solver against POT, its stopping rules,
gradients, numerical safety, input checks, and the cosine cost."""
import math
import warnings

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infoenh.ot import SinkhornResult, cosine_cost, sinkhorn, transport_cost

F64 = torch.float64


def _rand_marginal(rng, size):
    w = rng.random(size) + 0.05
    return w / w.sum(-1, keepdims=True)


def _pot(a, b, C, reg, max_iter, tol, method="sinkhorn_log"):
    """POT's plan and iteration count (POT's log['niter'] is the last 0-based index)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" is expected with a small max_iter
        P, log = ot.sinkhorn(a, b, C, reg, method=method, numItermax=max_iter, stopThr=tol, log=True)
    return P, log["niter"] + 1


def _pot_batch(a, b, C, reg, max_iter, tol, method="sinkhorn_log"):
    """Loop POT over the problems of C [B, n, m]; a, b are [B, k] or shared [k]."""
    plans, iters = [], []
    for i in range(C.shape[0]):
        ai = a if a.ndim == 1 else a[i]
        bi = b if b.ndim == 1 else b[i]
        P, it = _pot(ai, bi, C[i], reg, max_iter, tol, method)
        plans.append(P)
        iters.append(it)
    return np.stack(plans), np.array(iters)


# ----------------------------------------------------------------------------- against POT


@pytest.mark.parametrize(
    "n, m, reg, tol, max_iter",
    [
        (7, 7, 0.1, 0.0, 50),  # square, fixed iterations
        (5, 9, 0.05, 1e-9, 1000),  # n < m, runs to tolerance
        (12, 3, 0.5, 1e-6, 1000),  # n > m
        (1, 6, 0.1, 1e-9, 100),  # a single source point
        (6, 6, 1.0, 1e-12, 7),  # stops at max_iter before the 10-step check
    ],
)
def test_matches_pot_sinkhorn_knopp(n, m, reg, tol, max_iter):
    rng = np.random.default_rng(n * 100 + m)
    C = rng.random((n, m)) * 2
    a, b = _rand_marginal(rng, n), _rand_marginal(rng, m)
    P_ref, it_ref = _pot(a, b, C, reg, max_iter, tol, method="sinkhorn")
    r = sinkhorn(torch.tensor(C), reg, torch.tensor(a), torch.tensor(b), max_iter=max_iter, tol=tol)
    assert isinstance(r, SinkhornResult)
    assert r.plan.shape == (n, m) and r.n_iter.shape == () and r.plan.dtype == F64
    np.testing.assert_allclose(r.plan.numpy(), P_ref, atol=1e-6, rtol=0)
    assert int(r.n_iter) == it_ref


@pytest.mark.parametrize("reg", [1e-3, 3e-3, 1e-2])
def test_matches_pot_log_at_tiny_reg(reg):
    """Tiny reg: POT's scaling form underflows, its log form does not; we match the log form."""
    rng = np.random.default_rng(1)
    C = rng.random((3, 8, 6)) * 2
    a, b = _rand_marginal(rng, (3, 8)), _rand_marginal(rng, 6)
    P_ref, it_ref = _pot_batch(a, b, C, reg, 300, 1e-7)
    r = sinkhorn(torch.tensor(C), reg, torch.tensor(a), torch.tensor(b), max_iter=300, tol=1e-7)
    np.testing.assert_allclose(r.plan.numpy(), P_ref, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(r.n_iter.numpy(), it_ref)


def test_matches_pot_log_with_huge_costs():
    rng = np.random.default_rng(2)
    C = rng.random((2, 5, 7)) * 1e3  # C / reg up to 1e5: exp(-C / reg) is 0 for almost all entries
    P_ref, it_ref = _pot_batch(np.full(5, 0.2), np.full(7, 1 / 7), C, 10.0, 200, 1e-9)
    r = sinkhorn(torch.tensor(C), 10.0, max_iter=200, tol=1e-9)
    np.testing.assert_allclose(r.plan.numpy(), P_ref, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(r.n_iter.numpy(), it_ref)
    r = sinkhorn(torch.tensor(C), 0.01, max_iter=50, tol=0.0)  # C / reg up to 1e5
    assert torch.isfinite(r.plan).all()
    np.testing.assert_allclose(r.plan.sum(-1).numpy(), 0.2, atol=1e-9)  # rows are exact after the u-update


def test_batch_dims_shared_and_batched_marginals():
    rng = np.random.default_rng(3)
    C = rng.random((2, 3, 6, 4)) * 2
    a_shared = _rand_marginal(rng, 6)
    b_batched = _rand_marginal(rng, (2, 3, 4))
    r = sinkhorn(torch.tensor(C), 0.05, torch.tensor(a_shared), torch.tensor(b_batched), max_iter=400, tol=1e-8)
    assert r.plan.shape == (2, 3, 6, 4) and r.n_iter.shape == (2, 3) and r.converged.shape == (2, 3)
    assert r.err.shape == (2, 3) and r.n_iter.dtype == torch.int64 and r.converged.dtype == torch.bool
    P_ref, it_ref = _pot_batch(a_shared, b_batched.reshape(6, 4), C.reshape(6, 6, 4), 0.05, 400, 1e-8)
    np.testing.assert_allclose(r.plan.reshape(6, 6, 4).numpy(), P_ref, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(r.n_iter.reshape(6).numpy(), it_ref)
    # a shared marginal gives the same plans as the same marginal repeated per problem
    a_rep = torch.tensor(a_shared).expand(2, 3, 6).contiguous()
    r2 = sinkhorn(torch.tensor(C), 0.05, a_rep, torch.tensor(b_batched), max_iter=400, tol=1e-8)
    torch.testing.assert_close(r.plan, r2.plan, rtol=0, atol=1e-14)
    # None means uniform
    r3 = sinkhorn(torch.tensor(C), 0.05, max_iter=30, tol=0)
    r4 = sinkhorn(torch.tensor(C), 0.05, torch.full((6,), 1 / 6, dtype=F64), torch.full((4,), 0.25, dtype=F64), max_iter=30, tol=0)
    torch.testing.assert_close(r3.plan, r4.plan, rtol=0, atol=1e-14)


@pytest.mark.parametrize("reg", [0.5, 0.05])
def test_float32_close_to_pot_log_float32(reg):
    rng = np.random.default_rng(4)
    C = (rng.random((4, 10, 8)) * 2).astype(np.float32)
    P_ref, _ = _pot_batch(np.full(10, 0.1, np.float32), np.full(8, 0.125, np.float32), C, reg, 100, 0.0)
    r = sinkhorn(torch.tensor(C), reg, max_iter=100, tol=0.0)
    assert r.plan.dtype == torch.float32
    np.testing.assert_allclose(r.plan.numpy(), P_ref, atol=2e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 7),
    m=st.integers(1, 7),
    batch=st.integers(1, 3),
    log_reg=st.floats(-2.5, 0.5),
    scale=st.sampled_from([0.1, 1.0, 2.0, 30.0]),
    tol=st.sampled_from([0.0, 1e-4, 1e-9]),
    max_iter=st.integers(1, 120),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_matches_pot_log(n, m, batch, log_reg, scale, tol, max_iter, seed):
    rng = np.random.default_rng(seed)
    reg = 10.0**log_reg
    C = rng.random((batch, n, m)) * scale
    a, b = _rand_marginal(rng, (batch, n)), _rand_marginal(rng, m)
    P_ref, it_ref = _pot_batch(a, b, C, reg, max_iter, tol)
    r = sinkhorn(torch.tensor(C), reg, torch.tensor(a), torch.tensor(b), max_iter=max_iter, tol=tol)
    np.testing.assert_allclose(r.plan.numpy(), P_ref, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(r.n_iter.numpy(), it_ref)
    assert torch.isfinite(r.plan).all() and (r.plan >= 0).all()


def test_zero_mass_points_match_pot():
    rng = np.random.default_rng(5)
    C = rng.random((2, 5, 6)) * 2
    a = np.array([0.4, 0.0, 0.2, 0.4, 0.0])
    b = np.array([[0.0, 0.3, 0.3, 0.0, 0.2, 0.2], [0.5, 0.0, 0.0, 0.0, 0.0, 0.5]])
    for reg in (0.5, 0.02):
        P_ref, it_ref = _pot_batch(a, b, C, reg, 300, 1e-9)
        Ct = torch.tensor(C, requires_grad=True)
        r = sinkhorn(Ct, reg, torch.tensor(a), torch.tensor(b), max_iter=300, tol=1e-9)
        np.testing.assert_allclose(r.plan.detach().numpy(), P_ref, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(r.n_iter.numpy(), it_ref)
        assert (r.plan[:, [1, 4]] == 0).all() and (r.plan[0, :, [0, 3]] == 0).all()
        transport_cost(r.plan, Ct).sum().backward()
        assert torch.isfinite(Ct.grad).all()


# ----------------------------------------------------------------------------- convergence


def test_marginals_satisfied_at_convergence():
    torch.manual_seed(0)
    C = torch.rand(4, 9, 11, dtype=F64) * 2
    a = torch.softmax(torch.randn(4, 9, dtype=F64), -1)
    b = torch.softmax(torch.randn(11, dtype=F64), -1)
    r = sinkhorn(C, 0.05, a, b, max_iter=5000, tol=1e-10)
    assert r.converged.all() and (r.err < 1e-10).all() and (r.n_iter < 5000).all()
    torch.testing.assert_close(r.plan.sum(-1), a, rtol=0, atol=1e-9)
    torch.testing.assert_close(r.plan.sum(-2), b.expand(4, 11), rtol=0, atol=1e-9)


def test_cost_approaches_emd_as_reg_shrinks():
    rng = np.random.default_rng(6)
    C = rng.random((8, 8)) * 2
    a, b = _rand_marginal(rng, 8), _rand_marginal(rng, 8)
    emd = ot.emd2(a, b, C)
    gaps = []
    for reg in (0.3, 0.1, 0.03, 0.01, 0.003):
        r = sinkhorn(torch.tensor(C), reg, torch.tensor(a), torch.tensor(b), max_iter=20000, tol=1e-10)
        gaps.append(float(transport_cost(r.plan, torch.tensor(C))) - emd)
        # entropic bias bound: 0 <= <P, C> - OT <= reg * (H(a) + H(b)) (+ what tol leaves)
        assert -1e-7 <= gaps[-1] <= reg * (np.log(8) * 2) + 1e-6
    assert all(g1 > g2 for g1, g2 in zip(gaps, gaps[1:]))
    assert gaps[-1] < 2e-3


def test_batched_problems_stop_as_if_alone():
    """Problems with very different convergence speeds: in a batch each stops where it would alone."""
    rng = np.random.default_rng(7)
    scales = np.array([0.05, 0.3, 1.0, 2.0, 8.0])[:, None, None]
    C = rng.random((5, 6, 7)) * scales
    reg, tol = 0.05, 1e-8
    r = sinkhorn(torch.tensor(C), reg, max_iter=2000, tol=tol)
    assert len(set(r.n_iter.tolist())) >= 3, "the case should have different stopping iterations"
    _, it_ref = _pot_batch(np.full(6, 1 / 6), np.full(7, 1 / 7), C, reg, 2000, tol)
    np.testing.assert_array_equal(r.n_iter.numpy(), it_ref)
    for i in range(5):
        alone = sinkhorn(torch.tensor(C[i]), reg, max_iter=2000, tol=tol)
        assert int(alone.n_iter) == int(r.n_iter[i])
        torch.testing.assert_close(alone.plan, r.plan[i], rtol=0, atol=1e-13)
        assert float(alone.err) == pytest.approx(float(r.err[i]), rel=1e-9, abs=1e-15)
    assert r.converged.all() and (r.err < tol).all()


@pytest.mark.parametrize("check_every", [1, 3, 10])
def test_check_every_sets_stopping_iterations(check_every):
    rng = np.random.default_rng(8)
    C = torch.tensor(rng.random((3, 5, 5)))
    r = sinkhorn(C, 0.2, max_iter=500, tol=1e-9, check_every=check_every)
    assert r.converged.all()
    assert ((r.n_iter - 1) % check_every == 0).all()
    # the first check where the criterion passes: one check earlier it must not have passed
    for i in range(3):
        before = sinkhorn(C[i], 0.2, max_iter=int(r.n_iter[i]) - check_every, tol=0.0) if r.n_iter[i] > check_every else None
        if before is not None:
            assert float(before.err) >= 1e-9


@pytest.mark.parametrize("max_iter", [1, 11, 31])
def test_err_is_pot_marginal_error_and_paper_delta(max_iter):
    """At a check iteration, err is POT's logged marginal error, or the paper's mean |v_t - v_{t-1}|."""
    rng = np.random.default_rng(10)
    C = rng.random((5, 4)) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, log = ot.sinkhorn(np.full(5, 0.2), np.full(4, 0.25), C, 0.2, numItermax=max_iter, stopThr=0.0, log=True)
    r = sinkhorn(torch.tensor(C), 0.2, max_iter=max_iter, tol=0.0)
    assert float(r.err) == pytest.approx(float(log["err"][-1]), rel=1e-9)
    assert not bool(r.converged)
    K = np.exp(-C / 0.2)
    u, v = np.full(5, 0.2), np.full(4, 0.25)  # POT's start: u = 1/n, v = 1/m
    for _ in range(max_iter):
        v_prev, v = v, 0.25 / (K.T @ u)
        u = 0.2 / (K @ v)
    r = sinkhorn(torch.tensor(C), 0.2, max_iter=max_iter, tol=0.0, stop="scaling")
    assert float(r.err) == pytest.approx(np.abs(v - v_prev).mean(), rel=1e-9)


def _paper_rule_reference(C, reg, max_iter, tol, check_every):
    """POT's scaling iterations with the paper's stopping rule, mean |v_t - v_{t-1}| < tol."""
    n, m = C.shape
    K = np.exp(-C / reg)
    u, v = np.full(n, 1 / n), np.full(m, 1 / m)
    for t in range(1, max_iter + 1):
        v_prev = v
        v = (1 / m) / (K.T @ u)
        u = (1 / n) / (K @ v)
        if (t - 1) % check_every == 0 or t == max_iter:
            if np.abs(v - v_prev).mean() < tol:
                break
    return u[:, None] * K * v[None, :], t


@pytest.mark.parametrize("tol, check_every", [(1e-2, 1), (1e-6, 10), (1e-9, 5)])
def test_scaling_stop_rule_matches_reference(tol, check_every):
    rng = np.random.default_rng(9)
    C = rng.random((4, 6, 5)) * np.array([0.2, 0.5, 1.0, 2.0])[:, None, None]
    r = sinkhorn(torch.tensor(C), 0.3, max_iter=3000, tol=tol, stop="scaling", check_every=check_every)
    for i in range(4):
        P_ref, it_ref = _paper_rule_reference(C[i], 0.3, 3000, tol, check_every)
        assert int(r.n_iter[i]) == it_ref
        np.testing.assert_allclose(r.plan[i].numpy(), P_ref, atol=1e-10, rtol=0)
    assert r.converged.all() and (r.err < tol).all()


def test_scaling_stop_rule_is_finite_and_stops_at_tiny_reg():
    """At reg 1e-3 the scaling vector v = exp(g / reg) itself overflows float64; the rule is computed
    in logs, so it is never NaN and it stops once v stops moving."""
    g = torch.Generator().manual_seed(1)
    # f_i + h_j + a small part: the plan depends on the small part only, so the iterations settle
    # within a few checks, while v = exp(g / reg) is astronomically large
    C = torch.rand(2, 6, 1, generator=g, dtype=F64) + 2 * torch.rand(2, 1, 6, generator=g, dtype=F64)
    C = C + 1e-3 * torch.rand(2, 6, 6, generator=g, dtype=F64)
    lv1 = math.log(1 / 6) - torch.logsumexp(math.log(1 / 6) - C / 1e-3, dim=-2)  # log v after iteration 1
    assert float(lv1.max()) > math.log(torch.finfo(F64).max)  # v overflows
    r = sinkhorn(C, 1e-3, max_iter=3000, tol=1e-6, stop="scaling")
    assert torch.isfinite(r.plan).all() and not torch.isnan(r.err).any()
    assert r.converged.all() and (r.err < 1e-6).all() and (r.n_iter < 3000).all()
    assert ((r.n_iter - 1) % 10 == 0).all()  # it stopped at a check
    torch.testing.assert_close(r.plan.sum(-2), torch.full((2, 6), 1 / 6, dtype=F64), rtol=0, atol=1e-9)
    # on a cost whose iterates never settle bitwise, err stays +inf (documented), never NaN
    torch.manual_seed(1)
    r = sinkhorn(torch.rand(2, 6, 6, dtype=F64) * 2, 1e-3, max_iter=300, tol=1e-6, stop="scaling")
    assert torch.isfinite(r.plan).all() and not torch.isnan(r.err).any() and not r.converged.any()


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("reg, max_iter", [(1.0, 3), (0.1, 12), (0.01, 25)])
def test_gradcheck_float64(reg, max_iter):
    torch.manual_seed(2)
    C = (torch.rand(2, 3, 4, dtype=F64) * 2).requires_grad_()
    a = (torch.rand(2, 3, dtype=F64) + 0.1).requires_grad_()
    b = (torch.rand(4, dtype=F64) + 0.1).requires_grad_()

    def f(C, a, b):  # normalise inside, so finite differences keep the masses equal
        return sinkhorn(C, reg, a / a.sum(-1, keepdim=True), b / b.sum(), max_iter=max_iter, tol=0.0).plan

    assert torch.autograd.gradcheck(f, (C, a, b))


def test_gradient_equals_unrolled_log_domain_autograd():
    """The hand-written VJP of the scaling blocks equals plain autograd through log-domain steps."""
    torch.manual_seed(3)
    C = (torch.rand(3, 5, 6, dtype=F64) * 2).requires_grad_()
    reg, n_it = 0.05, 40
    W = torch.randn(3, 5, 6, dtype=F64)
    (g,) = torch.autograd.grad((sinkhorn(C, reg, max_iter=n_it, tol=0.0).plan * W).sum(), C)
    lu, lv = torch.zeros(3, 5, dtype=F64), torch.zeros(3, 6, dtype=F64)
    for _ in range(n_it):
        lv = math.log(1 / 6) - torch.logsumexp(lu[..., :, None] - C / reg, -2)
        lu = math.log(1 / 5) - torch.logsumexp(lv[..., None, :] - C / reg, -1)
    (g_ref,) = torch.autograd.grad((torch.exp(lu[..., :, None] + lv[..., None, :] - C / reg) * W).sum(), C)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("reg, spread, scale", [(1.0, 0.5, 1.0), (0.1, 0.5, 1.0), (0.02, 0.5, 1.0), (0.1, 4.0, 1e-3), (0.1, 4.0, 1e3)])
def test_block_range_bound_contains_every_iterate(reg, spread, scale):
    """The cheap range bound of a scaling block (from its first two iterates) holds for all of them."""
    from infoenh.ot import _block_range, _iterate_bounds, _ScalingSteps

    torch.manual_seed(7)
    K = torch.exp(-(torch.rand(6, 5, 7, dtype=F64) * 2) / reg)
    u0 = scale * torch.exp(spread * torch.randn(6, 1, 5, dtype=F64))  # starts far from the fixed point
    a, b = torch.tensor(0.2, dtype=F64), torch.tensor(1 / 7, dtype=F64)
    *_, us, vs, _, _ = _ScalingSteps.apply(K, u0, a, b, 12, False)
    U, V = torch.cat(us, 1), torch.cat(vs, 1)
    (u_lo, u_hi, v_lo, v_hi), (l_lo, l_hi) = _iterate_bounds(us, vs)
    assert u_lo <= float(U.min()) and float(U.max()) <= u_hi
    assert v_lo <= float(V.min()) and float(V.max()) <= v_hi
    last = torch.cat([us[-1], vs[-1]], 2)
    assert l_lo == float(last.min()) and l_hi == float(last.max())
    # the block range uses the bound when it is inside the safe range, else the exact range
    assert _block_range(us, vs, math.inf) == (min(u_lo, v_lo), max(u_hi, v_hi), l_lo, l_hi)
    exact = (min(float(U.min()), float(V.min())), max(float(U.max()), float(V.max())), l_lo, l_hi)
    assert _block_range(us, vs, 1.0) == exact


def test_detach_gives_a_constant_plan():
    C = torch.rand(2, 4, 4, dtype=F64, requires_grad=True)
    r = sinkhorn(C, 0.1, max_iter=20, detach=True)
    assert not r.plan.requires_grad
    torch.testing.assert_close(r.plan, sinkhorn(C, 0.1, max_iter=20).plan.detach())


@pytest.mark.parametrize("reg", [1e-3, 3e-3, 1e-2, 0.1, 1.0])
def test_float32_no_nan_or_inf_in_plan_or_gradient(reg):
    torch.manual_seed(4)
    cases = [
        torch.rand(3, 6, 9) * 2,  # uniform in [0, 2]
        torch.where(torch.rand(3, 6, 9) < 0.8, 2.0, 0.0),  # mostly maximal cost, a few zeros
        torch.round(torch.rand(3, 6, 9) * 2),  # ties at 0, 1, 2
        torch.full((3, 6, 9), 2.0),  # constant at the top of the range
        cosine_cost(torch.randn(3, 6, 32), torch.randn(3, 9, 32)),  # the method's cost
    ]
    for C in cases:
        for max_iter in (1, 15, 200):
            C = C.detach().float().requires_grad_()
            r = sinkhorn(C, reg, max_iter=max_iter, tol=1e-6)
            (r.plan * torch.randn_like(r.plan)).sum().backward()
            assert torch.isfinite(r.plan).all(), (reg, max_iter)
            assert torch.isfinite(C.grad).all(), (reg, max_iter)
            torch.testing.assert_close(r.plan.sum(-1), torch.full((3, 6), 1 / 6), rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(5)
    for dtype, atol in ((F64, 1e-10), (torch.float32, 1e-5)):
        C = (torch.rand(4, 6, 7, 5, dtype=dtype) * 2).requires_grad_()
        Cg = C.detach().cuda().requires_grad_()
        r, rg = sinkhorn(C, 0.05, max_iter=100, tol=1e-6), sinkhorn(Cg, 0.05, max_iter=100, tol=1e-6)
        assert rg.plan.is_cuda and rg.n_iter.is_cuda
        torch.testing.assert_close(rg.plan.cpu(), r.plan.detach(), rtol=0, atol=atol)
        assert torch.equal(rg.n_iter.cpu(), r.n_iter)
        transport_cost(r.plan, C).sum().backward()
        transport_cost(rg.plan, Cg).sum().backward()
        torch.testing.assert_close(Cg.grad.cpu(), C.grad, rtol=1e-3, atol=atol * 10)


# ----------------------------------------------------------------------------- huge cost / reg


def _separable_cost(scale, small, seed=0):
    """float32 costs [3, 7, 5] f_i + h_j + s_ij, f and h in [0, scale], s in [0, small]. The plan
    depends on s only (f and h go into the potentials), so Sinkhorn converges as fast as for s / reg,
    while the potentials are as large as scale / reg."""
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(3, 7, 1, generator=g, dtype=F64) * scale
    h = torch.rand(3, 1, 5, generator=g, dtype=F64) * scale
    return (f + h + torch.rand(3, 7, 5, generator=g, dtype=F64) * small).float()


@pytest.mark.parametrize("scale, small, reg", [(5e5, 2.0, 1.0), (0.5, 2e-7, 1e-7)])
def test_float32_huge_cost_over_reg_matches_float64(scale, small, reg):
    """cost up to ~1e6 with reg 1, and cost ~1 with reg 1e-7: float32 cannot hold potentials of
    size 1e6-1e7 precisely, so the problem is solved in float64 and returned in float32."""
    C = _separable_cost(scale, small)
    assert float(C.abs().max()) / reg > 5e5
    C.requires_grad_()
    g = torch.Generator().manual_seed(1)
    a = torch.softmax(torch.randn(3, 7, generator=g, dtype=F64), -1).float()
    b = torch.softmax(torch.randn(5, generator=g, dtype=F64), -1).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it converges: no warning
        r = sinkhorn(C, reg, a, b, max_iter=2000, tol=1e-7)
    C64 = C.detach().double().requires_grad_()
    r64 = sinkhorn(C64, reg, a.double(), b.double(), max_iter=2000, tol=1e-7)
    assert r.plan.dtype == torch.float32 and r.err.dtype == torch.float32
    assert r.converged.all() and torch.equal(r.n_iter, r64.n_iter)
    torch.testing.assert_close(r.plan, r64.plan.float(), rtol=0, atol=1e-7)
    torch.testing.assert_close(r.plan.double().sum(-1), a.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(r.plan.double().sum(-2), b.double().expand(3, 5), rtol=0, atol=1e-6)
    W = torch.randn(3, 7, 5, dtype=F64)
    (r.plan * W.float()).sum().backward()
    (r64.plan * W).sum().backward()
    assert C.grad.dtype == torch.float32
    torch.testing.assert_close(C.grad.double(), C64.grad, rtol=1e-4, atol=1e-4 * float(C64.grad.abs().max()))


def test_float32_huge_cost_over_reg_keeps_the_mass_and_warns_when_it_cannot_converge():
    """A generic cost up to 1e6 with reg 1 needs ~1e6 iterations: the plan keeps its mass (rows
    exact, as in float64), converged is False, and a warning names reg and the cost range."""
    torch.manual_seed(11)
    C = torch.rand(2, 6, 7) * 1e6
    with pytest.warns(RuntimeWarning, match=r"2 of 2 problems did not converge in max_iter=200 .*spans "
                                            r"\[[0-9.e+]+, [0-9.e+]+\] and reg = 1, .*larger reg.*normalise"):
        r = sinkhorn(C, 1.0, max_iter=200)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r64 = sinkhorn(C.double(), 1.0, max_iter=200)
    assert r.plan.dtype == torch.float32 and not r.converged.any()
    torch.testing.assert_close(r.plan.double().sum(-1), torch.full((2, 6), 1 / 6, dtype=F64), rtol=0, atol=1e-7)
    torch.testing.assert_close(r.plan.double().sum((-2, -1)), torch.ones(2, dtype=F64), rtol=0, atol=1e-6)
    torch.testing.assert_close(r.plan, r64.plan.float(), rtol=0, atol=1e-7)


def test_no_warning_for_ordinary_or_fixed_iteration_problems():
    torch.manual_seed(12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = sinkhorn(torch.rand(4, 6, 6) * 2, 0.1, max_iter=3, tol=1e-9)  # FIA's scale, not converged
        assert not r.converged.any()
        sinkhorn(torch.rand(2, 6, 7) * 1e6, 1.0, max_iter=50, tol=0.0)    # tol = 0: fixed iterations


def test_float32_is_solved_in_float64_only_beyond_1e3(monkeypatch):
    import infoenh.ot as ot_mod

    seen = []
    real = ot_mod._sinkhorn_batched
    monkeypatch.setattr(ot_mod, "_sinkhorn_batched", lambda C, *args: seen.append(C.dtype) or real(C, *args))
    C = torch.rand(2, 5, 5)
    C[0, 0, 0] = 2.0
    for reg in (2.0 / 900, 2.0 / 1100):
        r = sinkhorn(C, reg, max_iter=20)
        assert r.plan.dtype == torch.float32 and torch.isfinite(r.plan).all()
    sinkhorn(C.double() * 1e4, 1e-3, max_iter=20, tol=0.0)  # float64 stays float64
    assert seen == [torch.float32, torch.float64, torch.float64]


# ----------------------------------------------------------------------------- autocast


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_costs_and_autocast_do_not_reach_the_solver(half):
    """A cost made under autocast (half precision) is solved in float32, and an autocast region
    around the call changes nothing: the same plan as the float32 cost outside autocast."""
    g = torch.Generator().manual_seed(0)
    C = cosine_cost(torch.randn(4, 6, 8, generator=g), torch.randn(4, 6, 8, generator=g))
    ref = sinkhorn(C, 0.1, max_iter=200, tol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = sinkhorn(C, 0.1, max_iter=200, tol=0)
    assert inside.plan.dtype == torch.float32 and torch.equal(inside.plan, ref.plan)
    r = sinkhorn(C.to(half), 0.1, max_iter=200, tol=0)
    assert r.plan.dtype == torch.float32
    assert torch.allclose(r.plan, sinkhorn(C.to(half).float(), 0.1, max_iter=200, tol=0).plan)


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(cost=torch.rand(5)), ValueError, "at least 2 dimensions"),
        (dict(cost=torch.tensor([[0.0, float("nan")], [1.0, 2.0]])), ValueError, "NaN"),
        (dict(cost=torch.tensor([[0.0, float("inf")], [1.0, 2.0]])), ValueError, "inf"),
        (dict(cost=torch.ones(2, 2, dtype=torch.int64)), TypeError, "floating"),
        (dict(cost=torch.ones(2, 2, dtype=torch.complex64)), TypeError, "floating"),
        (dict(cost=[[0.0, 1.0]]), TypeError, "torch.Tensor"),
        (dict(cost=torch.ones(0, 3)), ValueError, "empty"),
        (dict(reg=0.0), ValueError, "reg"),
        (dict(reg=-0.1), ValueError, "reg"),
        (dict(reg=float("nan")), ValueError, r"reg \(the entropic regularisation\) must be a finite .* got nan"),
        (dict(reg=float("inf")), ValueError, r"reg .* > 0, got inf"),
        (dict(reg="0.1"), ValueError, r"reg .* > 0, got '0.1'"),
        (dict(a=torch.ones(4) / 4), ValueError, r"a must have shape \(3,\)"),
        (dict(b=torch.ones(2, 4) / 4), ValueError, r"b must have shape \(4,\)"),
        (dict(a=torch.tensor([0.5, 0.7, -0.2])), ValueError, "negative"),
        (dict(a=torch.tensor([0.2, 0.2, 0.2])), ValueError, "same total mass"),
        (dict(a=torch.zeros(3), b=torch.zeros(4)), ValueError, "positive total mass"),
        (dict(a=np.ones(3) / 3), TypeError, "torch.Tensor"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(check_every=0), ValueError, "check_every"),
        (dict(tol=-1.0), ValueError, "tol"),
        (dict(stop="delta"), ValueError, "stop"),
    ],
)
def test_bad_inputs_raise(kwargs, error, match):
    args = dict(cost=torch.rand(3, 4), reg=0.1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sinkhorn(**args)


def test_mass_mismatch_tolerance_is_relative_1e6():
    C = torch.rand(3, 4, dtype=F64)
    sinkhorn(C, 0.1, torch.full((3,), 1 / 3, dtype=F64) * (1 + 5e-7), max_iter=5)  # within 1e-6: fine
    with pytest.raises(ValueError, match="same total mass"):
        sinkhorn(C, 0.1, torch.full((3,), 1 / 3, dtype=F64) * (1 + 5e-6), max_iter=5)


# ----------------------------------------------------------------------------- costs


def test_cosine_cost_matches_direct_formula():
    torch.manual_seed(6)
    x, y = torch.randn(2, 5, 8, dtype=F64), torch.randn(2, 7, 8, dtype=F64)
    C = cosine_cost(x, y)
    direct = 1 - torch.einsum("bid,bjd->bij", x, y) / (x.norm(dim=-1)[:, :, None] * y.norm(dim=-1)[:, None, :])
    assert C.shape == (2, 5, 7)
    torch.testing.assert_close(C, direct, rtol=0, atol=1e-12)
    assert (C >= -1e-12).all() and (C <= 2 + 1e-12).all()
    np.testing.assert_allclose(C[0].numpy(), ot.dist(x[0].numpy(), y[0].numpy(), metric="cosine"), atol=1e-12)


def test_cosine_cost_zero_vectors_finite_with_finite_gradient():
    x = torch.randn(4, 6)
    x[1] = 0.0
    y = torch.randn(3, 6)
    y[2] = 0.0
    x.requires_grad_(), y.requires_grad_()
    C = cosine_cost(x, y)
    assert torch.isfinite(C).all()
    torch.testing.assert_close(C[1], torch.ones(3))
    torch.testing.assert_close(C[:, 2], torch.ones(4))
    C.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_cosine_cost_bad_inputs():
    with pytest.raises(ValueError, match="last"):
        cosine_cost(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        cosine_cost(torch.full((2, 3), float("nan")), torch.randn(2, 3))


def test_transport_cost():
    P = torch.rand(2, 3, 4, dtype=F64)
    C = torch.rand(2, 3, 4, dtype=F64)
    torch.testing.assert_close(transport_cost(P, C), (P * C).sum((-2, -1)))
    with pytest.raises(ValueError, match="same last two"):
        transport_cost(P, torch.rand(2, 4, 3))


# ----------------------------------------------------------------------------- zero-mass gradients


def _paths(monkeypatch):
    """Count which paths of the solver ran: absorptions (kernel rebuilt after a kept scaling
    block) and log-domain blocks (reduced form, used when a marginal has a zero)."""
    import infoenh.ot as O

    seen = {"log": 0, "kernel": 0}
    log_steps, kernel = O._log_steps_reduced, O._kernel

    def spy_log(*args, **kw):
        seen["log"] += 1
        return log_steps(*args, **kw)

    def spy_kernel(*args, **kw):
        seen["kernel"] += 1
        return kernel(*args, **kw)

    monkeypatch.setattr(O, "_log_steps_reduced", spy_log)
    monkeypatch.setattr(O, "_kernel", spy_kernel)
    return seen


def _one_sided_fd(loss, w, h):
    """(loss(w + h e_i) - loss(w)) / h for every entry i: the derivative as mass moves in from w_i."""
    base = loss(w)
    out = torch.empty_like(w)
    for i in range(w.numel()):
        e = torch.zeros_like(w)
        e.view(-1)[i] = h
        out.view(-1)[i] = (loss(w + e) - base) / h
    return out


def _plain_scaling_plan(C, reg, a, b, n_it):
    """POT's ``sinkhorn_knopp`` iterations written out (u0 = 1/n, v first), for autograd."""
    K = torch.exp(-C / reg)
    u = torch.full(C.shape[:1], 1.0 / C.shape[0], dtype=C.dtype)
    for _ in range(n_it):
        v = b / (K.T @ u)
        u = a / (K @ v)
    return u[:, None] * K * v[None, :]


# (safe, absorb) ranges that force each path of the solver on one small problem: the defaults
# (scaling blocks only at reg 0.2), absorbing whenever a scaling leaves [1/1.5, 1.5], and leaving
# the scaling form (log-domain blocks) whenever one leaves [1/1.5, 1.5].
PATH_RANGES = {"scaling": None, "absorbed": (1e50, 1.5), "log": (1.5, 1.2)}


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("path", list(PATH_RANGES))
def test_zero_mass_gradient_matches_one_sided_differences(monkeypatch, dtype, path):
    """The gradient at a zero entry of a or b is the one-sided derivative (mass moving in from 0):
    finite and right in every path of the solver, float32 and float64, other entries too.
    References: one-sided finite differences (float64, h = 1e-8) and autograd through POT's
    iterations written out in float64."""
    import infoenh.ot as O

    torch.manual_seed(11)
    C = torch.rand(5, 6, dtype=F64) * 2
    W = torch.randn(5, 6, dtype=F64)
    a = torch.tensor([0.4, 0.0, 0.2, 0.4, 0.0], dtype=F64)
    b = torch.tensor([0.0, 0.3, 0.3, 0.0, 0.2, 0.2], dtype=F64)
    reg, n_it = 0.1 if path != "scaling" else 0.2, 40

    def loss(a_, b_, dt=F64):
        return (sinkhorn(C.to(dt), reg, a_.to(dt), b_.to(dt), max_iter=n_it, tol=0.0).plan * W.to(dt)).sum()

    ga_fd = _one_sided_fd(lambda w: loss(w, b), a, 1e-8)
    gb_fd = _one_sided_fd(lambda w: loss(a, w), b, 1e-8)
    a_ref, b_ref = a.clone().requires_grad_(), b.clone().requires_grad_()
    (_plain_scaling_plan(C, reg, a_ref, b_ref, n_it) * W).sum().backward()

    if PATH_RANGES[path] is not None:
        monkeypatch.setitem(O._RANGES, dtype, PATH_RANGES[path])
    seen = _paths(monkeypatch)
    a_, b_ = a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()
    loss(a_, b_, dtype).backward()
    assert {"scaling": seen == {"log": 0, "kernel": 0}, "absorbed": seen["log"] == 0 and seen["kernel"] > 1,
            "log": seen["log"] > 0}[path], seen
    assert torch.isfinite(a_.grad).all() and torch.isfinite(b_.grad).all()
    assert abs(float(a_ref.grad[1])) > 0.1 and abs(float(b_ref.grad[0])) > 0.1  # zero entries: not 0
    tight = dict(rtol=1e-9, atol=1e-9) if dtype == F64 else dict(rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(a_.grad.double(), a_ref.grad, **tight)
    torch.testing.assert_close(b_.grad.double(), b_ref.grad, **tight)
    torch.testing.assert_close(a_.grad.double(), ga_fd, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(b_.grad.double(), gb_fd, rtol=1e-3, atol=1e-3)


def test_zero_mass_plan_and_iterations_still_match_pot_in_every_path():
    """The reduced form used for zero-mass marginals runs POT's iterations (same plan, same stop)."""
    rng = np.random.default_rng(8)
    C = rng.random((3, 5, 6)) * 2
    a = np.array([0.4, 0.0, 0.2, 0.4, 0.0])
    b = np.array([0.0, 0.3, 0.3, 0.0, 0.2, 0.2])
    for reg, max_iter, tol in ((1.0, 5, 0.0), (0.1, 400, 1e-10), (0.01, 300, 1e-9)):
        P_ref, it_ref = _pot_batch(a, b, C, reg, max_iter, tol)
        r = sinkhorn(torch.tensor(C), reg, torch.tensor(a), torch.tensor(b), max_iter=max_iter, tol=tol)
        np.testing.assert_allclose(r.plan.numpy(), P_ref, atol=1e-9, rtol=0)
        np.testing.assert_array_equal(r.n_iter.numpy(), it_ref)


# ----------------------------------------------------------------------------- dual potentials


@pytest.mark.parametrize("reg, method", [(0.5, "sinkhorn"), (0.05, "sinkhorn"), (0.01, "sinkhorn_log")])
def test_potentials_are_pots_log_scalings_times_reg(reg, method):
    rng = np.random.default_rng(21)
    C = rng.random((4, 7)) * 2
    a, b = _rand_marginal(rng, 4), _rand_marginal(rng, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, log = ot.sinkhorn(a, b, C, reg, method=method, numItermax=50, stopThr=0.0, log=True)
    log_u, log_v = (log["log_u"], log["log_v"]) if method == "sinkhorn_log" else (np.log(log["u"]), np.log(log["v"]))
    r = sinkhorn(torch.tensor(C), reg, torch.tensor(a), torch.tensor(b), max_iter=50, tol=0.0)
    assert r.f.shape == (4,) and r.g.shape == (7,)
    # POT's sinkhorn_log starts from u = 1 rather than sinkhorn_knopp's 1/n: the same plan, with
    # potentials shifted by a constant (f + c, g - c); the project follows sinkhorn_knopp's start
    shift = 0.0 if method == "sinkhorn" else reg * math.log(len(a))
    np.testing.assert_allclose(r.f.numpy(), reg * log_u - shift, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.g.numpy(), reg * log_v + shift, rtol=1e-9, atol=1e-12)
    # the plan is exp((f + g - C) / reg)
    P = torch.exp((r.f[:, None] + r.g[None, :] - torch.tensor(C)) / reg)
    torch.testing.assert_close(P, r.plan, rtol=1e-9, atol=1e-15)


def test_potentials_are_the_gradient_of_the_cost_and_minus_inf_at_zero_mass():
    """At convergence, d OT_reg / d a = f up to a constant shared by all points (dual optimality)."""
    torch.manual_seed(4)
    C = torch.rand(2, 5, 4, dtype=F64) * 2
    a = torch.tensor([[0.3, 0.1, 0.2, 0.2, 0.2], [0.5, 0.0, 0.25, 0.25, 0.0]], dtype=F64, requires_grad=True)
    b = torch.full((4,), 0.25, dtype=F64)
    reg = 0.2
    r = sinkhorn(C, reg, a, b, max_iter=2000, tol=1e-13)
    assert r.converged.all()
    P = r.plan
    value = (P * C).sum((-2, -1)) + reg * (P * (torch.log(P.clamp_min(1e-300)) - 1)).sum((-2, -1))
    (g,) = torch.autograd.grad(value.sum(), a)
    f = r.f.detach()
    assert torch.isinf(f[1, [1, 4]]).all() and (f[1, [1, 4]] < 0).all() and torch.isfinite(f[0]).all()
    pos = a.detach() > 0
    diff = (g - f)[pos]
    torch.testing.assert_close(diff[:5] - diff[0], torch.zeros(5, dtype=F64), atol=1e-8, rtol=0)
    assert torch.isfinite(r.g).all()


def test_potentials_follow_batch_shape_and_dtype():
    C = torch.rand(2, 3, 4, 5)
    r = sinkhorn(C, 0.1, max_iter=20)
    assert r.f.shape == (2, 3, 4) and r.g.shape == (2, 3, 5) and r.f.dtype == torch.float32


# ----------------------------------------------------------------------------- implicit gradient


@pytest.mark.parametrize("zero_mass", [False, True])
@pytest.mark.parametrize("n, m", [(5, 6), (7, 3)])
def test_implicit_gradient_equals_unrolled_at_convergence(n, m, zero_mass):
    torch.manual_seed(5)
    C = torch.rand(3, n, m, dtype=F64) * 2
    W = torch.randn(3, n, m, dtype=F64)
    a = torch.rand(3, n, dtype=F64) + 0.1
    b = torch.rand(m, dtype=F64) + 0.1
    if zero_mass:
        a[:, 1] = 0.0
        b[0] = 0.0
    a, b = a / a.sum(-1, keepdim=True), b / b.sum()
    grads = {}
    for mode in ("unrolled", "implicit"):
        Cg, ag, bg = (x.clone().requires_grad_() for x in (C, a, b))
        r = sinkhorn(Cg, 0.1, ag, bg, max_iter=3000, tol=1e-14, grad=mode)
        assert r.converged.all()
        (r.plan * W).sum().backward()
        grads[mode] = (Cg.grad, ag.grad, bg.grad, r.plan.detach())
    for u, i in zip(grads["unrolled"], grads["implicit"]):
        torch.testing.assert_close(i, u, rtol=1e-7, atol=1e-9)


def test_implicit_gradient_passes_gradcheck_on_converged_problems():
    torch.manual_seed(6)
    C = (torch.rand(2, 4, 3, dtype=F64) * 2).requires_grad_()
    a = (torch.rand(2, 4, dtype=F64) + 0.1).requires_grad_()
    b = (torch.rand(3, dtype=F64) + 0.1).requires_grad_()

    def f(C, a, b):
        return sinkhorn(C, 0.3, a / a.sum(-1, keepdim=True), b / b.sum(), max_iter=5000, tol=1e-15,
                        grad="implicit").plan

    assert torch.autograd.gradcheck(f, (C, a, b), atol=1e-6)


def test_implicit_gradient_is_finite_in_float32_and_keeps_no_iterates():
    """The implicit mode saves the same tensors whatever max_iter is; the unrolled one grows."""
    from infoenh.teaching import saved_tensor_bytes

    torch.manual_seed(8)
    C = (torch.rand(4, 6, 6) * 2).requires_grad_()

    def saved_bytes(grad, max_iter):
        with warnings.catch_warnings():   # tol=0: never converged, the implicit mode says so
            warnings.simplefilter("ignore", RuntimeWarning)
            plan, n = saved_tensor_bytes(lambda: sinkhorn(C, 0.05, max_iter=max_iter, tol=0.0, grad=grad).plan)
        (plan * C).sum().backward()
        return n

    assert saved_bytes("implicit", 20) == saved_bytes("implicit", 200)
    assert saved_bytes("unrolled", 200) > 3 * saved_bytes("unrolled", 20)
    assert torch.isfinite(C.grad).all()


def test_grad_option_is_checked():
    with pytest.raises(ValueError, match="grad must be 'unrolled'.*or 'implicit'"):
        sinkhorn(torch.rand(3, 3), 0.1, grad="autodiff")


def test_implicit_gradient_warns_when_problems_did_not_converge():
    C = (torch.rand(3, 5, 5, dtype=F64) * 2).requires_grad_()
    with pytest.warns(RuntimeWarning, match=r"grad='implicit'\): 3 of 3 problems stopped at max_iter=3"):
        sinkhorn(C, 0.01, max_iter=3, tol=1e-9, grad="implicit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sinkhorn(C, 0.5, max_iter=2000, tol=1e-9, grad="implicit")       # converged: no warning
        sinkhorn(C, 0.01, max_iter=3, tol=1e-9)                          # unrolled: no warning
