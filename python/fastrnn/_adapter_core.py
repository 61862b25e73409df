"""What the framework adapters (``fastrnn.torch``, ``fastrnn.keras``) share; imports no framework.

A fused call is described by a ``Recurrence`` (the cell and its static options) and by named
arrays in fastrnn's layout (Keras's): time-major ``x (T, B, I)``, ``kernel (I, G*H)``,
``recurrent_kernel (H, G*H)``, ``bias (G*H,)`` or GRU ``reset_after`` ``(2, 3*H)``, states
``h0``/``c0`` (B, H), ``mask`` bool (T, B), ``dropout_mask`` (B, I),
``recurrent_dropout_mask`` (B, H). Frameworks whose graphs cannot carry fastrnn's context from
the forward to the backward (TensorFlow's ``numpy_function``, JAX's ``pure_callback``) use
``numpy_forward`` and ``numpy_backward``; the latter recomputes the forward (with
``training=True``) before the fused BPTT.

Dimension legend: T steps, B batch, I input features, H units, G gates.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from fastrnn import ops
from fastrnn._cells import CELLS

#: Argument names in the order the adapters pass them; the first six are differentiable.
ARG_NAMES = (
    "x",
    "kernel",
    "recurrent_kernel",
    "bias",
    "h0",
    "c0",
    "mask",
    "dropout_mask",
    "recurrent_dropout_mask",
)
DIFFERENTIABLE = frozenset(ARG_NAMES[:6])


class Recurrence(NamedTuple):
    """The static description of one fused call (what is not an array).

    Attributes:
        cell: ``"simple_rnn"``, ``"lstm"`` or ``"gru"`` (a ``fastrnn._cells.CELLS`` key).
        activation: fastrnn's name of the candidate / output activation.
        recurrent_activation: fastrnn's name of the gate activation (ignored by SimpleRNN).
        reset_after: GRU's formulation (ignored by the other cells).
        go_backwards: process the sequence in reverse; outputs come in processing order.
    """

    cell: str
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    reset_after: bool = True
    go_backwards: bool = False

    @property
    def num_states(self) -> int:
        return CELLS[self.cell].num_states


@functools.cache
def ops_calls(rec: Recurrence) -> tuple:
    """``(forward, backward, keyword arguments)`` of ``fastrnn.ops`` for ``rec``."""
    spec = CELLS[rec.cell]
    kwargs = {"activation": rec.activation, "go_backwards": rec.go_backwards}
    if spec.recurrent_activation:
        kwargs["recurrent_activation"] = rec.recurrent_activation
    if "reset_after" in spec.options:
        kwargs["reset_after"] = rec.reset_after
    return spec.forward(ops), spec.backward(ops), kwargs


def call_forward(rec: Recurrence, named: dict, training: bool) -> tuple:
    """``ops.<cell>_forward`` on named arrays (absent ones None): ``(outputs, states, ctx)``."""
    forward, _, kwargs = ops_calls(rec)
    h0, c0 = named.get("h0"), named.get("c0")
    initial = None if h0 is None and c0 is None else [h0, c0][: rec.num_states]
    return forward(
        named["x"],
        named["kernel"],
        named["recurrent_kernel"],
        named.get("bias"),
        initial,
        named.get("mask"),
        dropout_mask=named.get("dropout_mask"),
        recurrent_dropout_mask=named.get("recurrent_dropout_mask"),
        training=training,
        **kwargs,
    )


def numpy_forward(rec: Recurrence, names: tuple, *arrays) -> tuple:
    """Inference forward on arrays named by ``names``: ``(outputs, h_last[, c_last])``."""
    outputs, states, _ = call_forward(rec, dict(zip(names, arrays)), training=False)
    return (outputs, *states)


def numpy_backward(rec: Recurrence, names: tuple, *arrays_and_cotangents) -> tuple:
    """Gradients of the differentiable ``names``, in their order, by recompute + fused BPTT.

    ``arrays_and_cotangents`` is the forward's arrays (named by ``names``) followed by the
    cotangents of ``(outputs, h_last[, c_last])``.
    """
    n = len(names)
    named = dict(zip(names, arrays_and_cotangents[:n]))
    d_outputs, *d_states = arrays_and_cotangents[n:]
    _, backward, _ = ops_calls(rec)
    _, _, ctx = call_forward(rec, named, training=True)
    grads = backward(ctx, d_outputs, list(d_states))
    by_name = {
        "x": grads.dx,
        "kernel": grads.dkernel,
        "recurrent_kernel": grads.drecurrent_kernel,
        "bias": grads.dbias,
        "h0": grads.dinitial_state[0],
        "c0": grads.dinitial_state[1] if len(grads.dinitial_state) > 1 else None,
    }
    return tuple(by_name[name] for name in names if name in DIFFERENTIABLE)
