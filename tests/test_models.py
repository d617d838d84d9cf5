"""Host models: shapes, the InfoEnh switches, fidelity details of Self-MM and MISA, bad input."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from infoenh.models import MISA, ULGM, SelfMM, build_model, cmd, diff_loss, infoenh_config
from infoenh.models.encoders import LSTMSeq, StackedBiLSTM
from infoenh.models.pooling import first_valid, last_valid, masked_mean

DIMS = {"text": 12, "audio": 5, "vision": 7}
IE = {"d": 8, "k": 4, "ot_iters": 10}
HOSTS = ["lf", "selfmm", "misa"]


def make_batch(B=6, dims=DIMS, lens=(10, 15, 20), seed=0):
    g = torch.Generator().manual_seed(seed)
    b = {}
    for (m, d), L in zip(dims.items(), lens):
        b[m] = torch.randn(B, L, d, generator=g)
        n = torch.randint(1, L + 1, (B, 1), generator=g)
        b[f"{m}_mask"] = torch.arange(L) < n
    b["label"] = torch.linspace(-2.5, 2.5, B)
    b["index"] = torch.arange(B)
    return b


def build(name, variant="none", modalities=("text", "audio", "vision"), B=6, **kw):
    torch.manual_seed(0)
    m = build_model(name, DIMS, infoenh=variant, modalities=modalities, n_train=B, infoenh_kwargs=IE, **kw)
    b = make_batch(B)
    m.init_from_train(b["label"], b["index"])
    return m, b


@pytest.mark.parametrize("name", HOSTS)
@pytest.mark.parametrize("variant", ["none", "full", "no_fib", "no_fia"])
def test_forward_backward_every_host_and_switch(name, variant):
    m, b = build(name, variant)
    m.train()
    out = m(b)
    assert out.pred.shape == (6,)
    loss, parts = m.training_loss(out, b, epoch=2)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    m.after_backward(out, b, epoch=2)
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert (m.infoenh is None) == (variant == "none")
    if variant != "none":
        assert float(parts["infoenh"]) >= 0


def test_switches_configure_infoenh():
    assert infoenh_config("none") is None
    assert infoenh_config("no_fib") == {"use_fib": False, "use_infonce": False}
    assert infoenh_config("no_fia", k=3) == {"use_fia": False, "k": 3}
    m, _ = build("lf", "full")
    assert m.infoenh.out_dim == 3 * IE["d"] and m.infoenh.use_fib and m.infoenh.use_fia
    m, _ = build("lf", "no_fib")
    assert not m.infoenh.use_fib and not m.infoenh.use_infonce and m.infoenh.use_fia
    m, _ = build("lf", "no_fia")
    assert m.infoenh.out_dim == IE["d"] and not m.infoenh.use_fia
    # the fusion reads the enhanced width
    assert m.mlp[0].in_features == 3 * IE["d"]
    with pytest.raises(ValueError, match="unknown InfoEnh variant"):
        infoenh_config("half")


@pytest.mark.parametrize("name", HOSTS)
def test_modality_removed_builds_on_subset_and_ignores_extra_inputs(name):
    m, b = build(name, "full", modalities=("audio", "vision"))
    assert m.modalities == ("audio", "vision")
    assert m.infoenh.modalities == ("audio", "vision") and m.infoenh.out_dim == 2 * IE["d"]
    b2 = dict(b)
    b2["text"] = b["text"] * 100.0          # the removed modality must not matter
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(b).pred, m(b2).pred)
    assert not any("text" in k for k in m.state_dict())


def test_infonce_only_in_training_with_labels():
    m, b = build("lf", "full")
    m.eval()
    with torch.no_grad():
        assert float(m(b).aux_loss) == 0.0
    m.train()
    assert float(m(b).aux_loss.detach()) > 0.0


@pytest.mark.parametrize("name", HOSTS)
def test_width_mismatch_names_modality_expected_and_got(name):
    m, b = build(name)
    b["audio"] = torch.randn(6, 15, 9)
    with pytest.raises(ValueError, match=r"'audio'.*expects width 5.*width 9"):
        m(b)


def test_missing_modality_and_bad_values_are_refused():
    m, b = build("lf")
    del b["vision"]
    with pytest.raises(KeyError, match="vision"):
        m(b)
    m, b = build("lf")
    b["text"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m(b)
    with pytest.raises(KeyError, match="dims has no width"):
        build_model("lf", {"text": 4, "audio": 3})
    with pytest.raises(ValueError, match="unknown model"):
        build_model("mult", DIMS)
    with pytest.raises(ValueError, match="n_train"):
        build_model("selfmm", DIMS)


def test_pooling_with_masks():
    h = torch.arange(24.0).reshape(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [False, True, True, True]])
    assert torch.equal(last_valid(h, mask), torch.stack([h[0, 1], h[1, 3]]))
    assert torch.equal(first_valid(h, mask), torch.stack([h[0, 0], h[1, 1]]))
    assert torch.allclose(masked_mean(h, mask), torch.stack([h[0, :2].mean(0), h[1, 1:].mean(0)]))
    empty = torch.zeros(2, 4, dtype=torch.bool)
    assert torch.equal(masked_mean(h, empty), torch.zeros(2, 3))


def test_selfmm_lstm_last_step_equals_packed_final_state():
    """Self-MM keeps linear(h_n) of a packed LSTM; our sequence encoder read at the last real step
    must give the same vector."""
    torch.manual_seed(0)
    enc = LSTMSeq(5, 16, 16).eval()
    x = torch.randn(4, 12, 5)
    lengths = torch.tensor([12, 7, 3, 1])
    mask = torch.arange(12) < lengths[:, None]
    ours = last_valid(enc(x, mask), mask)
    _, (h, _) = enc.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    assert torch.allclose(ours, enc.linear(h[-1]), atol=1e-6)


def test_misa_stacked_bilstm_ignores_padding():
    torch.manual_seed(0)
    enc = StackedBiLSTM(5)
    x = torch.randn(3, 9, 5)
    mask = torch.arange(9) < torch.tensor([[9], [4], [1]])
    seq, utt = enc(x, mask)
    assert seq.shape == (3, 9, 20) and utt.shape == (3, 20)
    x2 = x.clone()
    x2[~mask] = 1e3                                 # garbage in the padding
    seq2, utt2 = enc(x2, mask)
    assert torch.allclose(utt, utt2) and torch.allclose(seq, seq2)
    assert torch.equal(seq[~mask], torch.zeros_like(seq[~mask]))


@pytest.mark.parametrize("make", [lambda: StackedBiLSTM(5), lambda: LSTMSeq(5, 8, 8).eval()])
def test_recurrent_encoders_accept_padding_at_the_front(make):
    """Some files pad at the front: the encoders must read the same real steps either way."""
    torch.manual_seed(0)
    enc = make()
    x = torch.randn(2, 7, 5)
    lengths = torch.tensor([7, 4])
    end = torch.arange(7) < lengths[:, None]
    front = torch.flip(end, dims=[1])
    x_front = torch.zeros_like(x)
    for i, n in enumerate(lengths.tolist()):
        x_front[i, 7 - n:] = x[i, :n]
    a, b = enc(x, end), enc(x_front, front)
    if isinstance(a, tuple):
        assert torch.allclose(a[1], b[1], atol=1e-6)          # MISA's utterance vectors
        a, b = a[0], b[0]
    assert torch.allclose(last_valid(a, end), last_valid(b, front), atol=1e-6)


def test_ulgm_update_rule_by_hand():
    u = ULGM(4, {"fusion": 2, "text": 2}, H=3.0)
    y = torch.tensor([2.0, -1.0, 1.0, -2.0])
    u.init_labels(y, torch.arange(4))
    assert torch.equal(u.label("text", torch.arange(4)), y)
    f = {"fusion": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]),
         "text": torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])}
    u.update(f, torch.arange(4), epoch=1)           # epoch 1: features and centres only
    assert torch.equal(u.label("text", torch.arange(4)), y)
    assert torch.allclose(u.pos_text, f["text"][[0, 2]].mean(0)) and torch.allclose(u.neg_text, f["text"][[1, 3]].mean(0))
    pos_f, neg_f, pos_t, neg_t = u.pos_fusion.clone(), u.neg_fusion.clone(), u.pos_text.clone(), u.neg_text.clone()
    u.update(f, torch.tensor([0, 1, 2, 3]), epoch=2)
    for i in range(4):
        d_fp, d_fn = (f["fusion"][i] - pos_f).norm(), (f["fusion"][i] - neg_f).norm()
        d_tp, d_tn = (f["text"][i] - pos_t).norm(), (f["text"][i] - neg_t).norm()
        df, dt = (d_fn - d_fp) / (d_fp + 1e-8), (d_tn - d_tp) / (d_tp + 1e-8)
        y_hat = (0.5 * dt / (df + 1e-8) * y[i] + 0.5 * (y[i] + dt - df)).clamp(-3, 3)
        expect = 1 / 3 * y[i] + 2 / 3 * y_hat
        assert torch.allclose(u.label_text[i], expect, atol=1e-5)
    assert torch.equal(u.label_fusion, y)           # the multimodal labels never move
    with pytest.raises(IndexError, match="training samples"):
        u.label("text", torch.tensor([4]))


def _ulgm_expected(feats, labels, exclude_zero, H=3.0, n=2):
    """MMSA's ULGM by hand: the class centres of the stored features (positive class: label > 0,
    or >= 0 without exclude_zero; negative: < 0), then one epoch-n label update."""
    centre = {}
    for name, f in feats.items():
        pos = labels > 0 if exclude_zero else labels >= 0
        centre[name] = (f[pos].mean(0), f[labels < 0].mean(0))

    def delta(name):
        d_p = (feats[name] - centre[name][0]).norm(dim=-1)
        d_n = (feats[name] - centre[name][1]).norm(dim=-1)
        return (d_n - d_p) / (d_p + 1e-8)

    d_f, d_t = delta("fusion"), delta("text")
    y_hat = (0.5 * d_t / (d_f + 1e-8) * labels + 0.5 * (labels + d_t - d_f)).clamp(-H, H)
    return centre, (n - 1) / (n + 1) * labels + 2 / (n + 1) * y_hat


def test_ulgm_exclude_zero_keeps_zero_labels_out_of_the_positive_centre():
    """A zero label: MMSA's excludeZero leaves the sample out of both centres; without it the
    sample joins the positive centre, and the label update of every sample changes with it."""
    y = torch.tensor([2.0, -1.0, 0.0, -2.0, 1.0])
    f = {"fusion": torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [0.0, 0.0], [2.0, 0.5]]),
         "text": torch.tensor([[2.0, 0.0], [0.0, 2.0], [-4.0, 1.0], [0.0, 1.0], [1.0, 1.0]])}
    labels = {}
    for exclude in (True, False):
        u = ULGM(5, {"fusion": 2, "text": 2}, H=3.0, exclude_zero=exclude)
        u.init_labels(y, torch.arange(5))
        u.update(f, torch.arange(5), epoch=1)
        centre, expect = _ulgm_expected(f, y, exclude)
        for name in f:
            torch.testing.assert_close(getattr(u, f"pos_{name}"), centre[name][0], rtol=0, atol=1e-6)
            torch.testing.assert_close(getattr(u, f"neg_{name}"), centre[name][1], rtol=0, atol=1e-6)
        u.update(f, torch.arange(5), epoch=2)
        torch.testing.assert_close(u.label("text", torch.arange(5)), expect, rtol=0, atol=1e-5)
        labels[exclude] = expect
    torch.testing.assert_close(ULGM(5, {"t": 2}).pos_t, torch.zeros(2))      # the default excludes zero
    assert ULGM(5, {"t": 2}).exclude_zero
    # the hand case is one where the choice matters: the positive centres and every label differ
    torch.testing.assert_close(f["text"][[0, 4]].mean(0), _ulgm_expected(f, y, True)[0]["text"][0])
    torch.testing.assert_close(f["text"][[0, 2, 4]].mean(0), _ulgm_expected(f, y, False)[0]["text"][0])
    assert ((labels[True] - labels[False]).abs() > 1e-2).all()


def test_selfmm_unimodal_losses_weighted_by_label_gap():
    m, b = build("selfmm")
    m.train()
    out = m(b)
    _, parts = m.training_loss(out, b, epoch=1)
    assert all(float(parts[f"uni_{k}"]) == 0.0 for k in m.modalities)  # labels all equal at first
    m.ulgm.label_audio += 1.0
    _, parts = m.training_loss(out, b, epoch=1)
    assert float(parts["uni_audio"]) > 0.0
    fresh = build_model("selfmm", DIMS, n_train=6)
    with pytest.raises(RuntimeError, match="init_from_train"):
        fresh.training_loss(fresh.train()(b), b, 1)


def test_selfmm_param_groups_follow_mmsa():
    m, _ = build("selfmm", "full")
    groups = {g["name"]: g for g in m.param_groups()}
    assert groups["audio"]["lr"] == 5e-3 and groups["vision"]["lr"] == 5e-3 and groups["other"]["lr"] == 1e-3
    n = sum(len(g["params"]) for g in groups.values())
    assert n == len([p for p in m.parameters() if p.requires_grad])
    assert all(g["lr"] == 0.01 for g in m.param_groups(lr=0.01))


def test_cmd_and_diff_loss():
    torch.manual_seed(0)
    x = torch.randn(16, 8, requires_grad=True)
    assert float(cmd(x, x).detach()) == 0.0
    cmd(x, x).backward()
    assert torch.isfinite(x.grad).all()             # no NaN gradient at zero discrepancy
    assert float(cmd(x, x + 1.0).detach()) == pytest.approx(float((torch.ones(8)).norm()), rel=1e-5)
    a = torch.zeros(4, 2)
    a[:, 0] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    bb = torch.zeros(4, 2)
    bb[:, 1] = torch.tensor([1.0, 1.0, -1.0, -1.0])
    assert float(diff_loss(a, bb)) == pytest.approx(0.0, abs=1e-8)
    assert float(diff_loss(a, a)) > 0.1


def test_misa_loss_parts_and_single_pair():
    m, b = build("misa", modalities=("text", "audio"))
    m.train()
    out = m(b)
    total, parts = m.training_loss(out, b, 1)
    expect = parts["task"] + 0.1 * parts["diff"] + 0.3 * parts["sim"] + 1.0 * parts["recon"]
    assert torch.allclose(total.detach(), expect)
    assert isinstance(m, MISA) and m.fusion[0].in_features == 4 * 128


def test_bf16_autocast_path_runs_recurrences_and_infoenh_in_fp32():
    """The CUDA path uses bf16 autocast; the same construction is exercised on the CPU. Forward
    hooks record the dtypes: the LSTMs, everything inside InfoEnh, the pooling and the heads run in
    float32 (the prediction, the losses and the metrics are float32 on every device), while the
    encoders' output layers do run in bf16 (autocast is really on)."""
    m, b = build("selfmm", "full")
    assert isinstance(m, SelfMM)
    m.train()
    seen = {}

    def record(name):
        def hook(_module, _inputs, output):
            if name == "infoenh":                            # InfoEnhOutput: the sequences and the loss
                seen.update({f"infoenh_{k}": v.dtype for k, v in output.seqs.items()})
                seen["infoenh_aux"] = output.aux_loss.dtype
            else:                                            # a tensor, or (output, state) for an LSTM
                seen[name] = (output[0] if isinstance(output, tuple) else output).dtype
        return hook

    hooks = [m.encoders[x].rnn.register_forward_hook(record(f"lstm_{x}")) for x in ("audio", "vision")]
    for x in ("text", "audio", "vision"):
        hooks.append(m.infoenh.fib[x].proj.register_forward_hook(record(f"fib_proj_{x}")))
        hooks.append(m.infoenh.fib[x].gate.register_forward_hook(record(f"fib_gate_{x}")))
    hooks.append(m.infoenh.register_forward_hook(record("infoenh")))
    hooks.append(m.fusion_head.l1.register_forward_hook(record("head")))
    hooks.append(m.heads["audio"].l3.register_forward_hook(record("unimodal_head")))
    hooks += [m.encoders[x].linear.register_forward_hook(record(f"enc_{x}")) for x in ("audio", "vision")]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(b)
        loss, _ = m.training_loss(out, b, 1)
    for h in hooks:
        h.remove()
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert seen.pop("enc_audio") == seen.pop("enc_vision") == torch.bfloat16
    assert out.pred.dtype == out.extras["pred_audio"].dtype == torch.float32
    assert len(seen) == 2 + 6 + 4 + 2 and all(v == torch.float32 for v in seen.values()), seen


