"""Tests for infoenh.fia: shapes, the barycentric map, marginals, masks, gradients, one batched call."""
from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

import infoenh.fia as fia_mod
from infoenh.fia import FIAOutput, fia

NAMES = ("text", "audio", "vision")


def _feats(B=2, k=5, d=4, names=NAMES, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(B, k, d, generator=g, dtype=dtype) for m in names}


def test_token_shapes_pairs_and_concat_order():
    f = _feats()
    out = fia(f)
    assert isinstance(out, FIAOutput)
    assert out.pairs == [("text", "audio"), ("text", "vision"), ("audio", "text"),
                         ("audio", "vision"), ("vision", "text"), ("vision", "audio")]
    assert out.plans.shape == (2, 6, 5, 5)
    assert out.n_iter.shape == (2, 6) and out.converged.shape == (2, 6) and out.converged.dtype == torch.bool
    for m in NAMES:
        assert out.enhanced[m].shape == (2, 5, 12)
        assert torch.equal(out.enhanced[m][..., :4], f[m])
    # E_{text->audio} = k * P E_audio, E_{vision->audio} in the last slot of vision
    p = out.pairs.index(("text", "audio"))
    assert torch.allclose(out.enhanced["text"][..., 4:8], 5 * out.plans[:, p] @ f["audio"])
    p = out.pairs.index(("vision", "audio"))
    assert torch.allclose(out.enhanced["vision"][..., 8:], 5 * out.plans[:, p] @ f["audio"])


