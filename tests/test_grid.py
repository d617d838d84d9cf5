"""infoenh grid: spec checks, expansion, sequential and Ray executors, resume, failures (issue 12)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infoenh.cli import main
from infoenh.train import grid as gridmod
from infoenh.train.grid import GridSpecError, expand, load_spec, run_one, validate_spec
from infoenh.train.grid_exec import run_grid

pytestmark = [pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning"),
              pytest.mark.filterwarnings("ignore::infoenh.train.runner.ConvergenceWarning")]

# 2 hosts x 2 arms x 2 seeds = 8 tiny runs (plumbing's references: baseline, asked for already)
SPEC = {"datasets": ["synthetic"], "synthetic_scale": "ci", "hosts": ["lf", "selfmm"], "arms": ["baseline", "plumbing"],
        "seeds": [1111, 1112], "n_boot": 200, "options": {"epochs": 1, "k": 4, "d": 8, "ot_iters": 10}}


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (see conftest.one_thread)."""


def _write(tmp_path, doc, name="spec.yaml"):
    import yaml

    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def _by_key(doc):
    return {r["key"]: r for r in doc["runs"]}


# ------------------------------------------------------------------------------------------ spec

@pytest.mark.parametrize("change, needle", [
    ({"colour": "red"}, "unknown key 'colour'; choose from datasets"),
    ({"hosts": ["lf", "bert"]}, "unknown host 'bert'; choose from lf, misa, selfmm"),
    ({"arms": ["baseline", "fulll"]}, "unknown arm 'fulll'; did you mean 'full'? Choose from baseline, plumbing, fib"),
    ({"options": {"epochz": 2}}, "grid spec: unknown option 'epochz' in 'options'; did you mean 'epochs'? Options are "
                                 "TrainConfig fields or InfoEnh options: "),
    ({"hosts": ["lf", "selfm"]}, "unknown host 'selfm'; did you mean 'selfmm'? Choose from lf, misa, selfmm"),
    ({"options": {"model_kwargs": {"nosuch": 3}}}, "grid spec: host lf: unknown model_kwargs key 'nosuch'"),
    ({"host_options": {"selfmm": {"model_kwargs": {"head": "enhanced"}}}},
     "host selfmm: unknown model_kwargs key 'head'; did you mean 'heads'?"),
    ({"options": {"epochs": "two"}}, "host lf, arm baseline: --epochs must be an integer >= 1, got 'two'"),
    ({"options": {"reg": -1}}, "--reg must be a finite number > 0"),
    ({"options": {"model_kwargs": {"heads": "enhanced"}}}, "--selfmm-heads applies to --model selfmm only"),
    ({"options": {"amp": "no"}}, "'options.amp' must be true or false"),
    ({"options": {"seed": 3}}, "unknown option 'seed'"),
    ({"seeds": [1, 1]}, "seeds must be distinct"),
    ({"seeds": ["a"]}, "seeds must be integers"),
    ({"datasets": ["nowhere/MOSI.pkl"]}, "dataset 'nowhere/MOSI.pkl' is neither 'synthetic' nor an existing file"),
    ({"synthetic_scale": "huge"}, "unknown synthetic_scale 'huge'; choose from ci, mosi, small"),
    ({"host_options": {"misa": {"epochs": 1}}}, "names host 'misa', which is not in hosts"),
    ({"hosts": None}, "'hosts' is required"),
])
def test_a_bad_spec_is_one_clear_error_before_anything_runs(tmp_path, capsys, change, needle):
    doc = {**SPEC, **change}
    if change.get("hosts", 1) is None:
        del doc["hosts"]
    with pytest.raises(GridSpecError, match=None) as e:
        validate_spec(doc)
    assert needle in str(e.value)
    out = tmp_path / "G"
    assert main(["grid", str(_write(tmp_path, doc)), "--out", str(out), "--executor", "sequential"]) == 1
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_expansion_adds_references_and_keys_run_folders(tmp_path):
    spec = validate_spec({**SPEC, "hosts": ["lf"], "arms": ["full", "no_text_full"], "seeds": [1, 2, 3]})
    assert spec.arms == ["baseline", "plumbing", "full", "no_text", "no_text_plumbing", "no_text_full"]
    runs = expand(spec)
    assert len(runs) == 6 * 3 and len({r.key for r in runs}) == len(runs)
    assert runs[0].folder(tmp_path) == tmp_path / "synthetic-ci" / "lf" / "baseline" / "seed_1"
    # options and per-host options reach the configuration
    spec = validate_spec({**SPEC, "host_options": {"selfmm": {"model_kwargs": {"heads": "enhanced"}, "epochs": 3}}})
    c = spec.config("selfmm", "plumbing", 7)
    assert c.seed == 7 and c.epochs == 3 and c.model_kwargs == {"heads": "enhanced"} and c.infoenh == "plumbing"
    assert c.infoenh_kwargs == {"k": 4, "d": 8, "ot_iters": 10}
    assert spec.config("lf", "baseline", 7).epochs == 1
    p = tmp_path / "s.json"
    p.write_text(json.dumps(SPEC))
    assert load_spec(p).to_dict() == validate_spec(SPEC).to_dict()


