"""The tools the chapters use to read as a book: glue (numbers in prose bound to the cells that
compute them), one figure style sized for the column, and exercises numbered by chapter, the same
in the book, the Colab edition and the student versions."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from infoenh.teaching.glue import GLUE_PREFIX
from infoenh.teaching import figsize, glue, use_book_style
from infoenh.teaching.book_index import BookConfigError, BookIndex, toc_chapter_numbers
from infoenh.teaching.myst_markdown import CellContext, convert_cell
from infoenh.teaching.student import write_student_versions

ROOT = Path(__file__).resolve().parents[1]


class _Shell:
    def __init__(self):
        self.shown = []


@pytest.fixture
def shell(monkeypatch):
    """A stand-in IPython: records what glue displays."""
    sh = _Shell()
    import IPython
    import IPython.display

    monkeypatch.setattr(IPython, "get_ipython", lambda: sh)
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False, metadata=None: sh.shown.append((obj, metadata)))
    return sh


def test_glue_records_the_value_as_myst_nb_reads_it(shell, monkeypatch, capsys):
    monkeypatch.setenv("INFOENH_BOOK_BUILD", "1")
    assert glue("recall", np.float32(0.25)) == np.float32(0.25)
    (bundle, meta), = shell.shown
    assert bundle == {"application/papermill.record/text/plain": "0.25"}
    assert meta == {"scrapbook": {"name": "recall", "mime_prefix": "application/papermill.record/"}}
    assert capsys.readouterr().out == ""          # the book shows the value in the prose only
    monkeypatch.setenv("INFOENH_BOOK_BUILD", "0")
    glue("n_clips", torch.tensor(192))
    assert capsys.readouterr().out == "n_clips = 192\n"   # off the book the student sees it


@pytest.mark.parametrize("value, error", [
    (float("nan"), "nan"), (np.inf, "inf"), (np.ones(3), "scalar"), (torch.ones(2), "scalar"),
    ([1, 2], "real number"), (True, "real number"),
])
def test_glue_refuses_what_prose_cannot_state(shell, value, error):
    with pytest.raises((ValueError, TypeError), match=error):
        glue("x", value)


def test_glue_refuses_a_name_myst_cannot_refer_to(shell):
    with pytest.raises(ValueError, match="glue name"):
        glue("two words", 1.0)


def test_glue_outside_ipython_just_returns(monkeypatch):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert glue("x", 3) == 3
    assert GLUE_PREFIX == "application/papermill.record/"


def test_figsize_fits_the_column_and_refuses_unreadable_grids():
    w, h = figsize(2, 3)
    assert w <= 9.0 and h == pytest.approx(2 * 3.0)
    with pytest.raises(ValueError, match="side by side"):
        figsize(1, 4)
    with pytest.raises(ValueError, match="wider"):
        figsize(width=12)


def test_book_style_sets_one_theme():
    import matplotlib

    matplotlib.use("Agg")
    use_book_style()
    rc = matplotlib.rcParams
    assert tuple(rc["figure.figsize"]) == figsize()
    assert rc["figure.dpi"] == 100 and rc["axes.grid"]


def test_chapters_are_numbered_in_reading_order():
    from infoenh.teaching.book_index import toc_chapter_of

    numbers, pages = toc_chapter_numbers(ROOT), toc_chapter_of(ROOT)
    stems = sorted(p.stem for p in (ROOT / "notebooks").glob("*.md"))
    # a chapter's section pages (sections: in _toc.yml) share its number; the chapters count on
    chapters = [c for c in stems if f"notebooks/{c}" in numbers]
    assert all(f"notebooks/{c}" in pages for c in stems)
    assert [numbers[f"notebooks/{c}"] for c in chapters] == list(range(1, len(chapters) + 1))
    assert "book/glossary" not in numbers and "book/intro" not in numbers


def test_exercises_are_numbered_by_chapter():
    from infoenh.teaching.book_index import toc_chapter_of

    index = BookIndex.load(ROOT)
    pages = toc_chapter_of(ROOT)       # a chapter's section pages continue its count
    by_chapter: dict = {}
    for doc, numbers in index.links.numbers.items():    # table-of-contents order
        by_chapter.setdefault(pages.get(doc), []).extend(numbers)
    seen = 0
    for chapter, numbers in by_chapter.items():
        if numbers:
            assert numbers == [f"{chapter}.{i}" for i in range(1, len(numbers) + 1)], chapter
            seen += len(numbers)
    assert seen >= 9


def test_a_numbered_exercise_outside_a_numbered_part_is_an_error(tmp_path):
    for name in ("_config.yml", "references.bib"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nparts:\n  - caption: A\n    chapters:\n      - file: a\n")
    (tmp_path / "intro.md").write_text("# Intro\n")
    (tmp_path / "a.md").write_text("# A\n\n```{exercise}\n:label: ex-a\nDo it.\n```\n")
    with pytest.raises(BookConfigError, match="numbered part"):
        BookIndex.load(tmp_path)


def test_student_versions_carry_the_book_numbers(tmp_path):
    colab = sorted((ROOT / "notebooks").glob("*.ipynb"))
    index = BookIndex.load(ROOT)
    for path in write_student_versions(colab, tmp_path):
        md = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        want = [n for n in index.links.numbers[f"notebooks/{path.stem}"] if n]
        assert re.findall(r"^\*\*Exercise (\d+\.\d+)", md, re.M) == want, path.name


def test_glue_roles_name_the_value_in_colab():
    index = BookIndex.load(ROOT)
    ctx = CellContext("notebooks/01_task", index.links, cell=3)
    assert convert_cell("Recall is {glue:text}`recall_v:.2f` here.", ctx) == "Recall is `recall_v` here."


def test_colab_titles_carry_the_chapter_number():
    numbers = toc_chapter_numbers(ROOT)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if f"notebooks/{path.stem}" not in numbers:
            continue    # a chapter's section page (sections: in _toc.yml): the book numbers only chapters
        nb = nbformat.read(path, as_version=4)
        first = next(c.source for c in nb.cells if c.cell_type == "markdown")
        assert first.startswith(f"# {numbers[f'notebooks/{path.stem}']}. "), (path.name, first[:60])


_DRAWS = re.compile(r"\b(plt\.subplots|plt\.figure|sns\.\w+plot|sns\.heatmap)\(")


@pytest.mark.parametrize("md", sorted((ROOT / "notebooks").glob("*.md")), ids=lambda p: p.stem)
def test_chapters_use_the_book_style_and_fold_their_plotting_code(md):
    import jupytext

    nb = jupytext.read(md)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any("use_book_style()" in c.source for c in code), f"{md.name}: call use_book_style() once"
    unfolded = [c.source.splitlines()[0][:60] for c in code
                if _DRAWS.search(c.source) and "hide-input" not in c.metadata.get("tags", [])
                and "solution" not in c.metadata.get("tags", [])]
    assert not unfolded, f"{md.name}: cells that draw a figure without the hide-input tag: {unfolded}"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert ":::{admonition} In this chapter" in text, f"{md.name}: no 'In this chapter' box"
    assert re.search(r"^## Summary\s*$", text, re.M), f"{md.name}: no '## Summary' section"
    assert not re.search(r"[Ee]xercise\s+\d", text), f"{md.name}: an exercise referred to by number; use {{ref}}"


def test_claim_stops_the_book_build_and_only_notes_elsewhere(monkeypatch, capsys):
    from infoenh.teaching import claim

    claim(True, "recall stays below chance")
    monkeypatch.setenv("INFOENH_BOOK_BUILD", "1")
    with pytest.raises(AssertionError, match="recall stays below chance"):
        claim(False, "recall stays below chance")
    monkeypatch.delenv("INFOENH_BOOK_BUILD")
    claim(np.bool_(False), "recall stays below chance")
    assert "does not hold" in capsys.readouterr().out
    with pytest.raises(ValueError, match="statement"):
        claim(True, "")


def test_colab_edition_explains_its_named_numbers():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        md = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
        names = re.findall(r"\{glue:text\}`([\w-]+)", (ROOT / "notebooks" / f"{path.stem}.md").read_text())
        if names:
            assert md[1].startswith("> **Numbers in the text.**") and f"`{names[0]}`" in md[1], path.name
            assert f"`{names[0]}`" in "\n".join(md[2:]), path.name      # the prose names it


def test_print_wrapped_folds_to_the_column(capsys):
    from infoenh.teaching import print_wrapped
    from infoenh.teaching.style import OUTPUT_WIDTH

    print_wrapped("data:", "word " * 40, indent=2)
    print_wrapped("", "short")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("data: word") and all(len(l) <= OUTPUT_WIDTH for l in lines)
    assert all(l.startswith("  word") for l in lines[1:-1]) and lines[-1] == "short"


def test_glue_names_are_read_from_the_roles_only():
    from infoenh.teaching.myst_markdown import glue_names

    text = "A {glue:text}`ch1_a:.2f`, {glue:}`ch1_b` and {glue}`ch1_c`; not `ch1_d` nor {doc}`x`."
    assert glue_names(text) == ["ch1_a", "ch1_b", "ch1_c"]


def test_equation_index_cites_every_numbered_equation():
    """book/equations.md, the index of the book's equations, cites each labelled display
    equation of the chapters by its number ({eq}`label`), so none is left out of it."""
    index = BookIndex.load(ROOT)
    text = (ROOT / "book" / "equations.md").read_text(encoding="utf-8")
    chapters = {label for label in index.links.equations}
    assert chapters, "no labelled display equation in the book"
    missing = sorted(label for label in chapters if f"{{eq}}`{label}`" not in text)
    assert not missing, f"book/equations.md does not cite: {missing}"
