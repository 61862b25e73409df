"""keras-tuner for fastrnn models (``fastrnn.tuner``): RandomSearch, BayesianOptimization,
Hyperband and GridSearch run searches of recurrent models; the best trial is the one with the
best objective (checked against the metrics recorded independently during the fits); the best
model, reloaded from its fastrnn checkpoint, predicts what the model predicted at its best epoch;
Hyperband's continued trials start from their parent's checkpoint; a seeded search is
reproducible; bad hypermodels and objectives give keras-tuner's fatal errors with a clear message.

Reproducible fits: fastrnn is seeded (``set_random_seed``) before each search, which seeds the
weights and the shuffling of every fit of the search.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"
keras_tuner = pytest.importorskip("keras_tuner")

import fastrnn  # noqa: E402
from fastrnn import callbacks, tuner  # noqa: E402
from fastrnn.layers import GRU, Dense, Input, SimpleRNN  # noqa: E402
from fastrnn.models import Model, Sequential  # noqa: E402
from fastrnn.optimizers import SGD, Adam  # noqa: E402

STEPS, FEATURES = 7, 2


def _data(seed=0, n=70):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, STEPS, FEATURES)).astype(np.float32)
    y = 0.6 * x[:, -1, :1] - 0.3 * x[:, -2, 1:] + 0.05 * rng.normal(size=(n, 1))
    split = int(0.75 * n)
    return x[:split], y[:split].astype(np.float32), x[split:], y[split:].astype(np.float32)


def build(hp):
    model = Sequential([SimpleRNN(hp.Int("units", 1, 8), input_shape=(STEPS, FEATURES)), Dense(1)])
    lr = hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")
    model.compile(optimizer=Adam(lr), loss="mse", metrics=["mae"])
    return model


class Recording:
    """Mixin recording, per trial and epoch, the logs and the predictions on a probe batch
    through keras-tuner's ``on_epoch_begin``/``on_epoch_end`` hooks."""

    probe = None

    def on_search_begin(self):
        self.logs = defaultdict(list)
        self.preds = defaultdict(list)
        self.epochs = defaultdict(list)
        self.start_weights = {}
        super().on_search_begin()

    def on_epoch_begin(self, trial, model, epoch, logs=None):
        self.epochs[trial.trial_id].append(epoch)
        self.start_weights.setdefault(trial.trial_id, model.get_weights())

    def on_epoch_end(self, trial, model, epoch, logs=None):
        self.logs[trial.trial_id].append(dict(logs))
        self.preds[trial.trial_id].append(model.predict(self.probe, verbose=0))


class RecordingRandomSearch(Recording, tuner.RandomSearch):
    pass


class RecordingHyperband(Recording, tuner.Hyperband):
    pass


def _search(tmp_path, cls=RecordingRandomSearch, name="p", seed=1, fit=None, **kwargs):
    x, y, xv, yv = _data()
    fastrnn.set_random_seed(0)
    search = cls(
        build, objective="val_loss", seed=seed, directory=str(tmp_path), project_name=name, **kwargs
    )
    search.probe = xv
    fit = {"epochs": 4, "validation_data": (xv, yv), "verbose": 0, **(fit or {})}
    search.search(x, y, **fit)
    return search


def _completed(search):
    return [t for t in search.oracle.trials.values() if t.status == "COMPLETED"]


def test_stock_keras_tuner_rejects_a_fastrnn_model(tmp_path):
    """What the fastrnn tuners are for: keras-tuner's own tuner refuses fastrnn models."""
    x, y, xv, yv = _data()
    stock = keras_tuner.RandomSearch(
        build, objective="val_loss", max_trials=1, directory=str(tmp_path)
    )
    with pytest.raises(keras_tuner.errors.FatalTypeError, match="valid Keras Model"):
        stock.search(x, y, epochs=1, validation_data=(xv, yv), verbose=0)


