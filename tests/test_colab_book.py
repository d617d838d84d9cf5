"""The Colab edition and the built book agree: exercises carry the same numbers, and each
solution answers the exercise the book says it does. Needs the book built by ``.ci/book``
(``_build/html``); skipped without it unless INFOENH_REQUIRE_BOOK=1 (``.ci/test`` sets it)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html" / "notebooks"
IPYNB_FILES = sorted((ROOT / "notebooks").glob("*.ipynb"))

if not HTML.is_dir():
    if os.environ.get("INFOENH_REQUIRE_BOOK") == "1":
        raise RuntimeError("_build/html is missing: run `bash .ci/book --no-setup` first")
    pytest.skip("the book is not built (bash .ci/book)", allow_module_level=True)


def _book_numbers(page: Path):
    """(exercise numbers, numbers of the exercises the solutions answer) on a built page."""
    html = page.read_text(encoding="utf-8")
    exercises = re.findall(r'<span class="caption-number">Exercise (\d+\.\d+)\s*</span>', html)
    solutions = re.findall(r"Solution to<a[^>]*>\s*Exercise (\d+\.\d+)", html)
    return exercises, solutions


@pytest.mark.parametrize("ipynb", IPYNB_FILES, ids=lambda p: p.name)
def test_exercise_and_solution_numbers_match_the_book(ipynb):
    md = "\n".join(c.source for c in nbformat.read(ipynb, as_version=4).cells if c.cell_type == "markdown")
    colab = (re.findall(r"^\*\*Exercise (\d+\.\d+)", md, re.M),
             re.findall(r"<summary>Solution to Exercise (\d+\.\d+)", md))
    assert colab == _book_numbers(HTML / f"{ipynb.stem}.html"), ipynb.name
