"""infoenh grid against a hostile or careless user (issue 23): one data version per table, run
folders that stay under --out, bounded spec loading, every entry that fails at run time refused
before the first run, and a clean exit on SIGTERM. Every file these tests write is under tmp_path."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from infoenh.cli import main
from infoenh.train import grid as gridmod
from infoenh.train.grid import GridSpecError, expand, load_spec, run_one, validate_spec
from infoenh.train.grid_exec import run_grid
from infoenh.train.runner import SYNTHETIC_SCALES

pytestmark = [pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning"),
              pytest.mark.filterwarnings("ignore::infoenh.train.runner.ConvergenceWarning")]

SPEC = {"datasets": ["synthetic"], "synthetic_scale": "ci", "hosts": ["lf"], "arms": ["baseline"],
        "seeds": [1111, 1112], "n_boot": 200, "options": {"epochs": 1, "k": 4, "d": 8, "ot_iters": 10}}


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (see conftest.one_thread)."""


def _write(tmp_path, doc, name="spec.yaml"):
    import yaml

    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def _data_file(path, seed):
    from infoenh.data.synthetic import write_synthetic

    return write_synthetic(path, seed=seed, **SYNTHETIC_SCALES["ci"])


# ------------------------------------------------------------------ finding 1: one data version

def test_a_data_file_replaced_mid_grid_fails_the_later_runs_naming_both_hashes(tmp_path):
    """The file is replaced after the first run and the worker's cache dropped (a new worker):
    the later runs refuse to train on the new arrays, naming both hashes; no cell mixes them."""
    data = _data_file(tmp_path / "data" / "d.pkl", seed=0)
    spec = validate_spec({**SPEC, "datasets": [str(data)], "seeds": [1111, 1112, 1113]})
    calls = []

    def run_fn(run, spec_, out):
        if len(calls) == 1:
            _data_file(data, seed=1)           # the data file replaced while the grid runs
            gridmod._DATA_CACHE.clear()        # a fresh worker process loads it again
        calls.append(run.key)
        return run_one(run, spec_, out)

    doc = run_grid(spec, tmp_path / "G", executor="sequential", run_fn=run_fn)
    st = {r["key"].split("/")[-1]: r for r in doc["runs"]}
    assert st["seed_1111"]["status"] == "done"
    for s in ("seed_1112", "seed_1113"):
        assert st[s]["status"] == "failed"
        assert "sha256" in st[s]["error"] and "changed while the grid ran" in st[s]["error"]
    old, new = st["seed_1111"]["data_sha256"], st["seed_1112"]["error"]
    assert old[:16] in new                                             # both hashes named
    assert doc["summary"] == {"runs": 3, "done": 1, "failed": 2}
    cell = doc["cells"]["d/lf/baseline"]
    assert cell["status"] == "n=1/3" and cell["seeds"] == [1111]
    assert not (tmp_path / "G" / "d" / "lf" / "baseline" / "seed_1112" / "run.json").exists()


# ------------------------------------------------------------ findings 3-4: labels and folders

def test_a_dotted_data_name_never_gives_a_label_that_leaves_out(tmp_path):
    """A data file named '...pkl' had the label '..': runs landed beside --out."""
    (tmp_path / "x").mkdir()
    bad = tmp_path / "x" / "...pkl"
    _data_file(bad, seed=0)
    spec = validate_spec({**SPEC, "datasets": [str(bad)]})
    label = spec.labels()[str(bad.resolve())]
    assert label not in (".", "..", "") and "/" not in label and not label.startswith(".")
    out = tmp_path / "out" / "G"
    for run in expand(spec):
        folder = run.folder(out).resolve()
        assert out.resolve() in folder.parents


@pytest.mark.parametrize("name", ["a/b.pkl", "..pkl", "x y\n.pkl", "é.pkl"])
def test_labels_are_safe_path_components(tmp_path, name):
    labels = gridmod.dataset_labels([str(tmp_path / name)], None)
    (label,) = labels.values()
    assert label and label not in (".", "..") and "/" not in label and "\\" not in label
    assert not label.startswith(".") and all(c.isalnum() or c in "._-" for c in label)


