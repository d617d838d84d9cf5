"""Installing on Colab: the `colab` extra is light and sufficient, and the install cells and the
Colab links all come from _config.yml's repository (a fork changes one line and re-syncs)."""
from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from infoenh.teaching.book_index import BookIndex, BookConfigError, Repository
from infoenh.teaching.colab import (
    COLAB_PREINSTALLED, install_cell_source, without_colab_title, link_problems, main as colab_main, problems,
)

ROOT = Path(__file__).resolve().parents[1]
MD_FILES = sorted((ROOT / "notebooks").glob("*.md"))
IPYNB_FILES = sorted((ROOT / "notebooks").glob("*.ipynb"))
# import name -> distribution, for the packages the chapters may import beyond Colab's own
IMPORT_TO_DIST = {"ot": "pot", "markdown_it": "markdown-it-py"}
BOOK_AND_TEST_TOOLS = {"torch", "jupyter-book", "jupytext", "nbmake", "pytest", "pytest-xdist", "hypothesis",
                       "selenium", "sphinx", "sphinx-exercise", "sphinxcontrib-bibtex", "myst-nb", "myst-parser"}


def _pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;@]", requirement, 1)[0].strip().lower().replace("_", "-")


def _imported_modules(md: Path) -> set:
    """Top-level modules imported by a chapter's code cells (IPython magics dropped)."""
    mods = set()
    for cell in jupytext.read(md).cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.split("\n") if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods.add(node.module.split(".")[0])
    return mods


def test_colab_extra_is_light():
    extra = _pyproject()["optional-dependencies"]["colab"]
    names = {_name(r) for r in extra}
    assert not names & BOOK_AND_TEST_TOOLS, f"the colab extra must not bring {names & BOOK_AND_TEST_TOOLS}"
    assert not names & set(COLAB_PREINSTALLED), f"Colab already has {names & set(COLAB_PREINSTALLED)}"


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: p.name)
def test_colab_extra_covers_every_import_of_the_chapter(md):
    project = _pyproject()
    provided = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["colab"]}
    known = set(sys.stdlib_module_names) | set(COLAB_PREINSTALLED.values()) | {"infoenh", "google"}
    for module in sorted(_imported_modules(md) - known):
        dist = IMPORT_TO_DIST.get(module, module)
        assert dist in provided, (f"{md.name} imports {module}, which Colab does not have: "
                                  f"add {dist} to the colab extra in pyproject.toml")


def test_environment_yml_mirrors_pyproject():
    """environment.yml holds every requirement of the package and its extras, with the same bounds."""
    project = _pyproject()
    text = (ROOT / "environment.yml").read_text()
    listed = {}
    for line in text.splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9][\w.-]*)\s*([<>=!~][^#]*)?$", line)
        if m:
            listed[m.group(1).lower()] = (m.group(2) or "").replace(" ", "")
    wanted = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for req in wanted:
        name = _name(req)
        spec = re.sub(r"^[\w.-]+(\[[^\]]*\])?", "", req).replace(" ", "")
        assert name in listed, f"environment.yml lacks {req} (pyproject.toml)"
        assert listed[name] == spec, f"environment.yml has {name}{listed[name]}, pyproject.toml {req}"


def test_repository_settings_come_from_config():
    repo = Repository.from_config(ROOT)
    assert repo.install_url == f"git+{repo.url}@{repo.branch}"
    assert repo.colab_url("notebooks/01_task.ipynb") == (
        f"https://colab.research.google.com/github/{repo.slug}/blob/{repo.branch}/notebooks/01_task.ipynb")
    with pytest.raises(BookConfigError, match="github"):
        Repository("https://gitlab.com/a/b")


@pytest.mark.parametrize("ipynb", IPYNB_FILES, ids=lambda p: p.name)
def test_install_cell_and_links_agree_with_config(ipynb):
    index = BookIndex.load(ROOT)
    nb = nbformat.read(ipynb, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.metadata.get("cellView") == "form", f"{ipynb.name}: Colab must show the install cell folded"
    assert without_colab_title(first.source) == install_cell_source(index.repo), (
        f"{ipynb.name}: the install cell disagrees with _config.yml; run `python -m infoenh.teaching.colab --sync`")
    for path in (ipynb, ipynb.with_suffix(".md")):
        text = path.read_text(encoding="utf-8") if path.suffix == ".md" else "\n".join(c.source for c in nb.cells)
        assert link_problems(text, index.repo, ROOT, index.docs) == [], path.name


def test_link_check_catches_disagreements():
    repo = Repository("https://github.com/me/book")
    good = repo.colab_url("notebooks/01_task.ipynb")
    docs = ["notebooks/01_task"]
    assert link_problems(f"[x]({good}) and {repo.install_url}", repo, ROOT, docs) == []
    assert link_problems(f"[x]({good.replace('/me/', '/them/')})", repo, ROOT, docs)
    assert link_problems(f"[x]({repo.colab_url('notebooks/99_missing.ipynb')})", repo, ROOT, docs)
    assert link_problems("pip install 'infoenh @ git+https://github.com/them/book@main'", repo, ROOT, docs)
    assert link_problems("https://github.com/them/book/blob/main/notebooks/01_task.md", repo, ROOT, docs)
    assert link_problems("https://github.com/thuiar/MMSA/blob/master/README.md", repo, ROOT, docs) == []


def _copy_book(dest: Path) -> Path:
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, dest / name)
    for folder in ("book", "notebooks"):
        shutil.copytree(ROOT / folder, dest / folder)
    return dest


def test_a_fork_changes_one_line_and_syncs(tmp_path, capsys):
    root = _copy_book(tmp_path)
    assert problems(root) == []
    cfg = root / "_config.yml"
    cfg.write_text(re.sub(r"url: \S+", "url: https://github.com/someone/fork", cfg.read_text(), count=1))
    found = problems(root)
    assert any("install cell differs" in p for p in found)
    assert any("differs from what its .md gives" in p for p in found)
    assert colab_main(["--root", str(root), "--check"]) == 1
    assert colab_main(["--root", str(root), "--sync"]) == 0
    assert problems(root) == []
    ch2 = (root / "notebooks" / "02_infonce.ipynb").read_text()
    assert "git+https://github.com/someone/fork@main" in ch2
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks/03_information_bottleneck.ipynb" in ch2
    assert "infoenh/infoenh-book" not in ch2
    before = {p.name: p.read_text() for p in (root / "notebooks").glob("*.ipynb")}
    assert colab_main(["--root", str(root)]) == 0, "regenerating an up-to-date edition changes nothing"
    assert before == {p.name: p.read_text() for p in (root / "notebooks").glob("*.ipynb")}
