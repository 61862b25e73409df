"""keras-tuner for fastrnn models: ``RandomSearch``, ``BayesianOptimization``, ``Hyperband``,
``GridSearch`` and a ``Tuner`` base, built on keras-tuner's oracles.

keras-tuner's own tuners accept Keras models only (a fastrnn model gets ``FatalTypeError``).
These subclasses of keras-tuner's tuner classes take the same arguments and keep keras-tuner's
search loop, oracles, project directory and reporting (``search``, ``search_space_summary``,
``results_summary``, ``get_best_hyperparameters``, ``oracle``), and replace its Keras-specific
part:

* the hypermodel (``build(hp)`` or a ``keras_tuner.HyperModel``) returns a compiled fastrnn model,
  trained with fastrnn's ``fit`` (``search(*args, **kwargs)`` passes its arguments to ``fit``:
  ``x, y, epochs=..., validation_data=...``); ``callbacks`` are fastrnn callbacks, deep-copied for
  every execution;
* the objective (e.g. ``"val_loss"``, ``"val_mae"``, ``"accuracy"`` or a ``keras_tuner.Objective``)
  is read from the History of each fit, at its best epoch, averaged over
  ``executions_per_trial``, and reported to the oracle;
* each trial's weights at its best epoch are saved in fastrnn's own format
  (``<directory>/<project_name>/trial_<id>/checkpoint.fastrnn``, next to ``build_config.json``),
  and ``get_best_models()`` rebuilds the best trials' models from their hyperparameters and loads
  those weights; Hyperband's continued trials start from their parent trial's checkpoint;
* the tuner's ``optimizer``, ``loss`` and ``metrics`` arguments recompile the built models, and
  ``max_model_size`` skips models with more parameters.

Reproducible searches: pass ``seed=`` to the tuner (hyperparameter sampling) and call
``fastrnn.set_random_seed(seed)`` before ``search`` (weights, dropout and shuffling).

keras-tuner is an optional dependency: ``pip install "fastrnn[tuner]"``. It imports Keras; when
Keras would pick its default TensorFlow backend and TensorFlow is not installed, this module
selects Keras's NumPy backend (fastrnn computes nothing in Keras), so no deep-learning framework
is needed.

Example:
    >>> from fastrnn import tuner
    >>> def build(hp):
    ...     model = Sequential([SimpleRNN(hp.Int("units", 2, 16), input_shape=(12, 1)), Dense(1)])
    ...     model.compile(optimizer=Adam(hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")),
    ...                   loss="mse")
    ...     return model
    >>> search = tuner.RandomSearch(build, objective="val_loss", max_trials=10, seed=0,
    ...                             directory="tuning", project_name="sunspots")
    >>> search.search(x, y, epochs=30, validation_split=0.2, verbose=0)
    >>> best_model = search.get_best_models(1)[0]
    >>> best_hp = search.get_best_hyperparameters(1)[0]   # best_hp.values: {"units": ..., ...}
"""

from __future__ import annotations

import json
import os
import sys
from importlib import util as _importlib_util
from typing import Any

import numpy as np

from fastrnn import callbacks as callbacks_module
from fastrnn import optimizers as optimizers_module


def _keras_would_fail_on_tensorflow() -> bool:
    """True when ``import keras`` would pick TensorFlow (its default) that is not installed."""
    if "keras" in sys.modules or "KERAS_BACKEND" in os.environ:
        return False
    if "KERAS_HOME" in os.environ:
        homes = [os.environ["KERAS_HOME"]]
    else:
        homes = [os.path.join(os.path.expanduser("~"), ".keras"), os.path.join("/tmp", ".keras")]
    backend = "tensorflow"
    for home in homes:
        try:
            with open(os.path.join(home, "keras.json")) as f:
                backend = json.load(f).get("backend", backend)
            break
        except (OSError, ValueError, AttributeError):
            continue
    return backend == "tensorflow" and _importlib_util.find_spec("tensorflow") is None


try:
    if _importlib_util.find_spec("keras_tuner") is not None and _keras_would_fail_on_tensorflow():
        os.environ["KERAS_BACKEND"] = "numpy"
    import keras_tuner
    from keras_tuner import errors as _errors
except ImportError:  # the error is raised when a tuner is created
    keras_tuner = None

_CHECKPOINT = "checkpoint.fastrnn"
_BUILD_CONFIG = "build_config.json"
_MISSING = (
    "fastrnn.tuner.{name} requires keras-tuner, which is not installed (or Keras could not be "
    'imported): pip install "fastrnn[tuner]".'
)


