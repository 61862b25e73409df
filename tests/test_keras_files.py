"""Keras 3 files both ways, checked through real Keras (torch backend).

Keras -> .keras / .weights.h5 -> fastrnn and fastrnn -> file -> Keras, each time with the
weights compared bitwise and the predictions compared on padded batches. Weights are random
(biases included) so that a weight landing in the wrong slot changes the outputs.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

from fastrnn import layers as F  # noqa: E402
from fastrnn import losses as F_LOSSES  # noqa: E402
from fastrnn import optimizers  # noqa: E402
from fastrnn.models import Model, Sequential, load_model  # noqa: E402
from fastrnn.saving import ModelFileError, keras_format  # noqa: E402

L = keras.layers
B, T, FEATURES, VOCAB = 5, 7, 3, 23
T_OUTER, WINDOW = 4, 6  # TimeDistributed over windows: (B, T_OUTER, WINDOW, FEATURES)


def _ids(rng: np.random.Generator) -> np.ndarray:
    ids = rng.integers(1, VOCAB, (B, T))
    ids[1, 4:] = 0  # padding for mask_zero
    ids[3, 1:] = 0
    return ids


def _floats(rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    x = rng.standard_normal((B, T, FEATURES)).astype(dtype)
    x[2, 5:] = 0.0  # padding for Masking
    x[4, 2:] = 0.0
    return x


def _frames(rng: np.random.Generator) -> np.ndarray:
    """(B, T_OUTER, WINDOW, FEATURES): a short window of features per outer step."""
    return rng.standard_normal((B, T_OUTER, WINDOW, FEATURES)).astype(np.float32)


def _randomize_keras(model, rng: np.random.Generator) -> None:
    model.set_weights(
        [(rng.standard_normal(w.shape) * 0.4).astype(w.dtype) for w in model.get_weights()]
    )


def _randomize_fastrnn(model, rng: np.random.Generator) -> None:
    model.set_weights([rng.standard_normal(w.shape) * 0.4 for w in model.get_weights()])


def _k_predict(model, x) -> np.ndarray:
    return np.asarray(model.predict(x, verbose=0, batch_size=len(x)))


def _assert_same_weights(ours, theirs) -> None:
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (i, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b, err_msg=f"weight {i}")


def _assert_predictions(ours, theirs, tol=2e-6) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    scale = max(float(np.abs(theirs).max()), 1.0)
    err = float(np.abs(ours - theirs).max())
    assert err <= tol * scale, f"max |fastrnn - keras| = {err:.3g}"


def _wrapped(model) -> list[tuple[str, str]]:
    """(class, name) of the layers TimeDistributed layers wrap (same attribute in both)."""
    return [
        (type(layer.layer).__name__, layer.layer.name)
        for layer in model.layers
        if type(layer).__name__ == "TimeDistributed"
    ]


def _rewrite(path, out, **replace) -> None:
    """Copies a zip archive, replacing the named entries' bytes."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = replace.get(info.filename.replace(".", "_"), src.read(info.filename))
            dst.writestr(info.filename, data, compress_type=info.compress_type)


def _archive_config(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("config.json"))


# ---- Keras -> file -> fastrnn ------------------------------------------------------------------
MERGE_MODES = ["concat", "sum", "mul", "ave"]


def _keras_models():
    return {
        "embedding_mask_lstm_gru": (
            lambda: keras.Sequential(
                [
                    keras.Input((T,)),
                    L.Embedding(VOCAB, 6, mask_zero=True),
                    L.LSTM(5, return_sequences=True),
                    L.GRU(4, go_backwards=True),
                    L.Dense(3, activation="softmax"),
                ]
            ),
            _ids,
        ),
        "masking_backwards": (
            lambda: keras.Sequential(
                [
                    keras.Input((T, FEATURES)),
                    L.Masking(),
                    L.SimpleRNN(5, return_sequences=True, go_backwards=True, activation="relu"),
                    L.LSTM(3, return_sequences=True, go_backwards=True),
                    L.GRU(2, reset_after=False),
                    L.Dense(1, activation="sigmoid"),
                ]
            ),
            _floats,
        ),
        "gru_reset_after_false_sequences": (
            lambda: keras.Sequential(
                [
                    keras.Input((T, FEATURES)),
                    L.GRU(5, reset_after=False, return_sequences=True, go_backwards=True),
                    L.Dropout(0.3, noise_shape=(None, 1, 5), seed=3),
                    L.GRU(3, return_sequences=True, recurrent_activation="hard_sigmoid"),
                    L.Dense(2, activation="tanh", use_bias=False),
                ]
            ),
            _floats,
        ),
        "float64_no_bias": (
            lambda: keras.Sequential(
                [
                    keras.Input((T, FEATURES), dtype="float64"),
                    L.LSTM(4, use_bias=False, unit_forget_bias=False, dtype="float64"),
                    L.Dense(2, dtype="float64"),
                ]
            ),
            lambda rng: _floats(rng, np.float64),
        ),
        "cnn_lstm": (
            lambda: keras.Sequential(
                [
                    keras.Input((T, FEATURES)),
                    L.Conv1D(6, 3, padding="causal", dilation_rate=2, activation="relu"),
                    L.Conv1D(4, 2, strides=2, padding="same", groups=2),
                    L.MaxPooling1D(2, padding="same"),
                    L.LSTM(5),
                    L.Dense(2),
                ]
            ),
            _floats,
        ),
        "encoder_decoder": (
            lambda: keras.Sequential(
                [
                    keras.Input((T, FEATURES)),
                    L.LSTM(5),
                    L.RepeatVector(4),
                    L.LSTM(3, return_sequences=True),
                    L.TimeDistributed(L.Dense(2, activation="softmax")),
                ]
            ),
            _floats,
        ),
        "masked_average_pooling": (
            lambda: keras.Sequential(
                [
                    keras.Input((T,)),
                    L.Embedding(VOCAB, 6, mask_zero=True),
                    L.LSTM(5, return_sequences=True),
                    L.GlobalAveragePooling1D(),
                    L.Dense(1, activation="sigmoid"),
                ]
            ),
            _ids,
        ),
        "norm_flatten_reshape_stack": (
            lambda: keras.Sequential(
                [
                    keras.Input((T, FEATURES)),
                    L.GRU(4, return_sequences=True),
                    L.LayerNormalization(),
                    L.Flatten(),
                    L.Reshape((2 * T, 2)),
                    L.Activation("tanh"),
                    L.LayerNormalization(axis=[1, 2], epsilon=1e-5, center=False),
                    L.MaxPooling1D(3, strides=2),
                    L.Conv1D(3, 2, data_format="channels_first", activation="sigmoid"),
                    L.GlobalMaxPooling1D(),
                    L.Dense(3),
                ]
            ),
            _floats,
        ),
        "time_distributed_cnn_rnn": (
            lambda: keras.Sequential(
                [
                    keras.Input((T_OUTER, WINDOW, FEATURES)),
                    L.TimeDistributed(L.Conv1D(4, 3, activation="relu")),
                    L.TimeDistributed(L.Bidirectional(L.LSTM(3), merge_mode="sum")),
                    L.LSTM(2, return_sequences=True),
                    L.TimeDistributed(L.Dense(2)),
                    L.GlobalAveragePooling1D(),
                ]
            ),
            _frames,
        ),
        **{
            f"bidirectional_{mode}": (
                lambda mode=mode: keras.Sequential(
                    [
                        keras.Input((T,)),
                        L.Embedding(VOCAB, 4, mask_zero=True),
                        L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode=mode),
                        L.Bidirectional(  # Keras needs backward_layer with a go_backwards layer
                            L.GRU(3, reset_after=False, go_backwards=True),
                            backward_layer=L.GRU(3, reset_after=False),
                            merge_mode=mode,
                        ),
                        L.Dense(2),
                    ]
                ),
                _ids,
            )
            for mode in MERGE_MODES
        },
    }


