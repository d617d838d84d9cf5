"""Colab, played on this machine: does the light install suffice?

A fresh virtual environment gets what a Colab runtime already has (torch 2.13.0, the local CPU
wheel here, plus numpy, scipy, scikit-learn, matplotlib, seaborn, pandas, tqdm, IPython's kernel,
gdown, and nbclient to execute), and nothing of this project: no infoenh, no POT, no jupytext, no
Jupyter Book. A stand-in ``google.colab`` is imported at kernel start, as on Colab, so each
chapter's own first cell installs ``infoenh[colab]``, redirected by ``INFOENH_INSTALL_SOURCE`` to a
copy of this checkout. Chapters 1, 4 and 7 then run top to bottom on CPU.

Minutes of work, so it runs only with ``INFOENH_COLAB_TEST=1`` (``.ci/test`` sets it and runs this
file as its own step). The wall time and the environment's size are printed (``-s`` shows them).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from infoenh.teaching.colab import COLAB_PREINSTALLED, INSTALL_SOURCE_VAR

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("01_task", "04_sinkhorn", "07_training")
TORCH = "torch==2.13.0"  # pinned: an unpinned torch would pull a several-GB CUDA build
NOT_ON_COLAB_BY_US = {"jupyter-book", "jupytext", "nbmake", "pytest", "sphinx", "sphinx-exercise",
                      "sphinxcontrib-bibtex", "hypothesis", "selenium"}

pytestmark = pytest.mark.skipif(os.environ.get("INFOENH_COLAB_TEST") != "1",
                                reason="the Colab-like run takes minutes; INFOENH_COLAB_TEST=1 runs it (.ci/test does)")

GOOGLE_COLAB = '''"""Stand-in for Colab's ``google.colab`` package, used by infoenh's Colab-like test (not Colab)."""
'''
GOOGLE_COLAB_DRIVE = '''"""Stand-in for ``google.colab.drive``: ``mount(path)`` makes ``path`` a link to the folder named
by ``COLAB_STANDIN_DRIVE``, which, like a Google Drive, outlives the runtime. Every path it
creates is listed in that folder's ``.created``, for the test to remove."""
import os
from pathlib import Path


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    store = Path(os.environ["COLAB_STANDIN_DRIVE"])
    (store / "MyDrive").mkdir(parents=True, exist_ok=True)
    mp = Path(mountpoint)
    if mp.is_symlink() or mp.exists():
        if not force_remount:
            print(f"Drive already mounted at {mountpoint}; to remount, call "
                  f"drive.mount({str(mountpoint)!r}, force_remount=True).")
            return
        if mp.is_symlink():
            mp.unlink()
    created = [p for p in reversed(mp.parents) if not p.exists()]
    mp.parent.mkdir(parents=True, exist_ok=True)
    mp.symlink_to(store, target_is_directory=True)
    with open(store / ".created", "a") as f:
        for p in created + [mp]:
            f.write(f"{p}\\n")
    print(f"Mounted at {mountpoint}")
