"""CUDA kernels (``fastrnn._cuda`` through ``fastrnn.ops`` on CuPy arrays) against the reference.

Skips cleanly without CuPy, without the CUDA module, or without a usable GPU. Every cell and
option is compared with ``fastrnn.reference`` in float64 (``FLOAT64_RTOL``) and float32 (the
conftest rule: a small multiple of the reference's own float32 error); bad input is one table.

Dimension legend: T steps, B batch, I input features, H units, G gates.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FLOAT64_RTOL, assert_close, assert_close_float32, assert_unmodified
from shapes import SHAPE_IDS, SHAPES, Shape

cp = pytest.importorskip("cupy")

from fastrnn import _backend, ops, reference  # noqa: E402

if not _backend.cuda_available():
    pytest.skip(f"CUDA backend unavailable: {_backend.cuda_status()}", allow_module_level=True)

_cuda = _backend.for_array(cp.zeros(1)).module.ext

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}

# (id, cell, cell keyword arguments)
CELL_CONFIGS = [
    ("simple_rnn", "simple_rnn", {}),
    ("lstm", "lstm", {}),
    ("gru-after", "gru", {"reset_after": True}),
    ("gru-before", "gru", {"reset_after": False}),
]

# (id, options): which optional inputs a case uses.
OPTIONS = [
    ("plain", {}),
    ("bias-h0", {"bias": True, "initial_state": True}),
    ("mask", {"bias": True, "mask": True}),
    ("backwards", {"bias": True, "go_backwards": True, "initial_state": True}),
    ("dropout", {"bias": True, "dropout": True, "recurrent_dropout": True}),
    (
        "everything",
        {
            "bias": True,
            "initial_state": True,
            "mask": True,
            "go_backwards": True,
            "dropout": True,
            "recurrent_dropout": True,
        },
    ),
]


def _weights(rng, cell, shape: Shape, cell_kwargs, opts):
    """Random inputs of realistic scale (distinct per unit, so indexing bugs show)."""
    T, B, I, H = shape  # noqa: E741 (the dimension legend)
    G = GATES[cell]
    a = {
        "x": rng.standard_normal((T, B, I)),
        "kernel": rng.standard_normal((I, G * H)) / np.sqrt(I),
        "recurrent_kernel": rng.standard_normal((H, G * H)) / np.sqrt(H),
    }
    if opts.get("bias"):
        two = cell == "gru" and cell_kwargs.get("reset_after", True)
        a["bias"] = 0.5 * rng.standard_normal((2, G * H) if two else (G * H,))
    if opts.get("initial_state"):
        a["initial_state"] = [rng.standard_normal((B, H))]
        if cell == "lstm":
            a["initial_state"].append(rng.standard_normal((B, H)))
    if opts.get("mask"):
        mask = rng.random((T, B)) < 0.7
        mask[0, 0] = False  # a masked first step (the "previous output" is zero)
        a["mask"] = mask
    if opts.get("dropout"):
        a["dropout_mask"] = (rng.random((B, I)) < 0.8) / 0.8
    if opts.get("recurrent_dropout"):
        a["recurrent_dropout_mask"] = (rng.random((B, H)) < 0.7) / 0.7
    return a


def _upstream(rng, cell, shape: Shape):
    T, B, _, H = shape
    d_outputs = rng.standard_normal((T, B, H))
    d_final = [rng.standard_normal((B, H)) for _ in range(2 if cell == "lstm" else 1)]
    return d_outputs, d_final


def _cast(a, dtype, xp):
    """Arrays (and lists of arrays) as `dtype` on `xp` (masks stay bool)."""
    if isinstance(a, list):
        return [_cast(v, dtype, xp) for v in a]
    if isinstance(a, np.ndarray) and a.dtype != np.bool_:
        return xp.asarray(a.astype(dtype))
    if isinstance(a, np.ndarray):
        return xp.asarray(a)
    return a


def _host(a):
    if isinstance(a, (list, tuple)):
        return [_host(v) for v in a]
    return None if a is None else cp.asnumpy(a)


def _run(module, cell, arrays, kwargs, d_outputs, d_final):
    """Forward (training) and backward through `module` (reference or ops)."""
    forward = getattr(module, f"{cell}_forward")
    backward = getattr(module, f"{cell}_backward")
    args = dict(arrays)
    x, k, r = args.pop("x"), args.pop("kernel"), args.pop("recurrent_kernel")
    outputs, final, ctx = forward(x, k, r, **args, **kwargs, training=True)
    grads = backward(ctx, d_outputs, d_final)
    return outputs, final, grads


def _results(outputs, final, grads):
    """Flat {name: array} of everything a case produces."""
    out = {"outputs": outputs}
    for k, s in enumerate(final):
        out[f"final_states[{k}]"] = s
    out.update(dx=grads.dx, dkernel=grads.dkernel, drecurrent_kernel=grads.drecurrent_kernel)
    if grads.dbias is not None:
        out["dbias"] = grads.dbias
    for k, s in enumerate(grads.dinitial_state):
        out[f"dinitial_state[{k}]"] = s
    return out


def _kwargs(cell_kwargs, opts):
    kw = dict(cell_kwargs)
    if opts.get("go_backwards"):
        kw["go_backwards"] = True
    return kw


def _check_case(rng, cell, cell_kwargs, shape, opts, dtype, extra_kwargs=None):
    base = _weights(rng, cell, shape, cell_kwargs, opts)
    d_outputs, d_final = _upstream(rng, cell, shape)
    kwargs = {**_kwargs(cell_kwargs, opts), **(extra_kwargs or {})}
    # Expected: the float64 reference on the (dtype-rounded) inputs.
    rounded = {k: _cast(v, dtype, np) for k, v in base.items()}
    d_out_r, d_fin_r = _cast(d_outputs, dtype, np), _cast(d_final, dtype, np)
    expected = _results(
        *_run(
            reference,
            cell,
            {k: _cast(v, np.float64, np) for k, v in rounded.items()},
            kwargs,
            d_out_r.astype(np.float64),
            [d.astype(np.float64) for d in d_fin_r],
        )
    )
    dev = {k: _cast(v, dtype, cp) for k, v in rounded.items()}
    before = {k: _host(v) for k, v in dev.items()}
    outputs, final, grads = _run(
        ops, cell, dev, kwargs, cp.asarray(d_out_r), [cp.asarray(d) for d in d_fin_r]
    )
    assert isinstance(outputs, cp.ndarray) and outputs.dtype == dtype
    actual = {k: _host(v) for k, v in _results(outputs, final, grads).items()}
    assert_unmodified(before, {k: _host(v) for k, v in dev.items()}, "inputs")
    assert actual.keys() == expected.keys()
    if dtype == np.float64:
        for name in expected:
            assert_close(actual[name], expected[name], rtol=FLOAT64_RTOL, name=name)
    else:
        ref32 = _results(*_run(reference, cell, rounded, kwargs, d_out_r, d_fin_r))
        for name in expected:
            assert_close_float32(actual[name], expected[name], ref32[name], name=name)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("opt_id,opts", OPTIONS, ids=[o[0] for o in OPTIONS])
@pytest.mark.parametrize("cfg_id,cell,cell_kwargs", CELL_CONFIGS, ids=[c[0] for c in CELL_CONFIGS])
def test_parity_float64(rng, cfg_id, cell, cell_kwargs, opt_id, opts, shape):
    _check_case(rng, cell, cell_kwargs, shape, opts, np.float64)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("opt_id,opts", OPTIONS, ids=[o[0] for o in OPTIONS])
@pytest.mark.parametrize("cfg_id,cell,cell_kwargs", CELL_CONFIGS, ids=[c[0] for c in CELL_CONFIGS])
def test_parity_float32(rng, cfg_id, cell, cell_kwargs, opt_id, opts, shape):
    _check_case(rng, cell, cell_kwargs, shape, opts, np.float32)


ACTIVATION_CASES = [
    ("simple_rnn", {"activation": "relu"}),
    ("simple_rnn", {"activation": "linear"}),
    ("lstm", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
    ("lstm", {"activation": "linear", "recurrent_activation": "sigmoid"}),
    ("gru", {"reset_after": True, "activation": "relu", "recurrent_activation": "hard_sigmoid"}),
    ("gru", {"reset_after": False, "activation": "tanh", "recurrent_activation": "hard_sigmoid"}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell,cell_kwargs", ACTIVATION_CASES)
def test_activations(rng, cell, cell_kwargs, dtype):
    _check_case(rng, cell, cell_kwargs, Shape(7, 5, 33, 17), {"bias": True, "mask": True}, dtype)


@pytest.mark.parametrize("cfg_id,cell,cell_kwargs", CELL_CONFIGS, ids=[c[0] for c in CELL_CONFIGS])
def test_larger_than_one_tile(rng, cfg_id, cell, cell_kwargs):
    """Sizes past the 64-wide product tiles and the 16-row step blocks, odd everywhere."""
    _check_case(
        rng, cell, cell_kwargs, Shape(9, 37, 70, 67), {"bias": True, "mask": True}, np.float64
    )


@pytest.mark.parametrize("cfg_id,cell,cell_kwargs", CELL_CONFIGS, ids=[c[0] for c in CELL_CONFIGS])
def test_empty_sizes(rng, cfg_id, cell, cell_kwargs):
    """T == 0 returns the initial states; B == 0 returns empty arrays (as on the CPU)."""
    for shape in (Shape(0, 3, 4, 5), Shape(4, 0, 4, 5)):
        _check_case(
            rng, cell, cell_kwargs, shape, {"bias": True, "initial_state": True}, np.float64
        )


def test_inference_matches_training(rng):
    a = _cast(_weights(rng, "lstm", Shape(7, 5, 33, 17), {}, {"bias": True}), np.float64, cp)
    x, k, r, b = a["x"], a["kernel"], a["recurrent_kernel"], a["bias"]
    out_i, fin_i, ctx = ops.lstm_forward(x, k, r, b)
    out_t, fin_t, _ = ops.lstm_forward(x, k, r, b, training=True)
    assert ctx is None
    assert np.array_equal(_host(out_i), _host(out_t))
    assert np.array_equal(_host(fin_i[1]), _host(fin_t[1]))


def test_non_contiguous_inputs_are_copied(rng):
    a = _weights(rng, "gru", Shape(7, 5, 33, 17), {}, {"bias": True})
    x = cp.asarray(np.asfortranarray(a["x"]))
    k = cp.asarray(a["kernel"])
    r = cp.asarray(a["recurrent_kernel"])
    b = cp.asarray(a["bias"])
    out, _, _ = ops.gru_forward(x, k, r, b)
    expected, _, _ = reference.gru_forward(a["x"], a["kernel"], a["recurrent_kernel"], a["bias"])
    assert_close(_host(out), expected, rtol=FLOAT64_RTOL, name="outputs")


def test_runs_on_current_stream(rng):
    a = _cast(_weights(rng, "simple_rnn", Shape(7, 5, 33, 17), {}, {}), np.float32, cp)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        out, _, _ = ops.simple_rnn_forward(a["x"], a["kernel"], a["recurrent_kernel"])
    stream.synchronize()
    expected, _, _ = ops.simple_rnn_forward(a["x"], a["kernel"], a["recurrent_kernel"])
    assert np.array_equal(_host(out), _host(expected))


# ---- bad input ----------------------------------------------------------------------------


def _small(dtype=np.float32):
    rng = np.random.default_rng(0)
    T, B, I, H = 3, 2, 4, 5  # noqa: E741 (the dimension legend)
    return (
        cp.asarray(rng.standard_normal((T, B, I)).astype(dtype)),
        cp.asarray(rng.standard_normal((I, H)).astype(dtype)),
        cp.asarray(rng.standard_normal((H, H)).astype(dtype)),
    )


def _raw_forward(x, k, r, **overrides):
    T, B, _ = x.shape
    H = r.shape[0]
    kw = dict(
        outputs=cp.empty((T, B, H), x.dtype),
        h_last=cp.empty((B, H), x.dtype),
        scratch=cp.empty((4096,), x.dtype),
        stream=cp.cuda.get_current_stream().ptr,
    )
    kw.update(overrides)
    return _cuda.forward("simple_rnn", x, k, r, **kw)


def _bad_cases():
    x, k, r = _small()
    x64, k64, r64 = _small(np.float64)
    return [
        # (id, call, exception, message pattern)
        (
            "numpy-kernel",
            lambda: ops.simple_rnn_forward(x, cp.asnumpy(k), r),
            TypeError,
            "mixing NumPy and CuPy",
        ),
        (
            "numpy-x",
            lambda: ops.simple_rnn_forward(cp.asnumpy(x), k, cp.asnumpy(r)),
            TypeError,
            "mixing NumPy and CuPy",
        ),
        (
            "numpy-h0",
            lambda: ops.simple_rnn_forward(x, k, r, initial_state=[np.zeros((2, 5))]),
            TypeError,
            "mixing NumPy and CuPy",
        ),
        (
            "numpy-mask",
            lambda: ops.simple_rnn_forward(x, k, r, mask=np.ones((3, 2), bool)),
            TypeError,
            "mixing NumPy and CuPy",
        ),
        ("mixed-dtype", lambda: ops.simple_rnn_forward(x, k64, r), TypeError, "dtype"),
        (
            "float16",
            lambda: ops.simple_rnn_forward(x.astype(cp.float16), k, r),
            TypeError,
            "float32 or float64",
        ),
        (
            "int-mask",
            lambda: ops.simple_rnn_forward(x, k, r, mask=cp.ones((3, 2), cp.int32)),
            TypeError,
            "mask must have dtype bool",
        ),
        ("bad-kernel-shape", lambda: ops.simple_rnn_forward(x, k[:3], r), ValueError, "kernel"),
        (
            "raw-numpy",
            lambda: _raw_forward(cp.asnumpy(x), k, r),
            TypeError,
            "x must be a CUDA device array",
        ),
        (
            "raw-non-contiguous",
            lambda: _raw_forward(x[:, :, ::2], k[::2], r),
            ValueError,
            "C-contiguous",
        ),
        ("raw-dtype", lambda: _raw_forward(x, k64, r), TypeError, "kernel must have dtype float32"),
        (
            "raw-output-shape",
            lambda: _raw_forward(x, k, r, h_last=cp.empty((2, 4), cp.float32)),
            ValueError,
            "h_last must have shape",
        ),
        (
            "raw-scratch",
            lambda: _raw_forward(x, k, r, scratch=cp.empty((1,), cp.float32)),
            ValueError,
            "scratch must hold",
        ),
        (
            "raw-cell",
            lambda: _cuda.forward("rnn", x64, k64, r64, outputs=x64, h_last=x64, scratch=x64),
            ValueError,
            "cell must be one of",
        ),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input(case):
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call()


def test_wrong_device():
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    x, k, r = _small()
    with cp.cuda.Device(1):
        k1 = cp.asarray(k)
    with pytest.raises(ValueError, match="device"):
        ops.simple_rnn_forward(x, k1, r)


def test_host_memory_is_refused():
    """A __cuda_array_interface__ that points at host memory is a ValueError, not a crash."""
    x, k, r = _small()
    host = np.zeros((3, 2, 4), np.float32)

    class HostExport:
        __cuda_array_interface__ = {
            "shape": host.shape,
            "typestr": "<f4",
            "data": (host.ctypes.data, False),
            "strides": None,
            "version": 3,
        }

    with pytest.raises(ValueError, match="not in device memory"):
        _raw_forward(HostExport(), k, r, outputs=cp.empty((3, 2, 5), cp.float32))
