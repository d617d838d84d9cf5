"""Tests for infoenh.teaching.fib_demo: chapter 3's traced hard mask, marker switch, chance and scores."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infoenh.teaching.fib_demo import MaskTrace, add_marker, chance_recall, evaluate, join_traces, trace_mask

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one thread (see conftest.one_thread)


def _data(N=96, L=10, d=6, seed=0):
    """Small synthetic sequences: feature 0 carries the label, the rest is noise; random lengths."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(N, generator=g) * 6 - 3
    x = torch.randn(N, L, d, generator=g)
    x[:, :, 0] += y[:, None] / 2
    mask = torch.arange(L) < torch.randint(3, L + 1, (N,), generator=g)[:, None]
    return x, mask, y


def _trace(ste=False, **kw):
    x, mask, y = _data()
    kw.setdefault("steps", 30)
    kw.setdefault("batch", 16)
    return trace_mask(x, mask, y, straight_through=ste, **kw)


def test_shapes_and_consistency():
    t = _trace(steps=30, probe_every=10)
    assert isinstance(t, MaskTrace)
    assert t.steps.tolist() == [0, 10, 20, 30]
    assert t.per_feature.shape == (4, 6) and t.kept_frac.shape == (4,) and t.dead.shape == (4,)
    assert t.loss.shape == (30,) and np.isfinite(t.loss).all()
    assert ((t.per_feature >= 0) & (t.per_feature <= 1)).all()
    np.testing.assert_allclose(t.kept_frac, t.per_feature.mean(1))
    assert t.dead.tolist() == (t.per_feature == 0).sum(1).tolist()


def test_deterministic_and_leaves_the_global_random_state_alone():
    state = torch.get_rng_state()
    a, b = _trace(seed=3), _trace(seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(a.per_feature, b.per_feature)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.array_equal(a.loss, _trace(seed=4).loss)


def test_with_and_without_ste_start_alike_and_then_part():
    plain, ste = _trace(False, steps=60), _trace(True, steps=60)
    assert plain.kept_frac[0] == ste.kept_frac[0] and plain.loss[0] == ste.loss[0]
    assert not np.array_equal(plain.per_feature, ste.per_feature)
    assert ste.fib.straight_through and not plain.fib.straight_through


def _with_dead_feature(j=3):
    """A one-step trace whose FIB then has gate feature j switched off on every row (g ~ 0.02)."""
    t = _trace(steps=1)
    with torch.no_grad():
        t.fib.gate.weight[j] = 0.0
        t.fib.gate.bias[j] = -4.0
    return t


@pytest.mark.parametrize("ste", [False, True])
def test_a_feature_off_everywhere_learns_only_with_ste(ste):
    j = 3
    start = _with_dead_feature(j)
    row = start.fib.gate.weight[j].clone()
    x, mask, y = _data()
    t = trace_mask(x, mask, y, straight_through=ste, steps=40, batch=16, lr=0.5, start=start)
    assert torch.equal(start.fib.gate.weight[j], row)                  # the start's model is left as it was
    moved = not torch.equal(t.fib.gate.weight[j], row)
    assert moved == ste
    if ste:
        assert t.per_feature[-1, j] > 0                                 # ... and it comes back on
    else:
        assert (t.per_feature[:, j] == 0).all() and (t.dead >= 1).all()


def test_start_counts_on_and_join_traces():
    first = _trace(steps=20, probe_every=10)
    then = _trace(steps=30, probe_every=10, start=first, seed=9)
    assert then.steps.tolist() == [20, 30, 40, 50]
    np.testing.assert_array_equal(then.per_feature[0], first.per_feature[-1])   # the same model
    both = join_traces(first, then)
    assert both.steps.tolist() == [0, 10, 20, 30, 40, 50]
    assert both.per_feature.shape == (6, 6) and both.loss.shape == (50,) and both.fib is then.fib
    with pytest.raises(ValueError, match="make it with trace_mask"):
        join_traces(first, _trace(steps=10))


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(steps=0), ValueError, "steps must be an integer >= 1"),
        (dict(probe_every=0), ValueError, "probe_every must be an integer >= 1"),
        (dict(lr=0.0), ValueError, r"lr \(the learning rate\) must be a finite number > 0"),
        (dict(alpha=-1.0), ValueError, "alpha"),
        (dict(start="trace"), TypeError, "start must be a MaskTrace"),
    ],
)
def test_bad_arguments(kw, err, match):
    with pytest.raises(err, match=match):
        _trace(**kw)


def test_bad_data_and_mismatched_start():
    x, mask, y = _data()
    with pytest.raises(ValueError, match="y has 95 entries"):
        trace_mask(x, mask, y[:-1], straight_through=False, steps=1)
    with pytest.raises(ValueError, match="shape"):
        trace_mask(x, mask[:, :-1], y, straight_through=False, steps=1)
    first = _trace(steps=1)
    with pytest.raises(ValueError, match="start was trained with d=6, k=4"):
        trace_mask(x, mask, y, straight_through=False, steps=1, k=3, start=first)


def test_watch_records_the_hard_mask_of_the_watched_clips():
    x, mask, y = _data()
    t = trace_mask(x, mask, y, straight_through=False, steps=20, batch=16, probe_every=10,
                   watch=(x[:2], mask[:2]))
    assert t.watched.shape == (3, 2, 4, 6)
    with torch.no_grad():
        np.testing.assert_array_equal(t.watched[-1], t.fib(x[:2], mask[:2]).hard.numpy())
    rest = trace_mask(x, mask, y, straight_through=True, steps=10, batch=16, probe_every=10,
                      start=t, watch=(x[:2], mask[:2]))
    assert join_traces(t, rest).watched.shape == (4, 2, 4, 6)
    assert _trace().watched is None


def test_add_marker_adds_only_at_planted_steps():
    x, mask, _ = _data()
    planted = torch.zeros_like(mask)
    planted[:, 1] = True
    out = add_marker(x, planted, 2, 3.0)
    diff = out - x
    assert torch.allclose(diff[:, 1, 2], torch.full((len(x),), 3.0))
    diff[:, 1, 2] = 0
    assert (diff == 0).all() and not torch.equal(out, x)
    with pytest.raises(ValueError, match="dim"):
        add_marker(x, planted, 6)


def test_chance_recall_matches_k_over_length():
    """Equal lengths L, one planted step each: random top-k hits it with probability k / L."""
    mask = torch.ones(400, 10, dtype=torch.bool)
    planted = torch.zeros_like(mask)
    planted[:, 3] = True
    assert abs(chance_recall(mask, planted, 4, n_sim=50) - 0.4) < 0.02
    short = (torch.arange(10) < 2).expand(5, 10)                  # 2 real steps, k = 4: all hit
    assert chance_recall(short, short & (torch.arange(10) == 1), 4, n_sim=5) == 1.0


def test_evaluate_scores_the_trained_model():
    x, mask, y = _data()
    t = _trace()
    planted = torch.zeros_like(mask)
    planted[:, 0] = True
    s = evaluate(t, x, mask, y, planted)
    with torch.no_grad():
        out = t.fib(x, mask)
    assert s.recall == pytest.approx(float((out.idx == 0).sum()) / len(x))
    assert s.per_feature.shape == (6,) and 0 < s.mae < 3
