"""Model files: fastrnn's own ``.fastrnn`` zips and Keras 3's ``.keras`` / ``.weights.h5`` files.

Which format is written depends on the file name:

=====================  ==========================================  =============================
name ends with         ``save`` / ``save_model``                   ``save_weights``
=====================  ==========================================  =============================
``.keras``             Keras 3 archive (needs h5py)                error: use ``save``
``.weights.h5``        error: use ``save_weights``                 Keras 3 weights (needs h5py)
``.h5``, ``.hdf5``     error: legacy Keras HDF5 is not supported   error: use ``.weights.h5``
anything else          ``.fastrnn`` zip (JSON + ``.npy``)          fastrnn weights zip
=====================  ==========================================  =============================

Loading looks at the content, not the name: a fastrnn zip, a Keras archive or (weights only) an
HDF5 file. No format ever involves pickle.

Files are treated as untrusted. ``load_model``/``load_weights`` check every declared size before
inflating or reading anything (``max_bytes``, default 4 GiB in all; ``max_entries``, default
10,000; ``max_ratio``, default 100 for entries above 1 MiB), check array headers (float32/float64
only; big-endian floats are converted to native order, everything else — complex, int, bool,
object, structured, float16 — is rejected, never cast) and check each layer's config against the
weights in the file before allocating anything. Every problem with a file's content raises
``ModelFileError``, a ``ValueError`` whose message names the file and the entry; a missing file
raises ``FileNotFoundError``.

Model classes register themselves with ``register_model`` (``fastrnn.models`` does so for
``Sequential`` and the Functional ``Model``); ``config.json`` names the class it was written
from. Functional models' graphs are resolved, their shapes propagated and, for Keras files, their
recorded masks checked before any layer is built (``fastrnn.saving._graph``; see
``docs/saving.md``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any, Callable

from fastrnn.saving import keras_format, native
from fastrnn.saving._archive import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_RATIO,
    Limits,
    ModelFileError,
    SafeZip,
)
from fastrnn.saving.native import FORMAT, VERSION, WEIGHTS_FORMAT

_MODEL_CLASSES: dict[str, type] = {}

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def register_model(cls: type) -> type:
    """Class decorator: lets ``load_model`` rebuild models of ``cls`` (by its ``__name__``).

    The class needs ``get_config``/``from_config``, ``get_weights``/``set_weights``, ``layers``,
    ``weights``, ``trainable_weights``, ``built``, ``compiled``, ``optimizer``, ``loss``,
    ``metrics_names`` and ``compile``.
    """
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


# ---- file names ----------------------------------------------------------------------------------
def _name(filepath: Any) -> str:
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"filepath must be a str or os.PathLike, got {type(filepath).__name__}.")
    return os.fspath(filepath)


def _kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".keras"):
        return "keras"
    if lower.endswith(".weights.h5"):
        return "weights.h5"
    if lower.endswith((".h5", ".hdf5")):
        return "h5"
    return "fastrnn"


def _write_atomically(path: str, write: Callable[[Any], None]) -> None:
    """Writes through a temporary file in the same folder, then renames it over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastrnn-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _require_built(model: Any, what: str) -> None:
    if not model.built:
        raise ValueError(f"{what}: the model is not built; call it on data or build() first.")


