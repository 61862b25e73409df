"""The test harness of the kernel tests: one case builder, one option grid, one table of
shapes, the tolerance rules and the backends (CPU, CUDA) a case runs on.

Tolerance rules (one place for the whole suite):
    * float64 results are compared with the float64 reference at ``FLOAT64_RTOL`` (about 1e-12
      relative to the expected array's scale).
    * float32 results are compared with the *float64* reference and allowed ``factor`` (4) times
      the reference's own float32 error (the reference run in float32 versus float64) plus a small
      floor (1e-6 times the expected array's scale): see ``float32_tolerance``.

Cases: ``make_case`` draws inputs at realistic scale (never zeros or ones alone) for one cell
variant, shape and option set (``OPTIONS``); ``run_forward_backward`` runs one functional module
(``fastrnn.ops`` or ``fastrnn.reference``) on it, so a test runs both alike and compares. Cell
facts come from ``fastrnn._cells.CELLS`` (the package's one cell table).

Backends: ``BACKENDS`` names where ``fastrnn.ops`` runs; ``Device`` moves a case onto one (NumPy
arrays, or CuPy arrays on the GPU) and results back. ``conftest.py`` turns them into the
``backend`` fixture.

Dimension legend: T steps, B batch, I input features, H units, G gates.
"""

from __future__ import annotations

import copy
import os
from typing import NamedTuple

import fastrnn.cuda
import numpy as np
import pytest
from fastrnn._cells import CELLS, CellSpec

SEED = 20240611
FLOAT64_RTOL = 1e-12


def _where(a: np.ndarray, flat: int) -> tuple:
    """The index of flat position ``flat`` as a tuple of plain ints."""
    return tuple(int(i) for i in np.unravel_index(flat, a.shape))


def _scale(expected: np.ndarray) -> float:
    """max |expected| over its finite entries (0 for an empty or all-non-finite array)."""
    finite = np.abs(expected[np.isfinite(expected)])
    return float(finite.max()) if finite.size else 0.0


def assert_close(
    actual: np.ndarray,
    expected: np.ndarray,
    rtol: float,
    atol: float | None = None,
    name: str = "",
) -> None:
    """Asserts ``|actual - expected| <= atol + rtol * |expected|`` elementwise.

    ``atol`` defaults to ``rtol * max|expected|``, so entries much smaller than the array's
    largest are judged against its scale rather than their own size. NaN must appear exactly where
    ``expected`` has NaN; infinities must match exactly. Shapes must match exactly.

    Args:
        actual: the array under test.
        expected: the reference array (usually float64).
        rtol: relative tolerance.
        atol: absolute tolerance, default ``rtol * max|expected|``.
        name: what is compared, for the failure message.

    Raises:
        AssertionError: with the max abs error, its index, and both values there.
    """
    label = f"{name}: " if name else ""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{label}shape {actual.shape} != expected {expected.shape}"
    )
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if not np.array_equal(nan_a, nan_e):
        idx = _where(a, np.argmax(nan_a != nan_e))
        raise AssertionError(
            f"{label}NaN mismatch at index {idx}: actual={a[idx]:.17g}, expected={e[idx]:.17g} "
            f"({int((nan_a != nan_e).sum())} mismatching entries)"
        )
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    if not np.array_equal(np.where(inf_a, a, 0), np.where(inf_e, e, 0)):
        idx = _where(a, np.argmax((inf_a | inf_e) & (a != e)))
        raise AssertionError(
            f"{label}inf mismatch at index {idx}: actual={a[idx]:.17g}, expected={e[idx]:.17g}"
        )
    finite = np.isfinite(e)
    if not finite.any():
        return
    if atol is None:
        atol = rtol * _scale(e)
    err = np.abs(np.where(finite, a, 0.0) - np.where(finite, e, 0.0))
    allowed = atol + rtol * np.abs(np.where(finite, e, 0.0))
    bad = err > allowed
    if bad.any():
        idx = _where(a, np.argmax(err))
        raise AssertionError(
            f"{label}{int(bad.sum())} of {a.size} entries out of tolerance "
            f"(rtol={rtol:.3g}, atol={atol:.3g}); max abs error {err[idx]:.6g} at index {idx}: "
            f"actual={a[idx]:.17g}, expected={e[idx]:.17g}"
        )


def float32_tolerance(
    expected64: np.ndarray,
    reference32: np.ndarray,
    factor: float = 4.0,
    floor: float = 1e-6,
) -> float:
    """Absolute tolerance for a float32 result judged against the float64 reference.

    ``atol = factor * max|reference32 - expected64| + floor * max|expected64|``: the float32
    result may be ``factor`` times as wrong as the reference itself is when run in float32, plus
    a floor so that a reference that happens to round exactly does not demand exactness.
    Use it as ``assert_close(actual32, expected64, rtol=0, atol=float32_tolerance(...))``.

    Args:
        expected64: the reference run in float64.
        reference32: the same reference run in float32 on the float32-rounded inputs.
        factor: allowed multiple of the reference's own float32 error (2 to 4).
        floor: minimum tolerance relative to ``max|expected64|``.

    Returns:
        The absolute tolerance, a float.
    """
    e = np.asarray(expected64, dtype=np.float64)
    r = np.asarray(reference32, dtype=np.float64)
    finite = np.isfinite(e) & np.isfinite(r)
    ref_err = float(np.abs(r - e)[finite].max()) if finite.any() else 0.0
    return factor * ref_err + floor * _scale(e)


