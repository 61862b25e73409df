"""Layers against the NumPy reference (recomputed here, never hard-coded) and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from fastrnn import reference
from fastrnn.layers import GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, Masking, SimpleRNN

T, B, I, H = 7, 5, 6, 4  # noqa: E741
CELLS = [
    (SimpleRNN, "simple_rnn", {}),
    (LSTM, "lstm", {}),
    (GRU, "gru", {"reset_after": True}),
    (GRU, "gru", {"reset_after": False}),
]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _close(actual, expected, tol):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = np.abs(actual - expected)
    idx = np.unravel_index(np.argmax(err), err.shape) if err.size else ()
    assert err.max(initial=0) <= tol, (
        f"max error {err.max()} at {idx}: {actual[idx]} vs {expected[idx]}"
    )


def _ref_forward(name, layer, x_tm, **kw):
    fn = getattr(reference, f"{name}_forward")
    extra = {"activation": layer.activation}
    if name != "simple_rnn":
        extra["recurrent_activation"] = layer.recurrent_activation
    if name == "gru":
        extra["reset_after"] = layer.reset_after
    w = [a.astype(np.float64) for a in layer.get_weights()]
    bias = w[2] if layer.use_bias else None
    return fn(x_tm.astype(np.float64), w[0], w[1], bias, **extra, **kw)


def _random_weights(layer, rng):
    layer.set_weights([rng.uniform(-0.5, 0.5, w.shape) for w in layer.get_weights()])


@pytest.mark.parametrize("cls,name,extra", CELLS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrent_matches_reference(cls, name, extra, go_backwards):
    rng = _rng(1)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    x_copy = x.copy()
    layer = cls(H, return_sequences=True, return_state=True, go_backwards=go_backwards, **extra)
    layer(x)
    _random_weights(layer, rng)
    out, *states = layer(x)
    ref_out, ref_states, _ = _ref_forward(
        name, layer, x.transpose(1, 0, 2), go_backwards=go_backwards
    )
    _close(out, ref_out.transpose(1, 0, 2), 1e-5)
    for s, r in zip(states, ref_states):
        _close(s, r, 1e-5)
    np.testing.assert_array_equal(x, x_copy)
    last = cls(H, go_backwards=go_backwards, **extra)
    last(x)
    last.set_weights(layer.get_weights())
    _close(last(x), ref_out[-1], 1e-5)


@pytest.mark.parametrize("cls,name,extra", CELLS)
def test_recurrent_backward_matches_reference(cls, name, extra):
    rng = _rng(2)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    mask = rng.random((B, T)) > 0.3
    h0 = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(2 if name == "lstm" else 1)]
    layer = cls(H, return_sequences=True, **extra)
    layer(x)
    _random_weights(layer, rng)
    y = layer(x, initial_state=h0, mask=mask, training=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, *dh0 = layer.backward(dy)
    _, _, ctx = _ref_forward(
        name,
        layer,
        x.transpose(1, 0, 2),
        initial_state=[s.astype(np.float64) for s in h0],
        mask=mask.T,
        training=True,
    )
    fn = getattr(reference, f"{name}_backward")
    g = fn(ctx, dy.transpose(1, 0, 2).astype(np.float64), None)
    _close(dx, g.dx.transpose(1, 0, 2), 1e-4)
    for a, b in zip(dh0, g.dinitial_state):
        _close(a, b, 1e-4)
    expected = [g.dkernel, g.drecurrent_kernel, g.dbias]
    assert len(layer.gradients) == len(layer.get_weights())
    for a, b in zip(layer.gradients, expected):
        _close(a, b, 1e-4)


def test_mask_equals_unpadded():
    rng = _rng(3)
    lengths = [7, 3, 5, 1, 6]
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    mask = np.arange(T)[None, :] < np.array(lengths)[:, None]
    for cls in (SimpleRNN, LSTM, GRU):
        layer = cls(H, seed=0)
        padded = layer(np.where(mask[..., None], x, 0.0), mask=mask)
        for b, n in enumerate(lengths):
            alone = layer(x[b : b + 1, :n])
            _close(padded[b : b + 1], alone, 1e-5)


def test_masking_layer_mask_flows():
    x = _rng(4).standard_normal((2, 5, 3)).astype(np.float32)
    x[1, 3:] = 0.0
    m = Masking()
    y = m(x)
    mask = m.compute_mask(x, None)
    assert mask.tolist() == [[True] * 5, [True, True, True, False, False]]
    lstm = LSTM(4, seed=1)
    _close(lstm(y, mask=mask)[1], lstm(x[1:, :3])[0], 1e-5)


def test_embedding_mask_and_lookup():
    emb = Embedding(10, 3, mask_zero=True)
    idx = np.array([[1, 2, 0], [9, 0, 0]])
    out = emb(idx)
    np.testing.assert_array_equal(out, emb.get_weights()[0][idx])
    assert emb.output_mask.tolist() == [[True, True, False], [True, False, False]]


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_merge_modes(merge_mode, return_sequences):
    rng = _rng(5)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    mask = np.ones((B, T), bool)
    mask[0, 5:] = False
    bi = Bidirectional(GRU(H, return_sequences=return_sequences), merge_mode=merge_mode)
    out = bi(x, mask=mask)
    w = bi.get_weights()
    fwd, bwd = (
        GRU(H, return_sequences=return_sequences),
        GRU(H, return_sequences=return_sequences, go_backwards=True),
    )
    fwd(x), bwd(x)
    fwd.set_weights(w[:3])
    bwd.set_weights(w[3:])
    y, y_rev = fwd(x, mask=mask), bwd(x, mask=mask)
    if return_sequences:
        y_rev = y_rev[:, ::-1]
        y, y_rev = y * mask[..., None], y_rev * mask[..., None]
    expected = {
        "concat": lambda: np.concatenate([y, y_rev], -1),
        "sum": lambda: y + y_rev,
        "mul": lambda: y * y_rev,
        "ave": lambda: (y + y_rev) / 2,
        None: lambda: [y, y_rev],
    }[merge_mode]()
    if merge_mode is None:
        _close(out[0], expected[0], 1e-6)
        _close(out[1], expected[1], 1e-6)
    else:
        _close(out, expected, 1e-6)


def test_dense_3d_and_dropout():
    rng = _rng(6)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    d = Dense(5, activation="tanh")
    d(x)
    k, b = d.get_weights()
    _close(d(x), np.tanh(x @ k + b), 1e-6)
    drop = Dropout(0.5, seed=0)
    np.testing.assert_array_equal(drop(x), x)
    y = drop(x, training=True)
    assert set(np.unique(np.round(y / np.where(x == 0, 1, x), 5))) <= {0.0, 2.0}


def test_stateful_and_reset():
    rng = _rng(7)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    full = LSTM(4, seed=3)
    part = LSTM(4, seed=3, stateful=True)
    expected = full(x)
    part(x[:, :3])
    _close(part(x[:, 3:]), expected, 1e-5)
    part.reset_states()
    _close(part(x[:, :3]), full(x[:, :3]), 1e-5)


def _fd_check(loss_fn, params, grads, eps=1e-6, tol=1e-6, n=6, seed=0):
    rng = _rng(seed)
    for p, g in zip(params, grads):
        for flat in rng.choice(p.size, size=min(n, p.size), replace=False):
            i = np.unravel_index(flat, p.shape)
            old = p[i]
            p[i] = old + eps
            up = loss_fn()
            p[i] = old - eps
            down = loss_fn()
            p[i] = old
            fd = (up - down) / (2 * eps)
            assert abs(fd - g[i]) <= tol * max(1.0, abs(fd)), (i, fd, g[i])


@pytest.mark.parametrize("rnn", [SimpleRNN, LSTM, GRU])
def test_stack_backward_finite_differences(rnn):
    rng = _rng(8)
    idx = rng.integers(0, 9, (3, 5))
    idx[0, 3:] = 0
    emb = Embedding(9, 4, mask_zero=True, dtype="float64")
    rec = Bidirectional(rnn(3, return_sequences=True, dtype="float64"), merge_mode="sum")
    rec2 = rnn(3, dtype="float64")
    dense = Dense(2, activation="tanh", dtype="float64")
    h0 = rng.standard_normal((3, 3))
    c0 = rng.standard_normal((3, 3))
    target = rng.standard_normal((3, 2))

    def forward(training=False):
        e = emb(idx, training=training)
        s = rec(e, mask=emb.compute_mask(idx), training=training)
        states = [h0, c0] if rnn is LSTM else [h0]
        r = rec2(s, initial_state=states, mask=rec.output_mask, training=training)
        return dense(r, training=training)

    def loss():
        return 0.5 * float(np.sum((forward() - target) ** 2))

    y = forward(training=True)
    d = dense.backward(y - target)
    d, *dstates = rec2.backward(d)
    d = rec.backward(d)
    assert emb.backward(d) is None
    for layer in (emb, rec, rec2, dense):
        assert [g.shape for g in layer.gradients] == [w.shape for w in layer.weights]
        _fd_check(loss, layer.weights, layer.gradients)
    _fd_check(loss, [h0, c0][: len(dstates)], dstates)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SimpleRNN(3),
        lambda: LSTM(3, return_sequences=True),
        lambda: Bidirectional(GRU(3)),
        lambda: Dense(3),
    ],
)
def test_complex_inputs_raise_type_error(make):
    x = (np.ones((2, 4, 3)) + 1j).astype(np.complex64)
    layer = make()
    with pytest.raises(TypeError, match="complex"):
        layer(x)
    layer(x.real.astype(np.float32))  # a real array of the same shape is fine
    with pytest.raises(TypeError, match="complex"):
        layer.set_weights([w.astype(np.complex128) for w in layer.get_weights()])


@pytest.mark.parametrize("cls,name,extra", CELLS)
def test_zero_time_steps_give_the_initial_state(cls, name, extra):
    """T == 0: nothing to run, so the last output is the initial state (zeros without one), as
    for a fully masked sequence. (Keras raises IndexError.)"""
    rng = _rng(9)
    x = np.zeros((B, 0, I), np.float32)
    n_states = 2 if name == "lstm" else 1
    h0 = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(n_states)]
    layer = cls(H, return_state=True, **extra)
    out, *states = layer(x)
    np.testing.assert_array_equal(out, np.zeros((B, H), np.float32))
    out, *states = layer(x, initial_state=h0, training=True)
    np.testing.assert_array_equal(out, h0[0])
    for s, s0 in zip(states, h0):
        np.testing.assert_array_equal(s, s0)
    dy = rng.standard_normal((B, H)).astype(np.float32)
    dx, *dh0 = layer.backward([dy] + [None] * n_states)
    assert dx.shape == (B, 0, I)
    np.testing.assert_array_equal(dh0[0], dy)  # the output was h0 itself
    assert all(not np.any(g) for g in layer.gradients)
    seq = cls(H, return_sequences=True, **extra)
    assert seq(x).shape == (B, 0, H)
    bi = Bidirectional(cls(H, **extra))
    np.testing.assert_array_equal(bi(x), np.zeros((B, 2 * H), np.float32))


def test_positional_call_arguments_and_trainable_propagation():
    rng = _rng(10)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    h0 = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(2)]
    lstm = LSTM(H, return_state=True)
    np.testing.assert_array_equal(lstm(x, h0)[0], lstm(x, initial_state=h0)[0])
    with pytest.raises(TypeError, match="multiple values"):
        lstm(x, h0, initial_state=h0)
    bi = Bidirectional(GRU(H))
    bi(x)
    assert len(bi.trainable_weights) == 6
    bi.backward_layer.trainable = False
    assert len(bi.trainable_weights) == 3 and len(bi.non_trainable_weights) == 3
    bi.trainable = False
    assert not bi.forward_layer.trainable and bi.trainable_weights == []


def test_model_calls_leave_no_per_call_state_on_layers():
    """Inside a model, masks and caches travel with the call, not on the shared layer."""
    from fastrnn.models import Sequential

    x = _rng(11).standard_normal((B, T, I)).astype(np.float32)
    x[0, 3:] = 0.0
    masking, lstm = Masking(), LSTM(H, return_sequences=True)
    model = Sequential([masking, lstm])
    sentinel = object()
    masking.output_mask = lstm.output_mask = sentinel
    model.predict(x, verbose=0)
    model(x, training=True)
    assert masking.output_mask is sentinel and lstm.output_mask is sentinel
