"""fastrnn.keras against Keras 3's own SimpleRNN / LSTM / GRU (torch backend, in process).

Every expected value comes from the stock Keras layer with the same weights: float32 results
(outputs, states and every gradient) are judged against the stock layer run in float64 and may
be at most 4x as far from it as the stock float32 layer is (conftest's rule). The tensorflow
and jax backends run in subprocesses (``_keras_backend_check.py``), since Keras picks its
backend once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
if keras.backend.backend() != "torch":  # pragma: no cover - another module imported keras first
    pytest.skip("these tests need the torch backend", allow_module_level=True)

import fastrnn  # noqa: E402
import fastrnn.keras as fk  # noqa: E402
from fastrnn.keras import _layers  # noqa: E402
from harness import assert_close, assert_close_float32  # noqa: E402

HERE = Path(__file__).parent
T, B, I, H = 7, 5, 3, 17  # noqa: E741 (the dimension legend)
WEIGHT_SEED = 11
OURS = {"SimpleRNN": fk.SimpleRNN, "LSTM": fk.LSTM, "GRU": fk.GRU}
STOCK = {
    "SimpleRNN": keras.layers.SimpleRNN,
    "LSTM": keras.layers.LSTM,
    "GRU": keras.layers.GRU,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


@pytest.fixture(autouse=True)
def seeded():
    """Keras's initializers and dropout draw from seeded generators in every test."""
    keras.utils.set_random_seed(20240611)


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the fused fastrnn calls (so a silent fallback cannot pass for fastrnn)."""
    calls = []
    original = _layers.fused

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(_layers, "fused", counting)
    monkeypatch.setattr(_layers, "_WARNED", set())
    return calls


def _data(seed=0, mask_kind=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, I)).astype("float32")
    mask = None
    if mask_kind == "right":  # padded ends, one sequence fully valid, one of length 1
        lengths = np.array([T, 3, 1, 5, 6])
        mask = np.arange(T)[None, :] < lengths[:, None]
    elif mask_kind == "random":  # any pattern, including a masked first step
        mask = rng.random((B, T)) > 0.3
        mask[0, 0] = False
    return x, mask


def _call(layer, x, mask=None, initial_state=None, training=False):
    """Output(s) and the gradients of x, initial states and every weight, as float64 NumPy."""
    dtype = torch.float64 if layer.dtype == "float64" else torch.float32
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    states = None
    if initial_state is not None:
        states = [torch.tensor(s, dtype=dtype, requires_grad=True) for s in initial_state]
    kwargs = {"training": training}
    if mask is not None:
        kwargs["mask"] = torch.tensor(mask)
    if states is not None:
        kwargs["initial_state"] = states
    out = layer(xt, **kwargs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    gen = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=dtype)).sum() for o in outs)
    for w in layer.trainable_weights:
        w.value.grad = None
    loss.backward()
    result = {f"out{k}": o for k, o in enumerate(outs)}
    result["dx"] = xt.grad
    for k, s in enumerate(states or []):
        result[f"dstate{k}"] = s.grad
    for k, w in enumerate(layer.trainable_weights):
        result[f"d{w.name}{k}"] = w.value.grad
    return {k: v.detach().double().numpy() for k, v in result.items()}


def _build(cls, kw, x, weights=None, dtype=None):
    layer = cls(H, dtype=dtype, **kw) if dtype else cls(H, **kw)
    layer.build(x.shape)
    if weights is not None:
        layer.set_weights([w.astype(dtype or "float32") for w in weights])
    return layer


def _compare(kind, kw, x, mask=None, initial_state=None, training=False):
    ours = _build(OURS[kind], kw, x)
    rng = np.random.default_rng(WEIGHT_SEED)  # fixed weights: a reproducible tolerance
    weights = [rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in ours.get_weights()]
    ours.set_weights(weights)
    stock32 = _build(STOCK[kind], kw, x, weights)
    stock64 = _build(STOCK[kind], kw, x, weights, dtype="float64")
    init64 = None if initial_state is None else [s.astype("float64") for s in initial_state]
    expected = _call(stock64, x.astype("float64"), mask, init64, training)
    reference32 = _call(stock32, x, mask, initial_state, training)
    actual = _call(ours, x, mask, initial_state, training)
    assert set(actual) == set(expected)
    for name in expected:
        assert_close_float32(actual[name], expected[name], reference32[name], name=name)


CONFIGS = [
    ("SimpleRNN", {}),
    ("SimpleRNN", {"activation": "relu", "return_sequences": True, "go_backwards": True}),
    ("SimpleRNN", {"use_bias": False, "return_state": True}),
    ("LSTM", {}),
    ("LSTM", {"return_sequences": True, "return_state": True, "go_backwards": True}),
    ("LSTM", {"recurrent_activation": "hard_sigmoid", "unit_forget_bias": False}),
    ("LSTM", {"use_bias": False, "activation": "linear"}),
    ("GRU", {}),
    ("GRU", {"return_sequences": True, "go_backwards": True, "return_state": True}),
    ("GRU", {"reset_after": False, "return_sequences": True}),
    ("GRU", {"reset_after": False, "use_bias": False, "recurrent_activation": "hard_sigmoid"}),
    ("GRU", {"use_bias": False, "activation": "relu"}),
]


@pytest.mark.parametrize("kind,kw", CONFIGS)
@pytest.mark.parametrize("mask_kind", [None, "random"])
def test_layer_matches_keras(kind, kw, mask_kind, fused_calls):
    x, mask = _data(mask_kind=mask_kind)
    _compare(kind, kw, x, mask)
    assert len(fused_calls) == 1


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_initial_state_gradients(kind, fused_calls):
    x, mask = _data(seed=3, mask_kind="right")
    rng = np.random.default_rng(4)
    n = 2 if kind == "LSTM" else 1
    states = [rng.standard_normal((B, H)).astype("float32") for _ in range(n)]
    _compare(kind, {"return_sequences": True}, x, mask, states)
    assert len(fused_calls) == 1


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("SimpleRNN", {"dropout": 0.3, "recurrent_dropout": 0.4, "seed": 5}),
        ("LSTM", {"dropout": 0.3, "seed": 5, "return_sequences": True}),
        ("GRU", {"dropout": 0.3, "seed": 5}),
        ("GRU", {"dropout": 0.3, "seed": 5, "reset_after": False}),
    ],
)
def test_training_dropout_matches_keras(kind, kw, fused_calls):
    """Same seed, same masks: Keras's single (B, I) input mask (and SimpleRNN's (B, H)
    recurrent mask) are the masks fastrnn applies."""
    x, mask = _data(seed=6, mask_kind="right")
    _compare(kind, kw, x, mask, training=True)
    assert len(fused_calls) == 1


def test_float64_layers_run_fused(fused_calls):
    # Without a mask: Keras's own masked loop on the torch backend loses float64 precision
    # (its results differ from fastrnn's and from fastrnn.reference's by ~5e-8).
    x, mask = _data()
    ours = _build(fk.GRU, {}, x, dtype="float64")
    stock = _build(keras.layers.GRU, {}, x, ours.get_weights(), dtype="float64")
    got = _call(ours, x.astype("float64"), mask)
    want = _call(stock, x.astype("float64"), mask)
    for name in want:
        assert_close(got[name], want[name], rtol=1e-12, name=name)
    assert len(fused_calls) == 1


@pytest.mark.parametrize(
    "kind,kw,training,reason",
    [
        ("LSTM", {"unroll": True}, False, "unroll=True"),
        ("SimpleRNN", {"activation": "softsign"}, False, "activation 'softsign'"),
        ("GRU", {"recurrent_activation": "elu"}, False, "recurrent_activation 'elu'"),
        ("LSTM", {"recurrent_dropout": 0.3, "seed": 1}, True, "per-gate dropout masks"),
        ("GRU", {"recurrent_dropout": 0.2, "seed": 1}, True, "per-gate dropout masks"),
    ],
)
def test_fallback_warns_once_and_matches_keras(kind, kw, training, reason, fused_calls):
    x, mask = _data(seed=7, mask_kind="right")
    with pytest.warns(fk.FallbackWarning, match=reason):
        _compare(kind, kw, x, mask, training=training)
    assert fused_calls == []
    with warnings.catch_warnings():  # once per layer class and reason
        warnings.simplefilter("error", fk.FallbackWarning)
        OURS[kind](H, **kw)(x, training=training)


def test_recurrent_dropout_at_inference_is_fused(fused_calls):
    x, _ = _data(seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fk.FallbackWarning)
        _compare("LSTM", {"recurrent_dropout": 0.5, "dropout": 0.2}, x, training=False)
    assert len(fused_calls) == 1


def _bidirectional(layer_cls, merge_mode, **kw):
    return keras.layers.Bidirectional(layer_cls(H, **kw), merge_mode=merge_mode)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_with_mask(kind, merge_mode, fused_calls):
    """Bidirectional sets zero_output_for_mask on its layers: masked outputs are zeros."""
    x, mask = _data(seed=9, mask_kind="right")
    ours = _bidirectional(OURS[kind], merge_mode, return_sequences=True)
    ours.build(x.shape)
    assert isinstance(ours.forward_layer, OURS[kind])
    assert isinstance(ours.backward_layer, OURS[kind])
    stock = _bidirectional(STOCK[kind], merge_mode, return_sequences=True)
    stock.build(x.shape)
    stock.set_weights(ours.get_weights())
    got = keras.ops.convert_to_numpy(ours(x, mask=mask))
    want = keras.ops.convert_to_numpy(stock(x, mask=mask))
    assert_close(got, want, rtol=0, atol=2e-6)
    assert not got[~mask].any()
    assert len(fused_calls) == 2


def test_stateful_matches_keras(fused_calls):
    x, _ = _data(seed=10)
    ours = fk.LSTM(H, stateful=True)
    ours.build(x.shape)
    stock = keras.layers.LSTM(H, stateful=True)
    stock.build(x.shape)
    stock.set_weights(ours.get_weights())
    for _ in range(2):
        got = keras.ops.convert_to_numpy(ours(x))
        want = keras.ops.convert_to_numpy(stock(x))
        assert_close(got, want, rtol=0, atol=2e-6)
    assert len(fused_calls) == 2


def _models(cls):
    """The same architecture three ways; ``cls`` is a module with LSTM / GRU / SimpleRNN."""
    sequential = keras.Sequential(
        [
            keras.Input((T,), dtype="int32"),
            keras.layers.Embedding(20, 6, mask_zero=True),
            keras.layers.Bidirectional(cls.LSTM(8, return_sequences=True)),
            cls.GRU(7, return_sequences=True),
            cls.SimpleRNN(5),
            keras.layers.Dense(1),
        ]
    )
    inputs = keras.Input((T, I))
    h = keras.layers.Bidirectional(cls.GRU(6, return_sequences=True), merge_mode="sum")(inputs)
    h = cls.LSTM(5, go_backwards=True)(h)
    functional = keras.Model(inputs, keras.layers.Dense(1)(h))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.rnn = cls.SimpleRNN(6, return_sequences=True, activation="relu")
            self.lstm = cls.LSTM(4)
            self.head = keras.layers.Dense(1)

        def call(self, x):
            return self.head(self.lstm(self.rnn(x)))

    subclassed = Subclassed()
    subclassed(np.zeros((1, T, I), "float32"))
    return {"sequential": sequential, "functional": functional, "subclassed": subclassed}


def _model_data(name):
    rng = np.random.default_rng(12)
    if name == "sequential":
        x = rng.integers(1, 20, (16, T))
        x[3, 4:] = 0
        x[7, 1:] = 0
    else:
        x = rng.standard_normal((16, T, I)).astype("float32")
    return x, rng.standard_normal((16, 1)).astype("float32")


@pytest.mark.parametrize("name", ["sequential", "functional", "subclassed"])
def test_fit_matches_keras(name, fused_calls):
    """Same initial weights, SGD, no shuffling: the weights after training agree, which needs
    every gradient (weights, inputs between stacked layers, masks) to agree."""
    ours = _models(fk)[name]
    stock = _models(keras.layers)[name]
    stock.set_weights(ours.get_weights())
    x, y = _model_data(name)
    for model in (ours, stock):
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    h_ours = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    h_stock = stock.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert fused_calls, "the fused path did not run"
    np.testing.assert_allclose(h_ours.history["loss"], h_stock.history["loss"], rtol=2e-5)
    for a, b in zip(ours.get_weights(), stock.get_weights()):
        assert_close(a, b, rtol=0, atol=2e-5 * max(1.0, float(np.abs(b).max())))
    assert_close(ours.predict(x, verbose=0), stock.predict(x, verbose=0), rtol=0, atol=2e-5)


def test_save_and_load_in_plain_keras(tmp_path, fused_calls):
    model = _models(fk)["sequential"]
    x, y = _model_data("sequential")
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    expected = model.predict(x, verbose=0)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", expected)

    again = keras.models.load_model(path)  # this process imported fastrnn.keras
    assert isinstance(again.layers[1].forward_layer, fk.LSTM)
    assert isinstance(again.layers[2], fk.GRU) and isinstance(again.layers[3], fk.SimpleRNN)
    assert_close(again.predict(x, verbose=0), expected, rtol=0, atol=1e-6)

    code = f"""
