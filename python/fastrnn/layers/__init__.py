"""Keras-style layers over ``fastrnn.ops``: recurrent layers, Bidirectional, TimeDistributed, core,
reshaping, pooling, convolution and normalization layers."""

from __future__ import annotations

from fastrnn.layers.base import Layer
from fastrnn.layers.convolutional import Conv1D
from fastrnn.layers.core import Activation, Dense, Dropout, Embedding, Masking
from fastrnn.layers.normalization import LayerNormalization
from fastrnn.layers.pooling import GlobalAveragePooling1D, GlobalMaxPooling1D, MaxPooling1D
from fastrnn.layers.recurrent import GRU, LSTM, RNN, SimpleRNN
from fastrnn.layers.reshaping import Flatten, RepeatVector, Reshape
from fastrnn.layers.time_distributed import TimeDistributed
from fastrnn.layers.wrappers import Bidirectional

LAYER_CLASSES = {
    cls.__name__: cls
    for cls in (
        Dense,
        Dropout,
        Embedding,
        Masking,
        SimpleRNN,
        LSTM,
        GRU,
        Bidirectional,
        Activation,
        Conv1D,
        Flatten,
        GlobalAveragePooling1D,
        GlobalMaxPooling1D,
        LayerNormalization,
        MaxPooling1D,
        RepeatVector,
        Reshape,
        TimeDistributed,
    )
}


def serialize(layer: Layer) -> dict:
    """``{"class_name": ..., "config": ...}`` for a layer (JSON-compatible)."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(spec: dict) -> Layer:
    """Rebuilds a layer from ``serialize``'s output.

    Raises:
        ValueError: unknown class name (the valid ones are listed) or malformed spec.
    """
    if not isinstance(spec, dict) or "class_name" not in spec or "config" not in spec:
        raise ValueError(f"A layer spec needs 'class_name' and 'config', got {spec!r}.")
    cls = LAYER_CLASSES.get(spec["class_name"])
    if cls is None:
        raise ValueError(
            f"Unknown layer class {spec['class_name']!r}. Known: {', '.join(LAYER_CLASSES)}."
        )
    return cls.from_config(dict(spec["config"]))


__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Activation",
    "Bidirectional",
    "Conv1D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "Layer",
    "LayerNormalization",
    "Masking",
    "MaxPooling1D",
    "RepeatVector",
    "Reshape",
    "SimpleRNN",
    "TimeDistributed",
    "deserialize",
    "serialize",
]
