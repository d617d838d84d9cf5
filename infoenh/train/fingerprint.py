"""What a run folder's results were computed from: the configuration, the data's content and the
code, as one JSON document whose hash decides whether a checkpoint may be resumed or a finished
seed reused.

    fp = run_fingerprint(cfg.resolved(), ds)        # {"config": {...}, "data": {...}, "code": {...}}
    fingerprint_hash(fp)                            # 'sha256:…' (stored in checkpoint.pt and run.json)
    fingerprint_diff(old_fp, fp)                    # ['data.content_sha256: 1a2b… -> 9f8e…', ...]

- ``config``: every option of :class:`~infoenh.train.config.TrainConfig` except ``quiet``,
  ``device`` and ``num_workers`` (how a run is shown and where it runs; a run may resume on another
  device, and ``run.json`` records the device), normalised (:func:`normalised_config`): an
  ``infoenh_kwargs`` entry equal to :class:`~infoenh.module.InfoEnh`'s default and a
  ``model_kwargs`` entry equal to the host's default are left out, so a flag that spells out a
  default (``--ot-iters 100``, ``--selfmm-heads unimodal``) names the same run as no flag.
- ``data``: the SHA-256 of the arrays the model is trained and evaluated on (every split's features,
  masks, labels and ids, after cleaning), plus what identifies their source for a reader of the
  message: the file's own SHA-256 for a file, the generator's seed and knobs for the SYNTHETIC
  testbed. Two files with the same shapes but other values never share a fingerprint.
- ``code``: the package version and a SHA-256 of the package's Python sources, so a checkpoint is
  not resumed by other code.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping

import numpy as np

from ..models.registry import TEXT_MODE_DEFAULTS

SPLITS = ("train", "valid", "test")


@lru_cache(maxsize=1)
def code_fingerprint() -> Dict[str, str]:
    """``{"version": infoenh.__version__, "source_sha256": …}`` over every ``.py`` file of the package."""
    from .. import __version__

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return {"version": __version__, "source_sha256": h.hexdigest()}


def _update_array(h, x: np.ndarray) -> None:
    x = np.ascontiguousarray(x)
    h.update(f"{x.dtype.str}{x.shape}".encode())
    h.update(memoryview(x).cast("B"))


def _hash_split(h, split) -> None:
    if all(hasattr(split, a) for a in ("features", "masks", "labels", "ids")):
        for m in sorted(split.features):
            h.update(m.encode())
            _update_array(h, split.features[m])
            _update_array(h, split.masks[m])
        _update_array(h, np.asarray(split.labels))
        h.update("\0".join(map(str, split.ids)).encode())
        return
    # any other torch Dataset of dict items: hash item by item (slower, same guarantee)
    for i in range(len(split)):
        item = split[i]
        for k in sorted(item):
            v = item[k]
            h.update(k.encode())
            if hasattr(v, "detach"):
                _update_array(h, v.detach().cpu().numpy())
            else:
                h.update(repr(v).encode())


def content_sha256(ds: Mapping) -> str:
    """SHA-256 of every split's arrays (cached on ``ds`` when it allows attributes)."""
    cached = getattr(ds, "_infoenh_content_sha256", None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for s in SPLITS:
        h.update(s.encode() + b"\0")
        _hash_split(h, ds[s])
    digest = h.hexdigest()
    try:
        ds._infoenh_content_sha256 = digest
    except AttributeError:
        pass
    return digest


def data_fingerprint(ds: Mapping) -> Dict[str, Any]:
    """The data part: content hash, sizes, widths, and the source (file sum or generator knobs)."""
    first = ds["train"]
    out: Dict[str, Any] = {
        "content_sha256": content_sha256(ds),
        "sizes": {s: len(ds[s]) for s in SPLITS},
        "dims": dict(first.dims) if hasattr(first, "dims") else dict(getattr(ds, "dims", {})),
        "synthetic": bool(getattr(ds, "synthetic", False)),
    }
    meta = getattr(ds, "meta", None) or {}
    if meta.get("sha256"):
        out["file_sha256"] = meta["sha256"]
    if meta.get("inf_policy"):
        out["inf_policy"] = meta["inf_policy"]
    marker = getattr(ds, "synthetic_info", None)
    if marker:
        out["generator"] = {"seed": marker.get("seed"), "version": marker.get("version"),
                            "knobs": marker.get("knobs")}
    return json.loads(json.dumps(out, sort_keys=True, default=str))


# the host constructor's arguments that are not options of the host: the data, the modalities,
# InfoEnh and the pooling are set by build_model from the rest of the configuration
HOST_STRUCTURAL = ("self", "dims", "modalities", "infoenh", "pool", "n_train")
# host keywords whose effective default build_model changes with the text mode
MODE_DEPENDENT = {(name, key) for (name, _), keys in TEXT_MODE_DEFAULTS.items() for key in keys}


def keyword_defaults(fn, exclude=()) -> Dict[str, Any]:
    """``{name: default}`` of the parameters of ``fn`` that have a default, less ``exclude``."""
    return {n: p.default for n, p in inspect.signature(fn).parameters.items()
            if n not in exclude and p.default is not inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}


def infoenh_defaults() -> Dict[str, Any]:
    """InfoEnh's constructor defaults (``d``, ``k``, ``reg``, ``ot_iters``, ...)."""
    from ..module import InfoEnh

    return keyword_defaults(InfoEnh.__init__, ("self", "in_dims"))


def host_defaults(model: str) -> Dict[str, Any]:
    """The host's constructor defaults (its own options: ``heads``, ``lengths``, widths, ...)."""
    from ..models.registry import MODELS

    return keyword_defaults(MODELS[model].__init__, HOST_STRUCTURAL)


def _json(v: Any) -> Any:
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def _is_default(v: Any, defaults: Mapping[str, Any], key: str) -> bool:
    if key not in defaults:
        return False
    d = _json(defaults[key])
    return isinstance(v, bool) == isinstance(d, bool) and v == d


def normalised_config(d: Dict[str, Any]) -> Dict[str, Any]:
    """The configuration part of a fingerprint with every option that spells out a default left
    out: ``infoenh_kwargs`` entries equal to InfoEnh's constructor defaults, ``model_kwargs``
    entries equal to the host's (``heads="unimodal"`` on selfmm, ``lengths="text"`` on misa).
    Self-MM's ``text_pool`` is kept as given: its default depends on the text mode."""
    out = dict(d)
    ie = out.get("infoenh_kwargs")
    if isinstance(ie, Mapping) and ie:
        defaults = infoenh_defaults()
        out["infoenh_kwargs"] = {k: v for k, v in ie.items() if not _is_default(v, defaults, k)}
    mk, model = out.get("model_kwargs"), out.get("model")
    if isinstance(mk, Mapping) and mk and isinstance(model, str):
        from ..models.registry import MODELS

        if model in MODELS:
            defaults = host_defaults(model)
            out["model_kwargs"] = {k: v for k, v in mk.items()
                                   if (model, k) in MODE_DEPENDENT or not _is_default(v, defaults, k)}
    return out


def run_fingerprint(cfg, ds: Mapping) -> Dict[str, Any]:
    """``{"config", "data", "code"}`` for the resolved ``cfg`` trained on ``ds``."""
    return {"config": normalised_config(json.loads(cfg.fingerprint())), "data": data_fingerprint(ds),
            "code": code_fingerprint()}


def fingerprint_hash(fp: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()


def _short(v: Any) -> str:
    if isinstance(v, str) and len(v) > 20:          # hashes: enough to tell them apart
        return json.dumps(v[:12] + "…", ensure_ascii=False)
    s = json.dumps(v, sort_keys=True, default=str, ensure_ascii=False)
    return s if len(s) <= 60 else s[:57] + "..."


def fingerprint_diff(old: Any, new: Mapping[str, Any], prefix: str = "") -> List[str]:
    """Lines ``'key: old -> new'`` for every leaf that differs (an old record with no structured
    fingerprint gives one line saying so)."""
    if not isinstance(old, Mapping):
        return ["the folder was written by an older version of infoenh (no comparable fingerprint)"]
    lines: List[str] = []
    for k in sorted(set(old) | set(new)):
        key = f"{prefix}{k}"
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            lines += fingerprint_diff(a, b, key + ".")
        elif a != b:
            lines.append(f"{key}: {_short(a)} -> {_short(b)}")
    return lines


class FingerprintMismatch(RuntimeError):
    """A run folder holds a checkpoint or result of another configuration, data or code."""


def mismatch_error(what: str, path, old: Any, new: Mapping[str, Any]) -> FingerprintMismatch:
    diff = fingerprint_diff(old, new)
    shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
    if not diff:   # the recorded inputs equal ours, but the stored hash is absent or not theirs
        shown = ("its fingerprint hash is missing or does not match the inputs it records: the file is incomplete "
                 "or was edited")
    return FingerprintMismatch(
        f"{path} holds a {what} computed from other inputs ({shown}). Nothing was reused. To start afresh, "
        "re-run with --fresh (deletes the folder of each run that differs) or choose another --out")
