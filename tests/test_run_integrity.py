"""Run folders that cannot lie: fingerprints of data/code/options, one writer at a time, atomic
checkpoint + log, divergence told apart from bad input, and one-line CLI errors (issue 13)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from infoenh.cli import main
from infoenh.data.synthetic import make_synthetic, make_synthetic_splits
from infoenh.train import fingerprint as fpmod
from infoenh.train import trainer
from infoenh.train.checkpoint import load_checkpoint
from infoenh.train.config import TrainConfig
from infoenh.train.fingerprint import FingerprintMismatch
from infoenh.train.lock import RunFolderLocked, folder_lock
from infoenh.train.runner import train_seeds
from infoenh.train.trainer import TrainingDiverged, TrainingInterrupted, fit

pytestmark = [pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning"),
              # ot_iters=10 keeps these tests fast; Sinkhorn then often stops at the cap
              pytest.mark.filterwarnings("ignore::infoenh.train.runner.ConvergenceWarning")]

TINY = dict(sizes=(40, 16, 16), text_dim=16, text_len=10, audio_len=12, vision_len=12, audio_neg_inf_frac=0.0)
CI = ["--synthetic-scale", "ci", "--model", "lf", "--epochs", "1", "--seeds", "1111", "--k", "4", "--d", "8",
      "--threads", "1", "--quiet"]


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (see conftest.one_thread)."""


def cfg(**kw):
    kw.setdefault("quiet", True)
    kw.setdefault("infoenh_kwargs", {"d": 8, "k": 4, "ot_iters": 10})
    return TrainConfig(model="lf", **kw)


def test_same_shape_other_synthetic_seed_is_refused_not_reused(tmp_path, capsys):
    """The issue's example: seed-7 data into a folder trained on seed-0 data of the same shape."""
    out = str(tmp_path / "R")
    assert main(["train", "--data", "synthetic", "--synthetic-seed", "0", "--out", out, *CI]) == 0
    first = json.loads((tmp_path / "R" / "results.json").read_text())["runs"][0]["test"]["MAE"]
    capsys.readouterr()
    assert main(["train", "--data", "synthetic", "--synthetic-seed", "7", "--out", out, *CI]) == 1
    err = capsys.readouterr().err
    assert "data.content_sha256" in err and "data.generator.seed: 0 -> 7" in err and "--fresh" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    # the old result was not rewritten under the new data's name
    assert json.loads((tmp_path / "R" / "results.json").read_text())["runs"][0]["test"]["MAE"] == first
    # --fresh gives what a fresh seed-7 run gives
    assert main(["train", "--data", "synthetic", "--synthetic-seed", "7", "--out", out, "--fresh", *CI]) == 0
    assert main(["train", "--data", "synthetic", "--synthetic-seed", "7", "--out", str(tmp_path / "F"), *CI]) == 0
    a = json.loads((tmp_path / "R" / "results.json").read_text())["runs"][0]
    b = json.loads((tmp_path / "F" / "results.json").read_text())["runs"][0]
    assert a["test"] == b["test"] and a["test"]["MAE"] != first


def test_a_file_with_other_labels_is_refused(tmp_path, capsys):
    import pickle

    data = make_synthetic(seed=0, **TINY)
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(data))
    out = str(tmp_path / "R")
    args = ["train", "--data", str(path), "--out", out, *CI[2:]]
    assert main(args) == 0
    for s in ("train", "valid", "test"):
        data[s]["regression_labels"] = np.clip(-np.asarray(data[s]["regression_labels"]), -3, 3)
    path.write_bytes(pickle.dumps(data))
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "data.content_sha256" in err and "data.file_sha256" in err


