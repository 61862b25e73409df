"""scikit-learn wrappers (``fastrnn.wrappers``): Keras 3's ``keras.wrappers`` behaviour, checked
against real Keras where the behaviour is Keras's (same builder arguments, label encoding,
predictions, scores and errors with copied weights), scikit-learn's estimator checks, and the
searches users run: GridSearchCV (also ``n_jobs=2``, process workers), RandomizedSearchCV,
cross_val_score and an Optuna study, on recurrent models over (N, T, F) sequences.

Reproducible fits: the builders seed fastrnn (``set_random_seed``), which also seeds the shuffling
of the fit that follows.
"""

from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
from harness import assert_unmodified, snapshot

sklearn = pytest.importorskip("sklearn")
os.environ["KERAS_BACKEND"] = "torch"  # only read if a test imports keras

import fastrnn  # noqa: E402
from fastrnn import wrappers  # noqa: E402
from fastrnn.layers import GRU, LSTM, Concatenate, Dense, Input, SimpleRNN  # noqa: E402
from fastrnn.models import Model, Sequential  # noqa: E402
from fastrnn.optimizers import SGD, Adam  # noqa: E402
from fastrnn.wrappers import SKLearnClassifier, SKLearnRegressor, SKLearnTransformer  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.metrics import accuracy_score, log_loss, r2_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    KFold,
    RandomizedSearchCV,
    cross_val_score,
)

QUIET = {"verbose": 0}


# ---- builders (module level, so that process workers can unpickle them) ----------------------
def rnn_regressor(X, y, units=3, learning_rate=0.02, seed=0):
    fastrnn.set_random_seed(seed)
    model = Sequential([SimpleRNN(units, input_shape=X.shape[1:]), Dense(y.shape[1])])
    model.compile(optimizer=Adam(learning_rate), loss="mse")
    return model


def rnn_classifier(X, y, units=5, learning_rate=0.05, seed=0):
    fastrnn.set_random_seed(seed)
    model = Sequential(
        [GRU(units, input_shape=X.shape[1:]), Dense(y.shape[1], activation="softmax")]
    )
    model.compile(optimizer=Adam(learning_rate), loss="categorical_crossentropy")
    return model


def dense_model(X, y, loss, out_activation="softmax", layers=(10,)):
    """Keras's ``dynamic_model`` of its wrapper tests, for scikit-learn's estimator checks."""
    fastrnn.set_random_seed(0)
    stack = [Dense(layers[0], activation="relu", input_shape=X.shape[1:])]
    stack += [Dense(u, activation="relu") for u in layers[1:]]
    stack.append(Dense(y.shape[1] if y.ndim > 1 else 1, activation=out_activation))
    model = Sequential(stack)
    model.compile(loss=loss, optimizer="rmsprop")
    return model


def _sequences(rng, n=48, steps=7, features=2):
    """x (n, steps, features) and a smooth target of the last steps, realistic scale."""
    x = rng.normal(size=(n, steps, features)).astype(np.float32)
    y = 0.6 * x[:, -1, 0] - 0.3 * x[:, -2, 1] + 0.1 * rng.normal(size=n)
    return x, y.astype(np.float32)


def _labels(x, names=("cat", "dog", "emu")):
    score = x[:, -1, 0] + 0.5 * x[:, -2, 1]
    return np.asarray(names)[np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))]


# ---- scikit-learn's estimator checks -----------------------------------------------------
def _check_estimators():
    # Keras's own check list (its sklearn_test.py), with seeded builders.
    return [
        SKLearnClassifier(
            dense_model,
            model_kwargs={"loss": "categorical_crossentropy", "layers": [20, 20, 20]},
            fit_kwargs={"epochs": 5, **QUIET},
        ),
        SKLearnRegressor(
            dense_model, model_kwargs={"loss": "mse", "out_activation": None}, fit_kwargs=QUIET
        ),
        SKLearnTransformer(
            dense_model, model_kwargs={"loss": "mse", "out_activation": None}, fit_kwargs=QUIET
        ),
    ]


_EXPECTED_FAILED = {
    "SKLearnRegressor": {
        "check_regressor_multioutput": "predictions keep the model's float32, as Keras's do",
    },
}


