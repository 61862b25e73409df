"""Times fastrnn's fused kernels against PyTorch's nn.RNN / nn.LSTM / nn.GRU (CPU; ``--gpu``: CUDA).

Both run in this process, float32, with the same thread count, interleaved call by call (with a
short pause before each sample so that neither is timed against the other's spinning OpenMP
threads); each row reports the median of its samples after a warm-up. Before a shape/cell is
timed, the two are checked to compute the same thing (same weights, mapped to PyTorch's
layout): outputs, final states and, where fwd+bwd is timed, every gradient; a mismatch aborts
the run.

Flops: ``2*T*B*G*H*(I+H)`` per forward and twice that per backward. GFLOP/s are set against the
machine's float32 GEMM peak measured in the same run (the best of NumPy's and PyTorch's 2048^3
matmul medians).

With ``--gpu`` it times fastrnn's CUDA path against PyTorch's cuDNN instead, on CuPy arrays that
PyTorch sees through DLPack, both on PyTorch's current stream, with CUDA events: the issue's grid
(H 256/512/1024/2048, B 1/4/16/64/128, T 50/100, I = H), inference and fwd+bwd, each H/B/T/cell
checked first like the CPU rows; TF32 is off. It needs CuPy, a CUDA PyTorch and ``fastrnn._cuda``
(else it says which is missing and exits 2); ``bench/gpu_session.sh`` builds and runs it on a GPU
machine.

Usage (from the repository root)::

    PYTHONPATH=python python bench/compare.py --quick                     # smoke run
    PYTHONPATH=python python bench/compare.py --output bench/RESULTS.md   # full run
    PYTHONPATH=python python bench/compare.py --gpu        # GPU run -> bench/RESULTS_GPU.md
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

DEFAULT_THREADS = 2
NOTES = Path(__file__).with_name("notes.md")  # the analysis, kept apart so reruns keep it


def _threads_from_argv(argv: list) -> int:
    """The ``--threads`` value, read before NumPy is imported (its BLAS reads the environment)."""
    for k, arg in enumerate(argv):
        if arg == "--threads" and k + 1 < len(argv):
            return int(argv[k + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return DEFAULT_THREADS


if __name__ == "__main__":
    # NumPy's OpenBLAS has no thread-count API: size its pool (used for the GEMM peak) here.
    _n = str(_threads_from_argv(sys.argv[1:]))
    for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[_var] = _n

import fastrnn  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _load_sibling(name: str):
    """Imports ``bench/<name>.py`` under a private name (``tests/shapes.py`` owns ``shapes``)."""
    module_name = f"_fastrnn_bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, Path(__file__).with_name(f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


shapes = _load_sibling("shapes")
INFERENCE, FWD_BWD = shapes.INFERENCE, shapes.FWD_BWD

SEED = 20240611
OUTPUT_RTOL = 1e-4  # max |fastrnn - torch| / max |torch|, outputs and final states
GRAD_RTOL = 1e-3  # the same for gradients (BPTT sums over T steps)
GEMM_N = 2048


# --------------------------------------------------------------------------------------------
# Problems: Keras-layout weights for fastrnn, the same weights in a torch module.


def set_threads(n: int) -> None:
    """Gives fastrnn and PyTorch the same thread count."""
    fastrnn.set_num_threads(n)
    torch.set_num_threads(n)


def make_problem(shape, cell, seed: int = SEED) -> dict:
    """Random float32 inputs and Keras-layout weights (PyTorch's default init scale)."""
    rng = np.random.default_rng(seed)
    T, B, I, H, G = shape.T, shape.B, shape.I, shape.H, cell.gates  # noqa: E741
    scale = 1.0 / math.sqrt(H)

    def uniform(*dims):
        return rng.uniform(-scale, scale, size=dims).astype(np.float32)

    bias_shape = (2, G * H) if cell.op == "gru" else (G * H,)
    return {
        "x": rng.standard_normal((T, B, I)).astype(np.float32),
        "dy": rng.standard_normal((T, B, H)).astype(np.float32),
        "kernel": uniform(I, G * H),
        "recurrent_kernel": uniform(H, G * H),
        "bias": uniform(*bias_shape),
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


def _fastrnn_ops(cell):
    forward = getattr(fastrnn.ops, f"{cell.op}_forward")
    backward = getattr(fastrnn.ops, f"{cell.op}_backward")
    extra = {"reset_after": True} if cell.op == "gru" else {}
    return forward, backward, extra


def build_callables(case, problem: dict | None = None) -> dict:
    """``{"fastrnn": fn, "torch": fn}``: zero-argument calls that each time one row's work."""
    shape, cell, mode = case.shape, case.cell, case.mode
    p = make_problem(shape, cell) if problem is None else problem
    forward, backward, extra = _fastrnn_ops(cell)
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


def _rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


def check_agreement(shape, cell, with_grads: bool) -> list:
    """``[(name, relative error, tolerance), ...]`` for fastrnn versus torch on one problem."""
    p = make_problem(shape, cell)
    forward, backward, extra = _fastrnn_ops(cell)
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
        ("outputs (torch inference_mode)", _rel_err(outputs, out_inference.numpy()), OUTPUT_RTOL),
        ("outputs", _rel_err(outputs, out_t.detach().numpy()), OUTPUT_RTOL),
    ]
    for k, (ours, theirs) in enumerate(zip(states, torch_states)):
        results.append(
            (f"final_state[{k}]", _rel_err(ours, theirs[0].detach().numpy()), OUTPUT_RTOL)
        )
    if not with_grads:
        return results

    grads = backward(ctx, p["dy"])
    (out_t * torch.from_numpy(p["dy"])).sum().backward()
    dkernel, drecurrent, dbias = keras_layout_grads(cell, module, shape.H)
    results += [
        ("dx", _rel_err(grads.dx, x_t.grad.numpy()), GRAD_RTOL),
        ("dkernel", _rel_err(grads.dkernel, dkernel), GRAD_RTOL),
        ("drecurrent_kernel", _rel_err(grads.drecurrent_kernel, drecurrent), GRAD_RTOL),
        ("dbias", _rel_err(grads.dbias, dbias), GRAD_RTOL),
    ]
    return results


# --------------------------------------------------------------------------------------------
# Timing.


class Timing:
    """Sampling plan: warm-up calls, then samples until ``budget_s`` (within the bounds)."""

    def __init__(self, quick: bool):
        self.warmup = 1 if quick else 3
        self.budget_s = 0.3 if quick else 10.0
        self.min_samples = 3 if quick else 9
        self.max_samples = 15 if quick else 100
        self.min_sample_s = 1e-3  # calls shorter than this are repeated inside one sample
        # fastrnn and torch each bring an OpenMP runtime whose idle threads spin for a few ms
        # after a call; on 2 cores they would steal the other's cores. Each sample starts
        # after this pause, so neither is timed against the other's spinning threads.
        self.settle_s = 0.002  # longer idle lets this VM clock down: both sides slow down


def time_interleaved(fns: list, plan: Timing) -> tuple:
    """Median seconds per call of each of ``fns``, sampled alternately; returns (medians, n)."""
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
    numbers = [max(1, math.ceil(plan.min_sample_s / est)) for est in estimates]
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
                time.sleep(plan.settle_s)
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                samples[i].append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [statistics.median(s) for s in samples], rounds


def gemm_peak(quick: bool) -> dict:
    """Median GFLOP/s of a float32 ``GEMM_N``^3 matmul through NumPy and through PyTorch."""
    rng = np.random.default_rng(SEED)
    a = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    b = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    out = np.empty_like(a)
    a_t, b_t, out_t = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out.copy())
    fns = [lambda: np.matmul(a, b, out=out), lambda: torch.mm(a_t, b_t, out=out_t)]
    plan = Timing(quick)
    plan.budget_s, plan.max_samples = (0.5, 5) if quick else (4.0, 40)
    (t_np, t_torch), _ = time_interleaved(fns, plan)
    flops = 2 * GEMM_N**3
    return {"numpy": flops / t_np / 1e9, "torch": flops / t_torch / 1e9}


