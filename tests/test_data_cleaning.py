"""The NaN/inf policy: MMSA's zeroing (counted, warned) or a refusal that names split/modality/counts."""
import numpy as np
import pytest

from infoenh.data import DataCleaningWarning, NonFiniteError, from_dict
from infoenh.data.cleaning import CleaningReport, clean_modalities, count_nonfinite
from infoenh.data.synthetic import make_synthetic


def _data():
    d = make_synthetic(sizes=(4, 2, 3), text_dim=8, audio_neg_inf_frac=0.0, seed=7)
    d["train"]["audio"][0, 0, :3] = -np.inf          # 3 -inf in train/audio (COVAREP-like)
    d["train"]["vision"][1, 2, 0] = np.nan           # 1 NaN in train/vision
    d["test"]["text"][2, 5, 1] = np.inf              # 1 +inf in test/text
    d["test"]["text"][2, 5, 2] = np.nan              # 1 NaN in test/text
    return d


def test_zero_policy_replaces_counts_and_warns():
    with pytest.warns(DataCleaningWarning, match="6 non-finite values replaced by 0") as rec:
        ds = from_dict(_data())
    msg = str(rec[0].message)
    assert "train/audio: 3 neginf" in msg and "train/vision: 1 nan" in msg and "test/text: 1 nan, 1 posinf" in msg
    c = ds.report.counts
    assert c["train"]["audio"] == {"nan": 0, "posinf": 0, "neginf": 3}
    assert c["train"]["vision"] == {"nan": 1, "posinf": 0, "neginf": 0}
    assert c["test"]["text"] == {"nan": 1, "posinf": 1, "neginf": 0}
    assert c["valid"]["audio"] == {"nan": 0, "posinf": 0, "neginf": 0}
    assert ds.report.total == 6 and ds.report.policy == "zero"
    assert set(ds.report.nonzero()) == {"train", "test"}
    assert ds["train"].features["audio"][0, 0, :3].tolist() == [0.0, 0.0, 0.0]
    assert ds["test"].features["text"][2, 5, 1] == 0 and ds["test"].features["text"][2, 5, 2] == 0
    for s in ds:
        for m, x in ds[s].features.items():
            assert np.isfinite(x).all(), (s, m)


def test_error_policy_names_split_modality_and_counts():
    with pytest.raises(NonFiniteError) as info:
        from_dict(_data(), inf_policy="error")
    msg = str(info.value)
    assert "train/audio: 3 neginf" in msg and "train/vision: 1 nan" in msg and "test/text: 1 nan, 1 posinf" in msg
    assert "inf_policy='zero'" in msg


def test_clean_data_gives_no_warning(recwarn):
    ds = from_dict(make_synthetic(sizes=(3, 2, 2), text_dim=8, audio_neg_inf_frac=0.0))
    assert ds.report.total == 0 and "no NaN/inf" in str(ds.report)
    assert not [w for w in recwarn if issubclass(w.category, DataCleaningWarning)]
    from_dict(make_synthetic(sizes=(3, 2, 2), text_dim=8, audio_neg_inf_frac=0.0), inf_policy="error")


def test_unknown_policy():
    with pytest.raises(ValueError, match="inf_policy must be one of"):
        from_dict(_data(), inf_policy="drop")


def test_float64_beyond_float32_counts_as_inf(recwarn):
    d = make_synthetic(sizes=(3, 2, 2), text_dim=8, audio_neg_inf_frac=0.0)
    d["valid"]["vision"][0, 0, 0] = 1e39  # finite in float64, inf in float32
    ds = from_dict(d)
    assert ds.report.counts["valid"]["vision"]["posinf"] == 1 and ds["valid"].features["vision"][0, 0, 0] == 0
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_clean_modalities_in_place():
    arrays = {"train": {"audio": np.array([[[-np.inf, 1.0]]], dtype=np.float32)}}
    report = clean_modalities(arrays, "zero", warn=False)
    assert report.counts["train"]["audio"]["neginf"] == 1 and arrays["train"]["audio"].tolist() == [[[0.0, 1.0]]]


def test_count_nonfinite_in_blocks():
    x = np.zeros((600, 2, 2), dtype=np.float32)
    x[0, 0, 0], x[300, 1, 1], x[599, 0, 1] = np.nan, np.inf, -np.inf
    assert count_nonfinite(x) == {"nan": 1, "posinf": 1, "neginf": 1}


def test_report_str():
    r = CleaningReport("zero", {"train": {"audio": {"nan": 0, "posinf": 0, "neginf": 2}}})
    assert str(r) == "2 non-finite values replaced by 0 (policy 'zero'): train/audio: 2 neginf"
