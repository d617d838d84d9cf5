"""Non-finite feature values: count them, then zero them (MMSA's policy) or refuse the file.

MMSA's loader casts the features to float32 and sets audio ``-inf`` (COVAREP writes it for
log-energies of silence) to 0. :func:`clean_modalities` does the same for every modality and for
NaN and ``+inf`` too, counting each kind per split and modality, so that no non-finite value
reaches a model unnoticed:

- ``policy="zero"`` (default, MMSA): replace NaN/+inf/-inf with 0 in place, count them;
- ``policy="error"``: raise :class:`NonFiniteError` naming every split/modality with its counts.

Counts are taken after the float32 cast, i.e. on the values a model would see (a float64 value
beyond float32's range counts as inf). After cleaning every array is checked to be finite.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Dict, Mapping

import numpy as np

POLICIES = ("zero", "error")
KINDS = ("nan", "posinf", "neginf")
_CHUNK = 256  # samples per block: bounds the temporary boolean arrays on MOSEI-sized files


class NonFiniteError(ValueError):
    """The features hold NaN/inf and the policy is ``"error"``."""


class DataCleaningWarning(UserWarning):
    """Non-finite feature values were replaced by 0."""


@dataclass
class CleaningReport:
    """Non-finite counts: ``counts[split][modality] == {"nan": n, "posinf": n, "neginf": n}``."""

    policy: str = "zero"
    counts: Dict[str, Dict[str, Dict[str, int]]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(n for mods in self.counts.values() for c in mods.values() for n in c.values())

    def nonzero(self) -> Dict[str, Dict[str, Dict[str, int]]]:
        """Only the split/modality entries with at least one non-finite value."""
        return {s: {m: c for m, c in mods.items() if sum(c.values())}
                for s, mods in self.counts.items() if any(sum(c.values()) for c in mods.values())}

    def __str__(self) -> str:
        if not self.total:
            return f"no NaN/inf values (policy {self.policy!r})"
        parts = []
        for s, mods in self.nonzero().items():
            for m, c in mods.items():
                kinds = ", ".join(f"{n} {k}" for k, n in c.items() if n)
                parts.append(f"{s}/{m}: {kinds}")
        action = "replaced by 0" if self.policy == "zero" else "found"
        return f"{self.total} non-finite values {action} (policy {self.policy!r}): " + "; ".join(parts)


def count_nonfinite(x: np.ndarray) -> Dict[str, int]:
    """Counts of NaN, +inf and -inf in a float array, by blocks of samples along axis 0."""
    out = dict.fromkeys(KINDS, 0)
    for i in range(0, max(len(x), 1), _CHUNK):
        blk = x[i:i + _CHUNK]
        if blk.size == 0 or np.isfinite(blk).all():
            continue
        out["nan"] += int(np.isnan(blk).sum())
        out["posinf"] += int(np.isposinf(blk).sum())
        out["neginf"] += int(np.isneginf(blk).sum())
    return out


def zero_nonfinite_(x: np.ndarray) -> None:
    """Set NaN/±inf entries of ``x`` to 0 in place, block by block."""
    for i in range(0, len(x), _CHUNK):
        blk = x[i:i + _CHUNK]
        bad = ~np.isfinite(blk)
        if bad.any():
            blk[bad] = 0


def clean_modalities(arrays: Dict[str, Dict[str, np.ndarray]], policy: str = "zero",
                     *, warn: bool = True) -> CleaningReport:
    """Count and treat non-finite values of ``arrays[split][modality]`` (float32, writable, in place).

    Returns the :class:`CleaningReport`. With ``policy="error"`` raises :class:`NonFiniteError`
    listing every offending split/modality. With ``policy="zero"`` and ``warn=True`` a
    :class:`DataCleaningWarning` summarises the replaced values when there are any.
    """
    if policy not in POLICIES:
        raise ValueError(f"inf_policy must be one of {POLICIES}, got {policy!r}")
    report = CleaningReport(policy=policy)
    for split, mods in arrays.items():
        report.counts[split] = {m: count_nonfinite(x) for m, x in mods.items()}
    if report.total and policy == "error":
        raise NonFiniteError(
            f"{report}. Use inf_policy='zero' to replace them by 0 as MMSA does (it zeroes audio -inf), "
            "or fix the file."
        )
    if report.total:
        for mods in arrays.values():
            for x in mods.values():
                zero_nonfinite_(x)
        if warn:
            warnings.warn(str(report), DataCleaningWarning, stacklevel=4)
    assert_finite(arrays)
    return report


def assert_finite(arrays: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Raise if any array still holds a non-finite value (the guarantee models rely on)."""
    for split, mods in arrays.items():
        for m, x in mods.items():
            c = count_nonfinite(x)
            if sum(c.values()):
                raise NonFiniteError(f"{split}/{m} still holds non-finite values after cleaning: {c}")
