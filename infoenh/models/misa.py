"""MISA (Hazarika et al., ACM MM 2020): modality-invariant (shared) and modality-specific (private)
representations, fused by a one-layer transformer.

    text   [B, L_t, d_t] -> BERT token states (frozen precomputed features) -> masked mean
    audio  [B, L_a, d_a] -> biLSTM(d_a) -> LayerNorm -> biLSTM(d_a), packed -> final states [4 d_a]
    vision [B, L_v, d_v] -> same with d_v                                        -> final states [4 d_v]
    o_m = LayerNorm(ReLU(Linear_m(u_m)))            [B, h]        ("project", h = 128)
    p_m = sigmoid(P_m o_m),  s_m = sigmoid(S o_m)   private (one map per modality), shared (one map)
    r_m = R_m(p_m + s_m)                            reconstruction of o_m
    y = MLP(concat(Transformer([p_t, p_v, p_a, s_t, s_v, s_a])))    (1 layer, 2 heads)

Loss: MSE(y, label) + 0.1 * L_diff + 0.3 * L_sim + 1.0 * L_recon (MMSA's MOSI weights), with
L_sim the central moment discrepancy (5 moments) between shared codes, averaged over modality
pairs; L_diff the soft orthogonality ||A^T B||_F^2 / (h^2) of the batch-centred, row-normalised
codes, summed over (private, shared) of each modality and over private pairs; L_recon the MSE
between r_m and o_m averaged over modalities.

With InfoEnh, the encoder sequences (text tokens; concatenated outputs of both LSTM layers) go
through InfoEnh and u_m is the pooled enhanced sequence.

Lengths (``lengths``): MMSA packs the audio and vision sequences with the *text* lengths (the sum
of BERT's sentence mask), so sample b reads audio and vision steps 0 .. L_t(b)-1 whatever their own
masks say (padding included, steps past L_t(b) never). ``lengths="text"`` (default) does the same:
the audio and vision masks are replaced by the prefix mask of length min(L_t(b), L_m), for the
LSTMs and for InfoEnh alike (:meth:`MISA.check_batch`). ``lengths="own"`` reads each modality with
its own mask (this project's earlier behaviour). Without the text modality (the missing-text
ablation, ``no_text``) the lengths still come from the batch's text mask (the data has text, the
model does not read it), so ``no_text`` reads the same audio and vision frames as ``baseline``
and the comparison changes the modalities only; a batch with no text at all falls back to "own".

Deviations: MMSA's MISA fine-tunes BERT by default (frozen features or fine-tuned BERT here, see
``--text``); the shared/private discriminator, which MMSA computes but leaves out of the loss, is
omitted.
"""
from __future__ import annotations

from itertools import combinations
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from .._validate import MODALITIES, check_mask
from .base import HostModel, task_loss
from .encoders import StackedBiLSTM
from .pooling import pool


def cmd(x1: Tensor, x2: Tensor, n_moments: int = 5) -> Tensor:
    """Central moment discrepancy (Zellinger et al. 2017) as MISA uses it, unscaled:
    ``||E x1 - E x2|| + sum_{k=2..K} ||c_k(x1) - c_k(x2)||``, ``c_k`` the k-th central moment
    per feature. ``x1 [B, h]``, ``x2 [B, h]`` -> 0-dim."""
    m1, m2 = x1.mean(0), x2.mean(0)
    s1, s2 = x1 - m1, x2 - m2
    out = torch.linalg.vector_norm(m1 - m2)
    for k in range(2, n_moments + 1):
        out = out + torch.linalg.vector_norm(s1.pow(k).mean(0) - s2.pow(k).mean(0))
    return out


LENGTHS = ("text", "own")


