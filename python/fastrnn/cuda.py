"""Is fastrnn's CUDA backend usable here, and if not, why.

``fastrnn.ops`` runs a call on the GPU when its ``x`` is a CuPy array. That needs the CUDA
module (built when ``nvcc`` was found at install time), CuPy, and a GPU the CUDA runtime can use.

Example:
    >>> import fastrnn.cuda
    >>> fastrnn.cuda.is_available()           # False on a machine without a GPU
    >>> fastrnn.cuda.unavailable_reason()     # e.g. "... finds no usable GPU: ..."
"""

from __future__ import annotations

from fastrnn import _backend

CudaUnavailableError = _backend.CudaUnavailableError
CudaNotBuiltError = _backend.CudaNotBuiltError


def is_built() -> bool:
    """True when this installation has the CUDA module (``fastrnn._cuda``)."""
    try:
        _backend._import_cuda_module()
    except CudaNotBuiltError:
        return False
    return True


def is_available() -> bool:
    """True when CuPy arrays can be passed to ``fastrnn.ops`` (module built, CuPy, a GPU)."""
    return _backend.cuda_available()


def unavailable_reason() -> str | None:
    """None when ``is_available()``, else why not: not built, no CuPy, or the runtime's error."""
    status = _backend.cuda_status()
    return None if status == "ok" else status


__all__ = [
    "CudaNotBuiltError",
    "CudaUnavailableError",
    "is_available",
    "is_built",
    "unavailable_reason",
]
