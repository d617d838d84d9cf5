"""Load a pickle without letting it run code or build more than its own bytes describe.

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable by name
and ``REDUCE`` calls it, so ``pickle.load`` on a hostile file can run ``os.system``. The MMSA and
MulT dataset pickles only need plain containers, strings, numbers and numpy arrays, so
:class:`RestrictedUnpickler` resolves exactly those globals from a fixed table and refuses every
other one *before* anything is called, naming the global it refused.

Even an allowed callable can be abused: ``numpy.ndarray((10**9,))`` or ``bytearray(10**9)`` in a
41-byte file allocates gigabytes, and ``ndarray(shape)`` hands back uninitialised memory (the same
file would load different data each time). So no global is handed out as such: each one is a
checked stand-in that only accepts the arguments numpy's and Python's own pickles use:

- ``numpy.ndarray``: only as the first argument of ``_reconstruct``; calling it is refused;
- ``numpy.core.multiarray._reconstruct(ndarray, shape, b'b')`` (array pickles, protocols 0-4):
  only with a zero-size ``shape``; the array then gets its content from the ``BUILD`` that
  follows, ``ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata))``, which is
  checked first: ``rawdata`` must be exactly ``prod(shape) * itemsize`` bytes, or for an object
  array a list of exactly ``prod(shape)`` items;
- ``numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`` (array pickles, protocol 5):
  only when ``len(buffer) == prod(shape) * itemsize``;
- ``numpy.core.multiarray.scalar(dtype, data)`` (numpy scalars): ``data`` exactly one item;
- ``numpy.dtype(code, align, copy)``: a plain type code such as ``'f4'`` or ``'U16'``; its
  ``BUILD`` may set byte order, size and datetime unit but no fields or sub-arrays (structured
  dtypes are refused), and no item may exceed :data:`MAX_ITEMSIZE` bytes;
- ``builtins``/``__builtin__`` ``set``, ``frozenset`` (from a list or tuple), ``bytearray``
  (from bytes, or a string and ``'latin-1'``; never from a size), ``bytes()`` (empty: how
  protocols < 3 store ``b''``, e.g. the data of an empty array), ``complex`` (from numbers):
  the objects that protocols < 4 build by a call;
- ``_codecs.encode(text, 'latin1')`` (how protocol 2 stores ``bytes`` under Python 3);
- ``collections.OrderedDict()`` (filled by ``SETITEMS`` afterwards).

Both the numpy 1 ``numpy.core`` and numpy 2 ``numpy._core`` spellings are admitted; nothing named
is imported. Plain ``dict``/``list``/``tuple``/``str``/``bytes``/``int``/``float``/``bool``/``None``
need no global. ``BUILD`` is admitted for arrays and dtypes only; ``NEWOBJ``, the extension
registry (``EXT1``/``EXT2``/``EXT4``) and persistent ids are refused.

**Size bound.** Everything these calls build counts toward one budget: arrays by their bytes (at
least one per element, so a zero-width dtype cannot stand for a huge array), byte strings and
bytearrays by their length, sets 64 bytes per element. The budget of a pickle of ``S`` bytes is
:func:`size_bound` ``(S) = 64 * S + 64 MiB`` (:data:`SIZE_FACTOR`, :data:`SIZE_SLACK`). A dataset
pickle stores its arrays' bytes, so a real file never comes near it (its arrays total about ``S``);
a small file that reuses one buffer many times, or declares sizes it does not hold, is refused with
:class:`UnsafePickleError` naming the bound. A declared length beyond the end of the file is refused
before anything is allocated. Since every non-empty array is filled from the file's bytes, the same
file always loads the same data.

The stream is read by Python's own pure-Python unpickler (``pickle._Unpickler``) so that ``BUILD``
and the other opcodes above can be checked before they act; dataset pickles are a few large byte
strings, so this costs little time.
"""
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import re
import struct
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

SIZE_FACTOR = 64                 # a pickle may build at most SIZE_FACTOR x its own size ...
SIZE_SLACK = 64 * 2**20          # ... plus this many bytes
MAX_ITEMSIZE = 2**20             # the largest array item (dtype itemsize) a dataset needs, bytes
_SET_ITEM_BYTES = 64             # what one element of a set built by a call counts toward the bound
_LATIN1 = ("latin1", "latin-1")  # the encodings Python's pickles use for bytes in a str
_TYPE_CODE = re.compile(r"[A-Za-z]\d*")  # 'f4', 'U16', 'O8', 'M8', 'b1', ...

