"""Tune the units and learning rate of the sunspot forecaster (SimpleRNN(units) + Dense(1)).

Same data as ``fastrnn.examples.sunspots``: yearly sunspot numbers scaled to [0, 1], windows of
12 years predicting the next, the first 80 % of the windows for training and the last 20 % for
testing. The search sees the training windows only and scores a candidate by its RMSE on later
windows (time order kept), then the best model's test RMSE is printed in sunspot units.

Two routes, with the same search space (units: integers in ``--units``; learning rate:
log-uniform in ``--learning-rate``):

* ``--search keras-tuner`` (default): ``fastrnn.tuner.RandomSearch`` (or ``--tuner bayesian``,
  ``hyperband``) minimising ``val_loss`` on the last 20 % of the training windows; the best model
  is the search's own, reloaded from its checkpoint. Needs ``pip install "fastrnn[tuner]"``.
* ``--search sklearn``: ``RandomizedSearchCV`` over ``fastrnn.wrappers.SKLearnRegressor`` with
  ``TimeSeriesSplit`` folds (``--cv``) and ``--n-jobs`` worker processes; the best model is
  refitted on all training windows. Needs ``pip install "fastrnn[sklearn]"``.

Run: ``python -m fastrnn.examples.tune_sunspots [--search sklearn] [--max-trials 8]``
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from fastrnn.examples.sunspots import load_sunspots, make_windows
from fastrnn.initializers import set_random_seed
from fastrnn.layers import Dense, SimpleRNN
from fastrnn.models import Sequential
from fastrnn.optimizers import Adam


def build_model(units: int, learning_rate: float, window: int) -> Sequential:
    """The sunspot forecaster: SimpleRNN(units, tanh) + Dense(1), Adam, mean squared error."""
    model = Sequential([SimpleRNN(units, activation="tanh", input_shape=(window, 1)), Dense(1)])
    model.compile(optimizer=Adam(learning_rate), loss="mse")
    return model


def _regressor_builder(X, y, units=3, learning_rate=0.01):
    """Model builder for ``SKLearnRegressor`` (module level, so worker processes can load it)."""
    return build_model(int(units), float(learning_rate), X.shape[1])


def _search_keras_tuner(
    data, space, max_trials, epochs, batch_size, seed, tuner_kind, directory, verbose
):
    from fastrnn import tuner

    x_train, y_train = data
    (lo_units, hi_units), (lo_lr, hi_lr) = space
    window = x_train.shape[1]

    def build(hp):
        units = hp.Int("units", lo_units, hi_units)
        learning_rate = hp.Float("learning_rate", lo_lr, hi_lr, sampling="log")
        return build_model(units, learning_rate, window)

    common = {
        "objective": "val_loss",
        "seed": seed,
        "directory": directory,
        "project_name": "tune_sunspots",
        "overwrite": True,
    }
    if tuner_kind == "random":
        search = tuner.RandomSearch(build, max_trials=max_trials, **common)
    elif tuner_kind == "bayesian":
        search = tuner.BayesianOptimization(build, max_trials=max_trials, **common)
    elif tuner_kind == "hyperband":
        search = tuner.Hyperband(build, max_epochs=epochs, factor=3, **common)
    else:
        raise ValueError(f"--tuner must be random, bayesian or hyperband, got {tuner_kind!r}.")
    # validation_split holds out the *last* 20 % of the training windows: later years
    search.search(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        validation_split=0.2,
        verbose=verbose,
    )
    trials = [
        (t.hyperparameters["units"], t.hyperparameters["learning_rate"], float(np.sqrt(t.score)))
        for t in search.oracle.trials.values()
        if t.status == "COMPLETED"
    ]
    best_hp = search.get_best_hyperparameters(1)[0]
    best_model = search.get_best_models(1)[0]
    best_score = search.oracle.get_best_trials(1)[0].score
    return (
        trials,
        best_hp["units"],
        best_hp["learning_rate"],
        float(np.sqrt(best_score)),
        best_model,
    )


def _search_sklearn(data, space, max_trials, epochs, batch_size, seed, cv, n_jobs, verbose):
    from scipy.stats import loguniform, randint
    from sklearn.model_selection import RandomizedSearchCV, TimeSeriesSplit

    from fastrnn.wrappers import SKLearnRegressor

    x_train, y_train = data
    (lo_units, hi_units), (lo_lr, hi_lr) = space
    estimator = SKLearnRegressor(
        _regressor_builder, fit_kwargs={"epochs": epochs, "batch_size": batch_size, "verbose": 0}
    )
    distributions = {
        "model_kwargs__units": randint(lo_units, hi_units + 1),
        "model_kwargs__learning_rate": loguniform(lo_lr, hi_lr),
    }
    search = RandomizedSearchCV(
        estimator,
        distributions,
        n_iter=max_trials,
        cv=TimeSeriesSplit(cv),
        scoring="neg_root_mean_squared_error",
        n_jobs=n_jobs,
        random_state=seed,
        verbose=verbose,
    )
    search.fit(x_train, y_train[:, 0])
    results = search.cv_results_
    trials = [
        (int(p["model_kwargs__units"]), float(p["model_kwargs__learning_rate"]), float(-score))
        for p, score in zip(results["params"], results["mean_test_score"])
    ]
    best = search.best_params_
    return (
        trials,
        int(best["model_kwargs__units"]),
        float(best["model_kwargs__learning_rate"]),
        float(-search.best_score_),
        search.best_estimator_.model_,
    )


def main(
    search: str = "keras-tuner",
    max_trials: int = 8,
    epochs: int = 30,
    units: tuple[int, int] = (2, 16),
    learning_rate: tuple[float, float] = (1e-3, 1e-1),
    window: int = 12,
    batch_size: int = 8,
    tuner: str = "random",
    cv: int = 3,
    n_jobs: int | None = None,
    directory: str | None = None,
    seed: int = 0,
    verbose: int = 0,
) -> dict:
    """Runs the search and evaluates its best model.

    Args:
        search: ``"keras-tuner"`` or ``"sklearn"``.
        max_trials: candidates tried (Hyperband decides its own number).
        epochs: training epochs per candidate (Hyperband: the most epochs of one model).
        units: inclusive range of SimpleRNN units.
        learning_rate: range of Adam's learning rate, sampled log-uniformly.
        window: years per input window.
        batch_size: fit's batch size.
        tuner: keras-tuner route: ``"random"``, ``"bayesian"`` or ``"hyperband"``.
        cv: scikit-learn route: number of ``TimeSeriesSplit`` folds.
        n_jobs: scikit-learn route: worker processes (None: 1).
        directory: keras-tuner route: where trials are written (None: a temporary directory).
        seed: seeds fastrnn and the search.
        verbose: search verbosity.

    Returns:
        ``{"search", "best_units", "best_learning_rate", "val_rmse", "test_rmse", "trials"}``,
        RMSEs in sunspots; ``trials`` lists ``(units, learning_rate, val_rmse)``.

    Raises:
        ValueError: unknown ``search`` or ``tuner``.
        ImportError: the route's optional dependency is missing.
    """
    if search not in ("keras-tuner", "sklearn"):
        raise ValueError(f"search must be 'keras-tuner' or 'sklearn', got {search!r}.")
    set_random_seed(seed)
    _, values = load_sunspots()
    lo, hi = values.min(), values.max()
    x, y = make_windows((values - lo) / (hi - lo), window)
    split = int(0.8 * len(x))
    x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]
    space = (tuple(units), tuple(learning_rate))
    if search == "keras-tuner":
        with tempfile.TemporaryDirectory() as tmp:
            trials, best_units, best_lr, val_rmse, model = _search_keras_tuner(
                (x_train, y_train),
                space,
                max_trials,
                epochs,
                batch_size,
                seed,
                tuner,
                directory or os.path.join(tmp, "tuning"),
                verbose,
            )
    else:
        trials, best_units, best_lr, val_rmse, model = _search_sklearn(
            (x_train, y_train), space, max_trials, epochs, batch_size, seed, cv, n_jobs, verbose
        )
    test_rmse = float(
        np.sqrt(np.mean((model.predict(x_test, verbose=0) - y_test) ** 2)) * (hi - lo)
    )
    val_rmse *= float(hi - lo)
    trials = [(u, lr, r * float(hi - lo)) for u, lr, r in trials]
    print(f"{'units':>5}  {'learning rate':>13}  {'val RMSE':>8}")
    for u, lr, r in sorted(trials, key=lambda t: t[2]):
        print(f"{u:5d}  {lr:13.5f}  {r:8.3f}")
    print(f"Best: units={best_units}, learning_rate={best_lr:.5f} (validation RMSE {val_rmse:.3f})")
    print(f"Test RMSE of the best model: {test_rmse:.3f} sunspots")
    return {
        "search": search,
        "best_units": int(best_units),
        "best_learning_rate": float(best_lr),
        "val_rmse": val_rmse,
        "test_rmse": test_rmse,
        "trials": trials,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", choices=["keras-tuner", "sklearn"], default="keras-tuner")
    parser.add_argument("--tuner", choices=["random", "bayesian", "hyperband"], default="random")
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--units", type=int, nargs=2, default=(2, 16), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--learning-rate", type=float, nargs=2, default=(1e-3, 1e-1), metavar=("MIN", "MAX")
    )
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--directory", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args()
    main(
        search=args.search,
        max_trials=args.max_trials,
        epochs=args.epochs,
        units=tuple(args.units),
        learning_rate=tuple(args.learning_rate),
        tuner=args.tuner,
        cv=args.cv,
        n_jobs=args.n_jobs,
        directory=args.directory,
        seed=args.seed,
        verbose=args.verbose,
    )
