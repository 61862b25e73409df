"""Sequential: summary counts, fit/evaluate/predict, callbacks, save/load, losses, optimizers."""

from __future__ import annotations

import io
import zipfile
from contextlib import redirect_stdout

import numpy as np
import pytest
from fastrnn import losses, optimizers
from fastrnn.callbacks import Callback, EarlyStopping, ModelCheckpoint
from fastrnn.initializers import set_random_seed
from fastrnn.layers import GRU, LSTM, Bidirectional, Dense, Embedding, SimpleRNN
from fastrnn.models import Sequential, load_model


def _summary(model) -> str:
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


def test_summary_param_counts_keras_formulas():
    model = Sequential([Embedding(10000, 32), SimpleRNN(32)])
    model.build((None, None))
    assert model.count_params() == 322_080
    text = _summary(model)
    assert "Total params: 322,080" in text and "(None, None, 32)" in text and "(None, 32)" in text
    assert Sequential([LSTM(32, input_shape=(None, 32))]).count_params() == 8_320
    for i, h in [(5, 7), (32, 16)]:
        gru = Sequential([GRU(h, input_shape=(None, i))])
        assert gru.count_params() == 3 * (i * h + h * h + 2 * h)
        old = Sequential([GRU(h, reset_after=False, input_shape=(None, i))])
        assert old.count_params() == 3 * (i * h + h * h + h)
    bi = Sequential([Bidirectional(LSTM(8, return_sequences=True), input_shape=(4, 3))])
    assert bi.count_params() == 2 * 4 * (3 * 8 + 8 * 8 + 8)
    assert "(None, 4, 16)" in _summary(bi)


def _toy_regression(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6, 2)).astype(np.float32)
    y = x[:, :, :1].sum(axis=1) * 0.3
    return x, y


@pytest.mark.parametrize(
    "opt",
    [
        "adam",
        "rmsprop",
        optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        optimizers.Adagrad(0.1, clipnorm=1.0),
    ],
)
def test_fit_lowers_loss(opt):
    set_random_seed(0)
    x, y = _toy_regression()
    model = Sequential([GRU(8, input_shape=(6, 2)), Dense(1)])
    model.compile(optimizer=opt, loss="mse", metrics=["mae"])
    before = model.evaluate(x, y, verbose=0)[0]
    hist = model.fit(x, y, epochs=8, batch_size=16, validation_split=0.25, verbose=0)
    assert set(hist.history) == {"loss", "mae", "val_loss", "val_mae"}
    assert len(hist.history["loss"]) == 8
    assert hist.history["loss"][-1] < before
    assert model.predict(x, batch_size=7).shape == (96, 1)


def test_verbose_modes_output():
    x, y = _toy_regression(32)
    model = Sequential([SimpleRNN(4, input_shape=(6, 2)), Dense(1)])
    model.compile("sgd", "mse")
    for verbose, expect in [(0, ""), (2, "Epoch 1/2"), (1, "/step")]:
        buf = io.StringIO()
        with redirect_stdout(buf):
            model.fit(x, y, epochs=2, batch_size=8, verbose=verbose)
        out = buf.getvalue()
        assert (out == "") if verbose == 0 else (expect in out and "loss:" in out)


def test_early_stopping_stops_and_restores():
    set_random_seed(1)
    x, y = _toy_regression(64)

    class Record(Callback):
        def on_train_begin(self, logs=None):
            self.weights, self.calls = [], []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self.model.get_weights())
            self.calls.append(logs["val_loss"])

    model = Sequential([SimpleRNN(4, input_shape=(6, 2)), Dense(1)])
    model.compile(optimizers.SGD(5.0), "mse")  # too large: validation loss gets worse
    rec = Record()
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    hist = model.fit(x, y, epochs=30, validation_split=0.25, callbacks=[rec, stop], verbose=0)
    assert len(hist.history["loss"]) < 30
    best = int(np.argmin(rec.calls))
    for a, b in zip(model.get_weights(), rec.weights[best]):
        np.testing.assert_array_equal(a, b)


