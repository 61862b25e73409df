"""Losses and metric objects against real Keras 3 (torch backend) on random data.

Losses: values and dL/dy_pred (torch autograd on Keras's loss) for every reduction, with and
without sample weights and masks (a mask attached to y_pred the way Keras's layers attach it).
Metrics: several ``update_state`` calls of different batch sizes and weight ranks, then
``result``, equal to Keras's metric objects fed the same batches.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from _keras_api import keras_argument_mismatches
from harness import assert_close, assert_unmodified, snapshot

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from fastrnn import losses as L  # noqa: E402
from fastrnn import metrics as M  # noqa: E402

B, T, C = 5, 7, 3
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none"]


def _data(kind: str, seed: int, shape=(B, T, C)):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(shape)
    t = rng.standard_normal(shape)
    if kind == "prob":
        p = np.exp(p) / np.exp(p).sum(-1, keepdims=True)
        t = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    elif kind == "pos":  # MSLE: mostly positive, some predictions below eps
        p = np.abs(p) + np.where(rng.random(shape) < 0.15, -1.5, 0.0)
        t = np.abs(t)
    elif kind == "bin":
        p = 1 / (1 + np.exp(-2 * p))
        t = (rng.random(shape) > 0.5) * 1.0
    elif kind == "sparse":
        p = np.exp(p) / np.exp(p).sum(-1, keepdims=True)
        t = rng.integers(0, shape[-1], shape[:-1]).astype(np.float64)
    return t.astype(np.float32), p.astype(np.float32)


def _keras_loss(loss, t, p, sample_weight=None, mask=None):
    """Keras's loss value and d(sum of it)/dy_pred (torch autograd)."""
    leaf = torch.tensor(p, requires_grad=True)
    y_pred = leaf * 1.0
    if mask is not None:
        y_pred._keras_mask = torch.tensor(mask)
    sw = None if sample_weight is None else torch.tensor(sample_weight)
    value = loss(torch.tensor(t), y_pred, sample_weight=sw)
    value.sum().backward()
    return value.detach().numpy().astype(np.float64), leaf.grad.numpy()


