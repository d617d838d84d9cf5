"""Paired comparisons of two arms run on the same seeds: a paired t-test and a bootstrap
confidence interval of the mean paired difference.

With five seeds both are crude: the t-test assumes normal differences, and a bootstrap over five
values can only take a few distinct means. Report them as what they are.
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, Optional, Sequence

import numpy as np


def _clean(x: float) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


def bootstrap_ci(diffs: Sequence[float], *, n_boot: int = 10000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap CI of the mean of ``diffs`` (resampling the pairs with replacement).
    Returns ``(low, high)``; ``(nan, nan)`` with no data."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return float("nan"), float("nan")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(int(n_boot), d.size))].mean(axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)


def paired_comparison(reference: Sequence[float], arm: Sequence[float], *, n_boot: int = 10000,
                      level: float = 0.95, seed: int = 0) -> Dict[str, Optional[float]]:
    """Compare ``arm`` with ``reference``, paired by position (seed). The difference is
    ``arm - reference``. Returns ``n``, ``mean_diff``, ``std_diff`` (ddof=1), ``t``, ``p`` (two-sided
    ``scipy.stats.ttest_rel``; None with fewer than 2 pairs or when every difference is equal) and
    ``ci_low``/``ci_high`` (bootstrap percentile interval of the mean difference)."""
    from scipy.stats import ttest_rel

    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(arm, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need equal 1-D shapes, got {a.shape} and {b.shape}")
    d = b - a
    n = int(d.size)
    t = p = float("nan")
    if n >= 2 and np.ptp(d) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = ttest_rel(b, a)
        t, p = float(res.statistic), float(res.pvalue)
    lo, hi = bootstrap_ci(d, n_boot=n_boot, level=level, seed=seed)
    return {"n": n, "mean_diff": _clean(float(d.mean())) if n else None,
            "std_diff": _clean(float(d.std(ddof=1))) if n >= 2 else None,
            "t": _clean(t), "p": _clean(p), "ci_low": _clean(lo), "ci_high": _clean(hi), "ci_level": level}
