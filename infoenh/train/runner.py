"""Several seeds of one configuration, the data they read, and ``results.json``.

    ds, info = load_data("synthetic", scale="small")
    doc = train_seeds(ds, TrainConfig(model="lf"), [1111, 1112], "runs/lf", data_info=info)

Each seed trains in ``out/seed_<s>/`` (checkpoint, log, ``run.json``). A seed whose ``run.json``
has the same fingerprint (configuration, data content and code: :mod:`infoenh.train.fingerprint`)
is not retrained, and a line on stderr says so even under ``quiet``; a seed with a checkpoint of the
same fingerprint resumes from it. A fingerprint that differs is refused with what differs. After
every seed ``out/results.json`` is rewritten (atomically) with the seeds done so far. One process
at a time writes to ``out`` (:func:`infoenh.train.lock.folder_lock`). A seed on which Sinkhorn
converged on fewer than 90% of the OT problems gets a warning (:class:`ConvergenceWarning`).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..models.registry import text_mode_defaults
from .checkpoint import remove_leftovers, write_json
from .config import TrainConfig, dataset_settings, for_data, host_kwargs, seeds_list
from .fingerprint import fingerprint_hash, host_defaults, mismatch_error
from .lock import folder_lock
from .provenance import data_provenance, environment, options_changed, utc_now
from .results import format_table, results_doc
from .trainer import RUN_JSON, fit, run_fingerprint, text_mode

# a run on which Sinkhorn converged on a smaller share of the OT problems is warned about
OT_CONVERGED_MIN = 0.9


class ConvergenceWarning(UserWarning):
    """Sinkhorn stopped at its iteration cap on many of a run's OT problems."""

# Sizes of the SYNTHETIC testbed for --synthetic-scale (knobs of infoenh.data.synthetic.make_synthetic).
SYNTHETIC_SCALES: Dict[str, Dict[str, Any]] = {
    # unit tests and the CI ablation: seconds on one core
    "ci": dict(sizes=(160, 48, 64), text_dim=32, text_len=16, audio_len=24, vision_len=24),
    # the CPU default: MOSI's widths (768/5/20), shorter unaligned sequences, ~1/3 of MOSI's clips
    "small": dict(sizes=(480, 96, 192), text_len=50, audio_len=100, vision_len=100),
    # MOSI's sizes and unaligned shapes (1284/229/686; 50/375/500; 768/5/20): the GPU default
    "mosi": dict(),
}


def load_data(spec: str, *, scale: Optional[str] = None, synthetic_seed: int = 0, inf_policy: str = "zero"):
    """``spec`` is ``"synthetic"`` or a path to an MMSA/MulT pickle. Returns ``(ds, info)`` with
    ``info = {"data": spec, "dataset": label, "synthetic": bool, "sizes": ..., "dims": ...}``."""
    if spec == "synthetic":
        from ..data.synthetic import make_synthetic_splits

        if scale is None:
            import torch

            scale = "mosi" if torch.cuda.is_available() else "small"
        if scale not in SYNTHETIC_SCALES:
            raise ValueError(f"unknown --synthetic-scale {scale!r}; choose one of {sorted(SYNTHETIC_SCALES)}")
        ds = make_synthetic_splits(seed=synthetic_seed, inf_policy=inf_policy, **SYNTHETIC_SCALES[scale])
        label = f"SYNTHETIC testbed (scale '{scale}', generator seed {synthetic_seed}; not MOSI)"
        extra = {"synthetic_scale": scale, "synthetic_seed": synthetic_seed}
    else:
        from ..data.identity import load_labelled
        from ..data.paths import resolve

        path = resolve(spec)      # a path, or mosi / mosei...: mosi is $INFOENH_MOSI when set
        ds, ident = load_labelled(path, inf_policy=inf_policy)   # MMSA's file, another MOSI-format file, or SYNTHETIC
        label = ident.label if str(path) == ident.name else f"{ident.label} ({path})"   # the name said once
        extra = {}
    info = {"data": spec, "dataset": label, "synthetic": bool(ds.synthetic),
            "sizes": {s: len(ds[s]) for s in ds}, "dims": dict(ds.dims), **extra}
    return ds, info


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_run_record(path: Path) -> Tuple[Optional[Dict[str, Any]], str]:
    """``(record, "")`` for a readable ``run.json`` holding a run's result, else ``(None, why not)``.

    A record is trusted only when its checksum (over every field it holds) matches its content and
    the checkpoint beside it is the one it came from (``checkpoint_sha256``): a hand edit of either
    is "why not" (the run is then recomputed from its checkpoint, never reported as it reads)."""
    from .checkpoint import file_sha256, seal_problem
    from .trainer import CHECKPOINT

    try:
        r = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        return None, f"unreadable ({e})"
    if not isinstance(r, dict) or not isinstance(r.get("test"), dict):
        return None, f"not a run record (a JSON {type(r).__name__})"
    problem = seal_problem(r)
    if problem:
        return None, f"not trusted: it {problem}"
    ck, ck_sum = path.parent / CHECKPOINT, r.get("checkpoint_sha256")
    if ck_sum is not None and ck.exists() and file_sha256(ck) != ck_sum:
        return None, f"not trusted: the checkpoint beside it ({ck.name}) is not the one it was computed from"
    return r, ""


