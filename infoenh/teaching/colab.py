"""The Colab edition of the chapters: each ``notebooks/NN_name.ipynb`` is generated from its MyST
source ``notebooks/NN_name.md``.

The ``.md`` is the source of truth, and the book is built from it. The committed ``.ipynb`` is what
Colab opens (the book's launch buttons point at it): the same code cells with the same tags, and
markdown cells rewritten by :mod:`infoenh.teaching.myst_markdown` so that no MyST markup shows and
solutions stay collapsed; a last cell lists the works the chapter cites.

The first code cell of every chapter installs the package on Colab. It is written from
``_config.yml``'s ``repository`` (the setting the launch buttons come from), so a fork changes one
line there and runs::

    python -m infoenh.teaching.colab --sync     # rewrite the install cells, regenerate the .ipynb
    python -m infoenh.teaching.colab            # regenerate the .ipynb after editing a .md
    python -m infoenh.teaching.colab --check    # exit 1 when anything is out of date

(``infoenh teach colab`` is the same command.)
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import re
import sys
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional

from .book_index import BookIndex, Repository, figure_caption, figure_name
from .book_values import BookValues, notebook_code
from .myst_markdown import CellContext, MystConversionError, convert_cell, glue_names

if TYPE_CHECKING:  # nbformat and jupytext come with the test and book extras, not with the package
    import nbformat

INSTALL_SOURCE_VAR = "INFOENH_INSTALL_SOURCE"
EDITION = "colab"

# What Colab's runtime already has and the chapters use (pip name -> import name). The `colab`
# extra adds only what is missing from this list; the Colab-like test installs exactly these.
COLAB_PREINSTALLED = {
    "torch": "torch", "numpy": "numpy", "scipy": "scipy", "scikit-learn": "sklearn",
    "threadpoolctl": "threadpoolctl", "matplotlib": "matplotlib", "seaborn": "seaborn",
    "pandas": "pandas", "tqdm": "tqdm", "ipykernel": "ipykernel", "ipython": "IPython", "gdown": "gdown",
}

_INSTALL_TEMPLATE = """\
# On Colab only: install the infoenh package with its light `colab` extra (Colab already has
# torch, numpy, matplotlib...). {var}, a folder or a pip URL, installs from
# elsewhere (a fork, a local checkout). Written from _config.yml by
# `python -m infoenh.teaching.colab --sync`: change the repository there, not here.
import os
import sys

if "google.colab" in sys.modules:
    _source = os.environ.get("{var}") or "{url}"
    if os.path.isdir(_source):
        _source = "file://" + os.path.abspath(_source)
    %pip install -q "infoenh[colab] @ {{_source}}\""""


# first line of a reference-solution code cell in the Colab edition (Colab folds the code under it)
SOLUTION_TITLE = "# @title Solution: double-click this title (or 'Show code') to see the reference answer"


# first line of the install cell in the Colab edition (the book removes that cell: tag remove-cell)
INSTALL_TITLE = "# @title Install infoenh (runs on Colab only; double-click to see the code)"
# cells the book folds (`hide-input`: plotting code) fold in Colab too, behind this title
FIGURE_TITLE = "# @title Code for the figure below (double-click to see it)"
# cells the book runs but does not show (`remove-input`: glue and claims) fold too; their
# output, "name = value" for each number the text quotes, stays visible
BOOKKEEPING_TITLE = "# @title The numbers the text quotes, and its checks (double-click to see the code)"


def without_colab_title(source: str) -> str:
    """A code cell's source without the title line the Colab edition adds (install, solutions)."""
    first, _, rest = source.partition("\n")
    return rest if first in (SOLUTION_TITLE, INSTALL_TITLE, FIGURE_TITLE, BOOKKEEPING_TITLE) else source


def install_cell_source(repo: Repository) -> str:
    """The first code cell of every chapter, for ``repo``."""
    return _INSTALL_TEMPLATE.format(var=INSTALL_SOURCE_VAR, url=repo.install_url)


def _references_cell(keys: List[str], index: BookIndex) -> "nbformat.NotebookNode":
    import nbformat

    lines = ["## References", ""] + [f"- {index.links.bib[k].entry()}" for k in keys]
    return nbformat.v4.new_markdown_cell("\n".join(lines))


