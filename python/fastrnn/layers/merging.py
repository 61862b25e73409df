"""Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum (forward and backward).

Each takes a list of tensors of the same batch size and returns one tensor, as Keras's merge
layers do, masks included:

* Add, Subtract, Average combine the values as they are; the output carries the OR of the
  inputs' masks when every input has one, else no mask.
* Multiply treats masked entries of an input as 1 and, when every input has a mask, zeroes the
  output where all inputs are masked; Maximum takes a masked entry's value from the other
  inputs. Both carry the OR of the masks when every input has one.
* Concatenate carries a mask when any input has one: an input without a mask counts as all
  kept, the masks are concatenated along ``axis`` (broadcast over the features) and reduced over
  the last axis with OR.

Inputs of different ranks (element-wise layers only) get new axes after the batch axis, so
``Add()([x (B, T, F), y (B, F)])`` adds ``y`` at every time step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastrnn.layers.base import Layer, check_numeric_array


def _broadcast_shape(shape1: tuple | None, shape2: tuple | None, owner: str) -> tuple | None:
    """Keras's element-wise output shape (no batch axis), trailing axes aligned."""
    if shape1 is None or shape2 is None:
        return None
    if len(shape1) < len(shape2):
        shape1, shape2 = shape2, shape1
    if not shape2:
        return tuple(shape1)
    out = list(shape1[: -len(shape2)])
    for i, j in zip(shape1[-len(shape2) :], shape2):
        if i is None or j is None:
            out.append(None)
        elif i == 1:
            out.append(j)
        elif j == 1 or i == j:
            out.append(i)
        else:
            raise ValueError(
                f"{owner}: inputs have incompatible shapes; got (without the batch axis) "
                f"{tuple(shape1)} and {tuple(shape2)}."
            )
    return tuple(out)


def _or_masks(masks: list) -> np.ndarray:
    out = np.asarray(masks[0], dtype=bool)
    for m in masks[1:]:
        out = out | np.asarray(m, dtype=bool)
    return out


def _sum_to(d: np.ndarray, shape: tuple) -> np.ndarray:
    """Sums ``d`` over the axes broadcasting added to an array of ``shape`` (same rank)."""
    axes = tuple(i for i, (a, b) in enumerate(zip(d.shape, shape)) if b == 1 and a != 1)
    return d.sum(axis=axes, keepdims=True) if axes else d


