"""Times fastrnn's CUDA path against PyTorch's cuDNN on the same device memory.

Inputs are CuPy arrays that PyTorch sees through DLPack; both run on PyTorch's current stream;
each sample is one call between two CUDA events, started on an idle GPU; the issue's grid (H
256/512/1024/2048, B 1/4/16/64/128, T 50/100, I = H), inference and fwd+bwd, each H/B/T/cell
checked first like the CPU rows (bench/compare.py); TF32 is off on both sides. Every row gives
the total and the microseconds per time step of each side, the path fastrnn took (persistent or
standard, from ``fastrnn._cuda.plan``) and the issue's targets that apply to it.

Rows are written as they are measured: each run appends one section (its machine facts, then
its rows one by one, then its summary) to the output, so a run cut off at a time limit still
leaves every row it finished. ``--hidden 256`` (etc.) runs one slice of the grid; without
``--append`` the output file is started afresh. It needs CuPy, a CUDA PyTorch and
``fastrnn._cuda`` (else it says which is missing and exits 2); ``--stub`` needs none of them
and writes clearly marked fake rows through the same code (for bench/gpu_session.sh --stub).

Usage (from the repository root)::

    PYTHONPATH=python python bench/compare_gpu.py --quick
    PYTHONPATH=python python bench/compare_gpu.py --hidden 256 --append \
        --output bench/RESULTS_GPU.md
"""

from __future__ import annotations

import argparse
import datetime
import gc
import math
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import benchlib as bl  # noqa: E402
import fastrnn  # noqa: E402
import numpy as np  # noqa: E402
import shapes  # noqa: E402
import torch  # noqa: E402
from shapes import FWD_BWD, INFERENCE  # noqa: E402

GPU_GEMM_N = 4096
GPU_DEFAULT_OUTPUT = Path(__file__).with_name("RESULTS_GPU.md")


def gpu_shapes(quick: bool, hidden=None, batch=None, steps=None) -> list:
    """The GPU grid: every (H, B, T) of the issue, input = hidden; ``quick`` keeps a few points;
    ``hidden``, ``batch`` and ``steps`` (lists, or None for all) keep a slice."""
    points = (
        shapes.GPU_QUICK
        if quick
        else [
            (T, B, H) for H in shapes.GPU_HIDDEN for B in shapes.GPU_BATCH for T in shapes.GPU_STEPS
        ]
    )
    points = [
        (T, B, H)
        for T, B, H in points
        if (not hidden or H in hidden) and (not batch or B in batch) and (not steps or T in steps)
    ]
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
    host = bl.make_problem(shape, cell)
    dev = {name: cp.asarray(value) for name, value in host.items()}
    return {
        "dev": dev,
        "module": bl.make_torch_module(shape, cell, host).to("cuda"),
        "x_t": torch.from_dlpack(dev["x"]),
        "dy_t": torch.from_dlpack(dev["dy"]),
    }


def _torch_states(cell, state) -> list:
    return list(state) if cell.op == "lstm" else [state]


def check_agreement_gpu(shape, cell, gp: dict) -> list:
    """``[(name, relative error, tolerance), ...]``: fastrnn's CUDA path versus cuDNN, on the
    arrays the rows time: inference and training outputs, final states and every gradient."""
    forward, backward, extra = bl.fastrnn_ops(cell)
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
        return bl.rel_err(_to_host(ours), _to_host(theirs))

    results = [
        ("outputs, inference", err(out_inf, t_out_inf), bl.OUTPUT_RTOL),
        ("outputs, training", err(out_tr, t_out), bl.OUTPUT_RTOL),
    ]
    for label, ours, theirs in (
        ("inference", states_inf, _torch_states(cell, t_state_inf)),
        ("training", states_tr, _torch_states(cell, t_state)),
    ):
        for k, (a, b) in enumerate(zip(ours, theirs)):
            results.append((f"final_state[{k}], {label}", err(a, b[0]), bl.OUTPUT_RTOL))
    dkernel, drecurrent, dbias = bl.keras_layout_grads(cell, module, shape.H)
    results += [
        ("dx", err(grads.dx, x_g.grad), bl.GRAD_RTOL),
        ("dkernel", err(grads.dkernel, dkernel), bl.GRAD_RTOL),
        ("drecurrent_kernel", err(grads.drecurrent_kernel, drecurrent), bl.GRAD_RTOL),
        ("dbias", err(grads.dbias, dbias), bl.GRAD_RTOL),
    ]
    module.zero_grad(set_to_none=True)
    return results


