"""Find one file inside MMSA's public Google Drive folder by listing folders, then download only it.

MMSA (github.com/thuiar/MMSA) shares its processed pickles as a public Drive *folder*
(:data:`MMSA_FOLDER_ID`) that also holds large raw-video folders. To fetch one file we walk only
the path to it (root -> ``MOSI`` -> ``Processed``), reading one folder page per level, and hand
the file's id to :func:`infoenh.data.download.download` (resume, published SHA-256, atomic move).

How a folder is listed without an API key (the way gdown's ``download_folder`` does it): the page
``https://drive.google.com/drive/folders/<id>`` has a ``<script>`` with
``window['_DRIVE_ivd'] = '<JS string>'``; that string, unescaped, is a JSON array whose element
``[0]`` lists the children (or is null), each ``[id, [parent ids], name, mime type, ...]``;
folders have the mime type :data:`FOLDER_MIME`. The page ``<title>`` is ``"<name> - Google Drive"``.
Drive shows at most about 50 children on that page. The later fields of a child (sizes among
them, perhaps) are not documented, so they are not read: listings give names, ids and kinds.

Both URL templates can be redirected (tests point them at a local server)::

    INFOENH_DRIVE_FOLDER_URL=http://127.0.0.1:PORT/drive/folders/{id}   # a folder page
    INFOENH_DRIVE_FILE_URL=http://127.0.0.1:PORT/uc?id={id}             # a file's bytes

Unset, folders come from :data:`FOLDER_URL` and the file id goes to ``download()`` as a Drive id
(through gdown, ``pip install 'infoenh[download]'``).
"""
from __future__ import annotations

import html
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

from . import checksums, paths
from .download import checked_opener

MMSA_FOLDER_ID = "1A2S4pqCHryGmiqnNSPLv7rEg63WvjCSk"
"""MMSA's public Google Drive folder (linked from the thuiar/MMSA README)."""
FOLDER_URL = "https://drive.google.com/drive/folders/{id}?hl=en"
"""Folder page template; ``hl=en`` keeps the page title in English. Env: ``INFOENH_DRIVE_FOLDER_URL``."""
FILE_URL: Optional[str] = None
"""File URL template, or None to pass the bare Drive id to ``download()``. Env: ``INFOENH_DRIVE_FILE_URL``."""
FOLDER_MIME = "application/vnd.google-apps.folder"
SHORTCUT_MIME = "application/vnd.google-apps.shortcut"
PAGE_LIMIT = 50  # Drive's folder page shows about this many children at most
VARIANTS = ("unaligned", "aligned")
# Drive serves a reduced page to unknown clients; gdown sends a browser User-Agent for folders too.
_USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/120.0.0.0 Safari/537.36")

_SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script\s*>", re.S | re.I)
_IVD = re.compile(r"""_DRIVE_ivd['"]\s*\]\s*=\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")""", re.S)
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.S | re.I)
_TITLE_SUFFIX = re.compile(r"\s+[-\u2010-\u2015]\s+Google Drive\s*$")
_FOLDER_LINK = re.compile(r"/folders/([A-Za-z0-9_-]{10,})")
_JS_ESCAPE = re.compile(r"\\(u\{[0-9A-Fa-f]+\}|u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|[0-7]{1,3}|\r\n|.)", re.S)
_JS_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "\n": "", "\r": "",
              "\r\n": "", "\u2028": "", "\u2029": ""}


class DriveListingError(RuntimeError):
    """A Drive folder could not be listed, or the path inside it does not exist."""


class DriveEntry(NamedTuple):
    id: str
    name: str
    mime_type: str
    parents: Tuple[str, ...] = ()

    @property
    def is_folder(self) -> bool:
        return self.mime_type == FOLDER_MIME

    @property
    def kind(self) -> str:
        return "folder" if self.is_folder else ("shortcut" if self.mime_type == SHORTCUT_MIME else "file")


class DriveFolder(NamedTuple):
    id: str
    name: Optional[str]           # from the page title; None when the page has no usable title
    children: List[DriveEntry]

    def find(self, name: str) -> List[DriveEntry]:
        """Children called ``name`` (exactly; else ignoring case)."""
        exact = [c for c in self.children if c.name == name]
        return exact or [c for c in self.children if c.name.casefold() == name.casefold()]


# ----------------------------------------------------------------------------------------- parsing

