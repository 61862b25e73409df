"""Bad input raises a clear ValueError/TypeError naming the argument; weights stay unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from fastrnn.layers import GRU, LSTM, Dense, Dropout, Embedding, SimpleRNN
from fastrnn.models import Sequential, load_model

X = np.zeros((2, 5, 3), np.float32)

CONSTRUCTION = [
    (lambda: LSTM(0), ValueError, "units"),
    (lambda: SimpleRNN(-3), ValueError, "units"),
    (lambda: Dense(0), ValueError, "units"),
    (lambda: GRU(4, dropout=1.0), ValueError, "dropout"),
    (lambda: GRU(4, recurrent_dropout=-0.1), ValueError, "recurrent_dropout"),
    (lambda: Dropout(1.5), ValueError, "rate"),
    (lambda: LSTM(4, activation="swish"), ValueError, "activation.*tanh"),
    (lambda: LSTM(4, recurrent_activation="nope"), ValueError, "recurrent_activation"),
    (lambda: Dense(4, activation="nope"), ValueError, "activation.*softmax"),
    (lambda: LSTM(4, kernel_regularizer="l2"), ValueError, "kernel_regularizer"),
    (lambda: LSTM(4, bogus=1), TypeError, "bogus"),
    (lambda: LSTM(4, kernel_initializer="nope"), ValueError, "kernel_initializer"),
]


@pytest.mark.parametrize("make,exc,pattern", CONSTRUCTION)
def test_construction_errors(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def _built(layer, x=X):
    layer(x)
    return layer, layer.get_weights()


CALLS = [
    (lambda: _built(LSTM(4)), lambda lay: lay(np.zeros((2, 5))), ValueError, "rank 3"),
    (lambda: _built(LSTM(4)), lambda lay: lay(np.zeros((2, 5, 4))), ValueError, "3 input features"),
    (
        lambda: _built(Dense(4), np.zeros((2, 3))),
        lambda lay: lay(np.zeros((2, 7))),
        ValueError,
        "features",
    ),
    (lambda: _built(GRU(4)), lambda lay: lay(X, mask=np.ones((2, 4), bool)), ValueError, "mask"),
    (
        lambda: _built(LSTM(4)),
        lambda lay: lay(X, initial_state=[np.zeros((2, 4))]),
        ValueError,
        "initial_state",
    ),
    (
        lambda: _built(LSTM(4)),
        lambda lay: lay.set_weights([np.zeros((3, 16))]),
        ValueError,
        "expects 3",
    ),
    (
        lambda: _built(LSTM(4)),
        lambda lay: lay.set_weights([np.ones((3, 16)), np.ones((4, 16)), np.ones((15,))]),
        ValueError,
        "bias",
    ),
    (
        lambda: _built(Embedding(5, 2), np.zeros((1, 2), int)),
        lambda lay: lay(np.array([[7]])),
        ValueError,
        "input_dim",
    ),
    (
        lambda: _built(LSTM(4)),
        lambda lay: lay.backward(np.zeros((2, 4))),
        RuntimeError,
        "training=True",
    ),
]


@pytest.mark.parametrize("make,call,exc,pattern", CALLS)
def test_call_errors_leave_weights(make, call, exc, pattern):
    layer, before = make()
    with pytest.raises(exc, match=pattern):
        call(layer)
    for a, b in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def _model():
    m = Sequential([SimpleRNN(2, input_shape=(5, 3)), Dense(1)])
    m.compile("adam", "mse")
    return m


def test_model_errors(tmp_path):
    m = _model()
    before = m.get_weights()
    with pytest.raises(ValueError, match="same number of samples"):
        m.fit(np.zeros((4, 5, 3)), np.zeros((3, 1)), verbose=0)
    with pytest.raises(ValueError, match="Valid names.*mse"):
        m.compile("adam", "nope")
    with pytest.raises(ValueError, match="Valid names.*adam"):
        m.compile("nope", "mse")
    with pytest.raises(ValueError, match="Valid names.*accuracy"):
        m.compile("adam", "mse", metrics=["nope"])
    with pytest.raises(ValueError, match="expects 5 arrays"):
        m.set_weights(before[:-1])
    with pytest.raises(ValueError, match="shape"):
        m.set_weights(before[:-1] + [np.zeros(3)])
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    bad = tmp_path / "bad.fastrnn"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a fastrnn"):
        load_model(bad)
    foreign = tmp_path / "foreign.zip"
    import zipfile

    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("metadata.json", '{"format": "other"}')
    with pytest.raises(ValueError, match="not a fastrnn"):
        load_model(foreign)
    good = tmp_path / "good.fastrnn"
    m.save(good)
    data = bytearray(good.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 40] = b"\0" * 40
    good.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        load_model(good)
