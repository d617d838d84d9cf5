"""What a training run tells its user: options that do nothing, the host's resolved switches,
InfoEnh's diagnostics over seeds, Sinkhorn's convergence, and wall time."""
import json
import time
import warnings

import numpy as np
import pytest

from infoenh.cli import main
from infoenh.data.synthetic import make_synthetic_splits
from infoenh.train import trainer
from infoenh.train.config import TrainConfig, inactive_options
from infoenh.train.results import format_table
from infoenh.train.runner import ConvergenceWarning, host_settings, train_seeds

pytestmark = pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning")

TINY = dict(seed=0, sizes=(40, 16, 16), text_dim=16, text_len=10, audio_len=12, vision_len=12,
            audio_neg_inf_frac=0.0)
CI = ["--data", "synthetic", "--synthetic-scale", "ci", "--epochs", "1", "--seeds", "1111", "--threads", "1",
      "--quiet"]


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def tiny_ds():
    return make_synthetic_splits(**TINY)


def _flags(msgs):
    return [m.split(" ", 1)[0] for m in msgs]


# ---------------------------------------------------------------------------- options that do nothing

def test_inactive_options_by_variant():
    every = {"k": 4, "d": 8, "reg": 0.2, "alpha": 1.0, "fia_mode": "feature", "ot_iters": 50, "ot_stop": "scaling",
             "ot_tol": 1e-3, "infonce_reduction": "sum", "straight_through": True}
    assert inactive_options(TrainConfig(infoenh="full", infoenh_kwargs=every)) == []
    msgs = inactive_options(TrainConfig(infoenh="none", infoenh_kwargs=every))
    assert _flags(msgs) == ["--k", "--d", "--reg", "--alpha", "--fia-mode", "--ot-iters", "--ot-stop", "--ot-tol",
                            "--infonce-reduction", "--straight-through"]
    assert all("with --no-infoenh" in m for m in msgs)
    fia = ["--reg", "--fia-mode", "--ot-iters", "--ot-stop", "--ot-tol"]
    gate = ["--alpha", "--infonce-reduction", "--straight-through"]
    assert _flags(inactive_options(TrainConfig(infoenh="no_fia", infoenh_kwargs=every))) == fia
    assert _flags(inactive_options(TrainConfig(infoenh="no_fib", infoenh_kwargs=every))) == ["--alpha"] + [
        "--infonce-reduction", "--straight-through"]
    plumbing = inactive_options(TrainConfig(infoenh="plumbing", infoenh_kwargs=every))
    assert sorted(_flags(plumbing)) == sorted(fia + gate) and all("with --plumbing" in m for m in plumbing)
    # tau has no flag: named as the keyword
    assert inactive_options(TrainConfig(infoenh="no_fib", infoenh_kwargs={"tau": 0.2})) == [
        "infoenh_kwargs['tau'] has no effect with --no-fib: it sets FIB's gate or its InfoNCE loss, and this run "
        "has neither (the gate is open)"]


def test_selfmm_heads_matters_with_any_infoenh():
    """The unimodal heads pool on their own in every InfoEnh arm (the same pooling split in every
    arm of the host), so --selfmm-heads has an effect with InfoEnh, with or without FIA."""
    heads = {"heads": "enhanced"}
    for variant in ("full", "no_fib", "no_fia", "plumbing", "fia_uniform"):
        assert inactive_options(TrainConfig(model="selfmm", infoenh=variant, model_kwargs=heads)) == []
    (msg,) = inactive_options(TrainConfig(model="selfmm", infoenh="none", model_kwargs=heads))
    assert msg.startswith("--selfmm-heads has no effect with --no-infoenh")


