"""What only the CUDA backend has: streams, devices, device memory, CuPy-specific bad input.

The parity of the CUDA kernels with the reference is in test_parity.py (the same cases as the
CPU's, through the ``backend`` fixture). This module skips with its reason where the CUDA backend
is unusable; ``FASTRNN_EXPECT_GPU=1`` (set by bench/gpu_session.sh) makes that a failure.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from harness import FLOAT64_RTOL, assert_close, require_backend

DEVICE = require_backend("cuda", module_level=True)  # a skip (or failure) with the reason
cp = DEVICE.xp
_cuda = DEVICE.module

from fastrnn import ops, reference  # noqa: E402


def _small(dtype=np.float32, T=3, B=2, n_in=4, H=5, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((T, B, n_in)).astype(dtype),
        (rng.standard_normal((n_in, H)) * 0.5).astype(dtype),
        (rng.standard_normal((H, H)) * 0.5).astype(dtype),
    )


def _raw_forward(x, k, r, **overrides):
    T, B, _ = x.shape
    H = r.shape[0]
    kw = dict(
        outputs=cp.empty((T, B, H), x.dtype),
        h_last=cp.empty((B, H), x.dtype),
        stream=cp.cuda.get_current_stream().ptr,
    )
    kw.update(overrides)
    return _cuda.forward("simple_rnn", x, k, r, **kw)


# ---- streams -----------------------------------------------------------------------------------

_SPIN = r"""
extern "C" __global__ void spin(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}
"""


def _busy(stream, seconds: float) -> None:
    """Keeps `stream` busy for about `seconds` (one thread spinning on the GPU clock)."""
    kernel = cp.RawKernel(_SPIN, "spin")
    khz = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["clockRate"]
    with stream:
        kernel((1,), (1,), (np.int64(khz * 1000 * seconds),))


def test_work_is_enqueued_on_the_given_stream():
    """Target stream made busy first: the call's results must not appear before the stream
    reaches them. Work on any other stream (the legacy default one included, since the target
    is non-blocking) would have finished long before the check."""
    x, k, r = (cp.asarray(a) for a in _small(T=6, B=3))
    out = cp.full((6, 3, 5), np.nan, np.float32)
    h_last = cp.full((3, 5), np.nan, np.float32)
    cp.cuda.Device().synchronize()
    target = cp.cuda.Stream(non_blocking=True)
    _busy(target, 1.0)
    _raw_forward(x, k, r, outputs=out, h_last=h_last, stream=target.ptr)
    time.sleep(0.2)  # far longer than the call's kernels need, far shorter than the spin
    observer = cp.cuda.Stream(non_blocking=True)
    with observer:
        early = cp.asnumpy(out, stream=observer)
    observer.synchronize()
    assert np.isnan(early).all(), "the kernels ran before the busy target stream reached them"
    target.synchronize()
    want = reference.simple_rnn_forward(*(cp.asnumpy(a) for a in (x, k, r)))[0]
    assert_close(cp.asnumpy(out), want, rtol=1e-5, name="outputs")


def test_ops_use_cupys_current_stream():
    x, k, r = (cp.asarray(a) for a in _small(np.float64))
    stream = cp.cuda.Stream(non_blocking=True)
    _busy(stream, 0.5)
    with stream:
        out, _, _ = ops.simple_rnn_forward(x, k, r)
        assert not stream.done  # queued behind the spin, not run elsewhere
    stream.synchronize()
    want = reference.simple_rnn_forward(*(cp.asnumpy(a) for a in (x, k, r)))[0]
    assert_close(cp.asnumpy(out), want, rtol=FLOAT64_RTOL, name="outputs")


# ---- devices and memory ------------------------------------------------------------------------


def test_wrong_device():
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    x, k, r = (cp.asarray(a) for a in _small())
    with cp.cuda.Device(1):
        k1 = cp.asarray(cp.asnumpy(k))
    with pytest.raises(ValueError, match="device"):
        ops.simple_rnn_forward(x, k1, r)


class _HostExport:
    """A __cuda_array_interface__ that points at host memory."""

    def __init__(self, host: np.ndarray):
        self.host = host
        self.shape = host.shape
        self.dtype = host.dtype
        self.__cuda_array_interface__ = {
            "shape": host.shape,
            "typestr": host.dtype.str,
            "data": (host.ctypes.data, False),
            "strides": None,
            "version": 3,
        }


def test_host_memory_is_refused():
    """A device-array interface over host memory is a ValueError naming the argument."""
    x, k, r = (cp.asarray(a) for a in _small())
    host_x = _HostExport(np.zeros((3, 2, 4), np.float32))
    with pytest.raises(ValueError, match="x is not in device memory"):
        _raw_forward(host_x, k, r)


# ---- bad input ---------------------------------------------------------------------------------


def _bad_cases():
    x, k, r = (cp.asarray(a) for a in _small())
    x64, k64, r64 = (cp.asarray(a) for a in _small(np.float64))
    h0_host = np.zeros((2, 5), np.float32)  # float32 like x: only the device differs
    return [
        # (id, call, exception, message pattern)
        ("numpy-kernel", lambda: ops.simple_rnn_forward(x, cp.asnumpy(k), r), TypeError, "mixing"),
        (
            "numpy-x",
            lambda: ops.simple_rnn_forward(cp.asnumpy(x), k, cp.asnumpy(r)),
            TypeError,
            "mixing NumPy and CuPy",
        ),
        (
            "numpy-h0",
            lambda: ops.simple_rnn_forward(x, k, r, initial_state=[h0_host]),
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
        ("raw-numpy", lambda: _raw_forward(cp.asnumpy(x), k, r), TypeError, "CUDA device array"),
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
            "raw-output-overlaps-input",
            lambda: _raw_forward(x, k, r, h_last=x.reshape(-1)[:10].reshape(2, 5)),
            ValueError,
            "overlaps",
        ),
        (
            "raw-cell",
            lambda: _cuda.forward("rnn", x64, k64, r64, outputs=x64, h_last=x64),
            ValueError,
            "cell must be one of",
        ),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input(case):
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call()


# ---- a subset for compute-sanitizer (bench/gpu_session.sh runs it under memcheck/racecheck) ----


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_sanitizer_subset(cell):
    rng = np.random.default_rng(1)
    T, B, n_in, H = 4, 19, 6, 35
    G = {"simple_rnn": 1, "lstm": 4, "gru": 3}[cell]
    x = rng.standard_normal((T, B, n_in)).astype(np.float32)
    k = (rng.standard_normal((n_in, G * H)) * 0.3).astype(np.float32)
    r = (rng.standard_normal((H, G * H)) * 0.3).astype(np.float32)
    mask = rng.random((T, B)) > 0.3
    forward = getattr(ops, f"{cell}_forward")
    backward = getattr(ops, f"{cell}_backward")
    out, _, ctx = forward(
        cp.asarray(x),
        cp.asarray(k),
        cp.asarray(r),
        mask=cp.asarray(mask),
        training=True,
        go_backwards=True,
    )
    grads = backward(ctx, cp.ones_like(out))
    want_out, _, want_ctx = getattr(reference, f"{cell}_forward")(
        x, k, r, mask=mask, training=True, go_backwards=True
    )
    want = getattr(reference, f"{cell}_backward")(want_ctx, np.ones_like(want_out))
    assert_close(cp.asnumpy(out), want_out, rtol=1e-5, name="outputs")
    assert_close(cp.asnumpy(grads.dx), want.dx, rtol=1e-4, name="dx")
