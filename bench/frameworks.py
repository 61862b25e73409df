"""The framework table: fastrnn inside PyTorch and Keras against those frameworks' own layers.

Two tables, every row timed in this process with ``compare.py``'s method (float32, same thread
count, calls interleaved, median of samples after a warm-up), on the shapes of ``shapes.py``:

* PyTorch: ``torch.nn.RNN`` (tanh) / ``LSTM`` / ``GRU`` against ``fastrnn.torch``'s modules
  holding the same weights, in each shape's modes (inference under ``torch.inference_mode()``;
  fwd+bwd = forward + backward of ``(out * dy).sum()`` with gradients for input and weights).
  A third column times ``fastrnn.ops`` directly, so ``overhead`` is what the PyTorch adapter
  adds to fastrnn's own call (µs).
* Keras: per-batch ``fit`` time (``model.train_on_batch``, SGD, MSE) of
  ``Sequential([Input((T, I)), <layer>(H), Dense(1)])`` with the stock Keras layer against
  ``fastrnn.keras``'s, same initial weights, on the Keras backend named by ``--keras-backend``
  (torch by default; Keras picks its backend once per process).

Before a row is timed the two sides are checked to compute the same thing (outputs and, where
trained, gradients / the weights after one step); a mismatch aborts the run. Ratios are
framework ms / fastrnn ms (>1: fastrnn faster).

Usage (from the repository root)::

    PYTHONPATH=python python bench/frameworks.py --quick --shapes tiny      # smoke, seconds
    PYTHONPATH=python python bench/frameworks.py --output bench/RESULTS.md  # full run

``--output`` writes the tables into a markdown file between ``<!-- frameworks:begin -->`` and
``<!-- frameworks:end -->`` markers, replacing an earlier run's section and leaving the rest of
the file (e.g. ``compare.py``'s report in ``bench/RESULTS.md``) as it is.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
from pathlib import Path

DEFAULT_THREADS = 2


def _option_from_argv(argv: list, name: str, default: str) -> str:
    """``--name value`` / ``--name=value`` read before the frameworks are imported."""
    for k, arg in enumerate(argv):
        if arg == name and k + 1 < len(argv):
            return argv[k + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


if __name__ == "__main__":
    _n = _option_from_argv(sys.argv[1:], "--threads", str(DEFAULT_THREADS))
    for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[_var] = _n
    os.environ["KERAS_BACKEND"] = _option_from_argv(sys.argv[1:], "--keras-backend", "torch")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import benchlib as compare  # noqa: E402 (the shared bench harness)
import fastrnn  # noqa: E402
import shapes  # noqa: E402

INFERENCE, FWD_BWD = shapes.INFERENCE, shapes.FWD_BWD
KERAS_FIT = "fit"
KERAS_LAYER = {"RNN": "SimpleRNN", "LSTM": "LSTM", "GRU": "GRU"}


# --------------------------------------------------------------------------------------------
# PyTorch: torch.nn vs fastrnn.torch (and fastrnn.ops, for the adapter's overhead).


def torch_modules(case, problem: dict) -> tuple:
    """(stock torch.nn module, fastrnn.torch module) with ``problem``'s weights."""
    import fastrnn.torch

    stock = compare.make_torch_module(case.shape, case.cell, problem)
    kwargs = {"nonlinearity": "tanh"} if case.cell.torch_module == "RNN" else {}
    ours = getattr(fastrnn.torch, case.cell.torch_module)(case.shape.I, case.shape.H, **kwargs)
    ours.load_state_dict(stock.state_dict())
    return stock, ours


def torch_call(module, mode: str, x: np.ndarray, dy: np.ndarray):
    """A zero-argument call timing one row's work on ``module``."""
    if mode == INFERENCE:
        x_t = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                return module(x_t)

        return run
    x_t = torch.from_numpy(x.copy()).requires_grad_(True)
    dy_t = torch.from_numpy(dy)

    def run():
        x_t.grad = None
        module.zero_grad(set_to_none=True)
        out, _ = module(x_t)
        (out * dy_t).sum().backward()

    return run


def torch_agreement(case, problem: dict) -> float:
    """Max relative difference stock vs fastrnn.torch (outputs, states and, for fwd+bwd, every
    gradient), scaled so that 1.0 is the tolerance; aborts above it."""
    stock, ours = torch_modules(case, problem)
    worst = 0.0
    results = []
    for module in (stock, ours):
        x = torch.from_numpy(problem["x"].copy()).requires_grad_(case.mode == FWD_BWD)
        out, state = module(x)
        states = list(state) if isinstance(state, tuple) else [state]
        entry = [out.detach().numpy(), *(s.detach().numpy() for s in states)]
        if case.mode == FWD_BWD:
            (out * torch.from_numpy(problem["dy"])).sum().backward()
            entry += [x.grad.numpy()] + [p.grad.numpy() for p in module.parameters()]
        results.append(entry)
    n_forward = 1 + len(states)
    for k, (want, got) in enumerate(zip(*results)):
        tol = compare.OUTPUT_RTOL if k < n_forward else compare.GRAD_RTOL
        worst = max(worst, compare.rel_err(got, want) / tol)
    return worst