def test_other_code_or_options_are_refused_and_say_what_differs(tiny_ds, tmp_path, monkeypatch):
    with pytest.raises(TrainingInterrupted):
        fit(tiny_ds, cfg(epochs=3), tmp_path, stop_after_epochs=1)
    with pytest.raises(FingerprintMismatch, match=r"config.weight_decay: null -> 0.01"):
        fit(tiny_ds, cfg(epochs=3, weight_decay=0.01), tmp_path)
    with pytest.raises(FingerprintMismatch, match=r"config.infoenh_kwargs.ot_iters: 10 -> 11"):
        fit(tiny_ds, cfg(epochs=3, infoenh_kwargs={"d": 8, "k": 4, "ot_iters": 11}), tmp_path)
    real = fpmod.code_fingerprint()
    monkeypatch.setattr(fpmod, "code_fingerprint", lambda: {**real, "source_sha256": "0" * 64})
    with pytest.raises(FingerprintMismatch, match=r"code.source_sha256"):
        fit(tiny_ds, cfg(epochs=3), tmp_path)


def test_a_flag_that_spells_out_a_default_names_the_same_run(tiny_ds):
    """--selfmm-heads unimodal, --ot-iters 100, ...: the defaults, so the same run as without them."""
    def fp(model="lf", **kw):
        return fpmod.fingerprint_hash(fpmod.run_fingerprint(TrainConfig(model=model, **kw).resolved(), tiny_ds))

    assert fp("selfmm", model_kwargs={"heads": "unimodal"}) == fp("selfmm")
    assert fp("misa", model_kwargs={"lengths": "text"}) == fp("misa")
    assert fp(infoenh_kwargs={"ot_iters": 100, "alpha": 0.5, "reg": 0.1, "k": 16, "d": 128, "fia_mode": "token",
                              "ot_stop": "marginal", "infonce_reduction": "mean", "straight_through": False}) == fp()
    assert fp(infoenh_kwargs={"d": 8, "ot_iters": 100}) == fp(infoenh_kwargs={"d": 8})
    # a value that is not the default is another run
    assert fp("selfmm", model_kwargs={"heads": "enhanced"}) != fp("selfmm")
    assert fp("misa", model_kwargs={"lengths": "own"}) != fp("misa")
    assert fp(infoenh_kwargs={"ot_iters": 50}) != fp()
    assert fp(infoenh_kwargs={"straight_through": True}) != fp()
    # Self-MM's text_pool default depends on the text mode (fine-tuned BERT reads [CLS]): kept as given
    assert fp("selfmm", model_kwargs={"text_pool": "mean"}) != fp("selfmm")
    # without such flags the configuration is hashed as it was
    plain = TrainConfig(model="lf", infoenh_kwargs={"d": 8, "k": 4, "ot_iters": 10}).resolved()
    assert fpmod.run_fingerprint(plain, tiny_ds)["config"] == json.loads(plain.fingerprint())