class _Merge(Layer):
    """Base of the merge layers: a list of inputs in, one output.

    Call arguments:
        inputs: a list of arrays with the same batch size.
        mask: None or a list with one mask (or None) per input.
        training: unused.
    """

    supports_masking = True
    _takes_list = True
    _min_inputs = 1
    _exact_inputs: int | None = None

    # ---- inputs ------------------------------------------------------------------------------
    def _check_list(self, inputs: Any) -> None:
        owner = f"{type(self).__name__} {self.name!r}"
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"{owner}: a merge layer is called on a list of inputs, got {inputs!r}."
            )
        n = len(inputs)
        if self._exact_inputs is not None and n != self._exact_inputs:
            raise ValueError(f"{owner}: expects exactly {self._exact_inputs} inputs, got {n}.")
        if n < self._min_inputs:
            raise ValueError(f"{owner}: expects at least {self._min_inputs} input(s), got {n}.")

    def _convert(self, inputs: Any) -> list[np.ndarray]:
        self._check_list(inputs)
        xs = []
        for i, x in enumerate(inputs):
            x = np.asarray(x)
            check_numeric_array(x, f"{type(self).__name__} {self.name!r}", f"inputs[{i}]")
            xs.append(x.astype(self.dtype, copy=False))
        return xs

    def _build_shape(self, xs: list) -> list:
        return [(None,) + tuple(x.shape[1:]) for x in xs]

    def _check_first_input(self, xs: Any) -> None:
        self._check_list(xs)
        for i, x in enumerate(xs):
            if x.ndim < 1:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: inputs[{i}] needs a batch axis, got "
                    f"shape {tuple(x.shape)}."
                )

    def build(self, input_shape: list) -> None:
        shapes = [tuple(s) for s in input_shape]
        batches = {s[0] for s in shapes} - {None}
        if len(batches) > 1:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: cannot merge tensors with different "
                f"batch sizes, got shapes {shapes}."
            )
        self.compute_output_shape(shapes)  # raises for incompatible shapes
        self.input_shape = shapes
        self.built = True

    def _check_input(self, xs: Any) -> None:
        self._check_list(xs)
        if self.input_shape is not None and len(xs) != len(self.input_shape):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} was built for {len(self.input_shape)} "
                f"inputs, got {len(xs)}."
            )
        shapes = [tuple(x.shape) for x in xs]
        batches = {s[0] for s in shapes} - {None}
        if len(batches) > 1:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: cannot merge tensors with different "
                f"batch sizes, got shapes {shapes}."
            )
        self._output_shape_no_batch([s[1:] for s in shapes])

    # ---- shapes --------------------------------------------------------------------------------
    def _output_shape_no_batch(self, shapes: list) -> tuple | None:
        owner = f"{type(self).__name__} {self.name!r}"
        out = shapes[0]
        for s in shapes[1:]:
            out = _broadcast_shape(out, s, owner)
        return out

    def compute_output_shape(self, input_shape: list) -> tuple:
        shapes = [tuple(s) for s in input_shape]
        out = self._output_shape_no_batch([s[1:] for s in shapes])
        batches = {s[0] for s in shapes} - {None}
        return ((batches.pop() if len(batches) == 1 else None),) + tuple(out)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)) or len(mask) != len(inputs):
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: mask must be a list with one entry per "
                f"input, got {mask!r}."
            )
        if any(m is None for m in mask):
            return None
        return _or_masks(list(mask))

    # ---- shared helpers ------------------------------------------------------------------------
    @staticmethod
    def _expand(xs: list[np.ndarray]) -> list[np.ndarray]:
        """New axes after the batch axis so every input has the largest rank."""
        rank = max(x.ndim for x in xs)
        return [x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:]) for x in xs]

    def _masks_for(self, xs: list[np.ndarray], mask: Any) -> list:
        """Each input's mask broadcast to its (expanded) shape, or None."""
        if mask is None:
            return [None] * len(xs)
        out = []
        for x, m in zip(xs, mask):
            if m is None:
                out.append(None)
                continue
            m = np.asarray(m, dtype=bool)
            if m.ndim != x.ndim - 1 or m.shape != x.shape[: m.ndim]:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: a mask of shape {m.shape} does not fit "
                    f"an input of shape {x.shape} (expected {x.shape[:-1]})."
                )
            out.append(np.broadcast_to(m[..., None], x.shape))
        return out

    def call(self, inputs: list, mask: Any = None, training: bool = False) -> np.ndarray:
        xs = self._expand(inputs)
        out, cache = self._merge(xs, mask)
        if training:
            shapes = (tuple(x.shape for x in inputs), tuple(x.shape for x in xs))
            self._cache = (shapes, out.shape, cache)
        else:
            self._cache = None
        return out

    def backward(self, dy: Any) -> list[np.ndarray]:
        """Returns one gradient per input (same shapes as the inputs); no weights."""
        (shapes, expanded), out_shape, cache = self._require_cache()
        dy = self._as_grad(dy, out_shape)
        self.gradients = []
        grads = []
        for d, shape, eshape in zip(self._merge_backward(dy, cache, expanded), shapes, expanded):
            d = np.broadcast_to(d, np.broadcast_shapes(d.shape, eshape))
            grads.append(np.ascontiguousarray(_sum_to(d, eshape).reshape(shape), dtype=self.dtype))
        return grads

    def _merge(self, xs: list[np.ndarray], mask: Any) -> tuple[np.ndarray, Any]:
        """The merged output and what ``_merge_backward`` needs."""
        raise NotImplementedError

    def _merge_backward(self, dy: np.ndarray, cache: Any, shapes: tuple) -> list[np.ndarray]:
        """d(output)/d(input) products, one per input (broadcastable to the expanded shapes)."""
        raise NotImplementedError


class Add(_Merge):
    """Adds a list of inputs element-wise: ``inputs[0] + inputs[1] + ...``.

    Args:
        **kwargs: ``name``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: a list of arrays of the same shape (or broadcastable, trailing axes aligned).
        mask: None or one mask per input; the output carries their OR when all are given.

    Returns:
        One array of the broadcast shape.

    Raises:
        ValueError: not a list, incompatible shapes or batch sizes.

    Example:
        >>> Add()([np.ones((2, 3)), np.ones((2, 3))])   # (2, 3) of 2.0
    """

    def _merge(self, xs, mask):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out, None

    def _merge_backward(self, dy, cache, shapes):
        return [dy] * len(shapes)


