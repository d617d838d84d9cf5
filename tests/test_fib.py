"""Tests for infoenh.fib: top-k pooling with padding masks, the gate / hard mask, gradients."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infoenh.fib import FIB, FIBOutput, TopKPool


def _fib(in_dim=5, d=8, k=4, **kw):
    torch.manual_seed(0)
    return FIB(in_dim, d, k, **kw)


def test_shapes_and_types():
    fib = _fib()
    x = torch.randn(3, 10, 5)
    out = fib(x)
    assert isinstance(out, FIBOutput)
    for t in (out.e, out.z, out.gate, out.hard):
        assert t.shape == (3, 4, 8)
    assert out.mask.shape == (3, 4) and out.mask.dtype == torch.bool and bool(out.mask.all())
    assert out.idx.shape == (3, 4) and out.idx.dtype == torch.int64
    assert out.kept_frac.dim() == 0


def test_norm_scorer_keeps_largest_norm_steps_in_time_order():
    pool = TopKPool(2, 3, score="norm")
    h = torch.tensor([[[0.1, 0], [5, 0], [0.2, 0], [0, 3], [0, 0.3], [4, 4]]])   # norms .1 5 .2 3 .3 5.66
    e, m, idx = pool(h)
    assert idx.tolist() == [[1, 3, 5]]
    assert torch.equal(e, h[:, [1, 3, 5]])          # "norm" applies no scaling
    assert m.all()


def test_padded_steps_never_win():
    pool = TopKPool(2, 2, score="norm")
    h = torch.tensor([[[100.0, 0], [1, 0], [2, 0], [100, 100]]])
    mask = torch.tensor([[False, True, True, False]])
    e, m, idx = pool(h, mask)
    assert idx.tolist() == [[1, 2]]
    assert torch.equal(e, h[:, [1, 2]])


def test_fewer_real_steps_than_k_pads_and_masks():
    pool = TopKPool(2, 4, score="norm")
    h = torch.tensor([[[9.0, 9], [1, 0], [7, 7], [2, 0], [8, 8]]])
    mask = torch.tensor([[False, True, False, True, False]])          # 2 real steps, k = 4
    e, m, idx = pool(h, mask)
    assert m.tolist() == [[True, True, False, False]]                 # real rows first
    assert idx.tolist() == [[1, 3, -1, -1]]
    assert torch.equal(e[0, :2], h[0, [1, 3]]) and bool((e[0, 2:] == 0).all())


def test_sequence_shorter_than_k():
    fib = _fib(k=6)
    x = torch.randn(2, 3, 5)
    out = fib(x, torch.tensor([[True, True, True], [True, True, False]]))
    assert out.e.shape == (2, 6, 8)
    assert out.mask.tolist() == [[True] * 3 + [False] * 3, [True] * 2 + [False] * 4]
    assert out.idx[0].tolist() == [0, 1, 2, -1, -1, -1]
    assert out.idx[1].tolist() == [0, 1, -1, -1, -1, -1]
    assert bool((out.e[~out.mask] == 0).all()) and bool((out.z[~out.mask] == 0).all())
    assert bool((out.hard[~out.mask] == 0).all())
    no_gate = _fib(k=6, gate=False)(x, torch.tensor([[True, True, True], [True, True, False]]))
    assert no_gate.hard.sum(-1).tolist() == [[8.0] * 3 + [0.0] * 3, [8.0] * 2 + [0.0] * 4]


def test_all_padding_row_is_safe():
    fib = _fib()
    x = torch.randn(2, 7, 5, requires_grad=True)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1] = False
    out = fib(x, mask)
    assert not bool(out.mask[1].any()) and bool((out.z[1] == 0).all()) and bool((out.idx[1] == -1).all())
    assert torch.isfinite(out.kept_frac)
    out.z.sum().backward()
    assert torch.isfinite(x.grad).all() and bool((x.grad[1] == 0).all())
    everything_padded = fib(x.detach(), torch.zeros(2, 7, dtype=torch.bool))
    assert float(everything_padded.kept_frac) == 0.0


def test_gate_and_masks_follow_the_equations():
    fib = _fib()
    x = torch.randn(4, 9, 5)
    out = fib(x)
    g = torch.sigmoid(fib.gate(out.e))
    assert torch.allclose(out.gate, g)
    assert torch.equal(out.hard, (g > 0.5).float())
    assert torch.allclose(out.z, out.e * out.hard * g)
    assert 0.0 < float(out.hard.mean()) < 1.0                     # the seed gives a mixed mask
    assert float(out.kept_frac) == pytest.approx(float(out.hard.mean()))


def test_gate_of_exactly_one_half_is_dropped():
    """The hard mask is g > 0.5, strictly: zero gate logits give sigmoid(0) = 0.5 exactly, and such
    a feature is switched off; a logit just above 0 keeps its feature."""
    fib = _fib(d=8)
    with torch.no_grad():
        fib.gate.weight.zero_()
        fib.gate.bias.copy_(torch.tensor([0.0, 1e-3, 0.0, -1e-3, 0.0, 0.0, 1e-3, 0.0]))
    x = torch.randn(3, 6, 5)
    out = fib(x, torch.tensor([[True] * 6, [True] * 6, [True, True] + [False] * 4]))
    at_half = torch.tensor([1, 0, 1, 0, 1, 1, 0, 1], dtype=torch.bool)
    assert bool((out.gate[..., at_half] == 0.5).all())
    expect = torch.tensor([0, 1, 0, 0, 0, 0, 1, 0], dtype=torch.float32) * out.mask.unsqueeze(-1)
    assert torch.equal(out.hard, expect)
    assert bool((out.z[..., at_half] == 0).all())
    assert torch.equal(out.z[..., 1], out.e[..., 1] * torch.sigmoid(torch.tensor(1e-3)))
    assert float(out.kept_frac) == pytest.approx(2 / 8)


def test_kept_frac_counts_real_rows_only():
    fib = _fib(k=4)
    x = torch.randn(2, 4, 5)
    mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
    out = fib(x, mask)
    real = out.mask.unsqueeze(-1).expand_as(out.hard)
    expected = out.hard[real].sum() / real.sum()
    assert float(out.kept_frac) == pytest.approx(float(expected))


def test_learned_scorer_gets_gradient_and_scales_rows():
    fib = _fib()
    x = torch.randn(3, 10, 5)
    out = fib(x)
    h = fib.proj(x)
    s = fib.pool.w(h).squeeze(-1)
    rows = h.gather(1, out.idx.unsqueeze(-1).expand(-1, -1, 8))
    assert torch.allclose(out.e, rows * torch.sigmoid(s.gather(1, out.idx)).unsqueeze(-1))
    out.z.sum().backward()
    assert fib.pool.w.weight.grad is not None and float(fib.pool.w.weight.grad.abs().sum()) > 0


def test_gate_gradient_only_where_hard_mask_is_one():
    fib = _fib()
    out = fib(torch.randn(4, 9, 5))
    out.gate.retain_grad()
    out.z.square().sum().backward()
    hard = out.hard.bool()
    assert bool((out.gate.grad[~hard] == 0).all())
    assert bool((out.gate.grad[hard] != 0).all())


def test_gate_parameters_get_no_gradient_when_everything_is_masked():
    fib = _fib()
    with torch.no_grad():
        fib.gate.bias.fill_(-100.0)                               # g ~ 0 < 0.5 everywhere
    out = fib(torch.randn(2, 6, 5))
    assert float(out.kept_frac) == 0.0 and bool((out.z == 0).all())
    out.z.sum().backward()
    assert float(fib.gate.weight.grad.abs().sum()) == 0.0 and float(fib.gate.bias.grad.abs().sum()) == 0.0


def test_gate_off_returns_top_k_embeddings():
    fib = _fib(gate=False)
    out = fib(torch.randn(2, 6, 5))
    assert fib.gate is None
    assert torch.equal(out.z, out.e)
    assert float(out.kept_frac) == 1.0 and bool((out.hard == 1).all())


def test_threshold_changes_kept_fraction():
    x = torch.randn(3, 8, 5)
    low, high = _fib(threshold=0.2)(x), _fib(threshold=0.8)(x)
    assert float(low.kept_frac) > float(high.kept_frac)


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 9), k=st.integers(1, 6), bits=st.lists(st.booleans(), min_size=18, max_size=18),
       seed=st.integers(0, 10_000))
def test_topk_invariants(L, k, bits, seed):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(2, L, 3, generator=g)
    mask = torch.tensor(bits[: 2 * L]).view(2, L)
    pool = TopKPool(3, k, score="norm")
    e, m, idx = pool(h, mask)
    norms = h.norm(dim=-1)
    for b in range(2):
        n_real = int(mask[b].sum())
        n_keep = min(k, n_real)
        assert m[b].tolist() == [True] * n_keep + [False] * (k - n_keep)
        kept = idx[b, :n_keep]
        assert bool((idx[b, n_keep:] == -1).all())
        assert bool(mask[b, kept].all())                                   # only real steps
        assert kept.tolist() == sorted(kept.tolist())                      # time order
        if n_keep:
            others = [t for t in range(L) if bool(mask[b, t]) and t not in kept.tolist()]
            if others:
                assert float(norms[b, others].max()) <= float(norms[b, kept].min())
        assert bool((e[b, n_keep:] == 0).all())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda f: f(torch.randn(4, 5)), "3 dimensions"),
        (lambda f: f(torch.randn(2, 4, 6)), "width 6"),
        (lambda f: f(torch.full((2, 4, 5), float("nan"))), "NaN"),
        (lambda f: f(torch.tensor([[[float("inf")] * 5]])), "inf"),
        (lambda f: f(torch.randn(2, 4, 5), torch.ones(2, 5, dtype=torch.bool)), "shape"),
        (lambda f: f(torch.randn(2, 4, 5), torch.full((2, 4), 2)), "0/1"),
        (lambda f: f(torch.randn(2, 0, 5)), "no time steps"),
    ],
)
def test_bad_inputs(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(_fib())


def test_bad_construction():
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        FIB(5, 8, 0)
    with pytest.raises(ValueError, match="d must be an integer >= 1, got 0"):
        FIB(5, 0, 3)
    with pytest.raises(ValueError, match="in_dim must be an integer >= 1, got 0"):
        FIB(0, 8, 3)
    with pytest.raises(ValueError, match="threshold"):
        FIB(5, 8, 3, threshold=float("nan"))
    with pytest.raises(ValueError, match="score"):
        FIB(5, 8, 3, score="max")
    with pytest.raises(ValueError, match="threshold"):
        FIB(5, 8, 3, threshold=1.5)
    with pytest.raises(TypeError, match="torch.Tensor"):
        _fib()([[1.0]])


# ----- the kept-rows-only computation equals the straightforward formulation ----------------------

def _reference_fib(fib, x, mask):
    """FIB as the method reads, written the obvious way: project all L steps, score them all,
    keep the k best real ones in time order, scale (learned), gate. Returns (e, z, e_mask, idx, hard)."""
    h = fib.proj(x)                                                       # [B, L, d] all steps
    B, L, d = h.shape
    k = fib.pool.k
    s = fib.pool.w(h).squeeze(-1) if fib.pool.score == "learned" else h.norm(dim=-1)
    n = min(k, L)
    top = s.detach().masked_fill(~mask, float("-inf")).topk(n, dim=1).indices
    real = mask.gather(1, top)
    order = (top + L * (~real).long()).argsort(dim=1)
    top, real = top.gather(1, order), real.gather(1, order)
    e = h.gather(1, top.unsqueeze(-1).expand(B, n, d))
    if fib.pool.score == "learned":
        e = e * torch.sigmoid(s.gather(1, top)).unsqueeze(-1)
    e = e * real.unsqueeze(-1).to(e.dtype)
    idx = top.masked_fill(~real, -1)
    if n < k:
        e = torch.cat([e, e.new_zeros(B, k - n, d)], 1)
        real = torch.cat([real, real.new_zeros(B, k - n)], 1)
        idx = torch.cat([idx, idx.new_full((B, k - n), -1)], 1)
    row = real.unsqueeze(-1).to(e.dtype)
    if fib.gate is None:
        return e, e, real, idx, row.expand_as(e)
    g = torch.sigmoid(fib.gate(e))
    hard = (g > fib.threshold).to(e.dtype) * row
    return e, e * hard * g, real, idx, hard


@pytest.mark.parametrize("score", ["learned", "norm"])
@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("L", [3, 40])                       # fewer steps than k, and many more
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fib_equals_the_project_everything_reference(score, gate, L, dtype):
    """Also the other reformulations of the kept-rows path: the time order from one sort of the
    keys t / L + t, the gPool factor and the pad-row zeroing in one pass, the hard mask as a
    logical and. float64: to rounding (1e-12)."""
    torch.manual_seed(1)
    fib = FIB(7, 16, 6, score=score, gate=gate).to(dtype)
    x = torch.randn(5, L, 7, requires_grad=True, dtype=dtype)
    mask = torch.rand(5, L) < 0.7
    mask[0] = True
    mask[1] = False                                          # a sample with no real step
    mask[2, : L // 2] = False                                # padding at the front
    out = fib(x, mask)
    e, z, m, idx, hard = _reference_fib(fib, x, mask)
    assert torch.equal(out.idx, idx) and torch.equal(out.mask, m) and torch.equal(out.hard, hard)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.e, e, **tol)
    torch.testing.assert_close(out.z, z, **tol)
    torch.testing.assert_close(out.kept_frac, hard.sum() / (m.sum() * hard.shape[-1]).clamp(min=1).to(dtype), **tol)
    # gradients of every parameter and of the input are those of the reference as well
    w = torch.randn_like(z)
    ours = torch.autograd.grad((out.z * w).sum() + out.e.square().sum(), [x, *fib.parameters()])
    ref = torch.autograd.grad((z * w).sum() + e.square().sum(), [x, *fib.parameters()])
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    for (name, _), a, b in zip([("x", x), *fib.named_parameters()], ours, ref):
        torch.testing.assert_close(a, b, msg=name, **tol)


def test_learned_ranking_in_input_space_matches_projected_scores():
    """s = w^T (W x + b) = (W^T w)^T x + w^T b: the kept steps are those the projected scores rank
    first (random data: no ties within rounding)."""
    fib = _fib(in_dim=9, d=12, k=5)
    x = torch.randn(8, 30, 9)
    s = fib.pool.w(fib.proj(x)).squeeze(-1)
    out = fib(x)
    expect = s.topk(5, dim=1).indices.sort(dim=1).values
    assert torch.equal(out.idx, expect)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_floating_inputs_are_cast_to_the_parameter_dtype(dtype):
    fib = _fib()
    x = torch.randn(3, 10, 5).to(dtype)
    out, ref = fib(x), fib(x.float())
    for u, v in zip(out, ref):
        assert u.dtype == v.dtype and torch.equal(u, v)


def test_non_floating_and_overflowing_inputs_are_refused():
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor, got dtype torch.int64; pass x.float"):
        _fib()(torch.ones(2, 4, 5, dtype=torch.int64))
    with pytest.raises(TypeError, match="complex values are not accepted"):
        _fib()(torch.ones(2, 4, 5, dtype=torch.complex64))
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    x[0, 1, 2] = 1e200
    with pytest.raises(ValueError, match=r"x \(cast to torch.float32\) contains 0 NaN and 1 inf"):
        _fib()(x)


def test_validate_false_skips_only_the_checks():
    fib = _fib()
    x = torch.randn(3, 10, 5)
    mask = torch.rand(3, 10) < 0.6
    a, b = fib(x, mask), fib(x, mask, validate=False)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    e1 = fib.pool(fib.proj(x), mask)
    e2 = fib.pool(fib.proj(x), mask, validate=False)
    assert all(torch.equal(u, v) for u, v in zip(e1, e2))
    with pytest.raises(ValueError, match="NaN"):             # the public default still checks
        fib.pool(torch.full((1, 4, 8), float("nan")))


# ----- straight-through estimator for the hard mask (beyond the paper) ----------------------------

OFF = [1, 4, 6]                                     # gate features switched off on every row below


def _fib_with_dead_features(straight_through):
    """FIB whose gate features OFF sit at g = sigmoid(-3) < 0.5 for every input (zero weight row)."""
    fib = _fib(straight_through=straight_through)
    with torch.no_grad():
        fib.gate.weight[OFF] = 0.0
        fib.gate.bias[OFF] = -3.0
    return fib


def test_straight_through_keeps_the_forward_values():
    x, mask = torch.randn(4, 9, 5), torch.rand(4, 9) < 0.7
    plain, ste = _fib_with_dead_features(False)(x, mask), _fib_with_dead_features(True)(x, mask)
    for name, a, b in zip(FIBOutput._fields, plain, ste):
        assert torch.equal(a, b), name


def test_straight_through_gives_switched_off_features_a_gradient():
    x, w = torch.randn(4, 9, 5), torch.randn(4, 4, 8)      # w: a loss whose dL/dz is nonzero everywhere
    grads, dead = {}, {}
    for ste in (False, True):
        fib = _fib_with_dead_features(ste)
        out = fib(x)
        off_everywhere = ~out.hard.bool().any(dim=1).any(dim=0)            # [d]
        assert set(OFF) <= set(off_everywhere.nonzero().flatten().tolist())
        out.gate.retain_grad()
        (out.z * w).sum().backward()
        grads[ste] = fib.gate.weight.grad
        off_entries = ~out.hard.bool() & out.mask.unsqueeze(-1)
        if ste:     # dz/dg = e * (m_h + g): nonzero at every entry, switched off or not
            assert bool((out.gate.grad[off_entries] != 0).all())
        else:       # dz/dg = e * m_h: zero wherever m_h = 0
            assert bool((out.gate.grad[off_entries] == 0).all())
        dead[ste] = off_everywhere
    assert torch.equal(dead[False], dead[True])
    assert float(grads[False][dead[False]].abs().max()) == 0.0
    assert bool((grads[True][dead[True]].abs().sum(dim=1) > 0).all())


def test_straight_through_lets_a_switched_off_feature_come_back():
    """A loss that rewards keeping every feature (z along e) reopens the dead features only with
    the straight-through estimator: without it their gate rows never move."""
    x = torch.randn(8, 9, 5)
    kept = {}
    for ste in (False, True):
        fib = _fib_with_dead_features(ste)
        start = fib.gate.weight[OFF].clone()
        opt = torch.optim.Adam(fib.gate.parameters(), lr=0.2)
        for _ in range(40):
            out = fib(x)
            loss = -(out.z * out.e.detach()).sum() / out.e.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
        kept[ste] = fib(x).hard[..., OFF].mean().item()
        if not ste:
            assert torch.equal(fib.gate.weight[OFF], start)
    assert kept[False] == 0.0 and kept[True] > 0.5


def test_straight_through_with_the_gate_off_changes_nothing():
    x = torch.randn(2, 6, 5)
    a, b = _fib(gate=False)(x), _fib(gate=False, straight_through=True)(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and torch.equal(b.z, b.e)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_straight_through_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="straight_through must be True or False"):
        FIB(5, 8, 3, straight_through=bad)
