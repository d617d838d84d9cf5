"""The trainer: learning on the SYNTHETIC testbed, determinism, resume after a kill, model
selection on validation only, early stopping, checkpoints, bad input."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from infoenh.data.synthetic import make_synthetic_splits
from infoenh.train import trainer
from infoenh.train.checkpoint import load_checkpoint
from infoenh.train.config import TrainConfig
from infoenh.train.runner import load_data
from infoenh.train.trainer import TrainingInterrupted, fit

TINY = dict(seed=0, sizes=(48, 16, 16), text_dim=16, text_len=12, audio_len=16, vision_len=16,
            audio_neg_inf_frac=0.0)
IE = {"d": 16, "k": 4, "ot_iters": 20}


# the testbed plants -inf in audio on purpose (MMSA's COVAREP does); the loader's warning is expected
pytestmark = pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning")

@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic_splits(**TINY)


def cfg(model="lf", infoenh="full", **kw):
    kw.setdefault("quiet", True)
    kw.setdefault("infoenh_kwargs", IE)
    return TrainConfig(model=model, infoenh=infoenh, **kw)


def comparable(r):
    """A result without its wall-clock (durations, start and end times) and memory fields."""
    return {k: v for k, v in r.items() if k not in ("train_seconds", "wall_seconds", "peak_memory_bytes", "started_at",
                                                   "finished_at")}


@pytest.mark.parametrize("variant", ["none", "full"])
@pytest.mark.parametrize("model", ["lf", "selfmm", "misa"])
def test_each_host_learns_far_better_than_the_mean(model, variant):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds, info = load_data("synthetic", scale="ci")
    assert info["synthetic"] and "SYNTHETIC" in info["dataset"]
    mean_mae = float(np.abs(ds["test"].labels - ds["train"].labels.mean()).mean())
    # MMSA's loop steps Self-MM on full 4-batch windows only: 2 steps per epoch on ci's 10 batches
    # (3 with the end-of-epoch step); 21 epochs give it the 42 steps that 14 gave before
    # lf and misa: 20 and 22 epochs (14 before the seeded initialisation of infoenh.models.init drew
    # other starting weights: MISA + InfoEnh was then still improving at epoch 14, MAE 0.86 x the mean's;
    # lf + InfoEnh selected epoch 9 of 14 on the shuffled validation batches, 0.752 x)
    epochs = {"selfmm": 21, "lf": 20, "misa": 22}[model]
    r = fit(ds, cfg(model, variant, epochs=epochs, infoenh_kwargs={"d": 32, "k": 8}), None)
    assert r["test"]["MAE"] < 0.75 * mean_mae, (r["test"], mean_mae)
    assert r["test"]["Corr"] > 0.6


# TINY's 48 clips are 3 batches of 16: Self-MM runs with 2-batch windows (MMSA's 4 would never step)
SELFMM_TINY = {"accum_steps": 2}


def test_same_seed_same_metrics_other_seed_other_metrics(tiny):
    a = fit(tiny, cfg("selfmm", epochs=2, **SELFMM_TINY), None)
    b = fit(tiny, cfg("selfmm", epochs=2, **SELFMM_TINY), None)
    c = fit(tiny, cfg("selfmm", epochs=2, seed=1112, **SELFMM_TINY), None)
    assert comparable(a) == comparable(b)
    assert a["test"] != c["test"]


@pytest.mark.parametrize("model", ["lf", "selfmm", "misa"])
def test_interrupted_run_resumes_to_the_same_result(tiny, tmp_path, model):
    c = cfg(model, epochs=4, patience=20, **(SELFMM_TINY if model == "selfmm" else {}))
    straight = fit(tiny, c, tmp_path / "straight")
    with pytest.raises(TrainingInterrupted):
        fit(tiny, c, tmp_path / "killed", stop_after_epochs=2)
    ck = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert ck["epoch"] == 2 and not ck["finished"]
    assert not (tmp_path / "killed" / "run.json").exists()
    resumed = fit(tiny, c, tmp_path / "killed")
    assert comparable(resumed) == comparable(straight)
    j1 = json.loads((tmp_path / "straight" / "run.json").read_text())
    j2 = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert (j1["valid"], j1["test"], j1["best_epoch"]) == (j2["valid"], j2["test"], j2["best_epoch"])


def test_sigkilled_cli_run_resumes_to_the_same_results_json(tmp_path):
    """A real kill (SIGKILL, no clean-up) of `python -m infoenh train`, then the same command again."""
    from infoenh.cli import main

    args = ["train", "--data", "synthetic", "--synthetic-scale", "ci", "--model", "selfmm", "--seeds", "1111",
            "--epochs", "6", "--patience", "50", "--k", "4", "--d", "16", "--threads", "1", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "straight")]) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "infoenh", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "seed_1111" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the run never wrote a checkpoint"
    assert not (out / "seed_1111" / "run.json").exists(), "the run finished before it could be killed"
    killed_at = load_checkpoint(ckpt)["epoch"]
    assert killed_at < 6
    done = subprocess.run([sys.executable, "-m", "infoenh", *args, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    a = json.loads((tmp_path / "straight" / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    strip = lambda d: [{k: r[k] for k in ("seed", "best_epoch", "valid", "test", "valid_loss", "test_loss")}  # noqa
                       for r in d["runs"]]
    ra, rb = strip(a)[0], strip(b)[0]
    assert ra == rb, {k: (ra[k], rb[k]) for k in ra if ra[k] != rb[k]} | {"killed_after_epoch": killed_at}
    assert a["summary"] == b["summary"]


def test_model_selection_reads_validation_only(tiny, monkeypatch):
    """Fabricated validation losses pick epoch 2; the test split is evaluated once, after training,
    with epoch 2's weights, even though later epochs exist (and would win on test)."""
    real = trainer.evaluate
    valid_loss = {1: 0.9, 2: 0.5, 3: 0.7, 4: 0.6}
    calls, snaps, test_params = [], {}, []

    def fake(model, loader, device, amp=True, how="mmsa"):
        res = real(model, loader, device, amp, how)
        calls.append(loader.dataset.split)
        if loader.dataset.split == "valid":
            e = calls.count("valid")
            res["loss"] = valid_loss[e]
            res["metrics"] = {**res["metrics"], "MAE": 10.0 + e}
        else:
            test_params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
            res["metrics"] = {**res["metrics"], "MAE": 0.0}   # "test would love the last epoch"
        return res

    monkeypatch.setattr(trainer, "evaluate", fake)
    snap = lambda e, m, rec: snaps.__setitem__(e, torch.cat([p.detach().flatten() for p in m.parameters()]))  # noqa
    r = fit(tiny, cfg("lf", epochs=4, patience=10), None, on_epoch_end=snap)
    assert calls == ["valid"] * 4 + ["test"]
    assert r["best_epoch"] == 2 and r["valid"]["MAE"] == 12.0 and r["valid_loss"] == 0.5
    assert torch.equal(test_params[0], snaps[2]) and not torch.equal(snaps[2], snaps[4])


