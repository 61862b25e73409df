"""Recurrent layers SimpleRNN, LSTM and GRU: Keras 3's arguments over one fused ``ops`` call.

Dimension legend: B batch, T time steps, I input features, H units, G gates (1 SimpleRNN,
4 LSTM, 3 GRU). Layers take batch-major (B, T, I) sequences like Keras and hand time-major
(T, B, I) views to ``fastrnn.ops``: one forward call and one backward call per layer call, never a
Python loop over time steps.

Weights, in Keras's order and shapes: ``kernel (I, G*H)``, ``recurrent_kernel (H, G*H)``,
``bias (G*H,)`` or, for GRU with ``reset_after=True``, ``(2, 3*H)``.

Dropout semantics (training only): ``dropout`` draws one (B, I) mask per call, shared by all gates
and held across time steps; ``recurrent_dropout`` likewise one (B, H) mask for the previous
hidden state. Keras uses the same single masks when ``recurrent_dropout == 0``, but switches its
LSTM/GRU to one mask per gate (``implementation=1``) when ``recurrent_dropout > 0``, so training
with recurrent dropout is statistically equivalent to Keras's, not sample-for-sample identical.
Inference (``training=False``) matches Keras exactly.

Zero time steps: the layer returns its initial state (zeros when none is given) as the last
output and as the final states, and an empty (B, 0, H) sequence with ``return_sequences`` —
the result a fully masked sequence gives. (Keras raises an ``IndexError`` there.)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fastrnn import _cells, activations, initializers, ops
from fastrnn.layers.base import Layer, check_positive_int, check_rate, reject_unsupported


class RNN(Layer):
    """Shared machinery of SimpleRNN, LSTM and GRU (not instantiated directly)."""

    supports_masking = True
    _spec: _cells.CellSpec

    def _setup(
        self,
        *,
        units: int,
        activation: str | None,
        recurrent_activation: str | None,
        use_bias: bool,
        kernel_initializer: str,
        recurrent_initializer: str,
        bias_initializer: str,
        dropout: float,
        recurrent_dropout: float,
        return_sequences: bool,
        return_state: bool,
        go_backwards: bool,
        stateful: bool,
        unroll: bool,
        seed: int | None,
        unsupported: dict,
        **kwargs: Any,
    ) -> None:
        cls = type(self).__name__
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units", cls)
        self.activation = activations.canonical(activation, recurrent=True)
        if self._spec.recurrent_activation:
            self.recurrent_activation = activations.canonical(
                recurrent_activation, argument="recurrent_activation", recurrent=True
            )
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.check(kernel_initializer, "kernel_initializer")
        self.recurrent_initializer = initializers.check(
            recurrent_initializer, "recurrent_initializer"
        )
        self.bias_initializer = initializers.check(bias_initializer, "bias_initializer")
        self.dropout = check_rate(dropout, "dropout", cls)
        self.recurrent_dropout = check_rate(recurrent_dropout, "recurrent_dropout", cls)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        if self.unroll:
            warnings.warn(
                f"{cls}: unroll=True has no effect in fastrnn (the fused kernel gives the same "
                "results either way).",
                stacklevel=3,
            )
        reject_unsupported(cls, **unsupported)
        self.seed = seed
        self._rng = initializers.make_rng(seed)
        self.states: list[np.ndarray] | None = None

    # ---- weights ---------------------------------------------------------------------------
    @property
    def state_size(self) -> list[int]:
        return [self.units] * self._spec.num_states

    def _check_first_input(self, x: np.ndarray) -> None:
        if x.ndim != 3:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) expects inputs of rank 3 "
                f"(batch, timesteps, features), got shape {x.shape}."
            )

    def _cell_options(self) -> dict:
        """The cell's own options (``CellSpec.options``, e.g. GRU's ``reset_after``)."""
        return {name: getattr(self, name) for name in self._spec.options}

    def _initial_bias(self, bias: np.ndarray) -> None:
        """Hook for a cell's bias convention after initialisation (LSTM's unit_forget_bias)."""

    def build(self, input_shape: tuple) -> None:
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) needs an input shape "
                f"(batch, timesteps, features) with known features, got {input_shape}."
            )
        i, h = int(input_shape[-1]), self.units
        self.kernel = self.add_weight(
            "kernel", self._spec.kernel_shape(i, h), self.kernel_initializer
        )
        self.recurrent_kernel = self.add_weight(
            "recurrent_kernel", self._spec.recurrent_kernel_shape(h), self.recurrent_initializer
        )
        if self.use_bias:
            bias_shape = self._spec.bias_shape(h, **self._cell_options())
            self.bias = self.add_weight("bias", bias_shape, self.bias_initializer)
            self._initial_bias(self.bias)
        super().build(input_shape)
        if self.stateful and input_shape[0] is not None and self.states is None:
            # A fixed batch size (Input(batch_shape=...)): the carried states exist from the start.
            self.states = [np.zeros((int(input_shape[0]), h), self.dtype) for _ in self.state_size]

    def compute_output_shape(self, input_shape: tuple) -> Any:
        b, t = input_shape[0], input_shape[1]
        out = (b, t, self.units) if self.return_sequences else (b, self.units)
        if self.return_state:
            return (out,) + tuple((b, self.units) for _ in self.state_size)
        return out

    def compute_mask(self, inputs: np.ndarray, mask: np.ndarray | None) -> Any:
        out = mask if self.return_sequences else None
        if self.return_state:
            return [out] + [None] * len(self.state_size)
        return out

    # ---- states ----------------------------------------------------------------------------
    def reset_states(self) -> None:
        """Zeroes the carried states of a stateful layer (the next call starts from zeros)."""
        if self.states is not None:
            for s in self.states:
                s[...] = 0.0

    reset_state = reset_states

    def _initial_state(self, initial_state: Any, batch: int) -> list[np.ndarray] | None:
        n = len(self.state_size)
        if initial_state is None:
            if self.stateful and self.states is not None:
                if self.states[0].shape[0] != batch:
                    raise ValueError(
                        f"Layer {self.name!r} is stateful with batch size "
                        f"{self.states[0].shape[0]}; got inputs with batch size {batch}. "
                        "Call reset_states() only clears values: keep the batch size fixed."
                    )
                return self.states
            return None
        if isinstance(initial_state, np.ndarray) or not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if len(initial_state) != n:
            raise ValueError(
                f"Layer {self.name!r}: initial_state must be a list of {n} array(s) "
                f"({', '.join(self._spec.state_names)}), got {len(initial_state)}."
            )
        states = []
        for sname, s in zip(self._spec.state_names, initial_state):
            s = np.asarray(s, dtype=self.dtype)
            if s.shape != (batch, self.units):
                raise ValueError(
                    f"Layer {self.name!r}: initial_state {sname!r} must have shape "
                    f"({batch}, {self.units}), got {s.shape}."
                )
            states.append(s)
        return states

    # ---- call / backward --------------------------------------------------------------------
    def _op_kwargs(self) -> dict:
        kw = {"activation": self.activation, **self._cell_options()}
        if self._spec.recurrent_activation:
            kw["recurrent_activation"] = self.recurrent_activation
        return kw

    def __call__(
        self,
        inputs: Any,
        initial_state: Any = None,
        mask: Any = None,
        training: bool | None = None,
    ) -> Any:
        """Runs the layer (or, on symbolic tensors, adds it to a graph).

        Call arguments:
            inputs: (B, T, I) floats, or a symbolic tensor.
            initial_state: None, or a list of (B, H) arrays: ``[h0]`` (``[h0, c0]`` for LSTM);
                symbolic tensors in a graph (e.g. an encoder's final states).
            mask: None or (B, T) bool; False steps are skipped (states carried over).
            training: True applies dropout and keeps what ``backward`` needs; None (default)
                means False for a direct call and the model's mode inside a model.

        Returns:
            (B, H), or (B, T, H) with ``return_sequences`` (in processing order, i.e. reversed
            when ``go_backwards``); with ``return_state`` a tuple ``(output, h[, c])``.
        """
        given = (("initial_state", initial_state), ("mask", mask), ("training", training))
        return super().__call__(inputs, **{k: v for k, v in given if v is not None})

    def call(
        self,
        x: np.ndarray,
        initial_state: Any = None,
        mask: Any = None,
        training: bool = False,
    ) -> Any:
        b, t, _ = x.shape
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (b, t):
                raise ValueError(
                    f"Layer {self.name!r}: mask must have shape (batch, timesteps) = ({b}, {t}), "
                    f"got {mask.shape}."
                )
            mask = mask.astype(bool, copy=False)
        explicit = initial_state is not None
        states = self._initial_state(initial_state, b)
        dropout_mask = recurrent_dropout_mask = None
        if training and self.dropout > 0:
            keep = self._rng.random((b, x.shape[2])) >= self.dropout
            dropout_mask = keep.astype(self.dtype) / self.dtype.type(1.0 - self.dropout)
        if training and self.recurrent_dropout > 0:
            keep = self._rng.random((b, self.units)) >= self.recurrent_dropout
            recurrent_dropout_mask = keep.astype(self.dtype) / self.dtype.type(
                1.0 - self.recurrent_dropout
            )
        forward = self._spec.forward(ops)
        outputs, final_states, ctx = forward(
            x.transpose(1, 0, 2),
            self.kernel,
            self.recurrent_kernel,
            self.bias if self.use_bias else None,
            None if states is None else list(states),
            None if mask is None else mask.T,
            **self._op_kwargs(),
            go_backwards=self.go_backwards,
            dropout_mask=dropout_mask,
            recurrent_dropout_mask=recurrent_dropout_mask,
            training=bool(training),
        )
        if self.stateful:
            self.states = [np.array(s, dtype=self.dtype) for s in final_states]
        self._cache = (ctx, outputs.shape, explicit) if training else None
        if self.return_sequences:
            out = outputs.transpose(1, 0, 2)
        elif t == 0:  # no step ran: the last output is the initial state (as if fully masked)
            out = np.array(final_states[0], dtype=self.dtype)
        else:
            out = outputs[-1]
        if self.return_state:
            return (out, *final_states)
        return out

    def backward(self, dy: Any) -> Any:
        """Backpropagates through the last ``training=True`` call.

        Args:
            dy: dL/d(output) with the output's shape; with ``return_state`` a list
                ``[d_output, d_h(, d_c)]`` whose entries may be None.

        Returns:
            dx (B, T, I); when ``initial_state`` was passed to the call, ``[dx, dh0(, dc0)]``.
            ``self.gradients`` gets ``[dkernel, drecurrent_kernel(, dbias)]``.
        """
        ctx, (t, b, h), explicit = self._require_cache()
        d_states = None
        if self.return_state:
            if not isinstance(dy, (list, tuple)) or len(dy) != 1 + len(self.state_size):
                raise ValueError(
                    f"Layer {self.name!r} returns states: backward expects a list "
                    f"[d_output, {', '.join('d_' + s for s in self._spec.state_names)}]."
                )
            dy, d_states = dy[0], [None if d is None else self._as_grad(d, (b, h)) for d in dy[1:]]
        d_outputs = None
        if dy is not None:
            if self.return_sequences:
                d_outputs = self._as_grad(dy, (b, t, h)).transpose(1, 0, 2)
            elif t == 0:  # the output was the initial state h0 itself
                d_h = self._as_grad(dy, (b, h))
                d_states = list(d_states or [None] * len(self.state_size))
                d_states[0] = d_h if d_states[0] is None else d_states[0] + d_h
            else:
                d_outputs = np.zeros((t, b, h), dtype=self.dtype)
                d_outputs[-1] = self._as_grad(dy, (b, h))
        backward = self._spec.backward(ops)
        grads = backward(ctx, d_outputs, d_states)
        self.gradients = [grads.dkernel, grads.drecurrent_kernel]
        if self.use_bias:
            self.gradients.append(grads.dbias)
        dx = grads.dx.transpose(1, 0, 2)
        if explicit:
            return [dx, *grads.dinitial_state]
        return dx

    def get_config(self) -> dict:
        config = {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "recurrent_initializer": self.recurrent_initializer,
            "bias_initializer": self.bias_initializer,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "seed": self.seed,
        }
        if self._spec.recurrent_activation:
            config["recurrent_activation"] = self.recurrent_activation
        return config


class SimpleRNN(RNN):
    """Fully connected RNN: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    Args:
        units: positive int, H.
        activation: default ``"tanh"``; one of tanh, relu, sigmoid, hard_sigmoid, linear (None).
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        recurrent_initializer: default ``"orthogonal"``.
        bias_initializer: default ``"zeros"``.
        dropout: float in [0, 1), default 0: fraction of input units dropped in training.
        recurrent_dropout: float in [0, 1), default 0: fraction of the previous hidden state
            dropped in training.
        return_sequences: default False: return the whole (B, T, H) sequence.
        return_state: default False: also return the final states.
        go_backwards: default False: process the sequence in reverse (outputs in processing
            order, as Keras).
        stateful: default False: carry the final states into the next call (fixed batch size);
            ``reset_states()`` zeroes them.
        unroll: accepted for compatibility; no effect (warns when True).
        seed: int seeding the dropout masks and initial weights.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.
        Regularizer and constraint arguments exist only to raise a clear error when set.

    Call arguments:
        inputs: (B, T, I) floats.
        initial_state: None or a list of (B, H) arrays: ``[h0]``.
        mask: None or (B, T) bool, False at padded steps (skipped: states carried over).
        training: True applies dropout and keeps what ``backward`` needs.

    Returns:
        (B, H), or (B, T, H) with ``return_sequences``; with ``return_state`` the tuple
        ``(output, h)``.

    Raises:
        ValueError: ``units`` not positive, dropout outside [0, 1), unknown activation or
            initializer, a regularizer/constraint set, inputs not of rank 3 or of another
            feature width than the built one, a mask or initial state of the wrong shape.
        TypeError: unknown keyword argument.

    Example:
        >>> layer = SimpleRNN(3, return_sequences=True)
        >>> layer(np.zeros((2, 12, 1), np.float32)).shape   # (2, 12, 3)
    """

    _spec = _cells.SIMPLE_RNN

    def __init__(
        self,
        units: int,
        activation: str | None = "tanh",
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        recurrent_initializer: str = "orthogonal",
        bias_initializer: str = "zeros",
        kernel_regularizer: None = None,
        recurrent_regularizer: None = None,
        bias_regularizer: None = None,
        activity_regularizer: None = None,
        kernel_constraint: None = None,
        recurrent_constraint: None = None,
        bias_constraint: None = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._setup(
            units=units,
            activation=activation,
            recurrent_activation=None,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            seed=seed,
            unsupported=dict(
                kernel_regularizer=kernel_regularizer,
                recurrent_regularizer=recurrent_regularizer,
                bias_regularizer=bias_regularizer,
                activity_regularizer=activity_regularizer,
                kernel_constraint=kernel_constraint,
                recurrent_constraint=recurrent_constraint,
                bias_constraint=bias_constraint,
            ),
            **kwargs,
        )


class LSTM(RNN):
    """Long short-term memory layer (Hochreiter 1997), Keras gate order i, f, c, o.

    With ``unit_forget_bias`` (default True) the forget-gate bias starts at 1.
    ``use_cudnn`` is accepted for compatibility (the fused kernel serves every setting).

    Args:
        units: positive int, H.
        activation: default ``"tanh"``; one of tanh, relu, sigmoid, hard_sigmoid, linear (None).
        recurrent_activation: default ``"sigmoid"``.
        unit_forget_bias: default True.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        recurrent_initializer: default ``"orthogonal"``.
        bias_initializer: default ``"zeros"``.
        dropout: float in [0, 1), default 0: fraction of input units dropped in training.
        recurrent_dropout: float in [0, 1), default 0: fraction of the previous hidden state
            dropped in training.
        return_sequences: default False: return the whole (B, T, H) sequence.
        return_state: default False: also return the final states.
        go_backwards: default False: process the sequence in reverse (outputs in processing
            order, as Keras).
        stateful: default False: carry the final states into the next call (fixed batch size);
            ``reset_states()`` zeroes them.
        unroll: accepted for compatibility; no effect (warns when True).
        seed: int seeding the dropout masks and initial weights.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.
        Regularizer and constraint arguments exist only to raise a clear error when set.

    Call arguments:
        inputs: (B, T, I) floats.
        initial_state: None or a list of (B, H) arrays: ``[h0, c0]``.
        mask: None or (B, T) bool, False at padded steps (skipped: states carried over).
        training: True applies dropout and keeps what ``backward`` needs.

    Returns:
        (B, H), or (B, T, H) with ``return_sequences``; with ``return_state`` the tuple
        ``(output, h, c)``.

    Raises:
        ValueError: ``units`` not positive, dropout outside [0, 1), unknown activation or
            initializer, a regularizer/constraint set, inputs not of rank 3 or of another
            feature width than the built one, a mask or initial state of the wrong shape.
        TypeError: unknown keyword argument.

    Example:
        >>> layer = LSTM(32, return_state=True)
        >>> out, h, c = layer(np.zeros((4, 10, 8), np.float32))   # (4, 32) each
    """

    _spec = _cells.LSTM

    def __init__(
        self,
        units: int,
        activation: str | None = "tanh",
        recurrent_activation: str | None = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        recurrent_initializer: str = "orthogonal",
        bias_initializer: str = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: None = None,
        recurrent_regularizer: None = None,
        bias_regularizer: None = None,
        activity_regularizer: None = None,
        kernel_constraint: None = None,
        recurrent_constraint: None = None,
        bias_constraint: None = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        use_cudnn: str | bool = "auto",
        **kwargs: Any,
    ) -> None:
        self.unit_forget_bias = bool(unit_forget_bias)
        self.use_cudnn = use_cudnn
        self._setup(
            units=units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            seed=seed,
            unsupported=dict(
                kernel_regularizer=kernel_regularizer,
                recurrent_regularizer=recurrent_regularizer,
                bias_regularizer=bias_regularizer,
                activity_regularizer=activity_regularizer,
                kernel_constraint=kernel_constraint,
                recurrent_constraint=recurrent_constraint,
                bias_constraint=bias_constraint,
            ),
            **kwargs,
        )
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"LSTM: use_cudnn must be 'auto', True or False, got {use_cudnn!r}.")

    def _initial_bias(self, bias: np.ndarray) -> None:
        if self.unit_forget_bias:  # the forget gate's block (i, f, c, o) starts at 1
            bias[self.units : 2 * self.units] = 1.0

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "unit_forget_bias": self.unit_forget_bias,
            "use_cudnn": self.use_cudnn,
        }


class GRU(RNN):
    """Gated recurrent unit (Cho 2014), Keras gate order z, r, h.

    ``reset_after=True`` (default, Keras 3 and cuDNN convention) applies the reset gate after the
    recurrent product and keeps two biases: ``bias (2, 3H)`` = [input bias, recurrent bias].

    Args:
        units: positive int, H.
        activation: default ``"tanh"``; one of tanh, relu, sigmoid, hard_sigmoid, linear (None).
        recurrent_activation: default ``"sigmoid"``.
        reset_after: default True.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        recurrent_initializer: default ``"orthogonal"``.
        bias_initializer: default ``"zeros"``.
        dropout: float in [0, 1), default 0: fraction of input units dropped in training.
        recurrent_dropout: float in [0, 1), default 0: fraction of the previous hidden state
            dropped in training.
        return_sequences: default False: return the whole (B, T, H) sequence.
        return_state: default False: also return the final states.
        go_backwards: default False: process the sequence in reverse (outputs in processing
            order, as Keras).
        stateful: default False: carry the final states into the next call (fixed batch size);
            ``reset_states()`` zeroes them.
        unroll: accepted for compatibility; no effect (warns when True).
        seed: int seeding the dropout masks and initial weights.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.
        Regularizer and constraint arguments exist only to raise a clear error when set.

    Call arguments:
        inputs: (B, T, I) floats.
        initial_state: None or a list of (B, H) arrays: ``[h0]``.
        mask: None or (B, T) bool, False at padded steps (skipped: states carried over).
        training: True applies dropout and keeps what ``backward`` needs.

    Returns:
        (B, H), or (B, T, H) with ``return_sequences``; with ``return_state`` the tuple
        ``(output, h)``.

    Raises:
        ValueError: ``units`` not positive, dropout outside [0, 1), unknown activation or
            initializer, a regularizer/constraint set, inputs not of rank 3 or of another
            feature width than the built one, a mask or initial state of the wrong shape.
        TypeError: unknown keyword argument.

    Example:
        >>> layer = GRU(16)
        >>> layer(np.zeros((4, 10, 8), np.float32)).shape   # (4, 16)
    """

    _spec = _cells.GRU

    def __init__(
        self,
        units: int,
        activation: str | None = "tanh",
        recurrent_activation: str | None = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        recurrent_initializer: str = "orthogonal",
        bias_initializer: str = "zeros",
        kernel_regularizer: None = None,
        recurrent_regularizer: None = None,
        bias_regularizer: None = None,
        activity_regularizer: None = None,
        kernel_constraint: None = None,
        recurrent_constraint: None = None,
        bias_constraint: None = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        reset_after: bool = True,
        use_cudnn: str | bool = "auto",
        **kwargs: Any,
    ) -> None:
        self.reset_after = bool(reset_after)
        self.use_cudnn = use_cudnn
        self._setup(
            units=units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            seed=seed,
            unsupported=dict(
                kernel_regularizer=kernel_regularizer,
                recurrent_regularizer=recurrent_regularizer,
                bias_regularizer=bias_regularizer,
                activity_regularizer=activity_regularizer,
                kernel_constraint=kernel_constraint,
                recurrent_constraint=recurrent_constraint,
                bias_constraint=bias_constraint,
            ),
            **kwargs,
        )
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"GRU: use_cudnn must be 'auto', True or False, got {use_cudnn!r}.")

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "reset_after": self.reset_after,
            "use_cudnn": self.use_cudnn,
        }
