"""The layers around recurrent layers that Keras tutorials use, against real Keras 3 (torch).

Every layer: forward output, dL/d(inputs) and weight gradients equal Keras's (weights copied
across; Keras's gradients from torch autograd), output masks as Keras propagates them, configs
that round-trip, clear errors for bad input, and use inside ``Sequential`` (one SGD step of whole
models equals Keras's). Also the truncated-normal initializers and ``Embedding(input_length=)``.
"""

from __future__ import annotations

import os
import re
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from _keras_api import keras_argument_mismatches
from harness import assert_close, assert_unmodified, snapshot

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from fastrnn import initializers, optimizers  # noqa: E402
from fastrnn import layers as F  # noqa: E402
from fastrnn.models import Sequential  # noqa: E402

K = keras.layers
RTOL = 2e-5  # float32 rounding: a few ulps of the largest entry


def _keras_forward_backward(layer, x, dy, mask=None):
    """Keras's output, its mask, dL/dx and the weight gradients for L = sum(output * dy).

    The mask is attached to the input as Keras's own layers attach it, so Keras decides whether
    the layer uses it and which mask its output carries; gradients come from torch autograd.
    """
    xt = torch.tensor(x, requires_grad=True)
    if mask is not None:
        xt._keras_mask = torch.tensor(mask)
    out = layer(xt)
    out_mask = getattr(out, "_keras_mask", None)
    (out * torch.tensor(dy)).sum().backward()
    grads = [w.value.grad.numpy().copy() for w in layer.trainable_weights]
    out_mask = None if out_mask is None else out_mask.numpy()
    return out.detach().numpy(), out_mask, xt.grad.numpy(), grads


def _check_parity(ours, theirs, x, mask=None, seed=1):
    rng = np.random.default_rng(seed)
    theirs(x)  # build
    ours(x)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    if theirs.get_weights():
        ours.set_weights(theirs.get_weights())
    before = snapshot(x)
    kwargs = {} if mask is None else {"mask": mask}
    y = ours(x, training=True, **kwargs)
    assert_unmodified(before, x, "x")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's "does not support masking" warning
        k_y, k_mask, k_dx, k_grads = _keras_forward_backward(theirs, x, dy, mask)
    assert y.dtype == np.float32
    assert_close(y, k_y, RTOL, name="output")
    dx = ours.backward(dy)
    assert_close(dx, k_dx, RTOL, name="dL/dx")
    assert len(ours.gradients) == len(k_grads)
    for i, (g, kg) in enumerate(zip(ours.gradients, k_grads)):
        assert_close(g, kg, RTOL, name=f"gradient {i}")
    if k_mask is None:
        assert ours.output_mask is None
    else:
        np.testing.assert_array_equal(ours.output_mask, k_mask)
    return ours


RNG = np.random.default_rng(7)
X3 = RNG.standard_normal((3, 7, 4)).astype(np.float32)
X4 = RNG.standard_normal((3, 5, 9, 4)).astype(np.float32)
MASK = RNG.random((3, 7)) > 0.35
MASK[:, 0] = True  # no fully masked sample (Keras divides 0 by 0 there)

