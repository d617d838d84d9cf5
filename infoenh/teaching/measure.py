"""Measurements the chapters show: how much memory autograd keeps for a backward pass.

``saved_tensor_bytes(fn)`` runs ``fn()`` and adds up the bytes of every tensor autograd saves for
the backward pass while it runs (through :func:`torch.autograd.graph.saved_tensors_hooks`), each
storage counted once. That is the memory a backward pass needs beyond the inputs and outputs,
the same on every device, and unlike a process's peak memory it does not depend on the allocator.
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import torch
from torch.autograd.graph import saved_tensors_hooks


def saved_tensor_bytes(fn: Callable[[], Any]) -> Tuple[Any, int]:
    """Run ``fn()``; return ``(its result, bytes autograd saved for backward during it)``.

    Tensors that share a storage (views of one tensor, a tensor saved twice) count once, by the
    size of their storage. Tensors saved by custom ``autograd.Function`` s through
    ``ctx.save_for_backward`` are counted too.
    """
    storages = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[(s.data_ptr(), t.device)] = s.nbytes()
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())
