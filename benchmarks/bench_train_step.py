"""Training-step cost of InfoEnh inside each host, measured side by side.

    .venv/bin/python benchmarks/bench_train_step.py                 # CPU, one thread, all hosts
    .venv/bin/python benchmarks/bench_train_step.py --device cuda --threads 0 --rounds 10

One step = forward + host loss (+ InfoEnh's) + backward + host hook + Adam step, on one
MOSI-shaped SYNTHETIC batch (unaligned: text 50 x 768, audio 375 x 5, vision 500 x 20, real
lengths as the testbed draws them), at each host's MMSA batch size (lf 32, selfmm 16, misa 16;
``--batch-size`` overrides). Variants of every host run interleaved, round after round; each
variant's time is the minimum over rounds of the mean step time within a round, and the ratio
is variant / host alone. The switches split InfoEnh's cost: ``no_fia`` = FIB (+InfoNCE) only,
``no_fib`` = FIA only (top-k + OT), ``full`` = both.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the steps; on the CPU the growth
of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) over the RSS before the
steps, each variant in a fresh subprocess (the CPU allocator has no counter, tracemalloc does not
see torch's buffers). Linux only.

Target (project): InfoEnh step <= 1.25 x the host's step. ``--profile`` prints the top operators
of the full variant, forward and backward; ``--breakdown`` the forward and backward time of
InfoEnh's parts (input checks, FIB, its top-k + kept-row projection, InfoNCE, FIA, Sinkhorn, the
host's attention pooling) and of the whole backward pass.

On a shared machine, ``--clock cpu`` times with this process's CPU time instead of wall time
(one CPU thread only): other processes then no longer inflate the numbers, though they still
compete for caches. Results: ``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

import torch

from infoenh.data import collate
from infoenh.data.synthetic import make_synthetic_splits
from infoenh.models import TRAIN_DEFAULTS, build_model
from infoenh.train.trainer import autocast_for, to_device

VARIANTS = ("none", "no_fia", "no_fib", "full")


def make_batch(batch_size: int, seed: int = 0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_synthetic_splits(seed=seed, sizes=(batch_size, 1, 1))   # MOSI shapes, unaligned
    return ds, collate([ds["train"][i] for i in range(batch_size)])


def make_step(host: str, variant: str, ds, batch, device, amp: bool, ie_kwargs: dict):
    torch.manual_seed(0)
    model = build_model(host, ds.dims, infoenh=variant, n_train=len(ds["train"]), infoenh_kwargs=ie_kwargs).to(device)
    model.init_from_train(batch["label"], batch["index"])
    opt = torch.optim.Adam(model.param_groups())
    b = to_device(batch, device)
    model.train()

    def step():
        with autocast_for(device, amp):
            out = model(b)
            loss, _ = model.training_loss(out, b, 2)
        loss.backward()
        model.after_backward(out, b, 2)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_variants(host, variants, ds, batch, device, amp, ie_kwargs, rounds, steps, warmup, clock=time.perf_counter):
    fns = {v: make_step(host, v, ds, batch, device, amp, ie_kwargs) for v in variants}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {v: float("inf") for v in variants}
    for _ in range(rounds):
        for v, fn in fns.items():                       # interleaved: every round runs every variant
            _sync(device)
            t0 = clock()
            for _ in range(steps):
                fn()
            _sync(device)
            best[v] = min(best[v], (clock() - t0) / steps)
    return best


def _reset_peak_rss() -> None:
    """Reset the kernel's high-water mark of this process's RSS (Linux: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def peak_memory_mb(host, variant, ds, batch, device, amp, ie_kwargs, steps=2) -> float:
    fn = make_step(host, variant, ds, batch, device, amp, ie_kwargs)
    if device.type == "cuda":
        fn()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2 ** 20
    fn()                                                             # allocate the optimiser state
    before = _rss_kb()
    _reset_peak_rss()
    for _ in range(steps):
        fn()
    return max(0, _peak_rss_kb() - before) / 1024


def cpu_memory_in_subprocess(args, host, variant) -> float:
    cmd = [sys.executable, __file__, "--_memory-child", host, variant, "--threads", str(args.threads),
           "--k", str(args.k), "--d", str(args.d)]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def profile_full(host, ds, batch, device, amp, ie_kwargs, rows=12) -> str:
    from torch.profiler import ProfilerActivity, profile

    fn = make_step(host, "full", ds, batch, device, amp, ie_kwargs)
    fn()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(2):
            fn()
    key = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def _labelled(fn, label):
    from torch.profiler import record_function

    def wrapped(*a, **k):
        with record_function(label):
            return fn(*a, **k)
    return wrapped


def _part_patches():
    """(object, attribute, label) of the parts the breakdown times, outermost first."""
    import infoenh.fia
    import infoenh.fib
    import infoenh.models.base
    import infoenh.models.pooling
    import infoenh.module

    patches = [(infoenh.module.InfoEnh, "forward", "InfoEnh total"),
               (infoenh.module.InfoEnh, "_check", "InfoEnh checks"),
               (infoenh.fib.FIB, "forward", "FIB"), (infoenh.fib.FIB, "_pool", "top-k+proj"),
               (infoenh.module, "infonce_per_modality", "InfoNCE"), (infoenh.module, "align_stacked", "FIA"),
               (infoenh.fia, "sinkhorn", "Sinkhorn"),
               (infoenh.models.pooling.AttentionPool, "forward", "attention pooling"),
               (infoenh.models.base.HostModel, "check_batch", "host checks"),
               # the same parts under their names before InfoEnh stacked the modalities, so that
               # this script also breaks down an earlier version of the package (PYTHONPATH)
               (infoenh.module, "sentiment_infonce", "InfoNCE"), (infoenh.module, "fia", "FIA")]
    return [(obj, name, "ie:" + label) for obj, name, label in patches if hasattr(obj, name)]


def _in_backward(ev) -> bool:
    p = ev.cpu_parent
    while p is not None:
        if p.name.startswith("autograd::engine::evaluate_function"):
            return True
        p = p.cpu_parent
    return False


def _attribute(events, steps: int) -> dict:
    """Per labelled part: forward ms (the part's range) and backward ms (the autograd nodes of the
    operations run inside the range, matched by sequence number), per step."""
    ranges = [e for e in events if e.name.startswith("ie:")]
    # sequence number -> the ranges around the forward op that created that autograd node: ops
    # that create none record the next number too, so the last op recorded with it is the one
    parts = {}
    ops = [e for e in events
           if e.sequence_nr >= 0 and not e.name.startswith(("ie:", "autograd::")) and not _in_backward(e)]
    for e in sorted(ops, key=lambda e: e.time_range.start):
        parts[e.sequence_nr] = {r.name for r in ranges
                                if r.time_range.start <= e.time_range.start and e.time_range.end <= r.time_range.end}
    fwd, bwd = {}, {}
    for r in ranges:
        fwd[r.name[3:]] = fwd.get(r.name[3:], 0.0) + r.cpu_time_total / 1000 / steps
    total_bwd = 0.0
    for e in events:
        if not e.name.startswith("autograd::engine::evaluate_function"):
            continue
        ms = e.cpu_time_total / 1000 / steps
        total_bwd += ms
        for name in parts.get(e.sequence_nr, ()):
            bwd[name[3:]] = bwd.get(name[3:], 0.0) + ms
    return {k: (fwd[k], bwd.get(k, 0.0)) for k in fwd} | {"backward, whole step": (0.0, total_bwd)}


def breakdown_full(host, ds, batch, device, amp, ie_kwargs, steps=3) -> dict:
    """CPU time (ms per step, forward and backward) of InfoEnh's parts in the full variant, from
    profiler ranges put around them for the measurement only: InfoEnh's input checks, FIB
    (projection + top-k + gate, all modalities) and within it top-k selection with the projection
    of the kept rows, InfoNCE (all modalities), FIA (costs, Sinkhorn, barycentric maps) and within
    it Sinkhorn, the host's attention pooling of InfoEnh's output and the host's batch checks. A
    part's backward is the time of the autograd nodes of the operations its forward ran (matched
    by the profiler's sequence numbers); ``backward, whole step`` is all autograd nodes. Ranges
    nest: FIB contains top-k+proj, FIA contains Sinkhorn, InfoEnh total contains all but the host's
    checks and pooling. Profiling adds about a microsecond per operation, so the parts read high
    against the timed steps."""
    from torch.profiler import profile

    patches = _part_patches()
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, label in patches:
            setattr(obj, name, _labelled(getattr(obj, name), label))
        fn = make_step(host, "full", ds, batch, device, amp, ie_kwargs)
        fn()
        with profile() as prof:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            wall = (time.perf_counter() - t0) / steps
    finally:
        for obj, name, orig in saved:
            setattr(obj, name, orig)
    return {"step (wall, profiled)": (1000 * wall, 0.0), **_attribute(prof.events(), steps)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", nargs="+", default=["lf", "selfmm", "misa"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--batch-size", type=int, default=None, help="default: each host's MMSA batch size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: time.perf_counter; cpu: time.process_time, this process's CPU time (user + "
                        "system), robust to other processes on a shared machine (CPU device, one thread only)")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--profile", action="store_true", help="print the top operators of each host's full variant")
    p.add_argument("--breakdown", action="store_true",
                   help="forward and backward time of InfoEnh's parts (checks, FIB, top-k, InfoNCE, FIA, Sinkhorn, "
                        "attention pooling) in the full variant")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    p.add_argument("--_memory-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "cpu" and (device.type != "cpu" or torch.get_num_threads() != 1):
        p.error("--clock cpu measures one CPU thread: use it with --device cpu --threads 1")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    amp = not args.no_amp
    ie = {"k": args.k, "d": args.d}

    if args._memory_child:
        host, variant = args._memory_child
        ds, batch = make_batch(args.batch_size or TRAIN_DEFAULTS[host]["batch_size"])
        print(peak_memory_mb(host, variant, ds, batch, device, amp, ie))
        return 0

    print(f"device {device} | threads {torch.get_num_threads()} | torch {torch.__version__} | amp "
          f"{amp and device.type == 'cuda'} | InfoEnh k={args.k} d={args.d} | SYNTHETIC MOSI-shaped batches "
          f"(text 50x768, audio 375x5, vision 500x20) | min over {args.rounds} interleaved rounds of "
          f"{args.steps} steps | clock {args.clock}")
    print(f"{'host':7s} {'batch':>5s} {'variant':8s} {'step ms':>9s} {'ratio':>6s} {'peak MB':>8s}")
    results = []
    for host in args.hosts:
        bs = args.batch_size or TRAIN_DEFAULTS[host]["batch_size"]
        ds, batch = make_batch(bs)
        variants = ["none"] + [v for v in args.variants if v != "none"]
        t = time_variants(host, variants, ds, batch, device, amp, ie, args.rounds, args.steps, args.warmup, clock)
        for v in variants:
            mem = None
            if not args.no_memory:
                mem = (peak_memory_mb(host, v, ds, batch, device, amp, ie) if device.type == "cuda"
                       else cpu_memory_in_subprocess(args, host, v))
            r = {"host": host, "batch": bs, "variant": v, "step_ms": 1000 * t[v], "ratio": t[v] / t["none"],
                 "peak_mb": mem}
            results.append(r)
            print(f"{host:7s} {bs:5d} {v:8s} {r['step_ms']:9.1f} {r['ratio']:6.2f} "
                  f"{'' if mem is None else f'{mem:8.1f}'}")
        if args.breakdown:
            bd = breakdown_full(host, ds, batch, device, amp, ie)
            print(f"{host} full, ms/step (forward + backward):")
            for k, (f, b) in bd.items():
                print(f"    {k:24s} {f:6.2f} + {b:6.2f} = {f + b:6.2f}")
            parts = {k: {"forward": f, "backward": b} for k, (f, b) in bd.items()}
            results.append({"host": host, "breakdown_ms": parts})
        if args.profile:
            print(profile_full(host, ds, batch, device, amp, ie))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "threads": torch.get_num_threads(), "k": args.k, "d": args.d,
                       "clock": args.clock, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