def test_early_stopping_after_patience(tiny, monkeypatch):
    real = trainer.evaluate
    losses = iter([1.0, 0.5, 0.6, 0.7, 0.4, 0.3])
    monkeypatch.setattr(trainer, "evaluate", lambda m, l, d, a=True, v="mmsa": {
        **real(m, l, d, a, v), **({"loss": next(losses)} if l.dataset.split == "valid" else {})})
    r = fit(tiny, cfg("lf", "none", epochs=6, patience=2), None)
    assert r["best_epoch"] == 2 and r["epochs_run"] == 4 and r["stopped_early"]


def test_checkpoint_is_weights_only_and_complete(tiny, tmp_path):
    fit(tiny, cfg("selfmm", epochs=1, **SELFMM_TINY), tmp_path)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key in ("model", "optimizer", "rng", "loader_generator", "epoch", "best", "bad_epochs", "history",
                "finished", "scheduler"):
        assert key in ck
    assert set(ck["rng"]) >= {"torch", "numpy", "python"}
    assert "ulgm.label_text" in ck["model"] and ck["best"]["state"] is not None
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_refuses_another_configuration_or_data(tiny, tmp_path):
    with pytest.raises(TrainingInterrupted):
        fit(tiny, cfg("lf", epochs=3), tmp_path, stop_after_epochs=1)
    with pytest.raises(RuntimeError, match=r"other inputs \(config.lr: null -> 0.5\)"):
        fit(tiny, cfg("lf", epochs=3, lr=0.5), tmp_path)
    other = make_synthetic_splits(**{**TINY, "text_dim": 20})
    with pytest.raises(RuntimeError, match=r"data.dims.text: 16 -> 20"):
        fit(other, cfg("lf", epochs=3), tmp_path)