def _is_model(obj: Any) -> bool:
    return not isinstance(obj, type) and all(
        callable(getattr(obj, name, None)) for name in ("fit", "predict", "save_weights")
    )


def _history_logs(results: Any) -> dict | None:
    """The per-epoch logs of a fastrnn (or Keras-like) History, else None."""
    logs = getattr(results, "history", None)
    if isinstance(logs, dict) and not isinstance(results, dict):
        return logs
    return None


if keras_tuner is not None:

    class _SaveBestEpoch(callbacks_module.Callback):
        """Saves the weights (fastrnn format) whenever the objective improves on its best value
        so far (kept across the executions of a trial), or every epoch when the logs do not hold
        the objective (it is then computed after fit)."""

        def __init__(self, tuner: Any, objective: Any, trial_id: str) -> None:
            super().__init__()
            self.tuner, self.objective, self.trial_id = tuner, objective, trial_id
            self.best_value = float("-inf") if objective.direction == "max" else float("inf")

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            if not self.objective.has_value(logs):
                self.tuner.save_model(self.trial_id, self.model, step=epoch)
                return
            value = self.objective.get_value(logs)
            if self.objective.better_than(value, self.best_value):
                self.best_value = value
                self.tuner.save_model(self.trial_id, self.model, step=epoch)

    class _TunerCallback(callbacks_module.Callback):
        """Forwards fit's hooks to the tuner's ``on_epoch_begin`` ... ``on_batch_end``."""

        def __init__(self, tuner: Any, trial: Any) -> None:
            super().__init__()
            self.tuner, self.trial = tuner, trial

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.tuner.on_epoch_begin(self.trial, self.model, epoch, logs=logs)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.tuner.on_epoch_end(self.trial, self.model, epoch, logs=logs)

        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            self.tuner.on_batch_begin(self.trial, self.model, batch, logs)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.tuner.on_batch_end(self.trial, self.model, batch, logs)

    class _FastrnnTuning:
        """What the fastrnn tuners change in keras-tuner's ``Tuner``; first in their MRO."""

        # ---- building ----------------------------------------------------------------------
        def _build_hypermodel(self, hp: Any) -> Any:
            model = self.hypermodel.build(hp)
            if not _is_model(model):
                raise _errors.FatalTypeError(
                    "Expected the model-building function, or HyperModel.build(), to return a "
                    "fastrnn model (with compile/fit/predict/save_weights, e.g. a Sequential). "
                    f"Received: {model!r} of type {type(model).__name__}."
                )
            self._override_compile_args(model)
            if "tuner/trial_id" in hp.values:  # Hyperband: continue from the parent trial
                self._load_checkpoint(model, hp.values["tuner/trial_id"])
            return model

        def _try_build(self, hp: Any) -> Any:
            model = self._build_hypermodel(hp)
            size = int(model.count_params()) if getattr(model, "built", False) else 0
            if self.max_model_size and size > self.max_model_size:
                raise _errors.FailedTrialError(f"Oversized model: {size} parameters. Skip model.")
            return model

        def _override_compile_args(self, model: Any) -> None:
            if not (self.optimizer or self.loss or self.metrics):
                return
            optimizer = self.optimizer
            if isinstance(optimizer, optimizers_module.Optimizer):
                # a fresh optimizer (no slots, no step count) for every model
                optimizer = optimizers_module.deserialize(optimizers_module.serialize(optimizer))
            compiled = getattr(model, "compiled", False)
            if compiled and callable(getattr(model, "get_compile_config", None)):
                # keeps what else compile was given (loss_weights, weighted_metrics ...)
                config = dict(model.get_compile_config())
                for key, value in (("optimizer", optimizer), ("loss", self.loss)):
                    if value:
                        config[key] = value
                if self.metrics:
                    config["metrics"] = self.metrics
                model.compile_from_config(config)
                return
            model.compile(
                optimizer=optimizer or (model.optimizer if compiled else "rmsprop"),
                loss=self.loss or (model.loss if compiled else None),
                metrics=self.metrics or (list(model.metrics_names) if compiled else None),
            )

        # ---- training ----------------------------------------------------------------------
        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> list:
            """Builds and fits ``executions_per_trial`` models with the trial's hyperparameters.

            Args:
                trial: the ``keras_tuner`` Trial (``trial.hyperparameters``).
                *args: positional arguments of ``search``, passed to ``fit`` (``x, y``).
                **kwargs: keyword arguments of ``search``, passed to ``fit``; ``callbacks`` are
                    deep-copied for each execution.

            Returns:
                The list of what ``hypermodel.fit`` returned, one per execution (fastrnn
                Histories unless the hypermodel's ``fit`` returns metrics itself).

            Raises:
                keras_tuner.errors.FatalValueError: no hypermodel, or callbacks that cannot be
                    deep-copied.
            """
            if self.hypermodel is None:
                raise _errors.FatalValueError(
                    "This tuner has no hypermodel: pass a build(hp) function or a HyperModel, or "
                    "override run_trial."
                )
            hp = trial.hyperparameters
            if "tuner/epochs" in hp.values:  # Hyperband's budget for this trial
                kwargs["epochs"] = hp.values["tuner/epochs"]
                kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]
            checkpoint = _SaveBestEpoch(self, self.oracle.objective, trial.trial_id)
            original_callbacks = kwargs.pop("callbacks", None) or []
            results = []
            for _ in range(self.executions_per_trial):
                execution_kwargs = dict(kwargs)
                callbacks = self._deepcopy_callbacks(list(original_callbacks))
                callbacks += [_TunerCallback(self, trial), checkpoint]
                execution_kwargs["callbacks"] = callbacks
                results.append(self._build_and_fit_model(trial, *args, **execution_kwargs))
            return results

        def _build_and_fit_model(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            hp = trial.hyperparameters
            model = self._try_build(hp)
            return self.hypermodel.fit(hp, model, *args, **kwargs)

        def _run_and_update_trial(self, trial: Any, *fit_args: Any, **fit_kwargs: Any) -> None:
            results = self.run_trial(trial, *fit_args, **fit_kwargs)
            metrics, step = self._results_to_metrics(results, "Tuner.run_trial()")
            self.oracle.update_trial(trial.trial_id, metrics, step=step)

        def _results_to_metrics(self, results: Any, where: str) -> tuple[dict, int]:
            """(metrics dict for the oracle, best step) from what ``run_trial`` returned: a
            History (its best epoch), a dict, a number, or a list of these (averaged)."""
            objective = self.oracle.objective
            if isinstance(results, list):
                if not results:
                    raise _errors.FatalValueError(f"{where} returned an empty list.")
                pairs = [self._results_to_metrics(r, where) for r in results]
                keys = set.intersection(*(set(m) for m, _ in pairs))
                metrics = {k: float(np.mean([m[k] for m, _ in pairs])) for k in keys}
                return metrics, int(np.mean([s for _, s in pairs]))
            if isinstance(results, (bool, np.bool_)):
                raise _errors.FatalTypeError(f"{where} returned a bool: {results!r}.")
            if isinstance(results, (int, float, np.integer, np.floating)):
                return {objective.name: float(results)}, 0
            if results is None:
                raise _errors.FatalTypeError(
                    f"The return value of {where} is None. Did you forget to return the metrics?"
                )
            logs = _history_logs(results)
            if logs is not None:
                epochs = max((len(v) for v in logs.values()), default=0)
                rows = [
                    {k: float(v[e]) for k, v in logs.items() if e < len(v)} for e in range(epochs)
                ]
                if not rows or not objective.has_value(rows[0]):
                    raise _errors.FatalValueError(
                        f"The objective {objective.name!r} is not among the metrics fit reported "
                        f"({', '.join(sorted(logs)) or 'none'}). Pass objective= one of them (e.g. "
                        "'val_loss' needs validation_data or validation_split in search())."
                    )
                best = 0
                for e, row in enumerate(rows):
                    if objective.better_than(
                        objective.get_value(row), objective.get_value(rows[best])
                    ):
                        best = e
                row = dict(rows[best])
                row.setdefault(objective.name, objective.get_value(row))
                return row, best
            if isinstance(results, dict):
                metrics = {k: float(v) for k, v in results.items()}
                if objective.name not in metrics:
                    if not objective.has_value(metrics):
                        raise _errors.FatalValueError(
                            f"Expected the dictionary returned by {where} to hold the objective "
                            f"{objective.name!r}. Received: {results}."
                        )
                    metrics[objective.name] = objective.get_value(metrics)
                return metrics, 0
            raise _errors.FatalTypeError(
                f"Expected the return value of {where} to be a fastrnn History, a dict, a float, "
                f"or a list of these. Received: {results!r} of type {type(results).__name__}."
            )

        # ---- checkpoints -------------------------------------------------------------------
        def _get_checkpoint_fname(self, trial_id: str) -> str:
            return os.path.join(self.get_trial_dir(trial_id), _CHECKPOINT)

        def _get_build_config_fname(self, trial_id: str) -> str:
            return os.path.join(self.get_trial_dir(trial_id), _BUILD_CONFIG)

        def save_model(self, trial_id: str, model: Any, step: int = 0) -> None:
            """Saves ``model``'s weights as trial ``trial_id``'s checkpoint (fastrnn format),
            with the input shape it was built for.

            Args:
                trial_id: the trial's id.
                model: a built fastrnn model.
                step: the epoch the weights belong to (recorded, not used for the file name).
            """
            model.save_weights(self._get_checkpoint_fname(trial_id))
            shape = getattr(model, "built_input_shape", None)
            with open(self._get_build_config_fname(trial_id), "w") as f:
                json.dump({"input_shape": None if shape is None else list(shape), "step": step}, f)

        def _load_checkpoint(self, model: Any, trial_id: str) -> None:
            path = self._get_checkpoint_fname(trial_id)
            if not os.path.exists(path):
                raise _errors.FatalValueError(
                    f"Trial {trial_id} has no checkpoint ({path}): it did not finish an epoch."
                )
            if not getattr(model, "built", False):
                try:
                    with open(self._get_build_config_fname(trial_id)) as f:
                        shape = json.load(f).get("input_shape")
                except (OSError, ValueError):
                    shape = None
                if shape is not None:
                    model.build(tuple(shape))
            model.load_weights(path)

        def load_model(self, trial: Any) -> Any:
            """The model of ``trial``: rebuilt from its hyperparameters, with the weights of its
            best epoch.

            Raises:
                keras_tuner.errors.FatalValueError: the trial saved no checkpoint.
            """
            model = self._try_build(trial.hyperparameters)
            self._load_checkpoint(model, trial.trial_id)
            return model

        def get_best_models(self, num_models: int = 1) -> list:
            """The best models, best first, as determined by the objective: each rebuilt from its
            trial's hyperparameters with the weights of that trial's best epoch.

            For the best results, retrain a model built from ``get_best_hyperparameters()`` on
            all the data.

            Args:
                num_models: how many models, default 1.

            Returns:
                A list of compiled fastrnn models.
            """
            return super().get_best_models(num_models)

    _TUNER_DOC = """

    Same arguments as ``keras_tuner.{base}``{extra}; the hypermodel returns compiled fastrnn
    models and ``search(x, y, ...)`` passes its arguments to fastrnn's ``fit``. See
    ``fastrnn.tuner``'s module docstring for what differs from keras-tuner's Keras tuners.

    Args:
        hypermodel: a ``build(hp)`` function or a ``keras_tuner.HyperModel`` returning a compiled
            fastrnn model (optional when ``run_trial`` is overridden).
        objective: name of the metric to optimise (``"val_loss"``, ``"val_mae"``,
            ``"accuracy"`` ...; direction inferred), a ``keras_tuner.Objective``, or a list of
            them. Default None: ``run_trial`` must then return the value to minimise.{args}
        seed: int, default None: seed of the hyperparameter sampling.
        hyperparameters: ``keras_tuner.HyperParameters`` registered in advance, default None.
        tune_new_entries: bool, default True: tune hyperparameters not in ``hyperparameters``.
        allow_new_entries: bool, default True: let the hypermodel declare new hyperparameters.
        max_retries_per_trial: int, default 0: retries of a trial that raised.
        max_consecutive_failed_trials: int, default 3: failed trials that stop the search.
        **kwargs: ``keras_tuner.Tuner``'s: ``directory`` and ``project_name`` (where trials and
            checkpoints are written), ``overwrite`` (default False: resume an existing
            project), ``executions_per_trial`` (default 1: fits averaged per trial),
            ``max_model_size``, ``optimizer``, ``loss``, ``metrics`` (recompile the built
            models), ``tuner_id``.

    Raises:
        ImportError: keras-tuner is not installed (``pip install "fastrnn[tuner]"``).
    """

    class Tuner(_FastrnnTuning, keras_tuner.Tuner):
        """keras-tuner's ``Tuner`` for fastrnn models, with an explicit ``oracle``.

        Subclass it to write your own ``run_trial`` (return a fastrnn History, a dict of
        metrics or the objective value), or pass any ``keras_tuner.Oracle``.

        Args:
            oracle: a ``keras_tuner.Oracle`` instance.
            hypermodel: a ``build(hp)`` function or a ``keras_tuner.HyperModel`` returning a
                compiled fastrnn model (optional when ``run_trial`` is overridden).
            **kwargs: ``keras_tuner.Tuner``'s: ``directory``, ``project_name``, ``overwrite``,
                ``executions_per_trial``, ``max_model_size``, ``optimizer``, ``loss``,
                ``metrics``, ``tuner_id``.

        Raises:
            ImportError: keras-tuner is not installed (``pip install "fastrnn[tuner]"``).

        Example:
            >>> oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_loss", max_trials=5)
            >>> search = fastrnn.tuner.Tuner(oracle, build, directory="tuning")
            >>> search.search(x, y, epochs=20, validation_split=0.2, verbose=0)
        """

    class RandomSearch(_FastrnnTuning, keras_tuner.RandomSearch):
        __doc__ = (
            "Random search over the hyperparameter space, for fastrnn models."
            + _TUNER_DOC.format(
                base="RandomSearch",
                extra="",
                args="\n        max_trials: int, default 10: the number of trials.",
            )
            + """
    Example:
        >>> search = fastrnn.tuner.RandomSearch(build, objective="val_loss", max_trials=8,
        ...                                     seed=0, directory="tuning", project_name="rnn")
        >>> search.search(x, y, epochs=20, validation_data=(x_val, y_val), verbose=0)
        >>> search.results_summary()
        >>> model = search.get_best_models(1)[0]
    """
        )

    class BayesianOptimization(_FastrnnTuning, keras_tuner.BayesianOptimization):
        __doc__ = (
            "Bayesian optimisation with a Gaussian process, for fastrnn models (needs SciPy)."
            + _TUNER_DOC.format(
                base="BayesianOptimization",
                extra="",
                args="""
        max_trials: int, default 10: the number of trials.
        num_initial_points: int, default None (3 times the number of hyperparameters): random
            trials before the Gaussian process is used.
        alpha: float, default 1e-4: noise added to the Gaussian process's kernel diagonal.
        beta: float, default 2.6: exploration weight of the upper-confidence-bound acquisition.""",
            )
            + """
    Example:
        >>> search = fastrnn.tuner.BayesianOptimization(build, objective="val_loss",
        ...                                             max_trials=10, seed=0, directory="t")
        >>> search.search(x, y, epochs=20, validation_split=0.2, verbose=0)
    """
        )

    class Hyperband(_FastrnnTuning, keras_tuner.Hyperband):
        __doc__ = (
            "Hyperband, for fastrnn models: many short trials, the best continued for longer "
            "from their checkpoints."
            + _TUNER_DOC.format(
                base="Hyperband",
                extra=" (the ``epochs`` given to ``search`` are replaced by Hyperband's budget)",
                args="""
        max_epochs: int, default 100: the most epochs one model is trained.
        factor: int, default 3: the reduction factor between rounds.
        hyperband_iterations: int, default 1: times the Hyperband algorithm is run.""",
            )
            + """
    Example:
        >>> search = fastrnn.tuner.Hyperband(build, objective="val_loss", max_epochs=27,
        ...                                  seed=0, directory="t")
        >>> search.search(x, y, validation_split=0.2, verbose=0)
    """
        )

    class GridSearch(_FastrnnTuning, keras_tuner.GridSearch):
        __doc__ = (
            "Grid search over ``hp.Choice``/stepped hyperparameters, for fastrnn models."
            + _TUNER_DOC.format(
                base="GridSearch",
                extra="",
                args="\n        max_trials: int, default None: stop after this many trials "
                "(None: the whole grid).",
            )
            + """
    Example:
        >>> search = fastrnn.tuner.GridSearch(build, objective="val_loss", directory="t")
        >>> search.search(x, y, epochs=20, validation_split=0.2, verbose=0)
    """
        )

else:

    class _Missing:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError(_MISSING.format(name=type(self).__name__))

    class Tuner(_Missing):  # type: ignore[no-redef]
        """keras-tuner's ``Tuner`` for fastrnn models (keras-tuner is not installed)."""

    class RandomSearch(_Missing):  # type: ignore[no-redef]
        """Random search for fastrnn models (keras-tuner is not installed)."""

    class BayesianOptimization(_Missing):  # type: ignore[no-redef]
        """Bayesian optimisation for fastrnn models (keras-tuner is not installed)."""

    class Hyperband(_Missing):  # type: ignore[no-redef]
        """Hyperband for fastrnn models (keras-tuner is not installed)."""

    class GridSearch(_Missing):  # type: ignore[no-redef]
        """Grid search for fastrnn models (keras-tuner is not installed)."""


__all__ = ["BayesianOptimization", "GridSearch", "Hyperband", "RandomSearch", "Tuner"]