# --------------------------------------------------------------------------------------------
# Report.


def targets(case, ratio: float, peak_pct: float) -> list:
    """``[(label, met), ...]``: the project's performance targets that apply to this row."""
    result = [(">torch", ratio > 1.0)]
    if case.shape.name in ("latency", "tiny"):
        result.append(("≥2×", ratio >= 2.0))
    if case.mode == FWD_BWD and case.shape.name in ("medium", "wide"):
        result.append(("≥75% peak", peak_pct >= 75.0))
    return result


def machine_info(threads: int) -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": model,
        "cores": f"{os.cpu_count()} logical, {usable} usable; {threads} threads used",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "fastrnn": fastrnn.__version__,
        "isa": fastrnn._cpu.get_isa(),
        "openblas": openblas_cores(),
        "coretype_env": os.environ.get("OPENBLAS_CORETYPE", "unset"),
    }


def openblas_cores() -> str:
    """The kernel family each loaded OpenBLAS picked (e.g. ``Haswell`` = AVX2 kernels), best effort.

    OpenBLAS reads ``OPENBLAS_CORETYPE`` at load time (else detects the CPU); an AVX2 family on an
    AVX-512 CPU caps the GEMM peak measured here, and fastrnn's own OpenBLAS calls.
    """
    import ctypes

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


