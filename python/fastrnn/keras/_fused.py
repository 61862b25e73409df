"""One fused fastrnn recurrence as a differentiable operation of each Keras 3 backend.

``fused(rec, arrays)`` takes backend tensors named as ``fastrnn._adapter_core.ARG_NAMES``
(``x`` time-major (T, B, I), weights in Keras's layout, optional states, mask and dropout
masks) and returns ``(outputs (T, B, H), h_last[, c_last])`` as backend tensors, with gradients
for ``x``, the weights and the initial states:

* torch: ``fastrnn.torch``'s ``torch.autograd.Function`` (fastrnn's context is kept from the
  forward to the fused BPTT; CPU tensors cross without copies).
* tensorflow: ``tf.custom_gradient`` around ``tf.numpy_function``; works eagerly and inside
  ``tf.function`` (not under XLA, so the layers set ``supports_jit = False``).
* jax: ``jax.custom_vjp`` around ``jax.pure_callback``; works under ``jax.jit``.
* numpy: a plain call (the numpy backend has no gradients).

TensorFlow's and JAX's graphs cannot carry fastrnn's training context from the forward to the
backward, so there the backward recomputes the forward (``training=True``) and then runs the
fused BPTT: a training step costs one extra forward pass.

Dimension legend: T steps, B batch, I input features, H units.
"""

from __future__ import annotations

import functools

from fastrnn._adapter_core import DIFFERENTIABLE, Recurrence, numpy_backward, numpy_forward


def fused(backend: str, rec: Recurrence, arrays: dict) -> tuple:
    """Runs ``rec`` on the named backend tensors of ``arrays`` (None entries are absent).

    Args:
        backend: ``keras.backend.backend()``.
        rec: the cell and its static options.
        arrays: backend tensors by ``ARG_NAMES`` name (``x``, ``kernel``, ``recurrent_kernel``
            required).

    Returns:
        ``(outputs (T, B, H), h_last (B, H))`` or, for LSTM, ``(outputs, h_last, c_last)``.
    """
    names = tuple(name for name, value in arrays.items() if value is not None)
    values = [arrays[name] for name in names]
    if backend == "torch":
        return _torch(rec, arrays)
    if backend == "tensorflow":
        return _tensorflow(rec, names, values)
    if backend == "jax":
        return _jax(rec, names)(*values)
    if backend == "numpy":
        return numpy_forward(rec, names, *values)
    raise NotImplementedError(f"no fused path for the {backend!r} backend")


def _torch(rec, arrays):
    from fastrnn.torch._autograd import recurrence

    results = recurrence(
        rec,
        arrays["x"],
        arrays["kernel"],
        arrays["recurrent_kernel"],
        arrays.get("bias"),
        arrays.get("h0"),
        arrays.get("c0"),
        arrays.get("mask"),
        arrays.get("dropout_mask"),
        arrays.get("recurrent_dropout_mask"),
    )
    return tuple(results)


def _output_shapes(rec, names, shapes):
    """Static shapes of ``(outputs, h_last[, c_last])`` from the inputs' shapes."""
    by_name = dict(zip(names, shapes))
    steps, batch = by_name["x"][0], by_name["x"][1]
    units = by_name["recurrent_kernel"][0]
    return [(steps, batch, units)] + [(batch, units)] * rec.num_states


def _tensorflow(rec, names, values):
    import tensorflow as tf

    # Read variables here, outside the custom-gradient function: inside it, tf.custom_gradient
    # would treat them as captured variables; read here, gradients reach them via the reads.
    values = [tf.convert_to_tensor(v) for v in values]
    dtype = values[0].dtype
    n_out = 1 + rec.num_states
    forward = functools.partial(numpy_forward, rec, names)
    backward = functools.partial(numpy_backward, rec, names)
    diff_index = [k for k, name in enumerate(names) if name in DIFFERENTIABLE]

    @tf.custom_gradient
    def op(*tensors):
        outputs = tf.numpy_function(forward, list(tensors), [dtype] * n_out, stateful=False)
        for out, shape in zip(outputs, _output_shapes(rec, names, [t.shape for t in tensors])):
            out.set_shape(shape)

        def grad(*upstream):
            cotangents = [
                tf.zeros_like(out) if up is None else tf.cast(up, dtype)
                for up, out in zip(upstream, outputs)
            ]
            grads = tf.numpy_function(
                backward,
                list(tensors) + cotangents,
                [tensors[k].dtype for k in diff_index],
                stateful=False,
            )
            full = [None] * len(tensors)
            for k, g in zip(diff_index, grads):
                g.set_shape(tensors[k].shape)
                full[k] = g
            return full

        return list(outputs), grad

    return tuple(op(*values))


@functools.cache
def _jax(rec, names):
    """The ``jax.custom_vjp`` function of ``rec`` with positional arguments named ``names``."""
    import jax

    diff_index = [k for k, name in enumerate(names) if name in DIFFERENTIABLE]
    forward = functools.partial(numpy_forward, rec, names)
    backward = functools.partial(numpy_backward, rec, names)

    def result_shapes(arrays):
        dtype = arrays[0].dtype
        shapes = _output_shapes(rec, names, [a.shape for a in arrays])
        return tuple(jax.ShapeDtypeStruct(shape, dtype) for shape in shapes)

    @jax.custom_vjp
    def op(*arrays):
        return jax.pure_callback(forward, result_shapes(arrays), *arrays, vmap_method="sequential")

    def op_fwd(*arrays):
        return op(*arrays), arrays

    def op_bwd(arrays, cotangents):
        shapes = tuple(jax.ShapeDtypeStruct(arrays[k].shape, arrays[k].dtype) for k in diff_index)
        grads = jax.pure_callback(backward, shapes, *arrays, *cotangents, vmap_method="sequential")
        full = [None] * len(arrays)
        for k, g in zip(diff_index, grads):
            full[k] = g
        return tuple(full)

    op.defvjp(op_fwd, op_bwd)
    return op
