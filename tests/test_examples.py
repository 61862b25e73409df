"""Each example runs small and returns its metrics."""

from __future__ import annotations

import numpy as np
from fastrnn.examples import bidirectional, sunspots, text_generation


def test_sunspots_small(tmp_path):
    result = sunspots.main(epochs=3, plot=None)
    assert np.isfinite(result["train_rmse"]) and np.isfinite(result["test_rmse"])
    assert len(result["history"]["loss"]) == 3
    years, values = sunspots.load_sunspots()
    assert years[0] == 1700 and years[-1] == 2008 and len(values) == 309


def test_text_generation_small():
    result = text_generation.main(epochs=3, units=16, max_samples=128, sample_length=20)
    assert result["loss"][-1] < result["loss"][0]
    assert len(result["sample"]) == 24 + 20


def test_bidirectional_small():
    result = bidirectional.main(epochs=2, n_train=64, steps=6)
    assert 0.0 <= result["test_accuracy"] <= 1.0
