"""fastrnn._cuda: the CUDA kernels behind the one binding contract (csrc/bindings/contract.h).

The same ``forward``/``backward`` as ``fastrnn._cpu``, for arrays exporting
``__cuda_array_interface__`` (``Array`` below: CuPy arrays); work is enqueued on ``stream`` (a
``cudaStream_t`` as an int) and nothing synchronizes the host. Use ``fastrnn.ops``.
"""

from typing import Any

Array = Any  # an object with __cuda_array_interface__ (a cupy.ndarray)

CELLS: tuple[str, ...]
ACTIVATIONS: tuple[str, ...]

def forward(
    cell: str,
    x: Array,
    kernel: Array,
    recurrent_kernel: Array,
    bias: Array | None = None,
    h0: Array | None = None,
    c0: Array | None = None,
    mask: Array | None = None,
    dropout_mask: Array | None = None,
    recurrent_dropout_mask: Array | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    go_backwards: bool = False,
    *,
    outputs: Array,
    h_last: Array,
    c_last: Array | None = None,
    workspace: Array | None = None,
    stream: int = 0,
) -> None: ...
def backward(
    cell: str,
    x: Array,
    kernel: Array,
    recurrent_kernel: Array,
    bias: Array | None = None,
    h0: Array | None = None,
    c0: Array | None = None,
    mask: Array | None = None,
    dropout_mask: Array | None = None,
    recurrent_dropout_mask: Array | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    go_backwards: bool = False,
    *,
    workspace: Array,
    d_outputs: Array | None = None,
    d_h_last: Array | None = None,
    d_c_last: Array | None = None,
    dx: Array,
    dkernel: Array,
    drecurrent_kernel: Array,
    dbias: Array | None = None,
    dh0: Array,
    dc0: Array | None = None,
    stream: int = 0,
) -> None: ...
def workspace_size(cell: str, T: int, B: int, H: int, reset_after: bool = True) -> int: ...
def device_count() -> int: ...
def device_status() -> str: ...
def runtime_version() -> int: ...
def plan(
    cell: str,
    T: int,
    B: int,
    I: int,  # noqa: E741 (the dimension legend's name)
    H: int,
    dtype: str = "float32",
    reset_after: bool = True,
    backward: bool = False,
) -> str: ...
