"""Activation functions over NumPy arrays and their derivatives: the one table of them.

The reference implementation (``fastrnn.reference``) and the non-recurrent layers (``Dense``)
both read it. Derivatives are written from the saved *output* ``y = f(x)``, as the kernels'
``csrc/include/fastrnn/activations.h`` writes them, so backward never recomputes a
transcendental. ``RECURRENT`` lists what the fused kernels compute (a test checks that it equals
the compiled modules' list); ``softmax`` exists for ``Dense`` only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# What the recurrent kernels implement, in the order of the C++ enum ``fastrnn::Activation``.
RECURRENT = ("tanh", "relu", "sigmoid", "hard_sigmoid", "linear")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so that exp never overflows; same value as 1 / (1 + exp(-x)).
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    # Keras 3: relu6(x + 3) / 6 == clip(x / 6 + 0.5, 0, 1).
    return np.clip(x / 6 + 0.5, 0, 1)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# name -> (f(x), f'(x) written from y = f(x)); softmax has no elementwise derivative.
_TABLE: dict[str, tuple[Callable, Callable | None]] = {
    "tanh": (np.tanh, lambda y: 1 - y * y),
    "relu": (lambda x: np.maximum(x, 0), lambda y: (y > 0).astype(y.dtype)),
    "sigmoid": (_sigmoid, lambda y: y * (1 - y)),
    "hard_sigmoid": (
        _hard_sigmoid,
        lambda y: np.where((y > 0) & (y < 1), 1 / 6, 0).astype(y.dtype),
    ),
    "linear": (lambda x: x, np.ones_like),
    "softmax": (_softmax, None),
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
    valid = RECURRENT if recurrent else NAMES
    if not isinstance(name, str) or name not in valid:
        raise ValueError(
            f"Unknown {argument} {name!r}. Valid names: {', '.join(valid)} (or None for linear)."
        )
    return name


def _entry(name: str) -> tuple[Callable, Callable | None]:
    entry = _TABLE.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"Unknown activation {name!r}; valid names are: {', '.join(NAMES)}.")
    return entry


def forward(name: str, x: np.ndarray) -> np.ndarray:
    """Applies activation ``name`` to ``x`` (a new array; ``x`` is not modified).

    Raises:
        ValueError: unknown name.
    """
    return _entry(name)[0](x)


def derivative(name: str, y: np.ndarray) -> np.ndarray:
    """The elementwise derivative f'(x) at the point whose output is ``y = f(x)``.

    tanh: 1 - y^2; sigmoid: y (1 - y); relu: 1 where y > 0; hard_sigmoid: 1/6 where 0 < y < 1;
    linear: 1.

    Raises:
        ValueError: unknown name, or ``softmax`` (not elementwise: use ``backward``).
    """
    d = _entry(name)[1]
    if d is None:
        raise ValueError(f"activation {name!r} has no elementwise derivative; use backward()")
    return d(y)


def backward(name: str, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dL/dx given the output ``y = f(x)`` and dL/dy (softmax over the last axis included)."""
    if name == "softmax":
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return dy * derivative(name, y)
