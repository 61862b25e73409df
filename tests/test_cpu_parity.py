"""The fused CPU kernels against the NumPy reference: every cell, activation, GRU variant and
option, float64 (tight) and float32 (within float32 rounding), on odd sizes, on every SIMD path
the machine can run."""

from __future__ import annotations

import numpy as np
import pytest
from _cases import OPTIONS, VARIANT_IDS, VARIANTS, Variant, cast_case, make_case
from _cases import run_forward_backward as run
from conftest import FLOAT64_RTOL, assert_close, assert_close_float32, assert_unmodified, snapshot
from fastrnn import _cpu, ops, reference
from shapes import SHAPE_IDS, SHAPES

ISAS = _cpu.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    previous = _cpu.get_isa()
    _cpu.set_isa(request.param)
    yield request.param
    _cpu.set_isa(previous)


def check_parity(rng, variant: Variant, shape, options: dict, dtype) -> None:
    case = make_case(rng, variant, shape, options, np.float64)
    if dtype == np.float64:
        before = snapshot(case)
        actual = run(ops, variant, case)
        assert_unmodified(before, case, "inputs")
        expected = run(reference, variant, case)
        assert actual.keys() == expected.keys()
        for name in expected:
            assert actual[name].dtype == np.float64, name
            assert_close(actual[name], expected[name], rtol=FLOAT64_RTOL, name=name)
        return
    case32 = cast_case(case, np.float32)
    expected64 = run(reference, variant, cast_case(case32, np.float64))
    reference32 = run(reference, variant, case32)
    before = snapshot(case32)
    actual = run(ops, variant, case32)
    assert_unmodified(before, case32, "inputs")
    for name in expected64:
        assert actual[name].dtype == np.float32, name
        assert_close_float32(actual[name], expected64[name], reference32[name], name=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_parity(rng, variant, option, shape, dtype):
    check_parity(rng, variant, shape, OPTIONS[option], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_parity_every_isa(rng, isa, variant, dtype):
    # Odd sizes that leave a partial SIMD block and a partial batch-row block.
    check_parity(rng, variant, (6, 11, 19, 37), OPTIONS["full"], dtype)


@pytest.mark.parametrize("variant", VARIANTS[4:8] + VARIANTS[8:10], ids=VARIANT_IDS[4:10])
def test_parity_threaded_size(rng, variant):
    # Large enough per step (B*G*H*H) that the kernels split the units over threads.
    check_parity(rng, variant, (4, 9, 21, 83), OPTIONS["full"], np.float64)


def test_inference_equals_training_forward(rng):
    variant = Variant("lstm")
    case = make_case(rng, variant, (7, 5, 33, 17), OPTIONS["full"])
    args = (case["x"], case["kernel"], case["recurrent_kernel"], case["bias"])
    extra = dict(initial_state=case["initial_state"], mask=case["mask"], **case["kwargs"])
    out_inf, states_inf, ctx = ops.lstm_forward(*args, **extra)
    out_tr, states_tr, _ = ops.lstm_forward(*args, training=True, **extra)
    assert ctx is None
    np.testing.assert_array_equal(out_inf, out_tr)
    for a, b in zip(states_inf, states_tr):
        np.testing.assert_array_equal(a, b)


def test_non_contiguous_inputs(rng):
    variant = Variant("gru", reset_after=True)
    case = make_case(rng, variant, (5, 3, 8, 6), OPTIONS["plain"])
    expected = run(reference, variant, case)
    # Batch-major storage viewed time-major, and a Fortran-ordered kernel.
    strided = dict(case)
    strided["x"] = np.ascontiguousarray(case["x"].transpose(1, 0, 2)).transpose(1, 0, 2)
    strided["kernel"] = np.asfortranarray(case["kernel"])
    strided["recurrent_kernel"] = np.asfortranarray(case["recurrent_kernel"])
    assert not strided["x"].flags.c_contiguous
    actual = run(ops, variant, strided)
    for name in expected:
        assert_close(actual[name], expected[name], rtol=FLOAT64_RTOL, name=name)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_nan_propagates(rng, cell):
    variant = Variant(cell)
    case = make_case(rng, variant, (4, 3, 5, 7), OPTIONS["plain"])
    case["x"][1, 2, 3] = np.nan
    case["x"][2, 0, 1] = np.inf
    actual = run(ops, variant, case)
    expected = run(reference, variant, case)
    assert np.isnan(actual["outputs"][1:, 2]).all()
    for name in expected:
        assert_close(actual[name], expected[name], rtol=FLOAT64_RTOL, name=name)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("shape", [(0, 3, 4, 5), (4, 0, 4, 5)], ids=["T0", "B0"])
def test_empty_sizes(rng, cell, shape):
    variant = Variant(cell)
    case = make_case(rng, variant, shape, OPTIONS["mask-states"])
    actual = run(ops, variant, case)
    T, B, _, H = shape
    assert actual["outputs"].shape == (T, B, H)
    assert actual["dx"].shape == case["x"].shape
    if T == 0:  # final states are the initial states; their gradients pass straight through
        np.testing.assert_array_equal(actual["state0"], case["initial_state"][0])
        np.testing.assert_array_equal(actual["dinitial_state0"], case["d_final_states"][0])
    np.testing.assert_array_equal(actual["dkernel"], 0)
    np.testing.assert_array_equal(actual["drecurrent_kernel"], 0)
