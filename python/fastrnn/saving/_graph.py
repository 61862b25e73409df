"""Functional model graphs in files: reading them safely, Keras's layer order and Keras's masks.

A Functional model's config lists its layers, each with the calls made on it (``inbound_nodes``),
whose tensors name the call that produced them: ``[layer name, node index, tensor index]``.
``parse_graph`` turns such a config into a ``Graph`` of calls in an order where every tensor
exists before it is used, with each tensor's shape computed by the layers' own
``compute_output_shape`` and checked against the shapes the file declares — before any layer is
built. It walks the graph with loops (never recursion), bounds the number of calls, and raises
``GraphError`` naming the config path for unknown layers, node or tensor indices out of range,
cycles, duplicate names and arguments fastrnn does not understand.

Two things about Keras's graphs matter when a file is read or written:

* **Keras's ``model.layers`` order.** Weights files name each layer's group after its class,
  numbered in the order of ``model.layers`` (``dense``, ``dense_1`` ...). Keras orders a
  Functional model's operations by depth from the outputs (``map_graph``), counting the small
  operations Keras records to compute masks (``NotEqual``, ``LogicalOr`` ...) although they are
  not layers: a mask computed over three operations makes the layers above it deeper.
  ``keras_order`` replays Keras's algorithm on a graph that includes those operations.
* **Keras's masks.** When a layer that takes a ``mask`` argument is called on a masked tensor,
  Keras records the mask as an explicit ``mask=`` argument, computed by those operations. fastrnn
  carries masks along the graph's edges itself, so a file's mask operations are checked to be
  exactly the ones Keras derives from the layers (``MaskSimulation``) and then dropped; anything
  else (a mask the model's author computed by hand) is refused, never silently replaced. Masks
  that are plain tensors (an ``Input``) stay explicit arguments.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_CALLS = 20_000
"""Most layer calls and operations a file's model graphs may hold in all (nested models too)."""

MAX_NESTING = 16
"""Most levels of models nested in models."""

MAX_TRACED = MAX_CALLS
"""Most calls followed when tracing masks (a nested model is traced once per distinct set of
masks it receives)."""


class GraphError(Exception):
    """A problem with a model graph, its message starting with the config path."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def is_shape(value: Any) -> bool:
    return isinstance(value, tuple) and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in value
    )


def flat_shapes(structure: Any) -> list[tuple]:
    """The shapes in a nest of shapes (a shape is a tuple of ints/None)."""
    out: list[tuple] = []
    stack = [structure]
    while stack:
        item = stack.pop()
        if is_shape(item):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        else:
            raise GraphError(f"not a shape or a list of shapes: {_short(item)}")
    return out


def flatten(structure: Any) -> list:
    """The leaves of a nest of lists, tuples and dicts (dicts by sorted key, as Keras)."""
    out: list = []
    stack = [structure]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(item[k] for k in reversed(sorted(item)))
        else:
            out.append(item)
    return out


def map_structure(fn: Callable[[Any], Any], structure: Any) -> Any:
    if isinstance(structure, list):
        return [map_structure(fn, v) for v in structure]
    if isinstance(structure, tuple):
        return tuple(map_structure(fn, v) for v in structure)
    if isinstance(structure, dict):
        return {k: map_structure(fn, v) for k, v in structure.items()}
    return fn(structure)


# ---- Keras's map_graph ------------------------------------------------------------------------
@dataclass(eq=False)
class GNode:
    """One call in a graph, as Keras's ``map_graph`` sees it.

    Attributes:
        op: the operation called (a layer, or an ``OpValue`` for a mask operation); the same
            object for every call of a shared layer.
        inputs: the values it reads, in Keras's order (positional arguments, then keyword
            arguments by sorted name): tensor keys or ``OpValue``s.
        is_input: an ``InputLayer``'s own node.
    """

    op: Any
    inputs: list
    is_input: bool = False


def keras_order(producer: dict, inputs: list, outputs: list, where: str = "config") -> list:
    """The operations of a graph in Keras's order (``Function``'s ``map_graph``).

    Args:
        producer: value key -> the ``GNode`` producing it.
        inputs: the model's input keys.
        outputs: the model's output keys.

    Returns:
        The operations (``GNode.op``), deepest first, ties in first-traversal order.

    Raises:
        GraphError: a cycle, or a value without a producer.
    """

    def node_of(key: Any) -> GNode:
        node = producer.get(key)
        if node is None:
            raise GraphError(f"{where}: a tensor no call produces")
        return node

    finished: set = set()
    in_progress: set = set()
    ordered: list[GNode] = []
    op_index: dict = {}

    def enter(key: Any) -> GNode | None:
        node = node_of(key)
        if node in finished:
            return None
        if node in in_progress:
            raise GraphError(f"{where}: the graph has a cycle")
        op_index.setdefault(node.op, len(op_index))
        in_progress.add(node)
        return node

    for out in outputs:  # Keras's recursive depth-first walk, with an explicit stack
        first = enter(out)
        if first is None:
            continue
        stack: list[list] = [[first, 0]]
        while stack:
            frame = stack[-1]
            node, i = frame
            children = [] if node.is_input else node.inputs
            if i < len(children):
                frame[1] += 1
                child = enter(children[i])
                if child is not None:
                    stack.append([child, 0])
            else:
                stack.pop()
                finished.add(node)
                in_progress.discard(node)
                ordered.append(node)
    in_graph = set(ordered)
    node_depth: dict = {}
    op_depth: dict = {}
    for node in reversed(ordered):
        depth = node_depth.setdefault(node, 0)
        depth = max(depth, op_depth.get(node.op, 0))
        op_depth[node.op] = depth
        node_depth[node] = depth
        if node.is_input:
            continue
        for key in node.inputs:
            parent = producer[key]
            if parent in in_graph:
                node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for key in inputs:  # inputs no output depends on still belong to the model
        node = node_of(key)
        if node.op not in op_depth and node.is_input:
            op_depth[node.op] = 0
            op_index[node.op] = -1
    by_depth: dict[int, list] = {}
    for op, depth in op_depth.items():
        by_depth.setdefault(depth, []).append(op)
    order = []
    for depth in sorted(by_depth, reverse=True):
        order.extend(sorted(by_depth[depth], key=lambda op: op_index[op]))
    return order


# ---- mask operations --------------------------------------------------------------------------
class OpValue:
    """The output of a mask operation. Interned by ``MaskOps``: one object per distinct
    computation, so identity is equality."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"OpValue({self.index})"


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise GraphError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def _reduce_shape(shapes: list, cfg: dict) -> tuple:
    shape = shapes[0]
    axis = _axis(cfg["axis"], len(shape))
    if cfg["keepdims"]:
        return shape[:axis] + (1,) + shape[axis + 1 :]
    return shape[:axis] + shape[axis + 1 :]


