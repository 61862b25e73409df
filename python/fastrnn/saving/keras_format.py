"""Keras 3 files both ways: ``.keras`` archives and ``.weights.h5`` weights files.

A ``.keras`` file is a zip of ``metadata.json`` (``keras_version``, ``date_saved``),
``config.json`` (the model serialized by Keras: ``module``, ``class_name``, ``config``,
``registered_name``, ``build_config``, ``compile_config``) and ``model.weights.h5``, an HDF5 file
laid out by the model's structure::

    vars                          (attr name = model name)
    layers/<layer>/vars/0, 1 ...  a layer's own variables, in get_weights() order
    layers/<rnn>/cell/vars/...    recurrent layers keep theirs in their cell
    layers/<bidirectional>/forward_layer/cell/vars/...   wrappers: one group per wrapped layer
    layers/<time_distributed>/layer/vars/...             (named by attribute, not by class)
    optimizer/vars/0, 1, ...      iterations, learning_rate, then the slot variables

``<layer>`` is the snake_case Keras class name, numbered ``_1``, ``_2`` ... among layers of the
same class (``lstm``, ``lstm_1``), never the layer's own name, in the order of Keras's
``model.layers``. A Functional model's layers include its InputLayers (``input_layer``, empty
groups) and are ordered by Keras's ``map_graph``, which counts the operations Keras records to
compute masks (``keras_layers`` replays it); a nested model's layers are under its group
(``layers/sequential/layers/dense/vars/0``). A ``.weights.h5`` file is that HDF5 file on its own.

The mapping is table-driven: ``LAYERS`` has one ``LayerRow`` per layer class (Keras class name,
fastrnn class, one ``Key`` per config key, where the weights live, what Keras does with masks);
``MODELS`` one reader and writer per model class (``Sequential``, ``Functional``); ``OPTIMIZERS``
one row per optimizer. Adding a layer is adding a row. Functional graphs (their order, masks and
checks) are ``fastrnn.saving._graph``'s.

Files are untrusted: everything goes through ``SafeZip``/``H5Reader`` bounds, configs are checked
key by key, and each layer's weights are checked against its config before anything is allocated.
"""

from __future__ import annotations

import datetime
import io
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from fastrnn.saving._archive import Limits, ModelFileError, SafeZip, check_float_dtype
from fastrnn.saving._build import Expected, WeightPlan, build_checked
from fastrnn.saving._graph import (
    MASK_OPS,
    MAX_CALLS,
    MAX_NESTING,
    Call,
    Context,
    Entry,
    Graph,
    GraphError,
    Masking,
    MaskSimulation,
    OpSpec,
    OpValue,
    Ref,
    TKey,
    flat_shapes,
    flatten,
    graph_nodes,
    is_shape,
    keras_order,
    map_structure,
    parse_arguments,
    parse_graph,
    run_nested,
)
from fastrnn.saving._h5 import H5Reader, h5py_module, write_groups

KERAS_VERSION = "3.15.1"
"""The Keras release whose file layout this module writes (and was checked against)."""

ARCHIVE_WEIGHTS = "model.weights.h5"
_ARCHIVE_ENTRIES = ("metadata.json", "config.json", ARCHIVE_WEIGHTS)


def keras_snake(name: str) -> str:
    """Keras's ``to_snake_case``: ``SimpleRNN`` -> ``simple_rnn``, ``Conv1D`` -> ``conv1d``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _ConfigError(Exception):
    """A config problem, raised with the config path; turned into ModelFileError by the caller."""


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise _ConfigError(f"{where}: {message}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


# ---- leaf values: dtype policies, initializers, activations ------------------------------------
_FLOAT_POLICIES = {"float32": "float32", "float64": "float64"}
_MIXED_POLICIES = {"mixed_float16", "mixed_bfloat16"}


def _policy_name(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    _require(
        isinstance(value, dict),
        where,
        f"a dtype policy must be a string or dict, got {_short(value)}",
    )
    cls, cfg = value.get("class_name"), value.get("config")
    _require(
        cls in ("DTypePolicy", "FloatDTypePolicy", "Policy") and isinstance(cfg, dict),
        where,
        f"dtype policy {_short(cls)} is not supported by fastrnn (float32/float64 only)",
    )
    name = cfg.get("name")
    _require(isinstance(name, str), where, f"bad dtype policy {_short(value)}")
    return name


def dtype_from_keras(value: Any, where: str, notes: list[str]) -> str:
    """fastrnn's dtype for a Keras dtype (a string or a DTypePolicy dict)."""
    name = _policy_name(value, where)
    if name is None:
        return "float32"
    if name in _FLOAT_POLICIES:
        return _FLOAT_POLICIES[name]
    if name in _MIXED_POLICIES:
        notes.append(f"{where}: dtype policy {name!r} (float32 variables) computes in float32")
        return "float32"
    raise _ConfigError(
        f"{where}: dtype {name!r} is not supported by fastrnn, which computes in float32 or float64"
    )


def dtype_to_keras(name: str) -> dict:
    return {
        "module": "keras",
        "class_name": "DTypePolicy",
        "config": {"name": name},
        "registered_name": None,
    }


# fastrnn initializer name -> (Keras class, Keras config without seed)
_INITIALIZERS: dict[str, tuple[str, dict]] = {
    "glorot_uniform": ("GlorotUniform", {}),
    "glorot_normal": ("GlorotNormal", {}),
    "he_uniform": ("HeUniform", {}),
    "he_normal": ("HeNormal", {}),
    "orthogonal": ("Orthogonal", {"gain": 1.0}),
    "zeros": ("Zeros", {}),
    "ones": ("Ones", {}),
    "uniform": ("RandomUniform", {"minval": -0.05, "maxval": 0.05}),
    "normal": ("RandomNormal", {"mean": 0.0, "stddev": 0.05}),
}
_INITIALIZER_ALIASES = {"random_uniform": "uniform", "random_normal": "normal"}
_INITIALIZERS_BY_KERAS = {cls: name for name, (cls, _) in _INITIALIZERS.items()}
# Keras's string shorthands for initializers, e.g. kernel_initializer="glorot_uniform".
_INITIALIZERS_BY_KERAS.update(
    {keras_snake(cls): name for cls, name in _INITIALIZERS_BY_KERAS.items()}
)
_INITIALIZERS_BY_KERAS.update({**_INITIALIZER_ALIASES, "uniform": "uniform", "normal": "normal"})
_INITIALIZER_IGNORED = {"seed", "input_axes", "output_axes"}


def initializer_from_keras(value: Any, where: str, notes: list[str]) -> str | None:
    """fastrnn's initializer name, or None (the fastrnn default) when Keras's has no equivalent.

    Initializers only matter for re-initializing; the loaded weights come from the file. Seeds
    are dropped; a distribution fastrnn lacks is noted (the caller warns once).
    """
    if isinstance(value, str):
        name = _INITIALIZERS_BY_KERAS.get(value) or _INITIALIZERS_BY_KERAS.get(keras_snake(value))
        if name is None:
            notes.append(f"{where}: initializer {value!r} has no fastrnn equivalent; default used")
        return name
    _require(
        isinstance(value, dict),
        where,
        f"an initializer must be a string or dict, got {_short(value)}",
    )
    cls, cfg = value.get("class_name"), value.get("config", {})
    _require(
        isinstance(cls, str) and isinstance(cfg, dict), where, f"bad initializer {_short(value)}"
    )
    name = _INITIALIZERS_BY_KERAS.get(cls)
    if name is None:
        notes.append(f"{where}: initializer {cls!r} has no fastrnn equivalent; default used")
        return None
    defaults = _INITIALIZERS[name][1]
    for key, v in cfg.items():
        if key in _INITIALIZER_IGNORED:
            continue
        if key not in defaults or not isinstance(v, (int, float)) or float(v) != defaults[key]:
            notes.append(
                f"{where}: initializer {cls}({key}={_short(v)}) differs from fastrnn's "
                f"{name!r}; {name!r} used"
            )
            break
    return name


def initializer_to_keras(name: str) -> dict:
    cls, defaults = _INITIALIZERS[_INITIALIZER_ALIASES.get(name, name)]
    config = dict(defaults)
    if cls not in ("Zeros", "Ones"):
        config["seed"] = None
    return {
        "module": "keras.initializers",
        "class_name": cls,
        "config": config,
        "registered_name": None,
    }


def activation_from_keras(value: Any, where: str) -> str:
    if value is None:
        return "linear"
    if isinstance(value, dict) and value.get("class_name") == "function":
        value = value.get("config")
    _require(isinstance(value, str), where, f"activation {_short(value)} is not a built-in name")
    from fastrnn import activations

    _require(
        value in activations.NAMES,
        where,
        f"activation {value!r} is not implemented by fastrnn (it has: "
        f"{', '.join(activations.NAMES)})",
    )
    return value


