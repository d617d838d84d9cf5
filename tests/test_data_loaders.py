"""collate and make_loaders: batch shapes and keys, seeded shuffling, clear errors."""
import pytest
import torch

from infoenh.data import collate, make_loaders
from infoenh.data.synthetic import make_synthetic_splits


@pytest.fixture(scope="module")
def ds():
    return make_synthetic_splits(sizes=(10, 3, 5), text_dim=8, audio_neg_inf_frac=0.0, seed=4)


def test_collate_shapes(ds):
    items = [ds["train"][i] for i in (3, 0, 7)]
    b = collate(items)
    assert b["text"].shape == (3, 50, 8) and b["audio"].shape == (3, 375, 5) and b["vision"].shape == (3, 500, 20)
    assert b["text_mask"].shape == (3, 50) and b["text_mask"].dtype == torch.bool
    assert b["label"].shape == (3,) and b["label"].dtype == torch.float32
    assert b["index"].tolist() == [3, 0, 7] and b["index"].dtype == torch.int64
    assert b["id"] == [ds["train"].ids[i] for i in (3, 0, 7)]
    assert torch.equal(b["audio"][1], ds["train"][0]["audio"])


def test_collate_errors(ds):
    with pytest.raises(ValueError, match="empty list"):
        collate([])
    item = dict(ds["train"][0])
    del item["vision_mask"]
    with pytest.raises(KeyError, match="vision_mask"):
        collate([item])
    other = dict(ds["train"][1])
    other["text"] = other["text"][:10]
    with pytest.raises(ValueError, match="'text' has different shapes"):
        collate([ds["train"][0], other])


def _order(loader):
    return torch.cat([b["index"] for b in loader]).tolist()


def test_make_loaders_seeded(ds):
    a = make_loaders(ds, batch_size=4, seed=3)
    b = make_loaders(ds, batch_size=4, seed=3)
    c = make_loaders(ds, batch_size=4, seed=4)
    assert set(a) == {"train", "valid", "test"}
    first, second = _order(a["train"]), _order(a["train"])
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert first == _order(b["train"]) and second == _order(b["train"])  # epoch by epoch
    assert first != _order(c["train"])
    assert _order(a["valid"]) == [0, 1, 2] and _order(a["test"]) == [0, 1, 2, 3, 4]
    assert [len(x["label"]) for x in a["test"]] == [4, 1]


def test_make_loaders_drop_last_and_errors(ds):
    lo = make_loaders(ds, batch_size=4, drop_last=True)
    assert [len(x["label"]) for x in lo["train"]] == [4, 4]
    assert [len(x["label"]) for x in lo["test"]] == [4, 1]
    with pytest.raises(ValueError, match="batch_size"):
        make_loaders(ds, batch_size=0)
