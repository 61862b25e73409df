"""Fitted models and every layer survive pickle, copy.deepcopy and joblib (issue 7 item 9).

A round trip must give identical predictions, and training must continue identically: the same
weights after one more epoch with the same seed, the optimizer's state (Adam's moments,
iteration count) and each layer's dropout generator included.
"""

from __future__ import annotations

import copy
import io
import pickle

import fastrnn
import numpy as np
import pytest
from fastrnn import Input, Model, Sequential
from fastrnn import layers as F
from fastrnn import optimizers as O


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _assert_same(a, b):
    a, b = _as_list(a), _as_list(b)
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def _pickle(obj):
    return pickle.loads(pickle.dumps(obj))


class _ArraysApartPickler(pickle.Pickler):
    """Stores every array reference separately, as joblib does (identity between references to
    one array is lost), without needing joblib."""

    def persistent_id(self, obj):
        if isinstance(obj, np.ndarray) and obj.dtype != object:
            return ("ndarray", obj.dtype.str, obj.shape, obj.tobytes())
        return None


class _ArraysApartUnpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        _, dtype, shape, data = pid
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _arrays_apart(obj):
    buf = io.BytesIO()
    _ArraysApartPickler(buf).dump(obj)
    buf.seek(0)
    return _ArraysApartUnpickler(buf).load()


def _joblib(obj):
    joblib = pytest.importorskip("joblib")
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    buf.seek(0)
    return joblib.load(buf)


COPIES = [_pickle, copy.deepcopy, _arrays_apart, _joblib]


def _sequential():
    return Sequential(
        [
            Input((6,), dtype="int64"),
            F.Embedding(12, 4, mask_zero=True),
            F.Bidirectional(F.LSTM(5, return_sequences=True, dropout=0.2)),
            F.GRU(3, recurrent_dropout=0.1),
            F.Dropout(0.3),
            F.Dense(3, activation="softmax"),
        ]
    )


def _functional():
    seq = Input((6, 3))
    aux = Input((2,))
    masked = F.Masking()(seq)
    _, h, c = F.LSTM(4, return_state=True, dropout=0.2)(masked)
    shared = F.Dense(4)
    joined = F.Concatenate()([F.Add()([h, shared(aux)]), F.Multiply()([c, shared(aux)])])
    return Model([seq, aux], [F.Dense(1)(joined), F.Dense(2)(h)])


def _data(kind, rng):
    if kind == "sequential":
        x = rng.integers(1, 12, (16, 6))
        x[3, 4:] = 0
        return x, rng.integers(0, 3, 16)
    x = [rng.standard_normal((16, 6, 3)).astype(np.float32), rng.standard_normal((16, 2))]
    x[0][2, 3:] = 0.0
    return x, [rng.standard_normal((16, 1)), rng.standard_normal((16, 2))]


@pytest.mark.parametrize("copier", COPIES)
@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_fitted_model_round_trip_continues_identically(kind, copier):
    rng = np.random.default_rng(0)
    fastrnn.set_random_seed(0)
    model = _sequential() if kind == "sequential" else _functional()
    loss = "sparse_categorical_crossentropy" if kind == "sequential" else ["mse", "mae"]
    model.compile(O.Adam(0.01), loss, metrics=["accuracy"] if kind == "sequential" else None)
    x, y = _data(kind, rng)
    model.fit(x, y, batch_size=5, epochs=2, verbose=0)
    model(x, training=True)  # leave training caches (holding the kernels' context) behind
    clone = copier(model)
    _assert_same(model.get_weights(), clone.get_weights())
    _assert_same(model.predict(x, verbose=0), clone.predict(x, verbose=0))
    assert clone.optimizer.iterations == model.optimizer.iterations > 0
    for m in (model, clone):
        fastrnn.set_random_seed(7)
        m.fit(x, y, batch_size=5, epochs=1, verbose=0)
    _assert_same(model.get_weights(), clone.get_weights())
    _assert_same(model.optimizer.get_state()[1], clone.optimizer.get_state()[1])


LAYERS = [
    (lambda: F.SimpleRNN(3, return_sequences=True), (4, 5, 2)),
    (lambda: F.LSTM(3, return_state=True), (4, 5, 2)),
    (lambda: F.GRU(3, reset_after=False, dropout=0.2), (4, 5, 2)),
    (lambda: F.Bidirectional(F.GRU(3, return_sequences=True), merge_mode="sum"), (4, 5, 2)),
    (lambda: F.LSTM(3, stateful=True), (4, 5, 2)),
    (lambda: F.Dense(3), (4, 2)),
    (lambda: F.Masking(), (4, 5, 2)),
    (lambda: F.Dropout(0.5, seed=3), (4, 2)),
]


@pytest.mark.parametrize("make,shape", LAYERS)
@pytest.mark.parametrize("copier", [_pickle, copy.deepcopy, _arrays_apart])
def test_layers_round_trip_after_a_training_call(make, shape, copier):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    layer = make()
    layer(x, training=True)
    clone = copier(layer)
    assert clone._cache is None  # the transient training cache stays behind
    with pytest.raises(RuntimeError, match="training=True"):
        clone.backward(np.ones(1))
    _assert_same(layer(x), clone(x))
    # Training calls continue identically (dropout generators copied with their state).
    ya, yb = layer(x, training=True), clone(x, training=True)
    _assert_same(ya, yb)
    dy = [np.ones_like(v) for v in _as_list(ya)]
    dy = dy if isinstance(ya, (tuple, list)) else dy[0]
    _assert_same(layer.backward(dy), clone.backward(dy))
    _assert_same(layer.gradients, clone.gradients)


def test_merge_and_embedding_layers_round_trip():
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2)]
    for layer in (F.Add(), F.Subtract(), F.Multiply(), F.Average(), F.Maximum(), F.Concatenate()):
        layer(xs, training=True)
        np.testing.assert_array_equal(_pickle(layer)(xs), layer(xs))
    emb = F.Embedding(10, 3, mask_zero=True)
    ids = np.array([[1, 2, 0]])
    emb(ids, training=True)
    np.testing.assert_array_equal(_pickle(emb)(ids), emb(ids))
