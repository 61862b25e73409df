"""What the vendored Keras tests import instead of ``keras.src.layers``, plus a guard fixture.

``layers`` is Keras's ``keras.src.layers`` with ``SimpleRNN``, ``LSTM`` and ``GRU`` replaced by
fastrnn's (``Bidirectional``, ``Input`` and the rest stay Keras's), so the vendored tests run
unchanged against the fastrnn layers. ``fastrnn_computed`` (autouse in the modules that import
it) fails a test in which fastrnn layers ran but every call fell back to Keras's own loop: a
silent fallback must not pass for fastrnn.

Not vendored code: written for fastrnn (MIT), like the rest of ``tests/``.
"""

from __future__ import annotations

import fastrnn.keras as _fk
import pytest
from fastrnn.keras import _layers as _fastrnn_layers
from keras.src import layers as _keras_layers


class _Layers:
    """``keras.src.layers`` with fastrnn's recurrent layers."""

    SimpleRNN = _fk.SimpleRNN
    LSTM = _fk.LSTM
    GRU = _fk.GRU

    def __getattr__(self, name):
        return getattr(_keras_layers, name)


layers = _Layers()


@pytest.fixture(autouse=True)
def fastrnn_computed(monkeypatch):
    """Counts fastrnn layer calls and fused fastrnn calls; fails if only fallbacks ran."""
    counts = {"calls": 0, "fused": 0}
    inner_loop = _fastrnn_layers._FastRNNMixin.inner_loop
    fused = _fastrnn_layers.fused

    def counting_inner_loop(self, sequences, *args, **kwargs):
        device = getattr(sequences, "device", None)
        if getattr(device, "type", None) != "meta":  # not Keras's shape inference on torch
            counts["calls"] += 1
        return inner_loop(self, sequences, *args, **kwargs)

    def counting_fused(*args, **kwargs):
        counts["fused"] += 1
        return fused(*args, **kwargs)

    monkeypatch.setattr(_fastrnn_layers._FastRNNMixin, "inner_loop", counting_inner_loop)
    monkeypatch.setattr(_fastrnn_layers, "fused", counting_fused)
    yield counts
    if counts["calls"]:
        assert counts["fused"], (
            f"fastrnn layers ran {counts['calls']} times, all through Keras's fallback"
        )
