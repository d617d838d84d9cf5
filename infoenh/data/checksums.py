"""SHA-256 sums of known dataset files, and the check against them.

``KNOWN_SHA256`` maps a file's path *suffix* (its last components, e.g.
``"MOSI/Processed/unaligned_50.pkl"``) to the SHA-256 (64 lowercase hex digits) that the
publisher lists: the four feature files whose sums MMSA's README publishes (the block "SHA-256
for feature files" of github.com/thuiar/MMSA). To add one (maintainers, in this file; users, at
run time)::

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

KNOWN_SHA256: Dict[str, str] = {
    "MOSI/Processed/unaligned_50.pkl": "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",
    "MOSI/Processed/aligned_50.pkl": "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",
    "MOSEI/Processed/unaligned_50.pkl": "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",
    "MOSEI/Processed/aligned_50.pkl": "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",
}
"""Path suffix -> SHA-256 published in MMSA's README (see the module docstring to add sums)."""

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


def check_known_name(path: PathLike, actual: str, table: Optional[Dict[str, str]] = None) -> None:
    """Rule 3: raise :class:`ChecksumError` when ``path`` ends like a known file of ``table`` but
    its sum ``actual`` is not the published one."""
    table = KNOWN_SHA256 if table is None else table
    key = lookup(path, table)
    if key is not None:
        raise ChecksumError(
            f"'{os.fspath(path)}' looks like the known file {key!r} but its SHA-256 is {actual}, not the "
            f"published {table[key]}: the copy is corrupt, incomplete or modified. Download it again "
            "from the MMSA project (github.com/thuiar/MMSA), or, if you know it is another release, "
            "load it with load_mmsa(..., verify=False) (`infoenh data check --no-verify`). A MOSI-format file of "
            "your own: point INFOENH_MOSI at it (chapter 7, `infoenh train --data mosi`); it is then labelled "
            "'not MMSA's published file'."
        )


def verify_file(path: PathLike, expected: Optional[str] = None, *, table: Optional[Dict[str, str]] = None,
                warn: bool = True, match_names: bool = True) -> ChecksumResult:
    """Check ``path`` against ``expected`` or the table of known sums (rules in the module docstring).
    ``match_names=False`` skips rule 3 (the caller applies it later with :func:`check_known_name`,
    e.g. once it knows the file is not a synthetic testbed placed at a real file's path)."""
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
    if match_names:
        check_known_name(path, actual, table)
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
