"""The CUDA module's build and dispatch, checked without a GPU.

* With ``FASTRNN_EXPECT_CUDA=1`` (CI sets it where nvcc exists) ``fastrnn._cuda`` must import: a
  build that silently dropped the CUDA module fails here instead of skipping every GPU test.
* The dispatch tells "not built" from "built, but no usable GPU / CuPy", and refuses a call that
  mixes host and device arrays with ``TypeError``, whichever side ``x`` is on.
* The binding's argument checks that run before any CUDA call (type, dtype, contiguity) are
  reached with stand-in ``__cuda_array_interface__`` objects.
* ``block_product`` (the recurrent product of both CUDA paths, ``csrc/cuda/step_common.cuh``)
  runs on the CPU with its 256 threads as fibers (barriers and warp shuffles with CUDA's
  semantics, random scheduling between them) against plain dot products
  (``csrc/cuda/host_check``): its indexing, reductions and barriers are checked without a GPU.
* ``bench/gpu_session.sh --stub`` runs its own scripting (arguments, test selections, the
  results file appended slice by slice) without a GPU, so the first GPU sitting meets no
  scripting surprise.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastrnn import _backend, _cpu, ops


def _cuda_module():
    try:
        return importlib.import_module("fastrnn._cuda")
    except ImportError:
        return None


class FakeDeviceArray:
    """Exports ``__cuda_array_interface__`` without any device memory behind it."""

    def __init__(self, shape, typestr="<f4", strides=None, ptr=0):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(typestr)
        self.__cuda_array_interface__ = {
            "shape": self.shape,
            "typestr": typestr,
            "data": (ptr, False),
            "strides": strides,
            "version": 3,
        }


def test_cuda_module_built_when_expected():
    if os.environ.get("FASTRNN_EXPECT_CUDA") != "1":
        pytest.skip("FASTRNN_EXPECT_CUDA is not 1 (no CUDA compiler expected at build time)")
    import fastrnn._cuda as m  # noqa: F401 (the import is the test)

    for name in ("forward", "backward", "workspace_size", "device_count", "CELLS", "ACTIVATIONS"):
        assert hasattr(m, name), f"fastrnn._cuda lacks {name}"


def test_device_count_never_raises():
    m = _cuda_module()
    if m is None:
        pytest.skip("fastrnn._cuda not built")
    assert m.device_count() >= 0
    assert isinstance(m.device_status(), str)


@pytest.mark.parametrize(
    "cell,reset_after", [("simple_rnn", False), ("lstm", False), ("gru", True), ("gru", False)]
)
def test_workspace_size_matches_cpu(cell, reset_after):
    m = _cuda_module()
    if m is None:
        pytest.skip("fastrnn._cuda not built")
    for T, B, H in [(0, 3, 5), (7, 5, 17), (1, 1, 1)]:
        assert m.workspace_size(cell, T, B, H, reset_after) == _cpu.workspace_size(
            cell, T, B, H, reset_after
        )


def test_device_array_without_backend_is_a_clear_error():
    if _backend.cuda_available():
        pytest.skip("the CUDA backend is usable here (see test_cuda_parity.py)")
    x = FakeDeviceArray((3, 2, 4))
    expected = (
        _backend.CudaNotBuiltError if _cuda_module() is None else _backend.CudaUnavailableError
    )
    with pytest.raises(expected, match="fastrnn._cuda|CUDA module") as info:
        ops.simple_rnn_forward(x, np.zeros((4, 5), np.float32), np.zeros((5, 5), np.float32))
    if _cuda_module() is None:
        assert "not built" in str(info.value)
    else:
        assert "is built but" in str(info.value)


@pytest.mark.parametrize("which", ["kernel", "recurrent_kernel", "bias", "h0", "mask"])
def test_numpy_x_with_a_device_array_is_a_type_error(which):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    args = {
        "kernel": rng.standard_normal((4, 5)).astype(np.float32),
        "recurrent_kernel": rng.standard_normal((5, 5)).astype(np.float32),
        "bias": np.zeros(5, np.float32),
        "initial_state": [np.zeros((2, 5), np.float32)],
        "mask": np.ones((3, 2), bool),
    }
    fake = {
        "kernel": FakeDeviceArray((4, 5)),
        "recurrent_kernel": FakeDeviceArray((5, 5)),
        "bias": FakeDeviceArray((5,)),
        "h0": [FakeDeviceArray((2, 5))],
        "mask": FakeDeviceArray((3, 2), "|b1"),
    }[which]
    args["initial_state" if which == "h0" else which] = fake
    with pytest.raises(TypeError, match="mixing NumPy and CuPy"):
        ops.simple_rnn_forward(x, **args)


def _raw_forward_checks():
    """(id, x, exception, pattern) for checks the binding makes before touching the device."""
    return [
        ("numpy-x", np.zeros((3, 2, 4), np.float32), TypeError, "x must be a CUDA device array"),
        ("int-x", FakeDeviceArray((3, 2, 4), "<i4"), TypeError, "float32 or float64"),
        (
            "strided-x",
            FakeDeviceArray((3, 2, 4), "<f4", strides=(64, 32, 8)),
            ValueError,
            "x must be C-contiguous",
        ),
        ("2d-x", FakeDeviceArray((3, 2), "<f4"), ValueError, "x must be 3-D"),
    ]


@pytest.mark.parametrize("case", _raw_forward_checks(), ids=lambda c: c[0])
def test_raw_binding_checks_without_gpu(case):
    m = _cuda_module()
    if m is None:
        pytest.skip("fastrnn._cuda not built")
    _, x, exc, pattern = case
    k, r = FakeDeviceArray((4, 5)), FakeDeviceArray((5, 5))
    out, h = FakeDeviceArray((3, 2, 5)), FakeDeviceArray((2, 5))
    with pytest.raises(exc, match=pattern):
        m.forward("simple_rnn", x, k, r, outputs=out, h_last=h)


SESSION = Path(__file__).resolve().parent.parent / "bench" / "gpu_session.sh"


def _session(tmp_path, *args):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    env.pop("FASTRNN_GPU_STUB", None)
    return subprocess.run(
        [shutil.which("bash"), str(SESSION), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=SESSION.parent.parent,
    )


def test_gpu_session_refuses_unknown_steps_before_running_anything(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    for bad in (["--stub", "bench:333"], ["--stub", "env", "tests"], []):
        result = _session(tmp_path, *bad)
        assert result.returncode == 2, (bad, result.stdout, result.stderr)
        assert "unknown step" in result.stderr or "usage" in result.stderr
    assert not (tmp_path / "RESULTS_GPU.md").exists()


def test_gpu_session_stub_runs_the_test_and_bench_steps(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    pytest.importorskip("torch")  # compare_gpu.py's import, even in stub mode
    result = _session(tmp_path, "--stub", "test", "bench:256", "bench:1024")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "STUB MODE" in result.stdout
    assert "tests collected" in result.stdout  # the parity selections collected something
    text = (tmp_path / "RESULTS_GPU.md").read_text(encoding="utf-8")
    # two slices, each its own section with its 60 rows (5 B x 2 T x 3 cells x 2 modes)
    assert text.count("## H 256") == 1 and text.count("## H 1024") == 1
    assert text.count("\n| 256 | ") == 60 and text.count("\n| 1024 | ") == 60
    assert "STUB (not a measurement)" in text and "µs/step" in text
    assert (tmp_path / "gpu_session.log").stat().st_size > 0


ROOT = Path(__file__).resolve().parent.parent


def test_block_product_on_the_cpu(tmp_path):
    """Every (rows, gates, units per block, reduction length incl. a staged second chunk,
    partial tiles, clamped units) of block_product in float and double, global- and
    shared-memory weight layouts; fails on a wrong sum, a deadlock, a write out of bounds or an
    output whose epilogue did not run exactly once."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None or not sys.platform.startswith("linux"):
        pytest.skip("needs a C++ compiler and ucontext (Linux)")
    exe = tmp_path / "block_product_check"
    src = ROOT / "csrc" / "cuda" / "host_check"
    build = subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-O1",
            "-w",
            f"-I{src}",
            f"-I{ROOT / 'csrc' / 'include'}",
            f"-I{ROOT / 'csrc' / 'cuda'}",
            str(src / "block_product_check.cpp"),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every case matches" in result.stdout
