"""Train one host (one seed) with model selection on validation loss only.

    fit(ds, TrainConfig(model="selfmm", infoenh="full", seed=1111), run_dir="runs/x/seed_1111")

Protocol (method.md): every epoch trains on ``train`` and evaluates ``valid``; the epoch with the
lowest validation task loss (improvement > 1e-6, MMSA's rule) is kept; early stopping after
``patience`` epochs without improvement. Valid metrics are those of the selected epoch; ``test``
is evaluated once, at the end, with the selected weights: nothing ever reads it before.

The default loop is MMSA's (``trains/singleTask/MISA.py``, ``trains/multiTask/SELF_MM.py``), each
difference a switch of :class:`~infoenh.train.config.TrainConfig` whose default for selfmm and misa
is MMSA's: the gradient of ``accum_steps`` batches is summed and stepped; the batches after an
epoch's last full window are never stepped (``accum_tail="drop"``); MISA clips the accumulated
gradient by value after every ``backward`` (``clip_at="backward"``); the validation loss is the
mean of the batch means rounded to 4 decimals (``valid_loss="mmsa"``), selection and early stopping
read that rounded value; there is no epoch cap (``epochs=None``); the valid and test batches are
shuffled, as MMSA's loaders shuffle every split (``eval_order="shuffled"``, seeded generators).

A run folder is written by one process at a time (:mod:`infoenh.train.lock`), and a checkpoint
is resumed only when its fingerprint (options, data content, code: :mod:`infoenh.train.fingerprint`)
matches; ``log.jsonl`` is rewritten from the checkpoint's history after every save.

Resumable: after every epoch an atomic checkpoint holds the model, optimiser, scheduler, every
random state (torch, CUDA, NumPy, Python and the loaders' shuffling generators), the epoch,
the best weights, their metrics and the early-stopping counter. Re-running the same command
continues where a killed run stopped and ends with the same result (bit for bit on the CPU).
"""
from __future__ import annotations

import itertools
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..models import HostModel, build_model
from .checkpoint import file_sha256, load_checkpoint, remove_leftovers, save_checkpoint, seal, write_json, write_jsonl
from .config import VALID_LOSSES, TrainConfig, for_data, host_kwargs
from .fingerprint import fingerprint_hash, mismatch_error
from .fingerprint import run_fingerprint as _run_fingerprint
from .lock import folder_lock
from .provenance import run_metadata
from .seeding import deterministic, get_rng_state, seed_everything, set_rng_state

CHECKPOINT = "checkpoint.pt"
RUN_JSON = "run.json"
LOG = "log.jsonl"
FORMAT = "infoenh-train-v2"
SPLITS = ("train", "valid", "test")


class TrainingInterrupted(RuntimeError):
    """Raised by the ``stop_after_epochs`` hook (tests simulate a killed run with it)."""


class TrainingDiverged(FloatingPointError):
    """The loss, a gradient or the weights became NaN/inf during training, after at least one
    optimiser step (the data had passed its checks): the optimisation diverged."""


class NotFiniteAtStart(FloatingPointError):
    """The loss or a gradient is NaN/inf before any optimiser step: the weights are still the
    initial ones, so the input or a setting is to blame, not the learning rate."""


def diverged(epoch: int, step: int, batch: int, what: str) -> TrainingDiverged:
    return TrainingDiverged(f"training diverged at epoch {epoch} step {step} (batch {batch}): {what}; lower --lr "
                            "or enable clipping (--grad-clip), then re-run with --fresh")


def _has_stepped(optimizer, steps_this_epoch: int) -> bool:
    """Whether the weights have been changed by an optimiser step in this run: a step this epoch,
    one counted in an earlier epoch, or optimiser state (created by a first step; restored on resume)."""
    return steps_this_epoch > 0 or getattr(optimizer, "_infoenh_steps", 0) > 0 or bool(optimizer.state)


