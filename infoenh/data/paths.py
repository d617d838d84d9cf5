"""Where the datasets live, and what to tell a user who does not have them yet.

The default place is ``$INFOENH_DATA`` if set, else ``~/data``, with MMSA's own tree below it::

    ~/data/MOSI/Processed/unaligned_50.pkl     ~/data/MOSEI/Processed/unaligned_50.pkl
    ~/data/MOSI/Processed/aligned_50.pkl       ~/data/MOSEI/Processed/aligned_50.pkl

:func:`resolve` accepts a path, or one of the names ``mosi``, ``mosei``, ``mosi_aligned``,
``mosei_aligned`` for those default places.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]

MMSA_URL = "https://github.com/thuiar/MMSA"
NAMES = {
    "mosi": ("MOSI", "unaligned_50.pkl"),
    "mosi_aligned": ("MOSI", "aligned_50.pkl"),
    "mosei": ("MOSEI", "unaligned_50.pkl"),
    "mosei_aligned": ("MOSEI", "aligned_50.pkl"),
}


def data_root() -> Path:
    """``$INFOENH_DATA`` or ``~/data``."""
    return Path(os.environ.get("INFOENH_DATA") or Path.home() / "data").expanduser()


def relative_parts(dataset: str = "mosi", aligned: bool = False) -> Tuple[str, str, str]:
    """MMSA's path for a file below the data root (and inside MMSA's Google Drive folder), e.g.
    ``("MOSI", "Processed", "unaligned_50.pkl")``."""
    key = str(dataset).lower() + ("_aligned" if aligned else "")
    if key not in NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; expected 'mosi' or 'mosei'")
    folder, fname = NAMES[key]
    return folder, "Processed", fname


def default_path(dataset: str = "mosi", aligned: bool = False, root: Optional[PathLike] = None) -> Path:
    """``<root>/<MOSI|MOSEI>/Processed/<aligned_50|unaligned_50>.pkl``."""
    parts = relative_parts(dataset, aligned)
    base = data_root() if root is None else Path(root).expanduser()
    return base.joinpath(*parts)


def resolve(path_or_name: PathLike) -> Path:
    """A dataset name (see module docstring) becomes its default path; a path is expanded.
    ``mosi`` is ``$INFOENH_MOSI`` when that is set (any MMSA-format file of the reader's)."""
    s = os.fspath(path_or_name)
    if s.lower() == "mosi" and os.environ.get("INFOENH_MOSI", "").strip():
        return Path(os.environ["INFOENH_MOSI"].strip()).expanduser()
    if s.lower() in NAMES:
        folder, fname = NAMES[s.lower()]
        return default_path(folder, aligned=fname.startswith("aligned"))
    return Path(s).expanduser()


def missing_message(path: Path) -> str:
    """The error text for a dataset file that is not there: where to get it and where to put it."""
    if path.name not in ("unaligned_50.pkl", "aligned_50.pkl") and path.suffix == ".pkl":
        return (f"No dataset file at '{path}': check the path. MMSA's processed CMU-MOSI / CMU-MOSEI pickles "
                f"are fetched by `infoenh data download mosi --variant unaligned` (or mosei, aligned), which puts "
                f"them under {data_root()}; a SYNTHETIC testbed is made by `infoenh data synth --out testbed.pkl`.")
    name = path.name if path.suffix == ".pkl" else "unaligned_50.pkl"
    folder = "MOSEI" if "mosei" in path.as_posix().lower() else "MOSI"
    return (
        f"No dataset file at '{path}'.\n"
        f"The processed CMU-MOSI / CMU-MOSEI pickles are distributed by the MMSA project: open "
        f"{MMSA_URL} and follow the dataset links in its README (Google Drive or Baidu Netdisk), which "
        f"also list each file's SHA-256. The data are CMU's, for research use; they are not shipped here.\n"
        f"Put the file at {data_root() / folder / 'Processed' / name} (the default place; set "
        f"INFOENH_DATA to use another root){' or set INFOENH_MOSI=FILE' if folder == 'MOSI' else ''} or pass the "
        f"file's path (the command line's PATH, or load_mmsa's first argument). To fetch it from MMSA's Google "
        f"Drive folder (verified against the published SHA-256): infoenh data download "
        f"{folder.lower()} --variant {'aligned' if name.startswith('aligned') else 'unaligned'} "
        f"(needs `pip install infoenh[download]`).\n"
        f"To try the code without the data, make a SYNTHETIC testbed: infoenh data synth --out testbed.pkl"
    )