import os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, keras
model = keras.models.load_model({str(path)!r})
assert "fastrnn" not in sys.modules
kinds = [type(model.layers[1].forward_layer), type(model.layers[2]), type(model.layers[3])]
assert kinds == [keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN], kinds
got = model.predict(np.load({str(tmp_path / "x.npy")!r}), verbose=0)
err = np.abs(got - np.load({str(tmp_path / "expected.npy")!r})).max()
assert err < 1e-5, err
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no fastrnn importable
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_stock_files_still_load_as_stock_layers(tmp_path):
    model = keras.Sequential([keras.Input((T, I)), keras.layers.LSTM(4)])
    model.save(tmp_path / "stock.keras")
    again = keras.models.load_model(tmp_path / "stock.keras")
    assert type(again.layers[0]) is keras.layers.LSTM


def test_config_round_trip_and_repr():
    layer = fk.GRU(5, reset_after=False, dropout=0.1, return_state=True)
    config = layer.get_config()
    assert config == keras.layers.GRU(
        5, reset_after=False, dropout=0.1, return_state=True
    ).get_config() | {"name": config["name"]}
    clone = fk.GRU.from_config(config)
    assert type(clone) is fk.GRU and clone.get_config() == config
    assert repr(layer).startswith("<fastrnn.keras.GRU name=")
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["module"] == "keras.layers" and serialized["class_name"] == "GRU"
    assert type(keras.saving.deserialize_keras_object(serialized)) is fk.GRU


