"""Optimizers, learning-rate schedules and callbacks against real Keras 3 (torch backend).

Optimizers: the same variables and random gradients through ours and Keras's for several steps
(weight decay, schedules, clipping, AdamW, Nadam), variables equal after every step. Schedules:
values at every step equal. Callbacks: each driven with the same sequence of logs as Keras's, the
same learning rates, logs, messages and CSV bytes; hooks called in Keras's order by ``fit``.
"""

from __future__ import annotations

import json
import math
import os
import types

import numpy as np
import pytest
from _keras_api import keras_argument_mismatches, keras_defaults
from harness import assert_close

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from fastrnn import callbacks as CB  # noqa: E402
from fastrnn import optimizers as O  # noqa: E402
from fastrnn.layers import GRU, Dense  # noqa: E402
from fastrnn.models import Sequential, load_model  # noqa: E402

S, KS = O.schedules, keras.optimizers.schedules
SHAPES = [(5, 3), (3,), (7, 2)]

OPTIMIZERS = [
    ("sgd_nesterov_wd", lambda m: m.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("sgd_exponential", lambda m: m.SGD(m.schedules.ExponentialDecay(0.2, 2, 0.5))),
    (
        "adam_schedule_clip",
        lambda m: m.Adam(m.schedules.InverseTimeDecay(0.01, 2, 0.5), clipnorm=1.0),
    ),
    ("adam_wd", lambda m: m.Adam(0.01, weight_decay=0.1, amsgrad=True)),
    ("adamw_default", lambda m: m.AdamW(0.01)),
    (
        "adamw_cosine",
        lambda m: m.AdamW(m.schedules.CosineDecay(0.01, 4, alpha=0.1), weight_decay=0.1),
    ),
    ("nadam", lambda m: m.Nadam(0.01)),
    (
        "nadam_piecewise_wd",
        lambda m: m.Nadam(
            m.schedules.PiecewiseConstantDecay([1, 3], [0.02, 0.01, 0.005]), weight_decay=0.02
        ),
    ),
    (
        "rmsprop_centered",
        lambda m: m.RMSprop(
            m.schedules.PolynomialDecay(0.01, 4, power=2.0), momentum=0.5, centered=True
        ),
    ),
    ("adagrad_wd_globalclip", lambda m: m.Adagrad(0.1, weight_decay=0.1, global_clipnorm=2.0)),
]


@pytest.mark.parametrize("name,make", OPTIMIZERS, ids=[c[0] for c in OPTIMIZERS])
def test_optimizer_steps_match_keras(name, make):
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    ours_vars = [w.copy() for w in start]
    keras_vars = [keras.Variable(w) for w in start]
    ours, theirs = make(O), make(keras.optimizers)
    for step in range(7):
        grads = [(rng.standard_normal(s) * 2).astype(np.float32) for s in SHAPES]
        ours.apply(grads, ours_vars)
        theirs.apply([torch.tensor(g) for g in grads], keras_vars)
        for i, (w, kv, w0) in enumerate(zip(ours_vars, keras_vars, start)):
            expected = keras.ops.convert_to_numpy(kv)
            # float32 updates: compare the total change, at its own scale
            change = np.abs(expected - w0).max()
            assert_close(w, expected, 0.0, atol=5e-5 * change, name=f"{name} step {step} var {i}")
        assert ours.iterations == int(keras.ops.convert_to_numpy(theirs.iterations))
        assert ours.learning_rate == pytest.approx(
            float(keras.ops.convert_to_numpy(theirs.learning_rate)), rel=1e-6
        )


SCHEDULES = [
    ("exponential_staircase", lambda m: m.ExponentialDecay(0.1, 3, 0.7, staircase=True)),
    ("exponential", lambda m: m.ExponentialDecay(0.1, 4, 0.96)),
    ("piecewise", lambda m: m.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1])),
    ("polynomial_cycle", lambda m: m.PolynomialDecay(0.1, 5, 0.01, power=2, cycle=True)),
    ("polynomial", lambda m: m.PolynomialDecay(0.1, 5)),
    ("inverse_time", lambda m: m.InverseTimeDecay(0.1, 3, 0.5)),
    ("inverse_time_staircase", lambda m: m.InverseTimeDecay(0.1, 3, 0.5, staircase=True)),
    ("cosine", lambda m: m.CosineDecay(0.1, 6, alpha=0.2)),
    ("cosine_warmup", lambda m: m.CosineDecay(0.0, 6, warmup_target=0.1, warmup_steps=3)),
    ("cosine_restarts", lambda m: m.CosineDecayRestarts(0.1, 3, t_mul=2.0, m_mul=0.5, alpha=0.1)),
    ("cosine_restarts_t1", lambda m: m.CosineDecayRestarts(0.1, 3, t_mul=1.0)),
]


