"""Side-by-side timing of infoenh.ot.sinkhorn against POT's solvers, on FIA's workload.

Workload: 32 samples x 6 ordered modality pairs = 192 entropic OT problems of size k x k, k = 50,
cosine cost between random (synthetic) 128-d features, uniform marginals, exactly 100 Sinkhorn
iterations (early stopping disabled everywhere: tol = 0 / stopThr = 0), reg 0.1 and 0.01,
float64 and float32. Solvers:

- ``project``: ``infoenh.ot.sinkhorn(C [32, 6, 50, 50], reg, max_iter=100, tol=0)``, one batched call.
- ``pot-np``: ``ot.sinkhorn(a, b, C_i, reg, numItermax=100, stopThr=0)`` looped over the 192
  problems, numpy arrays (POT's default method, the scaling form ``sinkhorn_knopp``).
- ``pot-torch``: the same loop with torch tensors (POT's torch backend).
- ``pot-batch``: ``ot.batch.solve_batch(C [192, 50, 50], reg, max_iter=100, tol=0,
  method="log_sinkhorn", grad="autodiff")``: POT's batched log-domain solver. With tol=0 its
  check ``err < tol`` never passes, so it runs exactly 100 iterations.

"fwd" times the solve; "fwd+bwd" also backpropagates ``sum(plan * cost)`` to the cost (numpy has
no backward, so pot-np has no fwd+bwd row). Every timing is the minimum over ``--rounds``
rounds, solvers interleaved inside each round, in one process. torch runs with
``torch.set_num_threads(2)`` (set below, explicitly). The table reports times and the ratio
(other solver's time / project's time: > 1 means the project is faster), the largest plan
difference to the reference (pot-np in float64, same iterations in the same order; pot-batch
updates u before v, so after 100 iterations its plan differs where Sinkhorn has not converged),
and the number of NaN entries in the cost gradient.

Run:  python benchmarks/bench_sinkhorn.py [--rounds 5] [--quick] [--json results.json]
      [--dtype float64|float32 ...] [--reg 0.1 ...]  (defaults: both dtypes, reg 0.1 and 0.01)
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
TARGETS = {  # (mode, other solver) -> ratio the project must reach
    ("fwd", "pot-np"): 20.0,
    ("fwd", "pot-batch"): 2.0,
    ("fwd+bwd", "pot-torch"): 30.0,
    ("fwd+bwd", "pot-batch"): 1.5,
}


def make_costs(samples: int, pairs: int, k: int, d: int, seed: int = 0) -> torch.Tensor:
    """Synthetic cosine costs ``[samples, pairs, k, k]`` (float64) from random features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, pairs, k, d, generator=g, dtype=torch.float64)
    y = torch.randn(samples, pairs, k, d, generator=g, dtype=torch.float64)
    return cosine_cost(x, y)


def solver_fns(C: torch.Tensor, reg: float, n_iter: int):
    """Closures ``name -> (fwd, fwd+bwd or None)``; each returns (plan [P, k, k], cost grad or None)."""
    S, Pp, k, _ = C.shape
    flat = C.reshape(S * Pp, k, k)
    flat_np = flat.numpy()
    a_np = np.full(k, 1.0 / k, dtype=flat_np.dtype)
    a_t = torch.full((k,), 1.0 / k, dtype=C.dtype)

    def project(backward):
        Cg = C.detach().clone().requires_grad_(backward)
        plan = sinkhorn(Cg, reg, max_iter=n_iter, tol=0.0).plan
        if backward:
            (plan * Cg).sum().backward()
        return plan.detach().reshape(S * Pp, k, k), Cg.grad

    def pot_np(backward):
        return torch.from_numpy(
            np.stack([ot.sinkhorn(a_np, a_np, flat_np[i], reg, numItermax=n_iter, stopThr=0.0, warn=False) for i in range(len(flat_np))])
        ), None

    def pot_torch(backward):
        Cg = flat.detach().clone().requires_grad_(backward)
        plans = [ot.sinkhorn(a_t, a_t, Cg[i], reg, numItermax=n_iter, stopThr=0.0, warn=False) for i in range(len(Cg))]
        plan = torch.stack(plans)
        if backward:
            (plan * Cg).sum().backward()
        return plan.detach(), Cg.grad

    def pot_batch(backward):
        Cg = flat.detach().clone().requires_grad_(backward)
        res = ot.batch.solve_batch(Cg, reg, max_iter=n_iter, tol=0.0, method="log_sinkhorn", grad="autodiff")
        if backward:
            (res.plan * Cg).sum().backward()
        return res.plan.detach(), Cg.grad

    return {"project": project, "pot-np": pot_np, "pot-torch": pot_torch, "pot-batch": pot_batch}