@pytest.mark.parametrize("name", list(_keras_models()))
def test_keras_archive_loads_with_identical_weights_and_predictions(name, tmp_path, rng):
    build, data = _keras_models()[name]
    k = build()
    _randomize_keras(k, rng)
    x = data(rng)
    path = tmp_path / "model.keras"
    k.save(path)
    m = load_model(path)
    assert isinstance(m, Sequential)
    assert [type(layer).__name__ for layer in m.layers] == [
        type(layer).__name__ for layer in k.layers
    ]
    assert [layer.name for layer in m.layers] == [layer.name for layer in k.layers]
    assert _wrapped(m) == _wrapped(k)
    _assert_same_weights(m.get_weights(), k.get_weights())
    tol = 1e-7 if name.startswith("float64") else 2e-6
    _assert_predictions(m.predict(x), _k_predict(k, x), tol)


WEIGHTS_CASES = [
    "embedding_mask_lstm_gru",
    "masking_backwards",
    "bidirectional_concat",
    "cnn_lstm",
    "encoder_decoder",
    "norm_flatten_reshape_stack",
    "time_distributed_cnn_rnn",
]


@pytest.mark.parametrize("name", WEIGHTS_CASES + ["float64_no_bias"])
def test_keras_weights_h5_loads_into_fastrnn(name, tmp_path, rng):
    build, data = _keras_models()[name]
    k = build()
    _randomize_keras(k, rng)
    x = data(rng)
    k.save(tmp_path / "model.keras")
    m = load_model(tmp_path / "model.keras")
    _randomize_fastrnn(m, rng)  # forget the weights, then load them from the .weights.h5
    k.save_weights(tmp_path / "model.weights.h5")
    m.load_weights(tmp_path / "model.weights.h5")
    _assert_same_weights(m.get_weights(), k.get_weights())
    _randomize_fastrnn(m, rng)  # and from the .keras archive itself
    m.load_weights(tmp_path / "model.keras")
    _assert_same_weights(m.get_weights(), k.get_weights())
    tol = 1e-7 if name.startswith("float64") else 2e-6
    _assert_predictions(m.predict(x), _k_predict(k, x), tol)


def test_keras_layer_configs_map_to_fastrnn(tmp_path):
    k = keras.Sequential(
        [
            keras.Input((T, FEATURES)),
            L.SimpleRNN(
                4,
                activation="sigmoid",
                return_sequences=True,
                go_backwards=True,
                dropout=0.25,
                recurrent_dropout=0.125,
                seed=7,
                kernel_initializer="he_normal",
                recurrent_initializer="glorot_uniform",
                bias_initializer="ones",
            ),
            L.GRU(3, reset_after=False, return_sequences=True, use_bias=False, unroll=True),
            L.LSTM(2, unit_forget_bias=False, recurrent_activation="hard_sigmoid", seed=11),
            L.Dense(5, activation="relu", kernel_initializer="zeros", name="head"),
        ],
        name="my_model",
    )
    k.save(tmp_path / "m.keras")
    with pytest.warns(UserWarning, match="unroll=True has no effect"):
        m = load_model(tmp_path / "m.keras")
    assert m.name == "my_model"
    assert m.built_input_shape == (None, T, FEATURES)
    s, g, lstm, d = m.layers
    assert (s.units, s.activation, s.return_sequences, s.go_backwards) == (4, "sigmoid", True, True)
    assert (s.dropout, s.recurrent_dropout) == (0.25, 0.125)  # Keras writes no SimpleRNN seed
    assert (s.kernel_initializer, s.recurrent_initializer, s.bias_initializer) == (
        "he_normal",
        "glorot_uniform",
        "ones",
    )
    assert (g.reset_after, g.use_bias, g.unroll, g.recurrent_activation) == (
        False,
        False,
        True,
        "sigmoid",
    )
    assert (lstm.unit_forget_bias, lstm.recurrent_activation, lstm.seed) == (
        False,
        "hard_sigmoid",
        11,
    )
    assert (d.name, d.units, d.activation, d.kernel_initializer) == ("head", 5, "relu", "zeros")


def test_stateful_keras_model_loads_stateful(tmp_path, rng):
    k = keras.Sequential(
        [
            keras.Input(batch_shape=(B, T, FEATURES)),
            L.LSTM(4, stateful=True, return_sequences=True),
            L.SimpleRNN(3, stateful=True),
            L.Dense(1),
        ]
    )
    _randomize_keras(k, rng)
    k.save(tmp_path / "s.keras")
    m = load_model(tmp_path / "s.keras")
    assert m.built_input_shape == (B, T, FEATURES)
    assert [getattr(layer, "stateful", None) for layer in m.layers] == [True, True, None]
    x1, x2 = _floats(rng), _floats(rng)
    expected = [_k_predict(k, x1), _k_predict(k, x2)]  # the second call starts from the states
    got = [m.predict(x1), m.predict(x2)]
    for a, b in zip(got, expected):
        _assert_predictions(a, b)
    assert (
        np.abs(expected[1] - _k_predict(keras.models.load_model(tmp_path / "s.keras"), x2)).max()
        > 1e-4
    )


