"""Shared test helpers: a seeded generator, one comparison helper, and the tolerance rules.

Tolerance rules (one place for the whole suite):
    * float64 results are compared with the float64 reference at ``FLOAT64_RTOL`` (about 1e-12
      relative to the expected array's scale).
    * float32 results are compared with the *float64* reference and allowed ``factor`` (4) times
      the reference's own float32 error (the reference run in float32 versus float64) plus a small
      floor (1e-6 times the expected array's scale): see ``float32_tolerance``.

Helpers are plain functions; test modules import them with ``from conftest import ...`` (pytest
puts ``tests/`` on ``sys.path`` because it has no ``__init__.py``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

SEED = 20240611
FLOAT64_RTOL = 1e-12


@pytest.fixture
def rng() -> np.random.Generator:
    """A ``np.random.default_rng`` with a fixed seed, fresh for every test."""
    return np.random.default_rng(SEED)


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
