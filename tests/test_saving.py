"""fastrnn.saving without Keras: the Keras mapping table, round trips through both formats,
compile state, atomic writes and the limits' arguments."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest
from fastrnn import layers as F
from fastrnn import losses, optimizers
from fastrnn.layers import LAYER_CLASSES
from fastrnn.models import Model, Sequential, load_model
from fastrnn.saving import keras_format, native

T, FEATURES, VOCAB = 5, 3, 11

# Each layer class with arguments away from their defaults, and an input shape to build it.
NON_DEFAULT = {
    "Dense": (
        lambda: F.Dense(
            3,
            activation="tanh",
            use_bias=False,
            kernel_initializer="he_normal",
            bias_initializer="ones",
            dtype="float64",
            trainable=False,
            name="d",
        ),
        (None, FEATURES),
    ),
    "Embedding": (
        lambda: F.Embedding(VOCAB, 4, embeddings_initializer="normal", mask_zero=True),
        (None, T),
    ),
    "Masking": (lambda: F.Masking(mask_value=-1.5), (None, T, FEATURES)),
    "Dropout": (lambda: F.Dropout(0.25, noise_shape=(None, 1, FEATURES), seed=4), (None, T, 3)),
    "SimpleRNN": (
        lambda: F.SimpleRNN(
            4,
            activation="relu",
            use_bias=False,
            kernel_initializer="glorot_normal",
            recurrent_initializer="he_uniform",
            dropout=0.1,
            recurrent_dropout=0.2,
            return_sequences=True,
            return_state=True,
            go_backwards=True,
            stateful=True,
            seed=9,
        ),
        (2, T, FEATURES),
    ),
    "LSTM": (
        lambda: F.LSTM(
            4,
            activation="sigmoid",
            recurrent_activation="hard_sigmoid",
            unit_forget_bias=False,
            bias_initializer="ones",
            go_backwards=True,
            return_sequences=True,
        ),
        (None, T, FEATURES),
    ),
    "GRU": (
        lambda: F.GRU(4, reset_after=False, recurrent_activation="tanh", stateful=True),
        (3, T, FEATURES),
    ),
    "Bidirectional": (
        lambda: F.Bidirectional(F.GRU(3, go_backwards=True, reset_after=False), merge_mode="mul"),
        (None, T, FEATURES),
    ),
    "TimeDistributed": (
        lambda: F.TimeDistributed(
            F.Bidirectional(F.LSTM(2, return_sequences=True, unit_forget_bias=False)),
            name="td",
            trainable=False,
        ),
        (None, 2, T, FEATURES),
    ),
    "Activation": (lambda: F.Activation("hard_sigmoid", dtype="float64"), (None, T, FEATURES)),
    "RepeatVector": (lambda: F.RepeatVector(6), (None, FEATURES)),
    "Flatten": (lambda: F.Flatten(data_format="channels_first"), (None, T, FEATURES)),
    "Reshape": (lambda: F.Reshape((-1, 5)), (None, 2, T)),
    "MaxPooling1D": (
        lambda: F.MaxPooling1D(3, strides=1, padding="same", data_format="channels_first"),
        (None, FEATURES, T),
    ),
    "GlobalAveragePooling1D": (
        lambda: F.GlobalAveragePooling1D(data_format="channels_first", keepdims=True),
        (None, FEATURES, T),
    ),
    "GlobalMaxPooling1D": (lambda: F.GlobalMaxPooling1D(keepdims=True), (None, T, FEATURES)),
    "Conv1D": (
        lambda: F.Conv1D(
            4,
            3,
            strides=1,
            padding="causal",
            dilation_rate=2,
            groups=2,
            activation="relu",
            use_bias=False,
            kernel_initializer="he_uniform",
            bias_initializer="ones",
        ),
        (None, T, 2),
    ),
    "LayerNormalization": (
        lambda: F.LayerNormalization(
            axis=[-2, -1],
            epsilon=1e-5,
            center=False,
            beta_initializer="ones",
            gamma_initializer="normal",
        ),
        (None, 2, T, FEATURES),
    ),
    # Merge layers take a list of shapes; Concatenate away from its default axis.
    "Add": (lambda: F.Add(dtype="float64", name="plus"), [(None, T, 2), (None, T, 2)]),
    "Subtract": (lambda: F.Subtract(trainable=False), [(None, 2), (None, 2)]),
    "Multiply": (lambda: F.Multiply(), [(None, T, 2), (None, T, 2), (None, T, 2)]),
    "Average": (lambda: F.Average(), [(None, 3), (None, 3)]),
    "Maximum": (lambda: F.Maximum(), [(None, T, 2), (None, 1, 2)]),
    "Concatenate": (lambda: F.Concatenate(axis=1), [(None, T, 2), (None, 3, 2)]),
    # InputLayer: built when created; the shape is its batch shape.
    "InputLayer": (
        lambda: F.InputLayer(batch_shape=(4, None, 3), dtype="int32", name="ids"),
        (4, None, 3),
    ),
}
MODEL_CLASSES = {"Sequential", "Model", "Functional"}


def test_every_layer_class_has_a_keras_row():
    """A layer class without a row cannot be written to or read from Keras files: add one to
    fastrnn.saving.keras_format.LAYERS (and a NON_DEFAULT entry here)."""
    rows = {row.fastrnn for row in keras_format.LAYERS}
    missing = sorted(set(LAYER_CLASSES) - rows - MODEL_CLASSES)
    assert not missing, f"no Keras mapping for {missing}"
    assert set(NON_DEFAULT) == set(LAYER_CLASSES) - MODEL_CLASSES
    # Models used as layers are read and written by keras_format.MODELS.
    assert {row.fastrnn for row in keras_format.MODELS.values()} == {"Sequential", "Model"}


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_keras_row_round_trips_the_config(name):
    make, shape = NON_DEFAULT[name]
    layer = make()
    if name != "InputLayer":
        layer.build(shape)
    spec = json.loads(json.dumps(keras_format.layer_to_keras(layer), allow_nan=False))
    assert spec["class_name"] == keras_format.row_for_layer(layer).keras
    if name == "InputLayer":
        assert spec["config"]["batch_shape"] == list(shape)
    else:
        want = [list(s) for s in shape] if isinstance(shape, list) else list(shape)
        assert spec["build_config"] == {"input_shape": want}
    back = keras_format.layer_from_keras(spec, "layer", notes := [])
    assert not notes
    assert type(back) is type(layer)
    assert back.get_config() == layer.get_config()


def test_wrapped_recurrent_layers_get_zero_output_for_mask_from_bidirectional_only():
    """Keras's Bidirectional forces zero_output_for_mask=return_sequences on its layers; no
    other wrapper does, and fastrnn's recurrent layers repeat the previous output."""
    td = F.TimeDistributed(F.LSTM(3, return_sequences=True))
    td.build((None, 2, T, FEATURES))
    inner = keras_format.layer_to_keras(td)["config"]["layer"]
    assert inner["config"]["zero_output_for_mask"] is False
    assert inner["build_config"] == {"input_shape": [None, T, FEATURES]}
    inner["config"]["zero_output_for_mask"] = True
    spec = {"class_name": "TimeDistributed", "config": {"layer": inner}}
    with pytest.raises(keras_format._ConfigError, match=r"layer.*zero_output_for_mask"):
        keras_format.layer_from_keras(spec, "layer", [])
    spec = {"class_name": "Bidirectional", "config": {"layer": inner}}
    assert keras_format.layer_from_keras(spec, "layer", []).forward_layer.return_sequences


