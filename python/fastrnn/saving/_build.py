"""Building layers from an untrusted config, checked against the weights the file declares.

A config may ask for any size (``units=10**9``). Building such a layer would spend minutes and
gigabytes initializing weights before ``set_weights`` could notice they do not match the file.
``build_checked`` builds a layer with every ``add_weight`` call intercepted (on the layer and on
the layers it holds, e.g. Bidirectional's two directions): each requested shape is compared with
the next array the file declares *before* anything is allocated, and weights are created with
the ``zeros`` initializer since the file's values overwrite them anyway. The interception is per
instance (the instance attribute shadows the method), so other threads are not affected.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from fastrnn.saving._archive import check_float_dtype


@dataclass(frozen=True)
class Expected:
    """One array as the file declares it, before its data is read."""

    shape: tuple
    dtype: np.dtype  # as stored
    entry: str  # where it lives in the file (zip entry or HDF5 path)


def layer_tree(layer: Any) -> list[Any]:
    """``layer`` and every layer it holds in its attributes (lists and tuples included)."""
    from fastrnn.layers import Layer

    out: list[Any] = []
    seen: set[int] = set()
    stack = [layer]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(obj)
        children = []
        for value in vars(obj).values():
            if isinstance(value, Layer):
                children.append(value)
            elif isinstance(value, (list, tuple)):
                children.extend(v for v in value if isinstance(v, Layer))
        stack.extend(reversed(children))
    return out


class WeightPlan:
    """The arrays a file declares, consumed in order by the layers' ``add_weight`` calls.

    Args:
        expected: the declared arrays, in the order the layers create their weights.
        fail: ``fail(entry, message)`` returns the exception to raise.
        where: the entry to name when ``expected`` is empty.
    """

    def __init__(
        self,
        expected: list[Expected],
        fail: Callable[[str | None, str], Exception],
        where: str | None = None,
    ):
        self.expected = list(expected)
        self.fail = fail
        self.where = where  # the entry named when the file holds no array at all
        self.position = 0

    def take(self, owner: str, weight: str, shape: tuple) -> Expected:
        if self.position >= len(self.expected):
            last = self.expected[-1].entry if self.expected else self.where
            raise self.fail(
                last,
                f"{owner} creates weight {weight!r} of shape {shape}, but the file holds no more "
                "weights for it",
            )
        item = self.expected[self.position]
        if shape != item.shape:
            raise self.fail(
                item.entry,
                f"{owner}: its config gives weight {weight!r} shape {shape}, but the file holds "
                f"shape {item.shape}",
            )
        self.position += 1
        return item

    def finish(self, owner: str) -> None:
        """Checks that every declared array was claimed by a weight."""
        if self.position != len(self.expected):
            item = self.expected[self.position]
            raise self.fail(
                item.entry,
                f"the file holds {len(self.expected)} weight arrays for {owner}, whose config "
                f"creates {self.position}",
            )


def _normalize_shape(shape: Any) -> tuple:
    out = []
    for d in tuple(shape):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise ValueError(f"weight shape {tuple(shape)} is not made of ints")
        out.append(int(d))
    return tuple(out)


def build_checked(layer: Any, input_shape: tuple, plan: WeightPlan, owner: str) -> None:
    """``layer.build(input_shape)`` with every weight checked against ``plan`` before allocation.

    Raises:
        Whatever ``plan.fail`` builds when a weight's shape or dtype differs from the file's;
        the layer's own exceptions from ``build``.
    """
    patched = []
    for obj in layer_tree(layer):
        original = obj.add_weight
        signature = inspect.signature(original)

        def add_weight(*args: Any, _original=original, _sig=signature, _obj=obj, **kwargs: Any):
            bound = _sig.bind(*args, **kwargs)
            bound.apply_defaults()
            name = str(bound.arguments.get("name"))
            shape = _normalize_shape(bound.arguments["shape"])
            who = owner if _obj is layer else f"{owner}, {type(_obj).__name__} {_obj.name!r}"
            item = plan.take(who, name, shape)
            if "initializer" in bound.arguments:
                bound.arguments["initializer"] = "zeros"  # the file's values replace it
            weight = _original(*bound.args, **bound.kwargs)
            stored = check_float_dtype(item.dtype)
            if np.dtype(weight.dtype) != stored:
                raise plan.fail(
                    item.entry,
                    f"{owner}: weight {name!r} is stored as {stored.name} but the layer "
                    f"computes in {np.dtype(weight.dtype).name} (its config's dtype); "
                    "weights are never cast silently",
                )
            return weight

        obj.add_weight = add_weight
        patched.append(obj)
    try:
        layer.build(tuple(input_shape))
    finally:
        for obj in patched:
            obj.__dict__.pop("add_weight", None)