# ------------------------------------------------------------------------- sequential, resume

def test_sequential_grid_writes_tables_and_a_second_call_skips_finished_runs(tmp_path, capsys):
    spec = validate_spec(SPEC)
    doc = run_grid(spec, tmp_path / "G", executor="sequential")
    assert doc["summary"] == {"runs": 8, "done": 8, "failed": 0}
    err = capsys.readouterr().err
    assert err.count("synthetic-ci/") >= 8 and "[8/8]" in err and "8 done, 0 running, 0 failed" in err
    for r in expand(spec):
        assert (r.folder(tmp_path / "G") / "run.json").exists()
    cell = doc["cells"]["synthetic-ci/lf/plumbing"]
    assert cell["status"] == "complete" and set(cell["metrics"]["MAE"]) == {"mean", "std"}
    comp = doc["comparisons"]["synthetic-ci/lf/plumbing vs baseline"]
    assert comp["n"] == 2 and comp["MAE"]["mean_diff"] is not None
    md = (tmp_path / "G" / "grid.md").read_text()
    assert "Table 2: ablation arms" in md and "| lf | plumbing − baseline |" in md
    assert "| missing" not in md and "(n=" not in md
    assert "SYNTHETIC testbed (generated by infoenh; not MOSI)" in md.splitlines()[2]
    assert json.loads((tmp_path / "G" / "grid.json").read_text())["summary"]["done"] == 8
    # what ran: the spec's hash, the options beyond each host's defaults, the seeds, the runs at the cap
    ran = doc["what_ran"]
    assert ran["options_changed"] == {"synthetic-ci": {h: {"epochs": 1, "infoenh_kwargs.d": 8, "infoenh_kwargs.k": 4,
                                                           "infoenh_kwargs.ot_iters": 10} for h in ("lf", "selfmm")}}
    assert ran["n_seeds"] == 2 and all(ran["epoch_cap"][h]["at_cap"] == 4 == ran["epoch_cap"][h]["runs"]
                                       for h in ("lf", "selfmm"))
    assert f"Spec sha256 {ran['spec_sha256'][:12]}" in md
    assert "Options beyond the host's defaults (every host): epochs: 1, infoenh_kwargs.d: 8" in md
    assert "Seeds: 2 (1111, 1112). lf: epoch cap 1: convergence not assessed" in md   # one epoch: nothing to compare
    assert md.count("Seeds:") == 1 and "Arms added as references" not in md      # one seed paragraph; none added
    # Holm beside the raw p in every comparison cell, one family per table and dataset
    holm = doc["holm"]["table2/synthetic-ci"]
    assert set(holm["p_holm"]) == {"synthetic-ci/lf/plumbing vs baseline", "synthetic-ci/selfmm/plumbing vs baseline"}
    rows = [ln for ln in md.splitlines() if " − " in ln and ln.startswith("| ")]
    assert rows and all(ln.count("(Holm ") == len(doc["metrics"]) for ln in rows)
    assert "t interval (from 2 seeds: a percentile bootstrap interval needs at least 10" in md
    # a rerun with a changed option is told apart by the spec's hash
    other = validate_spec({**SPEC, "options": {**SPEC["options"], "k": 8}})
    from infoenh.train.grid_report import what_ran

    assert what_ran(other, [])["spec_sha256"] != ran["spec_sha256"]
    assert what_ran(validate_spec(SPEC), [])["spec_sha256"] == ran["spec_sha256"]
    # again: every run reused, same numbers
    again = run_grid(spec, tmp_path / "G", executor="sequential")
    assert all(r["reused"] for r in again["runs"])
    assert {k: r["test"] for k, r in _by_key(again).items()} == {k: r["test"] for k, r in _by_key(doc).items()}
    assert "reused" in capsys.readouterr().err


