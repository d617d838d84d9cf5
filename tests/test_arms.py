"""The ablation arms: each InfoEnh arm differs from its plumbing control in the one thing it tests."""
import dataclasses

import pytest
import torch

from infoenh.models import build_model
from infoenh.models.registry import infoenh_config
from infoenh.train.arms import ARMS, arm_of, isolates, references, with_references
from infoenh.train.config import TrainConfig
from infoenh.train.arms import arm_config

DIMS = {"text": 12, "audio": 5, "vision": 7}


def _ie(arm):
    return infoenh_config(ARMS[arm]["infoenh"], d=8, k=4)


def test_plumbing_differs_from_fib_only_in_the_gate_and_its_loss_and_from_fia_only_in_fia():
    plumbing, fib, fia, full = _ie("plumbing"), _ie("fib"), _ie("fia"), _ie("full")
    diff = lambda a, b: {k for k in set(a) | set(b) if a.get(k, True) != b.get(k, True)}  # noqa: E731 (True = default)
    assert diff(plumbing, fib) == {"use_fib", "use_infonce"}
    assert diff(plumbing, fia) == {"use_fia"}
    assert diff(plumbing, full) == {"use_fib", "use_infonce", "use_fia"}
    assert infoenh_config("none") is None


def test_plumbing_has_the_same_parameters_as_fib_except_the_gate():
    torch.manual_seed(0)
    p = build_model("lf", DIMS, infoenh=_ie("plumbing"))
    f = build_model("lf", DIMS, infoenh=_ie("fib"))
    names_p = {n for n, _ in p.named_parameters()}
    names_f = {n for n, _ in f.named_parameters()}
    assert names_f - names_p == {f"infoenh.fib.{m}.gate.{w}" for m in DIMS for w in ("weight", "bias")}
    assert names_p <= names_f
    # the gate is fixed open: z is the top-k embedding e itself
    x = {m: torch.randn(3, 6, p.infoenh.in_dims[m]) for m in DIMS}   # encoder outputs
    out = p.infoenh(x)
    fibs = {m: p.infoenh.fib[m](x[m]) for m in DIMS}
    for m in DIMS:
        assert torch.equal(out.seqs[m], fibs[m].e)
        assert float(fibs[m].kept_frac) == 1.0


def test_references_and_what_they_isolate():
    assert references("baseline") == []
    assert references("plumbing") == ["baseline"]
    for a in ("fib", "fia", "full", "fia_uniform", "full_uniform"):
        assert references(a) == ["baseline", "plumbing"]
    # the uniform-plan controls are compared with when they run (on request)
    assert references("fia", ["baseline", "plumbing", "fia_uniform", "fia"]) == ["baseline", "plumbing", "fia_uniform"]
    assert references("full", list(ARMS)) == ["baseline", "plumbing", "full_uniform"]
    assert references("fia", ["fia"]) == ["baseline", "plumbing"]
    assert references("no_text") == ["baseline"]
    assert references("no_text_plumbing") == ["no_text", "baseline"]
    assert references("no_text_full") == ["no_text", "no_text_plumbing", "baseline"]
    assert with_references(["full"]) == ["baseline", "plumbing", "full"]
    assert with_references(["no_audio_full", "fib"]) == ["baseline", "no_audio", "no_audio_plumbing",
                                                         "no_audio_full", "plumbing", "fib"]
    assert "gate" in isolates("fib", "plumbing") and "alignment itself" in isolates("fia", "fia_uniform")
    assert "not the alignment alone" in isolates("fia", "plumbing")
    assert "context" in isolates("fia_uniform", "plumbing") and "alignment itself" in isolates("full", "full_uniform")
    assert "plumbing alone" in isolates("plumbing", "baseline")
    assert isolates("no_audio_full", "no_audio_plumbing").startswith("without audio: FIB and FIA")
    assert isolates("no_audio", "baseline") == "removing audio from the host"
    assert isolates("no_text_plumbing", "baseline") == ("InfoEnh's plumbing without text, against the baseline arm on "
                                                         "all three modalities")
    for a in ARMS:                        # every comparison has words
        for r in references(a):
            assert isolates(a, r)


def test_labels_do_not_repeat_the_arm_name():
    """Tables print "arm: label": "plumbing: plumbing (...)" read twice."""
    for name, spec in ARMS.items():
        assert not spec["label"].startswith(name), (name, spec["label"])
    assert ARMS["plumbing"]["label"] == "gate open, no InfoNCE, no FIA"
    assert ARMS["no_text_plumbing"]["label"] == "w/o text, gate open, no InfoNCE, no FIA"


@pytest.mark.parametrize("arm", list(ARMS))
def test_arm_of_inverts_arm_config(arm):
    c = arm_config(TrainConfig(model="lf"), arm)
    assert arm_of(c.infoenh, c.modalities) == arm
    assert ARMS[arm]["drop"] is None or ARMS[arm]["drop"] not in c.modalities


def test_arm_of_aliases_and_unnamed_configurations():
    assert arm_of("no_fia", ("text", "audio", "vision")) == "fib"
    assert arm_of("no_fib", ("text", "audio", "vision")) == "fia"
    assert arm_of("fib_only", ("audio",)) == "fib_only on audio"
    assert dataclasses.replace(TrainConfig(), infoenh="plumbing").resolved().infoenh == "plumbing"


@pytest.mark.parametrize("arm", ["fia_uniform", "full_uniform"])
def test_the_uniform_controls_refuse_feature_mode(arm):
    """In feature mode the uniform plan gives each row its own mean, nothing cross-modal, so the
    controls would not control for FIA: refused at resolution and by build_model, in one line."""
    base = TrainConfig(model="lf", infoenh_kwargs={"fia_mode": "feature"})
    with pytest.raises(ValueError, match="--fia-mode feature.*uniform plan.*--fia-mode token") as e:
        arm_config(base, arm).resolved()
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="fia_mode='feature'"):
        build_model("lf", {"text": 8, "audio": 5, "vision": 20}, infoenh=ARMS[arm]["infoenh"],
                    infoenh_kwargs={"fia_mode": "feature"})
    arm_config(base, "fia" if arm == "fia_uniform" else "full").resolved()      # FIA itself may use it
    arm_config(dataclasses.replace(base, infoenh_kwargs={"fia_mode": "token"}), arm).resolved()