def test_train_warns_once_per_inactive_option_and_ablate_does_not(tmp_path, capsys):
    assert main(["train", *CI, "--model", "lf", "--no-infoenh", "--k", "4", "--reg", "0.2",
                 "--out", str(tmp_path / "T")]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "InactiveOptionWarning" in ln]
    assert lines == ["infoenh: InactiveOptionWarning: --k has no effect with --no-infoenh: the host alone builds no "
                     "InfoEnh",
                     "infoenh: InactiveOptionWarning: --reg has no effect with --no-infoenh: the host alone builds no "
                     "InfoEnh"]
    assert main(["train", *CI, "--model", "lf", "--k", "4", "--d", "8", "--out", str(tmp_path / "F")]) == 0
    assert "InactiveOptionWarning" not in capsys.readouterr().err
    # ablate: the baseline arm ignores --k on purpose
    assert main(["ablate", *CI, "--model", "lf", "--arms", "baseline", "--k", "4", "--n-boot", "10",
                 "--out", str(tmp_path / "A")]) == 0
    assert "InactiveOptionWarning" not in capsys.readouterr().err


# ---------------------------------------------------------------------------- results.json

def test_host_settings_fill_in_the_host_defaults(tiny_ds):
    s = host_settings(TrainConfig(model="selfmm").resolved(), tiny_ds)
    assert s["heads"] == "unimodal" and s["text_pool"] == "mean" and s["H"] == 3.0
    assert not {"self", "dims", "modalities", "infoenh", "pool", "n_train"} & set(s)
    assert host_settings(TrainConfig(model="selfmm", model_kwargs={"heads": "enhanced"}), tiny_ds)["heads"] == \
        "enhanced"
    # fine-tuned BERT: Self-MM reads [CLS] unless text_pool is given (models.registry.TEXT_MODE_DEFAULTS)
    assert host_settings(TrainConfig(model="selfmm", text="finetune"), tiny_ds)["text_pool"] == "first"
    assert host_settings(TrainConfig(model="selfmm", text="finetune", model_kwargs={"text_pool": "mean"}),
                         tiny_ds)["text_pool"] == "mean"
    assert host_settings(TrainConfig(model="misa"), tiny_ds)["lengths"] == "text"
    assert host_settings(TrainConfig(model="misa", model_kwargs={"lengths": "own"}), tiny_ds)["lengths"] == "own"
    assert host_settings(TrainConfig(model="lf"), tiny_ds) == {"hidden": 64, "fusion_hidden": 128, "dropout": 0.1}


def test_results_record_host_settings_and_diagnostics_over_seeds(tiny_ds, tmp_path):
    cfg = TrainConfig(model="misa", epochs=1, quiet=True, infoenh_kwargs={"d": 8, "k": 4})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        doc = train_seeds(tiny_ds, cfg, [1111, 1112], tmp_path, log=lambda s: None)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["config"]["host_settings"]["lengths"] == "text" and on_disk["config"]["model_kwargs"] == {}
    runs, summ = on_disk["runs"], on_disk["summary"]["diagnostics"]
    for r in runs:
        kept = [v for k, v in r["diagnostics"].items() if k.startswith("kept_frac_")]
        assert len(kept) == 3 and r["diagnostics"]["kept_frac"] == pytest.approx(np.mean(kept))
    for name in ("kept_frac", "kept_frac_text", "ot_converged_frac", "ot_iters_mean"):
        vals = [r["diagnostics"][name] for r in runs]
        assert summ[name]["mean"] == pytest.approx(np.mean(vals))
        assert summ[name]["std"] == pytest.approx(np.std(vals, ddof=1))
    assert "mean±std" in format_table(doc)
    # the host alone: no diagnostics, an empty summary of them
    none = train_seeds(tiny_ds, TrainConfig(model="lf", infoenh="none", epochs=1, quiet=True), [1111],
                       tmp_path / "none", log=lambda s: None)
    assert none["summary"]["diagnostics"] == {} and none["runs"][0]["diagnostics"] == {}


