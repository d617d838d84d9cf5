"""SHA-256 checks: a given sum, the table of known sums (patched: it ships empty), unknown files."""
import hashlib
import pickle
import warnings

import pytest

from infoenh.data import ChecksumError, UnknownChecksumWarning, load_mmsa
from infoenh.data import checksums
from infoenh.data.synthetic import make_synthetic


@pytest.fixture
def real_looking_file(tmp_path):
    """A small MMSA-layout file without the synthetic marker, at MMSA's usual place."""
    data = {k: v for k, v in make_synthetic(sizes=(3, 2, 2), text_dim=8, audio_neg_inf_frac=0.0).items()
            if k != "synthetic"}
    path = tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def _sum(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_table_holds_the_sums_mmsa_publishes():
    assert set(checksums.KNOWN_SHA256) == {f"{d}/Processed/{f}_50.pkl" for d in ("MOSI", "MOSEI")
                                            for f in ("aligned", "unaligned")}
    for key, value in checksums.KNOWN_SHA256.items():
        assert checksums.normalize_sha256(value, key) == value
    assert len(set(checksums.KNOWN_SHA256.values())) == 4


def test_sha256_file(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc" * 1000)
    assert checksums.sha256_file(p, chunk_size=7) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_given_sum_matches(real_looking_file, recwarn):
    ds = load_mmsa(real_looking_file, sha256=_sum(real_looking_file).upper())
    assert ds.meta["checksum"] == "verified" and ds.meta["known_as"] == "given"
    assert not [w for w in recwarn if issubclass(w.category, UnknownChecksumWarning)]


def test_given_sum_mismatch(real_looking_file):
    with pytest.raises(ChecksumError, match="expected 0{64}"):
        load_mmsa(real_looking_file, sha256="0" * 64)


def test_malformed_sum(real_looking_file):
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        load_mmsa(real_looking_file, sha256="abc")
    with pytest.raises(ValueError, match="verify=False"):
        load_mmsa(real_looking_file, sha256="0" * 64, verify=False)


def test_known_table_match(real_looking_file, monkeypatch):
    monkeypatch.setitem(checksums.KNOWN_SHA256, "MOSI/Processed/unaligned_50.pkl", _sum(real_looking_file))
    ds = load_mmsa(real_looking_file)
    assert ds.meta["checksum"] == "verified" and ds.meta["known_as"] == "MOSI/Processed/unaligned_50.pkl"


def test_known_table_match_by_sum_under_another_name(real_looking_file, tmp_path, monkeypatch):
    other = tmp_path / "my_copy.pkl"
    other.write_bytes(real_looking_file.read_bytes())
    monkeypatch.setitem(checksums.KNOWN_SHA256, "MOSI/Processed/unaligned_50.pkl", _sum(real_looking_file))
    assert load_mmsa(other).meta["checksum"] == "verified"


def test_known_name_with_wrong_sum(real_looking_file, monkeypatch):
    monkeypatch.setitem(checksums.KNOWN_SHA256, "MOSI/Processed/unaligned_50.pkl", "a" * 64)
    with pytest.raises(ChecksumError, match="looks like the known file 'MOSI/Processed/unaligned_50.pkl'"):
        load_mmsa(real_looking_file)


def test_real_file_at_a_published_path_must_have_the_published_sum(real_looking_file):
    # the shipped table knows MOSI/Processed/unaligned_50.pkl: another file there is refused
    with pytest.raises(ChecksumError, match="verify=False"):
        load_mmsa(real_looking_file)


def test_synthetic_file_at_a_published_path_is_not_refused(tmp_path):
    path = tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(make_synthetic(sizes=(3, 2, 2), text_dim=8, audio_neg_inf_frac=0.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_mmsa(path).synthetic


def test_unknown_file_warns_with_name_and_sum(real_looking_file):
    unknown = real_looking_file.parent / "my_copy.pkl"
    real_looking_file.rename(unknown)
    real_looking_file = unknown
    with pytest.warns(UnknownChecksumWarning) as rec:
        ds = load_mmsa(real_looking_file)
    msg = str(rec[0].message)
    assert str(real_looking_file) in msg and _sum(real_looking_file) in msg
    assert ds.meta["checksum"] == "unknown" and ds.meta["sha256"] == _sum(real_looking_file)


def test_synthetic_file_is_not_warned_about(tmp_path):
    path = tmp_path / "synth.pkl"
    path.write_bytes(pickle.dumps(make_synthetic(sizes=(3, 2, 2), text_dim=8, audio_neg_inf_frac=0.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_mmsa(path)
    assert ds.meta["checksum"] == "unknown" and ds.synthetic


def test_verify_false_skips(real_looking_file, recwarn):
    ds = load_mmsa(real_looking_file, verify=False)
    assert ds.meta["checksum"] == "skipped" and ds.meta["sha256"] is None
    assert not [w for w in recwarn if issubclass(w.category, UnknownChecksumWarning)]


def test_lookup_prefers_longest_suffix(tmp_path):
    table = {"unaligned_50.pkl": "a" * 64, "MOSEI/Processed/unaligned_50.pkl": "b" * 64}
    assert checksums.lookup(tmp_path / "MOSEI/Processed/unaligned_50.pkl", table) == "MOSEI/Processed/unaligned_50.pkl"
    assert checksums.lookup(tmp_path / "x/unaligned_50.pkl", table) == "unaligned_50.pkl"
    assert checksums.lookup(tmp_path / "x/aligned_50.pkl", table) is None
