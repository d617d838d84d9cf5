"""Input checks shared by every public function: each raises a clear error that names the
argument, what was wrong, and what to do. Nothing is silently fixed or dropped."""
from __future__ import annotations

import math
import numbers
from typing import Iterable, Mapping, Optional, Sequence

import torch

MODALITIES = ("text", "audio", "vision")


def check_tensor(
    x,
    name: str,
    *,
    ndim: Optional[int] = None,
    min_ndim: Optional[int] = None,
    finite: bool = True,
    floating: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a tensor with the expected rank, a floating dtype and finite values.

    Returns ``x`` unchanged so calls can be chained. ``ndim`` asks for an exact rank, ``min_ndim``
    for a minimum one. The finiteness test is one reduction (see :func:`finite_flag`) and one host
    sync on CUDA; NaN and inf are counted only when it fails. To check several tensors with a
    single sync, pass ``finite=False`` here and then call :func:`check_finite` on all of them.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; wrap arrays with torch.as_tensor")
    if x.device.type == "meta":
        raise ValueError(f"{name} is on the meta device (a shape without values), which nothing here can compute "
                         "with; pass a tensor on 'cpu' or 'cuda' (e.g. torch.empty_like(x, device='cpu'))")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.dim() < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; {dtype_hint(x, name)}")
    if finite and x.is_floating_point() and not bool(finite_flag(x)):
        _raise_nonfinite(x, name)
    return x


def dtype_hint(x: torch.Tensor, name: str) -> str:
    """What to do with a tensor whose dtype is not floating: complex ones get their own advice,
    because ``.float()`` would silently drop the imaginary part."""
    if x.is_complex():
        return (f"complex values are not accepted (a cast would drop the imaginary part): pass {name}.real, "
                f"{name}.abs(), or the real and imaginary parts as separate features")
    return f"pass {name}.float()"


def finite_flag(x: torch.Tensor) -> torch.Tensor:
    """0-dim bool tensor, True when every entry of the floating tensor ``x`` is finite; no host sync.

    One pass over ``x``: its sum. A sum over a NaN or an inf is never finite (inf + finite = inf,
    inf - inf = NaN, NaN propagates), so a finite sum proves every entry finite. A non-finite sum
    may also come from overflow of large finite values; :func:`check_finite` then runs the exact
    elementwise test before raising. (``torch.isfinite(x).all()`` reads ``x`` too but writes a
    bool tensor of its size: about 100x slower on one CPU thread for ``[32, 500, 64]``.)
    """
    x = x.detach()                                   # no autograd graph for a check
    acc = x.sum(dtype=torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x.sum()
    return torch.isfinite(acc)


def _raise_nonfinite(x: torch.Tensor, name: str) -> None:
    """The slow, exact path: count NaN and inf, raise if any (a false alarm of the sum returns)."""
    bad = ~torch.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad == 0:               # the fast test's sum overflowed on large but finite values
        return
    n_nan = int(torch.isnan(x).sum())
    raise ValueError(
        f"{name} contains {n_nan} NaN and {n_bad - n_nan} inf values (shape {tuple(x.shape)}); "
        "clean the input first (MMSA's policy sets audio -inf to 0: see infoenh.data)"
    )


def check_finite(tensors: Mapping[str, Optional[torch.Tensor]]) -> None:
    """Check that every floating tensor of ``{name: tensor}`` is finite, with ONE host sync in all.

    Each tensor gets one reduction (:func:`finite_flag`); the flags are combined on the device
    and read once. Only when that fails are the tensors examined one by one, and the error names
    the first culprit with its NaN and inf counts. ``None`` values and non-floating tensors are
    skipped. Shapes and dtypes are not checked here: use :func:`check_tensor` with
    ``finite=False`` for those.
    """
    items = [(n, t) for n, t in tensors.items() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not items:
        return
    flags = [finite_flag(t) for _, t in items]
    if len({f.device for f in flags}) > 1:                 # tensors on several devices: one sync each
        ok = all(bool(f) for f in flags)
    else:
        ok = bool(torch.stack(flags).all()) if len(flags) > 1 else bool(flags[0])
    if not ok:
        for n, t in items:
            _raise_nonfinite(t, n)


def check_mask(mask, name: str, shape: Sequence[int]) -> torch.Tensor:
    """Check a padding mask: bool (or 0/1) tensor of ``shape``, True where a step is real."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of booleans, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} to match its sequence, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or mask.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
            vals = torch.unique(mask)
            if not bool(((vals == 0) | (vals == 1)).all()):
                raise ValueError(f"{name} must hold only 0/1 or True/False, found values {vals.tolist()[:5]}")
            mask = mask.bool()
        else:
            raise TypeError(f"{name} must be a bool tensor, got dtype {mask.dtype}")
    return mask


def check_modalities(names: Iterable[str], where: str, allowed: Sequence[str] = MODALITIES) -> None:
    """Raise if any name is not a known modality."""
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise KeyError(f"{where}: unknown modality {unknown}; expected a subset of {list(allowed)}")


def check_same_batch(tensors: Mapping[str, torch.Tensor], where: str, *, nonempty: bool = False) -> int:
    """Check every tensor shares the leading (batch) size; return it. ``nonempty``: B = 0 is refused."""
    sizes = {k: int(v.shape[0]) for k, v in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{where}: batch sizes differ across inputs {sizes}; every modality needs the same samples")
    if not sizes:
        raise ValueError(f"{where}: no inputs given")
    B = next(iter(sizes.values()))
    if nonempty and B == 0:
        raise ValueError(f"{where}: the batch is empty (B = 0 samples in {', '.join(sizes)}); pass at least one "
                         "sample (an empty loader or a filter that removed every sample is the usual cause)")
    return B


def check_number(value, name: str, *, gt: Optional[float] = None, ge: Optional[float] = None,
                 meaning: str = "") -> float:
    """Check that ``value`` is a finite real number (not a bool) with ``value > gt`` and/or
    ``value >= ge``; return it as a float. ``meaning`` (e.g. "the InfoNCE temperature") goes into
    the message. Pure host work: meant for hyper-parameters, not tensors."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (gt is None or value > gt) and (ge is None or value >= ge)
    if not ok:
        bounds = " and ".join(b for b in (gt is not None and f"> {gt:g}", ge is not None and f">= {ge:g}") if b)
        what = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name}{what} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}")
    return float(value)


def check_positive_int(value, name: str) -> int:
    """Check ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value