def _assign_ids(cells: List[nbformat.NotebookNode], previous: Optional[nbformat.NotebookNode], stem: str) -> None:
    """Keep the ids of the previous edition's cells: identical cells first, then, within a run of
    changed cells, the next previous cell of the same type. New cells get an id hashed from their
    place and content, so a regeneration is reproducible."""
    prev = list(previous.cells) if previous is not None else []
    ids: List[Optional[str]] = [None] * len(cells)
    key = lambda c: (c.cell_type, c.source)  # noqa: E731
    matcher = SequenceMatcher(a=[key(c) for c in prev], b=[key(c) for c in cells], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            ids[j1:j2] = [prev[i].get("id") for i in range(i1, i2)]
        elif tag == "replace":
            i = i1
            for j in range(j1, j2):
                while i < i2 and prev[i].cell_type != cells[j].cell_type:
                    i += 1
                if i < i2:
                    ids[j] = prev[i].get("id")
                    i += 1
    used = set()
    for j, cell in enumerate(cells):
        cid = ids[j]
        n = 0
        while not cid or cid in used:
            digest = hashlib.sha1(f"{stem}\0{j}\0{n}\0{cell.cell_type}\0{cell.source}".encode()).hexdigest()
            cid, n = digest[:8], n + 1
        used.add(cid)
        cell["id"] = cid


def _glue_note(example: str, built_from: Optional[str]) -> str:
    """The note, after a chapter's opening, on how this edition shows the numbers the book prints.
    ``built_from``: the commit of the book run whose values the text quotes (None: it quotes none)."""
    if built_from is None:
        return ("> **Numbers in the text.** The book prints here the numbers this notebook computes. "
                f"This edition names them instead, in code font (like `{example}`): run the cells in "
                f"order, and the cell above each sentence prints the value (`{example} = ...`). "
                "Numbers from your run can differ from the book's, which was built on a CPU at small sizes.")
    return ("> **Numbers in the text.** The numbers in the text are those of the book's run (built "
            f"from commit {built_from}, on a CPU at small sizes), each followed by its name in code "
            f"font (like `{example}`). Run the cells in order: the cell above each sentence prints "
            f"your run's value (`{example} = ...`), which can differ from the book's.")


def colab_notebook(md_path: Path, index: BookIndex,
                   previous: Optional[nbformat.NotebookNode] = None) -> nbformat.NotebookNode:
    """The Colab edition of one chapter; ``previous`` (the committed edition) supplies cell ids."""
    import jupytext
    import nbformat

    md_path = Path(md_path).resolve()
    doc = md_path.relative_to(index.root).with_suffix("").as_posix()
    src = jupytext.read(md_path)
    values = index.values.for_chapter(doc, notebook_code(src))
    ctx = CellContext(doc, index.links, values=values)
    cells = []
    glued = [name for c in src.cells if c.cell_type == "markdown" for name in glue_names(c.source)]
    for i, cell in enumerate(src.cells):
        ctx.cell = i
        meta = copy.deepcopy(dict(cell.metadata))
        if cell.cell_type == "markdown":
            text = convert_cell(cell.source, ctx)
            opening = not any(c.cell_type == "markdown" for c in cells)   # the title and first paragraphs
            if opening and doc in index.chapters:
                # the chapter's number, as the book shows it ("4. Optimal transport..."): exercises are 4.1, 4.2...
                text = re.sub(r"^# (?!\d+\. )", f"# {index.chapters[doc]}. ", text, count=1)
            if text.strip():
                cells.append(nbformat.v4.new_markdown_cell(text, metadata=meta))
            if opening and glued:
                cells.append(nbformat.v4.new_markdown_cell(
                    _glue_note(glued[0], index.values.built_from if values is not None else None)))
        elif cell.cell_type == "code":
            source = cell.source
            tags = meta.get("tags", [])
            title = (SOLUTION_TITLE if "solution" in tags else
                     INSTALL_TITLE if not any(c.cell_type == "code" for c in cells) else
                     FIGURE_TITLE if "hide-input" in tags else
                     BOOKKEEPING_TITLE if "remove-input" in tags else None)
            if title:
                # Colab's form view shows the title and hides the code until the reader opens it
                meta["cellView"] = "form"
                source = f"{title}\n{source}"
            cells.append(nbformat.v4.new_code_cell(source, metadata=meta))
            name = figure_name(meta)
            if name:
                # the book prints the numbered caption under the figure; so does this edition
                caption = convert_cell(figure_caption(meta) or "", ctx)
                cells.append(nbformat.v4.new_markdown_cell(
                    f"**Figure {index.links.figures[name]}.** {caption}".rstrip()))
        else:
            cells.append(nbformat.v4.new_raw_cell(cell.source, metadata=meta))
    if ctx.open_solution:
        raise MystConversionError(f"{doc}: a {{solution-start}} is never ended by {{solution-end}}")
    if ctx.cited:
        cells.append(_references_cell(ctx.cited, index))
    _assign_ids(cells, previous, md_path.stem)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "colab": {"toc_visible": True},
        "infoenh": {"edition": EDITION, "source": f"{doc}.md",
                    "note": "generated from the .md by `python -m infoenh.teaching.colab`: edit the .md"},
        "kernelspec": dict(src.metadata.get("kernelspec") or
                           {"display_name": "Python 3", "language": "python", "name": "python3"}),
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The bytes written to disk (nbformat's layout, one trailing newline)."""
    import nbformat

    return nbformat.writes(nb) + "\n"


def render_all(root: Path, index: Optional[BookIndex] = None) -> Dict[Path, str]:
    """The Colab edition of every chapter, keyed by its ``.ipynb`` path (nothing written)."""
    import nbformat

    index = index or BookIndex.load(root)
    out = {}
    for md in index.notebook_sources():
        target = md.with_suffix(".ipynb")
        previous = nbformat.read(target, as_version=4) if target.exists() else None
        out[target] = notebook_text(colab_notebook(md, index, previous))
    return out


def _first_code_cell_span(lines: List[str]) -> Optional[tuple]:
    """(index of the first content line, index of the closing fence, option lines) of the first
    ``{code-cell}`` of a MyST notebook."""
    for i, line in enumerate(lines):
        m = re.match(r"^(`{3,})\{code-cell\}", line)
        if not m:
            continue
        j, options = i + 1, []
        if j < len(lines) and lines[j].strip() == "---":  # YAML option block
            k = next((k for k in range(j + 1, len(lines)) if lines[k].strip() == "---"), len(lines) - 1)
            options, j = lines[j:k + 1], k + 1
        while j < len(lines) and lines[j].startswith(":"):
            options.append(lines[j])
            j += 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        end = next((k for k in range(j, len(lines)) if lines[k].strip() == m.group(1)), None)
        if end is None:
            raise MystConversionError(f"the first {{code-cell}} (line {i + 1}) is never closed")
        return j, end, options
    return None


def install_cell_in_source(md_path: Path) -> Optional[str]:
    """The source of the first code cell of a chapter's ``.md``."""
    lines = Path(md_path).read_text(encoding="utf-8").split("\n")
    span = _first_code_cell_span(lines)
    return "\n".join(lines[span[0]:span[1]]) if span else None


def sync_install_cell(md_path: Path, repo: Repository) -> bool:
    """Rewrite the first code cell of ``md_path`` from ``repo``; True when the file changed."""
    md_path = Path(md_path)
    text = md_path.read_text(encoding="utf-8")
    lines = text.split("\n")
    span = _first_code_cell_span(lines)
    if span is None or not any("remove-cell" in o for o in span[2]):
        raise MystConversionError(f"{md_path.name}: the first code cell must be the install cell, tagged remove-cell")
    new = "\n".join(lines[:span[0]] + install_cell_source(repo).split("\n") + lines[span[1]:])
    if new == text:
        return False
    md_path.write_text(new, encoding="utf-8")
    return True


_COLAB_LINK = re.compile(r"https?://colab\.research\.google\.com/github/[^\s)\]\"'<>]+")
_GIT_URL = re.compile(r"git\+https?://[^\s\"'<>)\]]+")
_BLOB_LINK = re.compile(r"https?://github\.com/[\w.-]+/[\w.-]+/(?:blob|tree)/[^/\s]+/(?P<path>[^\s)\]\"'<>#?]+)")


def link_problems(text: str, repo: Repository, root: Path, docs: Iterable[str] = ()) -> List[str]:
    """Links in ``text`` that disagree with ``repo``: a Colab link that is not ``repo``'s Colab
    page of a notebook of the book, a ``git+`` URL that is not ``repo.install_url``, a GitHub link
    to a document of the book (``docs``, names without suffix) that names another repository."""
    docs = set(docs)
    found = []
    for m in _COLAB_LINK.finditer(text):
        url = m.group(0)
        prefix = repo.colab_url("")
        path = url[len(prefix):] if url.startswith(prefix) else None
        if not path or not (Path(root) / path).is_file():
            found.append(f"Colab link {url} is not {prefix}<a notebook of the book>")
    for m in _GIT_URL.finditer(text):
        if m.group(0) != repo.install_url:
            found.append(f"install URL {m.group(0)} is not {repo.install_url}")
    for m in _BLOB_LINK.finditer(text):
        rel = m.group("path")
        if repo.path_to_book and rel.startswith(repo.path_to_book + "/"):
            rel = rel[len(repo.path_to_book) + 1:]
        if re.sub(r"\.(md|ipynb)$", "", rel) in docs and not m.group(0).startswith(f"https://github.com/{repo.slug}/"):
            found.append(f"GitHub link {m.group(0)} points at this book in another repository than {repo.url}")
    return found


def problems(root: Path) -> List[str]:
    """What is out of date: install cells and links that disagree with _config.yml's repository,
    ``.ipynb`` files that differ from what their ``.md`` gives."""
    import nbformat

    index = BookIndex.load(root)
    found = []
    want = install_cell_source(index.repo)
    for md in index.notebook_sources():
        rel = md.relative_to(index.root)
        if install_cell_in_source(md) != want:
            found.append(f"{rel}: install cell differs from _config.yml's repository")
        text = md.read_text(encoding="utf-8")
        found += [f"{rel}: {p}" for p in link_problems(text, index.repo, index.root, index.docs)]
        target = md.with_suffix(".ipynb")
        if target.exists():
            nb = nbformat.read(target, as_version=4)
            text = "\n".join(c.source for c in nb.cells)
            found += [f"{target.relative_to(index.root)}: {p}"
                      for p in link_problems(text, index.repo, index.root, index.docs)]
    for target, text in render_all(root, index).items():
        rel = target.relative_to(index.root)
        if not target.exists():
            found.append(f"{rel}: missing")
        elif target.read_text(encoding="utf-8") != text:
            found.append(f"{rel}: differs from what its .md gives")
    return found


def stale_values(index: BookIndex) -> List[str]:
    """Chapters whose code changed since the book run recorded in book/glued_values.json: their
    Colab edition names the glued values instead of quoting the book's (run .ci/book to refresh)."""
    import jupytext

    stale = []
    for md in index.notebook_sources():
        doc = md.relative_to(index.root).with_suffix("").as_posix()
        if index.values.for_chapter(doc, notebook_code(jupytext.read(md))) is None:
            stale.append(doc)
    return stale


def _report_stale(index: BookIndex) -> None:
    stale = stale_values(index)
    if stale:
        print(f"note: book/glued_values.json holds no values for this code of {', '.join(stale)}; "
              "their Colab edition names the numbers instead of quoting the book's "
              "(`bash .ci/book` writes the file, then rerun this)")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infoenh.teaching.colab",
                                description="Regenerate the Colab edition (.ipynb) of every chapter from its .md.")
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=Path("."), help="the book's root folder (holds _config.yml)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sync", action="store_true",
                      help="first rewrite every chapter's install cell from _config.yml's repository")
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 when anything is out of date")


def run(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    if args.check:
        found = problems(root)
        _report_stale(BookIndex.load(root))
        for line in found:
            print(line)
        print("the Colab edition is up to date" if not found else
              "run `python -m infoenh.teaching.colab --sync` to bring it up to date")
        return 1 if found else 0
    index = BookIndex.load(root)
    if args.sync:
        for md in index.notebook_sources():
            if sync_install_cell(md, index.repo):
                print(f"install cell rewritten: {md.relative_to(root)}")
        index = BookIndex.load(root)
    for target, text in render_all(root, index).items():
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(root)}")
    _report_stale(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