# ---- layer rows ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    """One key of a Keras layer config and how it maps to fastrnn.

    Attributes:
        keras: the key in Keras's config.
        kind: ``copy`` (same value both ways), ``init``, ``act`` (initializer / activation
            names), ``dtype`` (policy), ``fixed`` (Keras-only: only ``value`` is accepted, and
            written when ``write``), ``drop`` (Keras-only, no effect in fastrnn: accepted and
            not written), ``layer`` (a nested serialized layer).
        value: for ``fixed``, the only value fastrnn can honour.
        write: for ``fixed``, whether Keras configs written by fastrnn hold the key.
        fastrnn: fastrnn's argument name when it differs from Keras's.
        attribute: for ``layer``, the fastrnn layer's attribute holding the wrapped layer when
            it differs from the argument (Bidirectional keeps ``layer`` as ``forward_layer``).
        required: for ``layer``, the config must hold a layer there (not null or absent).
    """

    keras: str
    kind: str = "copy"
    value: Any = None
    write: bool = True
    fastrnn: str | None = None
    attribute: str | None = None
    required: bool = False

    @property
    def argument(self) -> str:
        return self.fastrnn or self.keras


@dataclass(frozen=True)
class LayerRow:
    """One layer class in both frameworks.

    Attributes:
        keras: Keras class name (``config.json``'s ``class_name``).
        fastrnn: fastrnn class name (a key of ``fastrnn.layers.LAYER_CLASSES``).
        keys: the class's config keys beyond name/trainable/dtype.
        weights: where the weights live under the layer's HDF5 group: ``"vars"`` (its own
            vars), ``"cell"`` (``cell/vars``, recurrent layers) or ``"children"`` (wrapped
            layers, each under the attribute name ``children`` gives).
        children: for wrappers, ``layer -> [(HDF5 attribute name, wrapped fastrnn layer)]``.
        child_shape: for wrappers whose wrapped layers see another input shape than the
            wrapper's: ``wrapper input shape -> wrapped layer's input shape`` (TimeDistributed
            drops the time axis). Written as the wrapped layers' ``build_config``.
        fastrnn_only: fastrnn config keys with no Keras counterpart that are left out when
            writing (e.g. ``input_shape``, which Keras expresses with an InputLayer).
        read: optional hook ``(keras_config, fastrnn_kwargs, where, wrapper)`` for cross-key
            rules; it edits the kwargs in place. ``wrapper`` is the Keras class name of the
            layer wrapping this one (``"Bidirectional"``, ``"TimeDistributed"``) or None.
        write: optional hook ``(layer, keras_config, wrapper)``.
        mask: what Keras's layer does with masks (``fastrnn.saving._graph.Masking.kind``):
            Functional models need it for Keras's layer order and to check a file's masks.
        call_mask: Keras's ``call`` takes a ``mask`` argument.
    """

    keras: str
    fastrnn: str
    keys: tuple[Key, ...]
    weights: str = "vars"
    children: Callable[[Any], list[tuple[str, Any]]] | None = None
    child_shape: Callable[[tuple], tuple] | None = None
    fastrnn_only: frozenset = frozenset({"input_shape"})
    read: Callable | None = None
    write: Callable | None = None
    mask: str = "none"
    call_mask: bool = False
    by_keras: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_keras", {k.keras: k for k in _BASE_KEYS + self.keys})


_BASE_KEYS = (
    Key("name"),
    Key("trainable"),
    Key("dtype", "dtype"),
    Key("batch_input_shape", "drop"),  # Keras 2: the first layer's input shape (read by the model)
)


def _none(*names: str, write: bool = True) -> tuple[Key, ...]:
    return tuple(Key(n, "fixed", None, write) for n in names)


_RNN_KEYS = (
    Key("units"),
    Key("activation", "act"),
    Key("use_bias"),
    Key("kernel_initializer", "init"),
    Key("recurrent_initializer", "init"),
    Key("bias_initializer", "init"),
    *_none(
        "kernel_regularizer",
        "recurrent_regularizer",
        "bias_regularizer",
        "activity_regularizer",
        "kernel_constraint",
        "recurrent_constraint",
        "bias_constraint",
    ),
    Key("dropout"),
    Key("recurrent_dropout"),
    Key("return_sequences"),
    Key("return_state"),
    Key("go_backwards"),
    Key("stateful"),
    Key("unroll"),
    Key("seed"),
    Key("zero_output_for_mask", "drop"),  # checked by _rnn_read
    Key("implementation", "drop"),  # Keras 2: a speed choice, same results
    Key("time_major", "fixed", False, write=False),
)


def _rnn_read(cfg: dict, kwargs: dict, where: str, wrapper: str | None) -> None:
    # Keras zeroes masked steps of returned sequences with zero_output_for_mask; fastrnn's
    # recurrent layers repeat the previous output (Keras's default). Bidirectional forces the
    # flag to return_sequences on its layers and fastrnn's Bidirectional zeroes the same steps.
    if (
        cfg.get("zero_output_for_mask")
        and cfg.get("return_sequences")
        and wrapper != "Bidirectional"
    ):
        raise _ConfigError(
            f"{where}: zero_output_for_mask=True with return_sequences=True is not supported by "
            "fastrnn's recurrent layers (masked steps repeat the previous output)"
        )


def _rnn_write(layer: Any, cfg: dict, wrapper: str | None) -> None:
    cfg["zero_output_for_mask"] = bool(wrapper == "Bidirectional" and layer.return_sequences)


def _bidirectional_read(cfg: dict, kwargs: dict, where: str, wrapper: str | None) -> None:
    forward = kwargs.get("layer")
    if forward is not None and forward.name.startswith("forward_"):
        forward.name = forward.name[len("forward_") :]


def _bidirectional_children(layer: Any) -> list[tuple[str, Any]]:
    return [("forward_layer", layer.forward_layer), ("backward_layer", layer.backward_layer)]


def _time_distributed_children(layer: Any) -> list[tuple[str, Any]]:
    return [("layer", layer.layer)]


def _time_distributed_child_shape(shape: tuple) -> tuple:
    return (shape[0], *shape[2:])


def _layer_norm_read(cfg: dict, kwargs: dict, where: str, wrapper: str | None) -> None:
    # Keras sorts the raw axis list to order gamma/beta's axes ([-1, 1] gives (F, T) for
    # (B, T, F) inputs) and reshapes them onto the inputs; fastrnn orders them by position
    # ((T, F)). The two agree unless the list mixes negative and non-negative axes.
    axis = cfg.get("axis")
    if isinstance(axis, list) and all(isinstance(a, int) for a in axis):
        if any(a < 0 for a in axis) and any(a >= 0 for a in axis):
            raise _ConfigError(
                f"{where}.axis: {_short(axis)} mixes negative and non-negative axes, for which "
                "Keras orders gamma and beta differently from fastrnn; give the axes all "
                "non-negative or all negative"
            )


def _layer_norm_write(layer: Any, cfg: dict, wrapper: str | None) -> None:
    # The inverse of _layer_norm_read: where Keras would order gamma/beta's axes differently
    # (a list mixing signs, or naming an axis twice), write the axes fastrnn resolved, which
    # Keras orders the same way. Same normalization, same weights.
    axis, shape = layer.axis, layer.input_shape
    if isinstance(axis, list) and shape is not None:
        rank = len(shape)
        resolved = sorted({a % rank for a in axis})
        if [a % rank for a in sorted(axis)] != resolved:
            cfg["axis"] = resolved


_GLOBAL_POOLING_KEYS = (Key("data_format"), Key("keepdims"))

LAYERS: tuple[LayerRow, ...] = (
    LayerRow(
        "Dense",
        "Dense",
        (
            Key("units"),
            Key("activation", "act"),
            Key("use_bias"),
            Key("kernel_initializer", "init"),
            Key("bias_initializer", "init"),
            *_none(
                "kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint"
            ),
            *_none("activity_regularizer", "lora_rank", "quantization_config", write=False),
            Key("lora_alpha", "drop"),
        ),
        mask="pass",
    ),
    LayerRow(
        "Embedding",
        "Embedding",
        (
            Key("input_dim"),
            Key("output_dim"),
            Key("embeddings_initializer", "init"),
            *_none("embeddings_regularizer", "activity_regularizer", "embeddings_constraint"),
            Key("mask_zero"),
            *_none("lora_rank", "quantization_config", write=False),
            Key("lora_alpha", "drop"),
            Key("input_length", "drop"),  # Keras >= 3.2 accepts and ignores it
        ),
        mask="embedding",
    ),
    LayerRow("Masking", "Masking", (Key("mask_value"),), mask="masking"),
    LayerRow("Dropout", "Dropout", (Key("rate"), Key("noise_shape"), Key("seed")), mask="pass"),
    LayerRow(
        "SimpleRNN",
        "SimpleRNN",
        _RNN_KEYS,
        weights="cell",
        read=_rnn_read,
        write=_rnn_write,
        mask="rnn",
        call_mask=True,
    ),
    LayerRow(
        "LSTM",
        "LSTM",
        (
            *_RNN_KEYS,
            Key("recurrent_activation", "act"),
            Key("unit_forget_bias"),
            Key("use_cudnn", "drop"),
        ),
        weights="cell",
        fastrnn_only=frozenset({"input_shape", "use_cudnn"}),
        read=_rnn_read,
        write=_rnn_write,
        mask="rnn",
        call_mask=True,
    ),
    LayerRow(
        "GRU",
        "GRU",
        (
            *_RNN_KEYS,
            Key("recurrent_activation", "act"),
            Key("reset_after"),
            Key("use_cudnn", "drop"),
        ),
        weights="cell",
        fastrnn_only=frozenset({"input_shape", "use_cudnn"}),
        read=_rnn_read,
        write=_rnn_write,
        mask="rnn",
        call_mask=True,
    ),
    LayerRow(
        "Bidirectional",
        "Bidirectional",
        (
            Key("layer", "layer", attribute="forward_layer", required=True),
            Key("backward_layer", "layer"),
            Key("merge_mode"),
            Key("weights", "fixed", None, write=False),
        ),
        weights="children",
        children=_bidirectional_children,
        read=_bidirectional_read,
        mask="bidirectional",
        call_mask=True,
    ),
    LayerRow(
        "TimeDistributed",
        "TimeDistributed",
        (Key("layer", "layer", required=True),),
        weights="children",
        children=_time_distributed_children,
        child_shape=_time_distributed_child_shape,
        mask="pass",
        call_mask=True,
    ),
    LayerRow("Activation", "Activation", (Key("activation", "act"),), mask="pass"),
    LayerRow("RepeatVector", "RepeatVector", (Key("n"),)),
    LayerRow("Flatten", "Flatten", (Key("data_format"),)),
    LayerRow("Reshape", "Reshape", (Key("target_shape"),)),
    # Sizes stay as Keras stores them, 1-tuples ([2] in JSON); fastrnn's layers take both.
    LayerRow(
        "MaxPooling1D",
        "MaxPooling1D",
        (Key("pool_size"), Key("strides"), Key("padding"), Key("data_format")),
    ),
    LayerRow(
        "GlobalAveragePooling1D",
        "GlobalAveragePooling1D",
        _GLOBAL_POOLING_KEYS,
        call_mask=True,  # Keras's averages over the mask; its output has none
    ),
    LayerRow("GlobalMaxPooling1D", "GlobalMaxPooling1D", _GLOBAL_POOLING_KEYS),
    LayerRow(
        "Conv1D",
        "Conv1D",
        (
            Key("filters"),
            Key("kernel_size"),
            Key("strides"),
            Key("padding"),
            Key("data_format"),
            Key("dilation_rate"),
            Key("groups"),
            Key("activation", "act"),
            Key("use_bias"),
            Key("kernel_initializer", "init"),
            Key("bias_initializer", "init"),
            *_none(
                "kernel_regularizer",
                "bias_regularizer",
                "activity_regularizer",
                "kernel_constraint",
                "bias_constraint",
            ),
            *_none("lora_rank", write=False),  # Keras writes both only when LoRA is on
            Key("lora_alpha", "drop"),
        ),
    ),
    LayerRow(
        "LayerNormalization",
        "LayerNormalization",
        (
            Key("axis"),
            Key("epsilon"),
            Key("center"),
            Key("scale"),
            Key("rms_scaling", "fixed", False),
            Key("beta_initializer", "init"),
            Key("gamma_initializer", "init"),
            *_none("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"),
        ),
        read=_layer_norm_read,
        write=_layer_norm_write,
        mask="pass",
    ),
    # Merge layers: the OR of their inputs' masks when all have one (Concatenate: when any has
    # one, unmasked inputs counting as all kept). No weights.
    LayerRow("Add", "Add", (), mask="merge"),
    LayerRow("Subtract", "Subtract", (), mask="merge"),
    LayerRow("Multiply", "Multiply", (), mask="merge"),
    LayerRow("Average", "Average", (), mask="merge"),
    LayerRow("Maximum", "Maximum", (), mask="merge"),
    LayerRow("Concatenate", "Concatenate", (Key("axis"),), mask="concatenate"),
    # InputLayer: its config has no trainable/dtype policy; read and written by
    # _input_from_keras / _input_to_keras.
    LayerRow("InputLayer", "InputLayer", ()),
)

_BY_KERAS = {row.keras: row for row in LAYERS}
_BY_FASTRNN = {row.fastrnn: row for row in LAYERS}


def row_for_layer(layer: Any) -> LayerRow:
    """The row of a fastrnn layer.

    Raises:
        ValueError: the layer's class has no Keras mapping.
    """
    row = _BY_FASTRNN.get(type(layer).__name__)
    if row is None:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has no Keras file mapping; layers "
            f"that do: {', '.join(sorted(_BY_FASTRNN))}."
        )
    return row


def layer_from_keras(spec: Any, where: str, notes: list[str], wrapper: str | None = None) -> Any:
    """An unbuilt fastrnn layer from a serialized Keras layer.

    Args:
        spec: the serialized layer (``class_name``, ``config`` ...).
        where: the config path named in errors, e.g. ``config.layers[2]``.
        notes: collects what loads approximately (warned about once by the caller).
        wrapper: the Keras class name of the layer wrapping this one, or None.

    Raises:
        _ConfigError: naming ``where``: a malformed spec, a Keras class fastrnn lacks, a
            setting fastrnn cannot honour, or a value fastrnn's constructor rejects.
    """
    _require(isinstance(spec, dict), where, f"a layer must be a JSON object, got {_short(spec)}")
    class_name, cfg = spec.get("class_name"), spec.get("config")
    _require(isinstance(class_name, str), where, f"bad class_name {_short(class_name)}")
    row = _BY_KERAS.get(class_name)
    registered = spec.get("registered_name")
    if row is None or (registered not in (None, class_name)):
        raise _ConfigError(
            f"{where}: Keras layer class {class_name[:100]!r}"
            + (
                f" (registered as {str(registered)[:100]!r})"
                if registered not in (None, class_name)
                else ""
            )
            + f" has no fastrnn equivalent; fastrnn reads {', '.join(sorted(_BY_KERAS))}"
        )
    _require(isinstance(cfg, dict), where, f"config must be a JSON object, got {_short(cfg)}")
    if class_name == "InputLayer":
        return _input_from_keras(cfg, where, notes)
    where = f"{where} ({class_name} {str(cfg.get('name'))[:60]!r})"
    kwargs: dict[str, Any] = {}
    for key, value in cfg.items():
        spec_key = row.by_keras.get(key)
        here = f"{where}.{key}"
        if spec_key is None:
            # A key from a newer Keras: harmless only while unset.
            _require(
                value is None,
                where,
                f"config key {key!r} = {_short(value)} is not understood by fastrnn's "
                f"{row.fastrnn}",
            )
            continue
        kind = spec_key.kind
        if kind == "copy":
            kwargs[spec_key.argument] = value
        elif kind == "dtype":
            kwargs["dtype"] = dtype_from_keras(value, here, notes)
        elif kind == "init":
            name = initializer_from_keras(value, here, notes)
            if name is not None:
                kwargs[spec_key.argument] = name
        elif kind == "act":
            kwargs[spec_key.argument] = activation_from_keras(value, here)
        elif kind == "fixed":
            _require(
                value == spec_key.value and type(value) is type(spec_key.value),
                where,
                f"{key}={_short(value)} is not supported by fastrnn (only {spec_key.value!r})",
            )
        elif kind == "layer":
            if value is not None:
                kwargs[spec_key.argument] = layer_from_keras(value, here, notes, row.keras)
        # "drop": accepted, no effect
    for spec_key in row.keys:
        if spec_key.required:
            _require(
                kwargs.get(spec_key.argument) is not None,
                where,
                f"config key {spec_key.keras!r} must hold a serialized layer",
            )
    if row.read is not None:
        row.read(cfg, kwargs, where, wrapper)
    from fastrnn.layers import LAYER_CLASSES

    cls = LAYER_CLASSES[row.fastrnn]
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise _ConfigError(f"{where}: fastrnn's {row.fastrnn} rejects the config: {exc}") from exc


def layer_to_keras(
    layer: Any, wrapper: str | None = None, input_shape: tuple | None = None
) -> dict:
    """The Keras serialization of a fastrnn layer (with ``build_config`` when built).

    Args:
        layer: the fastrnn layer.
        wrapper: the Keras class name of the layer wrapping this one (Bidirectional's
            directions, TimeDistributed's layer), or None.
        input_shape: the shape ``build_config`` records (default the layer's built shape);
            models pass their fixed batch size through it.

    Raises:
        ValueError: a layer class or a config key without a Keras mapping.
    """
    row = row_for_layer(layer)
    if row.keras == "InputLayer":
        return _input_to_keras(layer)
    fcfg = layer.get_config()
    mapped = {k.argument for k in _BASE_KEYS + row.keys}
    unknown = set(fcfg) - mapped - row.fastrnn_only
    if unknown:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}): config keys {sorted(unknown)} have no "
            "Keras mapping in fastrnn.saving.keras_format.LAYERS."
        )
    shape = input_shape if input_shape is not None else layer.input_shape
    out: dict[str, Any] = {}
    for key in _BASE_KEYS + row.keys:
        value = fcfg.get(key.argument)
        if key.kind == "copy":
            if key.argument in fcfg:
                out[key.keras] = value
        elif key.kind == "dtype":
            out[key.keras] = dtype_to_keras(fcfg["dtype"])
        elif key.kind == "init":
            out[key.keras] = initializer_to_keras(value)
        elif key.kind == "act":
            out[key.keras] = value
        elif key.kind == "fixed" and key.write:
            out[key.keras] = key.value
        elif key.kind == "layer":
            sub = getattr(layer, key.attribute or key.argument)
            sub_shape = shape
            if shape is not None and row.child_shape is not None:
                sub_shape = row.child_shape(tuple(shape))
            out[key.keras] = layer_to_keras(sub, row.keras, sub_shape)
    if row.write is not None:
        row.write(layer, out, wrapper)
    spec = {
        "module": "keras.layers",
        "class_name": row.keras,
        "config": out,
        "registered_name": None,
    }
    if layer.built and shape is not None:
        spec["build_config"] = {"input_shape": list(shape)}
    return spec


_INPUT_KEYS = {"batch_shape", "batch_input_shape", "dtype", "sparse", "ragged", "name", "optional"}


def _input_from_keras(cfg: dict, where: str, notes: list[str]) -> Any:
    """A fastrnn ``InputLayer`` from a Keras InputLayer config."""
    from fastrnn.layers import InputLayer

    for key, value in cfg.items():
        if key in ("sparse", "ragged", "optional"):
            _require(not value, where, f"{key}={_short(value)} inputs are not supported by fastrnn")
        elif key not in _INPUT_KEYS:
            _require(value is None, where, f"InputLayer config key {key!r} is not understood")
    shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
    _require(shape is not None, where, "an InputLayer needs batch_shape")
    batch_shape = _shape(shape, f"{where}.batch_shape")
    dtype = cfg.get("dtype")
    if isinstance(dtype, dict):  # a DTypePolicy
        dtype = _policy_name(dtype, f"{where}.dtype")
    _require(dtype is None or isinstance(dtype, str), where, f"bad dtype {_short(dtype)}")
    name = cfg.get("name")
    _require(name is None or isinstance(name, str), where, f"bad name {_short(name)}")
    try:
        return InputLayer(batch_shape=batch_shape, dtype=dtype, name=name)
    except Exception as exc:
        raise _ConfigError(f"{where}: fastrnn's InputLayer rejects the config: {exc}") from exc


def _input_to_keras(layer: Any) -> dict:
    return {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {
            "batch_shape": list(layer.batch_shape),
            "dtype": layer.dtype.name,
            "sparse": False,
            "ragged": False,
            "name": layer.name,
            "optional": False,
        },
        "registered_name": None,
    }


def weight_groups(layer: Any, path: str) -> list[tuple[str, str, Any]]:
    """``(HDF5 path, vars name, layer whose weights it holds or None)`` for a fastrnn layer.

    The weights of the groups, concatenated in order, are ``layer.weights`` (for a nested
    model: its layers' weights in Keras's order, ``keras_weights``).
    """
    if _is_model(layer):
        out_: list[tuple[str, str, Any]] = [(path, layer.name, None)]
        for sub, sub_path in keras_layer_paths(layer, f"{path}/layers"):
            out_.extend(weight_groups(sub, sub_path))
        return out_
    row = row_for_layer(layer)
    if row.weights == "vars":
        return [(path, layer.name, layer)]
    if row.weights == "cell":
        return [(path, layer.name, None), (f"{path}/cell", f"{keras_snake(row.keras)}_cell", layer)]
    out: list[tuple[str, str, Any]] = [(path, layer.name, None)]
    for attribute, child in row.children(layer):
        out.extend(weight_groups(child, f"{path}/{attribute}"))
    return out


def layer_paths(keras_classes: list[str]) -> list[str]:
    """``layers/<snake>[_n]`` for a list of layers, numbered per class as Keras does."""
    used: dict[str, int] = {}
    out = []
    for cls in keras_classes:
        name = keras_snake(cls)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        out.append(f"layers/{name}")
    return out


# ---- optimizers and losses ---------------------------------------------------------------------
@dataclass(frozen=True)
class OptimizerRow:
    """An optimizer class in both frameworks.

    Attributes:
        keras: Keras class name; the fastrnn class has the same name.
        keys: Keras config keys specific to the class (mapped one to one).
        slots: ``config -> fastrnn slot names per variable`` (fastrnn's state order).
        keras_groups: ``config -> groups of slot names``: Keras creates one group after the
            other, and within a group the slots of each variable together.
    """

    keras: str
    keys: tuple[str, ...]
    slots: Callable[[dict], list[str]]
    keras_groups: Callable[[dict], list[list[str]]]


OPTIMIZERS = {
    row.keras: row
    for row in (
        OptimizerRow(
            "SGD",
            ("momentum", "nesterov"),
            lambda c: ["momentum"] if c.get("momentum") else [],
            lambda c: [["momentum"]] if c.get("momentum") else [],
        ),
        OptimizerRow(
            "Adam",
            ("beta_1", "beta_2", "epsilon", "amsgrad"),
            lambda c: ["m", "v", "vhat"] if c.get("amsgrad") else ["m", "v"],
            lambda c: [["m", "v"], ["vhat"]] if c.get("amsgrad") else [["m", "v"]],
        ),
        OptimizerRow(
            "RMSprop",
            ("rho", "momentum", "epsilon", "centered"),
            lambda c: (
                ["velocity"]
                + (["momentum"] if c.get("momentum") else [])
                + (["average_gradient"] if c.get("centered") else [])
            ),
            lambda c: (
                [["velocity"]]
                + ([["momentum"]] if c.get("momentum") else [])
                + ([["average_gradient"]] if c.get("centered") else [])
            ),
        ),
        OptimizerRow(
            "Adagrad",
            ("initial_accumulator_value", "epsilon"),
            lambda c: ["accumulator"],
            lambda c: [["accumulator"]],
        ),
    )
}
_OPTIMIZER_COMMON = ("name", "learning_rate", "clipnorm", "clipvalue", "global_clipnorm")
# Keras optimizer keys that fastrnn can honour only at these values (None = unset).
_OPTIMIZER_FIXED = {
    "weight_decay": (None, 0, 0.0),
    "use_ema": (False,),
    "loss_scale_factor": (None,),
    "gradient_accumulation_steps": (None,),
    "decay": (0, 0.0),
}
_OPTIMIZER_DROP = {"ema_momentum", "ema_overwrite_frequency", "is_legacy_optimizer", "jit_compile"}


def _one_of(value: Any, allowed: tuple) -> bool:
    """``value`` equals one of ``allowed`` with the same type (so True is not 1, 1.0 is 1)."""
    for a in allowed:
        if value is a:
            return True
        if isinstance(value, bool) or isinstance(a, bool) or a is None or value is None:
            continue
        if isinstance(value, (int, float)) and isinstance(a, (int, float)) and value == a:
            return True
        if isinstance(value, str) and value == a:
            return True
    return False


def _keras_to_fastrnn_order(
    row: OptimizerRow, cfg: dict, n_vars: int, var_order: list[int] | None = None
) -> list[int]:
    """For each fastrnn state position, the position of the same array in Keras's list.

    ``var_order[v]``: the position in Keras's ``trainable_variables`` of fastrnn's trainable
    weight ``v`` (Functional models order their layers differently; default: the same order).
    """
    keras_positions = {}
    position = 0
    for group in row.keras_groups(cfg):
        for v in range(n_vars):
            for slot in group:
                keras_positions[(v, slot)] = position
                position += 1
    order = var_order if var_order is not None else list(range(n_vars))
    return [keras_positions[(order[v], slot)] for v in range(n_vars) for slot in row.slots(cfg)]


def _variable_order(model: Any) -> list[int]:
    """For each of the model's trainable weights (fastrnn's order), its position in Keras's
    ``trainable_variables`` (layer by layer in Keras's ``model.layers`` order)."""
    trainable = model.trainable_weights
    ids = {id(w) for w in trainable}
    seen, keras_order_ = set(), []
    for layer, path in keras_layer_paths(model):
        for w in keras_weights(layer, path):
            if id(w) in ids and id(w) not in seen:
                seen.add(id(w))
                keras_order_.append(w)
    position = {id(w): i for i, w in enumerate(keras_order_)}
    return [position[id(w)] for w in trainable]


def optimizer_from_keras(spec: Any) -> tuple[Any, OptimizerRow, dict]:
    """(fastrnn optimizer, its row, its config); raises ``_ConfigError`` saying why not."""
    from fastrnn import optimizers

    if isinstance(spec, str):
        key = spec.lower()
        names = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad"}
        _require(key in names, "optimizer", f"{spec!r} has no fastrnn equivalent")
        cls_name, cfg = names[key], {}
    else:
        _require(isinstance(spec, dict), "optimizer", f"bad optimizer {_short(spec)}")
        cls_name, cfg = spec.get("class_name"), spec.get("config")
        _require(
            cls_name in OPTIMIZERS and isinstance(cfg, dict),
            "optimizer",
            f"{_short(cls_name)} has no fastrnn equivalent",
        )
    row = OPTIMIZERS[cls_name]
    kwargs = {}
    for key, value in cfg.items():
        if key in _OPTIMIZER_COMMON or key in row.keys:
            _require(
                not isinstance(value, dict),
                "optimizer",
                f"{key}={_short(value)} (a schedule or object) is not supported",
            )
            kwargs[key] = value
        elif key in _OPTIMIZER_FIXED:
            _require(
                _one_of(value, _OPTIMIZER_FIXED[key]),
                "optimizer",
                f"{key}={_short(value)} is not supported by fastrnn",
            )
        elif key not in _OPTIMIZER_DROP:
            _require(value is None, "optimizer", f"{key}={_short(value)} is not understood")
    try:
        optimizer = getattr(optimizers, cls_name)(**kwargs)
    except Exception as exc:
        raise _ConfigError(f"optimizer: fastrnn's {cls_name} rejects the config: {exc}") from exc
    return optimizer, row, {**cfg, **kwargs}


def optimizer_to_keras(optimizer: Any) -> tuple[dict, OptimizerRow]:
    cls_name = type(optimizer).__name__
    row = OPTIMIZERS.get(cls_name)
    if row is None:
        raise ValueError(f"Optimizer {cls_name} has no Keras file mapping.")
    config = optimizer.get_config()
    spec = {
        "module": "keras.optimizers",
        "class_name": cls_name,
        "config": config,
        "registered_name": None,
    }
    return spec, row


# Keras loss classes fastrnn has: the same class names and config keys (``get_config`` gives
# Keras's constructor arguments) in both frameworks.
LOSSES = (
    "MeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "Huber",
    "LogCosh",
    "KLDivergence",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
)


def loss_from_keras(spec: Any) -> Any:
    """fastrnn's loss for a Keras loss (a name or a serialized class); ``_ConfigError`` unless
    fastrnn has the same loss with the same settings."""
    import inspect

    from fastrnn import losses

    if isinstance(spec, str):
        try:
            return losses.get(spec)
        except Exception:
            raise _ConfigError(f"loss: {spec[:100]!r} has no fastrnn equivalent") from None
    _require(isinstance(spec, dict), "loss", f"{_short(spec)} has no fastrnn equivalent")
    cls_name, cfg = spec.get("class_name"), spec.get("config")
    if cls_name == "function" and isinstance(cfg, str):
        return loss_from_keras(cfg)
    _require(
        cls_name in LOSSES and isinstance(cfg, dict),
        "loss",
        f"{_short(cls_name)} has no fastrnn equivalent",
    )
    cls = getattr(losses, cls_name)
    parameters = inspect.signature(cls.__init__).parameters
    kwargs = {}
    for key, value in cfg.items():
        if key == "dtype":  # fastrnn's losses compute in float64 whatever the inputs
            _require(
                value in (None, "float32", "float64"),
                "loss",
                f"{cls_name}(dtype={_short(value)}) is not supported by fastrnn",
            )
        elif key == "reduction" and value == "auto":  # Keras 2's name for the default
            kwargs[key] = "sum_over_batch_size"
        elif key in parameters and key != "self":
            kwargs[key] = value
        else:
            _require(
                value is None or value is False,
                "loss",
                f"{cls_name}({key}={_short(value)}) is not supported by fastrnn",
            )
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise _ConfigError(f"loss: fastrnn's {cls_name} rejects the config: {exc}") from exc


def loss_to_keras(loss: Any) -> dict:
    """The Keras serialization of a fastrnn loss (its full config: reduction, label smoothing,
    ``delta`` ... are never dropped)."""
    cls_name = type(loss).__name__
    if cls_name not in LOSSES:
        raise ValueError(
            f"Loss {cls_name} has no Keras file mapping (losses that have: {', '.join(LOSSES)})."
        )
    return {
        "module": "keras.losses",
        "class_name": cls_name,
        "config": dict(loss.get_config()),
        "registered_name": None,
    }


def _per_output(value: Any, what: str, leaf: Callable[[Any], Any]) -> Any:
    """``value`` (one entry, a list with one per output, or a dict by output name) with
    ``leaf`` applied to each entry; None entries stay None."""
    if isinstance(value, list):
        return [None if v is None else leaf(v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        _require(all(isinstance(k, str) for k in value), what, "dict keys must be output names")
        return {k: None if v is None else leaf(v) for k, v in value.items()}
    return None if value is None else leaf(value)


def _loss_weight(value: Any) -> float:
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool),
        "loss_weights",
        f"{_short(value)} is not a number",
    )
    return float(value)


def _metrics_from_keras(value: Any, what: str) -> Any:
    """A Keras metrics structure (names; a list per output or a dict by output name)."""
    from fastrnn import metrics as metrics_module

    def name(m: Any) -> str:
        _require(isinstance(m, str), what, f"metric {_short(m)} has no fastrnn equivalent")
        try:
            return metrics_module.check(m)
        except Exception as exc:
            raise _ConfigError(f"{what}: {exc}") from None

    def entry(v: Any) -> Any:
        return [name(m) for m in v] if isinstance(v, list) else name(v)

    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): None if v is None else entry(v) for k, v in value.items()}
    _require(isinstance(value, list), what, f"{_short(value)} is not a list of names")
    return [None if v is None else entry(v) for v in value]


def compile_from_keras(cc: Any) -> tuple[Any, dict, OptimizerRow, dict]:
    """(optimizer, the other ``compile`` arguments, optimizer row, its config) of a Keras
    ``compile_config`` (per-output losses, loss weights and metrics included); raises
    ``_ConfigError`` unless fastrnn has the same optimizer, losses and metrics."""
    _require(isinstance(cc, dict), "compile_config", "must be a JSON object")
    optimizer, row, opt_cfg = optimizer_from_keras(cc.get("optimizer", "rmsprop"))
    kwargs = {
        "loss": _per_output(cc.get("loss"), "loss", loss_from_keras),
        "loss_weights": _per_output(cc.get("loss_weights"), "loss_weights", _loss_weight),
        "metrics": _metrics_from_keras(cc.get("metrics"), "metrics"),
        "weighted_metrics": _metrics_from_keras(cc.get("weighted_metrics"), "weighted_metrics"),
    }
    return optimizer, kwargs, row, opt_cfg


def _metric_to_keras(m: Any) -> str:
    if isinstance(m, str):
        return m
    from fastrnn.models import _metric_name

    return _metric_name(m)


def compile_to_keras(model: Any) -> tuple[dict, OptimizerRow]:
    """Keras's ``compile_config`` of a compiled fastrnn model (per-output losses, loss weights
    and metrics kept in the structure ``compile`` received them in)."""
    from fastrnn import losses

    opt_spec, row = optimizer_to_keras(model.optimizer)
    given = model._compile_config
    loss = _per_output(given["loss"], "loss", lambda e: loss_to_keras(losses.get(e)))
    weights = given.get("loss_weights")
    if weights is not None:
        weights = _per_output(weights, "loss_weights", float)
    metrics: dict[str, Any] = {}
    for key in ("metrics", "weighted_metrics"):
        value = given.get(key)
        if not value:
            metrics[key] = None
        elif isinstance(value, dict):
            metrics[key] = {
                k: (
                    None
                    if v is None
                    else [_metric_to_keras(m) for m in v]
                    if isinstance(v, (list, tuple))
                    else _metric_to_keras(v)
                )
                for k, v in value.items()
            }
        elif isinstance(value, (list, tuple)):
            metrics[key] = [
                None
                if v is None
                else [_metric_to_keras(m) for m in v]
                if isinstance(v, (list, tuple))
                else _metric_to_keras(v)
                for v in value
            ]
        else:
            metrics[key] = [_metric_to_keras(value)]
    return {
        "optimizer": opt_spec,
        "loss": loss,
        "loss_weights": weights,
        "metrics": metrics["metrics"],
        "weighted_metrics": metrics["weighted_metrics"],
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }, row


# ---- models ------------------------------------------------------------------------------------
_FUNCTIONAL = {
    "module": "keras.src.models.functional",
    "class_name": "Functional",
    "registered_name": "Functional",
}
_MODEL_CLASS_NAMES = ("Sequential", "Functional", "Model")
_OP_MODULES = ("keras.src.ops", "keras.ops")


@dataclass(eq=False)
class _Plan:
    """A model read from a Keras config, before any weight exists.

    Attributes:
        layers: in the order of Keras's ``model.layers``: unbuilt fastrnn layers, fastrnn
            ``InputLayer``s (Functional models) and ``_Plan``s of nested models.
        paths: the HDF5 group of each, relative to the model's (``layers/lstm``).
        input_shapes: each layer's input shape (batch first; a list of shapes for merge
            layers), or None where it needs none (input layers, nested models) or stays
            unbuilt (a Sequential model without an input shape).
        assemble: ``assemble(registry)`` returns the model made of the built ``layers``
            (``registry``: fastrnn's model classes by name).
        kind: ``"Sequential"`` or ``"Functional"`` (Keras's class).
        name: the model's name.
        input_dtype: the dtype of its (first) input.
        in_shapes, out_shapes, out_dtypes: its inputs' and outputs' shapes and dtypes, flat
            (a nested model is called like a layer).
        sim: ``(calls, input keys, output keys, alias)``: its graph, to follow masks through it.
    """

    layers: list
    paths: list[str]
    input_shapes: list
    assemble: Callable[[dict], Any]
    kind: str = "Sequential"
    name: str | None = None
    input_dtype: str = "float32"
    in_shapes: list = field(default_factory=list)
    out_shapes: list = field(default_factory=list)
    out_dtypes: list = field(default_factory=list)
    sim: tuple | None = None
    shaped: Callable[[tuple], None] | None = None
    model: Any = None

    def model_for(self, registry: dict) -> Any:
        """The assembled model (once: a nested model shared by several calls is one model)."""
        if self.model is None:
            self.model = self.assemble(registry)
        return self.model

    def set_chain(self, layers: list, shape: tuple, dtype: str) -> None:
        """``sim`` and the input/output shapes and dtypes of a Sequential chain of ``layers``
        whose input has ``shape`` and ``dtype`` (``_chain``)."""
        calls, inputs, outputs, alias = _chain(layers, shape, dtype)
        self.sim = (calls, inputs, outputs, alias)
        self.in_shapes = [tuple(shape)]
        self.out_shapes = [k.shape for k in outputs]
        self.out_dtypes = [k.dtype for k in outputs]


def _shape(value: Any, where: str) -> tuple | None:
    if value is None:
        return None
    ok = isinstance(value, list) and 1 <= len(value) <= 32
    ok = ok and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in value
    )
    _require(ok, where, f"must be a list of non-negative ints or nulls, got {_short(value)}")
    return tuple(value)


