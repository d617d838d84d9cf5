"""The restricted unpickler: plain data and numpy load, code never runs, broken files fail clearly,
and no call builds memory the file does not hold."""
import builtins
import collections
import io
import os
import pathlib
import pickle
import re
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from infoenh.data import load_mmsa
from infoenh.data.safe_pickle import (ALLOWED_GLOBALS, SIZE_FACTOR, SIZE_SLACK, RestrictedUnpickler,
                                      UnsafePickleError, safe_load, safe_loads, size_bound)

try:  # numpy >= 2
    from numpy._core import multiarray, numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray, numeric


class _System:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Exec:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def _payload(marker):
    return f"open({str(marker)!r}, 'w').write('pwned')"


class _Call:
    """Pickles as ``fn(*args)`` (then ``BUILD`` with ``state`` when given), whatever ``fn`` is."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_numpy_and_containers_round_trip(protocol):
    obj = {
        "train": {"x": np.arange(12, dtype=np.float32).reshape(2, 3, 2), "id": np.array(["a$_$1", "b$_$2"]),
                  "o": np.array(["x", 1.5], dtype=object), "f64": np.linspace(0, 1, 5)},
        "scalars": [np.float64(1.5), np.int64(3), np.bool_(True), 2.5, None, True],
        "set": {1, 2}, "frozen": frozenset({3}), "bytes": b"\x00\xff", "tuple": (1, "a"),
        "dtype": np.dtype("<U16"), "od": collections.OrderedDict([("b", 1), ("a", 2)]),
        "ba": bytearray(b"\x01\x02"), "c": complex(1.5, -2), "big_endian": np.arange(3, dtype=">i4"),
    }
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    assert back["od"] == obj["od"] and list(back["od"]) == ["b", "a"] and back["ba"] == bytearray(b"\x01\x02")
    assert back["c"] == complex(1.5, -2)
    np.testing.assert_array_equal(back["big_endian"], [0, 1, 2])
    np.testing.assert_array_equal(back["train"]["x"], obj["train"]["x"])
    assert back["train"]["x"].dtype == np.float32
    assert back["train"]["id"].tolist() == ["a$_$1", "b$_$2"]
    assert back["train"]["o"].tolist() == ["x", 1.5]
    assert back["scalars"][:3] == [1.5, 3, True] and isinstance(back["scalars"][0], np.float64)
    assert back["set"] == {1, 2} and back["frozen"] == frozenset({3}) and back["bytes"] == b"\x00\xff"
    assert back["tuple"] == (1, "a") and back["dtype"] == np.dtype("<U16")


def test_exec_payload_is_live_with_plain_pickle(tmp_path):
    # control: the payload used below really runs code when loaded with plain pickle
    marker = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_Exec(_payload(marker))))
    assert marker.exists()


@pytest.mark.parametrize("make, refused", [
    (lambda m: _System(f"touch {m}"), r"(posix|os|nt)\.system"),
    (lambda m: _Exec(_payload(m)), r"(builtins|__builtin__)\.exec"),
])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, make, refused, protocol):
    marker = tmp_path / "marker"
    evil = {"train": {"text": make(marker)}, "valid": {}, "test": {}}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    msg = str(info.value)
    assert re.search(refused, msg) and "refused to load global" in msg and "Nothing was executed" in msg
    assert not marker.exists()
    # the dataset loader refuses it the same way (checksum check first, then the unpickler)
    with pytest.raises(UnsafePickleError, match=refused):
        load_mmsa(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_other_classes_are_refused():
    import collections

    with pytest.raises(UnsafePickleError, match="collections.Counter"):
        safe_loads(pickle.dumps(collections.Counter("aab")))
    with pytest.raises(UnsafePickleError, match="numpy.*matrix|matrixlib"):
        safe_loads(pickle.dumps(np.matrix([[1, 2]])))


def test_not_a_pickle(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("this is a text file, not a pickle\n")
    with pytest.raises(ValueError, match="not a readable pickle.*Expected a dataset pickle"):
        safe_load(path)


def test_truncated_pickle(tmp_path):
    data = pickle.dumps({"train": {"x": np.zeros((20, 5))}}, protocol=4)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        safe_load(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable pickle"):
        safe_load(path)


@pytest.mark.parametrize("obj, match", [
    ([1, 2, 3], "holds a list, not a dict of splits"),
    ({"train": {}, "test": {}}, r"no split\(s\) \['valid'\]"),
    ({"train": [1], "valid": {}, "test": {}}, "split 'train' is a list"),
])
def test_wrong_top_level_structure(tmp_path, obj, match):
    path = tmp_path / "wrong.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(ValueError, match=match):
        load_mmsa(path)


# -- arrays as numpy pickles them: every protocol, C and Fortran order, same bytes on every load ----

def _mmsa_like_arrays():
    rng = np.random.default_rng(0)
    return {
        "text": rng.standard_normal((3, 7, 11)).astype(np.float32),                 # C order, > 1000 bytes
        "vision": np.asfortranarray(rng.standard_normal((3, 5, 4))),                # float64, Fortran order
        "id": np.array(["vid_a$_$1", "vid_b$_$2", "vid_c$_$3"], dtype=object),      # object array of str
        "raw_text": np.array(["one clip", "two", "three words here"]),              # unicode array
        "text_bert": np.arange(3 * 3 * 7, dtype=np.int64).reshape(3, 3, 7),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "label": np.float32(-1.25),
    }


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_numpy_array_pickles_load_exactly_and_identically(tmp_path, protocol):
    path = tmp_path / f"p{protocol}.pkl"
    path.write_bytes(pickle.dumps(_mmsa_like_arrays(), protocol=protocol))
    reference = pickle.loads(path.read_bytes())          # what numpy itself rebuilds from this file
    first, second = safe_load(path), safe_load(path)
    for key, want in reference.items():
        for got in (first[key], second[key]):
            assert got.dtype == want.dtype and got.shape == want.shape, key
            if want.dtype != object:
                assert got.tobytes(order="A") == want.tobytes(order="A"), key
            else:
                assert got.tolist() == want.tolist()
    assert first["vision"].flags.f_contiguous and not first["vision"].flags.c_contiguous
    assert first["text"].tobytes() == second["text"].tobytes()


# -- code never runs: eval, getattr, __import__, subprocess.Popen, os.system at every protocol ----

def _eval_payload(marker, tmp_path):
    return _Call(builtins.eval, (f"open({str(marker)!r}, 'w').write('ran')",))


class _CallableCall(_Call):
    """A _Call that pickle accepts as the callable of another _Call."""

    def __call__(self, *args):  # pragma: no cover - never called, only pickled
        raise AssertionError


def _getattr_payload(marker, tmp_path):
    # getattr only looks an attribute up; exploits then call what it returns: Path.touch(marker)
    return _Call(_CallableCall(builtins.getattr, (pathlib.Path, "touch")), (pathlib.Path(marker),))


def _import_payload(marker, tmp_path):
    # a module whose import writes the marker (stands for any module with import-time effects)
    name = "infoenh_evil_" + re.sub(r"\W", "_", marker.parent.name)
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return _Call(builtins.__import__, (name,))


def _popen_payload(marker, tmp_path):
    return _Call(subprocess.Popen, (["touch", str(marker)],))


def _system_payload(marker, tmp_path):
    return _Call(os.system, (f"touch {marker}",))


PAYLOADS = {
    "eval": (_eval_payload, r"'(builtins|__builtin__)\.eval'"),
    "getattr": (_getattr_payload, r"'(builtins|__builtin__)\.getattr'"),
    "__import__": (_import_payload, r"'(builtins|__builtin__)\.__import__'"),
    "Popen": (_popen_payload, r"'(subprocess|commands)\.Popen'"),  # protocols < 3 use Python 2's name
    "system": (_system_payload, r"'(posix|os|nt)\.system'"),
}


def _wait_for(path, seconds=10.0):
    end = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < end:
        time.sleep(0.02)
    return path.exists()


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_code_payloads_are_live_with_plain_pickle(tmp_path, monkeypatch, kind):
    # control: each payload below really runs code when loaded by plain pickle
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "control_marker"
    make, _ = PAYLOADS[kind]
    data = pickle.dumps(make(marker, tmp_path), protocol=4)
    try:
        result = pickle.loads(data)
        if isinstance(result, subprocess.Popen):
            result.wait(timeout=10)
    finally:
        for name in [m for m in sys.modules if m.startswith("infoenh_evil_")]:
            del sys.modules[name]
    assert _wait_for(marker)


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_code_payloads_are_refused_and_nothing_runs(tmp_path, monkeypatch, kind, protocol):
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "marker"
    make, refused = PAYLOADS[kind]
    evil = {"train": {"text": make(marker, tmp_path)}, "valid": {}, "test": {}}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(UnsafePickleError, match="refused to load global " + refused) as info:
        safe_load(path)
    assert "Nothing was executed" in str(info.value)
    with pytest.raises(UnsafePickleError, match=refused):
        load_mmsa(path, verify=False)
    time.sleep(0.05)  # a process started by mistake would have had time to touch the marker
    assert not marker.exists()
    assert not any(m.startswith("infoenh_evil_") for m in sys.modules)


# The whole allowed table, spelled out: an entry added to the unpickler must be added here too,
# deliberately, with a test of what it may build.
EXPECTED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "bytes"),
    ("builtins", "complex"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "bytearray"), ("__builtin__", "bytes"),
    ("__builtin__", "complex"),
}


def test_allowed_globals_table_is_exactly_the_expected_one():
    assert set(ALLOWED_GLOBALS) == EXPECTED_GLOBALS


def test_find_class_hands_out_checked_stand_ins_never_the_real_callables():
    unpickler = RestrictedUnpickler(io.BytesIO(b""), 0)
    real = {np.ndarray, np.dtype, bytearray, bytes, set, frozenset, complex, collections.OrderedDict,
            multiarray._reconstruct, multiarray.scalar, numeric._frombuffer}
    for module, name in EXPECTED_GLOBALS:
        got = unpickler.find_class(module, name)
        assert callable(got) and got not in real and not isinstance(got, type), (module, name)
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        unpickler.find_class("builtins", "eval")


# -- no allocation from a declared size, no uninitialised memory --------------------------------

_NDARRAY_NEWOBJ = b"\x80\x02cnumpy\nndarray\nM\xe8\x03\x85\x85\x81."   # ndarray.__new__(ndarray, (1000,))


@pytest.mark.parametrize("payload, match", [
    (_Call(bytearray, (10**6,)), r"refused bytearray\(\.\.\.\).*declared size"),
    (_Call(np.ndarray, ((1000,),)), r"refused to call numpy\.ndarray"),
    (_Call(np.ndarray, ((10, 10), "f8")), r"refused to call numpy\.ndarray"),
    (_Call(multiarray._reconstruct, (np.ndarray, (1000,), b"b")), r"initial shape \(1000,\) is not empty"),
    (_Call(multiarray._reconstruct, (np.ndarray, (0,), np.dtype("f8"))), "initial type code"),
    (_Call(multiarray.scalar, (np.dtype("f8"),)), "exactly 8 bytes"),
    (_Call(np.dtype, ("V2000000000", False, True)), "over the 1.0 MiB"),
    (_Call(np.dtype, ("(1000000,)f8", False, True)), "plain type code"),
    (_Call(numeric._frombuffer, (b"\0" * 8, np.dtype("f8"), (1000,), "C")), "needs 8000 bytes but the buffer holds 8"),
    (_Call(multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (1000,), np.dtype("f8"), False, b"\0" * 8)),
     r"needs 8000 bytes of data, got 8 bytes"),
    (_Call(multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (4,), np.dtype([("a", "f4")]), False, b"\0" * 16)),
     "structured dtype"),
    (_Call(collections.OrderedDict, ([("a", 1)] * 3,)), "OrderedDict"),
])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_calls_that_allocate_or_forge_are_refused(payload, match, protocol):
    with pytest.raises(UnsafePickleError, match=match):
        safe_loads(pickle.dumps({"train": payload}, protocol=protocol))


def test_newobj_on_ndarray_is_refused():
    with pytest.raises(UnsafePickleError, match="NEWOBJ"):
        safe_loads(_NDARRAY_NEWOBJ)


def test_object_array_with_a_short_item_list_is_refused_not_a_crash():
    # numpy's own __setstate__ reads past the end of the list (a segfault): the state is checked first
    code = textwrap.dedent("""
        import pickle, numpy as np
        from infoenh.data.safe_pickle import UnsafePickleError, safe_loads
        data = pickle.dumps(np.array(["a"] * 5, dtype=object), protocol=2).replace(b"K\\x05\\x85", b"M\\xe8\\x03\\x85")
        try:
            safe_loads(data)
        except UnsafePickleError as exc:
            print("REFUSED", exc)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": root})
    assert r.returncode == 0, r.stderr
    assert "REFUSED" in r.stdout and "needs a list of 1000 items, got a list of 5" in r.stdout


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x96"])   # BINBYTES8, BYTEARRAY8
def test_declared_length_past_the_end_is_refused_before_allocating(opcode):
    data = b"\x80\x05" + opcode + struct.pack("<Q", 2**40) + b"tiny."
    with pytest.raises(ValueError, match="truncated: it declares 1099511627776 more bytes but only 5 remain") as info:
        safe_loads(data)
    assert "MemoryError" not in str(info.value)


