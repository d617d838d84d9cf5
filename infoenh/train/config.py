"""Training configuration: what the user sets, and the host's defaults filled in where not set."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

from .._validate import MODALITIES, check_modalities
from ..data.dataset import EVAL_ORDERS
from ..fia import FIA_MODES, OT_STOPS
from ..infonce import REDUCTIONS
from ..models.misa import LENGTHS
from ..models.registry import ALL_VARIANTS, CONTROL_VARIANTS, INITS, MODELS, TRAIN_DEFAULTS
from ..models.settings import DATASETS, check_trainable, detect_dataset, group_settings, settings_for
from ..models.selfmm import HEADS

CLIP_MODES = ("norm", "value")
PRECISIONS = ("auto", "bf16", "fp32")
ACCUM_TAILS = ("drop", "step")
CLIP_AT = ("backward", "step")
VALID_LOSSES = ("mmsa", "batch_mean", "sample_mean")
# the training-loop switches: field -> (CLI flag, choices); None in TrainConfig = the host's default
LOOP_SWITCHES = {"accum_tail": ("--accum-tail", ACCUM_TAILS), "clip_at": ("--clip-at", CLIP_AT),
                 "valid_loss": ("--valid-loss", VALID_LOSSES)}


@dataclass
class TrainConfig:
    """One training run (one seed). ``None`` means "the host's default" (see
    :data:`infoenh.models.registry.TRAIN_DEFAULTS`).

    model: "lf", "selfmm" or "misa".  infoenh: "full", "none", "no_fib" or "no_fia" (see
    :func:`infoenh.models.infoenh_config`).  modalities: the modalities the model is built on.
    epochs: the most epochs to run; after :meth:`resolved`, ``None`` means no cap (run until early
    stopping, MMSA's ``while True``: the default of selfmm and misa; lf's default is 40).
    patience: early stopping (epochs without a better validation loss).  accum_steps: batches per
    optimiser step.  lr: overrides every parameter group's rate.
    grad_clip: max norm (or value, ``grad_clip_mode="value"``); 0 turns clipping off.

    The training loop's switches (MMSA's behaviour is the default of selfmm and misa):
    accum_tail: "drop" (MMSA: the batches after the last full accumulation window of an epoch run
    forward and backward but their gradient is never stepped; the next epoch's ``zero_grad``
    discards it) or "step" (one more, shorter, step at the end of the epoch; lf's default).
    clip_at: "backward" (clip after every ``backward``, on the accumulated gradient: MMSA's MISA)
    or "step" (once, before each optimiser step; lf's default; selfmm does not clip).
    valid_loss: what selects the epoch: "mmsa" (mean over batches of the batch-mean task loss,
    rounded to 4 decimals, as MMSA; every host's default), "batch_mean" (the same, unrounded) or
    "sample_mean" (the mean over samples; differs when the last batch is short).
    lr_schedule: "none" or "plateau" (ReduceLROnPlateau on validation loss, factor 0.5, patience 3).
    init: "seeded" (default: every module's start drawn from (seed, its path), so the arms of an
    ablation share the start of every module they share) or "independent" (drawn in construction
    order from the global generator, the earlier behaviour: only to measure what the shared start
    changes; :func:`infoenh.models.build_model`).
    eval_order: "shuffled" (default, MMSA: the valid and test batches shuffled, each split by a
    generator seeded from ``seed``; it decides which clips share the short last batch of MMSA's
    batch-mean validation loss) or "file" (file order, this project's earlier behaviour).
    deterministic: deterministic kernels (CPU) and cuDNN's deterministic mode without autotuning
    (CUDA, as MMSA's ``setup_seed``).
    device: "cpu", "cuda" or None (CUDA when available).
    precision: "fp32" (default: float32 everywhere, as MMSA trains), "bf16" (bf16 autocast of the
    encoders on any device, the CPU included) or "auto" (bf16 autocast on CUDA, float32 on the
    CPU). ``amp=False`` is the same as "fp32". Under autocast only
    the encoders run in bf16: InfoEnh, the pooling, the head, the losses, the metrics and model
    selection are float32 on every device (:meth:`infoenh.models.base.HostModel.forward`).
    infoenh_kwargs / model_kwargs: passed to InfoEnh / the host.
    settings_of: whose host settings apply (:mod:`infoenh.models.settings`, MMSA's per-dataset
    configuration: batch size, per-group learning rates and weight decays, MISA's clipping, the
    host's widths, dropouts and loss weights): "mosi", "mosei", "sims", or None: told from the data
    by :func:`for_data` (``fit`` and the runners call it); resolved without data, None is MOSI's.
    group_lr / group_weight_decay: one optimiser group's rate / decay, e.g. ``{"vision": 1e-4}``
    (over ``lr`` / ``weight_decay``, which set every group but BERT's).
    text: "auto" (fine-tune BERT on real data that carries ``text_bert``, frozen features otherwise
    and on the SYNTHETIC testbed), "finetune" or "frozen". bert: the BERT weights (hub name or
    local folder). bert_lr: BERT's learning rate (default: the host's, Self-MM 5e-5 as MMSA).
    """

    model: str = "lf"
    infoenh: str = "full"
    modalities: Tuple[str, ...] = MODALITIES
    seed: int = 1111
    epochs: Optional[int] = None
    patience: Optional[int] = None
    batch_size: Optional[int] = None
    accum_steps: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    grad_clip: Optional[float] = None
    grad_clip_mode: Optional[str] = None
    accum_tail: Optional[str] = None
    clip_at: Optional[str] = None
    valid_loss: Optional[str] = None
    lr_schedule: str = "none"
    device: Optional[str] = None
    amp: bool = True
    precision: str = "fp32"
    deterministic: bool = True
    eval_order: str = "shuffled"
    init: str = "seeded"
    settings_of: Optional[str] = None
    group_lr: Dict[str, float] = field(default_factory=dict)
    group_weight_decay: Dict[str, float] = field(default_factory=dict)
    num_workers: int = 0
    text: str = "auto"
    bert: str = "bert-base-uncased"
    bert_lr: Optional[float] = None
    infoenh_kwargs: Dict[str, Any] = field(default_factory=dict)
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    quiet: bool = False

    def resolved(self) -> "TrainConfig":
        """A copy with the host's defaults filled in and every field checked."""
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {sorted(MODELS)}")
        if self.infoenh not in ALL_VARIANTS:
            raise ValueError(f"unknown InfoEnh variant {self.infoenh!r}; choose one of {ALL_VARIANTS}")
        mods = tuple(self.modalities)
        if not mods:
            raise ValueError("modalities must not be empty")
        check_modalities(mods, "TrainConfig.modalities")
        d = TRAIN_DEFAULTS[self.model]
        if self.settings_of is not None and self.settings_of not in DATASETS:
            raise ValueError(f"--settings-of must be one of {', '.join(DATASETS)} (or left out: told from the data), "
                             f"got {self.settings_of!r}")
        check_trainable(self.settings_of)
        if self.infoenh in CONTROL_VARIANTS and (self.infoenh_kwargs or {}).get("fia_mode") == "feature":
            raise ValueError(f"--fia-mode feature cannot be combined with the {self.infoenh} control: in feature mode "
                             "the uniform plan gives each row its own mean (nothing cross-modal), so it does not "
                             "control for FIA; use --fia-mode token")
        hs = settings_for(self.model, self.settings_of)
        d = {**d, "batch_size": hs["batch_size"], "grad_clip": hs.get("grad_clip", d["grad_clip"])}
        out = dataclasses.replace(
            self,
            modalities=tuple(m for m in MODALITIES if m in mods),
            epochs=self.epochs if self.epochs is not None else d["max_epochs"],
            patience=self.patience if self.patience is not None else d["patience"],
            batch_size=self.batch_size if self.batch_size is not None else d["batch_size"],
            accum_steps=self.accum_steps if self.accum_steps is not None else d["accum_steps"],
            grad_clip=self.grad_clip if self.grad_clip is not None else d["grad_clip"],
            grad_clip_mode=self.grad_clip_mode if self.grad_clip_mode is not None else d["grad_clip_mode"],
            **{k: getattr(self, k) if getattr(self, k) is not None else d[k] for k in LOOP_SWITCHES},
        )
        for name in ("epochs", "patience", "batch_size", "accum_steps"):
            v = getattr(out, name)
            if name == "epochs" and v is None:
                continue                                   # no cap: until early stopping (MMSA)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {v!r}")
        for name, (flag, choices) in LOOP_SWITCHES.items():
            if getattr(out, name) not in choices:
                raise ValueError(f"{flag} must be one of {', '.join(choices)}, got {getattr(out, name)!r}")
        out = dataclasses.replace(out, group_lr=dict(out.group_lr or {}),
                                  group_weight_decay=dict(out.group_weight_decay or {}))
        group_settings(out.model, out.settings_of, group_lr=out.group_lr, group_weight_decay=out.group_weight_decay)
        _check_model_kwargs(out)
        _check_numbers(out)
        if out.grad_clip is not None and out.grad_clip <= 0:
            out = dataclasses.replace(out, grad_clip=None)
        if out.grad_clip_mode not in CLIP_MODES:
            raise ValueError(f"grad_clip_mode must be one of {CLIP_MODES}, got {out.grad_clip_mode!r}")
        if out.text not in ("auto", "finetune", "frozen"):
            raise ValueError(f"text must be 'auto', 'finetune' or 'frozen', got {out.text!r}")
        if out.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {out.precision!r}")
        if not out.amp:
            out = dataclasses.replace(out, precision="fp32", amp=True)
        if out.init not in INITS:
            raise ValueError(f"--init must be one of {', '.join(INITS)}, got {out.init!r}")
        if out.eval_order not in EVAL_ORDERS:
            raise ValueError(f"--eval-order must be one of {', '.join(EVAL_ORDERS)}, got {out.eval_order!r}")
        if out.lr_schedule not in ("none", "plateau"):
            raise ValueError(f"lr_schedule must be 'none' or 'plateau', got {out.lr_schedule!r}")
        if out.device not in (None, "cpu", "cuda") and not str(out.device).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu', 'cuda' or None (auto), got {out.device!r}")
        return out

    @property
    def autocast(self):
        """What :func:`infoenh.train.trainer.autocast_for` takes: True (bf16 on CUDA only), "bf16"
        (on any device) or False."""
        if not self.amp or self.precision == "fp32":
            return False
        return "bf16" if self.precision == "bf16" else True

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["modalities"] = list(self.modalities)
        return d

    def fingerprint(self) -> str:
        """What must match for a checkpoint to be resumed: everything but logging and where it runs
        (a run may be resumed on another device; it is then no longer bit-identical)."""
        d = self.to_dict()
        for k in ("quiet", "device", "num_workers"):
            d.pop(k, None)
        return json.dumps(d, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise KeyError(f"unknown TrainConfig fields {sorted(unknown)}")
        d = dict(d)
        if "modalities" in d:
            d["modalities"] = tuple(d["modalities"])
        return cls(**d)


# InfoEnh options the CLI exposes: (test, accepted range) for each
_IE_RANGES = {
    "alpha": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0 (the paper uses 0.5)"),
    "tau": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "reg": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0 (default 0.1)"),
    "k": (lambda v: float(v).is_integer() and v >= 1, "an integer >= 1"),
    "d": (lambda v: float(v).is_integer() and v >= 1, "an integer >= 1"),
    "ot_iters": (lambda v: float(v).is_integer() and v >= 1, "an integer >= 1"),
    "ot_tol": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
}
# InfoEnh options with a fixed set of values: name -> (CLI flag, choices)
_IE_CHOICES = {
    "infonce_reduction": ("--infonce-reduction", REDUCTIONS),
    "ot_stop": ("--ot-stop", OT_STOPS),
    "fia_mode": ("--fia-mode", FIA_MODES),
    "straight_through": ("--straight-through", (True, False)),
    "fia_symmetric": ("--fia-symmetric", (True, False)),
}
# the InfoEnh options the CLI exposes (infoenh_kwargs keys; the flag is --<key with dashes>), in
# the order of its --help; a key is set only when its flag is given
CLI_INFOENH_OPTIONS = ("k", "d", "reg", "alpha", "fia_mode", "ot_iters", "ot_stop", "ot_tol", "infonce_reduction",
                       "straight_through", "fia_symmetric")
# host options the CLI exposes: model_kwargs key -> (CLI flag, the host it belongs to, choices)
HOST_OPTIONS = {
    "lengths": ("--misa-lengths", "misa", LENGTHS),
    "heads": ("--selfmm-heads", "selfmm", HEADS),
}
_FIA_VARIANTS = ("full", "no_fib", "fia_only", "fia_uniform", "full_uniform")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_numbers(c: "TrainConfig") -> None:
    """Every numeric option in its range, with the CLI flag named; FIA only with >= 2 modalities."""
    checks = (("lr", c.lr, lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
              ("bert_lr", c.bert_lr, lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
              ("weight_decay", c.weight_decay, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
              ("grad_clip", c.grad_clip, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0 (0 = off)"))
    for name, v, ok, rng in checks:
        if v is not None and (not _number(v) or not ok(v)):
            raise ValueError(f"--{name.replace('_', '-')} must be {rng}, got {v!r}")
    for flag, given, ok, rng in (("--group-lr", c.group_lr, lambda v: math.isfinite(v) and v > 0, "> 0"),
                                 ("--group-weight-decay", c.group_weight_decay, lambda v: math.isfinite(v) and v >= 0,
                                  ">= 0")):
        for name, v in (given or {}).items():
            if not _number(v) or not ok(v):
                raise ValueError(f"{flag} {name}=... must be a finite number {rng}, got {v!r}")
    for name, v in (c.infoenh_kwargs or {}).items():
        if name in _IE_RANGES and v is not None:
            ok, rng = _IE_RANGES[name]
            if not _number(v) or not ok(v):
                raise ValueError(f"--{name.replace('_', '-')} must be {rng}, got {v!r}")
        if name in _IE_CHOICES and v is not None:
            flag, choices = _IE_CHOICES[name]
            if not any(v is x or (isinstance(x, str) and v == x) for x in choices):
                raise ValueError(f"{flag} must be one of {', '.join(map(str, choices))}, got {v!r}")
    if c.infoenh in _FIA_VARIANTS and len(c.modalities) < 2:
        raise ValueError(f"FIA aligns pairs of modalities and needs at least two; with --modalities "
                         f"{' '.join(c.modalities)} add --no-fia (InfoEnh without FIA) or --no-infoenh (the host "
                         "alone)")


def _check_model_kwargs(c: "TrainConfig") -> None:
    """Host options given to the right host, with a valid value (each names its CLI flag)."""
    for name, v in (c.model_kwargs or {}).items():
        if name not in HOST_OPTIONS:
            continue
        flag, host, choices = HOST_OPTIONS[name]
        if c.model != host:
            raise ValueError(f"{flag} applies to --model {host} only (this run is --model {c.model}); drop {flag}")
        if v not in choices:
            raise ValueError(f"{flag} must be one of {', '.join(choices)}, got {v!r}")


class InactiveOptionWarning(UserWarning):
    """An option was given that the chosen configuration never reads (:func:`inactive_options`)."""


# InfoEnh options (infoenh_kwargs key) by the part of InfoEnh that reads them
_FIA_OPTIONS = ("reg", "fia_mode", "ot_iters", "ot_stop", "ot_tol", "fia_symmetric")
_SINKHORN_OPTIONS = ("reg", "ot_iters", "ot_stop", "ot_tol", "fia_symmetric")
_UNIFORM = ("fia_uniform", "full_uniform")
_GATE_OPTIONS = ("straight_through", "alpha", "infonce_reduction", "tau")
# the CLI switch that chose each InfoEnh variant
_VARIANT_SWITCH = {"none": "--no-infoenh", "plumbing": "--plumbing", "no_fib": "--no-fib", "fia_only": "--no-fib",
                   "no_fia": "--no-fia", "fib_only": "--no-fia", "fia_uniform": "--fia-uniform",
                   "full_uniform": "--full-uniform"}
_NO_FIA = ("none", "plumbing", "no_fia", "fib_only")
# the order of inactive_options' messages: the CLI's, with tau (no flag) next to alpha
_MESSAGE_ORDER = CLI_INFOENH_OPTIONS[:4] + ("tau",) + CLI_INFOENH_OPTIONS[4:]
_NO_GATE = ("none", "plumbing", "no_fib", "fia_only", "fia_uniform")


def _flag(name: str) -> str:
    """The CLI flag of an InfoEnh option; ``infoenh_kwargs['tau']`` for one the CLI does not expose."""
    return "--" + name.replace("_", "-") if name in CLI_INFOENH_OPTIONS else f"infoenh_kwargs[{name!r}]"


def inactive_options(cfg: "TrainConfig") -> list:
    """One message for each option ``cfg`` sets that its configuration never reads (``[]`` when
    every option given has an effect): InfoEnh's options with ``--no-infoenh``; FIA's (``--reg``,
    ``--fia-mode``, ``--ot-iters``, ``--ot-stop``, ``--ot-tol``) without FIA (``--no-fia``,
    ``--plumbing``); those of the gate and its InfoNCE loss (``--straight-through``, ``--alpha``,
    ``--infonce-reduction``, ``tau``) without them (``--no-fib``, ``--plumbing``); ``--selfmm-heads``
    with ``--no-infoenh``; Sinkhorn's options with the uniform plan. ``infoenh train`` warns with
    each (:class:`InactiveOptionWarning`); ``infoenh ablate`` does not, its arms differ on purpose."""
    variant = cfg.infoenh
    switch = _VARIANT_SWITCH.get(variant, f"--infoenh {variant}")
    given = [k for k in _MESSAGE_ORDER if (cfg.infoenh_kwargs or {}).get(k) is not None]
    given += sorted(k for k, v in (cfg.infoenh_kwargs or {}).items() if k not in _MESSAGE_ORDER and v is not None)
    out = []
    for k in given:
        if variant == "none":
            out.append(f"{_flag(k)} has no effect with {switch}: the host alone builds no InfoEnh")
        elif k in _FIA_OPTIONS and variant in _NO_FIA:
            out.append(f"{_flag(k)} has no effect with {switch}: it sets FIA's optimal transport, and this run has no "
                       "FIA")
        elif k in _SINKHORN_OPTIONS and variant in _UNIFORM:
            out.append(f"{_flag(k)} has no effect with {switch}: it sets Sinkhorn, and this run's transport plan is "
                       "the uniform one (no Sinkhorn)")
        elif k in _GATE_OPTIONS and variant in _NO_GATE:
            out.append(f"{_flag(k)} has no effect with {switch}: it sets FIB's gate or its InfoNCE loss, and this "
                       "run has neither (the gate is open)")
    heads = (cfg.model_kwargs or {}).get("heads")
    if cfg.model == "selfmm" and heads is not None and variant == "none":
        out.append(f"--selfmm-heads has no effect with {switch}: it sets what the unimodal heads read after InfoEnh, "
                   "and the host alone builds no InfoEnh")
    return out


def host_kwargs(cfg: "TrainConfig") -> Dict[str, Any]:
    """The host's keywords a run builds it with: the dataset's settings
    (:func:`infoenh.models.settings.settings_for`), then ``cfg.model_kwargs`` over them."""
    return {**settings_for(cfg.model, cfg.settings_of)["model"], **(cfg.model_kwargs or {})}


def for_data(cfg: "TrainConfig", ds) -> "TrainConfig":
    """``cfg`` with ``dataset`` told from ``ds`` when not given (:func:`infoenh.models.settings.detect_dataset`);
    call it before :meth:`TrainConfig.resolved` wherever the data is known."""
    if cfg.settings_of is not None:
        return cfg
    return dataclasses.replace(cfg, settings_of=detect_dataset(ds)[0])


def dataset_settings(cfg: "TrainConfig", ds) -> Dict[str, Any]:
    """What ``results.json`` records of the per-dataset host settings of a resolved ``cfg``: the
    dataset, how it was told, the source, the batch size, each optimiser group's rate and decay."""
    from ..models.settings import MMSA_CONFIG

    told = "given (--settings-of)" if cfg.settings_of is not None and cfg.settings_of != detect_dataset(ds)[0] \
        else detect_dataset(ds)[1]
    lr, wd = group_settings(cfg.model, cfg.settings_of, lr=cfg.lr, weight_decay=cfg.weight_decay, group_lr=cfg.group_lr,
                            group_weight_decay=cfg.group_weight_decay, bert_lr=cfg.bert_lr)
    return {"dataset": cfg.settings_of or "mosi", "told_from": told,
            "source": MMSA_CONFIG if cfg.model in ("selfmm", "misa") else "this project's (lf has no MMSA twin)",
            "batch_size": cfg.batch_size, "grad_clip": cfg.grad_clip, "lr": lr, "weight_decay": wd}


def seeds_list(seeds: Optional[Sequence[int]]) -> list:
    from .seeding import DEFAULT_SEEDS

    seeds = list(DEFAULT_SEEDS if seeds is None else seeds)
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return [int(s) for s in seeds]
