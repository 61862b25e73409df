"""The ``Layer`` base class and the argument checks every layer shares.

Shapes: B batch, T time steps, F features. Layers are batch-major like Keras: sequences are
(B, T, F). Every layer computes in its ``dtype`` (float32 by default, float64 allowed) and never
modifies its inputs.

NumPy-pipeline protocol, shared by every layer:

* ``y = layer(x, training=True)`` runs the forward pass and keeps what backward needs;
* ``dx = layer.backward(dy)`` returns dL/dx and fills ``layer.gradients``, a list of arrays
  aligned with ``layer.get_weights()`` (overwritten by each backward call, never accumulated).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np

from fastrnn import initializers

_name_counts: dict[str, int] = defaultdict(int)


def _snake(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def unique_name(base: str) -> str:
    """Keras-style automatic names: ``lstm``, ``lstm_1``, ``lstm_2`` ..."""
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def reject_unsupported(owner: str, **arguments: Any) -> None:
    """Raises for Keras arguments fastrnn does not implement when they are not None.

    Raises:
        ValueError: naming the first argument that was set.
    """
    for key, value in arguments.items():
        if value is not None:
            raise ValueError(
                f"{owner} does not support {key} (got {value!r}); fastrnn implements no "
                f"regularizers, constraints or LoRA. Pass {key}=None."
            )


def check_positive_int(value: Any, argument: str, owner: str) -> int:
    """Validates a strictly positive integer argument such as ``units``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{owner}: {argument} must be a positive integer, got {value!r}.")
    return int(value)


def check_rate(value: Any, argument: str, owner: str) -> float:
    """Validates a dropout rate in [0, 1)."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: {argument} must be a float in [0, 1), got {value!r}.") from None
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{owner}: {argument} must be in [0, 1), got {value!r}.")
    return rate


class Layer:
    """Base class: configuration, weights, build-on-first-call and the backward protocol.

    Args:
        name: layer name; Keras-style automatic name when None.
        input_shape: shape of one sample (no batch dimension); lets a model build before data.
        dtype: ``"float32"`` (default) or ``"float64"``: weights and computation.
        trainable: False freezes the weights in ``fit`` (gradients are still computed).

    Raises:
        TypeError: unknown keyword argument.
    """

    supports_masking = False

    def __init__(
        self,
        *,
        name: str | None = None,
        input_shape: tuple | None = None,
        dtype: str = "float32",
        trainable: bool = True,
        **kwargs: Any,
    ) -> None:
        cls = type(self).__name__
        if kwargs:
            raise TypeError(
                f"{cls}: unrecognized keyword argument(s): {', '.join(sorted(kwargs))}."
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{cls}: name must be a string, got {name!r}.")
        self.name = name or unique_name(_snake(cls))
        if input_shape is not None:
            if isinstance(input_shape, (int, np.integer)):
                input_shape = (input_shape,)
            input_shape = tuple(None if d is None else int(d) for d in input_shape)
        self._input_shape_arg = input_shape
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"{cls}: dtype must be 'float32' or 'float64', got {dtype!r}.")
        self.dtype = np.dtype(dtype)
        self.trainable = bool(trainable)
        self.built = False
        self.input_shape: tuple | None = None
        self._weights: list[np.ndarray] = []
        self._weight_names: list[str] = []
        self.gradients: list[np.ndarray] | None = None
        self.output_mask = None
        self._cache: Any = None

    # ---- weights -------------------------------------------------------------------------
    def add_weight(self, name: str, shape: tuple, initializer: str, rng=None) -> np.ndarray:
        """Creates, registers and returns a weight array (kept by identity; updated in place)."""
        rng = rng if rng is not None else getattr(self, "_rng", None) or initializers.make_rng(None)
        w = initializers.initialize(initializer, shape, rng, self.dtype)
        self._weights.append(w)
        self._weight_names.append(name)
        return w

    @property
    def weights(self) -> list[np.ndarray]:
        """The weight arrays themselves (not copies), in Keras's order."""
        return list(self._weights)

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return list(self._weights) if self.trainable else []

    @property
    def weight_names(self) -> list[str]:
        return [f"{self.name}/{n}" for n in self._weight_names]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights, in Keras's order and shapes."""
        return [w.copy() for w in self._weights]

    def set_weights(self, weights: list) -> None:
        """Copies ``weights`` into the layer (all checked before any is written).

        Raises:
            ValueError: wrong number of arrays, or an array of the wrong shape.
        """
        if not self.built:
            raise ValueError(
                f"Layer {self.name!r} is not built yet; call it on data or build it before "
                "set_weights."
            )
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ValueError(
                f"set_weights on layer {self.name!r} expects {len(self._weights)} arrays "
                f"({', '.join(self._weight_names) or 'none'}), got {len(weights)}."
            )
        arrays = []
        for wname, old, new in zip(self._weight_names, self._weights, weights):
            new = np.asarray(new)
            if new.shape != old.shape:
                raise ValueError(
                    f"set_weights on layer {self.name!r}: weight {wname!r} has shape "
                    f"{old.shape}, got an array of shape {new.shape}."
                )
            arrays.append(new)
        for old, new in zip(self._weights, arrays):
            old[...] = new

    def count_params(self) -> int:
        return int(sum(w.size for w in self._weights))

    # ---- build / call --------------------------------------------------------------------
    def build(self, input_shape: tuple) -> None:
        """Creates the weights for inputs of ``input_shape`` (batch dimension included)."""
        self.input_shape = tuple(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> Any:
        return tuple(input_shape)

    def compute_mask(self, inputs: np.ndarray, mask: np.ndarray | None) -> Any:
        """The mask this layer's output carries, given its input and input mask."""
        return mask if self.supports_masking else None

    def _convert(self, inputs: Any) -> np.ndarray:
        x = np.asarray(inputs)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise TypeError(f"Layer {self.name!r}: inputs must be numeric, got dtype {x.dtype}.")
        return x.astype(self.dtype, copy=False)

    def _check_input(self, x: np.ndarray) -> None:
        """Checks rank and feature width against the built input shape."""
        if self.input_shape is None:
            return
        want = self.input_shape
        if x.ndim != len(want):
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) expects inputs of rank {len(want)} "
                f"(shape {want}), got shape {x.shape}."
            )
        if want[-1] is not None and x.shape[-1] != want[-1]:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) was built for {want[-1]} input "
                f"features (last axis), got inputs of shape {x.shape}."
            )

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        x = self._convert(inputs)
        if not self.built:
            self._check_first_input(x)
            self.build((None,) + x.shape[1:])
        self._check_input(x)
        out = self.call(x, *args, **kwargs)
        self.output_mask = self.compute_mask(x, kwargs.get("mask"))
        return out

    def _check_first_input(self, x: np.ndarray) -> None:
        """Validation before the first build (rank); subclasses override."""

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        """Returns dL/d(inputs) for the last ``training=True`` call and fills ``gradients``."""
        raise NotImplementedError

    def _require_cache(self) -> Any:
        if self._cache is None:
            raise RuntimeError(
                f"Layer {self.name!r}: backward() needs a preceding call with training=True."
            )
        return self._cache

    def _as_grad(self, dy: Any, shape: tuple) -> np.ndarray:
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.shape != tuple(shape):
            raise ValueError(
                f"Layer {self.name!r}: backward expects dy of shape {tuple(shape)} (the output's "
                f"shape), got {dy.shape}."
            )
        return dy

    # ---- config ---------------------------------------------------------------------------
    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}
        if self._input_shape_arg is not None:
            config["input_shape"] = list(self._input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"
