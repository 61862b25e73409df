"""Pointwise activations for the non-recurrent layers, with their backward rules.

The recurrent kernels implement their own activations; this module serves ``Dense`` and lists the
names the recurrent layers accept (``fastrnn._cells.ACTIVATIONS``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fastrnn._cells import ACTIVATIONS as RECURRENT_ACTIVATIONS


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # Split by sign so large |z| never overflows exp.
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


# name -> (forward(z), backward(z, y, dy) -> dz)
_TABLE: dict[str, tuple[Callable, Callable]] = {
    "linear": (lambda z: z, lambda z, y, dy: dy),
    "relu": (lambda z: np.maximum(z, 0), lambda z, y, dy: dy * (z > 0)),
    "tanh": (np.tanh, lambda z, y, dy: dy * (1 - y * y)),
    "sigmoid": (_sigmoid, lambda z, y, dy: dy * y * (1 - y)),
    "hard_sigmoid": (
        lambda z: np.clip(z / 6.0 + 0.5, 0.0, 1.0),
        lambda z, y, dy: dy * ((z > -3) & (z < 3)) / 6.0,
    ),
    "softmax": (_softmax, lambda z, y, dy: y * (dy - (dy * y).sum(axis=-1, keepdims=True))),
}

NAMES = tuple(_TABLE)


def canonical(name: str | None, *, argument: str = "activation", recurrent: bool = False) -> str:
    """Validates an activation name and returns it (``None`` becomes ``"linear"``).

    Args:
        name: activation name or None.
        argument: the constructor argument name, used in the error message.
        recurrent: True to validate against the names the recurrent kernels accept.

    Returns:
        The canonical name.

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    if name is None:
        return "linear"
    valid = RECURRENT_ACTIVATIONS if recurrent else NAMES
    if not isinstance(name, str) or name not in valid:
        raise ValueError(
            f"Unknown {argument} {name!r}. Valid names: {', '.join(valid)} (or None for linear)."
        )
    return name


def forward(name: str, z: np.ndarray) -> np.ndarray:
    """Applies activation ``name`` to ``z`` (a new array; ``z`` is not modified)."""
    return _TABLE[name][0](z)


def backward(name: str, z: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Returns dL/dz given the pre-activation ``z``, the output ``y`` and dL/dy."""
    return _TABLE[name][1](z, y, dy)
