"""Models against real Keras 3 (torch backend), weights copied across by layer name.

Each case builds the same architecture (same layer names) in both libraries and compares what
Keras computes: predictions of multi-input/multi-output Functional models with masks carried
along the graph, one SGD training step (so every gradient through the graph), loss weighting,
sample and class weights, masked metrics, ``train_on_batch``'s return values, ``summary()``
text and the progress lines printed by ``fit``/``evaluate``/``predict``.
"""

from __future__ import annotations

import io
import json
import os
import re
import types
from contextlib import redirect_stdout

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")

import fastrnn  # noqa: E402
from fastrnn import layers as F  # noqa: E402
from fastrnn import optimizers as O  # noqa: E402

K = keras.layers


def _copy_weights(ours, theirs) -> None:
    for layer in ours.layers:
        if layer.weights:
            layer.set_weights([np.asarray(w) for w in theirs.get_layer(layer.name).get_weights()])


def _max_weight_error(ours, theirs) -> float:
    err = 0.0
    for layer in ours.layers:
        for a, b in zip(layer.get_weights(), theirs.get_layer(layer.name).get_weights()):
            err = max(err, float(np.abs(a - np.asarray(b)).max()))
    return err


def _both(build):
    theirs = build(K, keras.Input, keras.Model)
    ours = build(F, fastrnn.Input, fastrnn.Model)
    _copy_weights(ours, theirs)
    return ours, theirs


def _graph(L, Input, Model):
    """Masking, LSTM, Bidirectional, a shared Dense, every merge layer, two outputs."""
    seq = Input((7, 5), name="seq")
    aux = Input((3,), name="aux")
    h = L.LSTM(4, return_sequences=True, name="lstm")(L.Masking(name="mask")(seq))
    g = L.Bidirectional(L.GRU(3, return_sequences=True), name="bi")(h)
    g2 = L.GRU(2, name="gru")(L.Concatenate(name="cat_t")([h, g]))
    shared = L.Dense(2, name="shared")
    a1 = shared(aux)
    a2 = shared(L.Dense(3, name="pre")(aux))
    s = L.Add(name="add")([a1, a2, g2])
    p = L.Multiply(name="mul")([a1, g2])
    mx = L.Maximum(name="max")([a1, a2])
    av = L.Average(name="avg")([s, p, mx])
    sb = L.Subtract(name="sub")([av, a1])
    out1 = L.Dense(1, name="out1")(L.Concatenate(name="cat")([sb, g2]))
    out2 = L.Dense(3, activation="softmax", name="out2")(av)
    return Model([seq, aux], [out1, out2])


def _graph_data(seed=0, n=6):
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((n, 7, 5)).astype(np.float32)
    xs[1, 4:] = 0.0
    xs[3, 1:] = 0.0
    xa = rng.standard_normal((n, 3)).astype(np.float32)
    y1 = rng.standard_normal((n, 1)).astype(np.float32)
    y2 = rng.integers(0, 3, n)
    return [xs, xa], [y1, y2], rng


def test_functional_forward_and_sgd_step_match_keras():
    ours, theirs = _both(_graph)
    x, y, rng = _graph_data()
    # Whole-model weight lists come in Keras's order: set_weights(keras.get_weights()) works.
    assert len(ours.get_weights()) == len(theirs.get_weights())
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, np.asarray(b))
    for a, b in zip(ours.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, atol=2e-6)
    sw = rng.random(6).astype(np.float32)
    kw = dict(
        loss=["mse", "sparse_categorical_crossentropy"],
        loss_weights=[0.3, 2.0],
        metrics=[["mae"], ["accuracy"]],
        weighted_metrics=[[], ["accuracy"]],
    )
    theirs.compile(keras.optimizers.SGD(0.1), **kw)
    ours.compile(O.SGD(0.1), **kw)
    k_logs = theirs.train_on_batch(x, y, sample_weight=sw, return_dict=True)
    f_logs = ours.train_on_batch(x, y, sample_weight=sw, return_dict=True)
    assert list(f_logs) == list(k_logs)
    np.testing.assert_allclose(list(f_logs.values()), list(k_logs.values()), rtol=2e-6)
    # The step moved every weight, through shared layers, merges and masked recurrences.
    assert _max_weight_error(ours, theirs) < 1e-6
    np.testing.assert_allclose(
        ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), rtol=2e-6
    )


