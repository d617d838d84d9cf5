"""Numbers that do not depend on the arithmetic: under bf16 autocast the prediction, the losses,
model selection and the metrics are float32, and ``results.json`` says which precision ran."""
import pytest
import torch

from infoenh.data.synthetic import make_synthetic_splits
from infoenh.train.config import TrainConfig
from infoenh.train.trainer import autocast_for, fit, precision_label

pytestmark = pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning")


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """One thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def ds():
    return make_synthetic_splits(seed=1, sizes=(64, 24, 24), text_dim=16, text_len=10, audio_len=12, vision_len=12,
                                 audio_neg_inf_frac=0.0)


@pytest.mark.parametrize("model", ["lf", "selfmm"])
def test_bf16_and_fp32_runs_on_cpu_select_the_same_epoch(ds, model):
    kw = dict(model=model, epochs=5, patience=10, quiet=True, infoenh_kwargs={"d": 16, "k": 4, "ot_iters": 20})
    bf = fit(ds, TrainConfig(precision="bf16", **kw), None)
    fp = fit(ds, TrainConfig(precision="fp32", **kw), None)
    assert (bf["precision"], fp["precision"]) == ("bf16-mixed", "fp32")
    assert bf["best_epoch"] == fp["best_epoch"]
    assert bf["valid_loss"] == pytest.approx(fp["valid_loss"], rel=0.05)
    assert bf["test"]["MAE"] == pytest.approx(fp["test"]["MAE"], rel=0.05)
    # the encoders really ran in bf16 (the selection value is rounded to 4 decimals, as MMSA: compare
    # the unrounded losses)
    unrounded = lambda r: [h["valid_loss_batch_mean"] for h in r["history"]]  # noqa: E731
    assert unrounded(bf) != unrounded(fp)


def test_predictions_under_autocast_are_float32_not_rounded_bf16(ds):
    from infoenh.data import collate
    from infoenh.models import build_model

    torch.manual_seed(0)
    m = build_model("lf", ds.dims, infoenh="full", infoenh_kwargs={"d": 16, "k": 4}).eval()
    b = collate([ds["valid"][i] for i in range(16)])
    with autocast_for(torch.device("cpu"), "bf16"), torch.no_grad():
        pred = m(b).pred
    assert pred.dtype == torch.float32
    # bf16 keeps 8 significant bits: float32 predictions are not all on that grid
    assert not torch.equal(pred, pred.to(torch.bfloat16).float())


def test_precision_options():
    cpu = torch.device("cpu")
    assert TrainConfig(amp=False).resolved().precision == "fp32"
    assert TrainConfig(precision="auto").resolved().autocast is True
    assert precision_label(cpu, True) == "fp32" and precision_label(cpu, "bf16") == "bf16-mixed"
    assert precision_label(torch.device("cuda"), True) == "bf16-mixed"
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16").resolved()
