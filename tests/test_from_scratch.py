"""The book's from-scratch pieces (infoenh/teaching/from_scratch) equal the package's tested
implementations on random inputs and the same weights: forward values and gradients.

Section i19a: InfoNCE (chapter 2) and FIB (chapter 3). Later sections: other chapters' pieces.
"""
import pytest
import torch

from infoenh.fib import FIB
from infoenh.infonce import sentiment_infonce
from infoenh.teaching.from_scratch.fib import MyFIB, copy_weights
from infoenh.teaching.from_scratch.infonce import infonce


# ---------------------------------------------------------------- i19a: InfoNCE, FIB

def _batch(seed, B=9, k=4, d=5):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(B, k, d, generator=g)
    z = e * (torch.rand(B, k, d, generator=g) > 0.4)
    rows = torch.rand(B, k, generator=g) > 0.3
    rows[:, 0] = True
    y = torch.round(torch.randn(B, generator=g) * 4) / 2          # halves: ties for acc7, zeros
    return e, z, rows, y


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("negatives", ["sign", "acc7", "all"])
def test_infonce_from_scratch_equals_package(seed, negatives):
    e, z, rows, y = _batch(seed)
    e1, z1 = e.clone().requires_grad_(), z.clone().requires_grad_()
    e2, z2 = e.clone().requires_grad_(), z.clone().requires_grad_()
    mine = infonce(e1, z1, y, rows, tau=0.2, negatives=negatives)
    ref = sentiment_infonce(e2, z2, y, rows, tau=0.2, negatives=negatives).loss
    torch.testing.assert_close(mine, ref)
    mine.backward()
    ref.backward()
    torch.testing.assert_close(e1.grad, e2.grad)
    torch.testing.assert_close(z1.grad, z2.grad)


def test_infonce_from_scratch_no_negative_is_zero():
    e, z, rows, _ = _batch(0)
    y = torch.ones(len(e))
    assert float(infonce(e, z, y, rows)) == 0.0 == float(sentiment_infonce(e, z, y, rows).loss)


def test_infonce_comparison_catches_a_difference():
    """The equality is not vacuous: dropping the positive from the denominator is detected."""
    e, z, rows, y = _batch(1)
    ref = sentiment_infonce(e, z, y, rows, negatives="all").loss
    with pytest.raises(AssertionError):
        torch.testing.assert_close(infonce(e, z, y, rows, tau=0.1001, negatives="all"), ref)


def _sequences(seed, B=6, L=9, d_in=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, d_in, generator=g)
    lengths = torch.randint(2, L + 1, (B,), generator=g)
    lengths[0] = 2                                                 # shorter than k: pad rows
    return x, torch.arange(L) < lengths[:, None]


@pytest.mark.parametrize("seed", range(5))
def test_fib_from_scratch_equals_package(seed):
    x, mask = _sequences(seed)
    torch.manual_seed(seed)
    fib = FIB(7, 5, k=4)
    mine = copy_weights(MyFIB(7, 5, k=4), fib)
    a, b = mine(x, mask), fib(x, mask)
    torch.testing.assert_close(a.rows, b.mask)
    for name in ("e", "z", "gate", "hard"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), msg=name)
    a.z.square().sum().backward()
    b.z.square().sum().backward()
    for (name, p), (_, q) in zip([("proj", mine.proj), ("w", mine.w), ("gate", mine.gate)],
                                 [("proj", fib.proj), ("w", fib.pool.w), ("gate", fib.gate)]):
        for pa, pb in zip(p.parameters(), q.parameters()):
            torch.testing.assert_close(pa.grad, pb.grad, msg=name)


def test_fib_comparison_catches_a_difference():
    """A from-scratch FIB with another threshold is told apart from the package's."""
    x, mask = _sequences(0)
    torch.manual_seed(0)
    fib = FIB(7, 5, k=4)
    mine = copy_weights(MyFIB(7, 5, k=4, threshold=0.45), fib)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(mine(x, mask).z, fib(x, mask).z)


# ---------------------------------------------------------------------------------------------
# i19b: Sinkhorn (chapter 4), FIA's plans and barycentric maps (chapter 5), the InfoEnh
# assembly (chapter 6)
# ---------------------------------------------------------------------------------------------
import inspect as _inspect
from pathlib import Path as _Path

import jupytext as _jupytext
import numpy as _np
import pytest as _pytest
import torch as _torch

from infoenh import InfoEnh as _InfoEnh
from infoenh.fia import fia as _fia
from infoenh.ot import cosine_cost as _cosine_cost
from infoenh.ot import sinkhorn as _sinkhorn
from infoenh.teaching.from_scratch import assembly as _assembly
from infoenh.teaching.from_scratch import fia as _fia_scratch
from infoenh.teaching.from_scratch import sinkhorn as _sk

_NOTEBOOKS = _Path(__file__).resolve().parents[1] / "notebooks"


