"""Find one file inside MMSA's public Google Drive folder by listing folders, then download only it.

MMSA (github.com/thuiar/MMSA) shares its processed pickles as a public Drive *folder*
(:data:`MMSA_FOLDER_ID`) that also holds large raw-video folders. To fetch one file we walk only
the path to it (root -> ``MOSI`` -> ``Processed``), reading one folder page per level, and hand
the file's id to :func:`infoenh.data.download.download` (resume, published SHA-256, atomic move).

How a folder is listed without an API key (:mod:`.drive_pages` parses the pages): first the
embedded folder view ``https://drive.google.com/embeddedfolderview?id=<id>`` (the page Drive serves
today: one link per child), then, if that fails for any reason, the folder page
``https://drive.google.com/drive/folders/<id>`` with its ``_DRIVE_ivd`` script (the older format;
at most about 50 children). The later fields of a child (sizes among them, perhaps) are not
documented, so they are not read: listings give names, ids and kinds.

Every page read is bounded: in time (one deadline for the whole walk, ``total_timeout``, and at
most ``timeout`` seconds per network read), in size (:data:`MAX_PAGE_BYTES`) and in CPU (the
parsers are linear). Every failure is one :class:`DriveListingError` line that ends with the
manual route (:func:`manual_route`).

Both URL templates can be redirected (tests point them at a local server)::

    INFOENH_DRIVE_EMBED_URL=http://127.0.0.1:PORT/embeddedfolderview?id={id}   # the embedded view
    INFOENH_DRIVE_FOLDER_URL=http://127.0.0.1:PORT/drive/folders/{id}          # the _DRIVE_ivd page
    INFOENH_DRIVE_FILE_URL=http://127.0.0.1:PORT/uc?id={id}                    # a file's bytes

Unset, folders come from :data:`EMBED_URL` then :data:`FOLDER_URL` (with only
``INFOENH_DRIVE_FOLDER_URL`` set, only that page is read: nothing goes to Google), and the file
id goes to ``download()`` as a Drive id (through gdown, ``pip install 'infoenh[download]'``).
"""
from __future__ import annotations

import http.client
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from . import checksums, paths
from .download import DownloadError, checked_opener
from .drive_pages import (FOLDER_MIME, SHORTCUT_MIME, DriveEntry, DriveFolder, DriveListingError,  # noqa: F401
                          js_unescape, parse_embedded_page, parse_folder_page, shown, valid_id)

MMSA_FOLDER_ID = "1A2S4pqCHryGmiqnNSPLv7rEg63WvjCSk"
"""MMSA's public Google Drive folder (linked from the thuiar/MMSA README)."""
EMBED_URL = "https://drive.google.com/embeddedfolderview?id={id}&hl=en"
"""The embedded folder view (read first). Env: ``INFOENH_DRIVE_EMBED_URL``."""
FOLDER_URL = "https://drive.google.com/drive/folders/{id}?hl=en"
"""Folder page template; ``hl=en`` keeps the page title in English. Env: ``INFOENH_DRIVE_FOLDER_URL``."""
FILE_URL: Optional[str] = None
"""File URL template, or None to pass the bare Drive id to ``download()``. Env: ``INFOENH_DRIVE_FILE_URL``."""
MAX_PAGE_BYTES = 8 << 20  # a folder page larger than this is not Drive's (MMSA's are tens of KB)
PAGE_TIMEOUT = 120.0      # seconds for one folder page, whatever the overall deadline allows
DEFAULT_LIST_TIMEOUT = 600.0  # the whole walk, when no total_timeout is given
PAGE_LIMIT = 50  # Drive's folder page shows about this many children at most
VARIANTS = ("unaligned", "aligned")
# Drive serves a reduced page to unknown clients; gdown sends a browser User-Agent for folders too.
_USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/120.0.0.0 Safari/537.36")

_FOLDER_LINK = re.compile(r"/folders/([A-Za-z0-9_-]{10,128})")


# ----------------------------------------------------------------------------------------- links

