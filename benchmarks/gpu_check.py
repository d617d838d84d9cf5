"""The sections of ``benchmarks/gpu_check.sh`` (run that script; this file is its worker).

    bash benchmarks/gpu_check.sh             # on one H100/H200: at most 8 minutes
    bash benchmarks/gpu_check.sh --dry-run   # the same code paths on a CPU, tiny sizes (seconds)

Each section runs as its own process (``python benchmarks/gpu_check.py SECTION --parts DIR``), so
the shell script can stop one that overruns its budget (``timeout``) and go on with the next.
A section writes ``DIR/section_<name>.json`` after every measurement, so what it measured before
being stopped is kept. ``report`` merges the parts into one table and ``gpu_check.json``.

Sections:

- ``env``: device, torch / CUDA / cuDNN / POT versions (exit 3 when a GPU run finds no CUDA).
- ``cuda-tests``: ``python -m pytest tests -k cuda -q`` (those tests skip without CUDA).
- ``sinkhorn``: ``infoenh.ot.sinkhorn`` against POT's batched solver ``ot.batch.solve_batch``
  (both its methods, ``log_sinkhorn`` and the scaling ``sinkhorn``), side by side in one process:
  FIA's workload, 32 samples x 6 modality pairs, k = 16, 32, 50, reg 0.1, float32, exactly 100
  iterations (``tol=0``), forward and forward + backward.
- ``train-step``: ``benchmarks/bench_train_step.py``'s measurement: one training step (forward,
  loss, backward, Adam) of each host (lf, selfmm, misa) alone and with InfoEnh, on one SYNTHETIC
  MOSI-shaped batch at the host's MMSA batch size, variants interleaved round after round, wall
  clock between ``torch.cuda.synchronize`` calls, bf16 autocast on CUDA as ``--precision auto``
  runs it (asked for explicitly: the trainer's default is float32, as MMSA).
- ``selfmm``: Self-MM on the SYNTHETIC testbed at MOSI's sizes (``--synthetic-scale mosi``), the
  host alone and with InfoEnh, trained by the project's trainer (:func:`infoenh.train.trainer.fit`,
  with ``precision="bf16"`` asked for explicitly; the default is float32): time per optimiser step
  and peak memory.
- ``amp``: one fixed short run (Self-MM + InfoEnh, seed 1111, 3 epochs) in bf16 autocast and in
  float32 (both asked for explicitly): selected epoch, validation loss and test metrics side by
  side, with their differences, so a GPU user can choose ``--precision bf16`` with numbers.

Only the standard library is imported at the top: ``report`` runs even where torch is missing.
Every measurement uses the same code on CPU and CUDA (``Clock``, ``reset_peak``/``peak_mib``):
under ``--dry-run`` the CUDA branches' CPU twins run, at tiny sizes.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("cuda-tests", "sinkhorn", "train-step", "selfmm", "amp")
DRY_LABEL = "DRY RUN (CPU, tiny sizes: checks the code paths; no number here is a GPU figure)"
GPU_LABEL = "GPU run"

# Sizes: the GPU run, and the dry run (CPU, seconds).
FULL = {
    "sinkhorn": dict(samples=32, pairs=6, ks=(16, 32, 50), d=128, reg=0.1, n_iter=100, rounds=20),
    # each host's MMSA batch size; per round each variant runs `steps` steps, interleaved
    "train-step": dict(hosts=("lf", "selfmm", "misa"), batch=None, rounds=5, steps=5, warmup=3),
    "selfmm": dict(scale="mosi", epochs=3),          # epoch 1 warms up, epochs 2-3 are timed
    "amp": dict(scale="mosi", epochs=3, model="selfmm", variant="full", seed=1111),
}
DRY = {
    "sinkhorn": dict(samples=2, pairs=6, ks=(8, 16), d=32, reg=0.1, n_iter=100, rounds=2),
    "train-step": dict(hosts=("lf", "selfmm", "misa"), batch=4, rounds=2, steps=1, warmup=1),
    "selfmm": dict(scale="ci", sizes=(64, 32, 32), epochs=2),
    "amp": dict(scale="ci", sizes=(64, 32, 32), epochs=2, model="selfmm", variant="full", seed=1111),
}
AMP_METRICS = ("MAE", "Corr", "Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Has0_F1_score", "Mult_acc_5",
               "Mult_acc_7")


# ---------------------------------------------------------------------------- device helpers
def sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


class Clock:
    """Milliseconds of the work done inside the block on ``device``. On CUDA: a pair of
    ``torch.cuda.Event(enable_timing=True)`` recorded around the block, after a
    ``torch.cuda.synchronize`` (nothing earlier is counted) and read after the end event has
    completed. On the CPU: ``time.perf_counter``."""

    def __init__(self, device):
        self.device = device
        self.ms = float("nan")

    def __enter__(self) -> "Clock":
        sync(self.device)
        if self.device.type == "cuda":
            import torch

            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self._end.record()
            self._end.synchronize()
            self.ms = float(self._start.elapsed_time(self._end))
        else:
            self.ms = (time.perf_counter() - self._t0) * 1e3


def _proc_kib(field: str) -> Optional[int]:
    try:
        m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def reset_peak(device) -> Optional[float]:
    """Start a peak-memory window; returns the baseline in MiB. CUDA:
    ``torch.cuda.reset_peak_memory_stats`` (baseline ``memory_allocated``). CPU (Linux): the
    process's peak RSS is reset to its current RSS (``/proc/self/clear_refs`` = 5)."""
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2 ** 20
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    rss = _proc_kib("VmRSS")
    return None if rss is None else rss / 1024


