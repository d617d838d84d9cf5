"""SHA-256 sums of known dataset files, and the check against them.

``KNOWN_SHA256`` maps a file's path *suffix* (its last components, e.g.
``"MOSI/Processed/unaligned_50.pkl"``) to the SHA-256 (64 lowercase hex digits) that the
publisher lists. It ships **empty**: this project has not copied the sums from MMSA's README and
will not guess them. To add one (maintainers, in this file; users, at run time)::

    from infoenh.data import checksums
    checksums.KNOWN_SHA256["MOSI/Processed/unaligned_50.pkl"] = "<64 hex digits from thuiar/MMSA README>"

Only copy a sum from the publisher (github.com/thuiar/MMSA, README, dataset section); a sum
computed from your own download proves nothing about it. For a single file, pass the published
sum to ``load_mmsa(path, sha256=...)`` or ``infoenh data check PATH --sha256 ...`` instead.

How a file is judged (:func:`verify_file`):

1. a sum given by the caller must match, else :class:`ChecksumError`;
2. else a sum equal to a value of the table is *verified* (the file's name does not matter);
3. else a file whose path ends with a key of the table but has another sum raises
   :class:`ChecksumError` (a corrupt or modified copy of a known file);
4. else the file is *unknown*: it loads, with an :class:`UnknownChecksumWarning` naming the file
   and its sum (``warn=False`` leaves the warning to the caller).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

KNOWN_SHA256: Dict[str, str] = {}
"""Path suffix -> published SHA-256. Empty on purpose: see the module docstring to add sums."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the expected one."""


class UnknownChecksumWarning(UserWarning):
    """A file is not in the table of known sums and no sum was given; it was loaded unverified."""


class ChecksumResult(NamedTuple):
    status: str               # "verified" | "unknown" | "skipped"
    sha256: Optional[str]     # the file's sum (None when skipped)
    known_as: Optional[str]   # table key that matched, or "given" for a caller's sum


def normalize_sha256(value: str, name: str = "sha256") -> str:
    """Return ``value`` as 64 lowercase hex digits, or raise a ValueError naming ``name``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a hex string, got {type(value).__name__}")
    v = value.strip().lower()
    if not _HEX64.match(v):
        raise ValueError(f"{name} must be 64 hexadecimal digits (a SHA-256), got {value!r}")
    return v


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file as 64 lowercase hex digits, read in ``chunk_size`` blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def lookup(path: PathLike, table: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Table key whose path suffix matches ``path`` (longest key first), or None."""
    table = KNOWN_SHA256 if table is None else table
    posix = Path(os.path.abspath(path)).as_posix()
    for key in sorted(table, key=len, reverse=True):
        k = key.strip("/")
        if posix == k or posix.endswith("/" + k):
            return key
    return None


def verify_file(path: PathLike, expected: Optional[str] = None, *, table: Optional[Dict[str, str]] = None,
                warn: bool = True) -> ChecksumResult:
    """Check ``path`` against ``expected`` or the table of known sums (rules in the module docstring)."""
    table = KNOWN_SHA256 if table is None else table
    actual = sha256_file(path)
    name = os.fspath(path)
    if expected is not None:
        exp = normalize_sha256(expected, "expected sha256")
        if actual != exp:
            raise ChecksumError(
                f"SHA-256 of '{name}' is {actual}, expected {exp}: the file is corrupt, incomplete or "
                "not the one you meant. Download it again from the official source."
            )
        return ChecksumResult("verified", actual, "given")
    for key, value in table.items():
        if normalize_sha256(value, f"KNOWN_SHA256[{key!r}]") == actual:
            return ChecksumResult("verified", actual, key)
    key = lookup(path, table)
    if key is not None:
        raise ChecksumError(
            f"'{name}' looks like the known file {key!r} but its SHA-256 is {actual}, not the published "
            f"{table[key]}: the copy is corrupt, incomplete or modified. Download it again from the "
            "MMSA project (github.com/thuiar/MMSA)."
        )
    if warn:
        warn_unknown(name, actual)
    return ChecksumResult("unknown", actual, None)


def warn_unknown(name: str, actual: str) -> None:
    """Warn that ``name`` (with sum ``actual``) could not be verified."""
    warnings.warn(
        f"'{name}' is not a known dataset file, so it was not verified: its SHA-256 is {actual}. "
        "Compare it with the sum the publisher lists, or pass that sum as sha256=... "
        "(see infoenh.data.checksums).",
        UnknownChecksumWarning,
        stacklevel=3,
    )
