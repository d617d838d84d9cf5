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