def folder_id_from_url(source: str) -> Optional[str]:
    """The folder id in a Google Drive folder link (``.../drive/folders/<id>``, ``.../drive/u/0/folders/<id>``),
    or None when ``source`` is not such a link."""
    if not isinstance(source, str):
        return None
    low = source.strip().lower()
    if not low.startswith(("http://", "https://", "drive.google.com/")):
        return None
    host = urllib.parse.urlsplit(low if "://" in low else "https://" + low).hostname or ""
    if not host.endswith(("drive.google.com", "docs.google.com")):
        return None
    m = _FOLDER_LINK.search(source)
    return m.group(1) if m else None


# ------------------------------------------------------------------------------------------ network

def folder_url(folder_id: str, template: Optional[str] = None) -> str:
    """The ``_DRIVE_ivd`` page URL for ``folder_id``: ``template``, else ``$INFOENH_DRIVE_FOLDER_URL``,
    else :data:`FOLDER_URL`."""
    return (template or os.environ.get("INFOENH_DRIVE_FOLDER_URL") or FOLDER_URL).format(id=folder_id)


def embed_url(folder_id: str, template: Optional[str] = None, folder_template: Optional[str] = None) -> Optional[str]:
    """The embedded view's URL for ``folder_id``: ``template``, else ``$INFOENH_DRIVE_EMBED_URL``, else
    :data:`EMBED_URL`; None when only the folder page was redirected (``folder_template`` or
    ``$INFOENH_DRIVE_FOLDER_URL`` set without an embedded one), so nothing goes to Google."""
    t = template or os.environ.get("INFOENH_DRIVE_EMBED_URL")
    if t is None and (folder_template or os.environ.get("INFOENH_DRIVE_FOLDER_URL")):
        return None
    return (t or EMBED_URL).format(id=folder_id)


def public_folder_url(folder_id: str) -> str:
    """The link a person opens in a browser."""
    return f"https://drive.google.com/drive/folders/{folder_id}"


def check_id(value: str, what: str = "Google Drive folder id") -> str:
    """``value`` when it is a Drive id (:func:`valid_id`); else a ValueError saying what one looks like."""
    if not valid_id(value):
        raise ValueError(f"{shown(str(value)[:100])!r} is not a {what}: Drive ids are 10 to 128 letters, digits, "
                         "'-' or '_' (the long token in a Drive link)")
    return value


def deadline_after(total_timeout: Optional[float]) -> float:
    """A ``time.monotonic()`` deadline ``total_timeout`` seconds from now (default :data:`DEFAULT_LIST_TIMEOUT`)."""
    t = DEFAULT_LIST_TIMEOUT if total_timeout is None else float(total_timeout)
    if not t > 0 or math.isnan(t):
        raise ValueError(f"total_timeout must be a positive number of seconds, got {total_timeout!r}")
    return time.monotonic() + t


