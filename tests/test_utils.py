"""fastrnn.utils against Keras 3: pad_sequences, to_categorical, timeseries_dataset_from_array.

``timeseries_dataset_from_array`` returns tf.data in Keras; it is compared batch by batch with
Keras's when TensorFlow is installed, and always with the examples of Keras's documentation.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from _keras_api import keras_argument_mismatches
from harness import assert_unmodified, snapshot

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")

from fastrnn import utils  # noqa: E402

RNG = np.random.default_rng(9)
RAGGED = [list(RNG.integers(1, 50, n)) for n in (5, 1, 0, 8, 3)]
RAGGED_2D = [RNG.standard_normal((n, 3)).astype(np.float32) for n in (4, 1, 6, 2)]


@pytest.mark.parametrize(
    "sequences,kwargs",
    [
        (RAGGED, {}),
        (RAGGED, {"maxlen": 4}),
        (RAGGED, {"maxlen": 6, "padding": "post"}),
        (RAGGED, {"maxlen": 3, "truncating": "post", "value": -1}),
        (RAGGED, {"maxlen": 10, "padding": "post", "truncating": "post", "dtype": "float32"}),
        (RAGGED_2D, {"dtype": "float32"}),
        (RAGGED_2D, {"maxlen": 3, "padding": "post", "dtype": "float64", "value": 0.5}),
        ([np.arange(4), np.arange(2)], {"dtype": "int64"}),
        ([["a", "b"], ["c"]], {"dtype": object, "value": "<pad>"}),
    ],
)
def test_pad_sequences_matches_keras(sequences, kwargs):
    before = snapshot(sequences)
    ours = utils.pad_sequences(sequences, **kwargs)
    theirs = keras.utils.pad_sequences(sequences, **kwargs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    assert_unmodified(before, sequences, "sequences")


@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda: utils.pad_sequences(5), "iterable"),
        (lambda: utils.pad_sequences([[1], 2]), "non-iterable"),
        (lambda: utils.pad_sequences([[1]], padding="middle"), "Padding type"),
        (lambda: utils.pad_sequences([[1]], truncating="middle"), "Truncating type"),
        (lambda: utils.pad_sequences([[1]], maxlen=-1), "maxlen"),
        (lambda: utils.pad_sequences([[1]], value="x"), "dtype"),
        (lambda: utils.pad_sequences([np.ones((2, 3)), np.ones((2, 4))]), "Shape of sample"),
    ],
)
def test_pad_sequences_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_pad_sequences_edge_cases():
    assert utils.pad_sequences([]).shape == (0, 0)
    assert utils.pad_sequences([[1, 2], [3]], maxlen=0).shape == (2, 0)


@pytest.mark.parametrize(
    "labels,num_classes",
    [
        ([0, 2, 1, 2], None),
        ([0, 2, 1, 2], 5),
        (np.array([[1], [0], [3]]), None),
        (RNG.integers(0, 4, (3, 5)), 4),
        (RNG.integers(0, 3, (2, 4, 1)), None),
        (np.array([1.0, 0.0, 2.0]), 3),
    ],
)
def test_to_categorical_matches_keras(labels, num_classes):
    ours = utils.to_categorical(labels, num_classes)
    theirs = keras.utils.to_categorical(labels, num_classes)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda: utils.to_categorical([0, -1]), ">= 0"),
        (lambda: utils.to_categorical([0, 3], 3), "out of range"),
        (lambda: utils.to_categorical([0.5, 1]), "integer"),
        (lambda: utils.to_categorical(["a"]), "integer"),
        (lambda: utils.to_categorical([1], num_classes=0), "positive"),
    ],
)
def test_to_categorical_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# ---- timeseries_dataset_from_array ----
def test_timeseries_keras_documented_example_1():
    """Keras's docstring: indices 0..98, sequence_length=10, sampling_rate=2, stride=3."""
    ds = utils.timeseries_dataset_from_array(
        np.arange(99), None, sequence_length=10, sampling_rate=2, sequence_stride=3, batch_size=8
    )
    windows = np.concatenate(list(ds))
    np.testing.assert_array_equal(windows[0], np.arange(0, 20, 2))
    np.testing.assert_array_equal(windows[1], np.arange(3, 23, 2))
    np.testing.assert_array_equal(windows[2], np.arange(6, 26, 2))
    np.testing.assert_array_equal(windows[-1], np.arange(78, 98, 2))


def test_timeseries_keras_documented_example_2():
    """Keras's docstring: the past 10 steps predict the next one."""
    data = RNG.standard_normal(100).astype(np.float32)
    ds = utils.timeseries_dataset_from_array(data[:-10], data[10:], sequence_length=10)
    inputs, targets = ds[0]
    np.testing.assert_array_equal(inputs[0], data[:10])
    assert targets[0] == data[10]
    assert inputs.dtype == np.float32 and inputs.shape == (81, 10) and len(ds) == 1


def test_timeseries_keras_documented_example_3():
    """Keras's docstring: non-overlapping many-to-many windows of X and Y zipped."""
    x, y = np.arange(100), np.arange(100) * 2
    inputs = utils.timeseries_dataset_from_array(x, None, sequence_length=20, sequence_stride=20)
    targets = utils.timeseries_dataset_from_array(y, None, sequence_length=20, sequence_stride=20)
    for batch_x, batch_y in zip(inputs, targets):
        np.testing.assert_array_equal(batch_x[0], x[:20])
        np.testing.assert_array_equal(batch_y[1], y[20:40])


