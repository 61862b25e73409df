"""Python-side argument checks for ``fastrnn.ops`` (the C++ binding checks again)."""

from __future__ import annotations

import numpy as np

from fastrnn._cells import ACTIVATIONS, CellSpec

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_activation(name, arg: str) -> None:
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"{arg} must be one of {', '.join(map(repr, ACTIVATIONS))}, got {name!r}")


def as_float_array(a, name: str, dtype=None, backend=None, contiguous: bool = True) -> np.ndarray:
    """``a`` as a C-contiguous float32/float64 array (a copy only when needed).

    Raises TypeError for other dtypes, or when ``dtype`` is given and ``a`` differs from it.
    """
    xp = backend.xp if backend is not None else np
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    if not hasattr(a, "dtype"):
        a = np.asarray(a)
        if a.dtype == np.float64 and dtype is not None:
            a = a.astype(dtype)
    if a.dtype not in _FLOATS:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {a.dtype} but x has dtype {dtype}: all float arrays must share "
            "one dtype"
        )
    return xp.ascontiguousarray(a) if contiguous else a


_INT32_MAX = 2**31 - 1


def check_sizes(steps: int, batch: int, gates: int, units: int) -> None:
    """Rejects sizes the kernels cannot index (BLAS takes 32-bit dimensions)."""
    if steps * batch > _INT32_MAX:
        raise ValueError(f"T*B (steps*batch) is too large: {steps}*{batch} > {_INT32_MAX}")
    if gates * units > _INT32_MAX:
        raise ValueError(f"G*H (gates*units) is too large: {gates}*{units} > {_INT32_MAX}")


def optional_float_array(a, name: str, dtype, backend=None):
    return None if a is None else as_float_array(a, name, dtype, backend)


def optional_mask(mask, backend=None):
    if mask is None:
        return None
    xp = backend.xp if backend is not None else np
    if not hasattr(mask, "dtype"):
        mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must have dtype bool with shape (T, B), got dtype {mask.dtype}")
    return xp.ascontiguousarray(mask)


def check_states(initial_state, spec: CellSpec, batch: int, units: int, dtype, backend=None):
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
        s = as_float_array(s, f"initial_state[{k}]", dtype, backend)
        if s.shape != (batch, units):
            raise ValueError(
                f"initial_state[{k}] must have shape (B, H) = {(batch, units)}, got {s.shape}"
            )
        out.append(s)
    return out
