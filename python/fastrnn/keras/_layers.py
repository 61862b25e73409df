"""Keras 3's ``SimpleRNN``, ``LSTM`` and ``GRU`` with the recurrence run by fastrnn's kernels.

Each class subclasses the stock Keras layer and overrides only ``inner_loop`` (the method Keras
itself overrides for its cuDNN path): constructor, weights, config, masking, states,
``stateful``, regularizers, constraints and serialization stay Keras's. The override runs one
fused fastrnn call (``_fused.fused``) when fastrnn computes exactly what Keras would, and
otherwise hands the call to the stock ``inner_loop`` after a one-time ``FallbackWarning``.

Dimension legend: B batch, T steps, I input features, H units.
"""

from __future__ import annotations

import functools
import warnings

import keras
from keras import ops

from fastrnn._adapter_core import Recurrence
from fastrnn.keras._fused import fused


class FallbackWarning(UserWarning):
    """A fastrnn Keras layer ran Keras's own implementation for a configuration fastrnn lacks."""


_WARNED: set = set()
_FLOATS = ("float32", "float64")


def _warn_once(layer_class: str, reason: str) -> None:
    key = (layer_class, reason)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(
        f"fastrnn.keras.{layer_class}: {reason}; running Keras's own implementation for this "
        "configuration (this warning is shown once)",
        FallbackWarning,
        stacklevel=4,
    )


def _activation_names() -> dict:
    """Keras activation functions (by identity) -> fastrnn's activation names."""
    table = {}
    for name in ("tanh", "relu", "sigmoid", "hard_sigmoid", "linear"):
        table[keras.activations.get(name)] = name
        op = getattr(ops, name, None)
        if op is not None:
            table[op] = name
    return table


_ACTIVATIONS = _activation_names()


@functools.cache
def _on_gpu(backend: str) -> bool:
    """Whether ``backend`` computes on a GPU (its device list is fixed once it is running)."""
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return False