def test_empty_split_is_refused(tiny):
    from torch.utils.data import Subset

    ds = {"train": tiny["train"], "valid": Subset(tiny["valid"], []), "test": tiny["test"]}
    with pytest.raises(ValueError, match="'valid' split is empty"):
        fit(ds, cfg("lf"), None)


def test_non_finite_loss_stops_with_a_clear_error(tiny, monkeypatch):
    from infoenh.models.late_fusion import LateFusion

    def nan_loss(self, out, batch, epoch):
        return out.pred.sum() * float("nan"), {}

    monkeypatch.setattr(LateFusion, "training_loss", nan_loss)
    # NaN before any optimiser step: named as such, not as divergence (issue 23)
    with pytest.raises(FloatingPointError, match="epoch 1 step 1 .* before any optimiser step: not a divergence"):
        fit(tiny, cfg("lf", "none", epochs=1), None)


def test_config_defaults_and_checks():
    c = TrainConfig(model="selfmm").resolved()
    assert (c.batch_size, c.accum_steps, c.grad_clip, c.patience) == (16, 4, None, 8)
    assert (c.epochs, c.accum_tail, c.valid_loss) == (None, "drop", "mmsa")        # MMSA's loop
    c = TrainConfig(model="misa").resolved()
    assert (c.batch_size, c.accum_steps, c.grad_clip, c.grad_clip_mode) == (16, 2, 0.8, "value")
    assert (c.epochs, c.accum_tail, c.clip_at, c.valid_loss) == (None, "drop", "backward", "mmsa")
    c = TrainConfig(model="lf").resolved()
    assert (c.epochs, c.accum_tail, c.clip_at, c.valid_loss) == (40, "step", "step", "mmsa")
    assert c.resolved() == c and TrainConfig(model="misa").resolved().resolved().epochs is None
    with pytest.raises(ValueError, match=r"^--batch-size must be an integer >= 1, got 0$"):
        TrainConfig(batch_size=0).resolved()
    with pytest.raises(KeyError, match="unknown modality"):
        TrainConfig(modalities=("text", "video")).resolved()
    with pytest.raises(RuntimeError, match="no CUDA"):
        trainer.resolve_device("cuda") if not torch.cuda.is_available() else (_ for _ in ()).throw(
            RuntimeError("no CUDA (skip)"))


def test_epoch_diagnostics_are_means_of_the_step_tensors(tiny, monkeypatch):
    """InfoEnh's diagnostics stay tensors during the epoch (no host sync per value) and the
    epoch record holds their means as floats."""
    from infoenh.module import InfoEnh

    seen = []
    real_forward = InfoEnh.forward

    def spy(self, *a, **k):
        out = real_forward(self, *a, **k)
        assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in out.diagnostics.values())
        seen.append({k: float(v) for k, v in out.diagnostics.items()})
        return out

    monkeypatch.setattr(InfoEnh, "forward", spy)
    records = []
    fit(tiny, cfg("lf", epochs=1), None, on_epoch_end=lambda e, m, rec: records.append(rec))
    train = records[0]["train"]
    steps = [d for d in seen if "infonce_text" in d]       # training batches (evaluation has no labels)
    for key in ("kept_frac_text", "ot_iters_mean", "infonce_audio", "no_negative"):
        assert isinstance(train[f"diag_{key}"], float)
        assert train[f"diag_{key}"] == pytest.approx(np.mean([d[key] for d in steps]), rel=1e-6)


def test_fit_can_return_the_selected_model():
    """``return_model=True`` hands back the model with the selected epoch's weights: evaluating it
    on the test split reproduces the reported test metrics."""
    from infoenh.data import make_loaders
    from infoenh.data.synthetic import make_synthetic_splits
    from infoenh.train.config import TrainConfig
    from infoenh.train.trainer import evaluate, fit

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_synthetic_splits(sizes=(48, 16, 24), text_dim=16, text_len=8, audio_len=10, vision_len=12,
                                   seed=3, audio_neg_inf_frac=0.0)
    cfg = TrainConfig(model="lf", epochs=2, seed=1111, quiet=True, device="cpu")
    result, model = fit(ds, cfg, return_model=True)
    loaders = make_loaders(ds, batch_size=cfg.resolved().batch_size, seed=cfg.seed)
    te = evaluate(model, loaders["test"], torch.device("cpu"), False)
    assert te["metrics"]["MAE"] == pytest.approx(result["test"]["MAE"], abs=1e-6)
