"""Each dataset's host settings are MMSA's, told from the data, overridable, and recorded.

The literal values below were copied by hand from MMSA's ``src/MMSA/config/config_regression.json``
(github.com/thuiar/MMSA, commit a94e65d07fa1ae0d44e552390074b29b0898edfd), ``self_mm`` and
``misa`` -> ``datasetParams`` -> ``mosi`` / ``mosei`` / ``sims``, in MMSA's own key names.
"""
import warnings

import pytest
import torch

from infoenh.data.synthetic import make_synthetic_splits
from infoenh.models import build_model
from infoenh.models.settings import HOST_SETTINGS, MMSA_CONFIG, detect_dataset, group_settings
from infoenh.train.config import TrainConfig, dataset_settings, for_data, host_kwargs
from infoenh.train.trainer import optimizer_groups

MMSA_SELF_MM = {
    "mosi": {"batch_size": 16, "learning_rate_bert": 5e-05, "learning_rate_audio": 0.005, "learning_rate_video": 0.005,
             "learning_rate_other": 0.001, "weight_decay_bert": 0.001, "weight_decay_audio": 0.001,
             "weight_decay_video": 0.001, "weight_decay_other": 0.001, "a_lstm_hidden_size": 16,
             "v_lstm_hidden_size": 32, "audio_out": 16, "video_out": 32, "a_lstm_dropout": 0.0, "v_lstm_dropout": 0.0,
             "post_fusion_dim": 128, "post_text_dim": 32, "post_audio_dim": 16, "post_video_dim": 32,
             "post_fusion_dropout": 0.0, "post_text_dropout": 0.1, "post_audio_dropout": 0.1,
             "post_video_dropout": 0.0, "H": 3.0},
    "mosei": {"batch_size": 32, "learning_rate_bert": 5e-05, "learning_rate_audio": 0.005,
              "learning_rate_video": 0.0001, "learning_rate_other": 0.001, "weight_decay_bert": 0.001,
              "weight_decay_audio": 0.0, "weight_decay_video": 0.0, "weight_decay_other": 0.01,
              "a_lstm_hidden_size": 16, "v_lstm_hidden_size": 32, "audio_out": 16, "video_out": 32,
              "a_lstm_dropout": 0.0, "v_lstm_dropout": 0.0, "post_fusion_dim": 128, "post_text_dim": 32,
              "post_audio_dim": 16, "post_video_dim": 32, "post_fusion_dropout": 0.1, "post_text_dropout": 0.0,
              "post_audio_dropout": 0.0, "post_video_dropout": 0.0, "H": 3.0},
    "sims": {"batch_size": 32, "learning_rate_bert": 5e-05, "learning_rate_audio": 0.005, "learning_rate_video": 0.005,
             "learning_rate_other": 0.001, "weight_decay_bert": 0.001, "weight_decay_audio": 0.01,
             "weight_decay_video": 0.01, "weight_decay_other": 0.001, "a_lstm_hidden_size": 16,
             "v_lstm_hidden_size": 64, "audio_out": 16, "video_out": 32, "a_lstm_dropout": 0.0, "v_lstm_dropout": 0.0,
             "post_fusion_dim": 128, "post_text_dim": 64, "post_audio_dim": 16, "post_video_dim": 32,
             "post_fusion_dropout": 0.0, "post_text_dropout": 0.1, "post_audio_dropout": 0.1,
             "post_video_dropout": 0.0, "H": 1.0},
}
MMSA_MISA = {   # weight_decay is listed by the config but MMSA's MISA trainer builds Adam without it
    "mosi": {"batch_size": 16, "learning_rate": 0.0001, "hidden_size": 128, "dropout": 0.2, "diff_weight": 0.1,
             "sim_weight": 0.3, "recon_weight": 1.0, "grad_clip": 0.8, "weight_decay": 0.0},
    "mosei": {"batch_size": 64, "learning_rate": 0.0001, "hidden_size": 128, "dropout": 0.5, "diff_weight": 0.3,
              "sim_weight": 0.8, "recon_weight": 1.0, "grad_clip": 0.8, "weight_decay": 5e-05},
    "sims": {"batch_size": 64, "learning_rate": 0.0001, "hidden_size": 128, "dropout": 0.0, "diff_weight": 0.3,
             "sim_weight": 1.0, "recon_weight": 0.8, "grad_clip": 1.0, "weight_decay": 5e-05},
}
# MMSA key -> this project's Self-MM keyword
SELF_MM_KEYS = {"a_lstm_hidden_size": "a_lstm_hidden", "v_lstm_hidden_size": "v_lstm_hidden"}
GROUPS = {"bert": "bert", "audio": "audio", "video": "vision", "other": "other"}


