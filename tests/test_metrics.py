"""msa_metrics against hand-computed cases, including labels at 0 and at the half points ±0.5/1.5/2.5."""
import math
import warnings

import numpy as np
import pytest
import torch

from infoenh.metrics import METRIC_KEYS, UndefinedMetricWarning, msa_metrics

# nine clips with labels at -3, the half points, exactly 0 and 3
T = [-3.0, -2.5, -1.5, -0.5, 0.0, 0.5, 1.5, 2.5, 3.0]
P = [-2.6, -2.4, -1.4, 0.4, 0.2, -0.2, 1.6, 2.6, 3.5]


def _pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def test_hand_computed_case():
    r = msa_metrics(P, T)
    assert tuple(r) == METRIC_KEYS
    # Has0 (t >= 0 vs p >= 0): clips 3 and 5 are wrong -> 7/9; F1: class True (5 clips) 0.8, False (4) 0.75
    assert r["Has0_acc_2"] == 0.7778 and r["Has0_F1_score"] == round((5 * 0.8 + 4 * 0.75) / 9, 4)
    # Non0 drops the label 0 (8 clips): clips 3 and 5 wrong -> 6/8; both classes F1 0.75
    assert r["Non0_acc_2"] == 0.75 and r["Non0_F1_score"] == 0.75
    # Acc-7 with half to even: t -> [-3,-2,-2,0,0,0,2,2,3], p -> [-3,-2,-1,0,0,0,2,3,3]: 7/9
    assert r["Mult_acc_7"] == 0.7778
    # Acc-5 (clip to [-2, 2]): t -> [-2,-2,-2,0,0,0,2,2,2], p -> [-2,-2,-1,0,0,0,2,2,2]: 8/9
    assert r["Mult_acc_5"] == 0.8889
    # MAE, unclipped: (0.4+0.1+0.1+0.9+0.2+0.7+0.1+0.1+0.5)/9
    assert r["MAE"] == round(3.1 / 9, 4) == 0.3444
    assert r["Corr"] == round(_pearson(P, T), 4)


def test_half_to_even_is_what_counts():
    # under half-away-from-zero rounding the labels would be [-3,-3,-2,-1,0,1,2,3,3] and Acc-7 4/9
    assert msa_metrics(P, T)["Mult_acc_7"] != round(4 / 9, 4)
    t = [0.5, -0.5, 1.5, 2.5, -1.5, -2.5]
    p = [0.0, 0.0, 2.0, 2.0, -2.0, -2.0]  # the half-to-even images of t
    assert msa_metrics(p, t)["Mult_acc_7"] == 1.0
    assert msa_metrics([1.0, -1.0, 3.0, 3.0, -1.0, -3.0], t)["Mult_acc_7"] == 0.0


def test_zero_label_counts_as_non_negative_in_has0_only():
    t = [0.0, 0.0, 1.0, -1.0]
    p = [-0.1, 0.1, 1.0, -1.0]
    r = msa_metrics(p, t, round_digits=None)
    assert r["Has0_acc_2"] == 0.75          # p=-0.1 on t=0 is a miss under >= 0
    assert r["Non0_acc_2"] == 1.0           # the two zero labels are left out
    assert r["Non0_F1_score"] == 1.0
    assert r["MAE"] == pytest.approx(0.05)


def test_perfect_predictions_and_input_types():
    t = np.array([-2.2, -0.4, 0.0, 0.6, 1.8, 3.0])
    for p in (t.copy(), torch.tensor(t, dtype=torch.float32).reshape(-1, 1), t.tolist()):
        r = msa_metrics(p, t)
        assert r["Has0_acc_2"] == r["Non0_acc_2"] == r["Mult_acc_7"] == r["Mult_acc_5"] == 1.0
        assert r["Has0_F1_score"] == r["Non0_F1_score"] == 1.0 and r["MAE"] == 0.0 and r["Corr"] == 1.0


def test_rounding_param():
    raw = msa_metrics(P, T, round_digits=None)
    assert raw["Has0_acc_2"] == pytest.approx(7 / 9, abs=1e-15)
    assert msa_metrics(P, T, round_digits=2)["Has0_acc_2"] == 0.78


def test_constant_prediction_gives_nan_corr_with_warning():
    t = [-1.0, 1.0, 2.0, 0.0]
    with pytest.warns(UndefinedMetricWarning, match="pred is constant.*Corr"):
        r = msa_metrics([0.0, 0.0, 0.0, 0.0], t)
    assert math.isnan(r["Corr"])
    assert r["Has0_acc_2"] == 0.75 and r["Non0_acc_2"] == 0.3333
    # Non0 F1: class False (1 clip) P=1/3 R=1 F1=0.5, class True (2 clips) F1=0 -> 0.5/3
    assert r["Non0_F1_score"] == 0.1667
    assert r["MAE"] == 1.0 and r["Mult_acc_7"] == 0.25


def test_all_zero_labels():
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = msa_metrics([0.3, -0.2, 0.1], [0.0, 0.0, 0.0])
    msgs = [str(w.message) for w in rec if issubclass(w.category, UndefinedMetricWarning)]
    assert any("every label is 0" in m for m in msgs) and any("true is constant" in m for m in msgs)
    assert math.isnan(r["Non0_acc_2"]) and math.isnan(r["Non0_F1_score"]) and math.isnan(r["Corr"])
    assert r["Has0_acc_2"] == 0.6667


@pytest.mark.parametrize("p, t, err, match", [
    ([0.1, 0.2], [0.1, 0.2, 0.3], ValueError, "pred has 2 values but true has 3"),
    ([0.1], [0.2], ValueError, "at least 2 clips"),
    ([0.1, float("nan"), 0.3], [0.0, 1.0, 2.0], ValueError, "pred has 1 NaN and 0 inf"),
    ([0.1, 0.2, 0.3], [0.0, float("inf"), 2.0], ValueError, "true has 0 NaN and 1 inf"),
    (["a", "b"], [0.0, 1.0], TypeError, "pred must be numeric"),
])
def test_bad_input(p, t, err, match):
    with pytest.raises(err, match=match):
        msa_metrics(p, t)
