"""Metrics: Keras-style stateful metric objects, and the name-based per-sample functions.

Metric objects follow Keras 3's protocol: ``update_state(y_true, y_pred, sample_weight=None)``
accumulates, ``result()`` returns the value so far, ``reset_state()`` starts over, ``name`` names
it in the logs; calling the object updates and returns the result. They compute what Keras's
classes of the same names compute, including how sample weights of any rank are folded in.
``update_state`` also takes ``mask=`` (the output mask of a masked sequence model): the
``Mean``-based metrics combine it with ``sample_weight`` as Keras does with a mask attached to
``y_pred``; ``RootMeanSquaredError`` and the confusion-matrix metrics ignore it, as Keras does.

The functions (``binary_accuracy``, ``mean_absolute_error`` ... and ``resolve``) turn
``(y_true, y_pred)`` into per-sample values; ``fastrnn.models`` averages them over an epoch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastrnn.layers.base import unique_name

EPSILON = 1e-7

NAMES = (
    "accuracy",
    "acc",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "mae",
    "mean_absolute_error",
    "mse",
    "mean_squared_error",
    "mape",
    "mean_absolute_percentage_error",
    "msle",
    "mean_squared_logarithmic_error",
)


# ---- name-based per-sample functions (what fastrnn.models uses today) ------------------------
def _labels_like(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true)
    if y_true.shape == y_pred.shape[:-1] + (1,):
        y_true = y_true[..., 0]
    return y_true


def binary_accuracy(y_true: Any, y_pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
    return np.mean((y_pred > threshold) == (y_true > 0.5), axis=-1)


def categorical_accuracy(y_true: Any, y_pred: np.ndarray) -> np.ndarray:
    return (np.argmax(np.asarray(y_true), -1) == np.argmax(y_pred, -1)).astype(np.float64)


def sparse_categorical_accuracy(y_true: Any, y_pred: np.ndarray) -> np.ndarray:
    labels = _labels_like(y_true, y_pred).astype(np.int64)
    return (labels == np.argmax(y_pred, -1)).astype(np.float64)


def mean_absolute_error(y_true: Any, y_pred: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
    return np.mean(np.abs(y_pred - y_true), axis=-1)


def mean_squared_error(y_true: Any, y_pred: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
    return np.mean((y_pred - y_true) ** 2, axis=-1)


def mean_absolute_percentage_error(y_true: Any, y_pred: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
    return 100.0 * np.mean(np.abs(y_true - y_pred) / np.maximum(np.abs(y_true), EPSILON), -1)


def mean_squared_logarithmic_error(y_true: Any, y_pred: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
    diff = np.log(np.maximum(y_pred, EPSILON) + 1.0) - np.log(np.maximum(y_true, EPSILON) + 1.0)
    return np.mean(diff**2, axis=-1)


_FUNCTIONS = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mae": mean_absolute_error,
    "mean_absolute_error": mean_absolute_error,
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "mape": mean_absolute_percentage_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "msle": mean_squared_logarithmic_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
}


def check(name: Any) -> str:
    """Validates a metric name.

    Raises:
        ValueError: unknown name (valid names listed).
    """
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"Unknown metric {name!r}. Valid names: {', '.join(NAMES)}.")
    return name


def resolve(name: str, y_true: np.ndarray, y_pred: np.ndarray, loss_name: str):
    """The function behind ``name``; ``accuracy`` picks its kind as Keras's compile does.

    Binary when the loss is binary cross-entropy or the output has one unit; sparse when the loss
    is sparse categorical cross-entropy or the targets lack the class axis; else categorical.
    """
    if name not in ("accuracy", "acc"):
        return _FUNCTIONS[name]
    y_true = np.asarray(y_true)
    if loss_name == "binary_crossentropy" or y_pred.shape[-1] == 1:
        return binary_accuracy
    if loss_name == "sparse_categorical_crossentropy" or (
        y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1
    ):
        return sparse_categorical_accuracy
    return categorical_accuracy


# ---- Keras's shape and weight rules ----
def _squeeze_or_expand(x1: np.ndarray, x2: np.ndarray, expand_rank_1: bool = True):
    """Keras's ``squeeze_or_expand_to_same_rank``: fixes a rank difference of one size-1 axis."""
    r1, r2 = x1.ndim, x2.ndim
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """y_true and y_pred as float64 of the same rank (Keras's squeeze/expand rule).

    Raises:
        ValueError: shapes that do not broadcast together.
    """
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.float64)
    y_true, y_pred = _squeeze_or_expand(y_true, y_pred)
    try:
        np.broadcast_shapes(y_true.shape, y_pred.shape)
    except ValueError:
        raise ValueError(
            f"y_true of shape {y_true.shape} does not match y_pred of shape {y_pred.shape}."
        ) from None
    return y_true, y_pred


