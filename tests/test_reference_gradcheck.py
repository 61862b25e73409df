"""The reference checks itself: finite-difference gradients and independent semantic checks.

Everything here is float64 and uses only NumPy; no output of the reference is ever used as the
expected value of the reference, except where two *different* ways of asking the same question
must agree (masking vs a shorter sequence, go_backwards vs a reversed input).
"""

from __future__ import annotations

import numpy as np
import pytest
from fastrnn import reference
from fastrnn._cells import ACTIVATIONS
from harness import FLOAT64_RTOL, Variant, assert_close, assert_unmodified, snapshot
from harness import make_case as harness_make_case

GRAD_RTOL = 1e-6  # relative error allowed between analytic and central-difference gradients
EPS = 1e-5  # central-difference step

# The cells under test, by name (the cases come from the suite's one case builder).
VARIANTS = {
    "simple_rnn": Variant("simple_rnn"),
    "lstm": Variant("lstm"),
    "gru_reset_after": Variant("gru", reset_after=True),
    "gru_reset_before": Variant("gru", reset_after=False),
}
GATED = [name for name, v in VARIANTS.items() if v.spec.recurrent_activation]

SMALL = (4, 3, 5, 4)  # (T, B, I, H)
ONES = (1, 1, 1, 1)


# ---------------------------------------------------------------------------------------------
# Case construction
# ---------------------------------------------------------------------------------------------


