"""Keras-style layers over ``fastrnn.ops``: recurrent layers, Bidirectional, TimeDistributed, core,
reshaping, pooling, convolution, normalization and merge layers, and ``Input``/``InputLayer`` for
the Functional API."""

from __future__ import annotations

from fastrnn.layers.base import Layer
from fastrnn.layers.convolutional import Conv1D
from fastrnn.layers.core import Activation, Dense, Dropout, Embedding, Masking
from fastrnn.layers.input_layer import Input, InputLayer, KerasTensor
from fastrnn.layers.merging import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    maximum,
    multiply,
    subtract,
)
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
LAYER_CLASSES.update(
    {
        cls.__name__: cls
        for cls in (InputLayer, Add, Subtract, Multiply, Average, Maximum, Concatenate)
    }
)


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
    "Activation",
    "Add",
    "Average",
    "Bidirectional",
    "Concatenate",
    "Conv1D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRU",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "Input",
    "InputLayer",
    "KerasTensor",
    "LSTM",
    "Layer",
    "LayerNormalization",
    "Masking",
    "MaxPooling1D",
    "Maximum",
    "Multiply",
    "RNN",
    "RepeatVector",
    "Reshape",
    "SimpleRNN",
    "Subtract",
    "TimeDistributed",
    "add",
    "average",
    "concatenate",
    "deserialize",
    "maximum",
    "multiply",
    "serialize",
    "subtract",
]
