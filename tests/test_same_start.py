"""Ablation arms differ in one thing only: the same start for the same seed, FIA's uniform-plan
control of the same shape, parameter counts that differ only in the part under test."""
import itertools

import pytest
import torch

from infoenh.fia import align_stacked, fia
from infoenh.models import build_model
from infoenh.models.init import module_seed, seeded_init
from infoenh.train.arms import ARMS

DIMS = {"text": 24, "audio": 5, "vision": 20}
ARM_NAMES = ("baseline", "plumbing", "fib", "fia", "fia_uniform", "full", "full_uniform")
IE = {"d": 16, "k": 4}


def _build(host, arm, seed=1111, **kw):
    torch.manual_seed(seed)
    return build_model(host, DIMS, infoenh=ARMS[arm]["infoenh"], n_train=10, infoenh_kwargs=IE, **kw)


def _modules(model):
    """path -> {parameter name: tensor} of every module that holds parameters of its own."""
    out = {}
    for path, mod in model.named_modules():
        own = dict(mod.named_parameters(recurse=False))
        if own:
            out[path] = own
    return out


def _shared_modules(a, b):
    """Modules present in both models with the same parameter names and shapes: the parts two
    arms share. (A Linear whose input is wider in one arm is not shared: PyTorch's default
    initialisation of its bias, too, depends on its input width.)"""
    ma, mb = _modules(a), _modules(b)
    return [p for p in ma if p in mb and {n: t.shape for n, t in ma[p].items()} == {n: t.shape for n, t in mb[p].items()}]


@pytest.mark.parametrize("host", ["lf", "selfmm", "misa"])
def test_every_pair_of_arms_starts_every_shared_module_alike(host):
    models = {a: _build(host, a) for a in ARM_NAMES}
    for a, b in itertools.combinations(ARM_NAMES, 2):
        shared = _shared_modules(models[a], models[b])
        assert shared, (a, b)
        pa, pb = _modules(models[a]), _modules(models[b])
        for path in shared:
            for name, t in pa[path].items():
                assert torch.equal(t, pb[path][name]), f"{host}: {a} vs {b}: {path}.{name} starts differently"
    # every parameter of the smaller arm that matches by name and shape is in a shared module, except
    # the biases of the layers FIA widens
    for a, b in itertools.combinations(ARM_NAMES, 2):
        pa, pb = dict(models[a].named_parameters()), dict(models[b].named_parameters())
        shared = {f"{p}.{n}" if p else n for p in _shared_modules(models[a], models[b]) for n in _modules(models[a])[p]}
        loose = [n for n in pa if n in pb and pa[n].shape == pb[n].shape and n not in shared]
        assert all(n.endswith("bias") for n in loose), (a, b, loose)


def test_other_seeds_other_starts_and_the_global_state_is_left_as_after_one_draw():
    a, b = _build("selfmm", "full", 1111), _build("selfmm", "full", 1112)
    assert not torch.equal(a.fusion_head.l1.weight, b.fusion_head.l1.weight)
    states = []
    for arm in ("baseline", "full"):
        torch.manual_seed(5)
        build_model("misa", DIMS, infoenh=ARMS[arm]["infoenh"], infoenh_kwargs=IE)
        states.append(torch.rand(3))                  # what training draws next (dropout, ...)
    assert torch.equal(states[0], states[1])


def test_init_keeps_each_layers_default_distribution():
    """seeded_init calls each module's own reset_parameters: the ranges are PyTorch's defaults
    (Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias; LayerNorm: ones and zeros;
    attention: zero in-projection and out-projection biases)."""
    m = _build("misa", "full")
    lin = m.fusion[0]
    bound = 1 / lin.in_features ** 0.5
    top = float(lin.bias.detach().abs().max())
    assert 0.5 * bound < top <= bound
    ln = m.project["text"][2]
    assert torch.equal(ln.weight, torch.ones_like(ln.weight)) and torch.equal(ln.bias, torch.zeros_like(ln.bias))
    att = m.transformer.layers[0].self_attn
    assert not att.in_proj_bias.any() and not att.out_proj.bias.any()
    # the same as the module's own reset_parameters under the derived seed
    fresh = torch.nn.Linear(lin.in_features, lin.out_features)
    seeded_init(torch.nn.ModuleDict({"fusion": torch.nn.ModuleList([fresh])}), 0)
    torch.manual_seed(module_seed(0, "fusion.0"))
    ref = torch.nn.Linear(lin.in_features, lin.out_features)
    assert torch.equal(fresh.weight, ref.weight) and torch.equal(fresh.bias, ref.bias)


