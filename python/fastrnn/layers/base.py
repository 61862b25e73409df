"""The ``Layer`` base class, the argument checks every layer shares, and nested-structure helpers.

Shapes: B batch, T time steps, F features. Layers are batch-major like Keras: sequences are
(B, T, F). Every layer computes in its ``dtype`` (float32 by default, float64 allowed) and never
modifies its inputs.

NumPy-pipeline protocol, shared by every layer:

* ``y = layer(x, training=True)`` runs the forward pass and keeps what backward needs;
* ``dx = layer.backward(dy)`` returns dL/dx and fills ``layer.gradients``, a list of arrays
  aligned with ``layer.get_weights()`` (overwritten by each backward call, never accumulated).

Symbolic protocol (Functional API): calling a layer on a ``KerasTensor`` (what ``fastrnn.Input``
returns) builds the layer from the symbolic shape and records the call as a node of a graph,
returning symbolic outputs; ``fastrnn.Model(inputs, outputs)`` runs that graph. The same layer
object works on NumPy arrays and symbolically.

Per-call state. Models never read what a call leaves on a layer object: ``Layer._forward``
returns the outputs, their mask and, in training, a snapshot of what backward needs (the
layer's cache and those of its sub-layers); ``Layer._backward`` takes that snapshot back. So one
model can serve ``predict`` from several threads at once (inference stores nothing a later call
reads), and one layer can be called on several tensors of a graph (a shared layer), each call's
backward getting its own cache. The direct protocol above still keeps the last call's cache and
output mask on the layer (``layer.backward``, ``layer.output_mask``) for convenience; that is per
layer object, so training one model (or calling one layer with ``training=True``) from several
threads at once is not supported, and a stateful recurrent layer's carried states are shared.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
from collections import defaultdict, namedtuple
from typing import Any

import numpy as np

from fastrnn import initializers

_name_counts: dict[str, int] = defaultdict(int)
_NAME_LOCK = threading.Lock()
# Serialises building on first call (two threads calling an unbuilt layer must not both create
# weights). One module lock rather than one per layer keeps layers picklable.
_BUILD_LOCK = threading.RLock()


def _snake(name: str) -> str:
    """Keras's to_snake_case: ``GlobalAveragePooling1D`` -> ``global_average_pooling1d``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base: str) -> str:
    """Keras-style automatic names: ``lstm``, ``lstm_1``, ``lstm_2`` ..."""
    with _NAME_LOCK:
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


def check_numeric_array(x: np.ndarray, owner: str, argument: str = "inputs") -> None:
    """Rejects arrays a float layer cannot take: complex, strings, objects.

    Complex values are refused rather than cast, since a cast would drop the imaginary part.

    Raises:
        TypeError: naming ``argument`` and the dtype.
    """
    kind = x.dtype.kind
    if kind == "c":
        raise TypeError(
            f"{owner}: {argument} must be real numbers, got complex dtype {x.dtype} (casting "
            "would silently drop the imaginary part)."
        )
    if kind not in "biuf":
        raise TypeError(f"{owner}: {argument} must be numeric, got dtype {x.dtype}.")


# ---- nested structures (lists, tuples, dicts of leaves), as Keras's ``tree`` --------------------
def flatten(structure: Any) -> list:
    """The leaves of a nest of lists, tuples and dicts (dicts by sorted key, as Keras)."""
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure) for leaf in flatten(structure[key])]
    return [structure]


def pack_as(structure: Any, flat: list) -> Any:
    """Rebuilds ``structure``'s nesting from ``flat`` leaves (the inverse of ``flatten``)."""
    leaves = iter(flat)

    def rebuild(s: Any) -> Any:
        if isinstance(s, (list, tuple)):
            return type(s)(rebuild(item) for item in s)
        if isinstance(s, dict):
            out = {key: None for key in s}
            for key in sorted(s):
                out[key] = rebuild(s[key])
            return out
        return next(leaves)

    return rebuild(structure)


def map_structure(fn: Any, structure: Any) -> Any:
    """``structure`` with ``fn`` applied to every leaf."""
    return pack_as(structure, [fn(leaf) for leaf in flatten(structure)])


def is_symbolic(structure: Any) -> bool:
    """Whether a nest holds a symbolic ``KerasTensor``."""
    from fastrnn.layers.input_layer import KerasTensor

    if isinstance(structure, KerasTensor):
        return True
    if isinstance(structure, (list, tuple)):
        return any(is_symbolic(s) for s in structure)
    if isinstance(structure, dict):
        return any(is_symbolic(s) for s in structure.values())
    return False


