"""InfoEnh, the plug-in module: FIB per modality, then FIA across modalities.

    seqs[m] [B, L_m, d_m] --FIB_m--> e_m, z_m [B, k, d]        (projection, top-k, gate)
    aux_loss = alpha * sum_m InfoNCE(e_m, z_m)                  (eq. 6, needs labels)
    {z_m} --FIA--> E'_m [B, k, M*d]                             (eqs. 12-13)

The host baseline feeds its encoders' whole hidden sequences in, adds ``aux_loss`` to its task
loss and fuses the returned sequences with its own fusion and head.

FIB runs per modality (each has its own widths and weights); its outputs are then stacked once,
[B, M, k, d], and InfoNCE (:func:`infoenh.infonce.infonce_per_modality`, the M similarity
matrices in one batched product) and FIA (:func:`infoenh.fia.align_stacked`) each run once on
the stack. The values are those of FIB, ``sentiment_infonce`` and ``fia`` called modality by
modality (``tests/test_module.py`` compares them); the stacking only saves operations.

Switches for the ablations: ``use_fib=False`` turns the gate off (z = e, the top-k embeddings);
the paper's "w/o FIB" also drops its loss, i.e. ``use_fib=False, use_infonce=False``.
``use_fia=False`` returns the filtered z_m (width d). A module built with a subset of modalities
(e.g. text and vision) is the missing-modality ablation.

The open choices of the paper are options with documented defaults (see the class docstring):
InfoNCE's reduction over anchors (mean, so alpha keeps its meaning at any batch size), Sinkhorn's
stopping rule (POT's marginal error at 1e-6, or the paper's scaling change at delta = 0.01) and
iteration cap (:data:`infoenh.fia.OT_MAX_ITER`), and, beyond the paper, a straight-through
estimator for the hard mask. :meth:`InfoEnh.settings` lists every one as a plain dict.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ._validate import (MODALITIES, check_finite, check_mask, check_modalities, check_number, check_positive_int,
                        check_same_batch, check_tensor, dtype_hint)
from .fia import FIA_MODES, FIA_PLANS, OT_DEFAULT_TOL, OT_MAX_ITER, OT_STOPS, align_stacked
from .fib import FIB
from .infonce import NEGATIVES, check_reduction, infonce_per_modality, negative_mask


class InfoEnhOutput(NamedTuple):
    seqs: Dict[str, Tensor]         # modality -> [B, k, out_dim]
    masks: Dict[str, Tensor]        # modality -> [B, k] bool, True for real rows
    aux_loss: Tensor                # 0-dim, alpha * sum of InfoNCE terms (0 when off or no labels)
    diagnostics: Dict[str, Tensor]  # 0-dim detached tensors: kept_frac_<m>, infonce_<m>, no_negative,
                                    # ot_iters_mean, ot_converged_frac (see InfoEnh.forward)


class InfoEnh(nn.Module):
    """FIB then FIA for any non-empty subset of text / audio / vision.

    Args:
        in_dims: modality -> encoder width d_m, e.g. {"text": 768, "audio": 5, "vision": 20}.
        d: common width after FIB's projection.  k: time steps kept by top-k pooling.
        use_fib: gate on (True) or off (z = e).  use_infonce: add the InfoNCE term.
        use_fia: align with OT (output width M*d) or not (width d).
        alpha: weight of the InfoNCE sum, finite and >= 0 (paper: 0.5).
        tau: InfoNCE temperature, finite and > 0.  negatives: see :func:`sentiment_infonce`.
        infonce_reduction: ``"mean"`` (default) or ``"sum"`` over the anchors of a batch, see
            :func:`sentiment_infonce`. The mean keeps alpha = 0.5 meaning the same at any batch
            size; ``"sum"`` is eq. 5 literally and scales the term with the number of anchors.
        score: top-k scorer, "learned" or "norm".  threshold: the hard mask keeps g > threshold,
            in [0, 1) (paper: 0.5).
        straight_through: beyond the paper, default False: back-propagate through the hard mask
            as if it were the gate, so switched-off features still learn (see :class:`FIB`).
        reg: Sinkhorn's regularisation, finite and > 0.
        fia_mode, detach_plan: see :func:`fia`.
        fia_symmetric: True (default) solves each unordered pair of modalities once and transposes
            its plan for the reverse pair (``symmetric`` of :func:`fia`: exact at convergence,
            half the Sinkhorn problems); False solves every ordered pair.
        ot_iters: Sinkhorn's iteration cap, default :data:`infoenh.fia.OT_MAX_ITER` (100, shared
            with :func:`fia`; the solver stops as soon as its rule is met: 11 iterations at k = 16,
            d = 128, reg = 0.1).
        ot_stop: Sinkhorn's stopping rule, ``"marginal"`` (default: POT's marginal error) or
            ``"scaling"`` (the paper's mean change of the scaling vector).
        ot_tol: the rule's threshold, a number >= 0; None (default) resolves to 1e-6 for
            ``"marginal"`` and to the paper's delta = 0.01 for ``"scaling"``.
        fia_plan: ``"sinkhorn"`` (default, the OT plan) or ``"uniform"``: the plan a b^T of the
            same marginals (the ablation control of FIA with FIA's width, parameters and pooling:
            :func:`infoenh.fia.uniform_plans`). In token mode each real token then receives the
            other modality's mean over its real rows; in feature mode, where only the plan carries
            the other modality, each row receives its own mean over the features.

    Input dtypes: sequences of any floating dtype (float16, bfloat16, float32, float64) are cast to
    the module's parameter dtype (float32 unless the module was converted, e.g. with ``.double()``)
    before FIB, so the outputs are in that dtype; under autocast the layers then run as autocast
    decides. Integer, bool and complex sequences are refused with a TypeError.
    """

    def __init__(self, in_dims: Dict[str, int], d: int = 128, k: int = 16, *, use_fib: bool = True,
                 use_infonce: bool = True, use_fia: bool = True, alpha: float = 0.5, tau: float = 0.1,
                 negatives: str = "sign", infonce_reduction: str = "mean", score: str = "learned",
                 threshold: float = 0.5, straight_through: bool = False, reg: float = 0.1,
                 fia_mode: str = "token", ot_iters: int = OT_MAX_ITER, ot_stop: str = "marginal",
                 ot_tol: Optional[float] = None, detach_plan: bool = False, fia_symmetric: bool = True,
                 fia_plan: str = "sinkhorn"):
        super().__init__()
        if not isinstance(in_dims, dict) or not in_dims:
            raise ValueError("in_dims must be a non-empty dict modality -> input width, e.g. {'text': 768}")
        check_modalities(in_dims, "InfoEnh in_dims")
        self.modalities = tuple(m for m in MODALITIES if m in in_dims)
        if use_fia and len(self.modalities) < 2:
            raise ValueError(f"FIA needs at least two modalities, got {list(self.modalities)}; pass use_fia=False")
        if negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
        if fia_mode not in FIA_MODES:
            raise ValueError(f"fia_mode must be one of {FIA_MODES}, got {fia_mode!r}")
        self.alpha = check_number(alpha, "alpha", ge=0, meaning="the weight of the InfoNCE loss")
        self.tau = check_number(tau, "tau", gt=0, meaning="the InfoNCE temperature")
        self.reg = check_number(reg, "reg", gt=0, meaning="Sinkhorn's entropic regularisation")
        self.in_dims = {m: check_positive_int(in_dims[m], f"in_dims[{m!r}]") for m in self.modalities}
        self.d, self.k = check_positive_int(d, "d"), check_positive_int(k, "k")
        self.use_fib, self.use_infonce, self.use_fia = use_fib, use_infonce, use_fia
        self.negatives, self.fia_mode, self.detach_plan = negatives, fia_mode, detach_plan
        if not isinstance(fia_symmetric, bool):
            raise TypeError(f"fia_symmetric must be True or False, got {fia_symmetric!r}")
        self.fia_symmetric = fia_symmetric
        if fia_plan not in FIA_PLANS:
            raise ValueError(f"fia_plan must be one of {FIA_PLANS}, got {fia_plan!r}")
        self.fia_plan = fia_plan
        self.infonce_reduction = check_reduction(infonce_reduction)
        self.ot_iters = check_positive_int(ot_iters, "ot_iters")
        if ot_stop not in OT_STOPS:
            raise ValueError(f"ot_stop must be 'marginal' (POT's marginal-error rule) or 'scaling' (the paper's "
                             f"mean change of the scaling vector), got {ot_stop!r}")
        self.ot_stop = ot_stop
        self.ot_tol = OT_DEFAULT_TOL[ot_stop] if ot_tol is None else check_number(
            ot_tol, "ot_tol", ge=0, meaning="Sinkhorn's stopping threshold")
        self.fib = nn.ModuleDict({m: FIB(self.in_dims[m], d, k, score=score, threshold=threshold, gate=use_fib,
                                         straight_through=straight_through) for m in self.modalities})
        self.score, self.straight_through = score, straight_through
        self.threshold = self.fib[self.modalities[0]].threshold
        self.out_dim = d * len(self.modalities) if use_fia else d

    def settings(self) -> Dict[str, Any]:
        """Every switch and number this module was built with, as a plain JSON-ready dict (for a
        run's results.json). ``ot_tol`` is the resolved threshold; ``modalities`` is a list in
        text, audio, vision order. ``InfoEnh(in_dims, **{k: v for k, v in s.items() if k != "modalities"})``
        builds a module with the same settings."""
        return {
            "use_fib": self.use_fib, "use_infonce": self.use_infonce, "use_fia": self.use_fia,
            "alpha": self.alpha, "tau": self.tau, "negatives": self.negatives,
            "infonce_reduction": self.infonce_reduction, "score": self.score, "threshold": self.threshold,
            "straight_through": self.straight_through, "d": self.d, "k": self.k, "reg": self.reg,
            "fia_mode": self.fia_mode, "ot_iters": self.ot_iters, "ot_stop": self.ot_stop, "ot_tol": self.ot_tol,
            "detach_plan": self.detach_plan, "fia_symmetric": self.fia_symmetric, "fia_plan": self.fia_plan,
            "modalities": list(self.modalities),
        }

    def _check(self, seqs, masks, labels):
        """Validate the inputs of :meth:`forward`; return ``(seqs cast to the parameter dtype, masks)``."""
        if not isinstance(seqs, dict):
            raise TypeError("seqs must be a dict modality -> tensor [B, L_m, d_m]")
        for name, given in (("seqs", seqs), ("masks", masks)):
            if given is None:
                continue
            missing = [m for m in self.modalities if m not in given]
            extra = [m for m in given if m not in self.modalities]
            if missing or extra:
                raise KeyError(f"{name} must have exactly the keys {list(self.modalities)} this InfoEnh was built "
                               f"with; missing {missing}, unexpected {extra}")
        dtype = self.fib[self.modalities[0]].proj.weight.dtype
        for m in self.modalities:
            check_tensor(seqs[m], f"seqs[{m!r}]", ndim=3, finite=False, floating=False)
            if not seqs[m].is_floating_point():
                hint = dtype_hint(seqs[m], f"seqs[{m!r}]")
                raise TypeError(f"seqs[{m!r}] has dtype {seqs[m].dtype}, but InfoEnh takes floating-point features "
                                f"(any float dtype, cast to its parameter dtype {dtype}); {hint}")
            if seqs[m].shape[-1] != self.in_dims[m]:
                raise ValueError(f"seqs[{m!r}] has width {seqs[m].shape[-1]}, but in_dims[{m!r}] = {self.in_dims[m]}")
            if seqs[m].shape[1] < 1:
                raise ValueError(f"seqs[{m!r}] has no time steps (shape {tuple(seqs[m].shape)})")
        B = check_same_batch({m: seqs[m] for m in self.modalities}, "InfoEnh")
        if masks is not None:
            masks = {m: check_mask(masks[m], f"masks[{m!r}]", seqs[m].shape[:2]) for m in self.modalities}
        if labels is not None:
            check_tensor(labels, "labels", ndim=1, finite=False)
            if labels.shape[0] != B:
                raise ValueError(f"labels has {labels.shape[0]} entries but the batch has {B} samples")
        cast = {m: seqs[m].to(dtype) for m in self.modalities}   # no-op (the same tensor) when dtypes agree
        # NaN / inf: one reduction per tensor and a single host sync for all of them, after the cast
        try:
            check_finite({**{f"seqs[{m!r}]": cast[m] for m in self.modalities}, "labels": labels})
        except ValueError:
            _raise_if_cast_overflowed(seqs, cast)
            raise
        return cast, masks

    def forward(self, seqs: Dict[str, Tensor], masks: Optional[Dict[str, Tensor]] = None,
                labels: Optional[Tensor] = None) -> InfoEnhOutput:
        """seqs: modality -> [B, L_m, d_m]; masks: modality -> [B, L_m] bool or None; labels: [B] or None.

        The inputs are checked once, here (shapes, keys, dtypes, masks, and NaN/inf with one host
        sync for all modalities); FIB then runs without repeating the checks on the whole sequences.
        Floating sequences of another dtype are cast to the parameters' dtype first (see the class).

        ``diagnostics`` holds 0-dim detached tensors on the inputs' device, not Python floats,
        so that a training step never waits for the device to read them: ``kept_frac_<m>``
        (FIB's share of kept features), ``infonce_<m>`` and ``no_negative`` (with labels and
        InfoNCE on), ``ot_iters_mean`` and ``ot_converged_frac`` (with FIA). Read one with
        ``float(v)``; accumulate them as tensors and convert once per epoch or log line.
        """
        seqs, masks = self._check(seqs, masks, labels)
        out = {m: self.fib[m](seqs[m], None if masks is None else masks[m], validate=False) for m in self.modalities}
        diag: Dict[str, Tensor] = {f"kept_frac_{m}": o.kept_frac.detach() for m, o in out.items()}
        row_masks = {m: o.mask for m, o in out.items()}
        z = {m: o.z for m, o in out.items()}
        nce = self.use_infonce and labels is not None
        if not (nce or self.use_fia):
            return InfoEnhOutput(seqs=z, masks=row_masks, aux_loss=self._zero(seqs), diagnostics=diag)
        # the modalities stacked once, [B, M, k, d] and [B, M, k]: InfoNCE and FIA each run once on
        # all of them instead of once per modality (same values, fewer and larger operations)
        Z = torch.stack(list(z.values()), dim=1)
        R = torch.stack(list(row_masks.values()), dim=1)
        aux = self._zero(seqs)
        if nce:
            aux = self._infonce(torch.stack([o.e for o in out.values()], dim=1), Z, labels, R, diag)
        if self.use_fia:
            # FIB's z is zero on padded rows (TopKPool.finish zeroes them), as align_stacked requires
            f = align_stacked(Z, R, list(self.modalities), reg=self.reg, mode=self.fia_mode, max_iter=self.ot_iters,
                              tol=self.ot_tol, stop=self.ot_stop, detach_plan=self.detach_plan,
                              symmetric=self.fia_symmetric, plan=self.fia_plan)
            z = f.enhanced
            diag["ot_iters_mean"] = f.n_iter.detach().float().mean()
            diag["ot_converged_frac"] = f.converged.detach().float().mean()
        return InfoEnhOutput(seqs=z, masks=row_masks, aux_loss=self.alpha * aux, diagnostics=diag)

    def _zero(self, seqs: Dict[str, Tensor]) -> Tensor:
        """A 0-dim zero in the parameters' dtype on the inputs' device (the aux loss without InfoNCE)."""
        return seqs[self.modalities[0]].new_zeros(())

    def _infonce(self, E: Tensor, Z: Tensor, labels: Tensor, R: Tensor, diag: Dict[str, Tensor]) -> Tensor:
        """Sum over modalities of InfoNCE(e_m, z_m), E, Z [B, M, k, d], R [B, M, k]; records
        ``infonce_<m>`` and ``no_negative`` in ``diag`` (0-dim tensors, no host sync)."""
        neg = negative_mask(labels, self.negatives, validate=False)          # [B, B], labels checked in _check
        losses, no_neg = infonce_per_modality(E, Z, neg, R, tau=self.tau, reduction=self.infonce_reduction)
        for m, v in zip(self.modalities, losses.detach().unbind()):
            diag[f"infonce_{m}"] = v
        # the same for every modality: it depends on the labels only
        diag["no_negative"] = no_neg.to(losses.dtype)
        return losses.sum()


def _raise_if_cast_overflowed(seqs: Dict[str, Tensor], cast: Dict[str, Tensor]) -> None:
    """After a failed NaN/inf check: name a sequence that is finite as given but not after the cast
    to the parameter dtype (e.g. float64 values beyond float32's range). Error path only."""
    for m, x in seqs.items():
        if cast[m] is not x and bool(torch.isfinite(x).all()) and not bool(torch.isfinite(cast[m]).all()):
            raise ValueError(f"seqs[{m!r}] is finite in {x.dtype} but not after the cast to {cast[m].dtype}, this "
                             f"InfoEnh's parameter dtype (largest |value| {float(x.abs().max()):.3g}); rescale it, "
                             "or convert the module with .double()")
