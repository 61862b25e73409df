"""What the CPU and GPU benchmark drivers share: problems in both layouts, the agreement check,
interleaved median timing, machine facts, and the markdown plumbing of bench/RESULTS.md.

Imports NumPy, PyTorch and fastrnn: a driver sets the environment (threads, ISA caps) before it
imports this module.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import fastrnn
import numpy as np
import torch
from shapes import FWD_BWD, INFERENCE  # noqa: F401 (re-exported for the drivers)

SEED = 20240611
OUTPUT_RTOL = 1e-4  # max |fastrnn - torch| / max |torch|, outputs and final states
GRAD_RTOL = 1e-3  # the same for gradients (BPTT sums over T steps)


# --------------------------------------------------------------------------------------------
# Problems: Keras-layout weights for fastrnn, the same weights in a torch module.


def set_threads(n: int) -> None:
    """Gives fastrnn and PyTorch the same thread count."""
    fastrnn.set_num_threads(n)
    torch.set_num_threads(n)


def make_problem(shape, cell, seed: int = SEED) -> dict:
    """Random float32 inputs and Keras-layout weights (PyTorch's default init scale)."""
    rng = np.random.default_rng(seed)
    T, B, I, H = shape.T, shape.B, shape.I, shape.H  # noqa: E741
    G = cell.gates
    scale = 1.0 / math.sqrt(H)

    def uniform(*dims):
        return rng.uniform(-scale, scale, size=dims).astype(np.float32)

    return {
        "x": rng.standard_normal((T, B, I)).astype(np.float32),
        "dy": rng.standard_normal((T, B, H)).astype(np.float32),
        "kernel": uniform(I, G * H),
        "recurrent_kernel": uniform(H, G * H),
        "bias": uniform(*cell.spec.bias_shape(H, reset_after=True)),
    }


def _gru_swap(a: np.ndarray, units: int, axis: int = -1) -> np.ndarray:
    """Swaps the first two gate blocks: Keras z, r, h <-> PyTorch r, z, n (its own inverse)."""
    z, r, h = np.split(a, [units, 2 * units], axis=axis)
    return np.ascontiguousarray(np.concatenate([r, z, h], axis=axis))


def to_torch_layout(cell, problem: dict) -> dict:
    """Keras-layout weights as PyTorch's ``weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0``."""
    units = problem["recurrent_kernel"].shape[0]
    kernel, recurrent, bias = problem["kernel"], problem["recurrent_kernel"], problem["bias"]
    if cell.op == "gru":
        return {
            "weight_ih_l0": _gru_swap(kernel, units).T,
            "weight_hh_l0": _gru_swap(recurrent, units).T,
            "bias_ih_l0": _gru_swap(bias[0], units),
            "bias_hh_l0": _gru_swap(bias[1], units),
        }
    # RNN and LSTM: the same gate order (LSTM i, f, g, o); one bias, the other zeros.
    return {
        "weight_ih_l0": kernel.T,
        "weight_hh_l0": recurrent.T,
        "bias_ih_l0": bias,
        "bias_hh_l0": np.zeros_like(bias),
    }


def keras_layout_grads(cell, module, units: int) -> tuple:
    """``module``'s weight gradients (NumPy, Keras layout): ``(dkernel, drecurrent_kernel, dbias)``.

    The inverse of ``to_torch_layout``; LSTM's and RNN's ``bias_hh_l0`` (held at zero) has the
    same gradient as ``bias_ih_l0``, which is the one reported.
    """
    g = {name: param.grad.detach().cpu().numpy() for name, param in module.named_parameters()}
    if cell.op == "gru":
        dkernel = _gru_swap(g["weight_ih_l0"].T, units)
        drecurrent = _gru_swap(g["weight_hh_l0"].T, units)
        dbias = np.stack([_gru_swap(g["bias_ih_l0"], units), _gru_swap(g["bias_hh_l0"], units)])
        return dkernel, drecurrent, dbias
    return g["weight_ih_l0"].T, g["weight_hh_l0"].T, g["bias_ih_l0"]


def make_torch_module(shape, cell, problem: dict):
    """The torch.nn module of ``cell`` (float32, time-major) holding ``problem``'s weights."""
    kwargs = {"nonlinearity": "tanh"} if cell.torch_module == "RNN" else {}
    module = getattr(torch.nn, cell.torch_module)(shape.I, shape.H, **kwargs).float()
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, value in to_torch_layout(cell, problem).items():
            params[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module


def fastrnn_ops(cell):
    """``(forward, backward, extra keyword arguments)`` of ``cell`` in ``fastrnn.ops``."""
    extra = {"reset_after": True} if "reset_after" in cell.spec.options else {}
    return cell.spec.forward(fastrnn.ops), cell.spec.backward(fastrnn.ops), extra


def build_callables(case, problem: dict | None = None) -> dict:
    """``{"fastrnn": fn, "torch": fn}``: zero-argument calls that each time one row's work."""
    shape, cell, mode = case.shape, case.cell, case.mode
    p = make_problem(shape, cell) if problem is None else problem
    forward, backward, extra = fastrnn_ops(cell)
    module = make_torch_module(shape, cell, p)
    x, dy = p["x"], p["dy"]
    weights = (p["kernel"], p["recurrent_kernel"], p["bias"])

    if mode == INFERENCE:
        x_t = torch.from_numpy(x)

        def run_fastrnn():
            return forward(x, *weights, training=False, **extra)

        def run_torch():
            with torch.inference_mode():
                return module(x_t)

    else:
        x_t = torch.from_numpy(x.copy()).requires_grad_(True)
        dy_t = torch.from_numpy(dy)

        def run_fastrnn():
            _, _, ctx = forward(x, *weights, training=True, **extra)
            return backward(ctx, dy)

        def run_torch():
            x_t.grad = None
            module.zero_grad(set_to_none=True)
            out, _ = module(x_t)
            (out * dy_t).sum().backward()

    return {"fastrnn": run_fastrnn, "torch": run_torch}


# --------------------------------------------------------------------------------------------
# Agreement check: proves the two compute the same function on the same weights.


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


def check_agreement(shape, cell, with_grads: bool) -> list:
    """``[(name, relative error, tolerance), ...]`` for fastrnn versus torch on one problem."""
    p = make_problem(shape, cell)
    forward, backward, extra = fastrnn_ops(cell)
    module = make_torch_module(shape, cell, p)
    outputs, states, ctx = forward(
        p["x"], p["kernel"], p["recurrent_kernel"], p["bias"], training=with_grads, **extra
    )
    with torch.inference_mode():  # the path the inference rows time
        out_inference, _ = module(torch.from_numpy(p["x"]))
    x_t = torch.from_numpy(p["x"].copy()).requires_grad_(with_grads)
    out_t, state_t = module(x_t)
    torch_states = [state_t] if cell.op != "lstm" else list(state_t)
    results = [
        ("outputs (torch inference_mode)", rel_err(outputs, out_inference.numpy()), OUTPUT_RTOL),
        ("outputs", rel_err(outputs, out_t.detach().numpy()), OUTPUT_RTOL),
    ]
    for k, (ours, theirs) in enumerate(zip(states, torch_states)):
        results.append(
            (f"final_state[{k}]", rel_err(ours, theirs[0].detach().numpy()), OUTPUT_RTOL)
        )
    if not with_grads:
        return results
    grads = backward(ctx, p["dy"])
    (out_t * torch.from_numpy(p["dy"])).sum().backward()
    dkernel, drecurrent, dbias = keras_layout_grads(cell, module, shape.H)
    results += [
        ("dx", rel_err(grads.dx, x_t.grad.numpy()), GRAD_RTOL),
        ("dkernel", rel_err(grads.dkernel, dkernel), GRAD_RTOL),
        ("drecurrent_kernel", rel_err(grads.drecurrent_kernel, drecurrent), GRAD_RTOL),
        ("dbias", rel_err(grads.dbias, dbias), GRAD_RTOL),
    ]
    return results


# --------------------------------------------------------------------------------------------
# Timing.


class Timing:
    """Sampling plan: warm-up calls, then samples until ``budget_s`` (within the bounds)."""

    def __init__(self, quick: bool):
        self.warmup = 1 if quick else 3
        self.budget_s = 0.3 if quick else 6.0
        self.min_samples = 3 if quick else 9
        self.max_samples = 15 if quick else 100
        self.min_sample_s = 1e-3  # calls shorter than this are repeated inside one sample
        # PyTorch's OpenMP threads spin for about 10 ms after an op (libgomp's default spin
        # count), holding a core: on 2 cores, a call timed inside that window gets one core.
        # Each sample of either library starts after this long, busy (not asleep: an idle VM
        # clocks down and slows whichever call comes next).
        self.settle_s = 0.02


def settle(seconds: float) -> None:
    """Busy-waits ``seconds`` on this thread (the other cores are left to finish up)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def time_interleaved(fns: list, plan: Timing, before=None) -> tuple:
    """Median seconds per call of each of ``fns``, sampled alternately.

    Each sample starts once the previous library's threads have gone idle (``plan.settle_s``
    of busy waiting), then makes one untimed call (caches) and the timed ones, back to back.
    ``before`` (optional) runs instead of the untimed call, right before every timed call: a
    disturbance (another library's op), measured as such and nothing else. Returns
    ``(medians, samples per fn)`` where samples are per-call seconds.
    """
    for _ in range(plan.warmup):
        for fn in fns:
            fn()
    estimates = []
    for fn in fns:
        single = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            single.append(time.perf_counter() - t0)
        estimates.append(max(statistics.median(single), 1e-9))
    numbers = [1 if before else max(1, math.ceil(plan.min_sample_s / est)) for est in estimates]
    per_round = sum(n * est for n, est in zip(numbers, estimates))
    rounds = min(plan.max_samples, max(plan.min_samples, math.ceil(plan.budget_s / per_round)))
    samples = [[] for _ in fns]
    order = list(range(len(fns)))
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for i in order if r % 2 == 0 else order[::-1]:
                fn, number = fns[i], numbers[i]
                settle(plan.settle_s)
                (before or fn)()
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                samples[i].append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [statistics.median(s) for s in samples], samples


def percentile(values: list, q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# --------------------------------------------------------------------------------------------
# Machine facts.


def cpu_model() -> str:
    """The CPU's model name as lscpu prints it (/proc/cpuinfo's first "model name")."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def hardware_isa() -> str:
    """The widest SIMD the CPU has: ``avx512`` (F, DQ, BW, VL), ``avx2`` (with FMA) or other."""
    flags = cpu_flags()
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "sse"


def openblas_cores() -> str:
    """The kernel family each loaded OpenBLAS picked (e.g. ``Haswell`` = AVX2 kernels), best effort.

    OpenBLAS reads ``OPENBLAS_CORETYPE`` at load time (else detects the CPU).
    """
    names = []
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return "unknown"
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                names.append(f"{Path(path).name}: {fn().decode()}")
                break
    return ", ".join(names) or "unknown"


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (a busy machine disturbs the timings)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def command_line(argv: list | None = None) -> str:
    keep = ("PYTHONPATH", "OMP_NUM_THREADS")
    prefix = "".join(f"{k}={shlex.quote(os.environ[k])} " for k in keep if k in os.environ)
    return prefix + shlex.join(["python", *(sys.argv if argv is None else argv)])


# --------------------------------------------------------------------------------------------
# bench/RESULTS.md: sections between markers, so each run replaces only its own.


def write_section(path: Path, name: str, text: str, title: str = "") -> None:
    """Replaces (or appends) the section ``name`` of ``path`` with ``text``."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    old = path.read_text(encoding="utf-8") if path.exists() else (title or "") + "\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    new = (
        pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new.rstrip() + "\n", encoding="utf-8")
