"""Read the two dataset pickle layouts into one canonical form (no cleaning, no torch).

Layouts (top level: a dict with ``"train"``, ``"valid"``, ``"test"``, each a dict of arrays):

- **MMSA** (thuiar/MMSA ``aligned_50.pkl`` / ``unaligned_50.pkl``): ``text`` [N, L_t, d_t],
  ``audio`` [N, L_a, d_a], ``vision`` [N, L_v, d_v], ``regression_labels`` [N], ``id`` [N],
  optionally ``text_bert`` [N, 3, L_t] (input ids, attention mask, segment ids) and, in unaligned
  files, ``audio_lengths`` / ``vision_lengths`` [N].
- **MulT / CMU processed**: ``text`` (300-d GloVe), ``audio``, ``vision``, ``labels`` [N, 1, 1], ``id``.

Feature widths and lengths are read from the arrays, never from a table.

Padding masks (bool, True = real step), one rule per modality, recorded in ``ParsedData.mask_rules``:

- text: the attention-mask row of ``text_bert`` when present (MMSA's BERT features are non-zero
  at padded positions, so only this row tells padding apart); else the rows of ``text`` that
  are not all zero (GloVe files pad with zero vectors);
- audio / vision with ``audio_lengths`` / ``vision_lengths``: the first ``length`` steps (MMSA pads
  at the end); lengths above the sequence length are clipped to it (counted in ``notes``);
- audio / vision in an *aligned* file (no length keys, all three sequences the same length): the
  text mask, because the features are averaged over the words' time spans and share the text's
  time axis (MMSA also uses the text lengths for every modality when the data are aligned);
- otherwise: the rows that are not all zero.

A sample whose mask would have no real step (e.g. length 0) gets its first step marked real, so
pooling downstream never divides by zero; ``notes["empty_masks"]`` counts these per split/modality.

A top-level ``"synthetic"`` key marks a file made by :mod:`infoenh.data.synthetic`.

What is refused (:class:`InvalidDatasetError`, naming the split and key): features that are not
real numbers (complex, bool, strings, objects: nothing is cast away silently), sequence length 0
or feature width 0 (a zero-size array can declare any other dimension without holding a byte),
and labels or lengths that are not real numbers. Features, labels and lengths stored as (nested)
lists instead of arrays are counted before they are converted: with ``max_bytes`` (which
:func:`~infoenh.data.mmsa.load_mmsa` sets to the unpickler's bound for the file's size), lists that
would become more than ``max_bytes`` of arrays (8 bytes per value) are refused, so a small file
that repeats one list many times cannot expand into a huge array.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

SYNTHETIC_GENERATOR = "infoenh.data.synthetic"  # the value of the marker's "generator" field
SPLITS = ("train", "valid", "test")
MODALITIES = ("text", "audio", "vision")
_LENGTH_KEYS = {"audio": "audio_lengths", "vision": "vision_lengths"}
_CHUNK = 256


class InvalidDatasetError(ValueError):
    """The file's content does not have the structure of a dataset pickle."""


@dataclass
class SplitArrays:
    """One split, canonical: features float32 [N, L_m, d_m], masks bool [N, L_m], labels float32 [N]."""

    features: Dict[str, np.ndarray]
    masks: Dict[str, np.ndarray]
    labels: np.ndarray
    ids: List[str]
    text_bert: Optional[np.ndarray] = None   # int64 [N, 3, L_t]: token ids, attention mask, segment ids


@dataclass
class ParsedData:
    splits: Dict[str, SplitArrays]
    layout: str                          # "mmsa" or "mult"
    aligned: bool                        # all splits aligned (no length keys, equal lengths)
    mask_rules: Dict[str, str]           # modality -> rule used (first split's; see notes for others)
    synthetic: Optional[Dict[str, Any]]  # the synthetic marker, None for real data
    notes: Dict[str, Any] = field(default_factory=dict)