# ----- pooling after InfoEnh: attention sees the transport plan, a mean cannot -------------------

def test_attention_pool_weights_real_rows_only():
    from infoenh.models.pooling import AttentionPool

    torch.manual_seed(0)
    att = AttentionPool(3)
    h = torch.randn(3, 5, 3, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5])
    u = att(h, mask)
    s = att.score(h).squeeze(-1)
    for b in range(2):
        real = mask[b]
        expect = torch.softmax(s[b, real], 0) @ h[b, real]
        torch.testing.assert_close(u[b], expect)
    assert torch.equal(u[2], torch.zeros(3))                 # no real row: zeros, not NaN
    h2 = h.detach().clone()
    h2[~mask] = 1e4                                          # padding content never matters
    torch.testing.assert_close(att(h2, mask), u.detach())
    u.sum().backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(att.score.weight.grad).all()
    assert torch.equal(h.grad[~mask], torch.zeros_like(h.grad[~mask]))
    assert torch.allclose(att(h.detach()), torch.softmax(s.detach(), 1).unsqueeze(1).bmm(h.detach()).squeeze(1))
    with pytest.raises(ValueError, match="expects h"):
        att(torch.randn(2, 4, 5))


def _fia_pooled(feats, masks, reg, pool, detach_plan=False):
    from infoenh.fia import fia

    f = fia(feats, masks, reg=reg, max_iter=3000, tol=1e-10, detach_plan=detach_plan)
    assert bool(f.converged.all())                           # the identity needs exact marginals
    return {m: pool(f.enhanced[m], masks[m]) for m in feats}


