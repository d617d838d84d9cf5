"""The shared input checks: the cheap finiteness test, its exact fallback, one sync for many tensors."""
import builtins

import pytest
import torch

from infoenh import _validate
from infoenh._validate import check_finite, check_tensor, finite_flag


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_finite_flag_catches_nan_and_inf_anywhere(dtype):
    x = torch.randn(4, 33, 5).to(dtype)
    assert bool(finite_flag(x))
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[3, 17, 2] = bad
        assert not bool(finite_flag(y))
    y = x.clone()
    y[0, 0, 0], y[1, 1, 1] = float("inf"), -float("inf")      # inf - inf = NaN: still caught
    assert not bool(finite_flag(y))
    assert bool(finite_flag(torch.empty(0, 3, dtype=dtype)))


def test_large_finite_values_are_not_refused():
    """The sum of large finite values overflows (a false alarm of the fast test): the exact
    elementwise check then lets them through."""
    x = torch.full((10,), 3e38)
    assert not bool(finite_flag(x))
    assert check_tensor(x, "x") is x
    check_finite({"x": x, "y": torch.full((4,), 6e4, dtype=torch.float16)})


def test_errors_count_nan_and_inf_and_name_the_culprit():
    x = torch.zeros(2, 3)
    x[0, 0], x[1, 1], x[1, 2] = float("nan"), float("inf"), -float("inf")
    with pytest.raises(ValueError, match=r"x contains 1 NaN and 2 inf values \(shape \(2, 3\)\)"):
        check_tensor(x, "x")
    with pytest.raises(ValueError, match=r"second contains 1 NaN and 2 inf"):
        check_finite({"first": torch.ones(3), "second": x, "none": None, "ints": torch.arange(3)})
    assert check_tensor(x, "x", finite=False) is x


def test_check_finite_reads_the_device_once(monkeypatch):
    """One reduction per tensor and one host read (``bool``) for all of them."""
    scanned, reads = [], []
    real_flag = _validate.finite_flag
    monkeypatch.setattr(_validate, "finite_flag", lambda t: scanned.append(t) or real_flag(t))
    # module globals shadow builtins: count the bool() calls made inside _validate
    monkeypatch.setattr(_validate, "bool", lambda v: reads.append(v) or builtins.bool(v), raising=False)
    check_finite({f"t{i}": torch.randn(5, 7) for i in range(3)})
    assert len(scanned) == 3 and len(reads) == 1
