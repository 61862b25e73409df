"""Forecast yearly sunspot numbers with SimpleRNN(3, tanh) + Dense(1).

Data: yearly mean sunspot numbers 1700-2008 (public domain), bundled as package data.
MinMax scaling to [0, 1], windows of 12 years predicting the next year, first 80 % of the
windows for training and the last 20 % for testing. Prints train and test RMSE (in sunspot
units) and, when matplotlib is installed, writes an actual-vs-predicted plot.

Run: ``python -m fastrnn.examples.sunspots [--epochs 100] [--plot sunspots.png]``
"""

from __future__ import annotations

import argparse
from importlib import resources

import numpy as np

from fastrnn.initializers import set_random_seed
from fastrnn.layers import Dense, SimpleRNN
from fastrnn.models import Sequential


def load_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """Returns (years, values) from the bundled CSV."""
    text = resources.files("fastrnn.data").joinpath("sunspots.csv").read_text()
    data = np.loadtxt(text.splitlines()[1:], delimiter=",")
    return data[:, 0].astype(int), data[:, 1]


def make_windows(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """x (N, window, 1) of consecutive values and y (N, 1) the value that follows each."""
    x = np.stack([series[i : i + window] for i in range(len(series) - window)])
    return x[..., None].astype(np.float32), series[window:, None].astype(np.float32)


def main(
    epochs: int = 100,
    units: int = 3,
    window: int = 12,
    batch_size: int = 8,
    learning_rate: float = 0.01,
    plot: str | None = None,
    verbose: int = 0,
    seed: int = 0,
) -> dict:
    """Trains and evaluates; returns ``{"train_rmse", "test_rmse", "history"}``."""
    set_random_seed(seed)
    years, values = load_sunspots()
    lo, hi = values.min(), values.max()
    scaled = (values - lo) / (hi - lo)
    x, y = make_windows(scaled, window)
    split = int(0.8 * len(x))
    x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]

    from fastrnn.optimizers import Adam

    model = Sequential([SimpleRNN(units, activation="tanh", input_shape=(window, 1)), Dense(1)])
    model.compile(optimizer=Adam(learning_rate), loss="mse")
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=verbose)

    def rmse(xs, ys):
        pred = model.predict(xs, verbose=0) * (hi - lo) + lo
        return float(np.sqrt(np.mean((pred - (ys * (hi - lo) + lo)) ** 2))), pred

    train_rmse, train_pred = rmse(x_train, y_train)
    test_rmse, test_pred = rmse(x_test, y_test)
    print(f"Train RMSE: {train_rmse:.3f} sunspots")
    print(f"Test RMSE:  {test_rmse:.3f} sunspots")
    if plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed; skipping the plot (pip install matplotlib).")
        else:
            fig, ax = plt.subplots(figsize=(10, 4))
            ax.plot(years[window:], values[window:], label="actual")
            ax.plot(years[window : window + split], train_pred[:, 0], label="predicted (train)")
            ax.plot(years[window + split :], test_pred[:, 0], label="predicted (test)")
            ax.set_xlabel("year")
            ax.set_ylabel("sunspot number")
            ax.legend()
            fig.tight_layout()
            fig.savefig(plot)
            print(f"Wrote {plot}")
    return {"train_rmse": train_rmse, "test_rmse": test_rmse, "history": history.history}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--plot", default="sunspots.png")
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args()
    main(epochs=args.epochs, plot=args.plot, verbose=args.verbose)