def _fail_one(run, spec, out):
    if run.key == "synthetic-ci/lf/plumbing/seed_1112":
        raise RuntimeError("bad data in this run")
    if run.host == "selfmm" and run.arm == "plumbing":
        return {"key": run.key, "status": "failed", "error": "FloatingPointError: NaN loss", "seed": run.seed}
    return run_one(run, spec, out)


def test_a_failing_run_is_reported_and_its_cell_is_marked_not_averaged(tmp_path, capsys):
    spec = validate_spec(SPEC)
    doc = run_grid(spec, tmp_path / "G", executor="sequential", run_fn=_fail_one)
    assert doc["summary"] == {"runs": 8, "done": 5, "failed": 3}
    failed = {f["key"]: f["error"] for f in doc["failed"]}
    assert failed["synthetic-ci/lf/plumbing/seed_1112"] == "RuntimeError: bad data in this run"
    assert doc["cells"]["synthetic-ci/lf/plumbing"]["status"] == "n=1/2"
    assert doc["cells"]["synthetic-ci/selfmm/plumbing"]["status"] == "missing"
    assert doc["comparisons"]["synthetic-ci/lf/plumbing vs baseline"]["n"] == 1
    md = (tmp_path / "G" / "grid.md").read_text()
    assert "(n=1/2)" in md and "| selfmm | plumbing | missing |" in md
    # one finished seed: no spread (null in grid.json, n/a in grid.md), not 0
    assert doc["cells"]["synthetic-ci/lf/plumbing"]["metrics"]["MAE"]["std"] is None
    assert json.loads((tmp_path / "G" / "grid.json").read_text())["cells"]["synthetic-ci/lf/plumbing"]["metrics"][
        "MAE"]["std"] is None
    assert "± n/a (n=1/2)" in md and (tmp_path / "G" / "grid.png").exists()
    assert "## Failed runs" in md and "bad data in this run" in md and "NaN loss" in md
    assert "FAILED: RuntimeError: bad data in this run" in capsys.readouterr().err


def test_run_one_turns_an_exception_into_a_failed_record(tmp_path, monkeypatch):
    spec = validate_spec(SPEC)
    from infoenh.train import trainer

    def boom(*a, **k):
        raise FloatingPointError("loss is NaN at epoch 1")

    monkeypatch.setattr(trainer, "fit", boom)
    rec = run_one(expand(spec)[0], spec, str(tmp_path))
    assert rec["status"] == "failed" and rec["error"] == "FloatingPointError: loss is NaN at epoch 1"
    assert "Traceback" in rec["traceback"]


def test_resume_after_the_driver_is_killed(tmp_path):
    """Kill `infoenh grid` after its first finished run; the next call reuses it and runs the rest."""
    spec_path = _write(tmp_path, SPEC)
    out = tmp_path / "G"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "infoenh", "grid", str(spec_path), "--out", str(out), "--executor",
                          "sequential", "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(out.glob("*/*/*/seed_*/run.json")):
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(10)
    finished = {str(q.parent.relative_to(out)) for q in out.glob("*/*/*/seed_*/run.json")}
    assert finished and not (out / "grid.json").exists()
    doc = run_grid(validate_spec(SPEC), out, executor="sequential")
    assert doc["summary"]["done"] == 8
    reused = {k for k, r in _by_key(doc).items() if r["reused"]}
    assert finished <= reused and len(reused) < 8


# ------------------------------------------------------------------------------------------ Ray

@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    import ray.cloudpickle

    # this module's run functions travel to the workers by value (tests/ is not on their path)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_local_ray_equals_sequential_run_for_run(tmp_path, local_ray):
    spec = validate_spec(SPEC)
    seq = run_grid(spec, tmp_path / "S", executor="sequential")
    par = run_grid(spec, tmp_path / "R", executor="ray")
    a, b = _by_key(seq), _by_key(par)
    assert sorted(a) == sorted(b) and len(a) == 8
    for k in a:
        assert b[k]["status"] == "done" and not b[k]["reused"]
        assert a[k]["test"] == b[k]["test"] and a[k]["best_epoch"] == b[k]["best_epoch"], k
    assert seq["cells"] == par["cells"] and seq["comparisons"] == par["comparisons"]
    assert len({r["worker"] for r in par["runs"]}) >= 1