@_pytest.mark.parametrize("seed", range(4))
def test_sinkhorn_numpy_and_log_equal_the_package(seed):
    g = _torch.Generator().manual_seed(seed)
    n, m = 5 + seed, 7
    C = _cosine_cost(_torch.randn(n, 8, generator=g, dtype=_torch.float64),
                     _torch.randn(m, 8, generator=g, dtype=_torch.float64))
    a = _torch.rand(n, generator=g, dtype=_torch.float64) + 0.1
    b = _torch.rand(m, generator=g, dtype=_torch.float64) + 0.1
    a, b = a / a.sum(), b / b.sum()
    for reg, iters in [(0.5, 3), (0.05, 40)]:
        ref = _sinkhorn(C, reg, a, b, max_iter=iters, tol=0.0)
        P_np, errors = _sk.sinkhorn_numpy(a.numpy(), b.numpy(), C.numpy(), reg, iters)
        _torch.testing.assert_close(_torch.from_numpy(P_np), ref.plan, rtol=1e-10, atol=1e-13)
        _np.testing.assert_allclose(errors[-1], float(ref.err), rtol=1e-6, atol=1e-14)
        P, phi, psi = _sk.sinkhorn_log(C, reg, iters, a, b)
        _torch.testing.assert_close(P, ref.plan, rtol=1e-10, atol=1e-13)
        # the package's dual potentials are reg * (phi, psi)
        _torch.testing.assert_close(reg * phi, ref.f, rtol=1e-9, atol=1e-12)
        _torch.testing.assert_close(reg * psi, ref.g, rtol=1e-9, atol=1e-12)


def test_sinkhorn_log_batched_and_uniform_equals_the_package():
    C = _cosine_cost(_torch.randn(3, 2, 6, 4, dtype=_torch.float64), _torch.randn(3, 2, 6, 4, dtype=_torch.float64))
    P, _, _ = _sk.sinkhorn_log(C, 0.1, 25)
    _torch.testing.assert_close(P, _sinkhorn(C, 0.1, max_iter=25, tol=0.0).plan, rtol=1e-10, atol=1e-13)


@_pytest.mark.parametrize("names", [("text", "audio", "vision"), ("audio", "vision")])
def test_fia_from_scratch_equals_the_package(names):
    g = _torch.Generator().manual_seed(len(names))
    feats = {name: _torch.randn(3, 6, 5, generator=g, dtype=_torch.float64) for name in names}
    mine, plans = _fia_scratch.fia_scratch(feats, reg=0.1, n_iter=30)
    ref = _fia(feats, reg=0.1, max_iter=30, tol=0.0, symmetric=False)
    for name in names:
        _torch.testing.assert_close(mine[name], ref.enhanced[name], rtol=1e-9, atol=1e-12)
    for p, pair in enumerate(ref.pairs):
        _torch.testing.assert_close(plans[pair], ref.plans[:, p], rtol=1e-9, atol=1e-13)
    _torch.testing.assert_close(_fia_scratch.one_minus_cos(feats[names[0]], feats[names[1]]),
                                _cosine_cost(feats[names[0]], feats[names[1]]))


def test_barycentric_map_is_k_P_E_for_uniform_marginals():
    E = _torch.randn(4, 3, dtype=_torch.float64)
    P = _sinkhorn(_torch.rand(4, 4, dtype=_torch.float64), 0.2, max_iter=2000, tol=1e-13).plan
    _torch.testing.assert_close(_fia_scratch.barycentric_map(P, E), 4 * P @ E)


@_pytest.mark.parametrize("seed", range(3))
def test_infoenh_assembled_from_scratch_equals_the_module(seed):
    _torch.manual_seed(seed)
    dims = {"text": 12, "audio": 5, "vision": 7}
    model = _InfoEnh(dims, d=8, k=4).double()
    seqs = {m: _torch.randn(6, 9, w, dtype=_torch.float64) for m, w in dims.items()}
    masks = {m: _torch.arange(9)[None, :] < _torch.randint(3, 10, (6, 1)) for m in dims}
    labels = _torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.5, 0.4], dtype=_torch.float64)
    enhanced, aux = _assembly.infoenh_scratch(model, seqs, labels, masks)
    out = model(seqs, masks, labels)
    for m in dims:
        _torch.testing.assert_close(enhanced[m], out.seqs[m])
    _torch.testing.assert_close(aux, out.aux_loss)


@_pytest.mark.parametrize("chapter,module", [("04_sinkhorn", _sk), ("05_alignment", _fia_scratch),
                                              ("06_infoenh", _assembly)])
def test_chapters_show_the_from_scratch_code_they_check(chapter, module):
    """The chapter's code cells hold each from-scratch function exactly as the module defines it:
    the reader sees the code that this file checks against the package."""
    code = "\n".join(c.source for c in _jupytext.read(_NOTEBOOKS / f"{chapter}.md").cells
                     if c.cell_type == "code")
    functions = [f for _, f in _inspect.getmembers(module, _inspect.isfunction) if f.__module__ == module.__name__]
    assert functions
    for f in functions:
        assert _inspect.getsource(f).strip() in code, (
            f"{chapter}: does not show {f.__name__} as {module.__name__} defines it")