def test_save_load_round_trip_exact(tmp_path):
    set_random_seed(2)
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20, (40, 9))
    x[:10, 6:] = 0
    y = rng.integers(0, 3, 40)
    model = Sequential(
        [
            Embedding(20, 5, mask_zero=True, input_shape=(9,)),
            Bidirectional(LSTM(6, return_sequences=True), merge_mode="ave"),
            GRU(4, go_backwards=True),
            Dense(3, activation="softmax"),
        ]
    )
    model.compile(
        optimizers.Adam(0.01, amsgrad=True), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.fastrnn"
    model.save(path)
    loaded = load_model(path)
    assert loaded.get_config() == model.get_config()
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations
    for a, b in zip(loaded.optimizer.get_state()[1], model.optimizer.get_state()[1]):
        np.testing.assert_array_equal(a, b)
    # Training on continues identically.
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with zipfile.ZipFile(path) as zf:
        assert "config.json" in zf.namelist()
        assert all(n.endswith((".json", ".npy")) for n in zf.namelist())


def test_model_checkpoint_and_config(tmp_path):
    x, y = _toy_regression(32)
    model = Sequential([LSTM(3, input_shape=(6, 2)), Dense(1)])
    model.compile("adam", "mae")
    ckpt = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.fastrnn"))
    model.fit(x, y, epochs=2, callbacks=[ckpt], verbose=0)
    assert (tmp_path / "m-02.fastrnn").exists()
    clone = Sequential.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))
    model.save_weights(tmp_path / "w.zip")
    clone2 = Sequential.from_config(model.get_config())
    clone2.load_weights(tmp_path / "w.zip")
    np.testing.assert_array_equal(clone2.predict(x), model.predict(x))


def _numeric_grad(loss, y_true, y_pred, eps=1e-6):
    g = np.zeros_like(y_pred)
    for i in np.ndindex(y_pred.shape):
        up, down = y_pred.copy(), y_pred.copy()
        up[i] += eps
        down[i] -= eps
        g[i] = (loss(y_true, up) - loss(y_true, down)) / (2 * eps)
    return g


@pytest.mark.parametrize(
    "loss,kind",
    [
        ("mse", "real"),
        ("mae", "real"),
        ("binary_crossentropy", "prob"),
        (losses.BinaryCrossentropy(from_logits=True), "real"),
        ("categorical_crossentropy", "simplex"),
        (losses.CategoricalCrossentropy(from_logits=True), "real"),
        ("sparse_categorical_crossentropy", "simplex"),
        (losses.SparseCategoricalCrossentropy(from_logits=True), "real"),
    ],
)
def test_loss_gradients(loss, kind):
    rng = np.random.default_rng(3)
    loss = losses.get(loss)
    y_pred = rng.standard_normal((4, 3))
    if kind == "prob":
        y_pred = 1 / (1 + np.exp(-y_pred))
    if kind == "simplex":
        y_pred = np.exp(y_pred) / np.exp(y_pred).sum(-1, keepdims=True)
    if "sparse" in loss.name:
        y_true = rng.integers(0, 3, 4)
    elif "categorical" in loss.name:
        y_true = np.eye(3)[rng.integers(0, 3, 4)]
    else:
        y_true = (
            rng.random((4, 3)).round() if "binary" in loss.name else rng.standard_normal((4, 3))
        )
    np.testing.assert_allclose(
        loss.gradient(y_true, y_pred), _numeric_grad(loss, y_true, y_pred), atol=1e-6
    )


def test_loss_values_formulas():
    y_true = np.array([[0.0, 1.0], [1.0, 0.0]])
    y_pred = np.array([[0.2, 0.6], [0.7, 0.1]])
    assert losses.get("mse")(y_true, y_pred) == pytest.approx(np.mean((y_true - y_pred) ** 2))
    p = y_pred / y_pred.sum(-1, keepdims=True)
    assert losses.get("categorical_crossentropy")(y_true, y_pred) == pytest.approx(
        -np.mean(np.log((p * y_true).sum(-1)))
    )


def test_optimizer_rules_against_formulas():
    g = np.array([0.5, -2.0])
    w = np.array([1.0, 1.0])
    adam = optimizers.Adam(0.1)
    adam.apply([g], [w])
    m, v = 0.1 * g, 0.001 * g * g
    lr = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_allclose(w, 1.0 - lr * m / (np.sqrt(v) + 1e-7))
    w = np.array([1.0, 1.0])
    optimizers.SGD(0.1, clipvalue=1.0).apply([g], [w])
    np.testing.assert_allclose(w, [0.95, 1.1])
    w = np.array([1.0, 1.0])
    optimizers.SGD(1.0, global_clipnorm=1.0).apply([g], [w])
    np.testing.assert_allclose(np.linalg.norm(w - 1.0), 1.0)
    w = np.array([1.0, 1.0])
    optimizers.Adagrad(0.1).apply([g], [w])
    np.testing.assert_allclose(w, 1.0 - 0.1 * g / np.sqrt(0.1 + g * g + 1e-7))
    assert optimizers.get("adagrad").learning_rate == 0.001
    assert optimizers.get("sgd").learning_rate == 0.01


def test_accuracy_inference():
    x = np.random.default_rng(0).standard_normal((8, 3, 2)).astype(np.float32)
    y_sparse = np.arange(8) % 3
    m = Sequential([SimpleRNN(4, input_shape=(3, 2)), Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    acc = m.evaluate(x, y_sparse, verbose=0)[1]
    pred = m.predict(x).argmax(-1)
    assert acc == pytest.approx(np.mean(pred == y_sparse))
    m.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    assert m.evaluate(x, np.eye(3)[y_sparse], verbose=0)[1] == pytest.approx(acc)
