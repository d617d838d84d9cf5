"""Read the book's ``references.bib`` well enough to write citations as plain text.

The Colab edition of a chapter cannot run sphinxcontrib-bibtex, so its citations are written out
as "(Xie et al., 2024)", the author-year style the book uses, linked to the paper when the entry
has a DOI, a URL or an arXiv identifier. Only the BibTeX the book needs is understood: ``@type{key,
field = {braced} | "quoted" | bare, ...}`` with LaTeX accents such as ``{\\'e}``. No dependency.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

# LaTeX accent commands -> Unicode combining characters.
_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304",
            ".": "\u0307", "c": "\u0327", "v": "\u030c", "u": "\u0306", "H": "\u030b", "k": "\u0328"}
_ACCENT_RE = re.compile(r"\\([`'^\"~=.]|[cvuHk](?=[\s{]))\s*(?:\{\s*([A-Za-z])\s*\}|([A-Za-z]))")
_ARXIV_RE = re.compile(r"arXiv[: ]\s*(\d{4}\.\d{4,5}(?:v\d+)?)|\b([a-z-]+(?:\.[A-Z]{2})?/\d{7})\b")


class BibError(ValueError):
    """references.bib could not be read, or a citation key is not in it."""


def latex_to_text(value: str) -> str:
    """``Peyr{\\'e}`` -> ``Peyré``; braces dropped, ``\\&`` -> ``&``, ``--`` -> an en dash."""
    text = _ACCENT_RE.sub(lambda m: (m.group(2) or m.group(3)) + _ACCENTS[m.group(1)], value)
    text = text.replace("\\&", "&").replace("--", "\u2013").replace("~", "\u00a0")
    text = re.sub(r"\\([%$_#])", r"\1", text)
    text = text.replace("{", "").replace("}", "")
    return unicodedata.normalize("NFC", re.sub(r"\s+", " ", text).strip())


def _split_top_level(value: str, sep: str) -> List[str]:
    """Split on ``sep`` (a word such as " and ") outside braces."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(value):
        ch = value[i]
        depth += (ch == "{") - (ch == "}")
        if depth == 0 and value.startswith(sep, i):
            parts.append(value[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(value[start:])
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class Author:
    """One author: ``last`` includes any "von" part (``van den Oord``)."""

    first: str
    last: str

    @classmethod
    def parse(cls, raw: str) -> "Author":
        if "," in raw:
            last, first = raw.split(",", 1)
            return cls(latex_to_text(first), latex_to_text(last))
        words = latex_to_text(raw).split()
        # "First von Last": the last name starts at the first lowercase word, else it is the last word
        cut = next((i for i, w in enumerate(words[:-1]) if w[:1].islower()), len(words) - 1)
        return cls(" ".join(words[:cut]), " ".join(words[cut:]))

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}".strip()


@dataclass(frozen=True)
class Reference:
    """One bibliography entry, with what a plain-text citation needs."""

    key: str
    kind: str
    fields: Dict[str, str] = field(default_factory=dict)

    @property
    def authors(self) -> List[Author]:
        raw = _split_top_level(self.fields.get("author", ""), " and ")
        return [Author.parse(a) for a in raw if a.strip() != "others"]

    @property
    def has_others(self) -> bool:
        return any(a.strip() == "others" for a in _split_top_level(self.fields.get("author", ""), " and "))

    @property
    def year(self) -> str:
        return latex_to_text(self.fields.get("year", "n.d."))

    @property
    def title(self) -> str:
        return latex_to_text(self.fields.get("title", self.key))

    @property
    def venue(self) -> str:
        for name in ("journal", "booktitle", "publisher", "series"):
            if name in self.fields:
                return latex_to_text(self.fields[name])
        return ""

    def short_authors(self) -> str:
        """"Cuturi", "Peyré and Cuturi", "Xie et al." (as sphinxcontrib-bibtex's author_year style)."""
        names = [a.last for a in self.authors]
        if not names:
            return self.key
        if len(names) == 1 and not self.has_others:
            return names[0]
        if len(names) == 2 and not self.has_others:
            return f"{names[0]} and {names[1]}"
        return f"{names[0]} et al."

    @property
    def link(self) -> Optional[str]:
        """The paper's address when the entry gives one: DOI, URL, or an arXiv identifier."""
        f = self.fields
        if f.get("doi"):
            doi = re.sub(r"^https?://(dx\.)?doi\.org/", "", latex_to_text(f["doi"]))
            return f"https://doi.org/{doi}"
        if f.get("url"):
            return latex_to_text(f["url"])
        if f.get("eprint") and f.get("archiveprefix", "arxiv").lower() == "arxiv":
            return f"https://arxiv.org/abs/{latex_to_text(f['eprint'])}"
        m = _ARXIV_RE.search(f.get("journal", "") + " " + f.get("note", ""))
        if m and "arxiv" in (f.get("journal", "") + f.get("note", "")).lower():
            return f"https://arxiv.org/abs/{m.group(1) or m.group(2)}"
        return None

    def entry(self) -> str:
        """One line for a reference list: authors, year, title, venue (Markdown)."""
        names = [a.full for a in self.authors]
        if self.has_others:
            who = ", ".join(names) + " et al."
        else:
            who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        title = f"[{self.title}]({self.link})" if self.link else self.title
        venue = f" *{self.venue}*." if self.venue else ""
        return f"{who} ({self.year}). {title}.{venue}"


def _read_value(text: str, i: int) -> tuple:
    """Read one field value starting at ``text[i]``; return (raw value, index after it)."""
    if text[i] == "{":
        depth, j = 0, i
        while j < len(text):
            depth += (text[j] == "{") - (text[j] == "}")
            if depth == 0:
                return text[i + 1:j], j + 1
            j += 1
        raise BibError("unbalanced braces in references.bib")
    if text[i] == '"':
        j = text.index('"', i + 1)
        return text[i + 1:j], j + 1
    m = re.compile(r"[\w.-]+").match(text, i)
    if not m:
        raise BibError(f"cannot read a value at: {text[i:i + 40]!r}")
    return m.group(0), m.end()


def parse_bibtex(text: str) -> Dict[str, Reference]:
    """Every ``@type{key, ...}`` entry of ``text`` (``@comment``/``@preamble``/``@string`` skipped)."""
    refs: Dict[str, Reference] = {}
    for m in re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", text):
        kind = m.group(1).lower()
        if kind in ("comment", "preamble", "string"):
            continue
        fields, i = {}, m.end()
        while True:
            fm = re.compile(r"\s*(\w+)\s*=\s*").match(text, i)
            if not fm:
                break
            value, i = _read_value(text, fm.end())
            fields[fm.group(1).lower()] = re.sub(r"\s+", " ", value).strip()
            cm = re.compile(r"\s*,").match(text, i)
            if not cm:
                break
            i = cm.end()
        refs[m.group(2)] = Reference(m.group(2), kind, fields)
    return refs


def load_bibliography(path: Path) -> Dict[str, Reference]:
    """Parse ``references.bib``; an absent file gives an empty bibliography."""
    path = Path(path)
    return parse_bibtex(path.read_text(encoding="utf-8")) if path.exists() else {}