def not_finite(optimizer, steps_this_epoch: int, epoch: int, step: int, batch: int, what: str, b, model):
    """The error for a NaN/inf loss or gradient: :func:`diverged` after an optimiser step, else
    :class:`NotFiniteAtStart` naming the batch's largest values and InfoEnh's Sinkhorn setting."""
    if _has_stepped(optimizer, steps_this_epoch):
        return diverged(epoch, step, batch, what)
    sizes, huge = [], []
    for k, v in (b.items() if isinstance(b, Mapping) else ()):
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel():
            top = float(v.detach().abs().max())
            sizes.append(f"{k} {top:.3g}")
            if not top < 1e18:
                huge.append(k)
    scale = (f"{', '.join(huge)} near the float32 limit 3.4e38 overflow the first layer: rescale them" if huge
             else "all moderate: suspect a setting or a custom loss")
    enh = getattr(model, "infoenh", None)
    solver = (f"; InfoEnh's Sinkhorn runs at reg = {enh.reg:g} with {enh.ot_iters} iterations (a reg far below "
              "max cost / 100 is the usual solver cause: raise --reg)") if enh is not None and enh.use_fia else ""
    return NotFiniteAtStart(
        f"epoch {epoch} step {step} (batch {batch}): {what}, before any optimiser step: not a divergence (the "
        f"weights are the initial ones), so the input or a setting is the cause. Largest |value| per input of the "
        f"batch: {', '.join(sizes) or 'none'} ({scale}){solver}")


def _params_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _grad_norm(model: torch.nn.Module) -> torch.Tensor:
    """The total 2-norm of all gradients (a 0-dim tensor; inf/NaN when any gradient is)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def resolve_device(name: Optional[str]) -> torch.device:
    """``None`` -> CUDA when available, else CPU. Asking for CUDA without one is an error."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    return dev


def to_device(batch: Mapping[str, Any], device: torch.device) -> Dict[str, Any]:
    """Move a batch's tensors to ``device`` (pinned, non-blocking copies on CUDA). ``index`` and
    ``id`` stay on the CPU (Self-MM's label store checks indices without a device sync)."""
    out: Dict[str, Any] = {}
    cuda = device.type == "cuda"
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and k != "index":
            if cuda:
                v = (v if v.is_pinned() else v.pin_memory()).to(device, non_blocking=True)
            else:
                v = v.to(device)
        out[k] = v
    return out