def test_plans_have_uniform_marginals():
    out = fia(_feats(), reg=0.1, max_iter=500, tol=1e-10)
    assert bool(out.converged.all())
    torch.testing.assert_close(out.plans.sum(-1), torch.full((2, 6, 5), 0.2, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.plans.sum(-2), torch.full((2, 6, 5), 0.2, dtype=torch.float64), atol=1e-6, rtol=0)


def test_identical_modalities_map_onto_themselves():
    x = _feats(B=3, k=6, d=8, names=("text",), seed=1)["text"]
    out = fia({"text": x, "audio": x.clone(), "vision": x.clone()}, reg=0.01, max_iter=1000, tol=1e-9)
    for m in NAMES:
        e = out.enhanced[m]
        torch.testing.assert_close(e[..., 8:16], x, atol=1e-3, rtol=0)
        torch.testing.assert_close(e[..., 16:], x, atol=1e-3, rtol=0)


def test_feature_mode_shapes_and_identity():
    x = _feats(B=2, k=6, d=4, names=("text",), seed=2)["text"]
    out = fia({"text": x, "vision": x.clone()}, reg=0.01, mode="feature", max_iter=1000, tol=1e-9)
    assert out.plans.shape == (2, 2, 4, 4)
    assert out.enhanced["text"].shape == (2, 6, 8)
    torch.testing.assert_close(out.enhanced["text"][..., 4:], x, atol=1e-3, rtol=0)
    # the literal formula, scaled by d
    f = _feats(B=2, k=6, d=4)
    out = fia(f, mode="feature")
    p = out.pairs.index(("audio", "vision"))
    assert out.plans.shape == (2, 6, 4, 4)
    assert torch.allclose(out.enhanced["audio"][..., 8:], 4 * f["audio"] @ out.plans[:, p].transpose(-1, -2))


def test_two_modalities():
    out = fia(_feats(names=("text", "vision")))
    assert out.pairs == [("text", "vision"), ("vision", "text")]
    assert out.plans.shape == (2, 2, 5, 5)
    assert set(out.enhanced) == {"text", "vision"} and out.enhanced["vision"].shape == (2, 5, 8)


def test_masks_zero_mass_on_padded_rows_and_match_pot():
    f = _feats(B=2, k=5, d=4)
    masks = {m: torch.ones(2, 5, dtype=torch.bool) for m in NAMES}
    masks["text"][0, 3:] = False          # 3 real rows
    masks["audio"][0, 2:] = False         # 2 real rows
    out = fia(f, masks, reg=0.2, max_iter=2000, tol=1e-12)
    p = out.pairs.index(("text", "audio"))
    plan = out.plans[0, p]
    assert float(plan[3:].abs().sum()) < 1e-12 and float(plan[:, 2:].abs().sum()) < 1e-12
    # the real block is POT's Sinkhorn on the real rows with uniform marginals
    unit = torch.nn.functional.normalize
    cost = 1 - unit(f["text"][0, :3], dim=-1) @ unit(f["audio"][0, :2], dim=-1).T
    ref = pot.sinkhorn(np.full(3, 1 / 3), np.full(2, 1 / 2), cost.numpy(), 0.2, stopThr=1e-12, numItermax=5000)
    np.testing.assert_allclose(plan[:3, :2].numpy(), ref, atol=1e-7)
    # padded rows of the output are zero, and the content of padded rows changes nothing
    assert bool((out.enhanced["text"][0, 3:] == 0).all())
    g = {m: v.clone() for m, v in f.items()}
    g["text"][0, 3:] = 50.0
    g["audio"][0, 2:] = -9.0
    out2 = fia(g, masks, reg=0.2, max_iter=2000, tol=1e-12)
    for m in NAMES:
        torch.testing.assert_close(out2.enhanced[m], out.enhanced[m])


@pytest.mark.parametrize("mode", ["token", "feature"])
def test_all_padding_sample_is_finite(mode):
    f = {m: v.float().requires_grad_() for m, v in _feats().items()}
    masks = {m: torch.ones(2, 5, dtype=torch.bool) for m in NAMES}
    masks["audio"][1] = False
    out = fia(f, masks, mode=mode)
    for m in NAMES:
        assert torch.isfinite(out.enhanced[m]).all()
    assert bool((out.enhanced["audio"][1] == 0).all())
    sum(v.sum() for v in out.enhanced.values()).backward()
    assert all(torch.isfinite(v.grad).all() for v in f.values())


@pytest.mark.parametrize("mode", ["token", "feature"])
def test_detach_plan_stops_gradient_through_the_plan(mode):
    def grad_of_source(detach):
        f = {m: v.float().requires_grad_() for m, v in _feats().items()}
        out = fia(f, mode=mode, detach_plan=detach)
        # token: the moved part of audio depends on audio only through the plan;
        # feature: the moved part of audio depends on text/vision only through the plan
        out.enhanced["audio"][..., 4:].square().sum().backward()
        return f["audio"].grad if mode == "token" else f["text"].grad

    attached, detached = grad_of_source(False), grad_of_source(True)
    assert attached is not None and float(attached.abs().sum()) > 0
    assert detached is None or float(detached.abs().sum()) == 0.0


def test_all_pairs_in_one_batched_call(monkeypatch):
    """One Sinkhorn call per fia call: the 3 unordered pairs by default (symmetric), all 6 ordered
    pairs with symmetric=False; plans, n_iter and converged cover the 6 ordered pairs either way."""
    calls = []
    real = fia_mod.sinkhorn

    def counting(cost, *args, **kwargs):
        calls.append(tuple(cost.shape))
        return real(cost, *args, **kwargs)

    monkeypatch.setattr(fia_mod, "sinkhorn", counting)
    for mode, n in (("token", 4), ("feature", 6)):
        for symmetric, solved in ((True, 3), (False, 6)):
            calls.clear()
            out = fia(_feats(B=3, k=4, d=6), mode=mode, symmetric=symmetric)
            assert calls == [(3, solved, n, n)]
            assert out.plans.shape == (3, 6, n, n) and out.n_iter.shape == out.converged.shape == (3, 6)


def test_passes_solver_settings(monkeypatch):
    seen = {}
    real = fia_mod.sinkhorn

    def spy(cost, reg, a=None, b=None, **kwargs):
        seen.update(reg=reg, **kwargs)
        return real(cost, reg, a, b, **kwargs)

    monkeypatch.setattr(fia_mod, "sinkhorn", spy)
    fia(_feats(), reg=0.3, max_iter=7, tol=1e-4)
    assert seen["reg"] == 0.3 and seen["max_iter"] == 7 and seen["tol"] == 1e-4


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda: fia(_feats(names=("text",))), ValueError, "at least two"),
        (lambda: fia({"txt": torch.randn(2, 3, 4), "audio": torch.randn(2, 3, 4)}), KeyError, "unknown modality"),
        (lambda: fia({"text": torch.randn(2, 3, 4), "audio": torch.randn(2, 3, 5)}), ValueError, "same k and d"),
        (lambda: fia({"text": torch.randn(2, 3, 4), "audio": torch.randn(3, 3, 4)}), ValueError, "batch sizes"),
        (lambda: fia({"text": torch.randn(2, 3), "audio": torch.randn(2, 3)}), ValueError, "3 dimensions"),
        (lambda: fia({"text": torch.full((2, 3, 4), float("nan")), "audio": torch.randn(2, 3, 4)}), ValueError, "NaN"),
        (lambda: fia(_feats(), mode="space"), ValueError, "mode"),
        (lambda: fia(_feats(), reg=0.0), ValueError, r"reg \(the entropic regularisation\) must be a finite .* > 0"),
        (lambda: fia(_feats(), reg=-0.1), ValueError, r"reg .* > 0, got -0.1"),
        (lambda: fia(_feats(), reg=float("nan")), ValueError, r"reg .* > 0, got nan"),
        (lambda: fia(_feats(), reg=float("inf")), ValueError, r"reg .* > 0, got inf"),
        (lambda: fia(_feats(), {"text": torch.ones(2, 5, dtype=torch.bool)}), KeyError, "same modalities"),
        (lambda: fia(_feats(), {m: torch.ones(2, 4, dtype=torch.bool) for m in NAMES}), ValueError, "shape"),
        (lambda: fia({}), TypeError, "non-empty"),
    ],
)
def test_bad_inputs(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_low_precision_inputs_are_solved_in_float32():
    f = {m: v.to(torch.bfloat16) for m, v in _feats().items()}
    out = fia(f)
    assert out.plans.dtype == torch.float32 and out.enhanced["text"].dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fia({m: v.float() for m, v in _feats().items()})
    assert out.plans.dtype == torch.float32 and torch.isfinite(out.enhanced["audio"]).all()


def test_token_plans_solve_the_cosine_cost_of_each_pair():
    """The batched costs (blocks of one Gram matrix) are exactly ot.cosine_cost pair by pair."""
    from infoenh.ot import cosine_cost, sinkhorn

    g = torch.Generator().manual_seed(5)
    f = {m: torch.randn(3, 6, 4, generator=g, dtype=torch.float64) for m in ("text", "audio", "vision")}
    f["audio"][1, 2] = 0.0  # a zero row: cost 1 to everything
    out = fia(f, reg=0.2, max_iter=500, tol=1e-12)
    for p, (i, j) in enumerate(out.pairs):
        ref = sinkhorn(cosine_cost(f[i], f[j]), 0.2, max_iter=500, tol=1e-12).plan
        torch.testing.assert_close(out.plans[:, p], ref, rtol=0, atol=1e-12)


# ----- stopping rule, tolerance and iteration cap -------------------------------------------------

def test_scaling_rule_at_delta_stops_earlier_than_marginal_at_1e6():
    """A typical FIA problem (k = 16 rows, d = 8, reg = 0.1): the paper's rule (mean change of the
    scaling vector < 0.01) is met in fewer iterations than POT's (marginal error < 1e-6), and its
    plans are correspondingly looser."""
    f = _feats(B=8, k=16, d=8, dtype=torch.float32)
    marginal, scaling = fia(f, stop="marginal"), fia(f, stop="scaling")
    assert bool(marginal.converged.all()) and bool(scaling.converged.all())
    assert float(scaling.n_iter.float().mean()) < float(marginal.n_iter.float().mean())
    assert bool((scaling.n_iter <= marginal.n_iter).all())

    def col_error(plans):
        return (plans.sum(-2) - 1 / 16).norm(dim=-1).max()

    assert float(col_error(marginal.plans)) < 1e-6 < float(col_error(scaling.plans))


def test_stop_and_tol_defaults_reach_the_solver(monkeypatch):
    seen = []
    real = fia_mod.sinkhorn

    def spy(cost, reg, a=None, b=None, **kwargs):
        seen.append(kwargs)
        return real(cost, reg, a, b, **kwargs)

    monkeypatch.setattr(fia_mod, "sinkhorn", spy)
    fia(_feats())
    fia(_feats(), stop="scaling")
    fia(_feats(), stop="scaling", tol=0.5, mode="feature")
    fia(_feats(), tol=0)
    got = [(s["stop"], s["tol"], s["max_iter"]) for s in seen]
    assert got == [("marginal", 1e-6, 100), ("scaling", 0.01, 100), ("scaling", 0.5, 100), ("marginal", 0.0, 100)]


def test_one_iteration_cap_for_fia_and_infoenh():
    import inspect

    from infoenh.module import InfoEnh

    assert fia_mod.OT_MAX_ITER == 100
    assert inspect.signature(fia).parameters["max_iter"].default == fia_mod.OT_MAX_ITER
    assert InfoEnh({"text": 3, "audio": 2}, d=4, k=2).ot_iters == fia_mod.OT_MAX_ITER
    assert fia_mod.OT_DEFAULT_TOL == {"marginal": 1e-6, "scaling": 0.01}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stop="pot"), r"stop must be 'marginal' \(POT's marginal-error rule\) or 'scaling' .*got 'pot'"),
        (dict(stop=None), r"stop must be 'marginal' .*got None"),
        (dict(tol=-1e-3), r"tol \(Sinkhorn's stopping threshold\) must be a finite number >= 0, got -0.001"),
        (dict(tol=float("nan")), r"tol .* >= 0, got nan"),
        (dict(tol="1e-6"), r"tol .* >= 0, got '1e-6'"),
        (dict(max_iter=0), r"max_iter must be an integer >= 1, got 0"),
    ],
)
def test_bad_solver_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fia(_feats(), **kwargs)


