"""Weight initializers with Keras's names and formulas, drawn from a NumPy Generator.

Values follow Keras's distributions (not its random streams: the same seed gives different
numbers than Keras). Supported names: ``glorot_uniform``, ``glorot_normal``, ``he_uniform``,
``he_normal``, ``lecun_uniform``, ``lecun_normal``, ``orthogonal``, ``zeros``, ``ones``,
``uniform`` / ``random_uniform`` (±0.05), ``normal`` / ``random_normal`` (stddev 0.05) and
``truncated_normal`` (stddev 0.05, truncated at two standard deviations).

The ``*_normal`` variance-scaling initializers draw, as Keras's ``VarianceScaling`` does, from a
normal distribution truncated at two standard deviations (values outside are redrawn) whose
standard deviation is ``sqrt(scale / n) / 0.87962566103423978``, so that the truncated values have
variance ``scale / n`` (n = fan_in for He and LeCun, (fan_in + fan_out) / 2 for Glorot).
"""

from __future__ import annotations

import math

import numpy as np


def _fans(shape: tuple) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _orthogonal(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    rows, cols = math.prod(shape[:-1]), shape[-1]
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape)


def _truncated_standard_normal(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Standard normal draws restricted to [-2, 2]: values outside are redrawn (Keras's rule)."""
    z = rng.standard_normal(shape)
    outside = np.abs(z) > 2.0
    while outside.any():
        z[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(z) > 2.0
    return z


def _variance_scaling(shape, rng, scale: float, mode: str, distribution: str) -> np.ndarray:
    """Keras's ``VarianceScaling``: variance ``scale / n`` with n the fan named by ``mode``.

    ``truncated_normal`` divides the standard deviation by 0.87962566103423978 (the standard
    deviation of a unit normal truncated to +-2) so that the truncated draws keep variance
    ``scale / n``; ``uniform`` draws from U(-sqrt(3 scale / n), sqrt(3 scale / n)).
    """
    fan_in, fan_out = _fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    scale = scale / max(1.0, n)
    if distribution == "truncated_normal":
        std = math.sqrt(scale) / 0.87962566103423978
        return _truncated_standard_normal(shape, rng) * std
    limit = math.sqrt(3.0 * scale)
    return rng.uniform(-limit, limit, shape)


def _glorot_uniform(shape, rng):
    return _variance_scaling(shape, rng, 1.0, "fan_avg", "uniform")


def _glorot_normal(shape, rng):
    return _variance_scaling(shape, rng, 1.0, "fan_avg", "truncated_normal")


def _he_uniform(shape, rng):
    return _variance_scaling(shape, rng, 2.0, "fan_in", "uniform")


def _he_normal(shape, rng):
    return _variance_scaling(shape, rng, 2.0, "fan_in", "truncated_normal")


def _lecun_uniform(shape, rng):
    return _variance_scaling(shape, rng, 1.0, "fan_in", "uniform")


def _lecun_normal(shape, rng):
    return _variance_scaling(shape, rng, 1.0, "fan_in", "truncated_normal")


_TABLE = {
    "glorot_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "he_uniform": _he_uniform,
    "he_normal": _he_normal,
    "lecun_uniform": _lecun_uniform,
    "lecun_normal": _lecun_normal,
    "orthogonal": _orthogonal,
    "zeros": lambda shape, rng: np.zeros(shape),
    "ones": lambda shape, rng: np.ones(shape),
    "uniform": lambda shape, rng: rng.uniform(-0.05, 0.05, shape),
    "random_uniform": lambda shape, rng: rng.uniform(-0.05, 0.05, shape),
    "normal": lambda shape, rng: rng.standard_normal(shape) * 0.05,
    "random_normal": lambda shape, rng: rng.standard_normal(shape) * 0.05,
    "truncated_normal": lambda shape, rng: _truncated_standard_normal(shape, rng) * 0.05,
}

NAMES = tuple(_TABLE)


def check(name: str, argument: str) -> str:
    """Validates an initializer name.

    Raises:
        ValueError: unknown name, naming ``argument`` and listing the valid names.
    """
    if not isinstance(name, str) or name not in _TABLE:
        raise ValueError(f"Unknown {argument} {name!r}. Valid names: {', '.join(NAMES)}.")
    return name


def initialize(name: str, shape: tuple, rng: np.random.Generator, dtype) -> np.ndarray:
    """Draws a new array of ``shape`` from initializer ``name``."""
    return np.ascontiguousarray(_TABLE[name](tuple(shape), rng), dtype=dtype)


_global_rng = np.random.default_rng()


def set_random_seed(seed: int | None) -> None:
    """Seeds the generator that layers without a ``seed`` argument draw weights and masks from.

    Example:
        >>> fastrnn.initializers.set_random_seed(0)  # reproducible model construction
    """
    global _global_rng
    _global_rng = np.random.default_rng(seed)


def make_rng(seed: int | None) -> np.random.Generator:
    """A generator for one layer: seeded from ``seed`` or, when None, from the global generator."""
    if seed is None:
        return np.random.default_rng(_global_rng.integers(0, 2**63))
    return np.random.default_rng(seed)
