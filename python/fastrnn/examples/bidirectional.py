"""Stacked recurrent layers and a Bidirectional GRU classifier on a synthetic sequence task.

Task: each sequence holds noise plus one marker pulse (+1 on a flag channel); the label is 1 when
the pulse lies in the first half of the sequence. A stack LSTM(return_sequences=True) ->
Bidirectional(GRU) -> Dense(sigmoid) reaches about 92 % test accuracy with the defaults (seed 0).

Run: ``python -m fastrnn.examples.bidirectional``
"""

from __future__ import annotations

import numpy as np

from fastrnn.initializers import set_random_seed
from fastrnn.layers import GRU, LSTM, Bidirectional, Dense
from fastrnn.models import Sequential
from fastrnn.optimizers import Adam


def make_data(n: int, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0, 0.3, (n, steps, 2)).astype(np.float32)
    pos = rng.integers(0, steps, n)
    x[np.arange(n), pos, 1] += 1.0
    y = (pos < steps // 2).astype(np.float32)[:, None]
    return x, y


def main(
    epochs: int = 30, n_train: int = 1000, steps: int = 16, verbose: int = 0, seed: int = 0
) -> dict:
    """Trains; returns ``{"test_accuracy", "history"}``."""
    set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = make_data(n_train, steps, rng)
    x_test, y_test = make_data(max(n_train // 4, 10), steps, rng)
    model = Sequential(
        [
            LSTM(16, return_sequences=True, input_shape=(steps, 2)),
            Bidirectional(GRU(8)),
            Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    model.summary()
    history = model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.1, verbose=verbose)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test accuracy: {accuracy:.3f} (loss {loss:.4f})")
    return {"test_accuracy": accuracy, "history": history.history}


if __name__ == "__main__":
    main(verbose=2)
