"""Datasets for multimodal sentiment analysis: safe loading of MMSA/MulT pickles and a SYNTHETIC testbed.

Public API::

    load_mmsa(path, *, verify=True, inf_policy="zero", sha256=None) -> MSADatasetSplits
    from_dict(data, *, inf_policy="zero") -> MSADatasetSplits
    collate(items) -> batch dict
    make_loaders(ds, batch_size=32, seed=1111, num_workers=0) -> {split: DataLoader}
    synthetic.make_synthetic(..., seed=0) / write_synthetic(path, ...) / make_synthetic_splits(...)
    download.download(url_or_gdrive_id, dest, sha256=None)
    check.check_file(path) / check.format_summary(summary) / check.label_stats(labels)

Modules, one job each: ``paths`` (where files live, missing-file message), ``checksums``
(SHA-256 table and checks), ``safe_pickle`` (restricted unpickler), ``formats`` (the two layouts,
padding masks), ``cleaning`` (NaN/inf policy), ``dataset`` (torch Dataset, collate, loaders),
``mmsa`` (``load_mmsa``), ``identity`` (MMSA's published file, another MOSI-format file or
SYNTHETIC, and ``INFOENH_MOSI``), ``mosi_labels`` and ``synthetic`` (the testbed), ``download``,
``drive`` and ``drive_pages`` (MMSA's Drive folder, its two page formats), ``check``, ``cli``
(``infoenh data ...``).
"""
from importlib import import_module
from typing import Any

# name -> submodule; resolved on first use so ``import infoenh.data.cli`` (and ``infoenh --help``)
# does not import torch.
_EXPORTS = {
    "load_mmsa": "mmsa", "from_dict": "mmsa",
    "collate": "dataset", "make_loaders": "dataset", "MSADataset": "dataset", "MSADatasetSplits": "dataset",
    "make_synthetic": "synthetic", "make_synthetic_splits": "synthetic", "write_synthetic": "synthetic",
    "default_path": "paths", "safe_load": "safe_pickle", "UnsafePickleError": "safe_pickle",
    "CleaningReport": "cleaning", "DataCleaningWarning": "cleaning", "NonFiniteError": "cleaning",
    "ChecksumError": "checksums", "UnknownChecksumWarning": "checksums",
    "InvalidDatasetError": "formats", "MODALITIES": "formats", "SPLITS": "formats",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