def test_the_source_is_named():
    assert "thuiar/MMSA" in MMSA_CONFIG and "config_regression.json" in MMSA_CONFIG and "a94e65d" in MMSA_CONFIG


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "sims"])
def test_selfmm_settings_are_mmsas(dataset):
    mmsa, ours = MMSA_SELF_MM[dataset], HOST_SETTINGS["selfmm"][dataset]
    assert ours["batch_size"] == mmsa["batch_size"]
    for g, name in GROUPS.items():
        assert ours["lr"][name] == mmsa[f"learning_rate_{g}"]
        assert ours["weight_decay"][name] == mmsa[f"weight_decay_{g}"]
    model = {k: v for k, v in mmsa.items() if not k.startswith(("learning_rate", "weight_decay", "batch_size"))}
    assert ours["model"] == {SELF_MM_KEYS.get(k, k): v for k, v in model.items()}


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "sims"])
def test_misa_settings_are_mmsas(dataset):
    mmsa, ours = MMSA_MISA[dataset], HOST_SETTINGS["misa"][dataset]
    assert (ours["batch_size"], ours["grad_clip"]) == (mmsa["batch_size"], mmsa["grad_clip"])
    assert ours["lr"] == {"bert": mmsa["learning_rate"], "other": mmsa["learning_rate"]}
    assert ours["weight_decay"] == {"bert": 0.0, "other": 0.0}          # never reaches MMSA's optimiser
    assert ours["model"] == {k: mmsa[k] for k in ("hidden_size", "dropout", "diff_weight", "sim_weight",
                                                   "recon_weight")}


def test_mosi_settings_are_the_hosts_defaults():
    from infoenh.train.fingerprint import host_defaults

    for host in ("selfmm", "misa"):
        d = host_defaults(host)
        assert all(d[k] == v for k, v in HOST_SETTINGS[host]["mosi"]["model"].items()), host
    from infoenh.models.registry import TRAIN_DEFAULTS

    assert HOST_SETTINGS["misa"]["mosi"]["grad_clip"] == TRAIN_DEFAULTS["misa"]["grad_clip"]


class _Data(dict):
    def __init__(self, meta, dims, synthetic=False):
        super().__init__()
        self.meta, self.dims, self.synthetic = meta, dims, synthetic


def test_the_dataset_is_told_from_the_data():
    mosi_w, mosei_w = {"text": 768, "audio": 5, "vision": 20}, {"text": 768, "audio": 74, "vision": 35}
    assert detect_dataset(_Data({}, mosi_w, synthetic=True))[0] == "mosi"
    assert detect_dataset(_Data({"known_as": "MOSEI/Processed/unaligned_50.pkl"}, mosi_w))[0] == "mosei"
    assert detect_dataset(_Data({"path": "/d/MOSEI/Processed/x.pkl"}, mosi_w))[0] == "mosei"
    assert detect_dataset(_Data({"path": "/d/mine.pkl"}, mosei_w)) == ("mosei", "audio/vision widths 74/35")
    assert detect_dataset(_Data({"path": "/d/mine.pkl"}, {"text": 8, "audio": 3, "vision": 3}))[0] == "mosi"
    cfg = for_data(TrainConfig(model="selfmm"), _Data({"path": "/d/mine.pkl"}, mosei_w))
    assert cfg.settings_of == "mosei" and for_data(TrainConfig(model="selfmm", settings_of="sims"), _Data({}, mosei_w)).settings_of == "sims"


