"""scikit-learn wrappers for fastrnn models, modelled on Keras 3's ``keras.wrappers``.

``SKLearnRegressor``, ``SKLearnClassifier`` and ``SKLearnTransformer`` turn a model builder (or a
compiled model) into a scikit-learn estimator, so that ``GridSearchCV`` (also with ``n_jobs``),
``RandomizedSearchCV``, ``cross_val_score``, pipelines and Optuna studies work on fastrnn models.
They take Keras's arguments (``model``, ``warm_start``, ``model_kwargs``, ``fit_kwargs``) and
behave as Keras's wrappers do: the builder is called as ``model(X=X, y=y, **model_kwargs)`` with
the validated inputs and the encoded targets (regression targets as ``(n, 1)`` columns,
classification targets one-hot over ``classes_``), ``score`` is scikit-learn's default metric (R²
or accuracy), and ``get_params``/``set_params`` make ``sklearn.base.clone`` work.

Beyond Keras's wrappers (which accept 2-D ``X`` only):

* ``X`` may have any rank ≥ 2, e.g. ``(samples, time steps, features)`` for recurrent models
  (``n_features_in_`` is then ``X.shape[1]``, as scikit-learn counts it);
* regressors accept several targets, ``y`` of shape ``(n, k)``; ``predict`` returns ``y``'s shape;
* the entries of ``model_kwargs`` and ``fit_kwargs`` are parameters of their own:
  ``set_params(model_kwargs__units=8, fit_kwargs__epochs=20)`` and
  ``GridSearchCV(est, {"model_kwargs__units": [4, 8]})`` work;
* ``clone`` keeps ``fit_kwargs``, ``fit`` never modifies ``fit_kwargs``, ``warm_start=True``
  continues training the fitted model, ``history_`` is a dict of per-epoch lists (extended by
  warm-started fits) and ``epoch_`` counts the epochs trained;
* ``SKLearnClassifier.predict_proba`` returns the model's outputs when they are class
  probabilities (a softmax over ``len(classes_)`` units), so probability scorers
  (``neg_log_loss``, ``roc_auc_ovr``) work; with two classes ``decision_function`` gives one
  score per sample (scikit-learn's convention, so ``roc_auc`` works);
* ``predict``, ``score`` and ``transform`` call the model's ``predict`` with ``verbose=0`` (no
  progress bar per call inside a search).

scikit-learn (>= 1.6) is an optional dependency: ``pip install "fastrnn[sklearn]"``.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np

from fastrnn import losses as losses_module
from fastrnn import optimizers as optimizers_module

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
except ImportError:  # the error is raised when a wrapper is created
    sklearn = None

    class BaseEstimator:  # type: ignore[no-redef]
        pass

    class ClassifierMixin:  # type: ignore[no-redef]
        pass

    class RegressorMixin:  # type: ignore[no-redef]
        pass

    class TransformerMixin:  # type: ignore[no-redef]
        pass


_ROUTED = ("model_kwargs", "fit_kwargs")


def _require_sklearn(owner: str) -> None:
    if sklearn is None:
        raise ImportError(
            f"fastrnn.wrappers.{owner} requires scikit-learn (>= 1.6), which is not installed: "
            'pip install "fastrnn[sklearn]" (or pip install scikit-learn).'
        )
    try:
        from sklearn.utils.validation import validate_data  # noqa: F401  (scikit-learn >= 1.6)
    except ImportError:
        raise ImportError(
            f"fastrnn.wrappers.{owner} requires scikit-learn >= 1.6, found "
            f'{sklearn.__version__}: pip install "fastrnn[sklearn]".'
        ) from None


def _validate_data(estimator: Any, *args: Any, **kwargs: Any) -> Any:
    from sklearn.utils.validation import validate_data

    return validate_data(estimator, *args, **kwargs)


# ---- models: recognise, check, clone, pack for pickling ----------------------------------------
def _is_model(obj: Any) -> bool:
    """A model instance (not a builder): an object with ``fit`` and ``predict`` methods."""
    return not isinstance(obj, type) and all(
        callable(getattr(obj, name, None)) for name in ("fit", "predict")
    )


def _takes_verbose(method: Any) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "verbose" or p.kind is p.VAR_KEYWORD for p in parameters)


def _check_model(model: Any, where: str) -> None:
    """``where`` says what must be a model, e.g. ``"model"`` or ``"The model builder f"``."""
    if not _is_model(model):
        verb = "must return" if where.startswith("The model builder") else "must be"
        raise TypeError(
            f"{where} {verb} a fastrnn model (an object with compile/fit/predict, e.g. a "
            f"Sequential), got {model!r} of type {type(model).__name__}."
        )
    if (
        not getattr(model, "compiled", False)
        or getattr(model, "loss", None) is None
        or getattr(model, "optimizer", None) is None
    ):
        raise RuntimeError(
            "Given model needs to be compiled, and have a loss and an optimizer. Call "
            "model.compile(optimizer=..., loss=...) before returning it from the builder."
        )


def _compile_state(model: Any) -> dict | None:
    """What ``compile`` was given, in a form that recompiles a copy (fresh optimizer state)."""
    if not getattr(model, "compiled", False):
        return None
    if callable(getattr(model, "get_compile_config", None)):
        return {"compile_config": model.get_compile_config()}
    return {
        "optimizer": optimizers_module.serialize(model.optimizer),
        "loss": losses_module.serialize(model.loss),
        "metrics": list(getattr(model, "metrics_names", []) or []),
    }


def _apply_compile_state(model: Any, state: dict | None) -> None:
    if state is None:
        return
    if "compile_config" in state:
        model.compile_from_config(copy.deepcopy(state["compile_config"]))
    else:
        model.compile(
            optimizer=optimizers_module.deserialize(state["optimizer"]),
            loss=losses_module.deserialize(state["loss"]),
            metrics=list(state["metrics"]),
        )


def _clone_model(model: Any) -> Any:
    """Keras's ``clone_model`` for a compiled model: same architecture and compile arguments,
    freshly initialised weights and a fresh optimizer."""
    clone = type(model).from_config(copy.deepcopy(model.get_config()))
    _apply_compile_state(clone, _compile_state(model))
    return clone


def _copy_model(model: Any) -> Any:
    """A deep copy of ``model``: its clone with the same weights."""
    clone = _clone_model(model)
    if getattr(model, "built", False):
        shape = getattr(model, "built_input_shape", None)
        if not getattr(clone, "built", False) and shape is not None:
            clone.build(tuple(shape))
        clone.set_weights(model.get_weights())
    return clone


def _check_kwargs(value: Any, argument: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{argument} must be a dict or None, got {value!r}.")
    return value


class SKLBase(BaseEstimator):
    """Base class of the scikit-learn wrappers (Keras's ``SKLBase``).

    There are sources of randomness in model initialisation and training: call
    ``fastrnn.set_random_seed(seed)`` in the builder (or pass ``seed=`` to the layers) for
    reproducible fits.

    Args:
        model: a compiled fastrnn model, or a callable returning one. A model instance is cloned
            (same architecture and compile arguments, new weights) before each fit unless
            ``warm_start=True``. A callable is called as ``model(X=X, y=y, **model_kwargs)``
            with the validated ``X`` and the encoded targets, and must return a compiled model.
        warm_start: bool, default ``False``. Whether a fit continues training the model of the
            previous fit (``model_``) instead of building a new one; with a model instance and no
            previous fit, the instance itself is trained.
        model_kwargs: dict, default ``None``. Keyword arguments for ``model`` when it is a
            callable; each entry is also a parameter ``model_kwargs__<name>``.
        fit_kwargs: dict, default ``None``. Keyword arguments for ``model.fit`` (``epochs``,
            ``batch_size``, ``verbose`` ...); keyword arguments of ``fit`` take precedence. Each
            entry is also a parameter ``fit_kwargs__<name>``.

    Attributes:
        model_: the fitted model.
        history_: dict of per-epoch lists (``loss``, metrics, ``val_`` forms) of the fits of
            ``model_`` (warm-started fits extend it).
        n_features_in_: ``X.shape[1]`` seen in ``fit``.

    Raises:
        ImportError: scikit-learn (>= 1.6) is not installed.
    """

    def __init__(
        self,
        model: Any,
        warm_start: bool = False,
        model_kwargs: dict | None = None,
        fit_kwargs: dict | None = None,
    ) -> None:
        _require_sklearn(type(self).__name__)
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs

    # targets are kept as given (multi-output allowed); classifiers override
    _multi_output = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        tags.target_tags.multi_output = self._multi_output
        return tags

    def __sklearn_clone__(self) -> SKLBase:
        """An unfitted copy with the same parameters (a model instance is deep-copied)."""
        params = {}
        for name, value in self.get_params(deep=False).items():
            if name == "model" and _is_model(value):
                params[name] = _copy_model(value)
            else:
                params[name] = sklearn.base.clone(value, safe=False)
        return type(self)(**params)

    # ---- parameters: model_kwargs__<name> / fit_kwargs__<name> ----------------------------
    def get_params(self, deep: bool = True) -> dict:
        """This estimator's parameters; with ``deep=True`` also ``model_kwargs__<name>`` and
        ``fit_kwargs__<name>`` for each entry of those dicts."""
        params = super().get_params(deep=deep)
        if deep:
            for argument in _ROUTED:
                entries = getattr(self, argument, None)
                if isinstance(entries, dict):  # anything else is reported by fit
                    for key, value in entries.items():
                        params[f"{argument}__{key}"] = value
        return params

    def set_params(self, **params: Any) -> SKLBase:
        """Sets parameters; ``model_kwargs__units=8`` sets one entry of ``model_kwargs`` (in a new
        dict: the dict given to the constructor is never modified).

        Raises:
            ValueError: an unknown parameter name.
            TypeError: ``model_kwargs``/``fit_kwargs`` is not a dict.
        """
        routed: dict[str, dict] = {}
        plain = {}
        for key, value in params.items():
            head, sep, tail = key.partition("__")
            if sep and head in _ROUTED:
                if not tail:
                    raise ValueError(f"Invalid parameter {key!r}: no name after '__'.")
                routed.setdefault(head, {})[tail] = value
            else:
                plain[key] = value
        if plain:
            super().set_params(**plain)
        for argument, entries in routed.items():
            current = _check_kwargs(getattr(self, argument), argument)
            setattr(self, argument, {**current, **entries})
        return self

    @property
    def epoch_(self) -> int:
        """The number of epochs ``model_`` has been trained (0 before ``fit``)."""
        history = getattr(self, "history_", None) or {}
        return max((len(v) for v in history.values()), default=0)

    # ---- fit / predict ------------------------------------------------------------------------
    def _get_model(self, X: np.ndarray, y: np.ndarray) -> Any:
        if self.warm_start and getattr(self, "model_", None) is not None:
            return self.model_
        model_kwargs = _check_kwargs(self.model_kwargs, "model_kwargs")
        if _is_model(self.model):
            if model_kwargs:
                raise ValueError(
                    "model_kwargs are passed to a model builder, but model is a model instance; "
                    f"got model_kwargs={self.model_kwargs!r}."
                )
            model = self.model if self.warm_start else _clone_model(self.model)
        elif callable(self.model):
            model = self.model(X=X, y=y, **model_kwargs)
            name = getattr(self.model, "__name__", type(self.model).__name__)
            _check_model(model, f"The model builder {name}")
            return model
        else:
            raise TypeError(
                "model must be a compiled fastrnn model or a callable returning one, got "
                f"{self.model!r}."
            )
        _check_model(model, "model")
        return model

    def fit(self, X: Any, y: Any, **kwargs: Any) -> SKLBase:
        """Validates the data, builds (or clones) the model and trains it.

        Args:
            X: array-like of shape ``(n_samples, ...)`` (2-D or more, e.g. ``(n, T, F)``).
            y: array-like, ``(n_samples,)`` or ``(n_samples, n_outputs)``.
            **kwargs: keyword arguments for ``model.fit``, over ``fit_kwargs``.

        Returns:
            ``self``.

        Raises:
            ValueError: bad ``X``/``y`` (scikit-learn's checks), or targets of an unsupported type.
            TypeError: ``model`` is neither a model nor a builder, or the builder returned
                something else than a model.
            RuntimeError: the model is not compiled.
        """
        X, y = _validate_data(self, X, y, allow_nd=True, multi_output=self._multi_output)
        y = self._process_target(y, reset=True)
        fit_kwargs = {**_check_kwargs(self.fit_kwargs, "fit_kwargs"), **kwargs}
        model = self._get_model(X, y)
        previous = getattr(self, "model_", None)
        history = model.fit(X, y, **fit_kwargs)
        logs = getattr(history, "history", history)
        logs = {k: list(v) for k, v in logs.items()} if isinstance(logs, dict) else {}
        if self.warm_start and previous is model and getattr(self, "history_", None):
            for key, values in logs.items():
                self.history_.setdefault(key, []).extend(values)
        else:
            self.history_ = logs
        self.model_ = model
        return self

    def _predict_raw(self, X: Any) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, allow_nd=True)
        if _takes_verbose(self.model_.predict):  # no progress bar per predict/score call
            return np.asarray(self.model_.predict(X, verbose=0))
        return np.asarray(self.model_.predict(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predictions of ``model_`` for ``X``, in the shape of the ``y`` given to ``fit``.

        Raises:
            sklearn.exceptions.NotFittedError: before ``fit``.
            ValueError: ``X`` with a different ``X.shape[1]`` than in ``fit``.
        """
        return self._reverse_process_target(self._predict_raw(X))

    def _process_target(self, y: np.ndarray, reset: bool = False) -> np.ndarray:
        """Regression targets: checked, and 1-D ``y`` made a column ``(n, 1)``."""
        from sklearn.utils.multiclass import type_of_target

        if type_of_target(y) == "unknown":
            raise ValueError(f"Unknown label type for y: {y!r}")
        if reset:
            self._target_ndim = y.ndim
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _reverse_process_target(self, y: np.ndarray) -> np.ndarray:
        if self._target_ndim == 1 and y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(
                    f"The model outputs {y.shape[1]} values per sample, but fit was given a 1-D "
                    "y: end the model with one unit (e.g. Dense(1))."
                )
            return y[:, 0]
        return y


class SKLearnRegressor(RegressorMixin, SKLBase):
    """scikit-learn regressor wrapping a fastrnn model (Keras 3's ``SKLearnRegressor``).

    ``score`` is R² (``sklearn.metrics.r2_score``). The builder is called as
    ``model(X=X, y=y, **model_kwargs)``, ``y`` as a column ``(n, 1)`` when 1-D; ``predict``
    returns the shape of the ``y`` given to ``fit``.

    Args:
        model: a compiled fastrnn model or a callable ``model(X, y, **model_kwargs)`` returning
            one (see ``SKLBase``).
        warm_start: bool, default ``False``: continue training ``model_`` on the next fit.
        model_kwargs: dict, default ``None``: keyword arguments of the builder.
        fit_kwargs: dict, default ``None``: keyword arguments of ``model.fit``.

    Attributes:
        model_, history_, n_features_in_, epoch_: see ``SKLBase``.

    Raises:
        ImportError: scikit-learn (>= 1.6) is not installed.

    Example:
        >>> def build(X, y, units=8, learning_rate=0.01):
        ...     model = Sequential([SimpleRNN(units, input_shape=X.shape[1:]), Dense(y.shape[1])])
        ...     model.compile(optimizer=Adam(learning_rate), loss="mse")
        ...     return model
        >>> est = SKLearnRegressor(build, fit_kwargs={"epochs": 20, "verbose": 0})
        >>> search = GridSearchCV(est, {"model_kwargs__units": [4, 8]}, cv=3, n_jobs=2)
        >>> search.fit(x, y)            # x (N, T, F), y (N,)
        >>> search.best_params_, search.best_estimator_.predict(x).shape   # ..., (N,)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        return tags


class SKLearnClassifier(ClassifierMixin, SKLBase):
    """scikit-learn classifier wrapping a fastrnn model (Keras 3's ``SKLearnClassifier``).

    Targets (binary or multiclass labels of any type) are one-hot encoded over ``classes_``
    (sorted unique labels) before the builder and ``fit`` see them, so the model must output one
    value per class (e.g. ``Dense(len(classes), activation="softmax")`` with
    ``categorical_crossentropy``); ``predict`` returns the label of the largest output. ``score``
    is accuracy.

    Args:
        model: a compiled fastrnn model or a callable ``model(X, y, **model_kwargs)`` returning
            one; ``y`` is the one-hot ``(n, n_classes)`` float64 target.
        warm_start: bool, default ``False``: continue training ``model_`` on the next fit.
        model_kwargs: dict, default ``None``: keyword arguments of the builder.
        fit_kwargs: dict, default ``None``: keyword arguments of ``model.fit``.

    Attributes:
        classes_: the class labels, sorted.
        model_, history_, n_features_in_, epoch_: see ``SKLBase``.

    Raises:
        ImportError: scikit-learn (>= 1.6) is not installed.

    Example:
        >>> def build(X, y, units=8):
        ...     model = Sequential([LSTM(units, input_shape=X.shape[1:]),
        ...                         Dense(y.shape[1], activation="softmax")])
        ...     model.compile(optimizer="adam", loss="categorical_crossentropy")
        ...     return model
        >>> clf = SKLearnClassifier(build, fit_kwargs={"epochs": 10, "verbose": 0})
        >>> clf.fit(x, labels)          # x (N, T, F), labels (N,) e.g. strings
        >>> clf.predict(x[:3]), clf.predict_proba(x[:3]).shape   # labels, (3, n_classes)
    """

    _multi_output = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        return tags

    def _process_target(self, y: np.ndarray, reset: bool = False) -> np.ndarray:
        from sklearn.utils.multiclass import type_of_target

        target_type = type_of_target(y)
        if target_type == "unknown":
            raise ValueError(f"Unknown label type for y: {y!r}")
        if target_type not in ("binary", "multiclass"):
            raise ValueError(
                f"Only binary and multiclass target types are supported. Target type: {target_type}"
            )
        if reset:
            self.classes_ = np.unique(y)
            if len(self.classes_) == 1:
                raise ValueError("Classifier can't train when only one class is present.")
        index = np.searchsorted(self.classes_, y)
        onehot = np.zeros((len(y), len(self.classes_)), dtype=np.float64)
        onehot[np.arange(len(y)), index] = 1.0
        return onehot

    def _class_outputs(self, raw: np.ndarray) -> np.ndarray:
        if raw.ndim != 2 or raw.shape[1] != len(self.classes_):
            raise ValueError(
                f"The model outputs shape {raw.shape}, but the classifier has "
                f"{len(self.classes_)} classes: the model must output one value per class, "
                "(n_samples, n_classes), e.g. Dense(y.shape[1], activation='softmax')."
            )
        return raw

    def _reverse_process_target(self, y: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self._class_outputs(y), axis=1)]

    def decision_function(self, X: Any) -> np.ndarray:
        """Confidence scores: the model's raw outputs for ``X``, ``(n_samples, n_classes)``.

        With two classes, scikit-learn's convention: one score per sample, ``(n_samples,)``,
        the second output minus the first (positive means ``classes_[1]``), so that scorers
        such as ``roc_auc`` work. (Keras's wrapper returns the two columns.)
        """
        raw = self._class_outputs(self._predict_raw(X))
        return raw[:, 1] - raw[:, 0] if raw.shape[1] == 2 else raw

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n_samples, n_classes)``, columns in the order of ``classes_``.

        These are the model's outputs, which must be probabilities (a softmax over the classes).

        Raises:
            ValueError: the outputs are not probabilities (values outside [0, 1] or rows not
                summing to 1, e.g. logits): use ``decision_function`` for raw outputs.
        """
        raw = self._class_outputs(self._predict_raw(X))
        tol = 1e-3 if raw.dtype == np.float32 else 1e-6
        if not (
            np.all(raw >= -tol) and np.all(raw <= 1 + tol) and np.allclose(raw.sum(1), 1, atol=tol)
        ):
            raise ValueError(
                "predict_proba needs the model to output class probabilities (e.g. a final "
                "Dense(n_classes, activation='softmax')); these outputs are not (values outside "
                "[0, 1] or rows not summing to 1). Use decision_function for raw outputs."
            )
        return raw


class SKLearnTransformer(TransformerMixin, SKLBase):
    """scikit-learn transformer wrapping a fastrnn model (Keras 3's ``SKLearnTransformer``).

    ``fit(X, y)`` trains the model as ``SKLearnRegressor`` does; ``transform(X)`` returns
    ``model_.predict(X)`` (e.g. an embedding of sequences for a downstream estimator).

    Args:
        model: a compiled fastrnn model or a callable ``model(X, y, **model_kwargs)`` returning
            one (see ``SKLBase``).
        warm_start: bool, default ``False``: continue training ``model_`` on the next fit.
        model_kwargs: dict, default ``None``: keyword arguments of the builder.
        fit_kwargs: dict, default ``None``: keyword arguments of ``model.fit``.

    Raises:
        ImportError: scikit-learn (>= 1.6) is not installed.

    Example:
        >>> trs = SKLearnTransformer(build, fit_kwargs={"epochs": 5, "verbose": 0})
        >>> features = trs.fit(x, y).transform(x)      # model outputs, (N, units)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags

    def transform(self, X: Any) -> np.ndarray:
        """``model_.predict(X)``.

        Raises:
            sklearn.exceptions.NotFittedError: before ``fit``.
        """
        return self._predict_raw(X)


__all__ = ["SKLBase", "SKLearnClassifier", "SKLearnRegressor", "SKLearnTransformer"]