LOSSES = [
    ("huber", lambda m, **k: m.Huber(delta=0.7, **k), "real"),
    ("huber_default", lambda m, **k: m.Huber(**k), "real"),
    ("log_cosh", lambda m, **k: m.LogCosh(**k), "real"),
    ("msle", lambda m, **k: m.MeanSquaredLogarithmicError(**k), "pos"),
    ("mape", lambda m, **k: m.MeanAbsolutePercentageError(**k), "real"),
    ("kld", lambda m, **k: m.KLDivergence(**k), "prob"),
    ("mse", lambda m, **k: m.MeanSquaredError(**k), "real"),
    ("mae", lambda m, **k: m.MeanAbsoluteError(**k), "real"),
    ("bce", lambda m, **k: m.BinaryCrossentropy(label_smoothing=0.1, **k), "bin"),
    ("bce_logits", lambda m, **k: m.BinaryCrossentropy(from_logits=True, **k), "real"),
    ("cce", lambda m, **k: m.CategoricalCrossentropy(label_smoothing=0.2, **k), "prob"),
    ("cce_logits", lambda m, **k: m.CategoricalCrossentropy(from_logits=True, **k), "prob"),
    ("scce", lambda m, **k: m.SparseCategoricalCrossentropy(**k), "sparse"),
    ("scce_ignore", lambda m, **k: m.SparseCategoricalCrossentropy(ignore_class=1, **k), "sparse"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,make,kind", LOSSES, ids=[c[0] for c in LOSSES])
def test_loss_value_and_gradient_match_keras(name, make, kind, reduction):
    rng = np.random.default_rng(3)
    mask = rng.random((B, T)) > 0.3
    sample_weight = rng.random((B, T)).astype(np.float32)
    for seed, (sw, m) in enumerate(
        [(None, None), (sample_weight, None), (None, mask), (sample_weight, mask)]
    ):
        t, p = _data(kind, seed)
        before = snapshot((t, p))
        expected, expected_grad = _keras_loss(make(keras.losses, reduction=reduction), t, p, sw, m)
        ours = make(L, reduction=reduction)
        value = ours(t, p, m, sample_weight=sw)
        grad = ours.gradient(t, p, m, sample_weight=sw)
        assert_unmodified(before, (t, p), "inputs")
        what = f"{name} reduction={reduction} sample_weight={sw is not None} mask={m is not None}"
        assert_close(np.asarray(value), expected, 2e-6, name=what)
        assert_close(grad, expected_grad, 2e-5, name=what + " gradient")


@pytest.mark.parametrize(
    "module,name",
    [
        *[
            ("losses", n)
            for n in (
                "Huber",
                "LogCosh",
                "MeanSquaredLogarithmicError",
                "MeanAbsolutePercentageError",
                "KLDivergence",
                "MeanSquaredError",
                "MeanAbsoluteError",
                "BinaryCrossentropy",
                "CategoricalCrossentropy",
                "SparseCategoricalCrossentropy",
            )
        ],
        *[
            ("metrics", n)
            for n in (
                "Mean",
                "MeanSquaredError",
                "MeanAbsoluteError",
                "MeanAbsolutePercentageError",
                "MeanSquaredLogarithmicError",
                "RootMeanSquaredError",
                "Accuracy",
                "BinaryAccuracy",
                "CategoricalAccuracy",
                "SparseCategoricalAccuracy",
                "Precision",
                "Recall",
                "AUC",
            )
        ],
    ],
)
def test_keras_argument_names_defaults_and_order(module, name):
    ours = getattr(L if module == "losses" else M, name)
    theirs = getattr(getattr(keras, module), name)
    assert keras_argument_mismatches(ours.__init__, theirs.__init__) == []


def test_per_sample_weights_broadcast_over_time_steps():
    """(B,) weights on (B, T) values: each sample's steps share its weight (Keras 3 raises)."""
    t, p = _data("real", 0)
    sw = np.random.default_rng(0).random(B)
    ours = L.Huber()(t, p, sample_weight=sw)
    expected, _ = _keras_loss(keras.losses.Huber(), t, p, np.repeat(sw[:, None], T, 1))
    assert_close(np.asarray(ours), expected, 1e-6)


def test_mask_contract_used_by_models_is_unchanged():
    """``loss(y, p, mask)`` is the mean over unmasked entries (what fastrnn.models relies on)."""
    t, p = _data("real", 1)
    mask = np.random.default_rng(1).random((B, T)) > 0.5
    values = ((p.astype(np.float64) - t) ** 2).mean(-1)
    assert L.MeanSquaredError()(t, p, mask) == pytest.approx(values[mask].mean(), rel=1e-12)
    assert L.MeanSquaredError()(t, p, np.zeros((B, T))) == 0.0


KERAS_NAMES = [
    "huber",
    "log_cosh",
    "kld",
    "KLD",
    "kl_divergence",
    "msle",
    "MSLE",
    "mean_squared_logarithmic_error",
    "mape",
    "MAPE",
    "mean_absolute_percentage_error",
    "mse",
    "MAE",
    "bce",
    "Huber",
    "LogCosh",
    "KLDivergence",
    "MeanSquaredLogarithmicError",
    "MeanAbsolutePercentageError",
]


@pytest.mark.parametrize("identifier", KERAS_NAMES)
def test_string_identifiers_mean_what_keras_means(identifier):
    kind = {"kld": "prob", "KLD": "prob", "kl_divergence": "prob", "KLDivergence": "prob"}.get(
        identifier, "bin" if identifier == "bce" else "pos"
    )
    t, p = _data(kind, 4, shape=(6, 4))
    theirs = keras.losses.get(identifier)
    if isinstance(theirs, type):
        theirs = theirs()
    expected = float(np.mean(keras.ops.convert_to_numpy(theirs(t, p))))
    assert L.get(identifier)(t, p) == pytest.approx(expected, rel=2e-6)


@pytest.mark.parametrize("name,make,kind", LOSSES, ids=[c[0] for c in LOSSES])
def test_loss_serialization_roundtrip(name, make, kind):
    loss = make(L, reduction="sum")
    spec = json.loads(json.dumps(L.serialize(loss)))
    clone = L.deserialize(spec)
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    t, p = _data(kind, 5)
    assert clone(t, p) == loss(t, p)
    # what Keras writes for the same object is a subset of ours (same argument names)
    keras_config = make(keras.losses, reduction="sum").get_config()
    for key, value in loss.get_config().items():
        if key in keras_config and key != "dtype":
            assert keras_config[key] == value, key


def test_old_saved_loss_configs_still_load():
    assert isinstance(L.deserialize({"class_name": "MeanSquaredError", "config": {}}), L.Loss)
    bce = L.deserialize(
        {"class_name": "BinaryCrossentropy", "config": {"name": "binary_crossentropy"}}
    )
    assert bce.reduction == "sum_over_batch_size" and not bce.from_logits


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda: L.Huber(delta=0), ValueError, "delta"),
        (lambda: L.Huber(reduction="avg"), ValueError, "reduction"),
        (lambda: L.BinaryCrossentropy(label_smoothing=2), ValueError, "label_smoothing"),
        (lambda: L.CategoricalCrossentropy(axis=1), ValueError, "axis"),
        (lambda: L.SparseCategoricalCrossentropy(ignore_class=0.5), ValueError, "ignore_class"),
        (lambda: L.get("hubber"), ValueError, "Unknown loss"),
        (lambda: L.get(3), TypeError, "loss must be"),
        (lambda: L.LogCosh()(np.ones((2, 3)), np.ones((2, 4))), ValueError, "does not match"),
        (
            lambda: L.LogCosh()(np.ones((2, 3)), np.ones((2, 3)), sample_weight=np.ones(5)),
            ValueError,
            "sample_weight",
        ),
    ],
)
def test_loss_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# ---- metrics ----
def _feed(ours, theirs, batches):
    for t, p, sw, mask in batches:
        y_pred = torch.tensor(p)
        if mask is not None:
            y_pred._keras_mask = torch.tensor(mask)
        theirs.update_state(
            torch.tensor(t), y_pred, sample_weight=None if sw is None else torch.tensor(sw)
        )
        ours.update_state(t, p, sample_weight=sw, mask=mask)
    return ours.result(), keras.ops.convert_to_numpy(theirs.result())