def autocast_for(device: torch.device, amp=True):
    """``amp``: True -> bf16 autocast on CUDA, nothing on the CPU; ``"bf16"`` -> bf16 autocast on
    any device; False -> none (float32)."""
    if amp == "bf16" or (amp is True and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def device_name(device: torch.device) -> str:
    """``"cpu"`` or ``"cuda:0 (NVIDIA H100 80GB HBM3)"``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def precision_label(device: torch.device, amp=True) -> str:
    """What ``results.json`` says of the arithmetic: ``"fp32"`` or ``"bf16-mixed"``."""
    return "bf16-mixed" if (amp == "bf16" or (amp is True and device.type == "cuda")) else "fp32"


def _metrics(pred: np.ndarray, true: np.ndarray) -> Dict[str, float]:
    from ..metrics import msa_metrics

    return {k: float(v) for k, v in msa_metrics(pred, true).items()}


def selection_loss(batch_means: list, sample_mean: float, how: str) -> float:
    """The validation loss model selection reads (``TrainConfig.valid_loss``).

    ``batch_means``: each batch's mean task loss (Python floats, the batches' order);
    ``sample_mean``: the mean over samples. ``"mmsa"``: ``round(sum(batch_means) / n_batches, 4)``,
    summed left to right as MMSA's ``eval_loss += loss.item()``; ``"batch_mean"``: the same,
    unrounded; ``"sample_mean"``: ``sample_mean``."""
    if how not in VALID_LOSSES:
        raise ValueError(f"--valid-loss must be one of {', '.join(VALID_LOSSES)}, got {how!r}")
    if how == "sample_mean":
        return sample_mean
    total = 0.0
    for v in batch_means:
        total += v
    mean = total / len(batch_means)
    return round(mean, 4) if how == "mmsa" else mean


@torch.no_grad()
def evaluate(model: HostModel, loader: DataLoader, device: torch.device, amp: bool = True,
             valid_loss: str = "mmsa") -> Dict[str, Any]:
    """Predict a whole split. Returns ``{"loss": the loss of ``valid_loss`` (see
    :func:`selection_loss`), "loss_batch_mean": mean of the batch means (unrounded),
    "loss_sample_mean": mean per-sample task loss, "metrics": {...}, "pred": [N] array,
    "true": [N] array}``. Predictions and per-sample losses are float32 whatever autocast does;
    the means are taken in float64 on the host."""
    model.eval()
    preds, trues, losses, batch_means = [], [], [], []
    for batch in loader:
        b = to_device(batch, device)
        with autocast_for(device, amp):
            out = model(b)
        pred = out.pred.float()
        y = b["label"].reshape(-1).float()
        per = model.eval_loss(pred, y).float()                   # [B]
        losses.append(per)
        batch_means.append(per.mean())                           # the criterion's batch mean, float32
        preds.append(pred)
        trues.append(y)
    if not preds:
        raise ValueError("evaluate got a split with no batches")
    pred = torch.cat(preds).cpu().numpy().astype(np.float64)
    true = torch.cat(trues).cpu().numpy().astype(np.float64)
    means = torch.stack(batch_means).cpu().tolist()                # float32 values as Python floats
    sample_mean = float(torch.cat(losses).double().mean())
    if not np.isfinite(pred).all():
        raise TrainingDiverged(f"the model predicts NaN/inf on the {getattr(loader.dataset, 'split', '')} split: "
                               "training diverged; lower --lr or enable clipping (--grad-clip)")
    return {"loss": selection_loss(means, sample_mean, valid_loss),
            "loss_batch_mean": selection_loss(means, sample_mean, "batch_mean"), "loss_sample_mean": sample_mean,
            "metrics": _metrics(pred, true), "pred": pred, "true": true}


def _norm_and_clip(model: torch.nn.Module, cfg: TrainConfig) -> torch.Tensor:
    """Clip the gradients as ``cfg`` says (none, by norm or by value) and return their total
    2-norm before clipping (a 0-dim tensor, inf/NaN when a gradient is). By norm, the norm that
    ``clip_grad_norm_`` computes is the one returned (it is not computed twice)."""
    if cfg.grad_clip is None:
        return _grad_norm(model)
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return torch.zeros(())
    if cfg.grad_clip_mode == "norm":
        return torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    norm = _grad_norm(model)
    torch.nn.utils.clip_grad_value_(params, cfg.grad_clip)
    return norm


def _sticky(seen: Optional[torch.Tensor], norm: torch.Tensor) -> torch.Tensor:
    """The latest norm, unless an earlier one of the same window was not finite (that one is kept):
    a device tensor, read once at the step."""
    return norm if seen is None else torch.where(torch.isfinite(seen), norm, seen)


def _forward_loss(model, b, epoch, device, cfg, step, i, optimizer=None):
    """Forward and training loss of batch ``i`` under autocast: ``(out, loss 0-dim, parts)``;
    a ValueError raised with non-finite weights is reported as divergence, one about NaN/inf
    encoder outputs before any optimiser step as :class:`NotFiniteAtStart`."""
    try:
        with autocast_for(device, cfg.autocast):
            out = model(b)
            loss, parts = model.training_loss(out, b, epoch)
    except ValueError as e:
        # InfoEnh checks its inputs (the encoders' outputs): NaN there after data that passed
        # its checks means the weights diverged, not that the data is bad
        if not _params_finite(model):
            raise diverged(epoch, step, i + 1, "the weights became NaN/inf") from None
        if optimizer is not None and " NaN and " in str(e) and not _has_stepped(optimizer, step):
            raise not_finite(optimizer, step, epoch, step + 1, i + 1,
                             f"the host's encoders gave InfoEnh NaN/inf ({e})", b, model) from None
        raise
    return out, loss, parts


def train_one_epoch(model: HostModel, loader: DataLoader, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    epoch: int, device: torch.device, desc: str = "") -> Dict[str, float]:
    """One pass over ``train``, MMSA's loop: gradients zeroed at the start of the epoch and after
    each step; per batch forward, host loss (+ InfoEnh's), backward, (``clip_at="backward"``:
    clip the accumulated gradient), host hook (Self-MM's label update); an optimiser step after
    every ``accum_steps`` batches (accumulated losses are summed, not averaged, as MMSA). The
    ``n % accum_steps`` batches after the last full window: ``accum_tail="drop"`` runs them
    (forward, backward, hook) but never steps on their gradient, which the next epoch's zeroing
    discards (MMSA); ``"step"`` steps on them at the end of the epoch.
    ``clip_at="step"`` clips once before each step.

    Returns mean loss parts, mean InfoEnh diagnostics (``diag_<name>``, means over the epoch's
    batches) and ``optimizer_steps`` (int). Loss parts and diagnostics are summed as device
    tensors and read once at the end of the epoch; the running loss shown on the progress bar
    (and checked for NaN) is read every batch on the CPU, every 10 batches on CUDA. At each
    optimiser step the total gradient norm (before clipping; with ``clip_at="backward"`` every
    norm since the last step) is checked with one small host read: a NaN/inf gradient raises
    :class:`TrainingDiverged` before it reaches the weights."""
    from tqdm import tqdm  # plain text bar: works in terminals and notebooks without ipywidgets

    model.train()
    n = len(loader)
    if n == 0:
        raise ValueError("the training split gives no batch; it is empty (or smaller than one batch with drop_last)")
    sums: Dict[str, torch.Tensor] = {}
    diag_sums: Dict[str, torch.Tensor] = {}   # kept as tensors: read once per epoch, no sync per step
    running = None
    check_every = 1 if device.type == "cpu" else 10
    clip_each_backward = cfg.clip_at == "backward" and cfg.grad_clip is not None
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(loader, desc=desc, leave=False, disable=cfg.quiet, dynamic_ncols=True, file=sys.stderr)
    step, window_norm = 0, None
    for i, batch in enumerate(bar):
        b = to_device(batch, device)
        out, loss, parts = _forward_loss(model, b, epoch, device, cfg, step, i, optimizer)
        loss.backward()
        if clip_each_backward:
            window_norm = _sticky(window_norm, _norm_and_clip(model, cfg))
        model.after_backward(out, b, epoch)
        if (i + 1) % cfg.accum_steps == 0 or (cfg.accum_tail == "step" and i + 1 == n):
            step += 1
            gnorm = window_norm if clip_each_backward else _norm_and_clip(model, cfg)
            if not bool(torch.isfinite(gnorm)):
                raise not_finite(optimizer, step - 1, epoch, step, i + 1,
                                 f"loss {float(loss.detach()):.4g}, gradient norm {float(gnorm)}", b, model)
            optimizer.step()
            optimizer._infoenh_steps = getattr(optimizer, "_infoenh_steps", 0) + 1
            optimizer.zero_grad(set_to_none=True)
            window_norm = None
        parts = {"loss": loss.detach(), **parts}
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v.detach().float()
        for k, v in out.diagnostics.items():
            v = torch.as_tensor(v).detach().float()                  # a host may also report floats
            diag_sums[k] = diag_sums[k] + v if k in diag_sums else v
        if (i + 1) % check_every == 0 or i + 1 == n:
            running = float(sums["loss"]) / (i + 1)
            if not math.isfinite(running):
                raise not_finite(optimizer, step, epoch, step, i + 1, f"loss {running}", b, model)
            bar.set_postfix(loss=f"{running:.4f}", refresh=False)
    bar.close()
    res: Dict[str, Any] = {k: float(v) / n for k, v in sums.items()}
    res.update({f"diag_{k}": float(v) / n for k, v in diag_sums.items()})
    res["optimizer_steps"] = step
    return res


def _check_splits(ds: Mapping) -> None:
    for s in SPLITS:
        if s not in ds:
            raise KeyError(f"the data has no {s!r} split; training needs train, valid and test")
        if len(ds[s]) == 0:
            raise ValueError(f"the {s!r} split is empty (0 samples); training needs samples in train, valid "
                             "(model selection) and test (the report)")


def _train_labels(ds_train, batch_size: int = 512):
    """All training labels ``[N]`` with their dataset indices ``[N]`` (file order, no shuffling)."""
    from ..data import collate

    g = torch.Generator().manual_seed(0)  # keep the global RNG untouched
    labels, index = [], []
    for b in DataLoader(ds_train, batch_size=batch_size, shuffle=False, collate_fn=collate, generator=g):
        labels.append(b["label"].reshape(-1))
        index.append(b["index"].reshape(-1))
    return torch.cat(labels), torch.cat(index)


def run_fingerprint(cfg: TrainConfig, ds: Mapping) -> Dict[str, Any]:
    """What a checkpoint or a finished run must have been computed from to be reused: the
    configuration, the data's content and the code (:mod:`infoenh.train.fingerprint`)."""
    return _run_fingerprint(cfg, ds)


def run_init_seed(cfg: TrainConfig) -> Optional[int]:
    """The ``init_seed`` a run builds its model with: the run's own seed under ``init="seeded"``
    (each module then starts from ``(seed, its path)``: :mod:`infoenh.models.init`), so the start
    depends on nothing drawn before (loading BERT, ...); None under ``init="independent"``."""
    return int(cfg.seed) if cfg.init == "seeded" else None


def text_mode(cfg: TrainConfig, ds: Mapping) -> str:
    """``cfg.text`` resolved against the data: ``"finetune"`` or ``"frozen"``."""
    from ..models.bert import has_text_bert, resolve_text_mode

    if "text" not in cfg.modalities:
        return "frozen"
    return resolve_text_mode(cfg.text, has_text_bert(ds), bool(getattr(ds, "synthetic", False)))


def optimizer_groups(model: HostModel, cfg: TrainConfig) -> list:
    """The host's parameter groups, with a fine-tuned BERT in groups of its own (its rate:
    ``cfg.bert_lr``, else the dataset's BERT rate, MISA's following its other group: exactly what
    :func:`infoenh.models.settings.group_settings` gives and ``results.json`` records)."""
    from ..models.settings import group_settings

    rates, decays = group_settings(cfg.model, cfg.settings_of, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                   group_lr=cfg.group_lr, group_weight_decay=cfg.group_weight_decay,
                                   bert_lr=cfg.bert_lr)
    groups = model.param_groups(rates, decays)
    if model.bert is None:
        return groups
    from ..models.bert import split_bert_groups

    # group_settings' rate for BERT is the one applied (and recorded: config.dataset_settings); MISA's
    # follows its 'other' group (MMSA's single optimiser) unless --bert-lr
    return split_bert_groups(groups, model.bert, rates["bert"], decays["bert"])


def _scheduler(cfg: TrainConfig, optimizer):
    if cfg.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=3)
    return None