def _read_page(url: str, folder_id: str, timeout: float, deadline: float) -> str:
    """GET ``url`` and return its text: at most :data:`MAX_PAGE_BYTES`, finished by ``deadline``
    (each read waits at most ``timeout`` seconds). Every failure is a one-line DriveListingError."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DriveListingError(f"ran out of time (the overall deadline) before Drive folder {folder_id} was listed")
    page_deadline = min(deadline, time.monotonic() + PAGE_TIMEOUT)
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Language": "en"})
    try:
        with checked_opener(quiet=True).open(req, timeout=min(timeout, left)) as resp:
            chunks, size = [], 0
            while True:
                if time.monotonic() > page_deadline:
                    raise DriveListingError(
                        f"the page for Drive folder {folder_id} at {url} was still arriving after "
                        f"{min(PAGE_TIMEOUT, left):.0f} s (a stalled or hostile server); gave up")
                block = resp.read1(1 << 16)
                if not block:
                    break
                size += len(block)
                if size > MAX_PAGE_BYTES:
                    raise DriveListingError(f"the page for Drive folder {folder_id} at {url} is larger than "
                                            f"{MAX_PAGE_BYTES >> 20} MiB; a folder page is far smaller, so it was "
                                            "not read further")
                chunks.append(block)
            charset = resp.headers.get_content_charset() or "utf-8"
            announced = (resp.headers.get("Content-Length") or "").strip()
            if announced.isdigit() and int(announced) != size:
                raise DriveListingError(f"the page for Drive folder {folder_id} at {url} ended after {size} of the "
                                        f"{announced} bytes announced (a cut connection); try again")
    except urllib.error.HTTPError as exc:
        exc.close()
        hint = (" (no such folder, or it is not shared publicly)" if exc.code in (403, 404)
                else " (Drive is rate-limiting; wait and retry)" if exc.code == 429 else "")
        raise DriveListingError(f"HTTP {exc.code} ({shown(str(exc.reason))[:80]}) for Drive folder {folder_id} "
                                f"at {url}{hint}") from None
    except (DriveListingError, DownloadError):
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        why = shown(f"{type(exc).__name__}: {exc}")[:200]
        if time.monotonic() >= deadline:
            why = "ran out of time (the overall deadline)"
        raise DriveListingError(f"could not read {url} to list Drive folder {folder_id} ({why})") from None
    raw = b"".join(chunks)
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know: Drive's pages are UTF-8
        return raw.decode("utf-8", errors="replace")


def fetch_folder(folder_id: str, *, url_template: Optional[str] = None, embed_template: Optional[str] = None,
                 timeout: float = 30.0, deadline: Optional[float] = None) -> DriveFolder:
    """List one folder: the embedded view first, the ``_DRIVE_ivd`` page if that fails (one request
    each; nothing is downloaded but the pages). ``deadline`` (``time.monotonic()``): when to give up
    (default :data:`DEFAULT_LIST_TIMEOUT` from now). Failures of both are named in one line."""
    check_id(folder_id)
    deadline = deadline_after(None) if deadline is None else deadline
    reasons = []
    embedded = embed_url(folder_id, embed_template, url_template)
    if embedded is not None:
        try:
            return parse_embedded_page(_read_page(embedded, folder_id, timeout, deadline), folder_id)
        except DriveListingError as exc:
            if time.monotonic() >= deadline:
                raise
            reasons.append(f"embedded view: {exc}")
    url = folder_url(folder_id, url_template)
    try:
        return parse_folder_page(_read_page(url, folder_id, timeout, deadline), folder_id)
    except DriveListingError as exc:
        if not reasons:
            raise
        raise DriveListingError(f"Drive folder {folder_id} could not be listed either way; {reasons[0]}; "
                                f"folder page: {exc}") from None


# ------------------------------------------------------------------------------- MMSA's dataset files

def dataset_path(dataset: str, variant: str = "unaligned") -> Tuple[str, ...]:
    """The file's path inside MMSA's folder, e.g. ``("MOSI", "Processed", "unaligned_50.pkl")``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return paths.relative_parts(dataset, aligned=(variant == "aligned"))


def manual_route(parts: Sequence[str], root_id: str = MMSA_FOLDER_ID, dest: Optional[Path] = None) -> str:
    """How to get the file by hand when the automatic route fails."""
    dest = paths.data_root().joinpath(*parts) if dest is None else dest
    linked = f" (the folder {paths.MMSA_URL}'s README links)" if root_id == MMSA_FOLDER_ID else ""
    return (f"To get it by hand: open {public_folder_url(root_id)}{linked} in a browser, go to {'/'.join(parts)}, "
            f"download it, put it at {dest} (or anywhere and pass that path), then run `infoenh data check {dest}` to "
            "verify the published SHA-256.")


def _describe(folder: DriveFolder, limit: int = 30) -> str:
    if not folder.children:
        return "it is empty"
    names = [shown(c.name) + ("/" if c.is_folder else "") for c in folder.children]
    more = f" ... ({len(names) - limit} more)" if len(names) > limit else ""
    return "it holds: " + ", ".join(names[:limit]) + more


