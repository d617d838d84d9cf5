"""Read a Google Drive folder page (HTML) into a list of children, in time linear in the page.

Two page formats are read, both without an API key:

* **the embedded folder view** (``https://drive.google.com/embeddedfolderview?id=<id>``), the one
  Drive serves today and the first one tried. The folder's name is the page's ``<title>``; each
  child is an ``<a href=...>`` whose target names its kind and id and whose text is its name:
  ``https://drive.google.com/file/d/<id>/view...`` (a file),
  ``https://drive.google.com/drive/folders/<id>...`` (a folder),
  ``https://docs.google.com/<app>/d/<id>/...`` (a Google Docs/Sheets/Slides file). The entries
  sit in a container with the class ``flip-entries``; a folder with no children has the container
  and no entry. Any other link (help, sign-in) is not a child.
* **the folder page** (``https://drive.google.com/drive/folders/<id>``), the older way and the
  fallback: a ``<script>`` sets ``window['_DRIVE_ivd'] = '<JS string>'``; that string, unescaped,
  is a JSON array whose element ``[0]`` lists the children (or is null), each ``[id, [parent ids],
  name, mime type, ...]``. The ``<title>`` is ``"<name> - Google Drive"``. This page shows at
  most about 50 children.

Every scan here is a ``str.find`` that moves forward, or a regular expression applied to a short,
bounded piece, so a hostile page (a huge unclosed ``<script>``, ``<title>`` or ``<a>``) costs time
linear in its size. Ids are checked to be Drive ids (:func:`valid_id`) before anything uses them.
"""
from __future__ import annotations

import html
import json
import re
import string
from typing import List, NamedTuple, Optional, Tuple

FOLDER_MIME = "application/vnd.google-apps.folder"
SHORTCUT_MIME = "application/vnd.google-apps.shortcut"
FILE_MIME = "application/octet-stream"  # the embedded view does not state a file's type
DOCS_MIME = "application/vnd.google-apps.document"
_ID = re.compile(r"[A-Za-z0-9_-]{10,128}")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]{0,4096})"|'([^']{0,4096})'|([^\s"'>]{1,4096}))""", re.I)
_FILE_LINK = re.compile(r"https?://drive\.google\.com/file/d/([A-Za-z0-9_-]+)(?:[/?#]|$)")
_FOLDER_LINK = re.compile(r"https?://drive\.google\.com/drive/(?:u/\d+/)?folders/([A-Za-z0-9_-]+)(?:[/?#]|$)")
_DOCS_LINK = re.compile(r"https?://docs\.google\.com/[a-z]+/d/([A-Za-z0-9_-]+)(?:[/?#]|$)")
_IVD_START = re.compile(r"""_DRIVE_ivd['"]\s*\]\s*=\s*(['"])""")
_TITLE_SUFFIX = re.compile(r"\s[-\u2010-\u2015]\sGoogle Drive$")
_JS_ESCAPE = re.compile(r"\\(u\{[0-9A-Fa-f]{1,6}\}|u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|[0-7]{1,3}|\r\n|.)", re.S)
_JS_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "\n": "", "\r": "",
              "\r\n": "", "\u2028": "", "\u2029": ""}
_MAX_PIECE = 4096  # a tag or a title longer than this is not Drive's
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _lower(page: str) -> str:
    """ASCII-only lower case: same length as ``page`` (``str.lower`` can change it), so indices agree."""
    return page.translate(_LOWER)


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
    page: str = "folder page"     # which page listed it: "embedded view" or "folder page" (at most ~50 shown)

    def find(self, name: str) -> List[DriveEntry]:
        """Children called ``name`` (exactly; else ignoring case)."""
        exact = [c for c in self.children if c.name == name]
        return exact or [c for c in self.children if c.name.casefold() == name.casefold()]


def valid_id(value: object) -> bool:
    """True for a Drive id: 10 to 128 letters, digits, ``-`` or ``_`` (nothing a URL could be)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def shown(text: str) -> str:
    """``text`` safe to print on one line: control, format (bidi) and other unprintable characters
    as ``\\n``, ``\\x1b``, ``\\u202e``...; printable non-ASCII (``é``, ``–``) is kept."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] if ch in "\n\r\t" else
                   (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000
                    else f"\\U{ord(ch):08x}") for ch in text)


