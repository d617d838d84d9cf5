"""load_mmsa on every layout: MMSA aligned/unaligned (MOSI and MOSEI widths), MulT, other text widths."""
import pickle
import warnings

import numpy as np
import pytest
import torch

from infoenh.data import InvalidDatasetError, from_dict, load_mmsa
from infoenh.data.synthetic import make_synthetic, to_mult_layout

SMALL = dict(sizes=(6, 3, 4), text_dim=16, seed=1)


def _write(tmp_path, data, name="data.pkl", protocol=4):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def _load(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_mmsa(path, **kw)


def _strip_marker(data):
    """The same file without the synthetic marker, i.e. as a real MMSA file would look."""
    return {k: v for k, v in data.items() if k != "synthetic"}


def _check_items(ds, dims, lens):
    for split in ("train", "valid", "test"):
        d = ds[split]
        item = d[len(d) - 1]
        assert set(item) == {"text", "audio", "vision", "text_mask", "audio_mask", "vision_mask", "label", "id", "index"}
        for m in ("text", "audio", "vision"):
            assert item[m].dtype == torch.float32 and tuple(item[m].shape) == (lens[m], dims[m])
            assert item[f"{m}_mask"].dtype == torch.bool and tuple(item[f"{m}_mask"].shape) == (lens[m],)
            assert bool(item[f"{m}_mask"].any())
            assert bool(torch.isfinite(item[m]).all())
        assert item["label"].dtype == torch.float32 and item["label"].dim() == 0
        assert isinstance(item["id"], str) and item["index"] == len(d) - 1


def test_mmsa_unaligned_mosi(tmp_path):
    data = make_synthetic(**SMALL)
    raw = {s: {k: np.array(v, copy=True) for k, v in data[s].items()} for s in ("train", "valid", "test")}
    ds = _load(_write(tmp_path, _strip_marker(data)))
    assert {s: len(ds[s]) for s in ds} == {"train": 6, "valid": 3, "test": 4}
    assert ds.dims == {"text": 16, "audio": 5, "vision": 20}
    assert ds.seq_lens == {"text": 50, "audio": 375, "vision": 500}
    assert not ds.synthetic and not ds.aligned and ds.meta["layout"] == "mmsa"
    _check_items(ds, ds.dims, ds.seq_lens)
    for s in ("train", "valid", "test"):
        d = ds[s]
        assert d.ids == raw[s]["id"].tolist()
        np.testing.assert_array_equal(d.labels, raw[s]["regression_labels"])
        # masks: unaligned audio/vision from the lengths, text from text_bert's attention row
        np.testing.assert_array_equal(d.masks["audio"].sum(1), raw[s]["audio_lengths"])
        np.testing.assert_array_equal(d.masks["vision"].sum(1), raw[s]["vision_lengths"])
        np.testing.assert_array_equal(d.masks["text"], raw[s]["text_bert"][:, 1].astype(bool))
        # float64 features become float32; -inf becomes 0 (MMSA), the rest is unchanged
        a = raw[s]["audio"]
        np.testing.assert_allclose(d.features["audio"], np.where(np.isfinite(a), a, 0).astype(np.float32))
    assert ds.meta["mask_rules"]["audio"].startswith("audio_lengths")
    assert ds.meta["mask_rules"]["text"] == "text_bert attention mask"


def test_mmsa_aligned_uses_text_mask_for_all(tmp_path):
    data = make_synthetic(aligned=True, **SMALL)
    ds = _load(_write(tmp_path, data))
    assert ds.synthetic and ds.aligned
    assert ds.seq_lens == {"text": 50, "audio": 50, "vision": 50}
    assert "audio_lengths" not in data["train"]
    _check_items(ds, ds.dims, ds.seq_lens)
    d = ds["train"]
    np.testing.assert_array_equal(d.masks["audio"], data["train"]["text_bert"][:, 1].astype(bool))
    np.testing.assert_array_equal(d.masks["vision"], d.masks["text"])
    assert ds.meta["mask_rules"]["vision"] == "text mask (aligned to words)"


def test_mosei_widths_from_the_file(tmp_path):
    data = make_synthetic(audio_dim=74, vision_dim=35, audio_len=500, vision_len=500, **SMALL)
    ds = _load(_write(tmp_path, _strip_marker(data)))
    assert ds.dims == {"text": 16, "audio": 74, "vision": 35}
    assert ds.seq_lens == {"text": 50, "audio": 500, "vision": 500}
    _check_items(ds, ds.dims, ds.seq_lens)


def test_384_dim_text_loads(tmp_path):
    data = make_synthetic(sizes=(3, 2, 2), text_dim=384, seed=2)
    ds = _load(_write(tmp_path, data))
    assert ds.dims["text"] == 384
    assert ds["test"][0]["text"].shape == (50, 384)


@pytest.mark.parametrize("aligned", [True, False])
def test_mult_layout(tmp_path, aligned):
    data = make_synthetic(aligned=aligned, **{**SMALL, "text_dim": 300})
    mult = to_mult_layout(_strip_marker(data))
    assert mult["train"]["labels"].shape == (6, 1, 1) and "regression_labels" not in mult["train"]
    ds = _load(_write(tmp_path, mult, protocol=2))
    assert ds.meta["layout"] == "mult" and ds.dims["text"] == 300 and not ds.synthetic
    _check_items(ds, ds.dims, ds.seq_lens)
    d, raw = ds["train"], data["train"]
    np.testing.assert_array_equal(d.labels, raw["regression_labels"])
    assert d.ids == raw["id"].tolist()
    # no text_bert: the text mask is the non-zero rows, which here equals the true mask
    np.testing.assert_array_equal(d.masks["text"], raw["text_bert"][:, 1].astype(bool))
    assert ds.meta["mask_rules"]["text"] == "non-zero rows of text"
    if aligned:
        np.testing.assert_array_equal(d.masks["audio"], d.masks["text"])
    else:
        np.testing.assert_array_equal(d.masks["audio"].sum(1), raw["audio_lengths"])
        assert ds.meta["mask_rules"]["vision"] == "non-zero rows of vision"


def test_mult_ids_as_rows_and_bytes(tmp_path):
    data = to_mult_layout(make_synthetic(**SMALL))
    for s in ("train", "valid", "test"):
        n = len(data[s]["labels"])
        data[s]["id"] = np.array([[b"vid%d" % i, b"%d" % i, b""] for i in range(n)])
    ds = _load(_write(tmp_path, data))
    assert ds["train"].ids[:2] == ["vid0$_$0", "vid1$_$1"]


def test_synthetic_marker_sets_flag(tmp_path):
    data = make_synthetic(**SMALL)
    ds = _load(_write(tmp_path, data))
    assert ds.synthetic and ds.synthetic_info["generator"] == "infoenh.data.synthetic"
    assert ds["train"].synthetic and "SYNTHETIC" in repr(ds)


@pytest.mark.parametrize("stray", [False, "yes", {"generator": "someone-else"}])
def test_stray_synthetic_key_does_not_relabel_a_real_file(tmp_path, stray):
    data = _strip_marker(make_synthetic(**SMALL))
    data["synthetic"] = stray
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_mmsa(_write(tmp_path, data))
    assert not ds.synthetic and "SYNTHETIC" not in repr(ds)


def test_from_dict_matches_load(tmp_path):
    data = make_synthetic(**SMALL)
    path = _write(tmp_path, data)
    a = _load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = from_dict(make_synthetic(**SMALL))
    for s in ("train", "valid", "test"):
        for m in ("text", "audio", "vision"):
            np.testing.assert_array_equal(a[s].features[m], b[s].features[m])


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mmsa(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl")
    msg = str(info.value)
    assert "github.com/thuiar/MMSA" in msg and "Google Drive" in msg and "Baidu" in msg
    assert "Processed/unaligned_50.pkl" in msg and "infoenh data synth" in msg


def test_dataset_names_resolve_under_infoenh_data(tmp_path, monkeypatch):
    monkeypatch.setenv("INFOENH_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="MOSEI/Processed/aligned_50.pkl"):
        load_mmsa("mosei_aligned")
    target = tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl"
    target.parent.mkdir(parents=True)
    target.write_bytes(pickle.dumps(make_synthetic(**SMALL)))
    assert len(_load("mosi")["valid"]) == 3


def test_directory_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="pass the pickle inside it"):
        load_mmsa(tmp_path)


def _small_raw():
    return make_synthetic(sizes=(4, 2, 2), text_dim=8, audio_neg_inf_frac=0.0, seed=5)


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["train"].pop("vision"), "split 'train' has no 'vision' features"),
    (lambda d: (d["valid"].pop("regression_labels")), "split 'valid' has no labels"),
    (lambda d: d["train"].__setitem__("audio", d["train"]["audio"][:3]), "different sample counts"),
    (lambda d: d["train"].__setitem__("audio", d["train"]["audio"].mean(1)), r"must be a numeric array \[N, L, d\]"),
    (lambda d: d["test"].__setitem__("regression_labels", np.zeros((2, 7))), "one sentiment score per sample"),
    (lambda d: d["test"].__setitem__("regression_labels", np.array([0.0, np.nan])), "NaN/inf labels"),
    (lambda d: d["train"].__setitem__("text_bert", d["train"]["text_bert"][:, :, :10]), r"text_bert must be \[N, 3, L_t\]"),
    (lambda d: d["train"]["text_bert"].__setitem__((0, 1, 0), 7), "attention mask.*0/1"),
    (lambda d: d["train"].__setitem__("audio_lengths", -d["train"]["audio_lengths"]), "non-negative integers"),
    (lambda d: d["train"].__setitem__("id", np.array(["a"])), "'id' must have 4 rows"),
])
def test_malformed_splits_give_clear_errors(mutate, match):
    data = _small_raw()
    mutate(data)
    with pytest.raises(InvalidDatasetError, match=match):
        from_dict(data)


