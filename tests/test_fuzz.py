"""A seeded fuzz loop over ``fastrnn.ops``: every call either raises a clear ``TypeError`` /
``ValueError`` or returns what the NumPy reference returns, and never modifies its inputs.

Each iteration draws a cell and option set, odd sizes (0, 1, primes), then applies a few
perturbations: valid ones (strided, negative and zero strides, read-only, unaligned, unpickled,
byte-swapped, Fortran order, NaN/Inf values, list inputs) whose result must equal the
reference's, and invalid ones (wrong dtypes incl. complex/int/object/float16, wrong ranks and
shapes, bad masks and states, misused contexts) which must raise.

``FASTRNN_FUZZ_ITERATIONS`` (default 300, a few seconds) sets the number of calls; CI also runs
this module under AddressSanitizer and UndefinedBehaviorSanitizer. ``FASTRNN_FUZZ_SEED``
changes the seed.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from fastrnn import ops, reference
from harness import (
    FLOAT64_RTOL,
    OPTIONS,
    VARIANTS,
    Variant,
    assert_close,
    assert_close_float32,
    assert_unmodified,
    cast_case,
    make_case,
    snapshot,
)
from harness import run_forward_backward as run

ITERATIONS = int(os.environ.get("FASTRNN_FUZZ_ITERATIONS", "300"))
SEED = int(os.environ.get("FASTRNN_FUZZ_SEED", "20261124"))
SIZES = (0, 1, 2, 3, 5, 7, 13)
ARRAYS = ("x", "kernel", "recurrent_kernel", "bias")


# ---- valid perturbations: same values, other layouts --------------------------------------------
def _strided(a):
    big = np.zeros(tuple(2 * d for d in a.shape), a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def _negative(a):
    if a.ndim == 0 or a.shape[0] == 0:
        return a.copy()
    return np.ascontiguousarray(a[::-1])[::-1]


def _readonly(a):
    b = a.copy()
    b.flags.writeable = False
    return b


def _unaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    b = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    b[...] = a
    return b


VALID = {
    "strided": _strided,
    "negative-stride": _negative,
    "fortran": np.asfortranarray,
    "readonly": _readonly,
    "unaligned": _unaligned,
    "unpickled": lambda a: pickle.loads(pickle.dumps(a)),
    "byteswapped": lambda a: a.astype(a.dtype.newbyteorder(">")),
}

# ---- invalid perturbations: each must raise -----------------------------------------------------
INVALID = {
    "float16": lambda a: a.astype(np.float16),
    "int32": lambda a: a.astype(np.int32),
    "complex": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
    "bool": lambda a: a != 0,
    "rank+1": lambda a: a[..., None],
    "rank-1": lambda a: a.reshape(-1) if a.ndim > 1 else a.reshape(1, -1),
    "shape+1": lambda a: np.concatenate([a, a[..., :1]], axis=-1) if a.shape[-1] else a[..., None],
}


def _draw_case(rng):
    variant = VARIANTS[rng.integers(len(VARIANTS))]
    option = list(OPTIONS)[rng.integers(len(OPTIONS))]
    T, B = (int(rng.choice(SIZES)) for _ in range(2))
    n_in, H = (int(rng.choice(SIZES[1:])) for _ in range(2))
    dtype = np.float64 if rng.random() < 0.5 else np.float32
    case = make_case(rng, variant, (T, B, n_in, H), OPTIONS[option], np.float64)
    return variant, option, (T, B, n_in, H), dtype, case


def _same_finite_pattern(got, want, name, label):
    """With Inf in the inputs, Inf and NaN may trade places (inf * 0 after a saturated gate,
    inf - inf in a different summation order): both must be non-finite at the same places, and
    equal where finite."""
    floor = 1e-30 if np.asarray(got).dtype == np.float32 else 1e-300  # denormal-sized values
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want), err_msg=f"{label} {name}")
    finite = np.isfinite(want)
    got, want = np.where(finite, got, 0), np.where(finite, want, 0)
    scale = float(np.abs(want).max()) if want.size else 0.0
    assert_close(got, want, rtol=1e-5, atol=1e-5 * scale + floor, name=name)


def _expected(variant, case, dtype, label="", nonfinite=False):
    """(reference result, comparison) on the case's values."""
    if nonfinite:
        want = run(reference, variant, cast_case(case, np.float64))
        return want, lambda got, name: _same_finite_pattern(got, want[name], name, label)
    if dtype == np.float64:
        want = run(reference, variant, case)
        return want, lambda got, name: assert_close(got, want[name], rtol=FLOAT64_RTOL, name=name)
    want = run(reference, variant, cast_case(case, np.float64))
    ref32 = run(reference, variant, case)
    return want, lambda got, name: assert_close_float32(got, want[name], ref32[name], name=name)


