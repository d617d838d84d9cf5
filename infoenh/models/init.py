"""The same start for the same seed, whatever parts an ablation arm adds.

Building a module draws random numbers, so every module created after InfoEnh's gate or FIA's
wider layers would start from other values than in an arm without them, and a paired comparison
by seed would compare different starts as well as different arms. :func:`seeded_init` re-draws
every module's parameters from a generator seeded by ``(seed, the module's path in the model)``:

    seed_m = int(SHA-256(f"{seed}:{path}")[:15 hex digits])      e.g. path "fusion_head.l1"

so a module's start depends only on the seed, its path, its type and its shape: two arms share
the start of every module they both have (same path, same shape), whatever else they build.
Each module is re-drawn by its own ``reset_parameters()`` (PyTorch's default initialisation of
that layer type: Kaiming-uniform linear weights, uniform LSTM weights, LayerNorm ones and zeros,
Xavier attention projections), so the distributions are the modules' own defaults. Modules are
visited children first, so that a parent that re-initialises part of a child (``MultiheadAttention``
zeroes its ``out_proj`` bias) has the last word, as in its constructor. Pretrained weights (a
fine-tuned BERT, under ``skip``) are never touched. The global random state is left as it was.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Iterator, Tuple

import torch
from torch import nn

SKIP = ("bert",)   # submodules holding pretrained weights: never re-initialised


def module_seed(seed: int, path: str) -> int:
    """The seed of the module at ``path`` (``"encoders.audio.rnn"``) for run seed ``seed``: 60 bits
    of SHA-256 of ``"<seed>:<path>"``."""
    return int(hashlib.sha256(f"{int(seed)}:{path}".encode()).hexdigest()[:15], 16)


def _post_order(module: nn.Module, prefix: str = "") -> Iterator[Tuple[str, nn.Module]]:
    for name, child in module.named_children():
        yield from _post_order(child, f"{prefix}.{name}" if prefix else name)
    yield prefix, module


def _reset(module: nn.Module):
    """The module's own initialiser, or None when it has none."""
    for name in ("reset_parameters", "_reset_parameters"):
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    return None


def seeded_init(model: nn.Module, seed: int, skip: Iterable[str] = SKIP) -> nn.Module:
    """Re-draw every parameter of ``model`` from ``(seed, module path)`` (module docstring), in
    place; returns ``model``. Modules under a path in ``skip`` (first component) keep their
    weights. A module that holds parameters of its own but has no ``reset_parameters`` is an
    error: its start would depend on what was built before it."""
    skip = tuple(skip)
    for path, mod in _post_order(model):
        if path.split(".")[0] in skip:
            continue
        fn = _reset(mod)
        if fn is None:
            if any(True for _ in mod.parameters(recurse=False)):
                raise TypeError(f"{path or type(model).__name__} ({type(mod).__name__}) holds parameters but has no "
                                "reset_parameters(): give it one so that seeded_init can draw its start")
            continue
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(module_seed(seed, path))
            with torch.no_grad():
                fn()
    return model
