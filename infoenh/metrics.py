"""Regression metrics for CMU-MOSI/MOSEI, with MMSA's keys and semantics (``utils/metricsTop.py``).

``p`` = predictions, ``t`` = labels, both flattened:

- ``Has0_acc_2``: accuracy of ``p >= 0`` against ``t >= 0`` over all clips (negative / non-negative);
  ``Has0_F1_score``: the weighted F1 of the same.
- ``Non0_acc_2``: on clips with ``t != 0`` only, accuracy of ``p > 0`` against ``t > 0``
  (negative / positive); ``Non0_F1_score``: weighted F1 of the same.
- ``Mult_acc_7``: ``mean(round(clip(p, -3, 3)) == round(clip(t, -3, 3)))`` with numpy's
  round-half-to-even (so 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0); ``Mult_acc_5``: same with [-2, 2].
- ``MAE``: ``mean(|p - t|)``, unclipped; ``Corr``: Pearson's r of ``p`` and ``t``, unclipped.

Values are rounded to ``round_digits`` decimals (MMSA reports 4; ``None`` keeps them raw).
Computation is in float64 (MMSA works in the model's float32; results can differ in the last
reported digit at most in rare ties of the MAE).

Undefined cases, decided here:

- fewer than 2 clips, different lengths, NaN/inf in ``p`` or ``t``: ``ValueError``;
- constant ``p`` or constant ``t``: Pearson's r is undefined; ``Corr`` is ``nan`` and an
  :class:`UndefinedMetricWarning` says why (MMSA's ``np.corrcoef`` also gives nan, with a numpy
  warning). The other metrics are still computed; a constant prediction usually means a
  collapsed model;
- no clip with ``t != 0``: ``Non0_acc_2`` and ``Non0_F1_score`` are ``nan``, with the same warning.
"""
from __future__ import annotations

import warnings
from typing import Dict, Optional

import numpy as np
from sklearn.metrics import f1_score

METRIC_KEYS = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score",
               "Mult_acc_5", "Mult_acc_7", "MAE", "Corr")


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is undefined for these inputs and was set to nan."""


def _flat(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64).reshape(-1)
    if not np.isfinite(a).all():
        n_nan = int(np.isnan(a).sum())
        raise ValueError(f"{name} has {n_nan} NaN and {int((~np.isfinite(a)).sum()) - n_nan} inf values; "
                         "metrics need finite numbers (a NaN prediction usually means the training diverged)")
    return a


def _acc_f1(p_bin: np.ndarray, t_bin: np.ndarray):
    acc = float(np.mean(p_bin == t_bin))
    f1 = float(f1_score(t_bin, p_bin, average="weighted", zero_division=0))
    return acc, f1


def multiclass_acc(pred, true, bound: float) -> float:
    """``mean(round(clip(pred)) == round(clip(true)))`` with clip to [-bound, bound], round half to even."""
    p = np.round(np.clip(pred, -bound, bound))
    t = np.round(np.clip(true, -bound, bound))
    return float(np.mean(p == t))


def msa_metrics(pred, true, *, round_digits: Optional[int] = 4) -> Dict[str, float]:
    """MMSA's regression metrics for predictions ``pred`` and labels ``true`` (any shape, same size).

    Accepts numpy arrays, torch tensors or lists. Returns a dict with :data:`METRIC_KEYS`.
    """
    p, t = _flat(pred, "pred"), _flat(true, "true")
    if p.size != t.size:
        raise ValueError(f"pred has {p.size} values but true has {t.size}; pass one prediction per clip")
    if p.size < 2:
        raise ValueError(f"need at least 2 clips to compute the metrics (correlation), got {p.size}")
    has0_acc, has0_f1 = _acc_f1(p >= 0, t >= 0)
    nz = t != 0
    if nz.any():
        non0_acc, non0_f1 = _acc_f1(p[nz] > 0, t[nz] > 0)
    else:
        warnings.warn("every label is 0, so Non0_acc_2 and Non0_F1_score are undefined (nan)",
                      UndefinedMetricWarning, stacklevel=2)
        non0_acc = non0_f1 = float("nan")
    if np.ptp(p) == 0 or np.ptp(t) == 0:
        which = "pred" if np.ptp(p) == 0 else "true"
        hint = " (a constant prediction usually means a collapsed model)" if which == "pred" else ""
        warnings.warn(f"{which} is constant ({(p if which == 'pred' else t)[0]:g}), so Pearson's Corr is "
                      f"undefined and set to nan{hint}", UndefinedMetricWarning, stacklevel=2)
        corr = float("nan")
    else:
        corr = float(np.corrcoef(p, t)[0, 1])
    out = {
        "Has0_acc_2": has0_acc, "Has0_F1_score": has0_f1,
        "Non0_acc_2": non0_acc, "Non0_F1_score": non0_f1,
        "Mult_acc_5": multiclass_acc(p, t, 2.0), "Mult_acc_7": multiclass_acc(p, t, 3.0),
        "MAE": float(np.mean(np.abs(p - t))), "Corr": corr,
    }
    if round_digits is not None:
        out = {k: round(v, round_digits) for k, v in out.items()}
    return out