def _die_once(run, spec, out):
    """Kill this worker process the first time this run is tried (a marker file remembers)."""
    if run.key == "synthetic-ci/lf/plumbing/seed_1111":
        marker = Path(out) / "killed-once"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
    return run_one(run, spec, out)


def test_a_killed_worker_has_its_run_retried_nothing_lost_or_duplicated(tmp_path, local_ray):
    spec = validate_spec(SPEC)
    out = tmp_path / "R"
    doc = run_grid(spec, out, executor="ray", run_fn=_die_once)
    assert (out / "killed-once").exists()
    keys = [r["key"] for r in doc["runs"]]
    assert len(keys) == len(set(keys)) == 8 and doc["summary"]["done"] == 8
    killed = _by_key(doc)["synthetic-ci/lf/plumbing/seed_1111"]
    assert killed["status"] == "done" and killed["worker"].split(":")[1] != (out / "killed-once").read_text()
    assert len(list(out.glob("*/*/*/seed_*/run.json"))) == 8


def test_a_run_whose_workers_keep_dying_is_a_failed_run(tmp_path, local_ray):
    spec = validate_spec({**SPEC, "hosts": ["lf"], "arms": ["baseline"], "seeds": [1111]})
    doc = run_grid(spec, tmp_path / "R", executor="ray", max_retries=0, run_fn=_always_die)
    assert doc["summary"] == {"runs": 1, "done": 0, "failed": 1}
    assert "died" in doc["failed"][0]["error"].lower() or "crash" in doc["failed"][0]["error"].lower()
    assert doc["cells"]["synthetic-ci/lf/baseline"]["status"] == "missing"


def _always_die(run, spec, out):
    os._exit(1)


def _die_mid_run(run, spec, out):
    """The first try of one run trains one epoch (checkpoint written), then its worker dies."""
    if run.key == "synthetic-ci/lf/plumbing/seed_1112":
        marker = Path(out) / "killed-mid-run"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            from infoenh.train.trainer import TrainingInterrupted, fit

            ds, _ = gridmod._data(spec, run.dataset)
            try:
                fit(ds, spec.config(run.host, run.arm, run.seed), run.folder(out), stop_after_epochs=1)
            except TrainingInterrupted:
                os._exit(1)
    return run_one(run, spec, out)