# ----- symmetric pairs: each unordered pair solved once, P_ji = P_ij^T ----------------------------

def _masks(B=4, k=6, seed=3):
    """Different real lengths per modality, one sample with no real row in audio."""
    g = torch.Generator().manual_seed(seed)
    lens = {m: torch.randint(1, k + 1, (B,), generator=g) for m in NAMES}
    masks = {m: torch.arange(k)[None] < lens[m][:, None] for m in NAMES}
    masks["audio"][1] = False
    return masks


def _outputs_and_grads(f, masks, **kw):
    """fia's enhanced rows, plans, and the gradient of a fixed random projection of the outputs
    with respect to every input modality."""
    f = {m: v.detach().clone().requires_grad_() for m, v in f.items()}
    out = fia(f, masks, **kw)
    g = torch.Generator().manual_seed(11)
    loss = sum((out.enhanced[m] * torch.randn(out.enhanced[m].shape, generator=g, dtype=torch.float64)).sum()
               for m in out.enhanced)
    grads = torch.autograd.grad(loss, [f[m] for m in out.enhanced])
    return out, grads


@pytest.mark.parametrize("mode", ["token", "feature"])
@pytest.mark.parametrize("masked", [False, True])
def test_symmetric_equals_every_ordered_pair_at_convergence(mode, masked):
    """(a), (c): solved to tol 1e-10, the transposed plans equal the plans solved directly, and so
    do the outputs and the gradients with respect to the features (float64)."""
    f = _feats(B=4, k=6, d=5)
    masks = _masks() if masked else None
    kw = dict(reg=0.2, mode=mode, max_iter=3000, tol=1e-10)
    sym, g_sym = _outputs_and_grads(f, masks, symmetric=True, **kw)
    full, g_full = _outputs_and_grads(f, masks, symmetric=False, **kw)
    assert bool(sym.converged.all()) and bool(full.converged.all())
    torch.testing.assert_close(sym.plans, full.plans, rtol=0, atol=1e-9)
    for m in NAMES:
        torch.testing.assert_close(sym.enhanced[m], full.enhanced[m], rtol=0, atol=1e-8)
    for a, b in zip(g_sym, g_full):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
