"""fastrnn for Keras 3: ``SimpleRNN``, ``LSTM`` and ``GRU`` layers running fastrnn's kernels.

The layers subclass Keras's own and replace only the recurrence: constructor arguments,
weights (``kernel``, ``recurrent_kernel``, ``bias`` in Keras's layout), config, masking,
states, regularizers, constraints and ``Bidirectional`` wrapping are Keras's, so they work in
``Sequential``, Functional and subclassed models, ``model.fit`` and ``model.save``.

Backends: torch (CPU; CUDA where fastrnn's CUDA path is built), tensorflow (CPU) and jax (CPU),
with gradients on all three; numpy for inference. Configurations fastrnn does not compute
exactly as Keras (``unroll=True``, other activations, mixed precision, Keras's per-gate
dropout masks, TensorFlow/JAX on a GPU) run Keras's own implementation after a one-time
``FallbackWarning``.

``convert(model)`` copies an existing Sequential or Functional model (a freshly loaded
``.keras`` file, say) with fastrnn's layers in place of the stock ones and the same weights.

Saving: a model with fastrnn layers is saved with the stock class names (``keras.layers.LSTM``),
so any Keras installation loads it with its own layers; a process that imported
``fastrnn.keras`` loads it with fastrnn's.

Keras is an optional dependency: ``pip install "fastrnn[keras]"``.

Example:

>>> import numpy as np, keras, fastrnn.keras
>>> model = keras.Sequential([
...     keras.Input((10, 8)),
...     keras.layers.Bidirectional(fastrnn.keras.LSTM(16)),
...     keras.layers.Dense(1),
... ])
>>> model.compile(optimizer="adam", loss="mse")
>>> history = model.fit(np.random.rand(64, 10, 8), np.random.rand(64, 1), verbose=0)
"""

from __future__ import annotations

try:
    import keras
except ImportError as e:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "fastrnn.keras needs Keras 3: pip install 'fastrnn[keras]' (plus a backend: torch, "
        "tensorflow-cpu or jax)"
    ) from e

if not keras.__version__.startswith("3."):  # pragma: no cover
    raise ImportError(f"fastrnn.keras needs Keras 3, found Keras {keras.__version__}")

from fastrnn.keras._layers import GRU, LSTM, FallbackWarning, SimpleRNN, convert

__all__ = ["GRU", "LSTM", "FallbackWarning", "SimpleRNN", "convert"]

del keras