def test_mosei_settings_reach_the_batch_size_the_host_and_the_optimiser():
    c = TrainConfig(model="selfmm", settings_of="mosei").resolved()
    assert c.batch_size == 32 and TrainConfig(model="selfmm").resolved().batch_size == 16
    assert host_kwargs(c)["post_fusion_dropout"] == 0.1
    torch.manual_seed(0)
    m = build_model("selfmm", {"text": 8, "audio": 74, "vision": 35}, n_train=4, **host_kwargs(c))
    assert m.fusion_head.drop.p == 0.1
    g = {x["name"]: x for x in optimizer_groups(m, c)}
    assert (g["vision"]["lr"], g["vision"]["weight_decay"]) == (1e-4, 0.0)
    assert (g["audio"]["lr"], g["audio"]["weight_decay"]) == (5e-3, 0.0)
    assert (g["other"]["lr"], g["other"]["weight_decay"]) == (1e-3, 0.01)
    m2 = TrainConfig(model="misa", settings_of="mosei").resolved()
    assert (m2.batch_size, m2.grad_clip) == (64, 0.8) and host_kwargs(m2)["sim_weight"] == 0.8


def test_overrides_per_group_and_errors():
    rates, decays = group_settings("selfmm", "mosei", lr=2e-3, group_lr={"vision": 3e-4},
                                   group_weight_decay={"other": 0.0})
    assert rates == {"bert": 5e-5, "audio": 2e-3, "vision": 3e-4, "other": 2e-3}
    assert decays == {"bert": 1e-3, "audio": 0.0, "vision": 0.0, "other": 0.0}
    assert TrainConfig(model="misa", settings_of="mosei", batch_size=8).resolved().batch_size == 8
    with pytest.raises(ValueError, match="no parameter group 'video'"):
        TrainConfig(model="selfmm", group_lr={"video": 1e-4}).resolved()
    with pytest.raises(ValueError, match="--settings-of"):
        TrainConfig(settings_of="iemocap").resolved()
    with pytest.raises(ValueError, match="--group-lr"):
        TrainConfig(model="selfmm", group_lr={"vision": -1.0}).resolved()


def test_results_record_the_dataset_settings(tmp_path):
    from infoenh.train.runner import train_seeds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_synthetic_splits(seed=0, sizes=(80, 16, 16), text_dim=8, text_len=6, audio_len=6, vision_len=6,
                                   audio_neg_inf_frac=0.0)
        doc = train_seeds(ds, TrainConfig(model="selfmm", epochs=1, quiet=True, infoenh="none",
                                          group_lr={"vision": 1e-4}), [1111], tmp_path, log=lambda s: None)
    s = doc["config"]["dataset_settings"]
    assert s["dataset"] == "mosi" and "SYNTHETIC" in s["told_from"] and "MMSA" in s["source"]
    assert s["batch_size"] == 16 and s["lr"]["vision"] == 1e-4 and s["lr"]["audio"] == 5e-3
    assert doc["config"]["host_settings"]["post_text_dropout"] == 0.1
    assert doc["config"]["dataset"] and doc["runs"][0]["n_params"] > 0
    assert dataset_settings(for_data(TrainConfig(model="lf"), ds).resolved(), ds)["source"].startswith("this project")


def test_the_cli_takes_dataset_and_group_flags():
    import argparse

    from infoenh.train.cli import _common, _config

    p = argparse.ArgumentParser()
    _common(p)
    args = p.parse_args(["--data", "x", "--model", "selfmm", "--out", "o", "--settings-of", "mosei", "--group-lr",
                         "vision=1e-4", "--group-weight-decay", "other=0"])
    c = _config(args, "full").resolved()
    assert (c.settings_of, c.group_lr, c.group_weight_decay, c.batch_size) == ("mosei", {"vision": 1e-4}, {"other": 0.0}, 32)
    bad = p.parse_args(["--data", "x", "--model", "selfmm", "--out", "o", "--group-lr", "vision"])
    with pytest.raises(ValueError, match="GROUP=VALUE"):
        _config(bad, "full")