def _regression_batches(seed, kind="real", sequences=True):
    rng = np.random.default_rng(seed)
    out = []
    for i, b in enumerate((5, 3, 1, 4)):
        shape = (b, 7, 2) if sequences else (b, 2)
        t, p = _data(kind, seed * 10 + i, shape)
        if sequences:  # per-step weights and a mask
            sw = [None, rng.random((b, 7)), rng.random((b, 7, 1)), None][i]
            mask = rng.random((b, 7)) > 0.3 if i % 2 else None
        else:  # no weights, per-sample weights, (b, 1) weights
            sw = [None, rng.random(b), rng.random((b, 1)), rng.random(b)][i]
            mask = None
        out.append((t, p, None if sw is None else sw.astype(np.float32), mask))
    return out


REGRESSION = [
    ("MeanSquaredError", "real"),
    ("MeanAbsoluteError", "real"),
    ("MeanAbsolutePercentageError", "real"),
    ("MeanSquaredLogarithmicError", "pos"),
    ("RootMeanSquaredError", "real"),
]


@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("cls,kind", REGRESSION)
def test_regression_metrics_match_keras(cls, kind, sequences):
    ours, theirs = getattr(M, cls)(), getattr(keras.metrics, cls)()
    assert ours.name == theirs.name
    result, expected = _feed(ours, theirs, _regression_batches(1, kind, sequences))
    assert isinstance(result, float)
    assert_close(np.asarray(result), expected, 2e-6, name=cls)
    ours.reset_state()
    theirs.reset_state()
    assert ours.result() == float(keras.ops.convert_to_numpy(theirs.result())) == 0.0
    result, expected = _feed(ours, theirs, _regression_batches(2, kind, sequences))
    assert_close(np.asarray(result), expected, 2e-6, name=cls + " after reset")


def _classification_batches(seed, classes=4, kind="multi", logits=False, weights=True):
    rng = np.random.default_rng(seed)
    out = []
    for b in (6, 4, 9, 1):
        p = rng.random((b, classes))
        if logits:
            p = rng.standard_normal((b, classes)) * 3
        if kind == "sparse":
            t = rng.integers(0, classes, (b,)).astype(np.float64)
        elif kind == "onehot":
            t = np.eye(classes)[rng.integers(0, classes, b)]
        else:
            t = (rng.random((b, classes)) > 0.5) * 1.0
        sw = rng.random(b).astype(np.float32) if weights else None
        out.append((t.astype(np.float32), p.astype(np.float32), sw, None))
    return out


