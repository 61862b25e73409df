"""Random problem instances shared by the kernel test modules (CPU and CUDA).

``make_case`` draws inputs at realistic scale (never zeros or ones alone) for one cell variant,
shape and option set; ``run_forward_backward`` runs one functional module (``fastrnn.ops`` or
``fastrnn.reference``) on it, so a test can run both alike and compare.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


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
    def gates(self) -> int:
        return {"simple_rnn": 1, "lstm": 4, "gru": 3}[self.cell]


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
    "full": dict(bias=True, initial_state=True, mask=True, go_backwards=True, dropout=True),
    "mask-states": dict(bias=True, initial_state=True, mask=True),
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
    if variant.cell != "simple_rnn":
        case["kwargs"]["recurrent_activation"] = variant.recurrent_activation
    if variant.cell == "gru":
        case["kwargs"]["reset_after"] = variant.reset_after
    if options.get("bias"):
        shape_b = (2, G * H) if (variant.cell == "gru" and variant.reset_after) else (G * H,)
        case["bias"] = rng.uniform(-0.5, 0.5, shape_b)
    if options.get("initial_state"):
        n_states = 2 if variant.cell == "lstm" else 1
        case["initial_state"] = [rng.uniform(-0.9, 0.9, (B, H)) for _ in range(n_states)]
    if options.get("mask"):
        case["mask"] = make_mask(rng, T, B)
    if options.get("go_backwards"):
        case["kwargs"]["go_backwards"] = True
    if options.get("dropout"):
        keep = 1.0 / (1.0 - 0.3)
        case["kwargs"]["dropout_mask"] = (rng.random((B, n_in)) > 0.3) * keep
        case["kwargs"]["recurrent_dropout_mask"] = (rng.random((B, H)) > 0.3) * keep
    n_states = 2 if variant.cell == "lstm" else 1
    case["d_outputs"] = rng.standard_normal((T, B, H))
    case["d_final_states"] = [rng.standard_normal((B, H)) for _ in range(n_states)]
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
    forward = getattr(module, f"{variant.cell}_forward")
    backward = getattr(module, f"{variant.cell}_backward")
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