CASES = [
    {"sequence_length": 5, "batch_size": 4},
    {"sequence_length": 3, "sequence_stride": 2, "sampling_rate": 3, "batch_size": 5},
    {"sequence_length": 4, "start_index": 3, "end_index": 30, "batch_size": 7},
    {"sequence_length": 6, "batch_size": None},
    {"sequence_length": 2, "sequence_stride": 4, "start_index": 10, "batch_size": 3},
]


@pytest.mark.parametrize("kwargs", CASES)
def test_timeseries_windows_and_targets(kwargs):
    """Every window equals the slice its definition names; targets[start] rides along."""
    data = RNG.standard_normal((40, 3)).astype(np.float32)
    targets = RNG.standard_normal((40, 2))
    before = snapshot((data, targets))
    ds = utils.timeseries_dataset_from_array(data, targets, **kwargs)
    start = kwargs.get("start_index") or 0
    end = kwargs.get("end_index") or len(data)
    rate = kwargs.get("sampling_rate", 1)
    length = kwargs["sequence_length"]
    stride = kwargs.get("sequence_stride", 1)
    first = list(range(start, end - (length - 1) * rate, stride))
    batches = list(ds)
    if kwargs["batch_size"] is None:
        batches = [(x[None], y[None]) for x, y in batches]
    xs = np.concatenate([b[0] for b in batches])
    ys = np.concatenate([b[1] for b in batches])
    assert len(xs) == len(first) == ds.num_samples
    for i, s in enumerate(first):
        np.testing.assert_array_equal(xs[i], data[s : s + length * rate : rate])
        np.testing.assert_array_equal(ys[i], targets[s])
    if kwargs["batch_size"]:
        assert all(len(b[0]) == kwargs["batch_size"] for b in batches[:-1])
        assert len(ds) == -(-len(first) // kwargs["batch_size"])
    assert_unmodified(before, (data, targets), "data")


@pytest.mark.parametrize("kwargs", CASES)
def test_timeseries_matches_keras_tf_dataset(kwargs):
    pytest.importorskip("tensorflow")
    data = RNG.standard_normal((40, 3)).astype(np.float32)
    targets = RNG.integers(0, 5, 40)
    ours = list(utils.timeseries_dataset_from_array(data, targets, **kwargs))
    theirs = [
        (x.numpy(), y.numpy())
        for x, y in keras.utils.timeseries_dataset_from_array(data, targets, **kwargs)
    ]
    assert len(ours) == len(theirs)
    for (x, y), (kx, ky) in zip(ours, theirs):
        assert x.dtype == kx.dtype and y.dtype == ky.dtype
        np.testing.assert_array_equal(x, kx)
        np.testing.assert_array_equal(y, ky)


def test_timeseries_shuffle_is_seeded_and_reshuffles_per_epoch():
    data = np.arange(60, dtype=np.float32)
    make = lambda seed: utils.timeseries_dataset_from_array(  # noqa: E731
        data, data * 10, sequence_length=4, batch_size=8, shuffle=True, seed=seed
    )
    a, b, c = make(1), make(1), make(2)
    first = np.concatenate([x for x, _ in a])
    np.testing.assert_array_equal(first, np.concatenate([x for x, _ in b]))
    assert not np.array_equal(first, np.concatenate([x for x, _ in c]))
    # the same windows as without shuffling, each with its own target
    plain = np.concatenate(list(utils.timeseries_dataset_from_array(data, None, 4)))
    assert sorted(map(tuple, first)) == sorted(map(tuple, plain))
    for x, y in a:
        np.testing.assert_array_equal(y, x[:, 0] * 10)
    a.on_epoch_end()
    assert not np.array_equal(first, np.concatenate([x for x, _ in a]))


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"start_index": 50}, "start_index"),
        ({"start_index": 5, "end_index": 5}, "end_index"),
        ({"end_index": 40}, "end_index"),
        ({"sampling_rate": 0}, "sampling_rate"),
        ({"sampling_rate": 40}, "sampling_rate"),
        ({"sequence_stride": 0}, "sequence_stride"),
        ({"sequence_length": 0}, "sequence_length"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_timeseries_errors(kwargs, pattern):
    args = {"sequence_length": 3, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        utils.timeseries_dataset_from_array(np.zeros(40), None, **args)


def test_timeseries_dataset_is_a_sequence():
    ds = utils.timeseries_dataset_from_array(np.arange(30), np.arange(30), 5, batch_size=4)
    assert len(ds) == 7
    np.testing.assert_array_equal(ds[-1][0], ds[6][0])
    with pytest.raises(IndexError):
        ds[7]
    with pytest.raises(TypeError):
        ds["0"]


def test_set_random_seed_reexported():
    from fastrnn.initializers import make_rng

    utils.set_random_seed(3)
    a = make_rng(None).random()
    utils.set_random_seed(3)
    assert make_rng(None).random() == a


@pytest.mark.parametrize(
    "name", ["pad_sequences", "to_categorical", "timeseries_dataset_from_array"]
)
def test_keras_argument_names_and_defaults(name):
    # Keras's format= picks tf.data or grain; fastrnn always returns NumPy batches
    skip = ("format",) if name == "timeseries_dataset_from_array" else ()
    assert keras_argument_mismatches(getattr(utils, name), getattr(keras.utils, name), skip) == []
