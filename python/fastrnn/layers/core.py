"""Layer base class and the non-recurrent layers: Dense, Embedding, Masking, Dropout.

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

from fastrnn import activations, initializers

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


class Dense(Layer):
    """Densely connected layer: ``activation(inputs @ kernel + bias)`` on the last axis.

    Args:
        units: positive int, output features.
        activation: one of ``linear`` (or None, the default), ``relu``, ``tanh``, ``sigmoid``,
            ``hard_sigmoid``, ``softmax``.
        use_bias: default True.
        kernel_initializer: default ``"glorot_uniform"``.
        bias_initializer: default ``"zeros"``.
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: (B, F) or (B, T, F) floats.
        mask: passed through unchanged (as Keras does).
        training: True keeps what ``backward`` needs.

    Returns:
        (B, units) or (B, T, units).

    Raises:
        ValueError: ``units`` not positive, unknown activation or initializer, inputs of rank < 2
            or of a feature width other than the built one.

    Example:
        >>> layer = Dense(4, activation="relu")
        >>> layer(np.ones((2, 3))).shape   # (2, 4)
    """

    supports_masking = True

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
        kernel_regularizer: None = None,
        bias_regularizer: None = None,
        activity_regularizer: None = None,
        kernel_constraint: None = None,
        bias_constraint: None = None,
        lora_rank: None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units", "Dense")
        self.activation = activations.canonical(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.check(kernel_initializer, "kernel_initializer")
        self.bias_initializer = initializers.check(bias_initializer, "bias_initializer")
        reject_unsupported(
            "Dense",
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            lora_rank=lora_rank,
        )
        self._rng = initializers.make_rng(None)

    def _check_first_input(self, x: np.ndarray) -> None:
        if x.ndim < 2:
            raise ValueError(
                f"Layer {self.name!r} (Dense) expects inputs of rank >= 2, got shape {x.shape}."
            )

    def build(self, input_shape: tuple) -> None:
        if input_shape[-1] is None:
            raise ValueError(f"Dense {self.name!r}: the last input axis must be known.")
        self.kernel = self.add_weight(
            "kernel", (input_shape[-1], self.units), self.kernel_initializer
        )
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        z = x @ self.kernel
        if self.use_bias:
            z = z + self.bias
        y = activations.forward(self.activation, z)
        self._cache = (x, z, y) if training else None
        return y

    def backward(self, dy: Any) -> np.ndarray:
        x, z, y = self._require_cache()
        dy = self._as_grad(dy, y.shape)
        dz = activations.backward(self.activation, z, y, dy)
        dz2 = dz.reshape(-1, self.units)
        grads = [x.reshape(-1, x.shape[-1]).T @ dz2]
        if self.use_bias:
            grads.append(dz2.sum(axis=0))
        self.gradients = grads
        return dz @ self.kernel.T

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
        }


class Embedding(Layer):
    """Turns non-negative integer indices into dense vectors: ``embeddings[inputs]``.

    Args:
        input_dim: positive int, vocabulary size (largest index + 1).
        output_dim: positive int, embedding width.
        embeddings_initializer: default ``"uniform"`` (U(-0.05, 0.05), as Keras).
        mask_zero: True makes index 0 padding: the output carries the mask ``inputs != 0``,
            which recurrent layers downstream use to skip those steps (Keras semantics).
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: integer array (B, T) (any shape works); floats holding whole numbers are
            accepted.

    Returns:
        ``inputs.shape + (output_dim,)``. ``backward`` returns None (indices have no gradient).

    Raises:
        ValueError: non-positive sizes, non-integer indices, or an index outside
            [0, input_dim).

    Example:
        >>> emb = Embedding(100, 8, mask_zero=True)
        >>> emb(np.array([[5, 7, 0]])).shape     # (1, 3, 8); emb.compute_mask(...) -> [[T, T, F]]
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: str = "uniform",
        embeddings_regularizer: None = None,
        embeddings_constraint: None = None,
        mask_zero: bool = False,
        weights: list | None = None,
        lora_rank: None = None,
        **kwargs: Any,
    ) -> None:
        if "input_length" in kwargs:
            raise TypeError(
                "Embedding: input_length was removed in Keras 3 and is not accepted; "
                "use input_shape=(timesteps,) instead."
            )
        super().__init__(**kwargs)
        self.input_dim = check_positive_int(input_dim, "input_dim", "Embedding")
        self.output_dim = check_positive_int(output_dim, "output_dim", "Embedding")
        self.embeddings_initializer = initializers.check(
            embeddings_initializer, "embeddings_initializer"
        )
        reject_unsupported(
            "Embedding",
            embeddings_regularizer=embeddings_regularizer,
            embeddings_constraint=embeddings_constraint,
            lora_rank=lora_rank,
        )
        self.mask_zero = bool(mask_zero)
        self._rng = initializers.make_rng(None)
        self._initial_weights = weights

    @property
    def supports_masking(self) -> bool:  # type: ignore[override]
        return self.mask_zero

    def _convert(self, inputs: Any) -> np.ndarray:
        x = np.asarray(inputs)
        if np.issubdtype(x.dtype, np.floating):
            if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
                raise ValueError(f"Embedding {self.name!r}: inputs must hold integer indices.")
        elif not np.issubdtype(x.dtype, np.integer):
            raise TypeError(
                f"Embedding {self.name!r}: inputs must be integer indices, got dtype {x.dtype}."
            )
        x = x.astype(np.int64, copy=False)
        if x.size and (x.min() < 0 or x.max() >= self.input_dim):
            bad = x.min() if x.min() < 0 else x.max()
            raise ValueError(
                f"Embedding {self.name!r}: inputs contain index {bad} outside "
                f"[0, input_dim={self.input_dim})."
            )
        return x

    def _check_input(self, x: np.ndarray) -> None:
        pass

    def build(self, input_shape: tuple) -> None:
        self.embeddings = self.add_weight(
            "embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer
        )
        super().build(input_shape)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape) + (self.output_dim,)

    def compute_mask(self, inputs: np.ndarray, mask: np.ndarray | None = None):
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        self._cache = x if training else None
        return self.embeddings[x]

    def backward(self, dy: Any) -> None:
        x = self._require_cache()
        dy = self._as_grad(dy, x.shape + (self.output_dim,))
        grad = np.zeros_like(self.embeddings)
        np.add.at(grad, x.reshape(-1), dy.reshape(-1, self.output_dim))
        self.gradients = [grad]
        return None

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": self.embeddings_initializer,
            "mask_zero": self.mask_zero,
        }


