"""Paired comparisons of two arms run on the same seeds, and a correction for many of them.

For the differences ``d_s = arm_s - reference_s`` over ``n`` seeds, :func:`paired_comparison`
gives the mean, a paired t-test with its t interval, an exact sign-flip permutation test, and a
percentile bootstrap interval only from enough seeds to support one:

- **t interval and t-test** (normal differences assumed): honest about few seeds, since the
  t distribution on ``n - 1`` degrees of freedom has heavy tails.
- **sign-flip test** (exact: all ``2^n`` sign patterns; differences symmetric about 0 assumed,
  nothing else): with ``n`` seeds its smallest two-sided p is ``2 / 2^n`` (0.25 with 3 seeds,
  0.0625 with 5), so it cannot call anything clear from fewer than 6 seeds, and says so.
- **percentile bootstrap**: every resampled mean lies within the observed differences, and its
  spread uses the biased standard deviation and normal quantiles, so with few seeds the interval is
  too narrow: with 3 seeds a 95% interval is exactly the range of the differences (the smallest
  difference resampled 3 times has probability 1/27 > 2.5%). Under normal differences it covers the
  true mean with probability about ``P(|T_{n-1}| <= z sqrt((n-1)/n))`` (:func:`bootstrap_coverage`);
  it is reported only where that is within 5 points of the nominal level
  (:func:`min_bootstrap_seeds`: 10 seeds for 95%), and otherwise is ``None`` with the reason.

:func:`holm` adjusts a table's p-values for multiple comparisons (Holm's step-down method: it
controls the chance of any false "clear" result in the whole table); tables print the raw p beside
the adjusted one.

Metrics are rounded to 4 decimals (as MMSA's are), so two differences that are equal in truth may
differ by one unit in the last place (-0.0312 and -0.0313 for the same 2 clips of 64). A spread of
the differences within that rounding (``resolution``, 1e-4 by default) is no spread: the t-test is
not defined there (see :func:`paired_comparison`).
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np

# the resolution of the metrics (rounded to 4 decimals, as MMSA's): a smaller spread is rounding
RESOLUTION = 1e-4
# a bootstrap interval is reported when its coverage (normal differences) is at most this far below nominal
BOOTSTRAP_UNDERCOVERAGE = 0.05
# the sign-flip test enumerates every sign pattern up to this many pairs, then samples them
SIGN_FLIP_EXACT_MAX = 16


def _clean(x: float) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


def bootstrap_ci(diffs: Sequence[float], *, n_boot: int = 10000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap CI of the mean of ``diffs`` (resampling the pairs with replacement).
    Returns ``(low, high)``; ``(nan, nan)`` with no data. Every resampled mean lies between the
    smallest and the largest difference, so the interval does too: one difference gives ``[d, d]``
    (:func:`paired_comparison` reports no interval from fewer than :func:`min_bootstrap_seeds`)."""
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


def bootstrap_coverage(n: int, level: float = 0.95) -> float:
    """The probability that a percentile bootstrap interval of the mean of ``n`` normal differences
    covers their true mean, to first order: the interval is about ``mean ± z s sqrt((n-1)/n) /
    sqrt(n)`` (normal quantile ``z``, the biased standard deviation), so it covers with probability
    ``P(|T_{n-1}| <= z sqrt((n-1)/n))``. 0.75 for 3 seeds, 0.85 for 5, 0.90 for 10 (nominal 0.95)."""
    from scipy.stats import norm, t

    if n < 2:
        return 0.0
    z = float(norm.ppf((1 + level) / 2)) * math.sqrt((n - 1) / n)
    return float(2 * t.cdf(z, n - 1) - 1)


def min_bootstrap_seeds(level: float = 0.95, undercoverage: float = BOOTSTRAP_UNDERCOVERAGE) -> int:
    """The fewest seeds from which a percentile bootstrap interval at ``level`` is reported: the
    smallest ``n`` whose :func:`bootstrap_coverage` is at least ``level - undercoverage`` (10 for a
    95% interval). Below it the interval overclaims: with 3 seeds it is the range of the differences."""
    n = 2
    while bootstrap_coverage(n, level) < level - undercoverage:
        n += 1
    return n


def t_interval(diffs: Sequence[float], level: float = 0.95):
    """The t interval of the mean of ``diffs``: ``mean ± t_{n-1} s / sqrt(n)``; ``(nan, nan)`` with
    fewer than 2 values."""
    from scipy.stats import t

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2 or not np.isfinite(d).all():
        return float("nan"), float("nan")
    half = float(t.ppf((1 + level) / 2, d.size - 1)) * float(d.std(ddof=1)) / math.sqrt(d.size)
    m = float(d.mean())
    return m - half, m + half


