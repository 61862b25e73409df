"""The one list of benchmark shapes and cells, shared by ``compare.py``, ``compare_gpu.py``,
``frameworks.py`` and ``test_bench_cpu.py``.

Cells are described by fastrnn's own cell table (``fastrnn._cells.CellSpec``) plus the name of
the PyTorch module that computes the same thing.

Dimension legend: T steps, B batch, I input features, H units, G gates.
"""

from __future__ import annotations

from typing import NamedTuple

from fastrnn._cells import CELLS, CellSpec

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
    group: str = "core"  # "core" (the original grid) or "tutorial" (Keras-tutorial sizes)

    @property
    def label(self) -> str:
        return f"{self.name} (T{self.T} B{self.B} I{self.I} H{self.H})"


class Cell(NamedTuple):
    """One benchmarked cell: its name in the tables, fastrnn's spec and PyTorch's module."""

    name: str
    spec: CellSpec
    torch_module: str  # torch.nn.<torch_module>

    @property
    def op(self) -> str:
        return self.spec.name  # fastrnn.ops.<op>_forward / <op>_backward

    @property
    def gates(self) -> int:
        return self.spec.gates


BOTH = (INFERENCE, FWD_BWD)
SHAPES = [
    Shape("latency", 100, 1, 256, 256, (INFERENCE,)),
    Shape("small", 50, 8, 256, 256, BOTH),
    Shape("medium", 50, 64, 512, 512, BOTH),
    Shape("wide", 25, 32, 1024, 1024, BOTH),
    Shape("tiny", 12, 1, 1, 3, (INFERENCE,)),
    # What Keras tutorials train: the IMDB LSTM (Embedding(10000, 32) -> LSTM(32), T=200,
    # B=128), small forecasting models, and the sizes between (H 32-128, I 8-32, B 32-128,
    # T 50-200).
    Shape("imdb", 200, 128, 32, 32, BOTH, "tutorial"),
    Shape("forecast", 50, 32, 8, 64, BOTH, "tutorial"),
    Shape("text", 200, 32, 32, 128, BOTH, "tutorial"),
    Shape("batch128", 50, 128, 32, 128, BOTH, "tutorial"),
]

# GRU is timed with reset_after=True (Keras 3's default), which is PyTorch's formulation.
CELLS_TIMED = [
    Cell("rnn-tanh", CELLS["simple_rnn"], "RNN"),
    Cell("lstm", CELLS["lstm"], "LSTM"),
    Cell("gru", CELLS["gru"], "GRU"),
]


class Case(NamedTuple):
    """One benchmark row: a shape, a cell and a mode."""

    shape: Shape
    cell: Cell
    mode: str

    @property
    def id(self) -> str:
        return f"{self.shape.name}-{self.cell.name}-{self.mode}"


CASES = [
    Case(shape, cell, mode) for shape in SHAPES for cell in CELLS_TIMED for mode in shape.modes
]
CASES_BY_ID = {case.id: case for case in CASES}

# Rows timed again next to other thread pools (compare.py --contention): each call after a NumPy
# matmul, after a PyTorch op, and with another CPU-bound process running.
CONTENTION_ROWS = [
    "latency-rnn-tanh-inference",
    "latency-lstm-inference",
    "latency-gru-inference",
    "small-lstm-inference",
    "small-gru-fwd+bwd",
    "imdb-lstm-fwd+bwd",
]
CONTENTION_MODES = ("numpy", "torch", "process", "numpy-quiet", "torch-quiet")
# The "-quiet" modes repeat "numpy" and "torch" in a process whose environment tells that
# library's idle threads not to spin: NumPy's OpenBLAS spins ~0.1 s after each op (2^28 cycles)
# and PyTorch's libgomp ~10 ms, holding a core that the next fastrnn call needs (README).
QUIET_ENV = {
    "numpy-quiet": {"OPENBLAS_THREAD_TIMEOUT": "4"},
    "torch-quiet": {"OMP_WAIT_POLICY": "passive"},
}


def forward_flops(shape: Shape, cell: Cell) -> int:
    """Matmul flops of one forward: ``2*T*B*G*H*(I+H)``."""
    return 2 * shape.T * shape.B * cell.gates * shape.H * (shape.I + shape.H)


def case_flops(case: Case) -> int:
    """Flops of one timed call: the forward, plus twice that for the backward in fwd+bwd."""
    fwd = forward_flops(case.shape, case.cell)
    return fwd if case.mode == INFERENCE else 3 * fwd


# The GPU grid (compare_gpu.py, against cuDNN): every (T, B, H) below with I = H.
GPU_HIDDEN = (256, 512, 1024, 2048)
GPU_BATCH = (1, 4, 16, 64, 128)
GPU_STEPS = (50, 100)
GPU_QUICK = ((50, 1, 256), (50, 16, 512), (50, 64, 1024), (100, 128, 2048))  # (T, B, H)
