"""Every executable chapter is a pair: the reviewed MyST source (``.md``, what the book is built
from) and the ``.ipynb`` that Colab opens, its Colab edition, generated from the ``.md`` by
``python -m infoenh.teaching.colab``. Converting each ``.md`` must give exactly the committed
``.ipynb`` (same code cells and tags, markdown rewritten), committed without outputs, and every
notebook must be listed in ``_toc.yml``."""
from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

from infoenh.teaching.book_index import BookIndex
from infoenh.teaching.colab import colab_notebook, install_cell_source, notebook_text, without_colab_title

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
MD_FILES = sorted(NB_DIR.glob("*.md"))
IPYNB_FILES = sorted(NB_DIR.glob("*.ipynb"))
REGENERATE = "python -m infoenh.teaching.colab"


@pytest.fixture(scope="module")
def index():
    return BookIndex.load(ROOT)


def test_there_are_notebooks():
    assert MD_FILES, "no notebooks/*.md found"


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: p.name)
def test_pair_in_sync(md, index):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `{REGENERATE}`"
    committed = ipynb.read_text(encoding="utf-8")
    expected = notebook_text(colab_notebook(md, index, nbformat.reads(committed, as_version=4)))
    assert committed == expected, f"{ipynb.name} is not what {md.name} gives: edit the .md, then run `{REGENERATE}`"


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: p.name)
def test_code_cells_are_the_sources_code_cells(md):
    """Whatever the converter does to markdown, the code Colab runs is the code the book runs."""
    def code(nb):
        return [(without_colab_title(c.source), c.metadata.get("tags", [])) for c in nb.cells
                if c.cell_type == "code"]
    assert code(jupytext.read(md)) == code(nbformat.read(md.with_suffix(".ipynb"), as_version=4))


@pytest.mark.parametrize("ipynb", IPYNB_FILES, ids=lambda p: p.name)
def test_ipynb_has_a_pair_and_no_outputs(ipynb):
    assert ipynb.with_suffix(".md").exists(), f"{ipynb.name} has no .md pair"
    nb = nbformat.read(ipynb, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{ipynb.name} cell {i} has outputs committed; clear them"
            assert cell.get("execution_count") is None, f"{ipynb.name} cell {i} has an execution count"


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: p.name)
def test_first_cell_installs_on_colab_and_is_hidden(md, index):
    nb = jupytext.read(md)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{md.name} has no code cell"
    first = code[0]
    assert first.source == install_cell_source(index.repo), (
        f"{md.name}: the first code cell must be the install cell written from _config.yml; run `{REGENERATE} --sync`")
    assert '"google.colab" in sys.modules' in first.source and "infoenh[colab] @" in first.source
    assert "remove-cell" in first.metadata.get("tags", []), (
        f"{md.name}: the Colab install cell must be tagged remove-cell")


def test_every_notebook_in_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for md in MD_FILES:
        assert f"notebooks/{md.stem}" in toc, f"{md.name} is not listed in _toc.yml"


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: p.name)
def test_reference_solutions_are_folded_on_colab(md):
    """Code cells tagged ``solution`` open folded in Colab (form view under a title line)."""
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    for c in nb.cells:
        if c.cell_type == "code" and "solution" in c.metadata.get("tags", []):
            assert c.metadata.get("cellView") == "form" and c.source.startswith("# @title Solution")