def _capped(folder: DriveFolder) -> bool:
    """True when ``folder`` came from the ``_DRIVE_ivd`` page and fills it (more may exist)."""
    return folder.page == "folder page" and len(folder.children) >= PAGE_LIMIT


def walk(parts: Sequence[str], *, root_id: str = MMSA_FOLDER_ID, url_template: Optional[str] = None,
         timeout: float = 30.0, dest: Optional[Path] = None, embed_template: Optional[str] = None,
         deadline: Optional[float] = None) -> Tuple[List[DriveFolder], DriveEntry]:
    """List the folders along ``parts`` (all but the last are folders) and return them with the entry
    for the last part. Only one page per level is read; nothing else is fetched. Errors say what
    each level holds and how to get the file by hand (to ``dest``, default the default path); the
    folders listed before a failure are in the error's ``levels``. ``deadline`` (``time.monotonic()``)
    bounds the whole walk (default :data:`DEFAULT_LIST_TIMEOUT` from now)."""
    if not parts:
        raise ValueError("empty path")
    deadline = deadline_after(None) if deadline is None else deadline
    levels: List[DriveFolder] = []
    folder_id, where = root_id, "the top of MMSA's folder"
    for depth, part in enumerate(parts):
        try:
            folder = fetch_folder(folder_id, url_template=url_template, embed_template=embed_template,
                                  timeout=timeout, deadline=deadline)
        except (DriveListingError, DownloadError) as exc:   # DownloadError: a refused redirect
            err = DriveListingError(f"{str(exc).rstrip('.')}. {manual_route(parts, root_id, dest)}")
            err.levels = levels
            raise err from exc
        levels.append(folder)
        last = depth == len(parts) - 1
        hits = [c for c in folder.find(part) if c.is_folder != last]
        if not hits:
            wrong = folder.find(part)
            if wrong:
                problem = f"'{part}' in {where} (Drive folder {folder_id}) is a {wrong[0].kind}, not a " \
                          f"{'file' if last else 'folder'}"
            else:
                problem = f"there is no '{part}' in {where} (Drive folder {folder_id})"
            capped = (f" (Drive's page shows at most about {PAGE_LIMIT} entries; this one shows "
                      f"{len(folder.children)}, so the list may be cut)") if _capped(folder) else ""
            err = DriveListingError(
                f"{problem}; {_describe(folder)}{capped}. MMSA may have reorganised its folder: look with "
                f"`infoenh data download {public_folder_url(folder_id)} --list`. {manual_route(parts, root_id, dest)}")
            err.levels = levels
            raise err
        if len(hits) > 1:
            raise DriveListingError(f"{len(hits)} entries called '{part}' in {where} (ids "
                                    f"{', '.join(h.id for h in hits)}); pass the right file id to "
                                    "`infoenh data download ID DEST`")
        if last:
            if hits[0].mime_type == SHORTCUT_MIME:
                raise DriveListingError(f"'{part}' in {where} is a Drive shortcut, not the file itself. "
                                        f"{manual_route(parts, root_id, dest)}")
            return levels, hits[0]
        folder_id, where = hits[0].id, "/".join(parts[:depth + 1])
    raise AssertionError("unreachable")  # pragma: no cover


def format_listing(levels: Sequence[DriveFolder], parts: Sequence[str], target: Optional[DriveEntry] = None) -> str:
    """Text for ``--list``: each folder along ``parts`` with its children (kind, name, id)."""
    lines = []
    for depth, folder in enumerate(levels):
        rel = "/".join(parts[:depth]) + "/" if depth else "/"
        title = f" '{shown(folder.name)}'" if folder.name else ""
        lines.append(f"{rel}  (Drive folder{title}, id {folder.id}, {len(folder.children)} entries):")
        width = max((len(shown(c.name)) + c.is_folder for c in folder.children), default=0)
        for c in folder.children:
            label = shown(c.name) + ("/" if c.is_folder else "")  # a name cannot forge a line or a colour
            mark = "   <- this one" if target is not None and c.id == target.id else ""
            lines.append(f"    {c.kind:<8} {label:<{width}}  id {c.id}{mark}")
        if _capped(folder):
            lines.append(f"    (Drive's page shows at most about {PAGE_LIMIT} entries; there may be more)")
    lines.append("(sizes: Drive's folder page does not state them in a documented field, so none are shown)")
    return "\n".join(lines)