# ---- fastrnn -> file -> Keras ------------------------------------------------------------------
def _fastrnn_models():
    return {
        "embedding_mask_lstm_gru": (
            lambda: Sequential(
                [
                    F.Embedding(VOCAB, 6, mask_zero=True, input_shape=(T,)),
                    F.LSTM(5, return_sequences=True),
                    F.GRU(4, go_backwards=True),
                    F.Dense(3, activation="softmax"),
                ]
            ),
            _ids,
        ),
        "masking_backwards": (
            lambda: Sequential(
                [
                    F.Masking(input_shape=(T, FEATURES)),
                    F.SimpleRNN(5, return_sequences=True, go_backwards=True, activation="relu"),
                    F.LSTM(3, return_sequences=True, go_backwards=True),
                    F.GRU(2, reset_after=False),
                    F.Dropout(0.5),
                    F.Dense(1, activation="sigmoid"),
                ]
            ),
            _floats,
        ),
        "gru_both_reset_after": (
            lambda: Sequential(
                [
                    F.GRU(5, reset_after=False, return_sequences=True, input_shape=(T, FEATURES)),
                    F.GRU(4, reset_after=True, return_sequences=True, go_backwards=True),
                    F.Dense(2, activation="tanh", use_bias=False),
                ]
            ),
            _floats,
        ),
        "float64": (
            lambda: Sequential(
                [
                    F.LSTM(4, dtype="float64", input_shape=(T, FEATURES)),
                    F.Dense(2, dtype="float64"),
                ]
            ),
            lambda rng: _floats(rng, np.float64),
        ),
        "cnn_lstm": (
            lambda: Sequential(
                [
                    F.Conv1D(
                        6,
                        3,
                        padding="causal",
                        dilation_rate=2,
                        activation="relu",
                        input_shape=(T, FEATURES),
                    ),
                    F.Conv1D(4, 2, strides=2, padding="same", groups=2),
                    F.MaxPooling1D(2, padding="same"),
                    F.LSTM(5),
                    F.Dense(2),
                ]
            ),
            _floats,
        ),
        "encoder_decoder": (
            lambda: Sequential(
                [
                    F.LSTM(5, input_shape=(T, FEATURES)),
                    F.RepeatVector(4),
                    F.LSTM(3, return_sequences=True),
                    F.TimeDistributed(F.Dense(2, activation="softmax")),
                ]
            ),
            _floats,
        ),
        "masked_average_pooling": (
            lambda: Sequential(
                [
                    F.Embedding(VOCAB, 6, mask_zero=True, input_shape=(T,)),
                    F.LSTM(5, return_sequences=True),
                    F.GlobalAveragePooling1D(),
                    F.Dense(1, activation="sigmoid"),
                ]
            ),
            _ids,
        ),
        "norm_flatten_reshape_stack": (
            lambda: Sequential(
                [
                    F.GRU(4, return_sequences=True, input_shape=(T, FEATURES)),
                    F.LayerNormalization(),
                    F.Flatten(),
                    F.Reshape((-1, 2)),
                    F.Activation("tanh"),
                    F.LayerNormalization(axis=[-2, -1], epsilon=1e-5, center=False),
                    F.MaxPooling1D(3, strides=2),
                    F.Conv1D(3, 2, data_format="channels_first", activation="sigmoid"),
                    F.GlobalMaxPooling1D(),
                    F.Dense(3),
                ]
            ),
            _floats,
        ),
        "time_distributed_cnn_rnn": (
            lambda: Sequential(
                [
                    F.TimeDistributed(
                        F.Conv1D(4, 3, activation="relu"),
                        input_shape=(T_OUTER, WINDOW, FEATURES),
                    ),
                    F.TimeDistributed(F.Bidirectional(F.LSTM(3), merge_mode="sum")),
                    F.LSTM(2, return_sequences=True),
                    F.TimeDistributed(F.Dense(2)),
                    F.GlobalAveragePooling1D(),
                ]
            ),
            _frames,
        ),
        **{
            f"bidirectional_{mode}": (
                lambda mode=mode: Sequential(
                    [
                        F.Embedding(VOCAB, 4, mask_zero=True, input_shape=(T,)),
                        F.Bidirectional(F.LSTM(5, return_sequences=True), merge_mode=mode),
                        F.Bidirectional(
                            F.GRU(3, reset_after=False, go_backwards=True), merge_mode=mode
                        ),
                        F.Dense(2),
                    ]
                ),
                _ids,
            )
            for mode in MERGE_MODES
        },
    }


@pytest.mark.parametrize("name", list(_fastrnn_models()))
def test_fastrnn_archive_opens_in_keras_as_stock_layers(name, tmp_path, rng):
    build, data = _fastrnn_models()[name]
    m = build()
    _randomize_fastrnn(m, rng)
    x = data(rng)
    path = tmp_path / "model.keras"
    m.save(path)
    k = keras.models.load_model(path)
    assert isinstance(k, keras.Sequential)
    for ours, theirs in zip(m.layers, k.layers):
        assert type(theirs).__name__ == type(ours).__name__
        assert type(theirs).__module__.startswith("keras.")
        assert theirs.name == ours.name
    assert _wrapped(k) == _wrapped(m)
    _assert_same_weights(k.get_weights(), m.get_weights())
    tol = 1e-7 if name.startswith("float64") else 2e-6
    _assert_predictions(m.predict(x), _k_predict(k, x), tol)
    # And back: the file fastrnn wrote reads into fastrnn with the same config.
    again = load_model(path)
    _assert_same_weights(again.get_weights(), m.get_weights())
    # Keras expresses the input shape with an InputLayer, not the first layer's input_shape.
    assert again.built_input_shape == m.built_input_shape
    assert [layer.get_config() for layer in again.layers] == [
        {k: v for k, v in layer.get_config().items() if k != "input_shape"} for layer in m.layers
    ]


@pytest.mark.parametrize("name", WEIGHTS_CASES + ["float64"])
def test_fastrnn_weights_h5_loads_into_keras(name, tmp_path, rng):
    build, data = _fastrnn_models()[name]
    m = build()
    _randomize_fastrnn(m, rng)
    m.save(tmp_path / "model.keras")
    k = keras.models.load_model(tmp_path / "model.keras")
    _randomize_keras(k, rng)
    m.save_weights(tmp_path / "model.weights.h5")
    k.load_weights(tmp_path / "model.weights.h5")
    _assert_same_weights(k.get_weights(), m.get_weights())


def test_fastrnn_configs_reach_keras(tmp_path):
    m = Sequential(
        [
            F.SimpleRNN(
                4,
                activation="relu",
                return_sequences=True,
                go_backwards=True,
                dropout=0.25,
                seed=3,
                kernel_initializer="he_uniform",
                input_shape=(T, FEATURES),
            ),
            F.GRU(3, reset_after=False, return_sequences=True, use_bias=False),
            F.LSTM(2, unit_forget_bias=False, recurrent_activation="hard_sigmoid", name="lstm_x"),
            F.Dense(5, activation="softmax", bias_initializer="ones"),
        ],
        name="ours",
    )
    m.save(tmp_path / "m.keras")
    k = keras.models.load_model(tmp_path / "m.keras")
    assert k.name == "ours"
    s, g, lstm, d = (layer.get_config() for layer in k.layers)
    assert (s["units"], s["activation"], s["return_sequences"], s["go_backwards"]) == (
        4,
        "relu",
        True,
        True,
    )
    assert (s["dropout"], s["kernel_initializer"]["class_name"]) == (0.25, "HeUniform")
    assert k.layers[0].cell.seed == 3
    assert (g["reset_after"], g["use_bias"]) == (False, False)
    assert (lstm["name"], lstm["unit_forget_bias"], lstm["recurrent_activation"]) == (
        "lstm_x",
        False,
        "hard_sigmoid",
    )
    assert (d["activation"], d["bias_initializer"]["class_name"]) == ("softmax", "Ones")


def test_stateful_fastrnn_model_opens_stateful_in_keras(tmp_path, rng):
    m = Sequential(
        [
            F.LSTM(4, stateful=True, return_sequences=True, input_shape=(T, FEATURES)),
            F.GRU(3, stateful=True),
            F.Dense(1),
        ]
    )
    x1, x2 = _floats(rng), _floats(rng)
    with pytest.raises(ValueError, match="fixed batch size"):
        m.save(tmp_path / "unknown_batch.keras")
    m.predict(x1)  # the states now fix the batch size
    m.reset_states()
    _randomize_fastrnn(m, rng)
    m.save(tmp_path / "s.keras")
    expected = [m.predict(x1), m.predict(x2)]
    k = keras.models.load_model(tmp_path / "s.keras")
    assert [layer.get_config().get("stateful") for layer in k.layers] == [True, True, None]
    assert _archive_config(tmp_path / "s.keras")["config"]["build_input_shape"] == [B, T, FEATURES]
    for a, b in zip(expected, [_k_predict(k, x1), _k_predict(k, x2)]):
        _assert_predictions(a, b)


def test_bidirectional_merge_mode_none_config_round_trip():
    layer = F.Bidirectional(F.LSTM(3, return_sequences=True), merge_mode=None)
    layer.build((None, T, FEATURES))
    spec = keras_format.layer_to_keras(layer)
    k = keras.layers.deserialize(spec)
    assert k.merge_mode is None and k.forward_layer.return_sequences
    back = keras_format.layer_from_keras(json.loads(json.dumps(spec)), "layer", [])
    assert back.get_config() == layer.get_config()


