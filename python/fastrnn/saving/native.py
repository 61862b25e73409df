"""The ``.fastrnn`` format: a zip of JSON and ``.npy`` arrays, never pickle.

Layout (any file name works; ``.fastrnn`` by convention)::

    metadata.json        {"format": "fastrnn.model", "version": 1}
    config.json          {"class_name": "Sequential" or "Model", "config": model.get_config()}
    compile.json         optimizer (class_name, config), iterations, built, and compile's other
                         arguments (``Model.get_compile_config``: loss, loss_weights, metrics,
                         weighted_metrics, per output where given so); or null
    weights/index.json   weight names, in get_weights() order
    weights/00000.npy    model weights, in get_weights() order
    optimizer/00000.npy  optimizer slot arrays, variable by variable, slot by slot

A weights-only file (``save_weights``) holds ``metadata.json`` (format ``fastrnn.weights``) and
the ``weights/`` entries. Arrays are written uncompressed by ``np.save(allow_pickle=False)``;
JSON entries are deflated. Reading goes through ``SafeZip``: every declared size is checked
before any data is read, arrays' headers are checked (float32/float64 only, shape within the
budget) before their data, and a config's layer sizes are checked against the arrays' declared
shapes before any weight is allocated — for Functional models too, whose graphs are resolved and
their shapes propagated (``fastrnn.saving._graph``) before any layer is built.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import numpy as np

from fastrnn import optimizers
from fastrnn.saving._archive import ModelFileError, NpyHeader, SafeZip, check_float_dtype
from fastrnn.saving._build import Expected, WeightPlan, build_checked
from fastrnn.saving._graph import (
    MAX_NESTING,
    Context,
    Entry,
    GraphError,
    MaskOps,
    MaskSimulation,
    flatten,
    graph_nodes,
    keras_order,
    parse_graph,
)

FORMAT = "fastrnn.model"
WEIGHTS_FORMAT = "fastrnn.weights"
VERSION = 1

_ENTRY = re.compile(r"(weights|optimizer)/\d{5}\.npy")
_FIXED = {"metadata.json", "config.json", "compile.json", "weights/index.json"}


def _allowed(name: str) -> bool:
    return name in _FIXED or _ENTRY.fullmatch(name) is not None


# ---- writing ---------------------------------------------------------------------------------
def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _json_bytes(obj: Any, what: str) -> bytes:
    try:
        return json.dumps(obj, indent=1, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save: the {what} cannot be written as JSON ({exc}).") from None


def _write_json(zf: zipfile.ZipFile, name: str, obj: Any) -> None:
    zf.writestr(name, _json_bytes(obj, name), compress_type=zipfile.ZIP_DEFLATED)


def _write_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    # Stored, not deflated: trained weights barely compress, and a stored entry can never
    # trip the loader's compression-ratio bound.
    zf.writestr(name, _npy_bytes(array), compress_type=zipfile.ZIP_STORED)


def _write_weights(zf: zipfile.ZipFile, model: Any) -> None:
    names = [n for layer in model.layers for n in layer.weight_names]
    _write_json(zf, "weights/index.json", names)
    for i, w in enumerate(model.get_weights()):
        _write_array(zf, f"weights/{i:05d}.npy", w)


def write_model(model: Any, fileobj: Any) -> None:
    """Writes config, weights and optimizer state of a built ``model`` to ``fileobj``."""
    compile_config = None
    opt_arrays: list[np.ndarray] = []
    if model.compiled:
        iterations, opt_arrays = model.optimizer.get_state()
        given = model.get_compile_config()
        compile_config = {
            "optimizer": optimizers.serialize(model.optimizer),
            "iterations": int(iterations),
            "built": model.optimizer.slots is not None,
            "loss": given["loss"],
            "loss_weights": _numbers(given.get("loss_weights")),
            "metrics": _metric_names(given.get("metrics")),
            "weighted_metrics": _metric_names(given.get("weighted_metrics")),
        }
    config = {"class_name": type(model).__name__, "config": model.get_config()}
    with zipfile.ZipFile(fileobj, "w") as zf:
        _write_json(zf, "metadata.json", {"format": FORMAT, "version": VERSION})
        _write_json(zf, "config.json", config)
        _write_json(zf, "compile.json", compile_config)
        _write_weights(zf, model)
        for i, a in enumerate(opt_arrays):
            _write_array(zf, f"optimizer/{i:05d}.npy", a)


def _numbers(value: Any) -> Any:
    """Loss weights as JSON numbers (NumPy scalars included), in their structure."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_numbers(v) for v in value]
    return None if value is None else float(value)


