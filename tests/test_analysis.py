"""infoenh.analysis on hand-made cases whose answers are known."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infoenh.analysis import (ablation_differences, attributions, fit_and_keep, modality_gap, plan_effective_partners,
                              planted_share, signal_recovery, token_attributions, trace, transported)
from infoenh.fia import fia
from infoenh.fib import FIBOutput
from infoenh.models import build_model


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (see conftest.one_thread)."""


# ----- transported ------------------------------------------------------------------------------

def test_transported_slices_the_right_block():
    g = torch.Generator().manual_seed(0)
    f = {m: torch.randn(2, 5, 3, generator=g, dtype=torch.float64) for m in ("text", "audio", "vision")}
    out = fia(f, reg=0.1)
    for i, j in out.pairs:
        p = out.pairs.index((i, j))
        torch.testing.assert_close(transported(out, i, j), 5 * out.plans[:, p] @ f[j])
    with pytest.raises(ValueError, match="two different"):
        transported(out, "text", "text")


def test_transported_with_two_modalities_and_unknown_pair():
    g = torch.Generator().manual_seed(1)
    f = {"text": torch.randn(1, 4, 2, generator=g), "vision": torch.randn(1, 4, 2, generator=g)}
    out = fia(f, reg=0.1)
    assert transported(out, "vision", "text").shape == (1, 4, 2)
    torch.testing.assert_close(transported(out, "vision", "text"), out.enhanced["vision"][..., 2:])
    with pytest.raises(KeyError, match="audio"):
        transported(out, "text", "audio")


# ----- effective partners ------------------------------------------------------------------------

def test_partners_diagonal_is_one_uniform_is_n():
    n = 6
    diag = torch.eye(n, dtype=torch.float64) / n
    uni = torch.full((n, n), 1.0 / n ** 2, dtype=torch.float64)
    torch.testing.assert_close(plan_effective_partners(diag), torch.ones(n, dtype=torch.float64))
    torch.testing.assert_close(plan_effective_partners(uni), torch.full((n,), float(n), dtype=torch.float64))


def test_partners_of_a_row_split_over_two_targets_and_rectangular_plans():
    # row 0 splits evenly over 2 targets, row 1 over 4 of 4: partners 2 and 4, whatever the row mass
    plan = torch.tensor([[0.25, 0.25, 0.0, 0.0], [0.05, 0.05, 0.05, 0.05]])
    torch.testing.assert_close(plan_effective_partners(plan), torch.tensor([2.0, 4.0]))
    # batched leading dims
    assert plan_effective_partners(plan.expand(3, 2, 2, 4)).shape == (3, 2, 2)


def test_partners_nan_on_empty_and_masked_rows_and_bad_input():
    plan = torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    p = plan_effective_partners(plan)
    assert p[0] == 1.0 and math.isnan(float(p[1]))
    p = plan_effective_partners(torch.eye(2) / 2, mask=torch.tensor([True, False]))
    assert p[0] == 1.0 and math.isnan(float(p[1]))
    with pytest.raises(ValueError, match="negative"):
        plan_effective_partners(torch.tensor([[0.5, -0.1], [0.1, 0.5]]))
    with pytest.raises(ValueError, match="NaN"):
        plan_effective_partners(torch.tensor([[float("nan"), 0.0], [0.0, 0.5]]))


def test_partners_of_fia_plans_with_padding():
    g = torch.Generator().manual_seed(2)
    f = {"text": torch.randn(2, 5, 3, generator=g), "audio": torch.randn(2, 5, 3, generator=g)}
    masks = {"text": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool(), "audio": torch.ones(2, 5, dtype=torch.bool)}
    out = fia(f, masks, reg=1e3)                    # huge reg: plans uniform over the real points
    p = plan_effective_partners(out.plans)          # [B, P, k]
    t_a = out.pairs.index(("text", "audio"))
    assert torch.isnan(p[0, t_a, 3:]).all()          # padded text rows carry no mass
    torch.testing.assert_close(p[0, t_a, :3], torch.full((3,), 5.0), atol=1e-3, rtol=0)
    a_t = out.pairs.index(("audio", "text"))
    torch.testing.assert_close(p[0, a_t], torch.full((5,), 3.0), atol=1e-3, rtol=0)   # only 3 real text targets


