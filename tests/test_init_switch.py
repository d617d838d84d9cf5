"""init="independent": the earlier, construction-order start, kept as a named switch so that chapter 8
can measure what the shared start (init="seeded", the default) changes in a paired comparison."""
import dataclasses

import pytest
import torch

from infoenh.data.synthetic import make_synthetic_splits
from infoenh.models import build_model
from infoenh.models.registry import MODELS, infoenh_config
from infoenh.train.arms import ARMS
from infoenh.train.config import TrainConfig
from infoenh.train.fingerprint import fingerprint_hash, run_fingerprint
from infoenh.train.provenance import options_changed
from infoenh.train.trainer import fit

DIMS = {"text": 24, "audio": 5, "vision": 20}
IE = {"d": 16, "k": 4}

pytestmark = pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning")


def _params(host, arm, init, seed=1111):
    torch.manual_seed(seed)
    m = build_model(host, DIMS, infoenh=ARMS[arm]["infoenh"], n_train=10, infoenh_kwargs=IE, init=init)
    return dict(m.named_parameters())


def _differ(a, b):
    """Names of the parameters both have, with the same shape, that start differently."""
    return [n for n in a if n in b and a[n].shape == b[n].shape and not torch.equal(a[n], b[n])]


@pytest.mark.parametrize("host", ["lf", "selfmm"])
def test_independent_starts_differ_where_seeded_starts_agree(host):
    seeded = {a: _params(host, a, "seeded") for a in ("plumbing", "fib")}
    indep = {a: _params(host, a, "independent") for a in ("plumbing", "fib")}
    # the host's own layers built after the gate start elsewhere without the shared start
    assert _differ(indep["plumbing"], indep["fib"])
    assert not [n for n in _differ(seeded["plumbing"], seeded["fib"]) if not n.endswith("bias")]


def test_independent_is_construction_order_from_the_global_generator():
    torch.manual_seed(7)
    old = MODELS["lf"](DIMS, infoenh=infoenh_config("fib_only", **IE))
    new = _params("lf", "fib", "independent", seed=7)
    assert all(torch.equal(p, new[n]) for n, p in old.named_parameters())
    with pytest.raises(ValueError, match="init must be one of seeded, independent"):
        build_model("lf", DIMS, init="random")
    with pytest.raises(ValueError, match="init_seed applies to init='seeded' only"):
        build_model("lf", DIMS, init="independent", init_seed=3)


def test_the_switch_is_an_option_of_the_run():
    with pytest.raises(ValueError, match="--init must be one of"):
        TrainConfig(init="random").resolved()
    ds = make_synthetic_splits(seed=0, sizes=(40, 16, 16), text_dim=16, text_len=10, audio_len=12, vision_len=12,
                               audio_neg_inf_frac=0.0)
    cfg = TrainConfig(model="lf", infoenh="fib_only", epochs=1, quiet=True, infoenh_kwargs={"d": 8, "k": 4})
    indep = dataclasses.replace(cfg, init="independent")
    # another start: another fingerprint (never reused for the other), listed among the options
    assert fingerprint_hash(run_fingerprint(cfg.resolved(), ds)) != fingerprint_hash(run_fingerprint(indep.resolved(), ds))
    assert options_changed(indep)["init"] == "independent" and "init" not in options_changed(cfg)
    a, b = fit(ds, cfg), fit(ds, indep)
    assert a["test"] != b["test"]