def test_mean_pooling_makes_the_token_plan_inert_attention_does_not():
    """Token reading: mean_r (diag(a)^-1 P E_j)[r] = sum_c (sum_r P_rc) E_j[c] = mean(E_j) for any
    plan whose columns sum to b. So after a masked mean the plan changes nothing (outputs for
    reg 0.1 and 5.0 agree) and sends no gradient (grads with and without detach_plan agree);
    after attention pooling it does both."""
    from infoenh.models.pooling import AttentionPool

    torch.manual_seed(0)
    names = ("text", "audio", "vision")
    feats = {m: torch.randn(4, 5, 6, dtype=torch.float64, requires_grad=True) for m in names}
    masks = {m: torch.ones(4, 5, dtype=torch.bool) for m in names}
    masks["audio"][1, 3:] = False
    att = AttentionPool(18).double()
    for pool, inert in ((masked_mean, True), (att, False)):
        sharp, flat = _fia_pooled(feats, masks, 0.1, pool), _fia_pooled(feats, masks, 5.0, pool)
        gap = max(float((sharp[m] - flat[m]).detach().abs().max()) for m in names)
        assert (gap < 1e-8) if inert else (gap > 1e-2), (pool, gap)
        grads = []
        for detach in (False, True):
            out = _fia_pooled(feats, masks, 0.1, pool, detach_plan=detach)
            loss = sum(v.square().sum() for v in out.values())
            grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(feats.values()))]))
        through_plan = float((grads[0] - grads[1]).abs().max() / grads[1].abs().max())   # relative
        assert (through_plan < 1e-6) if inert else (through_plan > 1e-3), (pool, through_plan)