def _apply_mask(sample_weight: Any, mask: Any) -> np.ndarray | None:
    """Keras's ``apply_mask(..., reduction="sum")``: the mask times the sample weights."""
    if mask is None:
        return None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if sample_weight is None:
        return mask
    sw = np.asarray(sample_weight, dtype=np.float64)
    mask, sw = _squeeze_or_expand(mask, sw)
    while sw.ndim < mask.ndim:  # per-sample weights over a per-step mask
        sw = sw[..., None]
    return sw * mask


def _divide_no_nan(a: Any, b: Any) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))


def _scalar(value: np.ndarray) -> float | np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value


# ---- metric objects ----
class Metric:
    """Base class of the stateful metrics (Keras's ``keras.metrics.Metric`` protocol).

    Args:
        name: default: Keras's automatic name (the snake-cased class name, numbered when taken).
        dtype: accepted for Keras compatibility; states are kept in float64.

    Subclasses implement ``update_state``, ``result`` and ``reset_state``.
    """

    _direction = "down"  # whether larger is better ("up") for mode="auto" callbacks

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}.")
        self.name = name or unique_name(_snake(type(self).__name__))
        self.dtype = dtype

    def update_state(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def result(self) -> float | np.ndarray:
        raise NotImplementedError

    def reset_state(self) -> None:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> float | np.ndarray:
        """Updates the state with this batch and returns the result so far."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict) -> Metric:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def _snake(name: str) -> str:
    import re

    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class Mean(Metric):
    """The (weighted) mean of the values given to ``update_state(values, sample_weight=None)``.

    Keras's rule: per-sample values (trailing axes averaged), each sample counted with its
    weight; weights of higher rank than one are averaged over their trailing axes first.

    Example:
        >>> m = Mean(); m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0]); m.result()  # 2.0
    """

    def __init__(self, name: str | None = "mean", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.reset_state()

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64)
            values, sw = _squeeze_or_expand(values, sw)
            if values.ndim > sw.ndim:
                values = values.mean(axis=tuple(range(sw.ndim, values.ndim)))
            try:
                sw = np.broadcast_to(sw, values.shape)
            except ValueError:
                raise ValueError(
                    f"{self.name}: sample_weight of shape {np.shape(sample_weight)} does not "
                    f"broadcast to the values of shape {values.shape}."
                ) from None
            values = values * sw
            if sw.ndim > 1:
                sw = sw.mean(axis=tuple(range(1, sw.ndim)))
        else:
            sw = None
        if values.ndim > 1:
            values = values.mean(axis=tuple(range(1, values.ndim)))
        self.total += float(values.sum())
        if sw is not None:
            self.count += float(np.sum(sw))
        else:
            self.count += values.shape[0] if values.ndim >= 1 else 1

    def result(self) -> float:
        return float(_divide_no_nan(self.total, self.count))


class MeanMetricWrapper(Mean):
    """Averages a per-sample function ``fn(y_true, y_pred, **kwargs)`` over everything seen.

    Args:
        fn: the per-sample (or per-element) metric function.
        name: the metric's name.
        **kwargs: passed to ``fn``.
    """

    def __init__(self, fn: Any, name: str | None = None, dtype: Any = None, **kwargs: Any):
        super().__init__(name=name, dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(  # type: ignore[override]
        self, y_true: Any, y_pred: Any, sample_weight: Any = None, mask: Any = None
    ) -> None:
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        super().update_state(values, sample_weight=_apply_mask(sample_weight, mask))


def _mse(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    return np.mean((y_pred - y_true) ** 2, axis=-1)


def _mae(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    return np.mean(np.abs(y_pred - y_true), axis=-1)


def _mape(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    return 100.0 * np.mean(np.abs(y_true - y_pred) / np.maximum(np.abs(y_true), EPSILON), -1)


def _msle(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    diff = np.log(np.maximum(y_pred, EPSILON) + 1.0) - np.log(np.maximum(y_true, EPSILON) + 1.0)
    return np.mean(diff**2, axis=-1)


def _accuracy(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    return (y_true == y_pred).astype(np.float64)


def _binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true, y_pred = _pair(y_true, y_pred)
    return (y_true == (y_pred > threshold)).astype(np.float64)


def _categorical_accuracy(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    return (np.argmax(np.asarray(y_true), -1) == np.argmax(y_pred, -1)).astype(np.float64)


def _sparse_categorical_accuracy(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    labels = np.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    matches = (labels == np.argmax(y_pred, -1)).astype(np.float64)
    if matches.ndim > 1 and matches.shape[-1] == 1:
        matches = matches[..., 0]
    return matches


class MeanSquaredError(MeanMetricWrapper):
    """Mean of ``mean((y_pred - y_true)**2, axis=-1)`` over all samples seen.

    Args:
        name: default ``"mean_squared_error"``.
    """

    def __init__(self, name: str = "mean_squared_error", dtype: Any = None) -> None:
        super().__init__(_mse, name=name, dtype=dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    """Mean of ``mean(abs(y_pred - y_true), axis=-1)`` over all samples seen.

    Args:
        name: default ``"mean_absolute_error"``.
    """

    def __init__(self, name: str = "mean_absolute_error", dtype: Any = None) -> None:
        super().__init__(_mae, name=name, dtype=dtype)


class MeanAbsolutePercentageError(MeanMetricWrapper):
    """Mean of ``100 * mean(abs((y_true - y_pred) / max(abs(y_true), 1e-7)), axis=-1)``.

    Args:
        name: default ``"mean_absolute_percentage_error"``.
    """

    def __init__(self, name: str = "mean_absolute_percentage_error", dtype: Any = None) -> None:
        super().__init__(_mape, name=name, dtype=dtype)


class MeanSquaredLogarithmicError(MeanMetricWrapper):
    """Mean of the squared log error ``(log(1 + y_pred) - log(1 + y_true))**2`` (inputs >= 1e-7).

    Args:
        name: default ``"mean_squared_logarithmic_error"``.
    """

    def __init__(self, name: str = "mean_squared_logarithmic_error", dtype: Any = None) -> None:
        super().__init__(_msle, name=name, dtype=dtype)


class RootMeanSquaredError(Mean):
    """``sqrt(mean((y_pred - y_true)**2))`` over all entries seen (weighted per sample).

    As in Keras, the mask argument is ignored (fold it into ``sample_weight`` if needed).

    Args:
        name: default ``"root_mean_squared_error"``.

    Example:
        >>> m = RootMeanSquaredError(); m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
        >>> m.result()   # 0.5
    """

    def __init__(self, name: str = "root_mean_squared_error", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def update_state(  # type: ignore[override]
        self, y_true: Any, y_pred: Any, sample_weight: Any = None, mask: Any = None
    ) -> None:
        y_true, y_pred = _pair(y_true, y_pred)
        super().update_state((y_pred - y_true) ** 2, sample_weight=sample_weight)

    def result(self) -> float:
        return math.sqrt(super().result())


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly.

    Args:
        name: default ``"accuracy"``.
    """

    _direction = "up"

    def __init__(self, name: str = "accuracy", dtype: Any = None) -> None:
        super().__init__(_accuracy, name=name, dtype=dtype)


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` equals the 0/1 labels.

    Args:
        name: default ``"binary_accuracy"``.
        threshold: default 0.5.
    """

    _direction = "up"

    def __init__(
        self, name: str = "binary_accuracy", dtype: Any = None, threshold: float = 0.5
    ) -> None:
        super().__init__(_binary_accuracy, name=name, dtype=dtype, threshold=float(threshold))
        self.threshold = float(threshold)

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the arg-max of one-hot labels equals the arg-max of the predictions.

    Args:
        name: default ``"categorical_accuracy"``.
    """

    _direction = "up"

    def __init__(self, name: str = "categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(_categorical_accuracy, name=name, dtype=dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often integer labels equal the arg-max of the predictions.

    Args:
        name: default ``"sparse_categorical_accuracy"``.
    """

    _direction = "up"

    def __init__(self, name: str = "sparse_categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(_sparse_categorical_accuracy, name=name, dtype=dtype)


# ---- confusion-matrix metrics ------------------------------------------------------------------
NEG_INF = -1e10


def _thresholds_list(thresholds: Any, default: float, owner: str) -> list[float]:
    if thresholds is None:
        return [default]
    values = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds]
    bad = [t for t in values if t is None or not 0.0 <= float(t) <= 1.0]
    if bad or not values:
        raise ValueError(f"{owner}: threshold values must be in [0, 1], got {thresholds!r}.")
    return [float(t) for t in values]


def _evenly_distributed(thresholds: np.ndarray) -> bool:
    n = len(thresholds)
    if n < 3:
        return False
    even = np.arange(n, dtype=np.float32) / (n - 1)
    return bool(np.allclose(thresholds, even, atol=EPSILON))


def _confusion_update(
    state: dict,
    y_true: Any,
    y_pred: Any,
    thresholds: np.ndarray,
    evenly: bool,
    top_k: int | None = None,
    class_id: int | None = None,
    sample_weight: Any = None,
    multi_label: bool = False,
    label_weights: np.ndarray | None = None,
) -> None:
    """Adds this batch's tp/fp/tn/fn per threshold to ``state`` (Keras's
    ``update_confusion_matrix_variables``, with its evenly-spaced-thresholds bucket path)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_pred, y_true = _squeeze_or_expand(y_pred, y_true)
    if y_true.shape != y_pred.shape:
        try:
            y_true = np.broadcast_to(y_true, y_pred.shape)
        except ValueError:
            raise ValueError(
                f"y_true of shape {y_true.shape} does not match y_pred of shape {y_pred.shape}."
            ) from None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64)[..., None]
        _, sw = _squeeze_or_expand(y_true, sw, expand_rank_1=False)
        while sw.ndim < y_pred.ndim:
            sw = sw[..., None]
        sample_weight = sw
    if top_k is not None:  # keep the k largest predictions per sample, the rest -1e10
        order = np.argsort(-y_pred, axis=-1, kind="stable")[..., :top_k]
        keep = np.zeros(y_pred.shape, bool)
        np.put_along_axis(keep, order, True, axis=-1)
        y_pred = np.where(keep, y_pred, NEG_INF)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError(
                "When class_id is provided, y_pred must be a 2D array with shape "
                f"(num_samples, num_classes), found shape: {y_pred.shape}"
            )
        y_true = y_true[..., class_id, None]
        y_pred = y_pred[..., class_id, None]
        if sample_weight is not None and sample_weight.shape[-1] != 1:
            sample_weight = sample_weight[..., class_id, None]
    weights = np.ones(y_pred.shape)
    if sample_weight is not None:
        weights = weights * np.broadcast_to(sample_weight, y_pred.shape)
    if label_weights is not None and not multi_label:
        weights = weights * np.broadcast_to(label_weights, y_pred.shape)
    labels = y_true.astype(bool)
    if multi_label:
        labels2, preds2, w2 = labels, y_pred, weights  # (N, L)
    else:
        labels2, preds2, w2 = labels.reshape(-1, 1), y_pred.reshape(-1, 1), weights.reshape(-1, 1)
    n_thr = len(thresholds)
    if evenly:
        with_eps = thresholds[0] < 0.0 or thresholds[-1] > 1.0
        p32 = np.clip(preds2, 0.0, 1.0).astype(np.float32)
        buckets = np.ceil(p32 * np.float32(n_thr - 1)) - 1
        if with_eps:
            buckets = np.maximum(buckets, 0)
        buckets = buckets.astype(np.int64)
        true_w = labels2 * w2
        false_w = (~labels2) * w2
        cols = np.broadcast_to(np.arange(preds2.shape[1]), preds2.shape)
        tp_b = np.zeros((n_thr, preds2.shape[1]))
        fp_b = np.zeros((n_thr, preds2.shape[1]))
        valid = (
            buckets >= 0
        )  # a bucket of -1 (prediction 0 without epsilon thresholds) counts nowhere
        np.add.at(tp_b, (buckets[valid], cols[valid]), true_w[valid])
        np.add.at(fp_b, (buckets[valid], cols[valid]), false_w[valid])
        tp = np.cumsum(tp_b[::-1], axis=0)[::-1]
        fp = np.cumsum(fp_b[::-1], axis=0)[::-1]
        fn = true_w.sum(axis=0) - tp
        tn = false_w.sum(axis=0) - fp
    else:
        pos = preds2[None, :, :] > thresholds[:, None, None]  # (thr, N, L)
        lab = labels2[None]
        tp = np.sum((lab & pos) * w2, axis=1)
        fp = np.sum((~lab & pos) * w2, axis=1)
        fn = np.sum((lab & ~pos) * w2, axis=1)
        tn = np.sum((~lab & ~pos) * w2, axis=1)
    if not multi_label:
        tp, fp, tn, fn = tp[:, 0], fp[:, 0], tn[:, 0], fn[:, 0]
    for key, value in (("tp", tp), ("fp", fp), ("tn", tn), ("fn", fn)):
        if key in state:
            state[key] += value


class _ThresholdMetric(Metric):
    """Shared state of Precision and Recall: counts per threshold."""

    _direction = "up"
    _counts: tuple = ()

    def __init__(
        self,
        thresholds: float | list | None = None,
        top_k: int | None = None,
        class_id: int | None = None,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        owner = type(self).__name__
        self.init_thresholds = thresholds
        for arg, value in (("top_k", top_k), ("class_id", class_id)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0
            ):
                raise ValueError(
                    f"{owner}: {arg} must be a non-negative int or None, got {value!r}."
                )
        if top_k is not None and top_k == 0:
            raise ValueError(f"{owner}: top_k must be positive, got 0.")
        self.top_k = top_k
        self.class_id = class_id
        default = 0.5 if top_k is None else NEG_INF
        self.thresholds = _thresholds_list(thresholds, default, owner)
        self._thresholds = np.asarray(self.thresholds, dtype=np.float64)
        self._evenly = _evenly_distributed(self._thresholds)
        self.reset_state()

    def reset_state(self) -> None:
        self._state = {k: np.zeros(len(self.thresholds)) for k in self._counts}

    def update_state(
        self, y_true: Any, y_pred: Any, sample_weight: Any = None, mask: Any = None
    ) -> None:
        _confusion_update(
            self._state,
            y_true,
            y_pred,
            self._thresholds,
            self._evenly,
            top_k=self.top_k,
            class_id=self.class_id,
            sample_weight=sample_weight,
        )

    @property
    def true_positives(self) -> np.ndarray:
        return self._state["tp"]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "thresholds": self.init_thresholds,
            "top_k": self.top_k,
            "class_id": self.class_id,
        }


class Precision(_ThresholdMetric):
    """``tp / (tp + fp)`` over everything seen, predictions counted positive above a threshold.

    Args:
        thresholds: default None (0.5; with ``top_k``, no threshold); a float or a list of
            floats in [0, 1] (the result is then one value per threshold).
        top_k: default None; only the k largest predictions per sample can count as positive.
        class_id: default None; the class (last-axis index) to compute it for.
        name: default ``"precision"``.

    Example:
        >>> m = Precision(); m.update_state([0, 1, 1, 1], [1, 0, 1, 1]); m.result()   # 0.6667
    """

    _counts = ("tp", "fp")

    def result(self) -> float | np.ndarray:
        value = _divide_no_nan(self._state["tp"], self._state["tp"] + self._state["fp"])
        return float(value[0]) if len(self.thresholds) == 1 else value

    @property
    def false_positives(self) -> np.ndarray:
        return self._state["fp"]


class Recall(_ThresholdMetric):
    """``tp / (tp + fn)`` over everything seen, predictions counted positive above a threshold.

    Args:
        thresholds: default None (0.5; with ``top_k``, no threshold); a float or a list of
            floats in [0, 1] (the result is then one value per threshold).
        top_k: default None; only the k largest predictions per sample can count as positive.
        class_id: default None; the class (last-axis index) to compute it for.
        name: default ``"recall"``.
    """

    _counts = ("tp", "fn")

    def result(self) -> float | np.ndarray:
        value = _divide_no_nan(self._state["tp"], self._state["tp"] + self._state["fn"])
        return float(value[0]) if len(self.thresholds) == 1 else value

    @property
    def false_negatives(self) -> np.ndarray:
        return self._state["fn"]


_CURVES = {"roc": "ROC", "pr": "PR", "prgain": "PRGAIN"}
_SUMMATIONS = ("interpolation", "minoring", "majoring")


class AUC(Metric):
    """Area under the ROC or precision-recall curve, from counts at fixed thresholds (Keras's).

    Predictions are counted positive above each of ``num_thresholds`` thresholds spread evenly
    over [0, 1] (the outer two nudged by 1e-7 to catch 0 and 1); the curve through those points is
    summed by the trapezoid rule (``"interpolation"``; for PR, Davis & Goadrich's interpolation),
    or by its lower or upper step.

    Args:
        num_thresholds: default 200, > 1.
        curve: ``"ROC"`` (default), ``"PR"`` or ``"PRGAIN"``.
        summation_method: ``"interpolation"`` (default), ``"minoring"`` or ``"majoring"``.
        name: default ``"auc"``.
        thresholds: default None; explicit thresholds in [0, 1] (then ``num_thresholds`` is
            their count + 2).
        multi_label: default False: all labels pooled into one curve; True: one curve per label
            (last axis of 2D inputs), averaged (weighted by ``label_weights`` when given).
        num_labels: with ``multi_label``, the number of labels (else taken from the first batch).
        label_weights: default None; per-label weights.
        from_logits: default False; True applies a sigmoid to ``y_pred`` first.

    Example:
        >>> m = AUC(); m.update_state([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]); m.result()   # ~0.75
    """

    _direction = "up"

    def __init__(
        self,
        num_thresholds: int = 200,
        curve: str = "ROC",
        summation_method: str = "interpolation",
        name: str | None = None,
        dtype: Any = None,
        thresholds: list | None = None,
        multi_label: bool = False,
        num_labels: int | None = None,
        label_weights: Any = None,
        from_logits: bool = False,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        if not isinstance(curve, str) or curve.lower() not in _CURVES:
            raise ValueError(f"AUC: curve must be 'ROC', 'PR' or 'PRGAIN', got {curve!r}.")
        if not isinstance(summation_method, str) or summation_method.lower() not in _SUMMATIONS:
            raise ValueError(
                f"AUC: summation_method must be one of {_SUMMATIONS}, got {summation_method!r}."
            )
        self.curve = _CURVES[curve.lower()]
        self.summation_method = summation_method.lower()
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(_thresholds_list(thresholds, 0.5, "AUC"))
            self.num_thresholds = len(inner) + 2
            self._evenly = _evenly_distributed(np.array([0.0] + inner + [1.0]))
        else:
            if (
                isinstance(num_thresholds, bool)
                or not isinstance(num_thresholds, (int, np.integer))
                or num_thresholds <= 1
            ):
                raise ValueError(
                    f"AUC: num_thresholds must be an integer > 1, got {num_thresholds!r}."
                )
            self.num_thresholds = int(num_thresholds)
            inner = [
                (i + 1) * 1.0 / (self.num_thresholds - 1) for i in range(self.num_thresholds - 2)
            ]
            self._evenly = True
        self._thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])
        self.multi_label = bool(multi_label)
        if num_labels is not None and not self.multi_label:
            raise ValueError("AUC: num_labels is needed only when multi_label is True.")
        self.num_labels = num_labels
        self.label_weights = (
            None if label_weights is None else np.asarray(label_weights, dtype=np.float64)
        )
        self._from_logits = bool(from_logits)
        self._num_labels = num_labels
        self.reset_state()

    @property
    def thresholds(self) -> list[float]:
        return [float(t) for t in self._thresholds]

    def reset_state(self) -> None:
        if self.multi_label and self._num_labels is None:
            self._state = None
            return
        shape = (
            (self.num_thresholds, self._num_labels) if self.multi_label else (self.num_thresholds,)
        )
        self._state = {k: np.zeros(shape) for k in ("tp", "fp", "tn", "fn")}

    def update_state(
        self, y_true: Any, y_pred: Any, sample_weight: Any = None, mask: Any = None
    ) -> None:
        y_pred = np.asarray(y_pred, dtype=np.float64)
        if self.multi_label:
            if y_pred.ndim != 2:
                raise ValueError(
                    f"AUC: y_pred must have rank 2 when multi_label=True, got shape {y_pred.shape}."
                )
            if self._state is None:
                self._num_labels = y_pred.shape[1]
                self.reset_state()
        if self._from_logits:
            e = np.exp(-np.abs(y_pred))
            y_pred = np.where(y_pred >= 0, 1 / (1 + e), e / (1 + e))
        _confusion_update(
            self._state,
            y_true,
            y_pred,
            self._thresholds,
            self._evenly,
            sample_weight=sample_weight,
            multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights,
        )

    def _aggregate(self, per_threshold: np.ndarray) -> float:
        if not self.multi_label:
            return float(per_threshold.sum())
        by_label = per_threshold.sum(axis=0)
        if self.label_weights is None:
            return float(by_label.mean())
        return float(
            _divide_no_nan((by_label * self.label_weights).sum(), self.label_weights.sum())
        )

    def _interpolate_pr_auc(self) -> float:
        tp, fp, fn = self._state["tp"], self._state["fp"], self._state["fn"]
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        ratio = np.where(
            (p[:-1] > 0) & (p[1:] > 0), _divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0
        )
        increment = _divide_no_nan(
            slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0)
        )
        return self._aggregate(increment)

    def result(self) -> float:
        if self._state is None:
            return 0.0
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr_auc()
        tp, fp, tn, fn = (self._state[k] for k in ("tp", "fp", "tn", "fn"))
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:
            scale = _divide_no_nan(tp + fn, tn + fp)
            recall_gain = np.where(tp == 0, 0.0, 1.0 - scale * _divide_no_nan(fn, tp))
            precision_gain = np.where(tp == 0, 1.0, 1.0 - scale * _divide_no_nan(fp, tp))
            x, y = np.maximum(recall_gain, 0.0), precision_gain
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return self._aggregate((x[:-1] - x[1:]) * heights)

    def get_config(self) -> dict:
        config = {
            **super().get_config(),
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config


# ---- lookup ----
METRIC_CLASSES: dict[str, type[Metric]] = {
    c.__name__: c
    for c in (
        Mean,
        MeanSquaredError,
        MeanAbsoluteError,
        MeanAbsolutePercentageError,
        MeanSquaredLogarithmicError,
        RootMeanSquaredError,
        Accuracy,
        BinaryAccuracy,
        CategoricalAccuracy,
        SparseCategoricalAccuracy,
        Precision,
        Recall,
        AUC,
    )
}
_BY_NAME: dict[str, type[Metric]] = {
    **METRIC_CLASSES,
    **{_snake(name): cls for name, cls in METRIC_CLASSES.items()},
    "mse": MeanSquaredError,
    "MSE": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "MAE": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError,
    "MAPE": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError,
    "MSLE": MeanSquaredLogarithmicError,
}


def get(identifier: Any, y_true: Any = None, y_pred: Any = None) -> Metric:
    """A metric object for ``compile(metrics=[...])``-style identifiers, as Keras's compile does.

    Strings name Keras's classes (``"AUC"``, ``"RootMeanSquaredError"``), their snake-case forms
    (``"auc"``, ``"root_mean_squared_error"``, ``"precision"``) or aliases (``"mae"``,
    ``"mse"``, ``"mape"``, ``"msle"``); the object is named by the string, as in Keras.
    ``"accuracy"``/``"acc"`` pick binary, sparse categorical or categorical accuracy from the
    shapes of ``y_true`` and ``y_pred`` (Keras 3's rule), so they need both. A Metric instance is
    returned as is; a Metric class is instantiated.

    Raises:
        ValueError: unknown name (valid names listed), or ``"accuracy"`` without shapes.
        TypeError: none of the accepted kinds.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if not isinstance(identifier, str):
        raise TypeError(
            f"A metric must be a string or a fastrnn.metrics.Metric, got {identifier!r}."
        )
    if identifier.lower() in ("accuracy", "acc"):
        if y_true is None or y_pred is None:
            raise ValueError(
                f"metrics.get({identifier!r}) needs y_true and y_pred to choose between binary, "
                "sparse categorical and categorical accuracy."
            )
        t_shape, p_shape = np.shape(y_true), np.shape(y_pred)
        if p_shape[-1] == 1:
            return BinaryAccuracy(name=identifier)
        if len(t_shape) < len(p_shape) or (t_shape[-1] == 1 and p_shape[-1] > 1):
            return SparseCategoricalAccuracy(name=identifier)
        return CategoricalAccuracy(name=identifier)
    cls = _BY_NAME.get(identifier)
    if cls is None:
        raise ValueError(
            f"Unknown metric {identifier!r}. Valid names: accuracy, acc, {', '.join(_BY_NAME)}."
        )
    if cls is Mean:
        return Mean(name=identifier)
    return cls(name=identifier)


def direction(name: str) -> str | None:
    """``"up"`` or ``"down"`` for a logged metric name (``val_`` prefix allowed), None if unknown.

    Used by callbacks with ``mode="auto"``: losses go down, accuracies, AUC, precision and
    recall go up.
    """
    base = name.removeprefix("val_")
    if base == "loss" or base.endswith("_loss"):
        return "down"
    if base in ("accuracy", "acc") or base.endswith("accuracy"):
        return "up"
    cls = _BY_NAME.get(base)
    if cls is None:
        stem = base.rsplit("_", 1)
        if len(stem) == 2 and stem[1].isdigit():  # "auc_1", "precision_2"
            cls = _BY_NAME.get(stem[0])
    if cls is None:
        return "down" if base in _FUNCTIONS else None
    return cls._direction


def serialize(metric: Metric) -> dict:
    """``{"class_name": ..., "config": ...}`` (JSON-compatible)."""
    return {"class_name": type(metric).__name__, "config": metric.get_config()}


def deserialize(spec: dict) -> Metric:
    """Rebuilds a metric from ``serialize``'s output.

    Raises:
        ValueError: unknown class name or malformed spec.
    """
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"A metric spec needs 'class_name' and 'config', got {spec!r}.")
    cls = METRIC_CLASSES.get(spec["class_name"])
    if cls is None:
        raise ValueError(f"Unknown metric class {spec['class_name']!r}.")
    return cls.from_config(dict(spec.get("config") or {}))