def _is_model(obj: Any) -> bool:
    from fastrnn.models import Model

    return isinstance(obj, Model)


def _keras_class(obj: Any) -> str:
    """Keras's class name for a fastrnn layer, model or plan (it names the HDF5 group)."""
    if isinstance(obj, _Plan):
        return obj.kind
    if _is_model(obj):
        return "Sequential" if type(obj).__name__ == "Sequential" else "Functional"
    return row_for_layer(obj).keras


def _masking(obj: Any) -> Masking:
    if isinstance(obj, _Plan) or _is_model(obj):
        # Keras converts a Sequential's inputs to its InputLayer's dtype, not a Functional's.
        return Masking("model", call_mask=True, convert_inputs=_keras_class(obj) == "Sequential")
    row = row_for_layer(obj)
    return Masking(row.mask, row.call_mask)


def _input_dtype(obj: Any) -> str | None:
    """The dtype Keras converts a layer's inputs to."""
    if isinstance(obj, _Plan):
        return obj.input_dtype
    if _is_model(obj):
        if type(obj).__name__ == "Sequential":
            tensor = obj._input_tensor
            return tensor.dtype if tensor is not None else "float32"
        return None
    return obj.dtype.name


def _flat_shape_list(shape: Any) -> list[tuple]:
    try:
        return flat_shapes(shape)
    except GraphError as exc:
        raise _ConfigError(str(exc)) from None