def parse_dataset(data: Any, source: str = "the file", *, max_bytes: Optional[int] = None) -> ParsedData:
    """Validate the unpickled object ``data`` and return its canonical :class:`ParsedData`.

    ``max_bytes`` bounds the arrays built from lists (8 bytes per value, all keys together);
    ``None`` means no bound (data already in memory)."""
    what = ("Expected an MMSA processed pickle (dict with 'train', 'valid', 'test', each a dict with "
            "'text', 'audio', 'vision', 'regression_labels', 'id') or the MulT layout "
            "(same with 'labels' [N, 1, 1])")
    if not isinstance(data, dict):
        raise InvalidDatasetError(f"{source} holds a {type(data).__name__}, not a dict of splits. {what}.")
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise InvalidDatasetError(
            f"{source} has no split(s) {missing}; its top-level keys are {sorted(map(str, data))[:10]}. {what}.")
    marker = data.get("synthetic")
    # Only the generator's own marker makes a file synthetic: a stray "synthetic" key in a real
    # file must not relabel it (nor spare it the unknown-checksum warning).
    if not (isinstance(marker, dict) and marker.get("generator") == SYNTHETIC_GENERATOR):
        marker = None
    notes: Dict[str, Any] = {
        "extra_keys": sorted(str(k) for k in data if k not in SPLITS and not (k == "synthetic" and marker is not None)),
        "raw": {}, "empty_masks": {}, "clipped_lengths": {}, "ids_generated": [],
    }
    splits, layouts, aligned_flags, rules = {}, set(), [], {}
    budget = _ListBudget(max_bytes, source)
    for s in SPLITS:
        part = data[s]
        if not isinstance(part, dict):
            raise InvalidDatasetError(f"{source}: split '{s}' is a {type(part).__name__}, not a dict of arrays. {what}.")
        arrays, layout, aligned, split_rules = _parse_split(part, s, source, notes, budget)
        splits[s], rules = arrays, rules or split_rules
        layouts.add(layout)
        aligned_flags.append(aligned)
    if len(layouts) > 1:
        raise InvalidDatasetError(f"{source}: splits mix the MMSA and MulT layouts ({sorted(layouts)}).")
    return ParsedData(splits, layouts.pop(), all(aligned_flags), rules, marker, notes)


def _parse_split(part: dict, s: str, source: str, notes: dict, budget: "_ListBudget"):
    keys = sorted(map(str, part))
    for m in MODALITIES:
        if m not in part:
            raise InvalidDatasetError(f"{source}: split '{s}' has no '{m}' features (keys present: {keys}).")
    raw = {m: _as_array(part[m], f"{s}/{m}", source, budget) for m in MODALITIES}
    notes["raw"][s] = {m: (tuple(x.shape), str(x.dtype)) for m, x in raw.items()}
    for m, x in raw.items():
        _check_features(x, s, m, source)
    n = raw["text"].shape[0]
    sizes = {m: x.shape[0] for m, x in raw.items()}
    if len(set(sizes.values())) != 1:
        raise InvalidDatasetError(f"{source}: split '{s}' modalities have different sample counts {sizes}.")
    if n == 0:
        raise InvalidDatasetError(f"{source}: split '{s}' has no samples.")
    labels, layout = _labels(part, s, n, source, keys, budget)
    ids = _ids(part.get("id"), s, n, source, notes, budget)

    lengths = {m: _lengths(part[k], s, k, n, raw[m].shape[1], source, notes, budget)
               for m, k in _LENGTH_KEYS.items() if k in part}
    seq = {m: x.shape[1] for m, x in raw.items()}
    aligned = not lengths and len(set(seq.values())) == 1

    masks, rules = {}, {}
    text_bert = None
    if "text_bert" in part:
        tb = _as_array(part["text_bert"], f"{s}/text_bert", source, budget)
        if not _is_real(tb.dtype):
            raise InvalidDatasetError(
                f"{source}: split '{s}' 'text_bert' has dtype {tb.dtype}; it must hold integer token ids "
                "and 0/1 masks.")
        if tb.ndim != 3 or tb.shape[0] != n or tb.shape[1] < 2 or tb.shape[2] != seq["text"]:
            raise InvalidDatasetError(
                f"{source}: split '{s}' text_bert must be [N, 3, L_t] = [{n}, 3, {seq['text']}] "
                f"(input ids, attention mask, segment ids), got {tb.shape}.")
        att = np.asarray(tb[:, 1, :])
        if not np.isin(att, (0, 1)).all():
            raise InvalidDatasetError(
                f"{source}: split '{s}' text_bert[:, 1] (the attention mask) must hold only 0/1.")
        masks["text"], rules["text"] = att.astype(bool), "text_bert attention mask"
        if tb.shape[1] == 3:
            text_bert = np.ascontiguousarray(tb, dtype=np.int64)
    else:
        masks["text"], rules["text"] = _nonzero_rows(raw["text"]), "non-zero rows of text"
    for m in ("audio", "vision"):
        if m in lengths:
            masks[m] = np.arange(seq[m])[None, :] < lengths[m][:, None]
            rules[m] = f"{_LENGTH_KEYS[m]} (first length steps)"
        elif aligned:
            masks[m], rules[m] = masks["text"].copy(), "text mask (aligned to words)"
        else:
            masks[m], rules[m] = _nonzero_rows(raw[m]), f"non-zero rows of {m}"
    for m, mk in masks.items():
        empty = ~mk.any(axis=1)
        if empty.any():
            mk[empty, 0] = True
            notes["empty_masks"].setdefault(s, {})[m] = int(empty.sum())

    feats = {m: _float32_writable(x) for m, x in raw.items()}
    return SplitArrays(feats, masks, labels, ids, text_bert), layout, aligned, rules