def test_layer_normalization_axes_keras_orders_differently(tmp_path, rng):
    """Keras sorts the raw axis list to order gamma's axes ([-1, 1] gives (F, T)); fastrnn
    orders them by position. fastrnn writes its resolved axes, so Keras builds the same shapes,
    and refuses Keras configs whose order would differ, naming the axis."""
    m = Sequential(
        [
            F.GRU(4, return_sequences=True, input_shape=(T, FEATURES)),
            F.LayerNormalization(axis=[1, -1]),
            F.LayerNormalization(axis=[-1, 2, -1]),
            F.Dense(2),
        ]
    )
    _randomize_fastrnn(m, rng)
    x = _floats(rng)
    m.save(tmp_path / "m.keras")
    written = [
        spec["config"].get("axis")
        for spec in _archive_config(tmp_path / "m.keras")["config"]["layers"]
    ]
    assert written[2:4] == [[1, 2], [2]]
    k = keras.models.load_model(tmp_path / "m.keras")
    assert [tuple(w.shape) for w in k.layers[1].weights] == [(T, 4), (T, 4)]
    _assert_same_weights(k.get_weights(), m.get_weights())
    _assert_predictions(m.predict(x), _k_predict(k, x))

    k = keras.Sequential(
        [keras.Input((T, FEATURES)), L.LayerNormalization(axis=[-1, 1]), L.Dense(2)]
    )
    assert tuple(k.layers[0].weights[0].shape) == (FEATURES, T)
    k.save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"axis.*mixes negative and non-negative"):
        load_model(tmp_path / "k.keras")


def test_time_distributed_recurrent_layer_keeps_keras_mask_semantics(tmp_path):
    """zero_output_for_mask is forced only by Bidirectional: a recurrent layer returning
    sequences inside TimeDistributed is written without it, and refused with it."""
    m = Sequential(
        [
            F.TimeDistributed(
                F.LSTM(3, return_sequences=True), input_shape=(T_OUTER, WINDOW, FEATURES)
            ),
            F.TimeDistributed(F.Bidirectional(F.GRU(2, return_sequences=True))),
        ]
    )
    m.save(tmp_path / "m.keras")
    td_lstm, td_bidirectional = _archive_config(tmp_path / "m.keras")["config"]["layers"][1:]
    assert td_lstm["config"]["layer"]["config"]["zero_output_for_mask"] is False
    directions = td_bidirectional["config"]["layer"]["config"]
    assert directions["layer"]["config"]["zero_output_for_mask"] is True
    assert (
        keras.models.load_model(tmp_path / "m.keras").layers[0].layer.zero_output_for_mask is False
    )
    k = keras.Sequential(
        [
            keras.Input((T_OUTER, WINDOW, FEATURES)),
            L.TimeDistributed(L.LSTM(3, return_sequences=True, zero_output_for_mask=True)),
        ]
    )
    k.save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"layers\[1\].*\.layer.*zero_output_for_mask"):
        load_model(tmp_path / "k.keras")


# ---- compile state -----------------------------------------------------------------------------
def _keras_slots(opt) -> list[list[np.ndarray]]:
    """Keras's slot variables per model variable, read from its attributes (not from files)."""
    name = type(opt).__name__
    groups = {
        "Adam": ["_momentums", "_velocities", "_velocity_hats"],
        "SGD": ["momentums"],
        "RMSprop": ["_velocities", "_momentums", "_average_gradients"],
        "Adagrad": ["_accumulators"],
    }[name]
    lists = [getattr(opt, g, None) or [] for g in groups]
    lists = [x for x in lists if len(x)]
    n = len(lists[0]) if lists else 0
    return [[keras.ops.convert_to_numpy(x[i]) for x in lists] for i in range(n)]


OPTIMIZER_CASES = [
    (lambda: keras.optimizers.Adam(0.01, amsgrad=True), "mse"),
    (lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "mae"),
    (lambda: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True), "mse"),
    (lambda: keras.optimizers.Adagrad(0.02, initial_accumulator_value=0.2), "mse"),
]