class Masking(Layer):
    """Masks time steps whose features all equal ``mask_value``; zeroes them in the output.

    Args:
        mask_value: default 0.0.
        **kwargs: ``name``, ``input_shape``, ``dtype``.

    Call arguments:
        inputs: (B, T, F).

    Returns:
        ``inputs`` with masked steps set to 0; carries the mask ``any(inputs != mask_value, -1)``.

    Example:
        >>> x[:, 3:, :] = 0.0                 # padding after step 3
        >>> y = LSTM(8)(Masking()(x), mask=Masking().compute_mask(x, None))
    """

    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def compute_mask(self, inputs: np.ndarray, mask: np.ndarray | None = None):
        return np.any(np.asarray(inputs) != self.mask_value, axis=-1)

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        keep = np.any(x != self.mask_value, axis=-1, keepdims=True)
        self._cache = keep if training else None
        return x * keep

    def backward(self, dy: Any) -> np.ndarray:
        keep = self._require_cache()
        self.gradients = []
        return np.asarray(dy, dtype=self.dtype) * keep

    def get_config(self) -> dict:
        return {**super().get_config(), "mask_value": self.mask_value}


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of inputs in training and scales the rest by 1/(1 - rate).

    Args:
        rate: float in [0, 1).
        noise_shape: None, or a shape broadcastable to the inputs (None entries take the
            input's size), e.g. ``(None, 1, None)`` for one mask per sequence.
        seed: int for reproducible masks.
        **kwargs: ``name``, ``input_shape``, ``dtype``.

    Call arguments:
        inputs: any shape.
        training: False (default) returns the inputs unchanged.

    Raises:
        ValueError: ``rate`` outside [0, 1).
    """

    supports_masking = True

    def __init__(
        self, rate: float, noise_shape: tuple | None = None, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.rate = check_rate(rate, "rate", "Dropout")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._rng = initializers.make_rng(seed)

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        if not training or self.rate == 0.0:
            self._cache = 1.0 if training else None
            return x
        shape = x.shape
        if self.noise_shape is not None:
            shape = tuple(s if n is None else n for s, n in zip(x.shape, self.noise_shape))
        keep = (self._rng.random(shape) >= self.rate).astype(self.dtype) / (1.0 - self.rate)
        self._cache = keep
        return x * keep

    def backward(self, dy: Any) -> np.ndarray:
        keep = self._require_cache()
        self.gradients = []
        return np.asarray(dy, dtype=self.dtype) * keep

    def get_config(self) -> dict:
        config = {**super().get_config(), "rate": self.rate, "seed": self.seed}
        config["noise_shape"] = None if self.noise_shape is None else list(self.noise_shape)
        return config