def make_case(
    rng: np.random.Generator,
    variant: str,
    shape: tuple = SMALL,
    *,
    bias: bool = True,
    initial_state: bool = True,
    mask: bool = False,
    dropout: bool = False,
    go_backwards: bool = False,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[dict, dict]:
    """Random parameters and options for one call (``harness.make_case``, split in two).

    Returns:
        ``(params, options)``: params are the differentiable arrays (x, kernel, recurrent_kernel,
        optionally bias, h0, c0); options the rest of the keyword arguments.
    """
    v = VARIANTS[variant]._replace(activation=activation, recurrent_activation=recurrent_activation)
    case = harness_make_case(
        rng,
        v,
        shape,
        dict(
            bias=bias,
            initial_state=initial_state,
            mask=mask,
            dropout=dropout,
            go_backwards=go_backwards,
        ),
    )
    params = {name: case[name] for name in ("x", "kernel", "recurrent_kernel")}
    if case["bias"] is not None:
        params["bias"] = case["bias"]
    for name, state in zip(("h0", "c0"), case["initial_state"] or []):
        params[name] = state
    options = {"go_backwards": go_backwards, **case["kwargs"]}
    if case["mask"] is not None:
        options["mask"] = case["mask"]
    return params, options


def run_forward(variant: str, params: dict, options: dict, training: bool = False):
    forward = VARIANTS[variant].spec.forward(reference)
    states = [params[k] for k in ("h0", "c0") if k in params] or None
    options = dict(options)
    mask = options.pop("mask", None)
    return forward(
        params["x"],
        params["kernel"],
        params["recurrent_kernel"],
        params.get("bias"),
        states,
        mask,
        training=training,
        **options,
    )


def analytic_and_numeric(variant: str, params: dict, options: dict, rng: np.random.Generator):
    """Analytic gradients from the reference's backward and central differences of
    ``L = sum(outputs * W_o) + sum_k sum(final_state_k * W_k)``."""
    outputs, final_states, ctx = run_forward(variant, params, options, training=True)
    w_out = rng.normal(size=outputs.shape)
    w_states = [rng.normal(size=s.shape) for s in final_states]

    def loss(p: dict) -> float:
        out, states, _ = run_forward(variant, p, options)
        return float(np.sum(out * w_out) + sum(np.sum(s * w) for s, w in zip(states, w_states)))

    grads = VARIANTS[variant].spec.backward(reference)(ctx, w_out, w_states)
    analytic = {
        "x": grads.dx,
        "kernel": grads.dkernel,
        "recurrent_kernel": grads.drecurrent_kernel,
    }
    if "bias" in params:
        analytic["bias"] = grads.dbias
    else:
        assert grads.dbias is None
    assert len(grads.dinitial_state) == len(final_states)
    for name, d in zip(("h0", "c0"), grads.dinitial_state):
        if name in params:
            analytic[name] = d

    numeric = {}
    for name in analytic:
        p = {k: v.copy() for k, v in params.items()}
        target = p[name]
        num = np.zeros_like(target)
        for idx in np.ndindex(target.shape):
            original = target[idx]
            target[idx] = original + EPS
            up = loss(p)
            target[idx] = original - EPS
            down = loss(p)
            target[idx] = original
            num[idx] = (up - down) / (2 * EPS)
        numeric[name] = num
    return analytic, numeric


def assert_gradients_match(analytic: dict, numeric: dict) -> None:
    for name, a in analytic.items():
        n = numeric[name]
        assert a.shape == n.shape, f"d{name}: shape {a.shape} != {n.shape}"
        scale = max(np.abs(a).max(), np.abs(n).max(), 1e-12)
        err = np.abs(a - n)
        rel = err.max() / scale
        idx = np.unravel_index(np.argmax(err), err.shape)
        assert rel < GRAD_RTOL, (
            f"d{name}: relative error {rel:.3g} at {idx}: analytic={a[idx]!r}, numeric={n[idx]!r}"
        )


def gradcheck(rng, variant, shape=SMALL, **case_options) -> None:
    params, options = make_case(rng, variant, shape, **case_options)
    analytic, numeric = analytic_and_numeric(variant, params, options, rng)
    assert_gradients_match(analytic, numeric)


# ---------------------------------------------------------------------------------------------
# Finite-difference gradient checks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradcheck_activation(rng, variant, activation):
    gradcheck(rng, variant, activation=activation, mask=True)


@pytest.mark.parametrize("recurrent_activation", ACTIVATIONS)
@pytest.mark.parametrize("variant", GATED)
def test_gradcheck_recurrent_activation(rng, variant, recurrent_activation):
    gradcheck(rng, variant, recurrent_activation=recurrent_activation, dropout=True)


OPTION_SETS = {
    "plain": {"bias": False, "initial_state": False},
    "bias_only": {"initial_state": False},
    "mask_go_backwards": {"mask": True, "go_backwards": True},
    "dropout": {"dropout": True},
    "dropout_mask_go_backwards": {"dropout": True, "mask": True, "go_backwards": True},
    "ones": {"shape": ONES, "mask": False, "dropout": True},
    "single_sample": {"shape": (3, 1, 2, 2), "mask": True, "go_backwards": True},
    "mask_no_state_no_bias": {"mask": True, "bias": False, "initial_state": False, "dropout": True},
}


@pytest.mark.parametrize("option_set", list(OPTION_SETS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradcheck_options(rng, variant, option_set):
    gradcheck(rng, variant, **OPTION_SETS[option_set])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradcheck_hard_sigmoid_both(rng, variant):
    gradcheck(
        rng,
        variant,
        activation="hard_sigmoid",
        recurrent_activation="hard_sigmoid",
        mask=True,
        dropout=True,
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_backward_none_upstream(rng, variant):
    """None for d_outputs / final-state entries means zeros."""
    params, options = make_case(rng, variant, mask=True)
    outputs, final_states, ctx = run_forward(variant, params, options, training=True)
    backward = VARIANTS[variant].spec.backward(reference)
    zeros_out = np.zeros_like(outputs)
    w_h = rng.normal(size=final_states[0].shape)
    cases = [
        (
            backward(ctx, None, None),
            backward(ctx, zeros_out, [np.zeros_like(s) for s in final_states]),
        ),
        (
            backward(ctx, None, [w_h] + [None] * (len(final_states) - 1)),
            backward(ctx, zeros_out, [w_h] + [np.zeros_like(s) for s in final_states[1:]]),
        ),
    ]
    for got, want in cases:
        for field in ("dx", "dkernel", "drecurrent_kernel", "dbias"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        for g, w in zip(got.dinitial_state, want.dinitial_state):
            np.testing.assert_array_equal(g, w)
    assert not np.any(cases[0][0].dx)


# ---------------------------------------------------------------------------------------------
# Semantics
# ---------------------------------------------------------------------------------------------


def _slice_sample(params: dict, options: dict, b: int, t0: int, t1: int) -> tuple[dict, dict]:
    """The case restricted to sample b and input steps t0:t1, without mask."""
    p = {
        "x": params["x"][t0:t1, b : b + 1],
        "kernel": params["kernel"],
        "recurrent_kernel": params["recurrent_kernel"],
    }
    for name in ("bias",):
        if name in params:
            p[name] = params[name]
    for name in ("h0", "c0"):
        if name in params:
            p[name] = params[name][b : b + 1]
    o = {k: v for k, v in options.items() if k != "mask"}
    for name in ("dropout_mask", "recurrent_dropout_mask"):
        if name in o:
            o[name] = o[name][b : b + 1]
    return p, o


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_right_padding_mask_equals_shorter_sequence(rng, variant):
    """Sample b with mask True for t < L_b: outputs[:L_b] and final states equal the unmasked
    run on the first L_b steps; padded outputs repeat outputs[L_b - 1] (zeros when L_b = 0); and
    the gradients equal those of the shorter run with the padded steps' d_outputs added to step
    L_b - 1."""
    T, B = 5, 4
    params, options = make_case(rng, variant, (T, B, 3, 4), dropout=True)
    lengths = [5, 3, 1, 0]
    options["mask"] = np.arange(T)[:, None] < np.array(lengths)[None, :]
    outputs, states, ctx = run_forward(variant, params, options, training=True)
    w_out = rng.normal(size=outputs.shape)
    w_states = [rng.normal(size=s.shape) for s in states]
    grads = VARIANTS[variant].spec.backward(reference)(ctx, w_out, w_states)

    for b, L in enumerate(lengths):
        p, o = _slice_sample(params, options, b, 0, L)
        init = [p[k] for k in ("h0", "c0") if k in p]
        if L == 0:
            np.testing.assert_array_equal(outputs[:, b], 0)
            for s, s0 in zip(states, init):
                np.testing.assert_array_equal(s[b], s0[0])
            np.testing.assert_array_equal(grads.dx[:, b], 0)
            for d, w in zip(grads.dinitial_state, w_states):
                np.testing.assert_array_equal(d[b], w[b])
            continue
        out_short, states_short, ctx_short = run_forward(variant, p, o, training=True)
        assert_close(outputs[:L, b], out_short[:, 0], FLOAT64_RTOL, name=f"outputs b={b}")
        for t in range(L, T):
            np.testing.assert_array_equal(outputs[t, b], outputs[L - 1, b])
        for k, (s, s_short) in enumerate(zip(states, states_short)):
            assert_close(s[b], s_short[0], FLOAT64_RTOL, name=f"state {k} b={b}")

        w_short = w_out[:L, b : b + 1].copy()
        w_short[L - 1] += w_out[L:, b : b + 1].sum(axis=0)
        g_short = VARIANTS[variant].spec.backward(reference)(
            ctx_short, w_short, [w[b : b + 1] for w in w_states]
        )
        assert_close(grads.dx[:L, b], g_short.dx[:, 0], FLOAT64_RTOL, name=f"dx b={b}")
        np.testing.assert_array_equal(grads.dx[L:, b], 0)
        for k, (d, d_short) in enumerate(zip(grads.dinitial_state, g_short.dinitial_state)):
            assert_close(d[b], d_short[0], FLOAT64_RTOL, name=f"dinitial_state {k} b={b}")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_left_padding_mask_output_zero_state_kept(rng, variant):
    """Sample b masked for t < k_b: outputs there are zeros (Keras's 'previous output' before
    the first step) while the state stays h0; afterwards it equals the run on x[k_b:] from h0."""
    T, B = 5, 3
    params, options = make_case(rng, variant, (T, B, 3, 4))
    starts = [0, 2, 4]
    options["mask"] = np.arange(T)[:, None] >= np.array(starts)[None, :]
    outputs, states, _ = run_forward(variant, params, options)
    for b, k in enumerate(starts):
        np.testing.assert_array_equal(outputs[:k, b], 0)
        p, o = _slice_sample(params, options, b, k, T)
        out_short, states_short, _ = run_forward(variant, p, o)
        assert_close(outputs[k:, b], out_short[:, 0], FLOAT64_RTOL, name=f"outputs b={b}")
        for s, s_short in zip(states, states_short):
            assert_close(s[b], s_short[0], FLOAT64_RTOL, name=f"state b={b}")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_go_backwards_equals_reversed_input(rng, variant):
    params, options = make_case(rng, variant, mask=True, dropout=True, go_backwards=True)
    outputs, states, ctx = run_forward(variant, params, options, training=True)

    rev_params = dict(params, x=params["x"][::-1])
    rev_options = dict(options, mask=options["mask"][::-1], go_backwards=False)
    outputs_rev, states_rev, ctx_rev = run_forward(variant, rev_params, rev_options, training=True)
    np.testing.assert_array_equal(outputs, outputs_rev)
    for s, s_rev in zip(states, states_rev):
        np.testing.assert_array_equal(s, s_rev)

    w_out = rng.normal(size=outputs.shape)
    w_states = [rng.normal(size=s.shape) for s in states]
    backward = VARIANTS[variant].spec.backward(reference)
    g = backward(ctx, w_out, w_states)
    g_rev = backward(ctx_rev, w_out, w_states)
    np.testing.assert_array_equal(g.dx, g_rev.dx[::-1])
    for field in ("dkernel", "drecurrent_kernel", "dbias"):
        np.testing.assert_array_equal(getattr(g, field), getattr(g_rev, field))
    for d, d_rev in zip(g.dinitial_state, g_rev.dinitial_state):
        np.testing.assert_array_equal(d, d_rev)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_last_output_is_h_last(rng, variant, go_backwards):
    params, options = make_case(rng, variant, mask=True, go_backwards=go_backwards)
    last_processed = 0 if go_backwards else -1
    options["mask"][last_processed] = True  # every sample's last processed step is unmasked
    options["mask"][:, -1] = False  # still include a sample masked everywhere else
    options["mask"][last_processed, -1] = True
    outputs, states, _ = run_forward(variant, params, options)
    np.testing.assert_array_equal(outputs[-1], states[0])


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_inputs_never_modified(rng, variant, dtype, masked):
    params, options = make_case(rng, variant, mask=masked, dropout=True, go_backwards=True)
    params = {k: v.astype(dtype) for k, v in params.items()}
    for name in ("dropout_mask", "recurrent_dropout_mask"):
        options[name] = options[name].astype(dtype)
    before = snapshot((params, options))
    outputs, states, ctx = run_forward(variant, params, options, training=True)
    assert outputs.dtype == dtype and all(s.dtype == dtype for s in states)
    d_out = rng.normal(size=outputs.shape).astype(dtype)
    d_states = [rng.normal(size=s.shape).astype(dtype) for s in states]
    upstream = snapshot((d_out, d_states))
    # Writing into the forward's results must not reach ctx (no aliasing of saved values).
    outputs[...] = np.nan
    for s in states:
        s[...] = np.nan
    grads = VARIANTS[variant].spec.backward(reference)(ctx, d_out, d_states)
    assert all(np.isfinite(d).all() for d in grads[:3] + tuple(grads.dinitial_state))
    assert_unmodified(before, (params, options), "forward/backward inputs")
    assert_unmodified(upstream, (d_out, d_states), "upstream gradients")
    for field in ("dx", "dkernel", "drecurrent_kernel", "dbias"):
        assert getattr(grads, field).dtype == dtype, field
    assert all(d.dtype == dtype for d in grads.dinitial_state)
    # Writing into the results must not reach the inputs either (no aliasing).
    for d in grads:
        for a in d if isinstance(d, list) else [d]:
            a[...] = np.nan
    assert_unmodified(before, (params, options), "inputs after writing into results")


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_runs_in_float32(rng, variant, activation):
    params, options = make_case(
        rng, variant, activation=activation, recurrent_activation=activation
    )
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    out64, _, _ = run_forward(variant, params, options)
    out32, states32, ctx = run_forward(variant, params32, options, training=True)
    assert out32.dtype == np.float32 and states32[0].dtype == np.float32
    grads = VARIANTS[variant].spec.backward(reference)(ctx, np.ones_like(out32), None)
    assert grads.dx.dtype == np.float32 and grads.dkernel.dtype == np.float32
    assert_close(out32, out64, rtol=1e-5, name="float32 vs float64 outputs")


def test_unknown_activation_raises(rng):
    params, options = make_case(rng, "lstm")
    for key in ("activation", "recurrent_activation"):
        with pytest.raises(ValueError, match="tanh.*relu.*sigmoid.*hard_sigmoid.*linear"):
            run_forward("lstm", params, dict(options, **{key: "swish"}))
    with pytest.raises(ValueError, match="swish"):
        run_forward("simple_rnn", *make_case(rng, "simple_rnn", activation="swish"))


# ---------------------------------------------------------------------------------------------
# One step against equations written out here, independently of reference.py
# ---------------------------------------------------------------------------------------------


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _hard_sigmoid(v):
    return np.minimum(np.maximum(v / 6.0 + 0.5, 0.0), 1.0)


def dropout_mask(rng: np.random.Generator, shape: tuple, p: float = 0.3) -> np.ndarray:
    """Inverted-dropout mask: entries 0 or 1 / (1 - p)."""
    return (rng.random(shape) >= p) / (1 - p)


def _step_inputs(rng, G, B=2, n_in=3, H=2, bias_shape=None):
    x = rng.normal(size=(1, B, n_in))
    K = rng.normal(size=(n_in, G * H))
    R = rng.normal(size=(H, G * H))
    b = rng.normal(size=bias_shape or (G * H,))
    h0 = rng.normal(size=(B, H))
    dm = dropout_mask(rng, (B, n_in))
    rdm = dropout_mask(rng, (B, H))
    return x, K, R, b, h0, dm, rdm


def test_simple_rnn_step_by_hand(rng):
    x, K, R, b, h0, dm, rdm = _step_inputs(rng, 1)
    xd, hd = x[0] * dm, h0 * rdm
    expected = np.maximum(xd @ K + b + hd @ R, 0.0)
    out, (h,), _ = reference.simple_rnn_forward(
        x, K, R, b, [h0], activation="relu", dropout_mask=dm, recurrent_dropout_mask=rdm
    )
    assert_close(h, expected, FLOAT64_RTOL, name="h")
    assert_close(out[0], expected, FLOAT64_RTOL, name="output")


@pytest.mark.parametrize("recurrent_activation", ["sigmoid", "hard_sigmoid"])
def test_lstm_step_by_hand(rng, recurrent_activation):
    ra = _sigmoid if recurrent_activation == "sigmoid" else _hard_sigmoid
    H = 2
    x, K, R, b, h0, dm, rdm = _step_inputs(rng, 4, H=H)
    c0 = rng.normal(size=h0.shape)
    xd, hd = x[0] * dm, h0 * rdm
    z = xd @ K + hd @ R + b
    # Keras column blocks: [input gate | forget gate | cell candidate | output gate]
    i = ra(z[:, 0:H])
    f = ra(z[:, H : 2 * H])
    cand = np.tanh(z[:, 2 * H : 3 * H])
    o = ra(z[:, 3 * H : 4 * H])
    c_expected = f * c0 + i * cand
    h_expected = o * np.tanh(c_expected)
    _, (h, c), _ = reference.lstm_forward(
        x,
        K,
        R,
        b,
        [h0, c0],
        recurrent_activation=recurrent_activation,
        dropout_mask=dm,
        recurrent_dropout_mask=rdm,
    )
    assert_close(c, c_expected, FLOAT64_RTOL, name="c")
    assert_close(h, h_expected, FLOAT64_RTOL, name="h")


def test_gru_reset_after_step_by_hand(rng):
    H = 2
    x, K, R, b, h0, dm, rdm = _step_inputs(rng, 3, H=H, bias_shape=(2, 3 * H))
    xd, hd = x[0] * dm, h0 * rdm
    # Keras column blocks: [update z | reset r | candidate h]; bias rows [input, recurrent]
    xp = xd @ K + b[0]
    hp = hd @ R + b[1]
    z = _sigmoid(xp[:, :H] + hp[:, :H])
    r = _sigmoid(xp[:, H : 2 * H] + hp[:, H : 2 * H])
    cand = np.tanh(xp[:, 2 * H :] + r * hp[:, 2 * H :])
    h_expected = z * h0 + (1 - z) * cand  # undropped h0 in the mix
    _, (h,), _ = reference.gru_forward(
        x, K, R, b, [h0], reset_after=True, dropout_mask=dm, recurrent_dropout_mask=rdm
    )
    assert_close(h, h_expected, FLOAT64_RTOL, name="h")


def test_gru_reset_before_step_by_hand(rng):
    H = 2
    x, K, R, b, h0, dm, rdm = _step_inputs(rng, 3, H=H)
    xd, hd = x[0] * dm, h0 * rdm
    xp = xd @ K + b
    z = _sigmoid(xp[:, :H] + hd @ R[:, :H])
    r = _sigmoid(xp[:, H : 2 * H] + hd @ R[:, H : 2 * H])
    cand = np.tanh(xp[:, 2 * H :] + (r * hd) @ R[:, 2 * H :])
    h_expected = z * h0 + (1 - z) * cand
    _, (h,), _ = reference.gru_forward(
        x, K, R, b, [h0], reset_after=False, dropout_mask=dm, recurrent_dropout_mask=rdm
    )
    assert_close(h, h_expected, FLOAT64_RTOL, name="h")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_definitions(name):
    """Keras 3 definitions, and derivatives from the output agree with finite differences."""
    v = np.linspace(-4.5, 4.5, 37) + 0.013  # avoids the kinks at 0 and +-3
    expected = {
        "tanh": np.tanh(v),
        "relu": np.maximum(v, 0.0),
        "sigmoid": _sigmoid(v),
        "hard_sigmoid": np.clip(v + 3.0, 0.0, 6.0) / 6.0,  # relu6(x + 3) / 6
        "linear": v,
    }[name]
    y = reference.activation_forward(name, v)
    assert_close(y, expected, FLOAT64_RTOL, name=name)
    numeric = (
        reference.activation_forward(name, v + EPS) - reference.activation_forward(name, v - EPS)
    ) / (2 * EPS)
    assert_close(reference.activation_derivative(name, y), numeric, 1e-8, name=f"d{name}")
