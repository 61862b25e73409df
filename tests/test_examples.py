"""Each example runs small and returns its metrics."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fastrnn.examples import bidirectional, sunspots, text_generation, tune_sunspots


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


@pytest.mark.parametrize("search", ["keras-tuner", "sklearn"])
def test_tune_sunspots_small(search, tmp_path):
    if search == "keras-tuner":
        os.environ["KERAS_BACKEND"] = "torch"  # as the rest of the suite, if keras loads here
        pytest.importorskip("keras_tuner")
    else:
        pytest.importorskip("sklearn")
    result = tune_sunspots.main(
        search=search, max_trials=3, epochs=2, units=(2, 4), cv=2, directory=str(tmp_path)
    )
    assert result["search"] == search and len(result["trials"]) == 3
    for units, learning_rate, val_rmse in result["trials"]:
        assert 2 <= units <= 4 and 1e-3 <= learning_rate <= 1e-1 and np.isfinite(val_rmse)
    best = min(result["trials"], key=lambda t: t[2])
    assert (result["best_units"], result["best_learning_rate"]) == best[:2]
    assert result["val_rmse"] == pytest.approx(best[2], rel=1e-9)
    assert 0 < result["test_rmse"] < 200  # sunspots: the series spans 0 to 190
