"""Defaults that reproduce MMSA: float32 unless bf16 is asked for, every split's batches shuffled
by seeded generators, cuDNN's deterministic mode on CUDA, MISA's missing-text arm reading the
frames its comparison arm reads."""
import argparse

import pytest
import torch

from infoenh.data import make_loaders
from infoenh.data.synthetic import make_synthetic_splits
from infoenh.models import build_model
from infoenh.models.encoders import StackedBiLSTM
from infoenh.train.config import TrainConfig
from infoenh.train.seeding import deterministic
from infoenh.train.trainer import fit

pytestmark = pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning")


@pytest.fixture(scope="module")
def toy():
    return make_synthetic_splits(seed=0, sizes=(40, 20, 20), text_dim=8, text_len=6, audio_len=9, vision_len=9,
                                 audio_neg_inf_frac=0.0)


def test_precision_default_is_fp32_on_every_device():
    c = TrainConfig().resolved()
    assert c.precision == "fp32" and c.autocast is False
    from infoenh.train.cli import _common

    p = argparse.ArgumentParser()
    _common(p)
    args = p.parse_args(["--data", "synthetic", "--model", "lf", "--out", "x"])
    assert args.precision == "fp32" and args.eval_order == "shuffled"
    assert TrainConfig(precision="bf16").resolved().autocast == "bf16"


def test_gpu_check_asks_for_bf16_and_fp32_explicitly():
    from pathlib import Path

    src = (Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py").read_text()
    assert 'for prec in ("fp32", "bf16")' in src and 'precision="bf16"' in src


def _order(loader):
    return [int(i) for b in loader for i in b["index"]]


def test_valid_and_test_are_shuffled_by_seeded_generators_by_default_in_training(toy):
    a = make_loaders(toy, batch_size=8, seed=3, eval_order="shuffled")
    b = make_loaders(toy, batch_size=8, seed=3, eval_order="shuffled")
    first = _order(a["valid"])
    assert sorted(first) == list(range(20)) and first != list(range(20))
    assert first == _order(b["valid"]) and _order(a["valid"]) != first      # seeded; a new order each epoch
    assert _order(make_loaders(toy, batch_size=8, seed=4, eval_order="shuffled")["valid"]) != first
    assert _order(make_loaders(toy, batch_size=8, seed=3)["valid"]) == list(range(20))   # the library's default
    assert _order(a["train"]) == _order(make_loaders(toy, batch_size=8, seed=3)["train"])  # train unchanged
    with pytest.raises(ValueError, match="--eval-order"):
        make_loaders(toy, eval_order="random")


def test_eval_order_reaches_selection_and_file_order_is_a_switch(toy):
    kw = dict(model="lf", infoenh="none", epochs=3, batch_size=8, quiet=True)
    shuffled = fit(toy, TrainConfig(**kw), None)
    again = fit(toy, TrainConfig(**kw), None)
    file = fit(toy, TrainConfig(eval_order="file", **kw), None)
    h = lambda r: [x["valid_loss_batch_mean"] for x in r["history"]]  # noqa: E731
    assert h(shuffled) == h(again)                                     # repeatable
    assert h(shuffled) != h(file)                                      # 20 = 8 + 8 + 4: the short batch differs
    # the per-sample mean does not depend on the order
    assert [x["valid_loss_sample_mean"] for x in shuffled["history"]] == pytest.approx(
        [x["valid_loss_sample_mean"] for x in file["history"]], rel=1e-6)
    assert shuffled["protocol"]["eval_order"] == "shuffled" and file["protocol"]["eval_order"] == "file"


def test_resume_restores_the_eval_generators(toy, tmp_path):
    from infoenh.train.trainer import TrainingInterrupted

    cfg = TrainConfig(model="lf", infoenh="none", epochs=3, batch_size=8, quiet=True, device="cpu")
    whole = fit(toy, cfg, tmp_path / "a")
    with pytest.raises(TrainingInterrupted):
        fit(toy, cfg, tmp_path / "b", stop_after_epochs=1)
    resumed = fit(toy, cfg, tmp_path / "b")
    assert [x["valid_loss_batch_mean"] for x in resumed["history"]] == [x["valid_loss_batch_mean"]
                                                                        for x in whole["history"]]
    assert resumed["test"] == whole["test"]


def test_cudnn_deterministic_is_set_and_restored(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    with deterministic(True, torch.device("cuda")):
        assert torch.backends.cudnn.deterministic is True and torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.deterministic is False and torch.backends.cudnn.benchmark is True
    with deterministic(False, torch.device("cuda")):
        assert torch.backends.cudnn.deterministic is False


def test_misa_no_text_reads_the_same_frames_as_baseline(toy, monkeypatch):
    """The LSTMs of MISA's no_text arm get the same masks (the text lengths) as baseline's."""
    from infoenh.data import collate

    seen = []
    real = StackedBiLSTM.forward
    monkeypatch.setattr(StackedBiLSTM, "forward", lambda self, x, mask: (seen.append(mask.clone()), real(self, x, mask))[1])
    batch = collate([toy["train"][i] for i in range(12)])
    # audio and vision's own masks differ from the text's lengths somewhere
    n_t = batch["text_mask"].sum(1)
    prefix = torch.arange(9)[None, :] < n_t[:, None]
    assert not torch.equal(prefix, batch["audio_mask"]) or not torch.equal(prefix, batch["vision_mask"])
    masks = {}
    for arm, mods in (("baseline", ("text", "audio", "vision")), ("no_text", ("audio", "vision"))):
        seen.clear()
        torch.manual_seed(0)
        build_model("misa", toy.dims, modalities=mods).eval()(batch)
        masks[arm] = [m for m in seen]
    assert len(masks["baseline"]) == len(masks["no_text"]) == 2               # audio, vision
    for a, b in zip(masks["baseline"], masks["no_text"]):
        assert torch.equal(a, b) and torch.equal(a, prefix)


def test_new_options_enter_the_fingerprint(toy):
    from infoenh.train.config import for_data
    from infoenh.train.fingerprint import fingerprint_diff, fingerprint_hash, run_fingerprint

    def fp(**kw):
        return run_fingerprint(for_data(TrainConfig(model="selfmm", **kw), toy).resolved(), toy)

    base = fp()
    for kw, key in ((dict(eval_order="file"), "config.eval_order"), (dict(settings_of="mosei"), "config.settings_of"),
                    (dict(group_lr={"vision": 1e-4}), "config.group_lr"), (dict(precision="bf16"), "config.precision"),
                    (dict(infoenh="fia_uniform"), "config.infoenh")):
        other = fp(**kw)
        assert fingerprint_hash(other) != fingerprint_hash(base)
        assert any(line.startswith(key) for line in fingerprint_diff(base, other)), (kw, fingerprint_diff(base, other))
    assert base["config"]["settings_of"] == "mosi"       # told from the (SYNTHETIC, MOSI-layout) data
