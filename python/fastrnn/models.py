"""Models: Functional ``Model(inputs, outputs)`` and ``Sequential``, with Keras 3's training loop.

Both run layers through the per-call protocol of ``fastrnn.layers.base`` (outputs, masks and
training caches returned, never read back from the layer objects), so a model serves ``predict``
from several threads at once and a layer can be shared between several calls of a graph.

Training (shared by both): ``fit``/``evaluate``/``predict``, ``train_on_batch``/
``test_on_batch``/``predict_on_batch``, with Keras 3's semantics —

* losses reduce with ``sum_over_batch_size``: ``sum(values * weights) / count``, where the
  weights are ``sample_weight`` (or ``class_weight`` turned into one) times the output's mask
  scaled so that masked entries drop out of the mean; several outputs add
  ``loss_weight * loss``;
* ``metrics`` see the output's mask as weights, ``weighted_metrics`` also the sample weights;
  both are running means over the epoch (batches weighted by their sample count);
* logs are sorted by name: ``loss``, metric names (``<output>_<metric>`` with several outputs),
  ``<output>_loss`` per output when several outputs have losses, then ``val_`` forms;
* ``fit`` shuffles with a generator drawn from ``fastrnn.initializers``' global generator, so
  ``set_random_seed(s)`` makes a run reproducible;
* x/y may be arrays (lists/dicts of arrays for several inputs/outputs), a Python generator or
  iterator yielding ``(x, y[, sample_weight])``, or a ``Sequence``/``PyDataset``-style object
  (``__len__``, ``__getitem__`` giving a batch, optional ``on_epoch_end``).

Weights are frozen per layer by ``layer.trainable = False`` (``model.trainable = False`` freezes
all); ``fit`` honours a change at once, keeping the optimizer state of the weights that stay
trainable.
"""

from __future__ import annotations

import copy
import inspect
import math
import threading
import warnings
from collections import defaultdict
from typing import Any

import numpy as np

from fastrnn import _summary, initializers, saving
from fastrnn import callbacks as callbacks_module
from fastrnn import layers as layers_module
from fastrnn import losses as losses_module
from fastrnn import metrics as metrics_module
from fastrnn import optimizers as optimizers_module
from fastrnn._progbar import ProgbarLogger
from fastrnn.layers import Layer, deserialize, serialize
from fastrnn.layers.base import (
    _BUILD_LOCK,
    check_numeric_array,
    flatten,
    is_symbolic,
    map_structure,
    pack_as,
    unique_name,
)
from fastrnn.layers.input_layer import Input, InputLayer, KerasTensor, symbolic_call

_MISSING = object()


# ---- small helpers ---------------------------------------------------------------------------
def _is_array_like(x: Any) -> bool:
    return isinstance(x, np.ndarray) or hasattr(x, "__array__") or np.isscalar(x)


def _is_sequence_data(x: Any) -> bool:
    """A Sequence/PyDataset-style object: indexable batches with a length, not an array."""
    return (
        hasattr(x, "__getitem__")
        and hasattr(x, "__len__")
        and not isinstance(x, (np.ndarray, list, tuple, dict, str, bytes))
        and not hasattr(x, "__array__")
        and not hasattr(x, "__array_interface__")
    )


def _is_iterable_data(x: Any) -> bool:
    """A generator, iterator or other iterable of batches (not an array, list or dict)."""
    return (
        hasattr(x, "__iter__")
        and not isinstance(x, (np.ndarray, list, tuple, dict, str, bytes))
        and not hasattr(x, "__array__")
        and not _is_sequence_data(x)
    )


def _is_dataset(x: Any) -> bool:
    return x is not None and (_is_sequence_data(x) or _is_iterable_data(x))


def _unpack_batch(data: Any) -> tuple:
    """Keras's ``unpack_x_y_sample_weight``: a batch is x, (x,), (x, y) or (x, y, w)."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(
        "A batch from a generator or Sequence must be x, (x,), (x, y) or (x, y, sample_weight); "
        f"got a tuple of {len(data)} elements."
    )


def _as_array(x: Any, argument: str) -> np.ndarray:
    if isinstance(x, KerasTensor):
        raise TypeError(
            f"{argument} is a symbolic tensor; models run on NumPy arrays (Input tensors only "
            "describe the graph)."
        )
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{argument} must be convertible to a NumPy array: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{argument} must be numeric, got an object array (ragged or mixed data).")
    return arr


def _class_weight_to_sample_weight(y: np.ndarray, class_weight: dict) -> np.ndarray:
    """Keras's conversion: the class of a sample is argmax(y) for one-hot y, else round(y)."""
    y = np.asarray(y)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else np.squeeze(y, axis=-1)
    classes = np.round(y).astype(np.int64)
    if classes.ndim != 1:
        raise ValueError(
            f"class_weight needs one class per sample; targets of shape {np.shape(y)} give "
            f"classes of shape {classes.shape}."
        )
    return np.array([float(class_weight.get(int(c), 1.0)) for c in classes], dtype=np.float64)


def _check_class_weight(class_weight: Any) -> dict | None:
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict):
        raise TypeError(
            f"class_weight must be a dict {{class index: weight}}, got {class_weight!r}."
        )
    out = {}
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise ValueError(f"class_weight keys must be integer class indices, got {key!r}.")
        try:
            out[int(key)] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"class_weight[{key}] must be a number, got {value!r}.") from None
    return out


def _broadcast_weights(weights: Any, shape: tuple, argument: str = "sample_weight") -> np.ndarray:
    """Per-sample (B,) or per-entry weights, broadcast over ``shape``'s trailing axes."""
    w = np.asarray(weights)
    check_numeric_array(w, argument)
    w = w.astype(np.float64)
    while w.ndim > len(shape) and w.shape[-1] == 1:
        w = w[..., 0]
    if w.ndim == 0 or not shape or w.shape[0] != shape[0]:
        raise ValueError(
            f"{argument} must have one entry per sample ({shape[0] if shape else '?'}), got shape "
            f"{np.shape(weights)}."
        )
    w = w.reshape(w.shape + (1,) * (len(shape) - w.ndim))
    try:
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"{argument} of shape {np.shape(weights)} does not fit the loss values of shape "
            f"{shape} (one weight per sample, or per time step for sequence outputs)."
        ) from None


def _mask_weights(mask: Any, values_shape: tuple) -> np.ndarray | None:
    """The output mask as 0/1 weights, when it fits the per-entry values (else None)."""
    if mask is None or np.shape(mask) != tuple(values_shape):
        return None
    return np.asarray(mask, dtype=np.float64)


def _weighted_loss(loss: Any, y: Any, pred: np.ndarray, weights: np.ndarray) -> tuple:
    """``sum(values * weights)`` and its gradient, for any signs of the weights.

    ``Loss(y, pred, w)`` returns ``sum(values * w) / sum(w)``; splitting ``w`` into positive and
    negative parts keeps every normalising sum positive.
    """
    total, grad = 0.0, np.zeros(pred.shape, dtype=np.float64)
    for part, sign in ((np.maximum(weights, 0.0), 1.0), (np.maximum(-weights, 0.0), -1.0)):
        s = float(part.sum())
        if s > 0:
            total += sign * float(loss(y, pred, part)) * s
            grad += sign * np.asarray(loss.gradient(y, pred, part), dtype=np.float64) * s
    return total, grad


def _reduce_loss(loss: Any, y: Any, pred: np.ndarray, mask: Any, sample_weight: Any) -> tuple:
    """Keras's ``sum_over_batch_size`` with the mask and sample weights: (value, d value/d pred)."""
    values_shape = pred.shape[:-1] if pred.ndim >= 2 else pred.shape
    weights = None
    m = _mask_weights(mask, values_shape)
    if m is not None:
        valid = m.sum()
        weights = m * (m.size / valid) if valid else np.zeros_like(m)
    if sample_weight is not None:
        s = _broadcast_weights(sample_weight, values_shape)
        weights = s if weights is None else weights * s
    if weights is None:
        return float(loss(y, pred)), np.asarray(loss.gradient(y, pred), dtype=np.float64)
    total, grad = _weighted_loss(loss, y, pred, weights)
    n = max(weights.size, 1)
    return total / n, grad / n