def resolve_dest(dataset: str, variant: str, dest=None) -> Path:
    """Where the file goes: the default path (``$INFOENH_DATA`` or ``~/data``, MMSA's tree below it);
    with ``dest`` ending in ``.pkl``, that file; with any other ``dest`` (a folder, e.g. one on a
    mounted Google Drive), MMSA's tree below that folder, so ``INFOENH_DATA=<dest>`` finds it."""
    parts = dataset_path(dataset, variant)
    if dest is None:
        return paths.data_root().joinpath(*parts)
    d = Path(os.fspath(dest)).expanduser()
    return d if d.suffix.lower() == ".pkl" and not d.is_dir() else d.joinpath(*parts)


def download_dataset(dataset: str = "mosi", variant: str = "unaligned", dest=None, *, sha256: Optional[str] = None,
                     resume: bool = True, quiet: bool = False, root_id: str = MMSA_FOLDER_ID,
                     folder_url_template: Optional[str] = None, file_url_template: Optional[str] = None,
                     timeout: float = 60.0, total_timeout: Optional[float] = None) -> Path:
    """Find ``<DATASET>/Processed/<variant>_50.pkl`` in MMSA's Drive folder by listing only the folders
    on its path, download that one file (resumable) and verify it, and return where it was put.

    ``sha256``: the expected sum; default the one MMSA publishes (``checksums.KNOWN_SHA256``).
    A file already at the destination is checked against it and kept; a wrong one is an error.
    ``total_timeout``: seconds for everything, the listing and the transfer (default: the listing
    :data:`DEFAULT_LIST_TIMEOUT`, the transfer ``download()``'s default).
    """
    from .download import DownloadError, download

    parts = dataset_path(dataset, variant)
    key = "/".join(parts)
    expected = checksums.normalize_sha256(sha256) if sha256 is not None else checksums.KNOWN_SHA256.get(key)
    target = resolve_dest(dataset, variant, dest)
    if target.exists() and not target.is_dir():
        actual = checksums.sha256_file(target)
        if expected is not None and actual != expected:
            raise checksums.ChecksumError(f"'{target}' exists but its SHA-256 is {actual}, not {expected} (the "
                                          f"published sum of {key}); delete it and run the download again")
        if not quiet:
            print(f"'{target}' is already there" + (" and its SHA-256 matches" if expected else ""), flush=True)
        return target
    start = time.monotonic()
    levels, entry = walk(parts, root_id=root_id, url_template=folder_url_template, timeout=timeout, dest=target,
                         deadline=deadline_after(total_timeout))
    left = {} if total_timeout is None else {"total_timeout": max(total_timeout - (time.monotonic() - start), 1e-3)}
    template = file_url_template or os.environ.get("INFOENH_DRIVE_FILE_URL") or FILE_URL
    source = template.format(id=entry.id) if template else entry.id
    if not quiet:
        print(f"found {key} in MMSA's Drive folder (file id {entry.id}); downloading to '{target}'", flush=True)
    try:
        return download(source, target, sha256=expected, resume=resume, quiet=quiet, timeout=timeout, kind="pickle",
                        **left)
    except (checksums.ChecksumError, DownloadError) as exc:
        msg = (f"{exc}\nIf Google Drive answered with a page instead of the file (its daily download quota for "
               f"a popular file: 'Too many users have viewed or downloaded this file recently'), try again later. "
               f"{manual_route(parts, root_id, target)}")
        try:
            wrapped = type(exc)(msg)
        except Exception:  # an exception class with another constructor: keep it as it is
            raise exc from None
        raise wrapped from exc
