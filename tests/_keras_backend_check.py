"""fastrnn.keras against stock Keras on the backend named by KERAS_BACKEND (tensorflow or jax).

Keras chooses its backend once per process, so ``test_keras_adapter.py`` runs this module (and
the vendored Keras tests) with pytest in a subprocess per backend; by hand::

    KERAS_BACKEND=jax PYTHONPATH=python python -m pytest tests/_keras_backend_check.py

(the leading underscore keeps it out of the main, torch-backend, collection).

Checks, each against the stock layer with the same weights: outputs and the gradients of the
input, the initial states and every weight (eagerly and compiled: ``tf.function`` / ``jax.jit``)
within float32 rounding of the stock float64 layer; a model with masks and Bidirectional trained
with ``fit`` ends with the stock model's weights; ``.keras`` save and load; a one-time
fallback warning for ``unroll=True``.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
import fastrnn.keras as fk  # noqa: E402
import keras  # noqa: E402
from fastrnn.keras import _layers  # noqa: E402
from harness import assert_close, assert_close_float32  # noqa: E402

BACKEND = keras.backend.backend()
T, B, I, H = 7, 5, 3, 9  # noqa: E741 (the dimension legend)
# Weights are set from NumPy: Keras's random initializers would cost an XLA compilation per
# shape on jax, for nothing.
ZEROS = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}
CALLS = []
_original_fused = _layers.fused


def _counting_fused(*args, **kwargs):
    CALLS.append(args[1])
    return _original_fused(*args, **kwargs)


_layers.fused = _counting_fused


def grads(layer, x, mask, states, compiled):
    """Outputs and gradients (x, states, weights) of a fixed random projection of the outputs."""
    gen = np.random.default_rng(1)
    dtype = layer.dtype
    x = x.astype(dtype)
    states = [s.astype(dtype) for s in states]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def run(x, states):
            with tf.GradientTape() as tape:
                tape.watch(x)
                tape.watch(states)
                outs = layer(x, initial_state=states, mask=mask)
                outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
                loss = sum(tf.reduce_sum(o * w) for o, w in zip(outs, weights))
            return outs, tape.gradient(loss, [x, *states, *layer.trainable_variables])

        outs = layer(x, initial_state=states, mask=mask)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        weights = [gen.standard_normal(o.shape).astype(dtype) for o in outs]
        fn = tf.function(run) if compiled else run
        outs, g = fn(tf.constant(x), [tf.constant(s) for s in states])
    else:
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def forward(trainable, x, states):
            outs, _ = layer.stateless_call(
                trainable, non_trainable, x, initial_state=states, mask=mask
            )
            return list(outs) if isinstance(outs, (list, tuple)) else [outs]

        outs = forward(trainable, x, states)
        weights = [gen.standard_normal(o.shape).astype(dtype) for o in outs]

        def loss(trainable, x, states):
            return sum((o * w).sum() for o, w in zip(forward(trainable, x, states), weights))

        grad = jax.grad(loss, argnums=(0, 1, 2))
        g_w, g_x, g_s = (jax.jit(grad) if compiled else grad)(trainable, x, states)
        g = [g_x, *g_s, *g_w]
    result = {f"out{k}": o for k, o in enumerate(outs)}
    result.update({f"grad{k}": v for k, v in enumerate(g)})
    return {k: np.asarray(keras.ops.convert_to_numpy(v), np.float64) for k, v in result.items()}


def test_layers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype("float32")
    mask = np.arange(T)[None, :] < np.array([T, 3, 1, 5, 6])[:, None]
    cases = [
        ("SimpleRNN", {"return_sequences": True, "go_backwards": True}),
        ("LSTM", {"return_state": True, "recurrent_activation": "hard_sigmoid"}),
        ("GRU", {"reset_after": False, "return_sequences": True, "go_backwards": True}),
    ]
    for kind, kw in cases:
        n_states = 2 if kind == "LSTM" else 1
        states = [rng.standard_normal((B, H)).astype("float32") for _ in range(n_states)]
        ours = getattr(fk, kind)(H, **ZEROS, **kw)
        ours.build(x.shape)
        w = [0.5 * rng.standard_normal(a.shape) for a in ours.get_weights()]
        stock32 = getattr(keras.layers, kind)(H, **ZEROS, **kw)
        stock64 = getattr(keras.layers, kind)(H, dtype="float64", **ZEROS, **kw)
        for layer, dtype in ((ours, "float32"), (stock32, "float32"), (stock64, "float64")):
            layer.build(x.shape)
            layer.set_weights([a.astype(dtype) for a in w])
        expected = grads(stock64, x, mask, states, compiled=True)
        reference = grads(stock32, x, mask, states, compiled=True)
        for compiled in (False, True):  # eagerly, and inside tf.function / jax.jit
            before = len(CALLS)
            actual = grads(ours, x, mask, states, compiled)
            assert len(CALLS) > before, "the fused path did not run"
            for name in expected:
                label = f"{kind} {kw} compiled={compiled} {name}"
                assert_close_float32(actual[name], expected[name], reference[name], name=label)


def model(layers):
    return keras.Sequential(
        [
            keras.Input((T,), dtype="int32"),
            keras.layers.Embedding(20, 6, mask_zero=True, embeddings_initializer="zeros"),
            keras.layers.Bidirectional(layers.LSTM(6, return_sequences=True, **ZEROS)),
            layers.GRU(5, go_backwards=True, **ZEROS),
            keras.layers.Dense(1, kernel_initializer="zeros"),
        ]
    )


def test_fit_and_save():
    rng = np.random.default_rng(2)
    x = rng.integers(1, 20, (16, T))
    x[3, 4:] = 0
    x[7, 1:] = 0
    y = rng.standard_normal((16, 1)).astype("float32")
    ours, stock = model(fk), model(keras.layers)
    weights = [0.4 * rng.standard_normal(w.shape).astype("float32") for w in ours.get_weights()]
    ours.set_weights(weights)
    stock.set_weights(weights)
    for m in (ours, stock):
        m.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    before = len(CALLS)
    h_ours = ours.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert len(CALLS) > before, "fit did not run the fused path"
    h_stock = stock.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(h_ours.history["loss"], h_stock.history["loss"], rtol=2e-5)
    for a, b in zip(ours.get_weights(), stock.get_weights()):
        assert_close(a, b, rtol=0, atol=2e-5 * max(1.0, float(np.abs(b).max())))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        ours.save(path)
        again = keras.models.load_model(path)
    assert isinstance(again.layers[1].forward_layer, fk.LSTM)
    assert_close(again.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=0, atol=1e-6)


def test_fallback_warns_once():
    x = np.random.default_rng(3).standard_normal((B, T, I)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fk.GRU(H, unroll=True, **ZEROS)(x)
        fk.GRU(H, unroll=True, **ZEROS)(x)
    fallbacks = [w for w in caught if issubclass(w.category, fk.FallbackWarning)]
    assert len(fallbacks) == 1 and "unroll=True" in str(fallbacks[0].message), caught


def test_training_dropout_uses_keras_masks():
    """Same seed, same draws: Keras's per-call dropout masks are the ones fastrnn applies."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, I)).astype("float32")
    mask = np.arange(T)[None, :] < np.array([T, 3, 1, 5, 6])[:, None]
    cases = [
        ("SimpleRNN", {"dropout": 0.3, "recurrent_dropout": 0.4, "seed": 7}),
        ("LSTM", {"dropout": 0.3, "seed": 7, "return_sequences": True}),
        ("GRU", {"dropout": 0.3, "seed": 7, "go_backwards": True}),
    ]
    for kind, kw in cases:
        ours = getattr(fk, kind)(H, **ZEROS, **kw)
        stock = getattr(keras.layers, kind)(H, **ZEROS, **kw)
        for layer in (ours, stock):
            layer.build(x.shape)
        weights = [0.5 * rng.standard_normal(w.shape).astype("float32") for w in ours.get_weights()]
        ours.set_weights(weights)
        stock.set_weights(weights)
        before = len(CALLS)
        got = keras.ops.convert_to_numpy(ours(x, mask=mask, training=True))
        assert len(CALLS) > before, "the fused path did not run"
        want = keras.ops.convert_to_numpy(stock(x, mask=mask, training=True))
        assert_close(got, want, rtol=0, atol=5e-6, name=f"{kind} {kw}")
        inference = keras.ops.convert_to_numpy(ours(x, mask=mask))
        assert np.abs(inference - got).max() > 1e-3, "dropout did not apply in training"
