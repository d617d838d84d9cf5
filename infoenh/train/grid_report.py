"""What a grid's tables say beyond their numbers: what ran (the spec's hash, the options beyond
each host's defaults per dataset, the number of seeds, the runs that selected the last epoch
allowed) and Holm's correction, one family per table and dataset. :mod:`infoenh.train.grid` calls
these from ``build_tables``, ``format_markdown`` and the figure.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from .arms import references
from .config import TrainConfig
from .grid import GridSpec


def _host_base(spec: GridSpec, host: str, dataset: Optional[str] = None) -> TrainConfig:
    """The configuration the spec gives ``host`` (on ``dataset``) before an arm is applied (for what ran)."""
    return spec.base_config(host, None, dataset)


def table_comparisons(doc: Dict[str, Any], name: str, label: str) -> List[str]:
    """The keys of the comparisons table ``name`` shows for the dataset ``label``, in its order
    (Table 1: ``full`` against ``baseline`` only)."""
    keys = []
    for h in doc["spec"]["hosts"]:
        for a in doc["tables"][name]["arms"]:
            for ref in references(a, doc["spec"]["arms"]):
                if name == "table1" and ref != "baseline":
                    continue
                keys.append(f"{label}/{h}/{a} vs {ref}")
    return keys


def shown(doc: Dict[str, Any], name: str) -> bool:
    t = doc["tables"][name]
    return bool(t["arms"]) and (name != "table1" or t["arms"] == ["baseline", "full"])


def holm_families(doc: Dict[str, Any]) -> Dict[str, Any]:
    """Holm's adjustment per table and dataset: ``{"table2/<label>": {"family": m, "p_holm":
    {comparison: {metric: p}}, "p_signflip_holm": {...}}}`` (family: the t-test p-values shown)."""
    from .stats import holm

    out: Dict[str, Any] = {}
    for name in ("table1", "table2", "table3"):
        if not shown(doc, name):
            continue
        for lab in doc["datasets"].values():
            cells = [(key, k) for key in table_comparisons(doc, name, lab) for k in doc["metrics"]
                     if isinstance(doc["comparisons"][key].get(k), dict)]
            entry: Dict[str, Any] = {"family": sum(doc["comparisons"][key][k]["p"] is not None for key, k in cells)}
            for test in ("p", "p_signflip"):
                adj = holm([doc["comparisons"][key][k].get(test) for key, k in cells])
                table: Dict[str, Dict[str, Any]] = {}
                for (key, k), v in zip(cells, adj):
                    table.setdefault(key, {})[k] = v
                entry[f"{test}_holm"] = table
            out[f"{name}/{lab}"] = entry
    return out


def what_ran(spec: GridSpec, records: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """``{"spec_sha256", "options_changed": {dataset label: {host: {...}}}, "n_seeds", "epoch_cap":
    {host: cap_count}}`` of a grid: what its tables were computed from (:mod:`infoenh.train.provenance`;
    the options the spec sets, per dataset and host, against the host's defaults under the same
    dataset settings: a dataset's own MMSA settings, applied from the data, are defaults)."""
    from .provenance import cap_count, options_changed, spec_hash

    caps = {}
    for h in spec.hosts:
        runs = [{**r, "seed": r["key"]} for r in records if r.get("host") == h and r.get("status") == "done"]
        caps[h] = cap_count(runs, _host_base(spec, h).resolved().epochs)
    return {"spec_sha256": spec_hash(spec.to_dict()),
            "options_changed": {lab: {h: options_changed(_host_base(spec, h, d)) for h in spec.hosts}
                                for d, lab in spec.labels().items()},
            "n_seeds": len(spec.seeds), "epoch_cap": caps}


def what_ran_lines(doc: Dict[str, Any]) -> List[str]:
    """The lines of grid.md (and grid.png's title) that say what ran: spec hash, options per host,
    seeds, runs at the epoch cap."""
    from .provenance import cap_text, options_text

    w = doc.get("what_ran")
    if not w:
        return []
    hosts = doc["spec"]["hosts"]
    opts = {f"{h} on {lab}" if len(w["options_changed"]) > 1 else h: options_text(per[h])
            for lab, per in w["options_changed"].items() for h in hosts}
    if len(set(opts.values())) == 1:
        options = [f"Options beyond the host's defaults (every host): {next(iter(opts.values()))}."]
    else:
        options = [f"Options beyond the host's defaults, {h}: {o}." for h, o in opts.items()]
    caps = [f"{h}: {cap_text(w['epoch_cap'][h])}" for h in hosts]
    return [f"Spec sha256 {w['spec_sha256'][:12]} (a grid with any option different has another).",
            *options, f"Seeds: {w['n_seeds']} ({', '.join(map(str, doc['spec']['seeds']))}). " + "; ".join(caps) + "."]


def added_references(arms: Sequence[str], requested: Sequence[str]) -> List[str]:
    """The arms a grid runs only as references of the arms its spec asked for, each with the arms it
    serves: ``["baseline (reference of plumbing, fib)", "plumbing (reference of fib)"]``."""
    return [f"{a} (reference of {', '.join(u for u in arms if a in references(u))})"
            for a in arms if a not in requested]