def text_length_masks(text_mask: Optional[Tensor], text_len: int, seq_lens: Mapping[str, int],
                      device=None) -> dict:
    """Prefix masks that read each sequence up to the text's length, as MMSA's MISA packs them.

    ``text_mask [B, L_t]`` (None: every text step is real, ``text_len`` = L_t), ``seq_lens``
    ``{m: L_m}`` -> ``{m: [B, L_m] bool}`` with row b True at steps ``0 .. min(L_t(b), L_m) - 1``,
    L_t(b) the number of real text steps of sample b.
    """
    if text_mask is None:
        n = None
    else:
        n = text_mask.sum(dim=1)                                    # [B]
        device = text_mask.device
    out = {}
    for m, L in seq_lens.items():
        steps = torch.arange(L, device=device)
        out[m] = (steps < text_len)[None, :] if n is None else steps[None, :] < n[:, None]
    return out


def diff_loss(a: Tensor, b: Tensor) -> Tensor:
    """Soft orthogonality between two codes ``a, b [B, h]``: centre over the batch, divide each
    row by its (detached) L2 norm + 1e-6, then ``mean((a^T b)^2)`` (MISA/MMSA's DiffLoss)."""
    a = a - a.mean(0, keepdim=True)
    b = b - b.mean(0, keepdim=True)
    a = a / (a.norm(dim=1, keepdim=True).detach() + 1e-6)
    b = b / (b.norm(dim=1, keepdim=True).detach() + 1e-6)
    return (a.t() @ b).pow(2).mean()


