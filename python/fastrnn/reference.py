"""Pure-NumPy reference implementation: the readable specification of fastrnn.

Every fused kernel is tested against this module, and this module is itself gradient-checked with
central finite differences (``tests/test_reference_gradcheck.py``). It is written for clarity, not
speed: one step function per cell with its equations numbered, an explicit cache, and a plain
backpropagation-through-time loop.

Dimension legend:
    T  time steps        B  batch            I  input features
    H  hidden units      G  gates per cell: 1 SimpleRNN, 4 LSTM (i, f, c, o), 3 GRU (z, r, h)

Weights use Keras's layout: ``kernel (I, G*H)``, ``recurrent_kernel (H, G*H)``, gate column blocks
in Keras order (LSTM i, f, c, o; GRU z, r, h), ``bias (G*H,)`` or, for GRU with
``reset_after=True``, ``bias (2, 3*H)`` holding ``[input bias, recurrent bias]``. ``bias=None``
means the layer has no bias. In code the LSTM candidate is ``g`` (so that ``c`` stays the cell
state) and the GRU candidate is ``g`` too.

Sequence semantics (Keras 3):
    * ``x`` is time-major ``(T, B, I)``.
    * Dropout: ``xd = x_t * dropout_mask`` feeds the input product and
      ``hd_prev = h_prev * recurrent_dropout_mask`` feeds every recurrent product; nothing else
      sees the dropped values (GRU's final mix uses the undropped ``h_prev``).
    * ``go_backwards=True`` consumes ``x`` (and ``mask``) in reversed time order; ``outputs`` are in
      processing order (``outputs[s]`` is the step that consumed ``x[T-1-s]``); ``dx`` is returned
      in the input's own order.
    * ``mask (T, B)`` bool, in input order. Where ``mask[t, b]`` is False the states carry over
      unchanged and the output repeats the previous step's output (zeros before the first step);
      the step does not read ``x[t, b]``, so its gradient there is zero and whatever the padding
      holds (even NaN) reaches no other gradient.
    * All arithmetic is done in ``x.dtype`` (float32 or float64). Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fastrnn import activations
from fastrnn._cells import ACTIVATIONS, RNNGradients

# ---------------------------------------------------------------------------------------------
# Activations: y = f(x), and the derivative f'(x) written from the output y (one table for the
# whole package: fastrnn.activations).
# ---------------------------------------------------------------------------------------------


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; valid names are: {', '.join(ACTIVATIONS)}.")


def activation_forward(name: str, x: np.ndarray) -> np.ndarray:
    """Applies the activation ``name`` (one of ``ACTIVATIONS``) elementwise.

    Raises:
        ValueError: if ``name`` is not a known activation.
    """
    _check_activation(name)
    return activations.forward(name, x)


def activation_derivative(name: str, y: np.ndarray) -> np.ndarray:
    """Derivative of the activation ``name`` at the point whose *output* is ``y``.

    tanh: 1 - y^2; sigmoid: y (1 - y); relu: 1 where y > 0; hard_sigmoid: 1/6 where 0 < y < 1;
    linear: 1.

    Raises:
        ValueError: if ``name`` is not a known activation.
    """
    _check_activation(name)
    return activations.derivative(name, y)


def _split(a: np.ndarray, parts: int) -> list[np.ndarray]:
    """Splits the last axis into ``parts`` equal gate blocks."""
    return np.split(a, parts, axis=-1)


# ---------------------------------------------------------------------------------------------
# SimpleRNN
# ---------------------------------------------------------------------------------------------


def simple_rnn_step_forward(
    xd: np.ndarray,
    hd_prev: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: str = "tanh",
) -> tuple[np.ndarray, dict]:
    """One SimpleRNN step.

    Equations (a = activation)::

        (1) h_pre = xd @ K + hd_prev @ R + b
        (2) h     = a(h_pre)

    Args:
        xd: (B, I) input after dropout.
        hd_prev: (B, H) previous h after recurrent dropout.
        kernel: K, (I, H).
        recurrent_kernel: R, (H, H).
        bias: b, (H,) or None.
        activation: name of ``a``.

    Returns:
        ``(h, saved)``: h (B, H) and the values the backward step needs.
    """
    h_pre = xd @ kernel + hd_prev @ recurrent_kernel  # (1)
    if bias is not None:
        h_pre = h_pre + bias
    h = activation_forward(activation, h_pre)  # (2)
    return h, {"xd": xd, "hd_prev": hd_prev, "h": h}


def simple_rnn_step_backward(
    dh: np.ndarray,
    saved: dict,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    activation: str = "tanh",
) -> tuple[np.ndarray, ...]:
    """Backward of ``simple_rnn_step_forward``.

    Equations::

        dh_pre = dh * a'(h)                                          from (2)
        dxd = dh_pre @ K^T      dhd_prev = dh_pre @ R^T               from (1)
        dK = xd^T @ dh_pre      dR = hd_prev^T @ dh_pre      db = sum_B dh_pre

    Args:
        dh: (B, H) gradient of the loss w.r.t. this step's h.
        saved: what the forward step returned.
        kernel: (I, H).
        recurrent_kernel: (H, H).
        activation: name of ``a``.

    Returns:
        ``(dxd (B, I), dhd_prev (B, H), dkernel (I, H), drecurrent_kernel (H, H), dbias (H,))``.
    """
    dh_pre = dh * activation_derivative(activation, saved["h"])
    dxd = dh_pre @ kernel.T
    dhd_prev = dh_pre @ recurrent_kernel.T
    dkernel = saved["xd"].T @ dh_pre
    drecurrent_kernel = saved["hd_prev"].T @ dh_pre
    dbias = dh_pre.sum(axis=0)
    return dxd, dhd_prev, dkernel, drecurrent_kernel, dbias


# ---------------------------------------------------------------------------------------------
# LSTM
# ---------------------------------------------------------------------------------------------


def lstm_step_forward(
    xd: np.ndarray,
    hd_prev: np.ndarray,
    c_prev: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One LSTM step (Keras gate order i, f, c, o; the candidate is called g).

    Equations (a = activation, ra = recurrent_activation)::

        (1) i_pre, f_pre, g_pre, o_pre = split(xd @ K + hd_prev @ R + b)
        (2) i = ra(i_pre)   f = ra(f_pre)   g = a(g_pre)   o = ra(o_pre)
        (3) c = f * c_prev + i * g
        (4) a_c = a(c)
        (5) h = o * a_c

    Args:
        xd: (B, I) input after dropout.
        hd_prev: (B, H) previous h after recurrent dropout.
        c_prev: (B, H) previous cell state.
        kernel: K, (I, 4H).
        recurrent_kernel: R, (H, 4H).
        bias: b, (4H,) or None.
        activation: name of ``a``.
        recurrent_activation: name of ``ra``.

    Returns:
        ``(h, c, saved)``: h (B, H), c (B, H) and the values the backward step needs.
    """
    z = xd @ kernel + hd_prev @ recurrent_kernel
    if bias is not None:
        z = z + bias
    i_pre, f_pre, g_pre, o_pre = _split(z, 4)  # (1)
    i = activation_forward(recurrent_activation, i_pre)  # (2)
    f = activation_forward(recurrent_activation, f_pre)
    g = activation_forward(activation, g_pre)
    o = activation_forward(recurrent_activation, o_pre)
    c = f * c_prev + i * g  # (3)
    a_c = activation_forward(activation, c)  # (4)
    h = o * a_c  # (5)
    saved = {
        "xd": xd,
        "hd_prev": hd_prev,
        "c_prev": c_prev,
        "i": i,
        "f": f,
        "g": g,
        "o": o,
        "a_c": a_c,
    }
    return h, c, saved


