"""A SYNTHETIC, MOSI-shaped testbed whose ground truth is known, written in MMSA's pickle layout.

:func:`make_synthetic` returns a dict laid out exactly like an MMSA ``aligned_50.pkl`` /
``unaligned_50.pkl`` (so the real loader reads it), plus a top-level ``"synthetic"`` marker that
makes every dataset loaded from it report ``ds.synthetic == True``. Labels follow MOSI's per-split
distribution (:mod:`infoenh.data.mosi_labels`). Nothing in it comes from CMU-MOSI.

How a clip with label ``y`` is made, per modality ``m`` (text [L_t, 768], audio [L_a, 5],
vision [L_v, 20] by default):

1. background: N(0, 1) distractor values at every real step (text also at padded steps, like BERT
   outputs; audio/vision padding is 0 as in MMSA);
2. cue: ``q = s * y + noise[m] * eps`` with ``eps ~ N(0, 1)`` per clip and ``s = -1`` when the clip
   is a *conflict* sample for ``m`` (else ``+1``);
3. **redundancy**: ``signal_strength * q * u_m`` is added only at ``signal_steps`` real steps of
   the clip (random per clip; for text, word positions between [CLS] and [SEP]) and only on
   ``min(signal_dims, d_m)`` feature dimensions of ``m`` (fixed per modality); ``u_m`` is a random
   unit direction in those dimensions. Every other step and dimension is a distractor;
4. **heterogeneity** ``h`` in [0, 1]: the planted vector goes through a modality-specific
   nonlinearity (text none, audio ``tanh``, vision signed square), blended as
   ``(1 - h) v + h f_m(v)``, and the whole modality is scaled by ``3**(h * c_m)``
   (``c`` = 0, 1, -1 for text, audio, vision) and shifted by ``h`` times a random per-dimension
   offset, so the three modalities live in different spaces;
5. **conflict**: a fraction ``conflict_frac`` of the clips of each split has one non-text modality
   (audio or vision, at random) carrying the opposite cue;
6. **noise** (dict, per modality; default text 0.5, audio 1.0, vision 1.5): text is the most
   informative modality, as on MOSI;
7. ``audio_neg_inf_frac`` of the real audio values are set to ``-inf``, as COVAREP does, to exercise
   the cleaning policy (``infoenh.data.cleaning``).

Where the signal was planted is stored in the marker: ``marker["signal"][split][m]["steps"]``
(int [N, signal_steps]) and ``["dims"]`` (int [k_m]), ``marker["directions"][m]`` (``u_m``) and
``marker["conflict"][split][m]`` (bool [N]). Same ``seed`` and knobs give the same bytes; the
modality parameters (dims, directions, offsets) depend only on ``seed``, not on the split sizes.

Sizes: MOSI's 1284/229/686 by default, ``scale`` multiplies them, ``sizes`` (3 ints or a dict) sets
them. Aligned: all three 50 steps (audio/vision padded like the text); unaligned: audio 375, vision
500 steps with ``audio_lengths``/``vision_lengths``. Full size unaligned is ~340 MB of text
features: use small ``sizes`` in tests. Sizes are checked before anything is generated: a request
whose arrays would exceed :data:`MAX_BYTES` (16 GiB, see :func:`estimated_bytes`) is refused with a
``ValueError`` that says how big it would be; so are sizes below 1 and knobs that are NaN, infinite
or not numbers.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from .._validate import check_positive_int
from .formats import MODALITIES, SPLITS, SYNTHETIC_GENERATOR as GENERATOR
from .mosi_labels import MOSI_HALF_FRAC, MOSI_SPLIT_SIZES, sample_mosi_labels

VERSION = 1
MAX_BYTES = 16 * 2**30  # the largest testbed (bytes of arrays, see estimated_bytes) make_synthetic builds
DEFAULT_NOISE = {"text": 0.5, "audio": 1.0, "vision": 1.5}
_SCALE_EXP = {"text": 0.0, "audio": 1.0, "vision": -1.0}
_N_VIDEOS = {"train": 52, "valid": 10, "test": 31}

PathLike = Union[str, "os.PathLike[str]"]


def make_synthetic(*, seed: int = 0, aligned: bool = False, sizes: Optional[Union[Sequence[int], Mapping[str, int]]] = None,
                   scale: float = 1.0, text_dim: int = 768, audio_dim: int = 5, vision_dim: int = 20,
                   text_len: int = 50, audio_len: Optional[int] = None, vision_len: Optional[int] = None,
                   signal_steps: int = 3, signal_dims: int = 3, signal_strength: float = 1.0,
                   conflict_frac: float = 0.1, heterogeneity: float = 0.5,
                   noise: Optional[Mapping[str, float]] = None, audio_neg_inf_frac: float = 1e-3,
                   half_frac: float = MOSI_HALF_FRAC) -> Dict[str, Any]:
    """Build the SYNTHETIC testbed dict (MMSA layout + ``"synthetic"`` marker); knobs in the module docstring."""
    n_split = split_sizes(sizes, scale)
    lens = {"text": text_len,
            "audio": audio_len if audio_len is not None else (text_len if aligned else 375),
            "vision": vision_len if vision_len is not None else (text_len if aligned else 500)}
    dims = {"text": text_dim, "audio": audio_dim, "vision": vision_dim}
    for m in MODALITIES:
        _check_int(dims[m], f"{m}_dim")
        _check_int(lens[m], f"{m}_len")
    if aligned and not lens["text"] == lens["audio"] == lens["vision"]:
        raise ValueError(f"aligned data need equal lengths for all modalities, got {lens}")
    _check_int(signal_steps, "signal_steps")
    _check_int(signal_dims, "signal_dims")
    if lens["text"] < signal_steps + 2:
        raise ValueError(f"text_len={lens['text']} leaves no room for signal_steps={signal_steps} "
                         "words between [CLS] and [SEP]; need text_len >= signal_steps + 2")
    for m in ("audio", "vision"):
        if lens[m] < signal_steps:
            raise ValueError(f"{m}_len={lens[m]} is shorter than signal_steps={signal_steps}")
    _check_frac(conflict_frac, "conflict_frac")
    _check_frac(heterogeneity, "heterogeneity")
    _check_frac(audio_neg_inf_frac, "audio_neg_inf_frac")
    _check_frac(half_frac, "half_frac")
    noise = _noise(noise)
    _check_nonneg(signal_strength, "signal_strength")
    _check_size(n_split, lens, dims)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

    params = _modality_params(seed, dims, signal_dims, heterogeneity)
    knobs = dict(aligned=bool(aligned), sizes=dict(n_split), dims=dims, lens=lens, signal_steps=signal_steps,
                 signal_dims=signal_dims, signal_strength=float(signal_strength),
                 conflict_frac=float(conflict_frac), heterogeneity=float(heterogeneity), noise=noise,
                 audio_neg_inf_frac=float(audio_neg_inf_frac), half_frac=float(half_frac))
    marker: Dict[str, Any] = {
        "generator": GENERATOR, "version": VERSION, "seed": int(seed), "aligned": bool(aligned),
        "knobs": knobs, "note": "SYNTHETIC data: not CMU-MOSI; labels follow MOSI's distribution only",
        "directions": {m: params[m]["u"] for m in MODALITIES},
        "signal": {}, "conflict": {},
    }
    out: Dict[str, Any] = {}
    for i, split in enumerate(SPLITS):
        rng = np.random.default_rng([int(seed), 1 + i])
        out[split], marker["signal"][split], marker["conflict"][split] = _make_split(
            split, n_split[split], rng, aligned, lens, params, knobs)
    out["synthetic"] = marker
    return out


def write_synthetic(path: PathLike, *, overwrite: bool = True, **knobs) -> Path:
    """Write :func:`make_synthetic` (``**knobs``) to ``path`` as a pickle (protocol 4), atomically."""
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' exists; pass overwrite=True (CLI: --force) to replace it")
    data = make_synthetic(**knobs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(data, f, protocol=4)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def make_synthetic_splits(*, inf_policy: str = "zero", **knobs):
    """The testbed as an in-memory :class:`~infoenh.data.dataset.MSADatasetSplits` (``ds.synthetic`` is True)."""
    from .mmsa import from_dict

    return from_dict(make_synthetic(**knobs), inf_policy=inf_policy, source="synthetic testbed")


def to_mult_layout(data: Dict[str, Any]) -> Dict[str, Any]:
    """Rewrite a testbed dict in the MulT/CMU layout: ``text``, ``audio``, ``vision``, ``labels`` [N, 1, 1], ``id``.

    Text rows outside the text mask become zero vectors (GloVe files pad with zeros) and the
    ``text_bert``/length keys are dropped, so a loader must fall back to non-zero rows. The
    synthetic marker is kept.
    """
    out: Dict[str, Any] = {}
    for s in SPLITS:
        part = data[s]
        text = np.array(part["text"], copy=True)
        text[~part["text_bert"][:, 1, :].astype(bool)] = 0
        out[s] = {"text": text, "audio": part["audio"], "vision": part["vision"],
                  "labels": np.asarray(part["regression_labels"]).reshape(-1, 1, 1), "id": part["id"]}
    if "synthetic" in data:
        out["synthetic"] = data["synthetic"]
    return out


# WordPiece ids of BERT-base's vocabulary used as the SYNTHETIC "sentiment words" -3 .. +3
SENTIMENT_TOKENS = tuple(range(2000, 2007))


def _make_split(split: str, n: int, rng: np.random.Generator, aligned: bool, lens: Dict[str, int],
                params: Dict[str, Dict[str, Any]], knobs: Dict[str, Any]):
    S = knobs["signal_steps"]
    y = sample_mosi_labels(n, split, rng, half_frac=knobs["half_frac"])
    # real lengths: words ~ log-normal (median 10, p95 ~30), tokens = words + [CLS] + [SEP]
    words = np.clip(np.round(np.exp(rng.normal(np.log(10.0), 0.668, size=n))), S, lens["text"] - 2).astype(np.int64)
    real = {"text": words + 2}
    for m in ("audio", "vision"):
        if aligned:
            real[m] = real["text"].copy()
        else:
            frac = np.clip(words / 30.0, 0.1, 1.0) * rng.uniform(0.7, 1.0, size=n)
            real[m] = np.clip(np.round(frac * lens[m]), S, lens[m]).astype(np.int64)

    conflict = {m: np.zeros(n, dtype=bool) for m in ("audio", "vision")}
    n_conf = int(round(knobs["conflict_frac"] * n))
    chosen = rng.choice(n, size=n_conf, replace=False)
    which = rng.integers(0, 2, size=n_conf)
    conflict["audio"][chosen[which == 0]] = True
    conflict["vision"][chosen[which == 1]] = True

    feats, signal, cue = {}, {}, {}
    for m in MODALITIES:
        L, d, p = lens[m], knobs["dims"][m], params[m]
        pos = np.arange(L)[None, :]
        mask = pos < real[m][:, None]
        x = rng.standard_normal((n, L, d), dtype=np.float32)
        if m != "text":
            x[~mask] = 0
        # word positions 1 .. len-2 for text and aligned modalities; any real step otherwise
        word_like = m == "text" or aligned
        eligible = (pos >= 1) & (pos < real[m][:, None] - 1) if word_like else mask
        steps = np.sort(np.argsort(np.where(eligible, rng.random((n, L)), 2.0), axis=1)[:, :S], axis=1)
        sign = np.where(conflict[m], -1.0, 1.0) if m in conflict else np.ones(n)
        q = sign * y + knobs["noise"][m] * rng.standard_normal(n)
        cue[m] = q
        v = knobs["signal_strength"] * q[:, None] * p["u"][None, :]                    # [n, k]
        v = (1 - p["h"]) * v + p["h"] * p["f"](v)
        x[np.arange(n)[:, None, None], steps[:, :, None], p["dims"][None, None, :]] += v[:, None, :].astype(np.float32)
        x *= np.float32(p["scale"])
        x += (p["offset"][None, None, :] * (mask[:, :, None] if m != "text" else 1)).astype(np.float32)
        if m == "audio" and knobs["audio_neg_inf_frac"] > 0:
            x[(rng.random(x.shape) < knobs["audio_neg_inf_frac"]) & mask[:, :, None]] = -np.inf
        feats[m] = x
        signal[m] = {"steps": steps.astype(np.int64), "dims": p["dims"].copy()}

    ids = _ids(split, n)
    text_bert = np.zeros((n, 3, lens["text"]), dtype=np.int64)
    tmask = np.arange(lens["text"])[None, :] < real["text"][:, None]
    text_bert[:, 0] = np.where(tmask, rng.integers(1000, 30000, size=(n, lens["text"])), 0)
    text_bert[:, 0, 0] = 101
    text_bert[np.arange(n), 0, real["text"] - 1] = 102
    text_bert[:, 1] = tmask
    # the text signal steps hold one of SENTIMENT_TOKENS (round(q) in -3..3), so a fine-tuned BERT
    # has the same cue to find as the features carry (no random number drawn: the rest is unchanged)
    tok = SENTIMENT_TOKENS[0] + 3 + np.clip(np.round(cue["text"]), -3, 3).astype(np.int64)
    text_bert[np.arange(n)[:, None], 0, signal["text"]["steps"]] = tok[:, None]
    cls = np.sign(y).astype(np.int64) + 1  # 0 negative, 1 neutral (=0), 2 positive
    part = {
        "id": np.array(ids),
        "raw_text": np.array([f"SYNTHETIC CLIP {i} OF {split.upper()} (NO TRANSCRIPT)" for i in range(n)]),
        "text": feats["text"],
        "text_bert": text_bert,
        "audio": feats["audio"].astype(np.float64),
        "vision": feats["vision"].astype(np.float64),
        "regression_labels": y,
        "classification_labels": cls.astype(np.float32),
        "annotations": np.array(["Negative", "Neutral", "Positive"])[cls],
    }
    if not aligned:
        part["audio_lengths"] = real["audio"]
        part["vision_lengths"] = real["vision"]
    return part, signal, conflict


def _ids(split: str, n: int):
    videos = max(1, min(_N_VIDEOS[split], n))
    offset = {"train": 0, "valid": _N_VIDEOS["train"], "test": _N_VIDEOS["train"] + _N_VIDEOS["valid"]}[split]
    per = -(-n // videos)
    return [f"synthvid{offset + i // per:03d}$_${i % per + 1}" for i in range(n)]


def _modality_params(seed: int, dims: Dict[str, int], signal_dims: int, h: float):
    rng = np.random.default_rng([int(seed), 0])
    funcs = {"text": lambda v: v, "audio": np.tanh, "vision": lambda v: v * np.abs(v)}
    params = {}
    for m in MODALITIES:
        k = min(signal_dims, dims[m])
        sig_dims = np.sort(rng.choice(dims[m], size=k, replace=False)).astype(np.int64)
        u = rng.standard_normal(k)
        u /= np.linalg.norm(u)
        offset = h * 2.0 * rng.standard_normal(dims[m])
        params[m] = {"dims": sig_dims, "u": u, "f": funcs[m], "h": h,
                     "scale": 3.0 ** (h * _SCALE_EXP[m]), "offset": offset}
    return params


def split_sizes(sizes=None, scale: float = 1.0) -> Dict[str, int]:
    """Split sizes from ``sizes`` (3 ints or a dict) or MOSI's sizes times ``scale`` (at least 1 each)."""
    if sizes is None:
        if not _is_number(scale) or not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        return {s: max(1, int(round(MOSI_SPLIT_SIZES[s] * scale))) for s in SPLITS}
    if isinstance(sizes, Mapping):
        if set(sizes) != set(SPLITS):
            raise ValueError(f"sizes must name exactly {list(SPLITS)}, got {sorted(sizes)}")
        out = {s: sizes[s] for s in SPLITS}
    else:
        sizes = list(sizes)
        if len(sizes) != 3:
            raise ValueError(f"sizes must be 3 integers (train, valid, test), got {sizes!r}")
        out = dict(zip(SPLITS, sizes))
    for s, v in out.items():
        _check_int(v, f"sizes[{s!r}]")
    return {s: int(v) for s, v in out.items()}