def command_line() -> str:
    prefix = (
        f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " if "PYTHONPATH" in os.environ else ""
    )
    return prefix + shlex.join(["python", *sys.argv])


HEADER = (
    "| shape | cell | mode | fastrnn ms | torch ms | ratio | fastrnn GFLOP/s | torch GFLOP/s "
    "| % of GEMM peak | target |"
)


def table_row(row: dict) -> str:
    case = row["case"]
    verdict = "; ".join(f"{label} {'met' if ok else 'MISSED'}" for label, ok in row["targets"])
    return (
        f"| {case.shape.label} | {case.cell.name} | {case.mode} | {row['fastrnn_ms']:.3f} "
        f"| {row['torch_ms']:.3f} | {row['ratio']:.2f}× | {row['fastrnn_gflops']:.1f} "
        f"| {row['torch_gflops']:.1f} | {row['peak_pct']:.1f}% | {verdict} |"
    )


def render_markdown(info: dict, peak: dict, rows: list, agreement: float, args) -> str:
    first, end_value = max(peak["start"].values()), max(peak["end"].values())
    peak_value = max(first, end_value)
    met = sum(ok for row in rows for _, ok in row["targets"])
    total = sum(len(row["targets"]) for row in rows)
    lines = [
        "# fastrnn CPU benchmark: fastrnn vs PyTorch",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- Command: `{command_line()}`",
        f"- CPU: {info['cpu']} ({info['cores']})",
        f"- fastrnn {info['fastrnn']} (ISA `{info['isa']}`), NumPy {info['numpy']}, "
        f"PyTorch {info['torch']}, Python {info['python']}",
        f"- OpenBLAS kernels in use: {info['openblas']} "
        f"(`OPENBLAS_CORETYPE`: {info['coretype_env']})",
        f"- float32 GEMM peak: {peak_value:.1f} GFLOP/s, the best median of a {GEMM_N}³ matmul "
        f"through NumPy and PyTorch, before the rows (NumPy {peak['start']['numpy']:.1f}, "
        f"PyTorch {peak['start']['torch']:.1f}) and after them (NumPy {peak['end']['numpy']:.1f}, "
        f"PyTorch {peak['end']['torch']:.1f})",
        f"- Load average (1, 5, 15 min) at start: {peak['load_start']}; at end: {peak['load_end']}",
        f"- Agreement check (fastrnn vs torch on shared weights, every shape/cell): max relative "
        f"difference {agreement:.2e} (outputs tolerance {OUTPUT_RTOL:g}, gradients {GRAD_RTOL:g})",
        f"- Timing: {'quick smoke run, ' if args.quick else ''}float32, same process, "
        "calls interleaved, median of samples after warm-up (`time.perf_counter`); torch "
        "inference under `torch.inference_mode()`, torch fwd+bwd is forward + backward of "
        "`(out * dy).sum()` with grads on input and weights; fastrnn fwd+bwd is "
        "`forward(training=True)` + `backward(ctx, dy)`",
        "- Flops: forward `2*T*B*G*H*(I+H)`, backward twice that; ratio = torch ms / fastrnn ms "
        "(>1: fastrnn faster); % of GEMM peak is fastrnn's GFLOP/s over the peak",
        "- Targets: faster than PyTorch on every row (>torch); ≥2× on latency and tiny (≥2×); "
        "fwd+bwd at medium and wide ≥75% of the measured GEMM peak (≥75% peak)",
        "",
        "## Results",
        "",
        HEADER,
        "|" + "---|" * 10,
        *(table_row(row) for row in rows),
        "",
        f"Targets met: {met} of {total}.",
        "",
        "## Notes",
        "",
        NOTES.read_text().strip() if NOTES.exists() else "(bench/notes.md is missing)",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# GPU (--gpu): fastrnn's CUDA path against PyTorch's cuDNN, on the same device memory.

GPU_GEMM_N = 4096
GPU_DEFAULT_OUTPUT = Path(__file__).with_name("RESULTS_GPU.md")


def gpu_shapes(quick: bool) -> list:
    """The GPU grid: every (H, B, T) of the issue, input = hidden; ``quick`` keeps a few points."""
    points = (
        shapes.GPU_QUICK
        if quick
        else [
            (T, B, H) for H in shapes.GPU_HIDDEN for B in shapes.GPU_BATCH for T in shapes.GPU_STEPS
        ]
    )
    return [shapes.Shape("gpu", T, B, H, H, (INFERENCE, FWD_BWD)) for T, B, H in points]


class GpuTiming:
    """Sampling plan of the GPU rows: warm-up calls, then samples until ``budget_s``."""

    def __init__(self, quick: bool):
        self.warmup = 2 if quick else 3
        self.budget_s = 0.2 if quick else 1.0  # per row, both sides together
        self.min_samples = 5 if quick else 10
        self.max_samples = 10 if quick else 50


def import_gpu():
    """``(cupy, None)`` when the CUDA comparison can run here, else ``(None, the reason)``."""
    try:
        import cupy
    except ImportError as e:
        return None, f"CuPy does not import ({e})"
    if not torch.cuda.is_available():
        return None, f"torch.cuda is not available (PyTorch {torch.__version__}: no GPU or no CUDA)"
    if not torch.backends.cudnn.is_available():
        return None, "PyTorch's cuDNN is not available"
    from fastrnn import _backend

    status = _backend.cuda_status()
    if status != "ok":
        return None, f"fastrnn's CUDA backend is not usable: {status}"
    return cupy, None


def set_torch_gpu_precision() -> str:
    """cuDNN on, TF32 off (fastrnn computes in plain float32); returns the setting, in words.

    PyTorch >= 2.9 has per-backend ``fp32_precision`` flags and refuses a mix of them with the
    legacy ``allow_tf32`` ones, so only one API is used, and cuDNN's conv and RNN flags are set
    alike (PyTorch raises when they differ and a call asks without naming the operator).
    """
    torch.backends.cudnn.enabled = True
    cudnn = torch.backends.cudnn
    flags = [
        getattr(cudnn, "rnn", None),
        getattr(cudnn, "conv", None),
        cudnn,
        torch.backends.cuda.matmul,
    ]
    if hasattr(flags[0], "fp32_precision"):
        for flag in flags:
            if flag is not None and hasattr(flag, "fp32_precision"):
                flag.fp32_precision = "ieee"
        return (
            f"cudnn.rnn.fp32_precision={cudnn.rnn.fp32_precision}, "
            f"cuda.matmul.fp32_precision={torch.backends.cuda.matmul.fp32_precision}"
        )
    cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return "cudnn.allow_tf32=False, cuda.matmul.allow_tf32=False"


def _to_host(a) -> np.ndarray:
    """A NumPy copy of a torch tensor or CuPy array (either side of the comparison)."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return a.get() if hasattr(a, "get") else np.asarray(a)


def make_gpu_problem(shape, cell, cp) -> dict:
    """``make_problem``'s arrays on the GPU as CuPy arrays, seen by torch through DLPack (no copy),
    and the torch module on the GPU holding the same weights (in its own layout)."""
    host = make_problem(shape, cell)
    dev = {name: cp.asarray(value) for name, value in host.items()}
    return {
        "dev": dev,
        "module": make_torch_module(shape, cell, host).to("cuda"),
        "x_t": torch.from_dlpack(dev["x"]),
        "dy_t": torch.from_dlpack(dev["dy"]),
    }


def _torch_states(cell, state) -> list:
    return list(state) if cell.op == "lstm" else [state]


def check_agreement_gpu(shape, cell, gp: dict) -> list:
    """``[(name, relative error, tolerance), ...]``: fastrnn's CUDA path versus cuDNN, on the
    arrays the rows time: inference and training outputs, final states and every gradient."""
    forward, backward, extra = _fastrnn_ops(cell)
    d, module = gp["dev"], gp["module"]
    weights = (d["kernel"], d["recurrent_kernel"], d["bias"])
    out_inf, states_inf, _ = forward(d["x"], *weights, training=False, **extra)
    out_tr, states_tr, ctx = forward(d["x"], *weights, training=True, **extra)
    grads = backward(ctx, d["dy"])
    with torch.inference_mode():
        t_out_inf, t_state_inf = module(gp["x_t"])
    x_g = torch.from_dlpack(d["x"]).requires_grad_(True)
    module.zero_grad(set_to_none=True)
    t_out, t_state = module(x_g)
    t_out.backward(gp["dy_t"])

    def err(ours, theirs):
        return _rel_err(_to_host(ours), _to_host(theirs))

    results = [
        ("outputs, inference", err(out_inf, t_out_inf), OUTPUT_RTOL),
        ("outputs, training", err(out_tr, t_out), OUTPUT_RTOL),
    ]
    for label, ours, theirs in (
        ("inference", states_inf, _torch_states(cell, t_state_inf)),
        ("training", states_tr, _torch_states(cell, t_state)),
    ):
        for k, (a, b) in enumerate(zip(ours, theirs)):
            results.append((f"final_state[{k}], {label}", err(a, b[0]), OUTPUT_RTOL))
    dkernel, drecurrent, dbias = keras_layout_grads(cell, module, shape.H)
    results += [
        ("dx", err(grads.dx, x_g.grad), GRAD_RTOL),
        ("dkernel", err(grads.dkernel, dkernel), GRAD_RTOL),
        ("drecurrent_kernel", err(grads.drecurrent_kernel, drecurrent), GRAD_RTOL),
        ("dbias", err(grads.dbias, dbias), GRAD_RTOL),
    ]
    module.zero_grad(set_to_none=True)
    return results


def build_gpu_callables(cell, mode: str, gp: dict) -> list:
    """``[fastrnn, torch]``: zero-argument calls that each enqueue one row's work on the stream."""
    forward, backward, extra = _fastrnn_ops(cell)
    d, module, dy_t = gp["dev"], gp["module"], gp["dy_t"]
    x, dy, weights = d["x"], d["dy"], (d["kernel"], d["recurrent_kernel"], d["bias"])
    if mode == INFERENCE:
        x_t = gp["x_t"]

        def run_fastrnn():
            return forward(x, *weights, training=False, **extra)

        def run_torch():
            with torch.inference_mode():
                return module(x_t)

        return [run_fastrnn, run_torch]

    x_g = torch.from_dlpack(x).requires_grad_(True)

    def run_fastrnn():
        _, _, ctx = forward(x, *weights, training=True, **extra)
        return backward(ctx, dy)

    def run_torch():
        x_g.grad = None
        module.zero_grad(set_to_none=True)
        out, _ = module(x_g)
        out.backward(dy_t)

    return [run_fastrnn, run_torch]


class _EventTimer:
    """Seconds of one call between two CUDA events on torch's current stream, starting idle."""

    def __init__(self):
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn) -> float:
        self.start.record()
        fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3