'''
DRIVER = textwrap.dedent('''
    """Execute notebooks top to bottom in a fresh kernel each, as Colab runs a notebook."""
    import json, sys, time
    import nbformat
    from nbclient import NotebookClient

    src, out, cwd, kernel = sys.argv[1:5]
    for name in sys.argv[5:]:
        nb = nbformat.read(f"{src}/{name}.ipynb", as_version=4)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=900, kernel_name=kernel, resources={"metadata": {"path": cwd}}).execute()
        nbformat.write(nb, f"{out}/{name}.ipynb")
        print(json.dumps({"chapter": name, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
''')


def _run(cmd, cwd=None, **kw):
    """Run a command away from the checkout (its folder would put the checkout's infoenh on sys.path)."""
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd or "/", **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout


def _mb(path: Path) -> float:
    return int(_run(["du", "-sk", path]).split()[0]) / 1024


SIZES = textwrap.dedent('''
    """Print {distribution: (version, MB of its installed files)} as JSON."""
    import json
    from importlib.metadata import distributions

    def size(d):
        return sum((d.locate_file(f).stat().st_size for f in d.files or [] if d.locate_file(f).is_file()), 0)

    print(json.dumps({d.metadata["Name"].lower(): (d.version, size(d) / 2**20) for d in distributions()}))
''')


def _distributions(py: Path, tmp_path: Path) -> dict:
    (tmp_path / "sizes.py").write_text(SIZES)
    return json.loads(_run([py, tmp_path / "sizes.py"]))


def _package_copy(dest: Path) -> Path:
    """What pip needs to build infoenh, copied so that the build writes nothing in the checkout."""
    dest.mkdir()
    for name in ["pyproject.toml", "README.md", *[p.name for p in ROOT.glob("LICEN[CS]E*")]]:
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "infoenh", dest / "infoenh", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _kernelspec(jupyter_path: Path, python: Path) -> str:
    """A kernel of the fresh environment's Python, under a name no other kernelspec has."""
    name = "colab-standin"
    spec = jupyter_path / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab stand-in)", "language": "python"}))
    return name


def _remove_mounts(drive: Path) -> None:
    listing = drive / ".created"
    if listing.exists():
        for p in reversed([Path(line) for line in listing.read_text().split()]):
            if p.is_symlink():
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()


def test_chapters_run_after_the_light_colab_install(tmp_path):
    t0 = time.perf_counter()
    venv, drive = tmp_path / "venv", tmp_path / "drive"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", venv])
    py = venv / "bin" / "python"
    stack = [TORCH if name == "torch" else name for name in COLAB_PREINSTALLED]
    _run([py, "-m", "pip", "install", "-q", *stack, "nbclient", "nbformat"])
    t_stack = time.perf_counter() - t0
    mb_stack, before = _mb(venv), _distributions(py, tmp_path)
    for module in ("infoenh", "ot", "jupytext"):
        res = subprocess.run([py, "-c", f"import {module}"], capture_output=True, cwd=tmp_path)
        assert res.returncode != 0, f"{module} must not be in the fresh environment before the install cell runs"

    standin = tmp_path / "standin"
    (standin / "google" / "colab").mkdir(parents=True)
    (standin / "google" / "colab" / "__init__.py").write_text(GOOGLE_COLAB)
    (standin / "google" / "colab" / "drive.py").write_text(GOOGLE_COLAB_DRIVE)
    ipython = tmp_path / "ipython"
    (ipython / "profile_default" / "startup").mkdir(parents=True)
    (ipython / "profile_default" / "startup" / "00-colab.py").write_text("import google.colab  # as on Colab\n")
    kernel = _kernelspec(tmp_path / "jupyter", py)
    for folder in ("content", "out", "data"):
        (tmp_path / folder).mkdir()
    (tmp_path / "driver.py").write_text(DRIVER)

    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MPLBACKEND", "IPYTHONDIR", "JUPYTER_PATH", "JUPYTER_DATA_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("PYTEST", "CONDA", "INFOENH"))}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONNOUSERSITE": "1",
        "PYTHONPATH": str(standin), "IPYTHONDIR": str(ipython), "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter"), "COLAB_STANDIN_DRIVE": str(drive),
        INSTALL_SOURCE_VAR: str(_package_copy(tmp_path / "src")),
        "INFOENH_DATA": str(tmp_path / "data"), "INFOENH_SYNTHETIC": "1",
    })
    t1 = time.perf_counter()
    try:
        out = _run([py, tmp_path / "driver.py", ROOT / "notebooks", tmp_path / "out", tmp_path / "content",
                    kernel, *CHAPTERS], env=env, timeout=1800)
        _run([py, "-c", f"from google.colab import drive; drive.mount({str(tmp_path / 'mnt')!r})"], env=env)
        assert (tmp_path / "mnt" / "MyDrive").is_dir(), "the drive stand-in must give MOUNT/MyDrive"
    finally:
        _remove_mounts(drive)
    t_chapters = time.perf_counter() - t1

    after = _distributions(py, tmp_path)
    assert after["torch"][0] == before["torch"][0], f"the install cell changed torch to {after['torch'][0]}"
    changed = {name: after[name] for name in after if before.get(name, (None,))[0] != after[name][0]}
    assert {"infoenh", "pot", "markdown-it-py"} <= set(changed), changed
    assert not NOT_ON_COLAB_BY_US & set(after), f"the colab extra brought {NOT_ON_COLAB_BY_US & set(after)}"
    where = _run([py, "-c", "import infoenh, pathlib; print(pathlib.Path(infoenh.__file__).resolve())"], env=env)
    assert str(venv.resolve()) in where, f"infoenh was imported from {where.strip()}, not the fresh environment"
    for name in CHAPTERS:
        nb = nbformat.read(tmp_path / "out" / f"{name}.ipynb", as_version=4)
        assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), f"{name}: a cell did not run"

    mb_total, mb_added = _mb(venv), sum(mb for _, mb in changed.values())
    times = ", ".join("{chapter} {seconds:.0f} s".format(**json.loads(line))
                      for line in out.splitlines() if line.startswith("{"))
    print(f"\ncolab-like run: Colab's stack installed in {t_stack:.0f} s ({mb_stack:.0f} MB); "
          f"chapters {times} (install cell included) in {t_chapters:.0f} s")
    added = ", ".join(f"{name} {version}" for name, (version, _) in sorted(changed.items()))
    print(f"colab-like run: the install cell added {mb_added:.1f} MB ({added}); environment {mb_total:.0f} MB "
          f"after the run (bytecode caches included); wall time {time.perf_counter() - t0:.0f} s")
