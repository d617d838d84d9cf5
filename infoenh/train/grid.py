"""The paper's tables as one grid: datasets x hosts x arms x seeds, from one spec file.

    # grid.yaml
    datasets: [synthetic]            # "synthetic" or paths to MMSA/MulT pickles
    synthetic_scale: ci              # ci | small | mosi (synthetic only)
    hosts: [lf, selfmm]
    arms: [baseline, plumbing, full] # from infoenh.train.arms.ARMS; references are added
    seeds: [1111, 1112, 1113]
    options: {epochs: 2, k: 4, d: 8} # TrainConfig fields, or InfoEnh options (k, d, reg, alpha, ...)
    host_options: {selfmm: {model_kwargs: {heads: enhanced}}}   # per host, over options
    dataset_options: {synthetic: {misa: {batch_size: 32}}}      # per dataset and host, over both

:func:`load_spec` reads and checks everything before anything runs (an unknown key, host, arm or
option, a bad value: one :class:`GridSpecError` naming the entry and the choices). :func:`expand`
turns the spec into runs, one per (dataset, host, arm, seed), each in
``OUT/<dataset>/<host>/<arm>/seed_<s>/``. :func:`run_one` trains one run in-process (the
sequential and the Ray executors of :mod:`infoenh.train.grid_exec` both call it): a finished run
of the same fingerprint is reused, an interrupted one resumes from its checkpoint
(:mod:`infoenh.train.runner`), and an exception is returned as a failed run, never raised.
:func:`build_tables` / :func:`write_tables` write ``grid.json`` and ``grid.md``: Table 1 (each
host with and without InfoEnh), Table 2 (the ablation arms), Table 3 (missing modalities), mean ±
std over seeds and paired comparisons against ``baseline`` and ``plumbing`` (the statistics of
``infoenh ablate``, with every p also Holm-adjusted over the comparisons of its table and dataset:
``holm``). The tables and ``grid.png`` say what ran: the spec's hash (two grids with any option
different have different hashes), the options beyond each host's defaults, the number of seeds and
how many runs selected the last epoch allowed (not converged). A cell with fewer
finished seeds than asked for is marked ``n=2/3``; one with none is ``missing``; one seed has no
std (``null``, ``± n/a``). Before a grid runs, :func:`stale_runs` finds the run folders computed
from other inputs than the spec gives now (the executor stops, or deletes them with ``--fresh``).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..models.registry import MODELS
from .ablate import TABLE_METRICS, compare_by_seed
from .arms import ARMS, arm_config, isolates, references, with_references
from .config import CLI_INFOENH_OPTIONS, TrainConfig, for_data
from .spec_file import MAX_SEEDS, SEED_LIMIT as _SEED_LIMIT, GridSpecError, read_spec
from .spec_file import cut as _cut
from .spec_file import short as _short

DEFAULT_ARMS = ("baseline", "plumbing", "full")
SPEC_KEYS = ("datasets", "synthetic_scale", "synthetic_seed", "hosts", "arms", "seeds", "options", "host_options",
             "n_boot", "threads", "dataset_options")
# TrainConfig fields a spec may not set: the grid sets them (host, arm, seed) or they are logging
_GRID_FIELDS = ("model", "infoenh", "modalities", "seed", "quiet")
# InfoEnh options a spec may give at the top of ``options`` (they go to infoenh_kwargs)
IE_OPTIONS = tuple(CLI_INFOENH_OPTIONS) + ("tau",)
# what grid.json keeps of a run (the run folder's run.json has everything)
RUN_KEYS = ("best_epoch", "epochs_run", "test", "valid", "diagnostics", "wall_seconds", "precision", "device",
            "reused", "n_params")


def option_names() -> List[str]:
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _GRID_FIELDS]
    return fields + [k for k in IE_OPTIONS if k not in fields]


@dataclasses.dataclass
class GridSpec:
    datasets: List[str]
    hosts: List[str]
    arms: List[str]                     # with references, in run order
    requested_arms: List[str]
    seeds: List[int]
    options: Dict[str, Any]
    host_options: Dict[str, Dict[str, Any]]
    synthetic_scale: Optional[str] = None
    synthetic_seed: int = 0
    n_boot: int = 10000
    threads: Optional[int] = 1
    dataset_options: Dict[str, Dict[str, Dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "GridSpec":
        return cls(**d)

    def labels(self) -> Dict[str, str]:
        return dataset_labels(self.datasets, self.synthetic_scale)

    def base_config(self, host: str, seed: Optional[int] = None, dataset: Optional[str] = None) -> TrainConfig:
        """The TrainConfig the spec gives ``host`` (on ``dataset``) before an arm is applied: options,
        then the host's options, then the dataset's options for the host."""
        per_data = self.dataset_options.get(dataset, {}).get(host, {}) if dataset is not None else {}
        kw = _config_kwargs({**self.options, **self.host_options.get(host, {}), **per_data})
        return TrainConfig(model=host, quiet=True, **kw, **({} if seed is None else {"seed": seed}))

    def config(self, host: str, arm: str, seed: int, dataset: Optional[str] = None) -> TrainConfig:
        """The TrainConfig of one run: options, then the host's options, then the dataset's options
        for the host (``dataset_options``; each dataset's MMSA settings are applied from the data,
        :mod:`infoenh.models.settings`), then the arm, the seed."""
        cfg = arm_config(self.base_config(host, seed, dataset), arm)
        if cfg.infoenh == "none":         # no InfoEnh: its options must not enter the run's fingerprint
            cfg = dataclasses.replace(cfg, infoenh_kwargs={})
        return cfg


def _config_kwargs(options: Dict[str, Any]) -> Dict[str, Any]:
    kw = {k: v for k, v in options.items() if k not in IE_OPTIONS or k == "infoenh_kwargs"}
    ie = dict(kw.pop("infoenh_kwargs", None) or {})
    ie.update({k: v for k, v in options.items() if k in IE_OPTIONS})
    if ie:
        kw["infoenh_kwargs"] = ie
    return kw


def _safe_component(name: str) -> str:
    """``name`` as one safe path component: letters, digits, ``_``, ``-`` and inner ``.`` only
    (anything else becomes ``_``), no leading dot (so never ``.`` or ``..``), at most 60 characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")[:60].rstrip(".")