def test_symmetric_differs_at_a_fixed_iteration_count_by_the_reported_marginal_errors(masked, monkeypatch):
    """(b), (c): after 3 iterations P_ji != P_ij^T. Each iteration ends with the u-update, so a plan
    matches its source marginal exactly and its target marginal up to the residual the solver
    reports. Hence D = P_ij - P_ji^T has column sums equal to the residual of (i, j) and row sums
    equal to minus the residual of (j, i): ||D^T 1||_2 = err_ij and ||D 1||_2 = err_ji, the errors
    Sinkhorn returns (tested to 1e-12). The entries themselves are not bounded by the marginals in
    general; on these inputs ||D||_1 <= 2 (|delta_ij|_1 + |delta_ji|_1) (about 1-1.5 measured)."""
    errs = []
    real = fia_mod.sinkhorn

    def spy(*args, **kwargs):
        res = real(*args, **kwargs)
        errs.append(res.err)
        return res

    monkeypatch.setattr(fia_mod, "sinkhorn", spy)
    f = _feats(B=4, k=6, d=5)
    masks = _masks() if masked else None
    w = fia_mod._marginal(torch.stack([masks[m] if masked else torch.ones(4, 6, dtype=torch.bool) for m in NAMES], 1),
                          torch.float64)
    full = fia(f, masks, reg=0.1, max_iter=3, tol=0.0, symmetric=False)
    sym = fia(f, masks, reg=0.1, max_iter=3, tol=0.0, symmetric=True)
    err = errs[0]                                                   # [B, 6], the ordered pairs
    assert float((sym.plans - full.plans).abs().max()) > 1e-4      # they do differ here
    n = {m: i for i, m in enumerate(NAMES)}
    for p, (i, j) in enumerate(full.pairs):
        q = full.pairs.index((j, i))
        D = full.plans[:, p] - full.plans[:, q].mT                 # = P_ij - (plan symmetric uses for (i, j))^T
        if n[i] < n[j]:                                             # solved as (i, j): its transpose stands for (j, i)
            torch.testing.assert_close(sym.plans[:, q], full.plans[:, p].mT, rtol=0, atol=1e-15)
        torch.testing.assert_close(D.sum(-2).norm(dim=-1), err[:, p], rtol=0, atol=1e-12)
        torch.testing.assert_close(D.sum(-1).norm(dim=-1), err[:, q], rtol=0, atol=1e-12)
        l1 = ((full.plans[:, p].sum(-2) - w[:, n[j]]).abs().sum(-1)
              + (full.plans[:, q].sum(-2) - w[:, n[i]]).abs().sum(-1))
        assert bool((D.abs().sum((-2, -1)) <= 2 * l1 + 1e-12).all())


