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