class _ChainKey:
    """A tensor in a Sequential model's chain of calls: its shape and dtype."""

    __slots__ = ("dtype", "shape")

    def __init__(self, shape: tuple, dtype: str) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype


def _chain(layers: list, shape: tuple | None, dtype: str) -> tuple:
    """``(calls, inputs, outputs, alias)`` of a Sequential model's layers, as a graph."""
    if shape is None:
        return [], [], [], {}
    first = _ChainKey(shape, dtype)
    x, calls = first, []
    outs = [first]
    for layer in layers:
        if isinstance(layer, _Plan):
            shapes = [(shape[0],) + tuple(s[1:]) for s in layer.out_shapes]
            dtypes = list(layer.out_dtypes)
        else:
            shapes = _flat_shape_list(layer.compute_output_shape(shape))
            dtypes = [layer.dtype.name] * len(shapes)
        outs = [_ChainKey(s, d) for s, d in zip(shapes, dtypes)]
        calls.append(Call(layer, x, {}, outs, masking=_masking(layer), dtype=_input_dtype(layer)))
        x, shape = outs[0], shapes[0]
    return calls, [first], outs, {}


def _model_calls(model: Any) -> tuple:
    """``(calls, inputs, outputs, alias)`` of a fastrnn model's graph (tensors as keys)."""
    if type(model).__name__ == "Sequential":
        tensor = model._input_tensor
        if tensor is None:
            return [], [], [], {}
        return _chain(model.layers, tuple(tensor.shape), tensor.dtype)
    calls = []
    for t in model._flat_inputs:
        calls.append(Call(t._keras_history.operation, t, {}, [t], is_input=True))
    for node in model._run_nodes:
        layer = node.operation
        calls.append(
            Call(
                layer,
                node.call_inputs,
                dict(node.call_kwargs),
                list(node.output_tensors),
                masking=_masking(layer),
                dtype=_input_dtype(layer),
                where=f"layer {layer.name!r}",
                entry=node,
            )
        )
    return calls, list(model._flat_inputs), list(model._flat_outputs), {}