def time_gpu_interleaved(fns: list, plan: GpuTiming) -> tuple:
    """Median seconds per call of each of ``fns``, sampled alternately; returns (medians, n)."""
    timer = _EventTimer()
    for _ in range(plan.warmup - 1):
        for fn in fns:
            fn()
    torch.cuda.synchronize()
    per_round = max(sum(timer(fn) for fn in fns), 1e-9)  # the last warm-up call, timed
    rounds = min(plan.max_samples, max(plan.min_samples, math.ceil(plan.budget_s / per_round)))
    samples = [[] for _ in fns]
    order = list(range(len(fns)))
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for i in order if r % 2 == 0 else order[::-1]:
                samples[i].append(timer(fns[i]))
    finally:
        if gc_was_enabled:
            gc.enable()
    return [statistics.median(s) for s in samples], rounds


def gpu_gemm_peak(quick: bool) -> float:
    """Median GFLOP/s of a float32 ``GPU_GEMM_N``^3 ``torch.mm`` (TF32 off), CUDA events."""
    gen = torch.Generator(device="cuda").manual_seed(SEED)
    n = GPU_GEMM_N
    a = torch.randn(n, n, device="cuda", generator=gen)
    b = torch.randn(n, n, device="cuda", generator=gen)
    out = torch.empty(n, n, device="cuda")
    plan = GpuTiming(quick)
    plan.budget_s, plan.max_samples = (0.2, 5) if quick else (1.0, 20)
    (t,), _ = time_gpu_interleaved([lambda: torch.mm(a, b, out=out)], plan)
    return 2 * n**3 / t / 1e9


