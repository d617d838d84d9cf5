"""`infoenh train` / `infoenh ablate`: the results.json contract, the switches, bad input."""
import json
import pickle

import pytest

from infoenh.cli import main
from infoenh.data import collate, load_mmsa
from infoenh.data.synthetic import make_synthetic, write_synthetic
from infoenh.metrics import METRIC_KEYS
from infoenh.models import build_model

SMALL = dict(sizes=(40, 16, 16), text_dim=16, text_len=12, audio_len=16, vision_len=16, audio_neg_inf_frac=0.0)
FAST = ["--epochs", "1", "--k", "4", "--d", "8", "--threads", "1", "--quiet"]


# the testbed plants -inf in audio on purpose (MMSA's COVAREP does); the loader's warning is expected
pytestmark = [pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning"),
              pytest.mark.usefixtures("restore_threads")]  # the CLI sets torch's thread count


def test_train_writes_the_results_contract_and_a_synthetic_table(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", "synthetic", "--synthetic-scale", "ci", "--model", "lf", "--seeds", "1111", "1112",
                 "--out", str(out), *FAST])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in doc["runs"]] == [1111, 1112]
    for r in doc["runs"]:
        assert isinstance(r["best_epoch"], int) and r["best_epoch"] >= 1
        assert set(r["valid"]) == set(METRIC_KEYS) and set(r["test"]) == set(METRIC_KEYS)
        assert all(isinstance(v, float) for v in r["test"].values())
    assert set(doc["summary"]["test"]) == set(METRIC_KEYS)
    assert set(doc["summary"]["test"]["MAE"]) == {"mean", "std"}
    cfg = doc["config"]
    assert cfg["model"] == "lf" and cfg["infoenh"] == "full" and cfg["synthetic"] is True
    assert "SYNTHETIC" in cfg["dataset"] and cfg["seeds"] == [1111, 1112]
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "mean±std" in printed
    assert (out / "seed_1111" / "checkpoint.pt").exists()


@pytest.mark.parametrize("flag,variant", [("--no-infoenh", "none"), ("--no-fib", "no_fib"), ("--no-fia", "no_fia"),
                                          ("--plumbing", "plumbing")])
def test_switches_reach_the_config(tmp_path, flag, variant):
    out = tmp_path / variant
    assert main(["train", "--data", "synthetic", "--synthetic-scale", "ci", "--model", "lf", "--seeds", "1111",
                 flag, "--modalities", "text", "vision", "--out", str(out), *FAST]) == 0
    cfg = json.loads((out / "results.json").read_text())["config"]
    assert cfg["infoenh"] == variant and cfg["modalities"] == ["text", "vision"]


def test_protocol_and_host_flags_reach_the_config_and_the_results(tmp_path):
    out = tmp_path / "misa"
    assert main(["train", "--data", "synthetic", "--synthetic-scale", "ci", "--model", "misa", "--seeds", "1111",
                 "--accum-tail", "step", "--clip-at", "step", "--valid-loss", "sample_mean", "--misa-lengths", "own",
                 "--ot-stop", "scaling", "--ot-tol", "0.02", "--infonce-reduction", "sum", "--straight-through",
                 "--no-fia-symmetric", "--out", str(out), *FAST]) == 0
    doc = json.loads((out / "results.json").read_text())
    cfg, run = doc["config"], doc["runs"][0]
    assert (cfg["accum_tail"], cfg["clip_at"], cfg["valid_loss"], cfg["epochs"]) == ("step", "step", "sample_mean", 1)
    assert cfg["model_kwargs"] == {"lengths": "own"}
    assert cfg["infoenh_kwargs"] == {"k": 4, "d": 8, "ot_stop": "scaling", "ot_tol": 0.02,
                                     "infonce_reduction": "sum", "straight_through": True, "fia_symmetric": False}
    assert run["protocol"] == {"accum_tail": "step", "clip_at": "step", "valid_loss": "sample_mean",
                               "eval_order": "shuffled", "epochs_cap": 1,
                               "patience": 8, "accum_steps": 2, "grad_clip": 0.8, "grad_clip_mode": "value"}
    # ci: 160 clips = 10 batches of 16, windows of 2: 5 steps
    assert run["optimizer_steps"] == 5 and run["wall_seconds"] > 0 and run["peak_memory_bytes"] > 0
    assert run["peak_memory_kind"] in ("cpu_maxrss_process", "cuda_max_allocated")
    for diag in (run["diagnostics"], run["diagnostics_selected_epoch"]):
        assert {"kept_frac_text", "ot_iters_mean", "ot_converged_frac", "no_negative", "infonce_audio"} <= set(diag)
    # without the flags: the host's (MMSA's) loop, and no key that was not asked for
    out = tmp_path / "selfmm"
    assert main(["train", "--data", "synthetic", "--synthetic-scale", "ci", "--model", "selfmm", "--seeds", "1111",
                 "--selfmm-heads", "enhanced", "--out", str(out), *FAST]) == 0
    doc = json.loads((out / "results.json").read_text())
    cfg, run = doc["config"], doc["runs"][0]
    assert (cfg["accum_tail"], cfg["clip_at"], cfg["valid_loss"]) == ("drop", "step", "mmsa")
    assert cfg["infoenh_kwargs"] == {"k": 4, "d": 8} and cfg["model_kwargs"] == {"heads": "enhanced"}
    assert run["optimizer_steps"] == 2                               # 10 batches, windows of 4, tail dropped


