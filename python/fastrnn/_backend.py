"""Which compiled module runs a call: NumPy arrays go to ``_cpu``, CUDA arrays to ``_cuda``."""

from __future__ import annotations

import ctypes
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


@dataclass(frozen=True)
class Backend:
    name: str
    module: object
    xp: object  # the array namespace (numpy or cupy)


CPU = Backend("cpu", _cpu, np)


def is_device_array(a) -> bool:
    return hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray)


def for_array(x) -> Backend:
    """The backend for ``x``: CPU for NumPy (or array-likes), CUDA for device arrays."""
    if is_device_array(x):
        raise NotImplementedError(
            "x is a CUDA array but this build of fastrnn has no CUDA module (fastrnn._cuda)"
        )
    return CPU
