"""Training configuration: what the user sets, and the host's defaults filled in where not set."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

from .._validate import MODALITIES, check_modalities
from ..models.registry import MODELS, TRAIN_DEFAULTS, VARIANTS

CLIP_MODES = ("norm", "value")


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
    device: "cpu", "cuda" or None (CUDA when available).  amp: bf16 autocast on CUDA.
    infoenh_kwargs / model_kwargs: passed to InfoEnh / the host.
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
    deterministic: bool = True
    num_workers: int = 0
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
        if out.grad_clip is not None and out.grad_clip <= 0:
            out = dataclasses.replace(out, grad_clip=None)
        if out.grad_clip_mode not in CLIP_MODES:
            raise ValueError(f"grad_clip_mode must be one of {CLIP_MODES}, got {out.grad_clip_mode!r}")
        if out.lr is not None and not out.lr > 0:
            raise ValueError(f"lr must be > 0, got {out.lr}")
        if out.lr_schedule not in ("none", "plateau"):
            raise ValueError(f"lr_schedule must be 'none' or 'plateau', got {out.lr_schedule!r}")
        if out.device not in (None, "cpu", "cuda") and not str(out.device).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu', 'cuda' or None (auto), got {out.device!r}")
        return out

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


def seeds_list(seeds: Optional[Sequence[int]]) -> list:
    from .seeding import DEFAULT_SEEDS

    seeds = list(DEFAULT_SEEDS if seeds is None else seeds)
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return [int(s) for s in seeds]