def test_a_seed_whose_sinkhorn_rarely_converged_is_warned_about(tiny_ds, tmp_path):
    cfg = TrainConfig(model="lf", epochs=1, quiet=True, infoenh_kwargs={"d": 8, "k": 4, "ot_iters": 1})
    with pytest.warns(ConvergenceWarning) as rec:
        doc = train_seeds(tiny_ds, cfg, [1111], tmp_path / "capped", log=lambda s: None)
    frac = doc["runs"][0]["diagnostics"]["ot_converged_frac"]
    assert frac < 0.9
    (w,) = [w for w in rec if w.category is ConvergenceWarning]
    assert str(w.message) == (f"Sinkhorn converged on only {100 * frac:.1f}% of the OT problems of seed 1111; "
                              "raise --ot-iters or --reg (or --ot-tol)")
    with warnings.catch_warnings():                      # no FIA, no OT: nothing to warn about
        warnings.simplefilter("error", ConvergenceWarning)
        train_seeds(tiny_ds, TrainConfig(model="lf", infoenh="no_fia", epochs=1, quiet=True,
                                         infoenh_kwargs={"d": 8, "k": 4}), [1111], tmp_path / "nofia",
                    log=lambda s: None)


# ---------------------------------------------------------------------------- wall time

def test_wall_seconds_leave_out_the_one_time_start_up(tiny_ds, monkeypatch):
    """The first run of a process used to pay seconds of lazy imports (scikit-learn, torch's
    compiler stack): fit warms up before it starts its clock."""
    calls = []
    monkeypatch.setattr(trainer, "_warm_up", lambda device: (calls.append(device), time.sleep(1.0)))
    t0 = time.perf_counter()
    r = trainer.fit(tiny_ds, TrainConfig(model="lf", infoenh="none", epochs=1, quiet=True), None)
    elapsed = time.perf_counter() - t0
    assert len(calls) == 1
    assert r["wall_seconds"] <= elapsed - 0.9


# ---------------------------------------------------------------------------- what ran

def test_options_changed_lists_every_option_off_the_host_defaults():
    from infoenh.train.provenance import options_changed, options_text

    cfg = TrainConfig(model="selfmm", epochs=3, text="frozen", infoenh_kwargs={"k": 8, "ot_iters": 100},
                      model_kwargs={"heads": "unimodal"})
    # ot_iters 100 and heads "unimodal" spell out defaults: not changes
    assert options_changed(cfg) == {"epochs": 3, "text": "frozen", "infoenh_kwargs.k": 8}
    assert options_changed(TrainConfig(model="misa", infoenh="none", seed=7, quiet=True)) == {}
    # a dataset's own MMSA settings are the defaults there: MOSEI's batch 32 is no change, 16 is one
    mosei = TrainConfig(model="selfmm", settings_of="mosei")
    assert options_changed(mosei, detected="mosei") == {}
    assert options_changed(mosei, detected="mosi") == {"settings_of": "mosei"}      # forced on other data
    assert options_changed(TrainConfig(model="selfmm", settings_of="mosei", batch_size=16),
                           detected="mosei") == {"batch_size": 16}
    assert options_text({}) == "none (the host's defaults)"
    assert options_text({"epochs": 3, "text": "frozen"}) == 'epochs: 3, text: "frozen"'


