"""Parity with real Keras 3 (torch backend) layers and models, weights copied across."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")

from fastrnn import layers as F  # noqa: E402
from fastrnn.models import Sequential  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 7, 5)).astype(np.float32)


def _copy(ours, theirs):
    ours.set_weights([w.astype(np.float32) for w in theirs.get_weights()])


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (
            lambda: F.SimpleRNN(4, return_sequences=True),
            lambda: keras.layers.SimpleRNN(4, return_sequences=True),
        ),
        (lambda: F.LSTM(4, go_backwards=True), lambda: keras.layers.LSTM(4, go_backwards=True)),
        (
            lambda: F.GRU(4, return_sequences=True),
            lambda: keras.layers.GRU(4, return_sequences=True),
        ),
        (lambda: F.GRU(4, reset_after=False), lambda: keras.layers.GRU(4, reset_after=False)),
        (
            lambda: F.Bidirectional(F.LSTM(4, return_sequences=True), merge_mode="sum"),
            lambda: keras.layers.Bidirectional(
                keras.layers.LSTM(4, return_sequences=True), merge_mode="sum"
            ),
        ),
    ],
)
def test_layer_parity(ours, theirs):
    k = theirs()
    expected = keras.ops.convert_to_numpy(k(X))
    f = ours()
    f(X)
    assert [w.shape for w in f.get_weights()] == [w.shape for w in k.get_weights()]
    _copy(f, k)
    np.testing.assert_allclose(f(X), expected, atol=2e-5)


def test_masked_sequential_parity():
    idx = RNG.integers(1, 50, (4, 9))
    idx[1, 5:] = 0
    idx[3, 2:] = 0
    k = keras.Sequential(
        [
            keras.Input((9,)),
            keras.layers.Embedding(50, 8, mask_zero=True),
            keras.layers.LSTM(6),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    f = Sequential(
        [
            F.Embedding(50, 8, mask_zero=True, input_shape=(9,)),
            F.LSTM(6),
            F.Dense(2, activation="softmax"),
        ]
    )
    assert f.count_params() == k.count_params()
    f.set_weights([w for w in k.get_weights()])
    np.testing.assert_allclose(f.predict(idx), np.asarray(k.predict(idx, verbose=0)), atol=2e-5)


def test_summary_param_counts_match_keras():
    pairs = [
        (
            [F.Embedding(10000, 32), F.SimpleRNN(32)],
            [keras.Input((None,)), keras.layers.Embedding(10000, 32), keras.layers.SimpleRNN(32)],
            (None, None),
        ),
        (
            [F.GRU(7), F.Dense(3)],
            [keras.Input((None, 5)), keras.layers.GRU(7), keras.layers.Dense(3)],
            (None, None, 5),
        ),
        (
            [F.Bidirectional(F.LSTM(4))],
            [keras.Input((None, 5)), keras.layers.Bidirectional(keras.layers.LSTM(4))],
            (None, None, 5),
        ),
    ]
    for ours, theirs, shape in pairs:
        m = Sequential(ours)
        m.build(shape)
        km = keras.Sequential(theirs)
        assert m.count_params() == km.count_params()
        for layer, klayer in zip(m.layers, km.layers):
            assert layer.count_params() == klayer.count_params()
            assert layer.compute_output_shape(layer.input_shape) == tuple(klayer.output.shape)