class _FastRNNMixin:
    """The ``inner_loop`` of fastrnn's Keras layers."""

    _fastrnn_cell: str  # fastrnn._cells.CELLS key

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if keras.backend.backend() == "tensorflow":
            self.supports_jit = False  # XLA cannot compile tf.numpy_function

    def __repr__(self) -> str:
        return f"<fastrnn.keras.{type(self).__name__} name={self.name}, built={self.built}>"

    def _fastrnn_unsupported(self, sequences, training) -> str | None:
        """Why fastrnn cannot compute this call exactly as Keras would, or None."""
        backend = keras.backend.backend()
        cell = self.cell
        if backend not in ("torch", "tensorflow", "jax", "numpy"):
            return f"the {backend!r} backend is not supported"
        if self.unroll:
            return "unroll=True asks for Keras's unrolled graph"
        if _ACTIVATIONS.get(cell.activation) is None:
            return f"activation {getattr(cell.activation, '__name__', cell.activation)!r}"
        if (
            self._fastrnn_cell != "simple_rnn"
            and _ACTIVATIONS.get(cell.recurrent_activation) is None
        ):
            name = getattr(cell.recurrent_activation, "__name__", cell.recurrent_activation)
            return f"recurrent_activation {name!r}"
        dtype = keras.backend.standardize_dtype(sequences.dtype)
        if not dtype.startswith(("float", "bfloat")):
            dtype = cell.compute_dtype  # integer/bool sequences: Keras promotes them too
        dtypes = {cell.compute_dtype, cell.variable_dtype, dtype}
        if len(dtypes) != 1 or not dtypes <= set(_FLOATS):
            return f"dtypes {sorted(dtypes)} (fastrnn computes float32 or float64, all alike)"
        if training:
            rates = (cell.dropout, cell.recurrent_dropout)
            if any(rate >= 1.0 for rate in rates):
                return "a dropout rate of 1"
            if self._fastrnn_cell != "simple_rnn" and getattr(cell, "implementation", 2) == 1:
                if any(0.0 < rate for rate in rates):
                    return (
                        "per-gate dropout masks (Keras draws one mask per gate when "
                        "recurrent_dropout > 0 or implementation=1)"
                    )
        if _on_gpu(backend):
            return f"fastrnn.keras runs the {backend} backend on the CPU only"
        if backend == "torch" and sequences.device.type != "cpu":
            from fastrnn import _backend

            status = _backend.cuda_status()
            if status != "ok":
                return (
                    f"tensors on {sequences.device} but fastrnn's CUDA path cannot run ({status})"
                )
        return None

    def _fastrnn_recurrence(self) -> Recurrence:
        cell = self.cell
        return Recurrence(
            self._fastrnn_cell,
            _ACTIVATIONS[cell.activation],
            _ACTIVATIONS.get(getattr(cell, "recurrent_activation", None), "sigmoid"),
            bool(getattr(cell, "reset_after", True)),
            bool(self.go_backwards),
        )

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if keras.backend.backend() == "torch" and sequences.device.type == "meta":
            # Keras's shape inference on the torch backend: no numbers to compute.
            return super().inner_loop(sequences, initial_state, mask, training=training)
        reason = self._fastrnn_unsupported(sequences, training)
        if reason is not None:
            _warn_once(type(self).__name__, reason)
            return super().inner_loop(sequences, initial_state, mask, training=training)
        return self._fastrnn_inner_loop(sequences, initial_state, mask, training)

    def _fastrnn_inner_loop(self, sequences, initial_state, mask, training):
        backend = keras.backend.backend()
        cell = self.cell
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        states = (
            list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        )
        dropout_mask = recurrent_dropout_mask = None
        if training:
            # The masks Keras drew for this call (RNN.call prepared them): one (B, I) mask for
            # the input of all gates and, for SimpleRNN, one (B, H) mask for h_prev.
            if 0.0 < cell.dropout < 1.0:
                dropout_mask = cell.get_dropout_mask(sequences[:, 0, :])
            if self._fastrnn_cell == "simple_rnn" and 0.0 < cell.recurrent_dropout < 1.0:
                recurrent_dropout_mask = cell.get_recurrent_dropout_mask(states[0])
        mask_tm = None
        if mask is not None:
            mask_tm = ops.transpose(ops.cast(mask, "bool"), (1, 0))
        if keras.backend.standardize_dtype(sequences.dtype) != cell.compute_dtype:
            sequences = ops.cast(sequences, cell.compute_dtype)  # integer or bool input
        arrays = {
            "x": ops.transpose(sequences, (1, 0, 2)),
            "kernel": ops.convert_to_tensor(cell.kernel),
            "recurrent_kernel": ops.convert_to_tensor(cell.recurrent_kernel),
            "bias": ops.convert_to_tensor(cell.bias) if cell.use_bias else None,
            "h0": states[0],
            "c0": states[1] if self._fastrnn_cell == "lstm" else None,
            "mask": mask_tm,
            "dropout_mask": dropout_mask,
            "recurrent_dropout_mask": recurrent_dropout_mask,
        }
        outputs_tm, *final_states = fused(backend, self._fastrnn_recurrence(), arrays)
        if mask_tm is not None:
            # fastrnn (like Keras on torch and tensorflow) repeats the previous output at a
            # masked step, zeros before the first unmasked one.
            processed = ops.flip(mask_tm, 0) if self.go_backwards else mask_tm
            if self.zero_output_for_mask:
                outputs_tm = ops.where(processed[:, :, None], outputs_tm, 0)
            elif backend == "jax":
                # Keras's jax backend outputs the carried state h instead: h0 before the
                # first unmasked step (the same as the previous output afterwards).
                started = ops.cumsum(ops.cast(processed, "int32"), axis=0) > 0
                outputs_tm = ops.where(started[:, :, None], outputs_tm, states[0][None])
        last_output = outputs_tm[-1]
        if self.return_sequences:
            outputs = ops.transpose(outputs_tm, (1, 0, 2))
        else:
            outputs = ops.expand_dims(last_output, 1)
        return last_output, outputs, list(final_states)


