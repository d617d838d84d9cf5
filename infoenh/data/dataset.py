"""Torch datasets over canonical split arrays, the batch collate function, and seeded loaders.

An item (one clip) is a dict::

    {"text": [L_t, d_t] f32, "audio": [L_a, d_a] f32, "vision": [L_v, d_v] f32,
     "text_mask": [L_t] bool, "audio_mask": [L_a] bool, "vision_mask": [L_v] bool,
     "label": 0-dim f32, "id": str, "index": int, "text_bert": [3, L_t] int64 (when the file has it)}

:func:`collate` stacks items into ``"text"`` [B, L_t, d_t], ``"text_mask"`` [B, L_t], ...,
``"label"`` [B], ``"index"`` [B] int64, ``"id"`` a list of B strings and, when every item has it,
``"text_bert"`` [B, 3, L_t] int64.
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .._validate import check_positive_int
from .cleaning import CleaningReport
from .formats import MODALITIES, SPLITS, SplitArrays

_TENSOR_KEYS = tuple(MODALITIES) + tuple(f"{m}_mask" for m in MODALITIES)


class MSADataset(Dataset):
    """One split of a multimodal sentiment dataset (arrays held in memory as numpy).

    Item tensors are views of the split's arrays (no copy); :func:`collate` copies them into the
    batch, so modify batches freely but not single items.
    """

    def __init__(self, arrays: SplitArrays, split: str, synthetic: bool = False):
        self.split = split
        self.synthetic = synthetic
        self.features = arrays.features      # modality -> float32 [N, L_m, d_m]
        self.masks = arrays.masks            # modality -> bool [N, L_m]
        self.labels = arrays.labels          # float32 [N]
        self.ids = list(arrays.ids)          # N strings
        self.text_bert = getattr(arrays, "text_bert", None)   # int64 [N, 3, L_t] or None (BERT token ids)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> Dict[str, Any]:
        n = len(self)
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"{self.split} index must be an int, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for split '{self.split}' with {n} samples")
        i = int(i) % n
        item: Dict[str, Any] = {}
        for m in MODALITIES:
            item[m] = torch.from_numpy(self.features[m][i])
            item[f"{m}_mask"] = torch.from_numpy(self.masks[m][i])
        if self.text_bert is not None:
            item["text_bert"] = torch.from_numpy(self.text_bert[i])
        item["label"] = torch.tensor(self.labels[i], dtype=torch.float32)
        item["id"] = self.ids[i]
        item["index"] = i
        return item

    @property
    def dims(self) -> Dict[str, int]:
        return {m: int(x.shape[2]) for m, x in self.features.items()}

    @property
    def seq_lens(self) -> Dict[str, int]:
        return {m: int(x.shape[1]) for m, x in self.features.items()}

    def __repr__(self) -> str:
        tag = " SYNTHETIC" if self.synthetic else ""
        shapes = ", ".join(f"{m} {tuple(x.shape[1:])}" for m, x in self.features.items())
        return f"MSADataset({self.split}, n={len(self)}, {shapes}{tag})"


class MSADatasetSplits(Mapping):
    """The train/valid/test splits of one file: ``ds["train"]``, ``ds.dims``, ``ds.synthetic``, ``ds.report``.

    ``meta`` holds what the loader learned: ``layout`` ("mmsa"/"mult"), ``aligned``, ``mask_rules``,
    ``checksum`` status and ``sha256``, ``path``, and ``notes`` (raw shapes/dtypes, fixed empty masks,
    clipped lengths, extra keys). ``synthetic_info`` is the generator's marker (None for real data).
    """

    def __init__(self, splits: Dict[str, MSADataset], report: CleaningReport,
                 synthetic_info: Optional[Dict[str, Any]] = None, meta: Optional[Dict[str, Any]] = None):
        self._splits = splits
        self.report = report
        self.synthetic_info = synthetic_info
        self.meta = dict(meta or {})

    def __getitem__(self, split: str) -> MSADataset:
        if split not in self._splits:
            raise KeyError(f"no split {split!r}; available: {list(self._splits)}")
        return self._splits[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self._splits)

    def __len__(self) -> int:
        return len(self._splits)

    @property
    def synthetic(self) -> bool:
        return self.synthetic_info is not None

    @property
    def dims(self) -> Dict[str, int]:
        return self._splits[SPLITS[0]].dims

    @property
    def seq_lens(self) -> Dict[str, int]:
        return self._splits[SPLITS[0]].seq_lens

    @property
    def aligned(self) -> bool:
        return bool(self.meta.get("aligned", False))

    def __repr__(self) -> str:
        tag = "SYNTHETIC " if self.synthetic else ""
        sizes = ", ".join(f"{s}={len(d)}" for s, d in self._splits.items())
        return f"{tag}MSADatasetSplits({sizes}; dims={self.dims}; {self.meta.get('layout', '?')}, " \
               f"{'aligned' if self.aligned else 'unaligned'})"


def collate(items: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Stack dataset items into a batch (shapes in the module docstring)."""
    if len(items) == 0:
        raise ValueError("collate got an empty list of items")
    need = set(_TENSOR_KEYS) | {"label", "id", "index"}
    for j, it in enumerate(items):
        missing = need - set(it)
        if missing:
            raise KeyError(f"collate: item {j} lacks keys {sorted(missing)}; items come from MSADataset")
    batch: Dict[str, Any] = {}
    for k in _TENSOR_KEYS:
        shapes = {tuple(it[k].shape) for it in items}
        if len(shapes) != 1:
            raise ValueError(f"collate: '{k}' has different shapes across items {sorted(shapes)}; "
                             "items must come from one dataset")
        batch[k] = torch.stack([it[k] for it in items])
    if all("text_bert" in it for it in items):
        batch["text_bert"] = torch.stack([it["text_bert"] for it in items])
    batch["label"] = torch.stack([torch.as_tensor(it["label"], dtype=torch.float32) for it in items])
    batch["id"] = [it["id"] for it in items]
    batch["index"] = torch.tensor([int(it["index"]) for it in items], dtype=torch.int64)
    return batch