def build_gpu_callables(cell, mode: str, gp: dict) -> list:
    """``[fastrnn, torch]``: zero-argument calls that each enqueue one row's work on the stream."""
    forward, backward, extra = bl.fastrnn_ops(cell)
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
    gen = torch.Generator(device="cuda").manual_seed(bl.SEED)
    n = GPU_GEMM_N
    a = torch.randn(n, n, device="cuda", generator=gen)
    b = torch.randn(n, n, device="cuda", generator=gen)
    out = torch.empty(n, n, device="cuda")
    plan = GpuTiming(quick)
    plan.budget_s, plan.max_samples = (0.2, 5) if quick else (1.0, 20)
    (t,), _ = time_gpu_interleaved([lambda: torch.mm(a, b, out=out)], plan)
    return 2 * n**3 / t / 1e9


def gpu_targets(shape, ratio: float, persistent: bool) -> list:
    """``[(label, met), ...]``: the issue's GPU targets that apply to this row: faster than cuDNN
    at B <= 16 wherever the persistent path fits (``persistent``: it ran), at least 2x at B 1-4
    with H <= 1024, and at B >= 64 within 10% of cuDNN or faster."""
    result = []
    if shape.B <= 16 and persistent:
        result.append((">cuDNN", ratio > 1.0))
    if shape.B <= 4 and shape.H <= 1024:
        result.append(("≥2×", ratio >= 2.0))
    if shape.B >= 64:
        result.append(("within 10%", ratio >= 1.0 / 1.1))  # fastrnn ms <= 1.1 x cuDNN ms
    return result


def fastrnn_path(case) -> str:
    """The path(s) fastrnn takes for this row, from ``fastrnn._cuda.plan``: the forward's, and
    for fwd+bwd the backward's after a slash (``persistent``, ``standard``)."""
    import importlib

    ext = importlib.import_module("fastrnn._cuda")
    shape, cell = case.shape, case.cell
    words = []
    for backward in (False, True) if case.mode == FWD_BWD else (False,):
        plan = ext.plan(cell.op, shape.T, shape.B, shape.I, shape.H, "float32", True, backward)
        words.append(plan.split(":", 1)[0])
    return "/".join(words)


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
        "cublas": "yes" if getattr(ext, "HAS_CUBLAS", False) else "no (own GEMM)",
        "torch": torch.__version__,
        "fastrnn": fastrnn.__version__,
        "python": platform.python_version(),
    }


GPU_HEADER = (
    "| H | B | T | cell | mode | fastrnn path | fastrnn ms | cuDNN ms | fastrnn µs/step "
    "| cuDNN µs/step | ratio | fastrnn GFLOP/s | cuDNN GFLOP/s | % of GEMM peak | samples "
    "| target |"
)
GPU_COLUMNS = GPU_HEADER.count("|") - 1


def gpu_table_row(row: dict) -> str:
    case = row["case"]
    shape = case.shape
    verdict = "; ".join(f"{label} {'met' if ok else 'MISSED'}" for label, ok in row["targets"])
    if row.get("stub"):
        verdict = "STUB (not a measurement)"
    return (
        f"| {shape.H} | {shape.B} | {shape.T} | {case.cell.name} | {case.mode} | {row['path']} "
        f"| {row['fastrnn_ms']:.3f} | {row['torch_ms']:.3f} "
        f"| {row['fastrnn_ms'] * 1e3 / shape.T:.1f} | {row['torch_ms'] * 1e3 / shape.T:.1f} "
        f"| {row['ratio']:.2f}× | {row['fastrnn_gflops']:.0f} | {row['torch_gflops']:.0f} "
        f"| {row['peak_pct']:.1f}% | {row['samples']} | {verdict or '—'} |"
    )


RESULTS_TITLE = "# fastrnn GPU benchmark: fastrnn CUDA vs PyTorch cuDNN"