# ---- metrics ---------------------------------------------------------------------------------
class _Mean:
    """A weighted running mean (Keras's ``Mean``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset_state()

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def update_state(self, value: float, sample_weight: float = 1.0) -> None:
        self.total += float(value) * float(sample_weight)
        self.count += float(sample_weight)

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


class MeanMetricWrapper:
    """A per-sample metric function as a running weighted mean, Keras's ``MeanMetricWrapper``.

    ``fn(y_true, y_pred)`` returns one value per sample (or per time step); ``update_state``
    accumulates ``sum(mean_over_extra_axes(values * w))`` and ``sum(mean(w))``, so masked steps
    (weight 0) drop out and samples count by their weight.

    Args:
        fn: the per-sample function.
        name: the name shown in logs.
    """

    def __init__(self, fn: Any, name: str) -> None:
        self._fn = fn
        self.name = name
        self.reset_state()

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        values = np.asarray(self._fn(y_true, np.asarray(y_pred, dtype=np.float64)), np.float64)
        if sample_weight is None:
            if values.ndim == 0:
                self.total += float(values)
                self.count += 1.0
                return
            per_sample = values.reshape(len(values), -1).mean(axis=1) if values.ndim > 1 else values
            self.total += float(per_sample.sum())
            self.count += float(len(values))
            return
        w = _broadcast_weights(sample_weight, values.shape, "sample weights of a metric")
        weighted = values * w
        if values.ndim > 1:
            weighted = weighted.reshape(len(values), -1).mean(axis=1)
            w = w.reshape(len(values), -1).mean(axis=1)
        self.total += float(weighted.sum())
        self.count += float(w.sum())

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def __repr__(self) -> str:
        return f"<MeanMetricWrapper {self.name}>"


def _is_metric_object(m: Any) -> bool:
    return all(hasattr(m, a) for a in ("update_state", "result", "reset_state"))


def _metric_name(identifier: Any) -> str:
    if isinstance(identifier, str):
        return identifier
    name = getattr(identifier, "name", None) or getattr(identifier, "__name__", None)
    return str(name or type(identifier).__name__)


def _make_metric(identifier: Any, y_true: Any, y_pred: np.ndarray, loss_name: str) -> Any:
    """A metric object for a compile entry: names, functions or metric objects (copied)."""
    if _is_metric_object(identifier):
        return copy.deepcopy(identifier)
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            # Keras's rule, from the shapes alone.
            y_true = np.asarray(y_true)
            if y_pred.shape[-1] == 1:
                fn = metrics_module.binary_accuracy
            elif y_true.ndim < y_pred.ndim or (y_true.shape[-1] == 1 and y_pred.shape[-1] > 1):
                fn = metrics_module.sparse_categorical_accuracy
            else:
                fn = metrics_module.categorical_accuracy
            return MeanMetricWrapper(fn, identifier)
        getter = getattr(metrics_module, "get", None)
        if getter is not None:
            obj = getter(identifier)
            if _is_metric_object(obj):
                obj.name = identifier
                return obj
            if callable(obj):
                return MeanMetricWrapper(obj, identifier)
        name = metrics_module.check(identifier)
        return MeanMetricWrapper(metrics_module.resolve(name, y_true, y_pred, loss_name), name)
    if callable(identifier):
        return MeanMetricWrapper(identifier, _metric_name(identifier))
    raise TypeError(
        f"A metric must be a name, a function (y_true, y_pred) -> values or an object with "
        f"update_state/result/reset_state; got {identifier!r}."
    )


def _check_metric_identifier(identifier: Any) -> None:
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            return
        getter = getattr(metrics_module, "get", None)
        if getter is not None:
            getter(identifier)
        else:
            metrics_module.check(identifier)
    elif not (callable(identifier) or _is_metric_object(identifier)):
        raise TypeError(
            f"A metric must be a name, a function or a metric object, got {identifier!r}."
        )


# ---- data ------------------------------------------------------------------------------------
class _ArrayBatches:
    """Batches of in-memory arrays (lists aligned with the model's inputs and outputs)."""

    one_shot = False

    def __init__(self, xs: list, ys: list | None, sws: list | None, batch_size: int, shuffle):
        self.xs, self.ys, self.sws = xs, ys, sws
        self.n = len(xs[0])
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.num_batches = -(-self.n // batch_size)

    def epoch(self, rng: np.random.Generator | None):
        n, bs = self.n, self.batch_size
        if self.shuffle == "batch" and rng is not None:
            order = np.arange(n)
            starts = rng.permutation(self.num_batches) * bs
            order = np.concatenate([rng.permutation(order[s : s + bs]) for s in starts])
        elif self.shuffle and rng is not None:
            order = rng.permutation(n)
        else:
            order = None
        for step in range(self.num_batches):
            if order is None:
                index: Any = slice(step * bs, (step + 1) * bs)
            else:
                index = order[step * bs : (step + 1) * bs]

            yield tuple(
                None if arrays is None else [None if a is None else a[index] for a in arrays]
                for arrays in (self.xs, self.ys, self.sws)
            )

    def on_epoch_end(self) -> None:
        pass


class _SequenceBatches:
    """A Sequence/PyDataset: ``len(data)`` batches, ``data[i]`` one of them."""

    one_shot = False

    def __init__(self, data: Any, shuffle: Any) -> None:
        self.data = data
        self.shuffle = bool(shuffle)
        self.num_batches = len(data)

    def epoch(self, rng: np.random.Generator | None):
        if hasattr(self.data, "on_epoch_begin"):
            self.data.on_epoch_begin()
        order = range(len(self.data))
        if self.shuffle and rng is not None:
            order = rng.permutation(len(self.data))
        for i in order:
            yield _unpack_batch(self.data[int(i)])

    def on_epoch_end(self) -> None:
        if hasattr(self.data, "on_epoch_end"):
            self.data.on_epoch_end()


class _IterableBatches:
    """A generator or iterator (consumed once) or a re-iterable iterable of batches."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.one_shot = iter(data) is data
        try:
            self.num_batches = len(data)
        except TypeError:
            self.num_batches = None
        self._iterator = None

    def epoch(self, rng: np.random.Generator | None):
        iterator = iter(self.data)
        for batch in iterator:
            yield _unpack_batch(batch)

    def on_epoch_end(self) -> None:
        pass


class _EpochIterator:
    """Runs ``steps_per_epoch`` batches per epoch (default: one pass over the data).

    With fewer steps than a pass, the pass continues in the next epoch (as Keras); a pass that
    ends before ``steps_per_epoch`` ends the epoch early (``interrupted``), and the next epoch
    starts a new pass. A generator consumed once yields nothing in later epochs.
    """

    def __init__(self, batches: Any, steps: int | None) -> None:
        self.batches = batches
        self.steps = steps
        self._current = None
        self.interrupted = False

    @property
    def num_batches(self) -> int | None:
        return self.steps if self.steps is not None else self.batches.num_batches

    def epoch(self, rng: np.random.Generator | None):
        self.interrupted = False
        if self.steps is None:
            yield from self.batches.epoch(rng)
            self.batches.on_epoch_end()
            return
        produced, fresh = 0, False
        while produced < self.steps:
            if self._current is None:
                self._current = iter(self.batches.epoch(rng))
                fresh = True
            try:
                batch = next(self._current)
            except StopIteration:
                self._current = None
                self.batches.on_epoch_end()
                if produced == 0 and not fresh and not self.batches.one_shot:
                    continue  # the last pass ended exactly with the last epoch
                self.interrupted = True
                return
            fresh = False
            produced += 1
            yield batch


def _ran_out_warning() -> None:
    warnings.warn(
        "Your input ran out of data; interrupting training. Make sure that your dataset or "
        "generator can generate at least `steps_per_epoch * epochs` batches.",
        stacklevel=3,
    )


class _Callbacks:
    """Calls each hook on a list of ``fastrnn.callbacks.Callback`` objects (logs sorted)."""

    def __init__(self, callbacks: list, model: Any, params: dict) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, callbacks_module.Callback):
                raise TypeError(f"callbacks must be fastrnn Callback instances, got {cb!r}.")
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        methods = [getattr(cb, hook) for cb in self.callbacks if hasattr(cb, hook)]

        def dispatch(*args: Any) -> None:
            for method in methods:
                method(*args)

        setattr(self, hook, dispatch)  # found once per hook, not per batch
        return dispatch


def _python_logs(logs: dict) -> dict:
    return {k: float(v) for k, v in sorted(logs.items())}


def _resolve_verbose(verbose: Any) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or not isinstance(verbose, (int, np.integer)):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}.")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}.")
    return int(verbose)


def _check_batch_size(batch_size: Any, what: str) -> int:
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"{what}: batch_size must be a positive int, got {batch_size!r}.")
    if batch_size <= 0:
        raise ValueError(f"{what}: batch_size must be positive, got {batch_size}.")
    return int(batch_size)


def _check_steps(steps: Any, argument: str) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise ValueError(f"{argument} must be a positive int or None, got {steps!r}.")
    return int(steps)


# ---- graph mapping (Keras's map_graph) -------------------------------------------------------
def _map_graph(inputs: list[KerasTensor], outputs: list[KerasTensor]) -> tuple:
    """(nodes_by_depth, execution-ordered nodes, layers by depth) of the graph from inputs to
    outputs; raises for a disconnected graph, a cycle or duplicate layer names."""
    finished: set = set()
    in_progress: set = set()
    ordered: list = []
    layer_index: dict = {}
    input_ids = {id(t) for t in inputs}

    def visit(tensor: KerasTensor) -> None:
        history = tensor._keras_history
        if history is None:
            raise ValueError(
                f"{tensor!r} was not produced by a layer; a model's tensors must come from Input."
            )
        layer, node_index, _ = history
        node = layer._inbound_nodes[node_index]
        if node in finished:
            return
        if not node.is_input and id(tensor) in input_ids:
            finished.add(node)
            return
        if node in in_progress:
            raise ValueError(f"Tensor {tensor!r} from layer {layer.name!r} is part of a cycle.")
        layer_index.setdefault(layer, len(layer_index))
        in_progress.add(node)
        if not node.is_input:
            for t in node.input_tensors:
                visit(t)
        finished.add(node)
        in_progress.discard(node)
        ordered.append(node)

    for t in outputs:
        visit(t)
    in_graph = set(ordered)
    node_depth: dict = {}
    layer_depth: dict = {}
    for node in reversed(ordered):
        depth = node_depth.setdefault(node, 0)
        depth = max(depth, layer_depth.get(node.operation, 0))
        layer_depth[node.operation] = depth
        node_depth[node] = depth
        for parent in node.parent_nodes:
            if parent in in_graph:
                node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for t in inputs:  # inputs not connected to any output still belong to the model
        layer, node_index, _ = t._keras_history
        node = layer._inbound_nodes[node_index]
        if layer not in layer_depth and node.is_input:
            layer_depth[layer] = 0
            layer_index[layer] = -1
            node_depth[node] = 0
    nodes_by_depth: dict = defaultdict(list)
    for node, depth in node_depth.items():
        nodes_by_depth[depth].append(node)
    layers_by_depth: dict = defaultdict(list)
    for layer, depth in layer_depth.items():
        layers_by_depth[depth].append(layer)
    layers = []
    for depth in sorted(layers_by_depth, reverse=True):
        layers.extend(sorted(layers_by_depth[depth], key=lambda la: layer_index[la]))
    # Check every tensor can be computed, in execution order.
    computable = set(input_ids)
    run = []
    seen_layers: list = []
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if node.is_input:  # computable only if it is one of the model's inputs
                continue
            if any(id(t) in input_ids for t in node.output_tensors):
                continue
            for t in node.input_tensors:
                if id(t) not in computable:
                    raise ValueError(
                        f"Graph disconnected: cannot obtain the value of {t!r} for layer "
                        f"{node.operation.name!r} from the model's inputs. The following "
                        f"previous layers were accessed without issue: {seen_layers}."
                    )
            seen_layers.append(node.operation.name)
            computable.update(id(t) for t in node.output_tensors)
            run.append(node)
    names = [la.name for la in layers]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(
                f'The name "{name}" is used {names.count(name)} times in the model. All layer '
                "names should be unique."
            )
    return dict(nodes_by_depth), run, layers


def _tensor_ref(t: KerasTensor, reindex: dict) -> list:
    """``[layer name, node index, tensor index]``, the node counted among this model's nodes of
    the layer (a layer also called in other graphs has more nodes), as Keras's configs do."""
    layer, node_index, tensor_index = t._keras_history
    return [layer.name, reindex.get((id(layer), node_index), node_index), tensor_index]


def _serialize_argument(value: Any, reindex: dict) -> Any:
    if isinstance(value, KerasTensor):
        return {
            "class_name": "__keras_tensor__",
            "config": {
                "shape": list(value.shape),
                "dtype": value.dtype,
                "keras_history": _tensor_ref(value, reindex),
            },
        }
    if isinstance(value, (list, tuple)):
        return [_serialize_argument(v, reindex) for v in value]
    if isinstance(value, dict):
        return {k: _serialize_argument(v, reindex) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _is_tensor_ref(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


# ---- the Model -------------------------------------------------------------------------------
@saving.register_model
class Model(Layer):
    """A model of layers: the Functional ``Model(inputs, outputs)`` (and the base of Sequential).

    ``Model(inputs, outputs)`` takes the symbolic tensors of a graph of layer calls, as Keras:
    ``Input`` tensors in, any layer outputs out, with several inputs and outputs (lists or
    dicts), shared layers and merge layers. The model runs the graph on NumPy arrays forward and
    backward, carries masks along the graph's edges as Keras does, and trains with Keras's
    loop (see the module docstring). A model is itself a layer: it can be called on arrays, or
    on symbolic tensors to nest it in a larger graph.

    Args:
        inputs: an ``Input`` tensor, or a list or dict of them.
        outputs: a symbolic tensor, or a list or dict of them, computed from ``inputs``.
        name: model name, default ``"functional"`` (Keras-style numbering).
        trainable: False freezes every layer.

    Call arguments:
        inputs: arrays in the structure of ``inputs`` (a list/tuple for several inputs, or a
            dict keyed by input names).
        training: True keeps what ``backward`` needs (and applies dropout).

    Returns:
        Arrays in the structure of ``outputs``.

    Raises:
        ValueError: a graph that does not connect ``inputs`` to ``outputs``, duplicate layer
            names, or inputs of the wrong shape when called.
        TypeError: ``inputs``/``outputs`` that are not symbolic tensors.

    Example:
        >>> seq = Input((None, 5), name="seq"); aux = Input((3,), name="aux")
        >>> h = Bidirectional(LSTM(8))(Masking()(seq))
        >>> score = Dense(1, name="score")(Concatenate()([h, Dense(4)(aux)]))
        >>> label = Dense(3, activation="softmax", name="label")(h)
        >>> model = Model([seq, aux], [score, label])
        >>> model.compile("adam", loss={"score": "mse", "label": "sparse_categorical_crossentropy"},
        ...               loss_weights={"score": 1.0, "label": 0.5},
        ...               metrics={"label": ["accuracy"]})
        >>> model.fit([x_seq, x_aux], [y_score, y_label], epochs=3)
    """

    _strict_input_shapes = True  # Keras checks a Functional model's inputs against its Inputs

    def __init__(
        self,
        inputs: Any = None,
        outputs: Any = None,
        name: str | None = None,
        trainable: bool = True,
        **kwargs: Any,
    ) -> None:
        if inputs is None or outputs is None:
            raise TypeError(
                "Model(inputs, outputs) needs the symbolic input and output tensors of a graph "
                "(fastrnn models are Functional or Sequential; subclassing Model with a custom "
                "call is not supported)."
            )
        super().__init__(name=name or unique_name("functional"), trainable=True, **kwargs)
        self._init_training_state()
        self._init_graph(inputs, outputs)
        if not trainable:
            self.trainable = False

    # ---- construction ------------------------------------------------------------------------
    def _init_training_state(self) -> None:
        self.optimizer: Any = None
        self.loss: Any = None
        self.compiled = False
        self.stop_training = False
        self.history: Any = None
        self._compile_config: dict | None = None
        self._loss_entries: list | None = None
        self._metric_identifiers: list | None = None
        self._output_metrics: list | None = None
        self._loss_tracker = _Mean("loss")
        self._output_loss_trackers: list = []
        self._optimizer_variable_ids: list | None = None

    def _init_graph(self, inputs: Any, outputs: Any) -> None:
        for what, structure in (("inputs", inputs), ("outputs", outputs)):
            flat = flatten(structure)
            if not flat or not all(isinstance(t, KerasTensor) for t in flat):
                raise TypeError(
                    f"Model: {what} must be symbolic tensors (from Input and layer calls), or a "
                    f"list/dict of them; got {structure!r}."
                )
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(outputs, tuple):
            outputs = list(outputs)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self._flat_inputs = flatten(inputs)
        self._flat_outputs = flatten(outputs)
        for t in self._flat_inputs:
            if t._keras_history is None:
                raise ValueError(f"Model input {t!r} does not come from Input(...).")
        self._nodes_by_depth, self._run_nodes, self._layers = _map_graph(
            self._flat_inputs, self._flat_outputs
        )
        self._graph_node_ids = {id(n) for nodes in self._nodes_by_depth.values() for n in nodes}
        self.built = True

    # ---- structure ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The model's layers (``InputLayer``s included, as Keras), ordered by depth."""
        return list(self._layers)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by index in ``layers``.

        Raises:
            ValueError: no such layer, or neither/both of ``name`` and ``index``.
        """
        if (name is None) == (index is None):
            raise ValueError("get_layer: pass exactly one of name and index.")
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(
                    f"get_layer: index {index} out of range; the model has {len(self.layers)} "
                    "layers."
                )
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"No such layer: {name!r}. Existing layers are: {[la.name for la in self.layers]}."
        )

    def _sublayers(self) -> list[Layer]:
        return [la for la in self.layers if not isinstance(la, InputLayer)]

    @property
    def inputs(self) -> list[KerasTensor]:
        return list(self._flat_inputs)

    @property
    def outputs(self) -> list[KerasTensor]:
        return list(self._flat_outputs)

    @property
    def input(self) -> Any:
        return self._inputs_struct

    @property
    def output(self) -> Any:
        return self._outputs_struct

    @property
    def input_names(self) -> list[str]:
        return [t._keras_history.operation.name for t in self._flat_inputs]

    @property
    def output_names(self) -> list[str]:
        """The names of the layers producing the outputs (Keras 3), in flat output order."""
        return [t._keras_history.operation.name for t in self._flat_outputs]

    def _output_keys(self) -> list[str]:
        """Names to key dict targets/losses by: the dict keys for dict outputs, else names."""
        if isinstance(self._outputs_struct, dict):
            return sorted(self._outputs_struct)
        return self.output_names

    def _input_keys(self) -> list[str]:
        if isinstance(self._inputs_struct, dict):
            return sorted(self._inputs_struct)
        return self.input_names

    # ---- weights ------------------------------------------------------------------------------
    @property
    def weights(self) -> list[np.ndarray]:
        seen, out = set(), []
        for layer in self._sublayers():
            for w in layer.weights:
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        if not self.trainable:
            return []
        keep = {id(w) for layer in self._sublayers() for w in layer.trainable_weights}
        return [w for w in self.weights if id(w) in keep]

    @property
    def weight_names(self) -> list[str]:
        seen, out = set(), []
        for layer in self._sublayers():
            for w, n in zip(layer.weights, layer.weight_names):
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(n)
        return out

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every layer's weights, layer by layer in Keras's order."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: list) -> None:
        """Copies ``weights`` into the layers; everything is checked before anything is written.

        Raises:
            ValueError: the model is not built, wrong count or wrong shapes.
        """
        if not self.built:
            raise ValueError(f"Model {self.name!r} is not built; call it on data or build() first.")
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(
                f"set_weights on model {self.name!r} expects {len(own)} arrays, got {len(weights)}."
            )
        arrays = []
        for name, old, new in zip(self.weight_names, own, weights):
            new = np.asarray(new)
            if new.shape != old.shape:
                raise ValueError(
                    f"set_weights on model {self.name!r}: weight {name!r} has shape {old.shape}, "
                    f"got {new.shape}."
                )
            check_numeric_array(new, f"set_weights on model {self.name!r}", f"weight {name!r}")
            arrays.append(new)
        for old, new in zip(own, arrays):
            old[...] = new

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights))

    def reset_states(self) -> None:
        """Zeroes the carried states of the stateful layers."""
        for layer in self._sublayers():
            if hasattr(layer, "reset_states"):
                layer.reset_states()

    reset_state = reset_states

    # ---- pickling -------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        # Optimizer slots follow the trainable weights by position; identities do not survive a
        # copy, so a copy starts by trusting the positions (see _sync_optimizer).
        state["_optimizer_variable_ids"] = None
        return state

    # ---- inputs -------------------------------------------------------------------------------
    def _flatten_data(self, data: Any, keys: list[str], n: int, argument: str, kind: str) -> list:
        """``data`` (an array, a list/tuple, or a dict by name) as a list aligned with ``keys``."""
        if isinstance(data, dict):
            missing = [k for k in dict.fromkeys(keys) if k not in data]
            if missing:
                raise ValueError(
                    f"{argument}: the dict needs the keys {list(dict.fromkeys(keys))} (the model's "
                    f"{kind} names); missing {missing}, got {sorted(map(str, data))}."
                )
            return [data[k] for k in keys]
        if n == 1:
            if (
                isinstance(data, (list, tuple))
                and len(data) == 1
                and (isinstance(data[0], np.ndarray) or hasattr(data[0], "__array__"))
            ):
                return [data[0]]
            return [data]
        if not isinstance(data, (list, tuple)) or len(data) != n:
            got = (
                f"a {type(data).__name__} of length {len(data)}"
                if isinstance(data, (list, tuple))
                else f"one {type(data).__name__}"
            )
            raise ValueError(
                f"{argument}: the model has {n} {kind}s ({keys}); pass a list of {n} arrays or a "
                f"dict keyed by those names, got {got}."
            )
        return list(data)

    def _prepare_inputs(self, x: Any, argument: str = "x") -> list[np.ndarray]:
        flat = self._flatten_data(x, self._input_keys(), len(self._flat_inputs), argument, "input")
        arrays = []
        for i, (tensor, value) in enumerate(zip(self._flat_inputs, flat)):
            label = argument if len(flat) == 1 else f"{argument}[{i}]"
            arr = _as_array(value, label)
            check_numeric_array(arr, label)
            if self._strict_input_shapes:
                want = tensor.shape
                if arr.ndim != len(want) or any(
                    w is not None and w != g for w, g in zip(want[1:], arr.shape[1:])
                ):
                    raise ValueError(
                        f"Input {i} with name {tensor._keras_history.operation.name!r} of model "
                        f"{self.name!r} is incompatible with the model: expected shape={want}, "
                        f"found shape={arr.shape}."
                    )
            elif arr.ndim == 0:
                raise ValueError(f"{label} must have a batch axis, got a scalar.")
            arrays.append(arr)
        sizes = {len(a) for a in arrays}
        if len(sizes) > 1:
            raise ValueError(
                f"{argument}: all inputs must have the same number of samples, got "
                f"{[a.shape[0] for a in arrays]}."
            )
        return arrays

    def _prepare_targets(self, y: Any, argument: str = "y") -> list:
        n = len(self._flat_outputs_for_compile())
        if y is None:
            return [None] * n
        flat = self._flatten_data(y, self._output_keys(), n, argument, "output")
        return [None if v is None else _as_array(v, argument) for v in flat]

    def _prepare_sample_weights(self, sw: Any, argument: str = "sample_weight") -> list:
        n = len(self._flat_outputs_for_compile())
        if sw is None:
            return [None] * n
        if isinstance(sw, dict) or (isinstance(sw, (list, tuple)) and n > 1):
            flat = self._flatten_data(sw, self._output_keys(), n, argument, "output")
        elif isinstance(sw, (list, tuple)) and len(sw) == 1 and isinstance(sw[0], np.ndarray):
            flat = [sw[0]]
        else:
            flat = [sw] * n  # one array weights every output, as Keras
        out = []
        for v in flat:
            if v is None:
                out.append(None)
                continue
            arr = _as_array(v, argument)
            check_numeric_array(arr, argument)
            out.append(arr.astype(np.float64))
        return out

    # ---- forward / backward -------------------------------------------------------------------
    def _run(self, flat_x: list, training: Any, flat_masks: list | None = None) -> tuple:
        """Runs the graph: (flat outputs, flat output masks, tape for backward or None).

        ``training`` True/False applies to every layer; None leaves each call its recorded
        ``training`` argument (else inference)."""
        values: dict[int, tuple] = {}
        for i, (t, x) in enumerate(zip(self._flat_inputs, flat_x)):
            values[id(t)] = (x, None if flat_masks is None else flat_masks[i])
        tape = [] if training else None

        def value_of(v: Any) -> Any:
            return values[id(v)][0] if isinstance(v, KerasTensor) else v

        def mask_of(v: Any) -> Any:
            return values[id(v)][1] if isinstance(v, KerasTensor) else None

        for node in self._run_nodes:
            layer = node.operation
            args = map_structure(value_of, node.call_inputs)
            kwargs = {k: map_structure(value_of, v) for k, v in node.call_kwargs.items()}
            node_training = kwargs.pop("training", None)
            explicit_mask = kwargs.pop("mask", None)
            first_masks = map_structure(mask_of, node.call_inputs)
            tensor_args = 1 + sum(
                1
                for k, v in node.call_kwargs.items()
                if k != "mask" and any(isinstance(t, KerasTensor) for t in flatten(v))
            )
            if explicit_mask is not None:
                mask = previous = explicit_mask
            elif tensor_args == 1:  # Keras hands the mask over only to single-tensor calls
                mask = previous = first_masks
            else:
                mask, previous = None, first_masks
            if all(m is None for m in flatten(previous)):
                previous = None
            if mask is not None and all(m is None for m in flatten(mask)):
                mask = None
            # As Keras: the model's own training flag, when given, overrides what a call in the
            # graph recorded (``Dropout(...)(x, training=True)`` acts only in direct calls).
            run_training = node_training if training is None else training
            out, out_mask, cache = layer._forward(
                args, mask=mask, training=run_training, previous_mask=previous, **kwargs
            )
            flat_out = flatten(out)
            if len(flat_out) != len(node.output_tensors):
                raise RuntimeError(
                    f"Layer {layer.name!r} returned {len(flat_out)} outputs where its graph node "
                    f"expects {len(node.output_tensors)}."
                )
            flat_mask = flatten(out_mask) if out_mask is not None else []
            if len(flat_mask) != len(flat_out):
                flat_mask = [None] * len(flat_out)
            for t, v, m in zip(node.output_tensors, flat_out, flat_mask):
                values[id(t)] = (v, m)
            if tape is not None:
                specs = [(np.shape(v), np.asarray(v).dtype) for v in flat_out]
                tape.append((node, cache if run_training else None, specs))
        outs = [values[id(t)] for t in self._flat_outputs]
        return [o[0] for o in outs], [o[1] for o in outs], tape

    def _run_backward(self, tape: list, d_outputs: list) -> tuple[list, dict]:
        """Backward through a training run: (d inputs, {id(weight): gradient})."""
        grads: dict[int, np.ndarray] = {}

        def accumulate(t: KerasTensor, d: Any) -> None:
            if d is None:
                return
            grads[id(t)] = d if id(t) not in grads else grads[id(t)] + d

        for t, d in zip(self._flat_outputs, d_outputs):
            accumulate(t, d)
        weight_grads: dict[int, np.ndarray] = {}
        for node, cache, specs in reversed(tape):
            douts = [grads.get(id(t)) for t in node.output_tensors]
            if all(d is None for d in douts):
                continue
            if cache is None:
                raise RuntimeError(
                    f"Layer {node.operation.name!r} was called with training=False inside the "
                    "model, so no gradient can flow back through it."
                )
            douts = [
                np.zeros(shape, dtype) if d is None else np.asarray(d, dtype=dtype)
                for d, (shape, dtype) in zip(douts, specs)
            ]
            dy = pack_as(node.outputs, douts)
            layer = node.operation
            d_in, layer_grads = layer._backward(cache, dy)
            for w, g in zip(layer.weights, layer_grads):
                if g is not None:
                    weight_grads[id(w)] = (
                        g if id(w) not in weight_grads else weight_grads[id(w)] + g
                    )
            if d_in is None:
                continue
            targets = node.differentiable_tensors
            flat_d = flatten(d_in) if isinstance(d_in, (list, tuple)) else [d_in]
            if len(flat_d) != len(targets):
                raise RuntimeError(
                    f"Layer {layer.name!r} returned {len(flat_d)} input gradients for "
                    f"{len(targets)} input tensors."
                )
            for t, d in zip(targets, flat_d):
                accumulate(t, d)
        return [grads.get(id(t)) for t in self._flat_inputs], weight_grads

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs = self._bind_positional(args, kwargs)
        if is_symbolic(inputs) or is_symbolic(kwargs):
            return symbolic_call(self, inputs, kwargs)
        outputs, mask, cache = self._forward(inputs, **kwargs)
        self._cache = cache
        self.output_mask = mask
        return outputs

    def _bind_positional(self, args: tuple, kwargs: dict) -> dict:
        names = ("training", "mask")
        if len(args) > len(names):
            raise TypeError(f"Model {self.name!r}: too many positional arguments.")
        return {**dict(zip(names, args)), **kwargs}

    def _forward(
        self,
        inputs: Any,
        *,
        mask: Any = None,
        training: bool | None = None,
        previous_mask: Any = None,
        **kwargs: Any,
    ) -> tuple:
        if kwargs:
            raise TypeError(
                f"Model {self.name!r} got unexpected call arguments: {', '.join(sorted(kwargs))}."
            )
        self._ensure_built(inputs)
        flat_x = self._prepare_inputs(inputs)
        flat_masks = None
        if mask is not None:
            flat_masks = flatten(mask)
            if len(flat_masks) != len(flat_x):
                flat_masks = None
        outs, masks, tape = self._run(flat_x, training, flat_masks)
        out_struct = pack_as(self._outputs_struct, outs)
        mask_struct = (
            None if all(m is None for m in masks) else pack_as(self._outputs_struct, masks)
        )
        return out_struct, mask_struct, (tape if training else None)

    def _ensure_built(self, inputs: Any) -> None:
        """Sequential builds from its first data; a Functional model is built already."""

    def _capture_cache(self) -> Any:
        return self._cache

    def _restore_cache(self, snapshot: Any) -> None:
        self._cache = snapshot

    def _backward(self, cache: Any, dy: Any) -> tuple[Any, list]:
        if cache is None:
            raise RuntimeError(
                f"Model {self.name!r}: backward needs a call with training=True first."
            )
        flat_dy = flatten(dy)
        if len(flat_dy) != len(self._flat_outputs):
            raise ValueError(
                f"Model {self.name!r}: backward expects {len(self._flat_outputs)} output "
                f"gradient(s), got {len(flat_dy)}."
            )
        d_inputs, by_id = self._run_backward(cache, flat_dy)
        grads = [by_id.get(id(w), np.zeros_like(w)) for w in self.weights]
        return (d_inputs[0] if len(d_inputs) == 1 else d_inputs), grads

    def backward(self, dy: Any) -> Any:
        """Backpropagates through the last ``training=True`` call of the model.

        Args:
            dy: dL/d(outputs), in the outputs' structure (entries may be None).

        Returns:
            dL/d(inputs) (a list for several inputs; None for integer inputs such as indices);
            ``self.gradients`` gets one array per weight, aligned with ``self.weights``.
        """
        d, grads = self._backward(self._require_cache(), dy)
        self.gradients = grads
        return d

    def _symbolic_outputs(self, inputs: Any, kwargs: dict) -> Any:
        flat = flatten(inputs)
        if len(flat) != len(self._flat_inputs):
            raise ValueError(
                f"Model {self.name!r} takes {len(self._flat_inputs)} input(s), got {len(flat)}."
            )
        for t, want in zip(flat, self._flat_inputs):
            if t.ndim != want.ndim or any(
                a is not None and b is not None and a != b
                for a, b in zip(t.shape[1:], want.shape[1:])
            ):
                raise ValueError(
                    f"Model {self.name!r}: input of shape {t.shape} is incompatible with the "
                    f"expected {want.shape}."
                )
        batch = flat[0].shape[0]
        return map_structure(
            lambda t: KerasTensor((batch,) + tuple(t.shape[1:]), t.dtype), self._outputs_struct
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        return map_structure(lambda t: tuple(t.shape), self._outputs_struct)

    def build(self, input_shape: Any = None) -> None:
        """A Functional model is built when created; kept for Keras's API."""

    # ---- compile ------------------------------------------------------------------------------
    def compile(
        self,
        optimizer: Any = "rmsprop",
        loss: Any = None,
        loss_weights: Any = None,
        metrics: Any = None,
        weighted_metrics: Any = None,
        run_eagerly: bool = False,
        steps_per_execution: int = 1,
        jit_compile: Any = "auto",
        auto_scale_loss: bool = True,
    ) -> None:
        """Configures training.

        Args:
            optimizer: name (``adam``, ``rmsprop``, ``sgd``, ``adagrad`` ...; Keras defaults) or
                an Optimizer instance. Default ``"rmsprop"`` as Keras.
            loss: a loss (name or ``fastrnn.losses`` object) for every output; or a list with
                one per output, or a dict keyed by output name (entries may be None: no loss
                for that output).
            loss_weights: None, a float (one output), or a list/dict per output: the total loss
                is ``sum(loss_weight * loss)``.
            metrics: for one output, a list of metrics (names such as ``"accuracy"``/``"mae"``,
                functions ``(y_true, y_pred) -> per-sample values`` or metric objects with
                ``update_state``/``result``/``reset_state``); for several outputs a list with
                one entry (a metric or list) per output, or a dict by output name. Metrics are
                weighted by the output's mask, not by sample weights.
            weighted_metrics: as ``metrics``, also weighted by ``sample_weight``/``class_weight``.
            run_eagerly: accepted for compatibility (fastrnn always runs eagerly).
            steps_per_execution: only 1.
            jit_compile: accepted for compatibility, no effect.
            auto_scale_loss: accepted for compatibility, no effect.

        Raises:
            ValueError: unknown optimizer, loss or metric names, a missing loss, or per-output
                arguments that do not match the outputs.
            TypeError: arguments of the wrong type.
        """
        if steps_per_execution != 1:
            raise ValueError("compile: fastrnn supports steps_per_execution=1 only.")
        if loss is None:
            raise ValueError("compile: loss is required (e.g. loss='mse').")
        n = len(self._flat_outputs_for_compile())
        keys = self._output_keys()
        losses = self._per_output(loss, "loss", n, keys, allow_none=True)
        loss_objects = [None if entry is None else losses_module.get(entry) for entry in losses]
        if all(obj is None for obj in loss_objects):
            raise ValueError("compile: every output's loss is None; give at least one loss.")
        if loss_weights is None:
            weights = [None] * n
        elif isinstance(loss_weights, (int, float, np.integer, np.floating)) and not isinstance(
            loss_weights, bool
        ):
            if n != 1:
                raise ValueError(
                    f"compile: loss_weights must be a list or dict for a model with {n} outputs, "
                    f"got {loss_weights!r}."
                )
            weights = [float(loss_weights)]
        else:
            weights = self._per_output(loss_weights, "loss_weights", n, keys, allow_none=True)
            for w in weights:
                if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float))):
                    hint = (
                        " (compile's third argument is loss_weights, as in Keras: pass "
                        "metrics=[...] by keyword)"
                        if isinstance(w, str) or callable(w)
                        else ""
                    )
                    raise TypeError(
                        f"compile: loss_weights entries must be numbers, got {w!r}{hint}."
                    )
        metric_ids = self._metric_structure(metrics, "metrics", n, keys)
        weighted_ids = self._metric_structure(weighted_metrics, "weighted_metrics", n, keys)
        self.optimizer = optimizers_module.get(optimizer)
        names = self._flat_output_names_for_compile()
        self._loss_entries = [
            None if obj is None else (obj, w, name)
            for obj, w, name in zip(loss_objects, weights, names)
        ]
        self.loss = (
            loss_objects[0] if n == 1 else (loss if isinstance(loss, dict) else loss_objects)
        )
        self._metric_identifiers = (metric_ids, weighted_ids)
        self._output_metrics = None
        self._loss_tracker = _Mean("loss")
        active = [e for e in self._loss_entries if e is not None]
        self._output_loss_trackers = (
            [None if e is None else _Mean(f"{e[2]}_loss") for e in self._loss_entries]
            if len(active) > 1
            else []
        )
        self._optimizer_variable_ids = None
        self._compile_config = {
            "optimizer": optimizer,
            "loss": loss,
            "loss_weights": loss_weights,
            "metrics": metrics,
            "weighted_metrics": weighted_metrics,
        }
        self.compiled = True

    def _flat_outputs_for_compile(self) -> list:
        return self._flat_outputs

    def _flat_output_names_for_compile(self) -> list[str]:
        return self.output_names

    def _per_output(self, value: Any, argument: str, n: int, keys: list, allow_none: bool) -> list:
        if isinstance(value, dict):
            if set(value) != set(keys):
                raise ValueError(
                    f"compile: expected the keys {list(dict.fromkeys(keys))} (the output names) in "
                    f"the {argument} dict, got {sorted(map(str, value))}."
                )
            return [value[k] for k in keys]
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(
                    f"compile: {argument} as a list needs one entry per output ({n}), got "
                    f"{len(value)}."
                )
            return list(value)
        return [value] * n

    def _metric_structure(self, metrics: Any, argument: str, n: int, keys: list) -> list:
        """One list of metric identifiers per output (Keras's rules for metrics structures)."""
        if not metrics:
            return [[] for _ in range(n)]
        if not isinstance(metrics, (list, tuple, dict)):
            if isinstance(metrics, str) and n == 1:
                metrics = [metrics]  # fastrnn accepted a single name before; Keras raises
            else:
                raise ValueError(
                    f"compile: {argument} must be a list, tuple or dict, got {metrics!r}."
                )
        if n == 1:
            out = [m for m in flatten(metrics) if m is not None]
            for m in out:
                _check_metric_identifier(m)
            return [out]
        if isinstance(metrics, dict):
            if not set(metrics) <= set(keys):
                raise ValueError(
                    f"compile: {argument} keys must be output names {list(dict.fromkeys(keys))}, "
                    f"got {sorted(map(str, metrics))}."
                )
            per = [metrics.get(k) for k in keys]
        elif len(metrics) == n:
            per = list(metrics)
        else:
            raise ValueError(
                f"compile: for a model with {n} outputs, {argument} must be a list with one entry "
                f"(a metric or a list of metrics) per output, or a dict keyed by output names "
                f"{list(dict.fromkeys(keys))}; got {metrics!r}."
            )
        out = []
        for entry in per:
            entry = (
                []
                if entry is None
                else (list(entry) if isinstance(entry, (list, tuple)) else [entry])
            )
            for m in entry:
                _check_metric_identifier(m)
            out.append(entry)
        return out

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{what}: call compile() first.")

    def get_compile_config(self) -> dict | None:
        """The arguments given to ``compile`` (optimizer as its serialized config), or None."""
        if not self.compiled:
            return None
        config = dict(self._compile_config)
        config["optimizer"] = optimizers_module.serialize(self.optimizer)

        def loss_spec(entry: Any) -> Any:
            if entry is None or isinstance(entry, str):
                return entry
            return losses_module.serialize(losses_module.get(entry))

        loss = config["loss"]
        if isinstance(loss, dict):
            config["loss"] = {k: loss_spec(v) for k, v in loss.items()}
        elif isinstance(loss, (list, tuple)):
            config["loss"] = [loss_spec(v) for v in loss]
        else:
            config["loss"] = loss_spec(loss)
        return config

    def compile_from_config(self, config: dict) -> None:
        """Compiles from ``get_compile_config()``'s output (names and serialized objects)."""
        config = dict(config)

        def loss_obj(entry: Any) -> Any:
            return losses_module.deserialize(entry) if isinstance(entry, dict) else entry

        loss = config.get("loss")
        if isinstance(loss, dict) and "class_name" not in loss:
            loss = {k: loss_obj(v) for k, v in loss.items()}
        elif isinstance(loss, list):
            loss = [loss_obj(v) for v in loss]
        else:
            loss = loss_obj(loss)
        optimizer = config.get("optimizer", "rmsprop")
        if isinstance(optimizer, dict):
            optimizer = optimizers_module.deserialize(optimizer)
        self.compile(
            optimizer=optimizer,
            loss=loss,
            loss_weights=config.get("loss_weights"),
            metrics=config.get("metrics"),
            weighted_metrics=config.get("weighted_metrics"),
        )

    @property
    def metrics_names(self) -> list:
        """The compiled metric names (flat), as ``compile`` received them."""
        if not self.compiled:
            return []
        metrics = self._compile_config.get("metrics") or []
        if isinstance(metrics, str):
            return [metrics]
        return [_metric_name(m) for m in flatten(metrics) if m is not None]

    # ---- losses and metrics -------------------------------------------------------------------
    def _build_metrics(self, flat_y: list, flat_pred: list) -> None:
        metric_ids, weighted_ids = self._metric_identifiers
        self._output_metrics = []
        for i, (ids, wids) in enumerate(zip(metric_ids, weighted_ids)):
            y, pred = flat_y[i], flat_pred[i]
            entry = self._loss_entries[i]
            loss_name = "" if entry is None else getattr(entry[0], "name", "")
            if (ids or wids) and y is None:
                raise ValueError(
                    f"No target (y) for output {self._flat_output_names_for_compile()[i]!r}, "
                    "which has metrics."
                )
            pred = np.asarray(pred)
            self._output_metrics.append(
                (
                    [_make_metric(m, y, pred, loss_name) for m in ids],
                    [_make_metric(m, y, pred, loss_name) for m in wids],
                )
            )

    def _compute_loss(self, flat_y: list, flat_pred: list, flat_mask: list, flat_sw: list):
        """(total loss, d total / d outputs, [(tracker, value)] per output)."""
        total = 0.0
        grads: list = [None] * len(flat_pred)
        per_output = []
        for i, entry in enumerate(self._loss_entries):
            if entry is None:
                continue
            loss_obj, weight, name = entry
            if flat_y[i] is None:
                raise ValueError(
                    f"No target (y) for output {name!r}, which has a loss. Pass y for every "
                    "output with a loss."
                )
            pred = np.asarray(flat_pred[i])
            value, grad = _reduce_loss(loss_obj, flat_y[i], pred, flat_mask[i], flat_sw[i])
            w = 1.0 if weight is None else float(weight)
            total += w * value
            grads[i] = (w * grad).astype(pred.dtype, copy=False)
            if self._output_loss_trackers:
                per_output.append((self._output_loss_trackers[i], value, len(pred)))
        return total, grads, per_output

    def _update_metrics(self, flat_y: list, flat_pred: list, flat_mask: list, flat_sw: list):
        if self._output_metrics is None:
            self._build_metrics(flat_y, flat_pred)
        for i, (metrics, weighted) in enumerate(self._output_metrics):
            if not metrics and not weighted:
                continue
            pred = np.asarray(flat_pred[i])
            values_shape = pred.shape[:-1] if pred.ndim >= 2 else pred.shape
            m = _mask_weights(flat_mask[i], values_shape)
            for metric in metrics:
                metric.update_state(flat_y[i], pred, sample_weight=m)
            if weighted:
                w = m
                if flat_sw[i] is not None:
                    s = _broadcast_weights(flat_sw[i], values_shape)
                    w = s if w is None else w * s
                for metric in weighted:
                    metric.update_state(flat_y[i], pred, sample_weight=w)

    @property
    def metrics(self) -> list:
        """The metric objects: the loss tracker, compiled metrics, per-output loss trackers."""
        out = [self._loss_tracker]
        for metrics, weighted in self._output_metrics or []:
            out.extend(metrics)
            out.extend(weighted)
        out.extend(t for t in self._output_loss_trackers if t is not None)
        return out

    def reset_metrics(self) -> None:
        for m in self.metrics:
            m.reset_state()

    def get_metrics_result(self) -> dict[str, float]:
        """The current values of the loss and metrics, by log name (sorted, as Keras logs)."""
        logs: dict[str, float] = {"loss": self._loss_tracker.result()}
        several = len(self._flat_outputs_for_compile()) > 1
        names = self._flat_output_names_for_compile()
        counters: dict[str, int] = {}
        for i, (metrics, _) in enumerate(self._output_metrics or []):
            for m in metrics:
                name = f"{names[i]}_{m.name}" if several else m.name
                if name in counters:
                    counters[name] += 1
                    name = f"{name}_{counters[name] - 1}"
                else:
                    counters[name] = 1
                logs[name] = float(m.result())
        for i, (_, weighted) in enumerate(self._output_metrics or []):
            for m in weighted:
                name = f"{names[i]}_{m.name}" if several else m.name
                if name in counters:
                    name = f"{names[i]}_weighted_{m.name}" if several else f"weighted_{m.name}"
                    if name in counters:
                        counters[name] += 1
                        name = f"{name}_{counters[name] - 1}"
                    else:
                        counters[name] = 1
                else:
                    counters[name] = 1
                logs[name] = float(m.result())
        for tracker in self._output_loss_trackers:
            if tracker is not None:
                logs[tracker.name] = tracker.result()
        return _python_logs(logs)

    def _flatten_logs(self, logs: dict) -> Any:
        """Keras's ``_flatten_metrics_in_order``: loss, metric names, output losses, the rest."""
        order = ["loss"]
        for metrics, weighted in self._output_metrics or []:
            order += [m.name for m in metrics] + [m.name for m in weighted]
        order += [t.name for t in self._output_loss_trackers if t is not None]
        out = [logs[name] for name in order if name in logs]
        out += [logs[k] for k in sorted(logs) if k not in order]
        return out[0] if len(out) == 1 else out

    # ---- steps --------------------------------------------------------------------------------
    def _sync_optimizer(self, variables: list) -> None:
        """Keeps optimizer slots attached to their weights when the trainable set changes."""
        ids = [id(v) for v in variables]
        old = self._optimizer_variable_ids
        opt = self.optimizer
        slots = getattr(opt, "slots", None)
        if old is not None and old != ids and slots is not None and len(slots) == len(old):
            by_id = dict(zip(old, slots))
            opt.build(variables)
            opt.slots = [by_id.get(i, fresh) for i, fresh in zip(ids, opt.slots)]
        self._optimizer_variable_ids = ids

    def _train_step(self, flat_x: list, flat_y: list, flat_sw: list) -> dict:
        preds, masks, tape = self._run(flat_x, training=True)
        total, d_outputs, per_output = self._compute_loss(flat_y, preds, masks, flat_sw)
        batch = len(flat_x[0])
        self._loss_tracker.update_state(total, batch)
        for tracker, value, n in per_output:
            tracker.update_state(value, n)
        variables = self.trainable_weights
        if variables:
            _, by_id = self._run_backward(tape, d_outputs)
            grads = [by_id[id(v)] if id(v) in by_id else np.zeros_like(v) for v in variables]
            self._sync_optimizer(variables)
            self.optimizer.apply(grads, variables)
        else:
            warnings.warn("The model does not have any trainable weights.", stacklevel=3)
        self._update_metrics(flat_y, preds, masks, flat_sw)
        return self.get_metrics_result()

    def _test_step(self, flat_x: list, flat_y: list, flat_sw: list) -> dict:
        preds, masks, _ = self._run(flat_x, training=False)
        total, _, per_output = self._compute_loss(flat_y, preds, masks, flat_sw)
        self._loss_tracker.update_state(total, len(flat_x[0]))
        for tracker, value, n in per_output:
            tracker.update_state(value, n)
        self._update_metrics(flat_y, preds, masks, flat_sw)
        return self.get_metrics_result()

    def _batch_arrays(self, x: Any, y: Any, sw: Any, class_weight: dict | None) -> tuple:
        flat_x = self._prepare_inputs(x)
        flat_y = self._prepare_targets(y)
        if class_weight is not None:
            if sw is not None:
                raise ValueError("You cannot pass both class_weight and sample_weight.")
            present = [v for v in flat_y if v is not None]
            if len(flat_y) != 1 or not present:
                raise ValueError("class_weight is only supported for models with a single output.")
            sw = _class_weight_to_sample_weight(present[0], class_weight)
        flat_sw = self._prepare_sample_weights(sw)
        n = len(flat_x[0])
        for label, arrays in (("y", flat_y), ("sample_weight", flat_sw)):
            for a in arrays:
                if a is not None and (a.ndim == 0 or len(a) != n):
                    raise ValueError(
                        f"x and {label} must have the same number of samples, got {n} and "
                        f"{'a scalar' if a.ndim == 0 else len(a)}."
                    )
        return flat_x, flat_y, flat_sw

    # ---- data sources -------------------------------------------------------------------------
    def _data_source(
        self,
        x: Any,
        y: Any,
        sample_weight: Any,
        batch_size: Any,
        shuffle: Any,
        class_weight: dict | None,
        what: str,
        with_targets: bool = True,
    ) -> Any:
        """Batches of (x, y, sample_weight) as raw structures from arrays or a dataset."""
        if _is_dataset(x):
            for name, value in (("y", y), ("sample_weight", sample_weight)):
                if value is not None:
                    raise ValueError(
                        f"{what}: {name} must be None when x is a generator or Sequence (the "
                        "batches carry it)."
                    )
            if batch_size is not None:
                raise ValueError(
                    f"{what}: batch_size must be None when x is a generator or Sequence (the "
                    "batches already have their size)."
                )
            if _is_sequence_data(x):
                return _SequenceBatches(x, shuffle)
            return _IterableBatches(x)
        if x is None:
            raise ValueError(f"{what}: x is required.")
        bs = _check_batch_size(batch_size, what)
        if with_targets:
            flat_x, flat_y, flat_sw = self._batch_arrays(x, y, sample_weight, class_weight)
            flat_y = None if all(v is None for v in flat_y) else flat_y
            flat_sw = None if all(v is None for v in flat_sw) else flat_sw
        else:
            flat_x, flat_y, flat_sw = self._prepare_inputs(x), None, None
        if len(flat_x[0]) == 0:
            raise ValueError(f"{what}: x is empty.")
        return _ArrayBatches(flat_x, flat_y, flat_sw, bs, shuffle)

    def _standardize_batch(self, batch: tuple, class_weight: dict | None, prepared: bool) -> tuple:
        bx, by, bsw = batch
        if not prepared:
            self._ensure_built(bx)
        if prepared:  # from _ArrayBatches: already flat lists
            n = len(self._flat_outputs_for_compile())
            return (
                bx,
                (by if by is not None else [None] * n),
                (bsw if bsw is not None else [None] * n),
            )
        return self._batch_arrays(bx, by, bsw, class_weight)

    # ---- fit / evaluate / predict ------------------------------------------------------------
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: list | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool | str = True,
        class_weight: dict | None = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int | list = 1,
    ) -> Any:
        """Trains the model for a number of epochs (Keras 3's ``fit``).

        Args:
            x: inputs: an array (a list or dict of arrays for several inputs), a generator or
                iterator of batches ``(x, y[, sample_weight])``, or a Sequence/PyDataset-style
                object (``__len__``, ``__getitem__``, optional ``on_epoch_end``).
            y: targets for array x (a list or dict per output); None for generators/Sequences.
            batch_size: default 32 for arrays; must be None for generators/Sequences.
            epochs: last epoch index (exclusive), counting from ``initial_epoch``.
            verbose: ``"auto"``/1 progress bar, 2 one line per epoch, 0 silent.
            callbacks: list of ``fastrnn.callbacks.Callback``.
            validation_split: fraction in [0, 1) of the *last* samples held out (before
                shuffling); arrays only.
            validation_data: ``(x_val, y_val)``, ``(x_val, y_val, sample_weight_val)``, or a
                generator/Sequence; overrides ``validation_split``.
            shuffle: reshuffle the samples (or a Sequence's batch order) every epoch; ``"batch"``
                shuffles in batch-sized chunks. Seeded by ``set_random_seed``.
            class_weight: ``{class index: weight}``, turned into sample weights (one output).
            sample_weight: per-sample weights (B,), or per time step (B, T) for sequence
                outputs; a list/dict per output.
            initial_epoch: epoch to start from (for resuming).
            steps_per_epoch: batches per epoch; default one pass over the data. A generator
                without it runs until exhausted.
            validation_steps: batches per validation run; default one pass.
            validation_batch_size: default ``batch_size``.
            validation_freq: validate every ``validation_freq`` epochs (int), or after the
                epochs listed (1-based).

        Returns:
            A History whose ``.history`` maps ``loss``, metric names and their ``val_`` forms to
            per-epoch lists.

        Raises:
            ValueError: inconsistent data, bad ``validation_split``, ``batch_size`` or steps.
            RuntimeError: the model is not compiled.

        Example:
            >>> fastrnn.set_random_seed(0)
            >>> history = model.fit(x, y, epochs=10, batch_size=32, validation_split=0.2,
            ...                     class_weight={0: 1.0, 1: 3.0})
        """
        self._require_compiled("fit")
        verbose = _resolve_verbose(verbose)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}.")
        class_weight = _check_class_weight(class_weight)
        steps_per_epoch = _check_steps(steps_per_epoch, "fit: steps_per_epoch")
        validation_steps = _check_steps(validation_steps, "fit: validation_steps")
        if not isinstance(validation_freq, (int, list)) or isinstance(validation_freq, bool):
            raise ValueError(
                f"fit: validation_freq must be an int or a list of epochs, got {validation_freq!r}."
            )
        if isinstance(validation_freq, int) and validation_freq < 1:
            raise ValueError(f"fit: validation_freq must be >= 1, got {validation_freq}.")
        try:
            split = float(validation_split)
        except (TypeError, ValueError):
            raise ValueError(
                f"fit: validation_split must be a float, got {validation_split!r}."
            ) from None
        if not 0.0 <= split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}.")
        if shuffle not in (True, False, "batch"):
            raise ValueError(f"fit: shuffle must be True, False or 'batch', got {shuffle!r}.")
        if split > 0 and validation_data is None:
            if _is_dataset(x):
                raise ValueError(
                    "fit: validation_split is only supported for arrays; pass validation_data "
                    "for a generator or Sequence."
                )
            self._ensure_built(x)
            flat_x, flat_y, flat_sw = self._batch_arrays(x, y, sample_weight, class_weight)
            n = len(flat_x[0])
            at = int(math.floor(n * (1.0 - split)))
            if at == 0 or at == n:
                raise ValueError(
                    f"fit: validation_split={validation_split} leaves an empty training or "
                    f"validation set for {n} samples."
                )

            def cut(arrays, part):
                return [None if a is None else (a[:at] if part == 0 else a[at:]) for a in arrays]

            x, validation_data = cut(flat_x, 0), (cut(flat_x, 1), cut(flat_y, 1), cut(flat_sw, 1))
            y, sample_weight, class_weight = cut(flat_y, 0), cut(flat_sw, 0), None
            if all(v is None for v in sample_weight):
                sample_weight = None
            if all(v is None for v in validation_data[2]):
                validation_data = validation_data[:2]
        if not _is_dataset(x):
            self._ensure_built(x)
        train = _EpochIterator(
            self._data_source(x, y, sample_weight, batch_size, shuffle, class_weight, "fit"),
            steps_per_epoch,
        )
        prepared = isinstance(train.batches, _ArrayBatches)
        val = None
        if validation_data is not None:
            if _is_dataset(validation_data):
                val_source = self._data_source(
                    validation_data, None, None, None, False, None, "fit"
                )
            else:
                if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (
                    2,
                    3,
                ):
                    raise ValueError(
                        "fit: validation_data must be (x_val, y_val), (x_val, y_val, "
                        "sample_weight_val) or a generator/Sequence."
                    )
                vx, vy, vsw = _unpack_batch(tuple(validation_data))
                vbs = validation_batch_size or (batch_size if not _is_dataset(x) else None)
                val_source = self._data_source(vx, vy, vsw, vbs, False, None, "fit")
            val = _EpochIterator(val_source, validation_steps)
        history = callbacks_module.History()
        cbs = list(callbacks or [])
        cbs.append(history)
        if verbose:
            cbs.append(ProgbarLogger())
        params = {"epochs": epochs, "steps": train.num_batches, "verbose": verbose}
        cb = _Callbacks(cbs, self, params)
        self.stop_training = False
        self.history = history
        rng = initializers.make_rng(None)
        training_logs: dict = {}
        cb.on_train_begin({})
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            cb.on_epoch_begin(epoch, {})
            logs: dict = {}
            step = -1
            for step, batch in enumerate(train.epoch(rng)):
                cb.on_train_batch_begin(step, {})
                flat_x, flat_y, flat_sw = self._standardize_batch(batch, class_weight, prepared)
                logs = self._train_step(flat_x, flat_y, flat_sw)
                cb.on_train_batch_end(step, dict(logs))
                if self.stop_training:
                    break
            if step < 0:  # no batch at all: the data is exhausted
                _ran_out_warning()
                self.stop_training = True
                break
            if train.interrupted:
                _ran_out_warning()
            epoch_logs = dict(self.get_metrics_result())
            if val is not None and self._should_validate(epoch, validation_freq):
                val_logs = self._evaluate_loop(val, cb, in_fit=True)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            epoch_logs = _python_logs(epoch_logs)
            cb.on_epoch_end(epoch, dict(epoch_logs))
            training_logs = epoch_logs
            if self.stop_training:
                break
        cb.on_train_end(dict(training_logs))
        history.model = self
        history.params = params
        return history

    @staticmethod
    def _should_validate(epoch: int, freq: Any) -> bool:
        epoch += 1
        return epoch % freq == 0 if isinstance(freq, int) else epoch in freq

    def _evaluate_loop(self, data: _EpochIterator, cb: Any, in_fit: bool = False) -> dict:
        prepared = isinstance(data.batches, _ArrayBatches)
        self.reset_metrics()
        cb.on_test_begin({})
        logs: dict = {}
        ran = False
        for step, batch in enumerate(data.epoch(None)):
            cb.on_test_batch_begin(step, {})
            flat_x, flat_y, flat_sw = self._standardize_batch(batch, None, prepared)
            logs = self._test_step(flat_x, flat_y, flat_sw)
            ran = True
            cb.on_test_batch_end(step, dict(logs))
        if not ran and not in_fit:
            raise ValueError("evaluate: the data yielded no batch.")
        logs = self.get_metrics_result()
        cb.on_test_end(dict(logs))
        return logs

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: list | None = None,
        return_dict: bool = False,
    ) -> Any:
        """Loss and metrics in inference mode (Keras 3's ``evaluate``).

        Args:
            x, y, sample_weight: as in ``fit`` (arrays or a generator/Sequence for x).
            batch_size: default 32 for arrays.
            verbose: ``"auto"``/1 progress bar, 2 one line, 0 silent.
            steps: batches to run; default one pass.
            callbacks: list of Callback (their ``on_test_*`` hooks run).
            return_dict: return ``{name: value}``.

        Returns:
            The loss alone when there is nothing else to report, else a list in Keras's order
            (loss, metrics, per-output losses); a dict with ``return_dict=True``.

        Raises:
            ValueError: inconsistent data.
            RuntimeError: the model is not compiled.
        """
        self._require_compiled("evaluate")
        verbose = _resolve_verbose(verbose)
        steps = _check_steps(steps, "evaluate: steps")
        if not _is_dataset(x):
            self._ensure_built(x)
        data = _EpochIterator(
            self._data_source(x, y, sample_weight, batch_size, False, None, "evaluate"), steps
        )
        cbs = list(callbacks or [])
        if verbose:
            cbs.append(ProgbarLogger())
        cb = _Callbacks(cbs, self, {"epochs": 1, "steps": data.num_batches, "verbose": verbose})
        logs = self._evaluate_loop(data, cb)
        return logs if return_dict else self._flatten_logs(logs)

    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        steps: int | None = None,
        callbacks: list | None = None,
    ) -> Any:
        """Outputs for ``x`` in inference mode, batch by batch (Keras 3's ``predict``).

        Safe to call from several threads at once on one model (stateful recurrent layers
        excepted): nothing a call computes is kept on shared objects.

        Args:
            x: inputs (arrays, or a generator/Sequence yielding x or (x, ...) batches).
            batch_size: default 32 for arrays.
            verbose: ``"auto"``/1 progress bar, 2 one line, 0 silent.
            steps: batches to run; default one pass.
            callbacks: list of Callback (their ``on_predict_*`` hooks run).

        Returns:
            An array (a list or dict of arrays for several outputs), the batches concatenated.

        Raises:
            ValueError: inputs of the wrong number or shape.
        """
        verbose = _resolve_verbose(verbose)
        steps = _check_steps(steps, "predict: steps")
        if not _is_dataset(x):
            self._ensure_built(x)
        data = _EpochIterator(
            self._data_source(
                x, None, None, batch_size, False, None, "predict", with_targets=False
            ),
            steps,
        )
        prepared = isinstance(data.batches, _ArrayBatches)
        cbs = list(callbacks or [])
        if verbose:
            cbs.append(ProgbarLogger())
        cb = _Callbacks(cbs, self, {"epochs": 1, "steps": data.num_batches, "verbose": verbose})
        cb.on_predict_begin({})
        collected: list[list] | None = None
        for step, batch in enumerate(data.epoch(None)):
            cb.on_predict_batch_begin(step, {})
            if not prepared:
                self._ensure_built(batch[0])
            flat_x = batch[0] if prepared else self._prepare_inputs(batch[0])
            outs, _, _ = self._run(flat_x, training=False)
            if collected is None:
                collected = [[] for _ in outs]
            for bucket, out in zip(collected, outs):
                bucket.append(out)
            if cb.callbacks:
                cb.on_predict_batch_end(step, {"outputs": self._pack_outputs(outs)})
        cb.on_predict_end({})
        if collected is None:
            raise ValueError("predict: the data yielded no batch.")
        return self._pack_outputs([np.concatenate(b, axis=0) for b in collected])

    def _pack_outputs(self, flat: list) -> Any:
        return pack_as(self._outputs_struct, list(flat))

    def train_on_batch(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: dict | None = None,
        return_dict: bool = False,
    ) -> Any:
        """One optimizer step on one batch (metrics reset first, as Keras 3).

        Returns:
            The loss (a float) when there are no metrics, else a list of floats in Keras's
            order (loss, metrics, per-output losses); a dict with ``return_dict=True``.

        Raises:
            ValueError: inconsistent data, or both ``sample_weight`` and ``class_weight``.
            RuntimeError: the model is not compiled.
        """
        self._require_compiled("train_on_batch")
        self._ensure_built(x)
        flat_x, flat_y, flat_sw = self._batch_arrays(
            x, y, sample_weight, _check_class_weight(class_weight)
        )
        self.reset_metrics()
        logs = self._train_step(flat_x, flat_y, flat_sw)
        return logs if return_dict else self._flatten_logs(logs)

    def test_on_batch(
        self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = False
    ) -> Any:
        """Loss and metrics on one batch in inference mode (metrics reset first).

        Returns:
            As ``train_on_batch``.
        """
        self._require_compiled("test_on_batch")
        self._ensure_built(x)
        flat_x, flat_y, flat_sw = self._batch_arrays(x, y, sample_weight, None)
        self.reset_metrics()
        logs = self._test_step(flat_x, flat_y, flat_sw)
        return logs if return_dict else self._flatten_logs(logs)

    def predict_on_batch(self, x: Any) -> Any:
        """Outputs for one batch: an array, or a list/dict of arrays for several outputs."""
        self._ensure_built(x)
        outs, _, _ = self._run(self._prepare_inputs(x), training=False)
        return self._pack_outputs(outs)

    # ---- summary ------------------------------------------------------------------------------
    def _summary_rows(self) -> tuple[list, bool]:
        nodes = []
        sequential_like = True
        for depth in sorted(self._nodes_by_depth, reverse=True):
            at_depth = self._nodes_by_depth[depth]
            if len(at_depth) > 1 or (len(at_depth) == 1 and len(at_depth[0].input_tensors) > 1):
                sequential_like = False
                break
            nodes.extend(at_depth)
        if sequential_like:
            node_ids = {id(n) for n in nodes}
            for layer in self.layers:
                if sum(1 for n in layer._inbound_nodes if id(n) in node_ids) > 1:
                    sequential_like = False
                    break
        rows = []
        for layer in self.layers:
            row = [
                f"{layer.name} ({type(layer).__name__})",
                _layer_shape_text(layer),
                _param_text(layer),
            ]
            if not sequential_like:
                links = []
                for node in layer._inbound_nodes:
                    if id(node) not in self._graph_node_ids:
                        continue
                    for t in node.input_tensors:
                        src, ni, ti = t._keras_history
                        links.append(f"{src.name}[{ni}][{ti}]")
                row.append(", ".join(links) or "-")
            rows.append(row)
        return rows, not sequential_like

    def summary(
        self,
        line_length: int | None = None,
        positions: list[float] | None = None,
        print_fn: Any = None,
        expand_nested: bool = False,
        show_trainable: bool = False,
        layer_range: Any = None,
    ) -> None:
        """Prints Keras 3's summary table: layers, output shapes, parameter counts (and, for
        functional models that are not a plain chain, the "Connected to" column).

        Args:
            line_length: total width; default Keras's (88 or 108, at most the terminal width
                minus 4).
            positions: relative or absolute column ends, default Keras's.
            print_fn: called once with the whole text (ending with a newline); default prints.
            expand_nested, show_trainable, layer_range: only their defaults are supported.

        Raises:
            ValueError: an unsupported option, or a line too narrow for the columns.
        """
        if expand_nested or show_trainable or layer_range is not None:
            raise ValueError(
                "summary: expand_nested, show_trainable and layer_range are not supported."
            )
        if positions is not None and positions[-1] > 1 and line_length is not None:
            positions = [p / line_length for p in positions]
        rows, connected = self._summary_rows()
        text = _summary.summary_text(
            self.name, rows, connected, self._param_counts(), line_length, positions
        )
        if print_fn is None:
            import sys

            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            print_fn(text)

    def _param_counts(self) -> dict:
        trainable = self.trainable_weights
        keep = {id(w) for w in trainable}
        non = [w for w in self.weights if id(w) not in keep]
        counts = {
            "trainable": int(sum(w.size for w in trainable)),
            "trainable_bytes": int(sum(w.nbytes for w in trainable)),
            "non_trainable": int(sum(w.size for w in non)),
            "non_trainable_bytes": int(sum(w.nbytes for w in non)),
        }
        opt = self.optimizer
        if self.compiled and opt is not None and getattr(opt, "slots", None) is not None:
            # Keras counts the slot arrays plus its `iterations` and `learning_rate` variables
            # (no learning-rate variable when the rate is a schedule).
            _, slot_arrays = opt.get_state()
            extra = 1 if callable(getattr(opt, "learning_rate", None)) else 2
            counts["optimizer"] = int(sum(a.size for a in slot_arrays)) + extra
            counts["optimizer_bytes"] = int(sum(a.nbytes for a in slot_arrays)) + 4 * extra
        return counts

    # ---- config -------------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Keras's Functional config: layers with their inbound nodes, input and output refs.

        Each layer entry is ``{"class_name", "config", "name", "inbound_nodes"}``; a node is
        ``{"args": [...], "kwargs": {...}}`` whose tensors are
        ``{"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history":
        [layer name, node index, tensor index]}}``. ``input_layers``/``output_layers`` hold
        such triples in the structure of ``inputs``/``outputs``.
        """
        reindex: dict = {}
        for layer in self.layers:
            kept = [i for i, n in enumerate(layer._inbound_nodes) if id(n) in self._graph_node_ids]
            reindex.update({(id(layer), old): new for new, old in enumerate(kept)})
        layer_configs = []
        for layer in self.layers:
            nodes = []
            for node in layer._inbound_nodes:
                if id(node) not in self._graph_node_ids or node.is_input:
                    continue
                nodes.append(
                    {
                        "args": [_serialize_argument(node.call_inputs, reindex)],
                        "kwargs": _serialize_argument(node.call_kwargs, reindex),
                    }
                )
            spec = serialize(layer)
            layer_configs.append({**spec, "name": layer.name, "inbound_nodes": nodes})
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": layer_configs,
            "input_layers": map_structure(lambda t: _tensor_ref(t, reindex), self._inputs_struct),
            "output_layers": map_structure(lambda t: _tensor_ref(t, reindex), self._outputs_struct),
        }

    @classmethod
    def from_config(cls, config: dict) -> Model:
        """Rebuilds a functional model (untrained weights) from ``get_config``'s output.

        Raises:
            ValueError: a malformed config, unknown layer classes, or references to layers or
                nodes that do not exist.
        """
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("Model.from_config: config must be a dict with a 'layers' list.")
        if "input_layers" not in config or "output_layers" not in config:
            raise ValueError("Model.from_config: config needs 'input_layers' and 'output_layers'.")
        created: dict[str, Layer] = {}
        pending: list = []
        for spec in config["layers"]:
            if not isinstance(spec, dict) or "class_name" not in spec:
                raise ValueError(f"Model.from_config: malformed layer entry {spec!r}.")
            layer = deserialize(
                {"class_name": spec["class_name"], "config": spec.get("config", {})}
            )
            name = spec.get("name", layer.name)
            if name in created:
                raise ValueError(f"Model.from_config: layer name {name!r} appears twice.")
            created[name] = layer
            for node in spec.get("inbound_nodes", []):
                pending.append((layer, node))
        # The config's node indices count only this model's nodes, in creation order.
        node_outputs: dict[str, list] = defaultdict(list)
        for name, layer in created.items():
            if isinstance(layer, InputLayer):
                node_outputs[name].append(flatten(layer.output))

        def resolve(value: Any) -> Any:
            if _is_tensor_ref(value):
                ref = value["config"]["keras_history"]
                lname, ni, ti = ref
                outs = node_outputs.get(lname)
                if outs is None or ni >= len(outs):
                    raise LookupError
                return outs[ni][ti]
            if isinstance(value, list):
                return [resolve(v) for v in value]
            if isinstance(value, dict):
                return {k: resolve(v) for k, v in value.items()}
            return value

        while pending:
            progress = False
            remaining = []
            for layer, node in pending:
                try:
                    args = [resolve(a) for a in node.get("args", [])]
                    kwargs = {k: resolve(v) for k, v in node.get("kwargs", {}).items()}
                except LookupError:
                    remaining.append((layer, node))
                    continue
                if len(args) != 1:
                    raise ValueError(
                        f"Model.from_config: layer {layer.name!r} has a node with {len(args)} "
                        "positional arguments; fastrnn layers take one (the inputs)."
                    )
                out = layer(args[0], **kwargs)
                node_outputs[layer.name].append(flatten(out))
                progress = True
            if not progress:
                raise ValueError(
                    "Model.from_config: the nodes of layers "
                    f"{sorted({la.name for la, _ in remaining})} refer to tensors that no layer "
                    "produces."
                )
            pending = remaining

        def ref_to_tensor(ref: Any) -> Any:
            if isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str):
                outs = node_outputs.get(ref[0])
                if outs is None or ref[1] >= len(outs) or ref[2] >= len(outs[ref[1]]):
                    raise ValueError(f"Model.from_config: unknown tensor reference {ref!r}.")
                return outs[ref[1]][ref[2]]
            if isinstance(ref, list):
                return [ref_to_tensor(r) for r in ref]
            if isinstance(ref, dict):
                return {k: ref_to_tensor(v) for k, v in ref.items()}
            raise ValueError(f"Model.from_config: malformed tensor reference {ref!r}.")

        inputs = ref_to_tensor(config["input_layers"])
        outputs = ref_to_tensor(config["output_layers"])
        return cls(
            inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True)
        )

    # ---- saving -------------------------------------------------------------------------------
    def save(self, filepath: str) -> None:
        """Saves config, weights and optimizer state: ``*.keras`` as a Keras 3 archive, other
        names as a ``.fastrnn`` zip (see ``fastrnn.saving.save_model``)."""
        saving.save_model(self, filepath)

    def save_weights(self, filepath: str) -> None:
        """Saves only the weights: ``*.weights.h5`` in Keras 3's layout, other names as a
        fastrnn zip of .npy arrays (see ``fastrnn.saving.save_weights``)."""
        saving.save_weights(self, filepath)

    def load_weights(self, filepath: str, **kwargs: Any) -> None:
        """Loads weights from a fastrnn file, a ``.keras`` or a ``.weights.h5`` file (see
        ``fastrnn.saving.load_weights`` for the size limits in ``kwargs``)."""
        saving.load_weights(self, filepath, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


def _layer_shape_text(layer: Layer) -> str:
    if not layer._inbound_nodes:
        return "?"
    outputs = layer._inbound_nodes[-1].outputs

    def shape_of(o: Any) -> Any:
        if isinstance(o, KerasTensor):
            return tuple(o.shape)
        return [shape_of(v) for v in (o.values() if isinstance(o, dict) else o)]

    return _summary.format_shape(shape_of(outputs))


def _param_text(layer: Layer) -> str:
    if not layer.built:
        return "0 (unbuilt)"
    return f"{layer.count_params():,}"


# ---- Sequential ------------------------------------------------------------------------------
@saving.register_model
class Sequential(Model):
    """A linear stack of layers (Keras 3's ``Sequential``), sharing ``Model``'s training loop.

    Args:
        layers: optional list of layers; the first may be an ``Input(...)`` (the Keras 3 idiom,
            also ``Input(batch_shape=...)`` for stateful layers).
        trainable: False freezes every layer.
        name: model name, default ``"sequential"`` (Keras-style numbering).

    Call arguments:
        inputs: an array (B, ...).
        training: True keeps what ``backward`` needs (and applies dropout).

    Returns:
        The last layer's output.

    Raises:
        TypeError: an element that is not a layer or an ``Input``.
        ValueError: a duplicate layer name, an ``Input`` after the first position, or a middle
            layer with several outputs.

    Example:
        >>> model = Sequential([Input((12, 1)), SimpleRNN(3), Dense(1)])
        >>> model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        >>> history = model.fit(x, y, epochs=10, batch_size=32, validation_split=0.2)
        >>> model.predict(x).shape   # (N, 1)
    """

    _strict_input_shapes = False  # as Keras's Sequential: the layers check what they need

    def __init__(
        self, layers: list | None = None, trainable: bool = True, name: str | None = None
    ) -> None:
        if isinstance(trainable, str) and name is None:  # Sequential(layers, "name") of old
            trainable, name = True, trainable
        Layer.__init__(self, name=name or unique_name("sequential"))
        self._init_training_state()
        self._seq_layers: list[Layer] = []
        self._input_layer: InputLayer | None = None
        self._input_tensor: KerasTensor | None = None
        self._output_tensor: Any = None
        self.built_input_shape: tuple | None = None
        for layer in layers or []:
            self.add(layer)
        if not trainable:
            self.trainable = False

    # ---- structure ---------------------------------------------------------------------------
    def add(self, layer: Any) -> None:
        """Appends a layer (building it at once when the input shape is known).

        Args:
            layer: a fastrnn layer (a model counts as one), or ``Input(...)`` / an
                ``InputLayer`` as the first element.

        Raises:
            TypeError: ``layer`` is not a fastrnn layer or an ``Input``.
            ValueError: a layer name already used, or an input after other layers.
        """
        if isinstance(layer, KerasTensor):
            history = layer._keras_history
            if history is None or not isinstance(history.operation, InputLayer):
                raise TypeError(
                    "Sequential.add takes layers or an Input(...) tensor; got a symbolic tensor "
                    "produced by a layer."
                )
            layer = history.operation
        if isinstance(layer, InputLayer):
            if self._seq_layers or self._input_layer is not None:
                raise ValueError(
                    f"Sequential model {self.name!r}: an Input can only be its first element."
                )
            self._input_layer = layer
            self.build(layer.batch_shape, dtype=layer.dtype.name)
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a fastrnn layer, got {layer!r}.")
        if layer is self:
            raise ValueError("Sequential.add: a model cannot contain itself.")
        if any(existing.name == layer.name for existing in self._seq_layers):
            raise ValueError(f"A layer named {layer.name!r} is already in model {self.name!r}.")
        self._seq_layers.append(layer)
        current = self._output_tensor if self._output_tensor is not None else self._input_tensor
        if current is not None:
            if isinstance(current, (list, tuple)):
                self._seq_layers.pop()
                raise ValueError(
                    f"Layer {self._seq_layers[-1].name!r} returns several outputs "
                    "(return_state or merge_mode=None); Sequential needs one output per layer "
                    "(except the last)."
                )
            try:
                self._output_tensor = layer(current)
            except Exception:
                self._seq_layers.pop()
                raise
        elif len(self._seq_layers) == 1 and layer._input_shape_arg is not None:
            self.build((None,) + layer._input_shape_arg)

    def pop(self) -> Layer:
        """Removes and returns the last layer (the model is rebuilt when its input is known).

        Raises:
            ValueError: the model has no layers.
        """
        if not self._seq_layers:
            raise ValueError(f"Sequential model {self.name!r} has no layers to pop.")
        layer = self._seq_layers.pop()
        tensor = self._input_tensor
        self._output_tensor = None
        if tensor is not None and self._seq_layers:
            self._input_tensor = None
            self.build(tensor.shape, dtype=tensor.dtype)
        return layer

    @property
    def layers(self) -> list[Layer]:
        """The layers, without the input (as Keras's Sequential)."""
        return list(self._seq_layers)

    def _sublayers(self) -> list[Layer]:
        return list(self._seq_layers)

    @property
    def built(self) -> bool:  # type: ignore[override]
        return bool(self._seq_layers) and all(layer.built for layer in self._seq_layers)

    @built.setter
    def built(self, value: bool) -> None:
        pass  # derived from the layers

    def build(self, input_shape: Any = None, dtype: str = "float32") -> None:
        """Builds every layer for inputs of ``input_shape`` (batch dimension first, may be None).

        Also records the layers' calls on a symbolic input, so that ``model.inputs``,
        ``model.outputs`` and ``layer.output`` exist as in Keras.

        Raises:
            ValueError: no shape, or a middle layer with several outputs.
        """
        if input_shape is None:
            if self._input_tensor is not None:
                return
            raise ValueError(f"Sequential.build on {self.name!r} needs an input shape.")
        shape = tuple(None if d is None else int(d) for d in input_shape)
        with _BUILD_LOCK:
            if self._input_tensor is not None and tuple(self._input_tensor.shape) == shape:
                return
            if self._input_layer is not None and tuple(self._input_layer.batch_shape) == shape:
                tensor = self._input_layer.output
            else:
                tensor = Input(batch_shape=shape, dtype=dtype)
            x: Any = tensor
            for i, layer in enumerate(self._seq_layers):
                if isinstance(x, (list, tuple)):
                    raise ValueError(
                        f"Layer {self._seq_layers[i - 1].name!r} returns several outputs "
                        "(return_state or merge_mode=None); Sequential needs one output per "
                        "layer (except the last)."
                    )
                x = layer(x)
            self._input_tensor = tensor
            self._output_tensor = x if self._seq_layers else None
            self.built_input_shape = shape

    def _ensure_built(self, inputs: Any) -> None:
        if not self._seq_layers:
            raise ValueError(f"Model {self.name!r} has no layers.")
        if self._output_tensor is not None or is_symbolic(inputs):
            return
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1 and _is_array_like(inputs[0]):
            inputs = inputs[0]
        arr = _as_array(inputs, "x")
        if arr.ndim == 0:
            raise ValueError(f"x must have a batch axis, got a scalar of shape {arr.shape}.")
        self.build((None,) + tuple(arr.shape[1:]), dtype=str(arr.dtype))

    # graph views --------------------------------------------------------------------------------
    @property
    def _flat_inputs(self) -> list:  # type: ignore[override]
        return [] if self._input_tensor is None else [self._input_tensor]

    @property
    def _flat_outputs(self) -> list:  # type: ignore[override]
        return [] if self._output_tensor is None else flatten(self._output_tensor)

    @property
    def _inputs_struct(self) -> Any:  # type: ignore[override]
        return self._input_tensor

    @property
    def _outputs_struct(self) -> Any:  # type: ignore[override]
        return self._output_tensor

    @property
    def inputs(self) -> list:
        self._require_graph("inputs")
        return [self._input_tensor]

    @property
    def outputs(self) -> list:
        self._require_graph("outputs")
        return flatten(self._output_tensor)

    @property
    def input(self) -> Any:
        self._require_graph("input")
        return self._input_tensor

    @property
    def output(self) -> Any:
        self._require_graph("output")
        return self._output_tensor

    def _require_graph(self, what: str) -> None:
        if self._output_tensor is None:
            raise AttributeError(
                f"Sequential model {self.name!r} has no {what} yet: give it an Input (or "
                "input_shape) or call it on data first."
            )

    @property
    def output_names(self) -> list[str]:
        if not self._seq_layers:
            return []
        n = len(self._flat_outputs) if self._output_tensor is not None else 1
        return [self._seq_layers[-1].name] * n

    def _output_keys(self) -> list[str]:
        return self.output_names

    def _input_keys(self) -> list[str]:
        return (
            [self._input_tensor._keras_history.operation.name]
            if self._input_tensor is not None
            else []
        )

    def _flat_outputs_for_compile(self) -> list:
        return self._flat_outputs if self._output_tensor is not None else [None]

    def _flat_output_names_for_compile(self) -> list[str]:
        return self.output_names or ["output"]

    # ---- forward / backward -------------------------------------------------------------------
    def _run(self, flat_x: list, training: bool, flat_masks: list | None = None) -> tuple:
        x = flat_x[0]
        mask = None if flat_masks is None else flat_masks[0]
        tape = [] if training else None
        for i, layer in enumerate(self._seq_layers):
            x, mask, cache = layer._forward(x, mask=mask, training=training)
            if tape is not None:
                tape.append(cache)
            if isinstance(x, (list, tuple)) and i != len(self._seq_layers) - 1:
                raise ValueError(
                    f"Layer {layer.name!r} returns several outputs (return_state or "
                    "merge_mode=None); Sequential needs one output per layer (except the last)."
                )
        flat_out = flatten(x)
        flat_mask = flatten(mask) if mask is not None else []
        if len(flat_mask) != len(flat_out):
            flat_mask = [None] * len(flat_out)
        if tape is not None:
            tape = (tape, x)
        return flat_out, flat_mask, tape

    def _run_backward(self, tape: Any, d_outputs: list) -> tuple[list, dict]:
        caches, last = tape
        flat_last = flatten(last)
        d = [
            np.zeros_like(v) if g is None else np.asarray(g, dtype=np.asarray(v).dtype)
            for g, v in zip(d_outputs, flat_last)
        ]
        dy: Any = pack_as(last, d)
        weight_grads: dict[int, np.ndarray] = {}
        for layer, cache in zip(reversed(self._seq_layers), reversed(caches)):
            dy, grads = layer._backward(cache, dy)
            for w, g in zip(layer.weights, grads):
                if g is not None:
                    weight_grads[id(w)] = (
                        g if id(w) not in weight_grads else weight_grads[id(w)] + g
                    )
            if isinstance(dy, list):
                dy = dy[0]
            if dy is None:
                break
        return [dy], weight_grads

    def _symbolic_outputs(self, inputs: Any, kwargs: dict) -> Any:
        if isinstance(inputs, (list, tuple)):
            raise TypeError(f"Sequential model {self.name!r} takes one input tensor.")
        if self._output_tensor is None:
            self.build((None,) + tuple(inputs.shape[1:]), dtype=inputs.dtype)
        want = self._input_tensor.shape
        if inputs.ndim != len(want) or any(
            a is not None and b is not None and a != b for a, b in zip(inputs.shape[1:], want[1:])
        ):
            raise ValueError(
                f"Sequential model {self.name!r} expects inputs of shape {want}, got "
                f"{inputs.shape}."
            )
        return map_structure(
            lambda t: KerasTensor((inputs.shape[0],) + tuple(t.shape[1:]), t.dtype),
            self._output_tensor,
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = tuple(input_shape)
        for layer in self._seq_layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def _output_shapes(self) -> list:
        shape = self.built_input_shape
        shapes = []
        for layer in self._seq_layers:
            shape = layer.compute_output_shape(shape) if shape is not None else None
            shapes.append(shape)
        return shapes

    # ---- summary ------------------------------------------------------------------------------
    def _summary_rows(self) -> tuple[list, bool]:
        rows = []
        for layer, shape in zip(self._seq_layers, self._output_shapes()):
            text = (
                _layer_shape_text(layer)
                if layer._inbound_nodes
                else ("?" if shape is None else _summary.format_shape(shape))
            )
            rows.append([f"{layer.name} ({type(layer).__name__})", text, _param_text(layer)])
        return rows, False

    # ---- config -------------------------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-compatible description: name, trainable, build input shape and layer configs."""
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "build_input_shape": None
            if self.built_input_shape is None
            else list(self.built_input_shape),
            "layers": [serialize(layer) for layer in self._seq_layers],
        }
        if self._input_tensor is not None and self._input_tensor.dtype != "float32":
            config["input_dtype"] = self._input_tensor.dtype
        return config

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        """Rebuilds an (untrained) model from ``get_config``'s output (an ``InputLayer`` entry
        first, as in Keras's configs, sets the input).

        Raises:
            ValueError: malformed config or unknown layer classes.
        """
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("Sequential.from_config: config must be a dict with a 'layers' list.")
        model = cls(name=config.get("name"))
        for spec in config["layers"]:
            model.add(deserialize(spec))
        shape = config.get("build_input_shape")
        if shape is not None and model._output_tensor is None and model._seq_layers:
            model.build(tuple(shape), dtype=config.get("input_dtype", "float32"))
        if not config.get("trainable", True):
            model.trainable = False
        return model


layers_module.LAYER_CLASSES.update({"Sequential": Sequential, "Model": Model, "Functional": Model})


def load_model(filepath: str, **kwargs: Any) -> Model:
    """Loads a ``.fastrnn`` file or a Keras 3 ``.keras`` archive (see ``fastrnn.saving.load_model``
    for ``compile`` and the size limits ``max_bytes``, ``max_entries``, ``max_ratio``)."""
    return saving.load_model(filepath, **kwargs)


def clone_model(model: Model) -> Model:
    """A new model with the same architecture and freshly initialised weights (Keras's
    ``clone_model`` without ``input_tensors``/``clone_function``)."""
    return type(model).from_config(model.get_config())


__all__ = ["MeanMetricWrapper", "Model", "Sequential", "clone_model", "load_model"]

del inspect, threading