def test_best_trial_best_model_and_summary(tmp_path, capsys):
    search = _search(tmp_path, max_trials=4)
    trials = _completed(search)
    assert len(trials) == 4
    assert len({tuple(t.hyperparameters.values.items()) for t in trials}) == 4
    for t in trials:  # each trial's score is the best val_loss of its fit, recorded independently
        recorded = [logs["val_loss"] for logs in search.logs[t.trial_id]]
        assert len(recorded) == 4
        assert t.score == pytest.approx(min(recorded), rel=1e-12)
        assert t.best_step == int(np.argmin(recorded))
    best = min(trials, key=lambda t: t.score)
    assert search.oracle.get_best_trials(1)[0].trial_id == best.trial_id
    assert search.get_best_hyperparameters(1)[0].values == best.hyperparameters.values
    ranked = [t.trial_id for t in search.oracle.get_best_trials(4)]
    assert ranked == [t.trial_id for t in sorted(trials, key=lambda t: t.score)]
    # the best model: rebuilt and reloaded from the fastrnn checkpoint of its best epoch
    model = search.get_best_models(1)[0]
    assert isinstance(model, Sequential) and model.compiled
    assert model.layers[0].units == best.hyperparameters.values["units"]
    np.testing.assert_array_equal(
        model.predict(search.probe, verbose=0), search.preds[best.trial_id][best.best_step]
    )
    _, _, xv, yv = _data()
    assert model.evaluate(xv, yv, verbose=0)[0] == pytest.approx(best.score, rel=1e-6)
    assert os.path.exists(os.path.join(search.get_trial_dir(best.trial_id), "checkpoint.fastrnn"))
    second = search.oracle.get_trial(ranked[1])
    runner_up = search.get_best_models(2)[1]
    assert runner_up.layers[0].units == second.hyperparameters.values["units"]
    np.testing.assert_array_equal(
        runner_up.predict(search.probe, verbose=0), search.preds[second.trial_id][second.best_step]
    )
    capsys.readouterr()
    search.results_summary(1)
    out = capsys.readouterr().out
    assert "Results summary" in out and f"Score: {best.score}" in out
    assert f"units: {best.hyperparameters.values['units']}" in out


def test_seeded_search_is_reproducible(tmp_path):
    first = _search(tmp_path, name="a", max_trials=3)
    second = _search(tmp_path, name="b", max_trials=3)
    other = _search(tmp_path, name="c", seed=2, max_trials=3)

    def summary(search):
        return [(t.hyperparameters.values, t.score) for t in _completed(search)]

    assert summary(first) == summary(second)
    assert [hp for hp, _ in summary(first)] != [hp for hp, _ in summary(other)]


def test_hyperband_continues_from_the_parent_checkpoint(tmp_path):
    search = _search(tmp_path, cls=RecordingHyperband, max_epochs=4, factor=2)
    continued = [t for t in _completed(search) if "tuner/trial_id" in t.hyperparameters.values]
    assert continued, "Hyperband continued no trial"
    for t in continued:
        values = t.hyperparameters.values
        assert search.epochs[t.trial_id] == list(
            range(values["tuner/initial_epoch"], values["tuner/epochs"])
        )
        parent = search.oracle.get_trial(values["tuner/trial_id"])
        parent_model = search.load_model(parent)  # the parent's best-epoch weights
        for w0, w1 in zip(parent_model.get_weights(), search.start_weights[t.trial_id]):
            np.testing.assert_array_equal(w0, w1)
    best = search.oracle.get_best_trials(1)[0]
    model = search.get_best_models(1)[0]  # best_step counts the epochs this trial ran
    np.testing.assert_array_equal(
        model.predict(search.probe, verbose=0), search.preds[best.trial_id][best.best_step]
    )


def test_functional_hypermodel(tmp_path):
    def functional(hp):
        inputs = Input(shape=(STEPS, FEATURES))
        hidden = GRU(hp.Int("units", 1, 6))(inputs)
        model = Model(inputs, Dense(1)(hidden))
        model.compile(optimizer=Adam(hp.Choice("learning_rate", [0.01, 0.05])), loss="mse")
        return model

    x, y, xv, yv = _data()
    fastrnn.set_random_seed(0)
    search = RecordingRandomSearch(
        functional, objective="val_loss", max_trials=3, seed=4, directory=str(tmp_path)
    )
    search.probe = xv
    search.search(x, y, epochs=3, validation_data=(xv, yv), verbose=0)
    best = search.oracle.get_best_trials(1)[0]
    model = search.get_best_models(1)[0]
    assert type(model) is Model
    np.testing.assert_array_equal(
        model.predict(xv, verbose=0), search.preds[best.trial_id][best.best_step]
    )


