"""Metrics for ``compile(metrics=[...])``: accuracy (kind inferred as Keras does), mae, mse.

A metric turns ``(y_true, y_pred)`` into per-sample values; the model averages them over all
samples of an epoch (so batch sizes weigh in as in Keras).
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
)


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


_FUNCTIONS = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mae": mean_absolute_error,
    "mean_absolute_error": mean_absolute_error,
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
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