def _merge_model(merge, mask_b, **kwargs):
    def build(L, Input, Model):
        a = Input((6,), name="a")
        b = Input((6,), name="b")
        ha = L.LSTM(4, return_sequences=True, name="la")(
            L.Embedding(9, 4, mask_zero=True, name="ea")(a)
        )
        hb = L.SimpleRNN(4, return_sequences=True, name="lb")(
            L.Embedding(9, 4, mask_zero=mask_b, name="eb")(b)
        )
        m = getattr(L, merge)(name="merge", **kwargs)([ha, hb])
        # The GRU skips what the merged mask hides; the loss averages over the kept steps.
        return Model([a, b], L.Dense(2, name="out")(L.GRU(3, return_sequences=True, name="g")(m)))

    return build


@pytest.mark.parametrize(
    "merge,kwargs",
    [
        ("Add", {}),
        ("Subtract", {}),
        ("Multiply", {}),
        ("Average", {}),
        ("Maximum", {}),
        ("Concatenate", {}),
        ("Concatenate", {"axis": 1}),
    ],
)
@pytest.mark.parametrize("mask_b", [True, False])
def test_merge_masks_along_edges_match_keras(merge, kwargs, mask_b):
    ours, theirs = _both(_merge_model(merge, mask_b, **kwargs))
    rng = np.random.default_rng(2)
    xa = rng.integers(1, 9, (5, 6))
    xa[0, 3:] = 0
    xa[2, 1:] = 0
    xb = rng.integers(1, 9, (5, 6))
    xb[0, 4:] = 0
    xb[1, 2:] = 0
    t = 12 if kwargs.get("axis") == 1 else 6
    y = rng.standard_normal((5, t, 2)).astype(np.float32)
    np.testing.assert_allclose(
        ours.predict([xa, xb], verbose=0), theirs.predict([xa, xb], verbose=0), atol=1e-6
    )
    theirs.compile(keras.optimizers.SGD(0.3), "mse", metrics=["mae"])
    ours.compile(O.SGD(0.3), "mse", metrics=["mae"])
    np.testing.assert_allclose(
        ours.train_on_batch([xa, xb], y), theirs.train_on_batch([xa, xb], y), rtol=2e-6
    )
    assert _max_weight_error(ours, theirs) < 1e-6


def _seq2seq(L, Input, Model):
    enc_in = Input((6,), name="enc_in")
    dec_in = Input((5,), name="dec_in")
    _, h, c = L.LSTM(3, return_state=True, name="enc")(
        L.Embedding(20, 4, mask_zero=True, name="enc_emb")(enc_in)
    )
    # Keras hands a layer the mask of its input only when that input is its one tensor
    # argument: with initial_state tensors the decoder runs over the padding too.
    d = L.Embedding(20, 4, mask_zero=True, name="dec_emb")(dec_in)
    seq = L.LSTM(3, return_sequences=True, name="dec")(d, initial_state=[h, c])
    return Model([enc_in, dec_in], L.Dense(20, activation="softmax", name="proj")(seq))


def test_encoder_decoder_with_initial_state_matches_keras():
    ours, theirs = _both(_seq2seq)
    rng = np.random.default_rng(1)
    xe = rng.integers(1, 20, (4, 6))
    xe[1, 3:] = 0
    xe[2, 1:] = 0
    xd = rng.integers(1, 20, (4, 5))
    xd[0, 2:] = 0
    y = rng.integers(0, 20, (4, 5))
    np.testing.assert_allclose(
        ours.predict([xe, xd], verbose=0), theirs.predict([xe, xd], verbose=0), atol=1e-6
    )
    theirs.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy", metrics=["acc"])
    ours.compile(O.SGD(0.5), "sparse_categorical_crossentropy", metrics=["acc"])
    np.testing.assert_allclose(
        ours.train_on_batch([xe, xd], y), theirs.train_on_batch([xe, xd], y), rtol=2e-6
    )
    assert _max_weight_error(ours, theirs) < 1e-6


