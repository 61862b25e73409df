"""Weights in Fortran order (transposed views, as PyTorch's ``weight_ih.T``): ``fastrnn.ops``
copies them to C order with a cache-blocked transpose (``_cpu._transposed_copy``) instead of
NumPy's element-wise strided copy. The copy must be exact and the results identical to those
of C-ordered weights."""

from __future__ import annotations

import numpy as np
import pytest
from fastrnn import _backend, _cpu, ops

SHAPES = [(3, 17), (33, 5), (17, 64), (2, 2), (1, 7), (7, 1), (0, 5), (5, 0), (40, 33)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_prepare_copies_fortran_order_exactly(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    a = rng.standard_normal(shape[::-1]).astype(dtype).T  # F-contiguous view of `shape`
    a[..., :1] = np.nan  # NaN payloads and signed zeros survive a bit copy, not only values
    if a.size:
        a.flat[-1] = -0.0
    a.flags.writeable = False
    out = _backend.CPU.prepare(a, "kernel")
    assert out.shape == a.shape and out.dtype == a.dtype and out.flags.c_contiguous
    assert np.array_equal(out.view(np.uint8), np.ascontiguousarray(a).view(np.uint8))
    if not a.flags.c_contiguous:  # a vector or an empty array is both; it is used as it is
        assert not np.shares_memory(out, a)


@pytest.mark.parametrize(
    "cell,gates",
    [(ops.simple_rnn_forward, 1), (ops.lstm_forward, 4), (ops.gru_forward, 3)],
    ids=["simple_rnn", "lstm", "gru"],
)
def test_fortran_ordered_weights_give_identical_results(cell, gates):
    rng = np.random.default_rng(3)
    T, B, I, H = 5, 3, 17, 33  # noqa: E741 (the dimension legend)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    kernel = (rng.standard_normal((I, gates * H)) * 0.2).astype(np.float32)
    recurrent = (rng.standard_normal((H, gates * H)) * 0.2).astype(np.float32)
    want = cell(x, kernel, recurrent)
    got = cell(x, np.asfortranarray(kernel), np.asfortranarray(recurrent))
    assert np.asfortranarray(kernel).flags.f_contiguous
    for w, g in zip([want[0], *want[1]], [got[0], *got[1]]):
        assert np.array_equal(w, g)


def test_transposed_copy_rejects_what_it_cannot_copy():
    with pytest.raises(ValueError, match="2-D"):
        _cpu._transposed_copy(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(TypeError):
        _cpu._transposed_copy(np.zeros((2, 3), np.int32))  # no conversion: not float
    with pytest.raises(TypeError):
        _cpu._transposed_copy(np.zeros((3, 2), np.float32).T)  # not C-contiguous
