"""Times fastrnn's CPU kernels against PyTorch's nn.RNN / nn.LSTM / nn.GRU (oneDNN / MKL).

Every row runs in a fresh process (``--in-process`` runs them all in this one), so no figure
depends on what ran before it; in it, fastrnn and PyTorch share the thread count and are timed
interleaved, sample by sample (each sample: one untimed call that absorbs what the other library
left behind, then the timed calls), median of many samples after a warm-up. Before a row is
timed the two are checked to compute the same thing (same weights in each one's layout):
outputs, final states and, for fwd+bwd, every gradient; a mismatch aborts the run.

``--isa avx2`` caps every library at AVX2 before it loads: fastrnn (``FASTRNN_ISA``), oneDNN
(``ONEDNN_MAX_CPU_ISA``), MKL (``MKL_ENABLE_INSTRUCTIONS``) and OpenBLAS (``OPENBLAS_CORETYPE``);
``--isa native`` (default) lifts every cap, including one the environment had set. The report
says which ISA each library actually ran (fastrnn's dispatch, OpenBLAS's core name, oneDNN's and
MKL's verbose output) and measures the float32 GEMM peak under the same cap, before and after
the rows.

``--contention`` (on in full runs) times some rows again next to other thread pools: each call
right after a NumPy 512² matmul, right after a PyTorch op, and with another CPU-bound process
running; both fastrnn's and PyTorch's slowdown are reported against their time alone.

Each fastrnn row also reports where its time goes (input product, per-step loop, weight
gradients: fastrnn's own phase timer) as GFLOP/s against the measured GEMM peak.

Usage (from the repository root)::

    PYTHONPATH=python python bench/compare.py --quick                    # smoke run
    PYTHONPATH=python python bench/compare.py --output bench/RESULTS.md  # full run, this ISA
    PYTHONPATH=python python bench/compare.py --isa avx2 --output bench/RESULTS.md

``--output`` replaces this ISA's section of the file and keeps the rest.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_THREADS = 2
NOTES = Path(__file__).with_name("notes.md")
# Environment variables that cap (or pin) a library's ISA; --isa sets or clears all of them.
CAP_VARS = (
    "FASTRNN_ISA",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)
ISA_CAPS = {
    "native": {},
    "avx2": {
        "FASTRNN_ISA": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
    },
}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def child_env(isa: str, threads: int, extra: dict | None = None) -> dict:
    """The environment of a benchmark process: the ISA's caps and the thread count, set before
    any library loads."""
    env = {k: v for k, v in os.environ.items() if k not in CAP_VARS}
    for var in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY"):  # the libraries' defaults,
        env.pop(var, None)  # unless a contention mode sets them (shapes.QUIET_ENV)
    env.update(ISA_CAPS[isa])
    for var in THREAD_VARS:
        env[var] = str(threads)
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------------------------
# Jobs: each runs in a fresh process (``--job``) and prints one "RESULT <json>" line.


def _libs():
    """Imports the measured libraries (only in a job process, after its environment is set)."""
    import benchlib
    import fastrnn
    import numpy
    import shapes
    import torch

    return benchlib, fastrnn, numpy, shapes, torch


def job_info(args) -> dict:
    """Versions, the ISA each library actually runs, and what the CPU is."""
    bl, fastrnn, np, _, torch = _libs()
    bl.set_threads(args.threads)
    # oneDNN and MKL print their ISA with ONEDNN_VERBOSE / MKL_VERBOSE (set by the parent):
    # run one LSTM (oneDNN) and one matmul (MKL) so that they do.
    lstm = torch.nn.LSTM(8, 8)
    with torch.inference_mode():
        lstm(torch.zeros(2, 1, 8))
        torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    return {
        "cpu": bl.cpu_model(),
        "hardware_isa": bl.hardware_isa(),
        "cores": os.cpu_count(),
        "usable": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "fastrnn": fastrnn.__version__,
        "fastrnn_isa": fastrnn._cpu.get_isa(),
        "openblas": bl.openblas_cores(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }


def job_peak(args) -> dict:
    """Median GFLOP/s of a float32 2048^3 matmul through NumPy and through PyTorch."""
    bl, _, np, _, torch = _libs()
    bl.set_threads(args.threads)
    n = 2048
    rng = np.random.default_rng(bl.SEED)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty_like(a)
    a_t, b_t, out_t = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out.copy())
    plan = bl.Timing(args.quick)
    plan.budget_s, plan.max_samples = (0.5, 5) if args.quick else (3.0, 30)
    (t_np, t_torch), _ = bl.time_interleaved(
        [lambda: np.matmul(a, b, out=out), lambda: torch.mm(a_t, b_t, out=out_t)], plan
    )
    flops = 2 * n**3
    return {"numpy": flops / t_np / 1e9, "torch": flops / t_torch / 1e9}


def _profile_fastrnn(fastrnn, fns: dict, case, repeats: int = 5) -> dict:
    """Median seconds per phase of fastrnn's calls of one row (forward, and backward)."""
    bl = _libs()[0]
    forward, backward, extra = bl.fastrnn_ops(case.cell)
    p = bl.make_problem(case.shape, case.cell)
    args = (p["x"], p["kernel"], p["recurrent_kernel"], p["bias"])
    cpu = fastrnn._cpu
    cpu._set_profiling(True)
    records = {"forward": [], "backward": []}
    try:
        for _ in range(repeats):
            training = case.mode != "inference"
            _, _, ctx = forward(*args, training=training, **extra)
            records["forward"].append(dict(cpu._last_profile()))
            if training:
                backward(ctx, p["dy"])
                records["backward"].append(dict(cpu._last_profile()))
    finally:
        cpu._set_profiling(False)
    out = {}
    for call, recs in records.items():
        if recs:
            out[call] = {k: statistics.median(r[k] for r in recs) for k in recs[0]}
    return out