def test_keras_snake_case_matches_keras_names():
    assert [keras_format.keras_snake(n) for n in ("SimpleRNN", "LSTM", "GRU", "Conv1D")] == [
        "simple_rnn",
        "lstm",
        "gru",
        "conv1d",
    ]
    assert keras_format.layer_paths(["LSTM", "Dense", "LSTM", "LSTM"]) == [
        "layers/lstm",
        "layers/dense",
        "layers/lstm_1",
        "layers/lstm_2",
    ]


def _trained(rng):
    model = Sequential(
        [
            F.Embedding(VOCAB, 4, mask_zero=True, input_shape=(T,)),
            F.Bidirectional(F.LSTM(3, return_sequences=True), merge_mode="concat"),
            F.GRU(2, reset_after=False),
            F.Dense(1),
        ]
    )
    model.compile(optimizers.RMSprop(0.01, momentum=0.5, centered=True), "mse", metrics=["mae"])
    x = rng.integers(0, VOCAB, (7, T))
    y = rng.standard_normal((7, 1))
    model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    return model, x, y


@pytest.mark.parametrize("suffix", [".fastrnn", ".keras"])
def test_round_trip_restores_weights_and_training_state(suffix, tmp_path, rng):
    if suffix == ".keras":
        pytest.importorskip("h5py")
    model, x, y = _trained(rng)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = load_model(path)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 4
    for a, b in zip(loaded.optimizer.get_state()[1], model.optimizer.get_state()[1]):
        np.testing.assert_array_equal(a, b)
    model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    uncompiled = load_model(path, compile=False)
    assert not uncompiled.compiled


