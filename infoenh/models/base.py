"""What every host model shares: input checks, the InfoEnh switch, and the training interface.

A host is ``encoders -> [InfoEnh] -> pool -> the host's own fusion and head``:

    batch[m] [B, L_m, d_m] --encoder_m--> h_m [B, L_m, w_m]
        without InfoEnh:  u_m = host_pool_m(h_m)                  (the original model's reading)
        with InfoEnh:     E'_m [B, k, out_dim] = InfoEnh({h_m}) ;  u_m = pool(E'_m)   [B, out_dim]
    {u_m} --fusion/head--> prediction [B]

The trainer talks to a host only through :meth:`HostModel.forward`, :meth:`training_loss`,
:meth:`eval_loss`, :meth:`after_backward`, :meth:`param_groups` and :meth:`init_from_train`.

Pooling after InfoEnh: attention, not a mean (decision of this project). With FIA's token reading
each enhanced row is E'_i[r] = (E_i[r], E_{i->j}[r], ...) with E_{i->j} = diag(a)^{-1} P E_j
(= k P E_j for uniform a = 1/k), P the Sinkhorn plan whose columns sum to b_c (the weights of
E_j's rows). The masked mean over the real rows of i (each of weight a_r) is

    sum_r a_r (1/a_r) sum_c P_rc E_j[c] = sum_c (sum_r P_rc) E_j[c] = sum_c b_c E_j[c] = mean(E_j),

the same vector whatever the plan: after a mean the plan has no effect on the prediction, and no
gradient reaches the cost (hence FIB's features) through it. This is algebra, not something
training could escape; it is exact up to Sinkhorn's column-marginal error (the solver's last
update fixes the rows; the columns match b to within its tolerance once it has converged; an
unconverged plan leaks a small, meaningless dependence). A host therefore pools E'_m with
:class:`~infoenh.models.pooling.AttentionPool` (``pool="attention"``, default): a learned score per
row, softmax over the real rows, weighted sum; the weights depend on the rows themselves, so the
plan matters and is trained. ``pool="mean"`` (masked mean, the identity above holds) and
``pool="last"`` (last real row) remain as switches. In FIA's feature reading
(E_{i->j} = d E_i P^T) a mean does depend on the plan; the default is attention there too.
Without InfoEnh ``pool`` is unused: the host keeps its original pooling.
"""
from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from .._validate import MODALITIES, check_finite, check_mask, check_modalities, check_same_batch, check_tensor
from .encoders import float32_region
from .pooling import AttentionPool, pool

POOLS_AFTER_INFOENH = ("attention", "mean", "last")


class HostOutput(NamedTuple):
    pred: Tensor                    # [B] sentiment score
    aux_loss: Tensor                # 0-dim, InfoEnh's alpha * InfoNCE (0 without InfoEnh or labels)
    extras: Dict[str, Tensor]       # host-specific tensors its losses need (features, unimodal heads)
    diagnostics: Dict[str, Tensor]  # InfoEnh diagnostics, 0-dim detached tensors (kept fractions, OT iterations)


def group_value(given, name: str, default: float) -> float:
    """An optimiser group's value: ``given`` itself (a number), ``given[name]`` (a mapping that
    names the group), else ``default``."""
    if given is None:
        return default
    if isinstance(given, Mapping):
        return float(given[name]) if name in given else default
    return float(given)


def task_loss(pred: Tensor, target: Tensor, kind: str, reduction: str = "mean") -> Tensor:
    """The host's task criterion on ``pred [B]`` vs ``target [B]``: ``"l1"`` or ``"mse"``."""
    err = pred.float() - target.float()
    per = err.abs() if kind == "l1" else err.pow(2)
    return per.mean() if reduction == "mean" else per