CLASSIFICATION = [
    ("precision", lambda m: m.Precision()),
    ("recall", lambda m: m.Recall()),
    ("precision_thresholds", lambda m: m.Precision(thresholds=[0.2, 0.5, 0.8])),
    ("precision_even_thresholds", lambda m: m.Precision(thresholds=[0.0, 0.5, 1.0])),
    ("recall_top_k", lambda m: m.Recall(top_k=2)),
    ("precision_top_k_class", lambda m: m.Precision(top_k=2, class_id=1)),
    ("recall_class", lambda m: m.Recall(class_id=2, thresholds=0.3)),
    ("auc", lambda m: m.AUC()),
    ("auc_pr", lambda m: m.AUC(curve="PR")),
    ("auc_pr_minoring", lambda m: m.AUC(curve="PR", summation_method="minoring")),
    ("auc_majoring_50", lambda m: m.AUC(num_thresholds=50, summation_method="majoring")),
    ("auc_thresholds", lambda m: m.AUC(thresholds=[0.1, 0.3, 0.7])),
    ("auc_prgain", lambda m: m.AUC(curve="PRGAIN")),
    ("auc_multi_label", lambda m: m.AUC(multi_label=True)),
    ("auc_multi_label_weights", lambda m: m.AUC(multi_label=True, label_weights=[0.2, 0.5, 1, 3])),
    ("auc_label_weights", lambda m: m.AUC(label_weights=[0.2, 0.5, 1.0, 0.3])),
]


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("name,make", CLASSIFICATION, ids=[c[0] for c in CLASSIFICATION])
def test_confusion_metrics_match_keras(name, make, weights):
    ours, theirs = make(M), make(keras.metrics)
    result, expected = _feed(ours, theirs, _classification_batches(3, weights=weights))
    assert_close(np.asarray(result), expected, 2e-6, name=name)
    ours.reset_state()
    theirs.reset_state()
    result, expected = _feed(ours, theirs, _classification_batches(4, weights=weights))
    assert_close(np.asarray(result), expected, 2e-6, name=name + " after reset")