def test_switches_are_exclusive_and_choices_checked(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "synthetic", "--model", "lf", "--no-fib", "--no-fia", "--out", "x"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["train", "--data", "synthetic", "--model", "mult", "--out", "x"])
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0 and "--no-infoenh" in capsys.readouterr().out


def test_a_file_with_other_widths_is_refused_clearly(tmp_path, capsys):
    a = write_synthetic(tmp_path / "a.pkl", seed=0, **SMALL)
    b = write_synthetic(tmp_path / "b.pkl", seed=0, **{**SMALL, "text_dim": 24})
    out = tmp_path / "run"
    assert main(["train", "--data", str(a), "--model", "lf", "--seeds", "1111", "--out", str(out), *FAST]) == 0
    # same --out, data with another text width: refused, naming the widths
    code = main(["train", "--data", str(b), "--model", "lf", "--seeds", "1111", "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "computed from other inputs" in err and "data.dims.text: 16 -> 24" in err
    # a model built for one file, fed a batch of the other: the modality and both widths are named
    model = build_model("lf", load_mmsa(a).dims)
    batch = collate([load_mmsa(b)["train"][i] for i in range(4)])
    with pytest.raises(ValueError, match=r"modality 'text': the model expects width 16 but the batch has width 24"):
        model(batch)


def test_an_empty_split_or_missing_file_is_refused(tmp_path, capsys):
    data = make_synthetic(seed=0, **SMALL)
    data["valid"] = {k: v[:0] for k, v in data["valid"].items()}
    bad = tmp_path / "empty_valid.pkl"
    with open(bad, "wb") as f:
        pickle.dump(data, f, protocol=4)
    assert main(["train", "--data", str(bad), "--model", "lf", "--seeds", "1111", "--out", str(tmp_path / "r"),
                 *FAST]) == 1
    assert "valid" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nope.pkl"), "--model", "lf", "--out", str(tmp_path / "r2"),
                 *FAST]) == 1
    assert "nope.pkl" in capsys.readouterr().err


def test_ablate_command_writes_both_files(tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(["ablate", "--data", "synthetic", "--synthetic-scale", "ci", "--model", "lf", "--seeds", "1111", "1112",
                 "--arms", "baseline", "full", "--n-boot", "200", "--out", str(out), *FAST]) == 0
    doc = json.loads((out / "ablation.json").read_text())
    assert doc["config"]["arms"] == ["baseline", "plumbing", "full"]       # the plumbing control is added
    assert {"full vs baseline", "full vs plumbing", "plumbing vs baseline"} == set(doc["comparisons"])
    assert "| full: +InfoEnh (FIB + FIA) |" in (out / "ablation.md").read_text()
    assert "Paired differences" in capsys.readouterr().out
