"""The ``.fastrnn`` format: a zip of JSON and ``.npy`` arrays, never pickle.

Layout (any file name works; ``.fastrnn`` by convention)::

    metadata.json        {"format": "fastrnn.model", "version": 1}
    config.json          {"class_name": "Sequential", "config": model.get_config()}
    compile.json         optimizer (class_name, config), iterations, built, loss, metrics; or null
    weights/index.json   weight names, in get_weights() order
    weights/00000.npy    model weights, in get_weights() order
    optimizer/00000.npy  optimizer slot arrays, variable by variable, slot by slot

A weights-only file (``save_weights``) holds ``metadata.json`` (format ``fastrnn.weights``) and
the ``weights/`` entries. Arrays are written uncompressed by ``np.save(allow_pickle=False)``;
JSON entries are deflated. Reading goes through ``SafeZip``: every declared size is checked
before any data is read, arrays' headers are checked (float32/float64 only, shape within the
budget) before their data, and a config's layer sizes are checked against the arrays' declared
shapes before any weight is allocated.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import numpy as np

from fastrnn import losses, optimizers
from fastrnn.saving._archive import ModelFileError, NpyHeader, SafeZip, check_float_dtype
from fastrnn.saving._build import Expected, WeightPlan, build_checked

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
        compile_config = {
            "optimizer": optimizers.serialize(model.optimizer),
            "iterations": int(iterations),
            "built": model.optimizer.slots is not None,
            "loss": losses.serialize(model.loss),
            "metrics": list(model.metrics_names),
        }
    config = {"class_name": type(model).__name__, "config": model.get_config()}
    with zipfile.ZipFile(fileobj, "w") as zf:
        _write_json(zf, "metadata.json", {"format": FORMAT, "version": VERSION})
        _write_json(zf, "config.json", config)
        _write_json(zf, "compile.json", compile_config)
        _write_weights(zf, model)
        for i, a in enumerate(opt_arrays):
            _write_array(zf, f"optimizer/{i:05d}.npy", a)


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


def _shape_arg(value: Any, z: SafeZip, entry: str, key: str) -> tuple | None:
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= 32:
        raise z.fail(entry, f"{key} must be a list of ints or nulls, got {str(value)[:200]}")
    for d in value:
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 0):
            raise z.fail(entry, f"{key} must be a list of ints or nulls, got {str(value)[:200]}")
    return tuple(value)


def _layer_label(i: int, spec: Any) -> str:
    if isinstance(spec, dict):
        cfg = spec.get("config")
        name = cfg.get("name") if isinstance(cfg, dict) else None
        return f"layers[{i}] ({spec.get('class_name')!s:.60} {str(name)[:60]!r})"
    return f"layers[{i}]"


def _sequential(z: SafeZip, cls: type, config: Any, headers: list[NpyHeader]) -> Any:
    """Rebuilds a Sequential with each layer's weights checked against the file before building."""
    from fastrnn.layers import deserialize

    entry = "config.json"
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise z.fail(entry, "the Sequential config must be a dict with a 'layers' list")
    name = config.get("name")
    if name is not None and not isinstance(name, str):
        raise z.fail(entry, f"the model name must be a string, got {str(name)[:100]}")
    shape = _shape_arg(config.get("build_input_shape"), z, entry, "build_input_shape")
    layers = []
    for i, spec in enumerate(config["layers"]):
        try:
            layers.append(deserialize(spec))
        except Exception as exc:
            raise z.fail(entry, f"{_layer_label(i, spec)}: {exc}") from exc
    first = layers[0]._input_shape_arg if layers else None
    if shape is not None and first is not None and tuple(shape[1:]) != tuple(first):
        raise z.fail(
            entry,
            f"{_layer_label(0, config['layers'][0])}: input_shape {first} disagrees with the "
            f"model's build_input_shape {shape}",
        )
    plan = WeightPlan(
        [Expected(h.shape, h.dtype, h.entry) for h in headers], lambda e, m: z.fail(e, m)
    )
    if shape is None and layers and layers[0]._input_shape_arg is not None:
        shape = (None,) + tuple(layers[0]._input_shape_arg)
    if shape is not None:
        for i, layer in enumerate(layers):
            owner = f"config.json {_layer_label(i, config['layers'][i])}"
            try:
                build_checked(layer, shape, plan, owner)
                shape = layer.compute_output_shape(shape)
            except ModelFileError:
                raise
            except Exception as exc:
                raise z.fail(entry, f"{owner}: cannot build it: {exc}") from exc
    plan.finish("the model")
    try:
        model = cls(layers, name=name)
        if model.built_input_shape is None and config.get("build_input_shape") is not None:
            model.build(tuple(config["build_input_shape"]))
    except Exception as exc:
        raise z.fail(entry, f"cannot assemble the model: {exc}") from exc
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
    if class_name == "Sequential":
        return _sequential(z, cls, config, headers)
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
    for key, kind in (("optimizer", dict), ("loss", dict), ("metrics", list)):
        if not isinstance(spec.get(key), kind):
            raise z.fail(entry, f"{key!r} must be a JSON {kind.__name__}")
    iterations, built = spec.get("iterations", 0), spec.get("built", False)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise z.fail(entry, f"'iterations' must be a non-negative int, got {iterations!r}")
    if not isinstance(built, bool):
        raise z.fail(entry, f"'built' must be true or false, got {built!r}")
    try:
        model.compile(
            optimizer=optimizers.deserialize(spec["optimizer"]),
            loss=losses.deserialize(spec["loss"]),
            metrics=spec["metrics"],
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