# ---- saving --------------------------------------------------------------------------------------
def save_model(model: Any, filepath: str | os.PathLike) -> None:
    """Writes ``model`` (config, weights and, when compiled, optimizer state) to ``filepath``.

    Args:
        model: a built model.
        filepath: ``*.keras`` writes a Keras 3 archive that ``keras.models.load_model`` opens as
            stock Keras layers (needs h5py, the ``h5`` extra); any other name except ``.h5`` /
            ``.hdf5`` / ``.weights.h5`` writes a ``.fastrnn`` zip. An existing file is replaced
            only once the new one is complete.

    Raises:
        ValueError: the model is not built; ``.h5``/``.weights.h5`` names; for ``.keras``, a
            layer, optimizer or loss without a Keras mapping, a stateful model whose batch size
            is unknown, or a Functional model where Keras would hand a layer another mask than
            fastrnn does (a masked output of a nested model merged with another masked tensor).
        TypeError: ``filepath`` is not a path.
        ImportError: ``.keras`` without h5py.

    Example:
        >>> model.save("forecaster.keras")    # keras.models.load_model() reads it
        >>> model.save("forecaster.fastrnn")  # fastrnn's own format
    """
    path = _name(filepath)
    _require_built(model, "save")
    kind = _kind(path)
    if kind == "weights.h5":
        raise ValueError(
            f"save: {path!r} names a weights file; use save_weights() for .weights.h5, or a "
            ".keras name for the whole model."
        )
    if kind == "h5":
        raise ValueError(
            f"save: {path!r}: the legacy Keras HDF5 model format is not supported; use a "
            ".keras name (Keras 3's format) or .fastrnn."
        )
    if kind == "keras":
        keras_format.h5py_module()
        keras_format.model_config(model)  # every class mapped, before a file is touched
        _write_atomically(path, lambda f: keras_format.write_archive(model, f))
    else:
        _write_atomically(path, lambda f: native.write_model(model, f))


def save_weights(model: Any, filepath: str | os.PathLike) -> None:
    """Writes only the weights of ``model`` (and, for Keras files, the optimizer's state).

    Args:
        model: a built model.
        filepath: ``*.weights.h5`` writes Keras 3's weights layout (``keras`` models'
            ``load_weights`` reads it; needs h5py); other names except ``.keras`` / ``.h5`` write
            a fastrnn weights zip.

    Raises:
        ValueError: the model is not built, a ``.keras`` or plain ``.h5`` name, or a layer
            without a Keras mapping.
        ImportError: ``.weights.h5`` without h5py.
    """
    path = _name(filepath)
    _require_built(model, "save_weights")
    kind = _kind(path)
    if kind == "keras":
        raise ValueError(
            f"save_weights: {path!r} is a .keras name; use save() for a whole model, or a "
            ".weights.h5 name for Keras weights."
        )
    if kind == "h5":
        raise ValueError(
            f"save_weights: {path!r}: Keras weights files must end in .weights.h5 (as Keras "
            "requires)."
        )
    if kind == "weights.h5":
        keras_format.h5py_module()
        keras_format.check_mappable(model)
        _write_atomically(path, lambda f: keras_format.write_weights(model, f))
    else:
        _write_atomically(path, lambda f: native.write_weights(model, f))


# ---- loading -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _reported(path: str) -> Iterator[None]:
    """Turns anything unexpected raised while reading ``path`` into a ModelFileError."""
    try:
        yield
    except (
        ModelFileError,
        ImportError,
        MemoryError,
        FileNotFoundError,
        PermissionError,
        IsADirectoryError,
    ):
        raise
    except Exception as exc:
        raise ModelFileError(path, None, f"{type(exc).__name__}: {exc}") from exc


