"""The default training protocol is MMSA's: ``fit`` against short transcriptions of MMSA's two
training loops (``trains/multiTask/SELF_MM.py`` and ``trains/singleTask/MISA.py``), run on the
same hosts, data, seed and random-number order, must give the same epochs, validation losses,
optimiser steps, clipping calls and selected weights, bit for bit on the CPU. Then each switch
of the protocol, set to its non-MMSA value, differs exactly as documented.

The toy case: 112 training clips in batches of 16 = 7 batches, so Self-MM's 4-batch and MISA's
2-batch accumulation windows leave a tail (3 and 1 batches) that MMSA never steps on; 24
validation clips = batches of 16 and 8, so the mean of batch means differs from the per-sample
mean.
"""
import math
from collections import Counter

import pytest
import torch
from torch import nn

from infoenh.data import collate, make_loaders
from infoenh.data.synthetic import make_synthetic_splits
from infoenh.models import build_model
from infoenh.models.misa import text_length_masks
from infoenh.train import trainer
from infoenh.train.config import TrainConfig, host_kwargs
from infoenh.train.seeding import deterministic, seed_everything
from infoenh.train.trainer import _train_labels, evaluate, fit, optimizer_groups, text_mode

pytestmark = pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning")

TOY = dict(seed=0, sizes=(112, 24, 24), text_dim=16, text_len=10, audio_len=14, vision_len=14,
           audio_neg_inf_frac=0.0)
IE = {"d": 8, "k": 4, "ot_iters": 10}


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """One thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def toy():
    return make_synthetic_splits(**TOY)


# ------------------------------------------------------------------ MMSA's loops, transcribed

def mmsa_do_test(model, loader, criterion):
    """MMSA's ``do_test``: the batch-mean criterion summed with ``.item()``, divided by the number
    of batches, rounded to 4 decimals."""
    model.eval()
    eval_loss = 0.0
    with torch.no_grad():
        for batch_data in loader:
            outputs = model(batch_data).pred
            loss = criterion(outputs, batch_data["label"])
            eval_loss += loss.item()
    eval_loss = eval_loss / len(loader)
    return round(eval_loss, 4)


def selfmm_criterion(y_pred, y_true):
    """SELF_MM.weighted_loss(mode='fusion'): weights of one, L1."""
    y_pred, y_true = y_pred.view(-1), y_true.view(-1)
    return torch.mean(torch.ones_like(y_pred) * torch.abs(y_pred - y_true))


def misa_criterion(outputs, labels):
    """MISA's nn.MSELoss() on [B, 1] outputs and labels."""
    return nn.MSELoss()(outputs.view(-1, 1), labels.view(-1, 1))


def mmsa_selfmm_loop(model, optimizer, dataloader, update_epochs, early_stop):
    """SELF_MM.do_train from ``while True`` on (the host's loss stands for weighted_loss over the
    tasks; ``after_backward`` is update_labels (epochs > 1), update_features, update_centers)."""
    epochs, best_epoch, best_valid, valid, best_state = 0, 0, 1e8, [], None
    while True:
        epochs += 1
        model.train()
        left_epochs = update_epochs
        for batch_data in dataloader["train"]:
            if left_epochs == update_epochs:
                optimizer.zero_grad()
            left_epochs -= 1
            outputs = model(batch_data)
            loss, _ = model.training_loss(outputs, batch_data, epochs)
            loss.backward()
            model.after_backward(outputs, batch_data, epochs)
            if not left_epochs:
                optimizer.step()
                left_epochs = update_epochs
        if not left_epochs:
            optimizer.step()                    # never runs: left_epochs was reset when it hit 0
        cur_valid = mmsa_do_test(model, dataloader["valid"], selfmm_criterion)
        valid.append(cur_valid)
        isBetter = cur_valid <= (best_valid - 1e-6)
        if isBetter:
            best_valid, best_epoch = cur_valid, epochs
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if epochs - best_epoch >= early_stop:
            return {"epochs": epochs, "best_epoch": best_epoch, "valid": valid, "state": best_state}


