"""Fetch a dataset file safely: resume, verify, then move into place.

:func:`download` takes an ``http(s)`` URL (fetched with ``urllib``) or a Google Drive file id / URL
(fetched with ``gdown``, the optional extra ``pip install 'infoenh[download]'``). In both cases:

1. bytes go to ``DEST.part``. For HTTP, ``DEST.part.json`` records where they came from (the URL,
   the server's ETag / Last-Modified and the length). An interrupted transfer keeps both, and the
   next call asks for the rest (``Range`` with ``If-Range``) only when the record names the same
   URL (and, when the server gave no ETag / Last-Modified, only when a SHA-256 will check the result;
   otherwise it restarts from zero); a ``.part`` without a record, or from another URL, is discarded with a line saying so. A
   server that answers with the whole file (the file changed) restarts the part from zero, and
   HTTP 416 discards it and starts afresh, unless it is the complete file with a matching SHA-256;
2. the received length must equal the server's (``Content-Length`` / ``Content-Range``) and the
   ``expected_size`` argument; a short transfer raises :class:`DownloadError` and keeps the part;
3. the finished ``.part`` is hashed; with an expected SHA-256 (argument or the table in
   :mod:`infoenh.data.checksums`) a mismatch deletes it and raises :class:`ChecksumError`, so a
   bad download never leaves a file at ``DEST``. Without a sum, a ``.pkl`` / ``.pickle`` file
   (or ``kind="pickle"``) must look like a complete pickle (:func:`why_not_a_pickle`): an HTML
   login or quota page, a JSON error or an empty body is refused;
4. only then ``os.replace`` moves it to ``DEST`` (atomic on one file system).

Redirects are followed (at most 10, each one printed) only from http to http(s) and from https to
https. ``timeout`` bounds each network read, ``total_timeout`` the whole transfer. An existing
``DEST`` is kept only after the same checks (its SHA-256, else its content); ``overwrite=True``
downloads it again. Without an expected sum the file is kept with an ``UnknownChecksumWarning``
giving its SHA-256.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import pickletools
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

from . import checksums
from .checksums import ChecksumError, UnknownChecksumWarning, normalize_sha256, sha256_file

PathLike = Union[str, "os.PathLike[str]"]
_DRIVE_ID = re.compile(r"^[A-Za-z0-9_-]{10,}$")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_PICKLE_SUFFIXES = (".pkl", ".pickle")
_KINDS = ("pickle", "any")
_MAX_REDIRECTS = 10
_SNIFF_BYTES = 512
_FULL_CHECK_BYTES = 1 << 20  # files up to this size are parsed opcode by opcode (never executed)
DEFAULT_TOTAL_TIMEOUT = 6 * 3600.0
# opcodes of protocols 0/1 that can open a pickle: they push onto an empty stack (memo reads excluded)
_START_OPCODES = frozenset(c for c, op in pickletools.code2op.items()
                           if op.proto <= 1 and not op.stack_before and op.stack_after and "GET" not in op.name)


class DownloadError(RuntimeError):
    """The transfer failed; the message says whether a partial file was kept for resuming."""


class UnverifiedLengthWarning(UserWarning):
    """The server sent no length and no sum was known: the end of the file could not be checked."""


class _StartAfresh(Exception):
    """Internal: the kept ``.part`` cannot be continued; discard it and download from byte 0."""


def download(url_or_gdrive_id: str, dest: PathLike, sha256: Optional[str] = None, *, resume: bool = True,
             timeout: float = 60.0, chunk_size: int = 1 << 20, quiet: bool = False,
             expected_size: Optional[int] = None, overwrite: bool = False,
             total_timeout: Optional[float] = DEFAULT_TOTAL_TIMEOUT, kind: Optional[str] = None) -> Path:
    """Download ``url_or_gdrive_id`` to ``dest`` (a file path) and return ``dest`` as a Path.

    ``sha256``: the published sum (else looked up in ``checksums.KNOWN_SHA256`` by ``dest``'s name).
    ``resume``: continue ``dest.part`` from an interrupted run of the same URL.
    ``timeout``: seconds for each network read; ``total_timeout``: seconds for the whole HTTP
    transfer (``None``: no bound; Google Drive transfers are bounded by gdown only).
    ``expected_size``: the size in bytes from a listing; the download must have exactly this size.
    ``kind``: ``"pickle"`` checks the content looks like a pickle, ``"any"`` does not; the default
    checks files named ``*.pkl`` / ``*.pickle``. The content check is skipped when a sum matches.
    ``overwrite``: download again even if ``dest`` exists. Otherwise an existing ``dest`` is
    verified (its SHA-256, else its content) and returned without downloading.
    """
    dest = Path(dest).expanduser()
    _check_options(timeout, total_timeout, chunk_size, expected_size, kind)
    if dest.is_dir():
        raise IsADirectoryError(f"dest '{dest}' is a folder; give the file path, e.g. '{dest / 'unaligned_50.pkl'}'")
    expected = normalize_sha256(sha256) if sha256 is not None else _table_sum(dest)
    check_pickle = kind == "pickle" or (kind is None and dest.name.lower().endswith(_PICKLE_SUFFIXES))
    source = source_kind(url_or_gdrive_id)
    if dest.exists() and not overwrite:
        _verify_existing(dest, expected, check_pickle, expected_size, quiet)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if source == "http":
        deadline = None if total_timeout is None else time.monotonic() + total_timeout
        end_verified = _fetch_http(url_or_gdrive_id, part, resume=resume, timeout=timeout, chunk_size=chunk_size,
                                   quiet=quiet, expected_size=expected_size, expected_sum=expected,
                                   deadline=deadline, total_timeout=total_timeout)
    else:
        _fetch_gdrive(url_or_gdrive_id, part, kind=source, resume=resume, quiet=quiet)
        end_verified = _check_size(part, expected_size, url_or_gdrive_id)
    actual = sha256_file(part)
    _accept(part, dest, expected, actual, check_pickle, end_verified)
    os.replace(part, dest)
    _sidecar(part).unlink(missing_ok=True)
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


def why_not_a_pickle(path: PathLike) -> Optional[str]:
    """``None`` when ``path`` looks like a complete pickle, else what it looks like instead.

    The answer completes "the file is ...", e.g. ``"an HTML page (a login or quota page?), not a
    pickle"``. Checked: not empty, no HTML/XML/JSON/text, a pickle's first opcode (protocol 2+
    header, or a protocol 0/1 opcode that can open a pickle), the final STOP opcode; files up to
    1 MiB are parsed opcode by opcode with :mod:`pickletools` (nothing is ever executed).
    """
    size = os.path.getsize(path)
    if size == 0:
        return "empty (0 bytes), not a pickle"
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
    known = _sniff_format(head)
    if known is not None:
        return known
    problem = _pickle_structure_problem(path, head, last, size)
    if problem is not None and _is_text(head):
        return f"text, not a pickle: {_preview(head)}"
    return problem


def _sniff_format(head: bytes) -> Optional[str]:
    """Name HTML, XML, JSON, gzip or zip at the start of ``head`` (none of them opens a pickle)."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data, not a pickle (decompress it first?)"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive, not a pickle (extract the .pkl from it first?)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<"):
        if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text or b"<body" in text:
            return "an HTML page (a login or quota page?), not a pickle"
        if text.startswith(b"<?xml"):
            return f"an XML document (an error message?), not a pickle: {_preview(head)}"
        return f"markup (HTML or XML?), not a pickle: {_preview(head)}"
    if text.startswith((b"{", b"[")):
        return f"JSON (an error message?), not a pickle: {_preview(head)}"
    return None


