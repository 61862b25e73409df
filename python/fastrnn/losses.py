"""Losses with Keras's formulas and ``sum_over_batch_size`` reduction, plus their gradients.

Each loss computes per-sample values (the last axis reduced) and reduces them to the mean over
all remaining entries; an optional 0/1 ``weights`` array (the output mask) turns that into the
mean over the kept entries, as Keras does with masked outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPSILON = 1e-7


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class Loss:
    """Base class: subclasses implement ``values`` and ``values_grad``.

    Call arguments:
        y_true: targets.
        y_pred: predictions (B, ...) with the class/feature axis last.
        weights: None or per-sample weights of shape ``y_pred.shape[:-1]``.

    Returns:
        A float, the reduced loss.
    """

    name = "loss"

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name

    def values(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def values_grad(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """d values / d y_pred, element-wise along the last axis (shape of y_pred)."""
        raise NotImplementedError

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

    @staticmethod
    def _scale(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        if weights is None:
            return np.full(values.shape, 1.0 / max(values.size, 1))
        weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), values.shape)
        return weights / max(weights.sum(), 1e-12)

    def __call__(self, y_true: Any, y_pred: Any, weights: Any = None) -> float:
        y_pred = np.asarray(y_pred, dtype=np.float64)
        values = self.values(self._prepare(y_true, y_pred), y_pred)
        return float((values * self._scale(values, weights)).sum())

    def gradient(self, y_true: Any, y_pred: Any, weights: Any = None) -> np.ndarray:
        """dL/dy_pred of the reduced loss (float64, y_pred's shape)."""
        y_pred = np.asarray(y_pred, dtype=np.float64)
        y_true = self._prepare(y_true, y_pred)
        scale = self._scale(np.empty(y_pred.shape[:-1]), weights)
        return self.values_grad(y_true, y_pred) * scale[..., None]

    def get_config(self) -> dict:
        return {"name": self.name}


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true)**2, axis=-1)``, averaged over the batch."""

    name = "mean_squared_error"

    def values(self, y_true, y_pred):
        return np.mean((y_pred - y_true) ** 2, axis=-1)

    def values_grad(self, y_true, y_pred):
        return 2.0 * (y_pred - y_true) / y_pred.shape[-1]


class MeanAbsoluteError(Loss):
    """``mean(abs(y_pred - y_true), axis=-1)``, averaged over the batch."""

    name = "mean_absolute_error"

    def values(self, y_true, y_pred):
        return np.mean(np.abs(y_pred - y_true), axis=-1)

    def values_grad(self, y_true, y_pred):
        return np.sign(y_pred - y_true) / y_pred.shape[-1]


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7] as Keras.

    Args:
        from_logits: True when ``y_pred`` are logits (numerically stable form).
    """

    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        self.from_logits = bool(from_logits)

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
        return {**super().get_config(), "from_logits": self.from_logits}


class CategoricalCrossentropy(Loss):
    """Categorical cross-entropy on one-hot targets (probabilities renormalised and clipped).

    Args:
        from_logits: True when ``y_pred`` are logits.
    """

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        self.from_logits = bool(from_logits)

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
        return {**super().get_config(), "from_logits": self.from_logits}


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy with integer class targets of shape ``y_pred.shape[:-1]``."""

    name = "sparse_categorical_crossentropy"

    def _prepare(self, y_true, y_pred):
        labels = np.asarray(y_true)
        if labels.shape == y_pred.shape[:-1] + (1,):
            labels = labels[..., 0]
        if labels.shape != y_pred.shape[:-1]:
            raise ValueError(
                f"{type(self).__name__}: y_true of shape {labels.shape} must have shape "
                f"{y_pred.shape[:-1]} (integer labels for y_pred {y_pred.shape})."
            )
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= y_pred.shape[-1]):
            raise ValueError(
                f"{type(self).__name__}: labels must lie in [0, {y_pred.shape[-1]}), got "
                f"[{labels.min()}, {labels.max()}]."
            )
        return np.eye(y_pred.shape[-1])[labels]


_ALIASES = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_CLASSES = {c.__name__: c for c in set(_ALIASES.values())}


def get(identifier: str | Loss) -> Loss:
    """Returns a Loss for a name or passes a Loss through.

    Raises:
        ValueError: unknown name (valid names listed).
        TypeError: neither a string nor a Loss.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _ALIASES:
            raise ValueError(f"Unknown loss {identifier!r}. Valid names: {', '.join(_ALIASES)}.")
        return _ALIASES[identifier]()
    raise TypeError(f"loss must be a string or a fastrnn.losses.Loss, got {identifier!r}.")


def serialize(loss: Loss) -> dict:
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(spec: dict) -> Loss:
    cls = _CLASSES.get(spec.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown loss class {spec.get('class_name')!r}.")
    return cls(**spec["config"])
