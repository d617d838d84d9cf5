"""Automatic checks for the book's exercises.

Each ``check_*`` takes the student's function (or value), runs it on a few fixed cases, compares
with the reference in the package and either prints one line starting with ``✔`` and returns
True, or raises :class:`ExerciseError` (an ``AssertionError``) that says which case failed, by how
much, and a hint. Students write numpy or torch, whichever they like: answers are converted with
``np.asarray`` before comparing.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


class ExerciseError(AssertionError):
    """A student's answer is wrong (or not written yet); the message says what and hints why."""


def _ok(name: str, detail: str) -> bool:
    print(f"✔ {name}: correct ({detail})")
    return True


def _invoke(fn: Callable, name: str, *args):
    """Run the student's function; an unwritten stub becomes a friendly ExerciseError."""
    try:
        return fn(*args)
    except NotImplementedError as exc:
        raise ExerciseError(f"{name}: not written yet ({exc}); replace the `raise NotImplementedError` line") from None


def _as_array(out, name: str) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    if out is None:
        raise ExerciseError(f"{name}: your function returned None; did you forget `return`?")
    return np.asarray(out)


def _call(fn: Callable, name: str, *args) -> np.ndarray:
    return _as_array(_invoke(fn, name, *args), name)


def _close(name: str, case: str, got: np.ndarray, want: np.ndarray, atol: float, hint: str) -> None:
    if got.shape != want.shape:
        raise ExerciseError(f"{name}, case {case}: expected shape {want.shape}, got {got.shape}")
    if not np.all(np.isfinite(got)):
        raise ExerciseError(f"{name}, case {case}: your answer has NaN/inf; {hint}")
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    if err > atol:
        raise ExerciseError(f"{name}, case {case}: largest difference from the reference is {err:.3g} "
                            f"(tolerance {atol:g}); {hint}")


def check_answer(got, expected, *, name: str = "answer", atol: float = 1e-6) -> bool:
    """Compare a value the student computed with the package's ``expected`` value."""
    got_a = np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got, dtype=float)
    want = np.asarray(expected.detach().cpu() if isinstance(expected, torch.Tensor) else expected, dtype=float)
    _close(name, "1", got_a, want, atol, "recompute it step by step")
    return _ok(name, f"matches {np.round(want, 6).tolist()}")


def _sinkhorn_cases(small_reg: bool):
    rng = np.random.default_rng(0)
    cases = [("5x5, reg 0.5", rng.random((5, 5)), 0.5),
             ("4x7, reg 0.1", rng.random((4, 7)), 0.1),
             ("6x3, reg 1.0", 2 * rng.random((6, 3)), 1.0)]
    if small_reg:
        far = 2 * rng.random((8, 8))
        far[0] += 40.0  # one far-away point: exp(-C/reg) underflows to 0 on its whole row
        cases.append(("8x8, reg 0.05, one far-away point (underflows without logs)", far, 0.05))
    return cases


def check_sinkhorn(fn: Callable, *, small_reg: bool = False, atol: float = 1e-6) -> bool:
    """Check ``fn(cost [n, m], reg) -> plan [n, m]`` (uniform marginals) against
    :func:`infoenh.ot.sinkhorn` run to convergence. ``small_reg=True`` adds a case where the plain
    scaling iteration underflows (a whole row of the Gibbs kernel is 0 in float64), for the
    log-domain exercise; about 2,000 iterations are needed there."""
    from ..ot import sinkhorn

    name = "sinkhorn"
    for case, cost, reg in _sinkhorn_cases(small_reg):
        want = sinkhorn(torch.from_numpy(cost), reg, max_iter=20000, tol=1e-13).plan.numpy()
        got = _call(fn, name, cost.copy(), reg).astype(float)
        n, m = cost.shape
        if got.shape == want.shape and np.all(np.isfinite(got)):
            row_err = np.abs(got.sum(1) - 1 / n).max()
            col_err = np.abs(got.sum(0) - 1 / m).max()
            if max(row_err, col_err) > 1e-4:
                raise ExerciseError(
                    f"{name}, case {case}: the plan's marginals are off (rows by {row_err:.2g}, columns by "
                    f"{col_err:.2g}); the rows must sum to 1/n and the columns to 1/m: iterate longer, or check "
                    "the updates u = a / (K v), v = b / (K^T u)")
        _close(name, case, got, want, atol,
               "check the Gibbs kernel K = exp(-C / reg) and the order of the two updates")
    return _ok(name, f"{len(_sinkhorn_cases(small_reg))} problems within {atol:g} of infoenh.ot.sinkhorn")


