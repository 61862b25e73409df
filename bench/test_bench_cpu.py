"""pytest-benchmark suite: fastrnn vs PyTorch CPU, one benchmark group per shape/cell/mode.

Not part of the test run (pyproject's ``testpaths = ["tests"]``); run it explicitly::

    PYTHONPATH=python python -m pytest bench/test_bench_cpu.py --benchmark-only \\
        --benchmark-group-by=group --benchmark-columns=median,iqr,rounds

The shapes come from ``bench/shapes.py`` and the timed calls from ``bench/benchlib.py`` (which
``compare.py`` also uses, after checking that the two agree). Threads: ``FASTRNN_BENCH_THREADS``
(default 2) for both. Rows share one process here; ``compare.py`` runs each in a fresh one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")
pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))

import benchlib  # noqa: E402
import shapes  # noqa: E402

CASES = shapes.CASES


@pytest.fixture(scope="module", autouse=True)
def _threads():
    benchlib.set_threads(int(os.environ.get("FASTRNN_BENCH_THREADS", "2")))


@pytest.mark.parametrize("impl", ["fastrnn", "torch"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_cpu(benchmark, case, impl):
    fn = benchlib.build_callables(case)[impl]
    benchmark.group = case.id
    benchmark.extra_info["gflop_per_call"] = shapes.case_flops(case) / 1e9
    benchmark(fn)