def gpu_targets(shape, ratio: float) -> list:
    """``[(label, met), ...]``: the issue's GPU targets that apply to this row."""
    result = []
    if shape.B <= 16:
        result.append((">cuDNN", ratio > 1.0))
    if shape.B <= 4 and shape.H <= 1024:
        result.append(("≥2×", ratio >= 2.0))
    if shape.B >= 64:
        result.append(("within 10%", ratio >= 1.0 / 1.1))  # fastrnn ms <= 1.1 x cuDNN ms
    return result


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def _cudnn_version(v) -> str:
    if not v:
        return "unknown"
    major, minor, patch = (
        (v // 10000, v % 10000 // 100, v % 100)
        if v >= 90000
        else (v // 1000, v % 1000 // 100, v % 100)
    )
    return f"{major}.{minor}.{patch}"


def _nvidia_smi_driver() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def gpu_info(cp) -> dict:
    import importlib

    ext = importlib.import_module("fastrnn._cuda")
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "gpu": torch.cuda.get_device_name(),
        "sms": props.multi_processor_count,
        "memory_gib": props.total_memory / 2**30,
        "driver": _nvidia_smi_driver(),
        "driver_cuda": _cuda_version(cp.cuda.runtime.driverGetVersion()),
        "torch_cuda": torch.version.cuda,
        "cudnn": _cudnn_version(torch.backends.cudnn.version()),
        "cupy": cp.__version__,
        "cupy_cuda": _cuda_version(cp.cuda.runtime.runtimeGetVersion()),
        "fastrnn_cuda": _cuda_version(ext.runtime_version()),
        "torch": torch.__version__,
        "fastrnn": fastrnn.__version__,
        "python": platform.python_version(),
    }


GPU_HEADER = (
    "| H | B | T | cell | mode | fastrnn ms | cuDNN ms | ratio | fastrnn GFLOP/s | cuDNN GFLOP/s "
    "| % of GEMM peak | samples | target |"
)


def gpu_table_row(row: dict) -> str:
    case = row["case"]
    shape = case.shape
    verdict = "; ".join(f"{label} {'met' if ok else 'MISSED'}" for label, ok in row["targets"])
    return (
        f"| {shape.H} | {shape.B} | {shape.T} | {case.cell.name} | {case.mode} "
        f"| {row['fastrnn_ms']:.3f} | {row['torch_ms']:.3f} | {row['ratio']:.2f}× "
        f"| {row['fastrnn_gflops']:.0f} | {row['torch_gflops']:.0f} | {row['peak_pct']:.1f}% "
        f"| {row['samples']} | {verdict or '—'} |"
    )


def render_gpu_markdown(info: dict, run: dict, rows: list, args) -> str:
    counts = {}
    for row in rows:
        for label, ok in row["targets"]:
            met, total = counts.get(label, (0, 0))
            counts[label] = (met + ok, total + 1)
    summary = ", ".join(f"{label} {met}/{total}" for label, (met, total) in counts.items())
    met = sum(m for m, _ in counts.values())
    total = sum(t for _, t in counts.values())
    lines = [
        "# fastrnn GPU benchmark: fastrnn CUDA vs PyTorch cuDNN",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
        f"the run took {run['elapsed_s']:.0f} s",
        f"- Command: `{command_line()}`",
        f"- GPU: {info['gpu']} ({info['sms']} SMs, {info['memory_gib']:.0f} GiB); driver "
        f"{info['driver']} (CUDA {info['driver_cuda']})",
        f"- CUDA runtimes: fastrnn._cuda {info['fastrnn_cuda']}, PyTorch {info['torch_cuda']} "
        f"(cuDNN {info['cudnn']}), CuPy {info['cupy_cuda']}",
        f"- fastrnn {info['fastrnn']}, PyTorch {info['torch']}, CuPy {info['cupy']}, "
        f"Python {info['python']}",
        f"- float32 throughout; PyTorch precision: {run['precision']} (no TF32: fastrnn computes "
        "in IEEE float32, and the agreement check holds both to float32 tolerances)",
        f"- float32 GEMM peak: {run['peak']:.0f} GFLOP/s, the median of a {GPU_GEMM_N}³ "
        "`torch.mm` (TF32 off) before the rows",
        f"- Agreement check (before each H/B/T/cell is timed: inference and training outputs, "
        f"final states and every gradient, fastrnn vs cuDNN on shared weights): max relative "
        f"difference {run['worst']:.2e} (outputs tolerance {OUTPUT_RTOL:g}, gradients "
        f"{GRAD_RTOL:g})",
        f"- Timing: {'quick smoke run, ' if args.quick else ''}inputs are CuPy arrays that "
        "PyTorch sees through DLPack (`torch.from_dlpack`, same memory); both run on PyTorch's "
        "current stream (fastrnn under `cupy.cuda.ExternalStream`); each sample is one call "
        "between two CUDA events, started on an idle GPU (so host launch overhead counts, as a "
        "caller sees it); calls interleaved, median of the samples after warm-up; torch "
        "inference under `torch.inference_mode()`; torch fwd+bwd is `module(x)` + "
        "`out.backward(dy)` with grads on input and weights; fastrnn fwd+bwd is "
        "`forward(training=True)` + `backward(ctx, dy)`; GRU with `reset_after=True` "
        "(cuDNN's formulation)",
        "- Flops: forward `2*T*B*G*H*(I+H)`, backward twice that, I = H; ratio = cuDNN ms / "
        "fastrnn ms (>1: fastrnn faster); % of GEMM peak is fastrnn's GFLOP/s over the peak",
        "- Targets: faster than cuDNN at B ≤ 16 (>cuDNN); ≥2× at B 1–4 with H ≤ 1024 (≥2×); "
        "within 10% of cuDNN or faster at B ≥ 64, i.e. fastrnn ms ≤ 1.1 × cuDNN ms "
        "(within 10%)",
        "",
        "## Results",
        "",
        GPU_HEADER,
        "|" + "---|" * 13,
        *(gpu_table_row(row) for row in rows),
        "",
        f"Targets met: {met} of {total} ({summary}).",
        "",
    ]
    return "\n".join(lines)


def run_gpu(args) -> int:
    """The ``--gpu`` run: agreement check, then timed rows, then the markdown report."""
    cp, reason = import_gpu()
    if cp is None:
        print(f"--gpu: cannot run the GPU comparison: {reason}", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    output = args.output if args.output is not None else GPU_DEFAULT_OUTPUT
    run = {"precision": set_torch_gpu_precision(), "worst": 0.0}
    info = gpu_info(cp)
    print(
        f"GPU {info['gpu']}; driver {info['driver']}; fastrnn._cuda CUDA {info['fastrnn_cuda']}, "
        f"PyTorch CUDA {info['torch_cuda']}, cuDNN {info['cudnn']}; {run['precision']}",
        flush=True,
    )
    plan, rows = GpuTiming(args.quick), []
    # fastrnn enqueues on CuPy's current stream: make it torch's, so the events time both.
    with cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):
        run["peak"] = gpu_gemm_peak(args.quick)
        print(f"float32 GEMM peak {run['peak']:.0f} GFLOP/s", flush=True)
        print(GPU_HEADER, flush=True)
        for shape in gpu_shapes(args.quick):
            for cell in shapes.CELLS:
                gp = make_gpu_problem(shape, cell, cp)
                for name, err, tol in check_agreement_gpu(shape, cell, gp):
                    run["worst"] = max(run["worst"], err)
                    if not err <= tol:
                        print(
                            f"MISMATCH T{shape.T} B{shape.B} H{shape.H} {cell.name}: {name} "
                            f"relative difference {err:.3e} > {tol:g}; the comparison is not "
                            "like-for-like",
                            file=sys.stderr,
                        )
                        return 1
                for mode in shape.modes:
                    case = shapes.Case(shape, cell, mode)
                    (t_fast, t_torch), n = time_gpu_interleaved(
                        build_gpu_callables(cell, mode, gp), plan
                    )
                    gflop = shapes.case_flops(case) / 1e9
                    row = {
                        "case": case,
                        "fastrnn_ms": t_fast * 1e3,
                        "torch_ms": t_torch * 1e3,
                        "ratio": t_torch / t_fast,
                        "fastrnn_gflops": gflop / t_fast,
                        "torch_gflops": gflop / t_torch,
                        "peak_pct": 100.0 * gflop / t_fast / run["peak"],
                        "samples": n,
                    }
                    row["targets"] = gpu_targets(shape, row["ratio"])
                    rows.append(row)
                    print(gpu_table_row(row), flush=True)
                del gp
                torch.cuda.synchronize()
                cp.get_default_memory_pool().free_all_blocks()
                torch.cuda.empty_cache()
    run["elapsed_s"] = time.perf_counter() - t_start
    met = sum(ok for row in rows for _, ok in row["targets"])
    total = sum(len(row["targets"]) for row in rows)
    print(
        f"Targets met: {met} of {total}. Max fastrnn/cuDNN relative difference "
        f"{run['worst']:.2e}. {run['elapsed_s']:.0f} s."
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_gpu_markdown(info, run, rows, args), encoding="utf-8")
    print(f"wrote {output}")
    return 0


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads for both")
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument(
        "--output",
        type=Path,
        help="write a markdown report here (with --gpu: default bench/RESULTS_GPU.md)",
    )
    parser.add_argument(
        "--gpu", action="store_true", help="time fastrnn's CUDA path against PyTorch's cuDNN"
    )
    args = parser.parse_args(argv)
    if args.gpu:
        return run_gpu(args)
    if args.threads < 1:
        parser.error("--threads must be at least 1")

    set_threads(args.threads)
    info = machine_info(args.threads)
    print(f"CPU {info['cpu']} ({info['cores']}); fastrnn ISA {info['isa']}", flush=True)
    peak = {"load_start": load_average(), "start": gemm_peak(args.quick)}
    peak_value = max(peak["start"].values())
    print(
        f"load average {peak['load_start']}; GEMM peak {peak_value:.1f} GFLOP/s "
        f"(numpy {peak['start']['numpy']:.1f}, torch {peak['start']['torch']:.1f})",
        flush=True,
    )

    plan = Timing(args.quick)
    rows, checked, worst = [], set(), 0.0
    print(HEADER, flush=True)
    for case in shapes.CASES:
        key = (case.shape.name, case.cell.name)
        if key not in checked:
            checked.add(key)
            with_grads = FWD_BWD in case.shape.modes
            for name, err, tol in check_agreement(case.shape, case.cell, with_grads):
                worst = max(worst, err)
                if not err <= tol:
                    print(
                        f"MISMATCH {case.shape.label} {case.cell.name}: {name} relative "
                        f"difference {err:.3e} > {tol:g}; the comparison is not like-for-like",
                        file=sys.stderr,
                    )
                    return 1
        fns = build_callables(case)
        (t_fast, t_torch), _ = time_interleaved([fns["fastrnn"], fns["torch"]], plan)
        gflop = shapes.case_flops(case) / 1e9
        row = {
            "case": case,
            "fastrnn_ms": t_fast * 1e3,
            "torch_ms": t_torch * 1e3,
            "ratio": t_torch / t_fast,
            "fastrnn_gflops": gflop / t_fast,
            "torch_gflops": gflop / t_torch,
            "peak_pct": 100.0 * gflop / t_fast / peak_value,
        }
        row["targets"] = targets(case, row["ratio"], row["peak_pct"])
        rows.append(row)
        print(table_row(row), flush=True)
        del fns

    peak["end"] = gemm_peak(args.quick)
    peak["load_end"] = load_average()
    end_value = max(peak["end"].values())
    print(
        f"GEMM after the rows {end_value:.1f} GFLOP/s ({100 * end_value / peak_value:.0f}% of the "
        f"first); load average {peak['load_end']}"
    )
    if end_value < 0.9 * peak_value:
        print("warning: the GEMM rate fell by over 10%: the machine was likely busy")
    if end_value > peak_value:  # the peak is the best rate seen: restate the rows against it
        peak_value = end_value
        for row in rows:
            row["peak_pct"] = row["fastrnn_gflops"] / peak_value * 100.0
            row["targets"] = targets(row["case"], row["ratio"], row["peak_pct"])
        print(f"Rows against the final peak {peak_value:.1f} GFLOP/s:")
        print(HEADER)
        for row in rows:
            print(table_row(row))
    met = sum(ok for row in rows for _, ok in row["targets"])
    total = sum(len(row["targets"]) for row in rows)
    print(f"Targets met: {met} of {total}. Max fastrnn/torch relative difference {worst:.2e}.")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(render_markdown(info, peak, rows, worst, args), encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
