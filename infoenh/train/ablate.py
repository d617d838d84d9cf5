"""The paper's ablations (Tables 2 and 3) as arms of one host, run over the same seeds.

The arms and what each comparison isolates are in :mod:`infoenh.train.arms`: ``baseline`` (the
host alone), ``plumbing`` (InfoEnh's projection, top-k, gPool and attention pooling with the gate
open, no InfoNCE, no FIA), ``fib``, ``fia``, ``full``, and the missing-modality arms ``no_<m>``,
``no_<m>_plumbing``, ``no_<m>_full`` (paper Table 3).

Every InfoEnh arm is compared with the host alone and with its plumbing control, paired by seed
(same seed, same data order): mean paired difference, paired t-test with its t interval, an exact
sign-flip test, and a bootstrap CI only from enough seeds to support one (:mod:`infoenh.train.stats`);
every p of the table is also given Holm-adjusted over the whole table (``p_holm``,
``p_signflip_holm``). ``ablation.json`` and ``ablation.md`` say what ran: the options that differ
from the host's defaults, the number of seeds, and how many runs selected the last epoch allowed
(not converged; :mod:`infoenh.train.provenance`). Asking for an arm runs its references too (a line on stderr names
the ones added; ``ablation.json`` keeps the arms asked for as ``config.requested_arms``). Writes
``ablation.json`` (each comparison says what it isolates) and ``ablation.md``. One seed gives no
paired statistics (a warning says so); ``baseline`` alone gives no comparison.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .arms import ARMS, arm_config, isolates, references, with_references
from .checkpoint import write_json
from .config import TrainConfig, for_data, seeds_list
from .lock import folder_lock
from .provenance import cap_count, cap_text, environment, options_changed, options_text, utc_now
from .results import COLUMNS, with_kept_frac
from .runner import _say, train_seeds
from .stats import holm_table, min_bootstrap_seeds, paired_comparison

# what ablation.json keeps of each run (results.json in the arm's folder has everything)
_RUN_KEYS = ("seed", "best_epoch", "epochs_run", "test", "diagnostics", "wall_seconds", "peak_memory_bytes",
             "peak_memory_kind", "optimizer_steps", "precision", "device", "started_at", "finished_at", "n_params")
TABLE_METRICS = ("MAE", "Corr", "Mult_acc_7", "Has0_acc_2", "Non0_acc_2", "Has0_F1_score", "Non0_F1_score")
__all__ = ["ARMS", "arm_config", "run_ablation", "format_markdown", "TABLE_METRICS"]


def compare_by_seed(ref_runs, arm_runs, metrics, seed, n_boot) -> Dict[str, Any]:
    """Paired comparison of two arms' runs (dicts with ``seed`` and ``test``) on the seeds both
    have: ``{"seeds": [...], metric: stats.paired_comparison(ref, arm), ...}`` (None -> NaN)."""
    ref = {r["seed"]: r for r in ref_runs}
    seeds = [r["seed"] for r in arm_runs if r["seed"] in ref]
    out = {"seeds": seeds}
    for k in metrics:
        a = [ref[s]["test"][k] for s in seeds]
        b = [next(r for r in arm_runs if r["seed"] == s)["test"][k] for s in seeds]
        a = [float("nan") if v is None else v for v in a]
        b = [float("nan") if v is None else v for v in b]
        out[k] = paired_comparison(a, b, seed=seed, n_boot=n_boot)
    return out


def run_ablation(ds, base: TrainConfig, arms: Optional[Sequence[str]], seeds: Optional[Sequence[int]], out_dir,
                 *, data_info: Optional[Dict] = None, fresh: bool = False, n_boot: int = 10000,
                 log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Train every arm on every seed (``out_dir/<arm>/``), compare, write ``ablation.json`` and
    ``ablation.md``; return the JSON document."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot (--n-boot) must be an integer >= 1, got {n_boot!r}")
    requested = list(ARMS) if not arms else list(dict.fromkeys(arms))
    for a in requested:
        if a not in ARMS:
            raise ValueError(f"unknown arm {a!r}; choose from {list(ARMS)}")
    arms = with_references(requested)    # every comparison's reference arm runs too
    seeds = seeds_list(seeds)
    for a in arms:
        arm_config(base, a).resolved()   # every arm's options checked before anything trains
    added = [a for a in arms if a not in requested]
    if added:
        dropped = any(ARMS[a]["drop"] for a in requested)
        _say(f"also running the reference arm{'s' if len(added) > 1 else ''}: {', '.join(added)} (every InfoEnh "
             "arm is compared with the host alone and with its plumbing control"
             + ("; a missing-modality arm also with the host on all three modalities" if dropped else "") + ")")
    if len(seeds) == 1 and len(arms) > 1:
        warnings.warn(f"a single seed ({seeds[0]}) gives no paired statistics: each comparison is one difference, "
                      "with no CI and no t-test; give two or more --seeds (five for a rough test)", stacklevel=2)
    with folder_lock(out_dir):
        return _run_arms(ds, base, arms, seeds, Path(out_dir), data_info, fresh, n_boot, log, requested)


TEST_NOTE = ("paired t-test (scipy.stats.ttest_rel) with the t interval of the mean paired difference (arm - "
             "reference, pairs = seeds), an exact sign-flip permutation test, and a percentile bootstrap interval "
             "only from bootstrap_min_seeds seeds on; p_holm and p_signflip_holm: Holm-adjusted over every p of "
             "the table (all comparisons and metrics)")


def _run_arms(ds, base, arms, seeds, out, data_info, fresh, n_boot, log, requested) -> Dict[str, Any]:
    started = utc_now()
    results: Dict[str, Dict[str, Any]] = {}
    for a in arms:
        if log:
            log(f"=== arm {a}: {ARMS[a]['label']} ===")
        results[a] = train_seeds(ds, arm_config(base, a), seeds, out / a, data_info=data_info, fresh=fresh, log=log,
                                 arm=a)
    metrics = [k for k in TABLE_METRICS if k in results["baseline"]["runs"][0]["test"]]
    doc: Dict[str, Any] = {
        "config": {**{k: v for k, v in results["baseline"]["config"].items()
                      if k not in ("infoenh", "modalities", "arm", "infoenh_settings", "host_settings")},
                   "arms": arms, "requested_arms": list(requested), "n_boot": n_boot, "n_seeds": len(seeds),
                   "options_changed": options_changed(for_data(base, ds),
                                                      detected=for_data(TrainConfig(), ds).settings_of),
                   "bootstrap_min_seeds": min_bootstrap_seeds(),
                   "test": TEST_NOTE},
        "arms": {}, "comparisons": {},
        "epoch_cap": cap_count([r for a in arms for r in results[a]["runs"]], results["baseline"]["config"]["epochs"]),
        "started_at": started, "environment": environment(),
    }
    for a in arms:
        doc["arms"][a] = {"label": ARMS[a]["label"], "infoenh": ARMS[a]["infoenh"],
                          "modalities": list(arm_config(base, a).modalities),
                          "summary": results[a]["summary"]["test"], "epoch_cap": results[a]["epoch_cap"],
                          "infoenh_settings": results[a]["config"].get("infoenh_settings"),
                          "host_settings": results[a]["config"].get("host_settings"),
                          "n_params": results[a]["runs"][0].get("n_params"),
                          "runs": [{k: r.get(k) for k in _RUN_KEYS if k in r} for r in results[a]["runs"]]}
    for a in arms:
        for ref in references(a, arms):
            doc["comparisons"][f"{a} vs {ref}"] = {
                "arm": a, "reference": ref, "isolates": isolates(a, ref),
                **compare_by_seed(results[ref]["runs"], results[a]["runs"], metrics, seed=0, n_boot=n_boot)}
    doc["config"]["holm_family"] = holm_table(doc["comparisons"], metrics)
    doc["finished_at"] = utc_now()
    write_json(doc, out / "ablation.json")
    (out / "ablation.md").write_text(format_markdown(doc))
    return doc


def _scale(k: str) -> float:
    return next((s for key, _, s in COLUMNS if key == k), 1.0)


def _title(k: str) -> str:
    return next((t for key, t, _ in COLUMNS if key == k), k)


def _num(v, scale, signed=False) -> str:
    if v is None:
        return "n/a"
    digits = 4 if scale == 1.0 else 2
    x = round(v * scale, digits) + 0.0          # + 0.0 turns -0.0 into 0.0
    return (f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}")


def interval(c: Dict[str, Any]):
    """``(low, high, kind)`` of a comparison's interval: the bootstrap one where it is reported
    (enough seeds), else the t interval (``kind`` ``"bootstrap"`` / ``"t"``); ``(None, None, None)``
    when neither is defined (one seed; a constant difference)."""
    if c.get("ci_low") is not None and c.get("ci_high") is not None:
        return c["ci_low"], c["ci_high"], "bootstrap"
    if c.get("t_low") is not None and c.get("t_high") is not None:
        return c["t_low"], c["t_high"], "t"
    return None, None, None


def _p(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def comparison_cell(c: Dict[str, Any], scale: float) -> str:
    """``"-0.0266 [-0.0781, +0.0249] p=0.156 (Holm 1.000; sign-flip 0.250)"``: the mean paired
    difference, its interval (:func:`interval`), the t-test's raw p, its Holm-adjusted p and the
    exact sign-flip p."""
    lo, hi, _ = interval(c)
    iv = "n/a" if lo is None else f"{_num(lo, scale, True)}, {_num(hi, scale, True)}"
    holm = f"Holm {_p(c.get('p_holm'))}; " if "p_holm" in c else ""
    return f"{_num(c['mean_diff'], scale, True)} [{iv}] p={_p(c['p'])} ({holm}sign-flip {_p(c.get('p_signflip'))})"


def statistics_note(n_seeds: Optional[int], family: Optional[int], level: float = 0.95) -> str:
    """The sentence under a table of paired differences: which interval, which p-values, how many."""
    need = min_bootstrap_seeds(level)
    if n_seeds is not None and n_seeds >= need:
        iv = f"{level:.0%} percentile bootstrap interval ({n_seeds} seeds)"
    else:
        iv = (f"{level:.0%} t interval (from {n_seeds} seeds: a percentile bootstrap interval needs at least {need}, "
              "below that it is too narrow, with 3 seeds just the range of the differences)")
    sf = "" if not n_seeds else f" (the smallest p that {n_seeds} seeds can give is {min(1.0, 2 / 2 ** n_seeds):.3g})"
    fam = "" if family is None else f" over the {family} t-test p-values of this table"
    return (f"Paired differences (arm − reference, same seeds): mean [{iv}]; p: the paired t-test's raw p; Holm: "
            f"that p adjusted for multiple comparisons (Holm){fam}, the one to read when scanning the table; "
            f"sign-flip: the exact permutation test's p{sf}. p is n/a when every seed gives the same difference "
            "(up to the metrics' rounding: a constant difference has no t-test).")


def what_ran(options: Dict[str, Any], n_seeds: int, cap: Dict[str, Any], seeds=None) -> List[str]:
    """The lines under a table's title that say what ran (``seeds``: the list, shown beside the count)."""
    listed = f" ({', '.join(map(str, seeds))})" if seeds else ""
    return [f"Options beyond the host's defaults: {options_text(options)}.", "",
            f"Seeds: {n_seeds}{listed}. {cap_text(cap)}."]