def _expand_shape(shapes: list, cfg: dict) -> tuple:
    shape = shapes[0]
    axis = _axis(cfg["axis"], len(shape) + 1)
    return shape[:axis] + (1,) + shape[axis:]


def _broadcast_shape(shapes: list, cfg: dict) -> tuple:
    a, b = shapes
    if len(a) < len(b):
        a, b = b, a
    b = (1,) * (len(a) - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
            raise GraphError(f"shapes {a} and {b} do not broadcast")
    return tuple(out)


def _concat_shape(shapes: list, cfg: dict) -> tuple:
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise GraphError(f"cannot concatenate shapes {shapes}")
    axis = _axis(cfg["axis"], ranks.pop())
    out = list(shapes[0])
    for s in shapes[1:]:
        out[axis] = None if out[axis] is None or s[axis] is None else out[axis] + s[axis]
    return tuple(out)


def _same_shape(shapes: list, cfg: dict) -> tuple:
    return shapes[0]


MASK_OPS: dict[str, tuple[frozenset, Callable[[list, dict], tuple], int]] = {
    # Keras operations that compute masks. class: (config keys besides "name", the output shape
    # from the shapes of the values read, number of positional arguments)
    "NotEqual": (frozenset(), _same_shape, 2),
    "Any": (frozenset({"axis", "keepdims"}), _reduce_shape, 1),
    "ExpandDims": (frozenset({"axis"}), _expand_shape, 1),
    "ZerosLike": (frozenset({"dtype"}), _same_shape, 1),
    "OnesLike": (frozenset({"dtype"}), _same_shape, 1),
    "LogicalOr": (frozenset(), _broadcast_shape, 2),
    "Concatenate": (frozenset({"axis"}), _concat_shape, 1),
}


def _canonical(value: Any) -> Any:
    """A hashable form of operation arguments: values as themselves, numbers by value (``0`` and
    ``0.0`` alike), lists as tagged tuples."""
    kind = type(value)
    if kind is OpValue or kind is TKey:
        return value
    if kind is list or kind is tuple:
        return ("l", *map(_canonical, value))
    if kind is bool:
        return ("b", value)
    if kind is int or kind is float:
        return ("n", float(value))
    if value is None or kind is str:
        return value
    return ("v", value)  # another kind of tensor key


class MaskOps:
    """Interned mask operations: the nodes they add to Keras's graph, their output shapes, and
    what they are (to write them in files).

    Args:
        shape: ``shape(key)`` of a tensor key.
    """

    def __init__(self, shape: Callable[[Any], tuple]) -> None:
        self._shape = shape
        self.keys: dict[tuple, OpValue] = {}
        self.nodes: list[GNode] = []
        self.shapes: list[tuple] = []
        self.specs: list[tuple[str, dict, tuple]] = []  # (class, config, args)
        self.traced = 0  # calls followed by the mask simulations sharing these operations
        self.nested: dict = {}  # (id(model), its input masks) -> its output masks
        self.graphs: dict = {}  # id(model) -> its calls, inputs, outputs and alias

    def shape(self, value: Any) -> tuple:
        if isinstance(value, OpValue):
            return self.shapes[value.index]
        return tuple(self._shape(value))

    def rank(self, value: Any) -> int:
        return len(self.shape(value))

    def op(self, class_name: str, config: dict, *args: Any) -> OpValue:
        """The value of Keras's operation ``class_name(*args)`` with ``config`` (name left out).

        Raises:
            GraphError: arguments of shapes the operation cannot take.
        """
        key = (class_name, tuple(sorted(config.items())), _canonical(args))
        found = self.keys.get(key)
        if found is not None:
            return found
        values = [v for v in flatten(list(args)) if is_value(v)]
        shape = MASK_OPS[class_name][1]([self.shape(v) for v in values], config)
        value = OpValue(len(self.nodes))
        self.keys[key] = value
        self.nodes.append(GNode(value, values))
        self.shapes.append(tuple(shape))
        self.specs.append((class_name, dict(config), args))
        return value


def is_value(v: Any) -> bool:
    """Whether a leaf of call arguments is a value (tensor key or OpValue), not a constant."""
    return not (v is None or isinstance(v, (bool, int, float, str)))


# ---- what Keras does with masks, per layer -----------------------------------------------------
@dataclass(frozen=True)
class Masking:
    """How a layer class handles masks in Keras.

    Attributes:
        kind: ``pass`` (its output carries its input's mask), ``none`` (no mask out),
            ``embedding``, ``masking``, ``rnn``, ``bidirectional``, ``merge`` (the OR of the
            inputs' masks when all have one), ``concatenate``, ``model`` (a nested model:
            no symbolic mask out, its layers' masks when it runs).
        call_mask: Keras's ``call`` takes ``mask``, so Keras records the mask it hands over.
        convert_inputs: Keras converts the inputs to the layer's dtype (nested Functional models
            do not); a conversion keeps Keras from recording the mask.
    """

    kind: str
    call_mask: bool = False
    convert_inputs: bool = True


def _first(structure: Any) -> Any:
    leaves = flatten(structure)
    return leaves[0] if leaves else None


def output_masks(
    layer: Any, masking: Masking, x: Any, previous: Any, ops: MaskOps, nested: Callable | None
) -> list:
    """Keras's ``compute_mask`` of ``layer`` on ``x``, as mask values: one per flat output (the
    list may be shorter than the outputs; missing entries are None).

    ``nested(layer, x, previous)`` gives a nested model's masks when it runs; None: the symbolic
    masks Keras writes in files (none for nested models).
    """
    kind = masking.kind
    if kind == "pass":
        return flatten(previous) if isinstance(previous, (list, tuple)) else [previous]
    if kind == "embedding":
        return [ops.op("NotEqual", {}, x, 0)] if layer.mask_zero else []
    if kind == "masking":
        inner = ops.op("NotEqual", {}, x, layer.mask_value)
        return [ops.op("Any", {"axis": -1, "keepdims": False}, inner)]
    if kind == "rnn":
        mask = _first(previous)
        out = mask if layer.return_sequences else None
        return [out]
    if kind == "bidirectional":
        mask = previous[0] if isinstance(previous, list) else previous
        if not layer.return_sequences:
            return []
        return [mask, mask] if layer.merge_mode is None else [mask]
    if kind == "merge":
        masks = list(previous) if isinstance(previous, (list, tuple)) else [previous]
        if any(m is None for m in masks):
            return []
        out = masks[0]
        for m in masks[1:]:
            out = ops.op("LogicalOr", {}, out, m)
        return [out]
    if kind == "concatenate":
        masks = list(previous) if isinstance(previous, (list, tuple)) else [previous]
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if all(m is None for m in masks):
            return []
        full = []
        for xi, mi in zip(xs, masks):
            if mi is None:
                full.append(ops.op("OnesLike", {"dtype": "bool"}, xi))
            elif ops.rank(mi) < ops.rank(xi):
                expanded = ops.op("ExpandDims", {"axis": -1}, mi)
                zeros = ops.op("ZerosLike", {"dtype": "bool"}, xi)
                full.append(ops.op("LogicalOr", {}, expanded, zeros))
            else:
                full.append(mi)
        joined = ops.op("Concatenate", {"axis": layer.axis}, full)
        return [ops.op("Any", {"axis": -1, "keepdims": False}, joined)]
    if kind == "model":
        return [] if nested is None else nested(layer, x, previous)
    return []


# ---- calls and their masks ---------------------------------------------------------------------
@dataclass(eq=False)
class Call:
    """One call in a model graph, with value keys in place of tensors.

    Attributes:
        layer: the layer called (a fastrnn layer, ``InputLayer``, a nested model or plan); an
            ``OpSpec`` for a Keras mask operation.
        x: the first argument: a key, or a list of keys for merge layers.
        kwargs: the keyword arguments (keys in place of tensors).
        outputs: the output keys, flat.
        masking: how Keras handles the layer's masks.
        dtype: the dtype Keras converts the inputs to (None: no conversion).
        is_input, is_op: an ``InputLayer``'s own call; a mask operation.
        where: the config path named in errors.
        keep: the keyword arguments fastrnn replays (those of a file, less what it computes
            itself).
        decided: whether ``keep``'s mask was decided.
        entry: the config item (``Entry``) the call belongs to, when read from a file.
    """

    layer: Any
    x: Any
    kwargs: dict
    outputs: list
    masking: Masking | None = None
    dtype: str | None = None
    is_input: bool = False
    is_op: bool = False
    where: str = "config"
    keep: dict = field(default_factory=dict)
    decided: bool = False
    entry: Any = None


def single_tensor(call: Call) -> bool:
    """Keras hands a mask over only to calls with one tensor argument (the first: a tensor, or a
    list of tensors for a model with several inputs); keyword tensors such as ``initial_state``
    count as more."""
    return not any(
        is_value(v) for k, value in call.kwargs.items() if k != "mask" for v in flatten(value)
    )


class MaskSimulation:
    """Keras's masks along a graph of calls, both as Keras writes them in files (``symbolic``)
    and as they flow when the model runs (``eager``: what fastrnn computes).

    Args:
        ops: the interned mask operations.
        dtype_of: ``dtype_of(key)``: a tensor's dtype name.
        nested: ``nested(layer, x, previous, simulation)``: a nested model's masks when it runs.
        check: ``check(call, recorded, fastrnn_mask, derived)`` for every call Keras hands a
            recorded mask to when the model runs (``fastrnn_mask``: what fastrnn hands the call
            without an explicit ``mask`` argument; ``derived``: the mask Keras derives for the
            call from the layers' own rules); raises when they differ.
    """

    def __init__(
        self,
        ops: MaskOps,
        dtype_of: Callable[[Any], str],
        nested: Callable,
        check: Callable[[Call, Any, Any, Any], None],
    ) -> None:
        self.ops = ops
        self.dtype_of = dtype_of
        self.nested = nested
        self.check = check
        self.symbolic: dict = {}
        self.eager: dict = {}
        self.recorded: dict[int, Any] = {}  # id(call) -> the mask Keras records for it

    def auto_records(self, call: Call) -> bool:
        """Keras records the mask it hands to a call made without keyword arguments on one tensor
        of the layer's dtype (its inputs are not converted)."""
        return (
            not call.kwargs
            and call.masking is not None
            and call.masking.call_mask
            and is_value(call.x)
            and not isinstance(call.x, (list, tuple))
            and (not call.masking.convert_inputs or self.dtype_of(call.x) == call.dtype)
        )

    def run(self, calls: list[Call], alias: dict | None = None) -> None:
        """Simulates the calls in order (``alias``: operation outputs -> their ``OpValue``)."""
        alias = alias if alias is not None else {}
        self.ops.traced += len(calls)
        if self.ops.traced > MAX_TRACED:
            raise GraphError(
                f"{calls[0].where if calls else 'config'}: tracing masks through the models "
                f"takes more than {MAX_TRACED} calls (nested models called too often)"
            )
        for call in calls:
            if call.is_input or call.is_op:
                continue
            x = call.x
            recorded = map_structure(lambda v: alias.get(v, v), call.kwargs.get("mask"))
            derived = map_structure(lambda k: self.symbolic.get(k), x)
            if self.auto_records(call):
                recorded = derived
            if recorded is not None:
                self.recorded[id(call)] = recorded
            previous = recorded
            if previous is None:
                previous = map_structure(lambda k: self.symbolic.get(k), x)
            symbolic = output_masks(call.layer, call.masking, x, previous, self.ops, None)
            for key, mask in zip(call.outputs, symbolic):
                if mask is not None:
                    self.symbolic[key] = mask
            # Running, Keras hands the recorded mask, else (one tensor argument, a layer taking
            # masks) the mask the input carries; fastrnn hands the latter or an explicit mask.
            carried = None
            if single_tensor(call) and call.masking.call_mask:
                carried = map_structure(lambda k: self.eager.get(k), x)
            if recorded is not None:
                self.check(call, recorded, carried, derived)
            handed = recorded if recorded is not None else carried
            if handed is None:
                handed = map_structure(lambda k: self.eager.get(k), x)
            eager = output_masks(
                call.layer,
                call.masking,
                x,
                handed,
                self.ops,
                lambda layer, xx, prev: self.nested(layer, xx, prev, self),
            )
            for key, mask in zip(call.outputs, eager):
                if mask is not None:
                    self.eager[key] = mask


def graph_nodes(calls: list[Call], simulation: MaskSimulation, alias: dict) -> dict:
    """value key -> ``GNode`` for Keras's graph of ``calls``: the layer calls with the
    arguments Keras records (masks included) and the mask operations they read."""
    producer: dict = {}
    for call in calls:
        if call.is_op:
            continue
        if call.kwargs:
            kwargs = map_structure(lambda v: alias.get(v, v), call.kwargs)
        else:
            recorded = simulation.recorded.get(id(call))
            kwargs = {} if recorded is None else {"mask": recorded}
        inputs = [] if call.is_input else [v for v in flatten([call.x, kwargs]) if is_value(v)]
        node = GNode(call.layer, inputs, call.is_input)
        for key in call.outputs:
            producer[key] = node
    for node in simulation.ops.nodes:
        producer[node.op] = node
    return producer


class Budget:
    """Counts calls across a file's (nested) graphs."""

    def __init__(self, limit: int = MAX_CALLS) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int, where: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise GraphError(f"{where}: more than {self.limit} layer calls in the model's graphs")


def run_nested(
    model: Any,
    calls: list[Call],
    inputs: list,
    outputs: list,
    alias: dict,
    previous: Any,
    outer: MaskSimulation,
) -> list:
    """The masks a nested ``model``'s outputs carry when it runs with ``previous`` masks on its
    inputs (its own recorded masks checked under them, as the outer ones); traced once per
    distinct set of input masks."""
    masks = flatten(previous) if isinstance(previous, (list, tuple)) else [previous]
    key = (id(model), tuple(masks))
    found = outer.ops.nested.get(key)
    if found is not None:
        return found
    inner = MaskSimulation(outer.ops, outer.dtype_of, outer.nested, outer.check)
    for tensor, mask in zip(inputs, masks):
        if mask is not None:
            inner.eager[tensor] = mask
    inner.run(calls, alias)
    result = [inner.eager.get(k) for k in outputs]
    outer.ops.nested[key] = result
    return result


class Context:
    """What the graphs of one file share: the call budget, tensor shapes and dtypes, the
    interned mask operations and how deep models nest."""

    def __init__(self, limit: int = MAX_CALLS) -> None:
        self.budget = Budget(limit)
        self.shapes: dict = {}
        self.dtypes: dict = {}
        self.ops = MaskOps(self.shape)
        self.depth = 0

    def shape(self, key: Any) -> tuple:
        shape = getattr(key, "shape", None)
        return tuple(shape) if shape is not None else self.shapes[key]

    def dtype_of(self, key: Any) -> str:
        dtype = getattr(key, "dtype", None)
        return str(dtype) if dtype is not None else self.dtypes[key]


# ---- configs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    """A tensor named in a config: ``[layer, node index, tensor index]`` and what the file says
    about it."""

    layer: str
    node: int
    index: int
    shape: tuple | None = None
    dtype: str | None = None


@dataclass(frozen=True)
class TKey:
    """A tensor of a config's graph: output ``index`` of call ``node`` of layer ``layer``
    (``scope`` tells nested graphs apart)."""

    scope: Any
    layer: str
    node: int
    index: int


@dataclass(frozen=True)
class OpSpec:
    """A Keras mask operation read from a config."""

    class_name: str
    config: dict


@dataclass(eq=False)
class Entry:
    """One item of a config's ``layers`` list."""

    name: str
    kind: str  # "input", "layer", "model" or "op"
    obj: Any
    nodes: list  # [(args, kwargs, where)]
    position: int
    where: str
    functional: bool = False  # a nested Functional model: its refs in input/output_layers
    # count from 1 (Keras counts a node Functional models once had)
    masking: Masking | None = None
    build_shape: Any = None  # the first call's input shape(s)
    dtype: Any = None  # the outputs' dtype name (a list, one per output, for nested models)
    input_dtype: str | None = None  # what Keras converts inputs to (None: no conversion)


def _index(value: Any, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CALLS:
        raise GraphError(f"{where}: {what} must be an int in [0, {MAX_CALLS}], got {_short(value)}")
    return value


def _shape_value(value: Any, where: str) -> tuple | None:
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) <= 32
    ok = ok and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in value
    )
    if not ok:
        raise GraphError(
            f"{where}: a shape must be a list of non-negative ints or nulls, got {_short(value)}"
        )
    return tuple(value)