def test_hosts_pool_with_attention_after_infoenh_by_default():
    ie = {**IE, "ot_iters": 2000}
    preds = {}
    for how in ("attention", "mean"):
        for reg in (0.1, 5.0):
            torch.manual_seed(0)                            # same weights: reg is not a parameter
            m = build_model("lf", DIMS, infoenh="full", infoenh_kwargs={**ie, "reg": reg},
                            **({} if how == "attention" else {"pool": how})).eval()
            assert m.pool_how == how and hasattr(m, "row_pool") == (how == "attention")
            with torch.no_grad():
                preds[how, reg] = m(make_batch()).pred
    # the plan moves the attention-pooled prediction (by 6.7e-5 at these initial weights) well beyond
    # the mean-pooled one's tolerance below (atol 1e-5 + rtol 1e-4 of ~0.07)
    assert float((preds["attention", 0.1] - preds["attention", 5.0]).abs().max()) > 4e-5
    torch.testing.assert_close(preds["mean", 0.1], preds["mean", 5.0], rtol=1e-4, atol=1e-5)
    assert float((preds["mean", 0.1] - preds["mean", 5.0]).abs().max()) < 4e-6
    for name in ("selfmm", "misa"):
        m, _ = build(name, "full")
        assert m.pool_how == "attention" and set(m.row_pool) == set(m.modalities)
        assert build(name, "none")[0].pool_how == "attention" and not hasattr(build(name, "none")[0], "row_pool")
    with pytest.raises(ValueError, match="pool"):
        build_model("lf", DIMS, infoenh="full", pool="max")