def _is_real(dtype: np.dtype) -> bool:
    """True for integer and floating dtypes (not bool, complex, strings or objects)."""
    return bool(np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))


def _check_features(x: np.ndarray, s: str, m: str, source: str) -> None:
    """Refuse a feature array that is not [N, L, d] of real numbers with L >= 1 and d >= 1."""
    if x.ndim != 3 or x.dtype.kind in "OSUV":
        raise InvalidDatasetError(
            f"{source}: split '{s}' '{m}' must be a numeric array [N, L, d] (sequences of feature "
            f"vectors), got shape {x.shape} dtype {x.dtype}.")
    if not _is_real(x.dtype):
        raise InvalidDatasetError(
            f"{source}: split '{s}' '{m}' has dtype {x.dtype}; features must be real numbers (integer or "
            "floating point). Nothing is cast away silently (a complex value would lose its imaginary "
            "part): convert the features to float32 yourself if that is what you mean.")
    if x.shape[1] == 0:
        raise InvalidDatasetError(
            f"{source}: split '{s}' '{m}' has sequence length 0 (shape {x.shape}); every sample needs at "
            "least one time step. The file is empty or damaged for this modality.")
    if x.shape[2] == 0:
        raise InvalidDatasetError(
            f"{source}: split '{s}' '{m}' has feature width 0 (shape {x.shape}); an array with no values "
            "cannot describe the sample. The file is empty or damaged for this modality.")


class _ListBudget:
    """How many bytes of arrays (8 per value) lists may still turn into; None = no bound."""

    def __init__(self, max_bytes: Optional[int], source: str):
        self.left, self.total, self.source = max_bytes, max_bytes, source

    def charge(self, values: int, name: str) -> None:
        if self.left is None:
            return
        self.left -= 8 * values
        if self.left < 0:
            raise InvalidDatasetError(
                f"{self.source}: '{name}' is stored as lists holding {values} values, more than the "
                f"{self.total} bytes of arrays this file's size allows (a small file that repeats one list "
                "many times would expand into a huge array). Dataset files store numpy arrays.")


def _count_values(x: Any) -> int:
    """Number of scalar values in nested lists/tuples (arrays count their size). Each distinct list
    is walked once, so a list repeated by reference costs no extra time; a list that contains
    itself raises ValueError."""
    counts: Dict[int, int] = {}
    open_ids = set()
    stack = [(x, False)]
    while stack:
        obj, done = stack.pop()
        key = id(obj)
        if done:
            counts[key] = sum(counts[id(c)] for c in obj)
            open_ids.discard(key)
        elif key in counts:
            continue
        elif key in open_ids:
            raise ValueError("a list contains itself")
        elif isinstance(obj, np.ndarray):
            counts[key] = int(obj.size)
        elif isinstance(obj, (list, tuple)):
            open_ids.add(key)
            stack.append((obj, True))
            stack.extend((c, False) for c in obj)
        else:
            counts[key] = 1
    return counts[id(x)]


