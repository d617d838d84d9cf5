"""Tests for infoenh.infonce: negative selection and the InfoNCE value on hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from infoenh.infonce import InfoNCEResult, negative_mask, sentiment_class, sentiment_infonce


def test_sign_negatives_use_three_classes():
    y = torch.tensor([-1.5, 0.0, 0.3, 2.0, -0.2])
    assert sentiment_class(y, "sign").tolist() == [-1, 0, 1, 1, -1]
    neg = negative_mask(y, "sign")
    assert neg.shape == (5, 5) and neg.dtype == torch.bool
    assert not bool(neg.diagonal().any())
    assert neg[0].tolist() == [False, True, True, True, False]
    assert neg[1].tolist() == [True, False, True, True, True]     # neutral differs from everything else
    assert neg[2].tolist() == [True, True, False, False, True]
    assert torch.equal(neg, neg.T)


def test_acc7_classes_round_half_to_even_and_clip():
    y = torch.tensor([0.5, -0.5, 1.5, 2.5, 3.7, -3.2, 0.49, 1.51])
    assert sentiment_class(y, "acc7").tolist() == [0, 0, 2, 2, 3, -3, 0, 2]
    neg = negative_mask(y, "acc7")
    assert not bool(neg[0, 1]) and not bool(neg[2, 3]) and bool(neg[0, 2]) and bool(neg[4, 5])


def test_all_negatives_and_label_free_use():
    y = torch.tensor([1.0, 1.0, 1.0])
    assert torch.equal(negative_mask(y, "all"), ~torch.eye(3, dtype=torch.bool))
    assert torch.equal(negative_mask(None, "all", batch_size=3), ~torch.eye(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs sentiment labels"):
        negative_mask(None, "sign")
    with pytest.raises(ValueError, match="negatives must be one of"):
        negative_mask(y, "polarity")


def _vec(rows):
    return torch.tensor(rows, dtype=torch.float64).unsqueeze(1)     # [B, 1, d]: k = 1


def test_hand_computed_value():
    e = _vec([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z = _vec([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    tau = 0.5
    # anchor 0: positive cos(e0,z0) = 1, negative {1}: cos(e1,z0) = 0
    l0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0 / tau)))
    # anchor 1: positive cos(e1,z1) = 1/sqrt2, negatives {0, 2}: cos(e0,z1) = 1/sqrt2, cos(e2,z1) = 1
    r = 1 / math.sqrt(2)
    l1 = -math.log(math.exp(r / tau) / (math.exp(r / tau) + math.exp(r / tau) + math.exp(1 / tau)))
    # anchor 2: positive cos(e2,z2) = 1/sqrt2, negative {1}: cos(e1,z2) = 1
    l2 = -math.log(math.exp(r / tau) / (math.exp(r / tau) + math.exp(1 / tau)))
    res = sentiment_infonce(e, z, y, tau=tau, negatives="sign")
    assert isinstance(res, InfoNCEResult)
    assert res.n_anchors == 3 and res.n_no_negative == 0
    assert float(res.loss) == pytest.approx((l0 + l1 + l2) / 3, rel=1e-12)


def test_no_negative_anchor_counts_and_contributes_zero():
    e = _vec([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z = _vec([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    tau = 0.5
    # labels 1, 2, 2 under acc7: anchor 0 has negatives {1, 2}; anchors 1, 2 have only anchor 0
    y = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
    r = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0) + math.exp(r / tau)))
    l1 = -math.log(math.exp(r / tau) / (math.exp(r / tau) + math.exp(r / tau)))
    l2 = -math.log(math.exp(r / tau) / (math.exp(r / tau) + math.exp(0)))
    res = sentiment_infonce(e, z, y, tau=tau, negatives="acc7")
    assert res.n_no_negative == 0 and float(res.loss) == pytest.approx((l0 + l1 + l2) / 3, rel=1e-12)
    y = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)     # all positive: nobody has a negative
    res = sentiment_infonce(e, z, y, tau=tau, negatives="sign")
    assert res.n_no_negative == 3 and float(res.loss) == 0.0
    y = torch.tensor([0.5, 1.0, -2.0], dtype=torch.float64)    # every anchor has one
    assert sentiment_infonce(e, z, y, tau=tau).n_no_negative == 0


def test_class_negatives_are_all_or_nothing():
    # "differs in class" is symmetric, so an anchor without a negative means the whole batch
    # shares one class: n_no_negative is either 0 or B under "sign" and "acc7".
    torch.manual_seed(3)
    e, z = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    for y in (torch.tensor([0.2, 0.4, 1.0, 2.9, 0.1]), torch.tensor([0.2, 0.4, 1.0, 2.9, -0.1])):
        res = sentiment_infonce(e, z, y, negatives="sign")
        assert res.n_no_negative in (0, 5)
    assert sentiment_infonce(e, z, torch.tensor([0.2, 0.4, 1.0, 2.9, 0.1])).n_no_negative == 5
    assert sentiment_infonce(e, z, torch.tensor([0.2, 0.4, 1.0, 2.9, -0.1])).n_no_negative == 0


def test_all_negatives_equal_cross_entropy():
    torch.manual_seed(0)
    e, z = torch.randn(6, 4, 3), torch.randn(6, 4, 3)
    tau = 0.3
    pe = F.normalize(e.mean(1), dim=-1)
    pz = F.normalize(z.mean(1), dim=-1)
    ce = F.cross_entropy(pz @ pe.T / tau, torch.arange(6))
    res = sentiment_infonce(e, z, None, tau=tau, negatives="all")
    assert float(res.loss) == pytest.approx(float(ce), rel=1e-5)


def test_flatten_pool_and_padding_mask():
    torch.manual_seed(1)
    e, z = torch.randn(4, 3, 2), torch.randn(4, 3, 2)
    mask = torch.tensor([[True, True, False]] * 4)
    y = torch.tensor([1.0, -1.0, 0.0, 2.0])
    for pool in ("mean", "flatten"):
        base = sentiment_infonce(e, z, y, mask, pool=pool)
        e2, z2 = e.clone(), z.clone()
        e2[:, 2] += 10.0
        z2[:, 2] -= 7.0
        assert float(sentiment_infonce(e2, z2, y, mask, pool=pool).loss) == pytest.approx(float(base.loss))
        assert float(sentiment_infonce(e2, z2, y, None, pool=pool).loss) != pytest.approx(float(base.loss))
    # flatten by hand on k = 2 rows
    pe = F.normalize(e[:, :2].flatten(1), dim=-1)
    pz = F.normalize(z[:, :2].flatten(1), dim=-1)
    logits = pz @ pe.T / 0.1
    neg = negative_mask(y, "sign")
    manual = torch.stack([
        torch.logsumexp(logits[i][neg[i] | (torch.arange(4) == i)], 0) - logits[i, i] for i in range(4)
    ]).mean()
    assert float(sentiment_infonce(e, z, y, mask, pool="flatten").loss) == pytest.approx(float(manual), rel=1e-6)


def test_gradient_reaches_e_and_z():
    e = torch.randn(5, 3, 4, requires_grad=True)
    z = torch.randn(5, 3, 4, requires_grad=True)
    y = torch.tensor([1.0, -1.0, 0.5, -2.0, 0.0])
    sentiment_infonce(e, z, y).loss.backward()
    assert float(e.grad.abs().sum()) > 0 and float(z.grad.abs().sum()) > 0
    assert torch.isfinite(e.grad).all() and torch.isfinite(z.grad).all()


def test_zero_vectors_are_finite():
    """Zero vectors have cosine 0 with everything, so every logit is 0 and anchor i's loss is
    exactly log(1 + |N(i)|); the batch loss is their mean over the anchors with negatives."""
    e = torch.zeros(5, 2, 4, requires_grad=True)
    z = torch.zeros(5, 2, 4, requires_grad=True)
    # sign classes +, +, -, 0, +: negatives per anchor 2, 2, 4, 4, 2
    res = sentiment_infonce(e, z, torch.tensor([1.0, 2.5, -1.0, 0.0, 0.3]))
    res.loss.backward()
    expected = (3 * math.log(1 + 2) + 2 * math.log(1 + 4)) / 5
    assert res.loss.item() == pytest.approx(expected, rel=1e-6) and res.n_no_negative == 0
    assert torch.isfinite(e.grad).all() and torch.isfinite(z.grad).all()
    # an anchor without negatives adds 0 and is left out of the mean: classes +, +, -
    res = sentiment_infonce(e[:3], z[:3], torch.tensor([1.0, 2.0, -1.0]), negatives="sign")
    assert res.loss.item() == pytest.approx((2 * math.log(2) + math.log(3)) / 3, rel=1e-6)
    res = sentiment_infonce(e[:3], z[:3], torch.tensor([1.0, 1.0, 1.0]))
    assert res.loss.item() == 0.0 and res.n_no_negative == 3


def test_aligned_pairs_give_lower_loss():
    torch.manual_seed(2)
    e = torch.randn(8, 2, 6)
    y = torch.tensor([1.0, -1.0] * 4)
    same = sentiment_infonce(e, e.clone(), y).loss
    other = sentiment_infonce(e, torch.randn(8, 2, 6), y).loss
    assert float(same) < float(other)


def test_single_sample_batch():
    res = sentiment_infonce(torch.randn(1, 2, 3), torch.randn(1, 2, 3), torch.tensor([1.0]))
    assert res.n_no_negative == 1 and float(res.loss) == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(e=torch.randn(2, 3), z=torch.randn(2, 3)), "3 dimensions"),
        (dict(z=torch.randn(2, 3, 5)), "same shape"),
        (dict(labels=torch.tensor([1.0, 2.0, 3.0])), r"shape \(2,\)"),
        (dict(labels=torch.tensor([[1.0], [2.0]])), "1 dimensions"),
        (dict(labels=None), "needs sentiment labels"),
        (dict(tau=0.0), r"tau \(the InfoNCE temperature\) must be a finite number > 0, got 0.0"),
        (dict(tau=-0.5), r"tau .* > 0, got -0.5"),
        (dict(tau=float("nan")), r"tau .* > 0, got nan"),
        (dict(tau=float("inf")), r"tau .* > 0, got inf"),
        (dict(pool="max"), "pool"),
        (dict(negatives="nope"), "negatives"),
        (dict(mask=torch.ones(2, 4, dtype=torch.bool)), "shape"),
        (dict(e=torch.full((2, 3, 4), float("nan"))), "NaN"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = dict(e=torch.randn(2, 3, 4), z=torch.randn(2, 3, 4), labels=torch.tensor([1.0, -1.0]))
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        sentiment_infonce(**args)


def test_bf16_inputs_give_a_float32_loss():
    torch.manual_seed(4)
    e, z = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    y = torch.tensor([1.0, -1.0, 0.0, 2.0])
    ref = sentiment_infonce(e, z, y).loss
    low = sentiment_infonce(e.bfloat16(), z.bfloat16(), y)
    assert low.loss.dtype == torch.float32 and float(low.loss) == pytest.approx(float(ref), rel=0.05)


# ----- reduction over anchors: "mean" (default) or "sum" (eq. 5 literally) ------------------------

@pytest.mark.parametrize("negatives", ["sign", "acc7", "all"])
def test_sum_is_mean_times_anchors_with_a_negative(negatives):
    torch.manual_seed(5)
    e = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    z = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.2, -0.4, 0.0, 2.5, -2.0, 0.6], dtype=torch.float64)
    mean = sentiment_infonce(e, z, y, negatives=negatives)
    total = sentiment_infonce(e, z, y, negatives=negatives, reduction="sum")
    n_with = mean.n_anchors - mean.n_no_negative
    assert n_with == 6 and total.n_no_negative == mean.n_no_negative
    assert total.loss.item() == pytest.approx(mean.loss.item() * n_with, rel=1e-14)
    g_mean = torch.autograd.grad(mean.loss, [e, z])
    g_sum = torch.autograd.grad(total.loss, [e, z])
    for a, b in zip(g_mean, g_sum):
        torch.testing.assert_close(b, a * n_with, rtol=1e-12, atol=1e-15)


def test_sum_of_the_hand_computed_case_and_of_a_batch_without_negatives():
    e = _vec([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z = _vec([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    tau, r = 0.5, 1 / math.sqrt(2)
    l0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 1.0))
    l1 = -math.log(math.exp(r / tau) / (2 * math.exp(r / tau) + math.exp(1 / tau)))
    l2 = -math.log(math.exp(r / tau) / (math.exp(r / tau) + math.exp(1 / tau)))
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    res = sentiment_infonce(e, z, y, tau=tau, reduction="sum")
    assert float(res.loss) == pytest.approx(l0 + l1 + l2, rel=1e-12)
    same = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)        # one class: no anchor has a negative
    res = sentiment_infonce(e, z, same, tau=tau, reduction="sum")
    assert float(res.loss) == 0.0 and res.n_no_negative == 3


@pytest.mark.parametrize("bad", ["max", "Mean", None, 1])
def test_unknown_reduction_is_refused(bad):
    with pytest.raises(ValueError, match=r"reduction must be 'mean' .* or 'sum' .*, got "):
        sentiment_infonce(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.tensor([1.0, -1.0]), reduction=bad)


# ----- all modalities at once equal one modality at a time ---------------------------------------

def _reference_infonce(e, z, labels, mask, tau, negatives, pool, reduction):
    """Eq. 5 for one modality, written the obvious way: pool, normalise, [B, B] logits, a
    logsumexp over the positive and the negatives of each anchor, reduce."""
    w = mask.unsqueeze(-1).to(e.dtype)
    if pool == "mean":
        pe, pz = (e * w).sum(1) / w.sum(1).clamp(min=1.0), (z * w).sum(1) / w.sum(1).clamp(min=1.0)
    else:
        pe, pz = (e * w).flatten(1), (z * w).flatten(1)
    pe, pz = F.normalize(pe, dim=-1, eps=1e-8), F.normalize(pz, dim=-1, eps=1e-8)
    logits = pz @ pe.T / tau
    neg = negative_mask(labels, negatives, batch_size=e.shape[0])
    keep = neg | torch.eye(e.shape[0], dtype=torch.bool)
    per_anchor = torch.logsumexp(logits.masked_fill(~keep, float("-inf")), dim=1) - logits.diagonal()
    has_neg = neg.any(dim=1)
    total = (per_anchor * has_neg.double()).sum()
    return total if reduction == "sum" else total / max(int(has_neg.sum()), 1)


@pytest.mark.parametrize("pool", ["mean", "flatten"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("negatives", ["sign", "acc7", "all"])
def test_stacked_modalities_equal_the_per_modality_reference(pool, reduction, negatives):
    """infonce_per_modality on [B, M, k, d] (what InfoEnh calls, one batched [M, B, B] product)
    gives each modality's value and gradients of the straightforward formulation (float64)."""
    from infoenh.infonce import infonce_per_modality

    g = torch.Generator().manual_seed(4)
    B, M, k, d = 7, 3, 4, 5
    e = torch.randn(B, M, k, d, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(B, M, k, d, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(B, M, k, generator=g) < 0.7
    mask[2, 1] = False                                          # a sample with no real row in one modality
    y = torch.tensor([1.2, -0.4, 0.0, 2.5, -2.0, 0.6, 0.6], dtype=torch.float64)
    neg = negative_mask(y, negatives)
    loss, no_neg = infonce_per_modality(e, z, neg, mask, tau=0.3, pool=pool, reduction=reduction)
    assert loss.shape == (M,) and no_neg.dim() == 0 and int(no_neg) == int((~neg.any(1)).sum())
    ref = torch.stack([_reference_infonce(e[:, m], z[:, m], y, mask[:, m], 0.3, negatives, pool, reduction)
                       for m in range(M)])
    torch.testing.assert_close(loss, ref, rtol=1e-13, atol=1e-13)
    for m in range(M):                                          # and the public one-modality function
        one = sentiment_infonce(e[:, m], z[:, m], y, mask[:, m], tau=0.3, negatives=negatives, pool=pool,
                                reduction=reduction)
        torch.testing.assert_close(one.loss, ref[m], rtol=1e-13, atol=1e-13)
    w = torch.tensor([0.3, -1.1, 2.0], dtype=torch.float64)
    ga = torch.autograd.grad((loss * w).sum(), [e, z])
    gb = torch.autograd.grad((ref * w).sum(), [e, z])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
