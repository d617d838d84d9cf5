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
    n_boot: 10000                    # bootstrap resamples of the paired CIs (reported from 10 seeds on)

Every entry is checked before anything runs (values a run would only refuse later, such as
``infoenh_kwargs`` keys, ``num_workers``, ``device`` and seeds outside [0, 2^63), included). A
spec file is at most 64 KiB of UTF-8, 20 levels deep and 20000 values with YAML aliases expanded,
with at most 1000 seeds. Each dataset's folder name is a safe, unique label, and every run folder
must resolve inside OUT. Each run checks, before it trains, that its data has the SHA-256 the
driver computed at the start: a file replaced mid-grid fails those runs (naming both hashes)
instead of mixing two versions in a table. SIGTERM or Ctrl-C stops the driver cleanly (exit 130),
cancelling and naming the runs still on Ray. Each run trains in
``OUT/<dataset>/<host>/<arm>/seed_<s>/``; re-running the command skips finished runs and resumes
interrupted ones from their checkpoints. Before anything runs, every existing run folder is checked
against what the spec gives now (options, data, code): if any differs, nothing runs and one error
lists them; --fresh deletes those folders (only those) and trains them again. Writes
``OUT/grid.json``, ``OUT/grid.md`` (Tables 1-3) and ``OUT/grid.png``.

Exit codes: 0 every run done; 3 some runs failed (their errors are in the tables and in grid.json;
their cells say ``n=2/3`` or ``missing``); 1 a bad spec, run folders of other inputs (fingerprint
mismatch), OUT locked by another process, or a Ray error.

On a cluster: ``--address HEAD:6379`` joins the cluster as a node (run the driver on a machine of
the cluster); ``--address ray://HEAD:10001`` connects through Ray Client from outside it. OUT and
the dataset files must be on a filesystem every node sees (relative paths are made absolute here).
Install the same infoenh version on every node: the run fingerprint includes the package's source,
so any edit invalidates finished runs. Without GPUs each run takes --cpus-per-run Ray CPUs, and the
spec's ``threads`` sets torch's threads inside it (keep them equal). After a killed driver, run
``ray stop`` on the machine it started a local Ray on.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def cmd_grid(args) -> int:
    from .grid import load_spec
    from .grid_exec import run_grid

    spec = load_spec(args.spec)
    log = (lambda s: None) if args.quiet else None
    doc = run_grid(spec, args.out, executor=args.executor, address=args.address, num_cpus=args.num_cpus,
                   cpus_per_run=args.cpus_per_run, max_retries=args.max_retries, log=log, fresh=args.fresh)
    if not args.quiet:
        with open(Path(args.out).expanduser().resolve() / "grid.md") as f:
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
    p.add_argument("--fresh", action="store_true",
                   help="delete the folders of runs computed from other inputs (options, data, code) than the spec "
                        "gives now, and train them again (default: stop with an error listing them)")
    p.add_argument("--quiet", action="store_true", help="no per-run lines and no tables on stdout")
    p.set_defaults(func=cmd_grid, resume_hint="re-run the same command: finished runs are skipped, interrupted "
                                              "ones resume from their checkpoints")