def _one_iteration(rng, it):
    variant, option, shape, dtype, case = _draw_case(rng)
    case = cast_case(case, dtype)
    kind = rng.random()
    label = f"iteration {it}: {variant.id} {option} {shape} {np.dtype(dtype).name}"

    if kind < 0.45:  # valid layouts and values: must equal the reference
        perturbed = dict(case)
        for name in rng.choice(ARRAYS, size=rng.integers(1, 3), replace=False):
            if perturbed[name] is None:
                continue
            how = list(VALID)[rng.integers(len(VALID))]
            perturbed[name] = VALID[how](perturbed[name])
            label += f" {name}:{how}"
        nonfinite = rng.random() < 0.2 and case["x"].size > 0
        if nonfinite:
            perturbed["x"] = perturbed["x"].copy()
            perturbed["x"].flat[rng.integers(perturbed["x"].size)] = rng.choice([np.nan, np.inf])
            label += " x:nan/inf"
        want, check = _expected(
            variant, {**perturbed, "x": np.asarray(perturbed["x"])}, dtype, label, nonfinite
        )
        before = snapshot(perturbed)
        got = run(ops, variant, perturbed)
        assert_unmodified(before, perturbed, label)
        assert got.keys() == want.keys(), label
        for name in want:
            check(got[name], name)
        return "valid"

    if kind < 0.85:  # one invalid argument: a clear error, inputs untouched
        broken = dict(case)
        name = ARRAYS[rng.integers(3)]  # x, kernel, recurrent_kernel are always present
        how = list(INVALID)[rng.integers(len(INVALID))]
        broken[name] = INVALID[how](broken[name])
        if how == "shape+1" and name == "recurrent_kernel":
            # a wider recurrent kernel can be a valid one of another H: make it surely wrong
            broken[name] = broken[name][..., :-2] if broken[name].shape[-1] > 2 else broken[name][0]
        before = snapshot(broken)
        with pytest.raises((TypeError, ValueError)) as info:
            run(ops, variant, broken)
        assert str(info.value), label
        assert_unmodified(before, broken, label)
        return "invalid"

    # masks, states and contexts used wrongly
    bad = rng.integers(6)
    forward = getattr(ops, f"{variant.cell}_forward")
    backward = getattr(ops, f"{variant.cell}_backward")
    T, B, _, H = shape
    args = (case["x"], case["kernel"], case["recurrent_kernel"], case["bias"])
    if bad == 0:
        with pytest.raises(TypeError, match="mask"):
            forward(*args, mask=np.ones((T, B), np.int8), **case["kwargs"])
    elif bad == 1:
        with pytest.raises(ValueError, match="mask"):
            forward(*args, mask=np.ones((T + 1, B), bool), **case["kwargs"])
    elif bad == 2:
        n = 2 if variant.cell == "lstm" else 1
        with pytest.raises(ValueError, match="initial_state"):
            forward(*args, initial_state=[np.zeros((B, H + 1), dtype)] * n, **case["kwargs"])
    elif bad == 3:
        with pytest.raises(ValueError, match="training=True"):
            backward(None, case["d_outputs"])
    elif bad == 4:
        other = "lstm" if variant.cell != "lstm" else "gru"
        _, _, ctx = forward(*args, training=True, **case["kwargs"])
        with pytest.raises(ValueError, match=f"not {other}_forward"):
            getattr(ops, f"{other}_backward")(ctx, None)
    else:
        _, _, ctx = forward(*args, training=True, **case["kwargs"])
        with pytest.raises((TypeError, ValueError), match="d_outputs"):
            backward(ctx, np.zeros((T, B, H + 1), dtype))
    return "misuse"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference meets the injected NaN/Inf
def test_fuzz_ops():
    rng = np.random.default_rng(SEED)
    seen = {"valid": 0, "invalid": 0, "misuse": 0}
    for it in range(ITERATIONS):
        seen[_one_iteration(rng, it)] += 1
    assert all(seen.values()), seen  # every kind of call was made


@pytest.mark.parametrize("variant", [Variant("lstm"), Variant("gru", reset_after=False)])
def test_fuzz_layouts_reach_every_option(rng, variant):
    # The same valid layouts on the richest option set, checked against the reference.
    case = make_case(rng, variant, (4, 3, 5, 7), OPTIONS["full"])
    want = run(reference, variant, case)
    for how, convert in VALID.items():
        odd = {
            **case,
            "x": convert(case["x"]),
            "recurrent_kernel": convert(case["recurrent_kernel"]),
        }
        got = run(ops, variant, odd)
        for name in want:
            assert_close(got[name], want[name], rtol=FLOAT64_RTOL, name=f"{how}: {name}")
