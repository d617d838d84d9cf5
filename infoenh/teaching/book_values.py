"""The values the book's own run glued into its prose, kept for the Colab edition.

The book shows ``{glue:text}`ch4_grad_gap_conv:.1e``` as the number its build computed; the
Colab edition cannot run that build, so ``.ci/book``, after executing every chapter, writes what
each chapter glued to ``book/glued_values.json`` (:func:`write`). The Colab converter then prints
the book run's value where the book prints it, followed by the value's name, which the cell above
prints with the reader's own run.

The file cannot silently drift from the chapters:

- each chapter's entry records a digest of the chapter's code cells (:func:`code_digest`); when the
  code changed since that build the converter uses none of its values and names them instead
  (``python -m infoenh.teaching.colab`` says so), so the Colab edition never quotes a number from
  other code;
- the entry records the commit the build ran from, which the Colab edition states;
- ``tests/rendered`` compares the file with the glue records of the build that just ran, so a file
  that is not that build's output fails the book's checks.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from ast import literal_eval
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from .glue import GLUE_PREFIX

VALUES_FILE = Path("book") / "glued_values.json"
_TEXT = GLUE_PREFIX + "text/plain"


def code_digest(code_sources: Iterable[str]) -> str:
    """sha256 of a chapter's code cells (their sources, in order): what its glued values depend
    on, besides the package."""
    h = hashlib.sha256()
    for source in code_sources:
        h.update(source.encode("utf-8") + b"\0")
    return h.hexdigest()


def notebook_code(nb) -> List[str]:
    """The sources of the code cells of a notebook (nbformat or jupytext)."""
    return [c.source for c in nb.cells if c.cell_type == "code"]


def glued_in(nb) -> Dict[str, str]:
    """``name -> text/plain`` of every value an executed notebook glued (a later glue of the same
    name wins, as in myst-nb)."""
    found: Dict[str, str] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = (out.get("metadata") or {}).get("scrapbook", {}).get("name")
            data = out.get("data") or {}
            if name and _TEXT in data:
                found[name] = data[_TEXT]
    return found


def format_value(text: str, fmt_spec: str) -> str:
    """A glued text/plain value formatted as myst-nb's ``{glue:text}`name:fmt``` shows it
    (myst_nb.core.variables.format_plain_text)."""
    try:
        value = literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if fmt_spec == "":
        return str(value)
    kind = fmt_spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, fmt_spec)


def _commit(root: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes" if dirty else "")


def collect(executed: Path, root: Path) -> dict:
    """The content of ``book/glued_values.json`` from the executed chapters in ``executed``
    (``_site/notebooks`` after ``.ci/book``'s nbmake run)."""
    import nbformat

    chapters = {}
    for path in sorted(Path(executed).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        chapters[f"notebooks/{path.stem}"] = {"code_sha256": code_digest(notebook_code(nb)),
                                              "values": glued_in(nb)}
    return {"about": "written by .ci/book from the executed chapters: the numbers the book's prose "
                     "shows; read by python -m infoenh.teaching.colab",
            "built_from": _commit(root), "chapters": chapters}


def dumps(content: dict) -> str:
    return json.dumps(content, indent=1, sort_keys=True) + "\n"


@dataclass
class BookValues:
    """``book/glued_values.json`` as the converter reads it."""

    built_from: str
    chapters: Dict[str, dict]

    @classmethod
    def load(cls, root: Path) -> "BookValues":
        path = Path(root) / VALUES_FILE
        if not path.exists():
            return cls("", {})
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(str(data.get("built_from", "")), dict(data.get("chapters") or {}))

    def for_chapter(self, doc: str, code_sources: Iterable[str]) -> Optional[Dict[str, str]]:
        """The values the book's run glued in ``doc``, or None when that run executed other code
        (or never ran the chapter)."""
        entry = self.chapters.get(doc)
        if not entry or entry.get("code_sha256") != code_digest(code_sources):
            return None
        return dict(entry.get("values") or {})


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m infoenh.teaching.book_values EXECUTED_DIR [ROOT | FILE.json]``: write
    ROOT/book/glued_values.json (the committed file), or FILE.json (``.ci/book``: this run's values,
    which ``tests/rendered`` compares with the committed file)."""
    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2:
        print("usage: python -m infoenh.teaching.book_values EXECUTED_NOTEBOOKS_DIR [BOOK_ROOT | FILE.json]",
              file=sys.stderr)
        return 2
    executed, target = Path(argv[0]), Path(argv[1] if len(argv) > 1 else ".")
    root, out = (Path("."), target) if target.suffix == ".json" else (target, target / VALUES_FILE)
    if not any(executed.glob("*.ipynb")):
        print(f"no executed notebooks in {executed}: run the chapters first (.ci/book does)", file=sys.stderr)
        return 1
    out.write_text(dumps(collect(executed, root)), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