def _noise(noise) -> Dict[str, float]:
    out = dict(DEFAULT_NOISE)
    if noise is not None:
        unknown = [k for k in noise if k not in MODALITIES]
        if unknown:
            raise KeyError(f"noise: unknown modality {unknown}; expected a subset of {list(MODALITIES)}")
        for k, v in noise.items():
            _check_nonneg(v, f"noise[{k!r}]")
            out[k] = float(v)
    return out


def estimated_bytes(sizes: Mapping[str, int], lens: Mapping[str, int], dims: Mapping[str, int]) -> int:
    """Bytes of the arrays :func:`make_synthetic` returns for these split sizes, lengths and widths:
    text float32, audio/vision float64, ``text_bert`` int64 [N, 3, L_t] (the strings and small arrays
    are left out). Generating needs some temporary memory on top, writing a pickle about as much again."""
    per_clip = (lens["text"] * dims["text"] * 4 + lens["text"] * 3 * 8
                + sum(lens[m] * dims[m] * 8 for m in ("audio", "vision")))
    return sum(int(n) for n in sizes.values()) * per_clip


def _check_size(sizes: Mapping[str, int], lens: Mapping[str, int], dims: Mapping[str, int]) -> None:
    """Refuse a testbed whose arrays would exceed MAX_BYTES, saying how big it would be."""
    need = estimated_bytes(sizes, lens, dims)
    if need > MAX_BYTES:
        raise ValueError(
            f"this synthetic testbed would hold about {_size_text(need)} of arrays (splits "
            f"{dict(sizes)}, lengths {dict(lens)}, widths {dict(dims)}), over the {_size_text(MAX_BYTES)} "
            "bound; use a smaller scale, smaller sizes, shorter sequences or narrower features")


def _size_text(n: int) -> str:
    """``n`` bytes in the largest binary unit up to TiB, e.g. ``16.0 GiB`` or ``1,303.9 TiB``."""
    for unit, power in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 2**power:
            return f"{n / 2**power:,.1f} {unit}"
    return f"{n} bytes"


def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))


def _check_nonneg(v, name: str) -> None:
    if not _is_number(v) or not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


def _check_int(v, name: str) -> None:
    check_positive_int(int(v) if isinstance(v, np.integer) else v, name)


def _check_frac(v, name: str) -> None:
    if not _is_number(v) or not 0 <= v <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