def torch_row(case, plan) -> dict:
    problem = compare.make_problem(case.shape, case.cell)
    agreement = torch_agreement(case, problem)
    stock, ours = torch_modules(case, problem)
    ops_call = compare.build_callables(case, problem)["fastrnn"]
    fns = [
        ops_call,
        torch_call(ours, case.mode, problem["x"], problem["dy"]),
        torch_call(stock, case.mode, problem["x"], problem["dy"]),
    ]
    (t_ops, t_ours, t_stock), _ = compare.time_interleaved(fns, plan)
    return {
        "case": case,
        "agreement": agreement,
        "stock_ms": t_stock * 1e3,
        "ours_ms": t_ours * 1e3,
        "ops_ms": t_ops * 1e3,
        "ratio": t_stock / t_ours,
        "overhead_us": (t_ours - t_ops) * 1e6,
    }


TORCH_HEADER = (
    "| shape | cell | mode | torch.nn ms | fastrnn.torch ms | ratio | fastrnn.ops ms "
    "| adapter overhead µs |"
)


def torch_table_row(row: dict) -> str:
    case = row["case"]
    return (
        f"| {case.shape.label} | {case.cell.name} | {case.mode} | {row['stock_ms']:.3f} "
        f"| {row['ours_ms']:.3f} | {row['ratio']:.2f}× | {row['ops_ms']:.3f} "
        f"| {row['overhead_us']:.0f} |"
    )


# --------------------------------------------------------------------------------------------
# Keras: fit per batch, stock layer vs fastrnn.keras.