def test_rerunning_a_finished_run_with_a_default_spelled_out_reuses_it(tmp_path, capsys):
    out = str(tmp_path / "R")
    assert main(["train", "--data", "synthetic", "--out", out, *CI]) == 0
    capsys.readouterr()
    assert main(["train", "--data", "synthetic", "--out", out, *CI, "--ot-iters", "100", "--alpha", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "reusing the finished run" in err and "other inputs" not in err


def test_finished_seeds_are_reused_loudly_even_when_quiet(tiny_ds, tmp_path, capsys):
    train_seeds(tiny_ds, cfg(epochs=1), [1111], tmp_path, log=lambda s: None)
    capsys.readouterr()
    doc = train_seeds(tiny_ds, cfg(epochs=1), [1111], tmp_path, log=lambda s: None)
    assert "reusing the finished run" in capsys.readouterr().err
    assert doc["runs"][0]["reused"] is True
    assert doc["config"]["data_arrays_sha256"] == fpmod.content_sha256(tiny_ds)   # was data_sha256


def test_run_json_that_is_a_list_is_recomputed_from_the_checkpoint(tiny_ds, tmp_path, capsys):
    first = train_seeds(tiny_ds, cfg(epochs=2), [1111], tmp_path)["runs"][0]
    (tmp_path / "seed_1111" / "run.json").write_text("[1, 2, 3]")
    capsys.readouterr()
    again = train_seeds(tiny_ds, cfg(epochs=2), [1111], tmp_path)["runs"][0]
    assert "not a run record" in capsys.readouterr().err
    assert (again["test"], again["best_epoch"]) == (first["test"], first["best_epoch"])


# ---------------------------------------------------------------------------- one writer at a time

_HOLD = ("import sys, time\nfrom infoenh.train.lock import folder_lock\n"
         "with folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


def _holder(folder):
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_writer_is_refused_at_once_and_the_lock_dies_with_its_holder(tmp_path, capsys):
    out = tmp_path / "R"
    holder = _holder(out)
    try:
        t0 = time.perf_counter()
        assert main(["train", "--data", "synthetic", "--out", str(out), *CI]) == 1
        assert time.perf_counter() - t0 < 30
        err = capsys.readouterr().err
        assert "another infoenh run is writing to" in err and f"'pid': {holder.pid}".replace("'", '"') in err
        assert not (out / "seed_1111").exists()
    finally:
        holder.send_signal(signal.SIGKILL)      # no clean-up: the OS must release the lock
        holder.wait()
    assert main(["train", "--data", "synthetic", "--out", str(out), *CI]) == 0


def test_two_runs_started_together_one_wins_the_other_is_refused(tmp_path):
    out = tmp_path / "R"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = lambda lr: [sys.executable, "-m", "infoenh", "train", "--data", "synthetic", "--out", str(out),  # noqa
                      "--lr", lr, *CI]
    procs = [subprocess.Popen(cmd(lr), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for lr in ("0.001", "0.002")]
    res = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in res)
    assert codes == [0, 1], res
    loser = next(e for c, e in res if c == 1)
    # refused by the lock while the other runs, or (if the other was already done) by the fingerprint
    assert "another infoenh run is writing" in loser or "computed from other inputs" in loser, loser
    doc = json.loads((out / "results.json").read_text())
    run = json.loads((out / "seed_1111" / "run.json").read_text())
    lines = (out / "seed_1111" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 1 and run["fingerprint"] == doc["runs"][0]["fingerprint"]
    assert load_checkpoint(out / "seed_1111" / "checkpoint.pt")["fingerprint"] == run["fingerprint"]


def test_the_same_process_may_nest_the_lock_of_one_folder(tmp_path):
    with folder_lock(tmp_path):
        with folder_lock(tmp_path):
            pass
        p = subprocess.run([sys.executable, "-c", _HOLD, str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "RunFolderLocked" in p.stderr
    assert issubclass(RunFolderLocked, RuntimeError)


# ---------------------------------------------------------------------------- checkpoint, log, folder

def test_leftovers_of_a_killed_save_are_removed_and_the_log_follows_the_checkpoint(tiny_ds, tmp_path):
    c = cfg(epochs=4, patience=50)
    with pytest.raises(TrainingInterrupted):
        fit(tiny_ds, c, tmp_path, stop_after_epochs=2)
    # a save killed half-way, and a kill between the checkpoint and the log
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    log = tmp_path / "log.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")
    r = fit(tiny_ds, c, tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))
    epochs = [json.loads(x)["epoch"] for x in log.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4] and r["epochs_run"] == 4


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unwritable_out_fails_before_the_first_epoch(tmp_path, capsys, where):
    if where == "file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "run"
    else:
        out = "/proc/infoenh-cannot-write-here"
    t0 = time.perf_counter()
    assert main(["train", "--data", "synthetic", "--out", str(out), *CI]) == 1
    err = capsys.readouterr().err
    assert "cannot write to the run folder" in err and err.count("\n") == 1
    assert time.perf_counter() - t0 < 20


# ---------------------------------------------------------------------------- divergence

def test_divergence_is_not_blamed_on_the_input(capsys, tmp_path):
    code = main(["train", "--data", "synthetic", "--lr", "1e3", "--grad-clip", "0", "--out", str(tmp_path / "R"),
                 *CI, "--model", "misa", "--epochs", "3"])
    err = capsys.readouterr().err
    assert code == 1 and "training diverged at epoch 1 step 2" in err and "lower --lr" in err
    assert "clean the input" not in err and "Traceback" not in err


def test_a_non_finite_gradient_stops_before_the_first_step(tiny_ds, monkeypatch):
    """A finite loss whose gradient is inf: caught before the optimiser applies it."""
    from infoenh.models.late_fusion import LateFusion

    real = LateFusion.training_loss

    def inf_grad(self, out, batch, epoch):
        loss, parts = real(self, out, batch, epoch)
        return loss + torch.sqrt(out.pred.abs().sum() * 0.0), parts   # d sqrt(x)/dx at 0 is inf

    monkeypatch.setattr(LateFusion, "training_loss", inf_grad)
    steps = []
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1))
    # before any optimiser step: not a divergence (issue 23): the input or a setting is named
    with pytest.raises(trainer.NotFiniteAtStart, match=r"epoch 1 step 1 \(batch 1\): loss [0-9.]+, gradient norm"):
        fit(tiny_ds, cfg(epochs=1), None)
    assert steps == []


@pytest.mark.parametrize("infoenh", ["none", "full"])
def test_nan_from_the_first_forward_names_the_input_not_the_learning_rate(infoenh):
    """Features of 3e38 (finite, so they pass the data checks) overflow the first layer: the loss
    is NaN before any optimiser step. That is reported with the batch's largest values and the
    solver setting, never as 'training diverged ... lower --lr' (issue 23, finding 10)."""
    big = make_synthetic_splits(seed=0, **TINY)
    for s in big:
        big[s].features["audio"][:] = 3e38
    with pytest.raises(trainer.NotFiniteAtStart) as e:
        fit(big, cfg(epochs=1, infoenh=infoenh), None)
    msg = str(e.value)
    assert "before any optimiser step" in msg and "audio 3e+38" in msg
    assert ("reg = " in msg) == (infoenh == "full")
    assert "diverged" not in msg and "--lr" not in msg
    assert not isinstance(e.value, TrainingDiverged)


def test_nan_after_an_optimiser_step_is_divergence(tiny_ds, monkeypatch):
    """The same NaN loss once the optimiser has stepped is reported as divergence."""
    from infoenh.models.late_fusion import LateFusion

    real, calls = LateFusion.training_loss, []

    def nan_after_first(self, out, batch, epoch):
        loss, parts = real(self, out, batch, epoch)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 1 else loss), parts

    monkeypatch.setattr(LateFusion, "training_loss", nan_after_first)
    with pytest.raises(TrainingDiverged, match=r"training diverged at epoch 1 step 2 \(batch 2\)"):
        fit(tiny_ds, cfg(epochs=1, batch_size=8), None)


def test_weights_that_became_nan_are_reported_as_divergence(tiny_ds, monkeypatch):
    """NaN weights make InfoEnh see NaN inputs: the trainer reports divergence, not bad data."""
    real_step = torch.optim.Adam.step

    def poison(self, *a, **k):
        out = real_step(self, *a, **k)
        with torch.no_grad():
            for g in self.param_groups:
                for p in g["params"]:
                    p.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", poison)
    with pytest.raises(TrainingDiverged, match="weights became NaN"):
        fit(tiny_ds, cfg(epochs=1, batch_size=8), None)


# ---------------------------------------------------------------------------- selection rule

@pytest.mark.parametrize("second,best", [(1.0 - 5e-7, 1), (1.0 - 2e-6, 2)])
def test_selection_needs_an_improvement_above_1e_minus_6(tiny_ds, monkeypatch, second, best):
    real = trainer.evaluate
    losses = iter([1.0, second, 2.0])
    monkeypatch.setattr(trainer, "evaluate", lambda m, l, d, a=True, v="mmsa": {
        **real(m, l, d, a, v), **({"loss": next(losses)} if l.dataset.split == "valid" else {})})
    assert fit(tiny_ds, cfg(epochs=3, patience=10), None)["best_epoch"] == best


# ---------------------------------------------------------------------------- the CLI's errors

@pytest.mark.parametrize("extra,needle", [
    (["--alpha", "nan"], "--alpha must be a finite number >= 0"),
    (["--alpha", "-100"], "--alpha must be a finite number >= 0"),
    (["--weight-decay", "-5"], "--weight-decay must be a finite number >= 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--reg", "0"], "--reg must be a finite number > 0"),
    (["--modalities", "text"], "add --no-fia"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["--accum-steps", "0"], "--accum-steps must be an integer >= 1, got 0"),
    (["--patience", "0"], "--patience must be an integer >= 1, got 0"),
    (["--batch-size", "-2"], "--batch-size must be an integer >= 1, got -2"),
    (["--ot-tol", "0"], "--ot-tol must be a finite number > 0"),
    (["--misa-lengths", "own"], "--misa-lengths applies to --model misa only"),
    (["--selfmm-heads", "enhanced"], "--selfmm-heads applies to --model selfmm only"),
])
def test_bad_options_end_in_one_line_before_any_training(tmp_path, capsys, extra, needle):
    out = tmp_path / "R"
    assert main(["train", "--data", "synthetic", "--out", str(out), *CI, *extra]) == 1
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "use_fia" not in err
    for internal in ("(epochs)", "(accum_steps)", "(patience)", "(batch_size)"):    # the flag only
        assert internal not in err
    assert not (out / "seed_1111").exists()


