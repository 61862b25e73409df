"""Temporal pooling: GlobalAveragePooling1D, GlobalMaxPooling1D and MaxPooling1D.

Shapes: B batch, T steps, C channels; inputs are (B, T, C) (``data_format="channels_last"``,
the default) or (B, C, T) (``"channels_first"``). As in Keras 3, GlobalAveragePooling1D averages
over the unmasked steps only and its output carries no mask; GlobalMaxPooling1D and MaxPooling1D
do not support masking (a mask reaching them is dropped with Keras's warning).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastrnn.layers._checks import (
    check_bool,
    check_data_format,
    check_int_tuple1,
    check_rank,
    default_name,
    warn_mask_dropped,
)
from fastrnn.layers.base import Layer


class _GlobalPooling1D(Layer):
    """Shared arguments, shape rules and checks of the two global pooling layers."""

    def __init__(
        self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**default_name(kwargs, self._keras_name))
        owner = type(self).__name__
        self.data_format = check_data_format(data_format, owner)
        self.keepdims = check_bool(keepdims, "keepdims", owner)

    @property
    def _steps_axis(self) -> int:
        return 1 if self.data_format == "channels_last" else 2

    @property
    def _channel_axis(self) -> int:
        return 2 if self.data_format == "channels_last" else 1

    def _check_first_input(self, x: np.ndarray) -> None:
        check_rank(self, x, 3)

    def _check_input(self, x: np.ndarray) -> None:
        check_rank(self, x, 3)
        want = self.input_shape[self._channel_axis] if self.input_shape else None
        if want is not None and x.shape[self._channel_axis] != want:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) was built for {want} channels "
                f"(axis {self._channel_axis}), got inputs of shape {x.shape}."
            )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        channels = input_shape[self._channel_axis]
        if not self.keepdims:
            return (input_shape[0], channels)
        if self.data_format == "channels_last":
            return (input_shape[0], 1, channels)
        return (input_shape[0], channels, 1)

    def _reduced(self, pooled: np.ndarray) -> np.ndarray:
        return pooled if self.keepdims else pooled.squeeze(self._steps_axis)

    def _expanded(self, dy: Any, x_shape: tuple) -> np.ndarray:
        """dy of the output shape, with the steps axis restored (length 1)."""
        out_shape = self.compute_output_shape(x_shape)
        dy = self._as_grad(dy, out_shape)
        return dy if self.keepdims else np.expand_dims(dy, self._steps_axis)

    def compute_mask(self, inputs: np.ndarray, mask: np.ndarray | None) -> None:
        return None

    def get_config(self) -> dict:
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Averages over the time axis; with a mask, over the unmasked steps only (as Keras).

    Args:
        data_format: ``"channels_last"`` (default, also for None): inputs (B, T, C);
            ``"channels_first"``: inputs (B, C, T).
        keepdims: default False; True keeps the time axis with length 1.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: (B, T, C) or (B, C, T).
        mask: None or (B, T) bool, e.g. from ``Embedding(mask_zero=True)`` or ``Masking``: masked
            steps are left out of the average. A sample whose steps are all masked averages to NaN
            (0/0), as in Keras.
        training: True keeps what ``backward`` needs.

    Returns:
        (B, C), or (B, 1, C) / (B, C, 1) with ``keepdims``. The output carries no mask.

    Raises:
        ValueError: inputs not of rank 3, a channel count other than the built one, a mask of
            the wrong shape, or a bad ``data_format``.
        TypeError: ``keepdims`` not a bool.

    Example:
        >>> model = Sequential([Embedding(100, 8, mask_zero=True), GlobalAveragePooling1D(),
        ...                     Dense(1, activation="sigmoid")])
    """

    supports_masking = True
    _keras_name = "global_average_pooling1d"

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        axis = self._steps_axis
        if x.shape[axis] == 0:
            raise ValueError(
                f"Layer {self.name!r} (GlobalAveragePooling1D): the average of zero steps is "
                f"undefined (inputs of shape {x.shape})."
            )
        if mask is None:
            weights = np.full((x.shape[0], x.shape[axis]), 1.0 / x.shape[axis], x.dtype)
            out = x.mean(axis=axis, keepdims=True)
        else:
            mask = np.asarray(mask)
            if mask.shape != (x.shape[0], x.shape[axis]):
                raise ValueError(
                    f"Layer {self.name!r} (GlobalAveragePooling1D): mask must have shape "
                    f"(batch, steps) = {(x.shape[0], x.shape[axis])}, got {mask.shape}."
                )
            keep = mask.astype(bool)
            with np.errstate(invalid="ignore", divide="ignore"):
                weights = (keep / keep.sum(axis=1, keepdims=True)).astype(x.dtype)
            out = (np.where(self._spread(keep), x, 0) * self._spread(weights)).sum(
                axis=axis, keepdims=True
            )
        self._cache = (x.shape, weights) if training else None
        return self._reduced(out)

    def _spread(self, per_step: np.ndarray) -> np.ndarray:
        """(B, T) -> broadcastable against the (B, T, C) or (B, C, T) input."""
        return per_step[:, :, None] if self.data_format == "channels_last" else per_step[:, None]

    def backward(self, dy: Any) -> np.ndarray:
        shape, weights = self._require_cache()
        dy = self._expanded(dy, shape)
        self.gradients = []
        return np.broadcast_to(dy, shape) * self._spread(np.nan_to_num(weights))


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Takes the maximum over the time axis.

    As in Keras 3, masks are not supported: a mask reaching this layer is dropped (with Keras's
    warning), so padded steps take part in the maximum; mask the inputs yourself or use
    GlobalAveragePooling1D if padding must be excluded. ``backward`` splits the gradient evenly
    between tied maxima (as ``torch.amax``, Keras's torch backend, does).

    Args:
        data_format: ``"channels_last"`` (default, also for None): inputs (B, T, C);
            ``"channels_first"``: inputs (B, C, T).
        keepdims: default False; True keeps the time axis with length 1.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: (B, T, C) or (B, C, T) with T >= 1.
        training: True keeps what ``backward`` needs.

    Returns:
        (B, C), or (B, 1, C) / (B, C, 1) with ``keepdims``.

    Raises:
        ValueError: inputs not of rank 3 or with zero steps, a channel count other than the built
            one, or a bad ``data_format``.
        TypeError: ``keepdims`` not a bool.

    Example:
        >>> GlobalMaxPooling1D()(np.random.rand(2, 7, 3)).shape   # (2, 3)
    """

    _keras_name = "global_max_pooling1d"

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        warn_mask_dropped(self, mask)
        axis = self._steps_axis
        if x.shape[axis] == 0:
            raise ValueError(
                f"Layer {self.name!r} (GlobalMaxPooling1D): the maximum of zero steps is "
                f"undefined (inputs of shape {x.shape})."
            )
        out = x.max(axis=axis, keepdims=True)
        if training:
            winners = x == out
            self._cache = (x.shape, winners / winners.sum(axis=axis, keepdims=True))
        else:
            self._cache = None
        return self._reduced(out)

    def backward(self, dy: Any) -> np.ndarray:
        shape, share = self._require_cache()
        dy = self._expanded(dy, shape)
        self.gradients = []
        return (dy * share).astype(self.dtype, copy=False)


class MaxPooling1D(Layer):
    """Max pooling over windows of ``pool_size`` steps, moved by ``strides`` steps.

    Args:
        pool_size: default 2, int (or 1-tuple), the window length.
        strides: default None (= ``pool_size``), int (or 1-tuple).
        padding: ``"valid"`` (default; windows inside the input: ``(T - pool_size) // strides +
            1`` outputs) or ``"same"`` (``ceil(T / strides)`` outputs; the input is padded so that
            padding never wins, with the extra step at the end as TensorFlow and Keras do).
        data_format: ``"channels_last"`` (default, also for None): inputs (B, T, C);
            ``"channels_first"``: inputs (B, C, T).
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: (B, T, C) or (B, C, T).
        training: True keeps what ``backward`` needs.

    Returns:
        (B, T_out, C) or (B, C, T_out). ``backward`` sends each output's gradient to the first
        maximum of its window (overlapping windows add up), as torch's ``max_pool1d`` does.
        As in Keras, masks are not supported (a mask reaching this layer is dropped).

    Raises:
        ValueError: bad ``pool_size``/``strides``/``padding``/``data_format``, inputs not of rank
            3, or ``padding="valid"`` with fewer than ``pool_size`` steps.

    Example:
        >>> MaxPooling1D(2)(np.random.rand(4, 9, 3)).shape   # (4, 4, 3)
    """

    def __init__(
        self,
        pool_size: int = 2,
        strides: int | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**default_name({"name": name, **kwargs}, "max_pooling1d"))
        self.pool_size = check_int_tuple1(pool_size, "pool_size", "MaxPooling1D")
        self.strides = (
            self.pool_size
            if strides is None
            else check_int_tuple1(strides, "strides", "MaxPooling1D")
        )
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"MaxPooling1D: padding must be 'valid' or 'same', got {padding!r}.")
        self.padding = padding.lower()
        self.data_format = check_data_format(data_format, "MaxPooling1D")

    @property
    def _steps_axis(self) -> int:
        return 1 if self.data_format == "channels_last" else 2

    def _check_first_input(self, x: np.ndarray) -> None:
        check_rank(self, x, 3)

    def _check_input(self, x: np.ndarray) -> None:
        check_rank(self, x, 3)

    def _out_steps(self, steps: int | None) -> int | None:
        if steps is None:
            return None
        if self.padding == "same":
            return -(-steps // self.strides)
        return max((steps - self.pool_size) // self.strides + 1, 0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        shape = list(input_shape)
        shape[self._steps_axis] = self._out_steps(input_shape[self._steps_axis])
        return tuple(shape)

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        warn_mask_dropped(self, mask)
        xt = x if self.data_format == "channels_last" else x.transpose(0, 2, 1)
        steps = xt.shape[1]
        n_out = self._out_steps(steps)
        if n_out <= 0:
            raise ValueError(
                f"Layer {self.name!r} (MaxPooling1D): padding='valid' needs at least "
                f"pool_size={self.pool_size} steps, got inputs of shape {x.shape}."
            )
        left = 0
        if self.padding == "same":
            total = max((n_out - 1) * self.strides + self.pool_size - steps, 0)
            left = total // 2
            xt = np.pad(xt, ((0, 0), (left, total - left), (0, 0)), constant_values=-np.inf)
        # idx[o, j]: padded step read by output o at window position j.
        idx = np.arange(n_out)[:, None] * self.strides + np.arange(self.pool_size)[None, :]
        windows = xt[:, idx, :]  # (B, T_out, pool_size, C)
        first_max = windows.argmax(axis=2)  # (B, T_out, C)
        out = np.take_along_axis(windows, first_max[:, :, None, :], axis=2)[:, :, 0, :]
        self._cache = (x.shape, xt.shape, left, idx, first_max) if training else None
        return out if self.data_format == "channels_last" else out.transpose(0, 2, 1)

    def backward(self, dy: Any) -> np.ndarray:
        shape, padded_shape, left, idx, first_max = self._require_cache()
        dy = self._as_grad(dy, self.compute_output_shape(shape))
        if self.data_format == "channels_first":
            dy = dy.transpose(0, 2, 1)
        dxp = np.zeros(padded_shape, dtype=self.dtype)
        for j in range(self.pool_size):  # idx[:, j] holds distinct steps, so += is safe
            dxp[:, idx[:, j], :] += np.where(first_max == j, dy, 0)
        steps = shape[self._steps_axis]
        dx = dxp[:, left : left + steps, :]
        self.gradients = []
        return dx if self.data_format == "channels_last" else dx.transpose(0, 2, 1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "pool_size": (self.pool_size,),
            "strides": (self.strides,),
            "padding": self.padding,
            "data_format": self.data_format,
        }
