"""Results are bitwise identical whatever the thread count (and across repeated calls)."""

from __future__ import annotations

import os
import subprocess
import sys

import fastrnn
import numpy as np
import pytest
from fastrnn import _cpu, ops
from harness import OPTIONS, Variant, make_case
from harness import run_forward_backward as run

VARIANTS = [
    Variant("simple_rnn"),
    Variant("lstm"),
    Variant("gru", reset_after=True),
    Variant("gru", reset_after=False),
]


@pytest.fixture
def restore_threads():
    yield
    fastrnn.set_num_threads(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
def test_thread_count_is_bitwise_invariant(rng, restore_threads, variant, dtype):
    # Per step B*G*H*H is large enough for the kernels to split units over threads, and T*B
    # large enough for the tiled input product to have several tiles.
    case = make_case(rng, variant, (40, 13, 45, 150), OPTIONS["full"], dtype)
    results = {}
    for threads in (1, 2, 3):
        fastrnn.set_num_threads(threads)
        assert fastrnn.get_num_threads() == threads
        results[threads] = run(ops, variant, case)
    for threads in (2, 3):
        for name, value in results[1].items():
            np.testing.assert_array_equal(results[threads][name], value, err_msg=name)


def test_default_threads_follow_openmp(restore_threads):
    fastrnn.set_num_threads(0)
    assert fastrnn.get_num_threads() >= 1
    with pytest.raises(ValueError, match="n must be"):
        fastrnn.set_num_threads(-1)


def test_isa_selection():
    isas = _cpu.available_isas()
    assert isas[0] == "portable"
    assert _cpu.get_isa() in isas
    with pytest.raises(ValueError, match="unknown isa"):
        _cpu.set_isa("sse9")


@pytest.mark.parametrize("isa", _cpu.available_isas())
def test_isa_environment_variable_forces_a_path(isa):
    code = "import fastrnn; print(fastrnn._cpu.get_isa())"
    env = {**os.environ, "FASTRNN_ISA": isa}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == isa