def job_row(args, case_id: str) -> dict:
    """One row: agreement check, interleaved timing, fastrnn's phase profile."""
    bl, fastrnn, _, shapes, _ = _libs()
    bl.set_threads(args.threads)
    case = shapes.CASES_BY_ID[case_id]
    checks = bl.check_agreement(case.shape, case.cell, case.mode != "inference")
    bad = [(name, err, tol) for name, err, tol in checks if not err <= tol]
    if bad:
        return {"error": f"fastrnn and torch disagree on {case_id}: {bad}"}
    fns = bl.build_callables(case)
    (t_fast, t_torch), samples = bl.time_interleaved(
        [fns["fastrnn"], fns["torch"]], bl.Timing(args.quick)
    )
    return {
        "case": case_id,
        "fastrnn_s": t_fast,
        "torch_s": t_torch,
        "samples": len(samples[0]),
        "agreement": max(err for _, err, _ in checks),
        "profile": _profile_fastrnn(fastrnn, fns, case),
    }


def job_contention(args, case_id: str, mode: str) -> dict:
    """One row's fastrnn and PyTorch calls alone, then each right after a disturbance."""
    bl, _, np, shapes, torch = _libs()
    bl.set_threads(args.threads)
    case = shapes.CASES_BY_ID[case_id]
    fns = bl.build_callables(case)
    pair = [fns["fastrnn"], fns["torch"]]
    plan = bl.Timing(args.quick)
    plan.budget_s = 0.5 if args.quick else 3.0
    plan.min_samples = 5 if args.quick else 30
    (alone_f, alone_t), alone = bl.time_interleaved(pair, plan)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    a_t = torch.from_numpy(a.copy())
    before = None
    burner = None
    kind = mode.removesuffix("-quiet")  # "-quiet": the same disturbance, another environment
    if kind == "numpy":

        def before():
            np.matmul(a, a)

    elif kind == "torch":

        def before():
            torch.mm(a_t, a_t)

    elif kind == "process":
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.3)
        before = lambda: None  # noqa: E731 (no untimed call: the burner runs throughout)
    try:
        (busy_f, busy_t), busy = bl.time_interleaved(pair, plan, before=before)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    return {
        "case": case_id,
        "mode": mode,
        "alone": [alone_f, alone_t],
        "busy": [busy_f, busy_t],
        "busy_p90": [bl.percentile(busy[0], 90), bl.percentile(busy[1], 90)],
        "alone_p90": [bl.percentile(alone[0], 90), bl.percentile(alone[1], 90)],
    }


JOBS = {"info": job_info, "peak": job_peak, "row": job_row, "contention": job_contention}


def run_job_here(args, job: str):
    name, *params = job.split(":")
    return JOBS[name](args, *params)


def run_job(args, job: str, extra_env: dict | None = None) -> tuple[dict, str]:
    """Runs ``job`` in a fresh process (or here with --in-process); returns (result, stdout)."""
    if args.in_process and not extra_env:
        return run_job_here(args, job), ""
    cmd = [sys.executable, __file__, "--job", job, "--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    env = child_env(args.isa, args.threads, extra_env)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"job {job} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :]), done.stdout


