"""Tests for infoenh.module.InfoEnh: switches, shapes, the auxiliary loss, diagnostics, bad inputs."""
from __future__ import annotations

import pytest
import torch

import infoenh
from infoenh.module import InfoEnh, InfoEnhOutput

DIMS = {"text": 12, "audio": 5, "vision": 7}
LENS = {"text": 9, "audio": 14, "vision": 11}


def _batch(B=6, names=DIMS, seed=0):
    g = torch.Generator().manual_seed(seed)
    seqs = {m: torch.randn(B, LENS[m], DIMS[m], generator=g) for m in names}
    masks = {m: torch.ones(B, LENS[m], dtype=torch.bool) for m in names}
    for m in names:
        masks[m][0, 3:] = False                     # sample 0 is short in every modality
    labels = torch.tensor([1.2, -0.4, 0.0, 2.5, -2.0, 0.6][:B])
    return seqs, masks, labels


def _model(names=DIMS, **kw):
    torch.manual_seed(0)
    return InfoEnh({m: DIMS[m] for m in names}, d=8, k=4, **kw)


def test_exported_from_package():
    assert infoenh.InfoEnh is InfoEnh and infoenh.InfoEnhOutput is InfoEnhOutput


def test_default_forward_shapes_loss_and_diagnostics():
    model = _model()
    seqs, masks, labels = _batch()
    out = model(seqs, masks, labels)
    assert isinstance(out, InfoEnhOutput)
    assert model.out_dim == 24
    for m in DIMS:
        assert out.seqs[m].shape == (6, 4, 24)
        assert out.masks[m].shape == (6, 4) and out.masks[m][0].tolist() == [True, True, True, False]
        assert bool((out.seqs[m][0, 3] == 0).all())
    assert out.aux_loss.dim() == 0 and out.aux_loss.item() > 0
    keys = {f"kept_frac_{m}" for m in DIMS} | {f"infonce_{m}" for m in DIMS}
    keys |= {"no_negative", "ot_iters_mean", "ot_converged_frac"}
    assert set(out.diagnostics) == keys
    # 0-dim detached tensors (no host sync per value), readable with float()
    for v in out.diagnostics.values():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad and v.grad_fn is None
    expected = 0.5 * sum(float(out.diagnostics[f"infonce_{m}"]) for m in DIMS)
    assert out.aux_loss.item() == pytest.approx(expected, rel=1e-5)
    assert float(out.diagnostics["no_negative"]) == 0.0
    assert f"{out.diagnostics['kept_frac_text']:.3f}" == f"{float(out.diagnostics['kept_frac_text']):.3f}"


def test_alpha_scales_aux_loss():
    seqs, masks, labels = _batch()
    a = _model(alpha=0.5)(seqs, masks, labels).aux_loss
    b = _model(alpha=2.0)(seqs, masks, labels).aux_loss
    assert b.item() == pytest.approx(4 * a.item(), rel=1e-5)


def test_gradients_reach_every_parameter():
    model = _model()
    seqs, masks, labels = _batch()
    out = model(seqs, masks, labels)
    (sum(v.sum() for v in out.seqs.values()) + out.aux_loss).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_no_fia_gives_width_d():
    model = _model(use_fia=False)
    seqs, masks, labels = _batch()
    out = model(seqs, masks, labels)
    assert model.out_dim == 8
    assert all(v.shape == (6, 4, 8) for v in out.seqs.values())
    assert "ot_iters_mean" not in out.diagnostics
    fib_out = model.fib["text"](seqs["text"], masks["text"])
    assert torch.equal(out.seqs["text"], fib_out.z)


def test_no_infonce_or_no_labels_gives_zero_aux_loss():
    seqs, masks, labels = _batch()
    out = _model(use_infonce=False)(seqs, masks, labels)
    assert out.aux_loss.item() == 0.0 and "infonce_text" not in out.diagnostics
    out = _model()(seqs, masks, None)
    assert out.aux_loss.item() == 0.0 and "no_negative" not in out.diagnostics