def _every_layer_model() -> Sequential:
    return Sequential(
        [
            F.Conv1D(4, 2, padding="same", activation="relu", input_shape=(T, FEATURES)),
            F.MaxPooling1D(2, padding="same"),
            F.LayerNormalization(epsilon=1e-4),
            F.LSTM(3),
            F.RepeatVector(4),
            F.GRU(3, return_sequences=True),
            F.TimeDistributed(F.Dense(2)),
            F.Activation("tanh"),
            F.Flatten(),
            F.Dropout(0.1),
            F.Reshape((4, 2)),
            F.GlobalMaxPooling1D(keepdims=True),
            F.GlobalAveragePooling1D(),
            F.Dense(1),
        ]
    )


@pytest.mark.parametrize("suffix", [".fastrnn", ".keras"])
def test_every_new_layer_class_round_trips_in_one_model(suffix, tmp_path, rng):
    if suffix == ".keras":
        pytest.importorskip("h5py")
    model = _every_layer_model()
    model.set_weights([rng.standard_normal(w.shape) * 0.5 for w in model.get_weights()])
    model.compile(optimizers.Adam(0.01), "mse")
    x = rng.standard_normal((6, T, FEATURES))
    model.fit(x, rng.standard_normal((6, 1)), epochs=1, batch_size=3, shuffle=False, verbose=0)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = load_model(path)
    assert [layer.get_config() for layer in loaded.layers[1:]] == [
        layer.get_config() for layer in model.layers[1:]
    ]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for a, b in zip(loaded.optimizer.get_state()[1], model.optimizer.get_state()[1]):
        np.testing.assert_array_equal(a, b)
    weights = tmp_path / ("w.weights.h5" if suffix == ".keras" else "w.weights.zip")
    model.save_weights(weights)
    clone = _every_layer_model()
    clone.build((None, T, FEATURES))
    clone.load_weights(weights)
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))


def test_weights_files_round_trip(tmp_path, rng):
    model, x, _ = _trained(rng)
    clone = Sequential.from_config(model.get_config())
    names = ["w.weights.zip"]
    try:
        import h5py  # noqa: F401

        names.append("w.weights.h5")
    except ImportError:
        pass
    for name in names:
        model.save_weights(tmp_path / name)
        clone.set_weights([np.zeros_like(w) for w in clone.get_weights()])
        clone.load_weights(tmp_path / name)
        np.testing.assert_array_equal(clone.predict(x), model.predict(x))


