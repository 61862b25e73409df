"""Bidirectional wrapper: one recurrent layer forwards in time, a copy backwards, outputs merged."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastrnn.layers.base import Layer
from fastrnn.layers.recurrent import RNN

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Runs a recurrent layer over the sequence in both directions and merges the outputs.

    The backward layer is a copy of ``layer``'s configuration with ``go_backwards`` flipped (or
    ``backward_layer``). With ``return_sequences`` its outputs are flipped back to input time
    order before merging, and (as Keras) both directions output zeros at masked steps.

    Args:
        layer: a SimpleRNN, LSTM or GRU instance (not yet built).
        merge_mode: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or None (a list of
            the two outputs).
        backward_layer: optional recurrent layer for the backward direction; it must have
            ``go_backwards`` opposite to ``layer`` and the same ``return_sequences`` and
            ``return_state``.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: (B, T, I).
        initial_state: None or the forward layer's states followed by the backward layer's.
        mask: None or (B, T) bool.
        training: True applies dropout and keeps what ``backward`` needs.

    Returns:
        The merged output ((B, 2H) for concat, (B, H) otherwise, with a T axis when
        ``return_sequences``); with ``return_state`` a tuple ``(output, *forward_states,
        *backward_states)``.

    Raises:
        TypeError: ``layer`` is not a recurrent layer.
        ValueError: unknown ``merge_mode`` or an inconsistent ``backward_layer``.

    Example:
        >>> bi = Bidirectional(GRU(8, return_sequences=True), merge_mode="sum")
        >>> bi(np.zeros((2, 5, 3), np.float32)).shape   # (2, 5, 8)
    """

    supports_masking = True

    def __init__(
        self,
        layer: RNN,
        merge_mode: str | None = "concat",
        weights: list | None = None,
        backward_layer: RNN | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(layer, RNN):
            raise TypeError(
                f"Bidirectional: layer must be a SimpleRNN, LSTM or GRU instance, got {layer!r}."
            )
        if merge_mode not in MERGE_MODES:
            raise ValueError(
                f"Bidirectional: merge_mode must be one of {MERGE_MODES}, got {merge_mode!r}."
            )
        kwargs.setdefault("dtype", layer.dtype.name)
        if "input_shape" not in kwargs and layer._input_shape_arg is not None:
            kwargs["input_shape"] = layer._input_shape_arg
        super().__init__(**kwargs)
        config = layer.get_config()
        config.pop("input_shape", None)
        self.forward_layer = type(layer).from_config({**config, "name": "forward_" + layer.name})
        if backward_layer is None:
            config["go_backwards"] = not layer.go_backwards
            config["name"] = "backward_" + layer.name
            if config.get("seed") is not None:
                config["seed"] = config["seed"] + 1
            backward_layer = type(layer).from_config(config)
        else:
            if not isinstance(backward_layer, RNN):
                raise TypeError("Bidirectional: backward_layer must be a recurrent layer.")
            if backward_layer.go_backwards == layer.go_backwards:
                raise ValueError(
                    "Bidirectional: backward_layer.go_backwards must be the opposite of "
                    "layer.go_backwards."
                )
            for attr in ("return_sequences", "return_state"):
                if getattr(backward_layer, attr) != getattr(layer, attr):
                    raise ValueError(
                        f"Bidirectional: backward_layer.{attr} must equal layer.{attr}."
                    )
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self._initial_weights = weights
        if not self.trainable:
            self.trainable = False  # propagate to the two directions

    @property
    def _layers(self) -> tuple[RNN, RNN]:
        return self.forward_layer, self.backward_layer

    def _check_first_input(self, x: np.ndarray) -> None:
        self.forward_layer._check_first_input(x)

    def build(self, input_shape: tuple) -> None:
        for sub in self._layers:
            sub.build(input_shape)
        self._weights = self.forward_layer._weights + self.backward_layer._weights
        self._weight_names = [f"forward/{n}" for n in self.forward_layer._weight_names] + [
            f"backward/{n}" for n in self.backward_layer._weight_names
        ]
        super().build(input_shape)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def set_weights(self, weights: list) -> None:
        super().set_weights(weights)  # writes in place into the sub-layers' arrays

    def compute_output_shape(self, input_shape: tuple) -> Any:
        shape = self.forward_layer.compute_output_shape(input_shape)
        states: tuple = ()
        if self.return_state:
            shape, states = shape[0], tuple(shape[1:])
        if self.merge_mode == "concat":
            shape = tuple(shape[:-1]) + (2 * shape[-1],)
        elif self.merge_mode is None:
            shape = [shape, shape]
        if self.return_state:
            return (shape,) + states + states
        return shape

    def compute_mask(self, inputs: np.ndarray, mask: np.ndarray | None) -> Any:
        out = mask if self.return_sequences else None
        if self.merge_mode is None:
            out = [out, out]
        if self.return_state:
            n = 2 * len(self.forward_layer.state_size)
            return [out] + [None] * n
        return out

    def __call__(
        self,
        inputs: Any,
        initial_state: Any = None,
        mask: Any = None,
        training: bool | None = None,
    ) -> Any:
        given = (("initial_state", initial_state), ("mask", mask), ("training", training))
        return super().__call__(inputs, **{k: v for k, v in given if v is not None})

    def call(
        self, x: np.ndarray, initial_state: Any = None, mask: Any = None, training: bool = False
    ) -> Any:
        fwd_state = bwd_state = None
        if initial_state is not None:
            n = len(self.forward_layer.state_size)
            initial_state = list(initial_state)
            if len(initial_state) != 2 * n:
                raise ValueError(
                    f"Bidirectional {self.name!r}: initial_state must hold {2 * n} arrays "
                    f"(forward states then backward states), got {len(initial_state)}."
                )
            fwd_state, bwd_state = initial_state[:n], initial_state[n:]
        kw_f = {} if fwd_state is None else {"initial_state": fwd_state}
        kw_b = {} if bwd_state is None else {"initial_state": bwd_state}
        y, _, f_cache = self.forward_layer._forward(x, mask=mask, training=training, **kw_f)
        y_rev, _, b_cache = self.backward_layer._forward(x, mask=mask, training=training, **kw_b)
        states: tuple = ()
        if self.return_state:
            states = tuple(y[1:]) + tuple(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        keep = None
        if self.return_sequences:
            y_rev = y_rev[:, ::-1]
            if mask is not None:
                keep = np.asarray(mask, dtype=bool)[:, :, None]
                y, y_rev = y * keep, y_rev * keep
        if training:
            self._cache = (y, y_rev, keep, initial_state is not None, f_cache, b_cache)
        else:
            self._cache = None
        if self.merge_mode == "concat":
            out: Any = np.concatenate([y, y_rev], axis=-1)
        elif self.merge_mode == "sum":
            out = y + y_rev
        elif self.merge_mode == "ave":
            out = (y + y_rev) / 2
        elif self.merge_mode == "mul":
            out = y * y_rev
        else:
            out = [y, y_rev]
        if self.return_state:
            return (out, *states)
        return out

    def backward(self, dy: Any) -> Any:
        """Backpropagates through both directions; returns dx (plus initial-state gradients).

        Args:
            dy: dL/d(output); a list ``[dy_forward, dy_backward]`` for ``merge_mode=None``;
                with ``return_state`` a list ``[d_output, *d_forward_states, *d_backward_states]``.

        Returns:
            dx (B, T, I), or ``[dx, *d_forward_initial, *d_backward_initial]`` when initial
            states were passed. ``gradients`` lists forward then backward weight gradients.
        """
        y, y_rev, keep, explicit, f_cache, b_cache = self._require_cache()
        d_states: list = []
        if self.return_state:
            dy, d_states = dy[0], list(dy[1:])
        if dy is None:
            d_f = d_b = None
        elif self.merge_mode == "concat":
            dy = self._as_grad(dy, y.shape[:-1] + (2 * y.shape[-1],))
            h = y.shape[-1]
            d_f, d_b = dy[..., :h], dy[..., h:]
        elif self.merge_mode == "sum":
            d_f = d_b = self._as_grad(dy, y.shape)
        elif self.merge_mode == "ave":
            d_f = d_b = self._as_grad(dy, y.shape) / 2
        elif self.merge_mode == "mul":
            dy = self._as_grad(dy, y.shape)
            d_f, d_b = dy * y_rev, dy * y
        else:
            d_f, d_b = dy
            d_f = None if d_f is None else self._as_grad(d_f, y.shape)
            d_b = None if d_b is None else self._as_grad(d_b, y.shape)
        if keep is not None:
            d_f = None if d_f is None else d_f * keep
            d_b = None if d_b is None else d_b * keep
        if self.return_sequences and d_b is not None:
            d_b = d_b[:, ::-1]
        n = len(self.forward_layer.state_size)
        if self.return_state:
            d_f = [d_f, *d_states[:n]]
            d_b = [d_b, *d_states[n:]]
        elif d_f is None:
            raise ValueError(f"Bidirectional {self.name!r}: dy must not be None.")
        g_f, grads_f = self.forward_layer._backward(f_cache, d_f)
        g_b, grads_b = self.backward_layer._backward(b_cache, d_b)
        self.gradients = grads_f + grads_b
        if explicit:
            return [g_f[0] + g_b[0], *g_f[1:], *g_b[1:]]
        return g_f + g_b

    def _capture_cache(self) -> Any:
        return (self._cache, ())  # our cache already holds both directions' snapshots

    def reset_states(self) -> None:
        for sub in self._layers:
            sub.reset_states()

    def get_config(self) -> dict:
        fwd = self.forward_layer.get_config()
        bwd = self.backward_layer.get_config()
        fwd["name"] = fwd["name"].removeprefix("forward_")
        return {
            **super().get_config(),
            "layer": {"class_name": type(self.forward_layer).__name__, "config": fwd},
            "backward_layer": {"class_name": type(self.backward_layer).__name__, "config": bwd},
            "merge_mode": self.merge_mode,
        }

    @classmethod
    def from_config(cls, config: dict) -> Bidirectional:
        from fastrnn.layers import deserialize

        config = dict(config)
        layer = deserialize(config.pop("layer"))
        backward = config.pop("backward_layer", None)
        if backward is not None:
            backward = deserialize(backward)
        return cls(layer, backward_layer=backward, **config)
