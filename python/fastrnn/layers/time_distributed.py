"""TimeDistributed: applies one layer (one set of weights) to every time step of a sequence."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastrnn.layers.base import Layer


class TimeDistributed(Layer):
    """Applies ``layer`` to every temporal slice ``inputs[:, t]`` with the same weights.

    The (B, T, ...) input is folded into a batch of B * T samples, run through the wrapped layer
    in one call, and unfolded, which computes what Keras's per-step loop computes. The wrapper's
    weights *are* the wrapped layer's (same arrays, Keras's order), so ``get_weights`` and
    ``set_weights`` match Keras's ``TimeDistributed``.

    Args:
        layer: a fastrnn layer instance, e.g. ``Dense(1)``, ``Conv1D(...)`` (for (B, T, L, C)
            inputs: a CNN over each step's window, as in CNN-LSTM models), ``Flatten()``,
            ``Dropout(...)``, even a recurrent layer over 4D inputs.
        **kwargs: ``name``, ``input_shape``, ``dtype`` (default: the wrapped layer's),
            ``trainable`` (default: the wrapped layer's; setting it sets the wrapped layer's).

    Call arguments:
        inputs: (B, T, ...) with at least 3 dimensions; the inner layer sees (B * T, ...).
        mask: None or a (B, T) mask; it is passed on unchanged to the next layer (as Keras does:
            the output steps are *not* zeroed). A mask with more dimensions, (B, T, ...), is
            folded to (B * T, ...) and given to the wrapped layer.
        training: passed to the wrapped layer.

    Returns:
        (B, T, *inner_output_shape[1:]). ``backward(dy)`` returns dL/d(inputs) (None when the
        wrapped layer has no input gradient, e.g. Embedding) and ``gradients`` are the wrapped
        layer's.

    Raises:
        TypeError: ``layer`` is not a fastrnn layer.
        ValueError: inputs of rank < 3, a mask whose first two axes differ from the inputs', or
            a wrapped layer returning several outputs.

    Example:
        >>> td = TimeDistributed(Dense(4))
        >>> td(np.zeros((2, 7, 3), np.float32)).shape   # (2, 7, 4)
    """

    supports_masking = True

    def __init__(self, layer: Layer, **kwargs: Any) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(
                f"TimeDistributed: layer must be a fastrnn layer instance, got {layer!r}."
            )
        self.layer = layer
        kwargs.setdefault("dtype", layer.dtype.name)
        kwargs.setdefault("trainable", layer.trainable)
        super().__init__(**kwargs)

    # The wrapper's trainable flag is the wrapped layer's (Keras propagates it to sublayers).
    @property
    def trainable(self) -> bool:  # type: ignore[override]
        return self.layer.trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self.layer.trainable = bool(value)

    def _convert(self, inputs: Any) -> np.ndarray:
        return self.layer._convert(inputs)

    def _check_first_input(self, x: np.ndarray) -> None:
        if x.ndim < 3:
            raise ValueError(
                f"Layer {self.name!r} (TimeDistributed) expects inputs of rank >= 3 (batch, "
                f"time, ...), got shape {x.shape}."
            )

    def _check_input(self, x: np.ndarray) -> None:
        self._check_first_input(x)
        if x.ndim != len(self.input_shape):
            raise ValueError(
                f"Layer {self.name!r} (TimeDistributed) was built for inputs of rank "
                f"{len(self.input_shape)} (shape {self.input_shape}), got shape {x.shape}."
            )

    @staticmethod
    def _child_shape(input_shape: tuple) -> tuple:
        if len(input_shape) < 3:
            raise ValueError(
                "TimeDistributed needs an input shape with at least 3 dimensions (batch, time, "
                f"...), got {tuple(input_shape)}."
            )
        return (input_shape[0],) + tuple(input_shape[2:])

    def build(self, input_shape: tuple) -> None:
        if not self.layer.built:
            self.layer.build(self._child_shape(input_shape))
        self._weights = self.layer._weights
        self._weight_names = self.layer._weight_names
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        inner = self.layer.compute_output_shape(self._child_shape(input_shape))
        if isinstance(inner, list) or (inner and isinstance(inner[0], (tuple, list))):
            raise ValueError(
                f"TimeDistributed {self.name!r}: the wrapped layer {self.layer.name!r} has "
                "several outputs; TimeDistributed needs one."
            )
        return (input_shape[0], input_shape[1]) + tuple(inner[1:])

    def compute_mask(self, inputs: np.ndarray, mask: np.ndarray | None) -> Any:
        return mask

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        batch, steps = x.shape[:2]
        inner_mask = None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim < 2 or mask.shape[:2] != (batch, steps):
                raise ValueError(
                    f"TimeDistributed {self.name!r}: the mask must have shape (batch, time, ...) "
                    f"= ({batch}, {steps}, ...) like the inputs {x.shape}, got {mask.shape}."
                )
            if mask.ndim > 2:
                inner_mask = mask.reshape((batch * steps,) + mask.shape[2:])
        y = self.layer(
            x.reshape((batch * steps,) + x.shape[2:]), mask=inner_mask, training=training
        )
        if isinstance(y, (tuple, list)):
            raise ValueError(
                f"TimeDistributed {self.name!r}: the wrapped layer {self.layer.name!r} returned "
                "several outputs; TimeDistributed needs one."
            )
        self._cache = x.shape if training else None
        return y.reshape((batch, steps) + y.shape[1:])

    def backward(self, dy: Any) -> Any:
        shape = self._require_cache()
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.ndim < 2 or dy.shape[:2] != shape[:2]:
            raise ValueError(
                f"Layer {self.name!r}: backward expects dy of shape ({shape[0]}, {shape[1]}, ...) "
                f"(the output's shape), got {dy.shape}."
            )
        dx = self.layer.backward(dy.reshape((shape[0] * shape[1],) + dy.shape[2:]))
        if isinstance(dx, (list, tuple)):
            dx = dx[0]
        self.gradients = self.layer.gradients
        if dx is None:
            return None
        return dx.reshape(shape)

    def reset_states(self) -> None:
        if hasattr(self.layer, "reset_states"):
            self.layer.reset_states()

    def get_config(self) -> dict:
        from fastrnn.layers import serialize

        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config: dict) -> TimeDistributed:
        from fastrnn.layers import deserialize

        config = dict(config)
        return cls(deserialize(config.pop("layer")), **config)
