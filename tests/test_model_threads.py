"""Concurrent ``predict`` on one model gives, in every thread, exactly the serial results.

Issue 7 item 5: a mask kept on a shared layer object (``layer.output_mask``) could be read by
one thread after another thread's call had replaced it. Models now take each layer's mask and
cache from its return values; this test makes threads switch as often as the interpreter allows
while each predicts inputs padded differently.
"""

from __future__ import annotations

import sys
import threading

import fastrnn
import numpy as np
from fastrnn import Input, Model, Sequential
from fastrnn import layers as F

THREADS = 8
REPEATS = 40  # with batch_size=1, the code before the fix got ~9% of these wrong


def _inputs(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    batches = []
    for i in range(count):
        x = rng.standard_normal((5, 9, 4)).astype(np.float32)
        lengths = (np.arange(5) * (i + 2)) % 9 + 1  # a different padding in every batch
        x[np.arange(9)[None, :] >= lengths[:, None]] = 0.0
        batches.append(x)
    return batches


def _run_concurrently(predict, batches):
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        try:
            start.wait()
            for r in range(REPEATS):
                i = (t + r) % len(batches)
                results[(t, r)] = predict(batches[i])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
    return results


def _check(predict, batches):
    serial = [predict(x) for x in batches]
    results = _run_concurrently(predict, batches)
    for (t, r), got in results.items():
        expected = serial[(t + r) % len(batches)]
        np.testing.assert_array_equal(got, expected, err_msg=f"thread {t}, call {r}")


def test_sequential_with_masking_predicts_the_same_in_threads():
    fastrnn.set_random_seed(0)
    model = Sequential(
        [
            Input((9, 4)),
            F.Masking(),
            F.Bidirectional(F.LSTM(6, return_sequences=True)),
            F.GRU(5, return_sequences=True),
            F.SimpleRNN(3),
            F.Dense(2),
        ]
    )
    _check(lambda x: model.predict(x, batch_size=1, verbose=0), _inputs(6))


def test_functional_with_masks_and_shared_layers_in_threads():
    fastrnn.set_random_seed(1)
    seq = Input((9, 4))
    masked = F.Masking()(seq)
    shared = F.LSTM(4, return_sequences=True)
    a = shared(masked)
    b = shared(F.Dense(4)(masked))
    merged = F.Concatenate()([a, b])
    out = F.Dense(1)(F.Bidirectional(F.GRU(3))(merged))
    model = Model(seq, out)
    _check(lambda x: model.predict(x, batch_size=1, verbose=0), _inputs(5, seed=1))
    # Direct calls of the model object (not predict) are per-call too.
    _check(lambda x: model(x), _inputs(5, seed=2))
