"""Shared test fixtures."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Small models run fastest, and reproducibly, on one thread (the machine is shared).
    Modules that train models use it for every test: ``pytestmark`` or an autouse wrapper."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