def mmsa_misa_loop(model, optimizer, dataloader, update_epochs, early_stop, grad_clip):
    """MISA.do_train from ``while True`` on (the host's loss is MISA's cls + diff + sim + recon)."""
    epochs, best_epoch, best_valid, valid, best_state = 0, 0, 1e8, [], None
    while True:
        epochs += 1
        model.train()
        left_epochs = update_epochs
        for batch_data in dataloader["train"]:
            if left_epochs == update_epochs:
                optimizer.zero_grad()
            left_epochs -= 1
            outputs = model(batch_data)
            loss, _ = model.training_loss(outputs, batch_data, epochs)
            loss.backward()
            if grad_clip != -1.0:
                torch.nn.utils.clip_grad_value_([p for p in model.parameters() if p.requires_grad], grad_clip)
            if not left_epochs:
                optimizer.step()
                left_epochs = update_epochs
        if not left_epochs:
            optimizer.step()                    # never runs
        cur_valid = mmsa_do_test(model, dataloader["valid"], misa_criterion)
        valid.append(cur_valid)
        isBetter = cur_valid <= (best_valid - 1e-6)
        if isBetter:
            best_valid, best_epoch = cur_valid, epochs
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if epochs - best_epoch >= early_stop:
            return {"epochs": epochs, "best_epoch": best_epoch, "valid": valid, "state": best_state}


def built_as_fit_builds(ds, cfg):
    """Model, optimiser and loaders in fit's order of random-number use (call inside
    ``deterministic``)."""
    seed_everything(cfg.seed)
    model = build_model(cfg.model, ds.dims, infoenh=cfg.infoenh, modalities=cfg.modalities, n_train=len(ds["train"]),
                        infoenh_kwargs=cfg.infoenh_kwargs, text=text_mode(cfg, ds), bert=cfg.bert,
                        init_seed=cfg.seed, **host_kwargs(cfg))     # fit: the run's seed (run_init_seed)
    model.init_from_train(*_train_labels(ds["train"]))
    optimizer = torch.optim.Adam(optimizer_groups(model, cfg))
    # MMSA's MMDataLoader shuffles every split (shuffle=True for train, valid and test)
    loaders = make_loaders(ds, batch_size=cfg.batch_size, seed=cfg.seed, num_workers=cfg.num_workers,
                           eval_order="shuffled")
    return model, optimizer, loaders


class Calls:
    """Counts Adam steps and clipping calls (the real functions still run)."""

    def __init__(self, monkeypatch):
        self.n = Counter()
        for owner, name in ((torch.optim.Adam, "step"), (torch.nn.utils, "clip_grad_value_"),
                            (torch.nn.utils, "clip_grad_norm_")):
            monkeypatch.setattr(owner, name, self._counted(name, getattr(owner, name)))

    def _counted(self, name, real):
        def f(*a, **k):
            self.n[name] += 1
            return real(*a, **k)
        return f

    def take(self):
        out, self.n = dict(self.n), Counter()
        return out


def run_both(ds, cfg, monkeypatch):
    calls = Calls(monkeypatch)
    r, model = fit(ds, cfg, None, return_model=True)
    ours = calls.take()
    c = cfg.resolved()
    with deterministic(c.deterministic, torch.device("cpu")):
        m, opt, loaders = built_as_fit_builds(ds, c)
        if c.model == "selfmm":
            ref = mmsa_selfmm_loop(m, opt, loaders, c.accum_steps, c.patience)
        else:
            ref = mmsa_misa_loop(m, opt, loaders, c.accum_steps, c.patience, c.grad_clip)
    theirs = calls.take()
    return r, model, ours, ref, theirs


CASES = [
    pytest.param("selfmm", "none", dict(lr=5e-3), id="selfmm-none"),
    pytest.param("selfmm", "full", dict(lr=5e-3, infoenh_kwargs=IE), id="selfmm-full"),
    pytest.param("misa", "none", {}, id="misa-none"),
    pytest.param("misa", "full", dict(infoenh_kwargs=IE), id="misa-full"),
]


