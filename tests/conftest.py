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
