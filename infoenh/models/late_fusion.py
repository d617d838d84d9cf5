"""A small late-fusion baseline for teaching and CI.

    x_m [B, L_m, d_m] --Linear-ReLU per step--> h_m [B, L_m, hidden]
        --masked mean (or InfoEnh, then pool)--> u_m --concat--> MLP --> y [B]

Trained with L1, like MMSA's regression hosts. Its defaults are this project's choice (no paper
to follow), small enough to train on CPU in seconds.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from .._validate import MODALITIES
from .base import HostModel
from .encoders import StepMLP
from .pooling import masked_mean


class LateFusion(HostModel):
    """Late-fusion host. ``hidden``: encoder width; ``fusion_hidden``: MLP width; ``dropout``."""

    name = "lf"
    loss_kind = "l1"
    default_lr = 1e-3
    default_weight_decay = 0.0

    def __init__(self, dims: Mapping[str, int], modalities: Sequence[str] = MODALITIES,
                 infoenh: Optional[dict] = None, pool: str = "attention", *, hidden: int = 64,
                 fusion_hidden: int = 128, dropout: float = 0.1):
        super().__init__(dims, modalities, infoenh, pool)
        self.encoders = nn.ModuleDict({m: StepMLP(self.dims[m], hidden, dropout) for m in self.modalities})
        widths = {m: self.encoders[m].out_dim for m in self.modalities}
        self._attach_infoenh(widths)
        fused = sum(self.fused_width(widths).values())
        self.mlp = nn.Sequential(nn.Linear(fused, fusion_hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(fusion_hidden, 1))

    def encode(self, batch, masks, pooled=True):
        seqs = {m: self.encoders[m](batch[m], masks[m]) for m in self.modalities}
        if not pooled:                   # InfoEnh reads the sequences: the masked means would go unused
            return seqs, None
        return seqs, {m: masked_mean(seqs[m], masks[m]) for m in self.modalities}

    def head(self, feats, batch, unimodal=None):
        u = torch.cat([feats[m] for m in self.modalities], dim=-1)
        return self.mlp(u).squeeze(-1), {}
