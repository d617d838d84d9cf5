"""What Colab shows: every markdown cell of every committed notebook, rendered by markdown-it-py
(CommonMark, as Jupyter front-ends render it), has no raw MyST markup, and every solution is
collapsed in a <details> block. The same check fails on the raw MyST the book is written in."""
from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

from infoenh.teaching.markup_check import cell_problems, notebook_problems, render

ROOT = Path(__file__).resolve().parents[1]
IPYNB_FILES = sorted((ROOT / "notebooks").glob("*.ipynb"))
MD_FILES = sorted((ROOT / "notebooks").glob("*.md"))


@pytest.mark.parametrize("ipynb", IPYNB_FILES, ids=lambda p: p.name)
def test_colab_edition_reads_well(ipynb):
    found = notebook_problems(nbformat.read(ipynb, as_version=4))
    assert not found, f"{ipynb.name}:\n" + "\n".join(found)


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: p.name)
def test_the_check_fails_on_raw_myst(md):
    """Opened as it was before the Colab edition (jupytext's plain conversion of the .md), every
    chapter shows raw markup; the check must see it."""
    found = notebook_problems(jupytext.read(md))
    assert any("shows raw" in p for p in found), md.name


def test_every_chapter_with_exercises_hides_its_solutions():
    for ipynb in IPYNB_FILES:
        nb = nbformat.read(ipynb, as_version=4)
        html = "".join(render(c.source) for c in nb.cells if c.cell_type == "markdown")
        if "<strong>Exercise" in html:
            assert "<summary>Solution to Exercise" in html, ipynb.name


@pytest.mark.parametrize("source, what", [
    ("InfoEnh {cite}`xie2024infoenh` filters.", "MyST role"),
    ("See {doc}`03_information_bottleneck`.", "MyST role"),
    ("```{exercise}\n:label: ex\nDo it.\n```", "directive fence"),
    ("````{solution} ex\n:class: dropdown\nDone.\n````", "directive fence"),
    (":::{note}\nCareful.\n:::", "colon fence"),
    ("(ch01-licence)=\n### Licence", "target"),
    ("% a comment for the authors\nText.", "comment"),
    ("Text\n:label: ex-1\nmore", "directive option"),
    ("Value {{ n_epochs }}.", "substitution"),
])
def test_check_flags_each_kind_of_raw_markup(source, what):
    found = cell_problems(source)
    assert any(what in p for p in found), found


def test_check_flags_solutions_in_plain_view():
    assert any("not one collapsed" in p for p in cell_problems("The answer is 4.", tags=["solution"]))
    assert any("outside a <details>" in p for p in cell_problems("**Solution.** The answer is 4."))
    assert any("without a <summary>" in p for p in cell_problems("<details>\n\nThe answer.\n\n</details>"))
    ok = "<details>\n<summary>Solution to Exercise 1</summary>\n\nThe answer is $4$.\n\n</details>"
    assert cell_problems(ok, tags=["solution"]) == []


def test_check_leaves_math_and_plain_code_alone():
    text = ("$\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}$ and\n\n$$\nx_{i} = \\frac{a}{b}\n$$\n\n"
            "```python\nd = {k: v for k, v in x}\n```\n\nA set `{1, 2}` in code; 50% of clips.")
    assert cell_problems(text) == []