def _as_array(x: Any, name: str, source: str, budget: Optional[_ListBudget] = None) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    try:
        if budget is not None and isinstance(x, (list, tuple)):
            budget.charge(_count_values(x), name)
        return np.asarray(x)
    except InvalidDatasetError:
        raise
    except Exception as exc:  # ragged lists and the like
        raise InvalidDatasetError(f"{source}: '{name}' cannot be read as an array ({exc}).") from exc


def _labels(part: dict, s: str, n: int, source: str, keys: list, budget: _ListBudget):
    if "regression_labels" in part:
        key, layout = "regression_labels", "mmsa"
    elif "labels" in part:
        key, layout = "labels", "mult"
    else:
        raise InvalidDatasetError(
            f"{source}: split '{s}' has no labels: expected 'regression_labels' (MMSA) or 'labels' "
            f"(MulT), keys present: {keys}.")
    y = _as_array(part[key], f"{s}/{key}", source, budget)
    if not _is_real(y.dtype):
        raise InvalidDatasetError(
            f"{source}: split '{s}' '{key}' has dtype {y.dtype}; sentiment scores must be real numbers "
            "(a complex value would lose its imaginary part, so nothing is cast).")
    if y.size != n:
        raise InvalidDatasetError(
            f"{source}: split '{s}' '{key}' must hold one sentiment score per sample ({n}), got shape "
            f"{y.shape} dtype {y.dtype}.")
    y = y.reshape(n).astype(np.float32)
    if not np.isfinite(y).all():
        raise InvalidDatasetError(
            f"{source}: split '{s}' '{key}' has {int((~np.isfinite(y)).sum())} NaN/inf labels; labels are "
            "never cleaned, fix the file.")
    return y, layout


def _ids(raw_ids: Any, s: str, n: int, source: str, notes: dict, budget: _ListBudget) -> List[str]:
    if raw_ids is None:
        notes["ids_generated"].append(s)
        return [f"{s}_{i}" for i in range(n)]
    a = _as_array(raw_ids, f"{s}/id", source, budget)
    if a.shape[:1] != (n,) or a.ndim > 2:
        raise InvalidDatasetError(f"{source}: split '{s}' 'id' must have {n} rows, got shape {a.shape}.")
    if a.ndim == 1:
        return [_text(v) for v in a]
    return ["$_$".join(p for p in (_text(v).strip() for v in row) if p) for row in a]


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, np.bytes_)) else str(v)


def _lengths(x: Any, s: str, key: str, n: int, seq_len: int, source: str, notes: dict,
             budget: _ListBudget) -> np.ndarray:
    a = _as_array(x, f"{s}/{key}", source, budget)
    if a.size != n or not _is_real(a.dtype):
        raise InvalidDatasetError(f"{source}: split '{s}' '{key}' must hold {n} lengths (integers), got shape "
                                  f"{a.shape} dtype {a.dtype}.")
    a = a.reshape(n)
    if not np.isfinite(a).all() or (a != np.round(a)).any() or (a < 0).any():
        raise InvalidDatasetError(f"{source}: split '{s}' '{key}' must hold non-negative integers.")
    a = a.astype(np.int64)
    over = a > seq_len
    if over.any():
        notes["clipped_lengths"].setdefault(s, {})[key] = int(over.sum())
        a = np.minimum(a, seq_len)
    return a


def _nonzero_rows(x: np.ndarray) -> np.ndarray:
    """[N, L, d] -> [N, L] bool, True where a step has any non-zero value (NaN counts as non-zero)."""
    out = np.empty(x.shape[:2], dtype=bool)
    for i in range(0, len(x), _CHUNK):
        out[i:i + _CHUNK] = (x[i:i + _CHUNK] != 0).any(axis=-1)
    return out


def _float32_writable(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # values beyond float32 become inf, counted by the cleaning step
        y = np.asarray(x, dtype=np.float32)
    if not y.flags.writeable or not y.flags.c_contiguous:
        y = np.array(y, dtype=np.float32, order="C")
    return y
