"""What ran: the options that differ from the host's defaults, runs that stopped at the epoch cap,
the software and data a run used, and a grid spec's hash. ``results.json``, ``run.json``,
``ablation.*`` and ``grid.*`` read these so that a table says how it was made.

    options_changed(cfg)        # {"epochs": 3, "infoenh_kwargs.k": 8, "text": "frozen"}
    at_cap(run, cap)            # True: the selected epoch is the last one allowed (not converged)
    environment()               # versions, threads, command line
    data_provenance(ds)         # data_arrays_sha256, data_file_sha256, whether it matched a published sum
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

# fields that name the arm or the run (the tables say them otherwise) or only how it is shown/where it runs
_NOT_OPTIONS = ("model", "infoenh", "modalities", "seed", "quiet", "num_workers")


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string to the second: ``2026-12-08T03:14:15Z``."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def utc_iso(seconds_since_epoch: float) -> str:
    """``time.time()`` seconds as :func:`utc_now` writes them."""
    t = _dt.datetime.fromtimestamp(seconds_since_epoch, _dt.timezone.utc).replace(microsecond=0)
    return t.isoformat().replace("+00:00", "Z")


def options_changed(cfg, detected: Optional[str] = None) -> Dict[str, Any]:
    """Every option of the :class:`~infoenh.train.config.TrainConfig` ``cfg`` whose resolved value
    differs from the host's default (the same host, arm and modalities with nothing set, under the
    same dataset's settings, ``settings_of``), as ``{name: value}``; InfoEnh's and the host's own
    options as ``infoenh_kwargs.<key>`` and ``model_kwargs.<key>`` (an entry spelling out a default
    is not a change). ``settings_of`` is listed when set and not the dataset ``detected`` from the
    data (:func:`infoenh.models.settings.detect_dataset`). The arm (``infoenh``, ``modalities``)
    and the seed are not options here: the tables name them."""
    import dataclasses

    from .fingerprint import normalised_config

    settings = getattr(cfg, "settings_of", None)
    mine = normalised_config(json.loads(json.dumps(cfg.resolved().to_dict(), default=str)))
    default = dataclasses.replace(type(cfg)(), model=cfg.model, infoenh=cfg.infoenh, modalities=cfg.modalities)
    if settings is not None:
        default = dataclasses.replace(default, settings_of=settings)
    base = normalised_config(json.loads(json.dumps(default.resolved().to_dict(), default=str)))
    out: Dict[str, Any] = {}
    for k, v in mine.items():
        if k in _NOT_OPTIONS or k == "settings_of":
            continue
        if isinstance(v, dict):
            b = base.get(k) or {}
            out.update({f"{k}.{kk}": vv for kk, vv in sorted(v.items()) if b.get(kk, object()) != vv})
        elif v != base.get(k):
            out[k] = v
    if settings is not None and settings != detected:
        out["settings_of"] = settings
    return out


def options_text(options: Mapping[str, Any]) -> str:
    """``"epochs: 3, infoenh_kwargs.k: 8"``; ``"none (the host's defaults)"`` when empty."""
    if not options:
        return "none (the host's defaults)"
    return ", ".join(f"{k}: {json.dumps(v) if isinstance(v, (str, bool)) or v is None else v}"
                     for k, v in options.items())


def at_cap(run: Mapping[str, Any], cap: Optional[int]) -> bool:
    """True when the run's selected epoch is the last epoch allowed (``cap``): validation loss was
    still improving when the cap stopped the run, so it had not converged. Always False without a
    cap (the run then ends by early stopping)."""
    return cap is not None and run.get("best_epoch") == cap


def cap_count(runs: Sequence[Mapping[str, Any]], cap: Optional[int]) -> Dict[str, Any]:
    """``{"cap", "at_cap", "runs", "seeds_at_cap"}``: how many runs selected the last epoch allowed."""
    hit = [r.get("seed") for r in runs if at_cap(r, cap)]
    return {"cap": cap, "at_cap": len(hit), "runs": len(runs), "seeds_at_cap": hit}


def cap_text(c: Mapping[str, Any]) -> str:
    """One line for a table from :func:`cap_count`."""
    if c["cap"] is None:
        return f"no epoch cap: all {c['runs']} runs ended by early stopping"
    if c["cap"] == 1:                    # one epoch: no later epoch to compare the selected one with
        return "epoch cap 1: convergence not assessed (one epoch allowed, so nothing to compare)"
    note = " (not converged: the validation loss was still improving)" if c["at_cap"] else ""
    return f"epoch cap {c['cap']}: {c['at_cap']} of {c['runs']} runs selected the last epoch allowed{note}"


def environment() -> Dict[str, Any]:
    """``{"versions": {python, torch, numpy, infoenh}, "threads", "command_line", "platform"}``:
    what the run was computed with (torch's intra-op thread count at the time of the call)."""
    import numpy
    import torch

    from .. import __version__

    return {"versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "numpy": numpy.__version__, "infoenh": __version__},
            "threads": int(torch.get_num_threads()),
            "command_line": list(sys.argv),
            "platform": platform.platform()}


def data_provenance(ds) -> Dict[str, Any]:
    """The two hashes of the data, named plainly, and whether the file was verified:

    - ``data_arrays_sha256``: SHA-256 of the arrays trained and evaluated on (after cleaning;
      :func:`infoenh.train.fingerprint.content_sha256`), for files and generated data alike;
    - ``data_file_sha256``: SHA-256 of the file as read (what ``infoenh data check`` prints); None
      for generated or in-memory data, or when loaded with ``verify=False``;
    - ``data_file_sha256_published``: True when the file's sum matched a published one (MMSA's
      table, or a sum the user gave, ``data_file_sha256_matched``), False when it is not a known
      file, None when nothing was checked."""
    from .fingerprint import content_sha256

    meta = getattr(ds, "meta", None) or {}
    status = meta.get("checksum")
    return {"data_arrays_sha256": content_sha256(ds), "data_file_sha256": meta.get("sha256"),
            "data_file_sha256_published": {"verified": True, "unknown": False}.get(status),
            "data_file_sha256_matched": meta.get("known_as")}


def arrays_sha256(doc: Mapping[str, Any]) -> Optional[str]:
    """The arrays' hash of a ``results.json`` ``config`` (or a run record), under its name now or the
    name older files used (``data_sha256``)."""
    return doc.get("data_arrays_sha256", doc.get("data_sha256"))


def spec_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of a grid spec (its checked form, :meth:`~infoenh.train.grid.GridSpec.to_dict`),
    key order ignored: two grids with any option different have different hashes."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


__all__ = ["utc_now", "utc_iso", "options_changed", "options_text", "at_cap", "cap_count", "cap_text",
           "environment", "data_provenance", "arrays_sha256", "spec_hash"]


def run_metadata(ds, t_start: float) -> Dict[str, Any]:
    """What ``run.json`` records of how a run was made: ``started_at`` (``t_start``, a
    ``time.perf_counter()`` reading, turned into UTC), ``finished_at`` (now), ``environment`` and the
    data's hashes (:func:`data_provenance`)."""
    import time

    now = time.time()
    return {"started_at": utc_iso(now - (time.perf_counter() - t_start)), "finished_at": utc_iso(now),
            "environment": environment(), **data_provenance(ds)}
