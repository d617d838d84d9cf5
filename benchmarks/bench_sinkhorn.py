"""Side-by-side timing of infoenh.ot.sinkhorn against POT's solvers, on FIA's workload.

Workload: 32 samples x 6 ordered modality pairs = 192 entropic OT problems of size k x k, k = 50,
cosine cost between random (synthetic) 128-d features, uniform marginals, exactly 100 Sinkhorn
iterations (early stopping disabled everywhere: tol = 0 / stopThr = 0), reg 0.1 and 0.01,
float64 and float32. Solvers:

- ``project``: ``infoenh.ot.sinkhorn(C [32, 6, 50, 50], reg, max_iter=100, tol=0)``, one batched
  call; its gradient is the unrolled one (the default, ``grad="unrolled"``).
- ``project-implicit``: the same call with ``grad="implicit"`` (fwd+bwd only: the forward is the same).
- ``pot-batch-sinkhorn``: ``ot.batch.solve_batch(C [192, 50, 50], reg, max_iter=100, tol=0,
  method="sinkhorn", grad="autodiff")``: POT's batched scaling-form solver.
- ``pot-batch-log``: the same with ``method="log_sinkhorn"``, POT's batched log-domain solver.
  With tol=0 POT's check ``err < tol`` never passes, so both run exactly 100 iterations.
- ``pot-np``: ``ot.sinkhorn(a, b, C_i, reg, numItermax=100, stopThr=0)`` looped over the 192
  problems, numpy arrays (POT's default method, the scaling form ``sinkhorn_knopp``); no backward.
- ``pot-torch``: the same loop with torch tensors (POT's torch backend, autograd).
- ``bmm-floor`` (fwd only): the bare iterations ``v = b / (u K); u = a / (v K^T)`` with torch's
  batched product on a precomputed kernel, no checks, no log domain, no stopping: the least any
  solver built on ``torch.bmm`` spends on these 100 iterations (a floor, not a solver: it
  overflows at small reg). The project's forward time over this floor is its overhead.
- ``bcast-floor`` (fwd only): the same bare iterations with each product written as one broadcast
  multiply-and-sum over the whole batch (``(u^T * K).sum(-2)``, ``(K * v).sum(-1)``) instead of
  ``torch.bmm``: the formulation the project's kernel would use if it measured faster here.

Compute floor: every round also times a [1024, 1024] x [1024, 1024] ``torch.mm`` per dtype, and
the fastest gives this machine's multiply-add rate (FMA/s, 2 threads). ``floor ms`` = the row's
workload in multiply-adds at that rate: 2 k^2 per problem and iteration for the forward (``u K``
and ``v K^T``), three times that with the unrolled backward (the two vector products back, and
the kernel gradient), for 192 problems (96 for ``fia-sym``); ``x floor`` = time / floor ms. The
products are matrix-vector products, bound by memory, so a matmul's rate is a floor no such
solver reaches; the column says how far each row is from it.

"fwd" times the solve; "fwd+bwd" also backpropagates ``sum(plan * cost)`` to the cost.
The ratio of every row is against **the fastest POT batched solver whose plan (and, for fwd+bwd,
cost gradient) is finite** in that setting: ``ratio`` = that solver's time / this row's time
(> 1: this row is faster).

FIA's workload with symmetry (``fia-sym`` rows): the six ordered pairs of three modalities
(32 samples, text / audio / vision features [32, 50, 128]) have costs C(j, i) = C(i, j)^T, and
with uniform marginals the plan of (j, i) is the transpose of the plan of (i, j) at convergence.
``fia-sym`` solves the 96 problems (i, j), i before j, in one call and transposes them for the
other 96 (what ``infoenh.fia.fia(symmetric=True)`` does); it is compared with POT's fastest finite
batched solver on all 192 ordered problems (POT has no such option).

Every timing is the minimum over ``--rounds`` rounds, solvers interleaved inside each round
(order reversed every other round), after one untimed warm-up call each, in one process. torch
runs with ``torch.set_num_threads(2)`` (set below, explicitly). The table also gives the largest
plan difference to the reference (POT numpy in float64, same iterations in the same order),
the number of NaN entries in the cost gradient and its gap to the project's unrolled gradient
(max |g - g_unrolled| / max |g_unrolled|): the same gradient for POT's autodiff of the same
iterations, while the implicit gradient (of the exact plan) matches it only where 100 iterations
have converged.

Run:  python benchmarks/bench_sinkhorn.py [--rounds 5] [--quick] [--json results.json]
      [--dtype float64|float32 ...] [--reg 0.1 ...] [--no-loops]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numpy as np
import ot
import torch

from infoenh.ot import cosine_cost, sinkhorn

N_THREADS = 2
BATCHED_POT = ("pot-batch-sinkhorn", "pot-batch-log")
TARGETS = {  # (workload, mode) -> ratio against the fastest finite POT batched solver
    ("pairs", "fwd"): 2.5,
    ("pairs", "fwd+bwd"): 3.0,
    ("fia-sym", "fwd"): 5.0,
    ("fia-sym", "fwd+bwd"): 5.0,
}
PAIRS = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]  # ordered pairs of text, audio, vision
UPPER = [(0, 1), (0, 2), (1, 2)]


def make_costs(samples: int, k: int, d: int, seed: int = 0) -> torch.Tensor:
    """Synthetic FIA costs ``[samples, 6, k, k]`` (float64): cosine costs between random features
    of three modalities for the six ordered pairs, so that C[:, (j, i)] = C[:, (i, j)]^T."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(3, samples, k, d, generator=g, dtype=torch.float64)
    return torch.stack([cosine_cost(feats[i], feats[j]) for i, j in PAIRS], dim=1)


