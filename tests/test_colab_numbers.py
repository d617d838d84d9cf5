"""The Colab edition prints the book's numbers (issue 19): ``{eq}`` as "(4.3)", ``{numref}`` as
"Figure 4.2", a labelled display equation with its number, a figure's numbered caption under it,
and the book run's glued values (book/glued_values.json) where the book prints them."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from infoenh.teaching.book_index import BookIndex, toc_chapter_of
from infoenh.teaching.book_values import (BookValues, code_digest, collect, dumps, format_value,
                                          glued_in, notebook_code)
from infoenh.teaching.colab import colab_notebook, stale_values
from infoenh.teaching.glue import GLUE_PREFIX
from infoenh.teaching.myst_markdown import (CellContext, Links, MystConversionError, convert_cell,
                                            math_labels)

ROOT = Path(__file__).resolve().parents[1]
FRONT = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def _ctx(values=None):
    links = Links(bib={}, titles={}, urls={}, sections={}, exercises={}, numbers={},
                  equations={"eq-a": "4.3"}, figures={"fig-a": "4.2"})
    return CellContext("notebooks/04_x", links, values=values)


def test_eq_and_numref_print_the_books_numbers():
    ctx = _ctx()
    assert convert_cell("By Eq. {eq}`eq-a`, see {numref}`fig-a`.", ctx) == "By Eq. (4.3), see Figure 4.2."
    assert convert_cell("{numref}`Panel of Fig. %s <fig-a>`", ctx) == "Panel of Fig. 4.2"
    with pytest.raises(MystConversionError, match="eq-missing"):
        convert_cell("{eq}`eq-missing`", ctx)
    with pytest.raises(MystConversionError, match="fig-missing"):
        convert_cell("{numref}`fig-missing`", ctx)


def test_a_labelled_display_equation_carries_its_number():
    ctx = _ctx()
    assert convert_cell("$$\nx = y\n$$ (eq-a)", ctx) == "$$\nx = y\n\\tag{4.3} $$"
    assert convert_cell("$$ x = y $$ (eq-a)", ctx) == "$$ x = y \\tag{4.3} $$"
    assert convert_cell("$$\nx = y\n$$", ctx) == "$$\nx = y\n$$"       # unlabelled: unnumbered


def test_math_labels_in_document_order_inside_directives_too():
    text = "$$ a $$ (eq-1)\n\n```{exercise}\n:label: ex\n$$\nb\n$$ (eq-2)\n```\n\n```{math}\n:label: eq-3\nc\n```\n"
    assert math_labels(text) == ["eq-1", "eq-2", "eq-3"]
    assert math_labels("```python\n$$ a $$ (eq-no)\n```\n") == []


def test_glued_values_quote_the_book_run_formatted_as_the_book_does():
    ctx = _ctx(values={"gap": "1.2345e-09", "acc": "0.8125", "dev": "'cpu'"})
    out = convert_cell("gap {glue:text}`gap:.1e`, acc {glue:text}`acc:.1%`, on {glue:text}`dev`.", ctx)
    assert out == "gap 1.2e-09 (`gap`), acc 81.2% (`acc`), on cpu (`dev`)."
    assert convert_cell("{glue:text}`gap:.1e`", _ctx()) == "`gap`"       # no book run: the name
    with pytest.raises(MystConversionError, match="'nope'"):
        convert_cell("{glue:text}`nope:.2f`", ctx)


@pytest.mark.parametrize("text,fmt", [("0.81234", ".2f"), ("1.5e-09", ".1e"), ("12", "d"), ("'cpu'", ""),
                                      ("0.5", ".0%"), ("7", ".3g"), ("'sample 3, pair 1'", "s")])
def test_format_value_is_myst_nbs(text, fmt):
    variables = pytest.importorskip("myst_nb.core.variables")
    assert format_value(text, fmt) == variables.format_plain_text(text, fmt)


def _executed(values):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("glue('a', 1)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={GLUE_PREFIX + "text/plain": v},
                                           metadata={"scrapbook": {"name": k, "mime_prefix": GLUE_PREFIX}})
                    for k, v in values.items()]
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), cell]
    return nb


def test_values_come_from_the_executed_chapters_and_only_for_their_code(tmp_path):
    nb = _executed({"a": "0.5", "b": "'x'"})
    assert glued_in(nb) == {"a": "0.5", "b": "'x'"}
    (tmp_path / "run").mkdir()
    nbformat.write(nb, tmp_path / "run" / "04_x.ipynb")
    content = collect(tmp_path / "run", tmp_path)
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "glued_values.json").write_text(dumps(content))
    values = BookValues.load(tmp_path)
    assert values.for_chapter("notebooks/04_x", notebook_code(nb)) == {"a": "0.5", "b": "'x'"}
    assert values.for_chapter("notebooks/04_x", ["glue('a', 2)"]) is None     # other code: none
    assert values.for_chapter("notebooks/05_y", notebook_code(nb)) is None
    assert code_digest(["a", "b"]) != code_digest(["ab"])


def _book(tmp_path, chapters):
    """A two-chapter book whose second chapter has a section page."""
    for name in ("_config.yml", "references.bib"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: A\n    numbered: 1\n    chapters:\n"
        "      - file: notebooks/01_a\n  - caption: B\n    numbered: 1\n    chapters:\n"
        "      - file: notebooks/02_b\n        sections:\n          - file: notebooks/02_c\n")
    (tmp_path / "intro.md").write_text("# Intro\n")
    (tmp_path / "notebooks").mkdir()
    for name, body in chapters.items():
        (tmp_path / "notebooks" / f"{name}.md").write_text(FRONT + body)


_FIG_CELL = """
```{{code-cell}} ipython3
:tags: [hide-input]
:mystnb:
:  figure:
:    caption: |
:      Look at the {what} (Eq. {{eq}}`eq-b1`).
:    name: fig-{what}
:  image:
:    alt: a plot
print(1)
```
"""


def test_numbers_run_per_chapter_through_its_section_pages(tmp_path):
    install = "```{code-cell} ipython3\n:tags: [remove-cell]\nx = 1\n```\n"
    _book(tmp_path, {
        "01_a": "# A\n\n" + install + "\n$$ a $$ (eq-a1)\n" + _FIG_CELL.format(what="a1"),
        "02_b": "# B\n\n" + install + "\n$$ b $$ (eq-b1)\n\n$$\nc\n$$ (eq-b2)\n" + _FIG_CELL.format(what="b1"),
        "02_c": "# C\n\n" + install + "\nSee Eq. {eq}`eq-a1` and {numref}`fig-c1`.\n\n$$ d $$ (eq-c1)\n"
                + _FIG_CELL.format(what="c1"),
    })
    assert toc_chapter_of(tmp_path) == {"notebooks/01_a": 1, "notebooks/02_b": 2, "notebooks/02_c": 2}
    index = BookIndex.load(tmp_path)
    assert index.links.equations == {"eq-a1": "1.1", "eq-b1": "2.1", "eq-b2": "2.2", "eq-c1": "2.3"}
    assert index.links.figures == {"fig-a1": "1.1", "fig-b1": "2.1", "fig-c1": "2.2"}
    nb = colab_notebook(tmp_path / "notebooks" / "02_c.md", index)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "See Eq. (1.1) and Figure 2.2.\n\n$$ d \\tag{2.3} $$" in md
    assert "**Figure 2.2.** Look at the c1 (Eq. (2.1))." in md
    kinds = [c.cell_type for c in nb.cells]
    assert kinds[-2:] == ["code", "markdown"]                      # the caption right under its figure
    assert stale_values(index) == ["notebooks/01_a", "notebooks/02_b", "notebooks/02_c"]


def test_committed_values_file_is_a_book_run():
    """book/glued_values.json, when committed, is what book_values writes: one entry per chapter
    with its code digest and the values it glued (tests/rendered compares it with a fresh build)."""
    path = ROOT / "book" / "glued_values.json"
    if not path.exists():
        pytest.skip("no book/glued_values.json yet: `bash .ci/book` writes it")
    data = json.loads(path.read_text())
    assert data["built_from"] and data["chapters"]
    for doc, entry in data["chapters"].items():
        assert (ROOT / f"{doc}.md").exists(), f"{doc}: no such chapter"
        assert len(entry["code_sha256"]) == 64 and isinstance(entry["values"], dict)


def test_bookkeeping_cells_fold_on_colab():
    """Cells the book runs without showing them (remove-input: glue, claims) open folded in
    Colab under one title, so a student meets the method first; their output stays visible."""
    import jupytext

    from infoenh.teaching.colab import BOOKKEEPING_TITLE

    seen = 0
    for md in sorted((ROOT / "notebooks").glob("*.md")):
        hidden = [c.source for c in jupytext.read(md).cells
                  if c.cell_type == "code" and "remove-input" in c.metadata.get("tags", [])]
        folded = [c.source for c in nbformat.read(md.with_suffix(".ipynb"), as_version=4).cells
                  if c.cell_type == "code" and c.source.startswith(BOOKKEEPING_TITLE + "\n")]
        assert [f"{BOOKKEEPING_TITLE}\n{h}" for h in hidden] == folded, md.name
        seen += len(hidden)
    assert seen > 0