@pytest.mark.parametrize(
    "case", range(len(OPTIMIZER_CASES)), ids=["adam", "sgd", "rmsprop", "adagrad"]
)
def test_compiled_keras_model_restores_optimizer_state(case, tmp_path, rng):
    make_opt, loss = OPTIMIZER_CASES[case]
    k = keras.Sequential(
        [keras.Input((T, FEATURES)), L.GRU(4, return_sequences=True), L.LSTM(3), L.Dense(2)]
    )
    k.compile(make_opt(), loss, metrics=["mae"])
    x, y = _floats(rng), rng.standard_normal((B, 2)).astype(np.float32)
    k.fit(x, y, epochs=3, batch_size=B, shuffle=False, verbose=0)
    k.save(tmp_path / "c.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = load_model(tmp_path / "c.keras")
    assert m.compiled and type(m.optimizer).__name__ == type(k.optimizer).__name__
    assert m.optimizer.iterations == 3 == int(k.optimizer.iterations)
    assert m.metrics_names == ["mae"]
    theirs = k.optimizer.get_config()
    for key, value in m.optimizer.get_config().items():
        assert value == pytest.approx(theirs[key]), key
    assert m.optimizer.slots is not None
    for ours, keras_slots in zip(m.optimizer.slots, _keras_slots(k.optimizer)):
        _assert_same_weights(ours, keras_slots)
    # Uncompiled when asked.
    assert not load_model(tmp_path / "c.keras", compile=False).compiled


@pytest.mark.parametrize(
    "case", range(len(OPTIMIZER_CASES)), ids=["adam", "sgd", "rmsprop", "adagrad"]
)
def test_compiled_fastrnn_model_restores_optimizer_state_in_keras(case, tmp_path, rng):
    keras_opt = OPTIMIZER_CASES[case][0]()
    cls = getattr(optimizers, type(keras_opt).__name__)
    cfg = {k: v for k, v in keras_opt.get_config().items() if k in cls().get_config()}
    m = Sequential(
        [F.GRU(4, return_sequences=True, input_shape=(T, FEATURES)), F.LSTM(3), F.Dense(2)]
    )
    m.compile(cls(**cfg), OPTIMIZER_CASES[case][1], metrics=["mae"])
    x, y = _floats(rng), rng.standard_normal((B, 2)).astype(np.float32)
    m.fit(x, y, epochs=3, batch_size=B, shuffle=False, verbose=0)
    m.save(tmp_path / "c.keras")
    k = keras.models.load_model(tmp_path / "c.keras")
    assert type(k.optimizer).__name__ == type(m.optimizer).__name__
    assert int(k.optimizer.iterations) == 3
    assert k.optimizer.get_config()["learning_rate"] == pytest.approx(cfg["learning_rate"])
    slots = _keras_slots(k.optimizer)
    assert len(slots) == len(m.optimizer.slots)
    for ours, theirs in zip(m.optimizer.slots, slots):
        _assert_same_weights(theirs, ours)


def test_keras_training_continues_identically_in_fastrnn(tmp_path, rng):
    k = keras.Sequential([keras.Input((T, FEATURES)), L.LSTM(4), L.Dense(2)])
    k.compile(keras.optimizers.Adam(0.01), "mse")
    x, y = _floats(rng), rng.standard_normal((B, 2)).astype(np.float32)
    k.fit(x, y, epochs=2, batch_size=B, shuffle=False, verbose=0)
    k.save(tmp_path / "c.keras")
    m = load_model(tmp_path / "c.keras")
    k.fit(x, y, epochs=2, batch_size=B, shuffle=False, verbose=0)
    m.fit(x, y, epochs=2, batch_size=B, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)


def test_unknown_compile_objects_load_uncompiled_with_a_warning(tmp_path):
    cases = {
        "loss": (keras.optimizers.Adam(), keras.losses.Poisson(), None),
        "optimizer": (keras.optimizers.AdamW(), "mse", None),
        "metric": ("adam", "mse", [keras.metrics.RootMeanSquaredError()]),
    }
    for what, (opt, loss, metrics) in cases.items():
        k = keras.Sequential([keras.Input((T, FEATURES)), L.SimpleRNN(2)])
        k.compile(opt, loss, metrics=metrics)
        path = tmp_path / f"{what}.keras"
        k.save(path)
        with pytest.warns(UserWarning, match="uncompiled"):
            m = load_model(path)
        assert not m.compiled
        _assert_same_weights(m.get_weights(), k.get_weights())


def test_loss_objects_map_both_ways(tmp_path):
    k = keras.Sequential([keras.Input((T, FEATURES)), L.SimpleRNN(3), L.Dense(4)])
    k.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    k.save(tmp_path / "k.keras")
    m = load_model(tmp_path / "k.keras")
    assert type(m.loss).__name__ == "CategoricalCrossentropy" and m.loss.from_logits
    assert m.metrics_names == ["accuracy"]
    m.save(tmp_path / "f.keras")
    back = keras.models.load_model(tmp_path / "f.keras")
    assert type(back.loss).__name__ == "CategoricalCrossentropy"
    assert back.loss.get_config()["from_logits"] is True


LOSS_CASES = [
    lambda: F_LOSSES.MeanSquaredError(reduction="sum"),
    lambda: F_LOSSES.MeanAbsoluteError(name="l1"),
    lambda: F_LOSSES.MeanAbsolutePercentageError(),
    lambda: F_LOSSES.MeanSquaredLogarithmicError(reduction="mean"),
    lambda: F_LOSSES.Huber(delta=0.3),
    lambda: F_LOSSES.LogCosh(),
    lambda: F_LOSSES.KLDivergence(),
    lambda: F_LOSSES.BinaryCrossentropy(from_logits=True, label_smoothing=0.2),
    lambda: F_LOSSES.CategoricalCrossentropy(label_smoothing=0.1, reduction="sum"),
    lambda: F_LOSSES.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
]


@pytest.mark.parametrize("case", range(len(LOSS_CASES)))
def test_every_loss_is_the_same_loss_in_keras(case, rng):
    """Each loss fastrnn maps, away from its defaults: Keras deserializes fastrnn's config into
    a loss with the same value on the same data, and Keras's config reads back into fastrnn's."""
    ours = LOSS_CASES[case]()
    spec = json.loads(json.dumps(keras_format.loss_to_keras(ours), allow_nan=False))
    theirs = keras.losses.deserialize(spec)
    assert type(theirs).__name__ == type(ours).__name__
    y_pred = rng.random((B, 4)) + 0.05
    if type(ours).__name__ == "SparseCategoricalCrossentropy":
        y_true = rng.integers(0, 4, (B,))
        y_pred = rng.standard_normal((B, 4))
    elif type(ours).__name__ == "KLDivergence":
        y_true = rng.random((B, 4)) + 0.05
    else:
        y_true = rng.random((B, 4))
    expected = float(keras.ops.convert_to_numpy(theirs(y_true, y_pred)))
    assert float(ours(y_true, y_pred)) == pytest.approx(expected, rel=2e-5)
    back_spec = json.loads(json.dumps(keras.losses.serialize(theirs)))
    assert keras_format.loss_from_keras(back_spec).get_config() == ours.get_config() | (
        {"delta": 1.0} if type(ours).__name__ == "Huber" else {}  # Keras's config drops delta
    )


# ---- what fastrnn cannot honour ----------------------------------------------------------------
def test_layer_class_fastrnn_lacks_is_named(tmp_path):
    k = keras.Sequential([keras.Input((T, FEATURES)), L.GaussianNoise(0.1), L.LSTM(2)])
    k.save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"k\.keras.*config\.json.*'GaussianNoise'"):
        load_model(tmp_path / "k.keras")


def test_model_class_fastrnn_lacks_is_named(tmp_path):
    inputs = keras.Input((T, FEATURES))
    k = keras.Model(inputs, L.LSTM(2)(inputs))
    k.save(tmp_path / "k.keras")
    config = _archive_config(tmp_path / "k.keras")
    config.update(class_name="MySubclassedModel", registered_name="custom>MySubclassedModel")
    _rewrite(tmp_path / "k.keras", tmp_path / "c.keras", config_json=json.dumps(config).encode())
    with pytest.raises(ModelFileError, match=r"c\.keras.*config\.json.*'MySubclassedModel'"):
        load_model(tmp_path / "c.keras")


@pytest.mark.parametrize(
    "layer,pattern",
    [
        (lambda: L.LSTM(2, kernel_regularizer="l2"), "kernel_regularizer"),
        (lambda: L.Dense(2, kernel_constraint="non_neg"), "kernel_constraint"),
        (lambda: L.LSTM(2, return_sequences=True, zero_output_for_mask=True), "zero_output"),
        (lambda: L.Dense(2, activation="gelu"), "activation 'gelu'"),
        (lambda: L.GRU(2, activation="softmax"), "softmax"),
    ],
)
def test_settings_fastrnn_cannot_honour_are_named(layer, pattern, tmp_path):
    k = keras.Sequential([keras.Input((T, FEATURES)), layer()])
    k.save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=pattern):
        load_model(tmp_path / "k.keras")


def test_dtype_policies(tmp_path):
    k = keras.Sequential([keras.Input((T, FEATURES)), L.LSTM(2), L.Dense(1)])
    k.save(tmp_path / "k.keras")
    config = _archive_config(tmp_path / "k.keras")
    for layer in config["config"]["layers"][1:]:
        layer["config"]["dtype"]["config"]["name"] = "mixed_float16"
    _rewrite(tmp_path / "k.keras", tmp_path / "mixed.keras", config_json=json.dumps(config))
    with pytest.warns(UserWarning, match="mixed_float16"):
        m = load_model(tmp_path / "mixed.keras")
    assert all(layer.dtype == np.float32 for layer in m.layers)
    for layer in config["config"]["layers"][1:]:
        layer["config"]["dtype"]["config"]["name"] = "bfloat16"
    _rewrite(tmp_path / "k.keras", tmp_path / "bf16.keras", config_json=json.dumps(config))
    with pytest.raises(ModelFileError, match="bfloat16"):
        load_model(tmp_path / "bf16.keras")


def test_initializer_without_equivalent_warns(tmp_path):
    k = keras.Sequential(
        [
            keras.Input((T, FEATURES)),
            L.Dense(2, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0)),
            L.Dense(2, kernel_initializer="lecun_normal"),
        ]
    )
    k.save(tmp_path / "k.keras")
    with pytest.warns(UserWarning, match="RandomNormal.*stddev") as record:
        m = load_model(tmp_path / "k.keras")
    assert "LecunNormal" in str(record[0].message)
    assert m.layers[0].kernel_initializer == "normal"
    assert m.layers[1].kernel_initializer == "glorot_uniform"  # fastrnn's default