@pytest.mark.filterwarnings("ignore:The optimal value found for dimension")  # scikit-learn's GP
def test_bayesian_and_grid_search(tmp_path):
    pytest.importorskip("scipy")
    x, y, xv, yv = _data()
    fit = {"epochs": 2, "validation_data": (xv, yv), "verbose": 0}
    fastrnn.set_random_seed(0)
    bayes = tuner.BayesianOptimization(
        build,
        objective="val_loss",
        max_trials=4,
        num_initial_points=2,
        seed=0,
        directory=str(tmp_path),
        project_name="bayes",
    )
    bayes.search(x, y, **fit)
    scores = [t.score for t in _completed(bayes)]
    assert len(scores) == 4 and bayes.oracle.get_best_trials(1)[0].score == min(scores)

    def grid_build(hp):
        model = Sequential(
            [GRU(hp.Choice("units", [2, 3]), input_shape=(STEPS, FEATURES)), Dense(1)]
        )
        model.compile(optimizer=SGD(hp.Choice("learning_rate", [0.01, 0.1])), loss="mse")
        return model

    grid = tuner.GridSearch(
        grid_build, objective="val_loss", directory=str(tmp_path), project_name="g"
    )
    grid.search(x, y, **fit)
    combos = sorted(
        (t.hyperparameters["units"], t.hyperparameters["learning_rate"]) for t in _completed(grid)
    )
    assert combos == [(2, 0.01), (2, 0.1), (3, 0.01), (3, 0.1)]


def test_tuner_level_compile_arguments_and_objectives(tmp_path):
    x, y, xv, yv = _data()

    def uncompiled(hp):
        return Sequential(
            [SimpleRNN(hp.Int("units", 2, 4), input_shape=(STEPS, FEATURES)), Dense(1)]
        )

    optimizer = Adam(0.02)
    search = tuner.RandomSearch(
        uncompiled,
        objective="val_mae",
        max_trials=2,
        seed=0,
        optimizer=optimizer,
        loss="mse",
        metrics=["mae"],
        directory=str(tmp_path),
        project_name="compile",
    )
    search.search(x, y, epochs=2, validation_data=(xv, yv), verbose=0)
    model = search.get_best_models(1)[0]
    assert type(model.optimizer) is Adam and model.optimizer is not optimizer
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    assert optimizer.iterations == 0  # the tuner's optimizer is copied, never trained
    best = search.oracle.get_best_trials(1)[0]
    assert model.evaluate(xv, yv, verbose=0)[1] == pytest.approx(best.score, rel=1e-6)
    # a compiled model: the tuner's loss replaces its loss, its metrics are kept
    search = tuner.RandomSearch(
        build,
        objective="val_loss",
        max_trials=1,
        seed=0,
        loss="mae",
        directory=str(tmp_path),
        project_name="loss",
    )
    search.search(x, y, epochs=1, validation_data=(xv, yv), verbose=0)
    model = search.get_best_models(1)[0]
    loss, mae = model.evaluate(xv, yv, verbose=0)
    assert loss == pytest.approx(mae, rel=1e-6) and type(model.optimizer) is Adam
    assert search.oracle.get_best_trials(1)[0].score == pytest.approx(loss, rel=1e-6)
    # executions_per_trial: the score averages the executions' best values
    built = []

    def counting(hp):
        built.append(1)
        return build(hp)

    search = RecordingRandomSearch(
        counting,
        objective="val_loss",
        max_trials=1,
        executions_per_trial=2,
        seed=0,
        directory=str(tmp_path),
        project_name="executions",
    )
    search.probe = xv
    built.clear()
    search.search(
        x, y, epochs=3, validation_data=(xv, yv), verbose=0, callbacks=[callbacks.History()]
    )
    assert len(built) == 2
    trial = _completed(search)[0]
    recorded = [logs["val_loss"] for logs in search.logs[trial.trial_id]]
    assert len(recorded) == 6  # two executions of three epochs
    assert recorded[:3] != recorded[3:]  # fresh weights for the second execution
    assert trial.score == pytest.approx((min(recorded[:3]) + min(recorded[3:])) / 2, rel=1e-12)