def test_results_and_run_json_say_what_ran(tiny_ds, tmp_path):
    import torch

    from infoenh.train.fingerprint import content_sha256
    from infoenh.train.provenance import arrays_sha256

    doc = train_seeds(tiny_ds, TrainConfig(model="lf", epochs=1, quiet=True, infoenh_kwargs={"d": 8, "k": 4}),
                      [1111, 1112], tmp_path, log=lambda s: None)
    run = json.loads((tmp_path / "seed_1111" / "run.json").read_text())
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for rec in (run, on_disk):
        env = rec["environment"]
        assert env["versions"]["torch"] == torch.__version__ and env["versions"]["numpy"] == np.__version__
        assert env["versions"]["python"].count(".") == 2 and env["versions"]["infoenh"]
        assert env["threads"] == torch.get_num_threads() and isinstance(env["command_line"], list)
        assert rec["started_at"].endswith("Z") and rec["started_at"] <= rec["finished_at"]
        time.strptime(rec["started_at"], "%Y-%m-%dT%H:%M:%SZ")
    cfg = on_disk["config"]
    assert cfg["data_arrays_sha256"] == run["data_arrays_sha256"] == content_sha256(tiny_ds)
    assert cfg["data_file_sha256"] is None and cfg["data_file_sha256_published"] is None   # generated, no file
    assert "data_sha256" not in cfg and arrays_sha256(cfg) == content_sha256(tiny_ds)
    assert arrays_sha256({"data_sha256": "abc"}) == "abc"                 # files written before the rename
    assert cfg["options_changed"] == {"epochs": 1, "infoenh_kwargs.d": 8, "infoenh_kwargs.k": 4}
    assert cfg["n_seeds"] == 2
    assert on_disk["epoch_cap"] == {"cap": 1, "at_cap": 2, "runs": 2, "seeds_at_cap": [1111, 1112]}
    table = format_table(doc)
    assert "options beyond the host's defaults: epochs: 1, infoenh_kwargs.d: 8, infoenh_kwargs.k: 4" in table
    assert "seeds: 2 | epoch cap 1: convergence not assessed" in table     # one epoch: nothing to compare
    assert "   1*  " in table and "* the only epoch allowed (--epochs 1): convergence not assessed" in table


def test_a_file_checksum_is_recorded_with_whether_it_matched_a_published_sum(tiny_ds):
    from infoenh.train.provenance import data_provenance

    class Files(dict):
        meta = {"checksum": "verified", "sha256": "ab" * 32, "known_as": "MOSI/Processed/unaligned_50.pkl"}

    ds = Files(tiny_ds)
    got = data_provenance(ds)
    assert got["data_file_sha256"] == "ab" * 32 and got["data_file_sha256_published"] is True
    assert got["data_file_sha256_matched"] == "MOSI/Processed/unaligned_50.pkl"
    Files.meta = {"checksum": "unknown", "sha256": "cd" * 32, "known_as": None}
    assert data_provenance(Files(tiny_ds))["data_file_sha256_published"] is False


def test_the_cap_flag_is_the_selected_epoch_at_the_last_epoch_allowed():
    from infoenh.train.provenance import at_cap, cap_count, cap_text

    runs = [{"seed": 1, "best_epoch": 5}, {"seed": 2, "best_epoch": 3}, {"seed": 3, "best_epoch": 5}]
    assert [at_cap(r, 5) for r in runs] == [True, False, True]
    assert not any(at_cap(r, None) for r in runs)                          # no cap: early stopping ends every run
    c = cap_count(runs, 5)
    assert c == {"cap": 5, "at_cap": 2, "runs": 3, "seeds_at_cap": [1, 3]}
    assert cap_text(c) == ("epoch cap 5: 2 of 3 runs selected the last epoch allowed (not converged: the validation "
                           "loss was still improving)")
    assert cap_text(cap_count(runs, None)) == "no epoch cap: all 3 runs ended by early stopping"


def test_a_one_epoch_cap_says_convergence_was_not_assessed():
    """Before: 'N of N runs selected the last epoch allowed (not converged: ...)' with --epochs 1."""
    from infoenh.train.provenance import cap_count, cap_text

    text = cap_text(cap_count([{"seed": 1, "best_epoch": 1}, {"seed": 2, "best_epoch": 1}], 1))
    assert text.startswith("epoch cap 1: convergence not assessed") and "not converged" not in text


def test_one_seeds_table_prints_no_spread_and_no_convergence_claim():
    """Before: mean±std '1.3816±0.0000' from one seed, and '* ... not converged' under --epochs 1."""
    from infoenh.train.results import format_table, results_doc

    metrics = {"MAE": 1.3816, "Corr": 0.1, "Mult_acc_7": 0.2}
    doc = results_doc([{"seed": 1111, "best_epoch": 1, "test": dict(metrics), "valid": dict(metrics)}],
                      {"model": "lf", "epochs": 1})
    table = format_table(doc)
    assert "1.3816±n/a" in table and "±0.0000" not in table
    assert "not converged" not in table and "convergence not assessed" in table
