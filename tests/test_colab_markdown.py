"""The MyST -> plain Markdown converter behind the Colab edition, on small hand-made cases: each
kind of markup the chapters use, the numbering shared with the book, and the errors that stop
unknown markup from reaching a student."""
from __future__ import annotations

import nbformat
import pytest

from infoenh.teaching.bibliography import Author, latex_to_text, parse_bibtex
from infoenh.teaching.colab import _assign_ids
from infoenh.teaching.myst_markdown import CellContext, Links, MystConversionError, Section, convert_cell

BIB = parse_bibtex(r"""
@inproceedings{xie2024infoenh, title = {{InfoEnh}: Towards {MSA}}, author = {Xie, Yifeng and Zhu, Zhihong and Lu, Xuan},
  booktitle = {LREC-COLING}, year = {2024}}
@article{oord2018cpc, title = {Representation Learning with {CPC}}, author = {van den Oord, Aaron and Li, Yazhe},
  journal = {arXiv preprint arXiv:1807.03748}, year = {2018}}
@article{peyre2019, title = "Computational {OT}", author = {Peyr{\'e}, Gabriel}, doi = {10.1561/2200000073}, year = 2019}
""")
COLAB = "https://colab.research.google.com/github/me/book/blob/main/notebooks/"


def _ctx(doc="notebooks/02_b", numbers=("2.1", "2.2")):
    links = Links(
        bib=BIB,
        titles={"notebooks/01_a": "Chapter A", "notebooks/02_b": "Chapter B", "book/intro": "Intro"},
        urls={"notebooks/01_a": COLAB + "01_a.ipynb", "notebooks/02_b": COLAB + "02_b.ipynb",
              "book/intro": "https://github.com/me/book/blob/main/book/intro.md"},
        sections={"sec-testbed": Section("notebooks/01_a", "The testbed", 3),
                  "sec-later": Section("notebooks/02_b", "Later on", 9)},
        exercises={"ex-first": ("notebooks/02_b", numbers[0]), "ex-second": ("notebooks/02_b", numbers[1]),
                   "ex-elsewhere": ("notebooks/01_a", "1.1")},
        numbers={"notebooks/02_b": list(numbers)},
        equations={"eq-energy": "2.1"},
    )
    return CellContext(doc, links, cell=5)


def test_bibliography_reads_names_accents_and_links():
    assert latex_to_text(r"Peyr{\'e} and St{\"o}gbauer, Fran{\c{c}}ois \& co --") == "Peyré and Stögbauer, François & co \u2013"
    assert Author.parse("van den Oord, Aaron").last == "van den Oord"
    assert Author.parse("Aaron van den Oord").last == "van den Oord"
    assert BIB["xie2024infoenh"].short_authors() == "Xie et al."
    assert BIB["oord2018cpc"].short_authors() == "van den Oord and Li"
    assert BIB["oord2018cpc"].link == "https://arxiv.org/abs/1807.03748"
    assert BIB["peyre2019"].link == "https://doi.org/10.1561/2200000073"
    assert BIB["xie2024infoenh"].link is None
    assert BIB["peyre2019"].year == "2019" and BIB["xie2024infoenh"].title == "InfoEnh: Towards MSA"


def test_citations_in_the_books_author_year_style():
    ctx = _ctx()
    out = convert_cell("InfoEnh {cite}`xie2024infoenh` and {cite:t}`oord2018cpc`; both {cite:p}`peyre2019, xie2024infoenh`.", ctx)
    assert out == ("InfoEnh (Xie et al., 2024) and [van den Oord and Li (2018)](https://arxiv.org/abs/1807.03748); "
                   "both ([Peyré, 2019](https://doi.org/10.1561/2200000073); Xie et al., 2024).")
    assert ctx.cited == ["xie2024infoenh", "oord2018cpc", "peyre2019"]
    with pytest.raises(MystConversionError, match="nobody2020"):
        convert_cell("{cite}`nobody2020`", _ctx())


def test_code_spans_are_not_roles():
    text = "Write `{cite}` roles as `` {cite}`key` `` in MyST; `x = {1: 2}` is code."
    assert convert_cell(text, _ctx()) == text