def test_file_names_choose_the_format(tmp_path):
    m = Sequential([F.SimpleRNN(2, input_shape=(T, FEATURES))])
    with pytest.raises(ValueError, match="legacy Keras HDF5"):
        m.save(tmp_path / "m.h5")
    with pytest.raises(ValueError, match="save_weights"):
        m.save(tmp_path / "m.weights.h5")
    with pytest.raises(ValueError, match="save\\(\\)"):
        m.save_weights(tmp_path / "m.keras")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        m.save_weights(tmp_path / "m.h5")
    m.save(tmp_path / "m.fastrnn")
    with zipfile.ZipFile(tmp_path / "m.fastrnn") as zf:
        assert "compile.json" in zf.namelist()
    m.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
    m.save_weights(tmp_path / "w.weights.h5")
    with open(tmp_path / "w.weights.h5", "rb") as f:
        assert f.read(8) == b"\x89HDF\r\n\x1a\n"
    with pytest.raises(ModelFileError, match="load_weights"):
        load_model(tmp_path / "w.weights.h5")
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    m = Sequential([F.SimpleRNN(2, input_shape=(T, FEATURES))])
    m.save(tmp_path / "m.keras")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"fastrnn\[h5\]"):
        load_model(tmp_path / "m.keras")
    with pytest.raises(ImportError, match=r"fastrnn\[h5\]"):
        m.save(tmp_path / "n.keras")
    assert not (tmp_path / "n.keras").exists()


# ---- every row, one layer at a time ------------------------------------------------------------
def _row_cases():
    from test_saving import NON_DEFAULT

    return NON_DEFAULT


def _concrete(shape: tuple) -> tuple:
    return tuple(2 if d is None else d for d in shape)


def _outputs(y) -> list[np.ndarray]:
    ys = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in ys]


@pytest.mark.parametrize("name", sorted(_row_cases()))
def test_every_row_is_the_same_layer_in_keras(name, rng):
    """Each LayerRow on its own, arguments away from their defaults: the config fastrnn writes
    deserializes into the stock Keras layer, which has fastrnn's weight shapes and, given the
    same weights, computes the same outputs; the config Keras writes back reads into fastrnn
    as the original layer."""
    make, shape = _row_cases()[name]
    ours = make()
    if name == "InputLayer":
        spec = json.loads(json.dumps(keras_format.layer_to_keras(ours), allow_nan=False))
        theirs = keras.layers.deserialize(spec)
        assert type(theirs).__name__ == "InputLayer"
        assert tuple(theirs.batch_shape) == shape and theirs.dtype == "int32"
        assert theirs.name == ours.name
        back_spec = json.loads(json.dumps(keras.saving.serialize_keras_object(theirs)))
        back = keras_format.layer_from_keras(back_spec, "layer", [])
        assert back.get_config() == ours.get_config()
        return
    ours.build(shape)
    _randomize_fastrnn_layer(ours, rng)
    spec = json.loads(json.dumps(keras_format.layer_to_keras(ours), allow_nan=False))
    theirs = keras.layers.deserialize(spec)
    assert type(theirs).__name__ == spec["class_name"]
    if not theirs.built:
        theirs.build(shape)
    assert [tuple(w.shape) for w in theirs.get_weights()] == [w.shape for w in ours.weights]
    theirs.set_weights(ours.get_weights())
    if isinstance(shape, list):  # merge layers: a list of inputs
        x = [rng.standard_normal(_concrete(s)).astype(ours.dtype) for s in shape]
    elif name == "Embedding":
        x = rng.integers(0, ours.input_dim, _concrete(shape))
    else:
        x = rng.standard_normal(_concrete(shape)).astype(ours.dtype)
    expected = _outputs(theirs(x))
    got = _outputs(ours(x))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        _assert_predictions(a, b, 1e-7 if ours.dtype == np.float64 else 2e-6)
    back_spec = json.loads(json.dumps(keras.saving.serialize_keras_object(theirs)))
    back = keras_format.layer_from_keras(back_spec, "layer", notes := [])
    assert not notes
    dropped = KERAS_GET_CONFIG_DROPS.get(name, set())
    assert {k: v for k, v in back.get_config().items() if k not in dropped} == {
        k: v for k, v in ours.get_config().items() if k not in dropped
    }


# Keys Keras's own get_config leaves out (it reads them: see test_fastrnn_configs_reach_keras).
KERAS_GET_CONFIG_DROPS = {"SimpleRNN": {"seed"}}


def _randomize_fastrnn_layer(layer, rng: np.random.Generator) -> None:
    layer.set_weights([rng.standard_normal(w.shape) * 0.4 for w in layer.get_weights()])


# ---- Functional models -----------------------------------------------------------------------
# Each architecture is written once and built in either framework (``ns``), with every layer
# named, so that weights compare layer by layer and configs name the same layers.
KERAS_NS = SimpleNamespace(L=L, Input=keras.Input, Model=keras.Model, Sequential=keras.Sequential)
FASTRNN_NS = SimpleNamespace(L=F, Input=F.Input, Model=Model, Sequential=Sequential)


def _two_in_two_out(ns):
    """Two inputs, two outputs: masks from Embedding(mask_zero) and Masking through a shared
    LSTM, Concatenate and Add, a Bidirectional GRU and a nested Sequential."""
    tok = ns.Input((T,), dtype="int32", name="tok")
    seq = ns.Input((T, FEATURES), name="seq")
    emb = ns.L.Embedding(VOCAB, FEATURES, mask_zero=True, name="emb")(tok)
    masked = ns.L.Masking(name="masking")(seq)
    shared = ns.L.LSTM(4, return_sequences=True, name="shared")
    a, b = shared(emb), shared(masked)
    joined = ns.L.Concatenate(name="joined")([a, b])
    summed = ns.L.Add(name="summed")([a, b])
    bi = ns.L.Bidirectional(ns.L.GRU(3, name="bigru"), name="bi")(joined)
    inner = ns.Sequential(
        [ns.Input((4,)), ns.L.Dense(3, activation="tanh", name="h"), ns.L.Dense(2, name="o")],
        name="inner",
    )
    score = ns.L.Dense(2, name="score")(bi)
    label = inner(ns.L.LSTM(4, name="last")(summed))
    return ns.Model([tok, seq], [score, label])


def _merges(ns):
    """Every merge layer on masked inputs, each feeding a recurrent layer that uses the mask."""
    tok = ns.Input((T,), dtype="int32", name="tok")
    seq = ns.Input((T, FEATURES), name="seq")
    emb = ns.L.Embedding(VOCAB, FEATURES, mask_zero=True, name="emb")(tok)
    masked = ns.L.Masking(name="masking")(seq)
    outs = []
    for cls in ("Add", "Subtract", "Multiply", "Average", "Maximum"):
        merged = getattr(ns.L, cls)(name=cls.lower())([emb, masked])
        outs.append(ns.L.SimpleRNN(2, name=f"rnn_{cls.lower()}")(merged))
    time_joined = ns.L.Concatenate(axis=1, name="in_time")([emb, seq])
    outs.append(ns.L.GRU(2, name="gru_time")(time_joined))
    return ns.Model([tok, seq], outs)


def _nested_functional(ns):
    """A Functional model used as a layer, twice (once on a masked input)."""
    inner_in = ns.Input((T, FEATURES), name="inner_in")
    hidden = ns.L.Dense(FEATURES, name="inner_dense")(inner_in)
    inner = ns.Model(
        inner_in, ns.L.LSTM(3, return_sequences=True, name="inner_lstm")(hidden), name="encoder"
    )
    seq = ns.Input((T, FEATURES), name="seq")
    first = inner(ns.L.Masking(name="masking")(seq))
    second = inner(ns.L.Dense(FEATURES, name="pre")(seq))
    out = ns.L.GRU(2, name="gru")(ns.L.Add(name="add")([first, second]))
    pooled = ns.L.GlobalAveragePooling1D(name="pool")(first)
    return ns.Model(seq, [out, pooled])