# -- the size bound: 64 x the file's size + 64 MiB ----------------------------------------------

def test_size_bound_rule():
    assert (SIZE_FACTOR, SIZE_SLACK) == (64, 64 * 2**20)
    assert size_bound(511) == 64 * 511 + 64 * 2**20
    assert size_bound(0) == 64 * 2**20


def _views_of_one_buffer(n_views, nbytes=2**18):
    """A pickle whose arrays all read the same (memoised) buffer: small file, many arrays."""
    shared = b"\x01" * nbytes
    return pickle.dumps([_Call(numeric._frombuffer, (shared, np.dtype("u1"), (nbytes,), "C"))
                         for _ in range(n_views)], protocol=4)


def test_a_small_file_cannot_build_more_than_the_bound():
    nbytes = 2**18
    below = _views_of_one_buffer(200, nbytes)                    # 50 MiB of arrays from a 256 KiB file
    assert 200 * nbytes < size_bound(len(below))
    assert len(safe_loads(below)) == 200
    above = _views_of_one_buffer(400, nbytes)                    # 100 MiB > 64 x 256 KiB + 64 MiB
    assert 400 * nbytes > size_bound(len(above))
    with pytest.raises(UnsafePickleError, match=r"would build 80\.\d MiB.*over the bound for its size "
                                                r"\(64 x \d+ bytes \+ 64\.0 MiB = 80\.\d MiB\)"):
        safe_loads(above)


