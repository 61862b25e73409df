"""One cell step of the shared header (csrc/include/fastrnn/cells.h, the code the CPU loop and the
CUDA thread both run) against the reference's ``<cell>_step_forward`` / ``_step_backward``,
through the private ``_cpu._step_forward`` / ``_step_backward`` entry points: a wrong step is
found at the step, not only through whole sequences.

One batch row (B = 1) of odd H, float64; the recurrent products are computed here in NumPy and
handed to the step, as the loops hand it their register tiles. With B = 1 the reference's bias
gradient *is* the row of gate pre-activation gradients the step writes.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastrnn import _cpu, reference
from harness import assert_close

ACTS = ["tanh", "relu", "sigmoid", "hard_sigmoid", "linear"]
H, N_IN = 7, 5
RTOL = 1e-13


def _inputs(rng, G, split_bias=False):
    d = dict(
        xd=rng.standard_normal((1, N_IN)),
        hd_prev=rng.uniform(-0.9, 0.9, (1, H)),
        c_prev=rng.uniform(-0.9, 0.9, (1, H)),
        K=rng.uniform(-1, 1, (N_IN, G * H)) / np.sqrt(N_IN),
        R=rng.uniform(-1, 1, (H, G * H)) / np.sqrt(H),
        b=rng.uniform(-0.5, 0.5, (2, G * H) if split_bias else (G * H,)),
        dh=rng.standard_normal((1, H)),
        dc=rng.standard_normal((1, H)),
    )
    return d


def _close(got, want, name):
    assert_close(np.asarray(got).reshape(-1), np.asarray(want).reshape(-1), RTOL, name=name)


@pytest.mark.parametrize("act", ACTS)
def test_simple_rnn_step(rng, act):
    d = _inputs(rng, 1)
    h, saved = reference.simple_rnn_step_forward(d["xd"], d["hd_prev"], d["K"], d["R"], d["b"], act)
    xp, acc = d["xd"] @ d["K"], d["hd_prev"] @ d["R"]
    f = _cpu._step_forward(
        "simple_rnn",
        False,
        act,
        "sigmoid",
        1,
        xp[0],
        acc[0],
        b_in=d["b"],
        h_prev=d["hd_prev"][0],
        hd_prev=d["hd_prev"][0],
    )
    _close(f["out"], h, "h")
    _close(f["h_next"], h, "h_next")
    _close(f["ws_state"], h, "ws_state")
    dxd, dhd_prev, _, _, db = reference.simple_rnn_step_backward(
        d["dh"], saved, d["K"], d["R"], act
    )
    g = _cpu._step_backward(
        "simple_rnn", False, act, "sigmoid", "unit", f["gates"], d["hd_prev"][0], dh=d["dh"][0]
    )
    _close(g["dgi"], db, "dh_pre")
    acc = g["dgr"] @ d["R"].T
    g = _cpu._step_backward(
        "simple_rnn", False, act, "sigmoid", "dh", f["gates"], d["hd_prev"][0], dh=g["dh"], acc=acc
    )
    _close(g["dh"], dhd_prev, "dh_prev")


@pytest.mark.parametrize("ract", ACTS)
@pytest.mark.parametrize("act", ACTS)
def test_lstm_step(rng, act, ract):
    d = _inputs(rng, 4)
    h, c, saved = reference.lstm_step_forward(
        d["xd"], d["hd_prev"], d["c_prev"], d["K"], d["R"], d["b"], act, ract
    )
    xp, acc = d["xd"] @ d["K"], d["hd_prev"] @ d["R"]
    f = _cpu._step_forward(
        "lstm",
        False,
        act,
        ract,
        1,
        xp[0],
        acc[0],
        b_in=d["b"],
        h_prev=d["hd_prev"][0],
        hd_prev=d["hd_prev"][0],
        c_prev=d["c_prev"][0],
    )
    _close(f["out"], h, "h")
    _close(f["c_next"], c, "c")
    _close(f["ws_cell"], c, "ws_cell")
    _close(f["ws_act_cell"], saved["a_c"], "a_c")
    _close(f["gates"], np.concatenate([saved[k] for k in "ifgo"], axis=-1), "gates")
    dxd, dhd_prev, dc_prev, _, _, db = reference.lstm_step_backward(
        d["dh"], d["dc"], saved, d["K"], d["R"], act, ract
    )
    g = _cpu._step_backward(
        "lstm",
        False,
        act,
        ract,
        "unit",
        f["gates"],
        d["hd_prev"][0],
        c_prev=d["c_prev"][0],
        act_cell=f["ws_act_cell"],
        dh=d["dh"][0],
        dc=d["dc"][0],
    )
    _close(g["dgi"], db, "dz")
    _close(g["dc"], dc_prev, "dc_prev")
    g = _cpu._step_backward(
        "lstm",
        False,
        act,
        ract,
        "dh",
        f["gates"],
        d["hd_prev"][0],
        dh=g["dh"],
        acc=g["dgr"] @ d["R"].T,
    )
    _close(g["dh"], dhd_prev, "dh_prev")


@pytest.mark.parametrize("ract", ["sigmoid", "hard_sigmoid"])
@pytest.mark.parametrize("act", ACTS)
def test_gru_reset_after_step(rng, act, ract):
    d = _inputs(rng, 3, split_bias=True)
    h_prev = rng.uniform(-0.9, 0.9, (1, H))  # the mix uses h_prev, the products hd_prev
    h, saved = reference.gru_step_forward(
        d["xd"], h_prev, d["hd_prev"], d["K"], d["R"], d["b"], act, ract, reset_after=True
    )
    xp, acc = d["xd"] @ d["K"], d["hd_prev"] @ d["R"]
    f = _cpu._step_forward(
        "gru",
        True,
        act,
        ract,
        1,
        xp[0],
        acc[0],
        b_in=d["b"][0],
        b_rec=d["b"][1],
        h_prev=h_prev[0],
        hd_prev=d["hd_prev"][0],
    )
    _close(f["out"], h, "h")
    _close(f["gates"], np.concatenate([saved[k] for k in "zrg"], axis=-1), "gates")
    _close(f["ws_rh"], saved["rec_g"], "rec_g")
    _, dh_prev, dhd_prev, _, _, db = reference.gru_step_backward(
        d["dh"], saved, d["K"], d["R"], act, ract, reset_after=True
    )
    g = _cpu._step_backward(
        "gru", True, act, ract, "unit", f["gates"], h_prev[0], rh=f["ws_rh"], dh=d["dh"][0]
    )
    _close(g["dgi"], db[0], "dx_proj")
    _close(g["dgr"], db[1], "drec_proj")
    g = _cpu._step_backward(
        "gru", True, act, ract, "dh", f["gates"], h_prev[0], dh=g["dh"], acc=g["dgr"] @ d["R"].T
    )
    _close(g["dh"], dh_prev + dhd_prev, "dh_prev")


@pytest.mark.parametrize("ract", ["sigmoid", "hard_sigmoid"])
@pytest.mark.parametrize("act", ACTS)
def test_gru_reset_before_step(rng, act, ract):
    d = _inputs(rng, 3)
    h_prev = rng.uniform(-0.9, 0.9, (1, H))
    h, saved = reference.gru_step_forward(
        d["xd"], h_prev, d["hd_prev"], d["K"], d["R"], d["b"], act, ract, reset_after=False
    )
    R_zr, R_g = d["R"][:, : 2 * H], d["R"][:, 2 * H :]
    xp = d["xd"] @ d["K"]
    f1 = _cpu._step_forward(
        "gru",
        False,
        act,
        ract,
        1,
        xp[0],
        (d["hd_prev"] @ R_zr)[0],
        b_in=d["b"],
        h_prev=h_prev[0],
        hd_prev=d["hd_prev"][0],
    )
    _close(f1["rhd"], saved["r"] * d["hd_prev"], "r * hd_prev")
    f = _cpu._step_forward(
        "gru",
        False,
        act,
        ract,
        2,
        xp[0],
        f1["rhd"] @ R_g,
        b_in=d["b"],
        h_prev=h_prev[0],
        hd_prev=d["hd_prev"][0],
        gates=f1["gates"],
        rhd=f1["rhd"],
    )
    _close(f["out"], h, "h")
    _close(f["gates"], np.concatenate([saved[k] for k in "zrg"], axis=-1), "gates")
    _, dh_prev, dhd_prev, _, _, db = reference.gru_step_backward(
        d["dh"], saved, d["K"], d["R"], act, ract, reset_after=False
    )
    g = _cpu._step_backward(
        "gru", False, act, ract, "unit", f["gates"], h_prev[0], rh=f["ws_rh"], dh=d["dh"][0]
    )
    drh = g["dgi"][2 * H :] @ R_g.T
    g = _cpu._step_backward(
        "gru",
        False,
        act,
        ract,
        "reset",
        f["gates"],
        d["hd_prev"][0],
        dh=g["dh"],
        dgi=g["dgi"],
        acc=drh,
    )
    _close(g["dgi"], db, "dx_proj")
    g = _cpu._step_backward(
        "gru",
        False,
        act,
        ract,
        "dh",
        f["gates"],
        h_prev[0],
        dh=g["dh"],
        d_rhd=g["d_rhd"],
        acc=g["dgi"][: 2 * H] @ R_zr.T,
    )
    _close(g["dh"], dh_prev + dhd_prev, "dh_prev")


@pytest.mark.parametrize(
    "cell,reset_after", [("simple_rnn", False), ("lstm", False), ("gru", True), ("gru", False)]
)
def test_masked_row_carries(rng, cell, reset_after):
    """A masked row: states carried, the previous output repeated, nothing stale saved; its
    backward carries the output gradient and zeroes the gate gradients."""
    G = {"simple_rnn": 1, "lstm": 4, "gru": 3}[cell]
    GC = 2 if (cell == "gru" and not reset_after) else G
    h_prev, c_prev, out_prev = (rng.standard_normal(H) for _ in range(3))
    rmask = (rng.random(H) > 0.3) / 0.7
    f = _cpu._step_forward(
        cell,
        reset_after,
        "tanh",
        "sigmoid",
        2 if GC != G else 1,
        rng.standard_normal(G * H),
        rng.standard_normal(GC * H if GC == G else H),
        h_prev=h_prev,
        hd_prev=h_prev * rmask,
        c_prev=c_prev,
        rmask=rmask,
        out_prev=out_prev,
        gates=rng.standard_normal(G * H),
        masked=True,
    )
    np.testing.assert_array_equal(f["out"], out_prev)
    np.testing.assert_array_equal(f["h_next"], h_prev)
    np.testing.assert_array_equal(f["hd_next"], h_prev * rmask)
    np.testing.assert_array_equal(f["ws_state"], h_prev)
    np.testing.assert_array_equal(f["gates"], 0)
    if cell == "lstm":
        np.testing.assert_array_equal(f["c_next"], c_prev)
    if cell == "gru":
        np.testing.assert_array_equal(f["ws_rh"], 0)
    dout, carry, dh = (rng.standard_normal(H) for _ in range(3))
    g = _cpu._step_backward(
        cell,
        reset_after,
        "tanh",
        "sigmoid",
        "unit",
        rng.standard_normal(G * H),
        h_prev,
        dout=dout,
        carry=carry,
        dh=dh,
        dgi=rng.standard_normal(G * H),
        masked=True,
    )
    np.testing.assert_array_equal(g["carry"], dout + carry)
    np.testing.assert_array_equal(g["dh"], dh)  # passed through
    np.testing.assert_array_equal(g["dgi"], 0)
    g = _cpu._step_backward(
        cell,
        reset_after,
        "tanh",
        "sigmoid",
        "unit",
        rng.standard_normal(G * H),
        h_prev,
        dout=dout,
        carry=carry,
        dh=dh,
        masked=True,
        has_prev_step=False,
    )
    np.testing.assert_array_equal(g["carry"], 0)  # the zero "previous output" of step 0
