"""pytest-benchmark suite: fastrnn vs PyTorch CPU, one benchmark group per shape/cell/mode.

Not part of the test run (pyproject's ``testpaths = ["tests"]``); run it explicitly::

    PYTHONPATH=python python -m pytest bench/test_bench_cpu.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=median,iqr,rounds

The shapes come from ``bench/shapes.py`` and the timed calls from ``bench/compare.py`` (which also
checks that the two agree). Threads: ``FASTRNN_BENCH_THREADS`` (default 2) for both.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")
pytest.importorskip("torch")


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


compare = _load_sibling("compare")
CASES = compare.shapes.CASES


@pytest.fixture(scope="module", autouse=True)
def _threads():
    compare.set_threads(int(os.environ.get("FASTRNN_BENCH_THREADS", compare.DEFAULT_THREADS)))


@pytest.mark.parametrize("impl", ["fastrnn", "torch"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_cpu(benchmark, case, impl):
    fn = compare.build_callables(case)[impl]
    benchmark.group = case.id
    benchmark.extra_info["gflop_per_call"] = compare.shapes.case_flops(case) / 1e9
    benchmark(fn)