def section_header(info: dict, run: dict, args) -> str:
    """The machine facts and method of one run (one slice), in front of its table."""
    slice_words = ", ".join(
        f"{name} {' '.join(map(str, values))}"
        for name, values in (("H", args.hidden), ("B", args.batch), ("T", args.steps))
        if values
    )
    stub = " — STUB RUN: fake numbers, no GPU" if args.stub else ""
    lines = [
        f"## {slice_words or 'full grid'}{' (quick)' if args.quick else ''}{stub}",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
        f"command: `{bl.command_line()}`",
        f"- GPU: {info['gpu']} ({info['sms']} SMs, {info['memory_gib']:.0f} GiB); driver "
        f"{info['driver']} (CUDA {info['driver_cuda']})",
        f"- CUDA runtimes: fastrnn._cuda {info['fastrnn_cuda']} (cuBLAS: {info['cublas']}), "
        f"PyTorch {info['torch_cuda']} (cuDNN {info['cudnn']}), CuPy {info['cupy_cuda']}",
        f"- fastrnn {info['fastrnn']}, PyTorch {info['torch']}, CuPy {info['cupy']}, "
        f"Python {info['python']}; float32 throughout; PyTorch precision: {run['precision']} "
        "(no TF32 on either side)",
        f"- float32 GEMM peak: {run['peak']:.0f} GFLOP/s, the median of a {GPU_GEMM_N}³ "
        "`torch.mm` (TF32 off) before the rows",
        "- Agreement check before each H/B/T/cell is timed (inference and training outputs, "
        f"final states and every gradient, fastrnn vs cuDNN on shared weights): outputs within "
        f"{bl.OUTPUT_RTOL:g}, gradients within {bl.GRAD_RTOL:g} (max relative difference; a "
        "mismatch stops the run)",
        "- Timing: inputs are CuPy arrays that PyTorch sees through DLPack (same memory); both "
        "run on PyTorch's current stream; each sample is one call between two CUDA events, "
        "started on an idle GPU (host launch costs count, as a caller sees them); calls "
        "interleaved, median after warm-up; torch inference under `torch.inference_mode()`, "
        "fwd+bwd `module(x)` + `out.backward(dy)`; fastrnn `forward(training=True)` + "
        "`backward(ctx, dy)`; GRU `reset_after=True` (cuDNN's formulation)",
        "- µs/step = total / T; ratio = cuDNN ms / fastrnn ms (>1: fastrnn faster); flops "
        "`2*T*B*G*H*(I+H)` forward, 3x that for fwd+bwd; fastrnn path = `fastrnn._cuda.plan()` "
        "(forward/backward)",
        "- Targets: faster than cuDNN at B ≤ 16 where the persistent path runs (>cuDNN); ≥2× at "
        "B 1–4 with H ≤ 1024 (≥2×); at B ≥ 64 fastrnn ms ≤ 1.1 × cuDNN ms (within 10%)",
        "",
        GPU_HEADER,
        "|" + "---|" * GPU_COLUMNS,
    ]
    return "\n".join(lines) + "\n"


def section_footer(rows: list, run: dict) -> str:
    counts = {}
    for row in rows:
        for label, ok in row["targets"]:
            met, total = counts.get(label, (0, 0))
            counts[label] = (met + ok, total + 1)
    summary = ", ".join(f"{label} {met}/{total}" for label, (met, total) in counts.items())
    met = sum(m for m, _ in counts.values())
    total = sum(t for _, t in counts.values())
    return (
        f"\n{len(rows)} rows in {run['elapsed_s']:.0f} s; targets met: {met} of {total}"
        f"{' (' + summary + ')' if summary else ''}; max fastrnn/cuDNN relative difference "
        f"{run['worst']:.2e}.\n\n"
    )


