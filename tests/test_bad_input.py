"""Bad input to the functional API and to the raw ``_cpu`` entry points: one table of
(call, exception type, message pattern). Every call must raise a clear Python exception (never
crash), and must leave its inputs unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from fastrnn import _cpu, ops
from harness import assert_unmodified, snapshot

T, B, N_IN, H = 4, 3, 5, 6


def arrays(G=4, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        x=rng.standard_normal((T, B, N_IN)).astype(dtype),
        kernel=rng.standard_normal((N_IN, G * H)).astype(dtype),
        recurrent_kernel=rng.standard_normal((H, G * H)).astype(dtype),
        bias=rng.standard_normal(G * H).astype(dtype),
    )


def lstm(**over):
    a = arrays()
    a.update(over)
    return lambda: ops.lstm_forward(
        a["x"], a["kernel"], a["recurrent_kernel"], a["bias"], *a.get("extra", ())
    )


def lstm_kw(**kw):
    a = arrays()
    return lambda: ops.lstm_forward(a["x"], a["kernel"], a["recurrent_kernel"], a["bias"], **kw)


def gru_kw(**kw):
    a = arrays(G=3)
    bias = kw.pop("bias", a["bias"])
    return lambda: ops.gru_forward(a["x"], a["kernel"], a["recurrent_kernel"], bias, **kw)


def lstm_backward(**kw):
    a = arrays()
    _, _, ctx = ops.lstm_forward(
        a["x"], a["kernel"], a["recurrent_kernel"], a["bias"], training=True
    )
    ctx_value = kw.pop("ctx", ctx)
    return lambda: ops.lstm_backward(ctx_value, kw.get("d_outputs"), kw.get("d_final_states"))


def raw_outputs(cell="lstm", T=T, B=B, H=H):
    """Output arrays of the one binding contract for a forward call."""
    return dict(
        outputs=np.empty((T, B, H)),
        h_last=np.empty((B, H)),
        c_last=np.empty((B, H)) if cell == "lstm" else None,
    )


def raw(**over):
    a = arrays()
    args = dict(cell="lstm", x=a["x"], kernel=a["kernel"], recurrent_kernel=a["recurrent_kernel"])
    args.update(raw_outputs(over.get("cell", "lstm")))
    args.update(over)
    return lambda: _cpu.forward(**args)


def raw_gradients(cell="lstm", G=4):
    return dict(
        dx=np.empty((T, B, N_IN)),
        dkernel=np.empty((N_IN, G * H)),
        drecurrent_kernel=np.empty((H, G * H)),
        dh0=np.empty((B, H)),
        dc0=np.empty((B, H)) if cell == "lstm" else None,
    )


def raw_backward(**over):
    a = arrays()
    base = dict(cell="lstm", x=a["x"], kernel=a["kernel"], recurrent_kernel=a["recurrent_kernel"])
    workspace = np.empty(_cpu.workspace_size("lstm", T, B, H))
    _cpu.forward(**base, **raw_outputs(), workspace=workspace)
    args = dict(base, workspace=workspace, **raw_gradients())
    args.update(over)
    return lambda: _cpu.backward(**args)


def readonly(shape):
    a = np.empty(shape)
    a.flags.writeable = False
    return a


def raw_aliasing_outputs():
    # outputs is a view of the same memory as x: the kernels would read x after writing it.
    buf = np.zeros(T * B * max(N_IN, H))
    x = buf[: T * B * N_IN].reshape(T, B, N_IN)
    a = arrays()
    return lambda: _cpu.forward(
        "lstm",
        x,
        a["kernel"],
        a["recurrent_kernel"],
        **{**raw_outputs(), "outputs": buf[: T * B * H].reshape(T, B, H)},
    )


def raw_backward_overlap():
    # dx is the first part of the memory of dkernel.
    buf = np.empty(N_IN * 4 * H)
    grads = raw_gradients()
    grads["dkernel"] = buf.reshape(N_IN, 4 * H)
    grads["dx"] = buf[: T * B * N_IN].reshape(T, B, N_IN)
    return raw_backward(**grads)


rng = np.random.default_rng(1)
BAD = [
    # --- ranks and shapes
    ("x-rank-2", lstm(x=rng.standard_normal((T, N_IN))), ValueError, r"x must be 3-D"),
    ("x-rank-4", lstm(x=rng.standard_normal((T, B, N_IN, 1))), ValueError, r"x must be 3-D"),
    (
        "x-features-vs-kernel",
        lstm(x=rng.standard_normal((T, B, N_IN + 1))),
        ValueError,
        r"kernel must have shape \(6, 24\)",
    ),
    (
        "kernel-shape",
        lstm(kernel=rng.standard_normal((N_IN, 3 * H))),
        ValueError,
        r"kernel must have shape \(5, 24\)",
    ),
    (
        "recurrent-kernel-gates",
        lstm(recurrent_kernel=rng.standard_normal((H, 3 * H))),
        ValueError,
        r"recurrent_kernel must have shape \(6, 24\)",
    ),
    (
        "recurrent-kernel-rank",
        lstm(recurrent_kernel=rng.standard_normal(4 * H)),
        ValueError,
        r"recurrent_kernel must be 2-D",
    ),
    ("bias-shape", lstm(bias=rng.standard_normal(3 * H)), ValueError, r"bias must have shape"),
    (
        "gru-reset-after-bias",
        gru_kw(bias=rng.standard_normal(3 * H), reset_after=True),
        ValueError,
        r"bias must be 2-D with shape \(2, 18\)",
    ),
    (
        "gru-reset-before-bias",
        gru_kw(bias=rng.standard_normal((2, 3 * H)), reset_after=False),
        ValueError,
        r"bias must be 1-D with shape \(18,\)",
    ),
    (
        "initial-state-count",
        lstm_kw(initial_state=[np.zeros((B, H))]),
        ValueError,
        r"initial_state must be a list of 2",
    ),
    (
        "initial-state-shape",
        lstm_kw(initial_state=[np.zeros((B, H)), np.zeros((B + 1, H))]),
        ValueError,
        r"initial_state\[1\] must have shape \(B, H\) = \(3, 6\)",
    ),
    ("zero-units", lstm(recurrent_kernel=np.zeros((0, 0))), ValueError, r"at least one row"),
    (
        "zero-features",
        lstm(x=np.zeros((T, B, 0)), kernel=np.zeros((0, 4 * H))),
        ValueError,
        r"at least one feature",
    ),
    # --- dtypes
    ("x-int", lstm(x=np.ones((T, B, N_IN), dtype=np.int64)), TypeError, r"x must have dtype"),
    (
        "x-float16",
        lstm(x=np.ones((T, B, N_IN), dtype=np.float16)),
        TypeError,
        r"float32 or float64",
    ),
    (
        "mixed-dtypes",
        lstm(kernel=arrays(dtype=np.float32)["kernel"]),
        TypeError,
        r"kernel has dtype float32 but x has dtype float64",
    ),
    ("x-none", lstm(x=None), TypeError, r"x must be an array"),
    ("mask-dtype", lstm_kw(mask=np.ones((T, B), dtype=np.int8)), TypeError, r"mask must have"),
    ("mask-shape", lstm_kw(mask=np.ones((T, B + 1), dtype=bool)), ValueError, r"mask must"),
    (
        "dropout-mask-shape",
        lstm_kw(dropout_mask=np.ones((B, N_IN + 1))),
        ValueError,
        r"dropout_mask must have shape \(3, 5\)",
    ),
    (
        "recurrent-dropout-mask-dtype",
        lstm_kw(recurrent_dropout_mask=np.ones((B, H), dtype=np.float32)),
        TypeError,
        r"recurrent_dropout_mask has dtype float32",
    ),
    # --- options
    ("activation", lstm_kw(activation="gelu"), ValueError, r"activation must be one of"),
    (
        "recurrent-activation",
        lstm_kw(recurrent_activation=None),
        ValueError,
        r"recurrent_activation must be one of",
    ),
    # --- backward
    ("backward-none-ctx", lstm_backward(ctx=None), ValueError, r"training=True"),
    ("backward-foreign-ctx", lstm_backward(ctx=object()), TypeError, r"ctx must be the context"),
    (
        "backward-d-outputs-shape",
        lstm_backward(d_outputs=np.zeros((T, B, H + 1))),
        ValueError,
        r"d_outputs must have shape \(T, B, H\)",
    ),
    (
        "backward-d-final-count",
        lstm_backward(d_final_states=[np.zeros((B, H))]),
        ValueError,
        r"d_final_states must be a list of 2",
    ),
    (
        "backward-d-outputs-dtype",
        lstm_backward(d_outputs=np.zeros((T, B, H), dtype=np.float32)),
        TypeError,
        r"d_outputs has dtype float32",
    ),
    # --- the raw C++ entry points validate on their own
    ("raw-cell", raw(cell="transformer"), ValueError, r"cell must be one of"),
    ("raw-x-list", raw(x=[[[1.0]]]), TypeError, r"x must be a numpy.ndarray"),
    ("raw-x-int", raw(x=np.ones((T, B, N_IN), dtype=np.int32)), TypeError, r"x must have dtype"),
    (
        "raw-non-contiguous",
        raw(x=np.ones((B, T, N_IN)).transpose(1, 0, 2)),
        ValueError,
        r"x must be C-contiguous",
    ),
    ("raw-kernel-none", raw(kernel=None), TypeError, r"kernel must be a numpy.ndarray"),
    ("raw-h0-shape", raw(h0=np.zeros((B, H + 1))), ValueError, r"h0 must have shape \(3, 6\)"),
    (
        "raw-c0-simple-rnn",
        raw(
            cell="simple_rnn",
            kernel=np.zeros((N_IN, H)),
            recurrent_kernel=np.zeros((H, H)),
            c0=np.zeros((B, H)),
            c_last=None,
        ),
        ValueError,
        r"c0 is only for the lstm cell",
    ),
    ("raw-mask-float", raw(mask=np.ones((T, B))), TypeError, r"mask must have dtype bool"),
    ("raw-activation", raw(activation="swish"), ValueError, r"activation must be one of"),
    ("raw-workspace-missing", raw_backward(workspace=None), TypeError, r"workspace"),
    (
        "raw-workspace-size",
        raw_backward(workspace=np.zeros(7)),
        ValueError,
        r"workspace must have shape",
    ),
    (
        "raw-d-c-last-gru",
        raw_backward(
            cell="gru",
            kernel=np.zeros((N_IN, 3 * H)),
            recurrent_kernel=np.zeros((H, 3 * H)),
            workspace=np.zeros(_cpu.workspace_size("gru", T, B, H, True)),
            d_c_last=np.zeros((B, H)),
            **raw_gradients("gru", 3),
        ),
        ValueError,
        r"d_c_last is only for the lstm cell",
    ),
    # --- the raw entry points' outputs (caller-allocated, the one binding contract)
    ("raw-outputs-missing", raw(outputs=None), TypeError, r"outputs must be a numpy.ndarray"),
    (
        "raw-outputs-shape",
        raw(outputs=np.empty((T, B, H + 1))),
        ValueError,
        r"outputs must have shape \(4, 3, 6\)",
    ),
    (
        "raw-outputs-dtype",
        raw(outputs=np.empty((T, B, H), np.float32)),
        TypeError,
        r"outputs must have dtype float64",
    ),
    ("raw-outputs-readonly", raw(outputs=readonly((T, B, H))), ValueError, r"must be writable"),
    (
        "raw-outputs-strided",
        raw(outputs=np.empty((B, T, H)).transpose(1, 0, 2)),
        ValueError,
        r"outputs must be C-contiguous",
    ),
    ("raw-c-last-missing", raw(c_last=None), TypeError, r"c_last must be a numpy.ndarray"),
    (
        "raw-c-last-gru",
        raw(
            cell="gru",
            kernel=np.zeros((N_IN, 3 * H)),
            recurrent_kernel=np.zeros((H, 3 * H)),
            c_last=np.empty((B, H)),
        ),
        ValueError,
        r"c_last is only for the lstm cell",
    ),
    ("raw-outputs-alias-x", raw_aliasing_outputs(), ValueError, r"outputs overlaps x"),
    (
        "raw-workspace-size-mismatch",
        raw(workspace=np.empty(5)),
        ValueError,
        r"workspace must have shape",
    ),
    ("raw-dbias-without-bias", raw_backward(dbias=np.empty(4 * H)), ValueError, r"dbias must be"),
    ("raw-dx-missing", raw_backward(dx=None), TypeError, r"dx must be a numpy.ndarray"),
    (
        "raw-dkernel-overlaps-dx",
        raw_backward_overlap(),
        ValueError,
        r"overlaps",
    ),
    ("raw-workspace-size-negative", lambda: _cpu.workspace_size("lstm", -1, 2, 3), ValueError, "T"),
    (
        "raw-workspace-size-overflow",
        lambda: _cpu.workspace_size("lstm", 2**40, 2**20, 2**10),
        ValueError,
        r"too large",
    ),
    ("raw-workspace-size-cell", lambda: _cpu.workspace_size("rnn", 1, 1, 1), ValueError, r"cell"),
    ("set-num-threads-huge", lambda: _cpu.set_num_threads(3000), ValueError, r"between 1 and"),
    ("set-num-threads-negative", lambda: _cpu.set_num_threads(-2), ValueError, r"between 1 and"),
]


@pytest.mark.parametrize("call, error, pattern", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_size_overflow_is_rejected_before_allocating():
    # Zero-stride views claim huge sizes without memory behind them; the size checks come
    # before the contiguity check, so these reach them.
    def huge(*shape, dtype=np.float64):
        base = np.zeros(1, dtype=dtype)
        return np.lib.stride_tricks.as_strided(base, shape=shape, strides=(0,) * len(shape))

    a = arrays()
    out = raw_outputs()  # never reached: the sizes are refused first
    with pytest.raises(ValueError, match=r"T\*B \(steps\*batch\) is too large"):
        _cpu.forward("lstm", huge(2**31, 2, 1), np.zeros((1, 4 * H)), a["recurrent_kernel"], **out)
    with pytest.raises(ValueError, match=r"G\*H \(gates\*units\) is too large"):
        x32 = a["x"].astype(np.float32)
        _cpu.forward("lstm", x32, x32[0], huge(2**29, 2**31, dtype=np.float32), **out)
    with pytest.raises(ValueError, match="too large"):
        ops.lstm_forward(huge(2**31, 2, 1), np.zeros((1, 4 * H)), a["recurrent_kernel"])
    # An input width beyond BLAS's 32-bit dimensions: a clear error, never a truncated product
    # (it used to return 0.0 where tanh(1) was expected).
    wide = 2**32 + 8
    with pytest.raises(ValueError, match=r"I \(x's last dimension\) is too large"):
        _cpu.forward("simple_rnn", huge(2, 1, wide), huge(wide, 1), np.ones((1, 1)), **out)
    with pytest.raises(ValueError, match=r"I \(x's last dimension\) is too large"):
        ops.simple_rnn_forward(huge(2, 1, wide), huge(wide, 1), np.ones((1, 1)))


def test_failed_and_successful_calls_leave_inputs_unchanged():
    a = arrays()
    a["mask"] = np.ones((T, B), dtype=bool)
    before = snapshot(a)
    with pytest.raises(ValueError):
        ops.lstm_forward(a["x"], a["kernel"], a["recurrent_kernel"], a["bias"][:-1], mask=a["mask"])
    _, _, ctx = ops.lstm_forward(
        a["x"], a["kernel"], a["recurrent_kernel"], a["bias"], mask=a["mask"], training=True
    )
    ops.lstm_backward(ctx, np.ones((T, B, H)), None)
    assert_unmodified(before, a)
