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
same class (``lstm``, ``lstm_1``), never the layer's own name. A ``.weights.h5`` file is that
HDF5 file on its own.

The mapping is table-driven: ``LAYERS`` has one ``LayerRow`` per layer class (Keras class name,
fastrnn class, one ``Key`` per config key, where the weights live); ``MODELS`` one reader and
writer per model class; ``OPTIMIZERS`` one row per optimizer. Adding a layer is adding a row.

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
    ),
    LayerRow("Masking", "Masking", (Key("mask_value"),)),
    LayerRow("Dropout", "Dropout", (Key("rate"), Key("noise_shape"), Key("seed"))),
    LayerRow("SimpleRNN", "SimpleRNN", _RNN_KEYS, weights="cell", read=_rnn_read, write=_rnn_write),
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
    ),
    LayerRow(
        "TimeDistributed",
        "TimeDistributed",
        (Key("layer", "layer", required=True),),
        weights="children",
        children=_time_distributed_children,
        child_shape=_time_distributed_child_shape,
    ),
    LayerRow("Activation", "Activation", (Key("activation", "act"),)),
    LayerRow("RepeatVector", "RepeatVector", (Key("n"),)),
    LayerRow("Flatten", "Flatten", (Key("data_format"),)),
    LayerRow("Reshape", "Reshape", (Key("target_shape"),)),
    # Sizes stay as Keras stores them, 1-tuples ([2] in JSON); fastrnn's layers take both.
    LayerRow(
        "MaxPooling1D",
        "MaxPooling1D",
        (Key("pool_size"), Key("strides"), Key("padding"), Key("data_format")),
    ),
    LayerRow("GlobalAveragePooling1D", "GlobalAveragePooling1D", _GLOBAL_POOLING_KEYS),
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
    ),
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


def weight_groups(layer: Any, path: str) -> list[tuple[str, str, Any]]:
    """``(HDF5 path, vars name, layer whose weights it holds or None)`` for a fastrnn layer.

    The weights of the groups, concatenated in order, are ``layer.weights``.
    """
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


def _keras_to_fastrnn_order(row: OptimizerRow, cfg: dict, n_vars: int) -> list[int]:
    """For each fastrnn state position, the position of the same array in Keras's list."""
    keras_positions = {}
    position = 0
    for group in row.keras_groups(cfg):
        for v in range(n_vars):
            for slot in group:
                keras_positions[(v, slot)] = position
                position += 1
    return [keras_positions[(v, slot)] for v in range(n_vars) for slot in row.slots(cfg)]


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


# Keras loss names and classes -> fastrnn loss names.
_LOSSES = {
    "MeanSquaredError": "mean_squared_error",
    "MeanAbsoluteError": "mean_absolute_error",
    "BinaryCrossentropy": "binary_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
}
_LOSS_NAMES = {
    **{v: v for v in _LOSSES.values()},
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
}
_LOSS_FIXED = {
    "reduction": ("sum_over_batch_size", "auto"),
    "label_smoothing": (0, 0.0),
    "axis": (-1,),
    "ignore_class": (None,),
    "dtype": (None, "float32"),
}


def loss_from_keras(spec: Any) -> Any:
    from fastrnn import losses

    if isinstance(spec, str):
        _require(spec in _LOSS_NAMES, "loss", f"{spec!r} has no fastrnn equivalent")
        return losses.get(_LOSS_NAMES[spec])
    _require(isinstance(spec, dict), "loss", f"{_short(spec)} has no fastrnn equivalent")
    cls_name, cfg = spec.get("class_name"), spec.get("config")
    if cls_name == "function" and isinstance(cfg, str):
        return loss_from_keras(cfg)
    _require(
        cls_name in _LOSSES and isinstance(cfg, dict),
        "loss",
        f"{_short(cls_name)} has no fastrnn equivalent",
    )
    kwargs = {}
    for key, value in cfg.items():
        if key in ("name", "from_logits"):
            kwargs[key] = value
        else:
            _require(
                key in _LOSS_FIXED and _one_of(value, _LOSS_FIXED[key]),
                "loss",
                f"{cls_name}({key}={_short(value)}) is not supported by fastrnn",
            )
    cls = type(losses.get(_LOSSES[cls_name]))
    if "from_logits" in kwargs and cls_name in ("MeanSquaredError", "MeanAbsoluteError"):
        kwargs.pop("from_logits")
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise _ConfigError(f"loss: fastrnn's {cls.__name__} rejects the config: {exc}") from exc