def parse_ref(value: Any, where: str) -> Ref:
    """A ``__keras_tensor__`` (or a bare ``[layer, node, tensor]`` triple) as a ``Ref``."""
    shape = dtype = None
    if isinstance(value, dict):
        cfg = value.get("config")
        if not isinstance(cfg, dict):
            raise GraphError(f"{where}: a __keras_tensor__ needs a config object")
        extra = set(cfg) - {"shape", "dtype", "keras_history", "ragged", "sparse"}
        if extra:
            raise GraphError(
                f"{where}: __keras_tensor__ key {sorted(extra)[0]!r} is not understood"
            )
        if cfg.get("ragged") or cfg.get("sparse"):
            raise GraphError(f"{where}: sparse or ragged tensors are not supported")
        shape = _shape_value(cfg.get("shape"), f"{where}.shape")
        dtype = cfg.get("dtype")
        if dtype is not None and not isinstance(dtype, str):
            raise GraphError(f"{where}: bad dtype {_short(dtype)}")
        value = cfg.get("keras_history")
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)):
        raise GraphError(
            f"{where}: a tensor reference must be [layer name, node index, tensor index], got "
            f"{_short(value)}"
        )
    return Ref(
        value[0][:200],
        _index(value[1], where, "the node index"),
        _index(value[2], where, "the tensor index"),
        shape,
        dtype,
    )