def verbose_isa(stdout: str) -> dict:
    """The ISA lines oneDNN (ONEDNN_VERBOSE) and MKL (MKL_VERBOSE) print."""
    found = {}
    for line in stdout.splitlines():
        if "onednn_verbose" in line and ",isa:" in line and "onednn" not in found:
            found["onednn"] = line.split(",isa:", 1)[1].strip()
        if line.startswith("MKL_VERBOSE") and "Intel(R)" in line and "mkl" not in found:
            found["mkl"] = line.split("MKL_VERBOSE", 1)[1].strip()
    return found


# --------------------------------------------------------------------------------------------
# The report.


def targets(case, ratio: float, peak_pct: float) -> list:
    """``[(label, met), ...]``: the targets that apply to this row (issue: CPU speed)."""
    result = [(">torch", ratio > 1.0)]
    if case.shape.name in ("latency", "tiny"):
        result.append(("≥2×", ratio >= 2.0))
    if case.mode == "fwd+bwd" and case.shape.name in ("medium", "wide"):
        result.append(("≥80% peak", peak_pct >= 80.0))
    return result


def contention_targets(row: dict) -> list:
    f_ratio, t_ratio = (row["busy"][i] / row["alone"][i] for i in (0, 1))
    result = [("≤ torch's slowdown", f_ratio <= t_ratio)]
    if row["mode"] != "process":
        result.append(("≤1.3× alone", f_ratio <= 1.3))
    return result


def _fmt_phase(seconds: float, flops: float, peak: float) -> str:
    if seconds <= 0:
        return "—"
    gf = flops / seconds / 1e9
    return f"{seconds * 1e3:.3f} ({gf:.0f}, {100 * gf / peak:.0f}%)"


def phase_row(case, row: dict, peak: float) -> str:
    """Where fastrnn's time goes: per phase ms (GFLOP/s, % of peak)."""
    s = case.shape
    G, T, B, n_in, H = case.cell.gates, s.T, s.B, s.I, s.H
    fwd = row["profile"].get("forward", {})
    bwd = row["profile"].get("backward", {})
    input_flops = 2 * T * B * G * H * n_in
    step_flops = 2 * T * B * G * H * H
    weight_flops = 2 * T * B * G * H * (n_in + H) + 2 * T * B * G * H * n_in  # dW, dR, dx
    parts = [
        _fmt_phase(fwd.get("input", 0), input_flops, peak),
        _fmt_phase(fwd.get("steps", 0), step_flops, peak),
        _fmt_phase(bwd.get("steps", 0), step_flops, peak) if bwd else "—",
        _fmt_phase(bwd.get("weights", 0), weight_flops, peak) if bwd else "—",
    ]
    total = fwd.get("total", 0) + bwd.get("total", 0)
    pack = fwd.get("pack", 0) + bwd.get("pack", 0)
    return (
        f"| {case.id} | {total * 1e3:.3f} | {' | '.join(parts)} | {pack * 1e3:.3f} "
        f"| {fwd.get('threads', '')} |"
    )


HEADER = (
    "| shape | cell | mode | fastrnn ms | torch ms | ratio | fastrnn GFLOP/s | torch GFLOP/s "
    "| % of GEMM peak | target |"
)


def table_row(case, row: dict, peak: float, case_flops) -> str:
    gflop = case_flops(case) / 1e9
    f_ms, t_ms = row["fastrnn_s"] * 1e3, row["torch_s"] * 1e3
    ratio = t_ms / f_ms
    peak_pct = 100.0 * gflop / row["fastrnn_s"] / peak
    row["targets"] = targets(case, ratio, peak_pct)
    verdict = "; ".join(f"{label} {'met' if ok else 'MISSED'}" for label, ok in row["targets"])
    return (
        f"| {case.shape.label} | {case.cell.name} | {case.mode} | {f_ms:.3f} | {t_ms:.3f} "
        f"| {ratio:.2f}× | {gflop / row['fastrnn_s']:.1f} | {gflop / row['torch_s']:.1f} "
        f"| {peak_pct:.1f}% | {verdict} |"
    )


def mode_label(mode: str) -> str:
    """A contention mode as the table shows it: a "-quiet" mode with its environment."""
    import shapes

    env = shapes.QUIET_ENV.get(mode)
    if not env:
        return mode
    return mode.removesuffix("-quiet") + ", " + " ".join(f"{k}={v}" for k, v in env.items())


