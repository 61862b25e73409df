"""The one list of benchmark shapes and cells, shared by ``compare.py`` and ``test_bench_cpu.py``.

Dimension legend: T steps, B batch, I input features, H units, G gates.
"""

from __future__ import annotations

from typing import NamedTuple

INFERENCE = "inference"
FWD_BWD = "fwd+bwd"


class Shape(NamedTuple):
    """One named benchmark shape and the modes it is timed in."""

    name: str
    T: int
    B: int
    I: int  # noqa: E741 (the dimension legend's name)
    H: int
    modes: tuple

    @property
    def label(self) -> str:
        return f"{self.name} (T{self.T} B{self.B} I{self.I} H{self.H})"


class Cell(NamedTuple):
    """One benchmarked cell: its fastrnn ops prefix, gate count and PyTorch module name."""

    name: str
    op: str  # fastrnn.ops.<op>_forward / <op>_backward
    gates: int
    torch_module: str  # torch.nn.<torch_module>


SHAPES = [
    Shape("latency", 100, 1, 256, 256, (INFERENCE,)),
    Shape("small", 50, 8, 256, 256, (INFERENCE, FWD_BWD)),
    Shape("medium", 50, 64, 512, 512, (INFERENCE, FWD_BWD)),
    Shape("wide", 25, 32, 1024, 1024, (INFERENCE, FWD_BWD)),
    Shape("tiny", 12, 1, 1, 3, (INFERENCE,)),
]

# GRU is timed with reset_after=True (Keras 3's default), which is PyTorch's formulation.
CELLS = [
    Cell("rnn-tanh", "simple_rnn", 1, "RNN"),
    Cell("lstm", "lstm", 4, "LSTM"),
    Cell("gru", "gru", 3, "GRU"),
]


class Case(NamedTuple):
    """One benchmark row: a shape, a cell and a mode."""

    shape: Shape
    cell: Cell
    mode: str

    @property
    def id(self) -> str:
        return f"{self.shape.name}-{self.cell.name}-{self.mode}"


CASES = [Case(shape, cell, mode) for shape in SHAPES for cell in CELLS for mode in shape.modes]


def forward_flops(shape: Shape, cell: Cell) -> int:
    """Matmul flops of one forward: ``2*T*B*G*H*(I+H)``."""
    return 2 * shape.T * shape.B * cell.gates * shape.H * (shape.I + shape.H)


def case_flops(case: Case) -> int:
    """Flops of one timed call: the forward, plus twice that for the backward in fwd+bwd."""
    fwd = forward_flops(case.shape, case.cell)
    return fwd if case.mode == INFERENCE else 3 * fwd


# The GPU grid (compare.py --gpu, against cuDNN): every (T, B, H) below with I = H.
GPU_HIDDEN = (256, 512, 1024, 2048)
GPU_BATCH = (1, 4, 16, 64, 128)
GPU_STEPS = (50, 100)
GPU_QUICK = ((50, 1, 256), (50, 16, 512), (50, 64, 1024), (100, 128, 2048))  # (T, B, H)