def test_pretrained_weights_are_never_redrawn():
    class Host(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = torch.nn.Linear(3, 3)
            self.head = torch.nn.Linear(3, 1)

    h = Host()
    before = h.bert.weight.clone()
    seeded_init(h, 1)
    assert torch.equal(h.bert.weight, before)


def test_a_module_with_parameters_and_no_initialiser_is_refused():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))

    with pytest.raises(TypeError, match="reset_parameters"):
        seeded_init(torch.nn.ModuleDict({"odd": Odd()}), 0)


# ----------------------------------------------------------------------- parameter counts

def _count(model):
    return sum(p.numel() for p in model.parameters())


def _names(model):
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


@pytest.mark.parametrize("host", ["lf", "selfmm", "misa"])
def test_a_control_and_its_arm_differ_only_in_the_part_under_test(host):
    m = {a: _build(host, a) for a in ARM_NAMES}
    gate = {f"infoenh.fib.{x}.gate.{w}" for x in DIMS for w in ("weight", "bias")}
    # uniform-plan controls: exactly the same parameters as the arm they control
    assert _names(m["fia"]) == _names(m["fia_uniform"]) and _count(m["fia"]) == _count(m["fia_uniform"])
    assert _names(m["full"]) == _names(m["full_uniform"]) and _count(m["full"]) == _count(m["full_uniform"])
    # fib vs plumbing: the gate only
    assert set(_names(m["fib"])) - set(_names(m["plumbing"])) == gate
    assert {n: s for n, s in _names(m["fib"]).items() if n not in gate} == _names(m["plumbing"])
    d = IE["d"]
    assert _count(m["fib"]) - _count(m["plumbing"]) == len(DIMS) * (d * d + d)
    # fia_uniform vs plumbing: the same names; only the layers that read FIA's 3d-wide rows are wider
    assert set(_names(m["fia_uniform"])) == set(_names(m["plumbing"]))
    wider = {n for n, s in _names(m["fia_uniform"]).items() if s != _names(m["plumbing"])[n]}
    assert wider and all(_names(m["fia_uniform"])[n][-1] == 3 * _names(m["plumbing"])[n][-1]
                         for n in wider if n.endswith("weight"))


def test_results_record_the_parameter_count():
    from infoenh.data.synthetic import make_synthetic_splits
    from infoenh.train.config import TrainConfig
    from infoenh.train.trainer import fit

    ds = make_synthetic_splits(seed=0, sizes=(32, 16, 16), text_dim=8, text_len=6, audio_len=6, vision_len=6,
                               audio_neg_inf_frac=0.0)
    r = fit(ds, TrainConfig(model="lf", infoenh="fia_uniform", epochs=1, quiet=True, infoenh_kwargs=IE), None)
    torch.manual_seed(0)
    ref = build_model("lf", ds.dims, infoenh="fia_uniform", infoenh_kwargs=IE)
    assert r["n_params"] == _count(ref)


# ----------------------------------------------------------------------- the uniform plan

def test_uniform_plan_gives_each_real_token_the_other_modalitys_mean():
    g = torch.Generator().manual_seed(0)
    feats = {m: torch.randn(2, 5, 3, generator=g) for m in ("text", "audio")}
    masks = {"text": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool),
             "audio": torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)}
    F = torch.stack([feats[m] * masks[m].unsqueeze(-1) for m in ("text", "audio")], 1)
    R = torch.stack([masks[m] for m in ("text", "audio")], 1)
    out = align_stacked(F, R, ["text", "audio"], reg=0.1, mode="token", max_iter=10, tol=1e-6, stop="marginal",
                        detach_plan=False, symmetric=True, plan="uniform")
    E = out.enhanced["text"]                                            # [B, k, 2d]
    for b in range(2):
        mean_a = feats["audio"][b][masks["audio"][b]].mean(0)
        for r in range(5):
            want = mean_a if masks["text"][b, r] else torch.zeros(3)
            torch.testing.assert_close(E[b, r, 3:], want)
    assert bool(out.converged.all()) and not out.n_iter.any()
    # the same widths as Sinkhorn's plan
    ot = fia(feats, masks)
    assert ot.enhanced["text"].shape == E.shape