# ----- modality gap -------------------------------------------------------------------------------

def test_modality_gap_separated_vs_identical_clouds():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4))
    far = modality_gap({"text": x, "audio": rng.standard_normal((60, 4)) + 10.0})
    assert far["probe_accuracy"]["text-audio"] == 1.0
    assert far["centroid_distance"]["text-audio"] == pytest.approx(20.0, rel=0.1)   # |(10,10,10,10)| = 20
    assert far["relative_distance"]["text-audio"] > 5
    same = modality_gap({"text": x, "audio": rng.standard_normal((60, 4))})
    assert same["probe_accuracy"]["text-audio"] < 0.75
    assert same["relative_distance"]["text-audio"] < 0.5
    assert same["chance_all"] == 0.5


def test_modality_gap_three_modalities_keys_and_errors():
    rng = np.random.default_rng(1)
    feats = {"vision": torch.randn(20, 3) + 5, "text": torch.randn(20, 3), "audio": torch.randn(20, 3) - 5}
    g = modality_gap(feats, cv=4)
    assert list(g["probe_accuracy"]) == ["text-audio", "text-vision", "audio-vision"]
    assert g["probe_accuracy_all"] > 0.9 and g["chance_all"] == pytest.approx(1 / 3)
    assert g["mean_probe_accuracy"] == pytest.approx(np.mean(list(g["probe_accuracy"].values())))
    with pytest.raises(ValueError, match="same width"):
        modality_gap({"text": rng.standard_normal((10, 3)), "audio": rng.standard_normal((10, 4))})
    with pytest.raises(ValueError, match="rows per modality"):
        modality_gap({"text": rng.standard_normal((3, 2)), "audio": rng.standard_normal((10, 2))})
    with pytest.raises(KeyError, match="smell"):
        modality_gap({"text": rng.standard_normal((10, 2)), "smell": rng.standard_normal((10, 2))})
    with pytest.raises(ValueError, match="at least two"):
        modality_gap({"text": rng.standard_normal((10, 2))})


# ----- signal recovery -----------------------------------------------------------------------------

def _fib_out(idx, hard, z=None):
    idx = torch.tensor(idx)
    B, k = idx.shape
    hard = torch.as_tensor(hard, dtype=torch.float32)
    z = torch.ones(B, k, hard.shape[-1]) if z is None else z
    return FIBOutput(e=z, z=z * hard, mask=idx >= 0, gate=hard, hard=hard, kept_frac=hard.mean(), idx=idx)


def test_signal_recovery_counts_hits_chance_and_mask_on_rows():
    # clip 0: kept steps 1, 3, 5 (planted 3, 5) ; clip 1: kept 0, 2 and one pad row (planted 4, 6)
    idx = [[1, 3, 5], [0, 2, -1]]
    hard = torch.zeros(2, 3, 4)
    hard[0, 1:] = 1.0                      # the two planted rows of clip 0 keep every feature
    hard[0, 0, :2] = 1.0                   # the other row keeps half
    hard[1, :2, :1] = 1.0                  # clip 1: a quarter on both real rows
    seq_mask = torch.zeros(2, 10, dtype=torch.bool)
    seq_mask[0, :6] = True
    seq_mask[1, :8] = True
    r = signal_recovery(_fib_out(idx, hard), torch.tensor([[3, 5], [4, 6]]), seq_mask)
    assert r["step_recall"] == pytest.approx(0.5)                    # 2 of 2, then 0 of 2
    assert r["step_chance"] == pytest.approx((3 / 6 + 2 / 8) / 2)
    assert r["kept_frac_signal"] == pytest.approx(1.0) and r["n_signal_rows"] == 2
    assert r["kept_frac_other"] == pytest.approx((0.5 + 0.25 + 0.25) / 3) and r["n_other_rows"] == 3
    assert r["norm_signal"] == pytest.approx(2.0)                   # z rows of ones, 4 features kept