def format_markdown(doc: Dict[str, Any]) -> str:
    """Two Markdown tables: test mean ± std per arm, then paired differences with their interval,
    raw and Holm-adjusted p and the sign-flip p; above them what ran (options, seeds, epoch cap)."""
    cfg = doc["config"]
    arms = cfg["arms"]
    metrics = [k for k in TABLE_METRICS if k in doc["arms"][arms[0]]["summary"]]
    lines: List[str] = [f"# Ablation: {cfg.get('model', '?')} on {cfg.get('dataset', '?')}", ""]
    ran = "options_changed" in cfg       # files written before it list the seeds in the line below
    if ran:
        lines += what_ran(cfg["options_changed"], cfg.get("n_seeds", len(cfg.get("seeds") or [])),
                          doc.get("epoch_cap") or cap_count([], cfg.get("epochs")), cfg.get("seeds")) + [""]
    lines += [
        ("" if ran else f"Seeds: {cfg.get('seeds')}. ") + "Test metrics at the epoch selected on validation loss; "
        "mean ± sample std over seeds (accuracies and F1 in %).", "",
        "| arm | " + " | ".join(_title(k) for k in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for a in arms:
        s = doc["arms"][a]["summary"]
        cells = [f"{_num(s[k]['mean'], _scale(k))} ± {_num(s[k]['std'], _scale(k))}" for k in metrics]
        lines.append(f"| {_row_label(a, doc['arms'][a]['label'])} | " + " | ".join(cells) + " |")
    comparisons = doc.get("comparisons") or {}
    if not comparisons:
        lines += ["", "No comparison: add an arm (e.g. `--arms baseline full`) to compare it with the baseline."]
        lines += _diagnostics_table(doc)
        return "\n".join(lines) + "\n"
    seeds = cfg.get("seeds")
    one_seed = isinstance(seeds, (list, tuple)) and len(seeds) == 1
    n_seeds = len(seeds) if isinstance(seeds, (list, tuple)) else None
    lines += ["", statistics_note(n_seeds, cfg.get("holm_family"))]
    if one_seed:
        lines += ["", "One seed: no paired statistics (no CI, no t-test), only the one difference. Run two or more "
                  "seeds (five for a rough test)."]
    lines += ["", "| comparison | " + " | ".join(_title(k) for k in metrics) + " |",
              "|---|" + "---|" * len(metrics)]
    for name, comp in comparisons.items():
        a, ref = comp.get("arm") or name.split(" vs ")[0], comp.get("reference") or name.split(" vs ")[1]
        cells = [comparison_cell(comp[k], _scale(k)) for k in metrics]
        lines.append(f"| {a} vs {ref} | " + " | ".join(cells) + " |")
    lines += _diagnostics_table(doc)
    lines += ["", "What each comparison isolates:", ""]
    lines += [f"- **{name}**: {comp.get('isolates', '')}" for name, comp in comparisons.items()]
    return "\n".join(lines) + "\n"


def _row_label(arm: str, label: str) -> str:
    """``"fib: +FIB (w/o FIA)"``; the label alone where it already starts with the arm's name."""
    return label if label == arm or label.startswith(arm + " ") else f"{arm}: {label}"


def _mean(values) -> Optional[float]:
    v = [float(x) for x in values if x is not None]
    return sum(v) / len(v) if v else None


def arm_diagnostics(arm_doc: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """Mean over an arm's seeds of what its runs recorded: FIB's kept fraction (averaged over the
    modalities), the fraction of OT problems that converged, wall time and peak memory; and the
    arm's parameter count (``n_params``, the same for every seed; None in files that lack it)."""
    runs = arm_doc["runs"]
    diags = [with_kept_frac(r.get("diagnostics")) for r in runs]
    return {"n_params": arm_doc.get("n_params"),
            "kept_frac": _mean([d.get("kept_frac") for d in diags]),
            "ot_converged_frac": _mean([_ot_converged(d) for d in diags]),
            "wall_seconds": _mean([r.get("wall_seconds") for r in runs]),
            "peak_memory_bytes": _mean([r.get("peak_memory_bytes") for r in runs])}


def _ot_converged(diag: Dict[str, Any]) -> Optional[float]:
    """A run's share of OT problems converged; None where no OT problem was solved (a uniform plan,
    ``fia_uniform``: zero Sinkhorn iterations, so its 'converged' flag says nothing)."""
    it = diag.get("ot_iters_mean")
    return None if it is not None and float(it) == 0.0 else diag.get("ot_converged_frac")


def _diagnostics_table(doc: Dict[str, Any]) -> List[str]:
    rows = {a: arm_diagnostics(doc["arms"][a]) for a in doc["config"]["arms"]}
    if all(v is None for d in rows.values() for k, v in d.items() if k != "n_params"):
        return []
    f = lambda v, fmt: "–" if v is None else format(v, fmt)  # noqa: E731
    kinds = {r.get("peak_memory_kind") for a in rows for r in doc["arms"][a]["runs"]}
    memory = ("peak CUDA memory of a run" if kinds == {"cuda_max_allocated"}
              else "the process's peak resident memory so far (CPU: it only grows from arm to arm)")
    lines = ["", "Per arm, mean over seeds (training batches of the whole run): FIB's kept fraction, share of OT "
             "problems converged, wall time per run (without the process's one-time start-up: imports, CUDA "
             "context; a reused run keeps the time it took when it ran), and " f"{memory}; and the arm's "
             "parameter count (a control and its arm differ only in the part under test).", "",
             "| arm | parameters | kept fraction | OT converged | wall s | peak MiB |", "|---|---|---|---|---|---|"]
    for a, d in rows.items():
        mib = None if d["peak_memory_bytes"] is None else d["peak_memory_bytes"] / 2 ** 20
        lines.append(f"| {a} | {f(d['n_params'], ',')} | {f(d['kept_frac'], '.3f')} | {f(d['ot_converged_frac'], '.3f')} | "
                     f"{f(d['wall_seconds'], '.1f')} | {f(mib, '.0f')} |")
    return lines