def check_cosine_cost(fn: Callable, *, atol: float = 1e-6) -> bool:
    """Check ``fn(x [n, d], y [m, d]) -> cost [n, m] = 1 - cos`` (0 similarity for zero vectors)."""
    from ..ot import cosine_cost

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    want = cosine_cost(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    _close("cosine_cost", "4x3 vs 5x3", _call(fn, "cosine_cost", x, y).astype(float), want, atol,
           "normalise each row by its L2 norm before the dot products, and return 1 - cos")
    return _ok("cosine_cost", "matches infoenh.ot.cosine_cost")


def check_topk(fn: Callable) -> bool:
    """Check ``fn(scores [L], mask [L] bool, k) -> indices`` of the k best real steps, in time
    order; when fewer than k steps are real, only the real ones."""
    cases = [
        ("no padding", np.array([0.1, 2.0, -1.0, 3.0, 0.5]), np.ones(5, bool), 2),
        ("padding never wins", np.array([5.0, 1.0, 4.0, 9.0, 8.0]), np.array([1, 1, 1, 0, 0], bool), 2),
        ("shorter than k", np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 0, 0], bool), 3),
    ]
    for case, scores, mask, k in cases:
        real = np.flatnonzero(mask)
        want = np.sort(real[np.argsort(-scores[real], kind="stable")[:k]])
        got = np.sort(_call(fn, "topk", scores.copy(), mask.copy(), k).astype(int).ravel())
        if got.tolist() != want.tolist():
            raise ExerciseError(f"topk, case {case}: expected steps {want.tolist()}, got {got.tolist()}; "
                                "padded steps must never be chosen, and keep at most the real ones")
    return _ok("topk", f"{len(cases)} cases")


def check_hard_mask(fn: Callable, threshold: float = 0.5) -> bool:
    """Check ``fn(gate [k, d], threshold) -> (hard [k, d], soft [k, d])`` of FIB's eq. 2."""
    g = np.array([[0.2, 0.5, 0.51], [0.9, 0.0, 1.0]])
    hard, soft = (g > threshold).astype(float), (g > threshold) * g
    out = _invoke(fn, "hard_mask", g.copy(), threshold)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ExerciseError("hard_mask: return a pair (hard, soft)")
    _close("hard_mask", "hard", _as_array(out[0], "hard_mask").astype(float), hard, 0,
           "the hard mask is 1 where the gate is strictly above the threshold")
    _close("hard_mask", "soft", _as_array(out[1], "hard_mask").astype(float), soft, 1e-12,
           "the soft mask is the hard mask times the gate")
    return _ok("hard_mask", "hard and soft masks match eq. 2")


def check_infonce(fn: Callable, *, atol: float = 1e-5) -> bool:
    """Check ``fn(e [B, d], z [B, d], labels [B], tau) -> loss`` against
    :func:`infoenh.infonce.sentiment_infonce` with sentiment-aware ("sign") negatives."""
    from ..infonce import sentiment_infonce

    rng = np.random.default_rng(2)
    e, z = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    labels = np.array([-2.0, 1.5, 0.0, 0.4, -0.2, 2.8])
    tau = 0.5
    want = sentiment_infonce(torch.from_numpy(e)[:, None], torch.from_numpy(z)[:, None],
                             torch.from_numpy(labels), tau=tau, negatives="sign").loss.numpy()
    got = _call(fn, "infonce", e.copy(), z.copy(), labels.copy(), tau).astype(float).reshape(())
    _close("infonce", "6 samples", got, want, atol,
           "negatives of anchor i are the e_j whose label has another sign class (neg / zero / pos); "
           "the positive pair stays in the denominator; average over anchors that have a negative")
    return _ok("infonce", f"loss {float(want):.5f}")


def check_metric(fn: Callable, key: str, *, atol: float = 1e-9) -> bool:
    """Check ``fn(pred [N], true [N]) -> float`` against ``msa_metrics(pred, true)[key]``."""
    from ..metrics import METRIC_KEYS, msa_metrics

    if key not in METRIC_KEYS:
        raise ValueError(f"unknown metric {key!r}; choose one of {list(METRIC_KEYS)}")
    true = np.array([-3.0, -2.5, -1.5, -0.5, 0.0, 0.0, 0.5, 1.2, 1.5, 2.5, 3.0, -0.8])
    pred = np.array([-2.6, -2.5, -0.4, 0.3, 0.0, -0.1, 0.5, 1.6, 2.5, 2.4, 2.9, -1.5])
    want = np.asarray(msa_metrics(pred, true, round_digits=None)[key], dtype=float)
    got = _call(fn, key, pred.copy(), true.copy()).astype(float).reshape(())
    _close(key, "12 clips with labels at 0 and at +-0.5/1.5/2.5", got, want, atol,
           "see the metric's definition in chapter 1 (ties round to even; Non0 drops labels equal to 0)")
    return _ok(key, f"{float(want):.4f}")