def _pickle_structure_problem(path: PathLike, head: bytes, last: bytes, size: int) -> Optional[str]:
    """What breaks the pickle structure: the first opcode, the final STOP, or (small files) any opcode."""
    if head[0] == 0x80:
        if len(head) < 2 or not 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
            got = head[1] if len(head) > 1 else "missing"
            return f"not a pickle this Python can read (protocol header 0x80 then {got})"
    elif chr(head[0]) not in _START_OPCODES:
        return f"not a pickle (it starts with the bytes {head[:8].hex(' ')})"
    if last != b".":
        return ("an incomplete pickle (it does not end with the STOP opcode '.'): "
                "the transfer was cut short, or it is not a pickle")
    if size <= _FULL_CHECK_BYTES:
        with open(path, "rb") as f:
            data = f.read()
        try:
            pickletools.dis(io.BytesIO(data), out=_Discard())
        except Exception as exc:  # any parse failure means "not a well-formed pickle"
            return f"not a well-formed pickle ({type(exc).__name__}: {exc})"
    return None


class _Discard:
    """A text sink for :func:`pickletools.dis` (only its errors matter)."""

    def write(self, text: str) -> int:
        return len(text)


def _is_text(head: bytes) -> bool:
    """True when ``head`` is printable UTF-8 (a message, not binary data)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return False
        text = head[:exc.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\t\r\n" for ch in text)


def _preview(head: bytes, n: int = 60) -> str:
    """The first ``n`` characters of ``head`` as a quoted, one-line string."""
    text = head[:n].decode("utf-8", "replace").strip()
    return repr(text + ("..." if len(head) > n else ""))


def _check_options(timeout, total_timeout, chunk_size, expected_size, kind) -> None:
    """Refuse bad keyword values with one message naming the argument and what it accepts."""
    if not _positive_number(timeout) or math.isinf(timeout):
        raise ValueError(f"timeout must be a positive number of seconds (each network read), got {timeout!r}")
    if total_timeout is not None and not _positive_number(total_timeout):
        raise ValueError(f"total_timeout must be a positive number of seconds, or None for no bound, "
                         f"got {total_timeout!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer (bytes), got {chunk_size!r}")
    if expected_size is not None and (isinstance(expected_size, bool) or not isinstance(expected_size, int)
                                      or expected_size < 0):
        raise ValueError(f"expected_size must be the file's size in bytes (an integer >= 0) or None, "
                         f"got {expected_size!r}")
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"kind must be 'pickle', 'any' or None (decide by the file name), got {kind!r}")


def _positive_number(value) -> bool:
    """True for an int/float > 0 that is not NaN (``inf`` passes; bools do not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _table_sum(dest: Path) -> Optional[str]:
    """The published sum for ``dest``'s path suffix in ``checksums.KNOWN_SHA256``, or None."""
    key = checksums.lookup(dest)
    return normalize_sha256(checksums.KNOWN_SHA256[key]) if key is not None else None


def _say(quiet: bool, msg: str) -> None:
    """Print one progress line unless ``quiet``."""
    if not quiet:
        print(msg, flush=True)


def _verify_existing(dest: Path, expected: Optional[str], check_pickle: bool, expected_size: Optional[int],
                     quiet: bool) -> None:
    """Keep an existing ``dest`` only if it passes the checks a fresh download would; else raise."""
    fix = "delete it or pass overwrite=True to download it again"
    size = dest.stat().st_size
    if expected_size is not None and size != expected_size:
        raise DownloadError(f"'{dest}' exists but has {size} bytes, not the expected {expected_size}; {fix}")
    actual = sha256_file(dest)
    if expected is not None:
        if actual != expected:
            raise ChecksumError(f"'{dest}' exists but its SHA-256 is {actual}, not the expected {expected}; {fix}")
        _say(quiet, f"'{dest}' already exists, verified by its SHA-256; not downloading")
        return
    if check_pickle:
        reason = why_not_a_pickle(dest)
        if reason is not None:
            raise DownloadError(f"'{dest}' exists but is {reason}; {fix}")
        _say(quiet, f"'{dest}' already exists, verified by its content only (a complete pickle; no SHA-256 "
                    "known); not downloading")
    else:
        _say(quiet, f"'{dest}' already exists; not verified (no SHA-256 known and no content check for "
                    "this kind of file); not downloading")
    warnings.warn(f"'{dest}' has no known SHA-256 to check; its sum is {actual}. Compare it with the one "
                  "the publisher lists.", UnknownChecksumWarning, stacklevel=3)


def _accept(part: Path, dest: Path, expected: Optional[str], actual: str, check_pickle: bool,
            end_verified: bool) -> None:
    """Raise unless the finished ``part`` may become ``dest``: its sum, else its content and length."""
    reason = why_not_a_pickle(part) if check_pickle else None
    if expected is not None:
        if actual != expected:
            _discard(part)
            looks = f" (the bytes are {reason})" if reason else ""
            raise ChecksumError(
                f"downloaded file has SHA-256 {actual}, expected {expected}{looks}; it was deleted and nothing "
                f"was written to '{dest}'. The source may have changed or the transfer was corrupted: try again, "
                "or check the sum.")
        return
    if reason is not None:
        cut = reason.startswith("an incomplete pickle") and not end_verified
        if cut and _can_resume(part):
            raise DownloadError(f"the server sent {reason}; nothing was written to '{dest}'. The partial file "
                                f"'{part}' is kept: run the same download again to resume")
        _discard(part)
        hint = ("Try again: the server sent no length, so a cut transfer could not be told from the end." if cut
                else "Check the URL (a link that needs a login, or a quota exceeded?) or download the file in a "
                     "browser and pass its path.")
        raise DownloadError(f"the server sent {reason}; it was deleted and nothing was written to '{dest}'. {hint}")
    if not end_verified:
        what = "it looks like a complete pickle" if check_pickle else "its content was not checked"
        warnings.warn(f"the server sent no length for '{dest}', so whether the transfer was complete could "
                      f"not be verified ({what}).", UnverifiedLengthWarning, stacklevel=3)
    warnings.warn(f"'{dest}' was downloaded without a known SHA-256 to check; its sum is {actual}. "
                  "Compare it with the one the publisher lists.", UnknownChecksumWarning, stacklevel=3)


def _check_size(part: Path, expected_size: Optional[int], source: str) -> bool:
    """Compare a finished file with ``expected_size``; True when it was checked."""
    if expected_size is None:
        return False
    got = part.stat().st_size
    if got != expected_size:
        _discard(part)
        raise DownloadError(f"{source!r} gave {got} bytes, not the expected {expected_size}; the file was "
                            "deleted. Check the source, or try again later.")
    return True


# ----------------------------------------------------------------------------------------- HTTP ---

def _sidecar(part: Path) -> Path:
    """``DEST.part.json``: where the bytes of ``DEST.part`` came from."""
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    """Remove a partial file and its record."""
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


def _read_sidecar(part: Path) -> Optional[dict]:
    """The record of ``part`` as a dict with a ``"url"``, or None if missing or unreadable."""
    try:
        meta = json.loads(_sidecar(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("url"), str) else None


def _write_sidecar(part: Path, meta: dict) -> None:
    """Write the record of ``part`` atomically (a torn record would untie the part from its URL)."""
    side = _sidecar(part)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(meta), encoding="utf-8")
    os.replace(tmp, side)


def _validator(meta: dict) -> Optional[str]:
    """The value for ``If-Range``: a strong ETag, else Last-Modified (weak ETags may not be used)."""
    etag = meta.get("etag")
    if isinstance(etag, str) and etag and not etag.startswith("W/"):
        return etag
    modified = meta.get("last_modified")
    return modified if isinstance(modified, str) and modified else None


def _can_resume(part: Path) -> bool:
    """True when ``part`` has a record a later call can resume from (a validator or a length)."""
    meta = _read_sidecar(part)
    return meta is not None and (_validator(meta) is not None or isinstance(meta.get("length"), int))


def _resumable_part(url: str, part: Path, resume: bool, quiet: bool,
                    expected_sum: Optional[str] = None) -> Tuple[int, Optional[dict]]:
    """Bytes of ``part`` that may be continued, with its record; a part that cannot be is discarded.
    Without a validator (ETag / Last-Modified) a part is continued only when a SHA-256 will check
    the result: a length alone cannot tell a changed file from the same one (a spliced file)."""
    if not part.exists():
        _sidecar(part).unlink(missing_ok=True)
        return 0, None
    meta = _read_sidecar(part)
    size = part.stat().st_size
    if not resume:
        reason = "resume=False"
    elif meta is None:
        reason = "there is no record of where it came from"
    elif meta["url"] != url:
        reason = f"it was started from another URL ({meta['url']})"
    elif _validator(meta) is None and not isinstance(meta.get("length"), int):
        reason = "the server gave no ETag, Last-Modified or length to check a resume against"
    elif _validator(meta) is None and expected_sum is None:
        reason = ("the server gave no ETag or Last-Modified and no SHA-256 is known, so the bytes kept cannot be "
                  "shown to come from the same version of the file")
    elif isinstance(meta.get("length"), int) and size > meta["length"]:
        reason = f"it is larger ({size} bytes) than the file ({meta['length']} bytes)"
    else:
        return size, meta
    if size:
        _say(quiet, f"discarding '{part}' ({size} bytes): {reason}; downloading afresh")
    _discard(part)
    return 0, None


def _fetch_http(url: str, part: Path, *, resume: bool, timeout: float, chunk_size: int, quiet: bool,
                expected_size: Optional[int], expected_sum: Optional[str], deadline: Optional[float],
                total_timeout: Optional[float]) -> bool:
    """Fill ``part`` from ``url``; True when its end was verified (a length, or chunked framing)."""
    start, meta = _resumable_part(url, part, resume, quiet, expected_sum)
    opts = dict(timeout=timeout, chunk_size=chunk_size, quiet=quiet, expected_size=expected_size,
                expected_sum=expected_sum, deadline=deadline, total_timeout=total_timeout)
    try:
        return _http_attempt(url, part, start, meta, **opts)
    except _StartAfresh as why:
        _say(quiet, f"discarding '{part}': {why}; downloading {url} afresh")
        _discard(part)
    try:
        return _http_attempt(url, part, 0, None, **opts)
    except _StartAfresh as why:  # only possible for a server that contradicts itself
        raise DownloadError(f"could not download {url}: {why}") from None


def _http_attempt(url: str, part: Path, start: int, meta: Optional[dict], *, timeout: float, chunk_size: int,
                  quiet: bool, expected_size: Optional[int], expected_sum: Optional[str],
                  deadline: Optional[float], total_timeout: Optional[float]) -> bool:
    """One request: from byte 0, or the rest of ``part`` when ``start`` > 0."""
    headers = {"User-Agent": "infoenh-download"}
    if start:
        headers["Range"] = f"bytes={start}-"
        validator = _validator(meta)
        if validator:
            headers["If-Range"] = validator
        else:
            _say(quiet, "the server gave no ETag or Last-Modified: the resume is checked by the file's length, "
                        "then the whole file by its SHA-256")
    resp = _open(url, headers, part, start, meta, timeout=timeout, quiet=quiet, deadline=deadline,
                 total_timeout=total_timeout, expected_sum=expected_sum)
    if resp is True:  # HTTP 416 on a part verified complete
        return True
    with resp:
        total, mode = _plan_write(url, resp, part, start, meta, quiet, expected_size)
        start = start if mode == "ab" else 0
        limit = total if total is not None else expected_size
        _receive(url, resp, part, mode, start, limit, chunk_size=chunk_size, quiet=quiet, deadline=deadline,
                 total_timeout=total_timeout)
        framed = "chunked" in resp.headers.get("Transfer-Encoding", "").lower()
    got = part.stat().st_size
    if limit is not None and got != limit:
        raise DownloadError(f"transfer of {url} ended after {got} of {limit} bytes; the partial file "
                            f"'{part}' is kept: run the same download again to resume")
    return limit is not None or framed


def _open(url: str, headers: dict, part: Path, start: int, meta: Optional[dict], *, timeout: float, quiet: bool,
          deadline: Optional[float], total_timeout: Optional[float], expected_sum: Optional[str]):
    """Send the request through the checked redirects; ``True`` for a 416 on a complete, verified part."""
    left = _time_left(deadline, url, part, total_timeout)
    opener = checked_opener(quiet)
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=min(timeout, left))
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and start:
            if _complete_after_416(exc, part, start, meta, expected_sum):
                return True
            raise _StartAfresh("the server answered HTTP 416 (range not satisfiable) and the part cannot be "
                               "verified as the complete file") from None
        if 300 <= exc.code < 400:
            raise DownloadError(f"the redirects from {url} did not lead to a file (HTTP {exc.code}; at most "
                                f"{_MAX_REDIRECTS} are followed)") from None
        raise DownloadError(f"HTTP {exc.code} ({exc.reason}) for {url}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"could not reach {url}: {exc}") from exc


def _complete_after_416(exc: urllib.error.HTTPError, part: Path, start: int, meta: Optional[dict],
                        expected_sum: Optional[str]) -> bool:
    """HTTP 416 means "already complete" only for a part of the full length with the known SHA-256."""
    m = re.match(r"bytes \*/(\d+)", (exc.headers.get("Content-Range", "") if exc.headers else "") or "")
    total = int(m.group(1)) if m else (meta or {}).get("length")
    return (expected_sum is not None and isinstance(total, int) and total == start
            and sha256_file(part) == expected_sum)


def _plan_write(url: str, resp, part: Path, start: int, meta: Optional[dict], quiet: bool,
                expected_size: Optional[int]) -> Tuple[Optional[int], str]:
    """Check the answer and record it, before any byte is written: (the file's total length or None,
    ``"ab"`` to append or ``"wb"`` to restart)."""
    status = resp.getcode()
    if status not in (200, 206) or (status == 206 and not start):
        raise DownloadError(f"unexpected HTTP status {status} for {url}")
    total = _range_total(resp, start) if status == 206 else _content_length(resp)
    if expected_size is not None and total is not None and total != expected_size:
        raise DownloadError(f"the server says {url} has {total} bytes, not the expected {expected_size}; "
                            "nothing was downloaded (a wrong URL, or the file changed?)")
    if status == 206:
        known = meta.get("length")
        if isinstance(known, int) and total is not None and total != known:
            raise _StartAfresh(f"the file on the server now has {total} bytes, the part was for {known}")
        etag = resp.headers.get("ETag")
        if meta.get("etag") and etag and etag != meta["etag"]:
            raise _StartAfresh(f"the server's ETag changed from {meta['etag']} to {etag}")
        if total is not None and known is None:
            _write_sidecar(part, {**meta, "length": total})
        return total, "ab"
    if start:
        _say(quiet, f"the server sent the whole file instead of the rest (it changed since '{part}' was "
                    "started, or it ignores ranges): restarting from zero")
    _write_sidecar(part, {"url": url, "etag": resp.headers.get("ETag"),
                          "last_modified": resp.headers.get("Last-Modified"), "length": total})
    return total, "wb"


def _content_length(resp) -> Optional[int]:
    """The ``Content-Length`` of a 200 answer, or None when absent or malformed."""
    length = (resp.headers.get("Content-Length") or "").strip()
    return int(length) if length.isdigit() else None


def _range_total(resp, start: int) -> Optional[int]:
    """The full length from a 206's ``Content-Range``, which must start at ``start``."""
    m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "") or "")
    if not m or int(m.group(1)) != start:
        raise _StartAfresh(f"the server answered the request for the bytes from {start} on with "
                           f"Content-Range {resp.headers.get('Content-Range')!r}")
    return int(m.group(3)) if m.group(3) != "*" else None