class MISA(HostModel):
    """MISA host. Defaults are MMSA's MOSI configuration (``config_regression.json``, misa, mosi):
    hidden 128, dropout 0.2, diff 0.1, sim (CMD) 0.3, recon 1.0; one transformer layer with 2
    heads and PyTorch's default feed-forward width 2048 and dropout 0.1 (MISA's code leaves both
    at their defaults).

    ``lengths``: "text" (default, MMSA: audio and vision read up to the text's length) or "own"
    (each modality's own mask); see the module docstring."""

    name = "misa"
    loss_kind = "mse"
    default_lr = 1e-4
    default_weight_decay = 0.0
    bert_lr, bert_weight_decay = None, 0.0       # MMSA's MISA: one Adam at the host's rate, BERT included

    def __init__(self, dims: Mapping[str, int], modalities: Sequence[str] = MODALITIES,
                 infoenh: Optional[dict] = None, pool: str = "attention", *, hidden_size: int = 128,
                 dropout: float = 0.2, diff_weight: float = 0.1, sim_weight: float = 0.3,
                 recon_weight: float = 1.0, cmd_moments: int = 5, nhead: int = 2, ff_dim: int = 2048,
                 text_pool: str = "mean", lengths: str = "text"):
        super().__init__(dims, modalities, infoenh, pool)
        if lengths not in LENGTHS:
            raise ValueError(f"lengths (--misa-lengths) must be one of {LENGTHS}, got {lengths!r}")
        self.lengths = lengths
        self.diff_weight, self.sim_weight, self.recon_weight = diff_weight, sim_weight, recon_weight
        self.cmd_moments, self.text_pool = cmd_moments, text_pool
        h = hidden_size
        enc, widths = {}, {}
        for m in self.modalities:
            if m == "text":
                enc[m], widths[m] = nn.Identity(), self.dims[m]
            else:
                enc[m] = StackedBiLSTM(self.dims[m], self.dims[m])
                widths[m] = enc[m].out_dim
        self.encoders = nn.ModuleDict(enc)
        self._attach_infoenh(widths)
        fused = self.fused_width(widths)
        self.project = nn.ModuleDict({m: nn.Sequential(nn.Linear(fused[m], h), nn.ReLU(), nn.LayerNorm(h))
                                      for m in self.modalities})
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(h, h), nn.Sigmoid()) for m in self.modalities})
        self.shared = nn.Sequential(nn.Linear(h, h), nn.Sigmoid())
        self.recon = nn.ModuleDict({m: nn.Linear(h, h) for m in self.modalities})
        layer = nn.TransformerEncoderLayer(d_model=h, nhead=nhead, dim_feedforward=ff_dim, dropout=0.1,
                                           batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        n = len(self.modalities)
        self.fusion = nn.Sequential(nn.Linear(2 * n * h, n * h), nn.Dropout(dropout), nn.ReLU(), nn.Linear(n * h, 1))

    def reads_text_lengths(self, batch: Optional[Mapping] = None) -> bool:
        """Whether audio and vision are read with the text lengths: ``lengths="text"`` and text
        lengths to take them from (the text modality, or, without it, the batch's ``text`` /
        ``text_mask``)."""
        if self.lengths != "text":
            return False
        if "text" in self.modalities or batch is None:
            return True
        return batch.get("text_mask") is not None or batch.get("text") is not None

    def check_batch(self, batch):
        """The base checks, then (``lengths="text"``) the audio and vision masks replaced by the
        text-length prefix masks of :func:`text_length_masks`: ``{m: [B, L_m] bool}``. Without the
        text modality the text lengths are read from the batch's ``text_mask`` (``text``'s length
        when it has no mask), so the missing-text arm reads the frames its comparison arm reads."""
        masks = super().check_batch(batch)
        if not self.reads_text_lengths(batch):
            return masks
        others = {m: int(batch[m].shape[1]) for m in self.modalities if m != "text"}
        if not others:
            return masks
        B = int(batch[self.modalities[0]].shape[0])
        if "text" in self.modalities:
            text_mask, L_t = masks["text"], int(batch["text"].shape[1])
        else:
            text_mask = batch.get("text_mask")
            L_t = int(text_mask.shape[1]) if text_mask is not None else int(batch["text"].shape[1])
            if text_mask is not None:
                text_mask = check_mask(text_mask, "batch['text_mask']", (B, L_t))
        device = batch[self.modalities[0]].device
        prefix = text_length_masks(None if text_mask is None else text_mask.to(device), L_t, others, device)
        masks.update({m: v.expand(B, -1).contiguous() for m, v in prefix.items()})
        return masks

    def encode(self, batch, masks, pooled=True):
        seqs, utt = {}, {}
        for m in self.modalities:
            if m == "text":
                seqs[m] = self.encoders[m](batch[m])
                if pooled:               # with InfoEnh (pooled=False) the text mean would go unused
                    utt[m] = pool(seqs[m], masks[m], self.text_pool)
            else:                        # the LSTMs' final states come with their sequences
                seqs[m], utt[m] = self.encoders[m](batch[m], masks[m])
        return seqs, utt if pooled else None

    def head(self, feats, batch, unimodal=None):
        ex = {}
        for m in self.modalities:
            o = self.project[m](feats[m])
            p, s = self.private[m](o), self.shared(o)
            ex[f"orig_{m}"], ex[f"private_{m}"], ex[f"shared_{m}"] = o, p, s
            ex[f"recon_{m}"] = self.recon[m](p + s)
        tokens = [ex[f"private_{m}"] for m in self.modalities] + [ex[f"shared_{m}"] for m in self.modalities]
        z = self.transformer(torch.stack(tokens, dim=1))          # [B, 2M, h]
        y = self.fusion(z.flatten(1)).squeeze(-1)
        return y, ex

    def training_loss(self, out, batch, epoch):
        ex = out.extras
        task = task_loss(out.pred, batch["label"].reshape(-1), "mse")
        ms = self.modalities
        diff = sum(diff_loss(ex[f"private_{m}"], ex[f"shared_{m}"]) for m in ms)
        diff = diff + sum((diff_loss(ex[f"private_{a}"], ex[f"private_{b}"]) for a, b in combinations(ms, 2)),
                          task.new_zeros(()))
        pairs = list(combinations(ms, 2))
        sim = (sum(cmd(ex[f"shared_{a}"].float(), ex[f"shared_{b}"].float(), self.cmd_moments) for a, b in pairs)
               / len(pairs)) if pairs else task.new_zeros(())
        recon = sum((ex[f"recon_{m}"].float() - ex[f"orig_{m}"].float()).pow(2).mean() for m in ms) / len(ms)
        total = (task + self.diff_weight * diff + self.sim_weight * sim + self.recon_weight * recon
                 + out.aux_loss)
        return total, {"task": task.detach(), "diff": diff.detach(), "sim": sim.detach(),
                       "recon": recon.detach(), "infoenh": out.aux_loss.detach()}