def symmetric_plans(C_upper: torch.Tensor, reg: float, n_iter: int) -> torch.Tensor:
    """Plans of the six ordered pairs from the three solved ones: ``[S, 3, k, k] -> [S, 6, k, k]``."""
    P = sinkhorn(C_upper, reg, max_iter=n_iter, tol=0.0).plan
    solved = {pair: P[:, n] for n, pair in enumerate(UPPER)}
    return torch.stack([solved[(i, j)] if i < j else solved[(j, i)].mT for i, j in PAIRS], dim=1)


def solver_fns(C: torch.Tensor, reg: float, n_iter: int, loops: bool = True):
    """Closures ``name -> fn(backward)``; each returns (plan [192, k, k], cost grad or None)."""
    S, Pp, k, _ = C.shape
    flat = C.reshape(S * Pp, k, k)
    upper = C[:, [PAIRS.index(p) for p in UPPER]]
    a_t = torch.full((k,), 1.0 / k, dtype=C.dtype)

    def project(backward, grad="unrolled"):
        Cg = C.detach().clone().requires_grad_(backward)
        plan = sinkhorn(Cg, reg, max_iter=n_iter, tol=0.0, grad=grad).plan
        if backward:
            (plan * Cg).sum().backward()
        return plan.detach().reshape(S * Pp, k, k), Cg.grad

    def fia_sym(backward):
        # the gradient reaches the six costs through the three solved ones (C(j,i) = C(i,j)^T)
        Cu = upper.detach().clone().requires_grad_(backward)
        plan = symmetric_plans(Cu, reg, n_iter)
        if backward:
            full = torch.stack([Cu[:, UPPER.index((i, j))] if i < j else Cu[:, UPPER.index((j, i))].mT
                                for i, j in PAIRS], dim=1)
            (plan * full).sum().backward()
        return plan.detach().reshape(S * Pp, k, k), Cu.grad

    def pot_batch(method):
        def fn(backward):
            Cg = flat.detach().clone().requires_grad_(backward)
            # POT 0.9.7's scaling method makes its scalings with torch.ones(...) on the default
            # device; on a GPU, call it inside `with torch.device(...)` (benchmarks/gpu_check.py)
            res = ot.batch.solve_batch(Cg, reg, max_iter=n_iter, tol=0.0, method=method, grad="autodiff")
            if backward:
                (res.plan * Cg).sum().backward()
            return res.plan.detach(), Cg.grad
        return fn

    def bmm_floor(backward):
        K = torch.exp(-flat / reg)
        u = torch.full((S * Pp, 1, k), 1.0 / k, dtype=C.dtype)
        b = torch.tensor(1.0 / k, dtype=C.dtype)
        for _ in range(n_iter):
            v = b / torch.bmm(u, K)
            u = b / torch.bmm(v, K.mT)
        return u.mT * K * v, None

    def bcast_floor(backward):
        K = torch.exp(-flat / reg)
        u = torch.full((S * Pp, 1, k), 1.0 / k, dtype=C.dtype)
        b = torch.tensor(1.0 / k, dtype=C.dtype)
        for _ in range(n_iter):
            v = b / (u.mT * K).sum(-2, keepdim=True)
            u = b / (K * v).sum(-1).unsqueeze(1)
        return u.mT * K * v, None

    def pot_np(backward):
        flat_np = flat.numpy()
        a_np = np.full(k, 1.0 / k, dtype=flat_np.dtype)
        return torch.from_numpy(np.stack([
            ot.sinkhorn(a_np, a_np, flat_np[i], reg, numItermax=n_iter, stopThr=0.0, warn=False)
            for i in range(len(flat_np))])), None

    def pot_torch(backward):
        Cg = flat.detach().clone().requires_grad_(backward)
        plans = [ot.sinkhorn(a_t, a_t, Cg[i], reg, numItermax=n_iter, stopThr=0.0, warn=False) for i in range(len(Cg))]
        plan = torch.stack(plans)
        if backward:
            (plan * Cg).sum().backward()
        return plan.detach(), Cg.grad

    fns = {
        "project": (project, project),
        "project-implicit": (None, lambda bw: project(bw, "implicit")),
        "fia-sym": (fia_sym, fia_sym),
        "pot-batch-sinkhorn": (pot_batch("sinkhorn"),) * 2,
        "pot-batch-log": (pot_batch("log_sinkhorn"),) * 2,
        "bmm-floor": (bmm_floor, None),
        "bcast-floor": (bcast_floor, None),
    }
    if loops:
        fns["pot-np"] = (pot_np, None)
        fns["pot-torch"] = (pot_torch, pot_torch)
    return fns


