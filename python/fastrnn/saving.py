"""Model files: a zip of JSON and .npy arrays, never pickle.

Layout of a ``.fastrnn`` file (any file name works)::

    metadata.json      {"format": "fastrnn.model", "version": 1}
    config.json        Sequential.get_config(): layer classes and their arguments
    compile.json       optimizer (class_name, config, iterations), loss, metrics; or null
    weights/00000.npy  model weights, in get_weights() order (names in weights/index.json)
    optimizer/00000.npy  optimizer slot arrays, variable by variable, slot by slot

Arrays are written with ``np.save(allow_pickle=False)`` and read with
``np.load(allow_pickle=False)``, so a file can hold no Python objects.

This module knows file formats, not model classes: model classes register themselves with
``register_model`` (``fastrnn.models`` does so for ``Sequential``), and ``config.json`` names the
class it was written from.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from typing import Any

import numpy as np

from fastrnn import losses, optimizers

_MODEL_CLASSES: dict[str, type] = {}


def register_model(cls: type) -> type:
    """Class decorator: lets ``load_model`` rebuild models of ``cls`` (by its ``__name__``).

    The class needs ``get_config``/``from_config``, ``get_weights``/``set_weights``, ``layers``,
    ``built``, ``compiled``, ``optimizer``, ``loss``, ``metrics_names`` and ``compile``.
    """
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


FORMAT = "fastrnn.model"
WEIGHTS_FORMAT = "fastrnn.weights"
VERSION = 1


def _write_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    zf.writestr(name, buf.getvalue())


def _read_array(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(name) as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


def _read_json(zf: zipfile.ZipFile, name: str) -> Any:
    return json.loads(zf.read(name).decode("utf-8"))


def _open(filepath: str, expected: tuple) -> tuple[zipfile.ZipFile, dict]:
    try:
        zf = zipfile.ZipFile(filepath, "r")
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{filepath!r} is not a fastrnn model file (not a zip: {exc}).") from None
    try:
        meta = _read_json(zf, "metadata.json")
    except (KeyError, ValueError, UnicodeDecodeError):
        zf.close()
        raise ValueError(f"{filepath!r} is not a fastrnn file (no valid metadata.json).") from None
    if not isinstance(meta, dict) or meta.get("format") not in expected:
        zf.close()
        raise ValueError(f"{filepath!r} is not a fastrnn file (format {meta!r}).")
    if meta.get("version") != VERSION:
        zf.close()
        raise ValueError(f"{filepath!r}: unsupported fastrnn file version {meta.get('version')!r}.")
    return zf, meta


def _write_weights(zf: zipfile.ZipFile, model: Any) -> None:
    names = [n for layer in model.layers for n in layer.weight_names]
    zf.writestr("weights/index.json", json.dumps(names))
    for i, w in enumerate(model.get_weights()):
        _write_array(zf, f"weights/{i:05d}.npy", w)


def _read_weights(zf: zipfile.ZipFile) -> list[np.ndarray]:
    names = _read_json(zf, "weights/index.json")
    return [_read_array(zf, f"weights/{i:05d}.npy") for i in range(len(names))]


def save_model(model: Any, filepath: str) -> None:
    """Writes config, weights and optimizer state of ``model`` to ``filepath``.

    Raises:
        ValueError: the model is not built.
    """
    if not model.built:
        raise ValueError("save: the model is not built; call it on data or build() first.")
    compile_config = None
    opt_arrays: list[np.ndarray] = []
    if model.compiled:
        iterations, opt_arrays = model.optimizer.get_state()
        compile_config = {
            "optimizer": optimizers.serialize(model.optimizer),
            "iterations": iterations,
            "built": model.optimizer.slots is not None,
            "loss": losses.serialize(model.loss),
            "metrics": list(model.metrics_names),
        }
    with zipfile.ZipFile(filepath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", json.dumps({"format": FORMAT, "version": VERSION}))
        config = {"class_name": type(model).__name__, "config": model.get_config()}
        zf.writestr("config.json", json.dumps(config, indent=1))
        zf.writestr("compile.json", json.dumps(compile_config, indent=1))
        _write_weights(zf, model)
        for i, a in enumerate(opt_arrays):
            _write_array(zf, f"optimizer/{i:05d}.npy", a)


def load_model(filepath: str) -> Any:
    """Reads a model written by ``save_model``: same config, weights and optimizer state.

    Raises:
        ValueError: the file is corrupt, not a zip or not a fastrnn model.
        FileNotFoundError: no such file.
    """
    zf, _ = _open(filepath, (FORMAT,))
    with zf:
        try:
            config = _read_json(zf, "config.json")
            compile_config = _read_json(zf, "compile.json")
            weights = _read_weights(zf)
            n_opt = len([n for n in zf.namelist() if n.startswith("optimizer/")])
            opt_arrays = [_read_array(zf, f"optimizer/{i:05d}.npy") for i in range(n_opt)]
        except (KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, OSError) as exc:
            raise ValueError(f"{filepath!r} is a corrupt fastrnn model file: {exc}") from None
    try:
        if isinstance(config, dict) and "class_name" in config:
            class_name, config = config["class_name"], config["config"]
        else:  # written before config.json named its class: always a Sequential
            class_name = "Sequential"
        cls = _MODEL_CLASSES.get(class_name)
        if cls is None:
            raise ValueError(
                f"{filepath!r} holds a {class_name!r} model; known model classes: "
                f"{', '.join(_MODEL_CLASSES) or 'none (import fastrnn.models)'}."
            )
        model = cls.from_config(config)
        model.set_weights(weights)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{filepath!r} holds an invalid model config: {exc}") from None
    if compile_config is not None:
        model.compile(
            optimizer=optimizers.deserialize(compile_config["optimizer"]),
            loss=losses.deserialize(compile_config["loss"]),
            metrics=compile_config["metrics"],
        )
        if compile_config.get("built"):
            model.optimizer.set_state(
                compile_config["iterations"], opt_arrays, model.trainable_weights
            )
        else:
            model.optimizer.iterations = int(compile_config["iterations"])
    return model


def save_weights(model: Any, filepath: str) -> None:
    """Writes only the weights (same zip layout, format ``fastrnn.weights``)."""
    if not model.built:
        raise ValueError("save_weights: the model is not built.")
    with zipfile.ZipFile(filepath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", json.dumps({"format": WEIGHTS_FORMAT, "version": VERSION}))
        _write_weights(zf, model)


def load_weights(model: Any, filepath: str) -> None:
    """Loads weights from a file written by ``save_weights`` or ``save_model``.

    Raises:
        ValueError: corrupt or foreign file, or weights that do not fit the model.
    """
    zf, _ = _open(filepath, (FORMAT, WEIGHTS_FORMAT))
    with zf:
        try:
            weights = _read_weights(zf)
        except (KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, OSError) as exc:
            raise ValueError(f"{filepath!r} is a corrupt fastrnn file: {exc}") from None
    model.set_weights(weights)
