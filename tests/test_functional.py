"""Functional API without Keras: graphs, merge layers, shared layers, masks, configs, errors.

Gradients are checked against central finite differences of the model's own forward pass in
float64 (the numbers come from perturbing weights and inputs, never from our backward).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastrnn import Input, Model, Sequential
from fastrnn import layers as F
from fastrnn.layers import merging

RNG = np.random.default_rng(0)


def _fd_check(loss_fn, arrays, grads, eps=1e-6, tol=1e-6, n=5, seed=0):
    """Central differences of ``loss_fn`` at ``n`` random entries of each array."""
    rng = np.random.default_rng(seed)
    for arr, grad in zip(arrays, grads):
        assert grad.shape == arr.shape
        for flat in rng.choice(arr.size, size=min(n, arr.size), replace=False):
            i = np.unravel_index(flat, arr.shape)
            old = arr[i]
            arr[i] = old + eps
            up = loss_fn()
            arr[i] = old - eps
            down = loss_fn()
            arr[i] = old
            fd = (up - down) / (2 * eps)
            assert abs(fd - grad[i]) <= tol * max(1.0, abs(fd)), (i, fd, grad[i])


# ---- Input and symbolic tensors ---------------------------------------------------------------
def test_input_shapes_and_names():
    a = Input((7, 3), name="seq")
    assert a.shape == (None, 7, 3) and a.dtype == "float32"
    assert Input((5,), batch_size=4).shape == (4, 5)
    assert Input(batch_shape=(2, None, 8), dtype="int32").shape == (2, None, 8)
    assert Input(batch_shape=(2, None, 8), dtype="int32").dtype == "int32"
    layer = a._keras_history.operation
    assert isinstance(layer, F.InputLayer) and layer.name == "seq" and layer.count_params() == 0


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        ({}, ValueError, "shape"),
        ({"shape": (3,), "batch_shape": (2, 3)}, ValueError, "not both"),
        ({"batch_shape": (2, 3), "batch_size": 2}, ValueError, "not both"),
        ({"shape": (-1, 3)}, ValueError, "non-negative"),
        ({"shape": (3,), "batch_size": 0}, ValueError, "batch_size"),
        ({"shape": (3,), "dtype": "complex64"}, TypeError, "real numeric"),
        ({"shape": (3,), "sparse": True}, ValueError, "sparse"),
        ({"shape": "abc"}, ValueError, "non-negative"),
    ],
)
def test_input_rejects_bad_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        Input(**kwargs)


def test_symbolic_tensors_hold_no_values():
    a = Input((3,))
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(a)
    with pytest.raises(TypeError, match="merge layers"):
        a + a  # noqa: B018
    with pytest.raises(TypeError, match="not arrays"):
        F.LSTM(2)(Input((4, 3)), initial_state=[np.zeros((1, 2)), np.zeros((1, 2))])
    with pytest.raises(TypeError, match="takes one tensor"):
        F.Dense(2)([a, a])


def test_same_layer_object_on_arrays_and_symbolically():
    dense = F.Dense(3, activation="tanh")
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    eager = dense(x)
    inp = Input((5,))
    out = dense(inp)
    assert out.shape == (None, 3) and dense.output is out and dense.input is inp
    model = Model(inp, out)
    np.testing.assert_array_equal(model.predict(x, verbose=0), eager)
    k, b = dense.get_weights()
    np.testing.assert_allclose(eager, np.tanh(x @ k + b), rtol=1e-6)
    with pytest.raises(AttributeError, match="never called on a symbolic"):
        F.Dense(2).output  # noqa: B018


def test_graph_errors():
    a, b = Input((3,), name="ga"), Input((3,), name="gb")
    out = F.Add()([a, F.Dense(3)(b)])
    with pytest.raises(ValueError, match="Graph disconnected"):
        Model(a, out)
    with pytest.raises(TypeError, match="symbolic tensors"):
        Model(a, np.zeros(3))
    c = Input((3,))
    with pytest.raises(ValueError, match="used 2 times"):
        Model(c, F.Dense(1, name="twin")(F.Dense(3, name="twin")(c)))
    with pytest.raises(TypeError, match="custom"):
        Model()


def test_model_input_checks():
    a, b = Input((4, 2), name="ia"), Input((3,), name="ib")
    model = Model([a, b], F.Concatenate()([F.LSTM(2)(a), b]))
    xa, xb = np.ones((5, 4, 2), np.float32), np.ones((5, 3), np.float32)
    assert model.predict([xa, xb], verbose=0).shape == (5, 5)
    assert model.predict({"ia": xa, "ib": xb}, verbose=0).shape == (5, 5)
    with pytest.raises(ValueError, match="incompatible"):
        model.predict([xa, np.ones((5, 4), np.float32)], verbose=0)
    with pytest.raises(ValueError, match="2 inputs"):
        model.predict(xa, verbose=0)
    with pytest.raises(ValueError, match="missing"):
        model.predict({"ia": xa}, verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.predict([xa, xb[:4]], verbose=0)
    with pytest.raises(TypeError, match="complex"):
        model.predict([xa.astype(np.complex64), xb], verbose=0)


# ---- merge layers ----------------------------------------------------------------------------
def _np_inputs(shapes, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


@pytest.mark.parametrize(
    "cls,expected",
    [
        (F.Add, lambda xs: xs[0] + xs[1] + xs[2]),
        (F.Average, lambda xs: (xs[0] + xs[1] + xs[2]) / 3),
        (F.Multiply, lambda xs: xs[0] * xs[1] * xs[2]),
        (F.Maximum, lambda xs: np.maximum(np.maximum(xs[0], xs[1]), xs[2])),
        (F.Concatenate, lambda xs: np.concatenate(xs, -1)),
    ],
)
def test_merge_forward_and_backward(cls, expected):
    xs = _np_inputs([(5, 3, 4)] * 3)
    layer = cls(dtype="float64")
    np.testing.assert_allclose(layer(xs), expected(xs), rtol=1e-12)
    weights = np.random.default_rng(2).standard_normal(layer(xs).shape)

    def loss():
        return float(np.sum(layer(xs) * weights))

    layer(xs, training=True)
    grads = layer.backward(weights)
    assert layer.gradients == []
    _fd_check(loss, xs, grads, tol=1e-7)


def test_subtract_and_rank_broadcast():
    x, y = _np_inputs([(4, 6, 3), (4, 3)])
    sub = F.Subtract(dtype="float64")
    np.testing.assert_allclose(sub([x, y]), x - y[:, None, :], rtol=1e-12)
    add = F.Add(dtype="float64")
    out = add([x, y], training=True)
    np.testing.assert_allclose(out, x + y[:, None, :], rtol=1e-12)
    dx, dy = add.backward(np.ones_like(out))
    np.testing.assert_allclose(dy, np.full(y.shape, 6.0))  # summed over the broadcast axis
    np.testing.assert_allclose(dx, np.ones(x.shape))
    assert add.compute_output_shape([(None, 6, 3), (None, 3)]) == (None, 6, 3)


def test_concatenate_axis_1_and_shapes():
    x, y = _np_inputs([(2, 3, 4), (2, 5, 4)])
    cat = F.Concatenate(axis=1, dtype="float64")
    out = cat([x, y], training=True)
    np.testing.assert_array_equal(out, np.concatenate([x, y], 1))
    dx, dy = cat.backward(np.arange(out.size, dtype=np.float64).reshape(out.shape))
    np.testing.assert_array_equal(dx, np.arange(out.size).reshape(out.shape)[:, :3])
    assert cat.compute_output_shape([(None, 3, 4), (None, None, 4)]) == (None, None, 4)


@pytest.mark.parametrize(
    "make,inputs,pattern",
    [
        (F.Subtract, [(2, 3)] * 3, "exactly 2"),
        (F.Add, [(2, 3), (2, 4)], "incompatible shapes"),
        (F.Add, [(2, 3), (3, 3)], "batch sizes"),
        (F.Concatenate, [(2, 3, 4), (2, 4)], "same rank"),
        (F.Concatenate, [(2, 3, 4), (2, 5, 5)], "matching shapes"),
    ],
)
def test_merge_errors(make, inputs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()([np.ones(s, np.float32) for s in inputs])


def test_merge_rejects_non_lists_and_complex():
    with pytest.raises(ValueError, match="list of inputs"):
        F.Add()(np.ones((2, 3)))
    with pytest.raises(TypeError, match="complex"):
        F.Add()([np.ones((2, 3)), np.ones((2, 3), np.complex128)])
    with pytest.raises(ValueError, match="batch axis"):
        F.Concatenate(axis=0)([np.ones((2, 3)), np.ones((2, 3))])


def test_merge_masks_follow_keras_rules():
    """Element-wise merges OR the masks when all are given; Concatenate treats a missing mask as
    all-kept; Multiply and Maximum use masked entries as Keras does (checked against Keras in
    test_keras_compat_models)."""
    x = _np_inputs([(2, 4, 3)] * 2)
    m1 = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    m2 = np.array([[1, 1, 1, 0], [0, 0, 0, 0]], bool)
    add = F.Add()
    assert add.compute_mask(x, [m1, m2]).tolist() == (m1 | m2).tolist()
    assert add.compute_mask(x, [m1, None]) is None
    assert add.compute_mask(x, None) is None
    cat = F.Concatenate()
    assert cat.compute_mask(x, [m1, None]).all()
    assert cat.compute_mask(x, [m1, m2]).tolist() == (m1 | m2).tolist()
    assert (
        F.Concatenate(axis=1).compute_mask(x, [m1, m2]).tolist()
        == np.concatenate([m1, m2], 1).tolist()
    )
    mul = F.Multiply(dtype="float64")
    out = mul(x, mask=[m1, m2])
    expected = np.where(m1[..., None], x[0], 1) * np.where(m2[..., None], x[1], 1)
    expected = np.where((m1 | m2)[..., None], expected, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    mx = F.Maximum(dtype="float64")
    out = mx(x, mask=[m1, m2])
    a = x[0]
    b = np.where(m2[..., None], x[1], a)
    a = np.where(m1[..., None], a, b)
    np.testing.assert_allclose(out, np.maximum(a, b), rtol=1e-12)


def test_masked_merge_backward_finite_differences():
    x = _np_inputs([(2, 4, 3)] * 2, seed=3)
    masks = [
        np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool),
        np.array([[1, 0, 1, 0], [0, 0, 1, 1]], bool),
    ]
    w = np.random.default_rng(4).standard_normal((2, 4, 3))
    for cls in (F.Multiply, F.Maximum):
        layer = cls(dtype="float64")

        def loss():
            return float(np.sum(layer(x, mask=masks) * w))  # noqa: B023

        layer(x, mask=masks, training=True)
        _fd_check(loss, x, layer.backward(w), tol=1e-7)


def test_merge_helpers_and_config():
    a, b = Input((3,)), Input((3,))
    for fn, cls in [
        (merging.add, F.Add),
        (merging.subtract, F.Subtract),
        (merging.multiply, F.Multiply),
        (merging.average, F.Average),
        (merging.maximum, F.Maximum),
        (merging.concatenate, F.Concatenate),
    ]:
        out = fn([a, b])
        assert isinstance(out._keras_history.operation, cls)
    cat = F.Concatenate(axis=1, name="joined")
    clone = F.deserialize(F.serialize(cat))
    assert clone.axis == 1 and clone.name == "joined"


# ---- graphs: forward, backward, shared layers --------------------------------------------------
def _shared_graph(dtype="float64"):
    seq = Input((5, 3), name="fseq")
    aux = Input((2,), name="faux")
    shared = F.Dense(3, activation="tanh", dtype=dtype, name="fshared")
    s1 = shared(aux)
    s2 = shared(F.Dense(2, dtype=dtype, name="fpre")(aux))
    out, h, c = F.LSTM(3, return_sequences=True, return_state=True, dtype=dtype, name="flstm")(seq)
    g = F.GRU(3, dtype=dtype, name="fgru")(out, initial_state=[F.Add(dtype=dtype)([h, s1])])
    merged = F.Concatenate(dtype=dtype)([g, F.Multiply(dtype=dtype)([c, s2]), s1])
    o1 = F.Dense(2, dtype=dtype, name="fo1")(merged)
    o2 = F.Dense(1, dtype=dtype, name="fo2")(F.Maximum(dtype=dtype)([g, s2]))
    return Model([seq, aux], [o1, o2])


def test_graph_backward_finite_differences():
    """Shared Dense (two calls), encoder states into another layer's initial_state, merges."""
    model = _shared_graph()
    rng = np.random.default_rng(5)
    x = [rng.standard_normal((4, 5, 3)), rng.standard_normal((4, 2))]
    w1, w2 = rng.standard_normal((4, 2)), rng.standard_normal((4, 1))

    def loss():
        o1, o2 = model(x)
        return float(np.sum(o1 * w1) + np.sum(o2 * w2))

    model(x, training=True)
    d_inputs = model.backward([w1, w2])
    assert len(model.gradients) == len(model.weights)
    _fd_check(loss, model.weights, model.gradients, tol=1e-6)
    _fd_check(loss, x, d_inputs, tol=1e-6)
    # The shared layer's gradient is the sum over its two calls: a separate copy per call
    # would get only part of it.
    shared = model.get_layer("fshared")
    assert len(shared._inbound_nodes) == 2