def test_failed_save_keeps_the_old_file(tmp_path, rng, monkeypatch):
    model, _, _ = _trained(rng)
    path = tmp_path / "model.fastrnn"
    model.save(path)
    before = path.read_bytes()

    def broken(model, fileobj):
        fileobj.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(native, "write_model", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fastrnn"]


def test_arrays_are_stored_uncompressed_and_json_is_strict(tmp_path, rng):
    model, _, _ = _trained(rng)
    model.save(tmp_path / "m.fastrnn")
    with zipfile.ZipFile(tmp_path / "m.fastrnn") as zf:
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                assert info.compress_type == zipfile.ZIP_STORED
    model.optimizer.clipnorm = float("inf")
    with pytest.raises(ValueError, match="compile.json cannot be written as JSON"):
        model.save(tmp_path / "inf.fastrnn")


def test_unbuilt_model_is_refused(tmp_path):
    model = Sequential([F.LSTM(2)])
    for call in (model.save, model.save_weights):
        with pytest.raises(ValueError, match="not built"):
            call(tmp_path / "m.keras")
    with pytest.raises(TypeError, match="filepath"):
        Sequential([F.LSTM(2, input_shape=(3, 2))]).save(123)


def test_keras_archive_with_deflated_weights_entry_loads(tmp_path, rng):
    """Keras stores model.weights.h5 uncompressed; a re-zipped archive deflates it."""
    pytest.importorskip("h5py")
    model, x, _ = _trained(rng)
    model.save(tmp_path / "stored.keras")
    with zipfile.ZipFile(tmp_path / "stored.keras") as src:
        with zipfile.ZipFile(tmp_path / "deflated.keras", "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                dst.writestr(info.filename, src.read(info))
    with zipfile.ZipFile(tmp_path / "deflated.keras") as zf:
        assert zf.getinfo("model.weights.h5").compress_type == zipfile.ZIP_DEFLATED
    loaded = load_model(tmp_path / "deflated.keras")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_layer_without_keras_row_is_named_when_saving(tmp_path):
    pytest.importorskip("h5py")

    class Custom(F.Dense):
        pass

    model = Sequential([F.LSTM(2, input_shape=(T, FEATURES)), Custom(1, name="mine")])
    for call, name in ((model.save, "m.keras"), (model.save_weights, "m.weights.h5")):
        with pytest.raises(ValueError, match=r"'mine' \(Custom\) has no Keras file mapping"):
            call(tmp_path / name)
    assert not list(tmp_path.iterdir())
    model.save(tmp_path / "m.fastrnn")  # fastrnn's own format is unaffected... until loading:
    with pytest.raises(ValueError, match="Custom"):
        load_model(tmp_path / "m.fastrnn")


# ---- Functional models --------------------------------------------------------------------------
def _functional_model() -> Model:
    """Two inputs, two outputs: a shared LSTM on masked inputs, merges, states handed on as
    initial_state, a nested Sequential and a nested Functional model (called twice)."""
    tok = F.Input((T,), dtype="int32", name="tok")
    seq = F.Input((T, FEATURES), name="seq")
    emb = F.Embedding(VOCAB, FEATURES, mask_zero=True, name="emb")(tok)
    masked = F.Masking(name="masking")(seq)
    shared = F.LSTM(4, return_sequences=True, return_state=True, name="shared")
    a, h, c = shared(emb)
    b, _, _ = shared(masked)
    dec = F.LSTM(4, return_sequences=True, name="dec")(F.Dense(FEATURES)(b), initial_state=[h, c])
    inner_in = F.Input((T, 4), name="inner_in")
    encoder = Model(inner_in, F.GRU(3, return_sequences=True)(inner_in), name="encoder")
    joined = F.Concatenate(name="joined")([encoder(a), encoder(dec)])
    F.Maximum(name="unused")([a, F.Subtract()([b, dec])])  # outside the outputs' graph
    head = Sequential([F.Input((6,)), F.Dense(5, activation="tanh"), F.Dense(3)], name="head")
    score = F.Dense(1, name="score")(F.Bidirectional(F.SimpleRNN(3), name="bi")(joined))
    label = head(F.GlobalAveragePooling1D()(F.Average()([joined, joined])))
    return Model([tok, seq], [score, F.Activation("softmax", name="label")(label)], name="two")


def _functional_data(rng):
    tok = rng.integers(1, VOCAB, (7, T))
    tok[1, 2:] = 0
    seq = rng.standard_normal((7, T, FEATURES))
    seq[3, 4:] = 0.0
    y = [rng.standard_normal((7, 1)), rng.integers(0, 3, (7,))]
    return [tok, seq], y


def _trained_functional(rng):
    model = _functional_model()
    model.set_weights([rng.standard_normal(w.shape) * 0.5 for w in model.get_weights()])
    model.compile(
        optimizers.Adam(0.01),
        loss={"score": "mse", "label": "sparse_categorical_crossentropy"},
        loss_weights={"score": 1.0, "label": 0.3},
        metrics={"label": ["accuracy"]},
        weighted_metrics=[["mae"], None],
    )
    x, y = _functional_data(rng)
    model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    return model, x, y


@pytest.mark.parametrize("suffix", [".fastrnn", ".keras"])
def test_functional_round_trip_restores_weights_and_training_state(suffix, tmp_path, rng):
    if suffix == ".keras":
        pytest.importorskip("h5py")
    model, x, y = _trained_functional(rng)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_model(path)
    assert type(loaded) is Model and loaded.name == "two"
    assert [la.name for la in loaded.layers] == [la.name for la in model.layers]
    assert loaded.output_names == model.output_names
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(loaded.predict(x), model.predict(x)):
        np.testing.assert_array_equal(a, b)
    ours, theirs = loaded.get_compile_config(), model.get_compile_config()
    for key in ("loss_weights", "metrics", "weighted_metrics", "optimizer"):
        assert ours[key] == theirs[key], key
    # Keras files hold loss objects where compile was given names.
    assert {k: losses.get(v).get_config() for k, v in ours["loss"].items()} == {
        k: losses.get(v).get_config() for k, v in theirs["loss"].items()
    }
    assert loaded.optimizer.iterations == model.optimizer.iterations == 4
    for a, b in zip(loaded.optimizer.get_state()[1], model.optimizer.get_state()[1]):
        np.testing.assert_array_equal(a, b)
    history = [
        m.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0) for m in (model, loaded)
    ]
    assert history[0].history == history[1].history
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["w.weights.h5", "w.weights.zip"])
def test_functional_weights_files_round_trip(name, tmp_path, rng):
    if name.endswith(".h5"):
        pytest.importorskip("h5py")
    model, x, _ = _trained_functional(rng)
    model.save_weights(tmp_path / name)
    clone = _functional_model()
    clone.load_weights(tmp_path / name)
    for a, b in zip(clone.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(clone.predict(x), model.predict(x)):
        np.testing.assert_array_equal(a, b)


def test_per_output_losses_as_lists_round_trip(tmp_path, rng):
    """compile's per-output arguments as lists, a None loss included, through .fastrnn."""
    model = _functional_model()
    model.compile("sgd", loss=[None, "sparse_categorical_crossentropy"], metrics=[[], ["acc"]])
    model.save(tmp_path / "m.fastrnn")
    loaded = load_model(tmp_path / "m.fastrnn")
    assert loaded.get_compile_config() == model.get_compile_config()
    x, y = _functional_data(rng)
    y = [None, y[1]]
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_native_functional_checks_weights_before_building(tmp_path, rng):
    """A config asking for huge layers is refused from the arrays' headers, before building."""
    model = _functional_model()
    model.save(tmp_path / "m.fastrnn")
    with zipfile.ZipFile(tmp_path / "m.fastrnn") as zf:
        entries = {info.filename: zf.read(info) for info in zf.infolist()}
    config = json.loads(entries["config.json"])
    dense = next(s for s in config["config"]["layers"] if s["name"] == "score")
    dense["config"]["units"] = 10**9
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "big.fastrnn", "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    with pytest.raises(ValueError, match=r"'score'.*kernel.*\(6, 1000000000\)"):
        load_model(tmp_path / "big.fastrnn")