def _nested_outputs(ns):
    """Nested Functional models as outputs (Keras counts their calls from 1 there) and inside a
    nested Sequential."""
    enc_in = ns.Input((T, FEATURES), name="enc_in")
    encoder = ns.Model(enc_in, ns.L.LSTM(2, name="enc_lstm")(enc_in), name="encoder")
    gru_in = ns.Input((T, FEATURES), name="gru_in")
    inner = ns.Model(gru_in, ns.L.GRU(2, name="inner_gru")(gru_in), name="inner")
    wrapped = ns.Sequential(
        [ns.Input((T, FEATURES)), inner, ns.L.Dense(2, name="after")], name="wrapped"
    )
    seq = ns.Input((T, FEATURES), name="seq")
    first = encoder(ns.L.Dense(FEATURES, name="pre")(seq))
    return ns.Model(seq, [first, wrapped(seq), encoder(seq)])


def _encoder_decoder(ns):
    """States as outputs and as initial_state, TimeDistributed, Bidirectional merge_mode=None."""
    seq = ns.Input((T, FEATURES), name="seq")
    out, h, c = ns.L.LSTM(4, return_sequences=True, return_state=True, name="enc")(
        ns.L.Masking(name="masking")(seq)
    )
    dec = ns.L.LSTM(4, return_sequences=True, name="dec")(
        ns.L.Dense(FEATURES, name="bridge")(out), initial_state=[h, c]
    )
    td = ns.L.TimeDistributed(ns.L.Dense(2, name="per_step"), name="td")(dec)
    fw, bw = ns.L.Bidirectional(
        ns.L.SimpleRNN(2, return_sequences=True, name="both"), merge_mode=None, name="bi"
    )(td)
    return ns.Model(seq, [ns.L.GlobalAveragePooling1D(name="pool")(fw), bw])


def _dict_io(ns):
    """Inputs and outputs as dicts."""
    a = ns.Input((T, FEATURES), name="a")
    b = ns.Input((FEATURES,), name="b")
    h = ns.L.LSTM(3, name="lstm")(ns.L.Masking(name="masking")(a))
    x = ns.L.Dense(1, name="x")(ns.L.Concatenate(name="cat")([h, b]))
    return ns.Model({"a": a, "b": b}, {"x": x, "y": ns.L.Dense(2, name="y")(h)})


def _explicit_mask(ns):
    """A boolean Input given as the mask: kept as an explicit argument."""
    seq = ns.Input((T, FEATURES), name="seq")
    keep = ns.Input((T,), dtype="bool", name="keep")
    h = ns.L.LSTM(3, return_sequences=True, name="lstm")(seq, mask=keep)
    return ns.Model([seq, keep], ns.L.GRU(2, name="gru")(h))


def _two_inputs_data(rng):
    return [_ids(rng), _floats(rng)]


FUNCTIONAL = {
    "two_in_two_out": (_two_in_two_out, _two_inputs_data),
    "merges": (_merges, _two_inputs_data),
    "nested_functional": (_nested_functional, _floats),
    "nested_outputs": (_nested_outputs, _floats),
    "encoder_decoder": (_encoder_decoder, _floats),
    "dict_io": (
        _dict_io,
        lambda rng: {"a": _floats(rng), "b": rng.standard_normal((B, FEATURES)).astype("f4")},
    ),
    "explicit_mask": (_explicit_mask, lambda rng: [_floats(rng), rng.random((B, T)) < 0.7]),
}


