"""Argument checks and small helpers shared by the reshaping, pooling, convolution and
normalization layers (``base.py`` holds the ones every layer uses)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fastrnn.layers.base import unique_name

DATA_FORMATS = ("channels_last", "channels_first")


def default_name(kwargs: dict, base: str) -> dict:
    """Gives ``kwargs`` Keras's automatic name ``base``, ``base_1`` ... when it names none.

    For class names with a digit before a capital (``Conv1D`` -> ``conv1d``, not ``conv1_d``),
    which the generic snake-casing in ``base.py`` splits differently from Keras.
    """
    if kwargs.get("name") is None:
        kwargs["name"] = unique_name(base)
    return kwargs


def check_data_format(value: Any, owner: str) -> str:
    """``None`` means ``"channels_last"`` (Keras's default ``image_data_format``).

    Raises:
        ValueError: anything but None, ``"channels_last"`` or ``"channels_first"``.
    """
    if value is None:
        return "channels_last"
    if not isinstance(value, str) or value.lower() not in DATA_FORMATS:
        raise ValueError(
            f"{owner}: data_format must be 'channels_last' or 'channels_first', got {value!r}."
        )
    return value.lower()


def check_bool(value: Any, argument: str, owner: str) -> bool:
    """Accepts Python and NumPy booleans only (so that ``keepdims="no"`` is not silently True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {argument} must be a bool, got {value!r}.")
    return bool(value)


def check_int_tuple1(value: Any, argument: str, owner: str, allow_zero: bool = False) -> int:
    """One positive int given as ``n``, ``(n,)`` or ``[n]`` (Keras's ``standardize_tuple``).

    Raises:
        ValueError: not an int, a 1-tuple of an int, or not positive.
    """
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(
                f"{owner}: {argument} must be an int or a tuple of 1 int, got {value!r}."
            )
        (value,) = value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}: {argument} must be an int or a tuple of 1 int, got {value!r}.")
    low = 0 if allow_zero else 1
    if value < low:
        raise ValueError(
            f"{owner}: {argument} must be {'>= 0' if allow_zero else 'positive'}, got {value!r}."
        )
    return int(value)


def warn_mask_dropped(layer: Any, mask: Any) -> None:
    """Keras's warning when a layer that does not support masking receives a mask."""
    if mask is not None:
        warnings.warn(
            f"Layer '{layer.name}' (of type {type(layer).__name__}) was passed an input with a "
            "mask attached to it. However, this layer does not support masking and will "
            "therefore destroy the mask information. Downstream layers will not see the mask.",
            stacklevel=3,
        )


def check_rank(layer: Any, x: np.ndarray, rank: int) -> None:
    """Raises ValueError unless ``x`` has rank ``rank``."""
    if x.ndim != rank:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) expects inputs of rank {rank}, got "
            f"shape {x.shape}."
        )
