"""Student versions of the book's notebooks: solutions out, checks in.

The chapters mark their exercises with three conventions, all visible in the MyST sources:

- markdown: a ``{solution}`` directive (or a gated ``{solution-start}`` ... ``{solution-end}``
  pair) holds the written solution in the MyST source; in the Colab edition that Colab opens and
  this tool reads (:mod:`infoenh.teaching.colab`) it is a ``<details>`` block whose summary starts
  with "Solution". Either is removed, and so is a markdown cell tagged ``solution``;
- code cells tagged ``solution`` hold the reference answer; the lines between ``# BEGIN SOLUTION``
  and ``# END SOLUTION`` become ``raise NotImplementedError(...)`` with the same indentation
  (a cell without the markers is replaced whole), so the function the student must write keeps
  its signature;
- code cells tagged ``check`` call :mod:`infoenh.teaching.checks`; they stay.

Solution and check cells get the ``raises-exception`` tag in the student version, so the
notebook still executes from top to bottom (nbmake, Jupyter Book) before the student has
answered; each check then reports "not written yet".
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Iterable, List

import nbformat

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("exercise: write your answer here")'
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}")
_DETAILS = re.compile(r"<(/?)details\b[^>]*>", re.I)
_SOLUTION_SUMMARY = re.compile(r"^\s*(?:<details\b[^>]*>)?\s*<summary>\s*Solution\b", re.I)


def _solution_details_end(lines: List[str], i: int) -> int:
    """When ``lines[i]`` opens a ``<details>`` block summarised "Solution...", the index of the
    line that closes it (nested blocks counted; the end of the text if unclosed), else -1."""
    if not re.match(r"^\s*<details\b", lines[i], re.I):
        return -1
    nxt = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), None)
    if not (_SOLUTION_SUMMARY.match(lines[i]) or (nxt is not None and _SOLUTION_SUMMARY.match(lines[nxt]))):
        return -1
    depth = 0
    for j in range(i, len(lines)):
        for m in _DETAILS.finditer(lines[j]):
            depth += -1 if m.group(1) else 1
        if depth <= 0:
            return j
    return len(lines) - 1


def _strip_solution_directives(text: str) -> str:
    """Remove every ``{solution}`` block (backtick or colon fence, any length, nested fences
    inside it kept together), every gated ``{solution-start}``/``{solution-end}`` line, and every
    ``<details>`` block whose summary starts with "Solution"."""
    out: List[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        end = _solution_details_end(lines, i)
        if end >= 0:
            i = end + 1
            while i < len(lines) and not lines[i].strip() and (not out or not out[-1].strip()):
                i += 1  # no run of blank lines where the block was
            continue
        m = _FENCE.match(lines[i].lstrip())
        if m and m.group("name") == "solution":
            fence = m.group("fence")
            i += 1
            while i < len(lines) and lines[i].strip() != fence:
                i += 1
            i += 1  # skip the closing fence
            continue
        if m and m.group("name") in ("solution-start", "solution-end"):
            fence = m.group("fence")
            i += 1
            while i < len(lines) and lines[i].strip() != fence:
                i += 1
            i += 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out).strip("\n")


def _stub_solution(source: str) -> str:
    lines = source.splitlines()
    starts = [i for i, l in enumerate(lines) if l.strip() == BEGIN]
    if not starts:
        return f"# Exercise: your answer here.\n{STUB}"
    out: List[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == BEGIN:
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            j = i + 1
            while j < len(lines) and lines[j].strip() != END:
                j += 1
            if j == len(lines):
                raise ValueError(f"'{BEGIN}' without a matching '{END}' in a solution cell:\n{source}")
            out.append(f"{indent}{STUB}")
            i = j + 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def _tags(cell) -> List[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def make_student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a copy of ``nb`` with solutions removed, answers stubbed and checks kept."""
    out = copy.deepcopy(nb)
    cells = []
    for cell in out.cells:
        tags = _tags(cell)
        if cell.cell_type == "markdown":
            if "solution" in tags:
                continue
            text = _strip_solution_directives(cell.source)
            if not text.strip():
                continue
            cell.source = text
        elif cell.cell_type == "code":
            if "solution" in tags:
                from .colab import without_colab_title

                cell.source = _stub_solution(without_colab_title(cell.source))
                cell.metadata.pop("cellView", None)          # the student's answer goes here: show it
            if ("solution" in tags or "check" in tags) and "raises-exception" not in tags:
                tags.append("raises-exception")
                cell.metadata["tags"] = tags
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    out.cells = cells
    out.metadata.setdefault("infoenh", {})["student_version"] = True
    return out


def has_exercises(nb: nbformat.NotebookNode) -> bool:
    """True when ``nb`` has at least one solution cell (code tagged ``solution``)."""
    return any(c.cell_type == "code" and "solution" in _tags(c) for c in nb.cells)


def write_student_versions(paths: Iterable[Path], out_dir: Path) -> List[Path]:
    """Write the student version of each notebook in ``paths`` to ``out_dir`` (same file names)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for p in map(Path, paths):
        if p.suffix != ".ipynb":
            raise ValueError(f"{p}: expected a .ipynb notebook (make it with `jupytext --to ipynb {p}`)")
        nb = nbformat.read(p, as_version=4)
        target = out_dir / p.name
        nbformat.write(make_student_notebook(nb), target)
        written.append(target)
    return written