def _done(run_dir: Path, cfg: TrainConfig, ds) -> Optional[Dict[str, Any]]:
    """The finished result in ``run_dir/run.json`` when it was computed from the same inputs;
    ``None`` when there is none (or it is unreadable: the checkpoint then decides); refuses a
    result of other inputs."""
    p = run_dir / RUN_JSON
    if not p.exists():
        return None
    r, why = read_run_record(p)
    if r is None:
        _say(f"[seed {cfg.seed}] {p} is {why}; not reused: the run resumes from its checkpoint or starts again")
        return None
    fp = run_fingerprint(for_data(cfg, ds).resolved(), ds)
    if r.get("fingerprint") != fingerprint_hash(fp):
        raise mismatch_error("finished result", p, r.get("fingerprint_doc"), fp)
    return r


def infoenh_settings(cfg: TrainConfig) -> Optional[Dict[str, Any]]:
    """Every switch and number of the InfoEnh module ``cfg`` builds (defaults filled in), or None
    without InfoEnh. Builds the module alone on the encoders' widths (cheap: no host, no BERT)."""
    from ..models.registry import infoenh_config

    kw = infoenh_config(cfg.infoenh, **(cfg.infoenh_kwargs or {}))
    if kw is None:
        return None
    from ..module import InfoEnh

    probe = InfoEnh({m: 1 for m in cfg.modalities}, **{k: v for k, v in kw.items() if k != "in_dims"})
    return probe.settings()


def host_settings(cfg: TrainConfig, ds) -> Dict[str, Any]:
    """Every option of the host ``cfg`` builds: its constructor's keyword defaults (less the
    arguments build_model sets: dims, modalities, InfoEnh, pooling, n_train) updated with
    the dataset's settings and ``cfg.model_kwargs``, and the defaults :func:`infoenh.models.build_model` sets for the text mode
    (Self-MM's ``text_pool="first"``, [CLS], when BERT is fine-tuned) where not given."""
    out = host_defaults(cfg.model)
    out.update(text_mode_defaults(cfg.model, text_mode(cfg, ds)))
    out.update(host_kwargs(cfg))                    # the dataset's settings, then model_kwargs
    return json.loads(json.dumps(out, default=str))


def _check_convergence(r: Dict[str, Any], seed: int) -> None:
    frac = (r.get("diagnostics") or {}).get("ot_converged_frac")
    if frac is not None and frac < OT_CONVERGED_MIN:
        warnings.warn(f"Sinkhorn converged on only {100 * frac:.1f}% of the OT problems of seed {seed}; raise "
                      "--ot-iters or --reg (or --ot-tol)", ConvergenceWarning, stacklevel=3)


