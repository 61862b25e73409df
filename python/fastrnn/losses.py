"""Losses with Keras 3's formulas, reductions, masks and sample weights, plus their gradients.

Each loss computes per-sample values (the last axis reduced) and reduces them as Keras's
``reduction`` says. Two kinds of weights combine as in Keras's ``Loss.__call__``:

* ``weights`` (third positional argument): the output *mask* of a masked sequence model (0/1,
  shape ``y_pred.shape[:-1]``). With the default ``"sum_over_batch_size"`` reduction the loss is
  the mean over the kept entries, ``sum(mask * values) / sum(mask)``; non-binary values act as
  weights of a weighted mean (``fastrnn.models`` passes the mask here).
* ``sample_weight=`` (keyword): Keras's sample weights, shape (B,), (B, T) ... With the default
  reduction the loss is ``sum(sample_weight * values) / N`` (N the number of values, or the
  number of unmasked values when a mask is given too), not a weighted mean: Keras's rule.

Reductions (``reduction=``): ``"sum_over_batch_size"`` (default) and its alias ``"mean"`` as
above; ``"sum"``; ``"mean_with_sample_weight"`` (divide by the sum of the combined weights);
``"none"`` / None (the weighted per-sample values, an array). ``gradient`` differentiates what
``__call__`` returns (for ``"none"``: its sum).

Unlike Keras 3, which raises, a ``sample_weight`` of lower rank than the per-sample values (e.g.
(B,) weights for (B, T) sequence outputs) is broadcast along the trailing axes (Keras 2's rule).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EPSILON = 1e-7
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _check_reduction(reduction: Any) -> str | None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    return reduction


def _broadcast_weights(w: Any, shape: tuple, argument: str, owner: str) -> np.ndarray | None:
    """``w`` as float64 of ``shape``: a trailing size-1 axis is dropped, missing trailing axes
    are added (per-sample weights for per-step values)."""
    if w is None:
        return None
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == len(shape) + 1 and w.shape[-1] == 1:
        w = w[..., 0]
    while w.ndim < len(shape):
        w = w[..., None]
    try:
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"{owner}: {argument} of shape {np.shape(w)} does not broadcast to the per-sample "
            f"loss values of shape {shape}."
        ) from None


class Loss:
    """Base class: subclasses implement ``values`` and ``values_grad``.

    Args:
        name: optional name (each class has Keras's default).
        reduction: ``"sum_over_batch_size"`` (default), ``"sum"``, ``"mean"``,
            ``"mean_with_sample_weight"``, ``"none"`` or None (see the module docstring).
        dtype: accepted for Keras compatibility; losses are computed in float64.

    Call arguments:
        y_true: targets, y_pred's shape (or without its last axis when it is 1).
        y_pred: predictions (B, ...) with the class/feature axis last.
        weights: None or the output mask, shape ``y_pred.shape[:-1]``.
        sample_weight: None or Keras-style sample weights (keyword only).

    Returns:
        A float (an array of the weighted per-sample values for reduction ``"none"``).
        ``gradient`` returns dL/dy_pred, float64 of y_pred's shape. Inputs are not modified.

    Raises:
        ValueError: an unknown reduction, or targets/weights whose shapes do not fit y_pred.
    """

    name = "loss"

    def __init__(
        self, name: str | None = None, reduction: str | None = "sum_over_batch_size", dtype=None
    ) -> None:
        if name is not None:
            self.name = name
        self.reduction = _check_reduction(reduction)
        self.dtype = dtype

    def values(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def values_grad(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """d values / d y_pred, element-wise along the last axis (shape of y_pred)."""
        raise NotImplementedError

    def _values_mask(self, y_true: Any, y_pred: np.ndarray) -> np.ndarray | None:
        """A mask the loss itself puts on its values (SparseCategoricalCrossentropy's
        ``ignore_class``); None for most losses."""
        return None

    def _prepare(self, y_true: Any, y_pred: np.ndarray) -> np.ndarray:
        y_true = np.asarray(y_true, dtype=np.float64)
        if y_true.shape != y_pred.shape:
            if y_true.shape == y_pred.shape[:-1]:
                y_true = y_true[..., None]
            if y_true.size != y_pred.size:
                raise ValueError(
                    f"{type(self).__name__}: y_true of shape {y_true.shape} does not match "
                    f"y_pred of shape {y_pred.shape}."
                )
            y_true = y_true.reshape(y_pred.shape)
        return y_true

    def _coefficients(
        self, shape: tuple, y_true: Any, y_pred: np.ndarray, weights: Any, sample_weight: Any
    ) -> np.ndarray:
        """c with ``loss = sum(c * values)`` (the weights of ``"none"``), Keras's reduction."""
        owner = type(self).__name__
        mask = _broadcast_weights(weights, shape, "weights (the mask)", owner)
        own = self._values_mask(y_true, y_pred)
        if own is not None:
            mask = own if mask is None else mask * own
        sw = _broadcast_weights(sample_weight, shape, "sample_weight", owner)
        n = math.prod(shape)
        ones = np.ones(shape)
        if self.reduction in (None, "none", "sum"):
            c = ones
            for w in (mask, sw):
                c = c if w is None else c * w
            return c
        if self.reduction in ("sum_over_batch_size", "mean"):
            if mask is not None:
                total = mask.sum()
                c = mask / total if total != 0 else np.zeros(shape)
            else:
                c = ones / max(n, 1)
            return c if sw is None else c * sw
        # mean_with_sample_weight: divide by the sum of the combined weights
        w = None
        for part in (mask, sw):
            if part is not None:
                w = part if w is None else w * part
        if w is None:
            return ones / max(n, 1)
        total = w.sum()
        return w / total if total != 0 else np.zeros(shape)

    def __call__(
        self, y_true: Any, y_pred: Any, weights: Any = None, *, sample_weight: Any = None
    ) -> float | np.ndarray:
        y_pred = np.asarray(y_pred, dtype=np.float64)
        values = self.values(self._prepare(y_true, y_pred), y_pred)
        c = self._coefficients(values.shape, y_true, y_pred, weights, sample_weight)
        if self.reduction in (None, "none"):
            return values * c
        return float((values * c).sum())

    def gradient(
        self, y_true: Any, y_pred: Any, weights: Any = None, *, sample_weight: Any = None
    ) -> np.ndarray:
        """dL/dy_pred of the reduced loss (float64, y_pred's shape; for ``"none"`` of the sum)."""
        y_pred = np.asarray(y_pred, dtype=np.float64)
        prepared = self._prepare(y_true, y_pred)
        c = self._coefficients(y_pred.shape[:-1], y_true, y_pred, weights, sample_weight)
        return self.values_grad(prepared, y_pred) * c[..., None]

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict) -> Loss:
        return cls(**config)


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true)**2, axis=-1)``, reduced over the batch.

    Args:
        reduction: default ``"sum_over_batch_size"``.
        name: default ``"mean_squared_error"``.

    Example:
        >>> MeanSquaredError()(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]]))   # 0.5
    """

    name = "mean_squared_error"

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "mean_squared_error",
        dtype=None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def values(self, y_true, y_pred):
        return np.mean((y_pred - y_true) ** 2, axis=-1)

    def values_grad(self, y_true, y_pred):
        return 2.0 * (y_pred - y_true) / y_pred.shape[-1]


class MeanAbsoluteError(Loss):
    """``mean(abs(y_pred - y_true), axis=-1)``, reduced over the batch.

    Args:
        reduction: default ``"sum_over_batch_size"``.
        name: default ``"mean_absolute_error"``.
    """

    name = "mean_absolute_error"

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "mean_absolute_error",
        dtype=None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def values(self, y_true, y_pred):
        return np.mean(np.abs(y_pred - y_true), axis=-1)

    def values_grad(self, y_true, y_pred):
        return np.sign(y_pred - y_true) / y_pred.shape[-1]


class MeanAbsolutePercentageError(Loss):
    """``100 * mean(abs((y_true - y_pred) / max(abs(y_true), 1e-7)), axis=-1)`` (Keras's MAPE).

    Args:
        reduction: default ``"sum_over_batch_size"``.
        name: default ``"mean_absolute_percentage_error"``.

    Example:
        >>> MeanAbsolutePercentageError()([[2.0, 4.0]], [[1.0, 5.0]])   # 37.5
    """

    name = "mean_absolute_percentage_error"

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "mean_absolute_percentage_error",
        dtype=None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def values(self, y_true, y_pred):
        return 100.0 * np.mean(np.abs(y_true - y_pred) / np.maximum(np.abs(y_true), EPSILON), -1)

    def values_grad(self, y_true, y_pred):
        return (
            100.0
            * np.sign(y_pred - y_true)
            / np.maximum(np.abs(y_true), EPSILON)
            / (y_pred.shape[-1])
        )


class MeanSquaredLogarithmicError(Loss):
    """``mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1))**2, axis=-1)``, eps=1e-7.

    Args:
        reduction: default ``"sum_over_batch_size"``.
        name: default ``"mean_squared_logarithmic_error"``.
    """

    name = "mean_squared_logarithmic_error"

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "mean_squared_logarithmic_error",
        dtype=None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def values(self, y_true, y_pred):
        diff = np.log(np.maximum(y_pred, EPSILON) + 1.0) - np.log(np.maximum(y_true, EPSILON) + 1)
        return np.mean(diff**2, axis=-1)

    def values_grad(self, y_true, y_pred):
        p = np.maximum(y_pred, EPSILON)
        diff = np.log(p + 1.0) - np.log(np.maximum(y_true, EPSILON) + 1.0)
        return np.where(y_pred > EPSILON, 2.0 * diff / (p + 1.0), 0.0) / y_pred.shape[-1]


class Huber(Loss):
    """Huber loss: quadratic for small errors, linear for large ones.

    ``mean(where(|e| <= delta, 0.5 * e**2, delta * |e| - 0.5 * delta**2), axis=-1)`` with
    ``e = y_pred - y_true``.

    Args:
        delta: default 1.0, positive: where the loss turns from quadratic to linear.
        reduction: default ``"sum_over_batch_size"``.
        name: default ``"huber_loss"``.

    Raises:
        ValueError: ``delta`` not a positive number.

    Example:
        >>> model.compile(optimizer="adam", loss=Huber(delta=0.5))
    """

    name = "huber_loss"

    def __init__(
        self,
        delta: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "huber_loss",
        dtype=None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        try:
            self.delta = float(delta)
        except (TypeError, ValueError):
            raise ValueError(f"Huber: delta must be a positive number, got {delta!r}.") from None
        if not self.delta > 0:
            raise ValueError(f"Huber: delta must be a positive number, got {delta!r}.")

    def values(self, y_true, y_pred):
        e = np.abs(y_pred - y_true)
        d = self.delta
        return np.mean(np.where(e <= d, 0.5 * e * e, d * e - 0.5 * d * d), axis=-1)

    def values_grad(self, y_true, y_pred):
        e = y_pred - y_true
        return np.clip(e, -self.delta, self.delta) / y_pred.shape[-1]

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class LogCosh(Loss):
    """``mean(log(cosh(y_pred - y_true)), axis=-1)``, computed without overflow.

    Args:
        reduction: default ``"sum_over_batch_size"``.
        name: default ``"log_cosh"``.
    """

    name = "log_cosh"

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "log_cosh",
        dtype=None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def values(self, y_true, y_pred):
        e = y_pred - y_true
        # log(cosh(e)) = e + softplus(-2e) - log(2), Keras's overflow-free form
        return np.mean(e + np.logaddexp(0.0, -2.0 * e) - math.log(2.0), axis=-1)

    def values_grad(self, y_true, y_pred):
        return np.tanh(y_pred - y_true) / y_pred.shape[-1]


class KLDivergence(Loss):
    """Kullback-Leibler divergence ``sum(y_true * log(y_true / y_pred), axis=-1)``.

    Both arguments are clipped to [1e-7, 1] first, as in Keras.

    Args:
        reduction: default ``"sum_over_batch_size"``.
        name: default ``"kl_divergence"``.
    """

    name = "kl_divergence"

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "kl_divergence",
        dtype=None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def values(self, y_true, y_pred):
        t = np.clip(y_true, EPSILON, 1.0)
        p = np.clip(y_pred, EPSILON, 1.0)
        return np.sum(t * np.log(t / p), axis=-1)

    def values_grad(self, y_true, y_pred):
        t = np.clip(y_true, EPSILON, 1.0)
        p = np.clip(y_pred, EPSILON, 1.0)
        inside = (y_pred >= EPSILON) & (y_pred <= 1.0)
        return np.where(inside, -t / p, 0.0)


def _check_axis(axis: Any, owner: str) -> int:
    if axis != -1:
        raise ValueError(f"{owner}: only axis=-1 (the last axis) is supported, got {axis!r}.")
    return -1


def _check_smoothing(value: Any, owner: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: label_smoothing must be in [0, 1], got {value!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: label_smoothing must be in [0, 1], got {value!r}.")
    return value


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7] as Keras.

    Args:
        from_logits: default False; True when ``y_pred`` are logits (numerically stable form).
        label_smoothing: default 0; in [0, 1], targets become ``y * (1 - s) + 0.5 * s``.
        axis: only -1 (the default) is supported.
        reduction: default ``"sum_over_batch_size"``.
        name: default ``"binary_crossentropy"``.
    """

    name = "binary_crossentropy"

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "binary_crossentropy",
        dtype=None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, "BinaryCrossentropy")
        self.axis = _check_axis(axis, "BinaryCrossentropy")

    def _prepare(self, y_true, y_pred):
        y_true = super()._prepare(y_true, y_pred)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return y_true

    def values(self, y_true, y_pred):
        if self.from_logits:
            z = y_pred
            return np.mean(np.maximum(z, 0) - z * y_true + np.log1p(np.exp(-np.abs(z))), axis=-1)
        p = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return np.mean(-(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)), axis=-1)

    def values_grad(self, y_true, y_pred):
        n = y_pred.shape[-1]
        if self.from_logits:
            return (_sigmoid(y_pred) - y_true) / n
        inside = (y_pred > EPSILON) & (y_pred < 1 - EPSILON)
        p = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return np.where(inside, (p - y_true) / (p * (1 - p)), 0.0) / n

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