def lstm_step_backward(
    dh: np.ndarray,
    dc: np.ndarray,
    saved: dict,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[np.ndarray, ...]:
    """Backward of ``lstm_step_forward``.

    Equations (``dc`` on entry is the gradient reaching c from the next step)::

        do  = dh * a_c                                                from (5)
        dc  = dc + dh * o * a'(a_c)                                   from (4), (5)
        df  = dc * c_prev    di = dc * g    dg = dc * i               from (3)
        dc_prev = dc * f                                              from (3)
        di_pre = di * ra'(i)  df_pre = df * ra'(f)
        dg_pre = dg * a'(g)   do_pre = do * ra'(o)                    from (2)
        dz  = [di_pre, df_pre, dg_pre, do_pre]                        from (1)
        dxd = dz @ K^T   dhd_prev = dz @ R^T
        dK = xd^T @ dz   dR = hd_prev^T @ dz   db = sum_B dz

    Args:
        dh: (B, H) gradient w.r.t. this step's h.
        dc: (B, H) gradient w.r.t. this step's c.
        saved: what the forward step returned.
        kernel: (I, 4H).
        recurrent_kernel: (H, 4H).
        activation: name of ``a``.
        recurrent_activation: name of ``ra``.

    Returns:
        ``(dxd (B, I), dhd_prev (B, H), dc_prev (B, H), dkernel (I, 4H),
        drecurrent_kernel (H, 4H), dbias (4H,))``.
    """
    i, f, g, o, a_c = saved["i"], saved["f"], saved["g"], saved["o"], saved["a_c"]
    do = dh * a_c
    dc = dc + dh * o * activation_derivative(activation, a_c)
    df = dc * saved["c_prev"]
    di = dc * g
    dg = dc * i
    dc_prev = dc * f
    di_pre = di * activation_derivative(recurrent_activation, i)
    df_pre = df * activation_derivative(recurrent_activation, f)
    dg_pre = dg * activation_derivative(activation, g)
    do_pre = do * activation_derivative(recurrent_activation, o)
    dz = np.concatenate([di_pre, df_pre, dg_pre, do_pre], axis=-1)
    dxd = dz @ kernel.T
    dhd_prev = dz @ recurrent_kernel.T
    dkernel = saved["xd"].T @ dz
    drecurrent_kernel = saved["hd_prev"].T @ dz
    dbias = dz.sum(axis=0)
    return dxd, dhd_prev, dc_prev, dkernel, drecurrent_kernel, dbias


# ---------------------------------------------------------------------------------------------
# GRU
# ---------------------------------------------------------------------------------------------


def gru_step_forward(
    xd: np.ndarray,
    h_prev: np.ndarray,
    hd_prev: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
) -> tuple[np.ndarray, dict]:
    """One GRU step (Keras gate order z, r, h; the candidate is called g).

    Equations with ``reset_after=True`` (a = activation, ra = recurrent_activation,
    bias = [b_in, b_rec])::

        (1) x_z, x_r, x_g = split(xd @ K + b_in)
        (2) rec_z, rec_r, rec_g = split(hd_prev @ R + b_rec)
        (3) z = ra(x_z + rec_z)
        (4) r = ra(x_r + rec_r)
        (5) g = a(x_g + r * rec_g)
        (6) h = z * h_prev + (1 - z) * g

    Equations with ``reset_after=False`` (R = [R_z, R_r, R_g] column blocks)::

        (1) x_z, x_r, x_g = split(xd @ K + b)
        (2) z = ra(x_z + hd_prev @ R_z)
        (3) r = ra(x_r + hd_prev @ R_r)
        (4) g = a(x_g + (r * hd_prev) @ R_g)
        (5) h = z * h_prev + (1 - z) * g

    Args:
        xd: (B, I) input after dropout.
        h_prev: (B, H) previous h (undropped; used by the final mix).
        hd_prev: (B, H) previous h after recurrent dropout (used by the recurrent products).
        kernel: K, (I, 3H).
        recurrent_kernel: R, (H, 3H).
        bias: (2, 3H) if ``reset_after`` else (3H,); or None.
        activation: name of ``a``.
        recurrent_activation: name of ``ra``.
        reset_after: where the reset gate is applied (see above).

    Returns:
        ``(h, saved)``: h (B, H) and the values the backward step needs.
    """
    H = h_prev.shape[-1]
    x_proj = xd @ kernel
    if reset_after:
        rec_proj = hd_prev @ recurrent_kernel
        if bias is not None:
            x_proj = x_proj + bias[0]
            rec_proj = rec_proj + bias[1]
        x_z, x_r, x_g = _split(x_proj, 3)  # (1)
        rec_z, rec_r, rec_g = _split(rec_proj, 3)  # (2)
        z = activation_forward(recurrent_activation, x_z + rec_z)  # (3)
        r = activation_forward(recurrent_activation, x_r + rec_r)  # (4)
        g = activation_forward(activation, x_g + r * rec_g)  # (5)
        h = z * h_prev + (1 - z) * g  # (6)
        saved = {"xd": xd, "h_prev": h_prev, "hd_prev": hd_prev, "z": z, "r": r, "g": g}
        saved["rec_g"] = rec_g  # needed by dr: the candidate's pre-activation uses r * rec_g
    else:
        if bias is not None:
            x_proj = x_proj + bias
        x_z, x_r, x_g = _split(x_proj, 3)  # (1)
        rec_zr = hd_prev @ recurrent_kernel[:, : 2 * H]
        rec_z, rec_r = _split(rec_zr, 2)
        z = activation_forward(recurrent_activation, x_z + rec_z)  # (2)
        r = activation_forward(recurrent_activation, x_r + rec_r)  # (3)
        g = activation_forward(
            activation, x_g + (r * hd_prev) @ recurrent_kernel[:, 2 * H :]
        )  # (4)
        h = z * h_prev + (1 - z) * g  # (5)
        saved = {"xd": xd, "h_prev": h_prev, "hd_prev": hd_prev, "z": z, "r": r, "g": g}
    return h, saved


def gru_step_backward(
    dh: np.ndarray,
    saved: dict,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
) -> tuple[np.ndarray, ...]:
    """Backward of ``gru_step_forward``.

    Common to both variants (from the final mix)::

        dz = dh * (h_prev - g)    dg = dh * (1 - z)    dh_prev = dh * z
        dz_pre = dz * ra'(z)      dg_pre = dg * a'(g)

    ``reset_after=True``::

        dr_pre = dg_pre * rec_g * ra'(r)                              from (5), (4)
        dx_proj = [dz_pre, dr_pre, dg_pre]                            from (3), (4), (5)
        drec_proj = [dz_pre, dr_pre, dg_pre * r]
        dxd = dx_proj @ K^T       dK = xd^T @ dx_proj       db_in = sum_B dx_proj
        dhd_prev = drec_proj @ R^T  dR = hd_prev^T @ drec_proj  db_rec = sum_B drec_proj

    ``reset_after=False``::

        drh = dg_pre @ R_g^T                 (gradient w.r.t. r * hd_prev)   from (4)
        dr_pre = drh * hd_prev * ra'(r)
        dx_proj = [dz_pre, dr_pre, dg_pre]
        dxd = dx_proj @ K^T   dK = xd^T @ dx_proj   db = sum_B dx_proj
        dhd_prev = [dz_pre, dr_pre] @ [R_z, R_r]^T + drh * r
        d[R_z, R_r] = hd_prev^T @ [dz_pre, dr_pre]    dR_g = (r * hd_prev)^T @ dg_pre

    Args:
        dh: (B, H) gradient w.r.t. this step's h.
        saved: what the forward step returned.
        kernel: (I, 3H).
        recurrent_kernel: (H, 3H).
        activation: name of ``a``.
        recurrent_activation: name of ``ra``.
        reset_after: as in the forward.

    Returns:
        ``(dxd (B, I), dh_prev (B, H), dhd_prev (B, H), dkernel (I, 3H),
        drecurrent_kernel (H, 3H), dbias)`` where ``dh_prev`` is only the direct path through
        the final mix, ``dhd_prev`` the path through the recurrent products, and ``dbias`` is
        (2, 3H) if ``reset_after`` else (3H,).
    """
    z, r, g, h_prev, hd_prev = saved["z"], saved["r"], saved["g"], saved["h_prev"], saved["hd_prev"]
    H = h_prev.shape[-1]
    dz = dh * (h_prev - g)
    dg = dh * (1 - z)
    dh_prev = dh * z
    dz_pre = dz * activation_derivative(recurrent_activation, z)
    dg_pre = dg * activation_derivative(activation, g)
    if reset_after:
        dr_pre = dg_pre * saved["rec_g"] * activation_derivative(recurrent_activation, r)
        dx_proj = np.concatenate([dz_pre, dr_pre, dg_pre], axis=-1)
        drec_proj = np.concatenate([dz_pre, dr_pre, dg_pre * r], axis=-1)
        dhd_prev = drec_proj @ recurrent_kernel.T
        drecurrent_kernel = hd_prev.T @ drec_proj
        dbias = np.stack([dx_proj.sum(axis=0), drec_proj.sum(axis=0)])
    else:
        R_zr, R_g = recurrent_kernel[:, : 2 * H], recurrent_kernel[:, 2 * H :]
        drh = dg_pre @ R_g.T
        dr_pre = drh * hd_prev * activation_derivative(recurrent_activation, r)
        dx_proj = np.concatenate([dz_pre, dr_pre, dg_pre], axis=-1)
        dzr_pre = np.concatenate([dz_pre, dr_pre], axis=-1)
        dhd_prev = dzr_pre @ R_zr.T + drh * r
        drecurrent_kernel = np.concatenate([hd_prev.T @ dzr_pre, (r * hd_prev).T @ dg_pre], axis=-1)
        dbias = dx_proj.sum(axis=0)
    dxd = dx_proj @ kernel.T
    dkernel = saved["xd"].T @ dx_proj
    return dxd, dh_prev, dhd_prev, dkernel, drecurrent_kernel, dbias


# ---------------------------------------------------------------------------------------------
# Sequence driver shared by the three cells: time order, masking, dropout, BPTT.
# ---------------------------------------------------------------------------------------------

# A cell step as the driver sees it:
#   forward(xd, states_prev, hd_prev) -> (states_new, saved)
#   backward(d_states_new, saved) -> (dxd, d_states_prev, dhd_prev, dkernel, drecurrent_kernel,
#                                     dbias)
# where states are lists ([h] or [h, c]) and d_states_prev holds only the direct paths (not the
# one through hd_prev, which the driver routes through the recurrent dropout mask).
StepForward = Callable[[np.ndarray, list, np.ndarray], tuple[list, dict]]
StepBackward = Callable[[list, dict], tuple]


@dataclass
class ReferenceContext:
    """What a training forward saves for the backward (an explicit cache).

    Attributes:
        step_backward: the cell's backward step as the driver calls it.
        saved: one dict per processed step, in processing order.
        time_index: ``time_index[s]`` is the input time step consumed at processing step ``s``.
        rows: ``rows[s]`` indexes the batch rows step ``s`` computed (all of them, a slice,
            without a mask; else those whose mask is True).
        mask: (T, B) bool in input order, or None.
        dropout_mask: (B, I) or None.
        recurrent_dropout_mask: (B, H) or None.
        x_shape: (T, B, I).
        dtype: computation dtype.
        kernel_shape: (I, G*H).
        recurrent_kernel_shape: (H, G*H).
        bias_shape: the bias's shape, or None when there is no bias.
        num_states: 1 (h) or 2 (h, c).
    """

    step_backward: StepBackward
    saved: list
    time_index: list
    rows: list
    mask: np.ndarray | None
    dropout_mask: np.ndarray | None
    recurrent_dropout_mask: np.ndarray | None
    x_shape: tuple
    dtype: np.dtype
    kernel_shape: tuple
    recurrent_kernel_shape: tuple
    bias_shape: tuple | None
    num_states: int


def _as_dtype(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=dtype)


def _sequence_forward(
    step_forward: StepForward,
    step_backward: StepBackward,
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    initial_state: list | None,
    mask: np.ndarray | None,
    num_states: int,
    go_backwards: bool,
    dropout_mask: np.ndarray | None,
    recurrent_dropout_mask: np.ndarray | None,
    training: bool,
) -> tuple[np.ndarray, list, ReferenceContext | None]:
    T, B, _ = x.shape
    H = recurrent_kernel.shape[0]
    dtype = x.dtype
    if initial_state is None:
        states = [np.zeros((B, H), dtype) for _ in range(num_states)]
    else:
        states = [np.asarray(s, dtype=dtype) for s in initial_state]
    mask = None if mask is None else np.asarray(mask, dtype=bool)

    outputs = np.zeros((T, B, H), dtype)
    output_prev = np.zeros((B, H), dtype)  # Keras: the "previous output" before step 0 is zero.
    saved_steps, time_index, step_rows = [], [], []
    for s in range(T):
        t = T - 1 - s if go_backwards else s
        # The rows this step computes: all, or those whose mask is True. A masked row is
        # skipped: its states carry over, its output repeats the previous one, and it reads
        # nothing, so nothing it holds (even NaN padding) reaches a gradient.
        rows = slice(None) if mask is None else np.flatnonzero(mask[t])
        xd = x[t][rows] if dropout_mask is None else x[t][rows] * dropout_mask[rows]
        hd_prev = states[0][rows]
        if recurrent_dropout_mask is not None:
            hd_prev = hd_prev * recurrent_dropout_mask[rows]
        states_new, saved = step_forward(xd, [state[rows] for state in states], hd_prev)
        states = [state.copy() for state in states]
        for state, new in zip(states, states_new):
            state[rows] = new
        output = output_prev.copy()
        output[rows] = states_new[0]
        outputs[s] = output
        output_prev = output
        if training:
            saved_steps.append(saved)
            time_index.append(t)
            step_rows.append(rows)

    ctx = None
    if training:
        ctx = ReferenceContext(
            step_backward=step_backward,
            saved=saved_steps,
            time_index=time_index,
            rows=step_rows,
            mask=mask,
            dropout_mask=dropout_mask,
            recurrent_dropout_mask=recurrent_dropout_mask,
            x_shape=x.shape,
            dtype=dtype,
            kernel_shape=kernel.shape,
            recurrent_kernel_shape=recurrent_kernel.shape,
            bias_shape=None if bias is None else bias.shape,
            num_states=num_states,
        )
    # Copies: the final states must not alias the arrays saved in ctx (or an initial state).
    return outputs, [state.copy() for state in states], ctx


def _sequence_backward(
    ctx: ReferenceContext,
    d_outputs: np.ndarray | None,
    d_final_states: list | None,
) -> RNNGradients:
    T, B, _ = ctx.x_shape
    H = ctx.recurrent_kernel_shape[0]
    dtype = ctx.dtype
    zeros_bh = np.zeros((B, H), dtype)

    # Gradients w.r.t. the states after the current step (start: after the last step).
    d_states = [zeros_bh.copy() for _ in range(ctx.num_states)]
    if d_final_states is not None:
        for k, d in enumerate(d_final_states):
            if d is not None:
                d_states[k] = np.asarray(d, dtype=dtype)
    # Gradient reaching the previous step's output through masked steps that repeated it.
    d_output_carry = zeros_bh

    dx = np.zeros(ctx.x_shape, dtype)
    dkernel = np.zeros(ctx.kernel_shape, dtype)
    drecurrent_kernel = np.zeros(ctx.recurrent_kernel_shape, dtype)
    dbias = None if ctx.bias_shape is None else np.zeros(ctx.bias_shape, dtype)

    for s in reversed(range(T)):
        t, rows = ctx.time_index[s], ctx.rows[s]
        d_output = d_output_carry if d_outputs is None else d_outputs[s] + d_output_carry
        # Computed rows take the gradients reaching their new states and output; skipped
        # (masked) rows pass their state gradients through unchanged and carry their output's
        # gradient to the previous output, which they repeated.
        d_new = [d_states[0][rows] + d_output[rows]] + [d[rows] for d in d_states[1:]]
        d_output_carry = d_output.copy()
        d_output_carry[rows] = 0

        dxd, d_states_prev, dhd_prev, dk, dr, db = ctx.step_backward(d_new, ctx.saved[s])
        dkernel += dk
        drecurrent_kernel += dr
        if dbias is not None:
            dbias += db
        dx[t][rows] = dxd if ctx.dropout_mask is None else dxd * ctx.dropout_mask[rows]
        if ctx.recurrent_dropout_mask is not None:
            dhd_prev = dhd_prev * ctx.recurrent_dropout_mask[rows]
        d_states = [d.copy() for d in d_states]
        d_states[0][rows] = d_states_prev[0] + dhd_prev
        for d, d_prev in zip(d_states[1:], d_states_prev[1:]):
            d[rows] = d_prev
    # d_output_carry left over here reached the zero "previous output" of step 0: dropped.

    return RNNGradients(dx, dkernel, drecurrent_kernel, dbias, d_states)


# ---------------------------------------------------------------------------------------------
# Public sequence functions (the functional contract of fastrnn._cells).
# ---------------------------------------------------------------------------------------------


def simple_rnn_forward(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    initial_state: list | None = None,
    mask: np.ndarray | None = None,
    *,
    activation: str = "tanh",
    go_backwards: bool = False,
    dropout_mask: np.ndarray | None = None,
    recurrent_dropout_mask: np.ndarray | None = None,
    training: bool = False,
) -> tuple[np.ndarray, list, ReferenceContext | None]:
    """SimpleRNN over a sequence: ``h = a(xd @ K + b + hd_prev @ R)`` at every step.

    Args:
        x: (T, B, I) time-major inputs, float32 or float64; everything is computed in x.dtype.
        kernel: (I, H).
        recurrent_kernel: (H, H).
        bias: (H,), or None for no bias.
        initial_state: None (zeros) or ``[h0]`` with h0 (B, H).
        mask: None or bool (T, B) in input time order.
        activation: one of ``ACTIVATIONS``, default "tanh".
        go_backwards: process the sequence in reversed time order.
        dropout_mask: None or (B, I); multiplies x_t before the input product.
        recurrent_dropout_mask: None or (B, H); multiplies h_prev before the recurrent product.
        training: also return the context needed by ``simple_rnn_backward``.

    Returns:
        ``(outputs, final_states, ctx)``: outputs (T, B, H) in processing order,
        final_states ``[h_last]``, ctx (None unless ``training``). Inputs are never modified.

    Raises:
        ValueError: on an unknown activation name.

    Example:
        >>> x = np.ones((7, 5, 3))  # (T, B, I)
        >>> K, R = np.ones((3, 4)) * 0.1, np.eye(4) * 0.5  # (I, H), (H, H)
        >>> outputs, [h_last], _ = simple_rnn_forward(x, K, R)
        >>> outputs.shape, h_last.shape
        ((7, 5, 4), (5, 4))
    """
    _check_activation(activation)
    x = np.asarray(x)
    dtype = x.dtype
    kernel, recurrent_kernel = _as_dtype(kernel, dtype), _as_dtype(recurrent_kernel, dtype)
    bias = _as_dtype(bias, dtype)

    def step_forward(xd, states, hd_prev):
        h, saved = simple_rnn_step_forward(
            xd, hd_prev, kernel, recurrent_kernel, bias, activation=activation
        )
        return [h], saved

    def step_backward(d_states, saved):
        dxd, dhd_prev, dk, dr, db = simple_rnn_step_backward(
            d_states[0], saved, kernel, recurrent_kernel, activation=activation
        )
        return dxd, [np.zeros_like(dhd_prev)], dhd_prev, dk, dr, db

    return _sequence_forward(
        step_forward,
        step_backward,
        x,
        kernel,
        recurrent_kernel,
        bias,
        initial_state,
        mask,
        num_states=1,
        go_backwards=go_backwards,
        dropout_mask=_as_dtype(dropout_mask, dtype),
        recurrent_dropout_mask=_as_dtype(recurrent_dropout_mask, dtype),
        training=training,
    )


def lstm_forward(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    initial_state: list | None = None,
    mask: np.ndarray | None = None,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    go_backwards: bool = False,
    dropout_mask: np.ndarray | None = None,
    recurrent_dropout_mask: np.ndarray | None = None,
    training: bool = False,
) -> tuple[np.ndarray, list, ReferenceContext | None]:
    """LSTM over a sequence; see ``lstm_step_forward`` for the step equations.

    Args:
        x: (T, B, I) time-major inputs, float32 or float64; everything is computed in x.dtype.
        kernel: (I, 4H), gate blocks i, f, c, o.
        recurrent_kernel: (H, 4H).
        bias: (4H,), or None for no bias.
        initial_state: None (zeros) or ``[h0, c0]``, each (B, H).
        mask: None or bool (T, B) in input time order.
        activation: one of ``ACTIVATIONS``, default "tanh" (candidate and cell output).
        recurrent_activation: one of ``ACTIVATIONS``, default "sigmoid" (gates i, f, o).
        go_backwards: process the sequence in reversed time order.
        dropout_mask: None or (B, I); multiplies x_t before the input product.
        recurrent_dropout_mask: None or (B, H); multiplies h_prev before the recurrent product.
        training: also return the context needed by ``lstm_backward``.

    Returns:
        ``(outputs, final_states, ctx)``: outputs (T, B, H) in processing order,
        final_states ``[h_last, c_last]``, ctx (None unless ``training``). Inputs are never
        modified.

    Raises:
        ValueError: on an unknown activation name.

    Example:
        >>> x = np.ones((7, 5, 3))  # (T, B, I)
        >>> K, R = np.ones((3, 16)) * 0.1, np.ones((4, 16)) * 0.1  # (I, 4H), (H, 4H)
        >>> outputs, [h_last, c_last], _ = lstm_forward(x, K, R)
        >>> outputs.shape, c_last.shape
        ((7, 5, 4), (5, 4))
    """
    _check_activation(activation)
    _check_activation(recurrent_activation)
    x = np.asarray(x)
    dtype = x.dtype
    kernel, recurrent_kernel = _as_dtype(kernel, dtype), _as_dtype(recurrent_kernel, dtype)
    bias = _as_dtype(bias, dtype)

    def step_forward(xd, states, hd_prev):
        h, c, saved = lstm_step_forward(
            xd,
            hd_prev,
            states[1],
            kernel,
            recurrent_kernel,
            bias,
            activation=activation,
            recurrent_activation=recurrent_activation,
        )
        return [h, c], saved

    def step_backward(d_states, saved):
        dxd, dhd_prev, dc_prev, dk, dr, db = lstm_step_backward(
            d_states[0],
            d_states[1],
            saved,
            kernel,
            recurrent_kernel,
            activation=activation,
            recurrent_activation=recurrent_activation,
        )
        return dxd, [np.zeros_like(dhd_prev), dc_prev], dhd_prev, dk, dr, db

    return _sequence_forward(
        step_forward,
        step_backward,
        x,
        kernel,
        recurrent_kernel,
        bias,
        initial_state,
        mask,
        num_states=2,
        go_backwards=go_backwards,
        dropout_mask=_as_dtype(dropout_mask, dtype),
        recurrent_dropout_mask=_as_dtype(recurrent_dropout_mask, dtype),
        training=training,
    )


def gru_forward(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    initial_state: list | None = None,
    mask: np.ndarray | None = None,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    go_backwards: bool = False,
    dropout_mask: np.ndarray | None = None,
    recurrent_dropout_mask: np.ndarray | None = None,
    training: bool = False,
) -> tuple[np.ndarray, list, ReferenceContext | None]:
    """GRU over a sequence; see ``gru_step_forward`` for the step equations.

    Args:
        x: (T, B, I) time-major inputs, float32 or float64; everything is computed in x.dtype.
        kernel: (I, 3H), gate blocks z, r, h.
        recurrent_kernel: (H, 3H).
        bias: (2, 3H) ``[input bias, recurrent bias]`` if ``reset_after`` else (3H,); or None
            for no bias.
        initial_state: None (zeros) or ``[h0]`` with h0 (B, H).
        mask: None or bool (T, B) in input time order.
        activation: one of ``ACTIVATIONS``, default "tanh" (candidate).
        recurrent_activation: one of ``ACTIVATIONS``, default "sigmoid" (gates z, r).
        reset_after: apply the reset gate after the recurrent product (Keras 3 default, True)
            or before it (False).
        go_backwards: process the sequence in reversed time order.
        dropout_mask: None or (B, I); multiplies x_t before the input product.
        recurrent_dropout_mask: None or (B, H); multiplies h_prev before the recurrent products
            (the final mix ``z * h_prev`` uses the undropped h_prev).
        training: also return the context needed by ``gru_backward``.

    Returns:
        ``(outputs, final_states, ctx)``: outputs (T, B, H) in processing order,
        final_states ``[h_last]``, ctx (None unless ``training``). Inputs are never modified.

    Raises:
        ValueError: on an unknown activation name.

    Example:
        >>> x = np.ones((7, 5, 3))  # (T, B, I)
        >>> K, R = np.ones((3, 12)) * 0.1, np.ones((4, 12)) * 0.1  # (I, 3H), (H, 3H)
        >>> outputs, [h_last], _ = gru_forward(x, K, R, np.zeros((2, 12)))
        >>> outputs.shape
        (7, 5, 4)
    """
    _check_activation(activation)
    _check_activation(recurrent_activation)
    x = np.asarray(x)
    dtype = x.dtype
    kernel, recurrent_kernel = _as_dtype(kernel, dtype), _as_dtype(recurrent_kernel, dtype)
    bias = _as_dtype(bias, dtype)

    def step_forward(xd, states, hd_prev):
        h, saved = gru_step_forward(
            xd,
            states[0],
            hd_prev,
            kernel,
            recurrent_kernel,
            bias,
            activation=activation,
            recurrent_activation=recurrent_activation,
            reset_after=reset_after,
        )
        return [h], saved

    def step_backward(d_states, saved):
        dxd, dh_prev, dhd_prev, dk, dr, db = gru_step_backward(
            d_states[0],
            saved,
            kernel,
            recurrent_kernel,
            activation=activation,
            recurrent_activation=recurrent_activation,
            reset_after=reset_after,
        )
        return dxd, [dh_prev], dhd_prev, dk, dr, db

    return _sequence_forward(
        step_forward,
        step_backward,
        x,
        kernel,
        recurrent_kernel,
        bias,
        initial_state,
        mask,
        num_states=1,
        go_backwards=go_backwards,
        dropout_mask=_as_dtype(dropout_mask, dtype),
        recurrent_dropout_mask=_as_dtype(recurrent_dropout_mask, dtype),
        training=training,
    )


_BACKWARD_DOC = """Backpropagation through time for ``{cell}_forward``.

    Args:
        ctx: the context returned by ``{cell}_forward(..., training=True)``.
        d_outputs: (T, B, H) gradient w.r.t. the outputs (processing order), or None for zeros.
        d_final_states: None, or a list like the final states whose entries are (B, H) arrays
            or None (zeros).

    Returns:
        ``RNNGradients(dx (T, B, I) in input order, dkernel, drecurrent_kernel, dbias (None
        without bias), dinitial_state (list, one (B, H) array per state))``. Inputs are never
        modified.

    Raises:
        ValueError: if ``ctx`` is None (the forward was not run with ``training=True``).
    """


def _backward(
    ctx: ReferenceContext | None, d_outputs: np.ndarray | None, d_final_states: list | None
) -> RNNGradients:
    if ctx is None:
        raise ValueError("backward needs the ctx returned by a forward with training=True.")
    return _sequence_backward(ctx, d_outputs, d_final_states)


def simple_rnn_backward(
    ctx: ReferenceContext, d_outputs: np.ndarray | None, d_final_states: list | None = None
) -> RNNGradients:
    return _backward(ctx, d_outputs, d_final_states)


def lstm_backward(
    ctx: ReferenceContext, d_outputs: np.ndarray | None, d_final_states: list | None = None
) -> RNNGradients:
    return _backward(ctx, d_outputs, d_final_states)


def gru_backward(
    ctx: ReferenceContext, d_outputs: np.ndarray | None, d_final_states: list | None = None
) -> RNNGradients:
    return _backward(ctx, d_outputs, d_final_states)


simple_rnn_backward.__doc__ = _BACKWARD_DOC.format(cell="simple_rnn")
lstm_backward.__doc__ = _BACKWARD_DOC.format(cell="lstm")
gru_backward.__doc__ = _BACKWARD_DOC.format(cell="gru")