def test_fia_uniform_gives_no_gradient_through_a_plan_and_differs_from_fia():
    a, b = _build("lf", "fia"), _build("lf", "fia_uniform")
    b.load_state_dict(a.state_dict())
    assert b.infoenh.fia_plan == "uniform" and a.infoenh.fia_plan == "sinkhorn"
    g = torch.Generator().manual_seed(1)
    batch = {m: torch.randn(3, 7, d, generator=g) for m, d in DIMS.items()}
    batch.update({f"{m}_mask": torch.ones(3, 7, dtype=torch.bool) for m in DIMS})
    a.eval(), b.eval()
    with torch.no_grad():
        assert not torch.allclose(a(batch).pred, b(batch).pred)


def test_build_model_keeps_berts_pretrained_weights_and_the_same_start_across_arms(tiny_bert):
    """The seeded initialisation never re-draws a fine-tuned BERT's pretrained weights; the host's
    own modules still start alike in two arms."""
    from infoenh.models.bert import BertText

    saved = BertText.load(tiny_bert).state_dict()
    models = {}
    for variant in ("none", "full"):
        torch.manual_seed(3)
        models[variant] = build_model("selfmm", {"text": 32, "audio": 5, "vision": 20}, infoenh=variant, n_train=4,
                                      infoenh_kwargs={"d": 8, "k": 4}, text="finetune", bert=tiny_bert)
        for k, v in models[variant].bert.state_dict().items():
            assert torch.equal(v, saved[k]), k
    a, b = (dict(m.named_parameters()) for m in models.values())
    assert torch.equal(a["encoders.audio.rnn.weight_ih_l0"], b["encoders.audio.rnn.weight_ih_l0"])


def test_ablation_json_gives_each_arms_parameter_count(tmp_path):
    from infoenh.data.synthetic import make_synthetic_splits
    from infoenh.train.ablate import run_ablation
    from infoenh.train.config import TrainConfig

    ds = make_synthetic_splits(seed=0, sizes=(32, 16, 16), text_dim=8, text_len=6, audio_len=6, vision_len=6,
                               audio_neg_inf_frac=0.0)
    base = TrainConfig(model="lf", epochs=1, quiet=True, infoenh_kwargs=IE)
    doc = run_ablation(ds, base, ["fia", "fia_uniform"], [1111, 1112], tmp_path, n_boot=50)
    n = {a: doc["arms"][a]["n_params"] for a in doc["arms"]}
    assert n["fia"] == n["fia_uniform"] > n["plumbing"] and n["baseline"] > 0
    assert all(r["n_params"] == n["fia"] for r in doc["arms"]["fia"]["runs"])
    assert "fia vs fia_uniform" in doc["comparisons"]
    assert "alignment itself" in doc["comparisons"]["fia vs fia_uniform"]["isolates"]


def test_fit_starts_from_the_runs_seed_whatever_was_drawn_before(monkeypatch):
    """fit passes the run's seed as init_seed: a draw from the global generator before the model is
    built (an older transformers drawing while loading BERT) leaves the start unchanged."""
    import warnings

    from infoenh.data.synthetic import make_synthetic_splits
    from infoenh.train import trainer
    from infoenh.train.config import TrainConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_synthetic_splits(seed=0, sizes=(80, 8, 8), text_dim=8, text_len=6, audio_len=6, vision_len=6,
                                   audio_neg_inf_frac=0.0)

    class Built(Exception):
        pass

    starts = []
    real = trainer.build_model
    for draws in (0, 5):
        def build(*a, _n=draws, **kw):
            torch.rand(_n)                        # what a library might draw while loading
            starts.append({k: v.clone() for k, v in real(*a, **kw).state_dict().items()})
            raise Built
        monkeypatch.setattr(trainer, "build_model", build)
        with pytest.raises(Built):
            trainer.fit(ds, TrainConfig(model="selfmm", infoenh="full", infoenh_kwargs=IE, epochs=1, quiet=True))
    assert starts[0].keys() == starts[1].keys()
    assert all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0])
    assert trainer.run_init_seed(TrainConfig(seed=7)) == 7
    assert trainer.run_init_seed(TrainConfig(seed=7, init="independent")) is None
