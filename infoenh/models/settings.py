"""Each host's settings per dataset, transcribed from MMSA's regression configuration, and which
dataset a file is.

Source: ``src/MMSA/config/config_regression.json`` of github.com/thuiar/MMSA at commit
a94e65d07fa1ae0d44e552390074b29b0898edfd (``self_mm`` and ``misa``, ``datasetParams`` for
``mosi``, ``mosei`` and ``sims``; ``commonParams`` give the accumulation and patience, the same
for every dataset: :data:`~infoenh.models.registry.TRAIN_DEFAULTS`). What MMSA's trainers do
with them decides what is transcribed:

- Self-MM (``trains/multiTask/SELF_MM.py``): one Adam with five groups, BERT (decayed /
  not decayed), audio, video, other, each with ``learning_rate_<g>`` and ``weight_decay_<g>``.
- MISA (``trains/singleTask/MISA.py``): one Adam at ``learning_rate`` *without* weight decay
  (``optim.Adam(params, lr=...)``), so the config's ``weight_decay`` (5e-5 on MOSEI and SIMS)
  never reaches the optimiser: it is 0 here on every dataset. Clipping by value at ``grad_clip``.
- The late-fusion host ``lf`` is this project's teaching model; MMSA's ``lf_dnn`` is another
  network, so ``lf`` has one setting for every dataset (its defaults).

SIMS is transcribed but not trained here (:func:`check_trainable`): MMSA fine-tunes
``bert-base-chinese`` on it and scores it with ``eval_sims_regression`` (predictions clipped to
[-1, 1], Mult_acc_2/3/5 with cut points +-0.1 / +-0.7, F1, MAE and Corr of the clipped values);
this package loads ``bert-base-uncased`` by default and computes MOSI's metrics.

Settings of one (host, dataset): ``batch_size``, ``pretrained`` (MMSA's BERT), ``grad_clip`` (MISA), ``lr`` and
``weight_decay`` per optimiser group (``bert``, ``audio``, ``vision``, ``other``; MISA and lf have
``bert`` and ``other``), and ``model``: the host constructor's keywords. Everything can be
overridden: ``--batch-size``, ``--lr`` (every group but BERT), ``--weight-decay``, ``--group-lr
vision=1e-4``, ``--group-weight-decay other=0``, ``--bert-lr``, and ``model_kwargs``. MISA's BERT
follows its ``other`` rate (``--lr`` moves both); its own rate is ``--bert-lr``, and ``--group-lr
bert=`` is refused there.

Which dataset (:func:`detect_dataset`): the published file a checksum identified
(``MOSEI/Processed/unaligned_50.pkl``), else a path component named after a dataset, else the
audio and vision widths of the file (MOSI 5/20, MOSEI 74/35, SIMS 33/709: MMSA's
``feature_dims``); the SYNTHETIC testbed is built in MOSI's layout and gets MOSI's settings.
"""
from __future__ import annotations

from pathlib import PurePath
from typing import Any, Dict, Mapping, Optional, Tuple

MMSA_CONFIG = ("github.com/thuiar/MMSA src/MMSA/config/config_regression.json "
               "@ a94e65d07fa1ae0d44e552390074b29b0898edfd")
DATASETS = ("mosi", "mosei", "sims")
# MMSA's feature_dims (text, audio, vision) of each dataset: the audio and vision widths identify it
FEATURE_WIDTHS = {"mosi": (5, 20), "mosei": (74, 35), "sims": (33, 709)}


def _selfmm(batch, lr, wd, H, lstm_v, post_text, drops, pretrained="bert-base-uncased"):
    """Self-MM's rows: ``lr`` / ``wd`` = (bert, audio, video, other); ``drops`` = post-fusion,
    text, audio, video dropouts; ``pretrained``: MMSA's BERT for the dataset."""
    return {"batch_size": batch, "pretrained": pretrained,
            "lr": dict(zip(("bert", "audio", "vision", "other"), lr)),
            "weight_decay": dict(zip(("bert", "audio", "vision", "other"), wd)),
            "model": {"a_lstm_hidden": 16, "v_lstm_hidden": lstm_v, "audio_out": 16, "video_out": 32,
                      "a_lstm_dropout": 0.0, "v_lstm_dropout": 0.0, "post_fusion_dim": 128,
                      "post_text_dim": post_text, "post_audio_dim": 16, "post_video_dim": 32,
                      **dict(zip(("post_fusion_dropout", "post_text_dropout", "post_audio_dropout",
                                  "post_video_dropout"), drops)), "H": H}}


def _misa(batch, dropout, diff, sim, recon, clip, pretrained="bert-base-uncased"):
    """MISA's rows. ``bert_follows``: BERT is trained at the rate of the group named (MMSA's single
    optimiser), so ``--lr`` and ``--group-lr other=`` move BERT's rate with it."""
    return {"batch_size": batch, "pretrained": pretrained, "grad_clip": clip, "bert_follows": "other",
            "lr": {"bert": 1e-4, "other": 1e-4},
            "weight_decay": {"bert": 0.0, "other": 0.0},
            "model": {"hidden_size": 128, "dropout": dropout, "diff_weight": diff, "sim_weight": sim,
                      "recon_weight": recon}}


_LF = {"batch_size": 32, "pretrained": "bert-base-uncased", "lr": {"bert": 5e-5, "other": 1e-3}, "weight_decay": {"bert": 0.0, "other": 0.0},
       "model": {}}