# ------------------------------------------------------------------------------------ JS strings

def js_unescape(s: str) -> str:
    """The value of a JavaScript string literal's body (``\\xHH``, ``\\uHHHH``, ``\\u{H..}``, ``\\n``,
    ``\\'``, ``\\/``, ...). Characters outside escapes are kept as they are, so non-ASCII names survive
    (``str.encode('utf-8').decode('unicode_escape')`` would turn them into mojibake)."""
    def one(m: "re.Match[str]") -> str:
        e = m.group(1)
        if e[0] == "u" and len(e) > 1:
            code = int(e[2:-1] if e[1] == "{" else e[1:], 16)
            return chr(code) if code <= 0x10FFFF else "\ufffd"
        if e[0] == "x" and len(e) == 3:
            return chr(int(e[1:], 16))
        if e[0] in "01234567":
            return chr(int(e, 8))
        return _JS_SIMPLE.get(e, e)
    return _JS_ESCAPE.sub(one, s)


def _js_string_end(page: str, start: int, quote: str) -> int:
    """Index of the quote that closes the JS string whose body starts at ``start``, or -1.
    Linear: each quote found is checked by counting the backslashes just before it."""
    pos = start
    while True:
        j = page.find(quote, pos)
        if j < 0:
            return -1
        k = j
        while k > start and page[k - 1] == "\\":
            k -= 1
        if (j - k) % 2 == 0:
            return j
        pos = j + 1


# ------------------------------------------------------------------------------------ HTML pieces

def _title(page: str, low: str) -> Optional[str]:
    """The text of the first ``<title>``, unescaped and stripped, or None (no title, or none closed
    within :data:`_MAX_PIECE` characters)."""
    i = low.find("<title")
    if i < 0:
        return None
    j = low.find(">", i, i + _MAX_PIECE)
    if j < 0:
        return None
    k = low.find("</title", j, j + _MAX_PIECE)
    if k < 0:
        return None
    return " ".join(html.unescape(page[j + 1:k]).split())


def _text(fragment: str) -> str:
    """The visible text of an HTML fragment: the text between tags, each piece stripped of the
    layout whitespace around it (spaces inside a name are kept), entities decoded."""
    out, pos = [], 0
    while True:
        i = fragment.find("<", pos)
        if i < 0:
            out.append(fragment[pos:])
            break
        out.append(fragment[pos:i])
        j = fragment.find(">", i)
        if j < 0:
            break
        pos = j + 1
    return "".join(html.unescape(piece).strip() for piece in out)


def _anchors(page: str, low: str):
    """Yield ``(href, text)`` for each ``<a ...>...</a>`` in order (a linear forward scan)."""
    pos = 0
    while True:
        i = low.find("<a", pos)
        if i < 0:
            return
        if i + 2 < len(low) and low[i + 2] not in " \t\r\n>":
            pos = i + 2
            continue
        end_tag = low.find(">", i, i + _MAX_PIECE)
        if end_tag < 0:
            return  # an unclosed or absurd tag: nothing after it is read
        close = low.find("</a", end_tag)
        if close < 0:
            return
        m = _HREF.search(page, i, end_tag)
        if m:
            href = html.unescape(m.group(1) or m.group(2) or m.group(3) or "")
            yield href, _text(page[end_tag + 1:close])
        pos = close + 3


# ------------------------------------------------------------------------------------ page checks

def page_problem(page: str) -> Optional[str]:
    """What a page that is not a listing is (sign-in page, rate-limit page), or None."""
    low = _lower(page[:200_000])
    title = (_title(page[:200_000], low) or "").lower()
    if ("accounts.google.com" in low and ("servicelogin" in low or "signin" in low)) or title.startswith("sign in"):
        return ("Google answered with its sign-in page: the folder is not shared publicly (\"Anyone with the "
                "link\"), or Google asks this network to log in")
    if ("unusual traffic" in low or "/sorry/" in low or "automated queries" in low
            or "rate limit" in low or "too many requests" in low):
        return "Google answered with its rate-limit page (unusual traffic from this network): wait and try again"
    return None


