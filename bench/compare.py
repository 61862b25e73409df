"""Times fastrnn's fused CPU kernels against PyTorch's nn.RNN / nn.LSTM / nn.GRU on CPU.

Both run in this process, float32, with the same thread count, interleaved call by call (with a
short pause before each sample so that neither is timed against the other's spinning OpenMP
threads); each row reports the median of its samples after a warm-up. Before a shape/cell is
timed, the two are checked to compute the same thing (same weights, mapped to PyTorch's
layout): outputs, final states and, where fwd+bwd is timed, every gradient; a mismatch aborts
the run.

Flops: ``2*T*B*G*H*(I+H)`` per forward and twice that per backward. GFLOP/s are set against the
machine's float32 GEMM peak measured in the same run (the best of NumPy's and PyTorch's 2048^3
matmul medians).

Usage (from the repository root)::

    PYTHONPATH=python python bench/compare.py --quick                     # smoke run
    PYTHONPATH=python python bench/compare.py --output bench/RESULTS.md   # full run
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
    params = dict(module.named_parameters())
    g = {name: params[name].grad.numpy() for name in params}
    units = shape.H
    if cell.op == "gru":
        dkernel = _gru_swap(g["weight_ih_l0"].T, units)
        drecurrent = _gru_swap(g["weight_hh_l0"].T, units)
        dbias = np.stack([_gru_swap(g["bias_ih_l0"], units), _gru_swap(g["bias_hh_l0"], units)])
    else:
        dkernel, drecurrent, dbias = g["weight_ih_l0"].T, g["weight_hh_l0"].T, g["bias_ih_l0"]
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


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads for both")
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument("--output", type=Path, help="write a markdown report here")
    parser.add_argument("--gpu", action="store_true", help="time the CUDA backend")
    args = parser.parse_args(argv)
    if args.gpu:
        print("--gpu: not implemented in this build", file=sys.stderr)
        return 2
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
