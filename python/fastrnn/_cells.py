"""Cell descriptions shared by the reference, the kernels' Python wrappers and the layers.

Dimension legend used throughout fastrnn:
    T  time steps        B  batch            I  input features
    H  hidden units      G  gates per cell: 1 SimpleRNN, 4 LSTM (i, f, c, o), 3 GRU (z, r, h)

Functional contract (identical for ``fastrnn.reference`` and ``fastrnn.ops``)::

    outputs, final_states, ctx = <cell>_forward(
        x,                      # (T, B, I)   time-major
        kernel,                 # (I, G*H)    Keras layout, gate blocks in Keras order
        recurrent_kernel,       # (H, G*H)
        bias=None,              # (G*H,) or, GRU reset_after=True, (2, 3*H): [input, recurrent]
        initial_state=None,     # None or a list of (B, H) arrays: [h0] or [h0, c0] for LSTM
        mask=None,              # None or bool (T, B), in input time order
        *, <activations>, go_backwards=False,
        dropout_mask=None,            # None or (B, I): multiplies x_t before the input product
        recurrent_dropout_mask=None,  # None or (B, H): multiplies h_prev in the recurrent product
        training=False)               # True: also return ctx for backward
    # outputs (T, B, H) in processing order; final_states list of (B, H); ctx or None

    grads = <cell>_backward(ctx, d_outputs, d_final_states)
    # d_outputs (T, B, H) or None; d_final_states a list (entries may be None) or None
    # grads: RNNGradients(dx, dkernel, drecurrent_kernel, dbias, dinitial_state)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastrnn.activations import RECURRENT as ACTIVATIONS  # noqa: F401 (re-exported)


class RNNGradients(NamedTuple):
    """Gradients returned by every ``<cell>_backward``.

    Attributes:
        dx: (T, B, I), in the input's time order.
        dkernel: (I, G*H).
        drecurrent_kernel: (H, G*H).
        dbias: same shape as the bias, or None when the forward had no bias.
        dinitial_state: list of (B, H) arrays, one per state (h, or h and c).
    """

    dx: np.ndarray
    dkernel: np.ndarray
    drecurrent_kernel: np.ndarray
    dbias: np.ndarray | None
    dinitial_state: list


@dataclass(frozen=True)
class CellSpec:
    """What distinguishes one recurrent cell from another, as a small table.

    Everything above the kernels that depends on the cell (layers, ops, tests, benchmarks) reads
    it from here instead of testing the cell's name.

    Attributes:
        name: functional name prefix (``simple_rnn``, ``lstm``, ``gru``): ``ops.<name>_forward``.
        gates: G, the number of gate blocks in the kernel's columns.
        gate_names: gate block order in Keras's layout.
        state_names: names of the recurrent states, in Keras's order.
        recurrent_activation: whether the cell has a ``recurrent_activation`` (its gates).
        options: the cell's own keyword options of ``ops.<name>_forward`` (e.g. ``reset_after``).
        split_bias_option: the boolean option that, when true, gives the bias two rows
            ``[input bias, recurrent bias]`` (GRU's ``reset_after``); None if there is none.
    """

    name: str
    gates: int
    gate_names: tuple
    state_names: tuple
    recurrent_activation: bool = True
    options: tuple = ()
    split_bias_option: str | None = None

    @property
    def num_states(self) -> int:
        return len(self.state_names)

    def kernel_shape(self, input_dim: int, units: int) -> tuple:
        return (input_dim, self.gates * units)

    def recurrent_kernel_shape(self, units: int) -> tuple:
        return (units, self.gates * units)

    def bias_shape(self, units: int, **options) -> tuple:
        if self.split_bias_option is not None and options.get(self.split_bias_option, False):
            return (2, self.gates * units)
        return (self.gates * units,)

    def forward(self, module):
        """``module.<name>_forward`` (``module`` is ``fastrnn.ops`` or ``fastrnn.reference``)."""
        return getattr(module, f"{self.name}_forward")

    def backward(self, module):
        """``module.<name>_backward``."""
        return getattr(module, f"{self.name}_backward")


SIMPLE_RNN = CellSpec("simple_rnn", 1, ("h",), ("h",), recurrent_activation=False)
LSTM = CellSpec("lstm", 4, ("i", "f", "c", "o"), ("h", "c"))
GRU = CellSpec(
    "gru", 3, ("z", "r", "h"), ("h",), options=("reset_after",), split_bias_option="reset_after"
)
CELLS = {spec.name: spec for spec in (SIMPLE_RNN, LSTM, GRU)}
