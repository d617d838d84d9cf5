"""BERT fine-tuned inside the hosts from MMSA's ``text_bert`` (a tiny randomly initialised BERT
saved to a temporary folder: no download)."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from infoenh.data import collate  # noqa: E402
from infoenh.data.synthetic import make_synthetic_splits  # noqa: E402
from infoenh.models import build_model  # noqa: E402
from infoenh.models.bert import BertText, resolve_text_mode, split_bert_groups  # noqa: E402
from infoenh.train.config import TrainConfig  # noqa: E402
from infoenh.train.trainer import TrainingInterrupted, _train_labels, fit, optimizer_groups  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning")
IE = {"d": 16, "k": 4, "ot_iters": 10}


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """One thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def ds():
    return make_synthetic_splits(seed=0, sizes=(32, 16, 16), text_dim=16, text_len=10, audio_len=12, vision_len=12,
                                 audio_neg_inf_frac=0.0)


def batch(ds, n=8):
    return collate([ds["train"][i] for i in range(n)])


def test_items_and_batches_carry_text_bert(ds):
    b = batch(ds)
    assert b["text_bert"].shape == (8, 3, 10) and b["text_bert"].dtype == torch.int64
    assert torch.equal(b["text_bert"][:, 1].bool(), b["text_mask"])