def test_ablate_n_boot_zero_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "A"
    assert main(["ablate", "--data", "synthetic", "--out", str(out), "--n-boot", "0", *CI]) == 1
    assert "--n-boot must be >= 1" in capsys.readouterr().err
    assert not out.exists()


def test_ctrl_c_says_how_to_resume(monkeypatch, capsys, tmp_path):
    from infoenh.train import cli as train_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "cmd_train", interrupted)
    assert main(["train", "--data", "synthetic", "--out", str(tmp_path), *CI]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "re-run the same command to resume" in err and "Traceback" not in err


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys, tmp_path):
    from infoenh.train import cli as train_cli

    def broken(args):
        raise IndexError("list index out of range")

    monkeypatch.setattr(train_cli, "cmd_train", broken)
    assert main(["train", "--data", "synthetic", "--out", str(tmp_path), *CI]) == 2
    err = capsys.readouterr().err
    assert "internal error (IndexError" in err and "--debug" in err and err.count("\n") == 1
    with pytest.raises(IndexError):
        main(["--debug", "train", "--data", "synthetic", "--out", str(tmp_path), *CI])


@pytest.fixture(scope="module")
def tiny_ds():
    return make_synthetic_splits(seed=0, **TINY)


# ---------------------------------------------------------------------------- issue 23: planted lock link