def test_doc_and_ref_become_links_or_titles():
    ctx = _ctx()
    assert convert_cell("See {doc}`01_a` and {doc}`the intro </book/intro>`.", ctx) == (
        f"See [Chapter A]({COLAB}01_a.ipynb) and [the intro](https://github.com/me/book/blob/main/book/intro.md).")
    assert convert_cell("({ref}`sec-testbed`)", ctx) == f"([The testbed]({COLAB}01_a.ipynb))"
    assert convert_cell("see {ref}`sec-later`", ctx) == "see the section \u201cLater on\u201d below"
    ctx.cell = 12
    assert convert_cell("see {ref}`sec-later`", ctx) == "see the section \u201cLater on\u201d above"
    assert convert_cell("{ref}`ex-elsewhere`", ctx) == f"[Exercise 1.1]({COLAB}01_a.ipynb)"
    with pytest.raises(MystConversionError, match="no-such"):
        convert_cell("{ref}`no-such`", ctx)
    with pytest.raises(MystConversionError, match="03_c"):
        convert_cell("{doc}`03_c`", ctx)


def test_exercises_are_numbered_as_in_the_book_and_solutions_collapse():
    ctx = _ctx()
    source = ("```{exercise}\n:label: ex-first\n\nCompute $x_{i}$.\n```\n\n"
              "````{solution} ex-first\n:class: dropdown\n\nIt is {cite}`xie2024infoenh`:\n```python\nx = 1\n```\n````")
    assert convert_cell(source, ctx) == (
        "**Exercise 2.1**\n\nCompute $x_{i}$.\n\n<details>\n<summary>Solution to Exercise 2.1</summary>\n\n"
        "It is (Xie et al., 2024):\n```python\nx = 1\n```\n\n</details>")
    assert convert_cell("```{exercise} Rounding\n:label: ex-second\nGo.\n```", ctx) == "**Exercise 2.2 (Rounding)**\n\nGo."


def test_gated_solution_spans_cells():
    """{solution-start} in one cell, a code cell, {solution-end} in a later cell: the written part
    collapses, the end marker leaves nothing behind."""
    ctx = _ctx()
    start = convert_cell("```{solution-start} ex-second\n:class: dropdown\n```\n\nHalf to even: $0.5 \\to 0$.", ctx)
    assert start == "<details>\n<summary>Solution to Exercise 2.2</summary>\n\nHalf to even: $0.5 \\to 0$.\n\n</details>"
    assert ctx.open_solution
    assert convert_cell("```{solution-end}\n```", ctx) == ""
    assert ctx.open_solution is None
    with pytest.raises(MystConversionError, match="without"):
        convert_cell("```{solution-end}\n```", ctx)


def test_admonitions_targets_comments_and_math():
    ctx = _ctx()
    assert convert_cell(":::{note}\nMind the {cite}`peyre2019` scale.\n:::", ctx) == (
        "> **Note**\n>\n> Mind the ([Peyré, 2019](https://doi.org/10.1561/2200000073)) scale.")
    assert convert_cell("```{admonition} Why not POT?\n:class: dropdown\nSpeed.\n```", ctx) == (
        "<details>\n<summary>Why not POT?</summary>\n\nSpeed.\n\n</details>")
    assert convert_cell("(sec-x)=\n## Title\n% hidden remark\nText.", ctx) == "## Title\nText."
    assert convert_cell("$$\nE = mc^2\n$$ (eq-energy)\n\nand $a_{1}$.", ctx) == "$$\nE = mc^2\n\\tag{2.1} $$\n\nand $a_{1}$."


def test_unknown_markup_is_an_error_not_raw_text():
    with pytest.raises(MystConversionError, match="figure"):
        convert_cell("```{figure} plot.png\nA plot.\n```", _ctx())
    with pytest.raises(MystConversionError, match="download"):
        convert_cell("See {download}`fig-x.png`.", _ctx())
    with pytest.raises(MystConversionError, match="fig-x"):      # {numref} of no numbered figure
        convert_cell("See {numref}`fig-x`.", _ctx())
    with pytest.raises(MystConversionError, match="never closed"):
        convert_cell("```{exercise}\nunclosed", _ctx())


def test_cell_ids_survive_markdown_edits_and_new_ids_are_reproducible():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    old = nbformat.v4.new_notebook(cells=[md("{cite}`a`"), code("x = 1"), md("```{solution-end}\n```"), code("y")])
    for cell, cid in zip(old.cells, ["m1", "c1", "m2", "c2"]):
        cell["id"] = cid
    new = [md("(A, 2020)"), code("x = 1"), code("y"), md("## References")]
    _assign_ids(new, old, "ch")
    assert [c["id"] for c in new[:3]] == ["m1", "c1", "c2"]
    again = [md("(A, 2020)"), code("x = 1"), code("y"), md("## References")]
    _assign_ids(again, None, "ch")
    twice = [md("(A, 2020)"), code("x = 1"), code("y"), md("## References")]
    _assign_ids(twice, None, "ch")
    assert [c["id"] for c in again] == [c["id"] for c in twice]
    assert len({c["id"] for c in again}) == 4