def test_zero_width_dtype_counts_one_byte_per_element():
    state = (1, (10**12,), np.dtype("V0"), False, b"")
    with pytest.raises(UnsafePickleError, match="over the bound"):
        safe_loads(pickle.dumps(_Call(multiarray._reconstruct, (np.ndarray, (0,), b"b"), state), protocol=4))


def test_zero_size_array_with_a_huge_dimension_loads_without_allocating():
    # the unpickler builds it (it holds no byte); the dataset parser refuses it (tests/test_data_mmsa.py)
    arr = safe_loads(pickle.dumps(np.zeros((0, 10**12), dtype=np.float32), protocol=4))
    assert arr.shape == (0, 10**12) and arr.nbytes == 0


def test_python2_style_array_pickle_loads():
    # how Python 2's numpy wrote arrays (the MulT/CMU files): 8-bit strings (read as latin-1) for the
    # type code and the raw data, numpy.core module names
    want = np.array([1.0, -2.5, 3e38], dtype="<f4")
    raw = want.tobytes()
    data = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b\x87R"
            b"(K\x01K\x03\x85cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
            b"K\x00tb\x89U" + bytes([len(raw)]) + raw + b"tb.")
    assert pickle.loads(data, encoding="latin1").tobytes() == raw       # the stream is a valid numpy pickle
    got = safe_loads(data)
    assert got.dtype == np.float32 and got.tobytes() == raw