def test_auc_binary_from_logits_and_default_200_thresholds():
    ours, theirs = M.AUC(from_logits=True), keras.metrics.AUC(from_logits=True)
    assert len(ours.thresholds) == 200 and ours.num_thresholds == 200
    assert_close(np.array(ours.thresholds), np.array(theirs.thresholds), 1e-7)
    result, expected = _feed(ours, theirs, _classification_batches(5, 1, logits=True))
    assert_close(np.asarray(result), expected, 2e-6)
    # perfectly separated scores give 1, reversed ones 0 (up to the threshold grid)
    perfect = M.AUC()
    perfect.update_state([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert perfect.result() == pytest.approx(1.0)


ACCURACIES = [
    ("BinaryAccuracy", dict(classes=3)),
    ("CategoricalAccuracy", dict(classes=4, kind="onehot")),
    ("SparseCategoricalAccuracy", dict(classes=4, kind="sparse")),
]


@pytest.mark.parametrize("cls,kwargs", ACCURACIES)
def test_accuracy_objects_match_keras(cls, kwargs):
    ours, theirs = getattr(M, cls)(), getattr(keras.metrics, cls)()
    assert ours.name == theirs.name
    result, expected = _feed(ours, theirs, _classification_batches(6, **kwargs))
    assert_close(np.asarray(result), expected, 2e-6)


def test_exact_accuracy_and_masked_sequence_accuracy_match_keras():
    rng = np.random.default_rng(8)
    batches = []
    for b in (4, 2):
        t = (rng.random((b, 7, 1)) > 0.5).astype(np.float32)
        p = (rng.random((b, 7, 1)) > 0.5).astype(np.float32)
        batches.append((t, p, None, rng.random((b, 7)) > 0.4))
    result, expected = _feed(M.Accuracy(), keras.metrics.Accuracy(), batches)
    assert_close(np.asarray(result), expected, 1e-6)
    result, expected = _feed(M.BinaryAccuracy(), keras.metrics.BinaryAccuracy(), batches)
    assert_close(np.asarray(result), expected, 1e-6)


def test_mean_metric_and_call_protocol():
    ours, theirs = M.Mean(), keras.metrics.Mean()
    values, sw = np.array([1.0, 3.0, 5.0, 7.0]), np.array([1.0, 1.0, 0.0, 0.0])
    ours.update_state(values, sample_weight=sw)
    theirs.update_state(values, sample_weight=sw)
    assert ours.result() == pytest.approx(float(theirs.result())) == pytest.approx(2.0)
    rmse = M.RootMeanSquaredError()
    assert rmse([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "identifier",
    ["mae", "MSE", "mape", "msle", "auc", "AUC", "precision", "Recall", "root_mean_squared_error"],
)
def test_metric_identifiers_as_keras_compile(identifier):
    from keras.src.trainers.compile_utils import get_metric

    y_true, y_pred = np.zeros((4, 1)), np.zeros((4, 1))
    theirs = get_metric(identifier, y_true, y_pred)
    ours = M.get(identifier)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.name == theirs.name == identifier
    assert ours._direction == getattr(theirs, "_direction", "down")


@pytest.mark.parametrize(
    "y_true,y_pred",
    [
        (np.zeros((4, 1)), np.zeros((4, 1))),
        (np.zeros(4), np.zeros((4, 3))),
        (np.zeros((4, 1)), np.zeros((4, 3))),
        (np.zeros((4, 3)), np.zeros((4, 3))),
        (np.zeros((4, 5)), np.zeros((4, 5, 3))),
    ],
)
def test_accuracy_kind_chosen_as_keras_compile(y_true, y_pred):
    from keras.src.trainers.compile_utils import get_metric

    theirs = get_metric("accuracy", y_true, y_pred)
    ours = M.get("accuracy", y_true, y_pred)
    assert type(ours).__name__ == type(theirs).__name__ and ours.name == "accuracy"


def test_metric_names_are_numbered_like_keras():
    first, second = M.Precision(), M.Precision()
    assert first.name.startswith("precision") and second.name != first.name


def test_name_based_functions_still_work():
    """fastrnn.models uses these today; new names mape/msle join them."""
    y_true, y_pred = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.5, 2.0], [2.0, 5.0]])
    assert M.check("mape") == "mape"
    fn = M.resolve("mape", y_true, y_pred, "mse")
    assert_close(fn(y_true, y_pred), np.array([25.0, (100 / 3 + 25) / 2]), 1e-12)
    assert M.resolve("accuracy", np.arange(2), y_pred, "mse") is M.sparse_categorical_accuracy
    with pytest.raises(ValueError, match="Unknown metric"):
        M.check("auc_roc")


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda: M.Precision(thresholds=1.5), ValueError, r"\[0, 1\]"),
        (lambda: M.Recall(top_k=0), ValueError, "top_k"),
        (lambda: M.AUC(num_thresholds=1), ValueError, "num_thresholds"),
        (lambda: M.AUC(curve="DET"), ValueError, "curve"),
        (lambda: M.AUC(summation_method="simpson"), ValueError, "summation_method"),
        (lambda: M.AUC(num_labels=3), ValueError, "num_labels"),
        (
            lambda: M.AUC(multi_label=True).update_state(np.ones(3), np.ones(3)),
            ValueError,
            "rank 2",
        ),
        (lambda: M.get("accuracy"), ValueError, "y_true and y_pred"),
        (
            lambda: M.RootMeanSquaredError().update_state(np.ones((4, 2)), np.ones((4, 3))),
            ValueError,
            "does not match",
        ),
        (
            lambda: M.Precision().update_state(np.ones((4, 2)), np.ones((4, 3))),
            ValueError,
            "does not match",
        ),
        (lambda: M.get("auroc"), ValueError, "Unknown metric"),
        (
            lambda: M.MeanAbsoluteError().update_state(
                np.ones((4, 2)), np.ones((4, 2)), sample_weight=np.ones(3)
            ),
            ValueError,
            "sample_weight",
        ),
    ],
)
def test_metric_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_metric_serialization_roundtrip():
    for metric in (M.AUC(curve="PR", thresholds=[0.2, 0.6]), M.Precision(top_k=2), M.Mean()):
        clone = M.deserialize(json.loads(json.dumps(M.serialize(metric))))
        assert clone.get_config() == metric.get_config()