def test_plan_gradient_reaches_fib_under_attention_pooling():
    """With detach_plan=False the gradient through the plan changes FIB's parameter gradients."""
    grads = {}
    for detach in (False, True):
        torch.manual_seed(0)
        m = build_model("lf", DIMS, infoenh="full", infoenh_kwargs={**IE, "detach_plan": detach})
        m.train()
        b = make_batch()
        m(b).pred.sum().backward()
        grads[detach] = m.infoenh.fib["text"].proj.weight.grad.clone()
    assert float((grads[False] - grads[True]).abs().max()) > 1e-6


# ----- exact reformulations for speed equal the straightforward formulations ----------------------

def test_attention_pool_hand_written_backward_equals_autograd():
    """AttentionPool's backward (_AttentionPoolFn: one buffer for dL/dh) equals autograd on the
    plain formulation (attention_pool_reference), values and gradients, float64; masked rows and a
    sample with no real row included; and it passes gradcheck."""
    from infoenh.models.pooling import AttentionPool, _AttentionPoolFn, attention_pool_reference

    torch.manual_seed(0)
    att = AttentionPool(6).double()
    h = torch.randn(4, 5, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5, [False, True, True, False, True]])
    g = torch.randn(4, 6, dtype=torch.float64)
    ours = att(h, mask)
    ref = attention_pool_reference(h, att.score.weight, mask)
    torch.testing.assert_close(ours, ref, rtol=1e-14, atol=1e-14)
    assert ours.grad_fn.name().startswith("_AttentionPoolFn")
    ga = torch.autograd.grad((ours * g).sum(), [h, att.score.weight])
    gb = torch.autograd.grad((ref * g).sum(), [h, att.score.weight])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    w = att.score.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, v: _AttentionPoolFn.apply(x, v, mask), (h, w))
    with torch.autocast("cpu", dtype=torch.bfloat16):       # autocast: the plain formulation
        assert att.float()(h.float(), mask).grad_fn.name() != "_AttentionPoolFnBackward"