def _nested(layer: Any, x: Any, previous: Any, simulation: MaskSimulation) -> list:
    """The masks a nested model's outputs carry when it runs (Keras's eager masks)."""
    graph = simulation.ops.graphs.get(id(layer))
    if graph is None:
        graph = layer.sim if isinstance(layer, _Plan) else _model_calls(layer)
        simulation.ops.graphs[id(layer)] = graph
    return run_nested(layer, *graph, previous, simulation)


def _ignore(call: Call, recorded: Any, carried: Any, derived: Any) -> None:
    pass


def _write_check(call: Call, recorded: Any, carried: Any, derived: Any) -> None:
    """Saving: Keras, rebuilding the graph, records the masks it derives; where they differ
    from what fastrnn carries (a masked tensor out of a nested model merged with others), the
    file would compute something else."""
    if call.kwargs.get("mask") is not None or recorded == carried:
        return
    raise ValueError(
        f"save: {call.where} ({type(call.layer).__name__}) would receive another mask in Keras "
        f"than in fastrnn: {_NESTED_MASKS}. Pass the mask explicitly (mask=...) or restructure "
        "the model."
    )


def _keras_graph(model: Any, check: Callable = _ignore) -> tuple:
    """A fastrnn Functional model's graph as Keras builds it: ``(operations in Keras's order,
    mask operations included; the mask simulation; the calls)``."""
    ctx = Context()
    simulation = MaskSimulation(ctx.ops, ctx.dtype_of, _nested, check)
    calls, inputs, outputs, _ = _model_calls(model)
    try:
        simulation.run(calls)
        producer = graph_nodes(calls, simulation, {})
        order = keras_order(producer, inputs, outputs, f"model {model.name!r}")
    except GraphError as exc:
        raise ValueError(f"Keras files: {exc}") from None
    return order, simulation, calls


def keras_layers(model: Any) -> list:
    """Keras's ``model.layers`` for a fastrnn model: Sequential's layers; a Functional model's
    layers, InputLayers included, in Keras's order (counting the mask operations Keras adds to
    the graph)."""
    if type(model).__name__ == "Sequential":
        return list(model.layers)
    order = _keras_graph(model)[0]
    return [op for op in order if not isinstance(op, OpValue)]


def keras_layer_paths(model: Any, prefix: str = "layers") -> list[tuple[Any, str]]:
    """``(layer, HDF5 group)`` for each of Keras's ``model.layers``."""
    layers = keras_layers(model)
    paths = layer_paths([_keras_class(layer) for layer in layers])
    return [(layer, prefix + p[len("layers") :]) for layer, p in zip(layers, paths)]


def keras_weights(layer: Any, path: str = "") -> list[np.ndarray]:
    """A layer's (or model's) weight arrays in Keras's order (its HDF5 groups' order)."""
    seen, out = set(), []
    for _, _, owner in weight_groups(layer, path or "layer"):
        for w in [] if owner is None else owner.weights:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
    return out


def check_mappable(model: Any, depth: int = 0) -> None:
    """Raises ValueError naming the first layer (nested models included) without a Keras row,
    or for models nested deeper than files may hold."""
    if depth > MAX_NESTING:
        raise ValueError(
            f"Keras files: models nest more than {MAX_NESTING} levels deep (model "
            f"{model.name!r}); fastrnn does not read such files."
        )
    for layer in model.layers:
        if _is_model(layer):
            check_mappable(layer, depth + 1)
        else:
            row_for_layer(layer)


# ---- Sequential ---------------------------------------------------------------------------------
def _sequential_from_keras(cfg: Any, notes: list[str], ctx: Context | None = None) -> _Plan:
    """The plan of a Keras ``Sequential`` config (InputLayer first, if any)."""
    ctx = ctx if ctx is not None else Context()
    _require(isinstance(cfg, dict), "config", "the Sequential config must be a JSON object")
    specs = cfg.get("layers")
    _require(isinstance(specs, list), "config.layers", "must be a list")
    try:
        ctx.budget.take(len(specs), "config.layers")
    except GraphError as exc:
        raise _ConfigError(str(exc)) from None
    name = cfg.get("name")
    _require(name is None or isinstance(name, str), "config.name", "must be a string")
    build_shape = _shape(cfg.get("build_input_shape"), "config.build_input_shape")
    input_dtype = "float32"
    layers, classes = [], []
    for i, spec in enumerate(specs):
        where = f"config.layers[{i}]"
        if isinstance(spec, dict) and spec.get("class_name") == "InputLayer":
            _require(i == 0, where, "an InputLayer can only come first")
            icfg = spec.get("config")
            _require(isinstance(icfg, dict), where, "config must be a JSON object")
            input_layer = _input_from_keras(icfg, where, notes)
            build_shape = tuple(input_layer.batch_shape)
            input_dtype = input_layer.dtype.name
            continue
        if isinstance(spec, dict) and spec.get("class_name") in _MODEL_CLASS_NAMES:
            layer = _nested_plan(spec, where, notes, ctx)
        else:
            layer = layer_from_keras(spec, where, notes)
            legacy = spec["config"].get("batch_input_shape")
            if not layers and legacy is not None:
                build_shape = _shape(legacy, f"{where}.batch_input_shape")
        layers.append(layer)
        classes.append(_keras_class(layer) if isinstance(layer, _Plan) else spec["class_name"])
    first = next(
        (s for s in specs if isinstance(s, dict) and s.get("class_name") != "InputLayer"), None
    )
    if build_shape is None and first is not None and isinstance(first.get("build_config"), dict):
        # A model built without an InputLayer: its first layer's build_config has the shape.
        build_shape = _shape(first["build_config"].get("input_shape"), "build_config.input_shape")
    plan = _Plan(layers, layer_paths(classes), [], lambda registry: None, "Sequential", name)
    plan.input_dtype = input_dtype

    def shaped(shape: tuple | None) -> None:
        """Propagates an input shape through the layers (a nested model's may come from its
        call)."""
        plan.input_shapes = []
        current = shape
        for i, layer in enumerate(layers):
            if isinstance(layer, _Plan):
                plan.input_shapes.append(None)
                if current is not None:
                    _check_call_shapes(layer, [current], f"config.layers[{i}]")
                    if len(layer.out_shapes) != 1 and i != len(layers) - 1:
                        raise _ConfigError(
                            f"config.layers[{i}]: a nested model with several outputs inside "
                            "a Sequential model"
                        )
                    current = (current[0],) + tuple(layer.out_shapes[0][1:])
                continue
            plan.input_shapes.append(current)
            if current is not None:
                try:
                    out = _flat_shape_list(layer.compute_output_shape(current))
                except _ConfigError:
                    raise
                except Exception as exc:
                    raise _ConfigError(f"config.layers: layer {i} ({layer.name!r}): {exc}") from exc
                current = out[0]
        if shape is not None:
            plan.set_chain(layers, shape, input_dtype)

    shaped(build_shape)
    plan.shaped = shaped if build_shape is None else None

    def assemble(registry: dict) -> Any:
        cls = registry["Sequential"]
        model = cls(
            [item.model_for(registry) if isinstance(item, _Plan) else item for item in layers],
            name=name,
        )
        shape = plan.in_shapes[0] if plan.in_shapes else None
        if shape is not None and model.built_input_shape is None:
            model.build(shape, dtype=input_dtype)
        return model

    plan.assemble = assemble
    return plan


def _sequential_to_keras(model: Any) -> dict:
    shape = model.built_input_shape
    if shape is None:
        raise ValueError("save: the model is not built; call it on data or build() first.")
    shape = list(shape)
    if shape[0] is None and _stateful(model.layers):
        batch = _state_batch(model.layers)
        if batch is None:
            raise ValueError(
                "save: Keras needs a fixed batch size for stateful layers; call the model on "
                "a batch first (or build it with a batch dimension)."
            )
        shape[0] = batch
    first = model.layers[0] if model.layers else None
    dtype = first.dtype.name if first is not None and not _is_model(first) else "float32"
    specs, layer_shape = [], tuple(shape)
    for layer in model.layers:
        if _is_model(layer):
            specs.append(_nested_to_keras(layer, layer_shape))
        else:
            specs.append(layer_to_keras(layer, input_shape=layer_shape))
        out = layer.compute_output_shape(layer_shape)
        layer_shape = out if is_shape(out) else out[0]
    input_layer = {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {
            "batch_shape": shape,
            "dtype": dtype,
            "sparse": False,
            "name": "input_layer",
        },
        "registered_name": None,
    }
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": model.name,
            "trainable": True,
            "dtype": dtype_to_keras(dtype),
            "layers": [input_layer, *specs],
            "build_input_shape": shape,
        },
        "registered_name": None,
        "build_config": {"input_shape": shape},
    }


def _recurrent(layers: list) -> list:
    from fastrnn.layers import RNN
    from fastrnn.saving._build import layer_tree

    out = []
    for layer in layers:
        if _is_model(layer):
            out.extend(_recurrent(layer.layers))
        else:
            out.extend(obj for obj in layer_tree(layer) if isinstance(obj, RNN))
    return out


def _stateful(layers: list) -> bool:
    return any(layer.stateful for layer in _recurrent(layers))


def _state_batch(layers: list) -> int | None:
    for layer in _recurrent(layers):
        if layer.stateful and layer.states is not None:
            return int(layer.states[0].shape[0])
    return None


