"""``load_mmsa``: a dataset pickle on disk -> checked, cleaned train/valid/test torch datasets.

Steps, each in its own module: find the file (:mod:`.paths`, with an error that says where to get
it), check its SHA-256 (:mod:`.checksums`), unpickle it without running code (:mod:`.safe_pickle`),
read either layout with widths from the file and build padding masks (:mod:`.formats`), count and
treat NaN/inf (:mod:`.cleaning`), wrap the splits (:mod:`.dataset`).
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Dict, Optional, Union

from . import checksums
from .cleaning import DataCleaningWarning, clean_modalities
from .dataset import MSADataset, MSADatasetSplits
from .formats import SPLITS, ParsedData, parse_dataset
from .paths import missing_message, resolve
from .safe_pickle import safe_load, size_bound

PathLike = Union[str, "os.PathLike[str]"]


def load_mmsa(path: PathLike, *, verify: bool = True, inf_policy: str = "zero",
              sha256: Optional[str] = None) -> MSADatasetSplits:
    """Load an MMSA (aligned or unaligned, MOSI or MOSEI) or MulT-layout pickle.

    Args:
        path: the ``.pkl`` file, or one of ``"mosi"``, ``"mosei"``, ``"mosi_aligned"``,
            ``"mosei_aligned"`` for the default places (``$INFOENH_DATA`` or ``~/data``, then
            ``MOSI/Processed/unaligned_50.pkl`` etc.).
        verify: check the SHA-256 against ``sha256`` or the table of known sums
            (:mod:`infoenh.data.checksums`); an unknown file loads with an ``UnknownChecksumWarning``
            (files made by the synthetic generator are exempt from that warning).
        inf_policy: ``"zero"`` replaces NaN/±inf features with 0 as MMSA does for audio -inf
            (counted in ``ds.report``, with a warning), ``"error"`` refuses such a file.
        sha256: the published SHA-256 of this file; a mismatch raises ``ChecksumError``.

    Returns:
        :class:`MSADatasetSplits` with ``ds["train"]``, ``ds["valid"]``, ``ds["test"]``;
        ``ds.dims``, ``ds.synthetic``, ``ds.report`` (non-finite counts), ``ds.meta``.
    """
    p = resolve(path)
    if not p.exists():
        raise FileNotFoundError(missing_message(p))
    if p.is_dir():
        raise IsADirectoryError(f"'{p}' is a folder; pass the pickle inside it, e.g. "
                                f"'{p / 'Processed' / 'unaligned_50.pkl'}'")
    if sha256 is not None and not verify:
        raise ValueError("sha256 was given but verify=False; drop one of them")
    check = (checksums.verify_file(p, sha256, warn=False, match_names=False) if verify
             else checksums.ChecksumResult("skipped", None, None))
    raw = safe_load(p)
    # the unpickler's size bound also caps what lists in the file may expand into
    parsed = parse_dataset(raw, source=f"'{p}'", max_bytes=size_bound(p.stat().st_size))
    del raw
    if check.status == "unknown" and parsed.synthetic is None:
        # a real file named like a published one must have the published sum; a synthetic testbed
        # put at a real file's path is exempt (it says what it is)
        checksums.check_known_name(p, check.sha256)
        checksums.warn_unknown(str(p), check.sha256)
    meta = {"path": str(p), "checksum": check.status, "sha256": check.sha256, "known_as": check.known_as}
    return _build(parsed, inf_policy, meta)


def from_dict(data: Dict[str, Any], *, inf_policy: str = "zero", source: str = "in-memory data") -> MSADatasetSplits:
    """Same as :func:`load_mmsa` for an already unpickled dict (no checksum). Arrays may be modified
    in place (cast/cleaned); pass a copy to keep the original."""
    parsed = parse_dataset(data, source=source)
    return _build(parsed, inf_policy, {"path": None, "checksum": "skipped", "sha256": None, "known_as": None})


def _build(parsed: ParsedData, inf_policy: str, meta: Dict[str, Any]) -> MSADatasetSplits:
    report = clean_modalities({s: a.features for s, a in parsed.splits.items()}, inf_policy)
    _warn_notes(parsed)
    synthetic = parsed.synthetic is not None
    splits = {s: MSADataset(parsed.splits[s], s, synthetic=synthetic) for s in SPLITS}
    meta.update(layout=parsed.layout, aligned=parsed.aligned, mask_rules=parsed.mask_rules,
                inf_policy=inf_policy, notes=parsed.notes)
    return MSADatasetSplits(splits, report, parsed.synthetic, meta)


def _warn_notes(parsed: ParsedData) -> None:
    n = parsed.notes
    if n["empty_masks"]:
        warnings.warn(f"samples with no real step got their first step marked real: {n['empty_masks']}",
                      DataCleaningWarning, stacklevel=3)
    if n["clipped_lengths"]:
        warnings.warn(f"lengths above the sequence length were clipped to it: {n['clipped_lengths']}",
                      DataCleaningWarning, stacklevel=3)
    out = {s: int(((a.labels < -3) | (a.labels > 3)).sum()) for s, a in parsed.splits.items()}
    if any(out.values()):
        warnings.warn(f"labels outside [-3, 3] (the MOSI/MOSEI range) per split: {out}; metrics clip them",
                      DataCleaningWarning, stacklevel=3)