def _metric_names(value: Any) -> Any:
    """Metrics as names (functions and metric objects by their name), in their structure."""
    from fastrnn.models import _metric_name

    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _metric_names(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_metric_names(v) for v in value]
    return value if isinstance(value, str) else _metric_name(value)


def write_weights(model: Any, fileobj: Any) -> None:
    """Writes only the weights (format ``fastrnn.weights``)."""
    with zipfile.ZipFile(fileobj, "w") as zf:
        _write_json(zf, "metadata.json", {"format": WEIGHTS_FORMAT, "version": VERSION})
        _write_weights(zf, model)


# ---- reading ---------------------------------------------------------------------------------
def is_native_metadata(meta: Any) -> bool:
    return isinstance(meta, dict) and meta.get("format") in (FORMAT, WEIGHTS_FORMAT)


def check_archive(z: SafeZip, meta: dict) -> None:
    """Checks a fastrnn file's version and entry names (``meta`` is its metadata.json).

    Raises:
        ModelFileError: an unsupported version or an unexpected entry.
    """
    version = meta.get("version")
    if version != VERSION or isinstance(version, bool):
        raise z.fail("metadata.json", f"unsupported fastrnn file version {str(version)[:50]}")
    z.check_names(_allowed, "fastrnn file")


def _numbered(z: SafeZip, prefix: str) -> list[str]:
    """The entries ``prefix/00000.npy`` ... in order; gaps are errors."""
    names = sorted(n for n in z.names() if n.startswith(prefix + "/") and n.endswith(".npy"))
    for i, name in enumerate(names):
        if name != f"{prefix}/{i:05d}.npy":
            raise z.fail(name, f"{prefix}/ entries must be numbered from 00000 without gaps")
    return names


def _weight_headers(z: SafeZip) -> tuple[list[str], list[NpyHeader]]:
    names = z.read_json("weights/index.json")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise z.fail("weights/index.json", "must be a list of weight names")
    entries = _numbered(z, "weights")
    if len(entries) != len(names):
        raise z.fail(
            "weights/index.json",
            f"names {len(names)} weights but the archive holds {len(entries)} weight arrays",
        )
    return names, [z.npy_header(e) for e in entries]


# ---- models: Sequential and Functional -------------------------------------------------------
_MODEL_CLASSES = ("Sequential", "Model", "Functional")


def _native_plan(spec: dict, where: str, ctx: Context) -> Any:
    """The plan (``keras_format._Plan``) of a model in a fastrnn config: its layers unbuilt, in
    fastrnn's weight order, each with its input shape."""
    from fastrnn.saving.keras_format import _ConfigError

    if ctx.depth >= MAX_NESTING:
        raise _ConfigError(f"{where}: models nest more than {MAX_NESTING} levels deep")
    config = spec.get("config")
    if not isinstance(config, dict):
        raise _ConfigError(f"{where}: the model config must be a JSON object")
    ctx.depth += 1
    try:
        if spec.get("class_name") == "Sequential":
            return _native_sequential_plan(config, where, ctx)
        return _native_functional_plan(config, where, ctx)
    finally:
        ctx.depth -= 1


def _native_layer(spec: Any, where: str, ctx: Context) -> Any:
    from fastrnn.layers import deserialize
    from fastrnn.saving.keras_format import _ConfigError

    if isinstance(spec, dict) and spec.get("class_name") in _MODEL_CLASSES:
        return _native_plan(spec, where, ctx)
    if not isinstance(spec, dict):
        raise _ConfigError(f"{where}: a layer must be a JSON object")
    try:
        return deserialize({"class_name": spec.get("class_name"), "config": spec.get("config")})
    except Exception as exc:
        raise _ConfigError(f"{_layer_label_at(where, spec)}: {exc}") from exc


def _layer_label_at(where: str, spec: Any) -> str:
    if isinstance(spec, dict):
        cfg = spec.get("config")
        name = cfg.get("name") if isinstance(cfg, dict) else None
        return f"{where} ({spec.get('class_name')!s:.60} {str(name)[:60]!r})"
    return where


