"""Functional API building blocks: ``Input``, ``InputLayer``, ``KerasTensor`` and graph ``Node``s.

``Input(shape)`` returns a ``KerasTensor``: a shape and a dtype, no values. Calling any fastrnn
layer on symbolic tensors builds the layer from their shapes, records the call as a ``Node``
(the layer, its arguments, its outputs) and returns new symbolic tensors, as Keras does;
``fastrnn.Model(inputs, outputs)`` then runs the recorded graph on NumPy arrays, forward and
backward. Each output tensor remembers where it came from in ``_keras_history``:
``(layer, node_index, tensor_index)``, the same triple Keras writes in its configs.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from fastrnn.layers.base import Layer, flatten, is_symbolic, map_structure, unique_name

KerasHistory = namedtuple("KerasHistory", ["operation", "node_index", "tensor_index"])


def _standardize_shape(shape: Any, argument: str) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(
            f"Input: {argument} must be a tuple of ints or None, got {shape!r}."
        ) from None
    out = []
    for d in dims:
        if d is None:
            out.append(None)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            out.append(int(d))
        else:
            raise ValueError(
                f"Input: {argument} must hold non-negative ints or None, got {shape!r}."
            )
    return tuple(out)


class KerasTensor:
    """A symbolic tensor: a shape (batch dimension first, None where unknown) and a dtype.

    It holds no values: it exists to connect layers into a graph for ``fastrnn.Model``.
    Converting it to a NumPy array raises ``TypeError``.

    Attributes:
        shape: tuple of ints or None.
        dtype: dtype name, e.g. ``"float32"``.
        name: a unique name.
    """

    def __init__(self, shape: tuple, dtype: str = "float32", name: str | None = None) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype).name
        self.name = name or unique_name("keras_tensor")
        self._keras_history: KerasHistory | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(
            f"{self!r} is symbolic (it has a shape but no values) and cannot become a NumPy "
            "array. Build a model with fastrnn.Model(inputs, outputs) and call it (or its "
            "predict) on arrays."
        )

    def _no_arithmetic(self, *args: Any) -> Any:
        raise TypeError(
            "fastrnn's symbolic tensors support no arithmetic operators; use the merge layers "
            "(fastrnn.layers.Add, Subtract, Multiply, Average, Maximum, Concatenate)."
        )

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _no_arithmetic
    __truediv__ = __rtruediv__ = __matmul__ = __rmatmul__ = __neg__ = _no_arithmetic
    __getitem__ = _no_arithmetic


class Node:
    """One call of a layer in a graph: its arguments (with symbolic tensors) and outputs.

    Attributes:
        operation: the layer called.
        call_inputs: the first argument (a tensor, or a list of tensors for merge layers).
        call_kwargs: the other arguments (``initial_state`` tensors, an explicit ``mask``,
            ``training`` ...).
        outputs: the symbolic outputs (a tensor or a nest of them).
        input_tensors: every symbolic tensor among the arguments, flattened (Keras's order:
            the inputs, then keyword arguments by sorted name).
        output_tensors: the outputs, flattened.
    """

    def __init__(self, operation: Layer, call_inputs: Any, call_kwargs: dict, outputs: Any):
        self.operation = operation
        self.call_inputs = call_inputs
        self.call_kwargs = dict(call_kwargs)
        self.outputs = outputs
        self.input_tensors = [
            t for t in flatten([call_inputs, self.call_kwargs]) if isinstance(t, KerasTensor)
        ]
        self.output_tensors = [t for t in flatten(outputs) if isinstance(t, KerasTensor)]
        operation._inbound_nodes.append(self)
        index = len(operation._inbound_nodes) - 1
        for i, tensor in enumerate(self.output_tensors):
            tensor._keras_history = KerasHistory(operation, index, i)

    @property
    def layer(self) -> Layer:
        return self.operation

    @property
    def is_input(self) -> bool:
        return isinstance(self.operation, InputLayer)

    @property
    def differentiable_tensors(self) -> list[KerasTensor]:
        """The tensors gradients flow back to, in the order ``layer.backward`` returns them:
        the inputs, then keyword tensors other than ``mask`` (e.g. ``initial_state``)."""
        kwargs = {k: v for k, v in self.call_kwargs.items() if k not in ("mask", "training")}
        return [t for t in flatten(self.call_inputs) if isinstance(t, KerasTensor)] + [
            t for t in flatten(kwargs) if isinstance(t, KerasTensor)
        ]

    @property
    def parent_nodes(self) -> list[Node]:
        parents = []
        for t in self.input_tensors:
            history = t._keras_history
            if history is not None:
                node = history.operation._inbound_nodes[history.node_index]
                if node not in parents:
                    parents.append(node)
        return parents

    def __repr__(self) -> str:
        return f"<Node of {self.operation.name!r}>"


class InputLayer(Layer):
    """The layer behind ``Input``: it has no weights and outputs its symbolic tensor.

    Args:
        shape: shape of one sample (no batch dimension).
        batch_size: optional fixed batch size (needed by stateful recurrent layers).
        dtype: dtype of the data, default ``"float32"`` (integer dtypes for Embedding indices).
        sparse: only False/None (fastrnn has no sparse tensors).
        batch_shape: full shape including the batch dimension, instead of ``shape`` and
            ``batch_size``.
        name: layer name, default ``input_layer`` (Keras-style numbering).
        optional: only False (fastrnn has no optional inputs).

    Raises:
        ValueError: both or neither of ``shape`` and ``batch_shape``, ``batch_size`` with
            ``batch_shape``, a negative dimension, or an unsupported option.
        TypeError: an unknown dtype.
    """

    def __init__(
        self,
        shape: tuple | None = None,
        batch_size: int | None = None,
        dtype: str | None = None,
        sparse: bool | None = None,
        batch_shape: tuple | None = None,
        name: str | None = None,
        optional: bool = False,
        ragged: bool | None = None,
        input_tensor: Any = None,
        **kwargs: Any,
    ) -> None:
        if "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if "batch_input_shape" in kwargs:
            batch_shape = kwargs.pop("batch_input_shape")
        super().__init__(name=name or unique_name("input_layer"), **kwargs)
        if sparse or ragged or optional or input_tensor is not None:
            raise ValueError(
                "Input: sparse, ragged, optional inputs and input_tensor are not supported by "
                "fastrnn."
            )
        if shape is not None and batch_shape is not None:
            raise ValueError("Input: pass shape or batch_shape, not both.")
        if batch_size is not None and batch_shape is not None:
            raise ValueError("Input: pass batch_size or batch_shape, not both.")
        if shape is None and batch_shape is None:
            raise ValueError("Input: a shape argument is required, e.g. Input(shape=(10, 3)).")
        if shape is not None:
            if batch_size is not None and (
                isinstance(batch_size, bool)
                or not isinstance(batch_size, (int, np.integer))
                or batch_size <= 0
            ):
                raise ValueError(f"Input: batch_size must be a positive int, got {batch_size!r}.")
            batch_shape = (batch_size,) + _standardize_shape(shape, "shape")
        self.batch_shape = _standardize_shape(batch_shape, "batch_shape")
        if not self.batch_shape:
            raise ValueError("Input: the shape needs at least the batch dimension.")
        try:
            self.dtype = np.dtype("float32" if dtype is None else dtype)
        except TypeError:
            raise TypeError(f"Input: unknown dtype {dtype!r}.") from None
        if not (np.issubdtype(self.dtype, np.number) or self.dtype == bool) or np.issubdtype(
            self.dtype, np.complexfloating
        ):
            raise TypeError(f"Input: dtype must be a real numeric dtype, got {dtype!r}.")
        self.sparse = False
        self.ragged = False
        self.optional = False
        self.input_shape = self.batch_shape
        self.built = True
        tensor = KerasTensor(self.batch_shape, self.dtype.name, name=self.name)
        Node(self, (), {}, tensor)

    @property
    def trainable_weights(self) -> list:
        return []

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return self.batch_shape

    def get_config(self) -> dict:
        return {
            "batch_shape": list(self.batch_shape),
            "dtype": self.dtype.name,
            "sparse": False,
            "ragged": False,
            "name": self.name,
            "optional": False,
        }

    @classmethod
    def from_config(cls, config: dict) -> InputLayer:
        config = dict(config)
        config.pop("trainable", None)
        return cls(**config)


def Input(  # noqa: N802 (Keras's name)
    shape: tuple | None = None,
    batch_size: int | None = None,
    dtype: str | None = None,
    sparse: bool | None = None,
    batch_shape: tuple | None = None,
    name: str | None = None,
    tensor: Any = None,
    optional: bool = False,
) -> KerasTensor:
    """A symbolic input: the start of a Functional model, or the first element of a Sequential.

    Args:
        shape: shape of one sample, without the batch dimension, e.g. ``(timesteps, features)``;
            None for a dimension of any size.
        batch_size: optional fixed batch size.
        dtype: dtype of the data, default ``"float32"``; use an integer dtype for indices fed
            to an ``Embedding``.
        sparse: only None/False.
        batch_shape: the full shape with the batch dimension instead of ``shape`` (and
            ``batch_size``); a fixed batch size is what stateful recurrent layers need.
        name: the input's name (also the key for dict inputs), default ``input_layer`` with
            Keras-style numbering.
        tensor: not supported (must be None).
        optional: not supported (must be False).

    Returns:
        A ``KerasTensor`` of shape ``(batch_size,) + shape``.

    Raises:
        ValueError: inconsistent shape arguments or an unsupported option.
        TypeError: a non-numeric dtype.

    Example:
        >>> seq = Input((None, 8), name="seq")        # (None, None, 8)
        >>> out = Dense(1)(LSTM(16)(seq))
        >>> model = Model(seq, out)
        >>> Sequential([Input((12, 1)), SimpleRNN(3), Dense(1)])   # the Keras 3 idiom
    """
    layer = InputLayer(
        shape=shape,
        batch_size=batch_size,
        dtype=dtype,
        sparse=sparse,
        batch_shape=batch_shape,
        name=name,
        optional=optional,
        input_tensor=tensor,
    )
    return layer.output


def _is_shape(s: Any) -> bool:
    return isinstance(s, (tuple, list)) and all(
        d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in s
    )


def _symbolic_outputs(shape: Any, dtype: str) -> Any:
    if _is_shape(shape):
        return KerasTensor(tuple(shape), dtype)
    if isinstance(shape, (list, tuple)):
        return type(shape)(_symbolic_outputs(s, dtype) for s in shape)
    raise TypeError(f"compute_output_shape returned {shape!r}, not a shape or a list of shapes.")


def _reject_arrays(structure: Any, layer: Layer, argument: str) -> None:
    for leaf in flatten(structure):
        if isinstance(leaf, np.ndarray) or hasattr(leaf, "__array_interface__"):
            raise TypeError(
                f"Layer {layer.name!r}: in a graph, {argument} must be symbolic tensors (from "
                "Input or other layers), not arrays: a graph stores no data."
            )


def symbolic_call(layer: Layer, inputs: Any, kwargs: dict) -> Any:
    """Records ``layer(inputs, **kwargs)`` on symbolic tensors and returns symbolic outputs.

    Builds the layer from the inputs' shapes on first use (the batch dimension included, so a
    fixed ``batch_shape`` reaches stateful layers).

    Raises:
        TypeError: inputs that mix symbolic tensors and arrays, or a non-symbolic input.
        ValueError: inputs of a shape the layer cannot take.
    """
    if isinstance(layer, InputLayer):
        raise TypeError("An InputLayer is not called; use Input(...) to get its tensor.")
    flat = flatten(inputs)
    if not flat or not all(isinstance(t, KerasTensor) for t in flat):
        raise TypeError(
            f"Layer {layer.name!r}: the inputs of a call in a graph must all be symbolic tensors "
            f"(from Input or other layers), got {inputs!r}."
        )
    if isinstance(inputs, (list, tuple)) and not getattr(layer, "_takes_list", False):
        raise TypeError(
            f"Layer {layer.name!r} ({type(layer).__name__}) takes one tensor, got a list of "
            f"{len(inputs)}; merge several tensors first (e.g. fastrnn.layers.Concatenate)."
        )
    for key, value in kwargs.items():
        if key != "training":
            _reject_arrays(value, layer, key)
    if not hasattr(layer, "_symbolic_outputs"):
        shape = map_structure(lambda t: tuple(t.shape), inputs)
        layer._maybe_build(inputs, shape=shape)
        layer._check_input(inputs)
        out_shape = layer.compute_output_shape(shape)
        outputs = _symbolic_outputs(out_shape, layer.dtype.name)
    else:  # a model used as a layer computes its outputs itself
        outputs = layer._symbolic_outputs(inputs, kwargs)
    Node(layer, inputs, kwargs, outputs)
    return outputs


__all__ = ["Input", "InputLayer", "KerasHistory", "KerasTensor", "Node", "is_symbolic"]
