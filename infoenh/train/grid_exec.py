"""Executors of a grid (:mod:`infoenh.train.grid`): in-process, one run after another, or on Ray.

    doc = run_grid(load_spec("grid.yaml"), "runs/grid", executor="auto")

Both call the same per-run function (:func:`infoenh.train.grid.run_one`) and give the same records:
runs are deterministic, so a run gives the same numbers wherever it runs. On Ray each run is a
task (``num_gpus=1`` where the cluster has GPUs, else ``num_cpus=cpus_per_run``) with
``max_retries``: a worker that dies has its run retried on another worker, which resumes from the
run's checkpoint (its folder lock died with the worker). A run that fails (an exception, a NaN)
is a record with its error; the grid goes on. The driver prints one line per finished run and a
summary (done / running / failed) and writes the tables at the end. Ray is an extra
(``pip install infoenh[ray]``); ``executor="auto"`` uses it when it is installed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .grid import (GridSpec, Run, check_run_folders, data_hashes, expand, run_one, stale_message, stale_runs,
                   write_tables)

EXECUTORS = ("auto", "ray", "sequential")
RunFn = Callable[[Run, GridSpec, Any], Dict[str, Any]]


class GridTerminated(KeyboardInterrupt):
    """SIGTERM (or SIGINT) reached the grid's driver: it stops cleanly (the command line then says
    how to resume and exits 130), cancelling what Ray still runs and naming what it leaves behind."""


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM and SIGINT raise :class:`GridTerminated` in the driver while the block runs.

    Ray's driver installs native handlers that print C++ frames and abort on SIGTERM; Python's
    handler installed after ``ray.init`` replaces them. The previous handlers are restored on
    exit. Outside the main thread (where handlers cannot be set) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _stop(signum, frame):
        raise GridTerminated(f"received {signal.Signals(signum).name}")

    old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _leftover_processes() -> List[str]:
    """This process's children still alive (after Ray's shutdown: workers it left behind)."""
    try:
        import psutil
    except ImportError:
        return []
    out = []
    for c in psutil.Process().children(recursive=True):
        try:
            if c.is_running() and c.status() != psutil.STATUS_ZOMBIE:
                out.append(f"pid {c.pid} ({c.name()})")
        except psutil.Error:
            continue
    return out


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


class Progress:
    """One line per finished run, with the grid's counts."""

    def __init__(self, total: int, log: Optional[Callable[[str], None]] = None):
        self.total, self.done, self.failed, self.reused = total, 0, 0, 0
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.start = time.monotonic()

    def begin(self) -> None:
        """Start the clock: at the first dispatch (after Ray has started)."""
        self.start = time.monotonic()

    def eta(self) -> str:
        """Time left at the pace so far (runs trained per second of wall time, parallel runs
        included); reused runs are left out of the pace."""
        n = self.done + self.failed
        timed = n - self.reused
        if timed <= 0 or n == self.total:
            return ""
        left = (time.monotonic() - self.start) / timed * (self.total - n)
        return f", ETA {left / 60:.1f} min" if left >= 60 else f", ETA {left:.0f} s"

    def finished(self, rec: Dict[str, Any], running: int) -> None:
        if rec.get("status") == "done":
            self.done += 1
            self.reused += bool(rec.get("reused"))
        else:
            self.failed += 1
        n = self.done + self.failed
        if rec.get("status") == "done":
            what = "reused" if rec.get("reused") else "done"
            mae = (rec.get("test") or {}).get("MAE")
            what += f" in {rec.get('seconds', 0):.1f}s" + (f", test MAE {mae:.4f}" if mae is not None else "")
        else:
            what = f"FAILED: {rec.get('error')}"
        self.log(f"[{n}/{self.total}] {rec['key']}: {what}  (done {self.done}, failed {self.failed}, "
                 f"running or queued {running}{self.eta()})")

    def summary(self, running: int = 0) -> str:
        return (f"grid: {self.total} runs: {self.done} done, {running} running, {self.failed} failed, "
                f"{self.total - self.done - self.failed - running} not run")