def _expected_failed(estimator):
    return _EXPECTED_FAILED.get(type(estimator).__name__, {})


try:
    from sklearn.utils.estimator_checks import parametrize_with_checks

    _checks = parametrize_with_checks(_check_estimators(), expected_failed_checks=_expected_failed)
except TypeError:  # scikit-learn < 1.6: the wrappers refuse to run anyway
    _checks = pytest.mark.skip(reason="scikit-learn >= 1.6 needed")


@_checks
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        check(estimator)


# ---- parameters, clone, pickling ------------------------------------------------------------
def test_params_route_into_model_kwargs_and_fit_kwargs(rng):
    x, y = _sequences(rng)
    model_kwargs = {"units": 2}
    fit_kwargs = {"epochs": 2, **QUIET}
    est = SKLearnRegressor(rnn_regressor, model_kwargs=model_kwargs, fit_kwargs=fit_kwargs)
    params = est.get_params()
    assert params["model_kwargs__units"] == 2 and params["fit_kwargs__epochs"] == 2
    assert sorted(est.get_params(deep=False)) == [
        "fit_kwargs",
        "model",
        "model_kwargs",
        "warm_start",
    ]
    est.set_params(model_kwargs__units=5, model_kwargs__learning_rate=0.01, fit_kwargs__epochs=3)
    assert model_kwargs == {"units": 2} and fit_kwargs == {"epochs": 2, **QUIET}  # not modified
    assert est.model_kwargs == {"units": 5, "learning_rate": 0.01}
    est.fit(x, y)
    assert est.model_.layers[0].units == 5 and est.epoch_ == 3
    assert len(est.history_["loss"]) == 3
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(units=3)
    with pytest.raises(ValueError, match="no name after"):
        est.set_params(model_kwargs__=3)


def test_clone_keeps_every_parameter_and_fit_leaves_fit_kwargs_alone(rng):
    x, y = _sequences(rng)
    fit_kwargs = {"epochs": 2, **QUIET}
    est = SKLearnRegressor(rnn_regressor, model_kwargs={"units": 4}, fit_kwargs=fit_kwargs)
    est.fit(x, y, epochs=3)  # fit's own keyword wins over fit_kwargs ...
    assert est.epoch_ == 3
    assert fit_kwargs == {"epochs": 2, **QUIET}  # ... without writing into fit_kwargs
    twin = clone(est)
    assert twin.get_params(deep=False) == est.get_params(deep=False)
    assert not hasattr(twin, "model_")
    assert twin.model_kwargs is not est.model_kwargs  # deep-copied, as scikit-learn clones


