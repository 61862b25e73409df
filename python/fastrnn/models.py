"""Sequential model: a stack of layers with compile / fit / evaluate / predict / summary / save.

Training runs each batch forward through the layers (masks flowing as in Keras), takes the
loss gradient, calls every layer's ``backward`` in reverse and lets the optimizer update the
weights in place.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from fastrnn import callbacks as callbacks_module
from fastrnn import losses as losses_module
from fastrnn import metrics as metrics_module
from fastrnn import optimizers as optimizers_module
from fastrnn import saving
from fastrnn.layers import Layer, deserialize, serialize
from fastrnn.layers.base import unique_name


def _format_shape(shape: Any) -> str:
    if isinstance(shape, list):
        return "[" + ", ".join(_format_shape(s) for s in shape) + "]"
    if isinstance(shape, tuple) and shape and isinstance(shape[0], tuple):
        return "[" + ", ".join(_format_shape(s) for s in shape) + "]"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _format_bytes(n: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.2f} B"


def _as_array(x: Any, argument: str) -> np.ndarray:
    if x is None:
        raise ValueError(f"{argument} must not be None.")
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - numpy conversion errors
        raise TypeError(f"{argument} must be convertible to a NumPy array: {exc}") from None


@saving.register_model
class Sequential:
    """A linear stack of layers.

    Args:
        layers: optional list of layers (more can be added with ``add``).
        name: model name, default ``"sequential"`` (Keras-style numbering).

    Example:
        >>> model = Sequential([SimpleRNN(3, input_shape=(12, 1)), Dense(1)])
        >>> model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        >>> history = model.fit(x, y, epochs=10, batch_size=32, validation_split=0.2)
        >>> model.predict(x).shape   # (N, 1)
    """

    def __init__(self, layers: list[Layer] | None = None, name: str | None = None) -> None:
        self.name = name or unique_name("sequential")
        self.layers: list[Layer] = []
        self.optimizer: optimizers_module.Optimizer | None = None
        self.loss: losses_module.Loss | None = None
        self.metrics_names: list[str] = []
        self.compiled = False
        self.stop_training = False
        self.history: callbacks_module.History | None = None
        self.built_input_shape: tuple | None = None
        for layer in layers or []:
            self.add(layer)

    # ---- structure ---------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        """Appends a layer (building it at once when the input shape is known).

        Raises:
            TypeError: ``layer`` is not a fastrnn layer.
            ValueError: a layer name already used in this model.
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a fastrnn layer, got {layer!r}.")
        if any(existing.name == layer.name for existing in self.layers):
            raise ValueError(f"A layer named {layer.name!r} is already in model {self.name!r}.")
        self.layers.append(layer)
        if len(self.layers) == 1 and layer._input_shape_arg is not None:
            self.build((None,) + layer._input_shape_arg)
        elif self.built_input_shape is not None:
            self.build(self.built_input_shape)

    def build(self, input_shape: tuple) -> None:
        """Builds every layer for inputs of ``input_shape`` (batch dimension first, may be None)."""
        shape = tuple(input_shape)
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built_input_shape = tuple(input_shape)

    @property
    def built(self) -> bool:
        return bool(self.layers) and all(layer.built for layer in self.layers)

    def _output_shapes(self) -> list[Any]:
        shape = self.built_input_shape
        shapes = []
        for layer in self.layers:
            shape = layer.compute_output_shape(shape) if shape is not None else None
            shapes.append(shape)
        return shapes

    @property
    def weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.trainable_weights]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every layer's weights, layer by layer in Keras's order."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: list) -> None:
        """Copies ``weights`` into the layers; everything is checked before anything is written.

        Raises:
            ValueError: the model is not built, wrong count or wrong shapes.
        """
        if not self.built:
            raise ValueError(f"Model {self.name!r} is not built; call it on data or build() first.")
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(
                f"set_weights on model {self.name!r} expects {len(own)} arrays, got {len(weights)}."
            )
        names = [n for layer in self.layers for n in layer.weight_names]
        for name, old, new in zip(names, own, weights):
            if np.shape(new) != old.shape:
                raise ValueError(
                    f"set_weights on model {self.name!r}: weight {name!r} has shape {old.shape}, "
                    f"got {np.shape(new)}."
                )
        for old, new in zip(own, weights):
            old[...] = new

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def reset_states(self) -> None:
        for layer in self.layers:
            if hasattr(layer, "reset_states"):
                layer.reset_states()

    # ---- forward / backward ----------------------------------------------------------------------
    def __call__(self, x: Any, training: bool = False) -> np.ndarray:
        y, _ = self._forward(np.asarray(x), training)
        return y

    def _forward(self, x: np.ndarray, training: bool) -> tuple[np.ndarray, Any]:
        if not self.layers:
            raise ValueError(f"Model {self.name!r} has no layers.")
        if not self.built:
            self.build((None,) + tuple(x.shape[1:]))
        mask = None
        for layer in self.layers:
            x = layer(x, mask=mask, training=training)
            if isinstance(x, (tuple, list)):
                raise ValueError(
                    f"Layer {layer.name!r} returns several outputs (return_state or "
                    "merge_mode=None); Sequential needs one output per layer."
                )
            mask = layer.output_mask
        return x, mask

    def _backward(self, dy: np.ndarray) -> list[np.ndarray]:
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
            if isinstance(dy, list):
                dy = dy[0]
            if dy is None:
                break
        grads = []
        for layer in self.layers:
            if layer.trainable:
                grads.extend(layer.gradients or [])
        return grads

    # ---- compile / fit ---------------------------------------------------------------------------
    def compile(
        self,
        optimizer: str | optimizers_module.Optimizer = "rmsprop",
        loss: str | losses_module.Loss | None = None,
        metrics: list[str] | None = None,
    ) -> None:
        """Configures training.

        Args:
            optimizer: name (``adam``, ``rmsprop``, ``sgd``, ``adagrad``; Keras defaults) or an
                Optimizer instance. Default ``"rmsprop"`` as Keras.
            loss: name (``mse``, ``mae``, ``binary_crossentropy``, ``categorical_crossentropy``,
                ``sparse_categorical_crossentropy`` and long forms) or a Loss instance.
            metrics: list of names: ``accuracy`` (kind inferred), ``mae``, ``mse`` ...

        Raises:
            ValueError: unknown optimizer, loss or metric name, or no loss.
        """
        if loss is None:
            raise ValueError("compile: loss is required (e.g. loss='mse').")
        opt = optimizers_module.get(optimizer)
        loss_obj = losses_module.get(loss)
        if isinstance(metrics, str):
            metrics = [metrics]
        names = [metrics_module.check(m) for m in (metrics or [])]
        self.optimizer, self.loss, self.metrics_names = opt, loss_obj, names
        self.compiled = True

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{what}: call compile() first.")

    def _check_xy(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        x, y = _as_array(x, "x"), _as_array(y, "y")
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
            raise ValueError(
                f"x and y must have the same number of samples, got x of shape {x.shape} and y "
                f"of shape {y.shape}."
            )
        if len(x) == 0:
            raise ValueError("x and y are empty.")
        return x, y

    def _loss_weights(self, mask: Any, y_pred: np.ndarray) -> np.ndarray | None:
        if mask is None or np.ndim(mask) != y_pred.ndim - 1:
            return None
        return np.asarray(mask, dtype=np.float64)

    def _metric_values(self, y: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name in self.metrics_names:
            fn = metrics_module.resolve(name, y, y_pred, self.loss.name)
            out[name] = fn(y, np.asarray(y_pred, np.float64))
        return out

    def train_on_batch(self, x: Any, y: Any) -> dict[str, float]:
        """One optimizer step on one batch; returns the batch's loss and metrics."""
        self._require_compiled("train_on_batch")
        x, y = self._check_xy(x, y)
        y_pred, mask = self._forward(x, training=True)
        weights = self._loss_weights(mask, y_pred)
        loss = self.loss(y, y_pred, weights)
        dy = self.loss.gradient(y, y_pred, weights).astype(y_pred.dtype)
        grads = self._backward(dy)
        self.optimizer.apply(grads, self.trainable_weights)
        logs = {"loss": loss}
        for name, values in self._metric_values(y, y_pred).items():
            logs[name] = float(np.mean(values))
        return logs

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: list[callbacks_module.Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: tuple | None = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
    ) -> callbacks_module.History:
        """Trains the model for a number of epochs.

        Args:
            x: inputs, first axis samples.
            y: targets, same number of samples.
            batch_size: default 32.
            epochs: last epoch index (exclusive), counting from ``initial_epoch``.
            verbose: ``"auto"``/1 progress bar with ETA and live metrics, 2 one line per epoch,
                0 silent.
            callbacks: list of Callback instances.
            validation_split: fraction in [0, 1) of the *last* samples held out (as Keras,
                taken before shuffling).
            validation_data: ``(x_val, y_val)``; overrides ``validation_split``.
            shuffle: reshuffle the training samples every epoch.
            initial_epoch: epoch to start from (for resuming).

        Returns:
            A History whose ``.history`` maps ``loss``, metric names and their ``val_`` forms to
            per-epoch lists.

        Raises:
            ValueError: x and y of different lengths, bad validation_split or batch_size.
            RuntimeError: the model is not compiled.
        """
        self._require_compiled("fit")
        x, y = self._check_xy(x, y)
        batch_size = 32 if batch_size is None else int(batch_size)
        if batch_size <= 0:
            raise ValueError(f"fit: batch_size must be positive, got {batch_size}.")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}.")
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val).")
            x_val, y_val = self._check_xy(*validation_data)
        elif validation_split > 0:
            split = int(len(x) * (1.0 - validation_split))
            if split == 0 or split == len(x):
                raise ValueError(
                    f"fit: validation_split={validation_split} leaves an empty training or "
                    f"validation set for {len(x)} samples."
                )
            x, x_val, y, y_val = x[:split], x[split:], y[:split], y[split:]
        else:
            x_val = y_val = None
        verbose = 1 if verbose == "auto" else int(verbose)
        n = len(x)
        steps = -(-n // batch_size)
        history = callbacks_module.History()
        cbs = list(callbacks or [])
        if verbose:
            cbs.append(callbacks_module.ProgbarLogger(verbose))
        cbs.append(history)
        params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        cb = callbacks_module.CallbackList(cbs, self, params)
        self.stop_training = False
        rng = np.random.default_rng()
        cb.on_train_begin({})
        for epoch in range(initial_epoch, epochs):
            cb.on_epoch_begin(epoch, {})
            order = rng.permutation(n) if shuffle else np.arange(n)
            totals: dict[str, float] = {}
            seen = 0
            logs: dict[str, float] = {}
            for step in range(steps):
                idx = order[step * batch_size : (step + 1) * batch_size]
                cb.on_train_batch_begin(step, {})
                batch_logs = self.train_on_batch(x[idx], y[idx])
                for key, value in batch_logs.items():
                    totals[key] = totals.get(key, 0.0) + value * len(idx)
                seen += len(idx)
                logs = {k: v / seen for k, v in totals.items()}
                cb.on_train_batch_end(step, dict(logs))
            if x_val is not None:
                val = self._evaluate_arrays(x_val, y_val, batch_size)
                logs.update({"val_" + k: v for k, v in val.items()})
            cb.on_epoch_end(epoch, dict(logs))
            if self.stop_training:
                break
        cb.on_train_end({})
        self.history = history
        history.model = self
        history.params = params
        return history

    def _evaluate_arrays(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
        totals = {"loss": 0.0}
        weight_total = 0.0
        metric_sums: dict[str, float] = {}
        metric_counts: dict[str, float] = {}
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            y_pred, mask = self._forward(xb, training=False)
            weights = self._loss_weights(mask, y_pred)
            totals["loss"] += self.loss(yb, y_pred, weights) * len(xb)
            weight_total += len(xb)
            for name, values in self._metric_values(yb, y_pred).items():
                metric_sums[name] = metric_sums.get(name, 0.0) + float(np.sum(values))
                metric_counts[name] = metric_counts.get(name, 0.0) + values.size
        out = {"loss": totals["loss"] / weight_total}
        for name in self.metrics_names:
            out[name] = metric_sums[name] / max(metric_counts[name], 1)
        return out

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        return_dict: bool = False,
    ) -> float | list[float] | dict[str, float]:
        """Loss and metrics on ``(x, y)`` in inference mode.

        Returns:
            The loss alone when no metrics were compiled, else ``[loss, *metrics]``; a dict
            with ``return_dict=True``.

        Raises:
            ValueError: x and y of different lengths.
            RuntimeError: the model is not compiled.
        """
        self._require_compiled("evaluate")
        x, y = self._check_xy(x, y)
        result = self._evaluate_arrays(x, y, 32 if batch_size is None else int(batch_size))
        if verbose not in (0, "0"):
            print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
        if return_dict:
            return result
        values = list(result.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = 0) -> np.ndarray:
        """Outputs for ``x`` in inference mode, in batches of ``batch_size`` (default 32)."""
        x = _as_array(x, "x")
        batch_size = 32 if batch_size is None else int(batch_size)
        if batch_size <= 0:
            raise ValueError(f"predict: batch_size must be positive, got {batch_size}.")
        outs = [
            self._forward(x[s : s + batch_size], training=False)[0]
            for s in range(0, len(x), batch_size)
        ]
        return np.concatenate(outs, axis=0)

    # ---- summary -----------------------------------------------------------------------------
    def summary(self, print_fn: Any = None, line_length: int | None = None) -> None:
        """Prints Keras's summary table: layers, output shapes and parameter counts."""
        print_fn = print_fn or print
        widths = [33, 24, 15]
        shapes = self._output_shapes()
        rows = []
        for layer, shape in zip(self.layers, shapes):
            shape_text = "?" if shape is None else _format_shape(shape)
            params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape_text, params))

        def line(left: str, mid: str, right: str, fill: str) -> str:
            return left + mid.join(fill * w for w in widths) + right

        def row(cells: tuple) -> str:
            parts = []
            for i, (cell, w) in enumerate(zip(cells, widths)):
                text = cell.rjust(w - 2) if i == 2 else cell.ljust(w - 2)
                parts.append(" " + text + " ")
            return "│" + "│".join(parts) + "│"

        out = [f'Model: "{self.name}"']
        out.append(line("┏", "┳", "┓", "━"))
        header = ("Layer (type)", "Output Shape", "Param #")
        cells = [
            " " + (h.rjust(w - 2) if i == 2 else h.ljust(w - 2)) + " "
            for i, (h, w) in enumerate(zip(header, widths))
        ]
        out.append("┃" + "┃".join(cells) + "┃")
        out.append(line("┡", "╇", "┩", "━"))
        for i, r in enumerate(rows):
            out.append(row(r))
            if i != len(rows) - 1:
                out.append(line("├", "┼", "┤", "─"))
        out.append(line("└", "┴", "┘", "─"))
        total = self.count_params()
        trainable = sum(layer.count_params() for layer in self.layers if layer.trainable)
        itemsize = 4
        out.append(f" Total params: {total:,} ({_format_bytes(total * itemsize)})")
        out.append(f" Trainable params: {trainable:,} ({_format_bytes(trainable * itemsize)})")
        out.append(
            f" Non-trainable params: {total - trainable:,} "
            f"({_format_bytes((total - trainable) * itemsize)})"
        )
        if self.optimizer is not None and self.optimizer.slots is not None:
            n = self.optimizer.count_params()
            out.append(f" Optimizer params: {n:,} ({_format_bytes(n * itemsize)})")
        print_fn("\n".join(out))

    # ---- config / saving -----------------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-compatible description: name, build input shape and the layers' configs."""
        return {
            "name": self.name,
            "build_input_shape": None
            if self.built_input_shape is None
            else list(self.built_input_shape),
            "layers": [serialize(layer) for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        """Rebuilds an (untrained) model from ``get_config``'s output.

        Raises:
            ValueError: malformed config or unknown layer classes.
        """
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("Sequential.from_config: config must be a dict with a 'layers' list.")
        model = cls([deserialize(spec) for spec in config["layers"]], name=config.get("name"))
        shape = config.get("build_input_shape")
        if shape is not None and not model.built:
            model.build(tuple(shape))
        return model

    def save(self, filepath: str) -> None:
        """Saves config, weights and optimizer state: ``*.keras`` as a Keras 3 archive, other
        names as a ``.fastrnn`` zip (see ``fastrnn.saving.save_model``)."""
        saving.save_model(self, filepath)

    def save_weights(self, filepath: str) -> None:
        """Saves only the weights: ``*.weights.h5`` in Keras 3's layout, other names as a
        fastrnn zip of .npy arrays (see ``fastrnn.saving.save_weights``)."""
        saving.save_weights(self, filepath)

    def load_weights(self, filepath: str, **kwargs: Any) -> None:
        """Loads weights from a fastrnn file, a ``.keras`` or a ``.weights.h5`` file (see
        ``fastrnn.saving.load_weights`` for the size limits in ``kwargs``)."""
        saving.load_weights(self, filepath, **kwargs)

    def __deepcopy__(self, memo: dict) -> Sequential:  # pragma: no cover - convenience
        clone = Sequential.from_config(copy.deepcopy(self.get_config()))
        if self.built:
            clone.set_weights(self.get_weights())
        return clone


def load_model(filepath: str, **kwargs: Any) -> Sequential:
    """Loads a ``.fastrnn`` file or a Keras 3 ``.keras`` archive (see ``fastrnn.saving.load_model``
    for ``compile`` and the size limits ``max_bytes``, ``max_entries``, ``max_ratio``)."""
    return saving.load_model(filepath, **kwargs)