def run_sequential(runs: Sequence[Run], spec: GridSpec, out, *, run_fn: Optional[RunFn] = None,
                   progress: Optional[Progress] = None) -> List[Dict[str, Any]]:
    """Every run in this process, one after another."""
    fn = run_fn or run_one
    records = []
    if progress:
        progress.begin()
    for i, run in enumerate(runs):
        try:
            rec = fn(run, spec, str(out))
        except Exception as e:        # run_one never raises; a custom run_fn may
            rec = {"key": run.key, **dataclasses.asdict(run), "dir": str(run.folder(out)), "status": "failed",
                   "error": f"{type(e).__name__}: {e}"}
        records.append(rec)
        if progress:
            progress.finished(rec, running=len(runs) - i - 1)
    return records


def _ray_task(run_fn: RunFn, run: Dict[str, Any], spec: Dict[str, Any], out: str) -> Dict[str, Any]:
    rec = run_fn(Run(**run), GridSpec.from_dict(spec), out)
    import os
    import socket

    return {**rec, "worker": f"{socket.gethostname()}:{os.getpid()}"}


def run_ray(runs: Sequence[Run], spec: GridSpec, out, *, address: Optional[str] = None,
            num_cpus: Optional[int] = None, cpus_per_run: float = 1, max_retries: int = 3,
            run_fn: Optional[RunFn] = None, progress: Optional[Progress] = None) -> List[Dict[str, Any]]:
    """Every run as a Ray task. Uses the Ray already initialised in this process if any, else
    starts a local one (``num_cpus``) or connects to ``address``, and shuts down what it started."""
    import ray

    started = False
    if not ray.is_initialized():
        kw: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if address:
            kw["address"] = address
        elif num_cpus:
            kw["num_cpus"] = num_cpus
        try:
            ray.init(**kw)
        except Exception as e:        # noqa: BLE001 - one line, exit 1 on the command line
            where = f"connect to Ray at {address}" if address else "start a local Ray"
            raise RuntimeError(f"could not {where}: {type(e).__name__}: {e}") from e
        started = True
    interrupted: List[str] = []
    try:
        opts: Dict[str, Any] = {"max_retries": max_retries, "retry_exceptions": False, "num_cpus": cpus_per_run}
        if ray.cluster_resources().get("GPU", 0) >= 1:
            opts["num_gpus"] = 1
        task = ray.remote(_ray_task).options(**opts)
        spec_d = spec.to_dict()
        fn = run_fn or run_one
        if progress:
            progress.begin()
        pending: Dict[Any, Run] = {}
        records: List[Dict[str, Any]] = []
        with terminate_as_interrupt():       # after ray.init: replaces Ray's native SIGTERM handler
            try:
                pending.update({task.remote(fn, dataclasses.asdict(r), spec_d, str(out)): r for r in runs})
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        run = pending.pop(ref)
                        try:
                            rec = ray.get(ref)
                        except Exception as e:       # the task's workers died max_retries + 1 times
                            rec = {"key": run.key, **dataclasses.asdict(run), "dir": str(run.folder(out)),
                                   "status": "failed",
                                   "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
                        records.append(rec)
                        if progress:
                            progress.finished(rec, running=len(pending))
            except KeyboardInterrupt:
                interrupted = [r.key for r in pending.values()]
                if not started:              # a Ray we did not start keeps running: cancel our tasks there
                    for ref in pending:      # (a Ray we started is shut down below, its workers with it)
                        try:
                            ray.cancel(ref, force=True)
                        except Exception:    # noqa: BLE001 - already finished or gone
                            pass
                raise
        return records
    finally:
        if started:
            try:
                ray.shutdown()
            except Exception as e:           # noqa: BLE001 - never hide the interrupt behind a shutdown error
                if not interrupted:
                    raise
                print(f"grid: Ray's shutdown failed ({type(e).__name__}: {e})", file=sys.stderr, flush=True)
        if interrupted:
            _say_left_behind(interrupted, address, started)


def _say_left_behind(keys: Sequence[str], address: Optional[str], started: bool) -> None:
    """After an interrupted Ray grid: the runs it cancelled, and any process still alive."""
    shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
    msg = (f"grid: interrupted; {'stopped' if started else 'cancelled'} {len(keys)} unfinished run(s) on Ray: "
           f"{shown}")
    left = _leftover_processes() if started else []
    if left:
        msg += f". Still running after Ray's shutdown: {', '.join(left[:8])}; stop them with `ray stop` or kill"
    elif address:
        msg += (f". Ray at {address} keeps its workers: check `ray list tasks --address {address}` for runs still "
                "going (each holds its run folder's lock until it ends)")
    print(msg, file=sys.stderr, flush=True)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def run_grid(spec: GridSpec, out, *, executor: str = "auto", address: Optional[str] = None,
             num_cpus: Optional[int] = None, cpus_per_run: float = 1, max_retries: int = 3,
             run_fn: Optional[RunFn] = None, log: Optional[Callable[[str], None]] = None,
             fresh: bool = False) -> Dict[str, Any]:
    """Run every run of ``spec`` not finished yet in ``out`` and write ``grid.json`` / ``grid.md``;
    return the ``grid.json`` document.

    Before anything runs or is written, every existing run folder is checked against the run's
    configuration, data and code now: a folder computed from other inputs stops the grid with one
    error (:class:`~infoenh.train.fingerprint.FingerprintMismatch`) listing them, unless ``fresh``,
    which deletes those folders (and only those) and trains them again."""
    from .fingerprint import FingerprintMismatch
    from .grid_report import added_references
    from .checkpoint import write_json
    from .lock import folder_lock

    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if executor == "auto":
        executor = "ray" if ray_available() else "sequential"
    if executor == "ray" and not ray_available():
        raise ImportError("--executor ray needs Ray: pip install 'infoenh[ray]' (or use --executor sequential)")
    if address and executor != "ray":
        raise ValueError("--address is for --executor ray")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"--max-retries must be an integer >= 0, got {max_retries!r}")
    if not cpus_per_run or cpus_per_run <= 0:
        raise ValueError(f"--cpus-per-run must be > 0, got {cpus_per_run!r}")
    out = Path(out).expanduser().resolve()       # absolute: Ray workers do not share our working directory
    runs = expand(spec)
    check_run_folders(runs, out)                 # before anything is written or deleted
    progress = Progress(len(runs), log)
    with folder_lock(out):
        check_run_folders(runs, out)             # again, now that no other grid can change the folders
        hashes = data_hashes(spec)               # every run checks that it trains on these arrays
        runs = [dataclasses.replace(r, data_sha256=hashes[r.dataset]) for r in runs]
        stale = stale_runs(spec, runs, out)
        if stale and not fresh:
            raise FingerprintMismatch(stale_message(stale, out))
        for run, why in stale:
            print(f"grid: --fresh: deleting {run.folder(out)} ({why})", file=sys.stderr, flush=True)
            shutil.rmtree(run.folder(out))
        write_json({"spec": spec.to_dict(), "executor": executor, "runs": [r.key for r in runs]},
                   out / "grid_spec.json")
        counts = " x ".join(_count(n, what) for n, what in ((len(spec.datasets), "dataset"), (len(spec.hosts), "host"),
                                                            (len(spec.arms), "arm"), (len(spec.seeds), "seed")))
        refs = "".join(f"; + {a}" for a in added_references(spec.arms, spec.requested_arms))
        progress.log(f"grid: {_count(len(runs), 'run')} ({counts}) on {executor}, in {out}{refs}")
        if executor == "ray":
            records = run_ray(runs, spec, out, address=address, num_cpus=num_cpus, cpus_per_run=cpus_per_run,
                              max_retries=max_retries, run_fn=run_fn, progress=progress)
        else:
            with terminate_as_interrupt():
                records = run_sequential(runs, spec, out, run_fn=run_fn, progress=progress)
        doc = write_tables(spec, records, out)
        progress.log(progress.summary() + f"; tables: {out / 'grid.md'}, {out / 'grid.json'}")
        return doc