def keras_models(shape, cell, seed: int = compare.SEED) -> tuple:
    """(stock model, fastrnn model), compiled, with the same initial weights, and (x, y)."""
    import fastrnn.keras
    import keras

    def build(layers):
        kwargs = {"activation": "tanh"} if cell.torch_module == "RNN" else {}
        layer = getattr(layers, KERAS_LAYER[cell.torch_module])(shape.H, **kwargs)
        model = keras.Sequential([keras.Input((shape.T, shape.I)), layer, keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        return model

    stock, ours = build(keras.layers), build(fastrnn.keras)
    rng = np.random.default_rng(seed)
    scale = 1.0 / math.sqrt(shape.H)
    weights = [rng.uniform(-scale, scale, w.shape).astype("float32") for w in stock.get_weights()]
    stock.set_weights(weights)
    ours.set_weights(weights)
    x = rng.standard_normal((shape.B, shape.T, shape.I)).astype("float32")
    y = rng.standard_normal((shape.B, 1)).astype("float32")
    return stock, ours, x, y


def keras_agreement(stock, ours, x, y) -> float:
    """Predictions, first-step loss and the weights after one SGD step, stock vs fastrnn
    (relative difference over the tolerance; aborts above 1)."""
    worst = (
        compare.rel_err(ours.predict_on_batch(x), stock.predict_on_batch(x)) / compare.OUTPUT_RTOL
    )
    loss_ours, loss_stock = ours.train_on_batch(x, y), stock.train_on_batch(x, y)
    worst = max(worst, compare.rel_err(loss_ours, loss_stock) / compare.OUTPUT_RTOL)
    for a, b in zip(ours.get_weights(), stock.get_weights()):
        worst = max(worst, compare.rel_err(a, b) / compare.GRAD_RTOL)
    return worst


def keras_row(shape, cell, plan) -> dict:
    from fastrnn.keras import _layers

    stock, ours, x, y = keras_models(shape, cell)
    calls = []
    original = _layers.fused
    _layers.fused = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        agreement = keras_agreement(stock, ours, x, y)
    finally:
        _layers.fused = original
    if not calls:
        raise RuntimeError(f"fastrnn.keras fell back to Keras's loop on {shape.label} {cell.name}")
    fns = [lambda: ours.train_on_batch(x, y), lambda: stock.train_on_batch(x, y)]
    (t_ours, t_stock), _ = compare.time_interleaved(fns, plan)
    return {
        "case": shapes.Case(shape, cell, KERAS_FIT),
        "agreement": agreement,
        "stock_ms": t_stock * 1e3,
        "ours_ms": t_ours * 1e3,
        "ratio": t_stock / t_ours,
    }


KERAS_HEADER = "| shape | cell | mode | Keras ms/batch | fastrnn.keras ms/batch | ratio |"


def keras_table_row(row: dict) -> str:
    case = row["case"]
    return (
        f"| {case.shape.label} | {KERAS_LAYER[case.cell.torch_module]} | "
        f"fit (train_on_batch) | {row['stock_ms']:.3f} | {row['ours_ms']:.3f} "
        f"| {row['ratio']:.2f}× |"
    )


# --------------------------------------------------------------------------------------------
# Report.


def render(info: dict, torch_rows: list, keras_rows: list, args, keras_info: str) -> str:
    worst = max([r["agreement"] for r in torch_rows + keras_rows] or [0.0])
    tiny = [r for r in torch_rows if r["case"].shape.name == "tiny"]
    overhead = ", ".join(f"{r['case'].cell.name} {r['overhead_us']:.0f} µs" for r in tiny)
    lines = [
        "## Inside the frameworks: fastrnn.torch and fastrnn.keras",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- Command: `{compare.command_line()}`",
        f"- CPU: {info['cpu']} ({info['cores']}); fastrnn ISA `{info['isa']}`",
        f"- fastrnn {info['fastrnn']}, PyTorch {info['torch']}, {keras_info}, NumPy "
        f"{info['numpy']}, Python {info['python']}",
        f"- Load average (1, 5, 15 min) at start: {info['load_start']}; at end: "
        f"{compare.load_average()}",
        f"- Timing: {'quick smoke run, ' if args.quick else ''}float32, one process, calls "
        "interleaved, median of samples after warm-up; ratio = framework ms / fastrnn ms "
        "(>1: fastrnn faster)",
        f"- Agreement checked before timing (worst relative difference / tolerance: "
        f"{worst:.2e}; outputs {compare.OUTPUT_RTOL:g}, gradients {compare.GRAD_RTOL:g})",
    ]
    if torch_rows:
        lines += [
            "",
            "### PyTorch: `torch.nn` vs `fastrnn.torch`",
            "",
            "torch inference under `torch.inference_mode()`; fwd+bwd = forward + backward of "
            "`(out * dy).sum()` (gradients for input and weights). `fastrnn.ops` is the same "
            "work through fastrnn's functional API; the overhead column is fastrnn.torch − "
            "fastrnn.ops." + (f" Adapter overhead on the tiny shape: {overhead}." if tiny else ""),
            "",
            TORCH_HEADER,
            "|" + "---|" * 8,
            *(torch_table_row(r) for r in torch_rows),
        ]
    if keras_rows:
        lines += [
            "",
            "### Keras: stock layers vs `fastrnn.keras` (fit, per batch)",
            "",
            "`Sequential([Input((T, I)), <layer>(H), Dense(1)])`, SGD, MSE, same initial "
            "weights; time of one `train_on_batch` (forward, backward, update).",
            "",
            KERAS_HEADER,
            "|" + "---|" * 6,
            *(keras_table_row(r) for r in keras_rows),
        ]
    return "\n".join(lines)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads for all")
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument(
        "--shapes", default="", help="comma-separated shape names of shapes.py (default: all)"
    )
    parser.add_argument(
        "--frameworks", default="torch,keras", help="torch, keras or both (default)"
    )
    parser.add_argument(
        "--keras-backend",
        default="torch",
        choices=["torch", "tensorflow", "jax"],
        help="Keras backend of the Keras table (default torch)",
    )
    parser.add_argument("--output", type=Path, help="write the tables into this markdown file")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    names = [n for n in args.shapes.split(",") if n]
    unknown = set(names) - {s.name for s in shapes.SHAPES}
    if unknown:
        parser.error(f"unknown shapes {sorted(unknown)}; known: {[s.name for s in shapes.SHAPES]}")
    selected = [s for s in shapes.SHAPES if not names or s.name in names]
    frameworks = {f for f in args.frameworks.split(",") if f}
    if not frameworks <= {"torch", "keras"}:
        parser.error("--frameworks takes torch and/or keras")

    compare.set_threads(args.threads)
    info = {
        "cpu": compare.cpu_model(),
        "cores": f"{os.cpu_count()} logical; {args.threads} threads used",
        "isa": fastrnn._cpu.get_isa(),
        "fastrnn": fastrnn.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    info["load_start"] = compare.load_average()
    print(f"CPU {info['cpu']} ({info['cores']}); fastrnn ISA {info['isa']}", flush=True)
    plan = compare.Timing(args.quick)

    torch_rows = []
    if "torch" in frameworks:
        print(TORCH_HEADER, flush=True)
        for case in shapes.CASES:
            if case.shape not in selected:
                continue
            row = torch_row(case, plan)
            if not row["agreement"] <= 1.0:
                print(f"MISMATCH {case.id}: fastrnn.torch differs from torch.nn", file=sys.stderr)
                return 1
            torch_rows.append(row)
            print(torch_table_row(row), flush=True)

    keras_rows, keras_info = [], "Keras not run"
    if "keras" in frameworks:
        import keras

        backend = keras.backend.backend()
        keras_info = f"Keras {keras.__version__} ({backend} backend)"
        print(f"{keras_info}\n{KERAS_HEADER}", flush=True)
        for shape in selected:
            for cell in shapes.CELLS_TIMED:
                row = keras_row(shape, cell, plan)
                if not row["agreement"] <= 1.0:
                    print(f"MISMATCH {shape.label} {cell.name}: fastrnn.keras differs from "
                          "Keras", file=sys.stderr)  # fmt: skip
                    return 1
                keras_rows.append(row)
                print(keras_table_row(row), flush=True)

    if args.output is not None:
        compare.write_section(
            args.output,
            "frameworks",
            render(info, torch_rows, keras_rows, args, keras_info),
            "# fastrnn benchmarks",
        )
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
