"""Python-side argument checks for ``fastrnn.ops`` (the C++ binding checks again).

Arrays are judged by value: any float32/float64 array is accepted whatever its layout, byte
order, alignment or history (e.g. unpickled), and converted to what the kernels take (C order,
aligned, native byte order) by ``Backend.prepare`` — a copy only when needed.
"""

from __future__ import annotations

import numpy as np

from fastrnn._backend import CPU
from fastrnn._cells import ACTIVATIONS, CellSpec

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _native(dtype: np.dtype) -> np.dtype:
    if dtype in _FLOATS or dtype.kind != "f":  # (the common case first: no new dtype object)
        return dtype
    return dtype.newbyteorder("=")


def check_activation(name, arg: str) -> None:
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"{arg} must be one of {', '.join(map(repr, ACTIVATIONS))}, got {name!r}")


def as_float_array(a, name: str, dtype=None, backend=None, *, own: bool = False, prepare=True):
    """``a`` as a float32/float64 array the kernels accept (a copy only when needed).

    Args:
        a: an array (NumPy, CuPy on the CUDA backend) or an array-like.
        name: the argument's name, for messages.
        dtype: the dtype ``a`` must have (x's), or None to accept either float dtype.
        backend: the call's backend (default: the CPU).
        own: the result must not share memory with ``a`` (kept past the call).
        prepare: False returns ``a`` unconverted (for checks before any copy is made).

    Raises:
        TypeError: ``a`` is None, not float32/float64 (complex included), or not ``dtype``.
    """
    backend = backend if backend is not None else CPU
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    if not hasattr(a, "dtype"):
        a = np.asarray(a)
        if a.dtype == np.float64 and dtype is not None:
            a = a.astype(dtype)
    if _native(a.dtype) not in _FLOATS:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if dtype is not None and _native(a.dtype) != dtype:
        raise TypeError(
            f"{name} has dtype {a.dtype} but x has dtype {dtype}: all float arrays must share "
            "one dtype"
        )
    return backend.prepare(a, name, own=own) if prepare else a


_INT32_MAX = 2**31 - 1


def check_sizes(steps: int, batch: int, features: int, gates: int, units: int) -> None:
    """Rejects sizes the kernels cannot index (BLAS takes 32-bit dimensions)."""
    if steps * batch > _INT32_MAX:
        raise ValueError(f"T*B (steps*batch) is too large: {steps}*{batch} > {_INT32_MAX}")
    if gates * units > _INT32_MAX:
        raise ValueError(f"G*H (gates*units) is too large: {gates}*{units} > {_INT32_MAX}")
    if features > _INT32_MAX:
        raise ValueError(
            f"I (x's last dimension) is too large: {features} > {_INT32_MAX}, the largest "
            "matrix dimension BLAS takes"
        )


def optional_float_array(a, name: str, dtype, backend=None, *, own: bool = False):
    return None if a is None else as_float_array(a, name, dtype, backend, own=own)


def optional_mask(mask, backend=None, *, own: bool = False):
    if mask is None:
        return None
    backend = backend if backend is not None else CPU
    if not hasattr(mask, "dtype"):
        mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must have dtype bool with shape (T, B), got dtype {mask.dtype}")
    return backend.prepare(mask, "mask", own=own)


def check_states(
    initial_state, spec: CellSpec, batch: int, units: int, dtype, backend=None, *, own=False
):
    """Returns a list with one entry per state: an array (B, H) or None (zeros)."""
    n = len(spec.state_names)
    if initial_state is None:
        return [None] * n
    if not isinstance(initial_state, (list, tuple)):
        initial_state = [initial_state] if n == 1 else initial_state
    if not isinstance(initial_state, (list, tuple)) or len(initial_state) != n:
        names = ", ".join(f"{s}0" for s in spec.state_names)
        raise ValueError(f"initial_state must be a list of {n} arrays [{names}] of shape (B, H)")
    out = []
    for k, s in enumerate(initial_state):
        if s is None:
            out.append(None)
            continue
        s = as_float_array(s, f"initial_state[{k}]", dtype, backend, own=own)
        if s.shape != (batch, units):
            raise ValueError(
                f"initial_state[{k}] must have shape (B, H) = {(batch, units)}, got {s.shape}"
            )
        out.append(s)
    return out