def _log_line(seed: int, epoch: int, cfg: TrainConfig, tr: Dict[str, float], va: Dict[str, Any],
              best_epoch: int, bad: int, secs: float) -> str:
    m = va["metrics"]
    cap = "" if cfg.epochs is None else f"/{cfg.epochs}"          # no cap: "epoch   3"
    return (f"[seed {seed}] epoch {epoch:3d}{cap}  train {tr['loss']:.4f}  valid loss {va['loss']:.4f}  "
            f"MAE {m.get('MAE', float('nan')):.4f}  Corr {m.get('Corr', float('nan')):.4f}  "
            f"Acc-2 {m.get('Non0_acc_2', float('nan')):.4f}  best {best_epoch} ({bad}/{cfg.patience})  {secs:.1f}s")


def fit(ds: Mapping, cfg: TrainConfig, run_dir=None, *, resume: bool = True,
        on_epoch_end: Optional[Callable[[int, HostModel, Dict[str, Any]], None]] = None,
        stop_after_epochs: Optional[int] = None, log: Optional[Callable[[str], None]] = None,
        return_model: bool = False):
    """Train one seed and return its result::

        {"seed", "best_epoch", "valid": {metric: float}, "test": {metric: float},
         "valid_loss", "test_loss", "epochs_run", "stopped_early", "train_seconds", "history",
         "wall_seconds", "peak_memory_bytes", "peak_memory_kind", "protocol", "optimizer_steps",
         "diagnostics", "diagnostics_selected_epoch", "started_at", "finished_at", "environment",
         "data_arrays_sha256", "data_file_sha256", ...}

    ``valid_loss``: the selection value of the selected epoch (``cfg.valid_loss``: rounded to 4
    decimals by default, as MMSA); ``test_loss`` is the same measure on ``test``.
    ``stopped_early``: stopped by patience (not by the epoch cap). ``wall_seconds``: this call,
    evaluation included (``train_seconds`` adds up the epochs over resumes), without the process's
    one-time start-up (lazy imports, the CUDA context: :func:`_warm_up`), which would otherwise
    make the first run of a process seconds slower than the next; the first run on a GPU may still
    be a little slower (kernels and cuBLAS handles are created on first use).
    ``peak_memory_bytes``: CUDA, ``torch.cuda.max_memory_allocated`` since the start of this call
    (``peak_memory_kind="cuda_max_allocated"``); CPU, the process's peak resident size
    (``"cpu_maxrss_process"``: the whole process's peak so far, not this run's alone).
    ``n_params``: the model's parameter count (BERT included when fine-tuned): an ablation arm and
    its control differ only in the part under test.
    ``protocol``: the training loop's settings (:func:`protocol`). ``optimizer_steps``: steps
    taken over all epochs. ``diagnostics``: InfoEnh's training diagnostics (``kept_frac_<m>``,
    ``ot_converged_frac``, ``ot_iters_mean``, ``no_negative``, ``infonce_<m>``, ...) averaged over
    every training batch of the run: the mean over epochs of the epoch means, which is the batch
    mean since every epoch has the same batches; ``diagnostics_selected_epoch``: the selected
    epoch's means. Both are ``{}`` without InfoEnh. ``started_at``/``finished_at`` (UTC ISO),
    ``environment`` (versions, threads, command line) and the data's hashes:
    :func:`infoenh.train.provenance.run_metadata`.

    ``run_dir``: where the checkpoint, ``log.jsonl`` and ``run.json`` go (None: nothing written,
    no resume). ``resume``: continue from ``run_dir/checkpoint.pt`` when its configuration matches.
    ``on_epoch_end(epoch, model, record)`` runs after each epoch's checkpoint.
    ``stop_after_epochs``: test hook, raise :class:`TrainingInterrupted` after that epoch's
    checkpoint (as if the process had been killed).
    ``return_model``: return ``(result, model)``, the model holding the selected epoch's weights
    (the ones the test metrics were computed with).
    """
    cfg = for_data(cfg, ds).resolved()
    log = log or ((lambda s: None) if cfg.quiet else (lambda s: print(s, flush=True)))
    _check_splits(ds)
    _check_accum(math.ceil(len(ds["train"]) / cfg.batch_size), cfg)
    device = resolve_device(cfg.device)
    _warm_up(device)
    t_start = time.perf_counter()
    _reset_peak_memory(device)
    run_dir = None if run_dir is None else Path(run_dir)
    if run_dir is None:
        return _fit(ds, cfg, device, None, None, None, resume, on_epoch_end, stop_after_epochs, log,
                    return_model, t_start)
    fp_doc = run_fingerprint(cfg, ds)
    fingerprint = fingerprint_hash(fp_doc)
    with folder_lock(run_dir):
        remove_leftovers(run_dir)
        return _fit(ds, cfg, device, run_dir, fingerprint, fp_doc, resume, on_epoch_end, stop_after_epochs, log,
                    return_model, t_start)


