"""load_mmsa on every layout: MMSA aligned/unaligned (MOSI and MOSEI widths), MulT, other text widths."""
import pickle
import warnings

import numpy as np
import pytest
import torch

from infoenh.data import InvalidDatasetError, from_dict, load_mmsa
from infoenh.data.safe_pickle import size_bound
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
        assert set(item) - {"text_bert"} == {"text", "audio", "vision", "text_mask", "audio_mask", "vision_mask",
                                             "label", "id", "index"}
        if "text_bert" in item:  # BERT token ids, kept when the file has them (MMSA layout)
            assert item["text_bert"].dtype == torch.int64 and tuple(item["text_bert"].shape) == (3, lens["text"])
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


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_every_pickle_protocol_loads_the_same_dataset(tmp_path, protocol):
    data = _strip_marker(make_synthetic(sizes=(3, 2, 2), text_dim=4, audio_neg_inf_frac=0.0, seed=2))
    for s in ("train", "valid", "test"):
        data[s]["id"] = np.array(list(data[s]["id"]), dtype=object)        # ids as an object array of str
        data[s]["vision"] = np.asfortranarray(data[s]["vision"])            # Fortran order survives too
    path = _write(tmp_path, data, protocol=protocol)
    first, second = _load(path), _load(path)
    for s in ("train", "valid", "test"):
        assert first[s].ids == second[s].ids == list(data[s]["id"])
        for m in ("text", "audio", "vision"):
            want = np.asarray(data[s][m], dtype=np.float32)
            assert first[s].features[m].tobytes() == second[s].features[m].tobytes() == want.tobytes()
        np.testing.assert_array_equal(first[s].labels, data[s]["regression_labels"])


def _with(key, value, split="train"):
    data = _small_raw()
    data[split][key] = value(data[split]) if callable(value) else value
    return data


@pytest.mark.parametrize("data, match", [
    (lambda: _with("audio", lambda d: d["audio"][:, :0]), r"split 'train' 'audio' has sequence length 0"),
    (lambda: _with("text", lambda d: d["text"][:, :0]), r"split 'train' 'text' has sequence length 0"),
    (lambda: _with("vision", np.zeros((4, 10**12, 0), dtype=np.float32)), r"'vision' has feature width 0"),
    (lambda: _with("text", lambda d: d["text"] + 1j), r"'text' has dtype complex\d+; features must be real"),
    (lambda: _with("audio", lambda d: d["audio"] > 0), r"'audio' has dtype bool; features must be real"),
    (lambda: _with("regression_labels", lambda d: d["regression_labels"] * (1 + 0j), "valid"),
     r"split 'valid' 'regression_labels' has dtype complex\d+; sentiment scores must be real"),
    (lambda: _with("audio_lengths", lambda d: d["audio_lengths"] + 0j),
     r"'audio_lengths' must hold 4 lengths \(integers\), got shape \(4,\) dtype complex128"),
    (lambda: _with("text_bert", lambda d: d["text_bert"] + 0j), r"'text_bert' has dtype complex128"),
])
def test_empty_complex_and_non_real_arrays_are_refused(data, match):
    with pytest.raises(InvalidDatasetError, match=match):
        from_dict(data())


def test_zero_size_array_with_a_huge_dimension_in_a_file_is_a_clear_error(tmp_path):
    # a few hundred bytes declare a [4, 10**12, 0] array: it holds nothing, and must not be expanded
    data = _with("audio", np.zeros((4, 10**12, 0), dtype=np.float64))
    path = _write(tmp_path, _strip_marker(data))
    with pytest.raises(InvalidDatasetError,
                       match=r"split 'train' 'audio' has feature width 0 \(shape \(4, 1000000000000, 0\)\)"):
        _load(path)


def test_lists_repeated_by_reference_cannot_expand_past_the_bound(tmp_path):
    # one row of 50 000 values, referenced 200 times: a ~200 KB file that would become 80 MB of values
    data = _strip_marker(make_synthetic(sizes=(4, 2, 2), text_dim=8, aligned=True, seed=5))
    row = [1] * 50_000
    data["train"]["text"] = [[row] * 50] * 4
    path = _write(tmp_path, data)
    assert 8 * 4 * 50 * 50_000 > size_bound(path.stat().st_size)
    with pytest.raises(InvalidDatasetError, match=r"'train/text' is stored as lists holding 10000000 values"):
        _load(path)


def test_a_list_that_contains_itself_is_refused(tmp_path):
    data = _strip_marker(_small_raw())
    loop = []
    loop.append(loop)
    data["test"]["regression_labels"] = loop
    with pytest.raises(InvalidDatasetError, match="'test/regression_labels' cannot be read as an array "
                                                  r"\(a list contains itself\)"):
        _load(_write(tmp_path, data))