def test_custom_run_trial_returning_history_or_float(tmp_path):
    x, y, xv, yv = _data()

    class Custom(tuner.Tuner):
        def run_trial(self, trial, x, y, **kwargs):
            model = self.hypermodel.build(trial.hyperparameters)
            history = model.fit(x, y, **kwargs)
            return (
                history
                if trial.hyperparameters["units"] % 2
                else float(history.history["val_loss"][-1])
            )

    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_loss", max_trials=3, seed=3)
    search = Custom(oracle, build, directory=str(tmp_path), project_name="custom")
    search.search(x, y, epochs=2, validation_data=(xv, yv), verbose=0)
    trials = _completed(search)
    assert len(trials) == 3 and all(np.isfinite(t.score) for t in trials)


def test_fatal_errors(tmp_path):
    x, y, xv, yv = _data()

    def not_a_model(hp):
        hp.Int("units", 1, 2)
        return "model"

    search = tuner.RandomSearch(
        not_a_model, objective="val_loss", max_trials=1, directory=str(tmp_path), project_name="e1"
    )
    with pytest.raises(keras_tuner.errors.FatalTypeError, match="return a fastrnn model"):
        search.search(x, y, epochs=1, validation_data=(xv, yv), verbose=0)
    search = tuner.RandomSearch(
        build, objective="val_loss", max_trials=1, directory=str(tmp_path), project_name="e2"
    )
    with pytest.raises(
        keras_tuner.errors.FatalValueError, match="'val_loss' is not among the metrics"
    ):
        search.search(x, y, epochs=1, verbose=0)  # no validation data
    search = tuner.RandomSearch(build, max_trials=1, directory=str(tmp_path), project_name="e3")
    with pytest.raises(keras_tuner.errors.FatalValueError, match="default_objective"):
        search.search(x, y, epochs=1, verbose=0)  # no objective, and fit returns a History
    search = tuner.RandomSearch(
        build,
        objective="val_loss",
        max_trials=3,
        max_model_size=5,
        directory=str(tmp_path),
        project_name="e4",
    )
    with pytest.raises(RuntimeError, match="Oversized model"):
        search.search(x, y, epochs=1, validation_data=(xv, yv), verbose=0)
    search = tuner.RandomSearch(
        build, objective="val_loss", max_trials=1, directory=str(tmp_path), project_name="e5"
    )
    with pytest.raises(keras_tuner.errors.FatalValueError, match="deep-copyable"):
        search.search(
            x, y, epochs=1, validation_data=(xv, yv), verbose=0, callbacks=[_Unpicklable()]
        )


class _Unpicklable(callbacks.Callback):
    def __deepcopy__(self, memo):
        raise TypeError("no copies")


def test_missing_keras_tuner_names_the_extra():
    code = (
        "import sys; sys.modules['keras_tuner'] = None\n"
        "from fastrnn import tuner\n"
        "try:\n    tuner.RandomSearch(lambda hp: None)\n"
        "except ImportError as e:\n    print(e)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert 'pip install "fastrnn[tuner]"' in out.stdout, out.stderr


def test_without_tensorflow_keras_gets_its_numpy_backend(tmp_path):
    """Keras's default backend is TensorFlow; without it (and no backend chosen) fastrnn.tuner
    picks Keras's NumPy backend, and a search runs."""
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import numpy as np\n"
        "from fastrnn import tuner, Sequential, SimpleRNN, Dense\n"
        "import keras; print('backend', keras.config.backend())\n"
        "def build(hp):\n"
        "    m = Sequential([SimpleRNN(hp.Int('units', 1, 3), input_shape=(4, 1)), Dense(1)])\n"
        "    m.compile(optimizer='adam', loss='mse'); return m\n"
        "x = np.random.default_rng(0).normal(size=(16, 4, 1)).astype('float32')\n"
        f"s = tuner.RandomSearch(build, objective='loss', max_trials=2, directory={str(tmp_path)!r}"
        ")\n"
        "s.search(x, x[:, -1], epochs=1, verbose=0)\n"
        "best = s.get_best_models(1)[0]\n"
        "print('trials', len(s.oracle.trials), best.predict(x, verbose=0).shape)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), KERAS_HOME=str(tmp_path / "keras_home"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert "backend numpy" in out.stdout and "trials 2 (16, 1)" in out.stdout, out.stderr[-2000:]