def sign_flip_test(diffs: Sequence[float], *, n_samples: int = 100000, seed: int = 0) -> Dict[str, Optional[float]]:
    """Two-sided permutation test of mean 0 for paired differences: under the null each difference
    is as likely to have the other sign, so the observed ``|mean|`` is compared with the ``|mean|`` of
    every sign pattern (all ``2^n`` up to :data:`SIGN_FLIP_EXACT_MAX` pairs, else ``n_samples`` random
    ones). Returns ``{"p", "p_min", "exact"}``: ``p_min = 2 / 2^n`` is the smallest p that ``n`` pairs
    can give (when no difference is 0). ``p`` is None with fewer than 2 pairs or non-finite values."""
    d = np.asarray(diffs, dtype=np.float64)
    n = int(d.size)
    if n < 2 or not np.isfinite(d).all():
        return {"p": None, "p_min": None, "exact": None}
    observed = abs(float(d.mean()))
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= SIGN_FLIP_EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        p = float(np.mean(np.abs(signs @ d / n) >= observed - tol))
        exact = True
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice((1.0, -1.0), size=(int(n_samples), n))
        p = float((1 + np.sum(np.abs(signs @ d / n) >= observed - tol)) / (1 + int(n_samples)))
        exact = False
    return {"p": p, "p_min": min(1.0, 2.0 / 2 ** n), "exact": exact}


def holm(pvalues: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjustment of a family of p-values (same order; None stays None and is not
    counted in the family). With ``m`` p-values sorted ``p_(1) <= ... <= p_(m)``, the adjusted
    ``p_(i)`` is ``max_{j <= i} min(1, (m - j + 1) p_(j))``: rejecting where it is below 0.05 keeps
    the chance of any false rejection in the family at most 5%."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    out: List[Optional[float]] = [None] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


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
    ``arm - reference``. Returns:

    - ``n``, ``mean_diff``, ``std_diff`` (ddof=1; None with one pair);
    - ``t``, ``p``: two-sided paired t-test (``scipy.stats.ttest_rel``); ``t_low``/``t_high``: the
      t interval of the mean difference at ``level`` (:func:`t_interval`);
    - ``p_signflip`` (exact sign-flip permutation test, :func:`sign_flip_test`), ``p_signflip_min``
      (the smallest p that ``n`` pairs can give) and ``signflip_exact``;
    - ``ci_low``/``ci_high``: the percentile bootstrap interval (:func:`bootstrap_ci`), only from
      ``bootstrap_min_seeds`` (:func:`min_bootstrap_seeds`, 10 for 95%) pairs on, else None with
      ``ci_note`` saying why; ``ci_level``.

    ``t``, ``p`` and the t interval are None with fewer than 2 pairs, and when every difference is
    the same up to the metrics' rounding (their spread is at most ``resolution``, default 1e-4, plus
    a relative float tolerance): a constant difference has no t-test. Its standard deviation is 0,
    or only rounding and float noise, and dividing by it gives a meaningless huge ``t`` and a tiny
    ``p`` (differences of -0.0312 and -0.0313, the same 2 clips of 64 rounded two ways, would give
    t = -625, p = 0.001). The sign-flip test is defined there: with every difference of one sign its
    p is ``p_signflip_min``, which shows how little ``n`` seeds can establish.
    """
    from scipy.stats import ttest_rel

    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(arm, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need equal 1-D shapes, got {a.shape} and {b.shape}")
    d = b - a
    n = int(d.size)
    t = p = t_lo = t_hi = float("nan")
    scale = float(np.max(np.abs(np.concatenate([a, b])))) if n and np.isfinite(d).all() else 1.0
    if n >= 2 and np.isfinite(d).all() and not constant_differences(d, resolution=resolution, scale=scale):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = ttest_rel(b, a)
        t, p = float(res.statistic), float(res.pvalue)
        t_lo, t_hi = t_interval(d, level)
    need = min_bootstrap_seeds(level)
    lo = hi = float("nan")
    if n >= need:
        lo, hi = bootstrap_ci(d, n_boot=n_boot, level=level, seed=seed)
        note = None
    else:
        note = (f"no bootstrap interval from {n} seed{'s' if n != 1 else ''}: a {level:.0%} percentile bootstrap "
                f"needs at least {need} (below that it covers too rarely; with 3 it is the range of the differences)")
    sf = sign_flip_test(d, seed=seed)
    return {"n": n, "mean_diff": _clean(float(d.mean())) if n else None,
            "std_diff": _clean(float(d.std(ddof=1))) if n >= 2 else None,
            "t": _clean(t), "p": _clean(p), "t_low": _clean(t_lo), "t_high": _clean(t_hi),
            "p_signflip": sf["p"], "p_signflip_min": sf["p_min"], "signflip_exact": sf["exact"],
            "ci_low": _clean(lo), "ci_high": _clean(hi), "ci_level": level, "bootstrap_min_seeds": need,
            "ci_note": note}


def holm_table(comparisons: Dict[str, Dict], metrics: Sequence[str]) -> int:
    """Adjust, in place, every p of a table of comparisons (``{name: {metric: paired_comparison
    result}}``) as one family per test: adds ``p_holm`` (from ``p``, the t-test) and
    ``p_signflip_holm`` to each metric's dict. Returns the family size (the t-test p-values that
    are defined)."""
    cells = [comparisons[name][k] for name in comparisons for k in metrics
             if isinstance(comparisons[name].get(k), dict)]
    for key in ("p", "p_signflip"):
        for c, adj in zip(cells, holm([c.get(key) for c in cells])):
            c[f"{key}_holm"] = adj
    return sum(1 for c in cells if c.get("p") is not None)
