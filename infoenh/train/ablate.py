"""The paper's ablations (Tables 2 and 3) as arms of one host, run over the same seeds.

Arms (``--arms``):

| arm            | InfoEnh                        | modalities   | paper |
|----------------|--------------------------------|--------------|-------|
| baseline       | none                           | t, a, v      | "w/o InfoEnh" |
| fib            | FIB only (use_fia=False)       | t, a, v      | "w/o FIA" = +FIB |
| fia            | FIA only (no gate, no InfoNCE) | t, a, v      | "w/o FIB" = +FIA |
| full           | FIB + FIA                      | t, a, v      | "+ InfoEnh" |
| no_text        | none                           | a, v         | Table 3 "w/o Text" |
| no_text_full   | FIB + FIA                      | a, v         | Table 3 "w/o Text", w/ InfoEnh |
| no_audio, no_audio_full, no_vision, no_vision_full: likewise |

Every arm is compared with ``baseline`` (paired by seed: same seed, same data order), and each
``no_<m>_full`` arm also with its own ``no_<m>``: mean paired difference, paired t-test and a
bootstrap CI (:mod:`infoenh.train.stats`). Writes ``ablation.json`` and ``ablation.md``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .._validate import MODALITIES
from .checkpoint import write_json
from .config import TrainConfig, seeds_list
from .lock import folder_lock
from .results import COLUMNS
from .runner import train_seeds
from .stats import paired_comparison

ARMS: Dict[str, Dict[str, Any]] = {
    "baseline": {"infoenh": "none", "drop": None, "label": "baseline (w/o InfoEnh)"},
    "fib": {"infoenh": "fib_only", "drop": None, "label": "+FIB (w/o FIA)"},
    "fia": {"infoenh": "fia_only", "drop": None, "label": "+FIA (w/o FIB)"},
    "full": {"infoenh": "full", "drop": None, "label": "+InfoEnh"},
}
for _m in MODALITIES:
    ARMS[f"no_{_m}"] = {"infoenh": "none", "drop": _m, "label": f"w/o {_m}"}
    ARMS[f"no_{_m}_full"] = {"infoenh": "full", "drop": _m, "label": f"w/o {_m} +InfoEnh"}

# the arm each arm is compared with besides the baseline
_MATCHED = {f"no_{m}_full": f"no_{m}" for m in MODALITIES}
TABLE_METRICS = ("MAE", "Corr", "Mult_acc_7", "Has0_acc_2", "Non0_acc_2", "Has0_F1_score", "Non0_F1_score")


def arm_config(base: TrainConfig, arm: str) -> TrainConfig:
    """``base`` with the arm's InfoEnh switch and modalities."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose from {list(ARMS)}")
    spec = ARMS[arm]
    mods = tuple(m for m in MODALITIES if m != spec["drop"])
    return dataclasses.replace(base, infoenh=spec["infoenh"], modalities=mods)


def _compare(ref_runs, arm_runs, metrics, seed, n_boot) -> Dict[str, Any]:
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
    arms = list(ARMS) if not arms else list(dict.fromkeys(arms))
    for a in arms:
        if a not in ARMS:
            raise ValueError(f"unknown arm {a!r}; choose from {list(ARMS)}")
    if "baseline" not in arms:
        arms.insert(0, "baseline")       # every comparison is against it
    for a in list(arms):
        if a in _MATCHED and _MATCHED[a] not in arms:
            arms.insert(arms.index(a), _MATCHED[a])
    seeds = seeds_list(seeds)
    for a in arms:
        arm_config(base, a).resolved()   # every arm's options checked before anything trains
    with folder_lock(out_dir):
        return _run_arms(ds, base, arms, seeds, Path(out_dir), data_info, fresh, n_boot, log)


def _run_arms(ds, base, arms, seeds, out, data_info, fresh, n_boot, log) -> Dict[str, Any]:
    results: Dict[str, Dict[str, Any]] = {}
    for a in arms:
        if log:
            log(f"=== arm {a}: {ARMS[a]['label']} ===")
        results[a] = train_seeds(ds, arm_config(base, a), seeds, out / a, data_info=data_info, fresh=fresh, log=log)
    metrics = [k for k in TABLE_METRICS if k in results["baseline"]["runs"][0]["test"]]
    doc: Dict[str, Any] = {
        "config": {**{k: v for k, v in results["baseline"]["config"].items() if k not in ("infoenh", "modalities")},
                   "arms": arms, "n_boot": n_boot,
                   "test": "paired t-test (scipy.stats.ttest_rel) and percentile bootstrap CI of the mean "
                           "paired difference (arm - reference), pairs = seeds"},
        "arms": {}, "comparisons": {},
    }
    for a in arms:
        doc["arms"][a] = {"label": ARMS[a]["label"], "infoenh": ARMS[a]["infoenh"],
                          "modalities": list(arm_config(base, a).modalities),
                          "summary": results[a]["summary"]["test"],
                          "runs": [{"seed": r["seed"], "best_epoch": r["best_epoch"], "test": r["test"]}
                                   for r in results[a]["runs"]]}
    for a in arms:
        refs = [] if a == "baseline" else ["baseline"] + ([_MATCHED[a]] if a in _MATCHED else [])
        for ref in refs:
            doc["comparisons"][f"{a} vs {ref}"] = _compare(results[ref]["runs"], results[a]["runs"], metrics,
                                                           seed=0, n_boot=n_boot)
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


def format_markdown(doc: Dict[str, Any]) -> str:
    """Two Markdown tables: test mean ± std per arm, then paired differences with p and CI."""
    cfg = doc["config"]
    arms = cfg["arms"]
    metrics = [k for k in TABLE_METRICS if k in doc["arms"][arms[0]]["summary"]]
    lines: List[str] = [
        f"# Ablation: {cfg.get('model', '?')} on {cfg.get('dataset', '?')}", "",
        f"Seeds: {cfg.get('seeds')}. Test metrics at the epoch selected on validation loss; mean ± sample std "
        "over seeds (accuracies and F1 in %).", "",
        "| arm | " + " | ".join(_title(k) for k in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for a in arms:
        s = doc["arms"][a]["summary"]
        cells = [f"{_num(s[k]['mean'], _scale(k))} ± {_num(s[k]['std'], _scale(k))}" for k in metrics]
        lines.append(f"| {doc['arms'][a]['label']} | " + " | ".join(cells) + " |")
    lines += ["", "Paired differences (arm − reference, same seeds): mean [95% bootstrap CI], paired t-test p. "
              "With few seeds both are rough.", "",
              "| comparison | " + " | ".join(_title(k) for k in metrics) + " |",
              "|---|" + "---|" * len(metrics)]
    for name, comp in doc["comparisons"].items():
        a, ref = name.split(" vs ")
        cells = []
        for k in metrics:
            c, sc = comp[k], _scale(k)
            p = "n/a" if c["p"] is None else f"{c['p']:.3f}"
            cells.append(f"{_num(c['mean_diff'], sc, True)} [{_num(c['ci_low'], sc, True)}, "
                         f"{_num(c['ci_high'], sc, True)}] p={p}")
        lines.append(f"| {doc['arms'][a]['label']} vs {doc['arms'][ref]['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