def _named_weights(model, prefix: str = "") -> dict:
    """Layer path -> weights, for every layer with weights (nested models' layers by path), in
    either framework."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, (keras.Model, Model)):
            out.update(_named_weights(layer, f"{prefix}{layer.name}/"))
        elif layer.weights:
            out[prefix + layer.name] = [np.asarray(w) for w in layer.get_weights()]
    return out


def _assert_same_named_weights(ours, theirs) -> None:
    a, b = _named_weights(ours), _named_weights(theirs)
    assert sorted(a) == sorted(b)
    for name in a:
        _assert_same_weights(a[name], b[name])


def _flat_predictions(y) -> list[np.ndarray]:
    if isinstance(y, dict):
        return [np.asarray(y[k]) for k in sorted(y)]
    return [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]


def _assert_functional_predictions(ours, keras_model, x) -> None:
    got = _flat_predictions(ours.predict(x))
    expected = _flat_predictions(keras_model.predict(x, verbose=0, batch_size=B))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        _assert_predictions(a, b)


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_keras_functional_loads_with_identical_weights_and_predictions(name, tmp_path, rng):
    build, data = FUNCTIONAL[name]
    k = build(KERAS_NS)
    _randomize_keras(k, rng)
    x = data(rng)
    k.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = load_model(tmp_path / "k.keras")
    assert type(m) is Model
    # Keras's model.layers order, InputLayers included, is what names the HDF5 groups.
    assert [la.name for la in keras_format.keras_layers(m)] == [la.name for la in k.layers]
    _assert_same_named_weights(m, k)
    _assert_functional_predictions(m, k, x)
    # The weights alone, into the architecture built in fastrnn (whose own layer order may
    # differ from Keras's), from a .weights.h5 file and from the archive.
    ours = build(FASTRNN_NS)
    k.save_weights(tmp_path / "k.weights.h5")
    ours.load_weights(tmp_path / "k.weights.h5")
    _assert_same_named_weights(ours, k)
    _randomize_fastrnn(ours, rng)
    ours.load_weights(tmp_path / "k.keras")
    _assert_same_named_weights(ours, k)
    _assert_functional_predictions(ours, k, x)


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_fastrnn_functional_opens_in_keras_as_stock_layers(name, tmp_path, rng):
    build, data = FUNCTIONAL[name]
    m = build(FASTRNN_NS)
    _randomize_fastrnn(m, rng)
    x = data(rng)
    m.save(tmp_path / "m.keras")
    k = keras.models.load_model(tmp_path / "m.keras")
    assert type(k).__name__ == "Functional"
    assert [la.name for la in k.layers] == [la.name for la in keras_format.keras_layers(m)]
    assert all(type(la).__module__.startswith("keras.") for la in k.layers)
    _assert_same_named_weights(m, k)
    _assert_functional_predictions(m, k, x)
    # The config holds the operations Keras records to compute masks (fastrnn writes each
    # distinct one once) and the layers in Keras's order.
    theirs = build(KERAS_NS)
    theirs.save(tmp_path / "theirs.keras")
    ours_config = _archive_config(tmp_path / "m.keras")["config"]["layers"]
    keras_config = _archive_config(tmp_path / "theirs.keras")["config"]["layers"]

    def classes(config, ops: bool) -> list[str]:
        return [
            spec["class_name"]
            for spec in config
            if spec.get("module", "").startswith("keras.src.ops") == ops
        ]

    assert classes(ours_config, False) == classes(keras_config, False)
    assert set(classes(ours_config, True)) == set(classes(keras_config, True))
    # The weights alone into the architecture built in Keras, and the archive back in fastrnn.
    m.save_weights(tmp_path / "m.weights.h5")
    theirs.load_weights(tmp_path / "m.weights.h5")
    _assert_same_named_weights(m, theirs)
    again = load_model(tmp_path / "m.keras")
    _assert_same_named_weights(again, m)
    for a, b in zip(_flat_predictions(again.predict(x)), _flat_predictions(m.predict(x))):
        np.testing.assert_array_equal(a, b)


def _random_graph(ns, seed: int):
    """A random graph of masked inputs, recurrent, dense and merge layers (the same graph in
    either framework)."""
    r = np.random.default_rng(seed)
    inputs, pool = [], []
    for i in range(int(r.integers(1, 4))):
        if r.random() < 0.5:
            t = ns.Input((T,), dtype="int32", name=f"in{i}")
            mask_zero = bool(r.random() < 0.7)
            pool.append(ns.L.Embedding(VOCAB, FEATURES, mask_zero=mask_zero, name=f"e{i}")(t))
        else:
            t = ns.Input((T, FEATURES), name=f"in{i}")
            pool.append(ns.L.Masking(name=f"m{i}")(t) if r.random() < 0.6 else t)
        inputs.append(t)
    for j in range(int(r.integers(5, 12))):
        kind = r.choice(["dense", "lstm", "merge", "concat", "concat", "dropout", "bi"])
        a = pool[int(r.integers(len(pool)))]
        b = pool[int(r.integers(len(pool)))]
        if kind == "dense":
            y = ns.L.Dense(FEATURES, name=f"d{j}")(a)
        elif kind == "lstm":
            y = ns.L.LSTM(FEATURES, return_sequences=True, name=f"l{j}")(a)
        elif kind == "bi":
            gru = ns.L.GRU(FEATURES, return_sequences=True)
            y = ns.L.Bidirectional(gru, merge_mode="sum", name=f"b{j}")(a)
        elif kind == "dropout":
            y = ns.L.Dropout(0.1, name=f"p{j}")(a)
        elif kind == "concat":
            y = ns.L.Dense(FEATURES, name=f"cd{j}")(ns.L.Concatenate(name=f"c{j}")([a, b]))
        else:
            y = getattr(ns.L, ["Add", "Maximum", "Multiply"][int(r.integers(3))])(name=f"x{j}")(
                [a, b]
            )
        pool.append(y)
    outputs = [ns.L.GRU(2, name=f"out{k}")(pool[-1 - k]) for k in range(min(2, len(pool)))]
    return ns.Model(inputs, outputs)


def test_keras_layer_order_of_random_masked_graphs():
    """Keras orders a Functional model's layers by depth counting the operations it records to
    compute masks; fastrnn's order for Keras files must be Keras's on any graph."""
    differs = 0
    for seed in range(20):
        k, m = _random_graph(KERAS_NS, seed), _random_graph(FASTRNN_NS, seed)
        expected = [la.name for la in k.layers]
        assert [la.name for la in keras_format.keras_layers(m)] == expected, seed
        differs += [la.name for la in m.layers] != expected
    assert differs >= 3  # the graphs exercise the mask operations' effect on the order


def _fit(model, x, y, epochs: int):
    return model.fit(x, y, epochs=epochs, batch_size=B, shuffle=False, verbose=0).history


def test_compiled_functional_keras_model_continues_training_in_fastrnn(tmp_path, rng):
    k = _two_in_two_out(KERAS_NS)
    _randomize_keras(k, rng)
    k.compile(
        keras.optimizers.Adam(0.01),
        loss={"score": "mse", "inner": "mae"},
        loss_weights=[1.0, 0.5],
        metrics={"score": ["mae"]},
    )
    x = _two_inputs_data(rng)
    y = [rng.standard_normal((B, 2)).astype("f4"), rng.standard_normal((B, 2)).astype("f4")]
    _fit(k, x, y, 2)
    k.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = load_model(tmp_path / "k.keras")
    assert m.compiled and m.optimizer.iterations == 2
    config = m.get_compile_config()
    assert config["loss"] == {
        "score": {"class_name": "MeanSquaredError", "config": m.loss["score"].get_config()},
        "inner": {"class_name": "MeanAbsoluteError", "config": m.loss["inner"].get_config()},
    }
    assert config["loss_weights"] == [1.0, 0.5] and config["metrics"] == {"score": ["mae"]}
    assert m.optimizer.slots is not None
    ours = _fit(m, x, y, 2)
    theirs = _fit(k, x, y, 2)
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-5, err_msg=key)
    a, b = _named_weights(m), _named_weights(k)
    for name in a:
        for u, v in zip(a[name], b[name]):
            np.testing.assert_allclose(u, v, rtol=0, atol=2e-5, err_msg=name)


def test_compiled_functional_fastrnn_model_continues_training_in_keras(tmp_path, rng):
    m = _two_in_two_out(FASTRNN_NS)
    _randomize_fastrnn(m, rng)
    m.compile(
        optimizers.Adam(0.01),
        loss={"score": "mse", "inner": "mae"},
        loss_weights=[1.0, 0.5],
        metrics={"score": ["mae"]},
    )
    x = _two_inputs_data(rng)
    y = [rng.standard_normal((B, 2)).astype("f4"), rng.standard_normal((B, 2)).astype("f4")]
    _fit(m, x, y, 2)
    m.save(tmp_path / "m.keras")
    k = keras.models.load_model(tmp_path / "m.keras")
    config = k.get_compile_config()
    assert config["loss_weights"] == [1.0, 0.5] and config["metrics"] == {"score": ["mae"]}
    assert {key: spec["class_name"] for key, spec in config["loss"].items()} == {
        "score": "MeanSquaredError",
        "inner": "MeanAbsoluteError",
    }
    assert int(k.optimizer.iterations) == 2
    theirs = _fit(k, x, y, 2)
    ours = _fit(m, x, y, 2)
    for key in ("loss", "score_loss", "inner_loss", "score_mae"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-5, err_msg=key)
    a, b = _named_weights(m), _named_weights(k)
    for name in a:
        for u, v in zip(a[name], b[name]):
            np.testing.assert_allclose(u, v, rtol=0, atol=2e-5, err_msg=name)


def test_hand_made_mask_is_refused(tmp_path):
    tok = keras.Input((T,), dtype="int32")
    emb = L.Embedding(VOCAB, FEATURES, mask_zero=True)(tok)
    k = keras.Model(tok, L.LSTM(3, name="lstm")(emb, mask=keras.ops.not_equal(tok, 5)))
    k.save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"k\.keras.*'lstm'.*hand-made mask"):
        load_model(tmp_path / "k.keras")


def _nested_mask_merge(ns):
    """A masked sequence out of a nested model, concatenated with another masked sequence:
    Keras records a mask that ignores the nested model's."""
    tok = ns.Input((T,), dtype="int32", name="tok")
    other = ns.Input((T,), dtype="int32", name="other")
    inner = ns.Sequential(
        [
            ns.Input((T,), dtype="int32"),
            ns.L.Embedding(VOCAB, FEATURES, mask_zero=True, name="inner_emb"),
            ns.L.LSTM(FEATURES, return_sequences=True, name="inner_lstm"),
        ],
        name="inner",
    )
    emb = ns.L.Embedding(VOCAB, FEATURES, mask_zero=True, name="emb")(other)
    return ns.Model([tok, other], ns.L.GRU(2, name="gru")(ns.L.Concatenate()([inner(tok), emb])))


def test_masks_keras_records_differently_from_fastrnn_are_refused(tmp_path):
    _nested_mask_merge(KERAS_NS).save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"'gru'.*nested models"):
        load_model(tmp_path / "k.keras")
    with pytest.raises(ValueError, match=r"save: layer 'gru'.*nested models"):
        _nested_mask_merge(FASTRNN_NS).save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
