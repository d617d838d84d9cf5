"""Looking inside a trained InfoEnh: what FIB keeps, where FIA moves mass, what the prediction
reads, and how far apart the modalities are. The book's chapters 8 and 9 use these.

    tr = trace(model, batch)                      # every intermediate of one forward pass
    transported(tr.fia, "text", "audio")          # E_{text->audio}            [B, k, d]
    plan_effective_partners(tr.fia.plans)         # partners per source point   [B, P, k]
    signal_recovery(tr.fib["text"], steps, mask)  # planted steps kept by top-k (synthetic data)
    token_attributions(model, batch, "text")      # gradient x input per step   [B, L]
    modality_gap({"text": X_t, "audio": X_a})     # centroid distances, linear-probe accuracy
    ablation_differences(doc, "MAE")              # rows of a forest plot of paired differences

Everything here reads a model; nothing changes one. Where the signal of the SYNTHETIC testbed was
planted is recorded by the generator: ``ds.synthetic_info["signal"][split][m]["steps"]``
(int ``[N, S]``, time steps) and ``["dims"]`` (int ``[S_d]``, feature dimensions of the input).
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ._validate import MODALITIES, check_mask, check_modalities, check_tensor

__all__ = ["transported", "plan_effective_partners", "modality_gap", "signal_recovery", "attributions",
           "token_attributions", "planted_share", "Trace", "trace", "fit_and_keep", "ablation_differences"]


# ----- FIA ------------------------------------------------------------------------------------

def transported(fia_out, i: str, j: str) -> Tensor:
    """The transported embedding E_{i->j} ``[B, k, d]`` cut out of ``fia_out.enhanced[i]``.

    ``fia_out`` is a :class:`infoenh.fia.FIAOutput`. ``enhanced[i]`` is ``[B, k, M*d]``: first
    E_i itself, then E_{i->j} for every other modality j in the order of ``fia_out.pairs``.
    """
    pairs = list(fia_out.pairs)
    if i == j:
        raise ValueError(f"transported needs two different modalities, got {i!r} twice; "
                         f"E_{i}->{i} is not computed (the first block of enhanced[{i!r}] is E_{i} itself)")
    if (i, j) not in pairs:
        raise KeyError(f"no ordered pair ({i!r}, {j!r}) in this FIA output; its pairs are {pairs}")
    own = [p for p in pairs if p[0] == i]
    e = fia_out.enhanced[i]
    width = e.shape[-1]
    if width % (1 + len(own)):
        raise ValueError(f"enhanced[{i!r}] has width {width}, not a multiple of {1 + len(own)} blocks")
    d = width // (1 + len(own))
    slot = 1 + own.index((i, j))
    return e[..., slot * d:(slot + 1) * d]


def plan_effective_partners(plan: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """How many target points each source point spreads its mass over: ``[..., n, m]`` -> ``[..., n]``.

    Row s of the plan, normalised to a distribution p_s = P[s] / sum_t P[s, t], has entropy
    H(p_s); the effective number of partners is exp(H(p_s)): 1 when the row sends all its mass
    to one target point, m when it spreads it evenly over all m. Rows with no mass (padded source
    steps) and rows where ``mask [..., n]`` is False are NaN: there is nothing to count there
    (use ``torch.nanmean``).
    """
    check_tensor(plan, "plan", min_ndim=2)
    if bool((plan < 0).any()):
        raise ValueError("plan has negative entries; a transport plan is non-negative")
    mass = plan.sum(-1, keepdim=True)                                  # [..., n, 1]
    p = plan / mass.clamp_min(torch.finfo(plan.dtype).tiny)
    h = -(p * p.clamp_min(torch.finfo(plan.dtype).tiny).log()).sum(-1)   # [..., n]
    out = h.exp()
    empty = mass.squeeze(-1) <= 0
    if mask is not None:
        mask = check_mask(mask, "mask", plan.shape[:-1]).to(plan.device)
        empty = empty | ~mask
    return out.masked_fill(empty, float("nan"))


# ----- the modality gap -----------------------------------------------------------------------

def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        check_tensor(x, name, ndim=2)
        return x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, d], got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return a


def _probe(X: np.ndarray, y: np.ndarray, cv: int, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, X, y, cv=folds).mean())


def modality_gap(feats: Mapping[str, Any], *, cv: int = 5, seed: int = 0) -> Dict[str, Any]:
    """How far apart, and how separable, the modalities' representations are.

    Args:
        feats: modality -> ``[N_m, d]`` (tensor or array), one row per sample; the same width d
            for every modality (the rows must live in one space to be compared).
        cv: folds of the cross-validated linear probe (each modality needs >= cv rows).
        seed: shuffling of the folds.

    Returns a dict with, for every unordered pair ``"a-b"`` (modality order text, audio, vision):

    - ``centroid_distance[pair]``: Euclidean distance between the two means;
    - ``relative_distance[pair]``: that distance divided by the two clouds' RMS spread
      sqrt((tr Cov_a + tr Cov_b) / 2), so that spaces of different scale can be compared;
    - ``probe_accuracy[pair]``: cross-validated accuracy of a standardised logistic regression
      telling the two clouds apart (0.5 = indistinguishable, 1.0 = perfectly separable);

    and ``probe_accuracy_all`` (the same probe with all modalities as classes) with its chance
    level ``chance_all`` = 1 / number of modalities, and the means over pairs
    ``mean_relative_distance`` and ``mean_probe_accuracy``.
    """
    if not isinstance(feats, Mapping) or len(feats) < 2:
        raise ValueError("modality_gap needs a dict with at least two modalities -> [N, d]")
    check_modalities(feats, "modality_gap feats")
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise ValueError(f"cv must be an integer >= 2, got {cv!r}")
    names = [m for m in MODALITIES if m in feats]
    X = {m: _as_numpy(feats[m], f"feats[{m!r}]") for m in names}
    widths = {m: x.shape[1] for m, x in X.items()}
    if len(set(widths.values())) > 1:
        raise ValueError(f"every modality must have the same width to be compared, got {widths}")
    small = {m: x.shape[0] for m, x in X.items() if x.shape[0] < cv}
    if small:
        raise ValueError(f"the probe's {cv}-fold cross-validation needs >= {cv} rows per modality, got {small}")
    mu = {m: x.mean(0) for m, x in X.items()}
    spread = {m: float(((x - mu[m]) ** 2).sum(1).mean()) for m, x in X.items()}   # tr Cov (biased)
    out: Dict[str, Any] = {"centroid_distance": {}, "relative_distance": {}, "probe_accuracy": {}}
    for a_i, a in enumerate(names):
        for b in names[a_i + 1:]:
            key = f"{a}-{b}"
            dist = float(np.linalg.norm(mu[a] - mu[b]))
            rms = np.sqrt((spread[a] + spread[b]) / 2)
            out["centroid_distance"][key] = dist
            out["relative_distance"][key] = dist / rms if rms > 0 else float("inf")
            out["probe_accuracy"][key] = _probe(np.concatenate([X[a], X[b]]),
                                                np.r_[np.zeros(len(X[a])), np.ones(len(X[b]))], cv, seed)
    allX = np.concatenate([X[m] for m in names])
    ally = np.concatenate([np.full(len(X[m]), c) for c, m in enumerate(names)])
    out["probe_accuracy_all"] = _probe(allX, ally, cv, seed)
    out["chance_all"] = 1.0 / len(names)
    out["mean_relative_distance"] = float(np.mean(list(out["relative_distance"].values())))
    out["mean_probe_accuracy"] = float(np.mean(list(out["probe_accuracy"].values())))
    return out


# ----- FIB: what top-k and the mask keep --------------------------------------------------------

def _index_tensor(x, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.is_floating_point() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer indices, got dtype {x.dtype}")
    return x.long()


def signal_recovery(fib_out, steps, seq_mask: Optional[Tensor] = None) -> Dict[str, float]:
    """How much of the planted signal FIB's top-k pooling keeps, and how its gate treats it.

    Args:
        fib_out: :class:`infoenh.fib.FIBOutput` of one modality for a batch of B clips
            (``idx [B, k]`` = input time step of each kept row, -1 on pad rows; ``hard``, ``z``).
        steps: ``[B, S]`` int, the time steps where the signal was planted in each clip (for the
            synthetic testbed ``ds.synthetic_info["signal"][split][m]["steps"][rows]``).
        seq_mask: ``[B, L]`` bool padding mask of FIB's input (True = real step); gives the chance
            level. None: every step of a sequence of length ``max(idx) + 1`` is taken as real.

    Returns floats:

    - ``step_recall``: fraction of planted steps among the kept rows (mean over clips);
    - ``step_chance``: the same for k steps drawn at random among the real ones, n_kept / n_real;
    - ``kept_frac_signal`` / ``kept_frac_other``: fraction of features the hard mask m_h keeps on
      kept rows that are planted steps / on the other kept rows (NaN when there is no such row);
    - ``norm_signal`` / ``norm_other``: mean L2 norm of the filtered rows z on those two kinds of
      rows (FIB's learned top-k scaling and gate together);
    - ``n_signal_rows`` / ``n_other_rows``: how many rows each of the last four averages over.

    The hard mask acts on FIB's d projected features (after the host's encoder and FIB's linear
    map), not on the input dimensions, so which *input* dimensions matter is measured with
    :func:`attributions` instead.
    """
    idx = _index_tensor(fib_out.idx, "fib_out.idx")
    B, k = idx.shape
    steps = _index_tensor(steps, "steps").to(idx.device)
    if steps.dim() != 2 or steps.shape[0] != B:
        raise ValueError(f"steps must be [B, S] with B = {B} (the batch of fib_out), got shape {tuple(steps.shape)}")
    if bool((steps < 0).any()):
        raise ValueError("steps holds negative indices; planted steps are time indices >= 0")
    if seq_mask is not None:
        L = seq_mask.shape[-1] if isinstance(seq_mask, Tensor) else None
        seq_mask = check_mask(seq_mask, "seq_mask", (B, L)).to(idx.device)
        n_real = seq_mask.sum(1).float()
        if bool((steps >= L).any()):
            raise ValueError(f"steps holds indices >= L = {L}, the length of seq_mask")
        planted_real = seq_mask.gather(1, steps)
        if not bool(planted_real.all()):
            raise ValueError(f"{int((~planted_real).sum())} planted steps fall on padding; steps and seq_mask "
                             "do not belong to the same clips (same rows, same order?)")
    else:
        n_real = (idx.max(1).values + 1).clamp_min(1).float()
    kept_rows = idx >= 0                                                   # [B, k]
    n_kept = kept_rows.sum(1).float()
    hit = (steps.unsqueeze(-1) == idx.unsqueeze(1)).any(-1)                # [B, S]
    on_signal = (idx.unsqueeze(-1) == steps.unsqueeze(1)).any(-1) & kept_rows   # [B, k]
    other = kept_rows & ~on_signal
    hard = fib_out.hard.detach().float().mean(-1)                          # [B, k] fraction kept per row
    norm = fib_out.z.detach().float().norm(dim=-1)                         # [B, k]

    def avg(v: Tensor, rows: Tensor) -> float:
        return float(v[rows].mean()) if bool(rows.any()) else float("nan")

    return {"step_recall": float(hit.float().mean()),
            "step_chance": float((n_kept / n_real).clamp(max=1.0).mean()),
            "kept_frac_signal": avg(hard, on_signal), "kept_frac_other": avg(hard, other),
            "norm_signal": avg(norm, on_signal), "norm_other": avg(norm, other),
            "n_signal_rows": int(on_signal.sum()), "n_other_rows": int(other.sum())}


# ----- attributions -----------------------------------------------------------------------------

@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def attributions(model, batch: Mapping[str, Any], modality: str) -> Tensor:
    """Gradient x input of the prediction for every entry of one modality: ``[B, L, d_m]``.

    For clip b, entry (t, f) gets x[b, t, f] * d pred_b / d x[b, t, f]: the first-order share of
    the prediction that entry carries relative to an all-zero input (Shrikumar et al., 2016). The
    model runs in eval mode (no dropout; restored afterwards). Clips do not interact in eval mode
    (FIA is per clip, InfoNCE is off without training), so one backward pass of sum_b pred_b gives
    every clip's own gradient. Padded steps (``batch[f"{modality}_mask"]`` False) are set to 0.

    Steps that top-k pooling does not keep get exactly 0: the selection is a hard choice with no
    gradient, and the prediction does not read those steps at all.
    """
    if modality not in MODALITIES:
        raise KeyError(f"unknown modality {modality!r}; expected one of {list(MODALITIES)}")
    if modality not in getattr(model, "modalities", MODALITIES):
        raise KeyError(f"the model is built on {list(model.modalities)}, not on {modality!r}")
    if not isinstance(batch, Mapping) or modality not in batch:
        raise KeyError(f"batch has no {modality!r} features")
    x = check_tensor(batch[modality], f"batch[{modality!r}]", ndim=3).detach().clone().requires_grad_(True)
    b = dict(batch)
    b[modality] = x
    with _eval_mode(model), torch.enable_grad():
        pred = model(b).pred
        (grad,) = torch.autograd.grad(pred.sum(), x)
    out = (grad * x).detach()
    mk = batch.get(f"{modality}_mask")
    if mk is not None:
        out = out * check_mask(mk, f"batch['{modality}_mask']", x.shape[:2]).unsqueeze(-1).to(out.dtype)
    return out


def token_attributions(model, batch: Mapping[str, Any], modality: str) -> Tensor:
    """Gradient x input per time step: :func:`attributions` summed over features, ``[B, L]``
    (signed; 0 on padding and on steps top-k pooling dropped)."""
    return attributions(model, batch, modality).sum(-1)


def planted_share(scores: Tensor, planted, mask: Optional[Tensor] = None) -> Dict[str, Any]:
    """Share of the absolute score mass that falls on planted positions, against chance.

    Args:
        scores: ``[B, L]`` per-position scores (e.g. :func:`token_attributions`, or attributions
            summed over time, ``[B, d]``, for feature dimensions).
        planted: ``[B, S]`` int positions per row, or ``[S]`` for the same positions in every row.
        mask: ``[B, L]`` bool, True where a position counts (padding excluded); None: all count.

    Returns ``share`` (mean over rows of sum |s| on planted / sum |s| on counted positions),
    ``chance`` (mean of S / number of counted positions: the share of a score spread evenly),
    ``per_row`` (``[B]`` tensor of shares, NaN where a row has no score mass) and ``n_rows``
    (rows with some mass, the ones averaged).
    """
    check_tensor(scores, "scores", ndim=2)
    B, L = scores.shape
    planted = _index_tensor(planted, "planted").to(scores.device)
    if planted.dim() == 1:
        planted = planted.unsqueeze(0).expand(B, -1)
    if planted.dim() != 2 or planted.shape[0] != B:
        raise ValueError(f"planted must be [B, S] or [S] with B = {B}, got shape {tuple(planted.shape)}")
    if bool(((planted < 0) | (planted >= L)).any()):
        raise ValueError(f"planted holds positions outside [0, {L})")
    mask = torch.ones(B, L, dtype=torch.bool, device=scores.device) if mask is None else \
        check_mask(mask, "mask", (B, L)).to(scores.device)
    if not bool(mask.gather(1, planted).all()):
        raise ValueError("some planted positions are masked out; scores, planted and mask must describe the same rows")
    a = scores.detach().abs().double() * mask
    on = torch.zeros_like(mask).scatter_(1, planted, True)
    total = a.sum(1)
    per_row = torch.where(total > 0, (a * on).sum(1) / total.clamp_min(1e-300), torch.full_like(total, float("nan")))
    chance = on.sum(1).double() / mask.sum(1).double()
    ok = total > 0
    return {"share": float(per_row[ok].mean()) if bool(ok.any()) else float("nan"),
            "chance": float(chance[ok].mean()) if bool(ok.any()) else float("nan"),
            "per_row": per_row.float(), "n_rows": int(ok.sum())}


# ----- a forward pass, every intermediate kept ---------------------------------------------------

class Trace(NamedTuple):
    """Intermediates of one forward pass of a host (see :func:`trace`)."""

    seqs: Dict[str, Tensor]              # encoder outputs            m -> [B, L_m, w_m]
    seq_masks: Dict[str, Optional[Tensor]]  # their padding masks     m -> [B, L_m] bool or None
    host_pooled: Dict[str, Tensor]       # the host's own pooling of seqs (what it reads without InfoEnh), [B, w_m]
    fib: Optional[Dict[str, Any]]        # m -> FIBOutput (None without InfoEnh)
    fia: Optional[Any]                   # FIAOutput (None without InfoEnh or with use_fia=False)
    enhanced: Optional[Dict[str, Tensor]]  # InfoEnh's output sequences m -> [B, k, out_dim]
    pooled: Dict[str, Tensor]            # what the fusion reads, m -> [B, width]
    pred: Tensor                         # [B]


@torch.no_grad()
def trace(model, batch: Mapping[str, Any]) -> Trace:
    """Run a host (:class:`infoenh.models.HostModel`) in eval mode on ``batch`` and keep every
    intermediate: encoder sequences, FIB's outputs per modality, FIA's plans, InfoEnh's output,
    the pooled vectors the fusion reads, and the prediction.

    FIB's outputs are caught with forward hooks. FIA is solved again on FIB's filtered outputs with
    the module's own settings (``reg``, ``fia_mode``, ``ot_iters``, ``ot_stop``, ``ot_tol``) to get its plans, and the result
    is checked against the sequences InfoEnh returned (a mismatch raises: the module changed).
    """
    from .fia import fia

    with _eval_mode(model):
        masks = model.check_batch(batch)
        seqs, host_pooled = model.encode(batch, masks)
        ie = getattr(model, "infoenh", None)
        fib_out: Dict[str, Any] = {}
        got: Dict[str, Any] = {}
        handles = []
        if ie is not None:
            for m in ie.modalities:
                handles.append(ie.fib[m].register_forward_hook(lambda mod, args, out, m=m: fib_out.__setitem__(m, out)))
            handles.append(ie.register_forward_hook(lambda mod, args, out: got.__setitem__("out", out)))
        try:
            pooled, _, _ = model.features(batch)
            pred, _ = model.head(pooled, batch)
        finally:
            for h in handles:
                h.remove()
    if ie is None:
        return Trace(seqs, masks, host_pooled, None, None, None, pooled, pred.reshape(-1))
    enhanced = got["out"].seqs
    f = None
    if ie.use_fia:
        f = fia({m: fib_out[m].z for m in ie.modalities}, {m: fib_out[m].mask for m in ie.modalities},
                reg=ie.reg, mode=ie.fia_mode, max_iter=ie.ot_iters, stop=ie.ot_stop, tol=ie.ot_tol,
                detach_plan=ie.detach_plan, symmetric=ie.fia_symmetric)
        for m in ie.modalities:
            if not torch.allclose(f.enhanced[m], enhanced[m].to(f.enhanced[m].dtype), atol=1e-4, rtol=1e-3):
                raise RuntimeError("trace: FIA solved again on FIB's outputs does not reproduce InfoEnh's output for "
                                   f"{m!r}; InfoEnh.forward no longer calls fia as analysis.trace assumes")
    return Trace(seqs, masks, host_pooled, fib_out, f, enhanced, pooled, pred.reshape(-1))


def fit_and_keep(ds, cfg, run_dir=None, **fit_kwargs) -> Tuple[Any, Dict[str, Any]]:
    """:func:`infoenh.train.fit` that also returns the trained model, with the weights of the epoch
    selected on validation loss: ``(model, result)``.

    The model is caught through ``fit``'s ``on_epoch_end`` hook; ``fit`` loads the selected weights
    into it before testing. As a check, the returned model is evaluated on ``test`` again and must
    reproduce ``result["test"]`` (else RuntimeError).
    """
    from .data import make_loaders
    from .train.trainer import evaluate, fit, resolve_device

    user_hook = fit_kwargs.pop("on_epoch_end", None)
    held: Dict[str, Any] = {}

    def hook(epoch, model, record):
        held["model"] = model
        if user_hook is not None:
            user_hook(epoch, model, record)

    result = fit(ds, cfg, run_dir, on_epoch_end=hook, **fit_kwargs)
    if "model" not in held:
        raise RuntimeError("fit ran no epoch in this call (a finished run was resumed?); use a fresh run_dir")
    model = held["model"]
    res = cfg.resolved()
    loader = make_loaders(ds, batch_size=res.batch_size, seed=res.seed)["test"]
    again = evaluate(model, loader, resolve_device(res.device), res.autocast)["metrics"]
    if not np.isclose(again["MAE"], result["test"]["MAE"], rtol=1e-3, atol=1e-4):   # loose for bf16 on CUDA
        raise RuntimeError(f"the kept model gives test MAE {again['MAE']:.6f}, fit reported "
                           f"{result['test']['MAE']:.6f}: fit no longer restores the selected weights in place")
    return model, result


# ----- ablations ----------------------------------------------------------------------------------

def ablation_differences(doc: Mapping[str, Any], metric: str, *,
                         comparisons: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Rows for a forest plot from an ``ablation.json`` document (:func:`infoenh.train.run_ablation`).

    Each row: ``comparison`` (e.g. ``"full vs baseline"``), ``label`` (human-readable), ``n``
    (paired seeds), ``mean_diff``, ``ci_low``, ``ci_high`` (the interval the table shows: the
    bootstrap one from enough seeds, else the t interval, :func:`infoenh.train.ablate.interval`;
    None with a single seed or a constant difference), ``interval`` (``"bootstrap"``, ``"t"`` or
    None), ``p`` (paired t-test; None when undefined) and ``p_holm`` (Holm-adjusted over the table;
    None when absent), in the metric's table units (accuracies and F1 in %, as in ``ablation.md``),
    and ``better``: True / False when the interval lies entirely on the improving / worsening side
    (lower MAE, higher everything else), None when it contains 0 or there is none.
    """
    from .train.ablate import interval
    from .train.results import COLUMNS

    comps = doc.get("comparisons") if isinstance(doc, Mapping) else None
    if not comps:
        raise ValueError("doc has no 'comparisons'; pass the document run_ablation returns (or ablation.json)")
    names = list(comps) if comparisons is None else list(comparisons)
    unknown = [c for c in names if c not in comps]
    if unknown:
        raise KeyError(f"unknown comparisons {unknown}; the document has {list(comps)}")
    scale = next((s for key, _, s in COLUMNS if key == metric), 1.0)
    lower_better = metric == "MAE"
    rows = []
    for name in names:
        c = comps[name]
        if metric not in c:
            raise KeyError(f"metric {metric!r} is not in comparison {name!r}; it has "
                           f"{[k for k in c if k != 'seeds']}")
        c = c[metric]
        a, ref = name.split(" vs ")
        label = f"{doc['arms'][a]['label']} vs {doc['arms'][ref]['label']}" if "arms" in doc else name

        def sc(v):
            return None if v is None else v * scale

        lo, hi, kind = interval(c)
        lo, hi = sc(lo), sc(hi)
        better = None
        if lo is not None and hi is not None and (lo > 0 or hi < 0):
            better = (hi < 0) if lower_better else (lo > 0)
        rows.append({"comparison": name, "label": label, "n": c["n"], "mean_diff": sc(c["mean_diff"]),
                     "ci_low": lo, "ci_high": hi, "interval": kind, "p": c["p"], "p_holm": c.get("p_holm"),
                     "better": better})
    return rows