def dataset_labels(datasets: Sequence[str], scale: Optional[str]) -> Dict[str, str]:
    """A distinct folder name per dataset, each a safe path component (:func:`_safe_component`):
    ``synthetic`` (``synthetic-<scale>``), else the file's stem, with as many parent folders
    prefixed as it takes to be unique (``MOSI-unaligned_50``, ``a-d-x``), then a number."""
    out: Dict[str, str] = {}
    used = {f"synthetic-{scale}" if scale else "synthetic"} if "synthetic" in datasets else set()
    for d in datasets:
        if d == "synthetic":
            out[d] = f"synthetic-{scale}" if scale else "synthetic"
            continue
        p = Path(d)
        parts = [p.stem] + [q.name for q in p.parents if q.name]      # the stem, then its folders upwards
        label = ""
        for i in range(1, len(parts) + 1):
            label = "-".join(c for c in (_safe_component(x) for x in reversed(parts[:i])) if c) or "data"
            if label not in used:
                break
        base, n = label, 2
        while label in used:
            label, n = f"{base}-{n}", n + 1
        used.add(label)
        out[d] = label
    return out


def check_run_folders(runs: Sequence["Run"], out) -> None:
    """Prove that every run folder lies under ``out`` (symbolic links resolved) before anything is
    written or deleted; a GridSpecError names the first that does not."""
    root = Path(out).expanduser().resolve()
    for run in runs:
        folder = run.folder(root).resolve()
        if folder == root or root not in folder.parents:
            raise GridSpecError(f"grid: the folder of run {run.key} resolves to {folder}, outside --out {root} (a "
                                "symbolic link or a dataset label that leaves it); nothing was run, written or "
                                "deleted")