def test_signal_recovery_rejects_mismatched_inputs():
    out = _fib_out([[0, 1]], torch.ones(1, 2, 3))
    with pytest.raises(ValueError, match="B = 1"):
        signal_recovery(out, torch.tensor([[0], [1]]))
    with pytest.raises(TypeError, match="integer"):
        signal_recovery(out, torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match="padding"):
        signal_recovery(out, torch.tensor([[3]]), torch.tensor([[True, True, True, False]]))


# ----- attributions ---------------------------------------------------------------------------------

class _Linear(torch.nn.Module):
    """pred_b = sum_t sum_f w_f * x[b, t, f] (text only): gradient x input = w_f * x[b, t, f]."""

    modalities = ("text",)

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.as_tensor(w, dtype=torch.float32))
        self.drop = torch.nn.Dropout(0.9)

    def forward(self, batch):
        x = self.drop(batch["text"])        # identity in eval mode
        return type("Out", (), {"pred": (x * self.w).sum((1, 2))})()


def test_attributions_equal_w_times_x_masked_and_eval_mode_restored():
    model = _Linear([2.0, -1.0]).train()
    x = torch.tensor([[[1.0, 1.0], [3.0, 0.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    a = attributions(model, {"text": x, "text_mask": mask}, "text")
    torch.testing.assert_close(a, torch.tensor([[[2.0, -1.0], [6.0, 0.0], [0.0, 0.0]]]))
    torch.testing.assert_close(token_attributions(model, {"text": x, "text_mask": mask}, "text"),
                               torch.tensor([[1.0, 6.0, 0.0]]))
    assert model.training                   # restored
    with pytest.raises(KeyError, match="audio"):
        attributions(model, {"text": x}, "audio")
    with pytest.raises(KeyError, match="smell"):
        attributions(model, {"text": x}, "smell")


def test_planted_share_and_chance():
    scores = torch.tensor([[0.0, 3.0, -1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    planted = torch.tensor([[1], [0], [2]])
    mask = torch.tensor([[True, True, True, False], [True] * 4, [True] * 4])
    r = planted_share(scores, planted, mask)
    assert r["n_rows"] == 2 and math.isnan(float(r["per_row"][2]))
    assert r["share"] == pytest.approx((0.75 + 0.25) / 2)
    assert r["chance"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    # the same positions for every row (feature dimensions)
    assert planted_share(scores[:2], torch.tensor([0, 1]))["share"] == pytest.approx((0.75 + 0.5) / 2)
    with pytest.raises(ValueError, match="masked out"):
        planted_share(scores, torch.tensor([[3], [0], [0]]), mask)
    with pytest.raises(ValueError, match="outside"):
        planted_share(scores, torch.tensor([4]))


# ----- trace and fit_and_keep on a real host ----------------------------------------------------------

def _batch(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    dims, lens = {"text": 6, "audio": 3, "vision": 4}, {"text": 7, "audio": 9, "vision": 8}
    b = {}
    for m in dims:
        b[m] = torch.randn(B, lens[m], dims[m], generator=g)
        n = torch.randint(3, lens[m] + 1, (B,), generator=g)
        b[f"{m}_mask"] = torch.arange(lens[m])[None, :] < n[:, None]
    b["label"] = torch.randn(B, generator=g)
    return b, dims


def test_trace_of_a_host_with_infoenh():
    torch.manual_seed(0)
    batch, dims = _batch()
    model = build_model("lf", dims, infoenh="full", infoenh_kwargs={"d": 8, "k": 3}, hidden=10).train()
    tr = trace(model, batch)
    assert model.training
    assert set(tr.fib) == {"text", "audio", "vision"} and tr.fib["text"].z.shape == (4, 3, 8)
    assert tr.fia.plans.shape == (4, 6, 3, 3)
    assert tr.enhanced["audio"].shape == (4, 3, 24)
    torch.testing.assert_close(tr.fia.enhanced["audio"], tr.enhanced["audio"], atol=1e-5, rtol=0)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(tr.pred, model(batch).pred)
    # top-k keeps real steps only
    for m in dims:
        idx = tr.fib[m].idx
        assert bool(batch[f"{m}_mask"].gather(1, idx.clamp_min(0))[idx >= 0].all())


def test_trace_without_infoenh_and_attributions_live_on_kept_steps():
    torch.manual_seed(1)
    batch, dims = _batch(seed=1)
    base = build_model("lf", dims, infoenh="none", hidden=10)
    tr = trace(base, batch)
    assert tr.fib is None and tr.fia is None and tr.enhanced is None
    assert tr.pooled["text"].shape == (4, 10)
    model = build_model("lf", dims, infoenh="full", infoenh_kwargs={"d": 8, "k": 3}, hidden=10)
    a = token_attributions(model, batch, "text")
    kept = torch.zeros_like(batch["text_mask"])
    idx = trace(model, batch).fib["text"].idx
    kept.scatter_(1, idx.clamp_min(0), idx >= 0)
    assert bool((a[~kept] == 0).all())                      # steps top-k dropped get no attribution
    assert bool((a[kept] != 0).any())


def test_fit_and_keep_returns_the_selected_model(tmp_path):
    import warnings

    from infoenh.data.synthetic import make_synthetic_splits
    from infoenh.train import TrainConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_synthetic_splits(seed=0, sizes=(24, 8, 8), text_dim=8, text_len=8, audio_len=8, vision_len=8,
                                   audio_neg_inf_frac=0.0)
    cfg = TrainConfig(model="lf", infoenh="full", epochs=2, quiet=True, infoenh_kwargs={"d": 4, "k": 2})
    model, res = fit_and_keep(ds, cfg)
    assert res["epochs_run"] == 2 and model.infoenh is not None and model.infoenh.k == 2
    from infoenh.data import collate

    test = collate([ds["test"][i] for i in range(len(ds["test"]))])
    model.eval()
    with torch.no_grad():
        pred = model(test).pred
    assert float((pred - test["label"]).abs().mean()) == pytest.approx(res["test"]["MAE"], abs=1e-4)


# ----- ablation differences ----------------------------------------------------------------------------

def test_ablation_differences_scales_and_flags_direction():
    c = {"n": 3, "mean_diff": 0.02, "ci_low": 0.01, "ci_high": 0.03, "p": 0.04}
    doc = {"arms": {"baseline": {"label": "baseline"}, "full": {"label": "+InfoEnh"}},
           "comparisons": {"full vs baseline": {"seeds": [1, 2, 3], "MAE": dict(c), "Non0_acc_2": dict(c),
                                                "Corr": {**c, "ci_low": -0.01}}}}
    (mae,) = ablation_differences(doc, "MAE")
    assert mae["better"] is False and mae["label"] == "+InfoEnh vs baseline"      # MAE up = worse
    (acc,) = ablation_differences(doc, "Non0_acc_2")
    assert acc["better"] is True and acc["mean_diff"] == pytest.approx(2.0) and acc["ci_high"] == pytest.approx(3.0)
    (corr,) = ablation_differences(doc, "Corr")
    assert corr["better"] is None                                                 # CI contains 0
    assert mae["interval"] == "bootstrap" and mae["p_holm"] is None
    # below 10 seeds there is no bootstrap interval: the t interval is used, and named
    t_only = {"n": 3, "mean_diff": 0.02, "ci_low": None, "ci_high": None, "t_low": -0.01, "t_high": 0.05, "p": 0.2,
              "p_holm": 0.6}
    doc_t = {"comparisons": {"full vs baseline": {"MAE": t_only}}}
    (row,) = ablation_differences(doc_t, "MAE")
    assert (row["interval"], row["ci_low"], row["ci_high"], row["p_holm"]) == ("t", -0.01, 0.05, 0.6)
    assert row["better"] is None
    with pytest.raises(KeyError, match="F1"):
        ablation_differences(doc, "F1")
    with pytest.raises(KeyError, match="unknown comparisons"):
        ablation_differences(doc, "MAE", comparisons=["fib vs baseline"])
    with pytest.raises(ValueError, match="comparisons"):
        ablation_differences({}, "MAE")