class Subtract(_Merge):
    """Subtracts two inputs: ``inputs[0] - inputs[1]``.

    Args:
        **kwargs: ``name``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: a list of exactly two arrays of the same (or broadcastable) shape.
        mask: None or one mask per input; the output carries their OR when both are given.

    Returns:
        One array.

    Raises:
        ValueError: not exactly two inputs, incompatible shapes or batch sizes.

    Example:
        >>> Subtract()([np.full((2, 3), 5.0), np.ones((2, 3))])   # (2, 3) of 4.0
    """

    _exact_inputs = 2

    def _merge(self, xs, mask):
        return xs[0] - xs[1], None

    def _merge_backward(self, dy, cache, shapes):
        return [dy, -dy]


class Average(_Merge):
    """Averages a list of inputs element-wise: ``sum(inputs) / len(inputs)``.

    Args:
        **kwargs: ``name``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: a list of arrays of the same (or broadcastable) shape.
        mask: None or one mask per input; the output carries their OR when all are given.

    Returns:
        One array.

    Raises:
        ValueError: not a list, incompatible shapes or batch sizes.

    Example:
        >>> Average()([np.zeros((2, 3)), np.full((2, 3), 4.0)])   # (2, 3) of 2.0
    """

    def _merge(self, xs, mask):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out / self.dtype.type(len(xs)), None

    def _merge_backward(self, dy, cache, shapes):
        n = len(shapes)
        return [dy / self.dtype.type(n)] * n


class Multiply(_Merge):
    """Multiplies a list of inputs element-wise.

    With masks (as Keras): a masked entry of an input counts as 1; when every input has a mask,
    the output is 0 where all inputs are masked.

    Args:
        **kwargs: ``name``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: a list of arrays of the same (or broadcastable) shape.
        mask: None or one mask per input.

    Returns:
        One array.

    Raises:
        ValueError: not a list, incompatible shapes or batch sizes.

    Example:
        >>> Multiply()([np.full((2, 3), 2.0), np.full((2, 3), 3.0)])   # (2, 3) of 6.0
    """

    def _merge(self, xs, mask):
        masks = self._masks_for(xs, mask)
        factors = []
        for x, m in zip(xs, masks):
            factors.append(x if m is None else np.where(m, x, self.dtype.type(1)))
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        out_mask = None
        if all(m is not None for m in masks):
            out_mask = np.broadcast_to(_or_masks(masks), out.shape)
            out = np.where(out_mask, out, self.dtype.type(0))
        return out, (factors, masks, out_mask)

    def _merge_backward(self, dy, cache, shapes):
        factors, masks, out_mask = cache
        if out_mask is not None:
            dy = np.where(out_mask, dy, self.dtype.type(0))
        grads = []
        for i, m in enumerate(masks):
            d = dy
            for j, f in enumerate(factors):
                if j != i:
                    d = d * f
            if m is not None:
                d = np.where(np.broadcast_to(m, d.shape), d, self.dtype.type(0))
            grads.append(d)
        return grads


class Maximum(_Merge):
    """Element-wise maximum of a list of inputs.

    With masks (as Keras): a masked entry of an input takes the value of the inputs before it,
    so masked values never win over kept ones.

    Args:
        **kwargs: ``name``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: a list of arrays of the same (or broadcastable) shape.
        mask: None or one mask per input; the output carries their OR when all are given.

    Returns:
        One array; backward sends each gradient to the input the maximum came from.

    Raises:
        ValueError: not a list, incompatible shapes or batch sizes.

    Example:
        >>> Maximum()([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])])   # [[3.0, 5.0]]
    """

    def _merge(self, xs, mask):
        masks = self._masks_for(xs, mask)
        shape = np.broadcast_shapes(*(x.shape for x in xs))
        out = np.broadcast_to(xs[0], shape)
        source = np.zeros(shape, dtype=np.intp)
        out_mask = masks[0]
        for i, (x, m) in enumerate(zip(xs[1:], masks[1:]), start=1):
            x = np.broadcast_to(x, shape)
            x_source = np.full(shape, i, dtype=np.intp)
            if m is not None:
                m = np.broadcast_to(m, shape)
                x = np.where(m, x, out)
                x_source = np.where(m, x_source, source)
            if out_mask is not None:
                om = np.broadcast_to(out_mask, shape)
                out = np.where(om, out, x)
                source = np.where(om, source, x_source)
            out_mask = out_mask | m if (m is not None and out_mask is not None) else None
            take = x > out
            out = np.where(take, x, out)
            source = np.where(take, x_source, source)
        return np.array(out, dtype=self.dtype), source

    def _merge_backward(self, dy, source, shapes):
        zero = self.dtype.type(0)
        return [np.where(source == i, dy, zero) for i in range(len(shapes))]


