"""Sinkhorn stays finite (plan and gradients) for every finite input it accepts: zero-mass
marginal entries at any reg, tiny reg solved in the log domain or refused at the API with one
clear error (issue 23, finding 2). The property test draws zero-mass patterns x reg in
[1e-6, 10] x float32/float64 x both gradient modes, on small problems with few iterations."""
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infoenh.ot import sinkhorn

F64 = torch.float64


def _marginal(pattern, dtype):
    """A marginal with zeros where ``pattern`` is False (at least one entry is kept positive)."""
    w = torch.tensor([1.0 + i if keep else 0.0 for i, keep in enumerate(pattern)], dtype=dtype)
    if not bool((w > 0).any()):
        w[0] = 1.0
    return w / w.sum()


@settings(max_examples=60, deadline=None)
@given(
    a_pat=st.lists(st.booleans(), min_size=1, max_size=6),
    b_pat=st.lists(st.booleans(), min_size=1, max_size=6),
    log_reg=st.floats(-6.0, 1.0),
    scale=st.sampled_from([1.0, 2.0, 50.0]),
    dtype=st.sampled_from([torch.float32, F64]),
    grad=st.sampled_from(["unrolled", "implicit"]),
    seed=st.integers(0, 2**16),
)
def test_plan_and_gradients_finite_for_zero_mass_at_any_reg(a_pat, b_pat, log_reg, scale, dtype, grad, seed):
    reg = 10.0 ** log_reg
    g = torch.Generator().manual_seed(seed)
    n, m = len(a_pat), len(b_pat)
    C = (torch.rand(2, n, m, generator=g, dtype=F64) * scale).to(dtype)
    a, b = _marginal(a_pat, dtype), _marginal(b_pat, dtype)
    W = torch.randn(2, n, m, generator=g, dtype=F64).to(dtype)
    span = float(C.abs().max()) / reg
    has_zero = bool((a == 0).any() or (b == 0).any())

    def solve(with_marginal_grads):
        Cg = C.clone().requires_grad_()
        ag, bg = (w.clone().requires_grad_(with_marginal_grads) for w in (a, b))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # non-convergence warnings are expected at small reg
            r = sinkhorn(Cg, reg, ag, bg, max_iter=40, grad=grad)
        (r.plan * W).sum().backward()
        return r, Cg, ag, bg

    if grad == "unrolled" and has_zero and span > 100:
        with pytest.raises(ValueError, match="grad='implicit'"):
            solve(True)
        r, Cg, ag, bg = solve(False)
        grads = [Cg.grad]
    else:
        r, Cg, ag, bg = solve(True)
        grads = [Cg.grad, ag.grad, bg.grad]
    assert r.plan.dtype == dtype
    assert bool(torch.isfinite(r.plan).all()), (reg, a, b)
    for gr in grads:
        assert gr is not None and bool(torch.isfinite(gr).all()), (reg, a, b, grads)
    # zero-mass rows and columns carry no mass; every row holds its marginal (the last update is u's)
    assert bool((r.plan[:, a == 0] == 0).all()) and bool((r.plan[:, :, b == 0] == 0).all())
    tol = 1e-3 if dtype == torch.float32 else 1e-8
    torch.testing.assert_close(r.plan.sum(-1).double(), a.double().expand(2, n), rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_both_marginals_with_zeros_at_small_reg_give_a_finite_plan(dtype):
    """The case of the report: zeros in both marginals and max|C| / reg about 1e4 gave an all-NaN
    plan (a kernel entry between a zero-mass row and a zero-mass column overflowed; 0 * inf)."""
    torch.manual_seed(0)
    C = (torch.rand(3, 5, 6, dtype=dtype) * 2).requires_grad_()
    a = torch.tensor([0.0, 0.25, 0.25, 0.5, 0.0], dtype=dtype)
    b = torch.tensor([0.5, 0.0, 0.0, 0.25, 0.25, 0.0], dtype=dtype)
    for reg in (1e-4, 1e-5, 1e-6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = sinkhorn(C, reg, a, b, max_iter=200)
        assert bool(torch.isfinite(r.plan).all()), reg
        (g,) = torch.autograd.grad((r.plan * torch.randn_like(r.plan)).sum(), C)
        assert bool(torch.isfinite(g).all()), reg


@pytest.mark.parametrize("reg", [1e-300, 1e-13, 5e-324])
def test_reg_too_small_for_any_precision_is_refused_at_the_api(reg):
    C = torch.rand(2, 4, 4, dtype=F64) * 2
    with pytest.raises(ValueError, match=r"reg = .* is too small .* max\|cost\| / reg"):
        sinkhorn(C, reg)


def test_tiny_reg_on_a_tiny_cost_is_accepted():
    """What matters is max|cost| / reg, not reg alone: a zero cost accepts any reg."""
    r = sinkhorn(torch.zeros(1, 3, 4, dtype=F64), 1e-300)
    torch.testing.assert_close(r.plan, torch.full((1, 3, 4), 1 / 12, dtype=F64))


def test_zero_mass_gradient_refusal_names_the_fix():
    C = torch.rand(4, 4, dtype=F64) * 2
    a = torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match=r"a has zero entries .* grad='implicit'.* a\.detach\(\)"):
        sinkhorn(C, 1e-3, a, None)
    # implicit: finite
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # not converged at 2000 iterations: still finite
        r = sinkhorn(C, 1e-3, a, None, grad="implicit", max_iter=2000)
    (ga,) = torch.autograd.grad(r.plan.sum() + (r.plan * C).sum(), a)
    assert bool(torch.isfinite(ga).all()) and math.isfinite(float(ga.abs().max()))


# ------------------------------------------------------------------- InfoEnh and fia with the solver

def _masked_inputs(B=3, L=4):
    torch.manual_seed(0)
    dims = {"text": 8, "audio": 5, "vision": 6}
    x = {m: torch.randn(B, L, d) for m, d in dims.items()}
    masks = {m: torch.ones(B, L, dtype=torch.bool) for m in dims}
    masks["audio"][1, 2:] = False
    masks["vision"][2, 1:] = False
    return dims, x, masks


@pytest.mark.parametrize("reg", [1e-6, 1e-4, 0.1])
def test_infoenh_with_k_above_the_sequence_and_masked_rows_is_finite_at_any_reg(reg):
    """k = 6 > 4 steps and masked rows give zero-mass rows and columns in FIA's problems: InfoEnh's
    outputs and every parameter's gradient stay finite (at reg = 1e-6 they were NaN)."""
    from infoenh import InfoEnh

    dims, x, masks = _masked_inputs()
    enh = InfoEnh(dims, d=8, k=6, reg=reg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = enh(x, masks=masks, labels=torch.randn(3))
    assert all(bool(torch.isfinite(s).all()) for s in out.seqs.values())
    (sum(s.sum() for s in out.seqs.values()) + out.aux_loss).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in enh.parameters() if p.grad is not None)


@pytest.mark.parametrize("reg", [1e-6, 1e-4])
def test_fia_with_zero_mass_rows_is_finite_at_small_reg(reg):
    from infoenh.fia import fia

    torch.manual_seed(1)
    feats = {m: (torch.randn(2, 5, 4) * 3).requires_grad_() for m in ("text", "audio", "vision")}
    masks = {m: torch.ones(2, 5, dtype=torch.bool) for m in feats}
    masks["text"][0, 3:] = False       # zero-mass rows and columns in the same problem
    masks["audio"][0, 2:] = False
    masks["vision"][1, 1:] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fia(feats, masks, reg=reg)
    flat = list(out.enhanced.values())
    assert all(bool(torch.isfinite(t).all()) for t in flat)
    sum(t.sum() for t in flat).backward()
    assert all(bool(torch.isfinite(f.grad).all()) for f in feats.values())


def test_an_empty_batch_and_meta_tensors_get_their_own_messages():
    """B = 0 said 'cost must have no empty dimension'; meta tensors gave torch-internal errors."""
    from infoenh import InfoEnh
    from infoenh.fia import fia

    dims = {"text": 8, "audio": 5, "vision": 6}
    enh = InfoEnh(dims, d=8, k=4)
    with pytest.raises(ValueError, match=r"InfoEnh: the batch is empty \(B = 0"):
        enh({m: torch.randn(0, 4, d) for m, d in dims.items()})
    with pytest.raises(ValueError, match=r"fia: the batch is empty \(B = 0"):
        fia({m: torch.randn(0, 4, 8) for m in dims})
    with pytest.raises(ValueError, match="meta device"):
        enh({m: torch.randn(2, 4, d, device="meta") for m, d in dims.items()})
    with pytest.raises(ValueError, match="meta device"):
        fia({m: torch.randn(2, 4, 8, device="meta") for m in dims})
    with pytest.raises(ValueError, match="meta device"):
        sinkhorn(torch.rand(2, 3, 3, device="meta"), 0.1)