def assert_close_float32(
    actual32: np.ndarray,
    expected64: np.ndarray,
    reference32: np.ndarray,
    name: str = "",
    factor: float = 4.0,
    floor: float = 1e-6,
) -> None:
    """``assert_close`` with the float32 rule of ``float32_tolerance``."""
    atol = float32_tolerance(expected64, reference32, factor=factor, floor=floor)
    assert_close(actual32, expected64, rtol=0.0, atol=atol, name=name)


def snapshot(obj):
    """A deep copy of arrays / lists / tuples / dicts, for ``assert_unmodified``."""
    return copy.deepcopy(obj)


def assert_unmodified(before, after, name: str = "input") -> None:
    """Asserts ``after`` is bitwise equal to the ``snapshot`` taken ``before`` (NaN == NaN)."""
    if isinstance(before, dict):
        assert before.keys() == after.keys(), f"{name}: keys changed"
        for key in before:
            assert_unmodified(before[key], after[key], f"{name}[{key!r}]")
    elif isinstance(before, (list, tuple)):
        assert len(before) == len(after), f"{name}: length changed"
        for k, (b, a) in enumerate(zip(before, after)):
            assert_unmodified(b, a, f"{name}[{k}]")
    elif isinstance(before, np.ndarray):
        assert before.dtype == after.dtype and before.shape == after.shape, f"{name} changed"
        assert np.array_equal(before, after, equal_nan=before.dtype.kind in "fc"), (
            f"{name} was modified"
        )
    else:
        assert before == after, f"{name} changed: {before!r} -> {after!r}"


# ---- shapes -----------------------------------------------------------------------------------
class Shape(NamedTuple):
    """One test shape: T time steps, B batch, I input features, H hidden units."""

    T: int
    B: int
    I: int  # noqa: E741 (the dimension legend's name)
    H: int

    @property
    def id(self) -> str:
        return f"T{self.T}-B{self.B}-I{self.I}-H{self.H}"


SHAPES = [
    Shape(1, 1, 1, 1),  # every dimension 1
    Shape(7, 5, 33, 17),  # odd sizes, I and H not multiples of any vector width
    Shape(3, 2, 4, 3),  # small, I > H
    Shape(12, 1, 1, 3),  # longer sequence, single sample, scalar input
    Shape(5, 3, 17, 33),  # H > I
    Shape(1, 4, 3, 5),  # single step
]

SHAPE_IDS = [shape.id for shape in SHAPES]


# ---- cases ------------------------------------------------------------------------------------
class Variant(NamedTuple):
    cell: str
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    reset_after: bool = True

    @property
    def id(self) -> str:
        ra = "" if self.cell != "gru" else ("-after" if self.reset_after else "-before")
        return f"{self.cell}{ra}-{self.activation}-{self.recurrent_activation}"

    @property
    def spec(self) -> CellSpec:
        return CELLS[self.cell]

    @property
    def gates(self) -> int:
        return self.spec.gates


VARIANTS = [
    *(Variant("simple_rnn", a) for a in ("tanh", "relu", "sigmoid", "hard_sigmoid", "linear")),
    Variant("lstm"),
    Variant("lstm", "relu", "hard_sigmoid"),
    Variant("lstm", "linear", "sigmoid"),
    Variant("gru", reset_after=True),
    Variant("gru", reset_after=False),
    Variant("gru", "relu", "hard_sigmoid", reset_after=True),
    Variant("gru", "sigmoid", "hard_sigmoid", reset_after=False),
]
VARIANT_IDS = [v.id for v in VARIANTS]

# Option sets: which optional inputs a case has.
OPTIONS = {
    "plain": dict(bias=True),
    "nobias": dict(bias=False),
    "backwards-states": dict(bias=True, initial_state=True, go_backwards=True),
    "dropout": dict(bias=True, dropout=True),
    "mask-states": dict(bias=True, initial_state=True, mask=True),
    "full": dict(bias=True, initial_state=True, mask=True, go_backwards=True, dropout=True),
}


def make_mask(rng: np.random.Generator, T: int, B: int) -> np.ndarray:
    mask = rng.random((T, B)) > 0.3
    if T == 0 or B == 0:
        return mask
    mask[0, 0] = False  # masked first step: output 0 while the state stays h0
    if B >= 2:
        mask[:, 1] = False  # a fully masked sample
    if B >= 3:
        mask[:, 2] = True
    return mask


