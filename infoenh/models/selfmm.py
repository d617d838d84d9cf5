"""Self-MM (Yu et al., AAAI 2021): multimodal and unimodal heads trained together, with unimodal
labels generated on the fly by the unimodal label generation module (ULGM).

Layout (MMSA's MOSI configuration in brackets):

    text   [B, L_t, d_t] -> BERT token states (here: the precomputed, frozen features) -> pool
    audio  [B, L_a, d_a] -> LSTM(16) -> dropout -> Linear(16)   per step  -> last real step
    vision [B, L_v, d_v] -> LSTM(32) -> dropout -> Linear(32)   per step  -> last real step
    u = concat(u_t, u_a, u_v) -> Dropout -> Linear(128) ReLU = F_f -> Linear(128) ReLU -> Linear(1) = y_M
    u_m -> Dropout -> Linear(post_m) ReLU = F_m -> Linear ReLU -> Linear(1) = y_m      (m = t, a, v)

With InfoEnh the whole sequences go through InfoEnh and each u_m is the pooled enhanced sequence.

What the unimodal heads read with InfoEnh (``heads``, a decision of this project). FIA's output
E'_m = (z_m, E_{m->j}, E_{m->k}) [B, k, M*d] mixes the other modalities into every row. If the
unimodal head of m read it, ULGM would build the "unimodal" label y^m from cross-modal features
and Self-MM's mechanism (each head sees one modality, its label says how far that modality alone
departs from the fused one) would be gone. Default ``heads="unimodal"``: the fusion reads the
pooled E'_m, and the unimodal head of m (and ULGM through its features) reads z_m = E'_m[..., :d],
the modality's own filtered rows, pooled by an attention pool of its own. ``heads="enhanced"``
reads the pooled E'_m (what this project did before; cross-modal "unimodal" heads). Without FIA
(the ``fib`` and ``plumbing`` arms) the enhanced sequence is z_m; with ``heads="unimodal"`` the
heads still pool it with their own attention pool, so that the pooling is split the same way in
every InfoEnh arm and ``fia - plumbing`` does not also measure a pool split.

Loss (per batch): |y_M - y| + sum_m mean(w_m * |y_m - y^m|), w_m = tanh(|y^m - y|), where the
unimodal labels y^m start at y and are moved, from the second epoch on, by ULGM.

Deviation from the original, forced by the data: Self-MM fine-tunes BERT and reads its [CLS]
state; the MMSA features are frozen BERT states, so there is nothing to fine-tune and the default
text reading is the masked mean over tokens (``text_pool="first"`` reads the [CLS] position).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import MODALITIES
from .base import HostModel, group_value, task_loss
from .encoders import LSTMSeq
from .pooling import last_valid, pool

_MIN = 1e-8  # MMSA's guard against division by zero in the relative distances
HEADS = ("unimodal", "enhanced")   # what the unimodal heads read with InfoEnh (see the module docstring)


class ULGM(nn.Module):
    """Unimodal label generation module: per-sample unimodal labels kept for the whole train set.

    State (buffers, so checkpoints carry it), for each name in ``("fusion", *modalities)``:
    ``label_<name> [N]``, ``feat_<name> [N, d_name]`` (the last feature seen for each sample),
    ``pos_<name>``, ``neg_<name> [d_name]`` (class centres of the features of samples whose label
    of that name is > 0 / < 0; zero labels excluded, MMSA's ``excludeZero``).

    Update rule for one batch (MMSA's): with d_p, d_n the distances of a feature to the positive
    and negative centres, the relative offset is ``delta = (d_n - d_p) / (d_p + 1e-8)``; a
    unimodal target is
    ``y_hat_m = clip(0.5 * (delta_m / delta_f) * y_f + 0.5 * (y_f + delta_m - delta_f), -H, H)``
    and the stored label moves by momentum with the epoch n:
    ``y^m <- (n - 1) / (n + 1) * y^m + 2 / (n + 1) * y_hat_m`` (only from epoch 2 on).
    Order per batch, as in MMSA: labels (epoch > 1), then stored features, then centres.
    """

    def __init__(self, n_train: int, feat_dims: Mapping[str, int], H: float = 3.0, exclude_zero: bool = True):
        super().__init__()
        if int(n_train) < 1:
            raise ValueError(f"Self-MM's ULGM needs the number of training samples (n_train >= 1), got {n_train}")
        self.n_train = int(n_train)
        self.names = tuple(feat_dims)
        self.H, self.exclude_zero = float(H), bool(exclude_zero)
        for name, d in feat_dims.items():
            self.register_buffer(f"label_{name}", torch.zeros(self.n_train))
            self.register_buffer(f"feat_{name}", torch.zeros(self.n_train, int(d)))
            self.register_buffer(f"pos_{name}", torch.zeros(int(d)))
            self.register_buffer(f"neg_{name}", torch.zeros(int(d)))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def _index(self, index: Tensor) -> Tensor:
        # Checked where the index lives (the trainer keeps it on the CPU: no device sync).
        index = torch.as_tensor(index).reshape(-1).to(torch.int64)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.n_train):
            raise IndexError(f"batch['index'] holds {int(index.min())}..{int(index.max())} but Self-MM was built for "
                             f"{self.n_train} training samples; indices must be the training split's 0..N-1")
        return index.to(self.label_fusion.device)

    def label(self, name: str, index: Tensor) -> Tensor:
        """Current labels of ``name`` for the samples ``index [B]`` -> ``[B]``."""
        if not bool(self.ready):
            raise RuntimeError("Self-MM's unimodal labels are not initialised: call model.init_from_train(labels, "
                               "index) with the whole training split first (the trainer does)")
        return getattr(self, f"label_{name}")[self._index(index)]

    @torch.no_grad()
    def init_labels(self, labels: Tensor, index: Tensor) -> None:
        """Every unimodal label starts at the multimodal one."""
        idx = self._index(index)
        for name in self.names:
            getattr(self, f"label_{name}")[idx] = labels.reshape(-1).to(idx.device).float()
        self.ready.fill_(True)

    def _delta(self, f: Tensor, name: str) -> Tensor:
        d_p = torch.linalg.vector_norm(f - getattr(self, f"pos_{name}"), dim=-1)
        d_n = torch.linalg.vector_norm(f - getattr(self, f"neg_{name}"), dim=-1)
        return (d_n - d_p) / (d_p + _MIN)

    @torch.no_grad()
    def update(self, feats: Mapping[str, Tensor], index: Tensor, epoch: int) -> None:
        """One batch: ``feats`` name -> ``[B, d]`` (detached), ``index [B]``, ``epoch`` from 1."""
        idx = self._index(index)
        feats = {k: v.detach().float() for k, v in feats.items()}
        if epoch > 1:
            delta_f = self._delta(feats["fusion"], "fusion")
            y_f = self.label_fusion[idx]
            n = float(epoch)
            for name in self.names:
                if name == "fusion":
                    continue
                delta_m = self._delta(feats[name], name)
                alpha = delta_m / (delta_f + _MIN)
                y_hat = (0.5 * alpha * y_f + 0.5 * (y_f + delta_m - delta_f)).clamp(-self.H, self.H)
                lab = getattr(self, f"label_{name}")
                lab[idx] = (n - 1) / (n + 1) * lab[idx] + 2 / (n + 1) * y_hat
        for name in self.names:
            getattr(self, f"feat_{name}")[idx] = feats[name]
        for name in self.names:
            lab, store = getattr(self, f"label_{name}"), getattr(self, f"feat_{name}")
            pos = lab > 0 if self.exclude_zero else lab >= 0
            neg = lab < 0
            # A class with no member keeps its previous centre (MMSA would produce NaN here);
            # written without a host-device sync.
            for sel, centre in ((pos, getattr(self, f"pos_{name}")), (neg, getattr(self, f"neg_{name}"))):
                cnt = sel.sum()
                mean = (store * sel.unsqueeze(1).to(store.dtype)).sum(0) / cnt.clamp_min(1).to(store.dtype)
                centre.copy_(torch.where(cnt > 0, mean, centre))


class _Head(nn.Module):
    """``Dropout -> Linear(d_in, d) ReLU (= feature) -> Linear(d, d) ReLU -> Linear(d, 1)``."""

    def __init__(self, d_in: int, d: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.l1, self.l2, self.l3 = nn.Linear(d_in, d), nn.Linear(d, d), nn.Linear(d, 1)

    def forward(self, u: Tensor):
        f = F.relu(self.l1(self.drop(u)))
        return self.l3(F.relu(self.l2(f))).squeeze(-1), f


class SelfMM(HostModel):
    """Self-MM host. Defaults are MMSA's MOSI configuration (other datasets: :mod:`infoenh.models.settings`) (``config_regression.json``, self_mm,
    mosi): audio LSTM 16 -> 16, vision LSTM 32 -> 32, post-fusion 128, post-text 32, post-audio 16,
    post-vision 32, dropouts fusion 0.0 / text 0.1 / audio 0.1 / vision 0.0, H = 3.0.

    Args:
        n_train: number of training samples (ULGM keeps a label and a feature per sample).
        text_pool: reading of the text sequence without InfoEnh, ``"mean"`` (default, see module
            docstring) or ``"first"`` ([CLS]) or ``"last"``.
        heads: with InfoEnh, what the unimodal heads and ULGM read: ``"unimodal"`` (default, z_m)
            or ``"enhanced"`` (the pooled E'_m, cross-modal); see the module docstring.
    """

    name = "selfmm"
    loss_kind = "l1"
    default_lr = 1e-3
    default_weight_decay = 1e-3
    bert_lr, bert_weight_decay = 5e-5, 1e-3      # MMSA: learning_rate_bert, weight_decay_bert (MOSI)
    # MMSA: learning_rate_audio/video 0.005, learning_rate_other 0.001; weight decay 0.001 for all.
    encoder_lr = {"audio": 5e-3, "vision": 5e-3}

    def __init__(self, dims: Mapping[str, int], modalities: Sequence[str] = MODALITIES,
                 infoenh: Optional[dict] = None, pool: str = "attention", *, n_train: int,
                 a_lstm_hidden: int = 16, v_lstm_hidden: int = 32, audio_out: int = 16, video_out: int = 32,
                 a_lstm_dropout: float = 0.0, v_lstm_dropout: float = 0.0,
                 post_fusion_dim: int = 128, post_text_dim: int = 32, post_audio_dim: int = 16,
                 post_video_dim: int = 32, post_fusion_dropout: float = 0.0, post_text_dropout: float = 0.1,
                 post_audio_dropout: float = 0.1, post_video_dropout: float = 0.0, H: float = 3.0,
                 exclude_zero: bool = True, text_pool: str = "mean", heads: str = "unimodal"):
        super().__init__(dims, modalities, infoenh, pool)
        if text_pool not in ("mean", "first", "last"):
            raise ValueError(f"text_pool must be 'mean', 'first' or 'last', got {text_pool!r}")
        if heads not in HEADS:
            raise ValueError(f"heads (--selfmm-heads) must be one of {HEADS}, got {heads!r}")
        self.text_pool, self.heads_read = text_pool, heads
        enc = {}
        widths = {}
        if "text" in self.modalities:
            enc["text"] = nn.Identity()          # frozen BERT token states pass through
            widths["text"] = self.dims["text"]
        if "audio" in self.modalities:
            enc["audio"] = LSTMSeq(self.dims["audio"], a_lstm_hidden, audio_out, dropout=a_lstm_dropout)
            widths["audio"] = audio_out
        if "vision" in self.modalities:
            enc["vision"] = LSTMSeq(self.dims["vision"], v_lstm_hidden, video_out, dropout=v_lstm_dropout)
            widths["vision"] = video_out
        self.encoders = nn.ModuleDict(enc)
        self._attach_infoenh(widths)
        fused = self.fused_width(widths)
        post_dim = {"text": post_text_dim, "audio": post_audio_dim, "vision": post_video_dim}
        post_drop = {"text": post_text_dropout, "audio": post_audio_dropout, "vision": post_video_dropout}
        self.fusion_head = _Head(sum(fused.values()), post_fusion_dim, post_fusion_dropout)
        uni = self.unimodal_width(widths)
        self.heads = nn.ModuleDict({m: _Head(uni[m], post_dim[m], post_drop[m]) for m in self.modalities})
        feat_dims = {"fusion": post_fusion_dim, **{m: post_dim[m] for m in self.modalities}}
        self.ulgm = ULGM(n_train, feat_dims, H=H, exclude_zero=exclude_zero)

    def encode(self, batch, masks, pooled=True):
        seqs = {m: self.encoders[m](batch[m]) if m == "text" else self.encoders[m](batch[m], masks[m])
                for m in self.modalities}
        if not pooled:                   # InfoEnh reads the sequences: the host's readings would go unused
            return seqs, None
        return seqs, {m: pool(h, masks[m], self.text_pool) if m == "text" else last_valid(h, masks[m])
                      for m, h in seqs.items()}

    def wants_unimodal(self) -> bool:
        return self.heads_read == "unimodal"

    def head(self, feats, batch, unimodal=None):
        u = torch.cat([feats[m] for m in self.modalities], dim=-1)
        y_m, f_f = self.fusion_head(u)
        extras = {"feat_fusion": f_f}
        own = feats if unimodal is None else unimodal
        for m in self.modalities:
            y, f = self.heads[m](own[m])
            extras[f"pred_{m}"], extras[f"feat_{m}"] = y, f
        return y_m, extras

    def training_loss(self, out, batch, epoch):
        idx = batch["index"]
        y_f = self.ulgm.label("fusion", idx)
        fusion = task_loss(out.pred, y_f, "l1")
        total = fusion + out.aux_loss
        parts = {"task": fusion.detach(), "infoenh": out.aux_loss.detach()}
        for m in self.modalities:
            y_m = self.ulgm.label(m, idx)
            w = torch.tanh((y_m - y_f).abs())
            lm = (w * (out.extras[f"pred_{m}"].float() - y_m).abs()).mean()
            total = total + lm
            parts[f"uni_{m}"] = lm.detach()
        return total, parts

    def after_backward(self, out, batch, epoch):
        feats = {"fusion": out.extras["feat_fusion"], **{m: out.extras[f"feat_{m}"] for m in self.modalities}}
        self.ulgm.update(feats, batch["index"], epoch)

    def init_from_train(self, labels: Tensor, index: Tensor) -> None:
        self.ulgm.init_labels(labels, index)

    def param_groups(self, lr=None, weight_decay=None):
        """MMSA's groups: audio, vision (their encoders) and other; ``lr`` / ``weight_decay`` a
        number for all or ``{group: value}`` (the dataset's, :mod:`infoenh.models.settings`)."""
        groups, taken = [], set()
        for m, m_lr in self.encoder_lr.items():
            if m in self.encoders:
                ps = [p for p in self.encoders[m].parameters() if p.requires_grad]
                taken.update(id(p) for p in ps)
                groups.append({"params": ps, "lr": group_value(lr, m, m_lr),
                               "weight_decay": group_value(weight_decay, m, self.default_weight_decay), "name": m})
        other = [p for p in self.parameters() if p.requires_grad and id(p) not in taken]
        groups.append({"params": other, "lr": group_value(lr, "other", self.default_lr),
                       "weight_decay": group_value(weight_decay, "other", self.default_weight_decay), "name": "other"})
        return groups
