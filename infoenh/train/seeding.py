"""Seeds, determinism and the random-number state a checkpoint must carry.

Every state is converted to tensors and plain Python containers so that a checkpoint loads with
``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Dict, Optional

import numpy as np
import torch

DEFAULT_SEEDS = (1111, 1112, 1113, 1114, 1115)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)  # also seeds all CUDA devices


@contextlib.contextmanager
def deterministic(enabled: bool = True, device: Optional[torch.device] = None):
    """Ask torch for deterministic kernels for the duration of the block, then restore.

    On the CPU this makes a run repeatable bit for bit (same seed, same metrics). On CUDA it does
    what MMSA's ``setup_seed`` does: cuDNN autotuning off (``cudnn.benchmark = False``) and cuDNN's
    deterministic algorithms on (``cudnn.deterministic = True``); full CUDA determinism needs
    ``CUBLAS_WORKSPACE_CONFIG`` set before start-up and costs speed, so it is not forced
    (``warn_only`` keeps unsupported ops running).
    """
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_det = torch.backends.cudnn.deterministic
    try:
        if enabled:
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
            if device is None or device.type == "cpu":
                torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.backends.cudnn.deterministic = prev_det


def get_rng_state() -> Dict[str, Any]:
    """The global random state of torch, CUDA, NumPy and Python as tensors/lists/primitives."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