class Concatenate(_Merge):
    """Concatenates a list of inputs along ``axis``.

    Args:
        axis: int, default -1 (the feature axis); 1 joins sequences in time.
        **kwargs: ``name``, ``dtype``, ``trainable``.

    Call arguments:
        inputs: a list of arrays of the same rank and shape except along ``axis``.
        mask: None or one mask per input; see the module docstring for the output mask.

    Returns:
        One array.

    Raises:
        ValueError: not a list, different ranks, or shapes that differ off ``axis``.

    Example:
        >>> Concatenate()([np.ones((2, 3)), np.zeros((2, 4))]).shape   # (2, 7)
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"Concatenate: axis must be an int, got {axis!r}.")
        self.axis = int(axis)

    def _axis(self, rank: int) -> int:
        axis = self.axis % rank if -rank <= self.axis < rank else None
        if axis is None or axis == 0:
            raise ValueError(
                f"Concatenate {self.name!r}: axis={self.axis} is not a non-batch axis of inputs "
                f"of rank {rank}."
            )
        return axis

    def _output_shape_no_batch(self, shapes: list) -> tuple | None:
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(
                f"Concatenate {self.name!r}: inputs must have the same rank, got shapes "
                f"(without the batch axis) {shapes}."
            )
        rank = ranks.pop() + 1
        axis = self._axis(rank) - 1
        out = list(shapes[0])
        for s in shapes[1:]:
            for k, (a, b) in enumerate(zip(out, s)):
                if k == axis:
                    out[k] = None if a is None or b is None else a + b
                elif a is not None and b is not None and a != b:
                    raise ValueError(
                        f"Concatenate {self.name!r} requires inputs with matching shapes except "
                        f"for the concatenation axis; got shapes (without the batch axis) {shapes}."
                    )
                elif a is None:
                    out[k] = b
        return tuple(out)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)) or len(mask) != len(inputs):
            raise ValueError(
                f"Concatenate {self.name!r}: mask must be a list with one entry per input, "
                f"got {mask!r}."
            )
        if all(m is None for m in mask):
            return None
        full = []
        for x, m in zip(inputs, mask):
            shape = tuple(np.shape(x))
            if m is None:
                full.append(np.ones(shape, dtype=bool))
            else:
                m = np.asarray(m, dtype=bool)
                full.append(np.broadcast_to(m[..., None], shape) if m.ndim < len(shape) else m)
        joined = np.concatenate(full, axis=self._axis(len(full[0].shape)))
        return np.any(joined, axis=-1)

    def _merge(self, xs, mask):
        return np.concatenate(xs, axis=self._axis(xs[0].ndim)), None

    def _merge_backward(self, dy, cache, shapes):
        axis = self._axis(dy.ndim)
        bounds = np.cumsum([s[axis] for s in shapes])[:-1]
        return np.split(dy, bounds, axis=axis)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


def _functional(cls: type, inputs: list, **kwargs: Any) -> Any:
    return cls(**kwargs)(inputs)


def add(inputs: list, **kwargs: Any) -> Any:
    """``Add(**kwargs)(inputs)``."""
    return _functional(Add, inputs, **kwargs)


def subtract(inputs: list, **kwargs: Any) -> Any:
    """``Subtract(**kwargs)(inputs)``."""
    return _functional(Subtract, inputs, **kwargs)


def multiply(inputs: list, **kwargs: Any) -> Any:
    """``Multiply(**kwargs)(inputs)``."""
    return _functional(Multiply, inputs, **kwargs)


def average(inputs: list, **kwargs: Any) -> Any:
    """``Average(**kwargs)(inputs)``."""
    return _functional(Average, inputs, **kwargs)


def maximum(inputs: list, **kwargs: Any) -> Any:
    """``Maximum(**kwargs)(inputs)``."""
    return _functional(Maximum, inputs, **kwargs)


def concatenate(inputs: list, axis: int = -1, **kwargs: Any) -> Any:
    """``Concatenate(axis=axis, **kwargs)(inputs)``."""
    return _functional(Concatenate, inputs, axis=axis, **kwargs)


__all__ = [
    "Add",
    "Average",
    "Concatenate",
    "Maximum",
    "Multiply",
    "Subtract",
    "add",
    "average",
    "concatenate",
    "maximum",
    "multiply",
    "subtract",
]