# ---- nested models ------------------------------------------------------------------------------
def _nested_plan(spec: dict, where: str, notes: list[str], ctx: Context) -> _Plan:
    """The plan of a model used as a layer (a Sequential or Functional config inside a
    model's layers)."""
    class_name = spec.get("class_name")
    registered = spec.get("registered_name")
    _require(
        registered in (None, class_name, "Functional"),
        where,
        f"model class {class_name!r} registered as {_short(registered)} is not supported",
    )
    _require(ctx.depth < MAX_NESTING, where, f"models nest more than {MAX_NESTING} levels deep")
    ctx.depth += 1
    try:
        cfg = spec.get("config")
        if class_name == "Sequential":
            return _sequential_from_keras(cfg, notes, ctx)
        return _functional_from_keras(cfg, notes, ctx, where=f"{where}.config")
    except _ConfigError as exc:
        message = str(exc)
        if not message.startswith(where):
            message = f"{where} (nested {class_name}): {message}"
        raise _ConfigError(message) from None
    finally:
        ctx.depth -= 1


def _check_call_shapes(plan: _Plan, shapes: list, where: str) -> None:
    if plan.shaped is not None and not plan.in_shapes:
        plan.shaped(tuple(shapes[0]))  # a Sequential without an input shape: its first call's
    _require(bool(plan.in_shapes), where, "a nested model without an input shape")
    _require(
        len(shapes) == len(plan.in_shapes),
        where,
        f"a nested model with {len(plan.in_shapes)} input(s) is called on {len(shapes)}",
    )
    for got, want in zip(shapes, plan.in_shapes):
        ok = len(got) == len(want) and all(
            a is None or b is None or a == b for a, b in zip(got[1:], want[1:])
        )
        _require(ok, where, f"a nested model expecting inputs {want} is called on {got}")


def _nested_to_keras(model: Any, input_shape: Any) -> dict:
    """The Keras serialization of a fastrnn model used as a layer."""
    if type(model).__name__ == "Sequential":
        top = _sequential_to_keras(model)
        return {
            "module": "keras",
            "class_name": "Sequential",
            "config": top["config"],
            "registered_name": None,
            "build_config": top["build_config"],
        }
    return {
        **_FUNCTIONAL,
        "config": _functional_config(model),
        "build_config": {"input_shape": None},
    }


# ---- Functional ---------------------------------------------------------------------------------
_CALL_KWARGS = {"mask", "training", "initial_state"}


def _parse_nodes(spec: dict, where: str, kind: str) -> list:
    nodes = spec.get("inbound_nodes", [])
    _require(isinstance(nodes, list), where, "inbound_nodes must be a list")
    _require(len(nodes) <= MAX_CALLS, where, f"more than {MAX_CALLS} calls of one layer")
    out = []
    for k, node in enumerate(nodes):
        here = f"{where}.inbound_nodes[{k}]"
        _require(
            isinstance(node, dict) and isinstance(node.get("args"), list),
            here,
            "a call must be an object with an 'args' list (Keras 3's format)",
        )
        kwargs = node.get("kwargs", {})
        _require(isinstance(kwargs, dict), here, "kwargs must be an object")
        try:
            args = parse_arguments(node["args"], f"{here}.args")
            kw = parse_arguments(kwargs, f"{here}.kwargs")
        except GraphError as exc:
            raise _ConfigError(str(exc)) from None
        if kind == "op":
            _require(all(v is None for v in kw.values()), here, "an operation takes no kwargs")
            kw = {}
        else:
            _require(
                len(args) == 1, here, f"a layer call takes one positional argument, got {len(args)}"
            )
            for key in list(kw):
                if key not in _CALL_KWARGS:
                    _require(
                        kw[key] is None,
                        here,
                        f"call argument {key!r} = {_short(kw[key])} is not understood by fastrnn",
                    )
                    del kw[key]
            training = kw.get("training")
            _require(
                training is None or isinstance(training, bool),
                here,
                f"training must be true, false or null, got {_short(training)}",
            )
            if kw.get("initial_state") is not None:
                _require(
                    all(isinstance(r, Ref) for r in flatten(kw["initial_state"])),
                    here,
                    "initial_state must be tensors",
                )
            else:
                kw.pop("initial_state", None)
            if kw.get("mask") is not None:
                _require(
                    all(r is None or isinstance(r, Ref) for r in flatten(kw["mask"])),
                    here,
                    "mask must be tensors or null",
                )
        out.append((args, kw, here))
    return out


def _op_entry(spec: dict, where: str, position: int, name: str) -> Entry:
    class_name = spec["class_name"]
    row = MASK_OPS.get(class_name)
    _require(
        row is not None,
        where,
        f"Keras operation {class_name[:100]!r} is not supported by fastrnn (it reads the "
        f"operations Keras records to compute masks: {', '.join(sorted(MASK_OPS))})",
    )
    cfg = spec.get("config")
    _require(isinstance(cfg, dict), where, "config must be a JSON object")
    config = {}
    for key, value in cfg.items():
        if key == "name":
            continue
        _require(key in row[0], where, f"{class_name} config key {key!r} is not understood")
        if key == "axis":
            _require(
                isinstance(value, int) and not isinstance(value, bool) and -32 <= value < 32,
                where,
                f"bad axis {_short(value)}",
            )
        elif key == "keepdims":
            _require(isinstance(value, bool), where, f"bad keepdims {_short(value)}")
        elif key == "dtype":
            _require(value == "bool", where, f"{class_name} with dtype {_short(value)}")
        config[key] = value
    _require(set(config) == set(row[0]), where, f"{class_name} config needs {sorted(row[0])}")
    nodes = _parse_nodes(spec, where, "op")
    _require(len(nodes) == 1, where, f"an operation is called once, got {len(nodes)} calls")
    return Entry(name, "op", OpSpec(class_name, config), nodes, position, where)


def _functional_entry(
    spec: Any, where: str, position: int, notes: list[str], ctx: Context
) -> Entry:
    _require(isinstance(spec, dict), where, f"a layer must be a JSON object, got {_short(spec)}")
    class_name, name = spec.get("class_name"), spec.get("name")
    _require(isinstance(class_name, str), where, f"bad class_name {_short(class_name)}")
    _require(isinstance(name, str) and 0 < len(name) <= 200, where, f"bad name {_short(name)}")
    cfg = spec.get("config")
    module = spec.get("module")
    where = f"{where} ({class_name[:60]} {name[:60]!r})"
    if isinstance(module, str) and module.startswith(_OP_MODULES):
        return _op_entry(spec, where, position, name)
    if class_name == "InputLayer":
        _require(isinstance(cfg, dict), where, "config must be a JSON object")
        layer = _input_from_keras(cfg, where, notes)
        _require(layer.name == name, where, f"the InputLayer is named {layer.name!r} in its config")
        _require(not spec.get("inbound_nodes"), where, "an InputLayer is not called")
        return Entry(name, "input", layer, [], position, where, dtype=layer.dtype.name)
    if class_name in _MODEL_CLASS_NAMES:
        plan = _nested_plan(spec, where, notes, ctx)
        _require(
            plan.name in (None, name), where, f"the model is named {plan.name!r} in its config"
        )
        functional = plan.kind == "Functional"
        return Entry(
            name,
            "model",
            plan,
            _parse_nodes(spec, where, "model"),
            position,
            where,
            functional=functional,
            masking=_masking(plan),
            dtype=list(plan.out_dtypes),
            input_dtype=None if functional else plan.input_dtype,
        )
    layer = layer_from_keras(spec, where, notes)
    _require(layer.name == name, where, f"the layer is named {layer.name!r} in its config")
    return Entry(
        name,
        "layer",
        layer,
        _parse_nodes(spec, where, "layer"),
        position,
        where,
        masking=_masking(layer),
        dtype=layer.dtype.name,
        input_dtype=layer.dtype.name,
    )


def _call_shapes(entry: Entry, x_shape: Any, where: str) -> list:
    """The flat output shapes of a call (the layer's ``compute_output_shape``)."""
    obj = entry.obj
    if isinstance(obj, _Plan):
        shapes = x_shape if isinstance(x_shape, list) else [x_shape]
        _check_call_shapes(obj, shapes, where)
        batch = shapes[0][0]
        return [(batch,) + tuple(s[1:]) for s in obj.out_shapes]
    if isinstance(x_shape, list) and not getattr(obj, "_takes_list", False):
        raise _ConfigError(f"{where}: {type(obj).__name__} takes one tensor, the call gives a list")
    if not isinstance(x_shape, list) and getattr(obj, "_takes_list", False):
        raise _ConfigError(f"{where}: {type(obj).__name__} takes a list of tensors")
    try:
        return _flat_shape_list(obj.compute_output_shape(x_shape))
    except _ConfigError:
        raise
    except Exception as exc:
        raise _ConfigError(
            f"{where}: {type(obj).__name__} {obj.name!r} cannot take inputs of shape "
            f"{x_shape}: {exc}"
        ) from None


_NESTED_MASKS = (
    "Keras records masks derived without looking into nested models, while fastrnn carries "
    "the masks nested models compute"
)


def _read_check(call: Call, recorded: Any, carried: Any, derived: Any) -> None:
    """Reading: a file's recorded mask must be the one fastrnn carries (then it is dropped) or a
    plain tensor (kept as an explicit ``mask`` argument)."""
    if call.decided:  # the same call again, inside a nested model receiving masks
        if "mask" in call.keep or recorded == carried:
            return
        raise _ConfigError(
            f"{call.where}: the mask the file records for this call differs from the mask "
            f"fastrnn carries when the model around it passes a mask in: {_NESTED_MASKS}"
        )
    call.decided = True
    if recorded == carried:
        return  # the mask Keras derives: fastrnn carries it along the graph itself
    if not any(isinstance(v, OpValue) for v in flatten(recorded)):
        call.keep["mask"] = call.kwargs["mask"]  # a tensor given as the mask: kept
        return
    if recorded == derived:
        raise _ConfigError(
            f"{call.where}: the mask the file records for this call differs from the mask "
            f"fastrnn carries: {_NESTED_MASKS}"
        )
    raise _ConfigError(
        f"{call.where}: the mask argument is computed by Keras operations other than the ones "
        "Keras derives from the layers (a hand-made mask); fastrnn carries masks along the "
        "graph itself and cannot replay it"
    )


def _functional_from_keras(
    cfg: Any, notes: list[str], ctx: Context | None = None, where: str = "config"
) -> _Plan:
    """The plan of a Keras ``Functional`` config: its layers in Keras's order, each built from
    its first call's input shapes (propagated through the graph), and how to replay the graph
    on the built layers."""
    ctx = ctx if ctx is not None else Context()
    _require(isinstance(cfg, dict), where, "the Functional config must be a JSON object")
    name = cfg.get("name")
    _require(name is None or isinstance(name, str), f"{where}.name", "must be a string")
    trainable = cfg.get("trainable", True)
    _require(isinstance(trainable, bool), f"{where}.trainable", "must be true or false")
    scope = object()
    try:
        graph = parse_graph(
            cfg,
            where,
            lambda spec, here, position: _functional_entry(spec, here, position, notes, ctx),
            _call_shapes,
            ctx,
            scope,
        )
        for call in graph.calls:
            if not (call.is_input or call.is_op):
                call.keep = {
                    k: v
                    for k, v in call.kwargs.items()
                    if k != "mask" and not (k == "training" and not v)
                }
        simulation = MaskSimulation(ctx.ops, ctx.dtype_of, _nested, _read_check)
        simulation.run(graph.calls, graph.alias)
        producer = graph_nodes(graph.calls, simulation, graph.alias)
        order = keras_order(producer, flatten(graph.inputs), flatten(graph.outputs), where)
    except GraphError as exc:
        raise _ConfigError(str(exc)) from None
    layers = [op for op in order if not isinstance(op, OpValue)]
    entry_of = {id(e.obj): e for e in graph.entries}
    input_shapes = [
        entry_of[id(obj)].build_shape if entry_of[id(obj)].kind == "layer" else None
        for obj in layers
    ]
    plan = _Plan(
        layers,
        layer_paths([_keras_class(obj) for obj in layers]),
        input_shapes,
        lambda registry: None,
        "Functional",
        name,
    )
    in_keys, out_keys = flatten(graph.inputs), flatten(graph.outputs)
    plan.input_dtype = graph.dtypes[in_keys[0]]
    plan.in_shapes = [graph.shapes[k] for k in in_keys]
    plan.out_shapes = [graph.shapes[k] for k in out_keys]
    plan.out_dtypes = [graph.dtypes[k] for k in out_keys]
    plan.sim = (graph.calls, in_keys, out_keys, graph.alias)

    def assemble(registry: dict) -> Any:
        return _replay(graph, registry, registry["Model"], name, trainable)

    plan.assemble = assemble
    return plan


