"""``benchmarks/gpu_check.sh --dry-run``: the GPU check's code paths on a CPU, so the script cannot rot.

The dry run trains tiny models and times tiny Sinkhorn batches (well under a minute on two
cores); these tests only check that every section ran and reported finite numbers, labelled as a
dry run, and that a section over its budget is stopped and reported as such.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
SECTIONS = ("cuda-tests", "sinkhorn", "train-step", "selfmm", "amp")

pytestmark = [
    pytest.mark.slow,
    # the script runs `pytest tests -k cuda`, which collects this file: never start a run inside a run
    pytest.mark.skipif(os.environ.get("INFOENH_GPU_CHECK_ACTIVE") == "1", reason="inside a gpu_check run"),
]


def _run(out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = _run(out)
    return proc, out


def _numbers(row):
    for key in ("value", "fp32", "bf16"):
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            yield v


def test_dry_run_passes_and_writes_json_and_log(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert (out / "gpu_check.json").is_file()
    log = (out / "gpu_check.log").read_text()
    # the log holds everything printed, the final table included
    assert "InfoEnh GPU check -- DRY RUN" in log and "overall: OK" in log
    assert "InfoEnh GPU check -- DRY RUN" in proc.stdout


def test_every_section_reports_finite_numbers(dry_run):
    _, out = dry_run
    doc = json.loads((out / "gpu_check.json").read_text())
    assert list(doc["sections"]) == list(SECTIONS)
    for name in SECTIONS:
        sec = doc["sections"][name]
        assert sec["ok"], (name, sec["status"])
        rows = [r for r in doc["rows"] if r["section"] == name]
        numbers = [v for r in rows for v in _numbers(r)]
        assert numbers, f"{name} reported no number"
        assert all(math.isfinite(v) for v in numbers), (name, rows)
        assert sec["elapsed_s"] is not None and sec["elapsed_s"] <= sec["budget_s"]
    cuda = doc["env"]["cuda_available"]
    assert doc["sections"]["cuda-tests"]["status"] == ("ok" if cuda else "skipped (no CUDA)")
    measured = {r["measurement"] for r in doc["rows"]}
    assert any("ratio ot.batch" in m for m in measured)
    assert any(m.endswith("fwd+bwd: ratio ot.batch[sinkhorn] / project implicit")
               or m.endswith("fwd+bwd: ratio ot.batch[log_sinkhorn] / project implicit") for m in measured)
    assert not any("fwd: project implicit" in m for m in measured)   # implicit changes only the backward
    assert "ratio InfoEnh / host: time per step" in measured
    for host in ("lf", "selfmm", "misa"):           # train-step: each host alone and with InfoEnh, and the ratio
        steps = {r["measurement"]: r for r in doc["rows"]
                 if r["section"] == "train-step" and r["measurement"].startswith(host)}
        assert {f"{host} (batch 4): host step", f"{host} (batch 4): host + InfoEnh step",
                f"{host}: ratio InfoEnh / host (target <= 1.25)"} == set(steps), steps
        ratio = steps[f"{host}: ratio InfoEnh / host (target <= 1.25)"]
        assert ratio["value"] == pytest.approx(steps[f"{host} (batch 4): host + InfoEnh step"]["value"]
                                               / steps[f"{host} (batch 4): host step"]["value"])
        assert ratio["precision"] == "fp32"          # the dry run's CPU: no autocast
    assert set(doc["sections"]["train-step"]["detail"]["hosts"]) == {"lf", "selfmm", "misa"}
    assert {"selected epoch (valid loss only)", "valid loss of the selected epoch", "test MAE"} <= measured
    amp = [r for r in doc["rows"] if r["section"] == "amp" and "fp32" in r]
    assert all(r["value"] == pytest.approx(r["bf16"] - r["fp32"]) for r in amp)


def test_json_is_labelled_dry_run_with_device_versions_and_precision(dry_run):
    _, out = dry_run
    doc = json.loads((out / "gpu_check.json").read_text())
    assert doc["dry_run"] is True and doc["mode"] == "DRY RUN" and "DRY RUN" in doc["label"]
    assert all(s["mode"] == "DRY RUN" for s in doc["sections"].values())
    assert "DRY RUN" in doc["table"]
    assert doc["device"].startswith("cpu") and doc["torch"]
    assert "cuda" in doc  # None on a CPU-only torch
    assert all(r.get("precision") for r in doc["rows"]), [r for r in doc["rows"] if not r.get("precision")]
    prec = {r["precision"] for r in doc["rows"] if r["section"] in ("selfmm", "amp")}
    assert "bf16-mixed" in prec and "fp32 vs bf16-mixed" in prec


def test_a_section_over_its_budget_is_stopped_and_reported(tmp_path):
    # 1 s is less than the section needs to import torch: the shell's timeout stops it
    proc = _run(tmp_path, "--only", "sinkhorn", "--budget", "sinkhorn=1", timeout=120)
    assert proc.returncode == 1, proc.stdout[-3000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["sections"]["sinkhorn"]["status"].startswith("stopped: overran its budget of 1 s")
    assert doc["sections"]["amp"]["status"] == "not run (--only)"
    assert "STOPPED" in proc.stdout and "NOT OK" in proc.stdout


def test_budgets_add_up_to_at_most_470_seconds():
    """The GPU run fits a 10-minute command: setup plus every section's budget <= 470 s."""
    import re

    text = SCRIPT.read_text()
    budgets = dict(re.findall(r"\[([a-z-]+)\]=(\d+)", re.search(r"declare -A BUDGET=\((.*)\)", text).group(1)))
    assert set(budgets) == set(SECTIONS)
    setup = int(re.search(r"^SETUP_BUDGET=(\d+)", text, re.M).group(1))
    assert setup + sum(map(int, budgets.values())) <= 470
    assert re.search(r"^SECTIONS=\((.*)\)", text, re.M).group(1).split() == list(SECTIONS)


def test_pytest_summary_parsing(benchmark_script):
    parse = benchmark_script("gpu_check").parse_pytest_summary
    assert parse("s  [100%]\n1 skipped, 790 deselected in 5.56s\n") == \
        {"passed": 0, "failed": 0, "skipped": 1, "errors": 0, "deselected": 790}
    out = "==== 2 failed, 3 passed, 1 error, 10 deselected, 2 warnings in 12.01s ====\n"
    assert parse(out) == {"passed": 3, "failed": 2, "skipped": 0, "errors": 1, "deselected": 10}
