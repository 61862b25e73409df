"""The non-recurrent core layers: Dense, Embedding, Masking, Dropout, Activation.

See ``base.py`` for ``Layer`` and the forward/backward protocol.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fastrnn import activations, initializers
from fastrnn.layers.base import Layer, check_positive_int, check_rate, reject_unsupported


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
        lora_alpha: None = None,
        quantization_config: None = None,
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
            lora_alpha=lora_alpha,
            quantization_config=quantization_config,
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
        self._cache = (x, y) if training else None
        return y

    def backward(self, dy: Any) -> np.ndarray:
        x, y = self._require_cache()
        dy = self._as_grad(dy, y.shape)
        dz = activations.backward(self.activation, y, dy)
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
        weights: optional initial ``[embeddings]``, set when the layer is built.
        input_length: accepted and ignored, with the warning Keras >= 3.2 gives (Keras 2 used it
            for the sequence length; give ``input_shape=(timesteps,)`` instead).
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
        lora_alpha: None = None,
        quantization_config: None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("input_length", None) is not None:
            # Keras >= 3.2 accepts and ignores it with this warning (3.0 and 3.1 rejected it).
            warnings.warn("Argument `input_length` is deprecated. Just remove it.", stacklevel=2)
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
            lora_alpha=lora_alpha,
            quantization_config=quantization_config,
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


class Activation(Layer):
    """Applies an activation function elementwise (softmax: over the last axis).

    Args:
        activation: one of ``linear`` (or None), ``relu``, ``tanh``, ``sigmoid``,
            ``hard_sigmoid``, ``softmax`` (Keras's names and formulas).
        **kwargs: ``name``, ``input_shape``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: any shape, e.g. (B, T, F).
        mask: passed through unchanged (as Keras does).
        training: True keeps what ``backward`` needs.

    Returns:
        ``activation(inputs)``, same shape. ``backward`` returns dL/d(inputs); no weights.

    Raises:
        ValueError: unknown activation name (valid names listed).

    Example:
        >>> Activation("relu")(np.array([[-3.0, -1.0, 0.0, 2.0]]))   # [[0, 0, 0, 2]]
    """

    supports_masking = True

    def __init__(self, activation: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activations.canonical(activation)

    def call(self, x: np.ndarray, mask: np.ndarray | None = None, training: bool = False):
        y = activations.forward(self.activation, x)
        self._cache = y if training else None
        return y

    def backward(self, dy: Any) -> np.ndarray:
        y = self._require_cache()
        dy = self._as_grad(dy, y.shape)
        self.gradients = []
        return activations.backward(self.activation, y, dy)

    def get_config(self) -> dict:
        return {**super().get_config(), "activation": self.activation}
