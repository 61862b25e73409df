"""The kernels against the NumPy reference, on every backend (the CPU, and CUDA where it is
usable): every cell, activation, GRU variant and option, float64 (tight) and float32 (within
float32 rounding), on odd sizes; on the CPU also on every SIMD path the machine can run.

One case builder, option grid and shape table (``harness.py``) serve both devices, so the two
are tested on the same cases.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastrnn import _cpu, ops, reference
from harness import (
    FLOAT64_RTOL,
    OPTIONS,
    SHAPE_IDS,
    SHAPES,
    VARIANT_IDS,
    VARIANTS,
    Device,
    Variant,
    assert_close,
    assert_close_float32,
    assert_unmodified,
    cast_case,
    make_case,
    snapshot,
)
from harness import run_forward_backward as run

ISAS = _cpu.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    previous = _cpu.get_isa()
    _cpu.set_isa(request.param)
    yield request.param
    _cpu.set_isa(previous)


def check_parity(backend, rng, variant: Variant, shape, options: dict, dtype) -> None:
    """Training forward + backward through ``fastrnn.ops`` on ``backend`` versus the reference:
    every output, final state and gradient; inputs unmodified; results of the input dtype."""
    case = make_case(rng, variant, shape, options, np.float64)
    if dtype == np.float32:
        case = cast_case(case, np.float32)
    on_device = backend.put(case)
    before = snapshot(backend.host(on_device))
    actual = backend.host(run(ops, variant, on_device))
    assert_unmodified(before, backend.host(on_device), "inputs")
    expected = run(reference, variant, cast_case(case, np.float64))
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name].dtype == dtype, name
    if dtype == np.float64:
        for name in expected:
            assert_close(actual[name], expected[name], rtol=FLOAT64_RTOL, name=name)
        return
    reference32 = run(reference, variant, case)
    for name in expected:
        assert_close_float32(actual[name], expected[name], reference32[name], name=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_parity(backend, rng, variant, option, shape, dtype):
    check_parity(backend, rng, variant, shape, OPTIONS[option], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_parity_every_isa(rng, isa, variant, dtype):
    # CPU only: odd sizes that leave a partial SIMD block and a partial batch-row block.
    check_parity(Device("cpu"), rng, variant, (6, 11, 19, 37), OPTIONS["full"], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", VARIANTS[4:10], ids=VARIANT_IDS[4:10])
def test_parity_large(backend, rng, variant, dtype):
    """Large enough per step (B*G*H*H) that the CPU splits units over threads; past the CUDA
    kernels' 64-wide product tiles and 16-row step blocks (B > 16), odd everywhere, with
    go_backwards, dropout, masks and initial states."""
    check_parity(backend, rng, variant, (9, 37, 21, 83), OPTIONS["full"], dtype)


@pytest.mark.parametrize("option", ["plain", "full"])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_inference_matches_reference(backend, rng, variant, option):
    """The inference path (no workspace) is its own code: compared directly, every cell."""
    case = make_case(rng, variant, (7, 5, 33, 17), OPTIONS[option])
    forward = variant.spec.forward
    args = (case["x"], case["kernel"], case["recurrent_kernel"], case["bias"])
    extra = dict(initial_state=case["initial_state"], mask=case["mask"], **case["kwargs"])
    outputs, states, ctx = forward(ops)(*backend.put(list(args)), **backend.put(extra))
    assert ctx is None
    want_outputs, want_states, _ = forward(reference)(*args, **extra)
    assert_close(backend.host(outputs), want_outputs, rtol=FLOAT64_RTOL, name="outputs")
    for k, (got, want) in enumerate(zip(states, want_states)):
        assert_close(backend.host(got), want, rtol=FLOAT64_RTOL, name=f"state{k}")
    # and bitwise equal to the training forward
    train_outputs, train_states, _ = forward(ops)(
        *backend.put(list(args)), training=True, **backend.put(extra)
    )
    np.testing.assert_array_equal(backend.host(outputs), backend.host(train_outputs))
    for a, b in zip(states, train_states):
        np.testing.assert_array_equal(backend.host(a), backend.host(b))


@pytest.mark.parametrize("which", ["d_outputs", "d_final_states", "both"])
@pytest.mark.parametrize("variant", VARIANTS[4:10], ids=VARIANT_IDS[4:10])
def test_backward_without_upstream_gradients(backend, rng, variant, which):
    """d_outputs=None and d_final_states=None (or lists of None) stand for zeros."""
    case = make_case(rng, variant, (5, 3, 7, 6), OPTIONS["full"])
    zeros_out = np.zeros_like(case["d_outputs"])
    zeros_states = [np.zeros_like(d) for d in case["d_final_states"]]
    spec = variant.spec
    results = {}
    for module, put in ((ops, backend.put), (reference, lambda a: a)):
        args = put([case["x"], case["kernel"], case["recurrent_kernel"], case["bias"]])
        extra = put(dict(initial_state=case["initial_state"], mask=case["mask"], **case["kwargs"]))
        _, _, ctx = spec.forward(module)(*args, training=True, **extra)
        d_out = None if which in ("d_outputs", "both") else put(case["d_outputs"])
        d_fin = [None] * spec.num_states if which == "d_final_states" else None
        if which == "d_outputs":
            d_fin = put(case["d_final_states"])
        results[module] = spec.backward(module)(ctx, d_out, d_fin)
    # the explicit zeros give the same numbers in the reference
    d_out = zeros_out if which in ("d_outputs", "both") else case["d_outputs"]
    d_fin = zeros_states if which != "d_outputs" else case["d_final_states"]
    _, _, ctx = spec.forward(reference)(
        case["x"],
        case["kernel"],
        case["recurrent_kernel"],
        case["bias"],
        training=True,
        initial_state=case["initial_state"],
        mask=case["mask"],
        **case["kwargs"],
    )
    zeros_ref = spec.backward(reference)(ctx, d_out, d_fin)
    got, want = results[ops], results[reference]
    for name in ("dx", "dkernel", "drecurrent_kernel", "dbias"):
        assert_close(backend.host(getattr(got, name)), getattr(want, name), FLOAT64_RTOL, name=name)
        np.testing.assert_array_equal(getattr(want, name), getattr(zeros_ref, name), err_msg=name)
    for k, d in enumerate(got.dinitial_state):
        assert_close(backend.host(d), want.dinitial_state[k], FLOAT64_RTOL, name=f"dh0[{k}]")


def test_non_contiguous_inputs(backend, rng):
    variant = Variant("gru", reset_after=True)
    case = make_case(rng, variant, (5, 3, 8, 6), OPTIONS["plain"])
    expected = run(reference, variant, case)
    # Batch-major storage viewed time-major, and Fortran-ordered kernels.
    strided = dict(backend.put(case))
    xp = backend.xp
    strided["x"] = xp.ascontiguousarray(strided["x"].transpose(1, 0, 2)).transpose(1, 0, 2)
    strided["kernel"] = xp.asfortranarray(strided["kernel"])
    strided["recurrent_kernel"] = xp.asfortranarray(strided["recurrent_kernel"])
    assert not strided["x"].flags.c_contiguous
    actual = backend.host(run(ops, variant, strided))
    for name in expected:
        assert_close(actual[name], expected[name], rtol=FLOAT64_RTOL, name=name)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_nan_propagates(backend, rng, cell):
    variant = Variant(cell)
    case = make_case(rng, variant, (4, 3, 5, 7), OPTIONS["plain"])
    case["x"][1, 2, 3] = np.nan
    case["x"][2, 0, 1] = np.inf
    actual = backend.host(run(ops, variant, backend.put(case)))
    expected = run(reference, variant, case)
    assert np.isnan(actual["outputs"][1:, 2]).all()
    for name in expected:
        assert_close(actual[name], expected[name], rtol=FLOAT64_RTOL, name=name)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("shape", [(0, 3, 4, 5), (4, 0, 4, 5)], ids=["T0", "B0"])
def test_empty_sizes(backend, rng, cell, shape):
    variant = Variant(cell)
    case = make_case(rng, variant, shape, OPTIONS["mask-states"])
    actual = backend.host(run(ops, variant, backend.put(case)))
    T, B, _, H = shape
    assert actual["outputs"].shape == (T, B, H)
    assert actual["dx"].shape == case["x"].shape
    if T == 0:  # final states are the initial states; their gradients pass straight through
        np.testing.assert_array_equal(actual["state0"], case["initial_state"][0])
        np.testing.assert_array_equal(actual["dinitial_state0"], case["d_final_states"][0])
    np.testing.assert_array_equal(actual["dkernel"], 0)
    np.testing.assert_array_equal(actual["drecurrent_kernel"], 0)


@pytest.mark.parametrize("variant", VARIANTS[4:10], ids=VARIANT_IDS[4:10])
def test_raw_module_writes_only_its_outputs(backend, rng, variant):
    """Guard bands: every output is a view into a larger NaN-filled buffer; after forward and
    backward the bands around each view are still NaN (no write out of bounds) and the views
    equal the reference."""
    T, B, n_in, H = 5, 19, 7, 9
    case = make_case(rng, variant, (T, B, n_in, H), OPTIONS["full"])
    spec, xp, module = variant.spec, backend.xp, backend.module
    pad = 13
    bufs = []

    def guarded(*shape):
        n = int(np.prod(shape))
        buf = xp.full(n + 2 * pad, np.nan)
        bufs.append((buf, n))
        return buf[pad : pad + n].reshape(shape)

    d = backend.put(case)
    kw = dict(d["kwargs"])
    states = d["initial_state"]
    inputs = dict(
        cell=spec.name,
        x=d["x"],
        kernel=d["kernel"],
        recurrent_kernel=d["recurrent_kernel"],
        bias=d["bias"],
        h0=states[0],
        c0=states[1] if spec.num_states > 1 else None,
        mask=d["mask"],
        dropout_mask=kw.pop("dropout_mask"),
        recurrent_dropout_mask=kw.pop("recurrent_dropout_mask"),
        **kw,
    )
    reset_after = inputs.get("reset_after", True)
    outputs, h_last = guarded(T, B, H), guarded(B, H)
    c_last = guarded(B, H) if spec.num_states > 1 else None
    workspace = guarded(module.workspace_size(spec.name, T, B, H, reset_after))
    module.forward(**inputs, outputs=outputs, h_last=h_last, c_last=c_last, workspace=workspace)
    grads = dict(
        dx=guarded(T, B, n_in),
        dkernel=guarded(n_in, spec.gates * H),
        drecurrent_kernel=guarded(H, spec.gates * H),
        dbias=guarded(*case["bias"].shape),
        dh0=guarded(B, H),
        dc0=guarded(B, H) if spec.num_states > 1 else None,
    )
    module.backward(
        **inputs,
        workspace=workspace,
        d_outputs=d["d_outputs"],
        d_h_last=d["d_final_states"][0],
        d_c_last=d["d_final_states"][1] if spec.num_states > 1 else None,
        **grads,
    )
    for buf, n in bufs:
        host = backend.host(buf)
        assert np.isnan(host[:pad]).all() and np.isnan(host[pad + n :]).all(), "guard band written"
    want = run(reference, variant, case)
    assert_close(backend.host(outputs), want["outputs"], FLOAT64_RTOL, name="outputs")
    assert_close(backend.host(grads["dx"]), want["dx"], FLOAT64_RTOL, name="dx")
    assert_close(backend.host(grads["dbias"]), want["dbias"], FLOAT64_RTOL, name="dbias")