def test_stacked_bilstm_skips_the_reordering_of_end_padded_rows():
    """Rows padded at the end need no left_align/restore: the outputs and every gradient are those
    of the general path (forced), bit for bit (the reordering is the identity there; the encoder
    computes in float32 whatever its input)."""
    import infoenh.models.encoders as enc_mod

    torch.manual_seed(0)
    enc = StackedBiLSTM(5)
    x = torch.randn(3, 9, 5, requires_grad=True)
    mask = torch.arange(9) < torch.tensor([[9], [4], [1]])
    assert enc_mod._lengths_on_cpu(mask)[1] and not enc_mod._lengths_on_cpu(torch.flip(mask, [1]))[1]
    runs = []
    for force_general in (False, True):
        real = enc_mod._lengths_on_cpu
        if force_general:
            enc_mod._lengths_on_cpu = lambda m: (real(m)[0], False)
        try:
            seq, utt = enc(x, mask)
        finally:
            enc_mod._lengths_on_cpu = real
        loss = (seq * torch.linspace(-1, 1, 20)).sum() + utt.square().sum()
        runs.append((seq, utt, torch.autograd.grad(loss, [x, *enc.parameters()])))
    (s1, u1, g1), (s2, u2, g2) = runs
    assert torch.equal(s1, s2) and torch.equal(u1, u2)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", HOSTS)
def test_hosts_skip_their_own_pooling_only_with_infoenh(name):
    """With InfoEnh the host's own pooled vectors are never read: encode(pooled=False) skips them
    and the forward is unchanged; without InfoEnh they are computed as before."""
    m, b = build(name, "full")
    m.eval()                                                # no dropout: two encodings agree
    masks = m.check_batch(b)
    seqs, pooled = m.encode(b, masks)
    seqs2, none = m.encode(b, masks, pooled=False)
    assert none is None and set(pooled) == set(m.modalities)
    for x in m.modalities:
        assert torch.equal(seqs[x], seqs2[x])
    calls = []
    real = m.encode
    m.encode = lambda *a, **kw: calls.append(kw.get("pooled", True)) or real(*a, **kw)
    with torch.no_grad():
        m(b)
    assert calls == [False]
    host, hb = build(name, "none")
    host.encode = lambda *a, real=host.encode, **kw: calls.append(kw.get("pooled", True)) or real(*a, **kw)
    host.eval()
    with torch.no_grad():
        host(hb)
    assert calls == [False, True]
