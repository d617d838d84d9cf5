"""Paired comparisons of two arms run on the same seeds: a paired t-test and a bootstrap
confidence interval of the mean paired difference.

With five seeds both are crude: the t-test assumes normal differences, and a bootstrap over five
values can only take a few distinct means. Report them as what they are.

Metrics are rounded to 4 decimals (as MMSA's are), so two differences that are equal in truth may
differ by one unit in the last place (-0.0312 and -0.0313 for the same 2 clips of 64). A spread of
the differences within that rounding (``resolution``, 1e-4 by default) is no spread: the t-test is
not defined there (see :func:`paired_comparison`).
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, Optional, Sequence

import numpy as np

# the resolution of the metrics (rounded to 4 decimals, as MMSA's): a smaller spread is rounding
RESOLUTION = 1e-4


def _clean(x: float) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


def bootstrap_ci(diffs: Sequence[float], *, n_boot: int = 10000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap CI of the mean of ``diffs`` (resampling the pairs with replacement).
    Returns ``(low, high)``; ``(nan, nan)`` with no data. Every resampled mean lies between the
    smallest and the largest difference, so the interval does too: one difference gives ``[d, d]``
    (:func:`paired_comparison` reports no interval then)."""
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


def constant_differences(d: Sequence[float], *, resolution: float = RESOLUTION, scale: float = 1.0) -> bool:
    """True when the differences ``d`` (at least two, all finite) are equal up to the metrics'
    rounding: their spread (max - min) is at most ``resolution`` plus a relative float tolerance
    (1e-9 of ``scale``, the largest magnitude of the values they were computed from)."""
    x = np.asarray(d, dtype=np.float64)
    if x.size < 2 or not np.isfinite(x).all():
        return False
    return float(np.ptp(x)) <= resolution + 1e-9 * max(1.0, float(scale))


def paired_comparison(reference: Sequence[float], arm: Sequence[float], *, n_boot: int = 10000,
                      level: float = 0.95, seed: int = 0,
                      resolution: float = RESOLUTION) -> Dict[str, Optional[float]]:
    """Compare ``arm`` with ``reference``, paired by position (seed). The difference is
    ``arm - reference``. Returns ``n``, ``mean_diff``, ``std_diff`` (ddof=1; None with one pair),
    ``t``, ``p`` (two-sided ``scipy.stats.ttest_rel``) and ``ci_low``/``ci_high`` (bootstrap
    percentile interval of the mean difference, :func:`bootstrap_ci`).

    ``t`` and ``p`` are None with fewer than 2 pairs, and when every difference is the same up to
    the metrics' rounding (their spread is at most ``resolution``, default 1e-4, plus a relative
    float tolerance): a constant difference has no t-test. Its standard deviation is 0, or only
    rounding and float noise, and dividing by it gives a meaningless huge ``t`` and a tiny ``p``
    (differences of -0.0312 and -0.0313, the same 2 clips of 64 rounded two ways, would give
    t = -625, p = 0.001). The bootstrap interval is then as narrow as the differences' spread (a
    point when they are exactly equal): it shows that the seeds did not vary, not that the
    difference is certain.

    With a single pair (one seed) there is no interval either: ``ci_low``/``ci_high`` are None
    (a bootstrap of one value is that value, ``[d, d]``, which would read as certainty).
    """
    from scipy.stats import ttest_rel

    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(arm, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need equal 1-D shapes, got {a.shape} and {b.shape}")
    d = b - a
    n = int(d.size)
    t = p = float("nan")
    scale = float(np.max(np.abs(np.concatenate([a, b])))) if n and np.isfinite(d).all() else 1.0
    if n >= 2 and np.isfinite(d).all() and not constant_differences(d, resolution=resolution, scale=scale):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = ttest_rel(b, a)
        t, p = float(res.statistic), float(res.pvalue)
    lo = hi = float("nan")
    if n >= 2:
        lo, hi = bootstrap_ci(d, n_boot=n_boot, level=level, seed=seed)
    return {"n": n, "mean_diff": _clean(float(d.mean())) if n else None,
            "std_diff": _clean(float(d.std(ddof=1))) if n >= 2 else None,
            "t": _clean(t), "p": _clean(p), "ci_low": _clean(lo), "ci_high": _clean(hi), "ci_level": level}