@pytest.mark.parametrize("mode", ["token", "feature"])
def test_symmetric_keeps_the_documented_shapes(mode):
    """(d): plans, pairs, n_iter and converged cover every ordered pair, [B, P, ...], and the
    reverse pair repeats the iterations of the pair it is the transpose of."""
    f = _feats(B=3, k=5, d=4)
    out = fia(f, _masks(B=3, k=5), mode=mode, max_iter=7)
    n = 5 if mode == "token" else 4
    assert out.pairs == [("text", "audio"), ("text", "vision"), ("audio", "text"),
                         ("audio", "vision"), ("vision", "text"), ("vision", "audio")]
    assert out.plans.shape == (3, 6, n, n) and out.n_iter.shape == (3, 6) and out.converged.shape == (3, 6)
    assert out.n_iter.dtype == torch.int64 and out.converged.dtype == torch.bool
    for p, (i, j) in enumerate(out.pairs):
        q = out.pairs.index((j, i))
        assert torch.equal(out.plans[:, q], out.plans[:, p].mT)
        assert torch.equal(out.n_iter[:, q], out.n_iter[:, p]) and torch.equal(out.converged[:, q], out.converged[:, p])
    with pytest.raises(TypeError, match="symmetric must be True or False"):
        fia(f, symmetric=1)