@pytest.mark.parametrize("name,make", SCHEDULES, ids=[c[0] for c in SCHEDULES])
def test_schedules_match_keras(name, make):
    ours, theirs = make(S), make(KS)
    steps = range(25)
    values = np.array([ours(s) for s in steps])
    expected = np.array([float(keras.ops.convert_to_numpy(theirs(s))) for s in steps])
    assert_close(values, expected, 1e-6, name=name)
    assert ours.get_config() == theirs.get_config()
    clone = O.deserialize_schedule(json.loads(json.dumps(O.serialize_schedule(ours))))
    assert [clone(s) for s in steps] == list(values)


def test_schedules_module_imports_like_keras():
    from fastrnn.optimizers.schedules import CosineDecay, LearningRateSchedule

    assert issubclass(CosineDecay, LearningRateSchedule)
    assert O.schedules.ExponentialDecay is O.ExponentialDecay


class InverseSqrt(O.LearningRateSchedule):
    def __init__(self, base):
        self.base = base

    def __call__(self, step):
        return self.base / math.sqrt(step + 1)

    def get_config(self):
        return {"base": self.base}


def test_optimizer_with_schedule_survives_save_and_load(tmp_path):
    """AdamW + CosineDecay (and a user schedule): 3 steps, save, load, 3 more steps equals 6."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 5, 2)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    for make in (
        lambda: O.AdamW(S.CosineDecay(0.01, 5, warmup_target=0.02, warmup_steps=2)),
        lambda: O.Nadam(InverseSqrt(0.01), weight_decay=0.01),
    ):
        model = Sequential([GRU(4, input_shape=(5, 2)), Dense(1)])
        model.compile(make(), "mse")
        start = model.get_weights()
        for _ in range(3):
            model.train_on_batch(x, y)
        path = tmp_path / "model.fastrnn"
        model.save(path)
        resumed = load_model(path)
        assert type(resumed.optimizer._learning_rate) is type(model.optimizer._learning_rate)
        for _ in range(3):
            model.train_on_batch(x, y)
            resumed.train_on_batch(x, y)
        for a, b in zip(model.get_weights(), resumed.get_weights()):
            assert_close(a, b, 0.0)
        fresh = Sequential([GRU(4, input_shape=(5, 2)), Dense(1)])
        fresh.compile(make(), "mse")
        fresh.set_weights(start)
        for _ in range(6):
            fresh.train_on_batch(x, y)
        for a, b in zip(model.get_weights(), fresh.get_weights()):
            assert_close(a, b, 0.0)
        assert resumed.optimizer.iterations == 6


@pytest.mark.parametrize("name,make", OPTIMIZERS, ids=[c[0] for c in OPTIMIZERS])
def test_optimizer_config_has_keras_keys_and_round_trips(name, make):
    ours, theirs = make(O), make(keras.optimizers)
    config = ours.get_config()
    keras_config = theirs.get_config()
    assert set(keras_config) <= set(config)
    for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "name"):
        if key != "name":
            assert config[key] == keras_config[key], key
    if isinstance(config["learning_rate"], dict):
        assert config["learning_rate"]["config"] == keras_config["learning_rate"]["config"]
    clone = O.deserialize(json.loads(json.dumps(O.serialize(ours))))
    assert type(clone) is type(ours) and clone.get_config() == config


def test_learning_rate_is_settable_like_keras():
    opt = O.Adam(0.01)
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5 and opt.get_config()["learning_rate"] == 0.5
    opt.learning_rate = 0.0  # allowed: freezes training
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0
    with pytest.raises(TypeError, match="learning_rate"):
        opt.learning_rate = "fast"
    scheduled = O.SGD(S.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="not settable"):
        scheduled.learning_rate = 0.01
    keras_scheduled = keras.optimizers.SGD(KS.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="not settable"):
        keras_scheduled.learning_rate = 0.01
    scheduled.learning_rate = S.InverseTimeDecay(0.1, 1, 1.0)  # a schedule may replace one
    scheduled.iterations = 3
    assert scheduled.learning_rate == pytest.approx(0.1 / 4)
    with pytest.warns(UserWarning, match="callable"):
        assert O.SGD(lambda: 0.25).get_config()["learning_rate"] == 0.25


def test_exclude_from_weight_decay_matches_keras():
    rng = np.random.default_rng(2)
    start = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    names = ["dense/kernel", "dense/bias", "gru/recurrent_kernel"]
    ours_vars = [w.copy() for w in start]
    keras_vars = [keras.Variable(w, name=n.split("/")[1]) for w, n in zip(start, names)]
    ours, theirs = O.AdamW(0.01, weight_decay=0.5), keras.optimizers.AdamW(0.01, weight_decay=0.5)
    ours.exclude_from_weight_decay(var_list=[ours_vars[2]], var_names=["bias"])
    theirs.exclude_from_weight_decay(var_list=[keras_vars[2]], var_names=["bias"])
    for _ in range(3):
        grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        ours.apply(grads, ours_vars, names=names)
        theirs.apply([torch.tensor(g) for g in grads], keras_vars)
    for w, kv, w0 in zip(ours_vars, keras_vars, start):
        expected = keras.ops.convert_to_numpy(kv)
        assert_close(w, expected, 0.0, atol=5e-5 * np.abs(expected - w0).max())
    with pytest.raises(ValueError, match="before the optimizer is built"):
        ours.exclude_from_weight_decay(var_names=["kernel"])


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda: O.AdamW(weight_decay=None), ValueError, "weight_decay"),
        (lambda: O.Adam(weight_decay=-0.1), ValueError, "weight_decay"),
        (lambda: O.Adam(weight_decay="a lot"), TypeError, "weight_decay"),
        (lambda: O.SGD(-0.1), ValueError, "learning_rate"),
        (lambda: O.SGD([0.1]), TypeError, "learning_rate"),
        (lambda: O.Adam(use_ema=True), ValueError, "use_ema"),
        (lambda: O.Adam(clipnorm=1.0, clipvalue=1.0), ValueError, "only one"),
        (lambda: S.ExponentialDecay(0.1, 0, 0.5), ValueError, "decay_steps"),
        (lambda: S.PiecewiseConstantDecay([1, 2], [0.1]), ValueError, "1 less"),
        (lambda: S.PiecewiseConstantDecay([3, 2], [0.1, 0.2, 0.3]), ValueError, "increasing"),
        (lambda: O.deserialize_schedule({"class_name": "Nope", "config": {}}), ValueError, "Nope"),
        (lambda: O.get("lion"), ValueError, "Unknown optimizer"),
    ],
)
def test_optimizer_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize("name,make", OPTIMIZERS, ids=[c[0] for c in OPTIMIZERS])
def test_optimizer_param_count_matches_keras_summary(name, make):
    x, y = np.ones((2, 3), np.float32), np.ones((2, 2), np.float32)
    theirs = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    theirs.compile(make(keras.optimizers), "mse")
    theirs.train_on_batch(x, y)
    ours = Sequential([Dense(2, input_shape=(3,))])
    ours.compile(make(O), "mse")
    ours.train_on_batch(x, y)
    expected = sum(int(np.prod(v.shape)) for v in theirs.optimizer.variables)
    assert ours.optimizer.count_params() == expected


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Nadam", "RMSprop", "Adagrad"])
def test_optimizer_keras_arguments(name):
    ours, theirs = getattr(O, name), getattr(keras.optimizers, name)
    assert keras_argument_mismatches(ours.__init__, theirs.__init__) == []
    # every Keras argument, at Keras's default, is accepted and lands in the config
    opt = ours(**keras_defaults(theirs.__init__))
    assert set(keras_defaults(theirs.__init__)) <= set(opt.get_config())


@pytest.mark.parametrize(
    "module,name",
    [
        *[
            ("schedules", n)
            for n in (
                "ExponentialDecay",
                "PiecewiseConstantDecay",
                "PolynomialDecay",
                "InverseTimeDecay",
                "CosineDecay",
                "CosineDecayRestarts",
            )
        ],
        *[
            ("callbacks", n)
            for n in (
                "ReduceLROnPlateau",
                "LearningRateScheduler",
                "LambdaCallback",
                "CSVLogger",
                "TerminateOnNaN",
                "EarlyStopping",
                "ModelCheckpoint",
            )
        ],
    ],
)
def test_schedule_and_callback_keras_arguments(module, name):
    ours = getattr(S if module == "schedules" else CB, name)
    theirs = getattr(KS if module == "schedules" else keras.callbacks, name)
    assert keras_argument_mismatches(ours.__init__, theirs.__init__) == []


def test_optimizer_names_and_defaults_as_keras():
    for name in ("adamw", "nadam", "AdamW"):
        ours, theirs = O.get(name), keras.optimizers.get(name)
        assert type(ours).__name__ == type(theirs).__name__
        assert ours.learning_rate == pytest.approx(float(theirs.learning_rate), rel=1e-7)
        assert ours.weight_decay == (None if theirs.weight_decay is None else pytest.approx(0.004))


# ---- callbacks ----
VAL_LOSSES = [1.0, 0.9, 0.95, 0.9, 0.91, 0.92, 0.8, 0.85, 0.86, 0.87, 0.9, 0.99, 0.7, 0.71]


def _drive_epochs(callback, model, values, key="val_loss"):
    """Runs a callback through epochs whose logs hold ``key``; returns (logs, lr) per epoch."""
    callback.set_model(model)
    callback.on_train_begin({})
    out = []
    for epoch, value in enumerate(values):
        logs = {"loss": value + 0.1, key: value}
        callback.on_epoch_begin(epoch, {})
        callback.on_epoch_end(epoch, logs)
        out.append((dict(logs), float(np.float32(model.optimizer.learning_rate))))
    callback.on_train_end({})
    return out


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"factor": 0.5, "patience": 2, "cooldown": 1, "min_lr": 0.02, "verbose": 1},
        {"patience": 1, "min_delta": 0.05, "factor": 0.3},
        {"mode": "max", "patience": 2, "factor": 0.5},
    ],
)
def test_reduce_lr_on_plateau_matches_keras(kwargs, capsys):
    theirs = _drive_epochs(
        keras.callbacks.ReduceLROnPlateau(**kwargs),
        types.SimpleNamespace(optimizer=keras.optimizers.SGD(0.1)),
        VAL_LOSSES,
    )
    keras_out = capsys.readouterr().out
    ours = _drive_epochs(
        CB.ReduceLROnPlateau(**kwargs), types.SimpleNamespace(optimizer=O.SGD(0.1)), VAL_LOSSES
    )
    assert ours == theirs
    assert capsys.readouterr().out == keras_out


def test_reduce_lr_on_plateau_auto_mode_and_missing_monitor():
    rising = [0.5, 0.6, 0.7, 0.65, 0.66, 0.64]
    for monitor in ("val_auc", "val_accuracy"):
        opt = O.SGD(0.1)
        _drive_epochs(
            CB.ReduceLROnPlateau(monitor, patience=1),
            types.SimpleNamespace(optimizer=opt),
            rising,
            key=monitor,
        )
        # maximized: a reduction after each of the 3 epochs below the peak (minimized: 5)
        assert opt.learning_rate == pytest.approx(0.1 * 0.1**3, rel=1e-6)
    with pytest.raises(ValueError, match="maximized or minimized"):
        _drive_epochs(
            CB.ReduceLROnPlateau("val_custom"), types.SimpleNamespace(optimizer=O.SGD()), rising
        )
    with pytest.warns(UserWarning, match="not available"):
        _drive_epochs(
            CB.ReduceLROnPlateau("val_mae"), types.SimpleNamespace(optimizer=O.SGD()), [1.0]
        )
    with pytest.raises(ValueError, match="factor"):
        CB.ReduceLROnPlateau(factor=1.0)


def test_early_stopping_auto_mode_uses_keras_metric_directions():
    """auto maximizes AUC/precision/recall as Keras's MonitorCallback does (not only "acc")."""
    assert CB.EarlyStopping("val_auc").mode == "max"
    assert CB.EarlyStopping("val_precision_1").mode == "max"
    assert CB.ModelCheckpoint("m.fastrnn", monitor="recall").mode == "max"
    assert CB.EarlyStopping("val_root_mean_squared_error").mode == "min"
    assert CB.EarlyStopping("val_accuracy").mode == "max"
    assert CB.EarlyStopping("val_loss").mode == "min"


