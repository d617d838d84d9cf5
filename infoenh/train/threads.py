"""The thread count of ``infoenh train`` when ``--threads`` is not given: measured, not assumed.

torch starts with one thread per core. For the project's small models that is often the slow
choice: a step is a few milliseconds of small operations, and when other work shares the cores
the threads of every operation wait for each other (issue 24 measured a 2-epoch run at 194 s with
torch's default and 47 s with one thread on a busy 2-core machine). The right count depends on
the host, its batch size and the machine's load at the time, so it is measured: :func:`choose_threads`
times the configured host's training step (forward, loss, backward, Adam step) on one batch of
the run's batch size with 1, 2 and all cores, interleaved, and picks the fewest threads unless more
are clearly faster (:func:`pick`). The measurement (a throw-away model and a few steps) is taken
when the run starts; load that arrives later is not seen. The run prints
the choice in its header and ``results.json`` records it with the timings
(``config.threads``, ``config.threads_step_ms``).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Dict, List, Mapping, Optional

import torch


def candidates(cores: Optional[int] = None) -> List[int]:
    """Thread counts to try: 1, 2 and all ``cores`` (default: the cores this process may use), ascending."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return sorted({1, min(2, cores), max(1, cores)})


def time_per_thread_count(step: Callable[[], None], counts: List[int], rounds: int = 2) -> Dict[int, float]:
    """Fastest seconds per ``step()`` for each thread count: one untimed call each, then ``rounds``
    interleaved rounds (order reversed every other round). torch's thread count is restored."""
    old = torch.get_num_threads()
    times: Dict[int, List[float]] = {c: [] for c in counts}
    try:
        for c in counts:
            torch.set_num_threads(c)
            step()
        for r in range(rounds):
            for c in (counts if r % 2 == 0 else counts[::-1]):
                torch.set_num_threads(c)
                t0 = time.perf_counter()
                step()
                times[c].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return {c: min(ts) for c, ts in times.items()}


def train_step(ds: Mapping, cfg) -> Callable[[], None]:
    """One training step of ``cfg``'s host on the first batch (``cfg.batch_size``) of ``ds["train"]``,
    on the CPU, as :func:`infoenh.train.trainer.fit` builds and steps it (a throw-away model)."""
    from ..data import make_loaders
    from ..models import build_model
    from .trainer import _forward_loss, _train_labels, optimizer_groups, text_mode, to_device

    cfg = cfg.resolved()
    device = torch.device("cpu")
    model = build_model(cfg.model, ds["train"].dims if hasattr(ds["train"], "dims") else ds.dims,
                        infoenh=cfg.infoenh, modalities=cfg.modalities, n_train=len(ds["train"]),
                        infoenh_kwargs=cfg.infoenh_kwargs, text=text_mode(cfg, ds), bert=cfg.bert,
                        **cfg.model_kwargs).to(device)
    model.init_from_train(*_train_labels(ds["train"]))
    model.train()
    optimizer = torch.optim.Adam(optimizer_groups(model, cfg))
    batch = to_device(next(iter(make_loaders(ds, batch_size=cfg.batch_size, seed=cfg.seed)["train"])), device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        _, loss, _ = _forward_loss(model, batch, 1, device, cfg, 0, 0)
        loss.backward()
        optimizer.step()

    return step


# more threads must be this much faster to be chosen: on a shared machine extra threads lose far more
# under load (4x in issue 24's run) than they gain when it is idle (1.0x-1.3x for these hosts' steps)
MARGIN = 1.2


def pick(step_ms: Dict[int, float], margin: float = MARGIN) -> int:
    """The count to use from ``{count: step time}``: the smallest, replaced by a larger one only
    when that one is more than ``margin`` times faster than the count chosen so far."""
    chosen = min(step_ms)
    for c in sorted(step_ms):
        if step_ms[c] * margin < step_ms[chosen]:
            chosen = c
    return chosen


def choose_threads(ds: Mapping, cfg, cores: Optional[int] = None, rounds: int = 2) -> Dict:
    """Measure the step at each of :func:`candidates` and return ``{"threads": :func:`pick`'s choice,
    "threads_chosen_by": "measured", "threads_step_ms": {count: ms}}``. Off the CPU (``cfg.device``
    is a GPU) nothing is measured: ``{"threads": torch's count, "threads_chosen_by": "torch default
    (device ...)"}``. The global RNG is left as it was (the run seeds itself anyway)."""
    from .trainer import resolve_device

    device = resolve_device(cfg.device)
    if device.type != "cpu":
        return {"threads": torch.get_num_threads(), "threads_chosen_by": f"torch default (device {device.type})"}
    counts = candidates(cores)
    rng = torch.get_rng_state()
    try:
        ms = {c: 1e3 * t for c, t in time_per_thread_count(train_step(ds, cfg), counts, rounds).items()}
    finally:
        torch.set_rng_state(rng)
    best = pick(ms)
    return {"threads": best, "threads_chosen_by": "measured", "threads_step_ms": {str(c): round(t, 3) for c, t in ms.items()}}


def header_line(doc: Dict, batch_size: int) -> str:
    """The run header's line for a :func:`choose_threads` result (or ``--threads`` given)."""
    if doc["threads_chosen_by"] != "measured":
        return f"threads: {doc['threads']} ({doc['threads_chosen_by']})"
    steps = ", ".join(f"{c} -> {t:.1f} ms" for c, t in doc["threads_step_ms"].items())
    return (f"threads: {doc['threads']} (training step at batch size {batch_size}: {steps}; more threads "
            f"only when {MARGIN:g}x faster; --threads N to set it)")


__all__ = ["MARGIN", "candidates", "time_per_thread_count", "train_step", "pick", "choose_threads", "header_line"]
