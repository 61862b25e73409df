"""fastrnn._cpu: the CPU kernels behind the one binding contract (see csrc/bindings/contract.h).

Use ``fastrnn.ops``; this module validates everything again and raises ``ValueError`` /
``TypeError`` naming the argument. Outputs and the training workspace are caller-allocated.
"""

from typing import Any

import numpy as np

CELLS: tuple[str, ...]
ACTIVATIONS: tuple[str, ...]

def forward(
    cell: str,
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    dropout_mask: np.ndarray | None = None,
    recurrent_dropout_mask: np.ndarray | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    go_backwards: bool = False,
    *,
    outputs: np.ndarray,
    h_last: np.ndarray,
    c_last: np.ndarray | None = None,
    workspace: np.ndarray | None = None,
    stream: int = 0,
) -> None: ...
def backward(
    cell: str,
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    dropout_mask: np.ndarray | None = None,
    recurrent_dropout_mask: np.ndarray | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    go_backwards: bool = False,
    *,
    workspace: np.ndarray,
    d_outputs: np.ndarray | None = None,
    d_h_last: np.ndarray | None = None,
    d_c_last: np.ndarray | None = None,
    dx: np.ndarray,
    dkernel: np.ndarray,
    drecurrent_kernel: np.ndarray,
    dbias: np.ndarray | None = None,
    dh0: np.ndarray,
    dc0: np.ndarray | None = None,
    stream: int = 0,
) -> None: ...
def workspace_size(cell: str, T: int, B: int, H: int, reset_after: bool = True) -> int: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def default_num_threads() -> int: ...
def max_threads() -> int: ...
def available_isas() -> list[str]: ...
def get_isa() -> str: ...
def set_isa(name: str) -> None: ...
def scratch_bytes() -> int: ...
def release_scratch() -> int: ...
def _step_forward(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]: ...
def _step_backward(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]: ...
