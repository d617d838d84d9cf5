"""What the Colab edition needs to know about the whole book, read from its sources.

- :class:`Repository`: the one setting the install cells and the Colab links come from,
  ``_config.yml``'s ``repository`` (``url``, ``branch``, ``path_to_book``) and
  ``launch_buttons.colab_url``, the same keys Jupyter Book builds its launch buttons from;
- :class:`BookIndex`: the documents in ``_toc.yml`` order, their titles, the ``(label)=`` sections,
  the chapter numbers and the exercises numbered as the book numbers them: chapter by chapter
  ("Exercise 5.2"), since ``_toc.yml``'s parts are ``numbered`` (one count through the parts) and
  ``numfig_secnum_depth`` is 1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .bibliography import load_bibliography
from .book_values import BookValues
from .myst_markdown import Links, Section, first_heading, iter_directives, math_labels, parse_blocks

_GITHUB = re.compile(r"^https://github\.com/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?/?$")


class BookConfigError(ValueError):
    """_config.yml or _toc.yml does not say what the Colab edition needs."""


def _yaml(path: Path) -> dict:
    import yaml  # PyYAML comes with jupytext and jupyter-book

    if not path.exists():
        raise BookConfigError(f"{path} not found: run this from the book's root folder (or pass --root)")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@dataclass(frozen=True)
class Repository:
    """The GitHub repository that Colab opens the chapters from and pip installs the package from."""

    url: str
    branch: str = "main"
    path_to_book: str = ""
    colab: str = "https://colab.research.google.com"

    def __post_init__(self):
        if not _GITHUB.match(self.url):
            raise BookConfigError(f"repository.url {self.url!r} in _config.yml is not https://github.com/OWNER/NAME "
                                  "(Colab opens notebooks from GitHub)")

    @classmethod
    def from_config(cls, root: Path) -> "Repository":
        cfg = _yaml(Path(root) / "_config.yml")
        repo = cfg.get("repository") or {}
        if not repo.get("url"):
            raise BookConfigError("_config.yml has no repository.url")
        colab = (cfg.get("launch_buttons") or {}).get("colab_url") or cls.colab
        return cls(str(repo["url"]).rstrip("/"), str(repo.get("branch") or "main"),
                   str(repo.get("path_to_book") or "").strip("/"), str(colab).rstrip("/"))

    @property
    def slug(self) -> str:
        m = _GITHUB.match(self.url)
        return f"{m.group('owner')}/{m.group('name')}"

    @property
    def install_url(self) -> str:
        """What pip installs on Colab: ``git+URL@BRANCH``."""
        return f"git+https://github.com/{self.slug}@{self.branch}"

    def _path(self, path: str) -> str:
        return f"{self.path_to_book}/{path}" if self.path_to_book else path

    def colab_url(self, path: str) -> str:
        """The Colab page of a notebook of the book (``path`` relative to the book's root)."""
        return f"{self.colab}/github/{self.slug}/blob/{self.branch}/{self._path(path)}"

    def blob_url(self, path: str) -> str:
        """The repository page of a file of the book."""
        return f"https://github.com/{self.slug}/blob/{self.branch}/{self._path(path)}"


def toc_documents(root: Path) -> List[str]:
    """Every document of ``_toc.yml`` (root first), in reading order, without suffix."""
    toc = _yaml(Path(root) / "_toc.yml")
    docs: List[str] = [toc["root"]] if toc.get("root") else []

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                docs.append(entry["file"])
            for key in ("chapters", "sections", "parts"):
                walk(entry.get(key))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return [re.sub(r"\.(md|ipynb)$", "", d) for d in docs]


def toc_chapter_numbers(root: Path) -> Dict[str, int]:
    """The number the book gives each document of a ``numbered`` part (or ``numbered`` top-level
    chapter list): one count through all numbered parts, as Jupyter Book's multi-toc numbering does."""
    toc = _yaml(Path(root) / "_toc.yml")
    numbers: Dict[str, int] = {}

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                numbers[re.sub(r"\.(md|ipynb)$", "", entry["file"])] = len(numbers) + 1

    for part in toc.get("parts") or []:
        if part.get("numbered"):
            walk(part.get("chapters"))
    if toc.get("numbered"):
        walk(toc.get("chapters"))
    return numbers


def toc_chapter_of(root: Path) -> Dict[str, int]:
    """The chapter number of every page of a numbered part: a chapter's own page and its section
    pages (``sections:`` in ``_toc.yml``, any depth). Figures, display equations and exercises are
    numbered per chapter (``numfig_secnum_depth: 1``), one count running through its pages in
    table-of-contents order."""
    toc = _yaml(Path(root) / "_toc.yml")
    chapter: Dict[str, int] = {}

    def pages(entry):
        if "file" in entry:
            yield re.sub(r"\.(md|ipynb)$", "", entry["file"])
        for sub in entry.get("sections") or []:
            yield from pages(sub)

    def walk(entries):
        for entry in entries or []:
            number = len(set(chapter.values())) + 1
            for doc in pages(entry):
                chapter[doc] = number

    for part in toc.get("parts") or []:
        if part.get("numbered"):
            walk(part.get("chapters"))
    if toc.get("numbered"):
        walk(toc.get("chapters"))
    return chapter


def figure_name(metadata: dict) -> Optional[str]:
    """The label of the numbered figure a code cell makes (``mystnb: figure: name:``), or None."""
    figure = ((metadata or {}).get("mystnb") or {}).get("figure") or {}
    return figure.get("name") if isinstance(figure, dict) else None


def figure_caption(metadata: dict) -> Optional[str]:
    """The caption of the numbered figure a code cell makes, or None."""
    figure = ((metadata or {}).get("mystnb") or {}).get("figure") or {}
    return str(figure.get("caption")).strip() if isinstance(figure, dict) and figure.get("caption") else None


def _numbered_items(path: Path) -> Tuple[List[str], List[str]]:
    """(equation labels, figure names) of one document, in the order the book numbers them."""
    import jupytext

    if not is_notebook_source(path):
        return math_labels(path.read_text(encoding="utf-8")), []
    equations: List[str] = []
    figures: List[str] = []
    for cell in jupytext.read(path).cells:
        if cell.cell_type == "markdown":
            equations += math_labels(cell.source)
        elif cell.cell_type == "code" and figure_name(cell.metadata):
            figures.append(figure_name(cell.metadata))
    return equations, figures


def markdown_cells(path: Path) -> List[Optional[str]]:
    """The markdown of each cell of a MyST document (None for code cells); a plain MyST page is
    one cell."""
    import jupytext

    if not is_notebook_source(path):
        return [path.read_text(encoding="utf-8")]
    nb = jupytext.read(path)
    return [c.source if c.cell_type == "markdown" else None for c in nb.cells]


def is_notebook_source(path: Path) -> bool:
    """A jupytext MyST notebook (front matter with a ``jupytext`` key): a chapter Colab can open."""
    text = Path(path).read_text(encoding="utf-8")
    return text.startswith("---") and "jupytext" in text.split("\n---", 1)[0]


@dataclass
class BookIndex:
    """The book as the converter sees it; :meth:`links` gives what cells may point at."""

    root: Path
    repo: Repository
    docs: List[str]
    links: Links
    chapters: Dict[str, int]          # docname -> its chapter number, for the numbered parts
    values: BookValues = field(default_factory=lambda: BookValues("", {}))   # the book run's glue

    def notebook_sources(self) -> List[Path]:
        """The ``.md`` source of every notebook chapter, in table-of-contents order."""
        paths = [self.root / f"{doc}.md" for doc in self.docs]
        return [p for p in paths if is_notebook_source(p)]

    @classmethod
    def load(cls, root: Path) -> "BookIndex":
        root = Path(root).resolve()
        repo = Repository.from_config(root)
        docs = toc_documents(root)
        titles: Dict[str, str] = {}
        urls: Dict[str, str] = {}
        sections: Dict[str, Section] = {}
        exercises: Dict[str, Tuple[str, str]] = {}
        numbers: Dict[str, List[Optional[str]]] = {}
        equations: Dict[str, str] = {}
        figures: Dict[str, str] = {}
        chapters = toc_chapter_numbers(root)
        chapter_of = toc_chapter_of(root)
        counts: Dict[Tuple[object, str], int] = {}   # (chapter, kind) -> numbered so far

        def number(doc: str, kind: str, label: str, into: Dict[str, str]) -> None:
            if label in equations or label in figures:
                raise BookConfigError(f"{doc}: the label {label!r} is used twice in the book")
            # a page outside the numbered parts: numbered on its own, without a chapter ("(2)")
            key = (chapter_of.get(doc, doc), kind)
            counts[key] = counts.get(key, 0) + 1
            into[label] = f"{key[0]}.{counts[key]}" if doc in chapter_of else str(counts[key])

        for doc in docs:
            path = root / f"{doc}.md"
            if not path.exists():
                raise BookConfigError(f"_toc.yml lists {doc}, but {path.name} is not there")
            cells = markdown_cells(path)
            titles[doc] = next((t for t in map(first_heading, filter(None, cells)) if t), doc)
            urls[doc] = repo.colab_url(f"{doc}.ipynb") if is_notebook_source(path) else repo.blob_url(f"{doc}.md")
            numbers[doc] = []
            eq_labels, fig_names = _numbered_items(path)
            for label in eq_labels:
                number(doc, "equation", label, equations)
            for name in fig_names:
                number(doc, "figure", name, figures)
            for i, source in enumerate(cells):
                if source is None:
                    continue
                _index_sections(doc, i, source, sections)
                for d in iter_directives(source):
                    if d.name != "exercise":
                        continue
                    label = None
                    if "nonumber" not in d.options:
                        if doc not in chapter_of:
                            raise BookConfigError(
                                f"{doc} has a numbered exercise but is not in a numbered part of _toc.yml: "
                                "exercises are numbered by chapter (add `numbered: 1` to its part)")
                        key = (chapter_of[doc], "exercise")
                        counts[key] = counts.get(key, 0) + 1
                        label = f"{key[0]}.{counts[key]}"
                    numbers[doc].append(label)
                    if d.options.get("label"):
                        exercises[d.options["label"]] = (doc, label)
        bib = load_bibliography(root / "references.bib")
        return cls(root, repo, docs, Links(bib, titles, urls, sections, exercises, numbers, equations, figures),
                   chapters, BookValues.load(root))


def _index_sections(doc: str, cell: int, source: str, sections: Dict[str, Section]) -> None:
    """Record each ``(label)=`` target of a cell with the heading that follows it."""
    label = None
    for kind, value in parse_blocks(source.split("\n")):
        if kind == "target":
            label = value
            continue
        if label and kind == "text":
            lines = [line for line in value if line.strip()]
            title = first_heading(lines[0]) if lines else None
            if title:
                sections[label] = Section(doc, title, cell)
            if lines:
                label = None
