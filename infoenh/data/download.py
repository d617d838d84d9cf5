"""Fetch a dataset file safely: resume, verify, then move into place.

:func:`download` takes an ``http(s)`` URL (fetched with ``urllib``) or a Google Drive file id / URL
(fetched with ``gdown``, the optional extra ``pip install 'infoenh[download]'``). In both cases:

1. bytes go to ``DEST.part``; an interrupted HTTP transfer keeps it, and the next call asks the
   server for the rest (``Range: bytes=<size>-``), starting over if the server ignores the range;
2. the finished ``.part`` is hashed; with an expected SHA-256 (argument or the table in
   :mod:`infoenh.data.checksums`) a mismatch deletes it and raises :class:`ChecksumError`, so a
   bad download never leaves a file at ``DEST``;
3. only then ``os.replace`` moves it to ``DEST`` (atomic on one file system).

Without an expected sum the file is kept with an ``UnknownChecksumWarning`` giving its SHA-256.
"""
from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Optional, Union

from . import checksums
from .checksums import ChecksumError, UnknownChecksumWarning, normalize_sha256, sha256_file

PathLike = Union[str, "os.PathLike[str]"]
_DRIVE_ID = re.compile(r"^[A-Za-z0-9_-]{10,}$")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(RuntimeError):
    """The transfer failed; the message says whether a partial file was kept for resuming."""


def download(url_or_gdrive_id: str, dest: PathLike, sha256: Optional[str] = None, *, resume: bool = True,
             timeout: float = 60.0, chunk_size: int = 1 << 20, quiet: bool = False) -> Path:
    """Download ``url_or_gdrive_id`` to ``dest`` (a file path) and return ``dest`` as a Path.

    ``sha256``: the published sum (else looked up in ``checksums.KNOWN_SHA256`` by ``dest``'s name).
    ``resume``: reuse ``dest.part`` from an interrupted run. If ``dest`` already exists it is
    checked against the expected sum (when there is one) and returned without downloading.
    """
    dest = Path(dest).expanduser()
    if dest.is_dir():
        raise IsADirectoryError(f"dest '{dest}' is a folder; give the file path, e.g. '{dest / 'unaligned_50.pkl'}'")
    expected = normalize_sha256(sha256) if sha256 is not None else _table_sum(dest)
    if dest.exists():
        if expected is not None and sha256_file(dest) != expected:
            raise ChecksumError(f"'{dest}' exists but its SHA-256 is not {expected}; delete it and download again")
        _say(quiet, f"'{dest}' already exists" + (" and its SHA-256 matches" if expected else "; not downloading"))
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    kind = source_kind(url_or_gdrive_id)
    if kind == "http":
        _fetch_http(url_or_gdrive_id, part, resume=resume, timeout=timeout, chunk_size=chunk_size, quiet=quiet)
    else:
        _fetch_gdrive(url_or_gdrive_id, part, kind=kind, resume=resume, quiet=quiet)
    actual = sha256_file(part)
    if expected is not None and actual != expected:
        part.unlink()
        raise ChecksumError(
            f"downloaded file has SHA-256 {actual}, expected {expected}; it was deleted and nothing was written "
            f"to '{dest}'. The source may have changed or the transfer was corrupted: try again, or check the sum.")
    if expected is None:
        warnings.warn(f"'{dest}' was downloaded without a known SHA-256 to check; its sum is {actual}. "
                      "Compare it with the one the publisher lists.", UnknownChecksumWarning, stacklevel=2)
    os.replace(part, dest)
    _say(quiet, f"saved '{dest}' (sha256 {actual})")
    return dest


def source_kind(source: str) -> str:
    """``"http"`` for an http(s) URL, ``"gdrive_url"`` for a Google Drive URL, ``"gdrive_id"`` for a file id."""
    if not isinstance(source, str) or not source:
        raise ValueError(f"expected a URL or a Google Drive file id, got {source!r}")
    low = source.lower()
    if low.startswith(("http://", "https://")):
        host = urllib.parse.urlsplit(low).hostname or ""
        return "gdrive_url" if host.endswith(("drive.google.com", "docs.google.com")) else "http"
    if "://" in source:
        raise ValueError(f"unsupported URL scheme in {source!r}; use http(s) or a Google Drive file id")
    if _DRIVE_ID.match(source):
        return "gdrive_id"
    raise ValueError(f"{source!r} is neither an http(s) URL nor a Google Drive file id "
                     "(the long token in a Drive link, letters/digits/-/_)")


def _table_sum(dest: Path) -> Optional[str]:
    key = checksums.lookup(dest)
    return normalize_sha256(checksums.KNOWN_SHA256[key]) if key is not None else None


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def _fetch_http(url: str, part: Path, *, resume: bool, timeout: float, chunk_size: int, quiet: bool,
                _retried: bool = False) -> None:
    start = part.stat().st_size if (resume and part.exists()) else 0
    if not resume and part.exists():
        part.unlink()
    headers = {"User-Agent": "infoenh-download"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to send: complete already, or a stale partial file
            m = re.match(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") or "")
            if m and int(m.group(1)) == start:
                return
            if not _retried:
                part.unlink()
                return _fetch_http(url, part, resume=False, timeout=timeout, chunk_size=chunk_size,
                                   quiet=quiet, _retried=True)
        raise DownloadError(f"HTTP {exc.code} ({exc.reason}) for {url}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"could not reach {url}: {exc}") from exc
    with resp:
        status = resp.getcode()
        if start and status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != start:
                raise DownloadError(f"server answered the range request for byte {start} with "
                                    f"Content-Range {resp.headers.get('Content-Range')!r}; delete '{part}' and retry")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        elif status == 200:
            if start:
                _say(quiet, f"server ignored the resume request; downloading {url} from the start")
            start, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise DownloadError(f"unexpected HTTP status {status} for {url}")
        with open(part, mode) as f:
            try:
                _copy(resp, f, chunk_size, total, start, quiet, part.name)
            except Exception as exc:
                f.flush()
                got = part.stat().st_size
                raise DownloadError(
                    f"transfer of {url} was interrupted after {got} of {total if total else '?'} bytes "
                    f"({type(exc).__name__}: {exc}); the partial file '{part}' is kept: run the same "
                    "download again to resume") from exc
        got = part.stat().st_size
        if total is not None and got != total:
            raise DownloadError(f"transfer of {url} ended after {got} of {total} bytes; the partial file "
                                f"'{part}' is kept: run the same download again to resume")


def _copy(resp, f, chunk_size: int, total: Optional[int], start: int, quiet: bool, name: str) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name, disable=quiet) as bar:
        while True:
            block = resp.read(chunk_size)
            if not block:
                break
            f.write(block)
            bar.update(len(block))


def _fetch_gdrive(source: str, part: Path, *, kind: str, resume: bool, quiet: bool) -> None:
    try:
        import gdown
    except ImportError as exc:
        raise ImportError(
            "downloading from Google Drive needs the optional package gdown: pip install 'infoenh[download]' "
            "(or pip install gdown). Alternatively download the file in a browser from the MMSA README "
            "(github.com/thuiar/MMSA) and pass its path.") from exc
    if not resume and part.exists():
        part.unlink()
    if kind == "gdrive_url":
        out = gdown.download(url=source, output=str(part), quiet=quiet, fuzzy=True, resume=resume)
    else:
        out = gdown.download(id=source, output=str(part), quiet=quiet, resume=resume)
    if out is None or not part.exists():
        raise DownloadError(
            f"gdown could not fetch {source!r} (the file may be private, moved, or over Google Drive's "
            "download quota). Download it in a browser and pass the path, or try again later.")
