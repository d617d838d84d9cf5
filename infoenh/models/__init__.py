"""Host models that carry InfoEnh: a late-fusion baseline, Self-MM and MISA.

Each host keeps its encoders' whole sequences; with InfoEnh switched on, the sequences pass
through :class:`infoenh.InfoEnh` before the host's own fusion. See :func:`build_model`.
"""
from .base import HostModel, HostOutput, task_loss
from .late_fusion import LateFusion
from .misa import MISA, cmd, diff_loss
from .registry import MODELS, TRAIN_DEFAULTS, VARIANTS, build_model, infoenh_config
from .selfmm import ULGM, SelfMM

__all__ = ["HostModel", "HostOutput", "task_loss", "LateFusion", "SelfMM", "ULGM", "MISA", "cmd", "diff_loss",
           "MODELS", "TRAIN_DEFAULTS", "VARIANTS", "build_model", "infoenh_config"]
