"""Shared test fixtures."""
import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmark_script():
    """``benchmark_script("gpu_check")``: a script of ``benchmarks/`` (not a package) imported as a module."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load


@pytest.fixture
def one_thread():
    """Small models run fastest, and reproducibly, on one thread (the machine is shared).
    Modules that train models use it for every test: ``pytestmark`` or an autouse wrapper."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def restore_threads():
    """Code under test that sets torch's thread count (the CLI's --threads, the measured thread
    default): put it back after the test. Modules use it through ``pytest.mark.usefixtures``."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """The path of a 2-layer, 32-wide BERT with BERT-base's vocabulary and random weights, saved
    like a hub copy (no download)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bert") / "tiny-bert"
    transformers.BertModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return str(path)