def _warm_up(device: torch.device) -> None:
    """The process's one-time start-up, done before :func:`fit` starts its clock so that the first
    run of a process is not charged for it: the lazy imports of the first run (the metrics pull in
    scikit-learn, ``torch.use_deterministic_algorithms`` torch's compiler stack: seconds on a CPU)
    and, on CUDA, the creation of the CUDA context. A no-op after the first call."""
    if device.type == "cuda" and device not in _WARM:
        torch.cuda.init()
        torch.zeros((), device=device)                    # the device's context
        _WARM.add(device)
    if "imports" in _WARM:
        return
    from .. import metrics, module  # noqa: F401
    from ..data import make_loaders  # noqa: F401

    # imports torch._inductor on first use; setting the current mode again changes nothing
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled(),
                                       warn_only=torch.is_deterministic_algorithms_warn_only_enabled())
    _WARM.add("imports")


_WARM: set = set()


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> Dict[str, Any]:
    """``{"peak_memory_bytes", "peak_memory_kind"}``: CUDA's peak allocation since the reset at the
    start of :func:`fit`, or the CPU process's peak resident size (None where unknown)."""
    if device.type == "cuda":
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
                "peak_memory_kind": "cuda_max_allocated"}
    try:
        import resource
    except ImportError:                                   # Windows
        return {"peak_memory_bytes": None, "peak_memory_kind": "cpu_maxrss_process"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_memory_bytes": int(rss if sys.platform == "darwin" else rss * 1024),   # macOS: bytes, Linux: KiB
            "peak_memory_kind": "cpu_maxrss_process"}


