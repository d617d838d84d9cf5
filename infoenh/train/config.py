"""Training configuration: what the user sets, and the host's defaults filled in where not set."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

from .._validate import MODALITIES, check_modalities
from ..models.registry import MODELS, TRAIN_DEFAULTS, VARIANTS

CLIP_MODES = ("norm", "value")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TrainConfig:
    """One training run (one seed). ``None`` means "the host's default" (see
    :data:`infoenh.models.registry.TRAIN_DEFAULTS`).

    model: "lf", "selfmm" or "misa".  infoenh: "full", "none", "no_fib" or "no_fia" (see
    :func:`infoenh.models.infoenh_config`).  modalities: the modalities the model is built on.
    epochs: the most epochs to run; patience: early stopping (epochs without a better validation
    loss).  accum_steps: batches per optimiser step.  lr: overrides every parameter group's rate.
    grad_clip: max norm (or value, ``grad_clip_mode="value"``); 0 turns clipping off.
    lr_schedule: "none" or "plateau" (ReduceLROnPlateau on validation loss, factor 0.5, patience 3).
    device: "cpu", "cuda" or None (CUDA when available).
    precision: "auto" (bf16 autocast on CUDA, float32 on the CPU), "bf16" (bf16 autocast on any
    device, the CPU included) or "fp32". ``amp=False`` is the same as "fp32". Under autocast only
    the encoders run in bf16: InfoEnh, the pooling, the head, the losses, the metrics and model
    selection are float32 on every device (:meth:`infoenh.models.base.HostModel.forward`).
    infoenh_kwargs / model_kwargs: passed to InfoEnh / the host.
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
    lr_schedule: str = "none"
    device: Optional[str] = None
    amp: bool = True
    precision: str = "auto"
    deterministic: bool = True
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
        if self.infoenh not in VARIANTS:
            raise ValueError(f"unknown InfoEnh variant {self.infoenh!r}; choose one of {VARIANTS}")
        mods = tuple(self.modalities)
        if not mods:
            raise ValueError("modalities must not be empty")
        check_modalities(mods, "TrainConfig.modalities")
        d = TRAIN_DEFAULTS[self.model]
        out = dataclasses.replace(
            self,
            modalities=tuple(m for m in MODALITIES if m in mods),
            epochs=self.epochs if self.epochs is not None else d["max_epochs"],
            patience=self.patience if self.patience is not None else d["patience"],
            batch_size=self.batch_size if self.batch_size is not None else d["batch_size"],
            accum_steps=self.accum_steps if self.accum_steps is not None else d["accum_steps"],
            grad_clip=self.grad_clip if self.grad_clip is not None else d["grad_clip"],
            grad_clip_mode=self.grad_clip_mode if self.grad_clip_mode is not None else d["grad_clip_mode"],
        )
        for name in ("epochs", "patience", "batch_size", "accum_steps"):
            v = getattr(out, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
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
}
_FIA_VARIANTS = ("full", "no_fib", "fia_only")


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
    for name, v in (c.infoenh_kwargs or {}).items():
        if name in _IE_RANGES and v is not None:
            ok, rng = _IE_RANGES[name]
            if not _number(v) or not ok(v):
                raise ValueError(f"--{name.replace('_', '-')} must be {rng}, got {v!r}")
    if c.infoenh in _FIA_VARIANTS and len(c.modalities) < 2:
        raise ValueError(f"FIA aligns pairs of modalities and needs at least two; with --modalities "
                         f"{' '.join(c.modalities)} add --no-fia (InfoEnh without FIA) or --no-infoenh (the host "
                         "alone)")


def seeds_list(seeds: Optional[Sequence[int]]) -> list:
    from .seeding import DEFAULT_SEEDS

    seeds = list(DEFAULT_SEEDS if seeds is None else seeds)
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return [int(s) for s in seeds]
