"""The shared input checks: the cheap finiteness test, its exact fallback, one sync for many tensors,
numeric hyper-parameters, dtype hints."""
import builtins

import numpy as np
import pytest
import torch

from infoenh import _validate
from infoenh._validate import check_finite, check_number, check_tensor, finite_flag


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


@pytest.mark.parametrize("value", [0.1, 3, np.float32(0.5), np.float64(2.0), 1e300])
def test_check_number_accepts_finite_reals_in_range(value):
    out = check_number(value, "tau", gt=0)
    assert type(out) is float and out == float(value)
    assert check_number(0, "alpha", ge=0) == 0.0                          # the bound of ge is allowed


@pytest.mark.parametrize(
    "value, kwargs, match",
    [
        (0.0, dict(gt=0), r"tau must be a finite number > 0, got 0.0"),  # gt excludes its bound
        (-1e-9, dict(ge=0), r">= 0, got -1e-09"),
        (float("nan"), dict(gt=0), "got nan"),
        (float("inf"), dict(gt=0), "got inf"),
        (-float("inf"), dict(), "finite number, got -inf"),
        (True, dict(gt=0), "got True"),                                  # a bool is not a number here
        ("0.1", dict(gt=0), "got '0.1'"),
        (None, dict(gt=0), "got None"),
        (torch.tensor(0.1), dict(gt=0), "got tensor"),
    ],
)
def test_check_number_refuses_with_one_message(value, kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_number(value, "tau", **kwargs)


def test_check_number_message_names_meaning_and_range():
    with pytest.raises(ValueError, match=r"^alpha \(the weight\) must be a finite number >= 0, got -2$"):
        check_number(-2, "alpha", ge=0, meaning="the weight")


def test_non_floating_tensors_get_a_dtype_specific_hint():
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor, got dtype torch.int64; pass x.float\(\)"):
        check_tensor(torch.ones(2, dtype=torch.int64), "x")
    with pytest.raises(TypeError, match=r"complex64; complex values are not accepted .* pass x.real, x.abs\(\)"):
        check_tensor(torch.ones(2, dtype=torch.complex64), "x")
