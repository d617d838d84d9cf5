"""The restricted unpickler: plain data and numpy load, code never runs, broken files fail clearly."""
import builtins
import os
import pickle
import re

import numpy as np
import pytest

from infoenh.data import load_mmsa
from infoenh.data.safe_pickle import UnsafePickleError, safe_load, safe_loads


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


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_and_containers_round_trip(protocol):
    obj = {
        "train": {"x": np.arange(12, dtype=np.float32).reshape(2, 3, 2), "id": np.array(["a$_$1", "b$_$2"]),
                  "o": np.array(["x", 1.5], dtype=object), "f64": np.linspace(0, 1, 5)},
        "scalars": [np.float64(1.5), np.int64(3), np.bool_(True), 2.5, None, True],
        "set": {1, 2}, "frozen": frozenset({3}), "bytes": b"\x00\xff", "tuple": (1, "a"),
        "dtype": np.dtype("<U16"),
    }
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
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