VENDORED_KERAS = sorted((HERE / "vendored").glob("test_vendored_keras_*.py"))


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_other_backends_in_a_subprocess(backend):
    """``_keras_backend_check.py`` and the vendored Keras tests, on ``backend``."""
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    # The fastrnn this process imported (installed, or the source tree in a dev build): the
    # source tree's python/ has no compiled modules after a plain `pip install .`.
    package_root = Path(fastrnn.__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(
        [str(package_root)] + env.get("PYTHONPATH", "").split(os.pathsep)
    )
    files = [str(HERE / "_keras_backend_check.py")] + [str(f) for f in VENDORED_KERAS]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *files],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE.parent,
        timeout=900,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    print(f"{backend}: {summary}")


def test_convert_existing_model(tmp_path, fused_calls):
    inputs = keras.Input((T, I))
    h = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True))(inputs)
    h = keras.layers.GRU(5, return_sequences=True, reset_after=False)(h)
    outputs = keras.layers.Dense(1)(keras.layers.SimpleRNN(4)(h))
    stock = keras.Model(inputs, outputs)
    stock.compile(optimizer="adam", loss="mse")
    stock.save(tmp_path / "stock.keras")
    loaded = keras.models.load_model(tmp_path / "stock.keras")
    fast = fk.convert(loaded)
    assert isinstance(fast.layers[1].forward_layer, fk.LSTM)
    assert isinstance(fast.layers[1].backward_layer, fk.LSTM)
    assert isinstance(fast.layers[2], fk.GRU) and isinstance(fast.layers[3], fk.SimpleRNN)
    assert type(loaded.layers[2]) is keras.layers.GRU  # the original is left as it was
    x, _ = _data(seed=14)
    assert_close(fast.predict(x, verbose=0), stock.predict(x, verbose=0), rtol=0, atol=2e-6)
    assert len(fused_calls) == 4
    fast.fit(x, np.zeros((B, 1), "float32"), verbose=0)  # compiled again
    with pytest.raises(TypeError, match="subclassed"):
        fk.convert(_models(keras.layers)["subclassed"])
    with pytest.raises(TypeError, match="keras.Model"):
        fk.convert(keras.layers.LSTM(3))