def test_model_instance_is_cloned_with_fresh_weights_and_same_compile(rng):
    x, y = _sequences(rng)
    fastrnn.set_random_seed(3)
    model = Sequential([SimpleRNN(3, input_shape=x.shape[1:]), Dense(1)])
    model.compile(optimizer=SGD(0.05, momentum=0.5), loss="mae", metrics=["mse"])
    before = model.get_weights()
    est = SKLearnRegressor(model, fit_kwargs={"epochs": 2, **QUIET}).fit(x, y)
    assert est.model_ is not model
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)  # the given model is not trained
    assert type(est.model_.optimizer) is SGD and est.model_.optimizer.momentum == 0.5
    assert est.model_.loss.name == model.loss.name and "mse" in est.history_
    # clone of an estimator holding a model: a deep copy (same weights, compiled)
    twin = clone(est)
    assert twin.model is not model and twin.model.compiled
    for w0, w1 in zip(model.get_weights(), twin.model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    with pytest.raises(ValueError, match="model_kwargs are passed to a model builder"):
        SKLearnRegressor(model, model_kwargs={"units": 3}).fit(x, y)


def test_warm_start_continues_training(rng):
    x, y = _sequences(rng)
    calls = []

    def counting(X, y, **kwargs):
        calls.append(1)
        return rnn_regressor(X, y, **kwargs)

    # unshuffled: each fit draws its own shuffling generator
    unshuffled = {"epochs": 2, "verbose": 0, "shuffle": False}
    warm = SKLearnRegressor(counting, warm_start=True, fit_kwargs=unshuffled)
    warm.fit(x, y)
    first = warm.model_
    warm.fit(x, y)
    assert warm.model_ is first and len(calls) == 1 and warm.epoch_ == 4
    once = SKLearnRegressor(rnn_regressor, fit_kwargs={**unshuffled, "epochs": 4}).fit(x, y)
    # two warm-started fits of 2 epochs train exactly as one fit of 4 (optimizer state kept)
    np.testing.assert_array_equal(warm.predict(x), once.predict(x))
    assert warm.history_["loss"] == pytest.approx(once.history_["loss"], rel=1e-6)
    cold = SKLearnRegressor(counting, fit_kwargs={"epochs": 2, **QUIET})
    cold.fit(x, y)
    cold.fit(x, y)
    assert len(calls) == 3 and cold.epoch_ == 2


def test_pickle_unfitted_fitted_and_with_model_instance(rng):
    x, y = _sequences(rng)
    est = SKLearnRegressor(rnn_regressor, fit_kwargs={"epochs": 2, **QUIET})
    again = pickle.loads(pickle.dumps(est))
    assert again.get_params(deep=False) == est.get_params(deep=False)
    est.fit(x, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(x), est.predict(x))
    assert again.n_features_in_ == 7 and again.history_ == est.history_
    # a compiled (unbuilt) model as the parameter, trained in place with warm_start
    model = Sequential([SimpleRNN(2), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    est = SKLearnRegressor(model, warm_start=True, fit_kwargs={"epochs": 1, **QUIET})
    again = pickle.loads(pickle.dumps(est))
    assert again.model.compiled and not again.model.built
    est.fit(x, y)
    assert est.model_ is model
    again = pickle.loads(pickle.dumps(est))
    assert again.model_ is again.model  # one object before, one object after
    np.testing.assert_array_equal(again.predict(x), est.predict(x))
    assert type(again.model_.optimizer).__name__ == "Adam"
    assert again.model_.optimizer.iterations == model.optimizer.iterations


def functional_regressor(X, y, units=3, seed=0):
    """Two recurrent branches over the same sequence, concatenated: a Functional model."""
    fastrnn.set_random_seed(seed)
    inputs = Input(shape=X.shape[1:])
    merged = Concatenate()([SimpleRNN(units)(inputs), LSTM(2)(inputs)])
    model = Model(inputs, Dense(y.shape[1])(merged))
    model.compile(optimizer=Adam(0.02), loss="mse", metrics=["mae"])
    return model


def test_functional_models(rng):
    x, y = _sequences(rng, n=30)
    search = GridSearchCV(
        SKLearnRegressor(functional_regressor, fit_kwargs={"epochs": 2, **QUIET}),
        {"model_kwargs__units": [2, 4]},
        cv=2,
    ).fit(x, y)
    best = search.best_estimator_
    assert isinstance(best.model_, Model) and not isinstance(best.model_, Sequential)
    assert best.model_.get_layer(index=1).units == search.best_params_["model_kwargs__units"]
    again = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(again.predict(x), best.predict(x))
    # a compiled Functional model as the parameter: cloned with its compile arguments
    model = functional_regressor(x, y[:, None])
    est = SKLearnRegressor(model, fit_kwargs={"epochs": 1, **QUIET}).fit(x, y)
    assert type(est.model_) is Model and est.model_ is not model
    assert est.model_.get_compile_config() == model.get_compile_config()
    assert "mae" in est.history_


# ---- regressor ---------------------------------------------------------------------------------
def test_regressor_predict_score_and_target_shapes(rng):
    x, y = _sequences(rng, n=40)
    before = snapshot((x, y))
    seen = {}

    def build(X, y):
        seen["X"], seen["y"] = X, y
        return rnn_regressor(X, y, units=4)

    est = SKLearnRegressor(build, fit_kwargs={"epochs": 3, **QUIET}).fit(x, y)
    assert_unmodified(before, (x, y), "(x, y)")
    np.testing.assert_array_equal(seen["X"], x)
    assert seen["y"].shape == (40, 1)  # 1-D targets reach the builder as a column, as Keras
    pred = est.predict(x)
    assert pred.shape == (40,)
    np.testing.assert_allclose(pred, est.model_.predict(x)[:, 0])
    assert est.score(x, y) == pytest.approx(r2_score(y, pred), rel=1e-9)
    assert est.n_features_in_ == 7  # X.shape[1], as scikit-learn counts it
    # several targets: y (n, 2), predictions (n, 2); a column y stays a column
    y2 = np.stack([y, -y], axis=1)
    est2 = SKLearnRegressor(rnn_regressor, fit_kwargs={"epochs": 2, **QUIET}).fit(x, y2)
    assert est2.predict(x).shape == (40, 2)
    assert est2.score(x, y2) == pytest.approx(r2_score(y2, est2.predict(x)), rel=1e-9)
    est3 = SKLearnRegressor(rnn_regressor, fit_kwargs={"epochs": 1, **QUIET}).fit(x, y[:, None])
    assert est3.predict(x).shape == (40, 1)


def test_regressor_bad_input():
    rng = np.random.default_rng(5)
    x, y = _sequences(rng, n=20)
    with pytest.raises(NotFittedError):
        SKLearnRegressor(rnn_regressor).predict(x)
    with pytest.raises(TypeError, match="model must be a compiled fastrnn model or a callable"):
        SKLearnRegressor(None).fit(x, y)
    with pytest.raises(TypeError, match="model_kwargs must be a dict"):
        SKLearnRegressor(rnn_regressor, model_kwargs=[("units", 3)]).fit(x, y)
    with pytest.raises(TypeError, match="fit_kwargs must be a dict"):
        SKLearnRegressor(rnn_regressor, fit_kwargs=3).fit(x, y)
    with pytest.raises(TypeError, match="The model builder <lambda> must return a fastrnn model"):
        SKLearnRegressor(lambda X, y: "not a model").fit(x, y)

    def uncompiled(X, y):
        return Sequential([SimpleRNN(2), Dense(1)])

    with pytest.raises(RuntimeError, match="Given model needs to be compiled"):
        SKLearnRegressor(uncompiled).fit(x, y)
    with pytest.raises(ValueError, match="1D array"):
        SKLearnRegressor(rnn_regressor).fit(x[:, 0, 0], y)
    bad = x.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SKLearnRegressor(rnn_regressor).fit(bad, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        SKLearnRegressor(rnn_regressor).fit(x, y[:-1])
    est = SKLearnRegressor(rnn_regressor, fit_kwargs={"epochs": 1, **QUIET}).fit(x, y)
    with pytest.raises(ValueError, match="expecting 7 features"):
        est.predict(x[:, :5])

    def two_outputs(X, y):
        return rnn_regressor(X, np.zeros((len(X), 2)))

    est = SKLearnRegressor(two_outputs, fit_kwargs={"epochs": 1, **QUIET})
    with pytest.raises(ValueError):  # fit itself rejects y (n, 1) against outputs (n, 2)
        est.fit(x, y)


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setattr(wrappers, "sklearn", None)
    with pytest.raises(ImportError, match=r"fastrnn\[sklearn\]"):
        SKLearnRegressor(rnn_regressor)


# ---- classifier --------------------------------------------------------------------------------
def test_classifier_labels_probabilities_and_scorers(rng):
    x, _ = _sequences(rng, n=60)
    labels = _labels(x)
    clf = SKLearnClassifier(rnn_classifier, fit_kwargs={"epochs": 12, **QUIET}).fit(x, labels)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    raw = clf.model_.predict(x)
    pred = clf.predict(x)
    np.testing.assert_array_equal(pred, clf.classes_[raw.argmax(axis=1)])
    np.testing.assert_array_equal(clf.decision_function(x), raw)
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert clf.score(x, labels) == accuracy_score(labels, pred)
    assert clf.score(x, labels) > 0.6  # it learns (chance is 1/3)
    assert log_loss(labels, proba, labels=clf.classes_) < np.log(3)
    # binary: scikit-learn's one-score decision_function, so roc_auc scoring works
    yb = np.where(labels == "emu", 7, -2)
    clfb = SKLearnClassifier(rnn_classifier, fit_kwargs={"epochs": 12, **QUIET}).fit(x, yb)
    rawb = clfb.model_.predict(x)
    np.testing.assert_allclose(clfb.decision_function(x), rawb[:, 1] - rawb[:, 0])
    assert roc_auc_score(yb, clfb.decision_function(x)) > 0.8
    search = GridSearchCV(clfb, {"model_kwargs__units": [2, 4]}, cv=2, scoring="roc_auc")
    search.fit(x, yb)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    search = GridSearchCV(clf, {"model_kwargs__units": [2, 4]}, cv=2, scoring="neg_log_loss")
    search.fit(x, labels)
    assert np.all(search.cv_results_["mean_test_score"] < 0)


def test_classifier_bad_targets_and_logit_outputs(rng):
    x, _ = _sequences(rng, n=30)
    with pytest.raises(ValueError, match="Target type: continuous"):
        SKLearnClassifier(rnn_classifier).fit(x, rng.normal(size=30))
    with pytest.raises(ValueError, match="only one class"):
        SKLearnClassifier(rnn_classifier).fit(x, np.full(30, "a"))
    with pytest.raises(ValueError, match="1d array"):
        SKLearnClassifier(rnn_classifier).fit(x, np.ones((30, 2)))

    def logits(X, y):
        fastrnn.set_random_seed(1)
        model = Sequential([SimpleRNN(3, input_shape=X.shape[1:]), Dense(y.shape[1])])
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        return model

    labels = _labels(x)
    clf = SKLearnClassifier(logits, fit_kwargs={"epochs": 1, **QUIET}).fit(x, labels)
    assert clf.predict(x).shape == (30,)
    with pytest.raises(ValueError, match="predict_proba needs the model to output class prob"):
        clf.predict_proba(x)

    def one_unit(X, y):
        model = Sequential([SimpleRNN(3, input_shape=X.shape[1:]), Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        return model

    clf = SKLearnClassifier(one_unit, warm_start=True)
    clf.model_ = one_unit(x, None)  # a fitted-looking estimator whose model has 1 output
    clf.classes_ = np.array(["a", "b"])
    clf.n_features_in_ = 7
    with pytest.raises(ValueError, match="one value per class"):
        clf.predict(x)


# ---- searches ----------------------------------------------------------------------------------
def test_grid_search_n_jobs_2_equals_n_jobs_1(rng):
    x, y = _sequences(rng, n=36)
    est = SKLearnRegressor(rnn_regressor, fit_kwargs={"epochs": 3, **QUIET})
    grid = {"model_kwargs__units": [2, 5], "model_kwargs__learning_rate": [0.005, 0.05]}
    serial = GridSearchCV(est, grid, cv=2).fit(x, y)
    parallel = GridSearchCV(est, grid, cv=2, n_jobs=2).fit(x, y)  # loky worker processes
    np.testing.assert_array_equal(
        serial.cv_results_["mean_test_score"], parallel.cv_results_["mean_test_score"]
    )
    assert serial.best_params_ == parallel.best_params_
    best = int(np.argmax(serial.cv_results_["mean_test_score"]))
    assert serial.best_params_ == serial.cv_results_["params"][best]
    refit = clone(est).set_params(**serial.best_params_).fit(x, y)
    np.testing.assert_array_equal(serial.best_estimator_.predict(x), refit.predict(x))


def test_cross_val_score_is_r2_of_each_fold(rng):
    x, y = _sequences(rng, n=30)
    est = SKLearnRegressor(rnn_regressor, model_kwargs={"units": 4}, fit_kwargs={"epochs": 4})
    est.set_params(fit_kwargs__verbose=0, fit_kwargs__batch_size=8)
    folds = KFold(3)
    scores = cross_val_score(est, x, y, cv=folds, n_jobs=2)
    expected = []
    for train, test in folds.split(x):
        model = rnn_regressor(x[train], y[train, None], units=4)
        model.fit(x[train], y[train, None], epochs=4, batch_size=8, verbose=0)
        expected.append(r2_score(y[test], model.predict(x[test])[:, 0]))
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_randomized_search_with_distributions(rng):
    from scipy.stats import loguniform, randint

    x, y = _sequences(rng, n=30)
    est = SKLearnRegressor(rnn_regressor, fit_kwargs={"epochs": 2, **QUIET})
    dists = {
        "model_kwargs__units": randint(2, 6),
        "model_kwargs__learning_rate": loguniform(1e-3, 1e-1),
    }
    search = RandomizedSearchCV(est, dists, n_iter=3, cv=2, random_state=0).fit(x, y)
    for params in search.cv_results_["params"]:
        assert 2 <= params["model_kwargs__units"] < 6
        assert 1e-3 <= params["model_kwargs__learning_rate"] <= 1e-1
    assert search.best_score_ == np.max(search.cv_results_["mean_test_score"])
    assert (
        search.best_estimator_.model_.layers[0].units == search.best_params_["model_kwargs__units"]
    )


def test_optuna_study(rng):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, y = _sequences(rng, n=30)

    def objective(trial):
        est = SKLearnRegressor(
            rnn_regressor,
            model_kwargs={
                "units": trial.suggest_int("units", 2, 6),
                "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-1, log=True),
            },
            fit_kwargs={"epochs": 2, **QUIET},
        )
        return float(cross_val_score(est, x, y, cv=2).mean())

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=4)
    values = [t.value for t in study.trials]
    assert len(values) == 4 and study.best_value == max(values)
    # the best trial's score is reproduced by its parameters
    assert objective(optuna.trial.FixedTrial(study.best_params)) == study.best_value


# ---- against Keras's own wrappers ------------------------------------------------------------
@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _dense_weights(n_in, n_out, seed):
    r = np.random.default_rng(seed)
    return [
        r.normal(scale=0.6, size=(n_in, n_out)).astype(np.float32),
        r.normal(scale=0.2, size=n_out).astype(np.float32),
    ]


def _builders(keras, activation, loss, seen):
    """Keras and fastrnn builders making the same Dense model, trained with a zero learning
    rate so that fitting keeps the copied weights; each records what it was called with."""

    def keras_build(X, y):
        seen["keras"] = (X.copy(), y.copy())
        model = keras.Sequential(
            [keras.Input((X.shape[1],)), keras.layers.Dense(y.shape[1], activation=activation)]
        )
        model.set_weights(_dense_weights(X.shape[1], y.shape[1], seed=11))
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
        return model

    def fastrnn_build(X, y):
        seen["fastrnn"] = (X.copy(), y.copy())
        model = Sequential([Dense(y.shape[1], activation=activation, input_shape=X.shape[1:])])
        model.set_weights(_dense_weights(X.shape[1], y.shape[1], seed=11))
        model.compile(optimizer=SGD(0.0), loss=loss)
        return model

    return keras_build, fastrnn_build


def _same_seen(seen):
    (kx, ky), (fx, fy) = seen["keras"], seen["fastrnn"]
    np.testing.assert_array_equal(fx, kx)
    assert fx.dtype == kx.dtype
    np.testing.assert_array_equal(fy, ky)
    assert fy.shape == ky.shape and fy.dtype == ky.dtype


@pytest.mark.parametrize(
    "labels",
    [np.array(["cat", "dog", "emu", "dog", "cat"]), np.array([3, -1, 3, 8, -1]), np.array([0, 1])],
    ids=["strings", "ints", "binary"],
)
def test_classifier_matches_keras(keras, labels):
    from keras.wrappers import SKLearnClassifier as KerasClassifier

    rng = np.random.default_rng(7)
    x = rng.normal(size=(23, 5)).astype(np.float32)
    y = labels[rng.integers(0, len(labels), 23)]
    y[: len(np.unique(labels))] = np.unique(labels)  # every class present
    seen = {}
    keras_build, fastrnn_build = _builders(keras, "softmax", "categorical_crossentropy", seen)
    theirs = KerasClassifier(keras_build, fit_kwargs={"epochs": 1, "verbose": 0}).fit(x, y)
    ours = SKLearnClassifier(fastrnn_build, fit_kwargs={"epochs": 1, "verbose": 0}).fit(x, y)
    _same_seen(seen)  # the builder sees the same X and the same one-hot targets
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert ours.classes_.dtype == theirs.classes_.dtype
    x_new = rng.normal(size=(17, 5)).astype(np.float32)
    np.testing.assert_array_equal(ours.predict(x_new), theirs.predict(x_new))
    assert ours.predict(x_new).dtype == theirs.predict(x_new).dtype
    raw = theirs.decision_function(x_new)
    if len(ours.classes_) == 2:  # ours: scikit-learn's (n,) score; Keras's: both columns
        np.testing.assert_allclose(ours.decision_function(x_new), raw[:, 1] - raw[:, 0], atol=1e-6)
    else:
        np.testing.assert_allclose(ours.decision_function(x_new), raw, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.predict_proba(x_new), raw, rtol=1e-5, atol=1e-7)
    assert ours.score(x_new, y[:17]) == theirs.score(x_new, y[:17])
    assert ours.n_features_in_ == theirs.n_features_in_ == 5


def test_regressor_matches_keras(keras):
    from keras.wrappers import SKLearnRegressor as KerasRegressor

    rng = np.random.default_rng(8)
    x = rng.normal(size=(19, 4)).astype(np.float32)
    y = rng.normal(size=19)
    seen = {}
    keras_build, fastrnn_build = _builders(keras, None, "mse", seen)
    theirs = KerasRegressor(keras_build, fit_kwargs={"epochs": 1, "verbose": 0}).fit(x, y)
    ours = SKLearnRegressor(fastrnn_build, fit_kwargs={"epochs": 1, "verbose": 0}).fit(x, y)
    _same_seen(seen)  # y reaches the builder as a (n, 1) column in both
    x_new = rng.normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x_new), theirs.predict(x_new), rtol=1e-5, atol=1e-6)
    assert ours.predict(x_new).shape == theirs.predict(x_new).shape == (7,)
    assert ours.score(x, y) == pytest.approx(theirs.score(x, y), rel=1e-5)


def test_parameters_and_errors_match_keras(keras):
    from keras.wrappers import SKLearnClassifier as KerasClassifier
    from keras.wrappers import SKLearnRegressor as KerasRegressor
    from keras.wrappers import SKLearnTransformer as KerasTransformer

    for ours_cls, theirs_cls in [
        (SKLearnRegressor, KerasRegressor),
        (SKLearnClassifier, KerasClassifier),
        (SKLearnTransformer, KerasTransformer),
    ]:
        ours, theirs = ours_cls(len), theirs_cls(len)
        assert ours.get_params(deep=False) == theirs.get_params(deep=False)
        assert (
            ours.__sklearn_tags__().non_deterministic == theirs.__sklearn_tags__().non_deterministic
        )

    rng = np.random.default_rng(9)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    seen = {}
    keras_build, fastrnn_build = _builders(keras, "softmax", "categorical_crossentropy", seen)
    for y in (rng.normal(size=12), np.full(12, 4)):
        with pytest.raises(ValueError) as theirs_error:
            KerasClassifier(keras_build).fit(x, y)
        with pytest.raises(ValueError) as ours_error:
            SKLearnClassifier(fastrnn_build).fit(x, y)
        assert str(ours_error.value) == str(theirs_error.value)
    for ours_cls, theirs_cls in [(SKLearnRegressor, KerasRegressor)]:
        with pytest.raises(NotFittedError):
            theirs_cls(keras_build).predict(x)
        with pytest.raises(NotFittedError):
            ours_cls(fastrnn_build).predict(x)

    def keras_uncompiled(X, y):
        return keras.Sequential([keras.Input((X.shape[1],)), keras.layers.Dense(1)])

    def fastrnn_uncompiled(X, y):
        return Sequential([Dense(1, input_shape=X.shape[1:])])

    with pytest.raises(RuntimeError) as theirs_error:
        KerasRegressor(keras_uncompiled).fit(x, x[:, 0])
    with pytest.raises(RuntimeError) as ours_error:
        SKLearnRegressor(fastrnn_uncompiled).fit(x, x[:, 0])
    assert str(ours_error.value).startswith(str(theirs_error.value))
