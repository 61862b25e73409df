"""Conv1D: temporal convolution (cross-correlation, as Keras), e.g. the CNN of a CNN-LSTM.

Shapes: B batch, T steps, C input channels, F filters, K kernel size, G groups. Inputs are
(B, T, C) (``data_format="channels_last"``, the default) or (B, C, T); the kernel is (K, C / G, F)
and the bias (F,), Keras's layout. The forward pass gathers every output step's K input steps
into one array and makes one matrix product (one einsum with groups); backward scatters back one
kernel tap at a time (a loop over K, never over time).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastrnn import activations, initializers
from fastrnn.layers._checks import (
    check_data_format,
    check_int_tuple1,
    check_rank,
    default_name,
    warn_mask_dropped,
)
from fastrnn.layers.base import Layer, check_positive_int, reject_unsupported

PADDINGS = ("valid", "same", "causal")


class Conv1D(Layer):
    """1D convolution over time: ``activation(conv1d(inputs, kernel) + bias)``.

    Output step ``o`` reads input steps ``o * strides + j * dilation_rate`` (j < kernel_size) of
    the padded input and sums them against the kernel, as Keras (and TensorFlow) compute it.

    Args:
        filters: positive int, output channels.
        kernel_size: int (or 1-tuple), the window length.
        strides: default 1, int (or 1-tuple). ``strides > 1`` with ``dilation_rate > 1`` is
            not supported (as in Keras).
        padding: ``"valid"`` (default, no padding), ``"same"`` (``ceil(T / strides)`` outputs;
            zero padding split evenly, the odd step at the end) or ``"causal"`` (zeros on the
            left only, so output t depends on inputs <= t; for autoregressive models).
        data_format: ``"channels_last"`` (default, also for None) or ``"channels_first"``.
        dilation_rate: default 1, int (or 1-tuple): spacing between kernel taps.
        groups: default 1; the input channels and filters are split into this many groups
            convolved separately (both must be divisible by it).
        activation: ``linear`` (or None, the default), ``relu``, ``tanh``, ``sigmoid``,
            ``hard_sigmoid``, ``softmax``.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        bias_initializer: default ``"zeros"``.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: (B, T, C) or (B, C, T).
        training: True keeps what ``backward`` needs. As in Keras, masks are not supported (a mask
            reaching this layer is dropped, with Keras's warning).

    Returns:
        (B, T_out, filters) or (B, filters, T_out), with T_out = ``(T + padding - dilation_rate
        * (kernel_size - 1) - 1) // strides + 1``. ``backward`` returns dL/d(inputs) and fills
        ``gradients = [dkernel, dbias]``.

    Raises:
        ValueError: non-positive sizes, an unknown padding, data_format or activation,
            ``strides > 1`` with ``dilation_rate > 1``, channels or filters not divisible by
            ``groups``, inputs not of rank 3 or too short for the kernel.

    Example:
        >>> conv = Conv1D(16, 3, padding="causal", activation="relu")
        >>> conv(np.random.rand(4, 20, 3).astype(np.float32)).shape   # (4, 20, 16)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple,
        strides: int | tuple = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | tuple = 1,
        groups: int = 1,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
        kernel_regularizer: None = None,
        bias_regularizer: None = None,
        activity_regularizer: None = None,
        kernel_constraint: None = None,
        bias_constraint: None = None,
        lora_rank: None = None,
        lora_alpha: None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**default_name(kwargs, "conv1d"))
        owner = "Conv1D"
        self.filters = check_positive_int(filters, "filters", owner)
        self.kernel_size = check_int_tuple1(kernel_size, "kernel_size", owner)
        self.strides = check_int_tuple1(strides, "strides", owner)
        self.dilation_rate = check_int_tuple1(dilation_rate, "dilation_rate", owner)
        self.groups = check_positive_int(groups, "groups", owner)
        if not isinstance(padding, str) or padding.lower() not in PADDINGS:
            raise ValueError(f"{owner}: padding must be one of {PADDINGS}, got {padding!r}.")
        self.padding = padding.lower()
        self.data_format = check_data_format(data_format, owner)
        if self.strides > 1 and self.dilation_rate > 1:
            raise ValueError(
                f"{owner}: strides > 1 is not supported together with dilation_rate > 1, got "
                f"strides={self.strides} and dilation_rate={self.dilation_rate}."
            )
        if self.filters % self.groups:
            raise ValueError(
                f"{owner}: filters ({self.filters}) must be divisible by groups ({self.groups})."
            )
        self.activation = activations.canonical(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.check(kernel_initializer, "kernel_initializer")
        self.bias_initializer = initializers.check(bias_initializer, "bias_initializer")
        reject_unsupported(
            owner,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
        )
        self._rng = initializers.make_rng(None)

    # ---- shapes --------------------------------------------------------------------------
    @property
    def _channel_axis(self) -> int:
        return 2 if self.data_format == "channels_last" else 1

    @property
    def _steps_axis(self) -> int:
        return 1 if self.data_format == "channels_last" else 2

    def _check_first_input(self, x: np.ndarray) -> None:
        check_rank(self, x, 3)

    def _check_input(self, x: np.ndarray) -> None:
        check_rank(self, x, 3)
        want = self.input_shape[self._channel_axis]
        if x.shape[self._channel_axis] != want:
            raise ValueError(
                f"Layer {self.name!r} (Conv1D) was built for {want} input channels (axis "
                f"{self._channel_axis}), got inputs of shape {x.shape}."
            )

    def _padding(self, steps: int) -> tuple[int, int]:
        """(left, right) zero padding for an input of ``steps`` steps."""
        span = (self.kernel_size - 1) * self.dilation_rate + 1
        if self.padding == "valid":
            return 0, 0
        if self.padding == "causal":
            return span - 1, 0
        out = -(-steps // self.strides)
        total = max((out - 1) * self.strides + span - steps, 0)
        return total // 2, total - total // 2

    def _out_steps(self, steps: int | None) -> int | None:
        if steps is None:
            return None
        span = (self.kernel_size - 1) * self.dilation_rate + 1
        left, right = self._padding(steps)
        return max((steps + left + right - span) // self.strides + 1, 0)

    def build(self, input_shape: tuple) -> None:
        if len(input_shape) != 3:
            raise ValueError(
                f"Conv1D {self.name!r}: expects inputs of rank 3, got input shape {input_shape}."
            )
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(f"Conv1D {self.name!r}: the channel axis must be known.")
        if channels % self.groups:
            raise ValueError(
                f"Conv1D {self.name!r}: the input channels ({channels}) must be divisible by "
                f"groups ({self.groups})."
            )
        self.kernel = self.add_weight(
            "kernel",
            (self.kernel_size, channels // self.groups, self.filters),
            self.kernel_initializer,
        )
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        steps = self._out_steps(input_shape[self._steps_axis])
        if self.data_format == "channels_last":
            return (input_shape[0], steps, self.filters)
        return (input_shape[0], self.filters, steps)

    # ---- forward / backward --------------------------------------------------------------
    def _grouped_kernel(self) -> np.ndarray:
        """(K, C/G, F) -> (K, C/G, G, F/G): output channel g * F/G + f belongs to group g."""
        k, cg, f = self.kernel.shape
        return self.kernel.reshape(k, cg, self.groups, f // self.groups)

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        warn_mask_dropped(self, mask)
        xt = x if self.data_format == "channels_last" else x.transpose(0, 2, 1)
        batch, steps, channels = xt.shape
        n_out = self._out_steps(steps)
        if n_out <= 0:
            raise ValueError(
                f"Layer {self.name!r} (Conv1D): inputs of shape {x.shape} are too short for "
                f"kernel_size={self.kernel_size}, dilation_rate={self.dilation_rate} with "
                f"padding={self.padding!r}."
            )
        left, right = self._padding(steps)
        xp = np.pad(xt, ((0, 0), (left, right), (0, 0))) if left or right else xt
        # idx[o, j]: the padded input step that output step o reads with kernel tap j.
        idx = (
            np.arange(n_out)[:, None] * self.strides
            + np.arange(self.kernel_size)[None, :] * self.dilation_rate
        )
        cols = xp[:, idx, :]  # (B, T_out, K, C)
        if self.groups == 1:
            z = cols.reshape(batch * n_out, -1) @ self.kernel.reshape(-1, self.filters)
            z = z.reshape(batch, n_out, self.filters)
        else:
            g = self.groups
            grouped = cols.reshape(batch, n_out, self.kernel_size, g, channels // g)
            z = np.einsum("bokgc,kcgf->bogf", grouped, self._grouped_kernel(), optimize=True)
            z = z.reshape(batch, n_out, self.filters)
        if self.use_bias:
            z = z + self.bias
        y = activations.forward(self.activation, z)
        self._cache = (x.shape, xp.shape, left, idx, cols, y) if training else None
        return y if self.data_format == "channels_last" else y.transpose(0, 2, 1)

    def backward(self, dy: Any) -> np.ndarray:
        shape, padded_shape, left, idx, cols, y = self._require_cache()
        dy = self._as_grad(dy, self.compute_output_shape(shape))
        if self.data_format == "channels_first":
            dy = dy.transpose(0, 2, 1)
        dz = activations.backward(self.activation, y, dy)  # (B, T_out, F)
        batch, n_out, _ = dz.shape
        if self.groups == 1:
            dz2 = dz.reshape(batch * n_out, self.filters)
            dkernel = (cols.reshape(batch * n_out, -1).T @ dz2).reshape(self.kernel.shape)
            dcols = (dz2 @ self.kernel.reshape(-1, self.filters).T).reshape(cols.shape)
        else:
            g = self.groups
            grouped = cols.reshape(batch, n_out, self.kernel_size, g, -1)
            dzg = dz.reshape(batch, n_out, g, self.filters // g)
            dkernel = np.einsum("bokgc,bogf->kcgf", grouped, dzg, optimize=True)
            dkernel = dkernel.reshape(self.kernel.shape)
            dcols = np.einsum("bogf,kcgf->bokgc", dzg, self._grouped_kernel(), optimize=True)
            dcols = dcols.reshape(cols.shape)
        dxp = np.zeros(padded_shape, dtype=self.dtype)
        for j in range(self.kernel_size):  # idx[:, j] holds distinct steps, so += is safe
            dxp[:, idx[:, j], :] += dcols[:, :, j, :]
        dx = dxp[:, left : left + shape[self._steps_axis], :]
        grads = [dkernel.astype(self.dtype, copy=False)]
        if self.use_bias:
            grads.append(dz.sum(axis=(0, 1)))
        self.gradients = grads
        return dx if self.data_format == "channels_last" else dx.transpose(0, 2, 1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": (self.kernel_size,),
            "strides": (self.strides,),
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": (self.dilation_rate,),
            "groups": self.groups,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
        }