def test_no_fib_keeps_top_k_embeddings():
    model = _model(use_fib=False, use_fia=False)
    seqs, masks, labels = _batch()
    out = model(seqs, masks, labels)
    assert all(float(out.diagnostics[f"kept_frac_{m}"]) == 1.0 for m in DIMS)
    fib_out = model.fib["audio"](seqs["audio"], masks["audio"])
    assert torch.equal(out.seqs["audio"], fib_out.e)


@pytest.mark.parametrize("names", [("text", "vision"), ("audio", "vision"), ("text", "audio")])
def test_two_modalities(names):
    model = _model(names=names)
    seqs, masks, labels = _batch(names=names)
    out = model(seqs, masks, labels)
    assert model.out_dim == 16 and set(out.seqs) == set(names)
    assert all(v.shape == (6, 4, 16) for v in out.seqs.values())


def test_single_modality_needs_fia_off():
    with pytest.raises(ValueError, match="at least two"):
        InfoEnh({"text": 4}, d=8, k=2)
    model = InfoEnh({"text": 12}, d=8, k=2, use_fia=False)
    seqs, masks, labels = _batch(names=("text",))
    assert model(seqs, masks, labels).seqs["text"].shape == (6, 2, 8)


@pytest.mark.parametrize("mode", ["token", "feature"])
def test_fia_modes_and_detach(mode):
    """detach_plan=True cuts exactly the gradient that flows through the plan, and the two modes
    transport different things (the own-embedding block E_m is the same in both)."""
    seqs, masks, labels = _batch()
    # token: audio's transported blocks k * P E_j depend on audio's own FIB only through the plan;
    # feature: d * E_audio P^T depends on the other modalities' FIB only through the plan
    through_plan_only = "audio" if mode == "token" else "text"

    def plan_grad(detach):
        model = _model(fia_mode=mode, detach_plan=detach, score="norm", negatives="acc7")
        out = model(seqs, masks, labels)
        assert out.seqs["vision"].shape == (6, 4, 24)
        assert all(torch.isfinite(v).all() for v in out.seqs.values())
        out.seqs["audio"][..., 8:].square().sum().backward()
        w = model.fib[through_plan_only].proj.weight.grad
        return out, 0.0 if w is None else float(w.abs().sum())

    out_on, g_on = plan_grad(False)
    out_off, g_off = plan_grad(True)
    assert g_on > 0 and g_off == 0.0
    for m in DIMS:                              # detaching changes no value, only the gradient
        torch.testing.assert_close(out_on.seqs[m], out_off.seqs[m], rtol=0, atol=0)
    other = _model(fia_mode="feature" if mode == "token" else "token")(seqs, masks, labels)
    plain = _model(fia_mode=mode)(seqs, masks, labels)
    for m in DIMS:
        torch.testing.assert_close(plain.seqs[m][..., :8], other.seqs[m][..., :8], rtol=0, atol=0)
        assert (plain.seqs[m][..., 8:] - other.seqs[m][..., 8:]).abs().max() > 1e-3, m


def test_padding_content_does_not_matter():
    model = _model()
    seqs, masks, labels = _batch()
    a = model(seqs, masks, labels)
    seqs2 = {m: v.clone() for m, v in seqs.items()}
    for m in seqs2:
        seqs2[m][0, 3:] = 1e3
    b = model(seqs2, masks, labels)
    for m in DIMS:
        torch.testing.assert_close(a.seqs[m], b.seqs[m])
    assert a.aux_loss.item() == pytest.approx(b.aux_loss.item())


def _bad(seqs, masks, labels, what):
    if what == "missing":
        del seqs["audio"]
    elif what == "unknown":
        seqs["speech"] = seqs["audio"]
    elif what == "batch":
        seqs["vision"] = seqs["vision"][:5]
        masks["vision"] = masks["vision"][:5]
    elif what == "nan":
        seqs["text"][1, 2, 3] = float("nan")
    elif what == "rank":
        seqs["text"] = seqs["text"][0]
    elif what == "width":
        seqs["audio"] = torch.randn(6, LENS["audio"], 6)
    elif what == "mask_key":
        del masks["vision"]
    elif what == "mask_shape":
        masks["text"] = masks["text"][:, :5]
    elif what == "labels":
        labels = labels[:4]
    elif what == "empty":
        seqs["audio"], masks["audio"] = seqs["audio"][:, :0], masks["audio"][:, :0]
    return seqs, masks, labels