def test_a_planted_lock_symlink_is_refused_and_its_target_untouched(tmp_path):
    """``.lock -> victim.txt`` planted in a run folder: the lock refuses it, the victim keeps its bytes."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(victim)
    with pytest.raises(RunFolderLocked, match="symbolic link"):
        with folder_lock(run):
            pass
    assert victim.read_text() == "precious\n"
    assert (run / ".lock").is_symlink()


def test_a_planted_lock_symlink_fails_train_in_one_line(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "R"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    assert main(["train", "--data", "synthetic", "--out", str(out), *CI]) == 1
    err = capsys.readouterr().err
    assert "symbolic link" in err and err.count("\n") == 1
    assert victim.read_text() == "precious\n"


# ---------------------------------------------------------------------------- issue 23: sealed run.json

def test_a_hand_edited_run_json_is_noticed_and_never_reported(tmp_path, capsys):
    """MAE edited by hand in run.json: the next call says so, recomputes the run from its
    checkpoint and reports the true MAE; results.json never holds the edited value."""
    out = tmp_path / "R"
    assert main(["train", "--data", "synthetic", "--out", str(out), *CI]) == 0
    rj = out / "seed_1111" / "run.json"
    rec = json.loads(rj.read_text())
    assert rec["checksum"].startswith("sha256:") and rec["checkpoint_sha256"].startswith("sha256:")
    true_mae = rec["test"]["MAE"]
    rec["test"]["MAE"] = 0.0123
    rj.write_text(json.dumps(rec, indent=2))
    capsys.readouterr()
    assert main(["train", "--data", "synthetic", "--out", str(out), *CI]) == 0
    err = capsys.readouterr().err
    assert "edited after the run wrote it" in err and "run.json" in err
    res = json.loads((out / "results.json").read_text())
    assert res["runs"][0]["test"]["MAE"] == pytest.approx(true_mae, abs=1e-12) != 0.0123
    assert json.loads(rj.read_text())["test"]["MAE"] == res["runs"][0]["test"]["MAE"]


def test_a_run_json_whose_checkpoint_changed_is_not_trusted(tmp_path):
    from infoenh.train.runner import read_run_record

    run_dir = tmp_path / "seed_1111"
    fit(make_synthetic_splits(seed=0, **TINY), cfg(epochs=1), run_dir)
    assert read_run_record(run_dir / "run.json")[0] is not None
    with open(run_dir / "checkpoint.pt", "ab") as f:
        f.write(b"\0")
    rec, why = read_run_record(run_dir / "run.json")
    assert rec is None and "checkpoint" in why and "not the one it was computed from" in why


# ---------------------------------------------------------------------------- issue 23: smaller messages

def test_a_mismatch_with_equal_recorded_inputs_says_what_is_wrong(tmp_path):
    """A record whose fingerprint hash is missing said 'from other inputs ()'."""
    from infoenh.train.fingerprint import mismatch_error

    fp = trainer.run_fingerprint(cfg(epochs=1).resolved(), make_synthetic_splits(seed=0, **TINY))
    msg = str(mismatch_error("finished result", tmp_path / "run.json", fp, fp))
    assert "()" not in msg and "hash is missing or does not match" in msg


def test_a_checkpoint_with_a_foreign_global_is_refused_without_torchs_allowlist_advice(tmp_path):
    from infoenh.train.checkpoint import load_checkpoint

    torch.save({"x": eval}, tmp_path / "checkpoint.pt")
    with pytest.raises(RuntimeError) as e:
        load_checkpoint(tmp_path / "checkpoint.pt")
    msg = str(e.value)
    assert "eval" in msg and "not infoenh's or was altered" in msg
    assert "add_safe_globals" not in msg and "weights_only" not in msg and "\n" not in msg
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="not a checkpoint written by infoenh") as e:
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert "weights_only" not in str(e.value)


def test_train_at_a_tiny_reg_trains_instead_of_reporting_divergence(tmp_path, capsys):
    """`infoenh train --reg 1e-4` (k above the sequence lengths: zero-mass rows in FIA) reported
    'training diverged ... lower --lr': the solver's NaN plan. Now it trains to finite metrics."""
    out = tmp_path / "R"
    args = [a if a != "4" else "32" for a in CI]          # --k 32 > the 10-24 steps of the ci scale
    assert main(["train", "--data", "synthetic", "--out", str(out), *args, "--reg", "1e-4", "--ot-iters", "20"]) == 0
    err = capsys.readouterr().err
    assert "diverged" not in err
    mae = json.loads((out / "results.json").read_text())["runs"][0]["test"]["MAE"]
    assert np.isfinite(mae)