def _native_sequential_plan(config: dict, where: str, ctx: Context) -> Any:
    from fastrnn.saving.keras_format import _check_call_shapes, _ConfigError, _Plan

    specs = config.get("layers")
    if not isinstance(specs, list):
        raise _ConfigError(f"{where}: a Sequential config needs a 'layers' list")
    try:
        ctx.budget.take(len(specs), where)
    except GraphError as exc:
        raise _ConfigError(str(exc)) from None
    name = config.get("name")
    if name is not None and not isinstance(name, str):
        raise _ConfigError(f"{where}: the model name must be a string")
    dtype = config.get("input_dtype", "float32")
    if not isinstance(dtype, str):
        raise _ConfigError(f"{where}: input_dtype must be a string")
    layers = []
    shape = None
    for i, spec in enumerate(specs):
        layer = _native_layer(spec, f"{where}.layers[{i}]", ctx)
        if type(layer).__name__ == "InputLayer":
            if i != 0:
                raise _ConfigError(f"{where}.layers[{i}]: an InputLayer can only come first")
            shape, dtype = tuple(layer.batch_shape), layer.dtype.name
            continue
        layers.append(layer)
    given = config.get("build_input_shape")
    if given is not None:
        if not isinstance(given, list):
            raise _ConfigError(f"{where}: build_input_shape must be a list")
        shape = _shape_arg_plain(given, f"{where}.build_input_shape")
    first = layers[0] if layers else None
    first_arg = getattr(first, "_input_shape_arg", None)
    if shape is not None and first_arg is not None and tuple(shape[1:]) != tuple(first_arg):
        raise _ConfigError(
            f"{where}.layers[0]: input_shape {first_arg} disagrees with the model's "
            f"build_input_shape {shape}"
        )
    if shape is None and first_arg is not None:
        shape = (None,) + tuple(first_arg)
    plan = _Plan(layers, [""] * len(layers), [], lambda registry: None, "Sequential", name)
    plan.input_dtype = dtype
    trainable = config.get("trainable", True)

    def shaped(in_shape: tuple | None) -> None:
        plan.input_shapes = []
        current = in_shape
        for i, layer in enumerate(layers):
            here = f"{where}.layers[{i}]"
            if isinstance(layer, _Plan):
                plan.input_shapes.append(None)
                if current is not None:
                    _check_call_shapes(layer, [current], here)
                    current = (current[0],) + tuple(layer.out_shapes[0][1:])
                continue
            plan.input_shapes.append(current)
            if current is not None:
                try:
                    out = layer.compute_output_shape(current)
                except Exception as exc:
                    raise _ConfigError(f"{_layer_label_at(here, specs[i])}: {exc}") from exc
                current = out if isinstance(out, tuple) else tuple(out[0])
        if in_shape is not None:
            plan.set_chain(layers, in_shape, dtype)

    shaped(shape)
    plan.shaped = shaped if shape is None else None

    def assemble(registry: dict) -> Any:
        model = registry["Sequential"](
            [item.model_for(registry) if isinstance(item, _Plan) else item for item in layers],
            name=name,
        )
        if plan.in_shapes and model.built_input_shape is None:
            model.build(plan.in_shapes[0], dtype=dtype)
        if trainable is False:
            model.trainable = False
        return model

    plan.assemble = assemble
    return plan


def _shape_arg_plain(value: list, where: str) -> tuple:
    from fastrnn.saving.keras_format import _ConfigError

    if not 1 <= len(value) <= 32 or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in value
    ):
        raise _ConfigError(f"{where}: must be a list of ints or nulls, got {str(value)[:200]}")
    return tuple(value)


def _native_entry(spec: Any, where: str, position: int, ctx: Context) -> Entry:
    from fastrnn.saving.keras_format import _ConfigError, _parse_nodes, _Plan

    if not isinstance(spec, dict):
        raise _ConfigError(f"{where}: a layer must be a JSON object")
    name = spec.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise _ConfigError(f"{where}: bad layer name {str(name)[:100]!r}")
    layer = _native_layer(spec, where, ctx)
    where = _layer_label_at(where, spec)
    if isinstance(layer, _Plan):
        return Entry(
            name,
            "model",
            layer,
            _parse_nodes(spec, where, "model"),
            position,
            where,
            dtype=list(layer.out_dtypes),
        )
    if layer.name != name:
        raise _ConfigError(f"{where}: the layer is named {layer.name!r} in its config")
    if type(layer).__name__ == "InputLayer":
        if spec.get("inbound_nodes"):
            raise _ConfigError(f"{where}: an InputLayer is not called")
        return Entry(name, "input", layer, [], position, where, dtype=layer.dtype.name)
    nodes = _parse_nodes(spec, where, "layer")
    return Entry(name, "layer", layer, nodes, position, where, dtype=layer.dtype.name)