@pytest.mark.parametrize(
    "what, err, match",
    [
        ("missing", KeyError, r"missing \['audio'\]"),
        ("unknown", KeyError, r"unexpected \['speech'\]"),
        ("batch", ValueError, "batch sizes differ"),
        ("nan", ValueError, "NaN"),
        ("rank", ValueError, "3 dimensions"),
        ("width", ValueError, r"in_dims\['audio'\] = 5"),
        ("mask_key", KeyError, r"masks must have exactly"),
        ("mask_shape", ValueError, "shape"),
        ("labels", ValueError, "labels has 4 entries"),
        ("empty", ValueError, r"seqs\['audio'\] has no time steps"),
    ],
)
def test_bad_inputs(what, err, match):
    model = _model()
    with pytest.raises(err, match=match):
        model(*_bad(*_batch(), what))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=-0.1), r"alpha \(the weight of the InfoNCE loss\) must be a finite number >= 0, got -0.1"),
        (dict(alpha=float("nan")), r"alpha .* >= 0, got nan"),
        (dict(alpha=float("inf")), r"alpha .* >= 0, got inf"),
        (dict(tau=0.0), r"tau \(the InfoNCE temperature\) must be a finite number > 0, got 0.0"),
        (dict(tau=-1.0), r"tau .* > 0, got -1.0"),
        (dict(tau=float("nan")), r"tau .* > 0, got nan"),
        (dict(tau=float("inf")), r"tau .* > 0, got inf"),
        (dict(reg=0.0), r"reg \(Sinkhorn's entropic regularisation\) must be a finite number > 0, got 0.0"),
        (dict(reg=-0.1), r"reg .* > 0, got -0.1"),
        (dict(reg=float("nan")), r"reg .* > 0, got nan"),
        (dict(reg=float("inf")), r"reg .* > 0, got inf"),
        (dict(k=0), r"k must be an integer >= 1, got 0"),
        (dict(d=0), r"d must be an integer >= 1, got 0"),
        (dict(d=-3), r"d must be an integer >= 1, got -3"),
    ],
)
def test_bad_hyper_parameters_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InfoEnh(DIMS, **kwargs)


def test_alpha_zero_is_allowed_and_silences_the_loss():
    seqs, masks, labels = _batch()
    out = _model(alpha=0)(seqs, masks, labels)
    assert out.aux_loss.item() == 0.0 and float(out.diagnostics["infonce_text"]) > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_floating_inputs_are_cast_to_the_parameter_dtype(dtype):
    """Any floating input gives exactly what the same values in float32 give."""
    model = _model()
    seqs, masks, labels = _batch()
    low = {m: v.to(dtype) for m, v in seqs.items()}
    out = model(low, masks, labels.to(dtype))
    ref = model({m: v.float() for m, v in low.items()}, masks, labels)
    for m in DIMS:
        assert out.seqs[m].dtype == torch.float32
        torch.testing.assert_close(out.seqs[m], ref.seqs[m], rtol=1e-6, atol=1e-7)
    assert out.aux_loss.dtype == torch.float32
    torch.testing.assert_close(out.aux_loss, ref.aux_loss, rtol=1e-6, atol=1e-7)
    (out.aux_loss + sum(v.sum() for v in out.seqs.values())).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_a_float64_module_casts_float32_inputs_up():
    model = _model().double()
    seqs, masks, labels = _batch()
    out = model(seqs, masks, labels)
    assert all(v.dtype == torch.float64 for v in out.seqs.values()) and out.aux_loss.dtype == torch.float64


@pytest.mark.parametrize(
    "dtype, hint",
    [
        (torch.int64, r"pass seqs\['audio'\].float\(\)"),
        (torch.bool, r"pass seqs\['audio'\].float\(\)"),
        (torch.complex64, r"complex values are not accepted .* pass seqs\['audio'\].real"),
    ],
)
def test_non_floating_inputs_get_one_clear_type_error(dtype, hint):
    seqs, masks, labels = _batch()
    seqs["audio"] = seqs["audio"].to(dtype) if dtype != torch.complex64 else torch.complex(seqs["audio"], seqs["audio"])
    msg = rf"seqs\['audio'\] has dtype {dtype}, .*parameter dtype torch.float32\); {hint}"
    with pytest.raises(TypeError, match=msg):
        _model()(seqs, masks, labels)