_CONSTRUCTOR_NOTES = """
    Everything else — arguments, defaults, weights, config, masking, states, ``stateful``,
    ``return_sequences`` / ``return_state``, ``go_backwards``, regularizers, constraints,
    serialization — is the stock Keras layer's. Saved with ``model.save("....keras")`` it is
    written as ``keras.layers.{name}``: plain Keras loads the file with its own layer, and a
    process that imported ``fastrnn.keras`` loads fastrnn's.

    fastrnn computes the recurrence when it can do so exactly as Keras does (CPU; float32 or
    float64; activations tanh, relu, sigmoid, hard_sigmoid, linear; masks; dropout with Keras's
    single per-call masks). Otherwise the call runs Keras's own implementation after a one-time
    ``fastrnn.keras.FallbackWarning`` (``unroll=True``, other activations, mixed precision,
    {fallback}, TensorFlow/JAX on a GPU). ``use_cudnn`` is kept in the config and ignored.
"""


class SimpleRNN(_FastRNNMixin, keras.layers.SimpleRNN):
    __doc__ = (
        """``keras.layers.SimpleRNN`` whose recurrence runs fastrnn's fused kernels.

    Args:
        units, activation, use_bias, kernel_initializer, recurrent_initializer,
        bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, recurrent_constraint, bias_constraint,
        dropout, recurrent_dropout, return_sequences, return_state, go_backwards, stateful,
        unroll, seed: as ``keras.layers.SimpleRNN`` (same defaults).

    Call arguments:
        sequences: (B, T, I). initial_state: None or [(B, H)]. mask: None or bool (B, T).
        training: whether dropout applies.

    Returns:
        (B, H), or (B, T, H) with ``return_sequences``; plus the final state with
        ``return_state``.
"""
        + _CONSTRUCTOR_NOTES.format(name="SimpleRNN", fallback="a dropout rate of 1")
        + """
    Example:

    >>> import numpy as np, fastrnn.keras
    >>> layer = fastrnn.keras.SimpleRNN(4)
    >>> layer(np.random.rand(32, 10, 8).astype("float32")).shape  # (32, 4)
    """
    )

    _fastrnn_cell = "simple_rnn"


class LSTM(_FastRNNMixin, keras.layers.LSTM):
    __doc__ = (
        """``keras.layers.LSTM`` whose recurrence runs fastrnn's fused kernels.

    Args:
        units, activation, recurrent_activation, use_bias, kernel_initializer,
        recurrent_initializer, bias_initializer, unit_forget_bias, kernel_regularizer,
        recurrent_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
        recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed,
        return_sequences, return_state, go_backwards, stateful, unroll, use_cudnn: as
        ``keras.layers.LSTM`` (same defaults).

    Call arguments:
        sequences: (B, T, I). initial_state: None or [h (B, H), c (B, H)]. mask: None or bool
        (B, T). training: whether dropout applies.

    Returns:
        (B, H), or (B, T, H) with ``return_sequences``; plus ``h, c`` with ``return_state``.
"""
        + _CONSTRUCTOR_NOTES.format(
            name="LSTM",
            fallback="training with recurrent_dropout > 0 or implementation=1 dropout "
            "(Keras's per-gate masks)",
        )
        + """
    Example:

    >>> import numpy as np, fastrnn.keras
    >>> layer = fastrnn.keras.LSTM(4, return_sequences=True)
    >>> layer(np.random.rand(32, 10, 8).astype("float32")).shape  # (32, 10, 4)
    """
    )

    _fastrnn_cell = "lstm"