class CategoricalCrossentropy(Loss):
    """Categorical cross-entropy on one-hot targets (probabilities renormalised and clipped).

    Args:
        from_logits: default False; True when ``y_pred`` are logits.
        label_smoothing: default 0; in [0, 1], targets become ``y * (1 - s) + s / classes``.
        axis: only -1 (the default) is supported.
        reduction: default ``"sum_over_batch_size"``.
        name: default ``"categorical_crossentropy"``.
    """

    name = "categorical_crossentropy"

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "categorical_crossentropy",
        dtype=None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, type(self).__name__)
        self.axis = _check_axis(axis, type(self).__name__)

    def _prepare(self, y_true, y_pred):
        y_true = super()._prepare(y_true, y_pred)
        if self.label_smoothing:
            s = self.label_smoothing
            y_true = y_true * (1.0 - s) + s / y_pred.shape[-1]
        return y_true

    def values(self, y_true, y_pred):
        if self.from_logits:
            return -(y_true * _log_softmax(y_pred)).sum(axis=-1)
        q = y_pred / y_pred.sum(axis=-1, keepdims=True)
        return -(y_true * np.log(np.clip(q, EPSILON, 1 - EPSILON))).sum(axis=-1)

    def values_grad(self, y_true, y_pred):
        total = y_true.sum(axis=-1, keepdims=True)
        if self.from_logits:
            return np.exp(_log_softmax(y_pred)) * total - y_true
        s = y_pred.sum(axis=-1, keepdims=True)
        q = y_pred / s
        inside = (q > EPSILON) & (q < 1 - EPSILON)
        # L = -sum_k y_k log q_k, q = p / s: dL/dp_j = (dL/dq_j - sum_k dL/dq_k q_k) / s
        d_q = np.where(inside, -y_true / np.where(inside, q, 1.0), 0.0)
        return (d_q - (d_q * q).sum(axis=-1, keepdims=True)) / s

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy with integer class targets of shape ``y_pred.shape[:-1]``.

    Args:
        from_logits: default False; True when ``y_pred`` are logits.
        ignore_class: default None; an integer label (e.g. the padding label) whose entries
            contribute no loss and, as Keras does, are left out of the mean like masked entries.
        reduction: default ``"sum_over_batch_size"``.
        axis: only -1 (the default) is supported.
        name: default ``"sparse_categorical_crossentropy"``.

    Raises:
        ValueError: labels outside [0, classes) other than ``ignore_class``, or targets of the
            wrong shape.
    """

    name = "sparse_categorical_crossentropy"

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        axis: int = -1,
        name: str | None = "sparse_categorical_crossentropy",
        dtype=None,
    ) -> None:
        super().__init__(
            from_logits=from_logits, axis=axis, reduction=reduction, name=name, dtype=dtype
        )
        if ignore_class is not None and (
            isinstance(ignore_class, bool) or not isinstance(ignore_class, (int, np.integer))
        ):
            raise ValueError(
                f"SparseCategoricalCrossentropy: ignore_class must be an int or None, got "
                f"{ignore_class!r}."
            )
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def _labels(self, y_true: Any, y_pred: np.ndarray) -> np.ndarray:
        labels = np.asarray(y_true)
        if labels.shape == y_pred.shape[:-1] + (1,):
            labels = labels[..., 0]
        if labels.shape != y_pred.shape[:-1]:
            raise ValueError(
                f"{type(self).__name__}: y_true of shape {labels.shape} must have shape "
                f"{y_pred.shape[:-1]} (integer labels for y_pred {y_pred.shape})."
            )
        return labels.astype(np.int64)

    def _values_mask(self, y_true, y_pred):
        if self.ignore_class is None:
            return None
        return (self._labels(y_true, y_pred) != self.ignore_class).astype(np.float64)

    def _prepare(self, y_true, y_pred):
        labels = self._labels(y_true, y_pred)
        if self.ignore_class is not None:
            labels = np.where(labels == self.ignore_class, 0, labels)
        if labels.size and (labels.min() < 0 or labels.max() >= y_pred.shape[-1]):
            raise ValueError(
                f"{type(self).__name__}: labels must lie in [0, {y_pred.shape[-1]}), got "
                f"[{labels.min()}, {labels.max()}]."
            )
        return np.eye(y_pred.shape[-1])[labels]

    def get_config(self):
        config = Loss.get_config(self)
        return {**config, "from_logits": self.from_logits, "ignore_class": self.ignore_class}


# String identifiers Keras accepts: function names, their short aliases and class names.
_ALIASES: dict[str, type[Loss]] = {
    "mse": MeanSquaredError,
    "MSE": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "MAE": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError,
    "MAPE": MeanAbsolutePercentageError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError,
    "MSLE": MeanSquaredLogarithmicError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "huber": Huber,
    "log_cosh": LogCosh,
    "kld": KLDivergence,
    "KLD": KLDivergence,
    "kl_divergence": KLDivergence,
    "bce": BinaryCrossentropy,
    "BCE": BinaryCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_CLASSES: dict[str, type[Loss]] = {c.__name__: c for c in set(_ALIASES.values())}
_ALIASES.update(_CLASSES)


def get(identifier: str | dict | Loss | type) -> Loss:
    """Returns a Loss for a name, a ``serialize`` dict, a Loss class, or passes a Loss through.

    Names are Keras's: function names (``"huber"``, ``"log_cosh"``, ``"kl_divergence"`` ...),
    aliases (``"mse"``, ``"mae"``, ``"mape"``, ``"msle"``, ``"kld"``, ``"bce"``, upper-case
    too) and class names (``"Huber"``, ``"LogCosh"`` ...).

    Raises:
        ValueError: unknown name (valid names listed).
        TypeError: none of the accepted kinds.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier not in _ALIASES:
            raise ValueError(f"Unknown loss {identifier!r}. Valid names: {', '.join(_ALIASES)}.")
        return _ALIASES[identifier]()
    raise TypeError(f"loss must be a string or a fastrnn.losses.Loss, got {identifier!r}.")


def serialize(loss: Loss) -> dict:
    """``{"class_name": ..., "config": ...}`` (JSON-compatible)."""
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(spec: dict) -> Loss:
    """Rebuilds a loss from ``serialize``'s output.

    Raises:
        ValueError: unknown class name or malformed spec.
    """
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"A loss spec needs 'class_name' and 'config', got {spec!r}.")
    cls = _CLASSES.get(spec.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown loss class {spec.get('class_name')!r}.")
    return cls.from_config(dict(spec.get("config") or {}))