def contention_row(row: dict) -> str:
    f_ratio, t_ratio = (row["busy"][i] / row["alone"][i] for i in (0, 1))
    row["targets"] = contention_targets(row)
    verdict = "; ".join(f"{label} {'met' if ok else 'MISSED'}" for label, ok in row["targets"])
    return (
        f"| {row['case']} | {mode_label(row['mode'])} | {row['alone'][0] * 1e3:.3f} "
        f"| {row['busy'][0] * 1e3:.3f} (p90 {row['busy_p90'][0] * 1e3:.3f}) | {f_ratio:.2f}× "
        f"| {row['alone'][1] * 1e3:.3f} | {row['busy'][1] * 1e3:.3f} "
        f"(p90 {row['busy_p90'][1] * 1e3:.3f}) | {t_ratio:.2f}× | {verdict} |"
    )


def render(args, info: dict, peaks: dict, rows: list, cont: list, shapes) -> str:
    peak = max(max(peaks["start"].values()), max(peaks["end"].values()))
    real = info["hardware_isa"]
    isa_note = (
        f"a real {real.upper()} CPU"
        if args.isa == "native" or args.isa == real
        else f"an {real.upper()} CPU capped at {args.isa.upper()} (a proxy, not the same thing)"
    )
    libs = info.get("verbose", {})
    lines = [
        f"## CPU, {args.isa} ({info['cpu']})",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; command: "
        f"`{args.command}`",
        f"- Machine: {info['cpu']}, {info['usable']} of {info['cores']} logical CPUs usable, "
        f"{args.threads} threads for both libraries; this is {isa_note}",
        f"- ISA in use: fastrnn `{info['fastrnn_isa']}`; OpenBLAS {info['openblas']}; oneDNN "
        f"{libs.get('onednn', 'not reported')}; MKL {libs.get('mkl', 'not reported')}",
        f"- fastrnn {info['fastrnn']}, NumPy {info['numpy']}, PyTorch {info['torch']}, Python "
        f"{info['python']}",
        f"- float32 GEMM peak {peak:.1f} GFLOP/s: the best median of a 2048³ matmul through NumPy "
        f"and PyTorch under the same cap, before the rows (NumPy {peaks['start']['numpy']:.1f}, "
        f"PyTorch {peaks['start']['torch']:.1f}) and after them (NumPy "
        f"{peaks['end']['numpy']:.1f}, PyTorch {peaks['end']['torch']:.1f}); load average "
        f"{peaks['load_start']} at the start, {peaks['load_end']} at the end",
        f"- Agreement (fastrnn vs torch on shared weights, every row): max relative difference "
        f"{max(r['agreement'] for r in rows):.2e}",
        "- Each row in a fresh process"
        + (" (here: --in-process, one process)" if args.in_process else "")
        + f"; {'quick smoke run; ' if args.quick else ''}float32; samples interleaved (each: "
        "one untimed call, then the timed ones), median of samples after warm-up; torch "
        "inference under `torch.inference_mode()`, torch fwd+bwd is forward + backward of "
        "`(out * dy).sum()` with grads on input and weights; "
        "fastrnn fwd+bwd is `forward(training=True)` + `backward(ctx, dy)`",
        "- Flops: forward `2*T*B*G*H*(I+H)`, backward twice that; ratio = torch ms / fastrnn ms "
        "(>1: fastrnn faster). Targets: faster than PyTorch on every row (>torch); ≥2× on the "
        "latency (B=1) and tiny rows (≥2×); fwd+bwd at medium and wide ≥80% of the GEMM peak",
        "",
        HEADER,
        "|" + "---|" * 10,
    ]
    for row in rows:
        lines.append(table_row(shapes.CASES_BY_ID[row["case"]], row, peak, shapes.case_flops))
    met = sum(ok for row in rows for _, ok in row["targets"])
    total = sum(len(row["targets"]) for row in rows)
    lines += [
        "",
        f"Targets met: {met} of {total}.",
        "",
        "Where fastrnn's time goes (its phase timer; ms, then GFLOP/s and % of the GEMM peak): "
        "the input product over all steps, the per-step loop of the forward and of the "
        "backward (recurrent product fused with the cell's math), the weight gradients and dx; "
        "packing the recurrent weights; threads of the step loop.",
        "",
        "| row | fastrnn ms | input | forward steps | backward steps | weights + dx | pack ms "
        "| threads |",
        "|" + "---|" * 8,
    ]
    for row in rows:
        lines.append(phase_row(shapes.CASES_BY_ID[row["case"]], row, peak))
    if cont:
        lines += [
            "",
            "Next to other thread pools (`--contention`): each call right after a NumPy 512² "
            "float32 matmul (numpy), right after a PyTorch 512² mm (torch), or with another "
            "CPU-bound process running (process); medians (and p90) against the same calls "
            "alone. The numpy and torch rows again in a process whose environment tells that "
            "library's idle threads not to spin (`OPENBLAS_THREAD_TIMEOUT=4`, "
            "`OMP_WAIT_POLICY=passive`; the times alone are in that environment too). Targets: "
            "fastrnn's slowdown no worse than PyTorch's; within 1.3× of alone after a NumPy or "
            "PyTorch op.",
            "",
            "| row | disturbance | fastrnn alone ms | fastrnn disturbed ms | fastrnn × "
            "| torch alone ms | torch disturbed ms | torch × | target |",
            "|" + "---|" * 9,
            *(contention_row(r) for r in cont),
        ]
        c_met = sum(ok for r in cont for _, ok in r["targets"])
        c_total = sum(len(r["targets"]) for r in cont)
        lines += ["", f"Contention targets met: {c_met} of {c_total}."]
    return "\n".join(lines)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--isa", choices=sorted(ISA_CAPS), default="native")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads for both")
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument("--output", type=Path, help="replace this ISA's section of this file")
    parser.add_argument("--rows", nargs="*", help="row ids or glob patterns (default: all)")
    parser.add_argument(
        "--contention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time the contention rows too (default: on, off with --quick or --rows)",
    )
    parser.add_argument("--in-process", action="store_true", help="no fresh process per row")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    sys.path.insert(0, str(Path(__file__).parent))
    if args.job:
        print("RESULT " + json.dumps(run_job_here(args, args.job)), flush=True)
        return 0
    args.command = " ".join(["python", "bench/compare.py", *(argv or sys.argv[1:])])
    if args.in_process:  # the caps must be set before this process loads the libraries
        os.environ.update(child_env(args.isa, args.threads))
        for var in CAP_VARS:
            if var not in ISA_CAPS[args.isa]:
                os.environ.pop(var, None)
    import benchlib as bl
    import shapes

    cases = [
        c.id
        for c in shapes.CASES
        if not args.rows or any(fnmatch.fnmatch(c.id, p) or c.id == p for p in args.rows)
    ]
    contention = args.contention if args.contention is not None else not (args.quick or args.rows)
    verbose = {"ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1"}
    info, stdout = run_job(args, "info", verbose)
    info["verbose"] = verbose_isa(stdout)
    print(
        f"{info['cpu']}: fastrnn {info['fastrnn_isa']}, OpenBLAS {info['openblas']}, "
        f"{info['verbose']}",
        flush=True,
    )
    peaks = {"load_start": bl.load_average(), "start": run_job(args, "peak")[0]}
    print(f"GEMM peak {max(peaks['start'].values()):.1f} GFLOP/s", flush=True)
    rows = []
    for case_id in cases:
        row, _ = run_job(args, f"row:{case_id}")
        if "error" in row:
            print(row["error"], file=sys.stderr)
            return 1
        rows.append(row)
        print(
            f"{case_id}: fastrnn {row['fastrnn_s'] * 1e3:.3f} ms, torch "
            f"{row['torch_s'] * 1e3:.3f} ms ({row['torch_s'] / row['fastrnn_s']:.2f}×)",
            flush=True,
        )
    cont = []
    if contention:
        for case_id in shapes.CONTENTION_ROWS:
            for mode in shapes.CONTENTION_MODES:
                r, _ = run_job(args, f"contention:{case_id}:{mode}", shapes.QUIET_ENV.get(mode))
                cont.append(r)
                print(
                    f"{case_id} {mode}: fastrnn {r['busy'][0] / r['alone'][0]:.2f}×, torch "
                    f"{r['busy'][1] / r['alone'][1]:.2f}×",
                    flush=True,
                )
    peaks["end"] = run_job(args, "peak")[0]
    peaks["load_end"] = bl.load_average()
    text = render(args, info, peaks, rows, cont, shapes)
    print(text)
    if args.output is not None:
        bl.write_section(args.output, f"cpu-{args.isa}", text, "# fastrnn benchmarks")
        print(f"wrote the cpu-{args.isa} section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
