"""LayerNormalization: normalizes each sample over its feature axes (Ba et al. 2016)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastrnn import initializers
from fastrnn.layers.base import Layer, reject_unsupported


class LayerNormalization(Layer):
    """``gamma * (x - mean) / sqrt(var + epsilon) + beta``, statistics over ``axis`` per sample.

    Mean and (biased) variance are taken over the axes in ``axis`` separately for every position
    of the other axes, e.g. for every sample and time step of (B, T, F) inputs with the default
    ``axis=-1``. Unlike batch normalization it keeps no running statistics, so training and
    inference compute the same thing.

    Args:
        axis: default -1; int or list of ints, the axes normalized over (not the batch axis).
        epsilon: default 1e-3 (Keras's default), added to the variance.
        center: default True: add the learned offset ``beta``.
        scale: default True: multiply by the learned ``gamma``.
        beta_initializer: default ``"zeros"``.
        gamma_initializer: default ``"ones"``.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: any rank >= 2, e.g. (B, T, F).
        mask: passed through unchanged (as Keras does).
        training: True keeps what ``backward`` needs.

    Returns:
        Same shape as the inputs. Weights (Keras's order): ``gamma`` then ``beta``, each of the
        shape of the normalized axes; ``backward`` fills ``gradients`` in that order.

    Raises:
        TypeError: ``axis`` not an int or a list of ints.
        ValueError: ``axis`` out of range or containing the batch axis, unknown sizes on the
            normalized axes, ``epsilon`` not positive, or ``rms_scaling=True`` (deprecated and
            not implemented).

    Example:
        >>> ln = LayerNormalization()
        >>> ln(np.random.rand(2, 5, 8).astype(np.float32)).shape   # (2, 5, 8)
    """

    supports_masking = True

    def __init__(
        self,
        axis: int | list[int] = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: str = "zeros",
        gamma_initializer: str = "ones",
        beta_regularizer: None = None,
        gamma_regularizer: None = None,
        beta_constraint: None = None,
        gamma_constraint: None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("rms_scaling", False):
            raise ValueError(
                "LayerNormalization: rms_scaling=True is deprecated in Keras (it scales by the "
                "variance, not the root mean square) and fastrnn does not implement it."
            )
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            if not axis or any(
                isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axis
            ):
                raise TypeError(
                    f"LayerNormalization: axis must be an int or a list of ints, got {axis!r}."
                )
            self.axis: int | list[int] = [int(a) for a in axis]
        elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            self.axis = int(axis)
        else:
            raise TypeError(
                f"LayerNormalization: axis must be an int or a list of ints, got {axis!r}."
            )
        try:
            self.epsilon = float(epsilon)
        except (TypeError, ValueError):
            raise ValueError(
                f"LayerNormalization: epsilon must be a positive float, got {epsilon!r}."
            ) from None
        if not self.epsilon > 0:
            raise ValueError(
                f"LayerNormalization: epsilon must be a positive float, got {epsilon!r}."
            )
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.check(beta_initializer, "beta_initializer")
        self.gamma_initializer = initializers.check(gamma_initializer, "gamma_initializer")
        reject_unsupported(
            "LayerNormalization",
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
        )
        self._rng = initializers.make_rng(None)
        self._axes: tuple[int, ...] = ()

    def _resolve_axes(self, rank: int) -> tuple[int, ...]:
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        for a in axes:
            if not -rank <= a < rank:
                raise ValueError(
                    f"LayerNormalization {self.name!r}: axis {a} is out of bounds for inputs of "
                    f"rank {rank} (axis={self.axis})."
                )
        resolved = tuple(sorted({a % rank for a in axes}))
        if 0 in resolved:
            raise ValueError(
                f"LayerNormalization {self.name!r}: cannot normalize over the batch axis "
                f"(axis={self.axis})."
            )
        return resolved

    def _check_first_input(self, x: np.ndarray) -> None:
        if x.ndim < 2:
            raise ValueError(
                f"Layer {self.name!r} (LayerNormalization) expects inputs of rank >= 2, got "
                f"shape {x.shape}."
            )

    def _check_input(self, x: np.ndarray) -> None:
        want = self.input_shape
        if x.ndim != len(want) or any(x.shape[a] != want[a] for a in self._axes):
            raise ValueError(
                f"Layer {self.name!r} (LayerNormalization) was built for inputs of shape {want} "
                f"(normalized axes {self._axes}), got inputs of shape {x.shape}."
            )

    def build(self, input_shape: tuple) -> None:
        self._axes = self._resolve_axes(len(input_shape))
        shape = tuple(input_shape[a] for a in self._axes)
        if any(d is None for d in shape):
            raise ValueError(
                f"LayerNormalization {self.name!r}: the normalized axes {self._axes} must have "
                f"known sizes, got input shape {input_shape}."
            )
        if self.scale:
            self.gamma = self.add_weight("gamma", shape, self.gamma_initializer)
        if self.center:
            self.beta = self.add_weight("beta", shape, self.beta_initializer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        self._resolve_axes(len(input_shape))
        return tuple(input_shape)

    def _broadcast(self, w: np.ndarray, ndim: int) -> np.ndarray:
        shape = [1] * ndim
        for a, size in zip(self._axes, w.shape):
            shape[a] = size
        return w.reshape(shape)

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        axes = self._axes
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        var = np.mean(centered * centered, axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(var + self.dtype.type(self.epsilon))
        xhat = centered * inv
        y = xhat
        if self.scale:
            y = y * self._broadcast(self.gamma, x.ndim)
        if self.center:
            y = y + self._broadcast(self.beta, x.ndim)
        self._cache = (xhat, inv) if training else None
        return y

    def backward(self, dy: Any) -> np.ndarray:
        xhat, inv = self._require_cache()
        dy = self._as_grad(dy, xhat.shape)
        axes = self._axes
        others = tuple(a for a in range(xhat.ndim) if a not in axes)
        grads = []
        if self.scale:
            grads.append((dy * xhat).sum(axis=others).reshape(self.gamma.shape))
            g = dy * self._broadcast(self.gamma, dy.ndim)
        else:
            g = dy
        if self.center:
            grads.append(dy.sum(axis=others).reshape(self.beta.shape))
        self.gradients = grads
        # d xhat / dx: inv * (g - mean(g) - xhat * mean(g * xhat)), means over the axes.
        n = math.prod(xhat.shape[a] for a in axes)
        g_mean = g.sum(axis=axes, keepdims=True) / n
        gx_mean = (g * xhat).sum(axis=axes, keepdims=True) / n
        return inv * (g - g_mean - xhat * gx_mean)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": self.beta_initializer,
            "gamma_initializer": self.gamma_initializer,
        }