@pytest.mark.parametrize("model,variant,kw", CASES)
def test_fit_by_default_is_mmsas_loop(toy, monkeypatch, model, variant, kw):
    cfg = TrainConfig(model=model, infoenh=variant, patience=2, device="cpu", quiet=True, **kw)
    c = cfg.resolved()
    assert (c.accum_tail, c.valid_loss, c.epochs) == ("drop", "mmsa", None)
    assert (c.accum_steps, c.grad_clip, c.clip_at) == ((4, None, "step") if model == "selfmm" else
                                                       (2, 0.8, "backward"))
    r, selected, ours, ref, theirs = run_both(toy, cfg, monkeypatch)
    n_batches = 7
    assert r["epochs_run"] == ref["epochs"] >= 3 and r["best_epoch"] == ref["best_epoch"]
    assert [h["valid_loss"] for h in r["history"]] == ref["valid"]
    assert r["valid_loss"] == ref["valid"][ref["best_epoch"] - 1] and r["stopped_early"]
    # MMSA steps on full windows only: floor(7 / accum) steps per epoch
    steps = ref["epochs"] * (n_batches // c.accum_steps)
    assert r["optimizer_steps"] == ours["step"] == theirs["step"] == steps
    assert [h["optimizer_steps"] for h in r["history"]] == [n_batches // c.accum_steps] * ref["epochs"]
    clips = ref["epochs"] * n_batches if model == "misa" else 0            # after every backward
    assert ours.get("clip_grad_value_", 0) == theirs.get("clip_grad_value_", 0) == clips
    assert "clip_grad_norm_" not in ours
    state = selected.state_dict()
    assert state.keys() == ref["state"].keys()
    for k, v in ref["state"].items():
        assert torch.equal(state[k], v), k
    assert r["protocol"] == {"accum_tail": "drop", "clip_at": c.clip_at, "valid_loss": "mmsa",
                             "eval_order": "shuffled", "epochs_cap": None,
                             "patience": 2, "accum_steps": c.accum_steps, "grad_clip": c.grad_clip,
                             "grad_clip_mode": c.grad_clip_mode}


# ------------------------------------------------------------------ each switch, the other way

def short(model, variant="none", **kw):
    kw.setdefault("patience", 50)
    return TrainConfig(model=model, infoenh=variant, device="cpu", quiet=True, infoenh_kwargs=IE, **kw)


def test_accum_tail_step_steps_on_the_tail_drop_does_not(toy, monkeypatch):
    per_epoch = {}
    for tail in ("drop", "step"):
        calls = Calls(monkeypatch)
        r = fit(toy, short("selfmm", epochs=2, accum_tail=tail), None)
        per_epoch[tail] = [h["optimizer_steps"] for h in r["history"]]
        assert calls.take()["step"] == r["optimizer_steps"] == sum(per_epoch[tail])
    assert per_epoch == {"drop": [7 // 4] * 2, "step": [math.ceil(7 / 4)] * 2}


def test_accum_tail_drop_discards_the_tail_gradient(toy, monkeypatch):
    """With "drop" the 3 tail batches run forward, backward and the host hook (Self-MM's label
    update), their gradient is never stepped, and the next epoch starts from a zero gradient: at
    each training forward, whether a gradient is held is [no, yes, yes, yes | no, yes, yes] in
    both epochs, with one step per epoch."""
    from infoenh.models.selfmm import SelfMM

    held, hooks = [], []
    real_forward, real_hook = SelfMM.forward, SelfMM.after_backward

    def forward(self, batch):
        if self.training:
            held.append(any(p.grad is not None for p in self.parameters()))
        return real_forward(self, batch)

    monkeypatch.setattr(SelfMM, "forward", forward)
    monkeypatch.setattr(SelfMM, "after_backward", lambda self, *a: (hooks.append(1), real_hook(self, *a))[1])
    calls = Calls(monkeypatch)
    r = fit(toy, short("selfmm", epochs=2, accum_tail="drop"), None)
    assert held == [False, True, True, True, False, True, True] * 2
    assert len(hooks) == 14 and calls.take()["step"] == r["optimizer_steps"] == 2


def test_clip_at_step_clips_once_per_step(toy, monkeypatch):
    calls = Calls(monkeypatch)
    counts = {}
    for at in ("backward", "step"):
        r = fit(toy, short("misa", epochs=1, clip_at=at), None)
        counts[at] = (calls.take().get("clip_grad_value_", 0), r["optimizer_steps"])
    assert counts == {"backward": (7, 3), "step": (3, 3)}


def test_norm_clipping_at_the_step_computes_the_norm_once(toy, monkeypatch):
    """clip_grad_norm_ returns the total norm: the divergence check uses it, no second norm."""
    norms = []
    real = trainer._grad_norm
    monkeypatch.setattr(trainer, "_grad_norm", lambda m: (norms.append(1), real(m))[1])
    calls = Calls(monkeypatch)
    r = fit(toy, short("lf", epochs=1, batch_size=16, grad_clip=1.0, grad_clip_mode="norm", clip_at="step"), None)
    assert calls.take()["clip_grad_norm_"] == r["optimizer_steps"] == 7 and norms == []
    r = fit(toy, short("lf", epochs=1, batch_size=16, grad_clip=0), None)        # no clipping: one norm per step
    assert len(norms) == r["optimizer_steps"] == 7 and "clip_grad_norm_" not in calls.take()


@pytest.mark.parametrize("at", ["backward", "step"])
def test_a_non_finite_gradient_is_caught_in_both_clipping_modes(toy, monkeypatch, at):
    """Value clipping would turn an inf gradient into +-clip: the norm is read before clipping."""
    from infoenh.models.misa import MISA
    from infoenh.train.trainer import TrainingDiverged

    real = MISA.training_loss

    def inf_grad(self, out, batch, epoch):
        loss, parts = real(self, out, batch, epoch)
        return loss + torch.sqrt(out.pred.abs().sum() * 0.0), parts        # d sqrt(x)/dx at 0 is inf

    monkeypatch.setattr(MISA, "training_loss", inf_grad)
    calls = Calls(monkeypatch)
    from infoenh.train.trainer import NotFiniteAtStart

    # no optimiser step yet: reported as NotFiniteAtStart, not as divergence (issue 23)
    with pytest.raises(NotFiniteAtStart, match=r"epoch 1 step 1 \(batch 2\).*gradient norm"):
        fit(toy, short("misa", epochs=1, clip_at=at), None)
    assert "step" not in calls.take()


def test_valid_loss_measures(toy):
    """mmsa = round(mean of batch means, 4); batch_mean unrounded; sample_mean the per-sample
    mean, which differs when the last batch is short (24 = 16 + 8)."""
    torch.manual_seed(0)
    model = build_model("misa", toy.dims, infoenh="none")
    loader = make_loaders(toy, batch_size=16)["valid"]
    res = {how: evaluate(model, loader, torch.device("cpu"), False, how) for how in ("mmsa", "batch_mean",
                                                                                     "sample_mean")}
    model.eval()
    with torch.no_grad():
        per = [(model(b).pred - b["label"]).pow(2) for b in loader]
    assert [len(p) for p in per] == [16, 8]
    batch_mean = (per[0].mean().item() + per[1].mean().item()) / 2
    sample_mean = float(torch.cat(per).double().mean())
    assert res["batch_mean"]["loss"] == batch_mean == res["mmsa"]["loss_batch_mean"]
    assert res["mmsa"]["loss"] == round(batch_mean, 4)
    assert res["sample_mean"]["loss"] == pytest.approx(sample_mean, rel=1e-6)
    assert abs(batch_mean - sample_mean) > 1e-4


def test_valid_loss_switch_reaches_selection(toy):
    r = {how: fit(toy, short("lf", epochs=2, valid_loss=how), None) for how in ("mmsa", "batch_mean", "sample_mean")}
    for how, key in (("batch_mean", "valid_loss_batch_mean"), ("sample_mean", "valid_loss_sample_mean")):
        assert [h["valid_loss"] for h in r[how]["history"]] == [h[key] for h in r[how]["history"]]
    assert [h["valid_loss"] for h in r["mmsa"]["history"]] == [round(h["valid_loss_batch_mean"], 4)
                                                               for h in r["mmsa"]["history"]]
    assert r["sample_mean"]["valid_loss"] != r["batch_mean"]["valid_loss"]
    assert r["mmsa"]["protocol"]["valid_loss"] == "mmsa"


def test_no_epoch_cap_runs_until_patience_and_epochs_caps(toy, monkeypatch):
    """selfmm/misa: no cap (past lf's 40); --epochs N caps. The epoch itself is stubbed: the loop
    is what is tested."""
    monkeypatch.setattr(trainer, "train_one_epoch", lambda *a, **k: {"loss": 0.0, "optimizer_steps": 1})
    real = trainer.evaluate
    seen = Counter()

    def improving_until_45(model, loader, device, amp=True, how="mmsa"):
        res = real(model, loader, device, amp, how)
        seen[loader.dataset.split] += 1
        return {**res, "loss": 100.0 - min(seen["valid"], 45)} if loader.dataset.split == "valid" else res

    monkeypatch.setattr(trainer, "evaluate", improving_until_45)
    lines = []
    r = fit(toy, TrainConfig(model="misa", infoenh="none", patience=3), None, log=lines.append)
    assert (r["epochs_run"], r["best_epoch"], r["stopped_early"]) == (48, 45, True)
    assert r["protocol"]["epochs_cap"] is None and "epoch   1  " in lines[0] and "/" not in lines[0].split("train")[0]
    seen.clear()
    r = fit(toy, TrainConfig(model="misa", infoenh="none", patience=3, epochs=5, quiet=True), None)
    assert (r["epochs_run"], r["stopped_early"], r["protocol"]["epochs_cap"]) == (5, False, 5)
    assert TrainConfig(model="lf").resolved().epochs == 40


def test_epochs_and_switches_are_checked():
    for kw, needle in ((dict(epochs=0), "--epochs"), (dict(accum_tail="keep"), "--accum-tail"),
                       (dict(clip_at="loss"), "--clip-at"), (dict(valid_loss="median"), "--valid-loss")):
        with pytest.raises(ValueError, match=needle):
            TrainConfig(model="misa", **kw).resolved()
    with pytest.raises(ValueError, match="--misa-lengths applies to --model misa only"):
        TrainConfig(model="lf", model_kwargs={"lengths": "text"}).resolved()


def test_drop_with_fewer_batches_than_a_window_is_refused(toy):
    """MMSA would train 2 batches with a 4-batch window without ever stepping: refused."""
    with pytest.raises(ValueError, match="2 batches per epoch, fewer than --accum-steps 4.*--accum-tail step"):
        fit(toy, short("selfmm", batch_size=64), None)
    assert fit(toy, short("selfmm", batch_size=64, epochs=1, accum_tail="step"), None)["optimizer_steps"] == 1


# ------------------------------------------------------------------ MISA: the text lengths

def _misa_batch(toy):
    """16 toy clips whose audio is real at all 14 steps, longer than every text (<= 10 steps), as
    in MOSI (50 text tokens, 375 audio frames)."""
    b = collate([toy["train"][i] for i in range(16)])
    g = torch.Generator().manual_seed(0)
    b["audio"] = torch.randn(b["audio"].shape, generator=g)
    b["audio_mask"] = torch.ones_like(b["audio_mask"])
    assert bool((b["text_mask"].sum(1) < b["audio"].shape[1]).all())
    return b


def test_misa_text_lengths_masks(toy):
    b = _misa_batch(toy)
    torch.manual_seed(0)
    text = build_model("misa", toy.dims)
    own = build_model("misa", toy.dims, lengths="own")
    assert text.lengths == "text"
    mt, mo = text.check_batch(b), own.check_batch(b)
    n_t = b["text_mask"].sum(1)
    for m in ("audio", "vision"):
        L = b[m].shape[1]
        assert torch.equal(mt[m], torch.arange(L)[None, :] < torch.clamp(n_t, max=L)[:, None])
        assert torch.equal(mo[m], b[f"{m}_mask"])
    assert torch.equal(mt["text"], b["text_mask"])
    # the audio's own mask plays no part: padding inside the text's length is read (MMSA packs
    # with the text length), real steps past it are not
    b2 = {**b, "audio_mask": torch.arange(b["audio"].shape[1])[None, :].expand(16, -1) < 2}
    assert torch.equal(text.check_batch(b2)["audio"], mt["audio"])
    # without the text modality the lengths still come from the batch's text mask: the missing-text
    # arm reads the frames the full arm reads (a batch with no text at all keeps the own masks)
    no_text = build_model("misa", toy.dims, modalities=("audio", "vision"))
    assert torch.equal(no_text.check_batch(b)["audio"], mt["audio"])
    assert torch.equal(no_text.check_batch(b)["vision"], mt["vision"])
    bare = {k: v for k, v in b.items() if k not in ("text", "text_mask")}
    assert torch.equal(no_text.check_batch(bare)["audio"], b["audio_mask"])
    # no text mask: every text step counts
    full = text_length_masks(None, 5, {"audio": 7}, None)["audio"]
    assert full.tolist() == [[True] * 5 + [False] * 2]


@pytest.mark.parametrize("variant", ["none", "full"])
def test_misa_forward_reads_audio_up_to_the_text_length(toy, variant):
    b = _misa_batch(toy)
    preds = {}
    for how in ("text", "own"):
        torch.manual_seed(0)
        m = build_model("misa", toy.dims, infoenh=variant, infoenh_kwargs=IE, lengths=how).eval()
        with torch.no_grad():
            preds[how] = m(b).pred
    assert not torch.allclose(preds["text"], preds["own"])
    # "text": what lies past the text's length is never read
    b2 = dict(b)
    n_t = b["text_mask"].sum(1)
    past = torch.arange(b["audio"].shape[1])[None, :] >= n_t[:, None]
    b2["audio"] = b["audio"].masked_fill(past[..., None], 7.0)
    torch.manual_seed(0)
    m = build_model("misa", toy.dims, infoenh=variant, infoenh_kwargs=IE).eval()
    with torch.no_grad():
        assert torch.allclose(m(b2).pred, preds["text"], atol=1e-6)
    with pytest.raises(ValueError, match="--misa-lengths"):
        build_model("misa", toy.dims, lengths="audio")