def _is_hdf5(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == _HDF5_SIGNATURE


def _open_zip(path: str, limits: Limits) -> tuple[SafeZip, dict, str]:
    """(archive, metadata, ``"fastrnn"`` or ``"keras"``) for a zip model file."""
    z = SafeZip(path, limits, "fastrnn or Keras model file")
    try:
        meta = z.read_json("metadata.json")
        if native.is_native_metadata(meta):
            native.check_archive(z, meta)
            return z, meta, "fastrnn"
        if keras_format.is_keras_metadata(meta):
            z.check_names(keras_format._allowed, "Keras archive")
            return z, meta, "keras"
        raise z.fail(
            "metadata.json",
            f"not a fastrnn or Keras model file (metadata {str(meta)[:200]})",
        )
    except BaseException:
        z.close()
        raise


def load_model(
    filepath: str | os.PathLike,
    *,
    compile: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Any:
    """Loads a model from a ``.fastrnn`` file or a Keras 3 ``.keras`` archive.

    The format is recognised from the content. A Keras archive may hold the layers listed in
    ``fastrnn.saving.keras_format.LAYERS`` in a ``Sequential`` or Functional model (several
    inputs and outputs, shared layers, merge layers, masks, nested models); its
    ``compile_config`` is restored (per-output losses, loss weights and metrics, optimizer state
    included) when fastrnn has the same optimizer, losses and metrics, else the model is
    returned uncompiled with a warning, as Keras does with unknown compile objects.

    Args:
        filepath: the file.
        compile: default True: restore the optimizer, loss, metrics and optimizer state.
        max_bytes: most bytes the file's entries (and HDF5 arrays) may declare in all; default
            4 GiB. Raise it for larger trusted models.
        max_entries: most zip entries / HDF5 arrays; default 10,000.
        max_ratio: most inflated/compressed size ratio of an entry above 1 MiB; default 100.

    Returns:
        The model, with the file's weights.

    Raises:
        ModelFileError: (a ValueError) anything wrong with the file: not a model file, corrupt,
            beyond the limits, a config fastrnn cannot honour, a Keras layer or model class
            fastrnn lacks (named), a graph that does not resolve (unknown layers, indices out of
            range, cycles, duplicate names, a mask fastrnn cannot replay), weights inconsistent
            with the config or of the wrong dtype. The message names the file and the entry.
        FileNotFoundError: no such file.
        ImportError: a Keras archive without h5py (the ``h5`` extra).
        TypeError, ValueError: bad limits.

    Example:
        >>> model = load_model("model.keras")   # trained in Keras, served with NumPy
        >>> model.predict(x).shape
    """
    path = _name(filepath)
    limits = Limits.checked(max_bytes, max_entries, max_ratio)
    with _reported(path):
        if _is_hdf5(path):
            raise ModelFileError(
                path,
                None,
                "an HDF5 file, not a model archive: Keras weights (.weights.h5) load with "
                "model.load_weights(); legacy Keras .h5 models are not supported (re-save the "
                "model in Keras as .keras)",
            )
        z, meta, kind = _open_zip(path, limits)
        with z:
            if kind == "fastrnn":
                return native.read_model(z, meta, _MODEL_CLASSES, bool(compile))
            return keras_format.read_archive(z, _MODEL_CLASSES, bool(compile))


def load_weights(
    model: Any,
    filepath: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> None:
    """Loads weights into a built ``model`` from a fastrnn file, a ``.keras`` archive or a Keras
    ``.weights.h5`` file (recognised from the content).

    Every array is checked (shape, dtype) before any weight is written, so a failed load leaves
    the model unchanged. Keras files also restore the optimizer's state when the model is
    compiled with the same optimizer.

    Args:
        model: a built model.
        filepath: the file.
        max_bytes, max_entries, max_ratio: limits, as for ``load_model``.

    Raises:
        ModelFileError: (a ValueError) a corrupt or foreign file, or weights that do not fit the
            model; names the file and the entry.
        ValueError: the model is not built.
        FileNotFoundError: no such file.
        ImportError: a Keras file without h5py.
    """
    path = _name(filepath)
    limits = Limits.checked(max_bytes, max_entries, max_ratio)
    _require_built(model, "load_weights")
    with _reported(path):
        if _is_hdf5(path):
            source, fail, label = keras_format.open_weights_h5(path, limits)
            keras_format.read_weights_into(model, source, fail, limits, label)
            return
        z, meta, kind = _open_zip(path, limits)
        with z:
            if kind == "fastrnn":
                native.read_weights_into(model, z)
            else:
                keras_format.read_weights_into(
                    model,
                    z.window(keras_format.ARCHIVE_WEIGHTS),
                    z.fail,
                    limits,
                    keras_format.ARCHIVE_WEIGHTS,
                )


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_RATIO",
    "FORMAT",
    "VERSION",
    "WEIGHTS_FORMAT",
    "Limits",
    "ModelFileError",
    "load_model",
    "load_weights",
    "register_model",
    "save_model",
    "save_weights",
]
