"""Inspect a dataset file and summarise it: format, checksum, shapes, NaN/inf, masks, label statistics.

:func:`check_file` loads the file with :func:`~infoenh.data.mmsa.load_mmsa` (so every check the
loader does applies) and returns a plain dict; :func:`format_summary` renders it for people.
:func:`label_stats` gives the per-split label figures this project records for MOSI (:mod:`infoenh.data.mosi_labels`): n, mean, std
(population, ddof=0), counts of labels > 0, < 0 and = 0, the count outside [-3, 3] (MOSI/MOSEI's
range), and Acc-7 bin counts for -3..3 (labels clipped to [-3, 3] and rounded half to even, as the
metrics do). :func:`format_summary` flags out-of-range labels on a line of their own, split by split,
since the Acc-7 bins (which clip) would hide them.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .formats import MODALITIES
from .identity import ENV, identify
from .mmsa import load_mmsa

PathLike = Union[str, "os.PathLike[str]"]


def label_stats(labels) -> Dict[str, Any]:
    """n, mean, std, pos/neg/zero counts, min, max, out_of_range (count outside [-3, 3]) and Acc-7
    bins (list of 7 counts for -3..3)."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if y.size == 0:
        raise ValueError("label_stats needs at least one label")
    bins = np.round(np.clip(y, -3, 3)).astype(np.int64) + 3
    return {
        "n": int(y.size), "mean": float(y.mean()), "std": float(y.std()),
        "pos": int((y > 0).sum()), "neg": int((y < 0).sum()), "zero": int((y == 0).sum()),
        "min": float(y.min()), "max": float(y.max()),
        "out_of_range": int(((y < -3) | (y > 3)).sum()),
        "acc7_bins": np.bincount(bins, minlength=7).tolist(),
    }