def js_unescape(s: str) -> str:
    """The value of a JavaScript string literal's body (``\\xHH``, ``\\uHHHH``, ``\\u{H..}``, ``\\n``,
    ``\\'``, ``\\/``, ...). Characters outside escapes are kept as they are, so non-ASCII names survive
    (``str.encode('utf-8').decode('unicode_escape')`` would turn them into mojibake)."""
    def one(m: "re.Match[str]") -> str:
        e = m.group(1)
        if e[0] == "u" and len(e) > 1:
            return chr(int(e[2:-1] if e[1] == "{" else e[1:], 16))
        if e[0] == "x" and len(e) == 3:
            return chr(int(e[1:], 16))
        if e[0] in "01234567":
            return chr(int(e, 8))
        return _JS_SIMPLE.get(e, e)
    return _JS_ESCAPE.sub(one, s)


def parse_folder_page(page: str, folder_id: str = "?") -> DriveFolder:
    """Parse a Drive folder page (HTML) into a :class:`DriveFolder`; raise :class:`DriveListingError`
    when the page has no ``_DRIVE_ivd`` listing or it cannot be read."""
    body = None
    for script in _SCRIPT.findall(page):
        if "_DRIVE_ivd" in script:
            m = _IVD.search(script)
            if m:
                body = m.group(1) if m.group(1) is not None else m.group(2)
                break
    if body is None:
        raise DriveListingError(f"the page for Drive folder {folder_id} has no file listing (no _DRIVE_ivd "
                                "data): the folder is not shared publicly any more, Google answered with a "
                                "sign-in, consent or rate-limit page, or Drive changed its page format")
    try:
        arr = json.loads(js_unescape(body))
    except ValueError as exc:
        raise DriveListingError(f"the listing of Drive folder {folder_id} is not valid JSON once unescaped "
                                f"({exc}); Drive may have changed its page format") from exc
    if not isinstance(arr, list) or not arr or not (arr[0] is None or isinstance(arr[0], list)):
        raise DriveListingError(f"the listing of Drive folder {folder_id} is not the expected array "
                                "(element 0 = the children); Drive may have changed its page format")
    children = []
    for i, e in enumerate(arr[0] or []):
        if not (isinstance(e, list) and len(e) >= 4 and isinstance(e[0], str) and isinstance(e[2], str)
                and isinstance(e[3], str)):
            raise DriveListingError(f"child {i} of Drive folder {folder_id} is not [id, parents, name, mime "
                                    f"type, ...] (got {str(e)[:120]}); Drive may have changed its page format")
        parents = tuple(p for p in e[1] if isinstance(p, str)) if isinstance(e[1], list) else ()
        children.append(DriveEntry(e[0], e[2], e[3], parents))
    name = None
    t = _TITLE.search(page)
    if t:
        title = html.unescape(t.group(1)).strip()
        stripped = _TITLE_SUFFIX.sub("", title)
        name = stripped if stripped != title and stripped else None
    return DriveFolder(folder_id, name, children)


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
    """The page URL for ``folder_id``: ``template``, else ``$INFOENH_DRIVE_FOLDER_URL``, else :data:`FOLDER_URL`."""
    return (template or os.environ.get("INFOENH_DRIVE_FOLDER_URL") or FOLDER_URL).format(id=folder_id)


def public_folder_url(folder_id: str) -> str:
    """The link a person opens in a browser."""
    return f"https://drive.google.com/drive/folders/{folder_id}"