def _checked_id(fid: str, folder_id: str, what: str) -> str:
    if not valid_id(fid):
        raise DriveListingError(f"the page of Drive folder {folder_id} lists {what} whose id {shown(fid[:80])!s} "
                                "is not a Drive id (10-128 letters, digits, - or _); the page is not Drive's")
    return fid


# ---------------------------------------------------------------------------- the embedded view

def parse_embedded_page(page: str, folder_id: str = "?") -> DriveFolder:
    """Parse an ``embeddedfolderview`` page; raise :class:`DriveListingError` when it is not one."""
    low = _lower(page)
    if "flip-entries" not in low:
        problem = page_problem(page)
        raise DriveListingError(f"the embedded view of Drive folder {folder_id} is not a folder listing (no "
                                f"'flip-entries' container){': ' + problem if problem else ''}")
    children: List[DriveEntry] = []
    for href, text in _anchors(page, low):
        for pattern, mime in ((_FILE_LINK, FILE_MIME), (_FOLDER_LINK, FOLDER_MIME), (_DOCS_LINK, DOCS_MIME)):
            m = pattern.match(href)
            if m:
                fid = _checked_id(m.group(1), folder_id, f"a {'folder' if mime == FOLDER_MIME else 'file'}")
                if fid != folder_id:
                    children.append(DriveEntry(fid, text, mime, (folder_id,)))
                break
    return DriveFolder(folder_id, _title(page, low) or None, children, "embedded view")


# ------------------------------------------------------------------------------ the _DRIVE_ivd page

def parse_folder_page(page: str, folder_id: str = "?") -> DriveFolder:
    """Parse a ``/drive/folders/<id>`` page (the ``_DRIVE_ivd`` script); raise
    :class:`DriveListingError` when the page has no such listing or it cannot be read."""
    body = None
    pos = 0
    for _ in range(8):  # a page repeating the marker without a string is not Drive's
        i = page.find("_DRIVE_ivd", pos)
        if i < 0:
            break
        m = _IVD_START.match(page, i, i + 64)
        if m:
            end = _js_string_end(page, m.end(), m.group(1))
            if end >= 0:
                body = page[m.end():end]
            break
        pos = i + 10
    if body is None:
        problem = page_problem(page)
        raise DriveListingError(f"the page for Drive folder {folder_id} has no file listing (no _DRIVE_ivd "
                                "data): " + (problem or "the folder is not shared publicly any more, Google "
                                             "answered with a sign-in, consent or rate-limit page, or Drive "
                                             "changed its page format"))
    try:
        arr = json.loads(js_unescape(body))
    except (ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise DriveListingError(f"the listing of Drive folder {folder_id} is not valid JSON once unescaped "
                                f"({why}); Drive may have changed its page format") from None
    if not isinstance(arr, list) or not arr or not (arr[0] is None or isinstance(arr[0], list)):
        raise DriveListingError(f"the listing of Drive folder {folder_id} is not the expected array "
                                "(element 0 = the children); Drive may have changed its page format")
    children = []
    for i, e in enumerate(arr[0] or []):
        if not (isinstance(e, list) and len(e) >= 4 and isinstance(e[0], str) and isinstance(e[2], str)
                and isinstance(e[3], str)):
            raise DriveListingError(f"child {i} of Drive folder {folder_id} is not [id, parents, name, mime "
                                    f"type, ...] (got {shown(str(e)[:120])}); Drive may have changed its page "
                                    "format")
        fid = _checked_id(e[0], folder_id, f"child {i}")
        parents = tuple(p for p in e[1] if isinstance(p, str)) if isinstance(e[1], list) else ()
        children.append(DriveEntry(fid, e[2], e[3], parents))
    name = None
    title = _title(page, _lower(page))
    if title:
        stripped = _TITLE_SUFFIX.sub("", title)
        name = stripped if stripped != title and stripped else None
    return DriveFolder(folder_id, name, children)