class GRU(_FastRNNMixin, keras.layers.GRU):
    __doc__ = (
        """``keras.layers.GRU`` whose recurrence runs fastrnn's fused kernels.

    Both formulations run fused: ``reset_after=True`` (Keras 3's default, bias (2, 3H)) and
    ``reset_after=False`` (bias (3H,)).

    Args:
        units, activation, recurrent_activation, use_bias, kernel_initializer,
        recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint, recurrent_constraint,
        bias_constraint, dropout, recurrent_dropout, seed, return_sequences, return_state,
        go_backwards, stateful, unroll, reset_after, use_cudnn: as ``keras.layers.GRU`` (same
        defaults).

    Call arguments:
        sequences: (B, T, I). initial_state: None or [(B, H)]. mask: None or bool (B, T).
        training: whether dropout applies.

    Returns:
        (B, H), or (B, T, H) with ``return_sequences``; plus the final state with
        ``return_state``.
"""
        + _CONSTRUCTOR_NOTES.format(
            name="GRU",
            fallback="training with recurrent_dropout > 0 or implementation=1 dropout "
            "(Keras's per-gate masks)",
        )
        + """
    Example:

    >>> import numpy as np, fastrnn.keras
    >>> layer = fastrnn.keras.GRU(4, go_backwards=True)
    >>> layer(np.random.rand(32, 10, 8).astype("float32")).shape  # (32, 4)
    """
    )

    _fastrnn_cell = "gru"


LAYERS = (SimpleRNN, LSTM, GRU)


def convert(model):
    """A copy of a Keras model whose SimpleRNN / LSTM / GRU layers are fastrnn's.

    Works on ``Sequential`` and Functional models (also inside ``Bidirectional`` and nested
    models): the model's config is re-read with fastrnn's layers in place of the stock ones,
    then the weights are copied, so the copy computes the same function. A compiled model is
    compiled again with the same configuration (the optimizer starts afresh).

    Args:
        model: a Keras ``Sequential`` or Functional model (``keras.Model``).

    Returns:
        A new model of the same architecture and weights, running fastrnn.

    Raises:
        TypeError: ``model`` is not a Keras model, or is a subclassed model (whose architecture
            lives in Python code: build it with ``fastrnn.keras`` layers instead).

    Example:

    >>> import keras, fastrnn.keras
    >>> model = keras.models.load_model("trained.keras")  # stock layers   # doctest: +SKIP
    >>> fast = fastrnn.keras.convert(model)                                 # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if not type(model).__module__.startswith("keras."):  # Sequential / Functional are Keras's
        raise TypeError(
            f"convert() copies Sequential and Functional models; {type(model).__name__} is a "
            "subclassed model (its architecture is Python code): build it with fastrnn.keras "
            "layers instead"
        )
    names = {cls.__name__ for cls in LAYERS}

    def mark(obj):  # stock entries get the registered name that resolves to fastrnn's classes
        if isinstance(obj, dict):
            if obj.get("module") == "keras.layers" and obj.get("class_name") in names:
                obj["registered_name"] = obj["class_name"]
            for value in obj.values():
                mark(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                mark(value)

    config = keras.saving.serialize_keras_object(model)
    mark(config)
    converted = keras.saving.deserialize_keras_object(config)
    converted.set_weights(model.get_weights())
    return converted


def _register() -> None:
    """Serialize as the stock classes and deserialize as fastrnn's while it is imported.

    Keras writes a layer as ``{"module": cls.__module__, "class_name": cls.__name__,
    "registered_name": <registered name>}``. With module ``keras.layers`` and a registered name
    equal to the class name, a process without fastrnn resolves the entry to the stock layer
    (Keras accepts a registered name equal to the class name for its built-ins), while a process
    that imported ``fastrnn.keras`` finds the registration first. Files of stock layers carry no
    registered name and keep loading as stock layers everywhere.
    """
    custom = keras.saving.get_custom_objects()
    for cls in LAYERS:
        cls.__module__ = "keras.layers"
        custom[cls.__name__] = cls


_register()