def _replay(graph: Graph, registry: dict, cls: type, name: str | None, trainable: bool) -> Any:
    """Calls the built layers on symbolic tensors as the graph says, and makes the model."""
    from fastrnn.layers.base import flatten as fastrnn_flatten

    tensors: dict = {}

    def tensor(v: Any) -> Any:
        return tensors[v] if isinstance(v, TKey) else v

    for call in graph.calls:
        if call.is_op:
            continue
        if call.is_input:
            tensors[call.outputs[0]] = call.layer._inbound_nodes[0].outputs
            continue
        layer = call.layer
        if isinstance(layer, _Plan):
            layer = layer.model_for(registry)
        x = map_structure(tensor, call.x)
        kwargs = {k: map_structure(tensor, v) for k, v in call.keep.items()}
        try:
            out = layer(x, **kwargs)
        except Exception as exc:
            raise _ConfigError(f"{call.where}: replaying the call fails: {exc}") from exc
        flat = fastrnn_flatten(out)
        if len(flat) != len(call.outputs):
            raise _ConfigError(
                f"{call.where}: the call gives {len(flat)} outputs; {len(call.outputs)} expected"
            )
        tensors.update(zip(call.outputs, flat))
    inputs = map_structure(tensor, graph.inputs)
    outputs = map_structure(tensor, graph.outputs)
    return cls(inputs, outputs, name=name, trainable=trainable)


def _op_names(ops: list, classes: list[str], taken: set) -> dict:
    """Keras-style names for mask operations (``not_equal``, ``logical_or_1`` ...), unique among
    the model's layers."""
    used = set(taken)
    counts: dict[str, int] = {}
    out = {}
    for op, class_name in zip(ops, classes):
        base = keras_snake(class_name)
        n = counts.get(base, 0)
        name = base if n == 0 else f"{base}_{n}"
        while name in used:
            n += 1
            name = f"{base}_{n}"
        counts[base] = n + 1
        used.add(name)
        out[op] = name
    return out


def _functional_config(model: Any) -> dict:
    """Keras's Functional config of a fastrnn model: operations in Keras's order, each layer with
    its calls (node indices count only the model's own calls of a layer), and the mask
    operations Keras records, as Keras writes them."""
    from fastrnn.layers import InputLayer, KerasTensor

    order, simulation, calls = _keras_graph(model, _write_check)
    ops = simulation.ops
    own = model._graph_node_ids
    layers = [op for op in order if not isinstance(op, OpValue)]
    reindex: dict = {}
    for layer in layers:
        kept = [i for i, n in enumerate(layer._inbound_nodes) if id(n) in own]
        reindex.update({(id(layer), old): new for new, old in enumerate(kept)})
    mask_ops = [op for op in order if isinstance(op, OpValue)]
    op_names = _op_names(
        mask_ops, [ops.specs[op.index][0] for op in mask_ops], {layer.name for layer in layers}
    )
    recorded = {id(call.entry): simulation.recorded.get(id(call)) for call in calls}

    def ref(t: Any, io: bool = False) -> list:
        layer, node, index = t._keras_history
        node = reindex.get((id(layer), node), node)
        if io and _keras_class(layer) == "Functional":
            node += 1  # Keras counts a node its Functional models no longer create
        return [layer.name, node, index]

    def serialized(value: Any) -> Any:
        if isinstance(value, KerasTensor):
            return {
                "class_name": "__keras_tensor__",
                "config": {
                    "shape": list(value.shape),
                    "dtype": value.dtype,
                    "keras_history": ref(value),
                },
            }
        if isinstance(value, OpValue):
            return {
                "class_name": "__keras_tensor__",
                "config": {
                    "shape": list(ops.shape(value)),
                    "dtype": "bool",
                    "keras_history": [op_names[value], 0, 0],
                },
            }
        if isinstance(value, (list, tuple)):
            return [serialized(v) for v in value]
        if isinstance(value, dict):
            return {k: serialized(v) for k, v in value.items()}
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            return value.item()
        return value

    specs = []
    for op in order:
        if isinstance(op, OpValue):
            class_name, cfg, args = ops.specs[op.index]
            name = op_names[op]
            specs.append(
                {
                    "module": "keras.src.ops.numpy",
                    "class_name": class_name,
                    "config": {"name": name, **cfg},
                    "registered_name": class_name,
                    "name": name,
                    "inbound_nodes": [{"args": serialized(list(args)), "kwargs": {}}],
                }
            )
            continue
        layer = op
        nodes = [n for n in layer._inbound_nodes if id(n) in own and not n.is_input]
        shape = None
        if nodes:
            shape = map_structure(lambda t: tuple(t.shape), nodes[0].call_inputs)
        if isinstance(layer, InputLayer):
            spec = _input_to_keras(layer)
        elif _is_model(layer):
            spec = _nested_to_keras(layer, shape)
        else:
            spec = layer_to_keras(layer, input_shape=shape)
        spec["name"] = layer.name
        spec["inbound_nodes"] = []
        for n in nodes:
            kwargs = n.call_kwargs
            if not kwargs and recorded.get(id(n)) is not None:
                # The mask Keras would record when rebuilding the graph, written as Keras does
                # (then Keras adds no other mask operations to the graph).
                kwargs = {"mask": recorded[id(n)]}
            spec["inbound_nodes"].append(
                {"args": [serialized(n.call_inputs)], "kwargs": serialized(kwargs)}
            )
        specs.append(spec)
    return {
        "name": model.name,
        "trainable": bool(model.trainable),
        "layers": specs,
        "input_layers": map_structure(lambda t: ref(t, io=True), model._inputs_struct),
        "output_layers": map_structure(lambda t: ref(t, io=True), model._outputs_struct),
    }


def _functional_to_keras(model: Any) -> dict:
    return {
        **_FUNCTIONAL,
        "config": _functional_config(model),
        "build_config": {"input_shape": None},
    }


@dataclass(frozen=True)
class _ModelRow:
    """A model class in both frameworks: the reader of its Keras config (into a ``_Plan``),
    the writer of a fastrnn model, and fastrnn's class (by registered name)."""

    read: Callable
    write: Callable
    fastrnn: str


# Keras model class -> its row; a fastrnn model class's name -> the same rows for writing.
MODELS = {
    "Sequential": _ModelRow(_sequential_from_keras, _sequential_to_keras, "Sequential"),
    "Functional": _ModelRow(_functional_from_keras, _functional_to_keras, "Model"),
    "Model": _ModelRow(_functional_from_keras, _functional_to_keras, "Model"),
}


# ---- writing -------------------------------------------------------------------------------------
def _model_groups(model: Any) -> list[tuple[str, str | None, list[np.ndarray]]]:
    check_mappable(model)
    groups: list[tuple[str, str | None, list[np.ndarray]]] = [("", model.name, [])]
    for layer, path in keras_layer_paths(model):
        for group_path, name, owner in weight_groups(layer, path):
            groups.append((group_path, name, [] if owner is None else owner.weights))
    return groups


def _optimizer_group(model: Any) -> tuple[str, str, list[np.ndarray]] | None:
    if not model.compiled:
        return None
    optimizer = model.optimizer
    _, row = optimizer_to_keras(optimizer)
    cfg = optimizer.get_config()
    iterations, flat = optimizer.get_state()
    arrays: list[np.ndarray] = [
        np.asarray(iterations, dtype=np.int64),
        np.asarray(optimizer.learning_rate, dtype=np.float32),
    ]
    if optimizer.slots is not None:
        n_vars = len(model.trainable_weights)
        order = _keras_to_fastrnn_order(row, cfg, n_vars, _variable_order(model))
        if len(flat) != len(order):
            raise ValueError(
                f"save: {type(optimizer).__name__} holds {len(flat)} state arrays; the Keras "
                f"layout expects {len(order)}."
            )
        keras_list: list[Any] = [None] * len(order)
        for fastrnn_pos, keras_pos in enumerate(order):
            keras_list[keras_pos] = flat[fastrnn_pos]
        arrays.extend(keras_list)
    return ("optimizer", optimizer.name, arrays)


def _write_h5(model: Any, fileobj: Any, include_optimizer: bool) -> None:
    h5py = h5py_module()
    groups = _model_groups(model)
    if include_optimizer:
        opt = _optimizer_group(model)
        if opt is not None:
            groups.append(opt)
    with h5py.File(fileobj, "w") as f:
        f.create_group("layers")
        write_groups(f, groups)