class HostModel(nn.Module):
    """Base class. Subclasses build ``self.encoders`` (a ``ModuleDict`` over ``self.modalities``)
    with an ``out_dim`` each, call :meth:`_attach_infoenh`, and implement :meth:`encode` and
    :meth:`head`.

    Args:
        dims: modality -> input width, from the data (``ds.dims``); only the used modalities matter.
        modalities: the modalities the model is built on (a subset for the missing-modality
            ablation, paper Table 3); the batch may hold more, they are ignored.
        infoenh: ``None`` (no InfoEnh) or keyword arguments for :class:`infoenh.InfoEnh`
            (``in_dims`` is filled in from the encoders).
        pool: how the enhanced sequences ``[B, k, out_dim]`` are pooled: ``"attention"`` (default,
            :class:`~infoenh.models.pooling.AttentionPool`, one per modality), ``"mean"`` (masked
            mean: FIA's token plan then has no effect, see the module docstring) or ``"last"``
            (last real row).
    """

    name = "host"
    loss_kind = "l1"

    def __init__(self, dims: Mapping[str, int], modalities: Sequence[str] = MODALITIES,
                 infoenh: Optional[dict] = None, pool: str = "attention"):
        super().__init__()
        modalities = tuple(modalities)
        if not modalities:
            raise ValueError("a model needs at least one modality; got an empty list")
        check_modalities(modalities, f"{type(self).__name__} modalities")
        self.modalities = tuple(m for m in MODALITIES if m in modalities)
        missing = [m for m in self.modalities if m not in dims]
        if missing:
            raise KeyError(f"dims has no width for {missing}; pass the data's widths (ds.dims), e.g. "
                           "{'text': 768, 'audio': 5, 'vision': 20}")
        self.dims = {m: int(dims[m]) for m in self.modalities}
        if pool not in POOLS_AFTER_INFOENH:
            raise ValueError(f"pool (after InfoEnh) must be one of {POOLS_AFTER_INFOENH}, got {pool!r}")
        self.pool_how = pool
        self.infoenh_kwargs = None if infoenh is None else dict(infoenh)
        self.infoenh = None
        self.bert = None          # a BertText when the host fine-tunes BERT (attach_bert)

    def attach_bert(self, bert: nn.Module) -> None:
        """Fine-tune ``bert`` (:class:`~infoenh.models.bert.BertText`): the batch's ``text`` features
        are replaced by BERT's states computed from ``batch["text_bert"]`` at every step."""
        if "text" not in self.modalities:
            raise ValueError("BERT reads the text modality, which this model is not built on; use --text frozen")
        if int(bert.hidden_size) != self.dims["text"]:
            raise ValueError(f"BERT's hidden size {bert.hidden_size} differs from the model's text width "
                             f"{self.dims['text']}; build the model with dims['text'] = {bert.hidden_size}")
        self.bert = bert

    def bert_text(self, batch: Mapping) -> Mapping:
        """``batch`` with ``text`` / ``text_mask`` computed by the fine-tuned BERT (unchanged without it)."""
        if self.bert is None:
            return batch
        if batch.get("text_bert") is None:
            raise KeyError("this model fine-tunes BERT but the batch has no 'text_bert' (token ids); the data must "
                           "carry MMSA's text_bert field, or train with --text frozen")
        states, mask = self.bert(batch["text_bert"])
        return {**batch, "text": states, "text_mask": mask}

    # ----- construction helpers -------------------------------------------------------------
    def _attach_infoenh(self, widths: Mapping[str, int]) -> None:
        """Build InfoEnh on the encoder widths (call after the encoders exist)."""
        if self.infoenh_kwargs is None:
            return
        from ..module import InfoEnh  # imported here so a host without InfoEnh needs no OT code

        kw = {k: v for k, v in self.infoenh_kwargs.items() if k != "in_dims"}
        self.infoenh = InfoEnh(in_dims={m: int(widths[m]) for m in self.modalities}, **kw)
        if self.pool_how == "attention":
            self.row_pool = nn.ModuleDict({m: AttentionPool(int(self.infoenh.out_dim)) for m in self.modalities})
            if self.reads_unimodal_slice():
                self.uni_pool = nn.ModuleDict({m: AttentionPool(int(self.infoenh.d)) for m in self.modalities})

    def wants_unimodal(self) -> bool:
        """Whether the host has unimodal heads that should read each modality on its own (Self-MM
        with ``heads="unimodal"``); False for hosts whose head sees only the fused vectors."""
        return False

    def reads_unimodal_slice(self) -> bool:
        """True when the unimodal heads read the rows z_m = E'_m[..., :d] with a pooling of their
        own: the host wants unimodal features and InfoEnh is on. With FIA the enhanced rows
        E'_m = (z_m, E_{m->j}, E_{m->k}) mix in the other modalities and only their first ``d``
        columns are unimodal; without FIA E'_m is z_m, and the heads still get their own pool, so
        that every InfoEnh arm of a host pools the same way (an arm differs from its control in
        what it names, not in how its heads pool)."""
        return self.wants_unimodal() and self.infoenh is not None

    def unimodal_width(self, widths: Mapping[str, int]) -> Dict[str, int]:
        """Width of the vectors the unimodal heads read: InfoEnh's ``d`` when they read z_m
        (:meth:`reads_unimodal_slice`), else what the fusion reads."""
        if self.reads_unimodal_slice():
            return {m: int(self.infoenh.d) for m in self.modalities}
        return self.fused_width(widths)

    def fused_width(self, widths: Mapping[str, int]) -> Dict[str, int]:
        """Width of each pooled vector the fusion reads: InfoEnh's ``out_dim`` or the host's own."""
        if self.infoenh is None:
            return {m: int(widths[m]) for m in self.modalities}
        return {m: int(self.infoenh.out_dim) for m in self.modalities}

    # ----- input checks ----------------------------------------------------------------------
    def check_batch(self, batch: Mapping) -> Dict[str, Optional[Tensor]]:
        """Check the modalities this model uses; return their masks (None where absent)."""
        if not isinstance(batch, Mapping):
            raise TypeError(f"a batch must be a dict (see infoenh.data.collate), got {type(batch).__name__}")
        masks: Dict[str, Optional[Tensor]] = {}
        for m in self.modalities:
            if m not in batch:
                raise KeyError(f"batch has no {m!r} features but the model was built on {list(self.modalities)}; "
                               "build the model on the modalities the data has (modalities=...)")
            x = check_tensor(batch[m], f"batch[{m!r}]", ndim=3, finite=False)
            if x.shape[-1] != self.dims[m]:
                raise ValueError(
                    f"modality {m!r}: the model expects width {self.dims[m]} but the batch has width "
                    f"{x.shape[-1]} (shape {tuple(x.shape)}); build the model with the data's widths (ds.dims)"
                )
            mk = batch.get(f"{m}_mask")
            masks[m] = None if mk is None else check_mask(mk, f"batch['{m}_mask']", x.shape[:2])
        B = check_same_batch({m: batch[m] for m in self.modalities}, type(self).__name__)
        if "label" in batch and batch["label"] is not None:
            y = batch["label"]
            if y.reshape(-1).shape[0] != B:
                raise ValueError(f"batch['label'] has {y.numel()} entries but the batch has {B} samples")
        # NaN / inf in every used modality: one reduction each, one host sync in all
        check_finite({f"batch[{m!r}]": batch[m] for m in self.modalities})
        return masks

    # ----- forward ----------------------------------------------------------------------------
    def encode(self, batch: Mapping, masks: Dict[str, Optional[Tensor]], pooled: bool = True):
        """Return ``(seqs, host_pooled)``: encoder sequences ``{m: [B, L_m, w_m]}`` and the
        original model's pooled vectors ``{m: [B, w_m]}`` (used when InfoEnh is off).
        ``pooled=False`` may skip the host's pooling (``host_pooled`` is then None where it
        would cost a pass over the sequences): :meth:`features` asks for it only without InfoEnh."""
        raise NotImplementedError

    def head(self, feats: Dict[str, Tensor], batch: Mapping, unimodal: Optional[Dict[str, Tensor]] = None):
        """Fusion and head on pooled vectors ``{m: [B, width]}`` -> ``(pred [B], extras)``.
        ``unimodal``: ``{m: [B, d]}``, each modality's own filtered rows z_m pooled (only when
        :meth:`reads_unimodal_slice`); hosts with unimodal heads read them instead of ``feats``."""
        raise NotImplementedError

    def features(self, batch: Mapping):
        """Checks, encoders, then InfoEnh and pooling (or the host's pooling). Returns
        ``(feats {m: [B, width]}, aux_loss 0-dim, diagnostics)``."""
        feats, aux, diag, _ = self._features(batch)
        return feats, aux, diag

    def _features(self, batch: Mapping):
        """:meth:`features` plus the unimodal vectors ``{m: [B, d]}`` (or None), see :meth:`head`."""
        batch = self.bert_text(batch)
        masks = self.check_batch(batch)
        seqs, host_pooled = self.encode(batch, masks, pooled=self.infoenh is None)
        if self.infoenh is None:
            ref = next(iter(seqs.values()))
            return host_pooled, ref.new_zeros(()).float(), {}, None
        labels = None
        if self.training and batch.get("label") is not None:
            labels = batch["label"].reshape(-1).float()
        real_masks = None
        if all(masks[m] is not None for m in self.modalities):
            real_masks = {m: masks[m] for m in self.modalities}
        # InfoEnh and the pooling after it run in float32 even under autocast: Sinkhorn in bf16 is
        # not accurate enough, and what follows (the head) must see float32 features
        with float32_region(next(iter(seqs.values()))):
            out = self.infoenh({m: seqs[m].float() for m in self.modalities}, real_masks, labels=labels)
            if self.pool_how == "attention":
                feats = {m: self.row_pool[m](out.seqs[m], out.masks[m]) for m in self.modalities}
            else:
                feats = {m: pool(out.seqs[m], out.masks[m], self.pool_how) for m in self.modalities}
            uni = None
            if self.reads_unimodal_slice():
                d = int(self.infoenh.d)          # E'_m[..., :d] is z_m itself (FIA puts it first)
                if self.pool_how == "attention":
                    uni = {m: self.uni_pool[m](out.seqs[m][..., :d], out.masks[m]) for m in self.modalities}
                else:
                    uni = {m: pool(out.seqs[m][..., :d], out.masks[m], self.pool_how) for m in self.modalities}
        return feats, out.aux_loss, out.diagnostics, uni

    def forward(self, batch: Mapping) -> HostOutput:
        """Encoders (autocast may run them in bf16), then everything from the pooled features on in
        float32 whatever autocast does: the prediction, the validation loss that selects the epoch,
        the metrics and Self-MM's label generator read float32 values on every device."""
        feats, aux, diag, uni = self._features(batch)
        with float32_region(next(iter(feats.values()))):
            uni = None if uni is None else {m: v.float() for m, v in uni.items()}
            pred, extras = self.head({m: v.float() for m, v in feats.items()}, batch, unimodal=uni)
        return HostOutput(pred=pred.reshape(-1).float(), aux_loss=aux.float(), extras=extras, diagnostics=diag)

    # ----- training interface -----------------------------------------------------------------
    def training_loss(self, out: HostOutput, batch: Mapping, epoch: int):
        """Total training loss (task + host regularisers + InfoEnh's) and its parts as floats."""
        y = batch["label"].reshape(-1)
        task = task_loss(out.pred, y, self.loss_kind)
        total = task + out.aux_loss
        return total, {"task": task.detach(), "infoenh": out.aux_loss.detach()}

    def eval_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-sample task loss ``[B]``: the quantity model selection reads (on validation)."""
        return task_loss(pred, target, self.loss_kind, reduction="none")

    def after_backward(self, out: HostOutput, batch: Mapping, epoch: int) -> None:
        """Hook after ``loss.backward()`` and before the optimiser step (Self-MM's label update)."""

    def init_from_train(self, labels: Tensor, index: Tensor) -> None:
        """Hook given every training label ``[N]`` with its dataset index ``[N]`` before training."""

    def param_groups(self, lr=None, weight_decay=None) -> list:
        """Optimiser parameter groups with the host's learning rates. ``lr`` / ``weight_decay``: a
        number for every group, or ``{group name: value}`` (:func:`infoenh.models.settings.group_settings`;
        a group not named keeps the host's default). One group here, ``"other"``."""
        return [{"params": [p for p in self.parameters() if p.requires_grad],
                 "lr": group_value(lr, "other", self.default_lr),
                 "weight_decay": group_value(weight_decay, "other", self.default_weight_decay), "name": "other"}]

    default_lr = 1e-3
    default_weight_decay = 0.0
    bert_lr = 5e-5                 # BERT's own group when fine-tuned (None: the host's default_lr)
    bert_weight_decay = 0.0