class ResultsFile:
    """The output, written as the run goes: a section header, each row as it is measured, then
    the summary (each write flushed and closed, so a killed run leaves what it finished)."""

    def __init__(self, path: Path, append: bool):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not append or not path.exists() or not path.read_text(encoding="utf-8").strip():
            path.write_text(RESULTS_TITLE + "\n\n", encoding="utf-8")

    def write(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()


def stub_info() -> dict:
    return {
        "gpu": "STUB (no GPU)",
        "sms": 0,
        "memory_gib": 0.0,
        "driver": "none",
        "driver_cuda": "none",
        "torch_cuda": str(torch.version.cuda),
        "cudnn": "none",
        "cupy": "none",
        "cupy_cuda": "none",
        "fastrnn_cuda": "none",
        "cublas": "none",
        "torch": torch.__version__,
        "fastrnn": fastrnn.__version__,
        "python": platform.python_version(),
    }


def stub_row(case) -> dict:
    """Fake, clearly marked numbers for a row: exercises the formatting and appending only."""
    t_torch = 1e-6 * case.shape.T * (2 if case.mode == FWD_BWD else 1)
    t_fast = 0.8 * t_torch
    gflop = shapes.case_flops(case) / 1e9
    return {
        "case": case,
        "path": "stub",
        "fastrnn_ms": t_fast * 1e3,
        "torch_ms": t_torch * 1e3,
        "ratio": t_torch / t_fast,
        "fastrnn_gflops": gflop / t_fast,
        "torch_gflops": gflop / t_torch,
        "peak_pct": 0.0,
        "samples": 0,
        "targets": [],
        "stub": True,
    }


def run_gpu(args) -> int:
    """Agreement check, then timed rows, each appended to the output as it is measured."""
    t_start = time.perf_counter()
    output = args.output if args.output is not None else GPU_DEFAULT_OUTPUT
    points = gpu_shapes(args.quick, args.hidden, args.batch, args.steps)
    if not points:
        print("no shape of the grid matches --hidden/--batch/--steps", file=sys.stderr)
        return 2
    rows = []
    run = {"worst": 0.0, "elapsed_s": 0.0}
    if args.stub:
        run.update(precision="stub", peak=0.0)
        results = ResultsFile(output, args.append)
        results.write(section_header(stub_info(), run, args))
        for shape in points:
            for cell in shapes.CELLS_TIMED:
                for mode in shape.modes:
                    row = stub_row(shapes.Case(shape, cell, mode))
                    rows.append(row)
                    results.write(gpu_table_row(row) + "\n")
        run["elapsed_s"] = time.perf_counter() - t_start
        results.write(section_footer(rows, run))
        print(f"stub: wrote {len(rows)} fake rows to {output}")
        return 0

    cp, reason = import_gpu()
    if cp is None:
        print(f"cannot run the GPU comparison: {reason}", file=sys.stderr)
        return 2
    run["precision"] = set_torch_gpu_precision()
    info = gpu_info(cp)
    print(
        f"GPU {info['gpu']}; driver {info['driver']}; fastrnn._cuda CUDA {info['fastrnn_cuda']}, "
        f"PyTorch CUDA {info['torch_cuda']}, cuDNN {info['cudnn']}; {run['precision']}",
        flush=True,
    )
    plan = GpuTiming(args.quick)
    results = None
    # fastrnn enqueues on CuPy's current stream: make it torch's, so the events time both.
    with cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):
        run["peak"] = gpu_gemm_peak(args.quick)
        print(f"float32 GEMM peak {run['peak']:.0f} GFLOP/s", flush=True)
        results = ResultsFile(output, args.append)
        results.write(section_header(info, run, args))
        print(GPU_HEADER, flush=True)
        for shape in points:
            for cell in shapes.CELLS_TIMED:
                gp = make_gpu_problem(shape, cell, cp)
                for name, err, tol in check_agreement_gpu(shape, cell, gp):
                    run["worst"] = max(run["worst"], err)
                    if not err <= tol:
                        message = (
                            f"MISMATCH T{shape.T} B{shape.B} H{shape.H} {cell.name}: {name} "
                            f"relative difference {err:.3e} > {tol:g}; the comparison is not "
                            "like-for-like"
                        )
                        print(message, file=sys.stderr)
                        results.write(f"\n**{message}** (run stopped)\n\n")
                        return 1
                for mode in shape.modes:
                    case = shapes.Case(shape, cell, mode)
                    (t_fast, t_torch), n = time_gpu_interleaved(
                        build_gpu_callables(cell, mode, gp), plan
                    )
                    gflop = shapes.case_flops(case) / 1e9
                    path = fastrnn_path(case)
                    row = {
                        "case": case,
                        "path": path,
                        "fastrnn_ms": t_fast * 1e3,
                        "torch_ms": t_torch * 1e3,
                        "ratio": t_torch / t_fast,
                        "fastrnn_gflops": gflop / t_fast,
                        "torch_gflops": gflop / t_torch,
                        "peak_pct": 100.0 * gflop / t_fast / run["peak"],
                        "samples": n,
                    }
                    row["targets"] = gpu_targets(shape, row["ratio"], path.startswith("persistent"))
                    rows.append(row)
                    line = gpu_table_row(row)
                    results.write(line + "\n")
                    print(line, flush=True)
                del gp
                torch.cuda.synchronize()
                cp.get_default_memory_pool().free_all_blocks()
                torch.cuda.empty_cache()
    run["elapsed_s"] = time.perf_counter() - t_start
    results.write(section_footer(rows, run))
    print(section_footer(rows, run).strip())
    print(f"wrote {output}")
    return 0


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument("--output", type=Path, help="default bench/RESULTS_GPU.md")
    parser.add_argument("--hidden", type=int, nargs="+", help="keep these H of the grid")
    parser.add_argument("--batch", type=int, nargs="+", help="keep these B of the grid")
    parser.add_argument("--steps", type=int, nargs="+", help="keep these T of the grid")
    parser.add_argument(
        "--append", action="store_true", help="add a section to the output instead of starting it"
    )
    parser.add_argument(
        "--stub", action="store_true", help="no GPU: fake, marked rows (tests the scripting)"
    )
    return run_gpu(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
