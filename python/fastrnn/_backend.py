"""Which compiled module runs a call: NumPy arrays go to ``_cpu``, CUDA arrays to ``_cuda``.

Both modules have one contract (``csrc/bindings/contract.h``): the same ``forward``/``backward``
argument lists, caller-allocated outputs and workspace, the same validation. A ``Backend`` pairs
a module with its array namespace (NumPy or CuPy), so ``fastrnn.ops`` allocates and calls alike
on either device.

A call runs on the CUDA backend when ``x`` exports ``__cuda_array_interface__`` (a CuPy array).
That needs three things, and the error says which one is missing:

* ``fastrnn._cuda`` was built (``CudaNotBuiltError``: rebuild with nvcc available);
* CuPy imports (``CudaUnavailableError``);
* the CUDA runtime sees a usable GPU (``CudaUnavailableError`` with the runtime's reason).

All arrays of one call must live on one side: a NumPy array among CuPy arrays (or the reverse)
raises ``TypeError``. ``fastrnn.cuda`` is the public face of this module's CUDA checks.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os

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


def is_device_array(a) -> bool:
    return hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray)


class Backend:
    """A compiled module with the array namespace of its device.

    Attributes:
        name: ``"cpu"`` or ``"cuda"``.
        module: ``fastrnn._cpu`` or ``fastrnn._cuda`` (the one contract).
        xp: ``numpy`` or ``cupy``.
    """

    def __init__(self, name: str, module, xp):
        self.name = name
        self.module = module
        self.xp = xp
        self.device = name == "cuda"

    def prepare(self, a, name: str, dtype=None, *, own: bool = False):
        """``a`` as an array this backend's module accepts: C order, aligned, native byte order.

        With ``own``, the result never shares memory with ``a`` (a copy when needed), so a
        caller who changes ``a`` later cannot change what was kept.

        Raises:
            TypeError: ``a`` lives on the other device than this call's ``x``.
        """
        if (
            not self.device
            and type(a) is np.ndarray
            and dtype is None
            and a.flags.c_contiguous
            and a.flags.aligned
            and a.dtype.isnative
        ):  # the common case, without numpy.require's overhead
            return a.copy() if own else a
        if self.device != is_device_array(a):
            if self.device:
                raise TypeError(
                    "mixing NumPy and CuPy arrays in one call: x is a CUDA array but "
                    f"{name} is a {type(a).__module__}.{type(a).__name__}; move it to the GPU "
                    "first (cupy.asarray)"
                )
            raise TypeError(
                "mixing NumPy and CuPy arrays in one call: x is a NumPy array but "
                f"{name} is a CUDA array ({type(a).__module__}.{type(a).__name__}); pass x as a "
                "CuPy array too, or copy the others to the host (.get())"
            )
        if self.device:
            out = self.xp.ascontiguousarray(a, dtype=dtype)
        elif (
            type(a) is np.ndarray
            and a.ndim == 2
            and a.flags.f_contiguous
            and a.flags.aligned
            and a.dtype in (np.float32, np.float64)
            and (dtype is None or np.dtype(dtype) == a.dtype)
        ):  # a transposed view (e.g. PyTorch's weight.T): a cache-blocked copy, not NumPy's
            out = _cpu._transposed_copy(a.T)
        else:
            if not a.dtype.isnative:  # e.g. big-endian data read from a file
                a = a.astype(a.dtype.newbyteorder("="))
            out = np.require(a, dtype=dtype, requirements=("C", "A"))
        if own and (out is a or out.base is not None):
            out = out.copy()
        return out

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype)

    def stream(self) -> int:
        """The stream a call is enqueued on: CuPy's current stream (0 on the CPU)."""
        return self.xp.cuda.get_current_stream().ptr if self.device else 0

    def on_device_of(self, x):
        """A context that makes ``x``'s GPU current (nothing on the CPU)."""
        return self.xp.cuda.Device(x.device.id) if self.device else contextlib.nullcontext()


CPU = Backend("cpu", _cpu, np)


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
    return Backend("cuda", ext, cupy)


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