class _TimeUp(Exception):
    """Internal: ``total_timeout`` ran out during the transfer."""


class _TooLong(Exception):
    """Internal: the server sent more bytes than announced."""


def _time_left(deadline: Optional[float], url: str, part: Path, total_timeout: Optional[float]) -> float:
    """Seconds left before ``deadline`` (``inf`` without one); raise when none are."""
    if deadline is None:
        return math.inf
    left = deadline - time.monotonic()
    if left <= 0:
        raise _time_up_error(url, part, None, total_timeout)
    return left


def _time_up_error(url: str, part: Path, limit: Optional[int], total_timeout: Optional[float]) -> DownloadError:
    """The error for a transfer cut at ``total_timeout`` (the part is kept for a resume)."""
    got = part.stat().st_size if part.exists() else 0
    return DownloadError(
        f"the download of {url} did not finish within total_timeout={total_timeout:g} s ({got} of "
        f"{limit if limit is not None else '?'} bytes so far); the partial file '{part}' is kept: run the same "
        "download again to resume it (or allow more time with total_timeout)")


def _receive(url: str, resp, part: Path, mode: str, start: int, limit: Optional[int], *, chunk_size: int,
             quiet: bool, deadline: Optional[float], total_timeout: Optional[float]) -> None:
    """Write the body to ``part``; on a failure keep what arrived (for a resume) and say so."""
    try:
        with open(part, mode) as f:
            _copy(resp, f, chunk_size, limit, start, quiet, part.name, deadline)
    except _TooLong:
        _discard(part)
        raise DownloadError(f"the server sent more than the {limit} bytes expected for {url}; the partial file "
                            "was deleted (a wrong URL or expected_size?)") from None
    except _TimeUp:
        raise _time_up_error(url, part, limit, total_timeout) from None
    except Exception as exc:
        if deadline is not None and time.monotonic() >= deadline:
            raise _time_up_error(url, part, limit, total_timeout) from exc
        got = part.stat().st_size
        raise DownloadError(
            f"transfer of {url} was interrupted after {got} of {limit if limit is not None else '?'} bytes "
            f"({type(exc).__name__}: {exc}); the partial file '{part}' is kept: run the same "
            "download again to resume") from exc