def protocol(cfg: TrainConfig) -> Dict[str, Any]:
    """The training loop's settings of a resolved ``cfg``, as ``results.json`` records them."""
    return {"accum_tail": cfg.accum_tail, "clip_at": cfg.clip_at, "valid_loss": cfg.valid_loss,
            "eval_order": cfg.eval_order,
            "epochs_cap": cfg.epochs, "patience": cfg.patience, "accum_steps": cfg.accum_steps,
            "grad_clip": cfg.grad_clip, "grad_clip_mode": cfg.grad_clip_mode}


def run_diagnostics(history: list, epoch: Optional[int] = None) -> Dict[str, float]:
    """InfoEnh's training diagnostics ``{name: float}``: the mean over ``history``'s epochs of each
    epoch's batch mean (every epoch has the same batches, so this is the mean over all batches), or
    the values of ``epoch`` alone."""
    recs = [h["train"] for h in history if epoch is None or h["epoch"] == epoch]
    names = sorted({k for r in recs for k in r if k.startswith("diag_")})
    out = {}
    for k in names:
        vals = [r[k] for r in recs if k in r]
        out[k[len("diag_"):]] = float(sum(vals) / len(vals))
    return out


def _check_accum(n_batches: int, cfg: TrainConfig) -> None:
    if cfg.accum_tail == "drop" and n_batches < cfg.accum_steps:
        raise ValueError(f"the training split gives {n_batches} batches per epoch, fewer than --accum-steps "
                         f"{cfg.accum_steps}: with --accum-tail drop (MMSA) no optimiser step would ever be taken; "
                         "lower --accum-steps or --batch-size, or use --accum-tail step")