def peak_mib(device, baseline: Optional[float]) -> Optional[float]:
    """CUDA: ``torch.cuda.max_memory_allocated`` since :func:`reset_peak` (MiB, absolute: model,
    optimiser state, activations). CPU: growth of the peak RSS over the baseline (MiB)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    hwm = _proc_kib("VmHWM")
    return None if hwm is None or baseline is None else hwm / 1024 - baseline


def precision_note(device, label: str) -> str:
    """The trainer's precision label, plus cuDNN's TF32 (on by default in torch: the LSTMs' float32
    products may use TF32 tensor cores on a GPU)."""
    if device.type == "cuda":
        import torch

        if torch.backends.cudnn.allow_tf32:
            return f"{label} (cuDNN TF32 on)"
    return label


def memory_label(device) -> str:
    return "peak GPU memory allocated" if device.type == "cuda" else "peak RSS growth (CPU, indicative)"


# ---------------------------------------------------------------------------- a section's record
class BudgetStop(Exception):
    """The section's time is up (soft deadline, or SIGTERM from the shell's ``timeout``)."""


class Section:
    """Rows of one section, saved (atomically) after every row."""

    def __init__(self, name: str, parts: Path, budget: float, dry: bool):
        self.name, self.dry = name, dry
        self.path = parts / f"section_{name}.json"
        self.t0 = time.monotonic()
        self.budget = budget
        # stop starting new work a little before the shell's hard limit
        self.deadline = self.t0 + max(1.0, budget - max(5.0, 0.1 * budget))
        self.rows: List[Dict[str, Any]] = []
        self.status = "running"
        self.detail: Dict[str, Any] = {}
        self.save()

    def add(self, measurement: str, value, unit: str = "", precision: str = "", **extra) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            extra.setdefault("note", "not finite")
        self.rows.append({"section": self.name, "measurement": measurement, "value": value, "unit": unit,
                          "precision": precision, **extra})
        print(f"  [{self.name}] {measurement}: {_fmt(value)} {unit}".rstrip(), flush=True)
        self.save()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def check(self, what: str) -> None:
        """Raise :class:`BudgetStop` when there is no time left to start ``what``."""
        if time.monotonic() > self.deadline:
            raise BudgetStop(f"before {what}: the section's budget of {self.budget:g} s is spent")

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        doc = {"name": self.name, "status": self.status, "dry_run": self.dry, "elapsed_s": round(self.elapsed(), 2),
               "budget_s": self.budget, "rows": self.rows, "detail": self.detail}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        os.replace(tmp, self.path)


def _fmt(v, unit: str = "") -> str:
    if unit == "s" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:.1f}"
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.3f}"
    if a >= 1e-3:
        return f"{v:.4f}"
    return f"{v:.2e}"


def _device(dry: bool):
    import torch

    if dry:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device (run with --dry-run on a CPU)")
    return torch.device("cuda")


def _quiet_warnings():
    warnings.simplefilter("ignore")


# ---------------------------------------------------------------------------- env
# what the sections import beyond torch, with the pip requirement that provides it
NEEDED = {"infoenh": "-e .", "ot.batch": "pot>=0.9.7", "pytest": "pytest", "hypothesis": "hypothesis"}


def env_info(dry: bool) -> Dict[str, Any]:
    import importlib

    import torch

    info: Dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "missing": [],
    }
    for mod in ("numpy",) + tuple(NEEDED):
        try:
            m = importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - any import failure is reported, not raised
            info["missing"].append(mod)
            info[mod.split(".")[0]] = f"not importable ({type(e).__name__}: {str(e)[:200]})"
            continue
        top = sys.modules[mod.split(".")[0]]
        info[mod.split(".")[0]] = getattr(top, "__version__", "?")
        if mod == "infoenh":
            info["infoenh_path"] = str(Path(m.__file__).parent)
    info["pot"] = info.pop("ot", None)
    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        p = torch.cuda.get_device_properties(i)
        info.update(device_name=torch.cuda.get_device_name(i), device_count=torch.cuda.device_count(),
                    capability=".".join(map(str, torch.cuda.get_device_capability(i))),
                    gpu_memory_gib=round(p.total_memory / 2 ** 30, 1),
                    cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported(),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    info["device_used"] = "cpu" if dry or not torch.cuda.is_available() else f"cuda:0 ({info['device_name']})"
    if dry or not torch.cuda.is_available():
        info.setdefault("device_name", f"cpu ({platform.processor() or platform.machine()}, "
                                       f"{os.cpu_count()} cores)")
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=20)
        if rev.returncode == 0:
            info["git"] = rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def cmd_env(args) -> int:
    """Exit 4: torch missing; 3: a GPU run without CUDA. Writes ``env.json`` and ``missing.txt``
    (one pip requirement a line, for what the shell script should install)."""
    try:
        import torch  # noqa: F401
    except Exception as e:  # noqa: BLE001
        (args.parts / "env.json").write_text(json.dumps({"error": f"torch not importable: {e}"}))
        print(f"gpu_check: torch is not importable ({e})", file=sys.stderr)
        return 4
    info = env_info(args.dry_run)
    (args.parts / "env.json").write_text(json.dumps(info, indent=1, default=str))
    (args.parts / "missing.txt").write_text("".join(NEEDED[m] + "\n" for m in info["missing"] if m in NEEDED))
    if info["missing"]:
        print(f"  not importable: {', '.join(info['missing'])}")
    for k in ("device_name", "torch", "cuda_runtime", "cudnn", "pot", "infoenh", "git"):
        if k in info:
            print(f"  {k}: {info[k]}")
    if not args.dry_run and not info["cuda_available"]:
        print("gpu_check: torch sees no CUDA device; run `bash benchmarks/gpu_check.sh --dry-run` on a CPU",
              file=sys.stderr)
        return 3
    return 0


# ---------------------------------------------------------------------------- 1. CUDA tests
_SUMMARY_WORDS = ("passed", "failed", "skipped", "deselected", "error", "errors", "xfailed", "xpassed")


def parse_pytest_summary(text: str) -> Dict[str, int]:
    """Counts from pytest's last summary line (``1 skipped, 691 deselected in 3.97s``)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "deselected": 0}
    lines = [ln for ln in text.strip().splitlines() if re.search(r"\bin [\d.]+s\b", ln)]
    if not lines:
        return counts
    for n, word in re.findall(r"(\d+) (\w+)", lines[-1]):
        if word in _SUMMARY_WORDS:
            key = "errors" if word.startswith("error") else word
            counts[key] = counts.get(key, 0) + int(n)
    return counts