CASES = [
    # Conv1D: paddings, strides, dilation, groups, activations, bias, data formats
    ("conv_valid", lambda m: m.Conv1D(6, 3), X3),
    ("conv_same_s2", lambda m: m.Conv1D(5, 3, strides=2, padding="same", activation="tanh"), X3),
    ("conv_same_k4", lambda m: m.Conv1D(5, 4, padding="same", activation="relu"), X3),
    ("conv_causal_d2", lambda m: m.Conv1D(6, 3, dilation_rate=2, padding="causal"), X3),
    ("conv_stride3", lambda m: m.Conv1D(3, 2, strides=3, activation="sigmoid", use_bias=False), X3),
    ("conv_groups", lambda m: m.Conv1D(6, 2, groups=2, padding="same"), X3),
    ("conv_cfirst", lambda m: m.Conv1D(5, 3, strides=2, data_format="channels_first"), X3),
    # pooling
    ("maxpool", lambda m: m.MaxPooling1D(), X3),
    ("maxpool_same", lambda m: m.MaxPooling1D(3, 2, padding="same"), X3),
    ("maxpool_overlap", lambda m: m.MaxPooling1D(3, 1, padding="same"), X3),
    ("maxpool_cfirst", lambda m: m.MaxPooling1D(2, data_format="channels_first"), X3),
    ("gap", lambda m: m.GlobalAveragePooling1D(), X3),
    ("gap_keepdims", lambda m: m.GlobalAveragePooling1D(keepdims=True), X3),
    ("gap_cfirst", lambda m: m.GlobalAveragePooling1D(data_format="channels_first"), X3),
    ("gmp", lambda m: m.GlobalMaxPooling1D(), X3),
    ("gmp_cfirst", lambda m: m.GlobalMaxPooling1D(data_format="channels_first", keepdims=True), X3),
    # normalization
    ("layernorm", lambda m: m.LayerNormalization(), X3),
    ("layernorm_2axes", lambda m: m.LayerNormalization(axis=[1, 2], epsilon=1e-5), X3),
    ("layernorm_plain", lambda m: m.LayerNormalization(center=False, scale=False), X3),
    ("layernorm_2d", lambda m: m.LayerNormalization(scale=False), X3[:, 0]),
    # reshaping
    ("flatten", lambda m: m.Flatten(), X3),
    ("flatten_cfirst", lambda m: m.Flatten(data_format="channels_first"), X4),
    ("reshape", lambda m: m.Reshape((-1, 2)), X3),
    ("reshape_known", lambda m: m.Reshape((4, 7)), X3),
    ("repeat", lambda m: m.RepeatVector(5), X3[:, 0]),
    # activations
    *[
        (f"activation_{a}", lambda m, a=a: m.Activation(a), X3)
        for a in ("relu", "tanh", "sigmoid", "hard_sigmoid", "softmax", "linear")
    ],
    # TimeDistributed around Dense, Conv1D (CNN-LSTM), Flatten, LSTM, MaxPooling1D
    ("td_dense", lambda m: m.TimeDistributed(m.Dense(5, activation="tanh")), X3),
    ("td_conv", lambda m: m.TimeDistributed(m.Conv1D(5, 3, activation="relu")), X4),
    ("td_flatten", lambda m: m.TimeDistributed(m.Flatten()), X4),
    ("td_lstm", lambda m: m.TimeDistributed(m.LSTM(3)), X4),
    ("td_pool", lambda m: m.TimeDistributed(m.MaxPooling1D(2)), X4),
]