def _barycentric_cases():
    """(case, plan [k, k], target [k, d], reference [k, d]) from :func:`infoenh.fia.fia`'s token
    reading on two modalities, without and with padding."""
    from ..fia import fia

    g = torch.Generator().manual_seed(4)
    feats = {"text": torch.randn(1, 5, 3, generator=g, dtype=torch.float64),
             "audio": 2.0 + torch.randn(1, 5, 3, generator=g, dtype=torch.float64)}
    padded = {"text": torch.tensor([[True, True, True, False, False]]),
              "audio": torch.tensor([[True, True, True, True, False]])}
    cases = []
    for case, masks in (("5 steps each, no padding (uniform weights 1/5)", None),
                        ("padding: 3 real source steps, 4 real target steps", padded)):
        out = fia(feats, masks, reg=0.1, mode="token", max_iter=5000, tol=1e-12)
        p = out.pairs.index(("text", "audio"))
        cases.append((case, out.plans[0, p].numpy(), feats["audio"][0].numpy(),
                      out.enhanced["text"][0, :, 3:6].numpy()))
    return cases


def check_barycentric_map(fn: Callable, *, atol: float = 1e-8) -> bool:
    """Check ``fn(plan [n, m], target [m, d]) -> [n, d]``, the barycentric map of a transport plan:
    row s is ``sum_t plan[s, t] * target[t] / a_s`` with ``a_s = sum_t plan[s, t]`` the mass that
    source point s sends (0 for a point that sends none, such as a padded step). Compared with
    E_{text->audio} of :func:`infoenh.fia.fia` (``mode="token"``), which is ``k * P @ E_audio`` with
    uniform weights 1/k and no padding."""
    name = "barycentric_map"
    cases = _barycentric_cases()
    for case, plan, target, want in cases:
        got = _call(fn, name, plan.copy(), target.copy()).astype(float)
        _close(name, case, got, want, atol,
               "divide each row of P @ target by that row's own mass a_s = P[s].sum() (k only when the "
               "weights are uniform over all k steps), and give 0 to rows with no mass (padded steps)")
    return _ok(name, f"{len(cases)} plans within {atol:g} of infoenh.fia.fia's token transport")


def _as_floats(x, what: str) -> np.ndarray:
    """A number, array, tensor, or a (nested) tuple / list of them of one shape -> float array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(float)
    if isinstance(x, (tuple, list)):
        parts = [_as_floats(v, what) for v in x]
        if len({p.shape for p in parts}) > 1:
            raise ExerciseError(f"{what}: the parts have different shapes {[p.shape for p in parts]}")
        return np.stack(parts) if parts else np.zeros(0)
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ExerciseError(f"{what}: could not read {type(x).__name__} {x!r:.80} as numbers") from None


def check_function(fn: Callable, cases: Sequence, *, name: str = "answer", atol: float = 1e-6,
                   hint: str = "recompute it step by step") -> bool:
    """Check a function the student wrote for an exercise whose answer is a formula or a number.

    ``cases`` is a sequence of ``(case, args, expected)``: ``fn(*args)`` must match ``expected``
    within ``atol``, where both may be a number, an array, a tensor, or a tuple / list of them of
    one shape (a pair of numbers, two matrices). The notebook computes each ``expected`` with the
    package, on the exercise's own values and on a few others, so a formula that only fits the
    exercise's numbers is caught. A stub that still raises ``NotImplementedError`` is reported as
    "not written yet", like the other checks."""
    cases = list(cases)
    if not cases:
        raise ValueError("check_function needs at least one (case, args, expected)")
    for case, args, expected in cases:
        out = _invoke(fn, name, *args)
        if out is None:
            raise ExerciseError(f"{name}: your function returned None; did you forget `return`?")
        _close(name, str(case), _as_floats(out, name), _as_floats(expected, f"{name} (expected)"), atol, hint)
    return _ok(name, f"{len(cases)} case{'s' if len(cases) > 1 else ''}")