@pytest.mark.parametrize(
    "schedule",
    [
        lambda epoch, lr: lr * 0.5 if epoch % 2 else lr,
        lambda epoch: 0.1 / (epoch + 1),
    ],
)
def test_learning_rate_scheduler_matches_keras(schedule, capsys):
    theirs = _drive_epochs(
        keras.callbacks.LearningRateScheduler(schedule, verbose=1),
        types.SimpleNamespace(optimizer=keras.optimizers.Adam(0.1)),
        VAL_LOSSES[:6],
    )
    keras_out = capsys.readouterr().out
    ours = _drive_epochs(
        CB.LearningRateScheduler(schedule, verbose=1),
        types.SimpleNamespace(optimizer=O.Adam(0.1)),
        VAL_LOSSES[:6],
    )
    assert ours == theirs
    assert capsys.readouterr().out == keras_out
    with pytest.raises(ValueError, match="should be a float"):
        _drive_epochs(
            CB.LearningRateScheduler(lambda epoch, lr: 1),
            types.SimpleNamespace(optimizer=O.Adam()),
            [1.0],
        )


def _csv_logs(with_val: bool):
    rng = np.random.default_rng(3)
    logs = []
    for _ in range(3):
        entry = {"loss": float(rng.random()), "mae": float(rng.random()), "learning_rate": 0.001}
        if with_val:
            entry.update({"val_loss": float(rng.random()), "val_mae": float(rng.random())})
        logs.append(entry)
    return logs


