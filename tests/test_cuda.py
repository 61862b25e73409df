"""What only the CUDA backend has: its two paths, the cached step graphs, streams, devices,
device memory, CuPy-specific bad input.

The parity of the CUDA kernels with the reference is in test_parity.py (the same cases as the
CPU's, through the ``backend`` fixture; bench/gpu_session.sh runs it once per path with
``FASTRNN_CUDA_PATH``). Here every cell runs on both paths (standard and persistent, forced
through ``FASTRNN_CUDA_PATH``) on the shapes that reach their tiles' edges: H a multiple of the
units per block and not, H past one block, B = 1, B past one 4-row tile and past the persistent
path's automatic limit. This module skips with its reason where the CUDA backend is unusable;
``FASTRNN_EXPECT_GPU=1`` (set by bench/gpu_session.sh) makes that a failure.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from harness import (
    FLOAT64_RTOL,
    OPTIONS,
    VARIANT_IDS,
    VARIANTS,
    Variant,
    assert_close,
    make_case,
    require_backend,
)
from harness import run_forward_backward as run
from test_parity import check_parity

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


# ---- the two paths ------------------------------------------------------------------------------

PATHS = ("standard", "persistent")

# (T, B, I, H): one 4-row tile and one block of units; H a multiple of 8 over several blocks,
# two 4-row tiles; odd H over several blocks in one partial 16-row tile (B > 8); B past the
# automatic persistent limit (16), two 16-row tiles; H past the persistent path's one unit per
# block (a long reduction in 2 staged chunks for float64's backward).
PATH_SHAPES = [(5, 1, 7, 8), (4, 6, 33, 64), (6, 11, 9, 83), (3, 19, 5, 37), (2, 3, 6, 300)]


@pytest.fixture(params=PATHS)
def cuda_path(request, monkeypatch):
    """Forces one path for the test (FASTRNN_CUDA_PATH is read at every call)."""
    monkeypatch.setenv("FASTRNN_CUDA_PATH", request.param)
    return request.param


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", PATH_SHAPES, ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("variant", VARIANTS[4:], ids=VARIANT_IDS[4:])
def test_path_parity(cuda_path, rng, variant, shape, dtype):
    """Training forward + backward on the forced path against the reference, with every option
    (mask, dropout, initial states, go_backwards)."""
    check_parity(DEVICE, rng, variant, shape, OPTIONS["full"], dtype)


@pytest.mark.parametrize("variant", VARIANTS[:5], ids=VARIANT_IDS[:5])
def test_path_parity_simple_rnn_activations(cuda_path, rng, variant):
    check_parity(DEVICE, rng, variant, (4, 6, 5, 40), OPTIONS["backwards-states"], np.float64)


@pytest.mark.parametrize("variant", VARIANTS[5:], ids=VARIANT_IDS[5:])
def test_paths_inference_matches_training(cuda_path, rng, variant):
    """Inference (no workspace) takes the same path as training and gives the same bits."""
    case = DEVICE.put(make_case(rng, variant, (5, 6, 7, 24), OPTIONS["full"]))
    forward = variant.spec.forward(ops)
    args = (case["x"], case["kernel"], case["recurrent_kernel"], case["bias"])
    extra = dict(initial_state=case["initial_state"], mask=case["mask"], **case["kwargs"])
    out_inf, states_inf, _ = forward(*args, **extra)
    out_tr, states_tr, _ = forward(*args, training=True, **extra)
    np.testing.assert_array_equal(cp.asnumpy(out_inf), cp.asnumpy(out_tr))
    for a, b in zip(states_inf, states_tr):
        np.testing.assert_array_equal(cp.asnumpy(a), cp.asnumpy(b))


def test_paths_agree_with_each_other(rng, monkeypatch):
    """Both paths, the same float64 call: equal to within float64 rounding (different
    reduction orders), so neither path can be right by accident of the case."""
    variant = Variant("lstm")
    case = DEVICE.put(make_case(rng, variant, (6, 5, 9, 48), OPTIONS["full"]))
    results = {}
    for path in PATHS:
        monkeypatch.setenv("FASTRNN_CUDA_PATH", path)
        results[path] = DEVICE.host(run(ops, variant, case))
    for name, value in results["standard"].items():
        assert_close(results["persistent"][name], value, rtol=FLOAT64_RTOL, name=name)


def test_repeated_calls_are_bitwise_equal(cuda_path, rng):
    variant = Variant("gru", reset_after=False)
    case = DEVICE.put(make_case(rng, variant, (5, 7, 6, 40), OPTIONS["full"], np.float32))
    first = DEVICE.host(run(ops, variant, case))
    second = DEVICE.host(run(ops, variant, case))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_plan_names_the_path(monkeypatch):
    monkeypatch.delenv("FASTRNN_CUDA_PATH", raising=False)
    assert _cuda.plan("lstm", 50, 4, 64, 256).startswith("persistent:")
    assert _cuda.plan("gru", 50, 4, 64, 256, backward=True).startswith("persistent:")
    assert _cuda.plan("lstm", 50, 64, 64, 256).startswith("standard:")  # batch > 16
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "standard")
    assert _cuda.plan("lstm", 50, 4, 64, 256).startswith("standard:")
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "persistent")
    assert _cuda.plan("lstm", 50, 64, 64, 256).startswith("persistent:")
    # float64 LSTM weights of H=2048 (128 MB) fit on no GPU's chips
    assert _cuda.plan("lstm", 5, 1, 8, 2048, dtype="float64").startswith("error:")


def test_forced_persistent_path_that_cannot_run_is_a_value_error(monkeypatch):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "persistent")
    H = 2048
    x = cp.ones((1, 1, 2), cp.float64)
    k = cp.zeros((2, 4 * H), cp.float64)
    r = cp.zeros((H, 4 * H), cp.float64)
    with pytest.raises(ValueError, match="FASTRNN_CUDA_PATH=persistent, but the persistent path"):
        ops.lstm_forward(x, k, r)


def test_unknown_path_is_a_value_error(monkeypatch):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "fastest")
    x, k, r = (cp.asarray(a) for a in _small())
    with pytest.raises(ValueError, match="FASTRNN_CUDA_PATH must be auto, standard or persistent"):
        ops.simple_rnn_forward(x, k, r)


@pytest.mark.parametrize("gemm", ["cublas", "own"])
@pytest.mark.parametrize("variant", [Variant("lstm"), Variant("gru")], ids=["lstm", "gru"])
def test_long_sequences_both_gemms(monkeypatch, rng, variant, gemm):
    """T*B = 1280 rows: the weight gradients' reduction is split over blocks (split-K) in the
    hand-written product and the bias gradient is summed in 5 row chunks; cuBLAS where built."""
    if gemm == "cublas" and not _cuda.HAS_CUBLAS:
        pytest.skip("fastrnn._cuda was built without cuBLAS")
    monkeypatch.setenv("FASTRNN_CUDA_GEMM", gemm)
    check_parity(DEVICE, rng, variant, (64, 20, 10, 24), OPTIONS["full"], np.float64)
    check_parity(DEVICE, rng, variant, (64, 20, 10, 24), OPTIONS["full"], np.float32)


# ---- the standard path's cached step graphs -----------------------------------------------------


@pytest.mark.parametrize("graphs", ["0", "1"])
def test_graph_replay_reads_each_calls_arguments(monkeypatch, rng, graphs):
    """One shape, three calls with different arrays: a replayed graph must read the new call's
    pointers (not the captured ones); with graphs off the same kernels run directly."""
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "standard")
    monkeypatch.setenv("FASTRNN_CUDA_GRAPHS", graphs)
    variant = Variant("lstm")
    alive = []  # every call's arrays stay allocated, so no two calls share an address
    for _ in range(3):
        case = make_case(rng, variant, (4, 5, 6, 19), OPTIONS["full"])
        alive.append(DEVICE.put(case))
        got = DEVICE.host(run(ops, variant, alive[-1]))
        want = run(reference, variant, case)
        for name in want:
            assert_close(got[name], want[name], rtol=FLOAT64_RTOL, name=name)


def test_graphs_on_and_off_are_bitwise_equal(monkeypatch, rng):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "standard")
    variant = Variant("gru", reset_after=False)
    case = DEVICE.put(make_case(rng, variant, (4, 6, 5, 21), OPTIONS["full"], np.float32))
    results = []
    for graphs in ("1", "0"):
        monkeypatch.setenv("FASTRNN_CUDA_GRAPHS", graphs)
        results.append(DEVICE.host(run(ops, variant, case)))
    for name in results[0]:
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)


def test_one_graph_on_two_busy_streams(monkeypatch, rng):
    """Two calls of one shape (so one cached graph and one argument block) on two streams, the
    first held behind a spin: the second must not overwrite the first's arguments before the
    first ran, and each must get its own result."""
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "standard")
    monkeypatch.setenv("FASTRNN_CUDA_GRAPHS", "1")
    variant = Variant("simple_rnn")
    cases = [make_case(rng, variant, (5, 3, 4, 11), OPTIONS["plain"]) for _ in range(2)]
    warm = DEVICE.put(cases[0])
    ops.simple_rnn_forward(warm["x"], warm["kernel"], warm["recurrent_kernel"], warm["bias"])
    cp.cuda.Device().synchronize()  # the graph is captured; both calls below replay it
    streams = [cp.cuda.Stream(non_blocking=True) for _ in cases]
    _busy(streams[0], 0.5)
    outs = []
    for stream, case in zip(streams, cases):
        with stream:
            d = DEVICE.put(case)
            outs.append(
                ops.simple_rnn_forward(d["x"], d["kernel"], d["recurrent_kernel"], d["bias"])[0]
            )
    for stream in streams:
        stream.synchronize()
    for out, case in zip(outs, cases):
        want = reference.simple_rnn_forward(
            case["x"], case["kernel"], case["recurrent_kernel"], case["bias"]
        )[0]
        assert_close(cp.asnumpy(out), want, rtol=FLOAT64_RTOL, name="outputs")


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
def test_sanitizer_subset(cuda_path, cell):
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