def make_case(rng, variant: Variant, shape, options: dict, dtype=np.float64) -> dict:
    T, B, n_in, H = shape
    G = variant.gates
    scale_k, scale_r = 1.0 / np.sqrt(n_in), 1.0 / np.sqrt(H)
    case = dict(
        x=rng.standard_normal((T, B, n_in)),
        kernel=rng.uniform(-1.5, 1.5, (n_in, G * H)) * scale_k,
        recurrent_kernel=rng.uniform(-1.5, 1.5, (H, G * H)) * scale_r,
        bias=None,
        initial_state=None,
        mask=None,
        kwargs=dict(activation=variant.activation),
    )
    spec = variant.spec
    if spec.recurrent_activation:
        case["kwargs"]["recurrent_activation"] = variant.recurrent_activation
    if "reset_after" in spec.options:
        case["kwargs"]["reset_after"] = variant.reset_after
    if options.get("bias"):
        case["bias"] = rng.uniform(-0.5, 0.5, spec.bias_shape(H, **case["kwargs"]))
    if options.get("initial_state"):
        case["initial_state"] = [rng.uniform(-0.9, 0.9, (B, H)) for _ in range(spec.num_states)]
    if options.get("mask"):
        case["mask"] = make_mask(rng, T, B)
    if options.get("go_backwards"):
        case["kwargs"]["go_backwards"] = True
    if options.get("dropout"):
        keep = 1.0 / (1.0 - 0.3)
        case["kwargs"]["dropout_mask"] = (rng.random((B, n_in)) > 0.3) * keep
        case["kwargs"]["recurrent_dropout_mask"] = (rng.random((B, H)) > 0.3) * keep
    case["d_outputs"] = rng.standard_normal((T, B, H))
    case["d_final_states"] = [rng.standard_normal((B, H)) for _ in range(spec.num_states)]
    return cast_case(case, dtype)


def cast_case(case: dict, dtype) -> dict:
    def cast(a):
        if a is None or isinstance(a, bool) or (isinstance(a, np.ndarray) and a.dtype == bool):
            return a
        if isinstance(a, np.ndarray):
            return a.astype(dtype)
        if isinstance(a, list):
            return [cast(v) for v in a]
        if isinstance(a, dict):
            return {k: cast(v) for k, v in a.items()}
        return a

    return {k: cast(v) for k, v in case.items()}


def run_forward_backward(module, variant: Variant, case: dict):
    """Forward (training) then backward; returns a flat dict name -> array."""
    forward = variant.spec.forward(module)
    backward = variant.spec.backward(module)
    outputs, states, ctx = forward(
        case["x"],
        case["kernel"],
        case["recurrent_kernel"],
        case["bias"],
        case["initial_state"],
        case["mask"],
        training=True,
        **case["kwargs"],
    )
    grads = backward(ctx, case["d_outputs"], case["d_final_states"])
    result = {"outputs": outputs}
    for k, s in enumerate(states):
        result[f"state{k}"] = s
    result.update(dx=grads.dx, dkernel=grads.dkernel, drecurrent_kernel=grads.drecurrent_kernel)
    if grads.dbias is not None:
        result["dbias"] = grads.dbias
    for k, d in enumerate(grads.dinitial_state):
        result[f"dinitial_state{k}"] = d
    return result


# ---- backends ----------------------------------------------------------------------------------
BACKENDS = ("cpu", "cuda")


class Device:
    """Where a case runs: moves arrays (and nested lists/dicts of them) there and back."""

    def __init__(self, name: str):
        from fastrnn import _backend

        self.name = name
        backend = _backend.CPU if name == "cpu" else _backend._cuda_backend()
        self.xp = backend.xp  # numpy or cupy
        self.module = backend.module  # fastrnn._cpu or fastrnn._cuda: the one binding contract

    def put(self, a):
        if isinstance(a, np.ndarray):
            return self.xp.asarray(a)
        if isinstance(a, list):
            return [self.put(v) for v in a]
        if isinstance(a, dict):
            return {k: self.put(v) for k, v in a.items()}
        return a

    def host(self, a):
        if self.name == "cuda" and isinstance(a, self.xp.ndarray):
            return self.xp.asnumpy(a)
        if isinstance(a, (list, tuple)):
            return [self.host(v) for v in a]
        if isinstance(a, dict):
            return {k: self.host(v) for k, v in a.items()}
        return a

    def __repr__(self) -> str:
        return self.name


def require_backend(name: str, module_level: bool = False) -> Device:
    """The backend ``name``, or a visible skip (a failure when ``FASTRNN_EXPECT_GPU=1``).

    ``module_level=True`` when called at a test module's top level (skips the whole module).
    """
    if name == "cuda" and not fastrnn.cuda.is_available():
        reason = f"CUDA backend unavailable: {fastrnn.cuda.unavailable_reason()}"
        if os.environ.get("FASTRNN_EXPECT_GPU") == "1":
            pytest.fail(f"FASTRNN_EXPECT_GPU=1 but {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=module_level)
    return Device(name)
