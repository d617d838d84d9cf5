"""``benchmarks/bench_sinkhorn.py`` on a tiny workload, so the benchmark cannot rot.

Nothing here is timed against a target (speed targets live in the benchmark's own table): these
tests check that every solver runs, that the ratios are taken against the fastest POT batched
solver with a finite result, and that the symmetric FIA workload returns the six ordered plans.
"""
from __future__ import annotations

import torch


def test_costs_of_reverse_pairs_are_transposes_and_symmetric_plans_match_at_convergence(benchmark_script):
    b = benchmark_script("bench_sinkhorn")
    C = b.make_costs(2, 6, 8)
    for n, (i, j) in enumerate(b.PAIRS):
        torch.testing.assert_close(C[:, b.PAIRS.index((j, i))], C[:, n].mT)
    upper = C[:, [b.PAIRS.index(p) for p in b.UPPER]]
    sym = b.symmetric_plans(upper, 0.5, 500)
    from infoenh.ot import sinkhorn

    full = sinkhorn(C, 0.5, max_iter=500, tol=0.0).plan
    torch.testing.assert_close(sym, full, atol=1e-12, rtol=0)


def test_run_reports_every_solver_against_the_fastest_finite_pot_batch(benchmark_script):
    b = benchmark_script("bench_sinkhorn")
    rows = b.run(rounds=1, quick=True, regs=(0.1,), dtypes=("float32",), n_iter=5, loops=False)
    by = {(r["mode"], r["solver"]): r for r in rows}
    assert {s for _, s in by} == {"project", "project-implicit", "fia-sym", "pot-batch-sinkhorn", "pot-batch-log",
                                  "bmm-floor", "bcast-floor"}
    assert ("fwd", "project-implicit") not in by  # the implicit mode changes only the backward
    for (mode, solver), r in by.items():
        assert r["time_ms"] > 0 and (r["finite"] or solver == "bmm-floor")
        assert r["vs"] in b.BATCHED_POT and r["ratio"] > 0
        if solver.startswith(("project", "fia")):
            assert r["target"] == b.TARGETS["fia-sym" if solver == "fia-sym" else "pairs", mode]
        if mode == "fwd+bwd":
            assert r["grad_nan"] == 0
    table = b.format_table(rows)
    assert "project-implicit" in table and "fia-sym" in table


def test_gradient_gap_column_compares_with_the_unrolled_gradient(benchmark_script):
    b = benchmark_script("bench_sinkhorn")
    rows = b.run(rounds=1, quick=True, regs=(0.5,), dtypes=("float64",), n_iter=300, loops=False)
    gaps = {r["solver"]: r["grad_gap_vs_unrolled"] for r in rows if r["mode"] == "fwd+bwd"}
    assert gaps["project"] == 0.0 and gaps["fia-sym"] is None          # fia-sym's gradient is on 3 pairs
    assert gaps["project-implicit"] < 1e-8                            # converged at reg 0.5: the same gradient
    assert gaps["pot-batch-log"] < 1e-6                               # autodiff of POT's iterations


def test_compute_floor_column_is_the_workload_at_the_measured_matmul_rate(benchmark_script):
    b = benchmark_script("bench_sinkhorn")
    assert b.workload_fmas("project", "fwd", 50, 192, 100) == 2 * 50 * 50 * 192 * 100
    assert b.workload_fmas("project", "fwd+bwd", 50, 192, 100) == 3 * b.workload_fmas("project", "fwd", 50, 192, 100)
    assert b.workload_fmas("fia-sym", "fwd", 50, 192, 100) == b.workload_fmas("project", "fwd", 50, 192, 100) // 2
    rows = b.run(rounds=1, quick=True, regs=(0.1,), dtypes=("float64",), n_iter=5, loops=False)
    rates = {r["fma_per_s"] for r in rows}
    assert len(rates) == 1 and rates.pop() > 0                        # one rate per dtype, measured in the run
    for r in rows:
        fmas = b.workload_fmas(r["solver"], r["mode"], 50, 4 * 6, 5)
        assert abs(r["floor_ms"] - 1e3 * fmas / r["fma_per_s"]) < 1e-9 * r["floor_ms"]
        assert abs(r["x_floor"] - r["time_ms"] / r["floor_ms"]) < 1e-9 * r["x_floor"]
    assert "GFMA/s" in b.format_table(rows) and "x floor" in b.format_table(rows)