def _did_you_mean(value, choices) -> str:
    close = difflib.get_close_matches(_short(value, 60).strip("'"), [str(c) for c in choices], n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _choices(name: str, value, choices) -> GridSpecError:
    hint = _did_you_mean(value, choices)
    return GridSpecError(f"grid spec: unknown {name} {_short(value)}; {hint}{'Choose' if hint else 'choose'} from "
                         f"{', '.join(map(str, choices))}")


def _list(doc, key, default=None) -> list:
    v = doc.get(key, default)
    if v is None:
        raise GridSpecError(f"grid spec: '{key}' is required (a list)")
    if isinstance(v, (str, int)):
        v = [v]
    if not isinstance(v, list) or not v:
        raise GridSpecError(f"grid spec: '{key}' must be a non-empty list, got {_short(v)}")
    return v


def _check_options(where: str, options) -> Dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise GridSpecError(f"grid spec: '{where}' must be a mapping of option: value, got {_short(options)}")
    names = option_names()
    for k in options:
        if k not in names:
            raise GridSpecError(f"grid spec: unknown option {_short(k)} in {where!r}; {_did_you_mean(k, names)}Options "
                                f"are TrainConfig fields or InfoEnh options: {', '.join(names)}") from None
    if "infoenh_kwargs" in options and not isinstance(options["infoenh_kwargs"], dict):
        raise GridSpecError(f"grid spec: '{where}.infoenh_kwargs' must be a mapping")
    if "model_kwargs" in options and not isinstance(options["model_kwargs"], dict):
        raise GridSpecError(f"grid spec: '{where}.model_kwargs' must be a mapping")
    for k in ("amp", "deterministic"):
        if k in options and not isinstance(options[k], bool):
            raise GridSpecError(f"grid spec: '{where}.{k}' must be true or false, got {_short(options[k])}")
    _check_run_time_options(where, options)
    return dict(options)


def _check_run_time_options(where: str, options: Dict[str, Any]) -> None:
    """Entries that TrainConfig accepts but that would fail when a run starts: checked now."""
    import inspect

    from ..module import InfoEnh

    if "num_workers" in options:
        w = options["num_workers"]
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 256:
            raise GridSpecError(f"grid spec: '{where}.num_workers' must be an integer from 0 to 256 (DataLoader "
                                f"worker processes), got {_short(w)}")
    if "device" in options:
        dev = options["device"]
        if dev is not None and (not isinstance(dev, str) or not re.fullmatch(r"cpu|cuda(:[0-9]{1,3})?", dev)):
            raise GridSpecError(f"grid spec: '{where}.device' must be 'cpu', 'cuda', 'cuda:N' (N a GPU number) or "
                                f"null (CUDA when available), got {_short(dev)}")
    ie_names = [n for n in inspect.signature(InfoEnh.__init__).parameters if n not in ("self", "in_dims")]
    for k in (options.get("infoenh_kwargs") or {}):
        if k not in ie_names:
            why = ("in_dims is set from the host's encoders" if k == "in_dims"
                   else f"{_did_you_mean(k, ie_names)}InfoEnh takes: {', '.join(ie_names)}")
            raise GridSpecError(f"grid spec: unknown infoenh_kwargs key {_short(k)} in {where!r}; {why}")


def validate_spec(doc: Dict[str, Any], *, check_paths: bool = True) -> GridSpec:
    """A :class:`GridSpec` from a parsed spec; raises :class:`GridSpecError` on any bad entry,
    checking every (host, arm) configuration, before anything runs."""
    if not isinstance(doc, dict):
        raise GridSpecError(f"grid spec: must be a mapping with keys {', '.join(SPEC_KEYS)}, got {type(doc).__name__}")
    for k in doc:
        if k not in SPEC_KEYS:
            raise _choices("key", k, SPEC_KEYS)
    datasets = [str(d) for d in _list(doc, "datasets")]
    if len(set(datasets)) != len(datasets):
        raise GridSpecError(f"grid spec: 'datasets' has duplicates: {_short(datasets)}")
    for d in datasets:
        if d != "synthetic" and check_paths and not Path(d).expanduser().exists():
            raise GridSpecError(f"grid spec: dataset {_short(d)} is neither 'synthetic' nor an existing file")
        if d != "synthetic" and check_paths and not Path(d).expanduser().is_file():
            raise GridSpecError(f"grid spec: dataset {_short(d)} is a folder, not a data file; name the pickle "
                                "inside it (e.g. .../Processed/unaligned_50.pkl)")
    if check_paths:                       # absolute: Ray workers on other nodes do not share our working directory
        datasets = [d if d == "synthetic" else str(Path(d).expanduser().resolve()) for d in datasets]
    from .runner import SYNTHETIC_SCALES, infoenh_settings

    scale = doc.get("synthetic_scale")
    if scale is not None and (not isinstance(scale, str) or scale not in SYNTHETIC_SCALES):
        raise _choices("synthetic_scale", scale, sorted(SYNTHETIC_SCALES))
    sseed = doc.get("synthetic_seed", 0)
    if isinstance(sseed, bool) or not isinstance(sseed, int) or not 0 <= sseed < _SEED_LIMIT:
        raise GridSpecError(f"grid spec: 'synthetic_seed' must be an integer from 0 to 2^63 - 1, got {_short(sseed)}")
    hosts = [str(h) for h in _list(doc, "hosts")]
    for h in hosts:
        if h not in MODELS:
            raise _choices("host", h, sorted(MODELS))
    requested = [str(a) for a in _list(doc, "arms", list(DEFAULT_ARMS))]
    for a in requested:
        if a not in ARMS:
            raise _choices("arm", a, list(ARMS))
    requested = list(dict.fromkeys(requested))
    arms = with_references(requested)
    seeds = _list(doc, "seeds")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise GridSpecError(f"grid spec: seeds must be integers, got {_short(s)}")
        if not 0 <= s < _SEED_LIMIT:
            raise GridSpecError(f"grid spec: seeds must be integers from 0 to 2^63 - 1 (torch's seed range), got "
                                f"{_short(s)}")
    if len(seeds) > MAX_SEEDS:
        raise GridSpecError(f"grid spec: {len(seeds)} seeds; at most {MAX_SEEDS} are accepted")
    if len(set(seeds)) != len(seeds):
        raise GridSpecError(f"grid spec: seeds must be distinct, got {_short(seeds)}")
    options = _check_options("options", doc.get("options"))
    host_options = doc.get("host_options") or {}
    if not isinstance(host_options, dict):
        raise GridSpecError("grid spec: 'host_options' must be a mapping host: {option: value}, got "
                            f"{_short(host_options)}")
    for h, o in host_options.items():
        if h not in hosts:
            raise GridSpecError(f"grid spec: 'host_options' names host {_short(h)}, which is not in hosts {hosts}")
        host_options[h] = _check_options(f"host_options.{h}", o)
    dataset_options = _dataset_options(doc.get("dataset_options"), [str(d) for d in _list(doc, "datasets")],
                                       datasets, hosts)
    n_boot = doc.get("n_boot", 10000)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or not 1 <= n_boot <= 10 ** 6:
        raise GridSpecError(f"grid spec: 'n_boot' must be an integer from 1 to 1000000, got {_short(n_boot)}")
    threads = doc.get("threads", 1)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise GridSpecError(f"grid spec: 'threads' must be an integer >= 1 or null (torch's default), got "
                            f"{_short(threads)}")
    spec = GridSpec(datasets=datasets, hosts=hosts, arms=arms, requested_arms=requested, seeds=[int(s) for s in seeds],
                    options=options, host_options=dict(host_options), synthetic_scale=scale, synthetic_seed=sseed,
                    n_boot=n_boot, threads=threads, dataset_options=dataset_options)
    for d in [None, *dataset_options]:    # every configuration checked before anything runs
        for h in hosts:
            for a in [*arms, None]:
                where = f"host {h}" + ("" if a is None else f", arm {a}") + ("" if d is None else f", dataset {d}")
                try:
                    # a is None: the host's options under an InfoEnh arm (the tables resolve them even when
                    # every arm run is the host alone, which drops InfoEnh's options)
                    cfg = (arm_config(spec.base_config(h, spec.seeds[0], d), "full") if a is None
                           else spec.config(h, a, spec.seeds[0], d)).resolved()
                    infoenh_settings(cfg)     # InfoEnh's own checks of its options (built alone: cheap)
                except (TypeError, ValueError, KeyError, OverflowError) as e:
                    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
                    raise GridSpecError(f"grid spec: {where}: {_cut(str(msg))}") from None
                _check_model_kwargs(h, cfg.model_kwargs)
    return spec


def _dataset_options(given, written: List[str], datasets: List[str], hosts: List[str]) -> Dict[str, Dict[str, Any]]:
    """``dataset_options`` keyed by the datasets as the grid runs them (absolute paths): each key a
    dataset of ``datasets`` as written, each value ``{host: {option: value}}``."""
    if not given:
        return {}
    if not isinstance(given, dict):
        raise GridSpecError(f"grid spec: 'dataset_options' must be a mapping dataset: {{host: {{option: value}}}}, "
                            f"got {given!r}")
    out = {}
    for key, per_host in given.items():
        if str(key) not in written:
            raise GridSpecError(f"grid spec: 'dataset_options' names {key!r}, which is not in datasets {written}")
        if not isinstance(per_host, dict):
            raise GridSpecError(f"grid spec: 'dataset_options.{key}' must be a mapping host: {{option: value}}")
        for h, o in per_host.items():
            if h not in hosts:
                raise GridSpecError(f"grid spec: 'dataset_options.{key}' names host {h!r}, which is not in hosts "
                                    f"{hosts}")
        out[datasets[written.index(str(key))]] = {h: _check_options(f"dataset_options.{key}.{h}", o)
                                                  for h, o in per_host.items()}
    return out


def _check_model_kwargs(host: str, model_kwargs) -> None:
    """Every ``model_kwargs`` key is a keyword of the host class's constructor."""
    import inspect

    from .fingerprint import HOST_STRUCTURAL

    params = inspect.signature(MODELS[host].__init__).parameters
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = [n for n in params if n not in HOST_STRUCTURAL]
    for k in model_kwargs or {}:
        if k not in names:
            raise GridSpecError(f"grid spec: host {host}: unknown model_kwargs key {_short(k)}; {_did_you_mean(k, names)}"
                                f"{MODELS[host].__name__} takes: {', '.join(names) or 'nothing'}")


def load_spec(path, *, check_paths: bool = True) -> GridSpec:
    """Read a YAML (or JSON) spec file within bounds (:func:`infoenh.train.spec_file.read_spec`)
    and check it (:func:`validate_spec`). Every error names the file."""
    p = Path(path)
    try:
        return validate_spec(read_spec(p), check_paths=check_paths)
    except GridSpecError as e:
        msg = str(e)
        raise GridSpecError(msg if msg.startswith(f"grid spec {p}") else f"{msg} (spec file {p})") from None


@dataclasses.dataclass(frozen=True)
class Run:
    dataset: str
    label: str
    host: str
    arm: str
    seed: int
    # SHA-256 of the dataset's arrays as the driver fingerprinted them (set by the executor): the
    # run refuses to train on anything else (a data file replaced while the grid runs)
    data_sha256: Optional[str] = None

    @property
    def key(self) -> str:
        return f"{self.label}/{self.host}/{self.arm}/seed_{self.seed}"

    def folder(self, out) -> Path:
        return Path(out) / self.label / self.host / self.arm / f"seed_{self.seed}"


def expand(spec: GridSpec) -> List[Run]:
    """Every run of the grid, in a stable order (dataset, host, arm, seed)."""
    labels = spec.labels()
    return [Run(d, labels[d], h, a, s) for d in spec.datasets for h in spec.hosts for a in spec.arms
            for s in spec.seeds]


_DATA_CACHE: Dict[tuple, Any] = {}


def _data(spec: GridSpec, dataset: str):
    """The dataset, loaded once per process."""
    from .runner import load_data

    key = (dataset, spec.synthetic_scale, spec.synthetic_seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()                   # one dataset in memory at a time
        _DATA_CACHE[key] = load_data(dataset, scale=spec.synthetic_scale, synthetic_seed=spec.synthetic_seed)
    return _DATA_CACHE[key]


def _stored_fingerprint(run_dir: Path):
    """``(hash, doc)`` of the finished result (run.json) in ``run_dir``, else of its checkpoint;
    None when the folder holds neither (or nothing readable: the run then starts or resumes as usual)."""
    from .runner import read_run_record
    from .trainer import CHECKPOINT, RUN_JSON

    p = run_dir / RUN_JSON
    if p.exists():
        r, _ = read_run_record(p)
        if r is not None:
            return r.get("fingerprint"), r.get("fingerprint_doc")
    c = run_dir / CHECKPOINT
    if c.exists():
        from .checkpoint import load_checkpoint

        try:
            ck = load_checkpoint(c)
        except Exception:                 # noqa: BLE001 - unreadable: fit decides, as without the grid
            return None
        doc = ck.get("fingerprint_doc")
        try:
            doc = json.loads(doc) if isinstance(doc, str) else doc
        except json.JSONDecodeError:
            doc = None
        return ck.get("fingerprint"), doc
    return None


def stale_runs(spec: GridSpec, runs: Sequence[Run], out) -> List[tuple]:
    """``[(run, first difference), ...]`` for every run whose folder holds a result or checkpoint
    computed from other inputs than the run's configuration, data and code now (the check
    :func:`infoenh.train.runner._done` and :func:`infoenh.train.trainer.fit` make); data are loaded
    only for datasets with a run folder."""
    from .fingerprint import fingerprint_diff, fingerprint_hash, run_fingerprint

    stale: List[tuple] = []
    for run in runs:
        run_dir = run.folder(out)
        if not run_dir.is_dir():
            continue
        stored = _stored_fingerprint(run_dir)
        if stored is None:
            continue
        ds, _ = _data(spec, run.dataset)
        fp = run_fingerprint(for_data(spec.config(run.host, run.arm, run.seed, run.dataset), ds).resolved(), ds)
        if stored[0] != fingerprint_hash(fp):
            diff = fingerprint_diff(stored[1], fp)
            stale.append((run, diff[0] if diff else "the fingerprint differs"))
    return stale


class DataChanged(RuntimeError):
    """The data a run loaded is not the data the grid's driver fingerprinted."""


def data_hashes(spec: GridSpec) -> Dict[str, str]:
    """``{dataset: SHA-256 of its arrays}``, computed once by the driver before any run starts."""
    from .fingerprint import content_sha256

    return {d: content_sha256(_data(spec, d)[0]) for d in spec.datasets}


def check_data_hash(run: Run, ds) -> str:
    """The SHA-256 of ``ds``'s arrays; raises :class:`DataChanged`, naming both hashes, when the
    driver fingerprinted other data for this run (``run.data_sha256``)."""
    from .fingerprint import content_sha256

    got = content_sha256(ds)
    if run.data_sha256 is not None and got != run.data_sha256:
        _DATA_CACHE.clear()
        raise DataChanged(f"the data this run loaded ({run.dataset}) has content sha256 {got[:16]}…, but the grid "
                          f"started on sha256 {run.data_sha256[:16]}…: the file changed while the grid ran. Not "
                          "trained, so no table mixes the two; restore the file, or re-run the grid (it then "
                          "stops on the runs of the old data; --fresh retrains them)")
    return got


def stale_message(stale: Sequence[tuple], out) -> str:
    shown = "; ".join(f"{r.key} ({d})" for r, d in stale[:10])
    more = f"; and {len(stale) - 10} more" if len(stale) > 10 else ""
    return (f"{len(stale)} run folder(s) in {out} hold results or checkpoints computed from other inputs than this "
            f"spec gives now (first difference per run): {shown}{more}. Nothing was run or written. Re-run with "
            "--fresh to delete those runs' folders and train them again, or choose another --out")


def run_one(run: Run, spec: GridSpec, out) -> Dict[str, Any]:
    """Train one run in ``run.folder(out)`` and return its record (never raises on a failed run):
    ``{"key", "dataset", "host", "arm", "seed", "status": "done" | "failed", "error", ...}``. A
    finished run of the same fingerprint is reused; an interrupted one resumes from its checkpoint."""
    import warnings

    import torch

    from .lock import folder_lock
    from .runner import _done
    from .trainer import fit

    rec: Dict[str, Any] = {"key": run.key, "dataset": run.dataset, "label": run.label, "host": run.host,
                           "arm": run.arm, "seed": run.seed, "dir": str(run.folder(out))}
    t0 = time.time()
    threads = torch.get_num_threads()
    try:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        cfg = spec.config(run.host, run.arm, run.seed, run.dataset)
        check_run_folders([run], out)
        run_dir = run.folder(out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds, _ = _data(spec, run.dataset)
            rec["synthetic"] = bool(getattr(ds, "synthetic", False))
            rec["data_sha256"] = check_data_hash(run, ds)
            with folder_lock(run_dir):
                r = _done(run_dir, cfg, ds)
                if r is None:
                    r = {**fit(ds, cfg, run_dir), "reused": False}
                else:
                    r = {**r, "reused": True}
        rec.update({k: r.get(k) for k in RUN_KEYS if k in r})
        bad = [k for k, v in (r.get("test") or {}).items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            rec.update(status="failed", error=f"non-finite test metrics: {', '.join(bad)}")
        else:
            rec["status"] = "done"
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: B902 - a failed run is a record, the grid goes on
        if isinstance(e, SystemExit) and e.code in (0, None):
            raise
        rec.update(status="failed", error=f"{type(e).__name__}: {e}",
                   traceback="".join(traceback.format_exception(type(e), e, e.__traceback__))[-4000:])
    finally:
        torch.set_num_threads(threads)
    rec["seconds"] = round(time.time() - t0, 3)
    return rec


# ----------------------------------------------------------------------------------------- tables

def _finished(spec: GridSpec, recs: Dict[str, Dict], label: str, host: str, arm: str) -> Dict[int, Dict]:
    """The finished runs of one (dataset, host, arm), by seed, in the spec's seed order."""
    keys = {s: f"{label}/{host}/{arm}/seed_{s}" for s in spec.seeds}
    return {s: recs[k] for s, k in keys.items() if recs.get(k, {}).get("status") == "done"}


def _coverage(seeds: List[int], spec: GridSpec) -> Dict[str, Any]:
    """How many of the spec's seeds a cell or comparison has: ``complete``, ``n=k/n`` or ``missing``."""
    n, want = len(seeds), len(spec.seeds)
    return {"seeds": seeds, "n": n, "requested": want,
            "status": "complete" if n == want else ("missing" if n == 0 else f"n={n}/{want}")}


def _cell(spec: GridSpec, recs: Dict[str, Dict], label: str, host: str, arm: str, metrics) -> Dict[str, Any]:
    from .results import mean_std

    done = _finished(spec, recs, label, host, arm)
    cell: Dict[str, Any] = _coverage(list(done), spec)
    cell["metrics"] = {k: mean_std([r["test"][k] for r in done.values()]) for k in metrics} if done else {}
    if len(done) == 1:                    # no spread from one seed
        for m in cell["metrics"].values():
            m["std"] = None
    return cell


def _comparison(spec, recs, label, host, arm, ref, metrics) -> Dict[str, Any]:
    ra, rr = _finished(spec, recs, label, host, arm), _finished(spec, recs, label, host, ref)
    seeds = [s for s in ra if s in rr]
    out: Dict[str, Any] = {"arm": arm, "reference": ref, "isolates": isolates(arm, ref), **_coverage(seeds, spec)}
    if seeds:   # the same statistics as infoenh ablate
        paired = compare_by_seed([rr[s] for s in seeds], [ra[s] for s in seeds], metrics, 0, spec.n_boot)
        out.update({k: paired[k] for k in metrics})
    return out


def build_tables(spec: GridSpec, records: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The ``grid.json`` document from the spec and the runs' records."""
    recs = {r["key"]: r for r in records}
    done = [r for r in records if r.get("status") == "done"]
    metrics = [k for k in TABLE_METRICS if done and k in done[0].get("test", {})] or list(TABLE_METRICS)
    labels = spec.labels()
    cells: Dict[str, Any] = {}
    comps: Dict[str, Any] = {}
    for d in spec.datasets:
        lab = labels[d]
        for h in spec.hosts:
            for a in spec.arms:
                cells[f"{lab}/{h}/{a}"] = _cell(spec, recs, lab, h, a, metrics)
                for ref in references(a, spec.arms):
                    comps[f"{lab}/{h}/{a} vs {ref}"] = _comparison(spec, recs, lab, h, a, ref, metrics)
    full_arms = [a for a in spec.arms if ARMS[a]["drop"] is None]
    drop_arms = [a for a in spec.arms if ARMS[a]["drop"] is not None]
    tables = {
        "table1": {"title": "Table 1: each host with and without InfoEnh (full vs baseline)",
                   "arms": [a for a in ("baseline", "full") if a in spec.arms]},
        "table2": {"title": "Table 2: ablation arms", "arms": full_arms},
        "table3": {"title": "Table 3: missing modalities", "arms": (["baseline"] + drop_arms) if drop_arms else []},
    }
    failed = [{"key": r["key"], "error": r.get("error")} for r in records if r.get("status") != "done"]
    synthetic = [labels[d] for d in spec.datasets
                 if d == "synthetic" or any(r.get("synthetic") for r in records if r.get("label") == labels[d])]
    from .ablate import TEST_NOTE
    from .grid_report import holm_families, what_ran

    doc = {"spec": spec.to_dict(), "datasets": labels, "synthetic": synthetic, "metrics": metrics, "tables": tables,
           "cells": cells,
           "comparisons": comps, "failed": failed,
           "runs": sorted(records, key=lambda r: r["key"]),
           "summary": {"runs": len(spec.datasets) * len(spec.hosts) * len(spec.arms) * len(spec.seeds),
                       "done": len(done), "failed": len(failed)},
           "what_ran": what_ran(spec, records),
           "std": "sample standard deviation over the finished seeds (ddof=1); null for a cell of one seed",
           "test": TEST_NOTE.replace("all comparisons and metrics", "the comparisons and metrics of one table and "
                                     "dataset: holm") + "; pairs = seeds finished in both arms"}
    doc["holm"] = holm_families(doc)
    return doc


def _fmt(k: str, v) -> str:
    from .ablate import _num, _scale

    return _num(v, _scale(k))


def _cell_md(cell, k) -> str:
    if not cell["n"]:
        return "missing"
    m = cell["metrics"][k]
    s = f"{_fmt(k, m['mean'])} ± {'n/a' if m['std'] is None else _fmt(k, m['std'])}"
    return s if cell["status"] == "complete" else f"{s} ({cell['status']})"


def _comp_md(comp, k, holm=None) -> str:
    """A comparison's cell: mean [interval] raw p (Holm p of this table, ``holm[k]``; sign-flip p)."""
    from .ablate import _scale, comparison_cell

    if not comp["n"]:
        return "missing"
    c = dict(comp[k])
    c.pop("p_holm", None)
    if holm is not None and k in holm:
        c["p_holm"] = holm[k]
    s = comparison_cell(c, _scale(k))
    return s if comp["status"] == "complete" else f"{s} ({comp['status']})"


def format_markdown(doc: Dict[str, Any]) -> str:
    from .ablate import _title

    spec, metrics = doc["spec"], doc["metrics"]
    head = "| host | arm | " + " | ".join(_title(k) for k in metrics) + " |"
    rule = "|---|---|" + "---|" * len(metrics)
    lines = [f"# Grid: {', '.join(spec['hosts'])} on {', '.join(doc['datasets'].values())}", ""]
    if doc.get("synthetic"):
        lines += [f"**{synthetic_note(doc)}**", ""]
    from .grid_report import added_references, shown, what_ran_lines

    ran = what_ran_lines(doc)             # says the seeds (older files: the line below does)
    lines += [
             ("" if ran else f"Seeds: {spec['seeds']}. ") + "Test metrics at the epoch selected on validation loss; "
             "mean ± sample std over the finished seeds (accuracies and F1 in %). A cell with fewer finished seeds "
             "than asked for says `n=finished/asked`; one with none says `missing`. Paired differences: arm − "
             "reference over the seeds finished in both, with the paired t-test's p.", "",
             f"Runs: {doc['summary']['done']} done, {doc['summary']['failed']} failed, of {doc['summary']['runs']}."]
    added = added_references(spec["arms"], spec.get("requested_arms") or spec["arms"])
    if added:
        lines += ["", f"Arms added as references (not in the spec's arms): {'; '.join(added)}."]
    if ran:
        lines += [""] + [x for ln in ran for x in (ln, "")][:-1]
    from .ablate import statistics_note

    for name in ("table1", "table2", "table3"):
        t = doc["tables"][name]
        if not shown(doc, name):
            continue
        for d, lab in doc["datasets"].items():
            holm = (doc.get("holm") or {}).get(f"{name}/{lab}") or {}
            note = (statistics_note(len(spec["seeds"]), holm.get("family")) if len(spec["seeds"]) > 1
                    else "1 seed: no paired test or interval.")
            lines += ["", f"## {t['title']} — {lab}", "", note, "", head, rule]
            for h in spec["hosts"]:
                for a in t["arms"]:
                    cell = doc["cells"][f"{lab}/{h}/{a}"]
                    lines.append(f"| {h} | {a} | " + " | ".join(_cell_md(cell, k) for k in metrics) + " |")
                for a in t["arms"]:
                    for ref in references(a, spec["arms"]):
                        if name == "table1" and ref != "baseline":
                            continue
                        key = f"{lab}/{h}/{a} vs {ref}"
                        comp, adj = doc["comparisons"][key], (holm.get("p_holm") or {}).get(key, {})
                        lines.append(f"| {h} | {a} − {ref} | " + " | ".join(_comp_md(comp, k, adj) for k in metrics)
                                     + " |")
    if doc["tables"]["table1"]["arms"] != ["baseline", "full"]:
        lines += ["", "No Table 1: it needs the arms baseline and full."]
    if doc["failed"]:
        lines += ["", "## Failed runs", ""]
        lines += [f"- `{f['key']}`: {f['error']}" for f in doc["failed"]]
    return "\n".join(lines) + "\n"


def synthetic_note(doc) -> str:
    """The warning line of tables and figures with SYNTHETIC data."""
    syn = doc.get("synthetic") or []
    what = ", ".join(syn)
    return (f"SYNTHETIC testbed (generated by infoenh; not MOSI): {what}" if len(syn) == len(doc["datasets"])
            else f"SYNTHETIC data (generated by infoenh; not MOSI) in: {what}")


def write_tables(spec: GridSpec, records: Sequence[Dict[str, Any]], out) -> Dict[str, Any]:
    """Write ``OUT/grid.json``, ``OUT/grid.md`` (and ``OUT/grid.png`` when matplotlib is there)."""
    from .checkpoint import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = build_tables(spec, records)
    write_json(doc, out / "grid.json")
    (out / "grid.md").write_text(format_markdown(doc))
    try:
        _figure(doc, out / "grid.png")
    except ImportError:
        pass                              # matplotlib is optional: no figure
    except Exception as e:                # a figure never costs the tables
        import warnings

        warnings.warn(f"grid.png not drawn ({type(e).__name__}: {e})", RuntimeWarning, stacklevel=2)
    return doc


def _figure(doc, path) -> None:
    """One panel per dataset: the first metric (MAE) per host and arm, mean ± std over seeds; a
    partial cell (fewer finished seeds than asked for) hatched, a cell of one seed without an error
    bar, a missing cell labelled ``missing``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec, k = doc["spec"], doc["metrics"][0]
    labels = list(doc["datasets"].values())
    hosts, arms = spec["hosts"], spec["arms"]
    panel_w = 0.8 + 0.35 * len(hosts) * len(arms)
    fig, axes = plt.subplots(1, len(labels), figsize=(panel_w * len(labels) + 2.2, 3.6), squeeze=False)
    width = 0.8 / len(arms)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, lab in zip(axes[0], labels):
        lows, highs, missing = [], [], []
        for j, a in enumerate(arms):
            colour = colours[j % len(colours)]
            for i, h in enumerate(hosts):
                c = doc["cells"][f"{lab}/{h}/{a}"]
                x = i + j * width
                if not c["n"]:
                    missing.append(x)
                    continue
                m = c["metrics"][k]
                err = m["std"]
                ax.bar(x, m["mean"], width, color=colour, label=a if i == 0 else None,
                       hatch="//" if c["status"] != "complete" else None, edgecolor="black", linewidth=0.4,
                       yerr=None if err is None else [err], capsize=2)
                lows.append(m["mean"] - (err or 0))
                highs.append(m["mean"] + (err or 0))
        if lows:
            lo, hi = min(lows), max(highs)
            pad = 0.1 * (hi - lo) if hi > lo else 0.1 * abs(hi) or 0.1
            ax.set_ylim(lo - pad, hi + pad)       # not forced to start at 0: the differences show
        y0 = ax.get_ylim()[0]
        for x in missing:
            ax.text(x, y0, "missing", rotation=90, ha="center", va="bottom", fontsize=7, color="grey")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(hosts))], hosts)
        ax.set_title(lab, fontsize=9)
        ax.set_ylabel(f"test {k}")
    handles, names = [], []
    for ax in axes[0]:
        for hd, nm in zip(*ax.get_legend_handles_labels()):
            if nm not in names:
                handles.append(hd)
                names.append(nm)
    if any(doc["cells"][c]["status"] not in ("complete", "missing") for c in doc["cells"]):
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//"))
        names.append("partial (n < seeds)")
    fig.legend(handles, names, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    title = f"test {k}, mean ± std over seeds"
    from .grid_report import what_ran_lines

    ran = what_ran_lines(doc)
    if ran:
        import textwrap

        title += "\n" + "\n".join(textwrap.fill(ln, 90) for ln in ran)
    if doc.get("synthetic"):
        title = f"{synthetic_note(doc)}\n{title}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