# ----- the batched formulation equals the straightforward one ------------------------------------

def _reference_fia(feats, masks, reg, mode, max_iter, tol):
    """FIA written the obvious way: every ordered pair (i, j) stacked, its cosine cost by
    ot.cosine_cost, one Sinkhorn call, E_{i->j} = diag(a)^{-1} P E_j (token) or d E_i P^T
    (feature), padded rows zeroed, concatenated per source. Returns (enhanced, plans)."""
    from infoenh.ot import cosine_cost, sinkhorn

    names = [m for m in NAMES if m in feats]
    B, k, d = feats[names[0]].shape
    if masks is not None:
        feats = {m: feats[m] * masks[m].unsqueeze(-1).double() for m in names}
    pairs = [(i, j) for i in names for j in names if i != j]
    src = torch.stack([feats[i] for i, _ in pairs], 1)
    tgt = torch.stack([feats[j] for _, j in pairs], 1)
    if mode == "token":
        cost = cosine_cost(src, tgt)
        if masks is None:
            a = b = None
            inv = torch.full((B, len(pairs), k, 1), float(k), dtype=torch.float64)
        else:
            w = {m: fia_mod._marginal(masks[m], torch.float64) for m in names}
            a, b = torch.stack([w[i] for i, _ in pairs], 1), torch.stack([w[j] for _, j in pairs], 1)
            inv = torch.where(a > 0, 1 / a.clamp(min=1e-30), torch.zeros_like(a)).unsqueeze(-1)
        plan = sinkhorn(cost, reg, a, b, max_iter=max_iter, tol=tol).plan
        moved = inv * (plan @ tgt)
    else:
        plan = sinkhorn(cosine_cost(src.mT, tgt.mT), reg, max_iter=max_iter, tol=tol).plan
        moved = d * (src @ plan.mT)
    if masks is not None:
        moved = moved * torch.stack([masks[i] for i, _ in pairs], 1).unsqueeze(-1).double()
    enhanced = {i: torch.cat([feats[i]] + [moved[:, p] for p, (s, _) in enumerate(pairs) if s == i], -1)
                for i in names}
    return enhanced, plan


@pytest.mark.parametrize("mode", ["token", "feature"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("names", [NAMES, ("text", "vision")])
def test_every_ordered_pair_equals_the_straightforward_formulation(mode, masked, names):
    """symmetric=False: the Gram-block costs, the plans grouped by target in one batched product,
    the row weights folded into the plans and the unbind/cat assembly give the values and the
    gradients of the pair-by-pair formulation (float64, same solver calls: identical up to rounding)."""
    f = {m: v for m, v in _feats(B=4, k=6, d=5).items() if m in names}
    masks = {m: v for m, v in _masks().items() if m in names} if masked else None
    kw = dict(reg=0.1, max_iter=40, tol=1e-9)
    leaves = {m: v.clone().requires_grad_() for m, v in f.items()}
    ours = fia(leaves, masks, mode=mode, symmetric=False, **kw)
    ref_leaves = {m: v.clone().requires_grad_() for m, v in f.items()}
    ref, ref_plans = _reference_fia(ref_leaves, masks, mode=mode, **kw)
    torch.testing.assert_close(ours.plans, ref_plans, rtol=0, atol=1e-13)
    g = torch.Generator().manual_seed(2)
    weights = {m: torch.randn(ref[m].shape, generator=g, dtype=torch.float64) for m in names}
    for m in names:
        torch.testing.assert_close(ours.enhanced[m], ref[m], rtol=0, atol=1e-12)
    ga = torch.autograd.grad(sum((ours.enhanced[m] * weights[m]).sum() for m in names), list(leaves.values()))
    gb = torch.autograd.grad(sum((ref[m] * weights[m]).sum() for m in names), list(ref_leaves.values()))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
