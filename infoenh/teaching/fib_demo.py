"""Chapter 3's experiments: train a tiny FIB on the synthetic testbed and follow its hard mask.

:func:`trace_mask` trains one FIB (frozen identity projection, parameter-free norm scorer, so the
gate is the only part of FIB that learns) with a linear head on the masked mean of z, with the L1
loss plus alpha * InfoNCE, and records every ``probe_every`` steps which (row, feature) entries the
hard mask keeps on a fixed probe set. Run it twice, with ``straight_through`` off (the paper) and on
(beyond the paper), from the same initialisation and the same batches: the forward passes agree
until the first update, and any difference after it comes from the gradient of the hard mask.
``start=`` continues a trained model (e.g. switch the estimator on after training without it) and
:func:`join_traces` puts a run and its continuation end to end.

The testbed's switch: :func:`add_marker` adds a constant to one feature at the planted steps (a
cue that makes them easy to find and says nothing about the label), :func:`chance_recall` is the
share of planted steps that k steps drawn at random would hit, and :func:`evaluate` scores a
trained model on held-out clips (MAE, share of planted steps selected, kept share per feature).
"""
from __future__ import annotations

import copy
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .._validate import check_mask, check_number, check_positive_int, check_tensor
from ..fib import FIB, FIBOutput
from ..infonce import sentiment_infonce


class MaskTrace(NamedTuple):
    """What :func:`trace_mask` records; T = steps // probe_every + 1 probes (step 0 = before training)."""

    steps: np.ndarray        # [T] int, training step of each probe
    kept_frac: np.ndarray    # [T] share of (real row, feature) entries with m_h = 1 on the probe set
    per_feature: np.ndarray  # [T, d] share of real rows on which each feature is kept
    dead: np.ndarray         # [T] int, features switched off on every real row of the probe set
    loss: np.ndarray         # [steps] training loss of each step (task + alpha * InfoNCE)
    fib: FIB                 # the trained FIB and head, to continue from (``start=``)
    head: nn.Module
    watched: Optional[np.ndarray] = None  # [T, n_watch, k, d] hard mask of the ``watch`` clips


def _masked_mean(out: FIBOutput) -> Tensor:
    """z [B, k, d] averaged over its real rows -> [B, d]."""
    w = out.mask.unsqueeze(-1).to(out.z.dtype)
    return (out.z * w).sum(1) / w.sum(1).clamp(min=1.0)


def _probe(fib: FIB, x: Tensor, mask: Tensor) -> np.ndarray:
    """Share of the real rows of the probe set on which each feature is kept, [d]."""
    with torch.no_grad():
        out = fib(x, mask)
        real = out.mask.unsqueeze(-1).expand_as(out.hard).to(out.hard.dtype)
        return ((out.hard * real).sum((0, 1)) / real.sum((0, 1)).clamp(min=1.0)).numpy()


def _build(d: int, k: int, straight_through: bool):
    """FIB with a frozen identity projection and the norm scorer, and a linear head [d -> 1]."""
    fib = FIB(d, d, k, score="norm", straight_through=straight_through)
    with torch.no_grad():                    # feature f of e is input feature f
        fib.proj.weight.copy_(torch.eye(d))
        fib.proj.bias.zero_()
    fib.proj.requires_grad_(False)
    return fib, nn.Linear(d, 1)


def trace_mask(x: Tensor, mask: Tensor, y: Tensor, *, straight_through: bool, steps: int = 300, batch: int = 64,
               k: int = 4, lr: float = 1e-2, alpha: float = 0.5, use_infonce: bool = True,
               negatives: str = "sign", probe_every: int = 10, probe: Optional[int] = None,
               seed: int = 0, start: Optional[MaskTrace] = None,
               watch: Optional[Tuple[Tensor, Tensor]] = None) -> MaskTrace:
    """Train a tiny FIB + linear head and record its hard mask on a probe set during training.

    Args:
        x: [N, L, d] training sequences; mask: [N, L] bool (True = real step); y: [N] labels.
        straight_through: the hard mask's straight-through estimator (beyond the paper) off or on.
        steps, batch, lr: Adam steps, batch size (drawn with replacement), learning rate.
        k: time steps kept by top-k pooling.  alpha, use_infonce, negatives: the InfoNCE term.
        probe_every: steps between two probes.  probe: the first ``probe`` samples form the probe
            set (default: all N, so that a feature off on the probe set is off on every batch).
        seed: initialisation and batches; the global random state is left as it was.
        start: continue from the model of an earlier trace (a copy of it; the earlier trace is
            left as it was) instead of a fresh one; the steps count on from its last step and
            the optimiser starts afresh. ``k`` must match.
        watch: optional (x_w [n, L, d], mask_w [n, L]): clips whose hard mask [k, d] is recorded
            at every probe (``MaskTrace.watched``), to draw the mask of one clip as training goes.

    Returns:
        :class:`MaskTrace`.
    """
    check_tensor(x, "x", ndim=3)
    N, L, d = x.shape
    mask = check_mask(mask, "mask", (N, L))
    check_tensor(y, "y", ndim=1)
    if y.shape[0] != N:
        raise ValueError(f"y has {y.shape[0]} entries but x has {N} samples")
    for value, name in ((steps, "steps"), (batch, "batch"), (k, "k"), (probe_every, "probe_every")):
        check_positive_int(value, name)
    lr = check_number(lr, "lr", gt=0, meaning="the learning rate")
    alpha = check_number(alpha, "alpha", ge=0, meaning="the weight of the InfoNCE loss")
    n_probe = N if probe is None else min(check_positive_int(probe, "probe"), N)
    fib, head, step0 = _start(d, k, straight_through, seed, start)
    opt = torch.optim.Adam([*fib.gate.parameters(), *head.parameters()], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    probes, at, losses = [_probe(fib, x[:n_probe], mask[:n_probe])], [step0], []
    watched = [] if watch is None else [_watch(fib, *watch)]
    for step in range(step0 + 1, step0 + steps + 1):
        b = torch.randint(0, N, (batch,), generator=gen)
        out = fib(x[b], mask[b])
        loss = (head(_masked_mean(out)).squeeze(-1) - y[b]).abs().mean()
        if use_infonce:
            loss = loss + alpha * sentiment_infonce(out.e, out.z, y[b], out.mask, negatives=negatives).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step - step0) % probe_every == 0:
            probes.append(_probe(fib, x[:n_probe], mask[:n_probe]))
            at.append(step)
            if watch is not None:
                watched.append(_watch(fib, *watch))
    per_feature = np.stack(probes)
    return MaskTrace(steps=np.array(at), kept_frac=per_feature.mean(1), per_feature=per_feature,
                     dead=(per_feature == 0).sum(1), loss=np.array(losses), fib=fib, head=head,
                     watched=np.stack(watched) if watch is not None else None)