HOST_SETTINGS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "selfmm": {
        "mosi": _selfmm(16, (5e-5, 5e-3, 5e-3, 1e-3), (1e-3, 1e-3, 1e-3, 1e-3), 3.0, 32, 32, (0.0, 0.1, 0.1, 0.0)),
        "mosei": _selfmm(32, (5e-5, 5e-3, 1e-4, 1e-3), (1e-3, 0.0, 0.0, 0.01), 3.0, 32, 32, (0.1, 0.0, 0.0, 0.0)),
        "sims": _selfmm(32, (5e-5, 5e-3, 5e-3, 1e-3), (1e-3, 0.01, 0.01, 1e-3), 1.0, 64, 64, (0.0, 0.1, 0.1, 0.0),
                        "bert-base-chinese"),
    },
    "misa": {
        "mosi": _misa(16, 0.2, 0.1, 0.3, 1.0, 0.8),
        "mosei": _misa(64, 0.5, 0.3, 0.8, 1.0, 0.8),
        "sims": _misa(64, 0.0, 0.3, 1.0, 0.8, 1.0, "bert-base-chinese"),
    },
    "lf": {d: _LF for d in DATASETS},
}


def settings_for(model: str, dataset: Optional[str]) -> Dict[str, Any]:
    """The settings of host ``model`` on ``dataset`` (None: MOSI's, the hosts' defaults)."""
    dataset = dataset or "mosi"
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} for the host settings; choose one of {DATASETS}")
    return HOST_SETTINGS[model][dataset]


# datasets whose settings are transcribed but that this package cannot train and score as MMSA does
UNTRAINABLE = {"sims": "SIMS needs MMSA's Chinese BERT (bert-base-chinese) and its SIMS metrics (eval_sims_regression: "
                       "clipped to [-1, 1], Mult_acc_2/3/5), neither implemented here; train on MOSI or MOSEI"}


def check_trainable(dataset: Optional[str]) -> None:
    """Refuse, in one line, a dataset whose settings are transcribed but that this package cannot
    train as MMSA does (SIMS: module docstring)."""
    if dataset in UNTRAINABLE:
        raise ValueError(f"{dataset}: {UNTRAINABLE[dataset]}")


def group_settings(model: str, dataset: Optional[str], *, lr: Optional[float] = None,
                   weight_decay: Optional[float] = None, group_lr: Optional[Mapping[str, float]] = None,
                   group_weight_decay: Optional[Mapping[str, float]] = None,
                   bert_lr: Optional[float] = None) -> Tuple[Dict[str, float], Dict[str, float]]:
    """``(lr per group, weight decay per group)`` after the overrides: ``lr`` / ``weight_decay``
    set every group but BERT's, then ``group_lr`` / ``group_weight_decay`` set single groups,
    ``bert_lr`` BERT's rate. A host whose BERT follows another group (MISA: ``bert_follows``, one
    optimiser as MMSA's) gives BERT that group's final rate; a ``bert`` entry of ``group_lr`` is then
    refused (use ``bert_lr``). The rates returned are the ones the optimiser uses."""
    s = settings_for(model, dataset)
    rates, decays = dict(s["lr"]), dict(s["weight_decay"])
    for name in rates:
        if name != "bert":
            rates[name] = rates[name] if lr is None else float(lr)
            decays[name] = decays[name] if weight_decay is None else float(weight_decay)
    for given, into, flag in ((group_lr, rates, "--group-lr"), (group_weight_decay, decays, "--group-weight-decay")):
        for name, v in (given or {}).items():
            if name not in into:
                raise ValueError(f"{flag}: host {model} has no parameter group {name!r}; its groups are "
                                 f"{', '.join(into)}")
            into[name] = float(v)
    follows = s.get("bert_follows")
    if follows is not None:
        if "bert" in (group_lr or {}):
            raise ValueError(f"--group-lr bert=...: host {model} trains BERT at its {follows!r} rate (one optimiser, "
                             "as MMSA); set BERT's own rate with --bert-lr")
        rates["bert"] = rates[follows]
    if bert_lr is not None:
        rates["bert"] = float(bert_lr)
    return rates, decays


def detect_dataset(ds) -> Tuple[str, str]:
    """``(dataset, how it was told)`` for loaded data ``ds`` (module docstring); ``("mosi", ...)``
    with the reason when nothing identifies it."""
    if bool(getattr(ds, "synthetic", False)):
        return "mosi", "the SYNTHETIC testbed (MOSI's layout)"
    meta = getattr(ds, "meta", None) or {}
    known = meta.get("known_as")
    if known:
        name = PurePath(str(known)).parts[0].lower()
        if name in DATASETS:
            return name, f"published file {known} (checksum)"
    path = meta.get("path")
    if path:
        for part in reversed(PurePath(str(path)).parts):
            stem = part.lower().split(".")[0]
            if stem in DATASETS:
                return stem, f"path component {part!r}"
    dims = getattr(ds, "dims", None) or {}
    widths = (dims.get("audio"), dims.get("vision"))
    for name, w in FEATURE_WIDTHS.items():
        if widths == w:
            return name, f"audio/vision widths {w[0]}/{w[1]}"
    return "mosi", "not recognised (MOSI's settings, the hosts' defaults; set --settings-of to choose)"