def _padded_regression(L, Input, Model):
    seq = Input((6,), name="ids")
    h = L.LSTM(4, return_sequences=True, name="lstm")(
        L.Embedding(20, 3, mask_zero=True, name="emb")(seq)
    )
    return Model(seq, L.Dense(2, name="out")(h))


def _padded_batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 20, (5, 6))
    ids[1, 3:] = 0
    ids[3, 1:] = 0
    return ids, rng.standard_normal((5, 6, 2)).astype(np.float32), rng


def test_metrics_weighted_by_the_padding_mask():
    """Keras weights metrics by the mask: the padded steps do not count in ``mae``."""
    ours, theirs = _both(_padded_regression)
    ids, y, rng = _padded_batch()
    for m in (ours, theirs):
        m.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mse"])
    expected = theirs.evaluate(ids, y, verbose=0, return_dict=True)
    got = ours.evaluate(ids, y, verbose=0, return_dict=True)
    assert list(got) == list(expected)
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5)
    # The same numbers by hand: the mean absolute error over the kept steps only.
    pred = ours.predict(ids, verbose=0)
    keep = ids != 0
    assert got["mae"] == pytest.approx(np.abs(pred - y).mean(-1)[keep].mean(), rel=1e-6)
    assert got["mae"] != pytest.approx(np.abs(pred - y).mean(), rel=1e-3)
    # With per-step sample weights: loss and weighted metrics see them, plain metrics do not.
    sw = rng.random((5, 6)).astype(np.float32)
    expected = theirs.evaluate(ids, y, sample_weight=sw, verbose=0, return_dict=True)
    got = ours.evaluate(ids, y, sample_weight=sw, verbose=0, return_dict=True)
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5)


def _classifier(L, Input, Model):
    x = Input((5, 3), name="x")
    return Model(x, L.Dense(3, activation="softmax", name="out")(L.GRU(4, name="gru")(x)))


def test_sample_and_class_weights_match_keras():
    ours, theirs = _both(_classifier)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 5, 3)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    sw = rng.random(10).astype(np.float32)
    for m, opt in ((ours, O.SGD(0.2)), (theirs, keras.optimizers.SGD(0.2))):
        m.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"])
    for kwargs in ({"sample_weight": sw}, {"class_weight": {0: 0.5, 1: 2.0, 2: 1.25}}):
        k = theirs.train_on_batch(x, y, **kwargs)
        f = ours.train_on_batch(x, y, **kwargs)
        np.testing.assert_allclose(f, k, rtol=2e-6)
        assert _max_weight_error(ours, theirs) < 1e-6
    np.testing.assert_allclose(
        ours.evaluate(x, y, sample_weight=sw, verbose=0),
        theirs.evaluate(x, y, sample_weight=sw, verbose=0),
        rtol=2e-6,
    )


def test_fit_with_weighted_validation_matches_keras():
    ours, theirs = _both(_classifier)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 5, 3)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    val = (x[:5], y[:5], rng.random(5).astype(np.float32))
    for m, opt in ((ours, O.SGD(0.2)), (theirs, keras.optimizers.SGD(0.2))):
        m.compile(opt, "sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    kh = theirs.fit(x, y, batch_size=4, epochs=3, shuffle=False, validation_data=val, verbose=0)
    fh = ours.fit(x, y, batch_size=4, epochs=3, shuffle=False, validation_data=val, verbose=0)
    assert list(fh.history) == list(kh.history)
    for key in kh.history:
        np.testing.assert_allclose(fh.history[key], kh.history[key], rtol=2e-5, err_msg=key)
    assert _max_weight_error(ours, theirs) < 1e-6


def test_train_on_batch_returns_what_keras_returns():
    ours, theirs = _both(_classifier)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)
    y = rng.integers(0, 3, 4)
    for m in (ours, theirs):
        m.compile("sgd", "sparse_categorical_crossentropy")
    k, f = theirs.train_on_batch(x, y), ours.train_on_batch(x, y)
    assert type(f) is type(k) is float and f == pytest.approx(k, rel=2e-6)
    onehot = np.eye(3, dtype=np.float32)[y]
    for m in (ours, theirs):
        m.compile("sgd", "categorical_crossentropy", metrics=["accuracy", "mse"])
    k, f = theirs.test_on_batch(x, onehot), ours.test_on_batch(x, onehot)
    assert isinstance(f, list) and len(f) == len(k) == 3
    assert all(type(v) is float for v in f)
    np.testing.assert_allclose(f, k, rtol=2e-6)
    assert type(ours.predict_on_batch(x)) is type(theirs.predict_on_batch(x)) is np.ndarray