def _native_functional_plan(config: dict, where: str, ctx: Context) -> Any:
    from fastrnn.saving.keras_format import _call_shapes, _ConfigError, _Plan, _replay

    name = config.get("name")
    if name is not None and not isinstance(name, str):
        raise _ConfigError(f"{where}: the model name must be a string")
    trainable = config.get("trainable", True)
    if not isinstance(trainable, bool):
        raise _ConfigError(f"{where}: trainable must be true or false")
    try:
        graph = parse_graph(
            config,
            where,
            lambda spec, here, position: _native_entry(spec, here, position, ctx),
            _call_shapes,
            ctx,
            object(),
        )
        for call in graph.calls:
            call.keep = dict(call.kwargs)  # fastrnn's own calls, replayed as they were
        # fastrnn's order: Keras's algorithm on the graph as recorded (no mask operations).
        unrun = MaskSimulation(MaskOps(ctx.shape), ctx.dtype_of, None, None)
        producer = graph_nodes(graph.calls, unrun, graph.alias)
        in_keys, out_keys = flatten(graph.inputs), flatten(graph.outputs)
        order = keras_order(producer, in_keys, out_keys, where)
    except GraphError as exc:
        raise _ConfigError(str(exc)) from None
    entry_of = {id(e.obj): e for e in graph.entries}
    shapes = [
        entry_of[id(obj)].build_shape if entry_of[id(obj)].kind == "layer" else None
        for obj in order
    ]
    plan = _Plan(order, [""] * len(order), shapes, lambda registry: None, "Functional", name)
    plan.input_dtype = graph.dtypes[in_keys[0]]
    plan.in_shapes = [graph.shapes[k] for k in in_keys]
    plan.out_shapes = [graph.shapes[k] for k in out_keys]
    plan.out_dtypes = [graph.dtypes[k] for k in out_keys]
    plan.assemble = lambda registry: _replay(graph, registry, registry["Model"], name, trainable)
    return plan


def _build_plan(z: SafeZip, plan: Any, weights: WeightPlan, created: list) -> None:
    """Builds a plan's layers in fastrnn's weight order against the file's arrays."""
    from fastrnn.saving.keras_format import _Plan

    for layer, shape in zip(plan.layers, plan.input_shapes):
        if isinstance(layer, _Plan):
            _build_plan(z, layer, weights, created)
            continue
        if type(layer).__name__ == "InputLayer":
            continue
        owner = f"config.json layer {layer.name!r} ({type(layer).__name__})"
        if shape is None:
            continue  # stays unbuilt (a Sequential model without an input shape)
        try:
            build_checked(layer, shape, weights, owner)
        except ModelFileError:
            raise
        except Exception as exc:
            raise z.fail("config.json", f"{owner}: cannot build it: {exc}") from exc
        created.extend(layer.weights)


def _rebuild(
    z: SafeZip, registry: dict, class_name: str, config: Any, headers: list[NpyHeader]
) -> Any:
    """Rebuilds a Sequential or Functional model (nested models included) with every layer's
    weights checked against the file before the layer is built."""
    from fastrnn.saving.keras_format import _ConfigError

    if not isinstance(config, dict) or (
        class_name == "Sequential" and not isinstance(config.get("layers"), list)
    ):
        raise z.fail("config.json", f"the {class_name} config must be a dict with a 'layers' list")
    ctx = Context()
    try:
        plan = _native_plan({"class_name": class_name, "config": config}, "config", ctx)
    except _ConfigError as exc:
        raise z.fail("config.json", str(exc)) from None
    weights = WeightPlan(
        [Expected(h.shape, h.dtype, h.entry) for h in headers], lambda e, m: z.fail(e, m)
    )
    created: list = []
    _build_plan(z, plan, weights, created)
    weights.finish("the model")
    try:
        model = plan.model_for(registry)
    except _ConfigError as exc:
        raise z.fail("config.json", str(exc)) from None
    except Exception as exc:
        raise z.fail("config.json", f"cannot assemble the model: {exc}") from exc
    if [id(w) for w in model.weights] != [id(w) for w in created]:
        raise z.fail("config.json", "the model's weights are not in the order the file holds")
    return model


def _fill(z: SafeZip, arrays: list[np.ndarray], headers: list[NpyHeader]) -> None:
    for target, header in zip(arrays, headers):
        target[...] = z.read_npy(header)


def _model_from_config(z: SafeZip, registry: dict, headers: list[NpyHeader]) -> Any:
    spec = z.read_json("config.json")
    if isinstance(spec, dict) and "class_name" in spec:
        class_name, config = spec["class_name"], spec.get("config")
    else:  # written before config.json named its class: always a Sequential
        class_name, config = "Sequential", spec
    if not isinstance(class_name, str):
        raise z.fail("config.json", f"class_name must be a string, got {str(class_name)[:100]}")
    cls = registry.get(class_name)
    if cls is None:
        raise z.fail(
            "config.json",
            f"holds a {class_name[:100]!r} model; known model classes: "
            f"{', '.join(registry) or 'none (import fastrnn.models)'}",
        )
    if class_name in ("Sequential", "Model", "Functional"):
        return _rebuild(z, registry, class_name, config, headers)
    try:  # other registered classes build themselves (weights then checked by shape)
        model = cls.from_config(config)
    except Exception as exc:
        raise z.fail("config.json", f"invalid {class_name} config: {exc}") from exc
    weights = model.weights
    if [w.shape for w in weights] != [h.shape for h in headers]:
        raise z.fail(
            "weights/index.json",
            f"the weights' shapes {[h.shape for h in headers]} do not match the config's "
            f"{[w.shape for w in weights]}",
        )
    return model