def test_float64_values_beyond_float32_are_named_not_called_inf():
    seqs, masks, labels = _batch()
    seqs["vision"] = seqs["vision"].double()
    seqs["vision"][1, 2, 3] = 1e300
    with pytest.raises(ValueError, match=r"seqs\['vision'\] is finite in torch.float64 but not after the cast"):
        _model()(seqs, masks, labels)
    seqs["vision"][1, 2, 3] = float("nan")                   # a real NaN keeps the NaN message
    with pytest.raises(ValueError, match=r"seqs\['vision'\] contains 1 NaN"):
        _model()(seqs, masks, labels)


def test_bad_construction():
    with pytest.raises(KeyError, match="unknown modality"):
        InfoEnh({"text": 4, "video": 3})
    with pytest.raises(ValueError, match="non-empty"):
        InfoEnh({})
    with pytest.raises(ValueError, match="k must be"):
        InfoEnh(DIMS, k=0)
    with pytest.raises(ValueError, match="negatives"):
        InfoEnh(DIMS, negatives="sentiment")
    with pytest.raises(ValueError, match="fia_mode"):
        InfoEnh(DIMS, fia_mode="tokens")
    with pytest.raises(ValueError, match="in_dims"):
        InfoEnh({"text": 0, "audio": 3})


def test_sample_with_no_real_step_in_one_modality():
    model = _model()
    seqs, masks, labels = _batch()
    masks["audio"][2] = False
    out = model(seqs, masks, labels)
    assert out.masks["audio"][2].tolist() == [False] * 4 and bool((out.seqs["audio"][2] == 0).all())
    (sum(v.sum() for v in out.seqs.values()) + out.aux_loss).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert all(torch.isfinite(v) for v in out.diagnostics.values())


def test_runs_under_bf16_autocast():
    model = _model()
    seqs, masks, labels = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(seqs, masks, labels)
    assert out.aux_loss.dtype == torch.float32 and torch.isfinite(out.aux_loss)
    assert all(torch.isfinite(v).all() for v in out.seqs.values())
    out.aux_loss.backward()


def test_each_input_sequence_is_scanned_for_nan_once(monkeypatch):
    """InfoEnh checks its inputs at its entry only; FIB runs on them without a second scan."""
    from infoenh import _validate

    scanned = []
    real_flag = _validate.finite_flag
    monkeypatch.setattr(_validate, "finite_flag", lambda t: scanned.append(t) or real_flag(t))
    seqs, masks, labels = _batch()
    _model()(seqs, masks, labels)
    for m in DIMS:
        assert sum(t is seqs[m] for t in scanned) == 1, m
    assert sum(t is labels for t in scanned) >= 1


def test_nan_in_labels_or_a_later_modality_is_named():
    seqs, masks, labels = _batch()
    seqs["vision"][2, 1, 0] = float("inf")
    with pytest.raises(ValueError, match=r"seqs\['vision'\] contains 0 NaN and 1 inf"):
        _model()(seqs, masks, labels)
    seqs, masks, labels = _batch()
    labels[0] = float("nan")
    with pytest.raises(ValueError, match="labels contains 1 NaN"):
        _model()(seqs, masks, labels)


# ----- the open choices as options: reduction, stopping rule, straight-through, settings() --------

def test_infonce_reduction_sum_scales_the_aux_loss_by_the_anchors():
    seqs, masks, labels = _batch()
    mean = _model()(seqs, masks, labels)
    total = _model(infonce_reduction="sum")(seqs, masks, labels)
    assert float(mean.diagnostics["no_negative"]) == 0.0                 # all 6 anchors have negatives
    assert total.aux_loss.item() == pytest.approx(6 * mean.aux_loss.item(), rel=1e-5)
    for m in DIMS:
        assert float(total.diagnostics[f"infonce_{m}"]) == pytest.approx(6 * float(mean.diagnostics[f"infonce_{m}"]),
                                                                        rel=1e-5)
    for m in DIMS:                                                        # the outputs do not depend on it
        assert torch.equal(mean.seqs[m], total.seqs[m])


