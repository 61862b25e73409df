"""fastrnn: fused recurrent-network kernels with a Keras-style API over NumPy."""

from importlib import metadata as _metadata

from fastrnn import (
    callbacks,
    initializers,
    layers,
    losses,
    metrics,
    ops,
    optimizers,
    reference,
    utils,
)
from fastrnn._backend import _cpu
from fastrnn.initializers import set_random_seed
from fastrnn.layers import (
    GRU,
    LSTM,
    Activation,
    Bidirectional,
    Conv1D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    Input,
    LayerNormalization,
    Masking,
    MaxPooling1D,
    RepeatVector,
    Reshape,
    SimpleRNN,
    TimeDistributed,
)
from fastrnn.models import Model, Sequential, load_model

try:  # the installed distribution's version (pyproject.toml is the one place it is written)
    __version__ = _metadata.version("fastrnn")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    """``fastrnn.wrappers`` (scikit-learn) and ``fastrnn.tuner`` (keras-tuner) are imported on
    first use, so ``import fastrnn`` never imports their optional dependencies."""
    if name in ("wrappers", "tuner"):
        import importlib

        return importlib.import_module(f"fastrnn.{name}")
    raise AttributeError(f"module 'fastrnn' has no attribute {name!r}")


def set_num_threads(n: int) -> None:
    """Sets the number of threads of the CPU kernels (``0`` restores the default).

    The default is OpenMP's: ``OMP_NUM_THREADS`` when set, else the number of cores. Results are
    bitwise identical for any thread count.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    _cpu.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the CPU kernels use."""
    return _cpu.get_num_threads()


__all__ = [
    "Activation",
    "Bidirectional",
    "Conv1D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRU",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "Input",
    "LSTM",
    "LayerNormalization",
    "Masking",
    "MaxPooling1D",
    "Model",
    "RepeatVector",
    "Reshape",
    "Sequential",
    "SimpleRNN",
    "TimeDistributed",
    "callbacks",
    "get_num_threads",
    "initializers",
    "layers",
    "load_model",
    "losses",
    "metrics",
    "ops",
    "optimizers",
    "reference",
    "set_num_threads",
    "set_random_seed",
    "utils",
    "__version__",
]