def parse_arguments(value: Any, where: str) -> Any:
    """Call arguments with ``Ref`` leaves in place of serialized tensors (lists, dicts and JSON
    constants stay)."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return parse_ref(value, where)
        if "class_name" in value:
            raise GraphError(
                f"{where}: argument object {_short(value.get('class_name'))} is not supported"
            )
        return {str(k): parse_arguments(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [parse_arguments(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise GraphError(f"{where}: unexpected argument {_short(value)}")


def parse_io(value: Any, where: str) -> Any:
    """``input_layers``/``output_layers``: a triple, or a list or dict of triples."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return parse_ref(value, where)
    if isinstance(value, list) and value:
        return [parse_io(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and value:
        return {str(k): parse_io(v, f"{where}.{k}") for k, v in value.items()}
    raise GraphError(f"{where}: must be [layer, node, tensor] or a list/dict of them")


@dataclass(eq=False)
class Graph:
    """A model graph from a config, every call resolved, before any layer is built.

    Attributes:
        entries: the config's layers, by position.
        calls: every call in an order where each call's tensors exist already.
        inputs, outputs: the model's input and output keys in the config's structure.
        shapes, dtypes: tensor key -> shape / dtype name.
        alias: an operation's output key -> its ``OpValue``.
        ops: the mask operations.
    """

    entries: list[Entry]
    calls: list[Call]
    inputs: Any
    outputs: Any
    shapes: dict
    dtypes: dict
    alias: dict
    ops: MaskOps
    where: str


def _compatible(declared: tuple | None, actual: tuple) -> bool:
    if declared is None:
        return True
    if len(declared) != len(actual):
        return False
    return all(a is None or b is None or a == b for a, b in zip(declared, actual))


def parse_graph(
    config: dict,
    where: str,
    make_entry: Callable[[Any, str, int], Entry],
    shapes_of: Callable[[Entry, Any, str], list],
    ctx: Context,
    scope: Any = None,
) -> Graph:
    """Resolves a Functional config's graph (see the module docstring).

    Args:
        config: the model's config (``layers``, ``input_layers``, ``output_layers``).
        where: its path in the file, for errors.
        make_entry: ``make_entry(spec, where, position)``: the ``Entry`` of one item of
            ``layers`` (its layer created, unbuilt; its nodes parsed).
        shapes_of: ``shapes_of(entry, input shape(s), where)``: the flat output shapes of a
            call (``compute_output_shape``).
        ctx: what the file's graphs share (budget, shapes, mask operations).
        scope: distinguishes the keys of nested graphs.

    Raises:
        GraphError: see the module docstring.
    """
    specs = config.get("layers")
    if not isinstance(specs, list):
        raise GraphError(f"{where}.layers: must be a list")
    for key in ("input_layers", "output_layers"):
        if key not in config:
            raise GraphError(f"{where}: the config has no {key!r}")
    ctx.budget.take(len(specs), f"{where}.layers")
    entries: list[Entry] = []
    by_name: dict[str, Entry] = {}
    for i, spec in enumerate(specs):
        entry = make_entry(spec, f"{where}.layers[{i}]", i)
        if entry.name in by_name:
            raise GraphError(f"{entry.where}: layer name {entry.name!r} is used twice")
        by_name[entry.name] = entry
        entries.append(entry)
        ctx.budget.take(len(entry.nodes), entry.where)
    inputs = parse_io(config["input_layers"], f"{where}.input_layers")
    outputs = parse_io(config["output_layers"], f"{where}.output_layers")

    def key_of(layer: str, node: int, index: int) -> TKey:
        return TKey(scope, layer, node, index)

    # Which calls each call waits for: the calls that produce its tensors, and the layer's
    # previous call (node indices count a layer's calls in order).
    def refs_of(args: Any, kwargs: Any) -> list[Ref]:
        return [r for r in flatten([args, kwargs]) if isinstance(r, Ref)]

    waiting: dict[tuple, list] = {}
    missing: dict[tuple, int] = {}
    ready: list = []
    for entry in entries:
        if entry.kind == "input":
            continue
        for k, (args, kwargs, node_where) in enumerate(entry.nodes):
            needs = set()
            for ref in refs_of(args, kwargs):
                target = by_name.get(ref.layer)
                if target is None:
                    raise GraphError(f"{node_where}: refers to an unknown layer {ref.layer!r}")
                count = 1 if target.kind == "input" else len(target.nodes)
                if ref.node >= count:
                    raise GraphError(
                        f"{node_where}: refers to call {ref.node} of layer {ref.layer!r}, which "
                        f"has {count} call(s)"
                    )
                if target.kind != "input":
                    needs.add((ref.layer, ref.node))
            if k > 0:
                needs.add((entry.name, k - 1))
            needs.discard((entry.name, k))
            if (entry.name, k) in {(r.layer, r.node) for r in refs_of(args, kwargs)}:
                raise GraphError(f"{node_where}: a call that uses its own output (a cycle)")
            missing[(entry.name, k)] = len(needs)
            for need in needs:
                waiting.setdefault(need, []).append((entry.name, k))
            if not needs:
                heapq.heappush(ready, (entry.position, k))
    shapes, dtypes, ops = ctx.shapes, ctx.dtypes, ctx.ops
    outs_of: dict[tuple, list] = {}
    alias: dict = {}
    calls: list[Call] = []
    for entry in entries:
        if entry.kind == "input":
            key = key_of(entry.name, 0, 0)
            shapes[key] = tuple(entry.obj.batch_shape)
            dtypes[key] = entry.obj.dtype.name
            outs_of[(entry.name, 0)] = [key]
            calls.append(
                Call(entry.obj, key, {}, [key], is_input=True, where=entry.where, entry=entry)
            )

    def resolve(ref: Ref, where_: str, op_allowed: bool) -> Any:
        outs = outs_of[(ref.layer, ref.node)]
        if ref.index >= len(outs):
            raise GraphError(
                f"{where_}: refers to output {ref.index} of call {ref.node} of layer "
                f"{ref.layer!r}, which has {len(outs)} output(s)"
            )
        key = outs[ref.index]
        if key in alias:
            if not op_allowed:
                raise GraphError(
                    f"{where_}: uses the Keras operation {ref.layer!r} as a layer input; fastrnn "
                    "reads Keras operations only where they compute masks"
                )
            if not _compatible(ref.shape, ops.shape(alias[key])):
                raise GraphError(
                    f"{where_}: declares shape {ref.shape} for the output of {ref.layer!r}, "
                    f"which computes shape {ops.shape(alias[key])}"
                )
            return key
        if not _compatible(ref.shape, shapes[key]):
            raise GraphError(
                f"{where_}: declares shape {ref.shape} for output {ref.index} of "
                f"{ref.layer!r}, which the layers compute as {shapes[key]}"
            )
        return key

    done = 0
    while ready:
        position, k = heapq.heappop(ready)
        entry = entries[position]
        args, kwargs, node_where = entry.nodes[k]
        if entry.kind == "op":
            keys = map_structure(
                lambda v, w=node_where: resolve(v, w, True) if isinstance(v, Ref) else v, args
            )
            values = map_structure(lambda v: alias.get(v, v), keys)
            spec = entry.obj
            nargs = MASK_OPS[spec.class_name][2]
            if len(values) != nargs:
                raise GraphError(
                    f"{node_where}: {spec.class_name} takes {nargs} argument(s), got {len(values)}"
                )
            for v in flatten(values):
                if is_value(v) and not isinstance(v, OpValue) and dtypes.get(v) is None:
                    raise GraphError(f"{node_where}: bad operation argument")
            try:
                value = ops.op(spec.class_name, spec.config, *values)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise GraphError(f"{node_where}: bad {spec.class_name} arguments ({exc})") from None
            key = key_of(entry.name, k, 0)
            alias[key] = value
            dtypes[key] = "bool"
            outs_of[(entry.name, k)] = [key]
            calls.append(Call(spec, values, {}, [key], is_op=True, where=node_where, entry=entry))
        else:
            x_refs = args[0]
            x = map_structure(
                lambda v, w=node_where: resolve(v, w, False) if isinstance(v, Ref) else v, x_refs
            )
            leaves = flatten(x)
            if not leaves or not all(isinstance(v, TKey) for v in leaves):
                raise GraphError(f"{node_where}: the inputs must be tensors, got {_short(x_refs)}")
            kw = {}
            for name, value in kwargs.items():
                kw[name] = map_structure(
                    lambda v, w=f"{node_where}.{name}", n=name: (
                        resolve(v, w, n == "mask") if isinstance(v, Ref) else v
                    ),
                    value,
                )
            x_shape = map_structure(lambda v: shapes[v], x)
            if k == 0:
                entry.build_shape = x_shape
            out_shapes = shapes_of(entry, x_shape, node_where)
            out_dtype = entry.dtype
            outs = []
            for i, shape in enumerate(out_shapes):
                key = key_of(entry.name, k, i)
                shapes[key] = tuple(shape)
                dtypes[key] = out_dtype if isinstance(out_dtype, str) else out_dtype[i]
                outs.append(key)
            outs_of[(entry.name, k)] = outs
            calls.append(
                Call(
                    entry.obj,
                    x,
                    kw,
                    outs,
                    masking=entry.masking,
                    dtype=entry.input_dtype,
                    where=node_where,
                    entry=entry,
                )
            )
        done += 1
        for follower in waiting.pop((entry.name, k), []):
            missing[follower] -= 1
            if missing[follower] == 0:
                heapq.heappush(ready, (by_name[follower[0]].position, follower[1]))
    if done != len(missing):
        stuck = sorted({name for (name, k), n in missing.items() if n > 0})
        raise GraphError(
            f"{where}: the calls of layers {stuck[:10]} wait on each other (a cycle) and cannot "
            "be resolved"
        )

    def io_key(ref: Ref, where_: str) -> Any:
        target = by_name.get(ref.layer)
        if target is None:
            raise GraphError(f"{where_}: refers to an unknown layer {ref.layer!r}")
        node = ref.node - 1 if target.functional else ref.node
        count = 1 if target.kind == "input" else len(target.nodes)
        if not 0 <= node < count:
            raise GraphError(
                f"{where_}: refers to call {ref.node} of layer {ref.layer!r}, which has "
                f"{count} call(s)"
            )
        return resolve(Ref(ref.layer, node, ref.index), where_, False)

    in_keys = map_structure(lambda r: io_key(r, f"{where}.input_layers"), inputs)
    for key in flatten(in_keys):
        if by_name[key.layer].kind != "input":
            raise GraphError(f"{where}.input_layers: model inputs must be InputLayers")
    out_keys = map_structure(lambda r: io_key(r, f"{where}.output_layers"), outputs)
    return Graph(entries, calls, in_keys, out_keys, shapes, dtypes, alias, ops, where)