def test_nested_sequential_inside_functional():
    encoder = Sequential(
        [F.GRU(4, return_sequences=True, dtype="float64"), F.LSTM(3, dtype="float64")]
    )
    a, b = Input((6, 2)), Input((6, 2))
    head = F.Dense(1, dtype="float64")
    model = Model([a, b], head(F.Subtract(dtype="float64")([encoder(a), encoder(b)])))
    rng = np.random.default_rng(6)
    x = [rng.standard_normal((3, 6, 2)), rng.standard_normal((3, 6, 2))]
    direct = head(encoder(x[0]) - encoder(x[1]))
    np.testing.assert_allclose(model(x), direct, rtol=1e-12)
    assert len(model.weights) == len(encoder.weights) + 2
    w = rng.standard_normal((3, 1))

    def loss():
        return float(np.sum(model(x) * w))

    model(x, training=True)
    model.backward(w)
    _fd_check(loss, model.weights, model.gradients, tol=1e-6)


def test_masks_travel_along_edges():
    """Embedding's mask reaches the LSTM through Dropout and Dense (which pass masks on), and the
    LSTM's output carries it to the loss; Keras does the same."""
    ids = Input((6,), dtype="int32")
    emb, drop, dense = (
        F.Embedding(9, 4, mask_zero=True),
        F.Dropout(0.5),
        F.Dense(4, dtype="float64"),
    )
    lstm = F.LSTM(3, dtype="float64")
    h = dense(drop(emb(ids)))
    model = Model(ids, lstm(h))
    x = np.array([[3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    out = model.predict(x, verbose=0)
    unpadded = lstm(dense(emb(x[:1, :3])))  # the padded steps skipped = never there
    np.testing.assert_allclose(out[:1], unpadded, rtol=1e-12)
    seq_model = Model(ids, F.LSTM(3, return_sequences=True, dtype="float64")(h))
    _, mask, _ = seq_model._forward(x)
    assert mask.tolist() == (x != 0).tolist()


def test_explicit_training_argument_in_graph():
    """As Keras: a call's recorded ``training`` holds in direct calls of the model; ``predict``
    (training=False) and ``fit`` (True) override it."""
    inp = Input((50,))
    always = Model(inp, F.Dropout(0.5, seed=1)(inp, training=True))
    x = np.ones((2, 50), np.float32)
    assert (always(x) == 0).any()
    np.testing.assert_array_equal(always.predict(x, verbose=0), x)
    np.testing.assert_array_equal(always(x, training=False), x)
    default = Model(inp, F.Dropout(0.5, seed=1)(inp))
    np.testing.assert_array_equal(default(x), x)


def test_config_round_trip_with_dict_io():
    seq = Input((7, 5), name="cseq")
    aux = Input((3,), name="caux")
    _, h, c = F.LSTM(3, return_state=True, name="cenc")(F.Masking(name="cmask")(seq))
    shared = F.Dense(2, name="cshared")
    joined = F.Concatenate(name="ccat")([shared(aux), shared(F.Dense(3, name="cpre")(aux)), h, c])
    model = Model({"seq": seq, "aux": aux}, {"score": F.Dense(1, name="cscore")(joined), "h": h})
    config = json.loads(json.dumps(model.get_config()))
    layer_entries = {entry["name"]: entry for entry in config["layers"]}
    assert layer_entries["cscore"]["inbound_nodes"][0]["args"][0]["config"]["keras_history"] == [
        "ccat",
        0,
        0,
    ]
    assert len(layer_entries["cshared"]["inbound_nodes"]) == 2
    assert config["input_layers"] == {"aux": ["caux", 0, 0], "seq": ["cseq", 0, 0]}
    clone = Model.from_config(config)
    clone.set_weights(model.get_weights())
    assert [la.name for la in clone.layers] == [la.name for la in model.layers]
    rng = np.random.default_rng(7)
    x = {
        "seq": rng.standard_normal((4, 7, 5)).astype(np.float32),
        "aux": rng.standard_normal((4, 3)),
    }
    x["seq"][1, 4:] = 0.0
    a, b = model.predict(x, verbose=0), clone.predict(x, verbose=0)
    for key in ("score", "h"):
        np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ValueError, match="refer to tensors"):
        bad = json.loads(json.dumps(config))
        bad["layers"] = [e for e in bad["layers"] if e["name"] != "cpre"]
        Model.from_config(bad)


def test_summary_connected_to_and_shapes(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    lines = []
    _shared_graph("float32").summary(print_fn=lines.append, line_length=120)
    text = lines[0]
    assert "Connected to" in text
    assert "faux[0][0], fpre[0][0]" in text  # the shared Dense's two calls
    assert "[(None, 5, 3), (None, 3)," in text  # the LSTM's three outputs, as a list
    assert text.endswith("\n") and "Total params:" in text


# ---- Sequential with Input ---------------------------------------------------------------------
def test_sequential_input_first_and_errors():
    model = Sequential([Input((12, 1)), F.SimpleRNN(3), F.Dense(1)])
    assert model.built and model.inputs[0].shape == (None, 12, 1)
    assert model.outputs[0].shape == (None, 1)
    assert model.layers[0].output.shape == (None, 3)
    assert [type(la).__name__ for la in model.layers] == ["SimpleRNN", "Dense"]
    with pytest.raises(ValueError, match="first element"):
        Sequential([F.Dense(2), Input((3,))])
    with pytest.raises(TypeError, match="fastrnn layer"):
        Sequential([object()])
    with pytest.raises(ValueError, match="several outputs"):
        Sequential([Input((4, 2)), F.LSTM(3, return_state=True), F.Dense(1)])
    popped = model.pop()
    assert isinstance(popped, F.Dense) and model.outputs[0].shape == (None, 3)
    model.pop()
    model.add(F.GRU(2))  # the Input stays when every layer is popped
    assert model.outputs[0].shape == (None, 2)
    model.add(F.Dense(1))
    clone = Sequential.from_config(model.get_config())
    assert clone.built and clone.inputs[0].shape == (None, 12, 1)


def test_batch_shape_gives_stateful_layers_their_states():
    model = Sequential([Input(batch_shape=(3, 4, 2)), F.LSTM(5, stateful=True)])
    states = model.layers[0].states
    assert [s.shape for s in states] == [(3, 5), (3, 5)] and not np.any(states[0])
    x = np.random.default_rng(8).standard_normal((3, 4, 2)).astype(np.float32)
    first = model.predict(x, batch_size=3, verbose=0)
    second = model.predict(x, batch_size=3, verbose=0)
    assert not np.allclose(first, second)  # the states carried over
    model.reset_states()
    np.testing.assert_array_equal(model.predict(x, batch_size=3, verbose=0), first)
    with pytest.raises(ValueError, match="batch size"):
        model.predict(x[:2], verbose=0)


def test_config_counts_only_the_models_own_nodes():
    """A layer called before in another graph has more nodes; configs count this model's."""
    dense = F.Dense(2, name="reused")
    first_in = Input((3,))
    Model(first_in, dense(F.Dense(3)(first_in)))
    inp = Input((3,), name="fresh_in")
    model = Model(inp, F.Dense(1, name="fresh_out")(dense(inp)))
    assert len(dense._inbound_nodes) == 2
    config = model.get_config()
    entry = [e for e in config["layers"] if e["name"] == "fresh_out"][0]
    assert entry["inbound_nodes"][0]["args"][0]["config"]["keras_history"] == ["reused", 0, 0]
    clone = Model.from_config(config)
    clone.set_weights(model.get_weights())
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