def train_seeds(ds, cfg: TrainConfig, seeds: Optional[Sequence[int]], out_dir, *, data_info: Optional[Dict] = None,
                fresh: bool = False, log: Optional[Callable[[str], None]] = None,
                fit_kwargs: Optional[Dict[str, Any]] = None, arm: Optional[str] = None) -> Dict[str, Any]:
    """Train ``cfg`` once per seed; write and return the ``results.json`` document.

    Its ``config`` names the host, the arm (``arm``, else the one the InfoEnh variant and the
    modalities correspond to, :func:`infoenh.train.arms.arm_of`), every option, and InfoEnh's
    resolved settings (every switch and number, defaults filled in: InfoNCE reduction, Sinkhorn
    iterations and stopping rule, ...) and the host's (``host_settings``: Self-MM's ``heads``,
    MISA's ``lengths``, ..., defaults filled in: :func:`host_settings`) and the dataset's
    (``dataset_settings``: which dataset's MMSA settings apply and how it was told, the batch size,
    each optimiser group's rate and decay: :func:`infoenh.train.config.dataset_settings`); each run adds its
    precision, device, wall time, peak memory and InfoEnh's diagnostics (kept fraction, OT
    convergence). A seed whose Sinkhorn converged on fewer than 90% of the OT problems is warned
    about (:class:`ConvergenceWarning`).

    What ran (:mod:`infoenh.train.provenance`): ``config.options_changed`` (every option that
    differs from the host's defaults), ``config.n_seeds``, the data's two hashes named plainly
    (``data_arrays_sha256``, the arrays; ``data_file_sha256``, the file, as ``infoenh data check``
    prints it) and ``data_file_sha256_published`` (whether it matched a published sum); the
    document's ``started_at``/``finished_at`` (UTC ISO) and ``environment`` (versions of Python,
    torch, numpy and infoenh, torch's thread count, the command line); ``epoch_cap`` counts the runs
    that selected the last epoch allowed (not converged)."""
    from .arms import arm_of

    seeds = seeds_list(seeds)
    out = Path(out_dir)
    resolved = for_data(cfg, ds).resolved()
    with folder_lock(out):
        remove_leftovers(out)
        data_info = dict(data_info or {"data": "in-memory", "dataset": "SYNTHETIC" if getattr(ds, "synthetic", False)
                                       else "in-memory data", "synthetic": bool(getattr(ds, "synthetic", False))})
        config = {"host": resolved.model, "arm": arm or arm_of(resolved.infoenh, resolved.modalities),
                  **{k: v for k, v in resolved.to_dict().items() if k not in ("seed", "quiet")},
                  "infoenh_settings": infoenh_settings(resolved),
                  "host_settings": host_settings(resolved, ds),
                  "dataset_settings": dataset_settings(resolved, ds),
                  "seeds": seeds, **data_info,
                  "selection": "lowest validation task loss; test evaluated once, for the selected epoch",
                  "std": "sample standard deviation over seeds (ddof=1)"}
        fp = run_fingerprint(resolved, ds)
        config.update(**data_provenance(ds), code=fp["code"], options_changed=options_changed(resolved, detected=for_data(TrainConfig(), ds).settings_of),
                      n_seeds=len(seeds))
        meta = {"started_at": utc_now(), "environment": environment()}
        runs = []
        for s in seeds:
            run_cfg = dataclasses.replace(cfg, seed=s)
            run_dir = out / f"seed_{s}"
            if fresh and run_dir.exists():
                _say(f"[seed {s}] --fresh: deleting {run_dir} and starting again")
                shutil.rmtree(run_dir)
            r = _done(run_dir, run_cfg, ds)
            if r is None:
                r = {**fit(ds, run_cfg, run_dir, log=log, **(fit_kwargs or {})), "reused": False}
            else:
                _say(f"[seed {s}] reusing the finished run in {run_dir} (same configuration, data and code)")
                r = {**r, "reused": True}
            runs.append(r)
            _check_convergence(r, s)
            doc = results_doc(runs, config, {**meta, "finished_at": utc_now()})
            write_json(doc, out / "results.json")
        return doc


__all__ = ["SYNTHETIC_SCALES", "load_data", "train_seeds", "format_table", "host_settings", "ConvergenceWarning"]