def run(rounds: int = 5, quick: bool = False, regs=(0.1, 0.01), dtypes=("float64", "float32"), n_iter: int = 100):
    """Time every (dtype, reg, mode, solver); return a list of result dicts."""
    samples = 4 if quick else 32
    C64 = make_costs(samples, 6, 50, 128)
    configs = []
    for dtype in [getattr(torch, name) for name in dtypes]:
        for reg in regs:
            fns = solver_fns(C64.to(dtype), reg, n_iter)
            for mode in ("fwd", "fwd+bwd"):
                for name, fn in fns.items():
                    if name == "pot-np" and mode == "fwd+bwd":
                        continue
                    configs.append(dict(dtype=str(dtype).replace("torch.", ""), reg=reg, mode=mode, solver=name, fn=fn, times=[]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # reference plans: POT numpy in float64, same iterations in the same order (not timed)
        refs = {reg: solver_fns(C64, reg, n_iter)["pot-np"](False)[0] for reg in regs}
        for c in configs:  # warm-up and correctness numbers, outside the timings
            plan, grad = c["fn"](c["mode"] == "fwd+bwd")
            c["plan"] = plan
            c["grad_nan"] = None if grad is None else int(torch.isnan(grad).sum())
            c["plan_nan"] = int(torch.isnan(plan).sum())
        for r in range(rounds):
            order = configs if r % 2 == 0 else configs[::-1]  # interleave, alternate the order
            for c in order:
                t0 = time.perf_counter()
                c["fn"](c["mode"] == "fwd+bwd")
                c["times"].append(time.perf_counter() - t0)
    results = []
    for c in configs:
        ref = refs[c["reg"]]
        own = next(o for o in configs if o["solver"] == "project" and o["dtype"] == c["dtype"] and o["reg"] == c["reg"] and o["mode"] == c["mode"])
        t = min(c["times"])
        results.append(
            dict(
                dtype=c["dtype"], reg=c["reg"], mode=c["mode"], solver=c["solver"], time_ms=1e3 * t,
                ratio=t / min(own["times"]),
                target=TARGETS.get((c["mode"], c["solver"])),
                max_abs_diff_vs_pot_np64=float((c["plan"].double() - ref).abs().nan_to_num(nan=float("inf")).max()),
                plan_nan=c["plan_nan"], grad_nan=c["grad_nan"],
            )
        )
    return results


def format_table(results) -> str:
    head = f"{'dtype':8} {'reg':>5} {'mode':8} {'solver':10} {'time ms':>9} {'ratio':>7} {'target':>7} {'|dP| vs ref':>13} {'grad NaN':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        target = "" if r["target"] is None else (f">={r['target']:g}" + ("" if r["ratio"] >= r["target"] else "!"))
        ratio = "" if r["solver"] == "project" else f"{r['ratio']:.1f}x"
        gnan = "" if r["grad_nan"] is None else str(r["grad_nan"])
        lines.append(
            f"{r['dtype']:8} {r['reg']:>5g} {r['mode']:8} {r['solver']:10} {r['time_ms']:9.2f} {ratio:>7} {target:>7} "
            f"{r['max_abs_diff_vs_pot_np64']:13.1e} {gnan:>8}"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="timing rounds; each time is the min over rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="4 samples instead of 32 (a smoke run; ratios not comparable)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--dtype", choices=["float64", "float32"], action="append", help="only this dtype (repeatable; default both)")
    p.add_argument("--reg", type=float, action="append", help="only this reg (repeatable; default 0.1 and 0.01)")
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
    results = run(rounds=args.rounds, quick=args.quick, regs=regs, dtypes=dtypes)
    print(format_table(results))
    print("ratio = solver time / project time (> 1: project faster); '!' marks a missed target; "
          "|dP| vs ref = max |plan - POT numpy float64 plan|.")
    if args.json:
        meta = dict(torch=torch.__version__, pot=ot.__version__, threads=N_THREADS, rounds=args.rounds, quick=args.quick, dtypes=dtypes, regs=regs)
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, results=results), f, indent=1)


if __name__ == "__main__":
    main()