FMA_SIZE = 1024  # the matmul that measures the machine's multiply-add rate


def time_matmul(dtype: torch.dtype, size: int = FMA_SIZE) -> float:
    """Seconds for one ``[size, size] x [size, size]`` product (``size^3`` multiply-adds)."""
    x = torch.ones(size, size, dtype=dtype)
    t0 = time.perf_counter()
    torch.mm(x, x)
    return time.perf_counter() - t0


def workload_fmas(solver: str, mode: str, k: int, problems: int, n_iter: int) -> int:
    """Multiply-adds of a row's workload: 2 k^2 per problem and iteration forward (``u K``, ``v K^T``),
    3x that with the unrolled backward; ``fia-sym`` solves half the problems."""
    solved = problems // 2 if solver == "fia-sym" else problems
    return (3 if mode == "fwd+bwd" else 1) * 2 * k * k * solved * n_iter


def run(rounds: int = 5, quick: bool = False, regs=(0.1, 0.01), dtypes=("float64", "float32"), n_iter: int = 100,
        loops: bool = True):
    """Time every (dtype, reg, mode, solver); return a list of result dicts."""
    samples = 4 if quick else 32
    C64 = make_costs(samples, 50, 128)
    configs = []
    for dtype in [getattr(torch, name) for name in dtypes]:
        for reg in regs:
            fns = solver_fns(C64.to(dtype), reg, n_iter, loops)
            for m, mode in enumerate(("fwd", "fwd+bwd")):
                for name, pair in fns.items():
                    if pair[m] is not None:
                        configs.append(dict(dtype=str(dtype).replace("torch.", ""), reg=reg, mode=mode, solver=name,
                                            fn=pair[m], backward=mode == "fwd+bwd", times=[]))
    mm_times = {c["dtype"]: [] for c in configs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in mm_times:  # warm-up of the matmul that measures the FMA rate
            time_matmul(getattr(torch, name))
        # reference plans: POT numpy in float64, same iterations in the same order (not timed)
        refs = {reg: solver_fns(C64, reg, n_iter)["pot-np"][0](False)[0] for reg in regs}
        for c in configs:  # warm-up and correctness numbers, outside the timings
            plan, grad = c["fn"](c["backward"])
            c["diff"] = float((plan.double() - refs[c["reg"]]).abs().nan_to_num(nan=float("inf")).max())
            c["finite"] = bool(torch.isfinite(plan).all()) and (grad is None or bool(torch.isfinite(grad).all()))
            c["grad_nan"] = None if grad is None else int(torch.isnan(grad).sum())
            c["grad"] = None if grad is None else grad.detach().reshape(-1, *grad.shape[-2:]).double()
        for r in range(rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            for c in order:
                t0 = time.perf_counter()
                c["fn"](c["backward"])
                c["times"].append(time.perf_counter() - t0)
            for name, ts in mm_times.items():
                ts.append(time_matmul(getattr(torch, name)))
    fma_rate = {name: FMA_SIZE ** 3 / min(ts) for name, ts in mm_times.items()}  # multiply-adds per second
    for c in configs:   # how far each cost gradient is from the unrolled one of the same iterations
        own = next(o for o in configs if (o["dtype"], o["reg"], o["mode"], o["solver"]) ==
                   (c["dtype"], c["reg"], c["mode"], "project"))
        g, g0 = c["grad"], own["grad"]
        c["grad_gap"] = None if g is None or g0 is None or g.shape != g0.shape else \
            float((g - g0).abs().nan_to_num(nan=float("inf")).max() / g0.abs().max())
    results = []
    for c in configs:
        same = [o for o in configs if (o["dtype"], o["reg"], o["mode"]) == (c["dtype"], c["reg"], c["mode"])]
        pot = [o for o in same if o["solver"] in BATCHED_POT and o["finite"]]
        best = min(pot, key=lambda o: min(o["times"])) if pot else None
        t = min(c["times"])
        workload = "fia-sym" if c["solver"] == "fia-sym" else "pairs"
        floor = workload_fmas(c["solver"], c["mode"], C64.shape[-1], C64.shape[0] * C64.shape[1], n_iter) / fma_rate[c["dtype"]]
        target = TARGETS.get((workload, c["mode"])) if c["solver"].startswith(("project", "fia")) else None
        results.append(dict(
            dtype=c["dtype"], reg=c["reg"], mode=c["mode"], solver=c["solver"], time_ms=1e3 * t,
            vs=None if best is None else best["solver"],
            ratio=None if best is None else min(best["times"]) / t,
            target=target, max_abs_diff_vs_pot_np64=c["diff"], finite=c["finite"], grad_nan=c["grad_nan"],
            grad_gap_vs_unrolled=c["grad_gap"], fma_per_s=fma_rate[c["dtype"]], floor_ms=1e3 * floor,
            x_floor=t / floor,
        ))
    return results


def format_table(results) -> str:
    head = (f"{'dtype':8} {'reg':>5} {'mode':8} {'solver':19} {'time ms':>9} {'vs fastest finite POT batch':>28} "
            f"{'target':>7} {'|dP| vs ref':>12} {'grad NaN':>8} {'grad gap':>9} {'floor ms':>8} {'x floor':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        target = "" if r["target"] is None else (f">={r['target']:g}" + ("" if r["ratio"] >= r["target"] else "!"))
        if r["ratio"] is None or r["solver"] == r["vs"]:
            ratio = "(the fastest)" if r["solver"] == r["vs"] else ""
        else:
            ratio = f"{r['ratio']:.2f}x ({r['vs'].replace('pot-batch-', '')})"
        if not r["finite"]:
            ratio = "NOT FINITE"
        gnan = "" if r["grad_nan"] is None else str(r["grad_nan"])
        gap = "" if r["grad_gap_vs_unrolled"] is None or r["solver"] == "project" else f"{r['grad_gap_vs_unrolled']:.1e}"
        lines.append(f"{r['dtype']:8} {r['reg']:>5g} {r['mode']:8} {r['solver']:19} {r['time_ms']:9.2f} {ratio:>28} "
                     f"{target:>7} {r['max_abs_diff_vs_pot_np64']:12.1e} {gnan:>8} {gap:>9} {r['floor_ms']:8.3f} {r['x_floor']:7.1f}")
    rates = {r["dtype"]: r["fma_per_s"] for r in results}
    lines.append("measured multiply-add rate ([%d]^2 matmul, %d threads): " % (FMA_SIZE, torch.get_num_threads())
                 + ", ".join(f"{d} {rate / 1e9:.1f} GFMA/s" for d, rate in rates.items()))
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="timing rounds; each time is the min over rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="4 samples instead of 32 (a smoke run; ratios not comparable)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--dtype", choices=["float64", "float32"], action="append", help="only this dtype (repeatable; default both)")
    p.add_argument("--reg", type=float, action="append", help="only this reg (repeatable; default 0.1 and 0.01)")
    p.add_argument("--no-loops", action="store_true", help="leave out POT's per-problem loops (pot-np, pot-torch)")
    args = p.parse_args(argv)
    dtypes = tuple(args.dtype or ("float64", "float32"))
    regs = tuple(args.reg or (0.1, 0.01))
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    torch.set_num_threads(N_THREADS)
    print(
        f"torch {torch.__version__}, POT {ot.__version__}, numpy {np.__version__}, torch threads = {torch.get_num_threads()} "
        f"(set explicitly), {platform.processor() or platform.machine()}; {'4' if args.quick else '32'} samples x 6 pairs, "
        f"k = 50, d = 128, 100 iterations, min of {args.rounds} rounds"
    )
    results = run(rounds=args.rounds, quick=args.quick, regs=regs, dtypes=dtypes, loops=not args.no_loops)
    print(format_table(results))
    print("ratio = time of the fastest POT batched solver with a finite plan (and gradient) / this row's time "
          "(> 1: faster); '!' marks a missed target; |dP| vs ref = max |plan - POT numpy float64 plan|; "
          "grad gap = max |grad - project's unrolled grad| / max |project's unrolled grad|; floor ms = the row's "
          "multiply-adds at the measured matmul rate; x floor = time / floor ms.")
    if args.json:
        meta = dict(torch=torch.__version__, pot=ot.__version__, threads=N_THREADS, rounds=args.rounds, quick=args.quick,
                    dtypes=dtypes, regs=regs)
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, results=results), f, indent=1)


if __name__ == "__main__":
    main()