def test_ot_stop_and_tol_reach_the_solver(monkeypatch):
    import infoenh.module as module_mod

    seen = []
    real = module_mod.align_stacked
    monkeypatch.setattr(module_mod, "align_stacked", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    seqs, masks, labels = _batch()
    runs = {}
    for key, kw in {"marginal": {}, "scaling": dict(ot_stop="scaling"),
                    "marginal 1e-3": dict(ot_tol=1e-3), "cap 11": dict(ot_iters=11)}.items():
        runs[key] = _model(**kw)(seqs, masks, labels).diagnostics
    assert [(s["stop"], s["tol"], s["max_iter"]) for s in seen] == [
        ("marginal", 1e-6, 100), ("scaling", 0.01, 100), ("marginal", 1e-3, 100), ("marginal", 1e-6, 11)]
    iters = {k: float(d["ot_iters_mean"]) for k, d in runs.items()}
    converged = {k: float(d["ot_converged_frac"]) for k, d in runs.items()}
    assert iters["marginal"] != iters["scaling"] and iters["marginal 1e-3"] < iters["marginal"]
    assert converged["marginal"] == converged["scaling"] == converged["marginal 1e-3"] == 1.0
    assert iters["cap 11"] == 11.0 and converged["cap 11"] < 1.0       # these problems need about 20


def test_straight_through_reaches_every_fib_and_keeps_the_forward():
    seqs, masks, labels = _batch()
    plain, ste = _model(), _model(straight_through=True)
    assert all(ste.fib[m].straight_through and not plain.fib[m].straight_through for m in DIMS)
    a, b = plain(seqs, masks, labels), ste(seqs, masks, labels)
    for m in DIMS:
        assert torch.equal(a.seqs[m], b.seqs[m])
    assert torch.equal(a.aux_loss, b.aux_loss)
    ga = torch.autograd.grad(sum(v.sum() for v in a.seqs.values()) + a.aux_loss, plain.fib["text"].gate.weight)[0]
    gb = torch.autograd.grad(sum(v.sum() for v in b.seqs.values()) + b.aux_loss, ste.fib["text"].gate.weight)[0]
    assert not torch.equal(ga, gb)


def test_threshold_reaches_every_fib():
    model = _model(threshold=0.7)
    assert model.threshold == 0.7 and all(model.fib[m].threshold == 0.7 for m in DIMS)
    seqs, masks, labels = _batch()
    low = _model(threshold=0.3)(seqs, masks, labels).diagnostics
    high = model(seqs, masks, labels).diagnostics
    assert all(float(low[f"kept_frac_{m}"]) > float(high[f"kept_frac_{m}"]) for m in DIMS)


SETTING_KEYS = {"use_fib", "use_infonce", "use_fia", "alpha", "tau", "negatives", "infonce_reduction", "score",
                "threshold", "straight_through", "d", "k", "reg", "fia_mode", "ot_iters", "ot_stop", "ot_tol",
                "detach_plan", "fia_symmetric", "fia_plan", "modalities"}


def test_settings_lists_every_default():
    import json

    s = InfoEnh(DIMS).settings()
    assert set(s) == SETTING_KEYS
    assert s == dict(use_fib=True, use_infonce=True, use_fia=True, alpha=0.5, tau=0.1, negatives="sign",
                     infonce_reduction="mean", score="learned", threshold=0.5, straight_through=False, d=128, k=16,
                     reg=0.1, fia_mode="token", ot_iters=100, ot_stop="marginal", ot_tol=1e-6, detach_plan=False,
                     fia_symmetric=True, fia_plan="sinkhorn", modalities=["text", "audio", "vision"])
    assert json.loads(json.dumps(s)) == s


@pytest.mark.parametrize("kw", [
    {},
    dict(use_fib=False, use_infonce=False, alpha=2.0, tau=0.3, negatives="acc7", infonce_reduction="sum",
         score="norm", threshold=0.4, straight_through=True, d=6, k=3, reg=0.05, fia_mode="feature",
         ot_iters=30, ot_stop="scaling", detach_plan=True, fia_symmetric=False),
    dict(use_fia=False, ot_stop="scaling", ot_tol=1e-4),
])
def test_settings_round_trip(kw):
    names = ("text", "vision") if kw.get("use_fia", True) else ("audio",)
    dims = {m: DIMS[m] for m in names}
    s = InfoEnh(dims, **kw).settings()
    again = InfoEnh(dims, **{k: v for k, v in s.items() if k != "modalities"}).settings()
    assert again == s and s["modalities"] == list(names)
    assert s["ot_tol"] == kw.get("ot_tol", 0.01 if kw.get("ot_stop") == "scaling" else 1e-6)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(infonce_reduction="avg"), ValueError, r"reduction must be 'mean' .* or 'sum' .*got 'avg'"),
        (dict(ot_stop="pot"), ValueError, r"ot_stop must be 'marginal' \(POT's marginal-error rule\) or 'scaling'"),
        (dict(ot_tol=-1.0), ValueError, r"ot_tol \(Sinkhorn's stopping threshold\) must be a finite number >= 0"),
        (dict(ot_tol=float("inf")), ValueError, r"ot_tol .* >= 0, got inf"),
        (dict(ot_iters=0), ValueError, r"ot_iters must be an integer >= 1, got 0"),
        (dict(straight_through="yes"), TypeError, "straight_through must be True or False"),
        (dict(fia_symmetric=1), TypeError, "fia_symmetric must be True or False"),
        (dict(threshold=1.0), ValueError, r"threshold must lie in \[0, 1\)"),
    ],
)
def test_bad_new_options_are_refused_at_construction(kwargs, err, match):
    with pytest.raises(err, match=match):
        InfoEnh(DIMS, **kwargs)


