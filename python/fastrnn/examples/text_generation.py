"""Character-level text generation: Embedding + LSTM + softmax Dense on a bundled tiny text.

Trained with Adagrad and gradient clipping; the loss falls epoch by epoch, and a sample of
generated text is printed at the end.

Run: ``python -m fastrnn.examples.text_generation [--epochs 20]``
"""

from __future__ import annotations

import argparse
from importlib import resources

import numpy as np

from fastrnn.initializers import set_random_seed
from fastrnn.layers import LSTM, Dense, Embedding
from fastrnn.models import Sequential
from fastrnn.optimizers import Adagrad


def load_text() -> str:
    return resources.files("fastrnn.data").joinpath("tiny_text.txt").read_text()


def sample(
    model: Sequential,
    seed_text: str,
    length: int,
    chars: list,
    temperature: float,
    rng: np.random.Generator,
) -> str:
    """Generates ``length`` characters after ``seed_text``."""
    index = {c: i for i, c in enumerate(chars)}
    text = seed_text
    window = model.built_input_shape[1]
    for _ in range(length):
        ids = np.array([[index[c] for c in text[-window:]]])
        probs = model.predict(ids, verbose=0)[0].astype(np.float64)
        logits = np.log(np.maximum(probs, 1e-12)) / temperature
        p = np.exp(logits - logits.max())
        text += chars[rng.choice(len(chars), p=p / p.sum())]
    return text


def main(
    epochs: int = 20,
    seq_len: int = 24,
    units: int = 96,
    max_samples: int | None = None,
    learning_rate: float = 0.5,
    sample_length: int = 200,
    verbose: int = 0,
    seed: int = 0,
) -> dict:
    """Trains; returns ``{"loss": [per-epoch loss], "sample": generated text}``."""
    set_random_seed(seed)
    text = load_text()
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text])
    starts = np.arange(0, len(ids) - seq_len, 2)
    if max_samples is not None:
        starts = starts[:max_samples]
    x = np.stack([ids[s : s + seq_len] for s in starts])
    y = ids[starts + seq_len]
    model = Sequential(
        [
            Embedding(len(chars), 16, input_shape=(seq_len,)),
            LSTM(units),
            Dense(len(chars), activation="softmax"),
        ]
    )
    model.compile(
        optimizer=Adagrad(learning_rate=learning_rate, clipnorm=1.0),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=verbose)
    for epoch, loss in enumerate(history.history["loss"], 1):
        print(f"epoch {epoch:3d}  loss {loss:.4f}")
    generated = sample(
        model, text[:seq_len], sample_length, chars, 0.5, np.random.default_rng(seed)
    )
    print("Sample:\n" + generated)
    return {"loss": history.history["loss"], "sample": generated}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    main(epochs=args.epochs)