@pytest.mark.parametrize("name,make,x", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_keras(name, make, x):
    _check_parity(make(F), make(K), x)


MASKED = [
    ("gap", lambda m: m.GlobalAveragePooling1D(), MASK),
    ("gap_keepdims", lambda m: m.GlobalAveragePooling1D(keepdims=True), MASK),
    ("gap_cfirst", lambda m: m.GlobalAveragePooling1D(data_format="channels_first"), MASK[:, :4]),
    ("td_dense", lambda m: m.TimeDistributed(m.Dense(4)), MASK),
    ("layernorm", lambda m: m.LayerNormalization(), MASK),
    ("activation", lambda m: m.Activation("tanh"), MASK),
]


@pytest.mark.parametrize("name,make,mask", MASKED, ids=[c[0] for c in MASKED])
def test_masks_as_keras(name, make, mask):
    """Mask-aware layers use and propagate the mask as Keras does (GAP averages kept steps)."""
    _check_parity(make(F), make(K), X3, mask=mask)


@pytest.mark.parametrize(
    "make",
    [
        lambda: F.GlobalMaxPooling1D(),
        lambda: F.Conv1D(2, 3),
        lambda: F.MaxPooling1D(),
        lambda: F.Flatten(),
        lambda: F.Reshape((-1,)),
    ],
)
def test_layers_without_masking_drop_the_mask_with_keras_warning(make):
    layer = make()
    with pytest.warns(UserWarning, match="does not support masking"):
        layer(X3, mask=MASK)
    assert layer.output_mask is None


def test_gap_mask_excludes_padding_and_all_masked_sample_is_nan():
    x = X3.copy()
    x[0, 3:] = 1e6  # padding garbage must not reach the average
    mask = np.ones((3, 7), bool)
    mask[0, 3:] = False
    mask[2] = False
    y = F.GlobalAveragePooling1D()(x, mask=mask)
    assert_close(y[0], x[0, :3].mean(0), 1e-6)
    assert np.isnan(y[2]).all()  # Keras: 0 / 0


def test_layernorm_single_axis_not_last_equals_transposed_last_axis():
    """axis=1 (Keras's torch backend cannot run it) equals axis=-1 on transposed inputs."""
    rng = np.random.default_rng(3)
    a, b = F.LayerNormalization(axis=1), F.LayerNormalization(axis=-1)
    xt = X3.transpose(0, 2, 1).copy()
    a(X3)
    b(xt)
    gamma, beta = (
        rng.standard_normal(7).astype(np.float32),
        rng.standard_normal(7).astype(np.float32),
    )
    a.set_weights([gamma, beta])
    b.set_weights([gamma, beta])
    ya, yb = a(X3, training=True), b(xt, training=True)
    assert_close(ya, yb.transpose(0, 2, 1), 1e-6)
    dy = rng.standard_normal(ya.shape).astype(np.float32)
    assert_close(a.backward(dy), b.backward(dy.transpose(0, 2, 1)).transpose(0, 2, 1), 1e-6)
    for ga, gb in zip(a.gradients, b.gradients):
        assert_close(ga, gb, 1e-6)


# ---- whole models ----
def _copy_model_weights(ours, theirs):
    assert ours.count_params() == theirs.count_params()
    ours.set_weights([w.astype(np.float32) for w in theirs.get_weights()])


def _one_sgd_step_matches(ours, theirs, x, y, loss="mse"):
    _copy_model_weights(ours, theirs)
    assert_close(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), RTOL, name="predict")
    theirs.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    ours.compile(optimizer=optimizers.SGD(0.5), loss=loss)
    before = [w.copy() for w in ours.get_weights()]
    theirs.train_on_batch(x, y)
    ours.train_on_batch(x, y)
    for i, (w, kw, w0) in enumerate(zip(ours.get_weights(), theirs.get_weights(), before)):
        # compare the updates (0.5 * gradient), judged against their own scale
        assert_close(w - w0, kw - w0, 5e-4, atol=2e-6 + 5e-4 * np.abs(kw - w0).max(), name=f"w{i}")