@functools.cache
def _call_parameters(cls: type) -> tuple[tuple[str, ...], bool]:
    """Names of ``cls.call``'s parameters after the inputs, and whether it takes ``**kwargs``."""
    params = list(inspect.signature(cls.call).parameters.values())[2:]  # skip self, inputs
    names = tuple(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


_SAME = object()  # "previous_mask defaults to mask"


_WeightRef = namedtuple("_WeightRef", ["sublayer", "index"])  # a weight in a pickled layer


def _canonical_dtypes(value: Any) -> None:
    """Gives unpickled arrays NumPy's canonical dtype objects, in place (identity kept).

    An array that went through pickle carries an equal but distinct dtype instance, which the
    compiled kernels' dtype checks may not accept; the arrays are the layer's own.
    """
    if isinstance(value, np.ndarray):
        canonical = np.dtype(value.dtype.str)
        if value.dtype is not canonical and value.dtype == canonical:
            try:
                value.dtype = canonical
            except (AttributeError, TypeError, ValueError):  # pragma: no cover - views
                pass
    elif isinstance(value, (list, tuple)):
        for v in value:
            _canonical_dtypes(v)


class Layer:
    """Base class: configuration, weights, build-on-first-call and the backward protocol.

    Args:
        name: layer name; Keras-style automatic name when None.
        input_shape: shape of one sample (no batch dimension); lets a model build before data
            (Keras 3 prefers an ``Input`` as the first element of a ``Sequential``).
        dtype: ``"float32"`` (default) or ``"float64"``: weights and computation.
        trainable: False freezes the weights in ``fit`` (gradients are still computed). Setting
            ``layer.trainable`` later also sets it on the layer's sub-layers, as Keras.

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
        self._trainable = bool(trainable)
        self.built = False
        self.input_shape: tuple | None = None
        self._weights: list[np.ndarray] = []
        self._weight_names: list[str] = []
        self.gradients: list[np.ndarray] | None = None
        self.output_mask = None
        self._cache: Any = None
        self._inbound_nodes: list = []

    # ---- pickling --------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        # The training cache is transient (and holds the kernels' context, which refers to a
        # compiled module): a copy starts without one, as after an inference call.
        state = self.__dict__.copy()
        state["_cache"] = None
        state["output_mask"] = None
        # Weights are shared by identity (``self.kernel is self._weights[0]``, a wrapper's
        # weights are its sub-layers' arrays). Pickle keeps identity, but joblib stores each
        # array reference separately; references make every copy keep the sharing.
        own = {id(w): i for i, w in enumerate(self._weights)}
        for key, value in state.items():
            if key != "_weights" and isinstance(value, np.ndarray) and id(value) in own:
                state[key] = _WeightRef(None, own[id(value)])
        in_subs = {}
        for j, sub in enumerate(self._sublayers()):
            for i, w in enumerate(sub.__dict__.get("_weights", [])):
                in_subs.setdefault(id(w), (j, i))
        if in_subs:
            state["_weights"] = [
                _WeightRef(*in_subs[id(w)]) if id(w) in in_subs else w for w in self._weights
            ]
        return state

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            if isinstance(value, np.dtype):
                state[key] = np.dtype(value.str)
            else:
                _canonical_dtypes(value)
        self.__dict__.update(state)
        weights = self.__dict__.get("_weights", [])
        if any(isinstance(w, _WeightRef) for w in weights):
            subs = self._sublayers()
            self._weights = [
                subs[w.sublayer]._weights[w.index] if isinstance(w, _WeightRef) else w
                for w in weights
            ]
        for key, value in list(self.__dict__.items()):
            if isinstance(value, _WeightRef):
                self.__dict__[key] = self._weights[value.index]

    # ---- sub-layers and trainability --------------------------------------------------------
    def _sublayers(self) -> list[Layer]:
        """Layers this layer owns (attributes holding layers, e.g. a wrapper's inner layer).

        Found by looking at the attributes; remembered once the layer is built (its structure
        is fixed by then).
        """
        cached = self.__dict__.get("_sublayers_cache")
        if cached is not None:
            return list(cached)
        found: list[Layer] = []
        for value in vars(self).values():
            if isinstance(value, Layer):
                found.append(value)
            elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Layer):
                found.extend(v for v in value if isinstance(v, Layer))
        if self.__dict__.get("built"):
            self.__dict__["_sublayers_cache"] = tuple(found)
        return found

    @property
    def trainable(self) -> bool:
        """Whether ``fit`` updates this layer's weights; setting it also sets sub-layers'."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for sub in self._sublayers():
            sub.trainable = value

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
        """The weights ``fit`` updates: none when the layer (or its sub-layer) is frozen."""
        if not self.trainable:
            return []
        subs = self._sublayers()
        if not subs:
            return list(self.weights)
        frozen = {id(w) for s in subs for w in s.weights} - {
            id(w) for s in subs for w in s.trainable_weights
        }
        return [w for w in self.weights if id(w) not in frozen]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    @property
    def weight_names(self) -> list[str]:
        return [f"{self.name}/{n}" for n in self._weight_names]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights, in Keras's order and shapes."""
        return [w.copy() for w in self.weights]

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
            check_numeric_array(new, f"set_weights on layer {self.name!r}", f"weight {wname!r}")
            arrays.append(new)
        for old, new in zip(self._weights, arrays):
            old[...] = new

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights))

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
        check_numeric_array(x, f"Layer {self.name!r}")
        return x.astype(self.dtype, copy=False)

    def _check_input(self, x: Any) -> None:
        """Checks rank and feature width against the built input shape (arrays or symbolic)."""
        if self.input_shape is None:
            return
        want = self.input_shape
        if x.ndim != len(want):
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) expects inputs of rank {len(want)} "
                f"(shape {want}), got shape {tuple(x.shape)}."
            )
        if want[-1] is not None and x.shape[-1] is not None and x.shape[-1] != want[-1]:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) was built for {want[-1]} input "
                f"features (last axis), got inputs of shape {tuple(x.shape)}."
            )

    def _build_shape(self, x: Any) -> Any:
        """The shape ``build`` receives for the first input ``x`` (batch dimension None)."""
        return (None,) + tuple(x.shape[1:])

    def _maybe_build(self, x: Any, shape: Any = None) -> None:
        if self.built:
            return
        with _BUILD_LOCK:
            if not self.built:
                self._check_first_input(x)
                self.build(self._build_shape(x) if shape is None else shape)

    def _bind_positional(self, args: tuple, kwargs: dict) -> dict:
        if not args:
            return kwargs
        names, _ = _call_parameters(type(self))
        if len(args) > len(names):
            raise TypeError(
                f"Layer {self.name!r}: too many positional arguments ({len(args) + 1}); call "
                f"arguments after the inputs are {', '.join(names) or 'none'}."
            )
        bound = dict(zip(names, args))
        for key in bound:
            if key in kwargs:
                raise TypeError(f"Layer {self.name!r}: got multiple values for argument {key!r}.")
        return {**bound, **kwargs}

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs = self._bind_positional(args, kwargs)
        if is_symbolic(inputs) or is_symbolic(kwargs):
            from fastrnn.layers.input_layer import symbolic_call

            return symbolic_call(self, inputs, kwargs)
        outputs, mask, _ = self._forward(inputs, **kwargs)
        self.output_mask = mask
        return outputs

    def _forward(
        self,
        inputs: Any,
        *,
        mask: Any = None,
        training: bool = False,
        previous_mask: Any = _SAME,
        **kwargs: Any,
    ) -> tuple[Any, Any, Any]:
        """One call that keeps no state a later call reads: ``(outputs, output_mask, cache)``.

        ``mask`` is what ``call`` receives; ``previous_mask`` (default: ``mask``) is what
        ``compute_mask`` receives (Keras passes a layer the mask of its first input even when it
        does not hand it to ``call``). ``cache`` is None unless ``training``.
        """
        x = self._convert(inputs)
        self._maybe_build(x)
        self._check_input(x)
        names, var_kw = _call_parameters(type(self))
        if "mask" in names or var_kw:
            kwargs["mask"] = mask
        if "training" in names or var_kw:
            kwargs["training"] = bool(training)
        outputs = self.call(x, **kwargs)
        if previous_mask is _SAME:
            previous_mask = mask
        out_mask = self.compute_mask(x, previous_mask) if self.supports_masking else None
        return outputs, out_mask, (self._capture_cache() if training else None)

    def _capture_cache(self) -> Any:
        """A snapshot of what backward needs: this layer's cache and its sub-layers'."""
        return (self._cache, tuple(sub._capture_cache() for sub in self._sublayers()))

    def _restore_cache(self, snapshot: Any) -> None:
        own, subs = snapshot
        self._cache = own
        for sub, snap in zip(self._sublayers(), subs):
            sub._restore_cache(snap)

    def _backward(self, cache: Any, dy: Any) -> tuple[Any, list]:
        """Backward for the call that produced ``cache``: ``(d_inputs, weight gradients)``."""
        if cache is None:
            raise RuntimeError(
                f"Layer {self.name!r}: backward needs the cache of a call with training=True."
            )
        self._restore_cache(cache)
        d_inputs = self.backward(dy)
        return d_inputs, list(self.gradients or [])

    def _check_first_input(self, x: Any) -> None:
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

    # ---- graph -----------------------------------------------------------------------------
    def _node_attribute(self, attribute: str, what: str) -> Any:
        if not self._inbound_nodes:
            raise AttributeError(
                f"Layer {self.name!r} has no {what}: it was never called on a symbolic tensor "
                "(an Input or a model built from one)."
            )
        return getattr(self._inbound_nodes[0], attribute)

    @property
    def input(self) -> Any:
        """The symbolic input of the layer's first call in a graph (Keras's ``layer.input``)."""
        return self._node_attribute("call_inputs", "input")

    @property
    def output(self) -> Any:
        """The symbolic output of the layer's first call in a graph (Keras's ``layer.output``)."""
        return self._node_attribute("outputs", "output")

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
