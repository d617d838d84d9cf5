"""Load a pickle without letting it run code.

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable by name
and ``REDUCE`` calls it, so ``pickle.load`` on a hostile file can run ``os.system``. The MMSA and
MulT dataset pickles only need plain containers, strings, numbers and numpy arrays, so
:class:`RestrictedUnpickler` resolves exactly those globals from a fixed table and refuses every
other one *before* anything is called, naming the global it refused.

Admitted globals (both the numpy 1 ``numpy.core`` and numpy 2 ``numpy._core`` spellings, resolved to
the objects of the installed numpy without importing the named module):

- ``numpy.ndarray``, ``numpy.dtype``
- ``numpy.core.multiarray._reconstruct`` (array pickles, protocols 0-4)
- ``numpy.core.multiarray.scalar`` (numpy scalars)
- ``numpy.core.numeric._frombuffer`` (array pickles, protocol 5)
- ``builtins``/``__builtin__`` ``set``, ``frozenset``, ``bytearray``, ``complex``
  (containers that protocols < 4 build by a call)
- ``_codecs.encode`` (how protocol 2 stores ``bytes`` under Python 3)
- ``collections.OrderedDict``

Plain ``dict``/``list``/``tuple``/``str``/``bytes``/``int``/``float``/``bool``/``None`` need no global.
"""
from __future__ import annotations

import _codecs
import collections
import io
import os
import pickle
from typing import Any, Callable, Dict, Tuple, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global (a callable or class) outside the allowed table."""


def _numpy_core():
    """Return (multiarray, numeric) modules of the installed numpy (numpy 2 or numpy 1)."""
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    return multiarray, numeric


def _allowed_globals() -> Dict[Tuple[str, str], Callable[..., Any]]:
    multiarray, numeric = _numpy_core()
    table: Dict[Tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    for mod in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("bytearray", bytearray), ("complex", complex)):
            table[(mod, name)] = obj
    return table


ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` only returns entries of :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global '{module}.{name}': this pickle asks to import and call code, "
                "and a dataset file only needs dicts, lists, strings, numbers and numpy arrays. "
                "Nothing was executed. Do not load this file with plain pickle; get the dataset again "
                "from its official source and check its SHA-256."
            ) from None

    def persistent_load(self, pid):  # noqa: D401 - pickle API
        raise UnsafePickleError(
            f"refused persistent id {pid!r}: dataset pickles do not use persistent references"
        )


def safe_loads(data: bytes, *, what: str = "data") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Python 2 era pickles (the MulT/CMU files) are read with ``encoding="latin1"``, the setting numpy
    needs for their array buffers. Errors other than a refused global become a ``ValueError`` that
    says ``what`` was expected to be a pickle.
    """
    return _load(io.BytesIO(data), what)


def safe_load(path: PathLike) -> Any:
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler` (see :func:`safe_loads`)."""
    with open(path, "rb") as f:
        return _load(f, f"'{os.fspath(path)}'")


def _load(f, what: str) -> Any:
    try:
        return RestrictedUnpickler(f, encoding="latin1").load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, UnicodeDecodeError, MemoryError) as exc:
        raise ValueError(
            f"{what} is not a readable pickle ({type(exc).__name__}: {exc}). Expected a dataset pickle "
            "(MMSA processed file such as unaligned_50.pkl: a dict with 'train', 'valid' and 'test'). "
            "The file may be truncated (an interrupted download) or not a pickle at all."
        ) from exc