def loss_to_keras(loss: Any) -> dict:
    cls_name = type(loss).__name__
    if cls_name not in _LOSSES:
        raise ValueError(f"Loss {cls_name} has no Keras file mapping.")
    config = {"name": loss.name, "reduction": "sum_over_batch_size"}
    if hasattr(loss, "from_logits"):
        config["from_logits"] = bool(loss.from_logits)
    return {
        "module": "keras.losses",
        "class_name": cls_name,
        "config": config,
        "registered_name": None,
    }


def compile_from_keras(cc: Any) -> tuple[Any, Any, list[str], OptimizerRow, dict]:
    """(optimizer, loss, metrics, optimizer row, its config); ``_ConfigError`` unless exact."""
    from fastrnn import metrics as metrics_module

    _require(isinstance(cc, dict), "compile_config", "must be a JSON object")
    optimizer, row, opt_cfg = optimizer_from_keras(cc.get("optimizer", "rmsprop"))
    loss = loss_from_keras(cc.get("loss"))
    for key in ("loss_weights", "weighted_metrics"):
        _require(cc.get(key) is None, key, f"{_short(cc.get(key))} is not supported by fastrnn")
    metrics = cc.get("metrics") or []
    _require(isinstance(metrics, list), "metrics", f"{_short(metrics)} is not a list of names")
    names = []
    for m in metrics:
        _require(isinstance(m, str), "metrics", f"metric {_short(m)} has no fastrnn equivalent")
        try:
            names.append(metrics_module.check(m))
        except Exception as exc:
            raise _ConfigError(f"metrics: {exc}") from None
    return optimizer, loss, names, row, opt_cfg


def compile_to_keras(model: Any) -> tuple[dict, OptimizerRow]:
    opt_spec, row = optimizer_to_keras(model.optimizer)
    return {
        "optimizer": opt_spec,
        "loss": loss_to_keras(model.loss),
        "loss_weights": None,
        "metrics": list(model.metrics_names) or None,
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }, row


# ---- models ------------------------------------------------------------------------------------
@dataclass
class _Plan:
    """A model read from a Keras config, before any weight exists.

    Attributes:
        layers: unbuilt fastrnn layers, in the order of Keras's ``model.layers``.
        paths: the HDF5 path of each layer's weights.
        input_shapes: each layer's input shape (batch first), or None where the layer stays
            unbuilt (a model without an input shape).
        assemble: ``assemble(model_class)`` returns the model made of the built ``layers``.
    """

    layers: list
    paths: list[str]
    input_shapes: list[tuple | None]
    assemble: Callable[[type], Any]


def _shape(value: Any, where: str) -> tuple | None:
    if value is None:
        return None
    ok = isinstance(value, list) and 1 <= len(value) <= 32
    ok = ok and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in value
    )
    _require(ok, where, f"must be a list of non-negative ints or nulls, got {_short(value)}")
    return tuple(value)


