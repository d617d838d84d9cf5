"""Self-MM's unimodal heads read each modality alone (z_m), unless asked to read FIA's output."""
import pytest
import torch

from infoenh.models import build_model

DIMS = {"text": 12, "audio": 5, "vision": 7}
IE = {"d": 8, "k": 4}


def _batch(B=6, L=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = {m: torch.randn(B, L, d, generator=g) for m, d in DIMS.items()}
    b.update({f"{m}_mask": torch.ones(B, L, dtype=torch.bool) for m in DIMS})
    b.update(label=torch.randn(B, generator=g), index=torch.arange(B))
    return b


def _model(heads, variant="full"):
    torch.manual_seed(0)
    m = build_model("selfmm", DIMS, infoenh=variant, n_train=6, infoenh_kwargs=IE, heads=heads)
    m.init_from_train(torch.zeros(6), torch.arange(6))
    return m.eval()


def _grads_of_text_head(model, batch):
    batch = {k: (v.clone().requires_grad_(True) if k in DIMS else v) for k, v in batch.items()}
    out = model(batch)
    out.extras["pred_text"].sum().backward()
    return {m: batch[m].grad for m in DIMS}


def test_default_unimodal_heads_see_only_their_modality_with_fia():
    model = _model("unimodal")
    assert model.reads_unimodal_slice()
    assert model.heads["text"].l1.in_features == IE["d"]                 # z_text, not E'_text (3d)
    g = _grads_of_text_head(model, _batch())
    assert g["text"].abs().sum() > 0
    assert g["audio"] is None or torch.count_nonzero(g["audio"]) == 0   # exactly: no cross-modal path
    assert g["vision"] is None or torch.count_nonzero(g["vision"]) == 0


def test_enhanced_heads_read_fia_output_and_so_depend_on_the_other_modalities():
    model = _model("enhanced")
    assert not model.reads_unimodal_slice()
    assert model.heads["text"].l1.in_features == 3 * IE["d"]
    g = _grads_of_text_head(model, _batch())
    assert g["audio"].abs().sum() > 0 and g["vision"].abs().sum() > 0


@pytest.mark.parametrize("variant", ["fib_only", "plumbing"])
def test_without_fia_unimodal_heads_keep_their_own_pool(variant):
    """The pooling is split the same way in every InfoEnh arm: without FIA the unimodal heads
    still read z_m through a pool of their own, so with that pool set to the fusion's pool the
    two readings are the same model."""
    a, b = _model("unimodal", variant), _model("enhanced", variant)
    assert a.reads_unimodal_slice() and not b.reads_unimodal_slice()
    assert {n for n, _ in a.named_parameters()} - {n for n, _ in b.named_parameters()} == {
        f"uni_pool.{m}.score.weight" for m in DIMS}
    b.load_state_dict({k: v for k, v in a.state_dict().items() if not k.startswith("uni_pool.")})
    batch = _batch()
    oa, ob = a(batch), b(batch)
    assert torch.equal(oa.pred, ob.pred)
    assert not torch.equal(oa.extras["pred_audio"], ob.extras["pred_audio"])     # different pools
    with torch.no_grad():
        for m in DIMS:
            a.uni_pool[m].score.weight.copy_(a.row_pool[m].score.weight)
    assert torch.equal(a(batch).extras["pred_audio"], ob.extras["pred_audio"])


@pytest.mark.parametrize("variant", ["plumbing", "fib_only", "fia_only", "fia_uniform", "full", "full_uniform"])
def test_every_infoenh_arm_splits_the_pools_alike(variant):
    m = _model("unimodal", variant)
    assert m.reads_unimodal_slice() and set(m.uni_pool) == set(DIMS)
    assert all(m.heads[x].l1.in_features == IE["d"] for x in DIMS)


def test_fusion_prediction_uses_the_enhanced_features_and_unimodal_slice_is_z():
    model = _model("unimodal")
    batch = _batch()
    feats, _, _, uni = model._features(batch)
    assert set(uni) == set(DIMS) and all(v.shape == (6, IE["d"]) for v in uni.values())
    assert all(v.shape == (6, 3 * IE["d"]) for v in feats.values())
    # the slice z_m is FIB's filtered output: pool it with the head's own pool and compare
    seqs, _ = model.encode(batch, model.check_batch(batch))
    fib = model.infoenh.fib["audio"](seqs["audio"], batch["audio_mask"])
    assert torch.allclose(uni["audio"], model.uni_pool["audio"](fib.z, fib.mask), atol=1e-6)


def test_bad_heads_value_names_the_flag():
    with pytest.raises(ValueError, match="--selfmm-heads"):
        build_model("selfmm", DIMS, infoenh="full", n_train=6, heads="cross")