def cuda_tests(sec: Section, args, device) -> None:
    import torch

    cuda = torch.cuda.is_available()
    cmd = [sys.executable, "-m", "pytest", "tests", "-k", "cuda", "-q", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", "-rsfE"]
    sec.detail["command"] = " ".join(["python"] + cmd[1:])
    print("  $ " + sec.detail["command"], flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(5.0, sec.time_left()))
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        print(out[-3000:])
        raise BudgetStop(f"pytest: it ran past the section's budget of {sec.budget:g} s") from None
    out = proc.stdout + proc.stderr
    print("\n".join("    " + ln for ln in out.strip().splitlines()[-25:]), flush=True)
    counts = parse_pytest_summary(proc.stdout)
    uncollected = sorted(set(re.findall(r"^ERROR (tests/\S+\.py)\b", proc.stdout, re.M)))
    sec.detail.update(returncode=proc.returncode, counts=counts, modules_not_collected=uncollected,
                      skip_reasons=re.findall(r"^SKIPPED \[\d+\] (.*)$", proc.stdout, re.M))
    if counts["failed"] or (counts["errors"] and not uncollected):
        status = "FAILED"
    elif uncollected:
        status = f"incomplete: {len(uncollected)} test module(s) could not be collected ({', '.join(uncollected)})"
    elif not cuda:
        status = "skipped (no CUDA)"
    elif counts["passed"] == 0:
        status = "FAILED (no CUDA test ran)"
    else:
        status = "ok"
    for k in ("passed", "failed", "skipped", "errors"):
        sec.add(f"tests {k}", counts[k], "tests", "n/a")
    sec.status = status


# ---------------------------------------------------------------------------- 2. Sinkhorn vs POT
def _sinkhorn_solvers(C, reg: float, n_iter: int, device) -> Dict[str, Callable]:
    """``name -> fn(backward) -> (plan [P, k, k], cost gradient or None)``."""
    import torch

    from infoenh.ot import sinkhorn

    S, Pp, k, _ = C.shape
    flat = C.reshape(S * Pp, k, k)

    def project(backward: bool, grad: str = "unrolled"):
        Cg = C.detach().clone().requires_grad_(backward)
        with warnings.catch_warnings():   # tol=0 never converges: the implicit mode would warn each call
            warnings.simplefilter("ignore", RuntimeWarning)
            plan = sinkhorn(Cg, reg, max_iter=n_iter, tol=0.0, grad=grad).plan
        if backward:
            (plan * Cg).sum().backward()
        return plan.detach().reshape(S * Pp, k, k), Cg.grad

    # "project implicit": the same solve, differentiated at the fixed point (grad="implicit");
    # its forward is the project's, so it is timed for fwd+bwd only
    fns = {"project": project, "project implicit": lambda backward: project(backward, "implicit")}
    try:
        import ot
        import ot.batch  # noqa: F401
    except Exception:  # noqa: BLE001 - POT missing: the project's times are still reported
        return fns

    def pot_batch(method: str):
        def fn(backward: bool):
            Cg = flat.detach().clone().requires_grad_(backward)
            # POT 0.9.7's scaling method allocates its scalings with torch.ones(...) and no device:
            # inside this context they are created on the cost's device (a no-op on the CPU).
            with torch.device(device):
                res = ot.batch.solve_batch(Cg, reg, max_iter=n_iter, tol=0.0, method=method, grad="autodiff")
            if backward:
                (res.plan * Cg).sum().backward()
            return res.plan.detach(), Cg.grad
        return fn

    fns["ot.batch log_sinkhorn"] = pot_batch("log_sinkhorn")
    fns["ot.batch sinkhorn"] = pot_batch("sinkhorn")
    return fns


def sinkhorn_section(sec: Section, args, device) -> None:
    import torch

    from infoenh.ot import cosine_cost, sinkhorn

    p = (DRY if args.dry_run else FULL)["sinkhorn"]
    S, P, d, reg, n_iter, rounds = p["samples"], p["pairs"], p["d"], p["reg"], p["n_iter"], p["rounds"]
    try:
        import ot

        pot = ot.__version__
    except Exception as e:  # noqa: BLE001
        pot = None
        sec.detail["pot_error"] = f"{type(e).__name__}: {e}"
    sec.detail.update(workload=f"{S} samples x {P} pairs = {S * P} problems of k x k, k in {list(p['ks'])}, "
                               f"cosine costs of random {d}-d features, uniform marginals, reg {reg}, float32, "
                               f"exactly {n_iter} iterations (tol=0)", pot=pot, timer="torch.cuda.Event"
                      if device.type == "cuda" else "time.perf_counter", rounds=rounds, per_k={})
    prec = "fp32"
    missing = []                               # (k, mode) without a finite POT timing
    for k in p["ks"]:
        sec.check(f"k={k}")
        g = torch.Generator().manual_seed(1000 + k)
        x = torch.randn(S, P, k, d, generator=g, dtype=torch.float64)
        y = torch.randn(S, P, k, d, generator=g, dtype=torch.float64)
        C64 = cosine_cost(x, y).to(device)
        C = C64.float()
        ref = sinkhorn(C64, reg, max_iter=n_iter, tol=0.0).plan.reshape(S * P, k, k)
        fns = _sinkhorn_solvers(C, reg, n_iter, device)
        info: Dict[str, Any] = {"solvers": {}}
        runnable = []
        for mode in ("fwd", "fwd+bwd"):
            for name, fn in fns.items():
                if mode == "fwd" and name == "project implicit":
                    continue
                key = f"{mode} {name}"
                try:                      # warm-up call (untimed) and the correctness numbers
                    plan, grad = fn(mode == "fwd+bwd")
                    sync(device)
                except Exception as e:  # noqa: BLE001 - a solver that fails is reported, not fatal
                    info["solvers"][key] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
                    continue
                finite = bool(torch.isfinite(plan).all()) and (grad is None or bool(torch.isfinite(grad).all()))
                info["solvers"][key] = {"finite": finite,
                                        "max_abs_dplan_vs_fp64": float((plan.double() - ref).abs().max()),
                                        "times_ms": []}
                runnable.append((mode, name, fn))
        done = 0
        for r in range(rounds):
            if r > 0 and time.monotonic() > sec.deadline:
                break
            for mode, name, fn in (runnable if r % 2 == 0 else runnable[::-1]):
                with Clock(device) as c:
                    fn(mode == "fwd+bwd")
                info["solvers"][f"{mode} {name}"]["times_ms"].append(c.ms)
            done += 1
        info["rounds_done"] = done
        for s in info["solvers"].values():
            if s.get("times_ms"):
                s["median_ms"] = statistics.median(s["times_ms"])
                s["min_ms"] = min(s["times_ms"])
        sec.detail["per_k"][str(k)] = info
        for mode in ("fwd", "fwd+bwd"):
            own = info["solvers"].get(f"{mode} project", {})
            if "median_ms" not in own:
                sec.add(f"k={k} {mode}: project", "error: " + own.get("error", "no timing"), "", prec)
                continue
            sec.add(f"k={k} {mode}: project, median of {done}", own["median_ms"], "ms", prec)
            pots = {n: s for n, s in info["solvers"].items() if n.startswith(mode + " ot.batch")
                    and s.get("finite") and "median_ms" in s}
            if not pots:
                why = "POT not importable" if pot is None else "no POT batched method gave finite results"
                sec.add(f"k={k} {mode}: ot.batch", f"n/a ({why})", "", prec)
                missing.append(f"k={k} {mode}")
                continue
            best_name, best = min(pots.items(), key=lambda kv: kv[1]["median_ms"])
            method = best_name.split(" ")[-1]
            sec.add(f"k={k} {mode}: ot.batch fastest finite ({method})", best["median_ms"], "ms", prec)
            sec.add(f"k={k} {mode}: ratio ot.batch[{method}] / project", best["median_ms"] / own["median_ms"],
                    "x", prec)
            implicit = info["solvers"].get(f"{mode} project implicit", {})
            if "median_ms" in implicit:
                sec.add(f"k={k} {mode}: project implicit, median of {done}", implicit["median_ms"], "ms", prec)
                sec.add(f"k={k} {mode}: ratio ot.batch[{method}] / project implicit",
                        best["median_ms"] / implicit["median_ms"], "x", prec)
        dps = {n.split(" ", 1)[1]: s["max_abs_dplan_vs_fp64"] for n, s in info["solvers"].items()
               if n.startswith("fwd ") and "max_abs_dplan_vs_fp64" in s}
        if "project" in dps:
            sec.add(f"k={k}: project max|plan - fp64 plan|", dps["project"], "", "fp32 vs fp64")
    if pot is None:
        sec.status = "partial: POT not importable (project timed alone)"
    elif missing:
        sec.status = f"partial: no finite ot.batch result for {', '.join(missing)} (errors in the JSON)"
    else:
        sec.status = "ok"


# ---------------------------------------------------------------------------- training helpers
@contextlib.contextmanager
def timed_train_epochs(device):
    """Wrap :func:`infoenh.train.trainer.train_one_epoch` (what :func:`~infoenh.train.trainer.fit`
    calls) with a :class:`Clock`; yields the list of ``{epoch, ms, batches, steps}``. Everything
    else is the trainer as ``infoenh train`` runs it."""
    from infoenh.train import trainer

    orig = trainer.train_one_epoch
    log: List[Dict[str, Any]] = []

    def wrapper(*a, **kw):
        loader = kw.get("loader", a[1] if len(a) > 1 else None)
        cfg = kw.get("cfg", a[3] if len(a) > 3 else None)
        epoch = kw.get("epoch", a[4] if len(a) > 4 else None)
        with Clock(device) as c:
            res = orig(*a, **kw)
        n = len(loader)
        steps = int(res.get("optimizer_steps", math.ceil(n / cfg.accum_steps)))   # as the trainer counted them
        log.append({"epoch": epoch, "ms": c.ms, "batches": n, "steps": steps,
                    "samples": len(loader.dataset), "loss": res.get("loss")})
        print(f"    epoch {epoch}: train {c.ms / 1e3:.2f} s, {n} batches, {steps} "
              f"optimiser steps, loss {res.get('loss', float('nan')):.4f}", flush=True)
        return res

    trainer.train_one_epoch = wrapper
    try:
        yield log
    finally:
        trainer.train_one_epoch = orig


def _data(p: Dict[str, Any]):
    """The SYNTHETIC testbed at ``--synthetic-scale p["scale"]`` (the dry run also shrinks the
    split sizes to ``p["sizes"]``), as ``infoenh train --data synthetic`` builds it."""
    from infoenh.data.synthetic import make_synthetic_splits
    from infoenh.train.runner import SYNTHETIC_SCALES

    knobs = dict(SYNTHETIC_SCALES[p["scale"]])
    if "sizes" in p:
        knobs["sizes"] = p["sizes"]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        _quiet_warnings()
        ds = make_synthetic_splits(seed=0, **knobs)
    info = {"dataset": f"SYNTHETIC testbed, scale '{p['scale']}'" + (" (sizes shrunk)" if "sizes" in p else "")
            + ", generator seed 0; not MOSI", "sizes": {s: len(ds[s]) for s in ds}, "dims": dict(ds.dims),
            "lengths": dict(getattr(ds, "seq_lens", {}) or {}), "generated_s": round(time.perf_counter() - t0, 2)}
    print(f"  data: {info['dataset']}: {info['sizes']}, widths {info['dims']}, lengths {info['lengths']} "
          f"({info['generated_s']} s)", flush=True)
    return ds, info


def _fit(ds, cfg, device):
    """``fit`` without a run folder, its train epochs timed, peak memory over the whole run."""
    from infoenh.train.trainer import fit, precision_label

    base = reset_peak(device)
    with timed_train_epochs(device) as log, warnings.catch_warnings():
        _quiet_warnings()
        res = fit(ds, cfg, run_dir=None)
    return res, log, peak_mib(device, base), precision_note(device, precision_label(device, cfg.resolved().autocast))


# ---------------------------------------------------------------------------- 3. training step
def train_step_section(sec: Section, args, device) -> None:
    """bench_train_step's side-by-side step times (host alone vs with InfoEnh) for each host."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_train_step as bts
    from infoenh.models import TRAIN_DEFAULTS
    from infoenh.train.trainer import precision_label

    p = (DRY if args.dry_run else FULL)["train-step"]
    prec = precision_note(device, precision_label(device, True))
    sec.detail.update(what="one step = forward + host loss (+ InfoEnh's) + backward + host hook + Adam, one "
                           "SYNTHETIC MOSI-shaped batch (text 50x768, audio 375x5, vision 500x20)",
                      timer="time.perf_counter between torch.cuda.synchronize calls" if device.type == "cuda"
                      else "time.perf_counter", rounds=p["rounds"], steps_per_round=p["steps"], warmup=p["warmup"],
                      statistic="min over rounds of the mean step time within a round", hosts={})
    for host in p["hosts"]:
        sec.check(f"host {host}")
        bs = p["batch"] or TRAIN_DEFAULTS[host]["batch_size"]
        ds, batch = bts.make_batch(bs)
        with warnings.catch_warnings():
            _quiet_warnings()
            t = bts.time_variants(host, ["none", "full"], ds, batch, device, True, {"k": 16, "d": 128},
                                  p["rounds"], p["steps"], p["warmup"], time.perf_counter)
        ms = {v: 1e3 * t[v] for v in t}
        sec.detail["hosts"][host] = {"batch": bs, "step_ms": ms}
        sec.add(f"{host} (batch {bs}): host step", ms["none"], "ms", prec)
        sec.add(f"{host} (batch {bs}): host + InfoEnh step", ms["full"], "ms", prec)
        sec.add(f"{host}: ratio InfoEnh / host (target <= 1.25)", ms["full"] / ms["none"], "x", prec)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    sec.status = "ok"


# ---------------------------------------------------------------------------- 4. Self-MM epoch
def selfmm_section(sec: Section, args, device) -> None:
    from infoenh.train.config import TrainConfig

    p = (DRY if args.dry_run else FULL)["selfmm"]
    ds, info = _data(p)
    sec.detail["data"] = info
    out = {}
    for variant, label in (("none", "host alone"), ("full", "host + InfoEnh")):
        sec.check(f"variant {variant}")
        print(f"  Self-MM, InfoEnh {variant}: {p['epochs']} epochs (epoch 1 warms up, not timed)", flush=True)
        # precision "bf16", asked for explicitly (the default is fp32, as MMSA): bf16 autocast on any device
        cfg = TrainConfig(model="selfmm", infoenh=variant, epochs=p["epochs"], device=device.type,
                          precision="bf16", seed=1111, quiet=True)
        res, log, peak, prec = _fit(ds, cfg, device)
        timed = log[1:] or log
        step_ms = sum(e["ms"] for e in timed) / sum(e["steps"] for e in timed)
        r = cfg.resolved()
        out[variant] = {"step_ms": step_ms, "peak_mib": peak, "epochs": log, "precision": prec,
                        "batch_size": r.batch_size, "accum_steps": r.accum_steps,
                        "samples_per_s": sum(e["samples"] for e in timed) / (sum(e["ms"] for e in timed) / 1e3)}
        sec.detail[variant] = out[variant]
        if variant == "none":
            sec.add(f"optimiser steps per epoch (batch {r.batch_size} x {r.accum_steps} accumulated)",
                    timed[0]["steps"], "steps", "n/a")
        sec.add(f"{label}: time per optimiser step", step_ms, "ms", prec)
        sec.add(f"{label}: {memory_label(device)}", peak, "MiB", prec)
    sec.add("ratio InfoEnh / host: time per step", out["full"]["step_ms"] / out["none"]["step_ms"], "x",
            out["full"]["precision"])
    if out["full"]["peak_mib"] and out["none"]["peak_mib"]:
        sec.add(f"ratio InfoEnh / host: {memory_label(device)}", out["full"]["peak_mib"] / out["none"]["peak_mib"],
                "x", out["full"]["precision"])
    sec.status = "ok"


# ---------------------------------------------------------------------------- 5. bf16 vs fp32
def amp_section(sec: Section, args, device) -> None:
    from infoenh.train.config import TrainConfig

    p = (DRY if args.dry_run else FULL)["amp"]
    ds, info = _data(p)
    sec.detail["data"] = info
    runs = {}
    for prec in ("fp32", "bf16"):
        sec.check(f"the {prec} run")
        print(f"  {p['model']} + InfoEnh {p['variant']}, seed {p['seed']}, {p['epochs']} epochs, precision {prec}",
              flush=True)
        cfg = TrainConfig(model=p["model"], infoenh=p["variant"], epochs=p["epochs"], device=device.type,
                          precision=prec, seed=p["seed"], quiet=True)
        res, log, peak, label = _fit(ds, cfg, device)
        runs[prec] = {"result": {k: v for k, v in res.items() if k != "history"}, "history": res.get("history"),
                      "train_ms": sum(e["ms"] for e in log), "precision": label}
        sec.detail[prec] = runs[prec]
    both = f"{runs['fp32']['precision']} vs {runs['bf16']['precision']}"

    def side(name: str, a, b, unit: str = "") -> None:
        sec.add(name, b - a, unit, both, fp32=a, bf16=b)

    r32, r16 = runs["fp32"]["result"], runs["bf16"]["result"]
    side("selected epoch (valid loss only)", int(r32["best_epoch"]), int(r16["best_epoch"]), "epoch")
    side("valid loss of the selected epoch", float(r32["valid_loss"]), float(r16["valid_loss"]))
    side("test loss", float(r32["test_loss"]), float(r16["test_loss"]))
    for m in AMP_METRICS:
        if m in r32["test"] and m in r16["test"]:
            side(f"test {m}", float(r32["test"][m]), float(r16["test"][m]))
    sec.add("train time bf16 / fp32", runs["bf16"]["train_ms"] / runs["fp32"]["train_ms"], "x", both)
    sec.status = "ok"


SECTION_FNS = {"cuda-tests": cuda_tests, "sinkhorn": sinkhorn_section, "train-step": train_step_section,
               "selfmm": selfmm_section, "amp": amp_section}


def cmd_section(args) -> int:
    sec = Section(args.cmd, args.parts, args.budget, args.dry_run)

    def on_term(signum, frame):  # the shell's `timeout` asks us to stop
        raise BudgetStop(f"by the shell's timeout: over the section's budget of {args.budget:g} s")

    signal.signal(signal.SIGTERM, on_term)
    rc = 0
    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        device = _device(args.dry_run)
        SECTION_FNS[args.cmd](sec, args, device)
    except BudgetStop as e:
        sec.status, rc = f"stopped {e}", 5
    except Exception as e:  # noqa: BLE001 - one line in the table, the traceback in the log
        import traceback

        traceback.print_exc()
        sec.status, rc = f"error: {type(e).__name__}: {str(e)[:300]}", 1
    sec.save()
    print(f"== {args.cmd}: {sec.status} ({sec.elapsed():.1f} s of a {args.budget:g} s budget)", flush=True)
    return rc


# ---------------------------------------------------------------------------- report
OK_STATUSES = ("ok", "skipped (no CUDA)")


def collect(parts: Path, dry: bool, only: Optional[List[str]], abort: Optional[str]) -> Dict[str, Any]:
    """Merge ``env.json``, ``section_*.json`` and the shell's ``shell_*.json`` into the report."""
    def load(name):
        f = parts / name
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            return None

    env = load("env.json") or {"error": "the env step did not finish (is torch importable?)"}
    doc: Dict[str, Any] = {
        "label": DRY_LABEL if dry else GPU_LABEL, "dry_run": dry, "mode": "DRY RUN" if dry else "GPU",
        "device": env.get("device_name"), "torch": env.get("torch"), "cuda": env.get("cuda_runtime"),
        "cudnn": env.get("cudnn"), "pot": env.get("pot"), "env": env, "sections": {}, "rows": [],
        "data": "SYNTHETIC testbed (never MOSI): speed and precision checks, not results",
    }
    for name in SECTIONS:
        sec = load(f"section_{name}.json")
        shell = load(f"shell_{name}.json") or {}
        if only and name not in only:
            entry = {"status": "not run (--only)", "rows": []}
        elif abort:
            entry = {"status": f"not run: {abort}", "rows": []}
        elif sec is None:
            entry = {"status": "not run", "rows": []}
        else:
            entry = dict(sec)
        rc = shell.get("rc")
        if rc in (124, 137):
            entry["status"] = (f"stopped: overran its budget of {shell.get('budget_s')} s (killed by timeout); "
                               f"rows before that are kept")
        elif rc not in (None, 0, 124) and entry.get("status", "").startswith(("running", "ok")):
            entry["status"] = f"error: exit code {rc} (see the log)"
        if shell:
            entry["elapsed_s"], entry["budget_s"] = shell.get("elapsed_s"), shell.get("budget_s")
        entry["ok"] = entry["status"] in OK_STATUSES
        entry["mode"] = doc["mode"]
        doc["sections"][name] = entry
        rows = list(entry.get("rows", []))
        if not any(r.get("measurement") == "status" for r in rows):
            rows.insert(0, {"section": name, "measurement": "status", "value": entry["status"], "unit": "",
                            "precision": "n/a"})
        if entry.get("elapsed_s") is not None:
            rows.append({"section": name, "measurement": f"elapsed (budget {entry.get('budget_s')} s)",
                         "value": entry["elapsed_s"], "unit": "s", "precision": "n/a"})
        doc["rows"].extend(rows)
    doc["ok"] = all(s["ok"] for n, s in doc["sections"].items() if not (only and n not in only))
    return doc


def format_report(doc: Dict[str, Any]) -> str:
    def value(r):
        if "fp32" in r and "bf16" in r:
            return f"fp32 {_fmt(r['fp32'])} | bf16 {_fmt(r['bf16'])} | diff {'+' if r['value'] >= 0 else ''}" \
                   f"{_fmt(r['value'])}"
        return (_fmt(r["value"], r.get("unit", "")) + (f" {r['unit']}" if r.get("unit") else "")).strip()

    head = ("section", "measurement", "value", "precision")
    body = [(r["section"], r["measurement"], value(r), r.get("precision") or "") for r in doc["rows"]]
    w = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    w[1] = min(w[1], 70)
    line = lambda cells: "  ".join(c.ljust(w[i]) for i, c in enumerate(cells)).rstrip()  # noqa: E731
    title = f"InfoEnh GPU check -- {doc['label']}"
    env = (f"device: {doc.get('device')} | torch {doc.get('torch')} | CUDA {doc.get('cuda') or 'n/a'}"
           + (f" | cuDNN {doc['cudnn']}" if doc.get("cudnn") else "") + f" | POT {doc.get('pot')}")
    width = max(len(title), len(env), sum(w) + 2 * (len(w) - 1))
    out = ["=" * width, title, env, "=" * width, line(head), line(tuple("-" * x for x in w))]
    prev = None
    for b in body:
        out.append(line((b[0] if b[0] != prev else "",) + b[1:]))
        prev = b[0]
    out.append("-" * width)
    out.append(("DRY RUN: " if doc["dry_run"] else "") + f"overall: {'OK' if doc['ok'] else 'NOT OK'} "
               "(data: SYNTHETIC testbed; ratios are measured side by side in one run)")
    return "\n".join(out)


def cmd_report(args) -> int:
    only = [s for s in args.only.split(",") if s] if args.only else None
    doc = collect(args.parts, args.dry_run, only, args.abort)
    table = format_report(doc)
    doc["table"] = table
    doc["log"] = "gpu_check.log"
    doc["total_elapsed_s"] = args.total_elapsed
    args.dest.mkdir(parents=True, exist_ok=True)
    tmp = args.dest / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, args.dest / "gpu_check.json")
    print(table)
    print(f"wrote {args.dest / 'gpu_check.json'} and {args.dest / 'gpu_check.log'}")
    return 0 if doc["ok"] else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cmd", choices=("env",) + SECTIONS + ("report",))
    p.add_argument("--parts", type=Path, required=True, help="folder of the per-section JSON files")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes")
    p.add_argument("--budget", type=float, default=600.0, help="this section's budget in seconds")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--dest", type=Path, default=Path("gpu_check_out"), help="report: where gpu_check.json goes")
    p.add_argument("--only", default="", help="report: the sections that were asked for (comma-separated)")
    p.add_argument("--abort", default=None, help="report: why no section ran")
    p.add_argument("--total-elapsed", type=float, default=None)
    args = p.parse_args(argv)
    args.parts.mkdir(parents=True, exist_ok=True)
    if args.cmd == "env":
        return cmd_env(args)
    if args.cmd == "report":
        return cmd_report(args)
    return cmd_section(args)


if __name__ == "__main__":
    sys.exit(main())