_ADVICE = ("Nothing was executed. Do not load this file with plain pickle; get the dataset again "
           "from its official source and check its SHA-256.")


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something a dataset file never needs: a global outside the allowed
    table, an allowed callable with arguments numpy's own pickles never use, or more memory than
    its size allows (see :func:`size_bound`)."""


def size_bound(file_size: int) -> int:
    """The most bytes a pickle of ``file_size`` bytes may build: ``64 * file_size + 64 MiB``."""
    return SIZE_FACTOR * int(file_size) + SIZE_SLACK


def _human(n: float) -> str:
    """``n`` bytes in the largest binary unit up to PiB, e.g. ``80.2 MiB``."""
    for unit, power in (("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 2**power:
            return f"{n / 2**power:.1f} {unit}"
    return f"{n} bytes"


def _refuse(what: str, why: str) -> UnsafePickleError:
    """The error for a refused call or opcode: what was asked, why no dataset needs it, advice."""
    return UnsafePickleError(f"refused {what}: {why}. {_ADVICE}")


def _numpy_core():
    """Return the ``multiarray`` module of the installed numpy (numpy 2 or numpy 1)."""
    try:  # numpy >= 2
        from numpy._core import multiarray  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _allowed_globals() -> Dict[Tuple[str, str], str]:
    """(module, name) -> the name of the :class:`RestrictedUnpickler` method that stands in for it."""
    table: Dict[Tuple[str, str], str] = {
        ("numpy", "ndarray"): "_g_ndarray",
        ("numpy", "dtype"): "_g_dtype",
        ("_codecs", "encode"): "_g_encode",
        ("collections", "OrderedDict"): "_g_ordered_dict",
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = "_g_reconstruct"
        table[(f"{core}.multiarray", "scalar")] = "_g_scalar"
        table[(f"{core}.numeric", "_frombuffer")] = "_g_frombuffer"
    for mod in ("builtins", "__builtin__"):
        for name in ("set", "frozenset", "bytearray", "bytes", "complex"):
            table[(mod, name)] = f"_g_{name}"
    return table


ALLOWED_GLOBALS = _allowed_globals()


class _BoundedReader:
    """A file wrapper that refuses to read past the file's known size (no allocation from a
    length the pickle declares but does not hold) and never returns fewer bytes than asked."""

    def __init__(self, f, size: int):
        self._f = f
        self.left = size

    def read(self, n: int) -> bytes:
        if n > self.left:
            raise pickle.UnpicklingError(
                f"pickle data was truncated: it declares {n} more bytes but only {self.left} remain")
        data = self._f.read(n)
        if len(data) != n:
            raise pickle.UnpicklingError("pickle data was truncated (the file shrank while being read)")
        self.left -= n
        return data

    def readline(self) -> bytes:
        line = self._f.readline()
        self.left -= len(line)
        return line


class _Dispatch(dict):
    """The opcode table; an unknown opcode is an UnpicklingError, not a bare KeyError."""

    def __missing__(self, key):
        raise pickle.UnpicklingError(f"invalid load key {bytes([key])!r}")


def _shape(shape: Any, what: str) -> Tuple[int, ...]:
    """Check that ``shape`` is a tuple/list of non-negative ints and return it as a tuple."""
    if not isinstance(shape, (tuple, list)) or len(shape) > 64 or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 for n in shape):
        raise _refuse(what, f"its shape {shape!r} is not a tuple of non-negative integers")
    return tuple(shape)


def _plain_dtype(dt: Any, what: str) -> np.dtype:
    """Check that ``dt`` is a dtype without fields or sub-array and with items <= MAX_ITEMSIZE."""
    if not isinstance(dt, np.dtype):
        raise _refuse(what, f"its dtype is a {type(dt).__name__}, not a numpy dtype")
    if dt.fields is not None or dt.subdtype is not None:
        raise _refuse(what, f"structured dtype {dt}: dataset arrays have plain dtypes")
    if dt.itemsize > MAX_ITEMSIZE:
        raise _refuse(what, f"dtype {dt} has {_human(dt.itemsize)} items, over the {_human(MAX_ITEMSIZE)} "
                            "a dataset array needs")
    return dt


def _raw_bytes(data: Any) -> Optional[int]:
    """The byte length of array/scalar data (bytes, bytearray, or a Python 2 str read as latin-1);
    None for anything else."""
    if isinstance(data, (bytes, bytearray)):
        return len(data)
    if isinstance(data, str):
        return len(data)  # numpy encodes it as latin-1, one byte per character
    return None


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler whose ``find_class`` only returns checked stand-ins for the entries of
    :data:`ALLOWED_GLOBALS`, and whose ``BUILD`` only fills arrays and dtypes, each checked."""

    dispatch = _Dispatch(pickle._Unpickler.dispatch)

    def __init__(self, file, size: int, **kwargs):
        """``file``: a binary file; ``size``: its size in bytes (sets the bound and the read limit)."""
        super().__init__(_BoundedReader(file, size), **kwargs)
        self.file_size = size
        self.bound = size_bound(size)
        self.built = 0
        self._globals = {key: getattr(self, method) for key, method in ALLOWED_GLOBALS.items()}

    # -- globals ------------------------------------------------------------------------------
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global '{module}.{name}': this pickle asks to import and call code, "
                "and a dataset file only needs dicts, lists, strings, numbers and numpy arrays. " + _ADVICE
            ) from None

    def persistent_load(self, pid):  # noqa: D401 - pickle API
        raise UnsafePickleError(
            f"refused persistent id {pid!r}: dataset pickles do not use persistent references"
        )

    def _charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` built by ``what`` toward the bound; refuse before it is allocated."""
        self.built += nbytes
        if self.built > self.bound:
            raise _refuse(
                what, f"this {self.file_size}-byte pickle would build {_human(self.built)} of arrays and "
                      f"buffers, over the bound for its size ({SIZE_FACTOR} x {self.file_size} bytes + "
                      f"{_human(SIZE_SLACK)} = {_human(self.bound)}); a dataset pickle holds its arrays' "
                      "bytes, so loading one never builds much more than the file")

    def _g_ndarray(self, *args, **kwargs):
        """Stand-in for ``numpy.ndarray``: a token for ``_reconstruct``; calling it is refused."""
        raise _refuse("to call numpy.ndarray(...)",
                      "it allocates an array from a declared shape, uninitialised (different data on each "
                      "load); numpy's own pickles only pass numpy.ndarray to _reconstruct")

    def _g_reconstruct(self, subtype=None, shape=None, typecode=None, *extra):
        """``_reconstruct(ndarray, shape, b'b')`` with an empty ``shape`` only (its BUILD fills it)."""
        what = "numpy _reconstruct(...)"
        if subtype is not self._globals[("numpy", "ndarray")] or extra:
            raise _refuse(what, "numpy's array pickles call it as _reconstruct(numpy.ndarray, (0,), b'b')")
        shape = _shape(shape, what)
        if math.prod(shape) != 0:
            raise _refuse(what, f"initial shape {shape} is not empty: it would allocate memory the pickle "
                                "does not fill (numpy's pickles start from shape (0,) and set the data after)")
        if typecode not in (b"b", "b"):
            raise _refuse(what, f"initial type code {typecode!r}; numpy's pickles use b'b'")
        return np.empty(shape, dtype=np.int8)

    def _g_frombuffer(self, buf=None, dtype=None, shape=None, order=None, *extra):
        """``_frombuffer(buffer, dtype, shape, order)`` when the buffer holds exactly the array's bytes."""
        what = "numpy _frombuffer(...)"
        if not isinstance(buf, (bytes, bytearray)) or extra or order not in ("C", "F"):
            raise _refuse(what, "numpy's protocol-5 pickles call it as _frombuffer(bytes, dtype, shape, 'C'|'F')")
        dt, shape = _plain_dtype(dtype, what), _shape(shape, what)
        if dt.hasobject:
            raise _refuse(what, "an object array cannot come from a byte buffer")
        n = math.prod(shape)
        if len(buf) != n * dt.itemsize:
            raise _refuse(what, f"shape {shape} of {dt} needs {n * dt.itemsize} bytes but the buffer holds "
                                f"{len(buf)}")
        self._charge(max(n * dt.itemsize, n), f"an array of shape {shape} ({dt})")
        return np.frombuffer(buf, dtype=dt).reshape(shape, order=order)

    def _g_scalar(self, dtype=None, data=None, *extra):
        """``scalar(dtype, data)`` with exactly one item's bytes (no zero-filled item from a size)."""
        what = "numpy scalar(...)"
        dt = _plain_dtype(dtype, what)
        if dt.hasobject or extra or _raw_bytes(data) != dt.itemsize:
            raise _refuse(what, f"numpy's pickles give a {dt} scalar as exactly {dt.itemsize} bytes")
        self._charge(dt.itemsize, what)
        return _numpy_core().scalar(dt, data)

    def _g_dtype(self, code=None, align=False, copy=True, *extra):
        """``dtype(code, align, copy)`` for a plain type code such as ``'f4'`` or ``'U16'``."""
        what = f"numpy.dtype({code!r})"
        if not isinstance(code, str) or not _TYPE_CODE.fullmatch(code) or extra or \
                not all(v in (0, 1) for v in (align, copy)):
            raise _refuse(what, "numpy's pickles give a dtype as a plain type code such as 'f4' or 'U16'")
        try:
            dt = np.dtype(code, align=bool(align), copy=bool(copy))
        except TypeError as exc:
            raise pickle.UnpicklingError(f"invalid dtype code {code!r} ({exc})") from None
        return _plain_dtype(dt, what)

    def _g_encode(self, text=None, encoding=None, *extra):
        """``_codecs.encode(text, 'latin1')``: bytes as protocols < 3 store them."""
        if not isinstance(text, str) or encoding not in _LATIN1 or extra:
            raise _refuse("_codecs.encode(...)", "pickles only use it as encode(str, 'latin1') to store bytes")
        self._charge(len(text), "_codecs.encode(...)")
        return text.encode("latin1")

    def _g_bytearray(self, source=b"", encoding=None, *extra):
        """``bytearray(bytes)`` or ``bytearray(str, 'latin-1')``; never ``bytearray(size)``."""
        what = "bytearray(...)"
        if isinstance(source, bytes) and encoding is None and not extra:
            data = source
        elif isinstance(source, str) and encoding in _LATIN1 and not extra:
            data = source.encode("latin1")
        else:
            raise _refuse(what, f"bytearray({type(source).__name__}) would allocate from a declared size or "
                                "convert an object; pickles only build a bytearray from its bytes")
        self._charge(len(data), what)
        return bytearray(data)

    def _g_bytes(self, *args):
        """``bytes()``: the empty byte string of protocols < 3."""
        if args:
            raise _refuse("bytes(...)", "pickles only call bytes() for an empty byte string")
        return b""

    def _g_set(self, items=(), *extra):
        """``set(list)``, counted toward the size bound."""
        return set(self._container_items(items, extra, "set(...)"))

    def _g_frozenset(self, items=(), *extra):
        """``frozenset(list)``, counted toward the size bound."""
        return frozenset(self._container_items(items, extra, "frozenset(...)"))

    def _container_items(self, items, extra, what: str):
        """Check the argument of ``set``/``frozenset`` and charge it to the bound."""
        if not isinstance(items, (list, tuple)) or extra:
            raise _refuse(what, "pickles only build a set from a list of its items")
        self._charge(_SET_ITEM_BYTES * len(items), what)
        return items

    def _g_complex(self, *parts):
        """``complex(real, imag)`` from numbers only."""
        if len(parts) > 2 or not all(isinstance(p, (int, float)) for p in parts):
            raise _refuse("complex(...)", "pickles only build a complex number from its two parts")
        return complex(*parts)

    def _g_ordered_dict(self, *args, **kwargs):
        """``OrderedDict()``, empty (pickles add the items with SETITEMS)."""
        if args or kwargs:
            raise _refuse("collections.OrderedDict(...)", "pickles build it empty and then set its items")
        return collections.OrderedDict()

    # -- opcodes --------------------------------------------------------------------------------
    def load_build(self):
        """``BUILD``: only ``ndarray.__setstate__`` and ``dtype.__setstate__``, each checked first."""
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is np.ndarray:
            self._check_array_state(state)
            inst.__setstate__(state)
        elif isinstance(inst, np.dtype):
            self._build_dtype(inst, state)
        else:
            raise _refuse(f"BUILD on a {type(inst).__name__}",
                          "dataset pickles only set the state of numpy arrays and dtypes")

    def _check_array_state(self, state: Any) -> None:
        """Check an ``ndarray.__setstate__`` state: the data is exactly what the shape and dtype need."""
        what = "a numpy array state"
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _refuse(what, "numpy's pickles give (version, shape, dtype, is_fortran, data)")
        shape, dt, fortran, data = state[-4:]
        shape, dt = _shape(shape, what), _plain_dtype(dt, what)
        if fortran not in (0, 1):
            raise _refuse(what, f"is_fortran is {fortran!r}, not a bool")
        n = math.prod(shape)
        if dt.hasobject:
            if not isinstance(data, list) or len(data) != n:
                got = f"a list of {len(data)}" if isinstance(data, list) else f"a {type(data).__name__}"
                raise _refuse(what, f"an object array of shape {shape} needs a list of {n} items, got {got}")
        elif _raw_bytes(data) != n * dt.itemsize:
            got = f"{_raw_bytes(data)} bytes" if _raw_bytes(data) is not None else f"a {type(data).__name__}"
            raise _refuse(what, f"shape {shape} of {dt} needs {n * dt.itemsize} bytes of data, got {got}")
        self._charge(max(n * dt.itemsize, n), f"an array of shape {shape} ({dt})")

    def _build_dtype(self, dt: np.dtype, state: Any) -> None:
        """Apply a dtype state without fields or sub-arrays; refuse a result that is not a plain dtype."""
        what = f"the state of numpy dtype {dt}"
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4) \
                or any(v is not None for v in state[2:5]):
            raise _refuse(what, "structured dtypes (fields or sub-arrays) are not used by dataset arrays; "
                                "expected (3|4, byteorder, None, None, None, size, alignment, flags[, metadata])")
        dt.__setstate__(state)
        fresh = np.dtype(dt.str)
        if dt != fresh or dt.flags != fresh.flags or dt.itemsize > MAX_ITEMSIZE:
            raise _refuse(what, f"it does not describe a plain dtype (got {dt}, item size {dt.itemsize})")

    def load_bytearray8(self):
        """``BYTEARRAY8``: read the bytes (bounded by the file) before allocating the bytearray."""
        (n,) = struct.unpack("<Q", self.read(8))
        self.append(bytearray(self.read(n)))

    def _refuse_opcode(self):
        """NEWOBJ(_EX) and EXT1/2/4: never in dataset pickles (EXT would bypass ``find_class``)."""
        raise _refuse("a NEWOBJ / extension-registry opcode",
                      "dataset pickles build objects only through the allowed calls")

    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8
    for _op in (pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = _refuse_opcode
    del _op


def safe_loads(data: bytes, *, what: str = "data") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (bound: :func:`size_bound` of ``len(data)``).

    Python 2 era pickles (the MulT/CMU files) are read with ``encoding="latin1"``, the setting numpy
    needs for their array buffers. Errors other than a refusal become a ``ValueError`` that
    says ``what`` was expected to be a pickle.
    """
    return _load(io.BytesIO(data), len(data), what)


def safe_load(path: PathLike) -> Any:
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler` (see :func:`safe_loads`)."""
    with open(path, "rb") as f:
        return _load(f, os.fstat(f.fileno()).st_size, f"'{os.fspath(path)}'")


def _load(f, size: int, what: str) -> Any:
    try:
        return RestrictedUnpickler(f, size, encoding="latin1").load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, UnicodeDecodeError, MemoryError, struct.error, RecursionError) as exc:
        raise ValueError(
            f"{what} is not a readable pickle ({type(exc).__name__}: {exc}). Expected a dataset pickle "
            "(MMSA processed file such as unaligned_50.pkl: a dict with 'train', 'valid' and 'test'). "
            "The file may be truncated (an interrupted download) or not a pickle at all."
        ) from exc