EVAL_ORDERS = ("shuffled", "file")   # valid/test batches: shuffled by a seeded generator (MMSA) or in file order


def split_seed(seed: int, split: str) -> int:
    """The seed of split ``split``'s shuffling generator: ``seed`` itself for ``train`` (as before),
    60 bits of SHA-256 of ``"<seed>:<split>"`` for the others (no two splits or seeds share a stream)."""
    if split == "train":
        return int(seed)
    return int(hashlib.sha256(f"{int(seed)}:{split}".encode()).hexdigest()[:15], 16)


def make_loaders(ds: Mapping[str, Dataset], batch_size: int = 32, seed: int = 1111, num_workers: int = 0,
                 *, drop_last: bool = False, eval_order: str = "file") -> Dict[str, DataLoader]:
    """One DataLoader per split; ``train`` is shuffled by a generator seeded with ``seed``.

    The same ``seed`` gives the same batch order (epoch by epoch) on every run. ``eval_order``:
    ``"file"`` (default here) keeps valid/test in file order; ``"shuffled"`` shuffles them too, each
    by a generator of its own (:func:`split_seed`), as MMSA's loaders shuffle every split (the
    trainer's default, ``TrainConfig.eval_order``): MMSA's validation loss is a mean of batch means,
    so which clips share the short last batch changes from epoch to epoch. Every loader has a
    ``generator`` of its own, so iterating one never draws from torch's global generator
    (checkpoints carry their states). ``drop_last`` applies to train only.
    """
    check_positive_int(batch_size, "batch_size")
    if eval_order not in EVAL_ORDERS:
        raise ValueError(f"eval_order (--eval-order) must be one of {EVAL_ORDERS}, got {eval_order!r}")
    loaders = {}
    for split in ds:
        is_train = split == "train"
        shuffle = is_train or eval_order == "shuffled"
        # every split has a generator of its own, shuffled or not: iterating a loader then never draws
        # from torch's global generator (the DataLoader takes its workers' base seed from it), so the
        # order of evaluation changes nothing in training's random draws (dropout)
        gen = torch.Generator().manual_seed(split_seed(seed, split))
        loaders[split] = DataLoader(ds[split], batch_size=batch_size, shuffle=shuffle, generator=gen,
                                    num_workers=num_workers, collate_fn=collate,
                                    drop_last=drop_last and is_train)
    return loaders
