"""The measured thread default of ``infoenh train`` (infoenh/train/threads.py): candidates, the
choice of the fastest count, the run's header line and results.json. Nothing is timed against a
target: a fake step with known costs checks the choice."""
import json

import pytest
import torch

from infoenh.cli import main
from infoenh.train import threads

pytestmark = [pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning"),
              pytest.mark.usefixtures("restore_threads")]  # the CLI sets torch's thread count


def test_candidates_are_one_two_and_all_cores():
    assert threads.candidates(1) == [1]
    assert threads.candidates(2) == [1, 2]
    assert threads.candidates(16) == [1, 2, 16]
    assert threads.candidates()[0] == 1


def test_the_fastest_count_is_measured_and_torch_threads_are_restored(monkeypatch):
    torch.set_num_threads(1)
    seen = []

    def step():  # slow with 1 thread, fast with 2: what a timer must see
        seen.append(torch.get_num_threads())
        if torch.get_num_threads() == 1:
            sum(range(200_000))

    times = threads.time_per_thread_count(step, [1, 2], rounds=2)
    assert set(times) == {1, 2} and times[2] < times[1]
    assert seen == [1, 2, 1, 2, 2, 1]                   # a warm-up each, then interleaved, reversed
    assert torch.get_num_threads() == 1


def test_choose_threads_times_the_hosts_step_and_leaves_the_rng(monkeypatch):
    from infoenh.train.config import TrainConfig
    from infoenh.train.runner import load_data

    ds, _ = load_data("synthetic", scale="ci")
    cfg = TrainConfig(model="lf", batch_size=8, infoenh_kwargs=dict(k=4, d=8))
    state = torch.get_rng_state()
    doc = threads.choose_threads(ds, cfg, cores=2, rounds=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert doc["threads_chosen_by"] == "measured" and set(doc["threads_step_ms"]) == {"1", "2"}
    assert doc["threads"] == threads.pick({int(c): t for c, t in doc["threads_step_ms"].items()})
    line = threads.header_line(doc, 8)
    assert line.startswith(f"threads: {doc['threads']} (training step at batch size 8: 1 -> ")


def test_more_threads_only_when_clearly_faster():
    assert threads.pick({1: 10.0, 2: 9.0, 16: 8.5}) == 1            # 2 threads 1.11x faster: not enough
    assert threads.pick({1: 10.0, 2: 5.0, 16: 4.5}) == 2            # 16 only 1.11x faster than 2
    assert threads.pick({1: 10.0, 2: 5.0, 16: 2.0}) == 16
    assert threads.pick({1: 40.0, 2: 10.0}) == 2 and threads.pick({1: 10.0, 2: 40.0}) == 1
    assert threads.pick({1: 10.0}, margin=1.0) == 1


def test_train_without_threads_measures_prints_and_records(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(threads, "candidates", lambda cores=None: [1, 2])
    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--synthetic-scale", "ci", "--model", "lf", "--seeds", "1111",
                 "--epochs", "1", "--k", "4", "--d", "8", "--out", str(out)]) == 0
    cfg = json.loads((out / "results.json").read_text())["config"]
    assert cfg["threads_chosen_by"] == "measured" and cfg["threads"] in (1, 2)
    assert set(cfg["threads_step_ms"]) == {"1", "2"}
    assert f"threads: {cfg['threads']} (training step at batch size" in capsys.readouterr().out

    out1 = tmp_path / "given"
    assert main(["train", "--data", "synthetic", "--synthetic-scale", "ci", "--model", "lf", "--seeds", "1111",
                 "--epochs", "1", "--k", "4", "--d", "8", "--threads", "1", "--out", str(out1)]) == 0
    cfg1 = json.loads((out1 / "results.json").read_text())["config"]
    assert (cfg1["threads"], cfg1["threads_chosen_by"]) == (1, "--threads") and "threads_step_ms" not in cfg1
    assert "threads: 1 (--threads)" in capsys.readouterr().out