def _sequential_from_keras(cfg: Any, notes: list[str]) -> _Plan:
    """The plan of a Keras ``Sequential`` config (InputLayer first, if any)."""
    _require(isinstance(cfg, dict), "config", "the Sequential config must be a JSON object")
    specs = cfg.get("layers")
    _require(isinstance(specs, list), "config.layers", "must be a list")
    name = cfg.get("name")
    _require(name is None or isinstance(name, str), "config.name", "must be a string")
    build_shape = _shape(cfg.get("build_input_shape"), "config.build_input_shape")
    layers, classes = [], []
    for i, spec in enumerate(specs):
        where = f"config.layers[{i}]"
        if isinstance(spec, dict) and spec.get("class_name") == "InputLayer":
            _require(i == 0, where, "an InputLayer can only come first")
            icfg = spec.get("config")
            _require(isinstance(icfg, dict), where, "config must be a JSON object")
            shape = icfg.get("batch_shape", icfg.get("batch_input_shape"))
            build_shape = _shape(shape, f"{where}.batch_shape")
            _require(
                not icfg.get("sparse") and not icfg.get("ragged"),
                where,
                "sparse/ragged inputs are not supported",
            )
            continue
        layer = layer_from_keras(spec, where, notes)
        legacy = spec["config"].get("batch_input_shape")
        if not layers and legacy is not None:
            build_shape = _shape(legacy, f"{where}.batch_input_shape")
        layers.append(layer)
        classes.append(spec["class_name"])
    first = next((s for s in specs if s.get("class_name") != "InputLayer"), None)
    if build_shape is None and first is not None and isinstance(first.get("build_config"), dict):
        # A model built without an InputLayer: its first layer's build_config has the shape.
        build_shape = _shape(first["build_config"].get("input_shape"), "build_config.input_shape")
    input_shapes: list[tuple | None] = []
    shape = build_shape
    for i, layer in enumerate(layers):
        input_shapes.append(shape)
        if shape is not None:
            try:
                shape = layer.compute_output_shape(shape)
            except Exception as exc:
                raise _ConfigError(f"config.layers: layer {i} ({layer.name!r}): {exc}") from exc

    def assemble(cls: type) -> Any:
        model = cls(layers, name=name)
        if build_shape is not None and model.built_input_shape is None:
            model.build(build_shape)
        return model

    return _Plan(layers, layer_paths(classes), input_shapes, assemble)


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
    dtype = model.layers[0].dtype.name if model.layers else "float32"
    specs, layer_shape = [], tuple(shape)
    for layer in model.layers:
        specs.append(layer_to_keras(layer, input_shape=layer_shape))
        layer_shape = layer.compute_output_shape(layer_shape)
    input_layer = {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": shape, "dtype": dtype, "sparse": False, "name": "input_layer"},
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

    return [obj for layer in layers for obj in layer_tree(layer) if isinstance(obj, RNN)]


def _stateful(layers: list) -> bool:
    return any(layer.stateful for layer in _recurrent(layers))


def _state_batch(layers: list) -> int | None:
    for layer in _recurrent(layers):
        if layer.stateful and layer.states is not None:
            return int(layer.states[0].shape[0])
    return None


# Keras model class -> (reader, writer). A reader turns the model's Keras config into a _Plan
# (unbuilt layers, their HDF5 paths and input shapes, how to assemble the model); a writer turns
# a fastrnn model into its Keras serialization (config.json without compile_config).
MODELS = {"Sequential": (_sequential_from_keras, _sequential_to_keras)}


# ---- writing -------------------------------------------------------------------------------------
def _model_groups(model: Any) -> list[tuple[str, str | None, list[np.ndarray]]]:
    rows = [row_for_layer(layer) for layer in model.layers]
    groups: list[tuple[str, str | None, list[np.ndarray]]] = [("", model.name, [])]
    for layer, path in zip(model.layers, layer_paths([r.keras for r in rows])):
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
        order = _keras_to_fastrnn_order(row, cfg, n_vars)
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
            f"save: {type(model).__name__} models cannot be written as Keras files yet "
            f"(supported: {', '.join(MODELS)})."
        )
    config = entry[1](model)
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
    for layer in model.layers:
        row_for_layer(layer)
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
    wrapping a Dense) would otherwise be ignored silently.
    """
    names = set(group_paths)
    for path in group_paths:
        group = reader.group(path, required=False)
        if group is None:
            continue
        allowed = {"vars"} | {q[len(path) + 1 :] for q in names if q.rpartition("/")[0] == path}
        extra = sorted(set(reader.keys(group, path)) - allowed)
        if extra:
            raise reader.fail(
                f"{path}/{extra[0]}",
                "weights for a (wrapped) layer the config does not have",
            )


def _layer_expected(reader: H5Reader, layer: Any, path: str) -> tuple[list[Expected], list]:
    expected, nodes = [], []
    groups = weight_groups(layer, path)
    _check_nested_groups(reader, [group_path for group_path, _, _ in groups])
    for group_path, _, _owner in groups:
        for node_path, node in reader.vars(group_path):
            shape, dtype = reader.declare(node, node_path)
            expected.append(Expected(shape, dtype, reader.entry(node_path)))
            nodes.append((node, node_path))
    return expected, nodes


def _check_layer_groups(reader: H5Reader, paths: list[str]) -> None:
    group = reader.group("layers", required=bool(paths))
    if group is None:
        return
    present = {f"layers/{k}" for k in reader.keys(group, "layers")}
    extra = sorted(present - set(paths))
    if extra:
        raise reader.fail(extra[0], "weights for a layer the config does not have")


def _fill_weights(reader: H5Reader, layer_nodes: list, weights: list) -> None:
    arrays = [reader.read(node, path, w.dtype) for (node, path), w in zip(layer_nodes, weights)]
    for w, a in zip(weights, arrays):
        w[...] = a


def _build_from_h5(reader: H5Reader, plan: _Plan, fail: Callable) -> list:
    """Builds the plan's layers against the file's arrays; returns [(layer, [(node, path)])]."""
    _check_layer_groups(reader, plan.paths)
    out: list = []
    for i, (layer, path, shape) in enumerate(zip(plan.layers, plan.paths, plan.input_shapes)):
        expected, nodes = _layer_expected(reader, layer, path)
        weights_plan = WeightPlan(expected, fail, reader.entry(path))
        owner = f"layer {i} ({type(layer).__name__} {layer.name!r})"
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
    order = _keras_to_fastrnn_order(row, cfg, len(variables))
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
    reader_writer = MODELS.get(class_name)
    if reader_writer is None:
        raise z.fail(
            entry,
            f"Keras model class {class_name[:100]!r} is not supported by fastrnn "
            f"(supported: {', '.join(MODELS)})",
        )
    cls = registry.get(class_name)
    if cls is None:
        raise z.fail(entry, f"no fastrnn model class {class_name!r} (import fastrnn.models)")
    try:
        plan = reader_writer[0](config.get("config"), notes)
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
            model = plan.assemble(cls)
        except Exception as exc:
            raise z.fail(entry, f"cannot assemble the model: {exc}") from exc
        for layer, nodes in built:
            _fill_weights(reader, nodes, layer.weights)
        if compile_spec is not None:
            optimizer, loss, metrics, row, opt_cfg = compile_spec
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
            _apply_optimizer_state(model, _optimizer_state(reader, model, row, opt_cfg, notes))
    _warn(notes, path)
    return model


def _model_paths(model: Any) -> list[str]:
    return layer_paths([row_for_layer(layer).keras for layer in model.layers])


def read_weights_into(model: Any, source: Any, fail: Callable, limits: Limits, label: str) -> None:
    """Loads Keras-layout weights from an HDF5 source into a built fastrnn ``model``."""
    h5py = h5py_module()
    paths = _model_paths(model)
    notes: list[str] = []
    with _open_h5(h5py, source, fail, label) as f:
        reader = H5Reader(f, fail, limits, label)
        _check_layer_groups(reader, paths)
        nodes, weights = [], []
        for layer, path in zip(model.layers, paths):
            expected, layer_nodes = _layer_expected(reader, layer, path)
            _match_layer(fail, reader.entry(path), layer, expected)
            nodes.extend(layer_nodes)
            weights.extend(layer.weights)
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


def _match_layer(fail: Callable, where: str, layer: Any, expected: list[Expected]) -> None:
    """Checks a built layer's weights against the arrays a file declares for it."""
    own = layer.weights
    names = [n.split("/", 1)[-1] for n in layer.weight_names]
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