def check_file(path: PathLike, *, sha256: Optional[str] = None, inf_policy: str = "zero",
               verify: bool = True) -> Dict[str, Any]:
    """Load ``path`` and return a summary dict (keys: path, size_bytes, checksum, sha256, layout,
    aligned, synthetic, mask_rules, inf_policy, nonfinite, warnings, splits{split: shapes, raw dtypes,
    mean real length per modality, labels})."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_mmsa(path, verify=verify, inf_policy=inf_policy, sha256=sha256)
    meta = ds.meta
    through = None                       # the dataset name "mosi" stands for $INFOENH_MOSI when that is set
    if os.fspath(path).lower() == "mosi" and os.environ.get(ENV, "").strip():
        through = ENV
    ident = identify(Path(meta["path"]).name, meta["sha256"], bool(ds.synthetic)) if meta["sha256"] else None
    splits = {}
    for s in ds:
        d = ds[s]
        splits[s] = {
            "n": len(d),
            "shapes": {m: list(d.features[m].shape[1:]) for m in MODALITIES},
            "raw": {m: {"shape": list(sh), "dtype": dt} for m, (sh, dt) in meta["notes"]["raw"][s].items()},
            "mean_real_steps": {m: float(d.masks[m].sum(1).mean()) for m in MODALITIES},
            "labels": label_stats(d.labels),
            "ids_example": d.ids[:2],
        }
    return {
        "path": meta["path"], "size_bytes": os.path.getsize(meta["path"]),
        "checksum": meta["checksum"], "sha256": meta["sha256"], "known_as": meta["known_as"],
        "identity": ident.label if ident else None, "found_through": through,
        "layout": meta["layout"], "aligned": meta["aligned"], "synthetic": ds.synthetic,
        "synthetic_info": _marker_summary(ds.synthetic_info), "dims": ds.dims,
        "mask_rules": meta["mask_rules"], "inf_policy": inf_policy,
        "nonfinite": ds.report.counts, "nonfinite_total": ds.report.total,
        "notes": {k: v for k, v in meta["notes"].items() if k != "raw" and v},
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "splits": splits,
    }


def _marker_summary(marker: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if marker is None:
        return None
    return {k: marker[k] for k in ("generator", "version", "seed", "knobs", "note") if k in marker}


def format_summary(summary: Dict[str, Any]) -> str:
    """A readable multi-line report of :func:`check_file`'s dict."""
    s = summary
    lines = []
    if s["synthetic"]:
        info = s["synthetic_info"] or {}
        lines.append(f"SYNTHETIC testbed (generator {info.get('generator', '?')}, seed {info.get('seed', '?')}): "
                     "not CMU-MOSI/MOSEI data")
    lines.append(f"file      {s['path']} ({s['size_bytes'] / 2**20:.1f} MiB)")
    if s.get("found_through"):
        lines.append(f"found     'mosi' through {s['found_through']} (set to {s['path']})")
    ck = s["checksum"]
    if ck == "verified":
        lines.append(f"checksum  verified ({s['known_as']}) sha256 {s['sha256']}")
    elif ck == "unknown":
        lines.append(f"checksum  unknown file, not verified; sha256 {s['sha256']}")
        if s.get("identity") and not s["synthetic"]:
            lines.append(f"identity  {s['identity']}")
    else:
        lines.append("checksum  skipped")
    lines.append(f"format    {s['layout']} layout, {'aligned' if s['aligned'] else 'unaligned'}; "
                 f"feature widths text {s['dims']['text']}, audio {s['dims']['audio']}, vision {s['dims']['vision']}")
    lines.append("masks     " + "; ".join(f"{m}: {r}" for m, r in s["mask_rules"].items()))
    nf = s["nonfinite"]
    if s["nonfinite_total"]:
        parts = [f"{sp}/{m} " + ", ".join(f"{n} {k}" for k, n in c.items() if n)
                 for sp, mods in nf.items() for m, c in mods.items() if sum(c.values())]
        action = "set to 0" if s["inf_policy"] == "zero" else "found"
        lines.append(f"NaN/inf   {s['nonfinite_total']} values {action}: " + "; ".join(parts))
    else:
        lines.append("NaN/inf   none")
    lines.extend(_label_range_lines(s["splits"]))
    for k, v in s["notes"].items():
        lines.append(f"note      {k}: {v}")
    shown = ("UnknownChecksumWarning", "DataCleaningWarning")  # already in the lines above
    for w in s["warnings"]:
        if not w.startswith(shown):
            lines.append(f"warning   {w}")
    lines.append("")
    lines.append(f"{'split':<6} {'n':>6} {'mean':>7} {'std':>6} {'>0':>5} {'<0':>5} {'=0':>4}  "
                 f"{'Acc-7 bins -3..3':<28} shapes [L, d] (mean real steps)")
    for sp, d in s["splits"].items():
        lb = d["labels"]
        bins = " ".join(str(b) for b in lb["acc7_bins"])
        shapes = "  ".join(f"{m} {d['shapes'][m]} ({d['mean_real_steps'][m]:.1f})" for m in MODALITIES)
        lines.append(f"{sp:<6} {lb['n']:>6} {lb['mean']:>7.3f} {lb['std']:>6.3f} {lb['pos']:>5} {lb['neg']:>5} "
                     f"{lb['zero']:>4}  {bins:<28} {shapes}")
    if s["synthetic"]:
        lines.append("(all figures above describe SYNTHETIC data)")
    return "\n".join(lines)


def _label_range_lines(splits: Dict[str, Any]) -> List[str]:
    """``labels    all within [-3, 3]``, or one flagged ``LABELS`` line per split with labels outside
    [-3, 3] (count, min, max): the Acc-7 bins clip such labels, so the table alone would hide them."""
    lines = []
    for sp, d in splits.items():
        lb = d["labels"]
        if lb["out_of_range"]:
            lines.append(f"LABELS    {sp}: {lb['out_of_range']} of {lb['n']} labels OUTSIDE [-3, 3] "
                         f"(min {lb['min']:.3f}, max {lb['max']:.3f}); the metrics clip them to [-3, 3]")
    return lines or ["labels    all within [-3, 3]"]
