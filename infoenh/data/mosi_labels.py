"""CMU-MOSI's label distribution (counted from CMU's official labels: the per-split bin and sign counts below) and a
sampler that reproduces it for synthetic data.

MOSI labels are annotator means in [-3, 3]. Per split we know the Acc-7 bin counts (labels
rounded half-to-even after clipping) and how many labels are > 0, < 0 and exactly 0. From these,
the 0-bin splits into three parts: negative, exactly zero and positive, giving nine categories:

    -3, -2, -1, 0-, 0, 0+, +1, +2, +3

:func:`sample_mosi_labels` allocates ``n`` samples to the nine categories in MOSI's proportions
(largest remainders, so full-size splits match MOSI exactly), then draws a value inside each
category's interval, and turns a fraction ``half_frac`` (MOSI: 52 of 2,199) of the eligible labels into
half points ±0.5, ±1.5, ±2.5 (only bins 0 and ±2 can hold them under round-half-to-even).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

MOSI_SPLIT_SIZES: Dict[str, int] = {"train": 1284, "valid": 229, "test": 686}

# Acc-7 bin counts for -3..3 and the >0 / <0 / =0 counts, per split (official MOSI labels).
MOSI_ACC7_BINS: Dict[str, Tuple[int, ...]] = {
    "train": (24, 199, 227, 248, 227, 313, 46),
    "valid": (10, 30, 32, 49, 39, 50, 19),
    "test": (46, 156, 145, 106, 113, 100, 20),
}
MOSI_SIGN_COUNTS: Dict[str, Tuple[int, int, int]] = {  # (>0, <0, =0)
    "train": (679, 552, 53),
    "valid": (124, 92, 13),
    "test": (277, 379, 30),
}
MOSI_HALF_FRAC = 52 / 2199
CATEGORIES = ("-3", "-2", "-1", "0-", "0", "0+", "+1", "+2", "+3")
# value interval (low, high) of each category, chosen so round-half-even(value) is the bin
_INTERVALS = {"-3": (-3.0, -2.5), "-2": (-2.5, -1.5), "-1": (-1.5, -0.5), "0-": (-0.5, 0.0),
              "0": (0.0, 0.0), "0+": (0.0, 0.5), "+1": (0.5, 1.5), "+2": (1.5, 2.5), "+3": (2.5, 3.0)}
_HALF_POINTS = {"-2": (-2.5, -1.5), "0-": (-0.5,), "0+": (0.5,), "+2": (1.5, 2.5)}


def category_counts(split: str) -> Tuple[int, ...]:
    """MOSI's nine category counts for ``split`` (see module docstring)."""
    if split not in MOSI_ACC7_BINS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(MOSI_ACC7_BINS)}")
    b = MOSI_ACC7_BINS[split]
    pos, neg, zero = MOSI_SIGN_COUNTS[split]
    zero_neg = neg - (b[0] + b[1] + b[2])
    zero_pos = pos - (b[4] + b[5] + b[6])
    counts = (b[0], b[1], b[2], zero_neg, zero, zero_pos, b[4], b[5], b[6])
    assert zero_neg + zero + zero_pos == b[3] and min(counts) >= 0
    return counts


def allocate(n: int, weights) -> np.ndarray:
    """Split ``n`` into integer parts proportional to ``weights`` (largest-remainder method)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = n * w / w.sum()
    out = np.floor(exact).astype(np.int64)
    rest = n - int(out.sum())
    order = np.argsort(-(exact - out), kind="stable")
    out[order[:rest]] += 1
    return out


def sample_mosi_labels(n: int, split: str, rng: np.random.Generator,
                       half_frac: float = MOSI_HALF_FRAC) -> np.ndarray:
    """``n`` labels in [-3, 3] distributed like MOSI's ``split`` (float32 [n], shuffled)."""
    counts = allocate(n, category_counts(split))
    cats = np.repeat(np.arange(len(CATEGORIES)), counts)
    cats = cats[rng.permutation(n)]
    lo = np.array([_INTERVALS[c][0] for c in CATEGORIES])[cats]
    hi = np.array([_INTERVALS[c][1] for c in CATEGORIES])[cats]
    # stay strictly inside the interval: never on a rounding boundary, never exactly 0 by chance
    y = lo + (hi - lo) * rng.uniform(0.02, 0.98, size=n)
    eligible = np.flatnonzero(np.isin(cats, [CATEGORIES.index(c) for c in _HALF_POINTS]))
    n_half = min(int(round(half_frac * n)), eligible.size)
    for i in rng.choice(eligible, size=n_half, replace=False):
        y[i] = rng.choice(_HALF_POINTS[CATEGORIES[cats[i]]])
    return y.astype(np.float32)
