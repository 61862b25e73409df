"""Reshaping layers: RepeatVector (encoder-decoder bridge), Flatten and Reshape.

Shapes: B batch, T time steps, F features. None of these layers has weights or supports masking:
as in Keras, a mask reaching them is dropped (with Keras's warning) and their output carries none.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastrnn.layers._checks import check_data_format, check_rank, warn_mask_dropped
from fastrnn.layers.base import Layer


class RepeatVector(Layer):
    """Repeats a 2D input ``n`` times along a new time axis: (B, F) -> (B, n, F).

    The bridge of an encoder-decoder (seq2seq) model: the encoder's last state, repeated for each
    decoder step.

    Args:
        n: positive int, the repetition factor (the decoder's number of steps).
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: (B, F).

    Returns:
        (B, n, F). ``backward(dy)`` with dy (B, n, F) returns ``dy.sum(axis=1)``.

    Raises:
        TypeError: ``n`` is not an int.
        ValueError: ``n`` not positive, or inputs not of rank 2.

    Example:
        >>> model = Sequential([LSTM(16, input_shape=(7, 3)), RepeatVector(5),
        ...                     LSTM(16, return_sequences=True), TimeDistributed(Dense(1))])
        >>> model.predict(np.zeros((2, 7, 3), np.float32)).shape   # (2, 5, 1)
    """

    def __init__(self, n: int, **kwargs: Any) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"RepeatVector: n must be an int, got {n!r}.")
        if n <= 0:
            raise ValueError(f"RepeatVector: n must be a positive integer, got {n!r}.")
        super().__init__(**kwargs)
        self.n = int(n)

    def _check_first_input(self, x: np.ndarray) -> None:
        check_rank(self, x, 2)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.n, input_shape[1])

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        warn_mask_dropped(self, mask)
        self._cache = x.shape if training else None
        return np.repeat(x[:, None, :], self.n, axis=1)

    def backward(self, dy: Any) -> np.ndarray:
        shape = self._require_cache()
        dy = self._as_grad(dy, (shape[0], self.n, shape[1]))
        self.gradients = []
        return dy.sum(axis=1)

    def get_config(self) -> dict:
        return {**super().get_config(), "n": self.n}


class Flatten(Layer):
    """Flattens every axis but the batch axis: (B, d1, ..., dk) -> (B, d1 * ... * dk).

    Args:
        data_format: ``"channels_last"`` (default, also for None) or ``"channels_first"``; with
            channels_first, inputs of rank > 2 are first transposed to channels-last so that the
            flattened order matches a channels-last model (as Keras does).
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: (B, ...) of any rank >= 1; (B,) becomes (B, 1).

    Returns:
        (B, prod of the other dimensions).

    Raises:
        ValueError: bad ``data_format``.

    Example:
        >>> Flatten()(np.zeros((2, 7, 3), np.float32)).shape   # (2, 21)
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, "Flatten")

    def _check_first_input(self, x: np.ndarray) -> None:
        if x.ndim < 1:
            raise ValueError(f"Layer {self.name!r} (Flatten) expects a batch axis, got a scalar.")

    def _check_input(self, x: np.ndarray) -> None:
        self._check_first_input(x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        rest = tuple(input_shape[1:])
        if not rest:
            return (input_shape[0], 1)
        if any(d is None for d in rest):
            return (input_shape[0], None)
        return (input_shape[0], math.prod(rest))

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        warn_mask_dropped(self, mask)
        moved = x
        if self.data_format == "channels_first" and x.ndim > 2:
            moved = np.moveaxis(x, 1, -1)
        self._cache = (x.shape, moved.shape) if training else None
        return moved.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)

    def backward(self, dy: Any) -> np.ndarray:
        shape, moved_shape = self._require_cache()
        dy = self._as_grad(dy, (shape[0], math.prod(shape[1:])))
        self.gradients = []
        dx = dy.reshape(moved_shape)
        if self.data_format == "channels_first" and len(shape) > 2:
            dx = np.moveaxis(dx, -1, 1)
        return dx

    def get_config(self) -> dict:
        return {**super().get_config(), "data_format": self.data_format}


def _resolve_target(target: tuple, sizes: tuple, owner: str) -> tuple:
    """``target`` with its -1 resolved against the non-batch input ``sizes`` (None if unknown).

    Raises:
        ValueError: the input's size cannot be reshaped to ``target``.
    """
    if any(d is None for d in sizes):
        return tuple(None if d == -1 else d for d in target)
    total = math.prod(sizes)
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if known == 0 or total % known:
            raise ValueError(
                f"{owner}: cannot reshape inputs of shape {sizes} (without the batch axis) to "
                f"target_shape {target}: {total} values do not divide into blocks of {known}."
            )
        return tuple(total // known if d == -1 else d for d in target)
    if total != known:
        raise ValueError(
            f"{owner}: cannot reshape inputs of shape {sizes} ({total} values per sample, "
            f"batch axis excluded) to target_shape {target} ({known} values)."
        )
    return target


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (the batch axis is kept).

    Args:
        target_shape: tuple of positive ints, without the batch axis; one entry may be -1 and is
            then inferred from the input's size.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: (B, ...) with ``prod(target_shape)`` values per sample.

    Returns:
        (B, *target_shape).

    Raises:
        ValueError: a bad ``target_shape`` (not ints, zero or negative entries other than a single
            -1), or inputs whose size does not fit it.

    Example:
        >>> Reshape((-1, 2))(np.zeros((4, 12), np.float32)).shape   # (4, 6, 2)
    """

    def __init__(self, target_shape: tuple, **kwargs: Any) -> None:
        if isinstance(target_shape, (int, np.integer)) and not isinstance(target_shape, bool):
            target_shape = (target_shape,)
        try:
            target = tuple(target_shape)
        except TypeError:
            raise ValueError(
                f"Reshape: target_shape must be a tuple of ints, got {target_shape!r}."
            ) from None
        if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in target):
            raise ValueError(
                f"Reshape: target_shape must be a tuple of ints, got {target_shape!r}."
            )
        target = tuple(int(d) for d in target)
        if any(d == 0 or d < -1 for d in target) or target.count(-1) > 1:
            raise ValueError(
                "Reshape: target_shape entries must be positive, with at most one -1 to infer, "
                f"got {target_shape!r}."
            )
        super().__init__(**kwargs)
        self.target_shape = target

    def _check_first_input(self, x: np.ndarray) -> None:
        if x.ndim < 1:
            raise ValueError(f"Layer {self.name!r} (Reshape) expects a batch axis, got a scalar.")

    def _check_input(self, x: np.ndarray) -> None:
        self._check_first_input(x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        owner = f"Reshape {self.name!r}"
        return (input_shape[0],) + _resolve_target(self.target_shape, input_shape[1:], owner)

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        warn_mask_dropped(self, mask)
        shape = self.compute_output_shape(x.shape)
        self._cache = x.shape if training else None
        return x.reshape(shape)

    def backward(self, dy: Any) -> np.ndarray:
        shape = self._require_cache()
        dy = self._as_grad(dy, self.compute_output_shape(shape))
        self.gradients = []
        return dy.reshape(shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "target_shape": list(self.target_shape)}