@pytest.fixture
def frozen_clock(monkeypatch):
    """Both progress bars read one constant clock, so their text is deterministic."""
    from fastrnn import _progbar
    from keras.src.utils import progbar as keras_progbar

    clock = types.SimpleNamespace(time=lambda: 1000.0)
    monkeypatch.setattr(_progbar, "time", clock)
    monkeypatch.setattr(keras_progbar, "time", clock)


_NUMBER = re.compile(r"(?<=: )-?\d+\.\d+(e[-+]\d+)?")


def _split_numbers(text: str) -> tuple[str, list[float]]:
    return _NUMBER.sub("#", text), [float(m.group(0)) for m in _NUMBER.finditer(text)]


def _printed(fn, *args, **kwargs) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        fn(*args, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("verbose", [1, 2])
def test_progress_lines_match_keras(frozen_clock, verbose):
    ours, theirs = _both(_classifier)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((10, 5, 3)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    for m, opt in ((ours, O.SGD(0.1)), (theirs, keras.optimizers.SGD(0.1))):
        m.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"])
    calls = [
        ("fit", dict(x=x, y=y, epochs=2, batch_size=4, shuffle=False, validation_split=0.2)),
        ("fit", dict(x=x, y=y, epochs=1, batch_size=8, shuffle=False)),
        ("evaluate", dict(x=x, y=y, batch_size=4)),
        ("predict", dict(x=x, batch_size=4)),
    ]
    for method, kwargs in calls:
        k_text = _printed(getattr(theirs, method), verbose=verbose, **kwargs)
        f_text = _printed(getattr(ours, method), verbose=verbose, **kwargs)
        k_skeleton, k_values = _split_numbers(k_text)
        f_skeleton, f_values = _split_numbers(f_text)
        assert f_skeleton == k_skeleton, (method, f_text, k_text)
        np.testing.assert_allclose(f_values, k_values, atol=1.5e-4)


def _no_mask_graph(L, Input, Model):
    a = Input((7, 5), name="a")
    b = Input((3,), name="b")
    _, h, c = L.LSTM(4, return_state=True, name="encoder_lstm")(a)
    d = L.Dense(4, name="shared_dense")
    merged = L.Concatenate(name="merge")([h, c, d(b), d(L.Dense(3, name="b_proj")(b))])
    out = L.Dense(1, name="score")(L.Dense(8, activation="relu", name="hidden")(merged))
    return Model([a, b], [out, L.Dense(2, name="aux_out")(h)], name="two_towers")


def _chain(L, Input, Model):
    x = Input((None, 6), name="tokens")
    h = L.Bidirectional(L.LSTM(5, return_sequences=True), name="bidirectional_lstm")(x)
    return Model(x, L.Dense(1, name="head")(L.GRU(3, name="gru")(h)), name="chain")


@pytest.mark.parametrize("build", [_no_mask_graph, _chain])
@pytest.mark.parametrize("columns", [80, 140])
def test_functional_summary_text_matches_keras(monkeypatch, build, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    ours, theirs = _both(build)
    k_lines, f_lines = [], []
    theirs.summary(print_fn=k_lines.append)
    ours.summary(print_fn=f_lines.append)
    assert f_lines == k_lines
    for m, opt in ((ours, O.Adam(0.01)), (theirs, keras.optimizers.Adam(0.01))):
        m.compile(opt, "mse")
    x = [np.ones((2,) + tuple(d or 7 for d in t.shape[1:]), np.float32) for t in ours.inputs]
    y = [np.zeros((2,) + tuple(t.shape[1:]), np.float32) for t in ours.outputs]
    theirs.train_on_batch(x, y)
    ours.train_on_batch(x, y)
    k_lines, f_lines = [], []
    theirs.summary(print_fn=k_lines.append, line_length=100)
    ours.summary(print_fn=f_lines.append, line_length=100)
    assert f_lines == k_lines  # "Optimizer params" and totals with the optimizer included


def test_sequential_with_input_summary_matches_keras(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    stacks = []
    for L, Input, Sequential in (
        (K, keras.Input, keras.Sequential),
        (F, fastrnn.Input, fastrnn.Sequential),
    ):
        stacks.append(
            Sequential(
                [
                    Input(batch_shape=(4, 10, 3)),
                    L.LSTM(5, stateful=True, return_sequences=True, name="stateful_lstm"),
                    L.GRU(2, return_state=True, name="last_gru"),
                ],
                name="stateful_stack",
            )
        )
    k_lines, f_lines = [], []
    stacks[0].summary(print_fn=k_lines.append)
    stacks[1].summary(print_fn=f_lines.append)
    assert f_lines == k_lines


def test_stateful_sequential_with_batch_shape_matches_keras():
    theirs = keras.Sequential(
        [
            keras.Input(batch_shape=(3, 4, 2)),
            K.GRU(5, stateful=True, name="g"),
            K.Dense(1, name="d"),
        ]
    )
    ours = fastrnn.Sequential(
        [
            fastrnn.Input(batch_shape=(3, 4, 2)),
            F.GRU(5, stateful=True, name="g"),
            F.Dense(1, name="d"),
        ]
    )
    _copy_weights(ours, theirs)
    rng = np.random.default_rng(7)
    chunks = [rng.standard_normal((3, 4, 2)).astype(np.float32) for _ in range(3)]
    for chunk in chunks:  # states carried from chunk to chunk
        np.testing.assert_allclose(
            ours.predict(chunk, batch_size=3, verbose=0),
            theirs.predict(chunk, batch_size=3, verbose=0),
            atol=1e-6,
        )
    ours.reset_states()
    for layer in theirs.layers:
        if hasattr(layer, "reset_states"):
            layer.reset_states()
    np.testing.assert_allclose(
        ours.predict(chunks[0], batch_size=3, verbose=0),
        theirs.predict(chunks[0], batch_size=3, verbose=0),
        atol=1e-6,
    )


def _config_graph(L, Input, Model):
    a = Input((5, 3), name="ca")
    b = Input((2,), name="cb")
    _, h, c = L.LSTM(2, return_state=True, name="enc")(a)
    d = L.LSTM(2, name="dec")(a, initial_state=[h, c])
    shared = L.Dense(2, name="sh")
    return Model({"ca": a, "cb": b}, [L.Add(name="add")([d, shared(b), shared(h)]), h])


def test_functional_config_graph_matches_keras():
    """The graph part of get_config (what a .keras file stores) is Keras's: node arguments with
    keras_history triples, input and output references."""
    ours, theirs = _both(_config_graph)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, np.asarray(b))
    k_config = json.loads(json.dumps(theirs.get_config()))  # as a .keras file stores it
    f_config = json.loads(json.dumps(ours.get_config()))
    assert f_config["input_layers"] == k_config["input_layers"]
    assert f_config["output_layers"] == k_config["output_layers"]
    assert [e["name"] for e in f_config["layers"]] == [e["name"] for e in k_config["layers"]]
    for k_entry, f_entry in zip(k_config["layers"], f_config["layers"]):
        assert f_entry["class_name"] == k_entry["class_name"]
        assert len(f_entry["inbound_nodes"]) == len(k_entry["inbound_nodes"])
        for k_node, f_node in zip(k_entry["inbound_nodes"], f_entry["inbound_nodes"]):
            assert f_node["args"] == k_node["args"], k_entry["name"]
            # Keras also records the defaults training=False, mask=None of some calls.
            k_kwargs = {
                k: v for k, v in k_node["kwargs"].items() if v is not None and v is not False
            }
            assert f_node["kwargs"] == k_kwargs, k_entry["name"]
    clone = fastrnn.Model.from_config(f_config)
    clone.set_weights(ours.get_weights())
    rng = np.random.default_rng(8)
    x = {"ca": rng.standard_normal((3, 5, 3)).astype(np.float32), "cb": rng.standard_normal((3, 2))}
    for a, b in zip(clone.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, atol=1e-6)
