"""What a dataset file is, said the same way everywhere: MMSA's published file, another file in
MOSI's format, or the SYNTHETIC testbed.

    ds, ident = load_labelled(mosi_path())     # $INFOENH_MOSI, else the default MOSI path
    ident.kind     # "mmsa" | "other" | "synthetic"
    ident.label    # e.g. "MOSI-format file mine.pkl, sha256 0123456789ab, not MMSA's published file"

A file is **MMSA's published file** only when its SHA-256 is one of the sums MMSA publishes
(:data:`infoenh.data.checksums.KNOWN_SHA256`), whatever it is called. Any other file that passes
the loader's full format check (safe unpickling, both layouts, shapes, NaN/inf) is **a MOSI-format
file**: it loads, and its label names it with the first 12 hex digits of its sum and says it is not
MMSA's file, so its numbers are never read as MMSA's MOSI (chapter 7 keeps them out of the paper
comparison). A file carrying the generator's marker is the **synthetic testbed**, whatever its sum.

``INFOENH_MOSI=/path/to/file.pkl`` points chapter 7 (and ``--data mosi`` on the command line)
at any MMSA-format file.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple, Optional, Tuple, Union

from . import checksums
from .paths import default_path, missing_message

PathLike = Union[str, "os.PathLike[str]"]
ENV = "INFOENH_MOSI"


class DataIdentity(NamedTuple):
    kind: str                 # "mmsa" | "other" | "synthetic"
    name: str                 # the file's name (no folder: nothing of this machine)
    sha256: Optional[str]
    known_as: Optional[str]   # for "mmsa": the published file, e.g. "MOSI/Processed/unaligned_50.pkl"
    label: str                # the one line every banner, table and results.json uses
    tag: str                  # short, for table titles: "" for MMSA's MOSI, else what it is

    @property
    def is_mmsa_mosi(self) -> bool:
        """MMSA's published CMU-MOSI (the only data whose numbers may stand beside the paper's)."""
        return self.kind == "mmsa" and (self.known_as or "").startswith("MOSI/")


def mosi_path() -> Path:
    """``$INFOENH_MOSI`` (any MMSA-format file) when set, else the default MOSI path
    (``$INFOENH_DATA`` or ``~/data``, then ``MOSI/Processed/unaligned_50.pkl``)."""
    chosen = os.environ.get(ENV, "").strip()
    return Path(chosen).expanduser() if chosen else default_path("mosi")


def identify(name: str, sha256: Optional[str], synthetic: bool) -> DataIdentity:
    """The identity of a file called ``name`` with sum ``sha256`` (``synthetic``: it carries the
    generator's marker)."""
    short = (sha256 or "?")[:12]
    if synthetic:
        return DataIdentity("synthetic", name, sha256, None, f"SYNTHETIC testbed {name} (not MOSI)", "SYNTHETIC")
    published = {v: k for k, v in checksums.KNOWN_SHA256.items()}
    key = published.get(sha256 or "")
    if key is not None:
        dataset = "CMU-" + key.split("/")[0]
        return DataIdentity("mmsa", name, sha256, key, f"{dataset}, MMSA's published {key} (sha256 {short})",
                            "" if key.startswith("MOSI/") else dataset)
    label = f"MOSI-format file {name}, sha256 {short}, not MMSA's published file"
    return DataIdentity("other", name, sha256, None, label, f"MOSI-format file {name}, not MMSA's")


def load_labelled(path: PathLike, *, inf_policy: str = "zero") -> Tuple[object, DataIdentity]:
    """Load ``path`` with the full format check and say what it is: ``(ds, identity)``.

    A file with a published sum is MMSA's, whatever its name; any other MMSA-format file loads too
    (no ChecksumError for a name that looks like MMSA's: the label says it is not MMSA's file)."""
    from .mmsa import load_mmsa

    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise FileNotFoundError(missing_message(p) + (f" ({ENV} is set to '{p}')" if os.environ.get(ENV) else ""))
    if p.is_dir():
        raise IsADirectoryError(f"'{p}' is a folder; point {ENV} (or the path) at the .pkl file inside it")
    sha = checksums.sha256_file(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", checksums.UnknownChecksumWarning)   # the label says it instead
        ds = load_mmsa(p, verify=False, inf_policy=inf_policy)
    ident = identify(p.name, sha, bool(ds.synthetic))
    ds.meta.update(sha256=sha, checksum="verified" if ident.kind == "mmsa" else "unknown",
                   known_as=ident.known_as, identity=ident.label)
    return ds, ident
