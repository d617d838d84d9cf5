"""Every executable chapter is a jupytext pair: the reviewed MyST source (``.md``) and the
``.ipynb`` that Colab and nbmake run. They must hold the same cells, the ``.ipynb`` must be
committed without outputs, and every notebook must be listed in ``_toc.yml``."""
from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
MD_FILES = sorted(NB_DIR.glob("*.md"))
IPYNB_FILES = sorted(NB_DIR.glob("*.ipynb"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_notebooks():
    assert MD_FILES, "no notebooks/*.md found"


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: p.name)
def test_pair_in_sync(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `jupytext --to ipynb {md.relative_to(ROOT)}`"
    from_md = jupytext.read(md)
    from_ipynb = nbformat.read(ipynb, as_version=4)
    assert _cells(from_md) == _cells(from_ipynb), (
        f"{md.name} and {ipynb.name} differ: edit the .md, then run `jupytext --to ipynb {md.relative_to(ROOT)}`"
    )


@pytest.mark.parametrize("ipynb", IPYNB_FILES, ids=lambda p: p.name)
def test_ipynb_has_a_pair_and_no_outputs(ipynb):
    assert ipynb.with_suffix(".md").exists(), f"{ipynb.name} has no .md pair"
    nb = nbformat.read(ipynb, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{ipynb.name} cell {i} has outputs committed; clear them"
            assert cell.get("execution_count") is None, f"{ipynb.name} cell {i} has an execution count"


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: p.name)
def test_first_cell_installs_on_colab_and_is_hidden(md):
    nb = jupytext.read(md)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{md.name} has no code cell"
    first = code[0]
    assert "google.colab" in first.source and "pip install" in first.source, (
        f"{md.name}: the first code cell must install the package on Colab"
    )
    assert "remove-cell" in first.metadata.get("tags", []), f"{md.name}: the Colab install cell must be tagged remove-cell"


def test_every_notebook_in_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for md in MD_FILES:
        assert f"notebooks/{md.stem}" in toc, f"{md.name} is not listed in _toc.yml"
