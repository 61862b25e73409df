"""Which compiled module runs a call: NumPy arrays go to ``_cpu``, CUDA arrays to ``_cuda``.

A call runs on the CUDA backend when ``x`` exports ``__cuda_array_interface__`` (a CuPy array).
That needs three things, and the error says which one is missing:

* ``fastrnn._cuda`` was built (``CudaNotBuiltError``: rebuild with nvcc available);
* CuPy imports (``CudaUnavailableError``);
* the CUDA runtime sees a usable GPU (``CudaUnavailableError`` with the runtime's reason).

All arrays of one call must live on one side: a NumPy array among CuPy arrays (or the reverse)
raises ``TypeError``.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass

import numpy as np


def _preload_openblas() -> None:
    # _cpu links libscipy_openblas from the scipy-openblas32 wheel; loading it here makes the
    # extension import wherever the two packages are installed (RPATH covers site-packages).
    import scipy_openblas32

    lib = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")
    if os.path.exists(lib):
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)


_preload_openblas()

from fastrnn import _cpu  # noqa: E402


class CudaUnavailableError(RuntimeError):
    """CUDA arrays were passed, but the CUDA backend cannot run them."""


class CudaNotBuiltError(CudaUnavailableError):
    """This build of fastrnn has no CUDA module (``fastrnn._cuda``)."""


@dataclass(frozen=True)
class Backend:
    name: str
    module: object
    xp: object  # the array namespace (numpy or cupy, behind a same-device guard)


def is_device_array(a) -> bool:
    return hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray)


class _Namespace:
    """An array namespace (numpy or cupy) whose ``ascontiguousarray`` refuses the other side's
    arrays with a clear ``TypeError`` (instead of an implicit transfer or a cryptic error)."""

    def __init__(self, module, device: bool):
        self._module = module
        self._device = device

    def __getattr__(self, name):
        return getattr(self._module, name)

    def ascontiguousarray(self, a):
        if self._device and not is_device_array(a):
            raise TypeError(
                "mixing NumPy and CuPy arrays in one call: x is a CUDA array but another "
                f"argument is a {type(a).__module__}.{type(a).__name__}; move it to the GPU "
                "first (cupy.asarray)"
            )
        if not self._device and is_device_array(a):
            raise TypeError(
                "mixing NumPy and CuPy arrays in one call: x is a NumPy array but another "
                f"argument is a CUDA array ({type(a).__module__}.{type(a).__name__}); pass x "
                "as a CuPy array too, or copy the others to the host (.get())"
            )
        return self._module.ascontiguousarray(a)


CPU = Backend("cpu", _cpu, _Namespace(np, device=False))


def _import_cuda_module():
    try:
        from fastrnn import _cuda
    except ImportError as e:
        raise CudaNotBuiltError(
            "x is a CUDA array but this build of fastrnn has no CUDA module (fastrnn._cuda was "
            "not built: reinstall with nvcc on PATH, or FASTRNN_CUDA=ON to make a missing CUDA "
            f"compiler an error) [{e}]"
        ) from e
    return _cuda


@functools.cache
def _cuda_backend() -> Backend:
    ext = _import_cuda_module()
    try:
        import cupy
    except ImportError as e:
        raise CudaUnavailableError(
            "fastrnn._cuda is built but CuPy does not import, so CUDA arrays cannot be "
            f"used (pip install cupy-cuda12x) [{e}]"
        ) from e
    if ext.device_count() < 1:
        raise CudaUnavailableError(
            "fastrnn._cuda is built but finds no usable GPU: " + ext.device_status()
        )
    from fastrnn._cuda_ops import CudaModule

    return Backend("cuda", CudaModule(ext, cupy), _Namespace(cupy, device=True))


def cuda_status() -> str:
    """``"ok"`` when CUDA arrays can be used, else the reason (not built, no CuPy, no GPU)."""
    try:
        _cuda_backend()
    except CudaUnavailableError as e:
        return str(e)
    return "ok"


def cuda_available() -> bool:
    """True when ``fastrnn._cuda`` is built, CuPy imports and a GPU is usable."""
    return cuda_status() == "ok"


def for_array(x) -> Backend:
    """The backend for ``x``: CPU for NumPy (or array-likes), CUDA for device arrays.

    Raises:
        CudaNotBuiltError: ``x`` is a CUDA array and fastrnn was built without CUDA.
        CudaUnavailableError: ``x`` is a CUDA array, the module is built, but CuPy or a usable
            GPU is missing.
    """
    if is_device_array(x):
        return _cuda_backend()
    return CPU
