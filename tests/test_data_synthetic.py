"""The SYNTHETIC testbed: MOSI's label distribution, shapes/layout, and that every knob does what it says."""
import pickle

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score

from infoenh.data import load_mmsa
from infoenh.data.check import label_stats
from infoenh.data.mosi_labels import MOSI_ACC7_BINS, MOSI_SIGN_COUNTS, MOSI_SPLIT_SIZES, allocate, sample_mosi_labels
from infoenh.data import synthetic
from infoenh.data.synthetic import (estimated_bytes, make_synthetic, make_synthetic_splits, split_sizes,
                                     write_synthetic)

MOSI_STATS = {"train": (0.234, 1.509), "valid": (0.310, 1.649), "test": (-0.317, 1.588)}


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_full_size_labels_reproduce_mosi(split):
    y = sample_mosi_labels(MOSI_SPLIT_SIZES[split], split, np.random.default_rng(0))
    st = label_stats(y)
    assert st["n"] == MOSI_SPLIT_SIZES[split]
    assert tuple(st["acc7_bins"]) == MOSI_ACC7_BINS[split]
    assert (st["pos"], st["neg"], st["zero"]) == MOSI_SIGN_COUNTS[split]
    mean, std = MOSI_STATS[split]
    assert abs(st["mean"] - mean) < 0.1 and abs(st["std"] - std) < 0.1
    assert st["min"] >= -3 and st["max"] <= 3
    halves = np.isin(y, [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    assert halves.sum() == round(MOSI_SPLIT_SIZES[split] * 52 / 2199)
    # the half points are where round-half-to-even matters: the bins above hold under numpy's rule
    away = np.sign(y) * np.floor(np.abs(y) + 0.5)
    assert (away != np.round(y))[halves].any()


def test_allocate_is_exact_and_proportional():
    assert allocate(10, [1, 1, 2]).sum() == 10 and allocate(10, [1, 1, 2])[2] == 5
    assert allocate(1284, MOSI_ACC7_BINS["train"]).tolist() == list(MOSI_ACC7_BINS["train"])
    assert allocate(7, [5, 0, 5]).tolist() in ([4, 0, 3], [3, 0, 4])


def test_shapes_unaligned_and_layout():
    d = make_synthetic(sizes=(5, 2, 3), text_dim=12, seed=0)
    tr = d["train"]
    assert tr["text"].shape == (5, 50, 12) and tr["text"].dtype == np.float32
    assert tr["audio"].shape == (5, 375, 5) and tr["audio"].dtype == np.float64
    assert tr["vision"].shape == (5, 500, 20)
    assert tr["text_bert"].shape == (5, 3, 50)
    assert tr["audio_lengths"].shape == (5,) and (tr["audio_lengths"] <= 375).all()
    assert set(tr) >= {"id", "raw_text", "regression_labels", "classification_labels", "annotations"}
    assert all("$_$" in i and i.startswith("synthvid") for i in tr["id"])
    assert all("SYNTHETIC" in t for t in tr["raw_text"])
    assert (tr["text_bert"][:, 0, 0] == 101).all()
    # padding of unaligned audio is zero beyond the length; text is not (BERT-like)
    n_real = tr["audio_lengths"][0]
    assert (tr["audio"][0, n_real:] == 0).all() and (tr["text"][0, -1] != 0).any()
    mk = d["synthetic"]
    assert mk["generator"] == "infoenh.data.synthetic" and mk["seed"] == 0 and mk["knobs"]["sizes"]["valid"] == 2
    assert len({i for s in ("train", "valid", "test") for i in d[s]["id"]}) == 10


def test_shapes_aligned():
    d = make_synthetic(sizes=(4, 2, 2), text_dim=8, aligned=True)
    assert d["test"]["audio"].shape == (2, 50, 5) and d["test"]["vision"].shape == (2, 50, 20)
    assert "audio_lengths" not in d["test"] and d["synthetic"]["aligned"]


def test_sizes_and_scale():
    assert split_sizes() == {"train": 1284, "valid": 229, "test": 686}
    assert split_sizes(scale=0.1) == {"train": 128, "valid": 23, "test": 69}
    assert split_sizes({"train": 3, "valid": 1, "test": 2}) == {"train": 3, "valid": 1, "test": 2}
    with pytest.raises(ValueError, match="3 integers"):
        split_sizes([1, 2])
    with pytest.raises(ValueError, match=r"sizes\['valid'\] must be an integer >= 1"):
        split_sizes([1, 0, 2])


def test_deterministic_by_seed():
    kw = dict(sizes=(6, 2, 3), text_dim=8)
    a, b, c = make_synthetic(seed=11, **kw), make_synthetic(seed=11, **kw), make_synthetic(seed=12, **kw)
    assert pickle.dumps(a) == pickle.dumps(b)
    assert not np.array_equal(a["train"]["text"], c["train"]["text"])
    # modality parameters depend on the seed only, not on the sizes
    d = make_synthetic(seed=11, sizes=(9, 2, 3), text_dim=8)
    for m in ("text", "audio", "vision"):
        np.testing.assert_array_equal(a["synthetic"]["directions"][m], d["synthetic"]["directions"][m])
        np.testing.assert_array_equal(a["synthetic"]["signal"]["train"][m]["dims"], d["synthetic"]["signal"]["train"][m]["dims"])


@pytest.fixture(scope="module")
def probe_data():
    return make_synthetic(sizes=(400, 2, 2), text_dim=32, seed=3, conflict_frac=0.2)


def _views(d, m, split="train"):
    """Mean over the planted steps on the planted dims, on the other dims, and mean over the other real steps."""
    part, mk = d[split], d["synthetic"]["signal"][split][m]
    x = np.nan_to_num(part[m].astype(np.float64), neginf=0.0)
    n = x.shape[0]
    steps, dims = mk["steps"], mk["dims"]
    other = np.setdiff1d(np.arange(x.shape[2]), dims)
    rows = np.arange(n)[:, None, None]
    sig = x[rows, steps[:, :, None], dims[None, None, :]].mean(1)
    off_dims = x[rows, steps[:, :, None], other[None, None, :]].mean(1)
    real = part["text_bert"][:, 1].astype(bool) if m == "text" else \
        np.arange(x.shape[1])[None, :] < part[f"{m}_lengths"][:, None]
    real = real.copy()
    real[np.arange(n)[:, None], steps] = False
    off_steps = (x[:, :, dims] * real[:, :, None]).sum(1) / real.sum(1)[:, None]
    return sig, off_dims, off_steps


def _r2(X, y):
    return cross_val_score(Ridge(alpha=1.0), X, y, cv=5, scoring="r2").mean()


@pytest.mark.parametrize("m", ["text", "audio", "vision"])
def test_probe_finds_planted_signal_not_distractors(probe_data, m):
    y = probe_data["train"]["regression_labels"]
    keep = ~probe_data["synthetic"]["conflict"]["train"].get(m, np.zeros(len(y), bool))
    sig, off_dims, off_steps = _views(probe_data, m)
    assert _r2(sig[keep], y[keep]) > 0.3
    assert _r2(off_dims[keep], y[keep]) < 0.05
    assert _r2(off_steps[keep], y[keep]) < 0.05


def test_text_is_the_most_informative(probe_data):
    y = probe_data["train"]["regression_labels"]
    r2 = {}
    for m in ("text", "audio", "vision"):
        keep = ~probe_data["synthetic"]["conflict"]["train"].get(m, np.zeros(len(y), bool))
        r2[m] = _r2(_views(probe_data, m)[0][keep], y[keep])
    assert r2["text"] > r2["audio"] > r2["vision"]


def test_signal_steps_are_real_word_positions(probe_data):
    tr, mk = probe_data["train"], probe_data["synthetic"]["signal"]["train"]
    n_tok = tr["text_bert"][:, 1].sum(1)
    assert (mk["text"]["steps"] >= 1).all() and (mk["text"]["steps"] <= (n_tok - 2)[:, None]).all()
    assert (mk["audio"]["steps"] < tr["audio_lengths"][:, None]).all()
    assert mk["text"]["steps"].shape == (400, 3) and len(mk["vision"]["dims"]) == 3


def test_conflict_flips_the_cue_on_the_right_fraction():
    d = make_synthetic(sizes=(500, 2, 2), text_dim=8, seed=5, conflict_frac=0.3, heterogeneity=0.0,
                       noise={"audio": 0.0, "vision": 0.0}, audio_neg_inf_frac=0.0, signal_strength=3.0)
    y = d["train"]["regression_labels"]
    conf = d["synthetic"]["conflict"]["train"]
    assert conf["audio"].sum() + conf["vision"].sum() == 150 and not (conf["audio"] & conf["vision"]).any()
    strong = np.abs(y) > 1.0
    for m in ("audio", "vision"):
        sig = _views(d, m)[0]
        model = Ridge(alpha=1.0).fit(sig[~conf[m]], y[~conf[m]])
        pred = model.predict(sig)
        flipped = (pred * y < 0) & strong
        # the flipped clips are exactly the conflict clips of this modality (among clear labels)
        assert (flipped == (conf[m] & strong)).mean() > 0.95
        assert np.corrcoef(pred[conf[m]], y[conf[m]])[0, 1] < -0.8


def test_heterogeneity_changes_spaces():
    kw = dict(sizes=(30, 2, 2), text_dim=8, seed=2, audio_neg_inf_frac=0.0)
    flat, het = make_synthetic(heterogeneity=0.0, **kw), make_synthetic(heterogeneity=1.0, **kw)
    real = {}
    for m, lo, hi in (("audio", 2.0, 4.0), ("vision", 0.25, 0.5)):
        lens = flat["train"][f"{m}_lengths"]
        real[m] = np.arange(flat["train"][m].shape[1])[None, :] < lens[:, None]
        s0, s1 = flat["train"][m][real[m]].std(0).mean(), het["train"][m][real[m]].std(0).mean()
        assert lo < s1 / s0 < hi, m
    assert abs(flat["train"]["audio"][real["audio"]].mean()) < 0.1
    assert np.abs(het["train"]["vision"][real["vision"]].mean(0)).mean() > 0.5  # per-dimension offsets


def test_audio_neg_inf_fraction():
    d = make_synthetic(sizes=(40, 2, 2), text_dim=8, audio_neg_inf_frac=0.01, seed=1)
    a = d["train"]["audio"]
    real = np.arange(375)[None, :] < d["train"]["audio_lengths"][:, None]
    frac = np.isneginf(a[real]).mean()
    assert 0.005 < frac < 0.015 and not np.isneginf(a[~real]).any()
    assert np.isfinite(d["train"]["vision"]).all() and np.isfinite(d["train"]["text"]).all()
    assert not np.isneginf(make_synthetic(sizes=(5, 2, 2), text_dim=8, audio_neg_inf_frac=0.0)["train"]["audio"]).any()


@pytest.mark.parametrize("kw, match", [
    (dict(conflict_frac=1.5), "conflict_frac must be a number in"),
    (dict(noise={"smell": 1.0}), "unknown modality"),
    (dict(noise={"audio": -1.0}), r"noise\['audio'\]"),
    (dict(signal_steps=0), "signal_steps must be an integer"),
    (dict(text_len=4, signal_steps=3), "text_len=4 leaves no room"),
    (dict(aligned=True, audio_len=60), "aligned data need equal lengths"),
    (dict(seed=-1), "seed must be"),
    (dict(text_dim=0), "text_dim must be"),
])
def test_knob_validation(kw, match):
    with pytest.raises((ValueError, KeyError), match=match):
        make_synthetic(sizes=(3, 2, 2), **kw)


def test_signal_dims_capped_by_width():
    d = make_synthetic(sizes=(3, 2, 2), text_dim=8, audio_dim=2, signal_dims=4)
    assert len(d["synthetic"]["signal"]["train"]["audio"]["dims"]) == 2
    assert len(d["synthetic"]["signal"]["train"]["text"]["dims"]) == 4


def test_write_and_in_memory_are_labelled_synthetic(tmp_path):
    path = write_synthetic(tmp_path / "t.pkl", sizes=(4, 2, 2), text_dim=8)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_synthetic(path, overwrite=False, sizes=(4, 2, 2), text_dim=8)
    with pytest.warns(UserWarning, match="neginf"):
        ds = load_mmsa(path)
    assert ds.synthetic and ds.synthetic_info["knobs"]["dims"]["text"] == 8
    with pytest.warns(UserWarning, match="neginf"):
        mem = make_synthetic_splits(sizes=(4, 2, 2), text_dim=8)
    assert mem.synthetic and mem.meta["checksum"] == "skipped"
    np.testing.assert_array_equal(ds["train"].features["audio"], mem["train"].features["audio"])
    assert not list(tmp_path.glob("*.tmp"))


def test_estimated_bytes_is_the_size_of_the_arrays():
    d = make_synthetic(sizes=(3, 2, 2), text_dim=8)
    real = sum(d[s][k].nbytes for s in ("train", "valid", "test") for k in ("text", "audio", "vision", "text_bert"))
    knobs = d["synthetic"]["knobs"]
    assert estimated_bytes(knobs["sizes"], knobs["lens"], knobs["dims"]) == real


@pytest.mark.parametrize("kw, match", [
    (dict(scale=1e9), r"would hold about [\d,.]+ TiB of arrays .*over the 16.0 GiB bound; use a smaller scale"),
    (dict(sizes=(3, 2, 2), text_dim=10**12), r"would hold about [\d,.]+ TiB .*'text': 1000000000000"),
    (dict(sizes=(3, 2, 2), vision_len=10**11), r"would hold about [\d,.]+ TiB .*'vision': 100000000000"),
])
def test_oversized_testbeds_are_refused_before_allocating(kw, match):
    # sizes so absurd that, without the check, numpy's first allocation fails at once (no machine
    # gets filled); the exact 16 GiB threshold is tested with a lowered bound below
    with pytest.raises(ValueError, match=match):
        make_synthetic(**kw)


def test_size_bound_is_exact(monkeypatch):
    kw = dict(sizes=(3, 2, 2), text_dim=8)
    need = estimated_bytes({"train": 3, "valid": 2, "test": 2}, {"text": 50, "audio": 375, "vision": 500},
                           {"text": 8, "audio": 5, "vision": 20})
    monkeypatch.setattr(synthetic, "MAX_BYTES", need)
    make_synthetic(**kw)
    monkeypatch.setattr(synthetic, "MAX_BYTES", need - 1)
    with pytest.raises(ValueError, match=r"would hold about 668\.\d KiB of arrays .* over the 668\.\d KiB bound"):
        make_synthetic(**kw)


@pytest.mark.parametrize("kw, match", [
    (dict(scale=float("nan")), "scale must be a positive number, got nan"),
    (dict(scale=0.0), "scale must be a positive number, got 0.0"),
    (dict(scale="big"), "scale must be a positive number, got 'big'"),
    (dict(sizes=(3, -2, 2)), r"sizes\['valid'\] must be an integer >= 1, got -2"),
    (dict(sizes=(3, 2, 2), signal_strength=float("nan")), "signal_strength must be a finite number >= 0, got nan"),
    (dict(sizes=(3, 2, 2), signal_strength="1"), "signal_strength must be a finite number >= 0, got '1'"),
    (dict(sizes=(3, 2, 2), noise={"text": float("nan")}), r"noise\['text'\] must be a finite number >= 0, got nan"),
    (dict(sizes=(3, 2, 2), noise={"audio": "loud"}), r"noise\['audio'\] must be a finite number >= 0, got 'loud'"),
    (dict(sizes=(3, 2, 2), heterogeneity=float("nan")), r"heterogeneity must be a number in \[0, 1\], got nan"),
])
def test_bad_sizes_and_nan_knobs_are_one_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic(**kw)