def test_grid_specs_set_host_options_per_dataset(tmp_path):
    from infoenh.train.grid import GridSpecError, validate_spec

    mosei = tmp_path / "MOSEI" / "unaligned_50.pkl"
    mosei.parent.mkdir()
    mosei.write_bytes(b"")
    spec = validate_spec({"datasets": ["synthetic", str(mosei)], "hosts": ["selfmm", "misa"], "arms": ["baseline"],
                          "seeds": [1], "options": {"epochs": 1},
                          "dataset_options": {str(mosei): {"selfmm": {"group_lr": {"vision": 2e-4}}}}})
    key = str(mosei.resolve())
    assert spec.config("selfmm", "baseline", 1, key).group_lr == {"vision": 2e-4}
    assert spec.config("selfmm", "baseline", 1, "synthetic").group_lr == {}
    assert spec.config("misa", "baseline", 1, key).group_lr == {}
    with pytest.raises(GridSpecError, match="not in datasets"):
        validate_spec({"datasets": ["synthetic"], "hosts": ["lf"], "seeds": [1],
                       "dataset_options": {"mosei.pkl": {"lf": {"epochs": 2}}}})
    with pytest.raises(GridSpecError, match="dataset synthetic"):
        validate_spec({"datasets": ["synthetic"], "hosts": ["selfmm"], "seeds": [1],
                       "dataset_options": {"synthetic": {"selfmm": {"group_lr": {"video": 1e-4}}}}})


# MMSA's config_regression.json: datasetParams.<dataset>.pretrained, the same for self_mm and misa
MMSA_PRETRAINED = {"mosi": "bert-base-uncased", "mosei": "bert-base-uncased", "sims": "bert-base-chinese"}


@pytest.mark.parametrize("host", ["selfmm", "misa"])
def test_each_dataset_records_mmsas_bert(host):
    assert {d: HOST_SETTINGS[host][d]["pretrained"] for d in MMSA_PRETRAINED} == MMSA_PRETRAINED


@pytest.mark.parametrize("host", ["lf", "selfmm", "misa"])
def test_sims_is_refused_whether_requested_or_detected(host):
    """SIMS needs a Chinese BERT and MMSA's SIMS metrics, neither of which is here: refused in one
    line that says why and what works, whether --settings-of asked for it or the data told it."""
    with pytest.raises(ValueError, match=r"bert-base-chinese.*eval_sims_regression.*MOSI or MOSEI") as e:
        TrainConfig(model=host, settings_of="sims").resolved()
    assert "\n" not in str(e.value)
    sims = _Data({"path": "/d/mine.pkl"}, {"text": 768, "audio": 33, "vision": 709})
    with pytest.raises(ValueError, match="bert-base-chinese"):
        for_data(TrainConfig(model=host), sims).resolved()
    for other in ("mosi", "mosei"):
        TrainConfig(model=host, settings_of=other).resolved()


def test_misa_refuses_a_bert_group_rate_and_records_the_bert_rate_it_applies(tiny_bert):
    """MISA trains BERT at its 'other' rate (MMSA's one optimiser): ``--group-lr bert=`` is refused
    (pointing to --bert-lr) and the rate recorded for BERT is the one its optimiser group gets,
    ``--lr`` included."""
    with pytest.raises(ValueError, match="--bert-lr"):
        TrainConfig(model="misa", group_lr={"bert": 1e-5}).resolved()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_synthetic_splits(seed=0, sizes=(16, 8, 8), text_dim=8, text_len=6, audio_len=6, vision_len=6,
                                   audio_neg_inf_frac=0.0)
    m = build_model("misa", ds.dims, infoenh="none", text="finetune", bert=tiny_bert)
    for given, want in (({"lr": 3e-4}, 3e-4), ({"group_lr": {"other": 2e-4}}, 2e-4), ({"lr": 3e-4, "bert_lr": 2e-5}, 2e-5),
                        ({}, 1e-4)):
        c = for_data(TrainConfig(model="misa", **given), ds).resolved()
        applied = {g["name"]: g["lr"] for g in optimizer_groups(m, c)}
        recorded = dataset_settings(c, ds)["lr"]
        assert applied["bert"] == recorded["bert"] == want, given
    # Self-MM keeps its own BERT group: --lr leaves it, --group-lr bert= sets it
    c = TrainConfig(model="selfmm", lr=3e-4, group_lr={"bert": 1e-5}).resolved()
    assert group_settings("selfmm", None, lr=c.lr, group_lr=c.group_lr)[0]["bert"] == 1e-5