@pytest.mark.parametrize("with_val", [True, False])
@pytest.mark.parametrize("separator", [",", ";"])
def test_csv_logger_writes_keras_bytes(tmp_path, with_val, separator):
    logs = _csv_logs(with_val)
    files = {}
    for label, cls in (("ours", CB.CSVLogger), ("keras", keras.callbacks.CSVLogger)):
        path = tmp_path / f"{label}.csv"
        for run in range(2):  # a second run appends without a second header
            cb = cls(path, separator=separator, append=run == 1)
            cb.set_model(types.SimpleNamespace())
            cb.on_train_begin({})
            for epoch, entry in enumerate(logs):
                cb.on_epoch_end(epoch, dict(entry))
            cb.on_train_end({})
        files[label] = path.read_bytes()
    assert files["ours"] == files["keras"]
    assert files["ours"].count(b"epoch") == 1


def test_lambda_callback_hooks_follow_keras_fit_order():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((10, 4, 2)).astype(np.float32)
    y = rng.standard_normal((10, 1)).astype(np.float32)

    def recorder(events, module):
        return module.LambdaCallback(
            on_train_begin=lambda logs: events.append(("train_begin",)),
            on_epoch_begin=lambda epoch, logs: events.append(("epoch_begin", epoch)),
            on_train_batch_begin=lambda batch, logs: events.append(("batch_begin", batch)),
            on_train_batch_end=lambda batch, logs: events.append(("batch_end", batch)),
            on_epoch_end=lambda epoch, logs: events.append(("epoch_end", epoch, sorted(logs))),
            on_train_end=lambda logs: events.append(("train_end",)),
        )

    theirs: list = []
    kmodel = keras.Sequential([keras.Input((4, 2)), keras.layers.GRU(3), keras.layers.Dense(1)])
    kmodel.compile("sgd", "mse")
    kmodel.fit(
        x, y, batch_size=4, epochs=2, verbose=0, callbacks=[recorder(theirs, keras.callbacks)]
    )
    ours: list = []
    model = Sequential([GRU(3, input_shape=(4, 2)), Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[recorder(ours, CB)])
    assert ours == theirs
    extra = CB.LambdaCallback(on_batch_end=lambda batch, logs: None, note="kept")
    assert extra.note == "kept" and callable(extra.on_batch_end)
    with pytest.raises(TypeError, match="on_epoch_end"):
        CB.LambdaCallback(on_epoch_end="print")


def test_terminate_on_nan_matches_keras(capsys):
    for cls in (keras.callbacks.TerminateOnNaN, CB.TerminateOnNaN):
        model = types.SimpleNamespace(stop_training=False)
        cb = cls()
        cb.set_model(model)
        cb.on_train_batch_end(0, {"loss": 0.5})
        assert not model.stop_training
        cb.on_train_batch_end(3, {"loss": float("inf")})
        assert model.stop_training
    keras_out, ours_out = capsys.readouterr().out.split("\n")[:2]
    assert keras_out == ours_out == "Batch 3: Invalid loss, terminating training"
    cb = CB.TerminateOnNaN(raise_error=True)
    cb.set_model(types.SimpleNamespace(stop_training=False))
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 2"):
        cb.on_train_batch_end(2, {"loss": float("nan")})


def test_callbacks_in_fit_reduce_rate_and_stop_on_nan():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 4, 2)).astype(np.float32)
    y = rng.standard_normal((12, 1)).astype(np.float32)
    model = Sequential([GRU(3, input_shape=(4, 2)), Dense(1)])
    model.compile(O.SGD(1e-9), "mse")  # nothing improves by min_delta: reduce every 2nd epoch
    history = model.fit(
        x, y, epochs=5, verbose=0, callbacks=[CB.ReduceLROnPlateau("loss", factor=0.5, patience=2)]
    )
    lrs = history.history["learning_rate"]
    # logged: the rate each epoch ran with (the reduction applies from the next epoch)
    assert lrs == pytest.approx([1e-9, 1e-9, 1e-9, 5e-10, 5e-10], rel=1e-6)
    assert model.optimizer.learning_rate == pytest.approx(2.5e-10, rel=1e-6)
    x_nan = x.copy()
    x_nan[0, 0, 0] = np.nan
    model.compile("sgd", "mse")
    history = model.fit(
        x_nan, y, epochs=4, verbose=0, shuffle=False, callbacks=[CB.TerminateOnNaN()]
    )
    assert len(history.history["loss"]) == 1  # stopped (at the end of the first epoch)