def test_a_worker_killed_mid_run_resumes_from_the_checkpoint_to_the_same_result(tmp_path, local_ray):
    from infoenh.train.checkpoint import load_checkpoint

    spec = validate_spec({**SPEC, "hosts": ["lf"], "options": {**SPEC["options"], "epochs": 2, "patience": 20}})
    seq = run_grid(spec, tmp_path / "S", executor="sequential")
    out = tmp_path / "R"
    par = run_grid(spec, out, executor="ray", run_fn=_die_mid_run)
    assert (out / "killed-mid-run").exists() and par["summary"]["done"] == 4
    key = "synthetic-ci/lf/plumbing/seed_1112"
    folder = out / "synthetic-ci/lf/plumbing/seed_1112"
    epochs = [json.loads(line)["epoch"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]                                       # epoch 1 not trained twice
    assert load_checkpoint(folder / "checkpoint.pt")["finished"]
    a, b = _by_key(seq), _by_key(par)
    for k in a:
        assert a[k]["test"] == b[k]["test"] and a[k]["best_epoch"] == b[k]["best_epoch"], k
    assert b[key]["worker"].split(":")[1] != (out / "killed-mid-run").read_text()


def _nan_on_seed_1112(run, spec, out):
    if run.seed == 1112:
        raise ValueError("NaN")
    return run_one(run, spec, out)


def test_the_command_exits_3_when_a_run_failed_and_0_when_every_run_is_done(tmp_path, capsys, monkeypatch):
    from infoenh.train import grid_exec

    spec = _write(tmp_path, {**SPEC, "hosts": ["lf"], "arms": ["baseline"]})
    monkeypatch.setattr(grid_exec, "run_one", _nan_on_seed_1112)
    assert main(["grid", str(spec), "--out", str(tmp_path / "G"), "--executor", "sequential"]) == 3
    captured = capsys.readouterr()
    assert "| lf | baseline |" in captured.out and "(n=1/2)" in captured.out and "ValueError: NaN" in captured.out
    monkeypatch.undo()
    assert main(["grid", str(spec), "--out", str(tmp_path / "G"), "--executor", "sequential", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    doc = json.loads((tmp_path / "G" / "grid.json").read_text())
    assert doc["summary"]["done"] == 2 and [r["reused"] for r in doc["runs"]] == [True, False]


def test_datasets_get_distinct_folder_labels(tmp_path):
    a, b = tmp_path / "MOSI" / "unaligned_50.pkl", tmp_path / "MOSEI" / "unaligned_50.pkl"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"")
    spec = validate_spec({**SPEC, "datasets": ["synthetic", str(a), str(b)]})
    assert list(spec.labels().values()) == ["synthetic-ci", "unaligned_50", "MOSEI-unaligned_50"]
    assert len({r.folder(tmp_path) for r in expand(spec)}) == 3 * 8


def test_tables_1_2_3_in_the_papers_layout(tmp_path):
    spec = validate_spec({**SPEC, "hosts": ["lf"], "arms": ["full", "no_text_full"]})
    doc = run_grid(spec, tmp_path / "G", executor="sequential")
    assert doc["summary"]["done"] == 12
    assert doc["tables"]["table1"]["arms"] == ["baseline", "full"]
    assert doc["tables"]["table2"]["arms"] == ["baseline", "plumbing", "full"]
    assert doc["tables"]["table3"]["arms"] == ["baseline", "no_text", "no_text_plumbing", "no_text_full"]
    md = (tmp_path / "G" / "grid.md").read_text()
    t1, t2, t3 = (md.index(f"## Table {i}") for i in (1, 2, 3))
    assert t1 < t2 < t3
    assert "| lf | full − baseline |" in md[t1:t2] and "full − plumbing" not in md[t1:t2]
    assert "| lf | full − plumbing |" in md[t2:t3] and "| lf | plumbing − baseline |" in md[t2:t3]
    assert "| lf | no_text − baseline |" in md[t3:] and "| lf | no_text_full − no_text_plumbing |" in md[t3:]
    c = doc["comparisons"]["synthetic-ci/lf/full vs baseline"]
    full, base = doc["cells"]["synthetic-ci/lf/full"], doc["cells"]["synthetic-ci/lf/baseline"]
    assert c["MAE"]["mean_diff"] == pytest.approx(full["metrics"]["MAE"]["mean"] - base["metrics"]["MAE"]["mean"])
    assert (tmp_path / "G" / "grid.png").exists()


def test_progress_lines_count_runs_and_give_an_eta():
    from infoenh.train.grid_exec import Progress

    lines = []
    p = Progress(4, lines.append)
    p.start -= 10.0                                   # as if 10 s had passed
    p.finished({"key": "a", "status": "done", "seconds": 1.0, "test": {"MAE": 1.0}}, running=2)
    p.finished({"key": "b", "status": "failed", "error": "ValueError: bad"}, running=1)
    assert lines[0].startswith("[1/4] a: done in 1.0s, test MAE 1.0000") and "ETA 30 s" in lines[0]
    assert "FAILED: ValueError: bad" in lines[1] and "(done 1, failed 1, running or queued 1, ETA 10 s)" in lines[1]
    assert p.summary(running=1) == "grid: 4 runs: 1 done, 1 running, 1 failed, 1 not run"
    # reused runs are left out of the pace; the clock starts at the first dispatch
    lines.clear()
    p = Progress(4, lines.append)
    p.finished({"key": "a", "status": "done", "reused": True, "seconds": 0.0}, running=3)
    assert "reused" in lines[0] and "ETA" not in lines[0]
    p.begin()
    p.start -= 10.0
    p.finished({"key": "b", "status": "done", "seconds": 10.0}, running=2)
    assert "ETA 20 s" in lines[1]


# ------------------------------------------------------------------- changed options, --fresh

def test_a_changed_option_stops_before_anything_runs_and_fresh_redoes_only_the_runs_that_differ(tmp_path, capsys):
    doc = {**SPEC, "hosts": ["lf"], "arms": ["plumbing"], "seeds": [1111]}
    out = tmp_path / "G"
    assert main(["grid", str(_write(tmp_path, doc)), "--out", str(out), "--executor", "sequential", "--quiet"]) == 0
    before = {n: (out / n).read_text() for n in ("grid.md", "grid.json", "grid_spec.json")}
    capsys.readouterr()
    changed = _write(tmp_path, {**doc, "options": {**doc["options"], "k": 5}}, "changed.yaml")
    assert main(["grid", str(changed), "--out", str(out), "--executor", "sequential", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "1 run folder(s)" in err and "synthetic-ci/lf/plumbing/seed_1111 (config.infoenh_kwargs.k: 4 -> 5)" in err
    assert "baseline" not in err                  # no InfoEnh: its options are not part of the run
    assert "--fresh" in err and "--out" in err
    assert {n: (out / n).read_text() for n in before} == before      # nothing written
    assert main(["grid", str(changed), "--out", str(out), "--executor", "sequential", "--quiet", "--fresh"]) == 0
    err = capsys.readouterr().err
    assert "deleting" in err and "plumbing" in err and "baseline/seed_1111" not in err
    runs = _by_key(json.loads((out / "grid.json").read_text()))
    assert runs["synthetic-ci/lf/baseline/seed_1111"]["reused"]
    assert not runs["synthetic-ci/lf/plumbing/seed_1111"]["reused"]
    assert Path(runs["synthetic-ci/lf/baseline/seed_1111"]["dir"]).is_absolute()


def test_runs_without_infoenh_do_not_carry_its_options():
    spec = validate_spec(SPEC)
    assert spec.config("lf", "baseline", 1).infoenh_kwargs == {}
    assert spec.config("lf", "plumbing", 1).infoenh_kwargs == {"k": 4, "d": 8, "ot_iters": 10}


def test_mismatch_message_shows_text_not_json_escapes():
    from infoenh.train.fingerprint import mismatch_error

    e = mismatch_error("checkpoint", "x/checkpoint.pt", {"data": {"content_sha256": "0f7be5ad5636" + "a" * 52}},
                       {"data": {"content_sha256": "9" * 64}})
    assert "0f7be5ad5636…" in str(e) and "\\u2026" not in str(e)


@pytest.mark.parametrize("name, text, needle", [
    ("bad.json", '{"datasets": [synthetic]}', "grid spec {}: not valid JSON"),
    ("empty.yaml", "", "grid spec {} is empty"),
    ("empty.yaml", "# nothing\n", "grid spec {} is empty"),
    ("empty.json", "  \n", "grid spec {} is empty"),
])
def test_unreadable_or_empty_spec_files_name_the_file(tmp_path, name, text, needle):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(GridSpecError) as e:
        load_spec(p)
    assert needle.format(p) in str(e.value)


def test_progress_names_added_references_and_counts_what_is_left(tmp_path):
    lines = []
    spec = validate_spec({**SPEC, "hosts": ["lf"], "arms": ["full"], "seeds": [1111]})
    run_grid(spec, tmp_path / "G", executor="sequential", log=lines.append,
             run_fn=lambda r, s, o: {"key": r.key, "status": "failed", "error": "x"})
    assert "+ baseline (reference of plumbing, full)" in lines[0] and "+ plumbing (reference of full)" in lines[0]
    assert "running or queued 2" in lines[1] and "running or queued 0" in lines[3]


def test_one_seed_grid_md_says_so_in_one_line_and_names_the_added_references(tmp_path):
    """Before: the full statistics paragraph ('from 1 seeds', 'Holm over the 0 ...'), two seed
    paragraphs, and no word in grid.md of the arms added as references."""
    spec = validate_spec({**SPEC, "hosts": ["lf"], "arms": ["full"], "seeds": [1111]})
    run_grid(spec, tmp_path / "G", executor="sequential", log=lambda s: None,
             run_fn=lambda r, s, o: {"key": r.key, "status": "failed", "error": "x"})
    md = (tmp_path / "G" / "grid.md").read_text()
    assert "1 seed: no paired test or interval." in md and "from 1 seeds" not in md and "Holm)" not in md
    assert md.count("Seeds:") == 1
    assert ("Arms added as references (not in the spec's arms): baseline (reference of plumbing, full); "
            "plumbing (reference of full).") in md