@pytest.mark.parametrize("host", ["lf", "selfmm", "misa"])
def test_finetuned_bert_replaces_the_text_features_and_gets_gradients(ds, tiny_bert, host):
    torch.manual_seed(0)
    m = build_model(host, ds.dims, infoenh="full", infoenh_kwargs=IE, n_train=len(ds["train"]),
                    text="finetune", bert=tiny_bert)
    assert m.dims["text"] == 32 and m.bert is not None
    m.init_from_train(*_train_labels(ds["train"]))
    b = batch(ds)
    m.train()
    out = m(b)
    loss, _ = m.training_loss(out, b, 1)
    loss.backward()
    grads = [p.grad for p in m.bert.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    # the text features of the file are not read any more: changing them changes nothing
    m.eval()
    with torch.no_grad():
        p1 = m(b).pred
        p2 = m({**b, "text": torch.randn_like(b["text"])}).pred
    assert torch.equal(p1, p2)


def test_bert_parameter_groups_follow_mmsa(ds, tiny_bert):
    m = build_model("selfmm", ds.dims, infoenh="none", n_train=len(ds["train"]), text="finetune", bert=tiny_bert)
    groups = {g["name"]: g for g in optimizer_groups(m, TrainConfig(model="selfmm").resolved())}
    assert groups["bert"]["lr"] == 5e-5 and groups["bert"]["weight_decay"] == 1e-3
    assert groups["bert_no_decay"]["weight_decay"] == 0.0
    assert groups["audio"]["lr"] == 5e-3 and groups["other"]["lr"] == 1e-3
    bert_ids = {id(p) for p in m.bert.parameters()}
    seen = [id(p) for g in groups.values() for p in g["params"]]
    assert len(seen) == len(set(seen)) == len(list(m.parameters()))          # each parameter once
    assert {id(p) for g in ("bert", "bert_no_decay") for p in groups[g]["params"]} == bert_ids
    misa = build_model("misa", ds.dims, infoenh="none", text="finetune", bert=tiny_bert)
    g = {g.get("name"): g for g in optimizer_groups(misa, TrainConfig(model="misa", bert_lr=2e-5).resolved())}
    assert g["bert"]["lr"] == 2e-5
    with pytest.raises(ValueError, match="--bert-lr"):
        TrainConfig(bert_lr=-1.0).resolved()
    assert split_bert_groups([{"params": list(m.bert.parameters())}], m.bert, 1e-5, 0.0)[0]["name"] == "bert"


def test_fit_finetunes_resumes_and_records_the_text_mode(ds, tiny_bert, tmp_path):
    c = TrainConfig(model="lf", text="finetune", bert=tiny_bert, epochs=3, patience=10, quiet=True,
                    infoenh_kwargs=IE)
    straight = fit(ds, c, tmp_path / "a")
    with pytest.raises(TrainingInterrupted):
        fit(ds, c, tmp_path / "b", stop_after_epochs=1)
    resumed = fit(ds, c, tmp_path / "b")
    assert resumed["test"] == straight["test"] and resumed["best_epoch"] == straight["best_epoch"]
    assert straight["text"] == f"BERT fine-tuned ({tiny_bert})"
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["fingerprint_doc"]["config"]["text"] == "finetune"


def test_auto_is_frozen_on_the_synthetic_testbed_and_finetune_needs_text_bert(ds, tiny_bert):
    assert resolve_text_mode("auto", True, synthetic=True) == "frozen"
    assert resolve_text_mode("auto", True, synthetic=False) == "finetune"
    assert resolve_text_mode("auto", False, synthetic=False) == "frozen"
    with pytest.raises(ValueError, match="text_bert"):
        resolve_text_mode("finetune", False, synthetic=False)
    r = fit(ds, TrainConfig(model="lf", epochs=1, quiet=True, infoenh_kwargs=IE), None)
    assert r["text"] == "frozen features"
    m = build_model("lf", ds.dims, infoenh="none", text="finetune", bert=tiny_bert)
    b = batch(ds)
    del b["text_bert"]
    with pytest.raises(KeyError, match="no 'text_bert'"):
        m(b)


def test_weights_that_cannot_be_fetched_say_so(tmp_path):
    with pytest.raises(OSError, match="could not load the BERT weights .*--text frozen"):
        BertText.load(str(tmp_path / "no-such-bert"))


def test_token_ids_outside_the_vocabulary_are_refused(tiny_bert):
    bert = BertText.load(tiny_bert)
    tb = torch.zeros(2, 3, 5, dtype=torch.long)
    tb[:, 0] = 40000
    with pytest.raises(ValueError, match="outside BERT's vocabulary"):
        bert(tb)


def test_synthetic_token_ids_carry_the_text_cue_and_a_finetuned_bert_learns_it(tiny_bert):
    """The testbed's text signal steps hold a 'sentiment token' for round(cue); BERT fine-tuned on
    text alone (no features) predicts clearly better than the training mean."""
    import numpy as np

    from infoenh.data.synthetic import SENTIMENT_TOKENS, make_synthetic

    raw = make_synthetic(seed=0, sizes=(40, 8, 8), text_dim=8, text_len=10, audio_len=6, vision_len=6)
    tr = raw["train"]
    steps = raw["synthetic"]["signal"]["train"]["text"]["steps"]
    toks = np.take_along_axis(tr["text_bert"][:, 0], steps, axis=1)
    assert np.isin(toks, SENTIMENT_TOKENS).all()
    assert np.corrcoef(toks[:, 0] - SENTIMENT_TOKENS[3], tr["regression_labels"])[0, 1] > 0.8

    ds = make_synthetic_splits(seed=0, sizes=(160, 48, 48), text_dim=8, text_len=12, audio_len=6, vision_len=6,
                               audio_neg_inf_frac=0.0)
    c = TrainConfig(model="lf", infoenh="none", modalities=("text",), text="finetune", bert=tiny_bert, bert_lr=2e-3,
                    epochs=8, patience=8, quiet=True)
    r = fit(ds, c, None)
    mean_mae = float(np.abs(ds["test"].labels - ds["train"].labels.mean()).mean())
    assert r["test"]["MAE"] < 0.8 * mean_mae, (r["test"]["MAE"], mean_mae)


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["HF_HUB_OFFLINE", "hub-unreachable"])
def test_missing_weights_without_a_network_fail_at_once(tmp_path, env):
    """Issue 22 (4): weights not cached and no network: one clear error at once, not the hub client's
    retries (before: 'Retrying in 8s [Retry 5/5]', about a minute)."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import infoenh

    clean = {k: v for k, v in os.environ.items()
             if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT") and "proxy" not in k.lower()}
    clean.update(env, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(Path(infoenh.__file__).resolve().parents[1]))
    code = ("from infoenh.models.bert import BertText\n"
            "try:\n    BertText.load('bert-base-uncased')\nexcept OSError as e:\n    print('ERROR:', e)\n")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert "ERROR: could not load the BERT weights 'bert-base-uncased'" in out.stdout, out.stdout + out.stderr
    assert "--text frozen" in out.stdout and "Retrying" not in out.stderr
    assert took < 15, took
