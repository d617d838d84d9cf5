"""infoenh grid: the paper's tables from one spec file (datasets x hosts x arms x seeds).

    infoenh grid grid.yaml --out runs/grid                  # local Ray when installed, else in-process
    infoenh grid grid.yaml --out runs/grid --executor sequential
    infoenh grid grid.yaml --out runs/grid --address ray://head:10001

The spec (YAML or JSON)::

    datasets: [synthetic, data/MOSI/Processed/unaligned_50.pkl]
    synthetic_scale: ci
    hosts: [lf, selfmm, misa]
    arms: [baseline, plumbing, full, no_text, no_text_full]
    seeds: [1111, 1112, 1113, 1114, 1115]
    options: {epochs: 20, k: 16}     # TrainConfig fields, or InfoEnh options (k, d, reg, alpha, ...)
    host_options: {misa: {epochs: 30}}   # per host, over options
    threads: 1                       # torch threads per run (default 1; null: torch's)
    n_boot: 10000                    # bootstrap resamples of the paired CIs

Every entry is checked before anything runs. Each run trains in
``OUT/<dataset>/<host>/<arm>/seed_<s>/``; re-running the command skips finished runs and resumes
interrupted ones from their checkpoints. Writes ``OUT/grid.json``, ``OUT/grid.md`` (Tables 1-3)
and ``OUT/grid.png``. Exit code 0 when every run finished, 3 when some failed (their errors are
in the tables and in grid.json; their cells say ``n=2/3`` or ``missing``).
"""
from __future__ import annotations

import argparse


def cmd_grid(args) -> int:
    from .grid import load_spec
    from .grid_exec import run_grid

    spec = load_spec(args.spec)
    log = (lambda s: None) if args.quiet else None
    doc = run_grid(spec, args.out, executor=args.executor, address=args.address, num_cpus=args.num_cpus,
                   cpus_per_run=args.cpus_per_run, max_retries=args.max_retries, log=log)
    if not args.quiet:
        with open(f"{args.out}/grid.md") as f:
            print(f.read())
    return 0 if not doc["failed"] else 3


def add_parser(subparsers) -> None:
    """Register ``grid``."""
    from .grid_exec import EXECUTORS

    p = subparsers.add_parser("grid", help="run a grid of datasets x hosts x arms x seeds and write the paper's tables",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="the grid spec, YAML or JSON")
    p.add_argument("--out", required=True, help="output directory (one folder per run, grid.json, grid.md)")
    p.add_argument("--executor", choices=EXECUTORS, default="auto",
                   help="ray (one run per GPU or per --cpus-per-run CPUs), sequential (in this process) or auto "
                        "(ray when installed; default)")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cpus-per-run", type=float, default=1, help="CPUs per run without GPUs (default 1)")
    p.add_argument("--max-retries", type=int, default=3, help="retries of a run whose worker died (default 3)")
    p.add_argument("--quiet", action="store_true", help="no per-run lines and no tables on stdout")
    p.set_defaults(func=cmd_grid, resume_hint="re-run the same command: finished runs are skipped, interrupted "
                                              "ones resume from their checkpoints")
