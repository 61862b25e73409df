"""Functional API over the fused kernels: one call per forward, one per backward.

``ops.<cell>_forward`` / ``ops.<cell>_backward`` mirror ``fastrnn.reference`` one-to-one (same
arguments, same results), so a test can swap the two modules.

Dtype rules: ``x`` must be float32 or float64, and every weight, initial state and dropout mask
must have the same dtype (else ``TypeError``); ``mask`` must be bool. Arrays of any layout are
accepted — any strides, unaligned, either byte order, unpickled — and copied to what the kernels
take only when needed. Inputs are never modified. A training forward keeps its own copies of the
inputs in ``ctx`` (never views of yours), so changing an input between forward and backward does
not change the gradients.

Empty sizes: ``T == 0`` returns outputs of shape ``(0, B, H)`` and the initial states (zeros
when none) as final states; ``B == 0`` returns empty arrays. ``I == 0`` or ``H == 0`` raise
``ValueError``. NaN/Inf in the inputs propagate to the results.

Dimension legend: T steps, B batch, I input features, H units, G gates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastrnn import _backend
from fastrnn._cells import CELLS, RNNGradients
from fastrnn._validation import (
    as_float_array,
    check_activation,
    check_sizes,
    check_states,
    optional_float_array,
    optional_mask,
)

__all__ = [
    "simple_rnn_forward",
    "simple_rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
]


@dataclass
class KernelContext:
    """What a training forward keeps for its backward.

    The arrays in ``args`` are the call's own copies (never views of the caller's arrays), so
    changing an input or a weight between forward and backward cannot change the gradients.
    """

    cell: str
    args: dict
    workspace: object
    num_states: int
    backend: object


def _forward(
    cell: str,
    x,
    kernel,
    recurrent_kernel,
    bias,
    initial_state,
    mask,
    *,
    activation: str,
    recurrent_activation: str,
    reset_after: bool,
    go_backwards: bool,
    dropout_mask,
    recurrent_dropout_mask,
    training: bool,
):
    spec = CELLS[cell]
    backend = _backend.for_array(x)
    own = bool(training)  # a training call keeps its inputs for backward: never the caller's
    x = as_float_array(x, "x", backend=backend, prepare=False)  # copied after the size checks
    check_activation(activation, "activation")
    check_activation(recurrent_activation, "recurrent_activation")
    if x.ndim != 3:
        raise ValueError(f"x must be 3-D with shape (T, B, I) (time-major), got shape {x.shape}")
    steps, batch, features = x.shape
    recurrent_kernel = as_float_array(recurrent_kernel, "recurrent_kernel", prepare=False)
    if recurrent_kernel.ndim != 2:
        raise ValueError(
            f"recurrent_kernel must be 2-D with shape (H, {spec.gates}*H), "
            f"got shape {recurrent_kernel.shape}"
        )
    units = recurrent_kernel.shape[0]
    check_sizes(steps, batch, features, spec.gates, units)
    x = backend.prepare(x, "x", own=own)
    dtype = x.dtype
    args = dict(
        cell=cell,
        x=x,
        kernel=as_float_array(kernel, "kernel", dtype, backend, own=own),
        recurrent_kernel=as_float_array(
            recurrent_kernel, "recurrent_kernel", dtype, backend, own=own
        ),
        bias=optional_float_array(bias, "bias", dtype, backend, own=own),
        mask=optional_mask(mask, backend, own=own),
        dropout_mask=optional_float_array(dropout_mask, "dropout_mask", dtype, backend, own=own),
        recurrent_dropout_mask=optional_float_array(
            recurrent_dropout_mask, "recurrent_dropout_mask", dtype, backend, own=own
        ),
        activation=activation,
        recurrent_activation=recurrent_activation,
        reset_after=bool(reset_after),
        go_backwards=bool(go_backwards),
    )
    states = check_states(initial_state, spec, batch, units, dtype, backend, own=own)
    args["h0"] = states[0]
    args["c0"] = states[1] if len(states) > 1 else None
    module = backend.module
    with backend.on_device_of(x):
        outputs = backend.empty((steps, batch, units), dtype)
        final_states = [backend.empty((batch, units), dtype) for _ in range(spec.num_states)]
        workspace = None
        if training:
            size = module.workspace_size(cell, steps, batch, units, args["reset_after"])
            workspace = backend.empty((size,), dtype)
        module.forward(
            **args,
            outputs=outputs,
            h_last=final_states[0],
            c_last=final_states[1] if spec.num_states > 1 else None,
            workspace=workspace,
            stream=backend.stream(),
        )
    ctx = KernelContext(cell, args, workspace, spec.num_states, backend) if training else None
    return outputs, final_states, ctx


def _backward(ctx, d_outputs, d_final_states, cell: str) -> RNNGradients:
    if ctx is None:
        raise ValueError(
            "ctx is None: call the forward with training=True to get a context for backward"
        )
    if not isinstance(ctx, KernelContext):
        raise TypeError(
            f"ctx must be the context returned by fastrnn.ops.{cell}_forward(training=True), "
            f"got {type(ctx).__name__}"
        )
    if ctx.cell != cell:
        raise ValueError(f"ctx comes from {ctx.cell}_forward, not {cell}_forward")
    backend, args = ctx.backend, ctx.args
    x = args["x"]
    dtype = x.dtype
    steps, batch, features = x.shape
    units = args["recurrent_kernel"].shape[0]
    gh = args["recurrent_kernel"].shape[1]
    d_outputs = optional_float_array(d_outputs, "d_outputs", dtype, backend)
    if d_outputs is not None and d_outputs.shape != (steps, batch, units):
        raise ValueError(
            f"d_outputs must have shape (T, B, H) = {(steps, batch, units)}, got {d_outputs.shape}"
        )
    if d_final_states is None:
        d_final_states = [None] * ctx.num_states
    if not isinstance(d_final_states, Sequence) or len(d_final_states) != ctx.num_states:
        raise ValueError(
            f"d_final_states must be a list of {ctx.num_states} arrays (or None entries)"
        )
    d_states = []
    for k, d in enumerate(d_final_states):
        d = optional_float_array(d, f"d_final_states[{k}]", dtype, backend)
        if d is not None and d.shape != (batch, units):
            raise ValueError(
                f"d_final_states[{k}] must have shape (B, H) = {(batch, units)}, got {d.shape}"
            )
        d_states.append(d)
    with backend.on_device_of(x):
        grads = RNNGradients(
            dx=backend.empty((steps, batch, features), dtype),
            dkernel=backend.empty((features, gh), dtype),
            drecurrent_kernel=backend.empty((units, gh), dtype),
            dbias=None if args["bias"] is None else backend.empty(args["bias"].shape, dtype),
            dinitial_state=[backend.empty((batch, units), dtype) for _ in range(ctx.num_states)],
        )
        backend.module.backward(
            **args,
            workspace=ctx.workspace,
            d_outputs=d_outputs,
            d_h_last=d_states[0],
            d_c_last=d_states[1] if len(d_states) > 1 else None,
            dx=grads.dx,
            dkernel=grads.dkernel,
            drecurrent_kernel=grads.drecurrent_kernel,
            dbias=grads.dbias,
            dh0=grads.dinitial_state[0],
            dc0=grads.dinitial_state[1] if ctx.num_states > 1 else None,
            stream=backend.stream(),
        )
    return grads


def simple_rnn_forward(
    x,
    kernel,
    recurrent_kernel,
    bias=None,
    initial_state=None,
    mask=None,
    *,
    activation: str = "tanh",
    go_backwards: bool = False,
    dropout_mask=None,
    recurrent_dropout_mask=None,
    training: bool = False,
):
    """SimpleRNN forward: ``h_t = activation(xd_t @ kernel + bias + hd_{t-1} @ recurrent_kernel)``.

    Args:
        x: (T, B, I) float32/float64, time-major.
        kernel: (I, H). recurrent_kernel: (H, H). bias: (H,) or None.
        initial_state: None (zeros) or ``[h0]`` with h0 (B, H).
        mask: None or bool (T, B); a False step carries the state and repeats the last output.
        activation: one of "tanh", "relu", "sigmoid", "hard_sigmoid", "linear".
        go_backwards: process the sequence in reverse; outputs come in processing order.
        dropout_mask: None or (B, I), multiplies every x_t. recurrent_dropout_mask: None or (B, H).
        training: also return the context that ``simple_rnn_backward`` needs.

    Returns:
        ``(outputs (T, B, H), [h_last (B, H)], ctx or None)``.

    Raises:
        TypeError: non-float dtypes, mixed dtypes, a non-bool mask.
        ValueError: shapes that disagree (the message names the argument and the expected shape).
    """
    return _forward(
        "simple_rnn",
        x,
        kernel,
        recurrent_kernel,
        bias,
        initial_state,
        mask,
        activation=activation,
        recurrent_activation="sigmoid",
        reset_after=False,
        go_backwards=go_backwards,
        dropout_mask=dropout_mask,
        recurrent_dropout_mask=recurrent_dropout_mask,
        training=training,
    )


def lstm_forward(
    x,
    kernel,
    recurrent_kernel,
    bias=None,
    initial_state=None,
    mask=None,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    go_backwards: bool = False,
    dropout_mask=None,
    recurrent_dropout_mask=None,
    training: bool = False,
):
    """LSTM forward (Keras gate order i, f, c, o).

    Args: as ``simple_rnn_forward``, with kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,),
    initial_state ``[h0, c0]`` and ``recurrent_activation`` for the i, f, o gates.

    Returns:
        ``(outputs (T, B, H), [h_last, c_last], ctx or None)``.
    """
    return _forward(
        "lstm",
        x,
        kernel,
        recurrent_kernel,
        bias,
        initial_state,
        mask,
        activation=activation,
        recurrent_activation=recurrent_activation,
        reset_after=False,
        go_backwards=go_backwards,
        dropout_mask=dropout_mask,
        recurrent_dropout_mask=recurrent_dropout_mask,
        training=training,
    )


def gru_forward(
    x,
    kernel,
    recurrent_kernel,
    bias=None,
    initial_state=None,
    mask=None,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    go_backwards: bool = False,
    dropout_mask=None,
    recurrent_dropout_mask=None,
    training: bool = False,
):
    """GRU forward (Keras gate order z, r, h).

    Args: as ``simple_rnn_forward``, with kernel (I, 3H), recurrent_kernel (H, 3H), bias (3H,) or,
    with ``reset_after=True`` (Keras 3 default, cuDNN formulation), (2, 3H) = [input, recurrent].

    Returns:
        ``(outputs (T, B, H), [h_last], ctx or None)``.
    """
    return _forward(
        "gru",
        x,
        kernel,
        recurrent_kernel,
        bias,
        initial_state,
        mask,
        activation=activation,
        recurrent_activation=recurrent_activation,
        reset_after=reset_after,
        go_backwards=go_backwards,
        dropout_mask=dropout_mask,
        recurrent_dropout_mask=recurrent_dropout_mask,
        training=training,
    )


def simple_rnn_backward(ctx, d_outputs=None, d_final_states=None) -> RNNGradients:
    """BPTT for ``simple_rnn_forward(training=True)``.

    Args:
        ctx: the context the forward returned.
        d_outputs: None or (T, B, H), gradient of the outputs (processing order).
        d_final_states: None or ``[dh_last]`` (entries may be None).

    Returns:
        ``RNNGradients(dx, dkernel, drecurrent_kernel, dbias, dinitial_state)``.
    """
    return _backward(ctx, d_outputs, d_final_states, "simple_rnn")


def lstm_backward(ctx, d_outputs=None, d_final_states=None) -> RNNGradients:
    """BPTT for ``lstm_forward(training=True)``; ``d_final_states`` is ``[dh_last, dc_last]``."""
    return _backward(ctx, d_outputs, d_final_states, "lstm")


def gru_backward(ctx, d_outputs=None, d_final_states=None) -> RNNGradients:
    """BPTT for ``gru_forward(training=True)``."""
    return _backward(ctx, d_outputs, d_final_states, "gru")
