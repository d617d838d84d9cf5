"""The results file a user parses, and the table printed from it.

``results.json``::

    {"runs": [{"seed", "best_epoch", "valid": {metric: float}, "test": {metric: float},
               "precision", "device", "wall_seconds", "peak_memory_bytes", "optimizer_steps",
               "diagnostics": {"kept_frac_<m>", "kept_frac", "ot_converged_frac", ...},
               "protocol": {...}, ...}],
     "summary": {"test": {metric: {"mean", "std"}}, "valid": {...},
                 "diagnostics": {name: {"mean", "std"}}},
     "config": {"host", "arm", every TrainConfig option, "infoenh_settings": {every InfoEnh switch,
                the InfoNCE reduction, Sinkhorn's iterations and stopping rule, ...},
                "host_settings": {every option of the host, defaults filled in: Self-MM's "heads",
                MISA's "lengths", ...}, "data", "dataset" (says SYNTHETIC for the testbed), ...},
     "dataset": "...", "epoch_cap": {"cap", "at_cap", "runs", "seeds_at_cap"},
     "started_at", "finished_at", "environment": {"versions", "threads", "command_line", "platform"}}

``config`` also says what ran (:mod:`infoenh.train.provenance`): ``options_changed`` (every option
that differs from the host's defaults), ``n_seeds``, ``data_arrays_sha256`` (the arrays' hash;
older files call it ``data_sha256``), ``data_file_sha256`` (the file's, as ``infoenh data check``
prints it) and ``data_file_sha256_published``. Each run (``run.json``) has its own
``started_at``/``finished_at``, ``environment`` and data hashes.

Metric keys are those of :func:`infoenh.metrics.msa_metrics`. ``std`` is the sample standard
deviation over seeds (ddof=1; 0 for a single seed).

``diagnostics`` are InfoEnh's training diagnostics of each run (means over every training batch:
:func:`infoenh.train.trainer.fit`), with ``kept_frac``, the mean over the modalities of
``kept_frac_<m>`` (FIB's kept fraction), added; ``summary.diagnostics`` has the mean and std over
seeds of each one present (over the seeds that have it; ``{}`` without InfoEnh).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

METRIC_ORDER = ("MAE", "Corr", "Mult_acc_7", "Mult_acc_5", "Has0_acc_2", "Non0_acc_2", "Has0_F1_score",
                "Non0_F1_score")
# how the table prints each metric: (column title, scale)
COLUMNS = (("MAE", "MAE", 1.0), ("Corr", "Corr", 1.0), ("Mult_acc_7", "Acc-7", 100.0),
           ("Mult_acc_5", "Acc-5", 100.0), ("Has0_acc_2", "Acc-2 h0", 100.0), ("Non0_acc_2", "Acc-2 n0", 100.0),
           ("Has0_F1_score", "F1 h0", 100.0), ("Non0_F1_score", "F1 n0", 100.0))


def metric_keys(runs: Sequence[Dict[str, Any]], split: str = "test") -> List[str]:
    keys = list(runs[0][split]) if runs else []
    return [k for k in METRIC_ORDER if k in keys] + [k for k in keys if k not in METRIC_ORDER]


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def with_kept_frac(diagnostics: Dict[str, Any]) -> Dict[str, Any]:
    """``diagnostics`` with ``kept_frac``, the mean of its ``kept_frac_<m>`` over the modalities
    (unchanged when it has none)."""
    d = dict(diagnostics or {})
    kept = [float(v) for k, v in d.items() if k.startswith("kept_frac_") and v is not None]
    if kept:
        d["kept_frac"] = sum(kept) / len(kept)
    return d


def summarize_diagnostics(runs: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Mean and sample std over seeds of every diagnostic present in the runs (each over the runs
    that have it)."""
    diags = [with_kept_frac(r.get("diagnostics") or {}) for r in runs]
    names = sorted({k for d in diags for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {k: mean_std([d[k] for d in diags if d.get(k) is not None]) for k in names}


def summarize(runs: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Mean and std over seeds of every metric, for ``test`` and ``valid``, and of every training
    diagnostic (``diagnostics``)."""
    if not runs:
        raise ValueError("no runs to summarize")
    out = {}
    for split in ("test", "valid"):
        out[split] = {k: mean_std([r[split][k] for r in runs]) for k in metric_keys(runs, split)}
    out["diagnostics"] = summarize_diagnostics(runs)
    return out


def results_doc(runs: Sequence[Dict[str, Any]], config: Dict[str, Any],
                meta: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``results.json`` document of ``runs``; ``meta`` (``started_at``, ``finished_at``,
    ``environment``) is added at the top level. ``epoch_cap`` counts the runs that selected the
    last epoch allowed (``config["epochs"]``; :func:`infoenh.train.provenance.cap_count`)."""
    from .provenance import cap_count

    runs = [{k: v for k, v in r.items() if k != "fingerprint_doc"} for r in runs]
    for r in runs:
        for key in ("diagnostics", "diagnostics_selected_epoch"):
            if isinstance(r.get(key), dict):
                r[key] = with_kept_frac(r[key])
    return {"runs": runs, "summary": summarize(runs), "config": config, "dataset": config.get("dataset", ""),
            "epoch_cap": cap_count(runs, config.get("epochs")), **(meta or {})}


def _fmt(v: float, scale: float) -> str:
    return f"{v * scale:.2f}" if scale != 1.0 else f"{v:.4f}"


def format_table(doc: Dict[str, Any], split: str = "test") -> str:
    """A plain-text table: one row per seed, then mean ± std."""
    cfg = doc.get("config", {})
    arm = f" | arm: {cfg['arm']}" if cfg.get("arm") else ""
    title = (f"{cfg.get('model', '?')}{arm} | InfoEnh: {cfg.get('infoenh', '?')} | modalities: "
             f"{'+'.join(cfg.get('modalities', []))} | data: {cfg.get('dataset', '?')}")
    first = doc["runs"][0]
    if "text" in first or "precision" in first:
        title += f"\ntext: {first.get('text', '?')} | precision: {first.get('precision', '?')} | device: " \
                 f"{first.get('device', '?')}"
    from .provenance import at_cap, cap_count, cap_text, options_text

    cap = cfg.get("epochs")
    if "options_changed" in cfg:
        title += f"\noptions beyond the host's defaults: {options_text(cfg['options_changed'])}"
    title += f"\nseeds: {len(doc['runs'])} | {cap_text(doc.get('epoch_cap') or cap_count(doc['runs'], cap))}"
    cols = [c for c in COLUMNS if c[0] in doc["runs"][0][split]]
    head = ["seed", "best ep"] + [c[1] for c in cols]
    rows = [[str(r["seed"]), f"{r['best_epoch']}{'*' if at_cap(r, cap) else ''}"]
            + [_fmt(r[split][k], s) for k, _, s in cols] for r in doc["runs"]]
    summ = doc["summary"][split]
    one = len(doc["runs"]) == 1          # one seed: no spread to report (a std of 0 would read as measured)
    rows.append(["mean±std", ""] + [f"{_fmt(summ[k]['mean'], s)}±{'n/a' if one else _fmt(summ[k]['std'], s)}"
                                    for k, _, s in cols])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [title, f"{split} metrics at the epoch selected on validation loss (accuracies/F1 in %)",
           line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    if cap == 1:
        out.append("* the only epoch allowed (--epochs 1): convergence not assessed")
    elif any(at_cap(r, cap) for r in doc["runs"]):
        out.append(f"* the last epoch allowed (--epochs {cap}): not converged, the validation loss was still improving")
    return "\n".join(out)