def test_cnn_lstm_encoder_decoder_matches_keras():
    """Conv1D -> MaxPooling1D -> LSTM -> RepeatVector -> LSTM -> TimeDistributed(Dense)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 12, 3)).astype(np.float32)
    y = rng.standard_normal((5, 4, 2)).astype(np.float32)

    def build(m, first):
        return [
            first,
            m.Conv1D(6, 3, padding="causal", activation="relu"),
            m.MaxPooling1D(2),
            m.LSTM(7),
            m.RepeatVector(4),
            m.LSTM(5, return_sequences=True),
            m.LayerNormalization(),
            m.TimeDistributed(m.Dense(2)),
        ]

    theirs = keras.Sequential(build(K, keras.Input((12, 3)))[0:1] + build(K, None)[1:])
    ours = Sequential(build(F, None)[1:])
    ours.build((None, 12, 3))
    _one_sgd_step_matches(ours, theirs, x, y)


def test_masked_text_classifier_matches_keras():
    """Embedding(mask_zero) -> LSTM(seq) -> TimeDistributed(Dense) -> GAP (masked) -> Dense."""
    rng = np.random.default_rng(12)
    idx = rng.integers(1, 30, (6, 9))
    idx[1, 5:] = 0
    idx[4, 2:] = 0
    y = rng.random((6, 1)).astype(np.float32)

    def build(m):
        return [
            m.Embedding(30, 8, mask_zero=True),
            m.LSTM(6, return_sequences=True),
            m.TimeDistributed(m.Dense(5, activation="tanh")),
            m.GlobalAveragePooling1D(),
            m.Dense(1, activation="sigmoid"),
        ]

    theirs = keras.Sequential([keras.Input((9,)), *build(K)])
    ours = Sequential(build(F))
    ours.build((None, 9))
    _one_sgd_step_matches(ours, theirs, idx, y, loss="binary_crossentropy")


def test_flatten_reshape_conv_stack_matches_keras():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 8, 3)).astype(np.float32)
    y = rng.standard_normal((4, 3)).astype(np.float32)

    def build(m):
        return [
            m.Conv1D(4, 2, strides=2, activation="tanh"),
            m.Flatten(),
            m.Reshape((4, 4)),
            m.GlobalMaxPooling1D(),
            m.Activation("sigmoid"),
            m.Dense(3),
        ]

    theirs = keras.Sequential([keras.Input((8, 3)), *build(K)])
    ours = Sequential(build(F))
    ours.build((None, 8, 3))
    _one_sgd_step_matches(ours, theirs, x, y)


# ---- shapes, configs, errors ----
@pytest.mark.parametrize("name,make,x", CASES, ids=[c[0] for c in CASES])
def test_output_shape_config_roundtrip_and_names(name, make, x):
    ours, theirs = make(F), make(K)
    shape = (None,) + x.shape[1:]
    assert ours.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape))
    y = ours(x)
    assert y.shape == ours.compute_output_shape(x.shape)
    clone = F.deserialize(F.serialize(ours))
    assert type(clone) is type(ours)
    cfg, cfg2 = ours.get_config(), clone.get_config()
    cfg.pop("name"), cfg2.pop("name")
    if "layer" in cfg:
        cfg["layer"]["config"].pop("name"), cfg2["layer"]["config"].pop("name")
    assert cfg == cfg2
    clone(x)
    clone.set_weights(ours.get_weights())
    assert_close(clone(x), y, 0.0)
    # Keras's automatic names (conv1d, max_pooling1d, global_average_pooling1d ...)
    assert re.sub(r"_\d+$", "", ours.name) == re.sub(r"_\d+$", "", theirs.name)


@pytest.mark.parametrize(
    "name",
    [
        "TimeDistributed",
        "RepeatVector",
        "Flatten",
        "Reshape",
        "Activation",
        "GlobalAveragePooling1D",
        "GlobalMaxPooling1D",
        "Conv1D",
        "MaxPooling1D",
        "LayerNormalization",
        "Dense",
        "Embedding",
        "Dropout",
        "Masking",
    ],
)
def test_keras_argument_names_defaults_and_order(name):
    ours, theirs = getattr(F, name).__init__, getattr(K, name).__init__
    assert keras_argument_mismatches(ours, theirs) == []


def test_float64_layers_compute_in_float64():
    x = X3.astype(np.float64)
    for layer in (
        F.Conv1D(3, 2, dtype="float64"),
        F.LayerNormalization(dtype="float64"),
        F.TimeDistributed(F.Dense(3, dtype="float64")),
        F.GlobalAveragePooling1D(dtype="float64"),
    ):
        y = layer(x, training=True)
        assert y.dtype == np.float64
        assert layer.backward(np.ones_like(y)).dtype == np.float64


BAD = [
    (lambda: F.RepeatVector(2.5), TypeError, "n must be an int"),
    (lambda: F.RepeatVector(0), ValueError, "positive"),
    (lambda: F.Reshape((0, 3)), ValueError, "target_shape"),
    (lambda: F.Reshape((-1, -1)), ValueError, "target_shape"),
    (lambda: F.Reshape("ab"), ValueError, "target_shape"),
    (lambda: F.Flatten(data_format="nchw"), ValueError, "data_format"),
    (lambda: F.Conv1D(0, 3), ValueError, "filters"),
    (lambda: F.Conv1D(4, 0), ValueError, "kernel_size"),
    (lambda: F.Conv1D(4, 3, padding="full"), ValueError, "padding"),
    (lambda: F.Conv1D(4, 3, strides=2, dilation_rate=2), ValueError, "dilation_rate"),
    (lambda: F.Conv1D(5, 3, groups=2), ValueError, "groups"),
    (lambda: F.Conv1D(4, 3, activation="swish"), ValueError, "activation"),
    (lambda: F.Conv1D(4, 3, kernel_regularizer="l2"), ValueError, "kernel_regularizer"),
    (lambda: F.MaxPooling1D(0), ValueError, "pool_size"),
    (lambda: F.MaxPooling1D(2, padding="causal"), ValueError, "padding"),
    (lambda: F.GlobalAveragePooling1D(keepdims="yes"), TypeError, "keepdims"),
    (lambda: F.LayerNormalization(axis="last"), TypeError, "axis"),
    (lambda: F.LayerNormalization(epsilon=0), ValueError, "epsilon"),
    (lambda: F.LayerNormalization(rms_scaling=True), ValueError, "rms_scaling"),
    (lambda: F.Activation("nope"), ValueError, "activation"),
    (lambda: F.TimeDistributed("dense"), TypeError, "layer"),
]


@pytest.mark.parametrize("make,exc,pattern", BAD)
def test_bad_arguments(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


BAD_CALLS = [
    (lambda: F.RepeatVector(2), X3, ValueError, "rank 2"),
    (lambda: F.Conv1D(2, 3), X3[:, 0], ValueError, "rank 3"),
    (lambda: F.Conv1D(2, 9), X3, ValueError, "too short"),
    (lambda: F.MaxPooling1D(8), X3, ValueError, "pool_size"),
    (lambda: F.GlobalMaxPooling1D(), X4, ValueError, "rank 3"),
    (lambda: F.Reshape((5, 5)), X3, ValueError, "cannot reshape"),
    (lambda: F.TimeDistributed(F.Dense(2)), X3[:, 0], ValueError, "rank >= 3"),
    (lambda: F.LayerNormalization(axis=3), X3, ValueError, "out of bounds"),
    (lambda: F.LayerNormalization(axis=0), X3, ValueError, "batch axis"),
]


@pytest.mark.parametrize("make,x,exc,pattern", BAD_CALLS)
def test_bad_inputs(make, x, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()(x)


def test_built_layers_reject_other_widths_and_bad_masks():
    conv = F.Conv1D(2, 3)
    conv(X3)
    with pytest.raises(ValueError, match="input channels"):
        conv(X3[:, :, :3])
    gap = F.GlobalAveragePooling1D()
    with pytest.raises(ValueError, match="mask must have shape"):
        gap(X3, mask=MASK[:, :5])
    td = F.TimeDistributed(F.Dense(2))
    with pytest.raises(ValueError, match="mask"):
        td(X3, mask=MASK[:2])
    with pytest.raises(RuntimeError, match="training=True"):
        F.Flatten().backward(np.ones((3, 28), np.float32))
    layer = F.RepeatVector(3)
    layer(X3[:, 0], training=True)
    with pytest.raises(ValueError, match="dy of shape"):
        layer.backward(np.ones((3, 2, 4), np.float32))


def test_time_distributed_shares_weights_and_trainable_with_inner_layer():
    dense = F.Dense(3)
    td = F.TimeDistributed(dense)
    td(X3)
    assert td.weights[0] is dense.kernel and td.count_params() == 4 * 3 + 3
    td.trainable = False
    assert not dense.trainable and td.trainable_weights == []
    frozen = F.TimeDistributed(F.Dense(2, trainable=False))
    assert not frozen.trainable


# ---- Embedding(input_length=) and initializers ----
def test_embedding_accepts_and_ignores_input_length_like_keras():
    with pytest.warns(UserWarning, match="input_length"):
        ours = F.Embedding(20, 4, input_length=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = K.Embedding(20, 4, input_length=6)
    assert any("input_length" in str(w.message) for w in caught)
    idx = np.random.default_rng(0).integers(0, 20, (3, 6))
    theirs(idx)
    ours(idx)
    ours.set_weights(theirs.get_weights())
    assert_close(ours(idx), keras.ops.convert_to_numpy(theirs(idx)), 0.0)
    assert "input_length" not in ours.get_config()


def _truncated_normal_quantile(q: float, std: float) -> float:
    """Quantile of N(0, std^2) truncated to [-2 std, 2 std]."""
    unit = NormalDist()
    low = unit.cdf(-2.0)
    return std * unit.inv_cdf(low + q * (1.0 - 2.0 * low))


@pytest.mark.parametrize(
    "name,shape,variance",
    [
        ("glorot_normal", (600, 400), 2.0 / 1000),
        ("he_normal", (600, 400), 2.0 / 600),
        ("lecun_normal", (600, 400), 1.0 / 600),
        ("he_normal", (9, 200, 150), 2.0 / 1800),  # conv kernel: fan_in = 9 * 200
        ("truncated_normal", (600, 400), 0.05**2 * 0.87962566103423978**2),
    ],
)
def test_normal_initializers_are_truncated_like_keras(name, shape, variance):
    """Keras's VarianceScaling: truncated at 2 std, std = sqrt(scale / n) / 0.8796..., so the
    draws have variance scale / n (clipping instead gave a ~9% larger std and point masses at
    the limits). Ours and Keras's draws both fit the truncated normal's quantiles."""
    keras.utils.set_random_seed(0)
    ours = initializers.initialize(name, shape, np.random.default_rng(0), np.float64)
    theirs = keras.ops.convert_to_numpy(keras.initializers.get(name)(shape)).astype(np.float64)
    std = np.sqrt(variance) / 0.87962566103423978  # the normal's std before truncation
    n = ours.size
    for label, values in (("fastrnn", ours), ("keras", theirs)):
        # Keras's torch backend redraws at most 4 times, so a few in a million may lie outside
        assert np.mean(np.abs(values) > 2 * std) < 1e-5, label
        assert abs(values.std() / np.sqrt(variance) - 1) < 0.01, label
        assert np.mean(np.abs(values) > 0.999 * 2 * std) < 1e-3, label  # no point masses
        for q in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98):
            expected = _truncated_normal_quantile(q, std)
            density = np.exp(-0.5 * (expected / std) ** 2) / (std * np.sqrt(2 * np.pi) * 0.9545)
            standard_error = np.sqrt(q * (1 - q) / n) / density
            assert abs(np.quantile(values, q) - expected) < 5 * standard_error, (label, q)


def test_uniform_initializers_keep_their_stream():
    """The variance-scaling rewrite leaves glorot/he uniform draws unchanged (same formula)."""
    rng = np.random.default_rng(5)
    w = initializers.initialize("glorot_uniform", (7, 11), rng, np.float64)
    expected = np.random.default_rng(5).uniform(-np.sqrt(6 / 18), np.sqrt(6 / 18), (7, 11))
    assert_close(w, expected, 0.0)
    w = initializers.initialize("lecun_uniform", (7, 11), np.random.default_rng(5), np.float64)
    assert np.abs(w).max() <= np.sqrt(3 / 7)
