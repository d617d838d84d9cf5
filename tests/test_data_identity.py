"""What a data file is (issue 22, item 3): MMSA's published file by its SHA-256, any other
MOSI-format file (loaded after the full format check, labelled as not MMSA's), or SYNTHETIC; and
``INFOENH_MOSI`` for chapter 7 and ``--data mosi``."""
import hashlib
import pickle

import pytest

from infoenh.data import checksums
from infoenh.data.identity import identify, load_labelled, mosi_path
from infoenh.data.paths import resolve
from infoenh.data.synthetic import make_synthetic

pytestmark = pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning")


def _file(path, synthetic=False):
    data = make_synthetic(seed=1, sizes=(8, 4, 4), text_dim=6, text_len=5, audio_len=6, vision_len=6)
    if not synthetic:
        data.pop("synthetic")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=4))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_named_like_mmsas_with_another_sum_loads_labelled(tmp_path):
    """Before: ChecksumError ('looks like the known file'), and the only way out was editing cells."""
    path = tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl"
    sha = _file(path)
    ds, ident = load_labelled(path)
    assert ident.kind == "other" and not ident.is_mmsa_mosi
    assert ident.label == f"MOSI-format file unaligned_50.pkl, sha256 {sha[:12]}, not MMSA's published file"
    assert ds.meta["identity"] == ident.label and ds.meta["checksum"] == "unknown" and len(ds["train"]) == 8


def test_the_published_sum_makes_it_mmsas_file_whatever_its_name(tmp_path, monkeypatch):
    path = tmp_path / "renamed.pkl"
    sha = _file(path)
    monkeypatch.setitem(checksums.KNOWN_SHA256, "MOSI/Processed/unaligned_50.pkl", sha)
    ds, ident = load_labelled(path)
    assert ident.kind == "mmsa" and ident.is_mmsa_mosi and ident.tag == ""
    assert ident.label == f"CMU-MOSI, MMSA's published MOSI/Processed/unaligned_50.pkl (sha256 {sha[:12]})"
    assert ds.meta["checksum"] == "verified"
    mosei = identify("x.pkl", checksums.KNOWN_SHA256["MOSEI/Processed/aligned_50.pkl"], False)
    assert mosei.kind == "mmsa" and not mosei.is_mmsa_mosi and mosei.tag == "CMU-MOSEI"


def test_synthetic_marker_wins(tmp_path):
    path = tmp_path / "t.pkl"
    _file(path, synthetic=True)
    _, ident = load_labelled(path)
    assert ident.kind == "synthetic" and ident.label.startswith("SYNTHETIC") and ident.tag == "SYNTHETIC"


def test_a_malformed_file_is_still_refused(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"train": {"text": [1, 2]}}, protocol=4))
    with pytest.raises(Exception, match="valid|test|split|missing"):
        load_labelled(path)


def test_infoenh_mosi_points_mosi_at_the_readers_file(tmp_path, monkeypatch):
    monkeypatch.setenv("INFOENH_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("INFOENH_MOSI", raising=False)
    assert mosi_path() == tmp_path / "data" / "MOSI" / "Processed" / "unaligned_50.pkl" == resolve("mosi")
    mine = tmp_path / "elsewhere" / "features_v3.pkl"
    sha = _file(mine)
    monkeypatch.setenv("INFOENH_MOSI", str(mine))
    assert mosi_path() == mine == resolve("mosi") and resolve("mosei") != mine
    from infoenh.train.runner import load_data

    ds, info = load_data("mosi")
    assert info["dataset"].startswith(f"MOSI-format file features_v3.pkl, sha256 {sha[:12]}, not MMSA's published")
    assert not info["synthetic"]


def test_missing_file_names_infoenh_mosi(tmp_path, monkeypatch):
    monkeypatch.setenv("INFOENH_MOSI", str(tmp_path / "nope.pkl"))
    with pytest.raises(FileNotFoundError, match="INFOENH_MOSI is set"):
        load_labelled(mosi_path())


def test_data_check_mosi_labels_a_readers_file_and_says_it_came_through_the_variable(tmp_path, monkeypatch, capsys):
    """Before: only 'checksum unknown file, not verified; sha256 ...', and no word of INFOENH_MOSI."""
    from infoenh.cli import main

    path = tmp_path / "mine.pkl"
    sha = _file(path)
    monkeypatch.setenv("INFOENH_MOSI", str(path))
    assert main(["data", "check", "mosi"]) == 0
    out = capsys.readouterr().out
    assert f"MOSI-format file mine.pkl, sha256 {sha[:12]}, not MMSA's published file" in out
    assert "'mosi' through INFOENH_MOSI" in out


def test_data_check_mosi_without_a_file_tells_a_command_line_user_what_to_do(tmp_path, monkeypatch, capsys):
    from infoenh.cli import main

    monkeypatch.delenv("INFOENH_MOSI", raising=False)
    monkeypatch.setenv("INFOENH_DATA", str(tmp_path))
    assert main(["data", "check", "mosi"]) != 0
    err = capsys.readouterr().err
    assert "set INFOENH_MOSI=FILE or pass the file's path" in err and "load_mmsa." not in err


def test_a_banner_names_a_file_in_the_working_folder_once(tmp_path, monkeypatch):
    """Before: 'SYNTHETIC testbed x.pkl (not MOSI) (x.pkl)'; a path with a folder is still shown."""
    from infoenh.train.runner import load_data

    _file(tmp_path / "x.pkl", synthetic=True)
    monkeypatch.chdir(tmp_path)
    assert load_data("x.pkl")[1]["dataset"] == "SYNTHETIC testbed x.pkl (not MOSI)"
    assert load_data(str(tmp_path / "x.pkl"))[1]["dataset"].endswith(f"(not MOSI) ({tmp_path / 'x.pkl'})")