# ----- the stacked forward equals the module-by-module composition --------------------------------

@pytest.mark.parametrize("kw", [{}, dict(fia_symmetric=False, infonce_reduction="sum"),
                                dict(fia_mode="feature", negatives="acc7"), dict(use_fia=False)])
def test_forward_equals_fib_infonce_and_fia_called_one_by_one(kw):
    """InfoEnh stacks the modalities once and runs InfoNCE (one [M, B, B] product) and FIA
    (align_stacked) on the stack. Same values and parameter gradients as FIB per modality, the
    public sentiment_infonce per modality and the public fia on the dict (float64)."""
    from infoenh.fia import fia
    from infoenh.infonce import sentiment_infonce

    model = _model(**kw).double()
    seqs, masks, labels = _batch()
    seqs = {m: v.double() for m, v in seqs.items()}
    masks["audio"][2] = False                                        # no real step in one modality
    labels = labels.double()
    out = model(seqs, masks, labels)
    fib = {m: model.fib[m](seqs[m], masks[m]) for m in DIMS}
    aux = sum(sentiment_infonce(fib[m].e, fib[m].z, labels, fib[m].mask, tau=model.tau, negatives=model.negatives,
                                reduction=model.infonce_reduction).loss for m in DIMS)
    ref = {m: o.z for m, o in fib.items()}
    if model.use_fia:
        ref = fia(ref, {m: o.mask for m, o in fib.items()}, reg=model.reg, mode=model.fia_mode,
                  max_iter=model.ot_iters, tol=model.ot_tol, stop=model.ot_stop,
                  symmetric=model.fia_symmetric).enhanced
    torch.testing.assert_close(out.aux_loss, model.alpha * aux, rtol=1e-12, atol=1e-12)
    for m in DIMS:
        torch.testing.assert_close(out.seqs[m], ref[m], rtol=1e-12, atol=1e-12)
    g = torch.Generator().manual_seed(3)
    w = {m: torch.randn(ref[m].shape, generator=g, dtype=torch.float64) for m in DIMS}
    params = [p for p in model.parameters() if p.requires_grad]
    ga = torch.autograd.grad(out.aux_loss + sum((out.seqs[m] * w[m]).sum() for m in DIMS), params, allow_unused=True)
    gb = torch.autograd.grad(model.alpha * aux + sum((ref[m] * w[m]).sum() for m in DIMS), params, allow_unused=True)
    for a, b in zip(ga, gb):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