def _json(obj: Any, what: str) -> bytes:
    import json

    try:
        return json.dumps(obj, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save: the {what} cannot be written as JSON ({exc}).") from None


def model_config(model: Any) -> dict:
    """The Keras ``config.json`` of a fastrnn model (``compile_config`` included when compiled).

    Raises:
        ValueError: a model, layer, optimizer or loss class without a Keras mapping.
    """
    entry = MODELS.get(type(model).__name__)
    if entry is None:
        raise ValueError(
            f"save: {type(model).__name__} models cannot be written as Keras files (supported: "
            "Sequential and Model)."
        )
    check_mappable(model)
    config = entry.write(model)
    if model.compiled:
        config["compile_config"] = compile_to_keras(model)[0]
    return config


def write_archive(model: Any, fileobj: Any) -> None:
    """Writes a ``.keras`` archive of a built fastrnn model."""
    import zipfile

    config = _json(model_config(model), "model config")
    weights = io.BytesIO()
    _write_h5(model, weights, include_optimizer=True)
    from fastrnn import __version__

    metadata = {
        "keras_version": KERAS_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "saved_by": f"fastrnn {__version__}",
    }
    with zipfile.ZipFile(fileobj, "w") as zf:
        zf.writestr("metadata.json", _json(metadata, "metadata"), zipfile.ZIP_DEFLATED)
        zf.writestr("config.json", config, zipfile.ZIP_DEFLATED)
        zf.writestr(ARCHIVE_WEIGHTS, weights.getvalue(), zipfile.ZIP_STORED)


def write_weights(model: Any, fileobj: Any) -> None:
    """Writes a Keras ``.weights.h5`` file (layers, and the optimizer's state when compiled)."""
    check_mappable(model)
    _write_h5(model, fileobj, include_optimizer=True)


# ---- reading -------------------------------------------------------------------------------------
def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside fastrnn."""
    import os
    import sys

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _warn(notes: list[str], filepath: str) -> None:
    if notes:
        warnings.warn(
            f"Loading {filepath!r}: " + "; ".join(notes[:10]) + (" ..." if len(notes) > 10 else ""),
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


def _check_nested_groups(reader: H5Reader, group_paths: list[str]) -> None:
    """Refuses members of a layer's groups that its structure does not name.

    A wrapped layer's group is named after the wrapper's attribute (``layer``), not its class,
    so weights written for another wrapped class (``time_distributed/layer/cell`` for a config
    wrapping a Dense) would otherwise be ignored silently. Groups between a layer's groups (a
    nested model's ``layers``) may hold only those groups.
    """
    if not group_paths:
        return
    root = group_paths[0]
    names = set(group_paths)
    children: dict[str, set[str]] = {path: set() for path in group_paths}
    for path in group_paths[1:]:
        parent, _, child = path.rpartition("/")
        while True:
            known = parent in children
            children.setdefault(parent, set()).add(child)
            if known or not parent.startswith(root + "/"):
                break
            parent, _, child = parent.rpartition("/")
    for path, expected in children.items():
        group = reader.group(path, required=False)
        if group is None:
            continue
        allowed = expected | ({"vars"} if path in names else set())
        extra = sorted(set(reader.keys(group, path)) - allowed)
        if extra:
            raise reader.fail(
                f"{path}/{extra[0]}",
                "weights for a (wrapped) layer the config does not have",
            )


def _model_roots(layer: Any, path: str) -> set[str]:
    """The groups of a (nested) model itself, which hold no arrays."""
    if not _is_model(layer):
        return set()
    roots = {path}
    for sub, sub_path in keras_layer_paths(layer, f"{path}/layers"):
        roots |= _model_roots(sub, sub_path)
    return roots


def _layer_expected(reader: H5Reader, layer: Any, path: str) -> tuple[list[Expected], list]:
    expected, nodes = [], []
    groups = weight_groups(layer, path)
    _check_nested_groups(reader, [group_path for group_path, _, _ in groups])
    roots = _model_roots(layer, path)
    for group_path, _, _owner in groups:
        arrays = reader.vars(group_path)
        if arrays and group_path in roots:
            raise reader.fail(arrays[0][0], "a model has no variables of its own")
        for node_path, node in arrays:
            shape, dtype = reader.declare(node, node_path)
            expected.append(Expected(shape, dtype, reader.entry(node_path)))
            nodes.append((node, node_path))
    return expected, nodes


def _check_layer_groups(reader: H5Reader, paths: list[str], parent: str = "layers") -> None:
    group = reader.group(parent, required=bool(paths))
    if group is None:
        return
    present = {f"{parent}/{k}" for k in reader.keys(group, parent)}
    extra = sorted(present - set(paths))
    if extra:
        raise reader.fail(extra[0], "weights for a layer the config does not have")


def _fill_weights(reader: H5Reader, layer_nodes: list, weights: list) -> None:
    arrays = [reader.read(node, path, w.dtype) for (node, path), w in zip(layer_nodes, weights)]
    for w, a in zip(weights, arrays):
        w[...] = a


def _build_from_h5(reader: H5Reader, plan: _Plan, fail: Callable, prefix: str = "") -> list:
    """Builds the plan's layers (nested models' too) against the file's arrays; returns
    ``[(layer, [(node, path)])]``."""
    paths = [prefix + p for p in plan.paths]
    _check_layer_groups(reader, paths, prefix + "layers")
    out: list = []
    for i, (layer, path, shape) in enumerate(zip(plan.layers, paths, plan.input_shapes)):
        if isinstance(layer, _Plan):
            group = reader.group(path, required=False)
            if group is not None:
                extra = sorted(set(reader.keys(group, path)) - {"vars", "layers"})
                if extra:
                    raise reader.fail(f"{path}/{extra[0]}", "not part of a nested model's group")
                own = reader.vars(path)
                if own:
                    raise reader.fail(own[0][0], "a model has no variables of its own")
            out.extend(_build_from_h5(reader, layer, fail, path + "/"))
            continue
        expected, nodes = _layer_expected(reader, layer, path)
        owner = f"layer {i} ({type(layer).__name__} {layer.name!r})"
        if type(layer).__name__ == "InputLayer":
            if expected:
                raise fail(expected[0].entry, f"{owner} has no weights")
            continue
        weights_plan = WeightPlan(expected, fail, reader.entry(path))
        if shape is None:
            if expected:
                raise fail(expected[0].entry, f"{owner} has weights but the config no input shape")
            continue
        try:
            build_checked(layer, shape, weights_plan, owner)
        except ModelFileError:
            raise
        except Exception as exc:
            raise fail("config.json", f"{owner}: cannot build it: {exc}") from exc
        weights_plan.finish(owner)
        out.append((layer, nodes))
    return out


def _optimizer_state(
    reader: H5Reader, model: Any, row: OptimizerRow, cfg: dict, notes: list[str]
) -> tuple[int, list[np.ndarray] | None] | None:
    """Reads and checks ``optimizer/vars``: (iterations, fastrnn-ordered slots or None).

    None when the file holds no optimizer state, or state for another configuration (noted, as
    Keras warns and skips it).
    """
    group = reader.group("optimizer", required=False)
    if group is None:
        return None
    entries = reader.vars("optimizer")
    if not entries:
        return None
    variables = model.trainable_weights
    order = _keras_to_fastrnn_order(row, cfg, len(variables), _variable_order(model))
    if len(entries) not in (2, 2 + len(order)):
        notes.append(
            f"optimizer state skipped: the file holds {len(entries)} optimizer variables, "
            f"{2 + len(order)} expected"
        )
        return None
    (it_path, it_node), (lr_path, lr_node) = entries[0], entries[1]
    reader.declare(it_node, it_path, scalar_int=True)
    reader.declare(lr_node, lr_path)
    try:
        iterations = int(it_node[()])
    except Exception as exc:
        raise reader.fail(it_path, f"cannot read the iteration count ({exc})") from None
    if iterations < 0:
        raise reader.fail(it_path, f"negative iteration count {iterations}")
    if len(entries) == 2:
        return iterations, None
    per_var = max(len(row.slots(cfg)), 1)
    keras_slots = entries[2:]
    checked = []
    for fastrnn_pos, keras_pos in enumerate(order):
        path, node = keras_slots[keras_pos]
        var = variables[fastrnn_pos // per_var]
        shape, dtype = reader.declare(node, path)
        if shape != var.shape or check_float_dtype(dtype) != var.dtype:
            raise reader.fail(
                path,
                f"optimizer slot of shape {shape} ({dtype}); the weight is {var.shape} "
                f"({var.dtype})",
            )
        checked.append((node, path, var.dtype))
    return iterations, [reader.read(node, path, dtype) for node, path, dtype in checked]


def _apply_optimizer_state(model: Any, state: tuple[int, list | None] | None) -> None:
    if state is None:
        return
    iterations, arrays = state
    if arrays is None:
        model.optimizer.iterations = iterations
    else:
        model.optimizer.set_state(iterations, arrays, model.trainable_weights)


def _open_h5(h5py: Any, source: Any, fail: Callable, entry: str) -> Any:
    try:
        return h5py.File(source, "r")
    except Exception as exc:
        raise fail(entry, f"not a readable HDF5 file ({type(exc).__name__}: {exc})") from None


def _allowed(name: str) -> bool:
    return name in _ARCHIVE_ENTRIES or name == "assets/"


def is_keras_metadata(meta: Any) -> bool:
    return isinstance(meta, dict) and isinstance(meta.get("keras_version"), str)


def read_archive(z: SafeZip, registry: dict, compile: bool) -> Any:
    """Loads a fastrnn model from an opened ``.keras`` archive."""
    h5py = h5py_module()
    path = z.path
    config = z.read_json("config.json")
    notes: list[str] = []
    entry = "config.json"
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise z.fail(entry, "the model config must be a JSON object with a class_name")
    class_name = config["class_name"]
    model_row = MODELS.get(class_name)
    if model_row is None:
        raise z.fail(
            entry,
            f"Keras model class {class_name[:100]!r} is not supported by fastrnn "
            f"(supported: {', '.join(MODELS)})",
        )
    for needed in ("Sequential", "Model"):
        if needed not in registry:
            raise z.fail(entry, f"no fastrnn model class {needed!r} (import fastrnn.models)")
    try:
        plan = model_row.read(config.get("config"), notes)
    except _ConfigError as exc:
        raise z.fail(entry, str(exc)) from None
    compile_spec = None
    cc = config.get("compile_config")
    # Keras compiles a model with loss=None by itself (e.g. for predict): nothing to restore.
    if compile and cc is not None and not (isinstance(cc, dict) and cc.get("loss") is None):
        try:
            compile_spec = compile_from_keras(config["compile_config"])
        except _ConfigError as exc:
            notes.append(f"the model is loaded uncompiled: compile_config {exc}")

    def fail(e: str | None, message: str) -> ModelFileError:
        return z.fail(e, message)

    source = z.window(ARCHIVE_WEIGHTS)
    with _open_h5(h5py, source, fail, ARCHIVE_WEIGHTS) as f:
        reader = H5Reader(f, fail, z.limits, ARCHIVE_WEIGHTS)
        built = _build_from_h5(reader, plan, fail)
        try:
            model = plan.model_for(registry)
        except _ConfigError as exc:
            raise z.fail(entry, str(exc)) from None
        except Exception as exc:
            raise z.fail(entry, f"cannot assemble the model: {exc}") from exc
        for layer, nodes in built:
            _fill_weights(reader, nodes, layer.weights)
        if compile_spec is not None:
            optimizer, kwargs, row, opt_cfg = compile_spec
            try:
                model.compile(optimizer=optimizer, **kwargs)
            except Exception as exc:
                notes.append(f"the model is loaded uncompiled: compile_config: {exc}")
            else:
                state = _optimizer_state(reader, model, row, opt_cfg, notes)
                _apply_optimizer_state(model, state)
    _warn(notes, path)
    return model


def read_weights_into(model: Any, source: Any, fail: Callable, limits: Limits, label: str) -> None:
    """Loads Keras-layout weights from an HDF5 source into a built fastrnn ``model``."""
    h5py = h5py_module()
    check_mappable(model)
    pairs = keras_layer_paths(model)
    notes: list[str] = []
    with _open_h5(h5py, source, fail, label) as f:
        reader = H5Reader(f, fail, limits, label)
        _check_layer_groups(reader, [path for _, path in pairs])
        nodes, weights = [], []
        for layer, path in pairs:
            expected, layer_nodes = _layer_expected(reader, layer, path)
            own, names = [], []
            for _, _, owner in weight_groups(layer, path):
                if owner is not None:
                    own.extend(owner.weights)
                    names.extend(n.split("/", 1)[-1] for n in owner.weight_names)
            _match_layer(fail, reader.entry(path), layer, expected, own, names)
            nodes.extend(layer_nodes)
            weights.extend(own)
        state = None
        if model.compiled and type(model.optimizer).__name__ in OPTIMIZERS:
            row = OPTIMIZERS[type(model.optimizer).__name__]
            state = _optimizer_state(reader, model, row, model.optimizer.get_config(), notes)
        # Everything is read and checked before anything is written.
        arrays = [reader.read(node, p, w.dtype) for (node, p), w in zip(nodes, weights)]
        for w, a in zip(weights, arrays):
            w[...] = a
        _apply_optimizer_state(model, state)
    _warn(notes, label)


def _match_layer(
    fail: Callable, where: str, layer: Any, expected: list[Expected], own: list, names: list
) -> None:
    """Checks a built layer's weights (``own``, in Keras's order) against the arrays a file
    declares for it."""
    for i in range(max(len(own), len(expected))):
        if i >= len(expected):
            raise fail(
                expected[-1].entry if expected else where,
                f"layer {layer.name!r}: the file holds no array for its weight {names[i]!r} "
                f"(shape {own[i].shape}); {len(expected)} arrays, {len(own)} weights",
            )
        if i >= len(own):
            raise fail(
                expected[i].entry,
                f"layer {layer.name!r} has {len(own)} weights; the file holds "
                f"{len(expected)} arrays for it",
            )
        if expected[i].shape != own[i].shape:
            raise fail(
                expected[i].entry,
                f"layer {layer.name!r}: weight {names[i]!r} has shape {own[i].shape}; the file "
                f"holds shape {expected[i].shape}",
            )
        if check_float_dtype(expected[i].dtype) != own[i].dtype:
            raise fail(
                expected[i].entry,
                f"layer {layer.name!r}: weight {names[i]!r} is stored as "
                f"{expected[i].dtype.name} but the layer computes in {own[i].dtype.name}; "
                "weights are never cast silently",
            )


def open_weights_h5(filepath: Any, limits: Limits) -> tuple[Any, Callable, str]:
    """(source, fail, label) for a ``.weights.h5`` file on disk, its size checked first."""
    import os

    path = os.fspath(filepath)
    size = os.path.getsize(path)

    def fail(entry: str | None, message: str) -> ModelFileError:
        return ModelFileError(path, entry, message)

    if size > limits.max_bytes:
        raise fail(None, f"the file has {size} bytes, above max_bytes={limits.max_bytes}")
    return path, fail, os.path.basename(path)