def test_zero_lengths_and_long_lengths_are_fixed_and_reported():
    data = _small_raw()
    data["train"]["audio_lengths"][0] = 0
    data["train"]["vision_lengths"][1] = 10_000
    with pytest.warns(UserWarning, match="first step marked real|clipped"):
        ds = from_dict(data)
    notes = ds.meta["notes"]
    assert notes["empty_masks"] == {"train": {"audio": 1}}
    assert notes["clipped_lengths"] == {"train": {"vision_lengths": 1}}
    assert ds["train"].masks["audio"][0].tolist() == [True] + [False] * 374
    assert ds["train"].masks["vision"][1].all()


def test_missing_ids_are_generated_and_noted():
    data = _small_raw()
    for s in ("train", "valid", "test"):
        del data[s]["id"]
    ds = from_dict(data)
    assert ds["valid"].ids == ["valid_0", "valid_1"]
    assert ds.meta["notes"]["ids_generated"] == ["train", "valid", "test"]


def test_item_index_errors():
    ds = from_dict(_small_raw())
    with pytest.raises(IndexError, match="out of range for split 'valid'"):
        ds["valid"][2]
    assert ds["valid"][-1]["index"] == 1
    with pytest.raises(KeyError, match="no split 'dev'"):
        ds["dev"]