def _copy(resp, f, chunk_size: int, total: Optional[int], start: int, quiet: bool, name: str,
          deadline: Optional[float] = None) -> None:
    """Copy the body in blocks of at most ``chunk_size`` (``read1``: a slow server cannot hold one read
    past the socket timeout), stopping at ``deadline`` and at more than ``total`` bytes."""
    from tqdm.auto import tqdm

    written = start
    with tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name, disable=quiet) as bar:
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise _TimeUp()
            block = resp.read1(chunk_size)
            if not block:
                break
            written += len(block)
            if total is not None and written > total:
                raise _TooLong()
            f.write(block)
            bar.update(len(block))


def _redirect_refusal(source: str, target: str) -> Optional[str]:
    """Why a redirect from ``source`` to ``target`` is refused, or None: only http -> http(s), https -> https."""
    src = urllib.parse.urlsplit(source).scheme.lower()
    dst = urllib.parse.urlsplit(target).scheme.lower()
    if dst not in ("http", "https"):
        return f"its scheme ({dst + ':' if dst else 'none'}) is not http or https"
    if src == "https" and dst == "http":
        return "it would downgrade https to unencrypted http"
    return None


def checked_opener(quiet: bool = False) -> urllib.request.OpenerDirector:
    """A urllib opener whose redirects go only to http(s), never https -> http, at most
    ``_MAX_REDIRECTS``, each printed unless ``quiet`` (a refused one raises :class:`DownloadError`)."""
    return urllib.request.build_opener(_CheckedRedirects(quiet))


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow at most ``_MAX_REDIRECTS`` redirects, only to http(s) and never https -> http; print each."""

    max_redirections = _MAX_REDIRECTS

    def __init__(self, quiet: bool) -> None:
        super().__init__()
        self.quiet = quiet

    def http_error_302(self, req, fp, code, msg, headers):
        """Check and print the redirect, then let urllib follow it (with its loop detection)."""
        location = headers.get("Location") or headers.get("URI")
        if location:
            target = urllib.parse.urljoin(req.full_url, location.strip())
            refusal = _redirect_refusal(req.full_url, target)
            if refusal is not None:
                fp.close()
                raise DownloadError(f"refused the HTTP {code} redirect from {req.full_url} to {target}: {refusal}")
            _say(self.quiet, f"redirect (HTTP {code}): {req.full_url} -> {target}")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


# --------------------------------------------------------------------------------- Google Drive ---

def _fetch_gdrive(source: str, part: Path, *, kind: str, resume: bool, quiet: bool) -> None:
    """Fill ``part`` with gdown (its own temporary files carry its resume)."""
    try:
        import gdown
    except ImportError as exc:
        raise ImportError(
            "downloading from Google Drive needs the optional package gdown: pip install 'infoenh[download]' "
            "(or pip install gdown). Alternatively download the file in a browser from the MMSA README "
            "(github.com/thuiar/MMSA) and pass its path.") from exc
    if part.exists() and part.stat().st_size:
        # gdown resumes from its own temporary files; a leftover part is not tied to this source
        _say(quiet, f"discarding '{part}': it is not tied to {source!r} (gdown resumes from its own "
                    "temporary files)")
    _discard(part)
    if kind == "gdrive_url":
        out = gdown.download(url=source, output=str(part), quiet=quiet, fuzzy=True, resume=resume)
    else:
        out = gdown.download(id=source, output=str(part), quiet=quiet, resume=resume)
    if out is None or not part.exists():
        raise DownloadError(
            f"gdown could not fetch {source!r} (the file may be private, moved, or over Google Drive's "
            "download quota). Download it in a browser and pass the path, or try again later.")