def _watch(fib: FIB, x: Tensor, mask: Tensor) -> np.ndarray:
    """The hard mask [n, k, d] of a few clips."""
    with torch.no_grad():
        return fib(x, mask).hard.numpy()


def add_marker(x: Tensor, planted: Tensor, dim: int, value: float = 3.0) -> Tensor:
    """A copy of x [N, L, d] with ``value`` added to feature ``dim`` at the planted steps
    (planted [N, L] bool): the marker, a cue that is the same on every planted step."""
    check_tensor(x, "x", ndim=3)
    planted = check_mask(planted, "planted", x.shape[:2])
    if not 0 <= dim < x.shape[-1]:
        raise ValueError(f"dim must be a feature index in [0, {x.shape[-1]}), got {dim}")
    out = x.clone()
    out[..., dim] += value * planted.to(x.dtype)
    return out


def chance_recall(mask: Tensor, planted: Tensor, k: int, *, n_sim: int = 200, seed: int = 0) -> float:
    """Share of the planted steps (planted [N, L] bool) that top-k pooling would select if it
    ranked the real steps (mask [N, L] bool) at random: the chance level of the recall."""
    mask = check_mask(mask, "mask", tuple(planted.shape))
    pool = FIB(1, 1, check_positive_int(k, "k"), score="norm").pool
    gen = torch.Generator().manual_seed(seed)
    hits = 0.0
    for _ in range(check_positive_int(n_sim, "n_sim")):
        top, real = pool.select(torch.rand(mask.shape, generator=gen), mask)
        hits += float((planted.gather(1, top) & real).sum())
    return hits / (n_sim * float(planted.sum()))


class Scores(NamedTuple):
    mae: float                # mean absolute error of the head on the held-out clips
    recall: float             # share of the planted steps that top-k pooling selected
    per_feature: np.ndarray   # [d] share of real kept rows on which each feature is kept


def evaluate(trace: MaskTrace, x: Tensor, mask: Tensor, y: Tensor, planted: Tensor) -> Scores:
    """Score the model of a trace on held-out clips x [N, L, d], mask, planted [N, L], y [N]."""
    with torch.no_grad():
        out = trace.fib(x, mask)
        mae = float((trace.head(_masked_mean(out)).squeeze(-1) - y).abs().mean())
        hit = planted.gather(1, out.idx.clamp(min=0)) & out.mask
        real = out.mask.unsqueeze(-1).expand_as(out.hard).to(out.hard.dtype)
        per_feature = ((out.hard * real).sum((0, 1)) / real.sum((0, 1)).clamp(min=1.0)).numpy()
    return Scores(mae=mae, recall=float(hit.sum() / planted.sum()), per_feature=per_feature)


def _start(d: int, k: int, straight_through: bool, seed: int, start: Optional[MaskTrace]):
    """(fib, head, first step): a fresh model drawn with ``seed``, or a copy of ``start``'s."""
    if start is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fib, head = _build(d, k, straight_through)
        return fib, head, 0
    if not isinstance(start, MaskTrace):
        raise TypeError(f"start must be a MaskTrace returned by trace_mask, got {type(start).__name__}")
    if start.fib.in_dim != d or start.fib.pool.k != k:
        raise ValueError(f"start was trained with d={start.fib.in_dim}, k={start.fib.pool.k}; "
                         f"this call has d={d}, k={k}")
    fib, head = copy.deepcopy(start.fib), copy.deepcopy(start.head)
    fib.straight_through = straight_through
    return fib, head, int(start.steps[-1])


def join_traces(first: MaskTrace, then: MaskTrace) -> MaskTrace:
    """One trace from a run and its continuation (``then`` made with ``start=first``): the probes
    of both, the continuation's first probe (the same model as ``first``'s last) counted once."""
    if int(then.steps[0]) != int(first.steps[-1]):
        raise ValueError(f"then starts at step {int(then.steps[0])}, but first ends at step {int(first.steps[-1])}; "
                         "make it with trace_mask(..., start=first)")
    return MaskTrace(steps=np.concatenate([first.steps, then.steps[1:]]),
                     kept_frac=np.concatenate([first.kept_frac, then.kept_frac[1:]]),
                     per_feature=np.concatenate([first.per_feature, then.per_feature[1:]]),
                     dead=np.concatenate([first.dead, then.dead[1:]]),
                     loss=np.concatenate([first.loss, then.loss]), fib=then.fib, head=then.head,
                     watched=_join_watched(first.watched, then.watched))


def _join_watched(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if a is None or b is None else np.concatenate([a, b[1:]])
