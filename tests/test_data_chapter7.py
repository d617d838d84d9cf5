"""Chapter 7 says which data it ran on (issue 22): MMSA's published MOSI, another MOSI-format file
(``INFOENH_MOSI``), or the synthetic testbed; with the protocol, text mode and precision; and only
MMSA's MOSI with the full protocol is set beside the paper's numbers.

The chapter is executed as the book does (jupytext, then a kernel) on a small generated file in
MOSI's format, at sizes that train in seconds. MMSA's real file cannot be in a test: the "MMSA"
case registers the small file's SHA-256 as the published sum inside the kernel, which is exactly
how the chapter recognises MMSA's file."""
import hashlib
import json
import pickle
from pathlib import Path

import pytest

import infoenh

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

REPO = Path(infoenh.__file__).resolve().parents[1]
CHAPTER = REPO / "notebooks" / "07_training.md"


def _mosi_format_file(path: Path) -> str:
    """A small file in MMSA's unaligned MOSI layout, without the synthetic marker; returns its SHA-256."""
    from infoenh.data.synthetic import make_synthetic

    data = make_synthetic(seed=5, sizes=(80, 16, 16), text_len=12, audio_len=12, vision_len=12, text_dim=24)
    data.pop("synthetic")
    path.write_bytes(pickle.dumps(data, protocol=4))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(tmp_path, monkeypatch, env, *, until=None, first=None):
    """Execute chapter 7 (up to the markdown cell starting with ``until``; ``first``: code run before
    it) in a kernel with ``env``; return all its text output and the executed notebook."""
    nb = jupytext.read(CHAPTER)
    if until is not None:
        stop = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith(until))
        nb.cells = nb.cells[:stop]
    if first is not None:
        nb.cells.insert(0, nbformat.v4.new_code_cell(first))
    for key in ("INFOENH_MOSI", "INFOENH_SYNTHETIC", "INFOENH_FULL_PROTOCOL", "INFOENH_DOWNLOAD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("INFOENH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("INFOENH_RUNS", str(tmp_path / "runs"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    work = tmp_path / "nb"
    work.mkdir()
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}}).execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text") or out.get("data", {}).get("text/markdown")
                         or out.get("data", {}).get("text/plain") or "")
    return "\n".join(texts)


def _banner(text):
    return next(line for line in text.splitlines() if line.startswith("> **"))


def test_chapter7_on_another_mosi_format_file(tmp_path, monkeypatch):
    """The whole chapter on the reader's own file: labelled everywhere, never set beside the paper."""
    path = tmp_path / "my_mosi.pkl"
    sha = _mosi_format_file(path)
    label = f"MOSI-format file my_mosi.pkl, sha256 {sha[:12]}, not MMSA's published file"
    text = _run(tmp_path, monkeypatch, {"INFOENH_MOSI": str(path)})
    banner = _banner(text)
    assert f"REAL DATA, NOT MMSA'S FILE: {label}" in banner
    assert "Protocol: REDUCED (CPU): 2 seeds, 2 epochs" in banner and "Text: frozen features" in banner
    assert "Precision: fp32" in banner and "unaligned, text 24-d" in banner
    assert "CMU-MOSI" not in banner and "REAL DATA: CMU-MOSI" not in text
    flat = " ".join(text.split())
    assert "test metrics per seed [MOSI-format file my_mosi.pkl, not MMSA's]" in flat
    assert "YOUR RUN" not in text and f"This chapter ran on the {label}" in flat
    assert "Two seeds" in text and "1111 and 1112" in text          # the seeds sentence is what ran
    docs = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/*/results.json")]
    assert len(docs) == 3 and all(d["dataset"] == label for d in docs)
    assert all(d["config"]["dataset"] == label for d in docs)


def test_chapter7_banner_on_mmsa_published_file(tmp_path, monkeypatch):
    path = tmp_path / "unaligned_50.pkl"
    sha = _mosi_format_file(path)
    register = ("from infoenh.data import checksums\n"
                f"checksums.KNOWN_SHA256['MOSI/Processed/unaligned_50.pkl'] = '{sha}'   # stands for MMSA's sum")
    text = _run(tmp_path, monkeypatch, {"INFOENH_MOSI": str(path)}, until="## Checking the file", first=register)
    banner = _banner(text)
    assert f"REAL DATA: CMU-MOSI, MMSA's published MOSI/Processed/unaligned_50.pkl (sha256 {sha[:12]})" in banner
    assert "REDUCED (CPU)" in banner and "not a result to compare with the paper" in banner
    assert "NOT MMSA'S FILE" not in banner


def test_chapter7_banner_on_the_synthetic_testbed(tmp_path, monkeypatch):
    text = _run(tmp_path, monkeypatch, {"INFOENH_SYNTHETIC": "1"}, until="## Checking the file")
    banner = _banner(text)
    assert "SYNTHETIC DATA: these numbers are not MOSI" in banner and "INFOENH_SYNTHETIC=1" in banner
    assert "Protocol: synthetic testbed" in banner and "Text: frozen features" in banner
    assert "Five seeds" in text and "1111 to 1115" in text


def test_chapter7_a_failed_download_prints_the_manual_route(tmp_path, monkeypatch):
    """INFOENH_DOWNLOAD=1 with Drive unreachable: the manual steps, then the synthetic testbed."""
    env = {"INFOENH_DOWNLOAD": "1", "INFOENH_DRIVE_EMBED_URL": "http://127.0.0.1:9/embeddedfolderview?id={id}",
           "INFOENH_DRIVE_FOLDER_URL": "http://127.0.0.1:9/drive/folders/{id}"}
    text = _run(tmp_path, monkeypatch, env, until="## Checking the file")
    flat = " ".join(text.split())
    assert "The download failed:" in flat and "To get it by hand: open https://drive.google.com/drive/folders/" \
        in flat
    assert "go to MOSI/Processed/unaligned_50.pkl" in flat and "infoenh data check" in flat
    assert "SYNTHETIC DATA" in _banner(text)