def _restore_compile(z: SafeZip, model: Any) -> None:
    entry = "compile.json"
    spec = z.read_json(entry) if entry in z else None
    opt_entries = _numbered(z, "optimizer")
    if spec is None:
        if opt_entries:
            raise z.fail(opt_entries[0], "optimizer state in a file without compile.json")
        return
    if not isinstance(spec, dict):
        raise z.fail(entry, "must be an object or null")
    for key, kinds in (
        ("optimizer", (dict,)),
        ("loss", (dict, list, str)),
        ("metrics", (list, dict, type(None))),
        ("weighted_metrics", (list, dict, type(None))),
        ("loss_weights", (list, dict, float, int, type(None))),
    ):
        if not isinstance(spec.get(key), kinds) or isinstance(spec.get(key), bool):
            names = "/".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise z.fail(entry, f"{key!r} must be a JSON {names}")
    iterations, built = spec.get("iterations", 0), spec.get("built", False)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise z.fail(entry, f"'iterations' must be a non-negative int, got {iterations!r}")
    if not isinstance(built, bool):
        raise z.fail(entry, f"'built' must be true or false, got {built!r}")
    try:
        model.compile_from_config(
            {
                "optimizer": optimizers.deserialize(spec["optimizer"]),
                "loss": spec["loss"],
                "loss_weights": spec.get("loss_weights"),
                "metrics": spec.get("metrics"),
                "weighted_metrics": spec.get("weighted_metrics"),
            }
        )
    except Exception as exc:
        raise z.fail(entry, f"cannot compile the model from it: {exc}") from exc
    optimizer = model.optimizer
    if not built:
        if opt_entries:
            raise z.fail(opt_entries[0], "optimizer state for an optimizer marked unbuilt")
        optimizer.iterations = iterations
        return
    variables = model.trainable_weights
    optimizer.build(variables)
    _, slots = optimizer.get_state()
    if len(slots) != len(opt_entries):
        raise z.fail(
            entry,
            f"the {type(optimizer).__name__} optimizer keeps {len(slots)} state arrays for this "
            f"model; the file holds {len(opt_entries)}",
        )
    headers = [z.npy_header(e) for e in opt_entries]
    for slot, header in zip(slots, headers):
        if header.shape != slot.shape or check_float_dtype(header.dtype) != slot.dtype:
            raise z.fail(
                header.entry,
                f"optimizer state of shape {header.shape} ({header.dtype.name}); the model "
                f"needs {slot.shape} ({slot.dtype.name})",
            )
    optimizer.set_state(iterations, [z.read_npy(h) for h in headers], variables)


def read_model(z: SafeZip, meta: dict, registry: dict, compile: bool) -> Any:
    """Loads a model from an opened, checked fastrnn file (see the module docstring)."""
    if meta["format"] != FORMAT:
        raise z.fail("metadata.json", "holds only weights; use model.load_weights()")
    _, headers = _weight_headers(z)
    model = _model_from_config(z, registry, headers)
    _fill(z, model.weights, headers)
    if compile:
        _restore_compile(z, model)
    return model


def read_weights_into(model: Any, z: SafeZip) -> None:
    """Loads the weights of an opened fastrnn file into a built ``model``."""
    names, headers = _weight_headers(z)
    weights = model.weights
    if len(weights) != len(headers):
        raise z.fail(
            "weights/index.json",
            f"holds {len(headers)} weights; model {model.name!r} has {len(weights)}",
        )
    for i, (w, h) in enumerate(zip(weights, headers)):
        if w.shape != h.shape:
            raise z.fail(
                h.entry,
                f"weight {names[i]!r} has shape {h.shape}; the model's weight has {w.shape}",
            )
        if check_float_dtype(h.dtype) != w.dtype:
            raise z.fail(
                h.entry, f"weight {names[i]!r} is {h.dtype.name}; the model's is {w.dtype.name}"
            )
    arrays = [z.read_npy(h) for h in headers]  # all read before any is written
    for w, a in zip(weights, arrays):
        w[...] = a
