"""The training loop shared by Sequential and Model: weights, data sources, steps, seeds, freezing.

Expected losses are recomputed here with NumPy from the model's predictions and Keras's
documented reduction (``sum(values * weights) / count``); Keras itself is compared in
``test_keras_compat_models.py``.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import fastrnn
import numpy as np
import pytest
from fastrnn import Input, Model, Sequential
from fastrnn import layers as F
from fastrnn import optimizers as O


def _regressor(seed=0, dropout=0.0):
    fastrnn.set_random_seed(seed)
    return Sequential([Input((5, 3)), F.GRU(4, dropout=dropout), F.Dense(2)])


def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5, 3)).astype(np.float32)
    y = rng.standard_normal((n, 2)).astype(np.float32)
    return x, y, rng


def test_sample_weight_reduction():
    model = _regressor()
    model.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mae"])
    x, y, rng = _data(n=11)
    sw = rng.random(11)
    pred = model.predict(x, verbose=0).astype(np.float64)
    values = ((pred - y) ** 2).mean(-1)
    abs_err = np.abs(pred - y).mean(-1)
    logs = model.evaluate(x, y, sample_weight=sw, batch_size=4, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(np.sum(values * sw) / 11, rel=1e-6)  # not / sum(sw)
    assert logs["mae"] == pytest.approx(abs_err.mean(), rel=1e-6)  # plain metrics: unweighted
    assert logs["weighted_mae"] == pytest.approx(np.sum(abs_err * sw) / sw.sum(), rel=1e-6)


def test_temporal_sample_weight_and_broadcast():
    fastrnn.set_random_seed(1)
    model = Sequential([Input((6, 3)), F.LSTM(4, return_sequences=True), F.Dense(2)])
    model.compile("sgd", "mse")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    y = rng.standard_normal((4, 6, 2)).astype(np.float32)
    values = ((model.predict(x, verbose=0) - y) ** 2).mean(-1)
    per_step = rng.random((4, 6))
    assert model.evaluate(x, y, sample_weight=per_step, verbose=0) == pytest.approx(
        np.mean(values * per_step), rel=1e-6
    )
    per_sample = rng.random(4)  # broadcast over the time steps (Keras raises here)
    assert model.evaluate(x, y, sample_weight=per_sample, verbose=0) == pytest.approx(
        np.mean(values * per_sample[:, None]), rel=1e-6
    )
    with pytest.raises(ValueError, match="sample_weight"):
        model.evaluate(x, y, sample_weight=rng.random((4, 5)), verbose=0)


def test_class_weight_equals_its_sample_weight():
    x, _, rng = _data(n=10, seed=2)
    labels = rng.integers(0, 3, 10)
    weights = {0: 0.25, 1: 2.0, 2: 1.5}
    models = []
    for kwargs in ({"class_weight": weights}, {"sample_weight": np.vectorize(weights.get)(labels)}):
        fastrnn.set_random_seed(2)
        model = Sequential([Input((5, 3)), F.GRU(4), F.Dense(3, activation="softmax")])
        model.compile(O.SGD(0.3), "sparse_categorical_crossentropy")
        model.fit(x, labels, batch_size=4, epochs=2, verbose=0, **kwargs)
        models.append(model)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_array_equal(a, b)
    onehot = np.eye(3)[labels]
    model = models[0]
    model.compile("sgd", "categorical_crossentropy")
    p = np.clip(model.predict(x, verbose=0).astype(np.float64), 1e-7, 1 - 1e-7)
    ce = -np.log((p / p.sum(-1, keepdims=True) * onehot).sum(-1))
    cw = np.vectorize(weights.get)(labels)
    assert model.train_on_batch(x, onehot, class_weight=weights) == pytest.approx(
        np.mean(ce * cw), rel=1e-5
    )
    with pytest.raises(ValueError, match="both class_weight and sample_weight"):
        model.fit(x, onehot, class_weight=weights, sample_weight=cw, verbose=0)
    with pytest.raises(ValueError, match="integer class indices"):
        model.fit(x, onehot, class_weight={"a": 1.0}, verbose=0)


def test_multi_output_losses_weights_and_dicts():
    seq = Input((5, 3), name="seq")
    h = F.GRU(4, name="enc")(seq)
    model = Model(seq, {"value": F.Dense(1, name="value")(h), "cls": F.Dense(3, name="cls")(h)})
    model.compile(
        "sgd",
        loss={"value": "mae", "cls": fastrnn.losses.CategoricalCrossentropy(from_logits=True)},
        loss_weights={"value": 0.5, "cls": 3.0},
        metrics={"value": ["mse"]},
    )
    x, _, rng = _data(n=8, seed=3)
    y = {"value": rng.standard_normal((8, 1)), "cls": np.eye(3)[rng.integers(0, 3, 8)]}
    pred = model.predict(x, verbose=0)
    mae = np.abs(pred["value"] - y["value"]).mean()
    z = pred["cls"].astype(np.float64)
    log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ce = -(y["cls"] * log_softmax).sum(-1).mean()
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == ["cls_loss", "loss", "value_loss", "value_mse"]
    assert logs["value_loss"] == pytest.approx(mae, rel=1e-6)
    assert logs["cls_loss"] == pytest.approx(ce, rel=1e-6)
    assert logs["loss"] == pytest.approx(0.5 * mae + 3.0 * ce, rel=1e-6)
    # Keras's list order: loss, then per-output losses, then the rest by name.
    values = model.evaluate(x, y, verbose=0)
    assert values == pytest.approx(
        [logs["loss"], logs["cls_loss"], logs["value_loss"], logs["value_mse"]]
    )
    with pytest.raises(ValueError, match="output names"):
        model.compile("sgd", loss={"value": "mse"})
    with pytest.raises(ValueError, match="one entry"):
        model.compile("sgd", loss="mse", metrics=["mae"])
    with pytest.raises(ValueError, match="single output"):
        model.compile("sgd", loss="mse")
        model.fit(x, y, class_weight={0: 1.0}, verbose=0)


def test_validation_data_with_weights_and_freq():
    model = _regressor()
    model.compile("sgd", "mse")
    x, y, rng = _data()
    xv, yv, wv = x[:5], y[:5], rng.random(5)
    hist = model.fit(x, y, epochs=4, validation_data=(xv, yv, wv), validation_freq=2, verbose=0)
    assert len(hist.history["loss"]) == 4 and len(hist.history["val_loss"]) == 2
    assert hist.history["val_loss"][-1] == pytest.approx(
        model.evaluate(xv, yv, sample_weight=wv, verbose=0), rel=1e-6
    )
    hist = model.fit(x, y, epochs=4, validation_data=(xv, yv), validation_freq=[1, 4], verbose=0)
    assert len(hist.history["val_loss"]) == 2
    w = rng.random(12)  # validation_split takes the last samples, their weights with them
    hist = model.fit(x, y, sample_weight=w, validation_split=0.25, epochs=1, verbose=0)
    assert hist.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[9:], y[9:], sample_weight=w[9:], verbose=0), rel=1e-6
    )
    with pytest.raises(ValueError, match="validation_freq"):
        model.fit(x, y, validation_data=(xv, yv), validation_freq=0, verbose=0)
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(x, y, validation_data=(xv,), verbose=0)


class _Batches:
    """A Sequence/PyDataset-style object: indexable batches, with on_epoch_end."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.requested: list[int] = []
        self.epochs_ended = 0

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        self.requested.append(i)
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[s], self.y[s]

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_sequence_matches_arrays_and_calls_on_epoch_end():
    x, y, _ = _data(n=10)
    seq = _Batches(x, y, 4)
    a, b = _regressor(seed=5), _regressor(seed=5)
    for m in (a, b):
        m.compile(O.Adam(0.01), "mse", metrics=["mae"])
    ha = a.fit(seq, epochs=3, shuffle=False, verbose=0)
    hb = b.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    assert seq.requested == [0, 1, 2] * 3 and seq.epochs_ended == 3
    for w1, w2 in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    assert ha.history == hb.history
    seq.requested.clear()
    fastrnn.set_random_seed(0)
    a.fit(seq, epochs=4, verbose=0)  # shuffle=True permutes the batch order
    orders = [tuple(seq.requested[i : i + 3]) for i in range(0, 12, 3)]
    assert all(sorted(o) == [0, 1, 2] for o in orders) and len(set(orders)) > 1
    assert a.evaluate(_Batches(x, y, 3), verbose=0) == pytest.approx(
        a.evaluate(x, y, batch_size=3, verbose=0), rel=1e-12
    )
    with pytest.raises(ValueError, match="batch_size must be None"):
        a.fit(seq, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="y must be None"):
        a.fit(seq, y, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        a.fit(seq, validation_split=0.2, verbose=0)


def test_generators_with_steps_and_running_out():
    x, y, _ = _data(n=12)
    consumed = []

    def forever():
        i = 0
        while True:
            consumed.append(i)
            yield x[i % 3 * 4 : i % 3 * 4 + 4], y[i % 3 * 4 : i % 3 * 4 + 4]
            i += 1

    model = _regressor()
    model.compile("sgd", "mse")
    val = _Batches(x[:6], y[:6], 3)
    hist = model.fit(
        forever(), steps_per_epoch=5, epochs=2, validation_data=val, validation_steps=1, verbose=0
    )
    assert len(consumed) == 10 and len(hist.history["val_loss"]) == 2
    assert val.requested == [0, 1]  # one batch per validation run, the pass continuing

    def finite():
        for i in range(3):
            yield x[i * 4 : i * 4 + 4], y[i * 4 : i * 4 + 4], np.ones(4)

    with pytest.warns(UserWarning, match="ran out of data"):
        hist = model.fit(finite(), epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 1  # the second epoch found the generator empty
    with pytest.warns(UserWarning, match="ran out of data"):
        hist = model.fit(finite(), steps_per_epoch=2, epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 2  # 2 steps, then 1 (interrupted), then nothing
    preds = model.predict((x[i : i + 5] for i in (0, 5, 10)), verbose=0)
    np.testing.assert_allclose(preds, model.predict(x, verbose=0), rtol=1e-6)


def test_generator_progress_shows_unknown_target():
    x, y, _ = _data(n=8)
    model = _regressor()
    model.compile("sgd", "mse")
    buf = io.StringIO()
    with redirect_stdout(buf):
        model.fit(((x[i : i + 4], y[i : i + 4]) for i in (0, 4)), epochs=1, verbose=1)
    assert "1/Unknown" in buf.getvalue() and "2/2" in buf.getvalue()


def test_steps_per_epoch_with_arrays_continues_the_pass():
    x, y, _ = _data(n=16)
    seen = []

    class Spy(fastrnn.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(batch)

    model = _regressor()
    model.compile("sgd", "mse")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 4 batches, 2 per epoch: no pass runs dry mid-epoch
        model.fit(x, y, batch_size=4, steps_per_epoch=2, epochs=3, verbose=0, callbacks=[Spy()])
    assert seen == [0, 1] * 3
    seen.clear()
    with pytest.warns(UserWarning, match="ran out"):  # as Keras: the epoch ends with the pass
        hist = model.fit(
            x, y, batch_size=4, steps_per_epoch=3, epochs=3, verbose=0, callbacks=[Spy()]
        )
    assert seen == [0, 1, 2, 0, 0, 1, 2] and len(hist.history["loss"]) == 3


def test_on_batch_methods():
    model = _regressor()
    model.compile("sgd", "mse", metrics=["mae"])
    x, y, _ = _data(n=6)
    pred = model.predict_on_batch(x)
    assert isinstance(pred, np.ndarray) and pred.shape == (6, 2)
    loss_before = np.mean((pred.astype(np.float64) - y) ** 2)
    loss, mae = model.train_on_batch(x, y)
    assert loss == pytest.approx(loss_before, rel=1e-6)  # the batch's loss before the step
    assert type(loss) is float and type(mae) is float
    first = model.test_on_batch(x, y, return_dict=True)
    assert model.test_on_batch(x, y, return_dict=True) == first  # metrics reset per call
    assert model.test_on_batch(x, y)[0] < loss


def test_fit_is_reproducible_with_a_seed():
    x, y, _ = _data(n=20)

    def run(seed):
        fastrnn.set_random_seed(seed)
        model = Sequential([Input((5, 3)), F.LSTM(4, dropout=0.3), F.Dropout(0.2), F.Dense(2)])
        model.compile(O.Adam(0.01), "mse")
        model.fit(x, y, batch_size=4, epochs=2, verbose=0)
        return model.get_weights()

    first, again, other = run(3), run(3), run(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
    # The shuffle alone follows the seed: same start, different seeds, different results.
    base = _regressor(seed=9)
    base.compile("sgd", "mse")
    start = base.get_weights()
    results = []
    for seed in (1, 1, 2):
        base.set_weights(start)
        fastrnn.set_random_seed(seed)
        base.fit(x, y, batch_size=4, epochs=1, verbose=0)
        results.append(base.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(results[0], results[1]))
    assert any(not np.array_equal(a, b) for a, b in zip(results[0], results[2]))


def test_trainable_false_is_honoured_by_fit():
    x, y, _ = _data()
    model = _regressor()
    model.compile(O.Adam(0.05), "mse")
    model.trainable = False
    before = model.get_weights()
    with pytest.warns(UserWarning, match="no trainable weights|does not have any"):
        model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(not la.trainable for la in model.layers)
    lines = []
    model.summary(print_fn=lines.append)
    assert "Trainable params: 0 " in lines[0]
    model.trainable = True
    gru, dense = model.layers
    model.fit(x, y, epochs=1, verbose=0)
    slots_dense = [s for s in model.optimizer.slots[-2:]]
    gru.trainable = False  # freeze one layer mid-training
    frozen = gru.get_weights()
    dense_before = dense.get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(frozen, gru.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(dense_before, dense.get_weights()))
    # The Dense weights kept their Adam slots (same arrays, moved on), positions changed.
    assert [s is t for s, t in zip(model.optimizer.slots, slots_dense)] == [True, True]
    bi = F.Bidirectional(F.GRU(2), trainable=False)
    assert not bi.forward_layer.trainable and not bi.backward_layer.trainable


def test_metric_objects_get_mask_weights():
    class Recorder:
        name = "recorder"

        def __init__(self):
            self.weights = []
            self.total = 0.0

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.weights.append(sample_weight)
            self.total += float(np.sum(y_pred))

        def result(self):
            return self.total

        def reset_state(self):
            self.total = 0.0

    recorder = Recorder()
    fastrnn.set_random_seed(4)
    model = Sequential(
        [Input((4,)), F.Embedding(9, 3, mask_zero=True), F.LSTM(2, return_sequences=True)]
    )
    model.compile("sgd", "mse", metrics=[recorder, "mae"])
    ids = np.array([[1, 2, 0, 0], [3, 4, 5, 6]])
    logs = model.evaluate(ids, np.zeros((2, 4, 2)), verbose=0, return_dict=True)
    assert set(logs) == {"loss", "mae", "recorder"}
    compiled = model._output_metrics[0][0][0]
    assert compiled is not recorder  # each model output gets its own copy
    assert compiled.weights[0].tolist() == (ids != 0).astype(float).tolist()


def test_fit_argument_errors():
    model = _regressor()
    x, y, _ = _data()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y, verbose=0)
    model.compile("sgd", "mse")
    for kwargs, exc, pattern in [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"validation_split": 1.0}, ValueError, "validation_split"),
        ({"epochs": -1}, ValueError, "epochs"),
        ({"steps_per_epoch": 0}, ValueError, "steps_per_epoch"),
        ({"verbose": 3}, ValueError, "verbose"),
        ({"shuffle": "yes"}, ValueError, "shuffle"),
    ]:
        with pytest.raises(exc, match=pattern):
            model.fit(x, y, **kwargs)
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y[:5], verbose=0)
    with pytest.raises(TypeError, match="complex"):
        model.fit(x.astype(np.complex64), y, verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y, sample_weight=np.ones(3), verbose=0)
    with pytest.raises(TypeError, match="third argument is loss_weights"):
        model.compile("sgd", "mse", ["mae"])  # Keras's order: (optimizer, loss, loss_weights)