def test_three_equal_stems_under_equal_parents_get_three_labels(tmp_path):
    """a/d/x.pkl, b/d/x.pkl, c/d/x.pkl gave x, d-x, d-x: records overwrote each other."""
    paths = [str(tmp_path / p / "d" / "x.pkl") for p in "abc"]
    labels = gridmod.dataset_labels(paths, None)
    assert len(set(labels.values())) == 3
    assert list(labels.values())[:2] == ["x", "d-x"]
    # a file named like the synthetic label does not take it
    labels = gridmod.dataset_labels([str(tmp_path / "synthetic-ci.pkl"), "synthetic"], "ci")
    assert len(set(labels.values())) == 2 and labels["synthetic"] == "synthetic-ci"


def test_a_run_folder_that_resolves_outside_out_stops_before_anything_is_written(tmp_path):
    """A symbolic link inside --out pointing elsewhere: nothing is written or deleted there."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    out = tmp_path / "G"
    out.mkdir()
    (out / "synthetic-ci").symlink_to(outside, target_is_directory=True)
    spec = validate_spec(SPEC)
    with pytest.raises(GridSpecError, match="outside --out"):
        run_grid(spec, out, executor="sequential", fresh=True)
    assert [p.name for p in outside.iterdir()] == ["keep.txt"]
    assert not (out / "grid.json").exists()


# --------------------------------------------------------- findings 5 and 9: bounded spec loading

@pytest.fixture
def time_bound():
    """Fail a test that runs past ``seconds`` (SIGALRM) instead of letting it hang."""
    def _raise(signum, frame):
        raise TimeoutError("ran past the time bound")

    old = signal.signal(signal.SIGALRM, _raise)

    def start(seconds):
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield start
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def _laughs(levels=9):
    text = 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n"
    return text


BASE = "datasets: [synthetic]\nhosts: [lf]\n"
HOSTILE = {
    "bomb.yaml": ("seeds: &s0 [1,1,1,1,1,1,1,1,1]\n" + _laughs().replace("a0:", "n0:").replace("a1:", "seeds:")
                  .replace("a2:", "n2:").replace("a3:", "n3:").replace("a4:", "n4:").replace("a5:", "n5:")
                  .replace("a6:", "n6:").replace("a7:", "n7:").replace("a8:", "n8:"),
                  "values once YAML aliases are expanded"),
    "deep.yaml": ("datasets: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 20 levels"),
    "deep.json": ('{"datasets": ' + "[" * 30000 + "]" * 30000 + "}", "nested deeper than 20 levels"),
    "big.yaml": (BASE + "seeds: [1]\n# " + "x" * 70000 + "\n", "a spec file has at most"),
    "latin1.yaml": (b"datasets: [synth\xe9tic]\n", "not UTF-8 text"),
    "bigint.yaml": (BASE + "seeds: [" + "9" * 5000 + "]\n", "not valid YAML"),
    "manyseeds.yaml": (BASE + "seeds: [" + ",".join(map(str, range(1001))) + "]\n", "at most 1000 are accepted"),
    "scale.yaml": (BASE + "seeds: [1]\nsynthetic_scale: [ci]\n", "unknown synthetic_scale ['ci']"),
    "seed63.yaml": (BASE + "seeds: [9223372036854775808]\n", "seeds must be integers from 0 to 2^63 - 1"),
    "negseed.yaml": (BASE + "seeds: [-1]\n", "seeds must be integers from 0 to 2^63 - 1"),
    "workers.yaml": (BASE + "seeds: [1]\noptions: {num_workers: -1}\n", "'options.num_workers' must be an integer"),
    "workers2.yaml": (BASE + "seeds: [1]\noptions: {num_workers: many}\n", "'options.num_workers' must be an integer"),
    "device.yaml": (BASE + "seeds: [1]\noptions: {device: 'cuda:abc'}\n", "'options.device' must be 'cpu', 'cuda'"),
    "iekw.yaml": (BASE + "seeds: [1]\noptions: {infoenh_kwargs: {regg: 0.1}}\n",
                  "unknown infoenh_kwargs key 'regg' in 'options'; did you mean 'reg'?"),
    "indims.yaml": (BASE + "seeds: [1]\noptions: {infoenh_kwargs: {in_dims: {text: 3}}}\n",
                    "in_dims is set from the host's encoders"),
    "ievalue.yaml": (BASE + "seeds: [1]\noptions: {infoenh_kwargs: {fia_mode: sideways}}\n", "fia-mode must be one of"),
    "long.yaml": (BASE + "seeds: [1]\noptions: {epochs: '" + "x" * 30000 + "'}\n", "--epochs must be an integer"),
    # InfoEnh's options are checked even when every arm is the host alone (the tables resolve them)
    "baseline_reg.yaml": (BASE + "seeds: [1]\narms: [baseline]\noptions: {reg: -1, epochs: 1}\n", "host lf: "),
    "baseline_k.yaml": (BASE + "seeds: [1]\narms: [baseline]\noptions: {k: abc, epochs: 1}\n", "host lf: "),
    "longkey.yaml": (BASE + "seeds: [1]\n" + "k" * 1000 + ": 1\n", "unknown key 'kkkk"),
    "longyaml.yaml": (BASE + "seeds: [1]\n" + "k" * 20000 + ": 1\n", "not valid YAML"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_specs_are_refused_fast_in_one_short_line_naming_the_file(tmp_path, capsys, time_bound, name):
    text, needle = HOSTILE[name]
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    time_bound(20)
    with pytest.raises(GridSpecError) as e:
        load_spec(p)
    msg = str(e.value)
    assert needle in msg and str(p) in msg and len(msg) < 700 and "\n" not in msg, msg[:300]
    out = tmp_path / "G"
    assert main(["grid", str(p), "--out", str(out), "--executor", "sequential"]) == 1
    err = capsys.readouterr().err
    assert needle in err and str(p) in err and err.count("\n") == 1 and len(err) < 800
    assert not out.exists()


def test_a_dataset_that_is_a_folder_is_refused_before_the_first_run(tmp_path):
    folder = tmp_path / "MOSI"
    folder.mkdir()
    with pytest.raises(GridSpecError, match="is a folder, not a data file"):
        validate_spec({**SPEC, "datasets": [str(folder)]})


# ------------------------------------------------------------------- finding 11: SIGTERM to the driver

@pytest.mark.parametrize("executor, sig", [("ray", signal.SIGTERM), ("ray", signal.SIGINT),
                                           ("sequential", signal.SIGTERM)])
def test_sigterm_to_the_driver_exits_cleanly_with_the_resume_hint(tmp_path, executor, sig):
    """SIGTERM to a Ray grid's driver printed native '*** SIGTERM received ***' frames and exited by
    SIGABRT; now: exit 130, the resume hint, the cancelled runs named, and a re-run resumes."""
    if executor == "ray":
        pytest.importorskip("ray")
    spec = {**SPEC, "seeds": [1111, 1112, 1113, 1114], "options": {**SPEC["options"], "epochs": 4}}
    spec_path = _write(tmp_path, spec)
    out = tmp_path / "G"
    err_path = tmp_path / "stderr.txt"
    # Ray's sockets need a short path (107 bytes at most): a temporary folder of its own, removed after
    short = tempfile.mkdtemp(prefix="i23r", dir="/tmp")
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "OMP_NUM_THREADS": "1",
           "RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": short, "RAY_TMPDIR": short}
    with open(err_path, "wb") as err:
        p = subprocess.Popen([sys.executable, "-m", "infoenh", "grid", str(spec_path), "--out", str(out), "--executor",
                              executor, "--num-cpus", "1"][: None if executor == "ray" else -2],
                             env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path)
        try:
            deadline = time.time() + 180
            while time.time() < deadline and not list(out.glob("*/*/*/seed_*/log.jsonl")):
                assert p.poll() is None, err_path.read_text()
                time.sleep(0.1)
            p.send_signal(sig)
            code = p.wait(120)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            shutil.rmtree(short, ignore_errors=True)
    text = err_path.read_text()
    assert code == 130, "\n".join(l for l in text.splitlines() if "infoenh" in l or "grid" in l or "Error" in l)[-3000:]
    assert "*** SIGTERM received" not in text and "*** SIGINT received" not in text
    assert "interrupted; re-run the same command" in text
    if executor == "ray":
        assert "unfinished run(s) on Ray: synthetic-ci/lf/baseline/seed_" in text
    assert not (out / "grid.json").exists()