def _fit(ds, cfg, device, run_dir, fingerprint, fp_doc, resume, on_epoch_end, stop_after_epochs, log, return_model,
         t_start):
    """:func:`fit` once its arguments are checked and the run folder is locked."""
    ckpt_path = None if run_dir is None else run_dir / CHECKPOINT
    with deterministic(cfg.deterministic, device):
        seed_everything(cfg.seed)
        from ..data import make_loaders

        text = text_mode(cfg, ds)
        model = build_model(cfg.model, ds["train"].dims if hasattr(ds["train"], "dims") else ds.dims,
                            infoenh=cfg.infoenh, modalities=cfg.modalities, n_train=len(ds["train"]),
                            infoenh_kwargs=cfg.infoenh_kwargs, text=text, bert=cfg.bert, init=cfg.init,
                            init_seed=run_init_seed(cfg), **host_kwargs(cfg)).to(device)
        labels, index = _train_labels(ds["train"])
        model.init_from_train(labels, index)
        optimizer = torch.optim.Adam(optimizer_groups(model, cfg))
        scheduler = _scheduler(cfg, optimizer)
        loaders = make_loaders(ds, batch_size=cfg.batch_size, seed=cfg.seed, num_workers=cfg.num_workers,
                               eval_order=cfg.eval_order)
        gen = loaders["train"].generator
        if gen is None:
            raise RuntimeError("the train loader has no generator; make_loaders must seed one for resumable runs")

        start, best = 1, {"epoch": 0, "valid_loss": float("inf"), "valid": {}, "state": None}
        bad, history, finished, train_secs = 0, [], False, 0.0
        if ckpt_path is not None and resume and ckpt_path.exists():
            ck = load_checkpoint(ckpt_path)
            if ck.get("format") != FORMAT or ck.get("fingerprint") != fingerprint:
                theirs = ck.get("fingerprint_doc")
                raise mismatch_error("checkpoint", ckpt_path, json.loads(theirs) if isinstance(theirs, str) else None,
                                     fp_doc)
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            if scheduler is not None and ck.get("scheduler") is not None:
                scheduler.load_state_dict(ck["scheduler"])
            set_rng_state(ck["rng"])
            gen.set_state(ck["loader_generator"])
            for split, state in (ck.get("eval_generators") or {}).items():
                loaders[split].generator.set_state(state)
            start, best, bad = int(ck["epoch"]) + 1, ck["best"], int(ck["bad_epochs"])
            history, finished = list(ck["history"]), bool(ck["finished"])
            train_secs = float(ck.get("train_seconds", 0.0))
            write_jsonl(history, run_dir / LOG)   # the log is the checkpoint's history: no gap, no extra line
            log(f"[seed {cfg.seed}] resumed from {ckpt_path} after epoch {start - 1}")

        epoch = start - 1
        epochs = itertools.count(start) if cfg.epochs is None else range(start, cfg.epochs + 1)
        for epoch in epochs:
            if finished:
                break
            t0 = time.perf_counter()
            tr = train_one_epoch(model, loaders["train"], optimizer, cfg, epoch, device,
                                 desc=f"seed {cfg.seed} epoch {epoch}")
            va = evaluate(model, loaders["valid"], device, cfg.autocast, cfg.valid_loss)
            if not math.isfinite(va["loss"]):
                raise TrainingDiverged(f"training diverged at epoch {epoch}: the validation loss is {va['loss']}; "
                                       "lower --lr or enable clipping (--grad-clip), then re-run with --fresh")
            if scheduler is not None:
                scheduler.step(va["loss"])
            if va["loss"] <= best["valid_loss"] - 1e-6:
                best = {"epoch": epoch, "valid_loss": va["loss"], "valid": va["metrics"],
                        "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
                bad = 0
            else:
                bad = epoch - best["epoch"]
            finished = bad >= cfg.patience or (cfg.epochs is not None and epoch >= cfg.epochs)
            secs = time.perf_counter() - t0
            train_secs += secs
            record = {"epoch": epoch, "train": tr, "valid_loss": va["loss"], "valid": va["metrics"],
                      "valid_loss_batch_mean": va.get("loss_batch_mean"),
                      "valid_loss_sample_mean": va.get("loss_sample_mean"),
                      "best_epoch": best["epoch"], "seconds": secs}
            history.append(record)
            log(_log_line(cfg.seed, epoch, cfg, tr, va, best["epoch"], bad, secs))
            if ckpt_path is not None:
                save_checkpoint({
                    "format": FORMAT, "fingerprint": fingerprint, "fingerprint_doc": json.dumps(fp_doc),
                    "epoch": epoch, "finished": finished,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": None if scheduler is None else scheduler.state_dict(),
                    "rng": get_rng_state(), "loader_generator": gen.get_state(),
                    "eval_generators": {sp: loaders[sp].generator.get_state() for sp in ("valid", "test")
                                        if loaders[sp].generator is not None},
                    "best": best, "bad_epochs": bad, "history": history, "train_seconds": train_secs,
                }, ckpt_path)
                write_jsonl(history, run_dir / LOG)   # rewritten whole from the checkpoint's history
            if on_epoch_end is not None:
                on_epoch_end(epoch, model, record)
            if stop_after_epochs is not None and epoch >= stop_after_epochs and not finished:
                raise TrainingInterrupted(f"stopped after epoch {epoch} (test hook)")
            if finished:
                break

        if best["state"] is None:
            raise RuntimeError("no epoch was trained (epochs < 1?)")
        model.load_state_dict(best["state"])
        te = evaluate(model, loaders["test"], device, cfg.autocast, cfg.valid_loss)
    last = history[-1]
    result = {
        "seed": cfg.seed, "best_epoch": int(best["epoch"]), "valid": dict(best["valid"]), "test": te["metrics"],
        "valid_loss": float(best["valid_loss"]), "test_loss": te["loss"], "epochs_run": len(history),
        "stopped_early": last["epoch"] - last["best_epoch"] >= cfg.patience,
        "train_seconds": round(train_secs, 3), "device": device_name(device),
        "precision": precision_label(device, cfg.autocast),
        "n_params": sum(p.numel() for p in model.parameters()),
        "text": f"BERT fine-tuned ({cfg.bert})" if model.bert is not None else "frozen features",
        "float32": "predictions, losses, model selection and metrics (whatever autocast does)",
        "protocol": protocol(cfg),
        "optimizer_steps": int(sum(h["train"].get("optimizer_steps", 0) for h in history)),
        "diagnostics": run_diagnostics(history),
        "diagnostics_selected_epoch": run_diagnostics(history, int(best["epoch"])),
        "history": [{"epoch": h["epoch"], "train_loss": h["train"]["loss"], "valid_loss": h["valid_loss"],
                     "valid_loss_batch_mean": h.get("valid_loss_batch_mean"),
                     "valid_loss_sample_mean": h.get("valid_loss_sample_mean"),
                     "optimizer_steps": h["train"].get("optimizer_steps")} for h in history],
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        **peak_memory(device),
        **run_metadata(ds, t_start),      # times, versions, threads, command line, data hashes
    }
    if run_dir is not None:
        result["fingerprint"] = fingerprint
        ck_sum = file_sha256(ckpt_path) if ckpt_path is not None and ckpt_path.exists() else None
        write_json(seal({**result, "fingerprint_doc": fp_doc, "checkpoint_sha256": ck_sum}), run_dir / RUN_JSON)
    return (result, model) if return_model else result
