"""Fixtures of the test suite; the helpers themselves live in ``harness.py`` (a plain module:
``from harness import ...``, since ``tests/`` has no ``__init__.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import BACKENDS, SEED, Device, require_backend


@pytest.fixture
def rng() -> np.random.Generator:
    """A ``np.random.default_rng`` with a fixed seed, fresh for every test."""
    return np.random.default_rng(SEED)


@pytest.fixture(params=BACKENDS)
def backend(request) -> Device:
    """Each backend ``fastrnn.ops`` runs on: the CPU, and CUDA where it is usable (else a
    visible skip with the reason; ``FASTRNN_EXPECT_GPU=1`` turns that skip into a failure)."""
    return require_backend(request.param)


@pytest.fixture(scope="module")
def one_torch_thread():
    """PyTorch on one intra-op thread while a module runs (restored after); modules that time
    nothing but interleave many small PyTorch and fastrnn calls use it (``pytestmark``). Two
    PyTorch threads on a 2-core machine ran them 10-100x slower: after each op PyTorch's OpenMP
    threads spin for ~10 ms on the cores fastrnn's threads need."""
    torch = pytest.importorskip("torch")
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