def fetch_folder(folder_id: str, *, url_template: Optional[str] = None, timeout: float = 30.0) -> DriveFolder:
    """GET one folder page and parse it (one request; nothing is downloaded but the page)."""
    url = folder_url(folder_id, url_template)
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Language": "en"})
    try:
        with checked_opener(quiet=True).open(req, timeout=timeout) as resp:
            raw = resp.read()
            charset = resp.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as exc:
        hint = (" (no such folder, or it is not shared publicly)" if exc.code in (403, 404)
                else " (Drive is rate-limiting; wait and retry)" if exc.code == 429 else "")
        raise DriveListingError(f"HTTP {exc.code} ({exc.reason}) for Drive folder {folder_id} at {url}{hint}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DriveListingError(f"could not reach {url} to list Drive folder {folder_id}: {exc}") from exc
    return parse_folder_page(raw.decode(charset, errors="replace"), folder_id)


# ------------------------------------------------------------------------------- MMSA's dataset files

def dataset_path(dataset: str, variant: str = "unaligned") -> Tuple[str, ...]:
    """The file's path inside MMSA's folder, e.g. ``("MOSI", "Processed", "unaligned_50.pkl")``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return paths.relative_parts(dataset, aligned=(variant == "aligned"))


def manual_route(parts: Sequence[str], root_id: str = MMSA_FOLDER_ID, dest: Optional[Path] = None) -> str:
    """How to get the file by hand when the automatic route fails."""
    dest = paths.data_root().joinpath(*parts) if dest is None else dest
    return (f"To get it by hand: open {public_folder_url(root_id)} in a browser, go to {'/'.join(parts)}, download "
            f"it, put it at {dest} (or anywhere and pass that path), then run `infoenh data check {dest}` to "
            "verify the published SHA-256.")


def _describe(folder: DriveFolder, limit: int = 30) -> str:
    if not folder.children:
        return "it is empty"
    names = [c.name + ("/" if c.is_folder else "") for c in folder.children]
    more = f" ... ({len(names) - limit} more)" if len(names) > limit else ""
    return "it holds: " + ", ".join(names[:limit]) + more


def walk(parts: Sequence[str], *, root_id: str = MMSA_FOLDER_ID, url_template: Optional[str] = None,
         timeout: float = 30.0, dest: Optional[Path] = None) -> Tuple[List[DriveFolder], DriveEntry]:
    """List the folders along ``parts`` (all but the last are folders) and return them with the entry
    for the last part. Only one page per level is read; nothing else is fetched. Errors say what
    each level holds and how to get the file by hand (to ``dest``, default the default path); the
    folders listed before a failure are in the error's ``levels``."""
    if not parts:
        raise ValueError("empty path")
    levels: List[DriveFolder] = []
    folder_id, where = root_id, "the top of MMSA's folder"
    for depth, part in enumerate(parts):
        try:
            folder = fetch_folder(folder_id, url_template=url_template, timeout=timeout)
        except DriveListingError as exc:
            err = DriveListingError(f"{exc}. {manual_route(parts, root_id, dest)}")
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
                      f"{len(folder.children)}, so the list may be cut)") if len(folder.children) >= PAGE_LIMIT else ""
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
        title = f" '{folder.name}'" if folder.name else ""
        lines.append(f"{rel}  (Drive folder{title}, id {folder.id}, {len(folder.children)} entries):")
        width = max((len(c.name) + c.is_folder for c in folder.children), default=0)
        for c in folder.children:
            label = c.name + ("/" if c.is_folder else "")
            mark = "   <- this one" if target is not None and c.id == target.id else ""
            lines.append(f"    {c.kind:<8} {label:<{width}}  id {c.id}{mark}")
        if len(folder.children) >= PAGE_LIMIT:
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
                     timeout: float = 60.0) -> Path:
    """Find ``<DATASET>/Processed/<variant>_50.pkl`` in MMSA's Drive folder by listing only the folders
    on its path, download that one file (resumable) and verify it, and return where it was put.

    ``sha256``: the expected sum; default the one MMSA publishes (``checksums.KNOWN_SHA256``).
    A file already at the destination is checked against it and kept; a wrong one is an error.
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
    levels, entry = walk(parts, root_id=root_id, url_template=folder_url_template, timeout=timeout, dest=target)
    template = file_url_template or os.environ.get("INFOENH_DRIVE_FILE_URL") or FILE_URL
    source = template.format(id=entry.id) if template else entry.id
    if not quiet:
        print(f"found {key} in MMSA's Drive folder (file id {entry.id}); downloading to '{target}'", flush=True)
    try:
        return download(source, target, sha256=expected, resume=resume, quiet=quiet, timeout=timeout, kind="pickle")
    except (checksums.ChecksumError, DownloadError) as exc:
        msg = (f"{exc}\nIf Google Drive answered with a page instead of the file (its daily download quota for "
               f"a popular file: 'Too many users have viewed or downloaded this file recently'), try again later. "
               f"{manual_route(parts, root_id, target)}")
        try:
            wrapped = type(exc)(msg)
        except Exception:  # an exception class with another constructor: keep it as it is
            raise exc from None
        raise wrapped from exc
