"""Training callbacks with Keras's arguments and behaviour.

Callback, CallbackList, History, ProgbarLogger, EarlyStopping, ModelCheckpoint,
ReduceLROnPlateau, LearningRateScheduler, LambdaCallback, CSVLogger, TerminateOnNaN.
"""

from __future__ import annotations

import collections
import csv
import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


class Callback:
    """Base class with Keras's hooks; override the ones you need.

    ``self.model`` is the model being trained and ``self.params`` holds ``epochs``, ``steps``
    and ``verbose``. ``logs`` dicts hold the running metric values (``loss``, ``val_loss`` ...).
    Set ``self.model.stop_training = True`` to stop after the current epoch.
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Keras's backwards-compatible alias, called by ``on_train_batch_begin``."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Keras's backwards-compatible alias, called by ``on_train_batch_end``."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs: dict | None = None) -> None: ...
    def on_test_end(self, logs: dict | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_begin(self, logs: dict | None = None) -> None: ...
    def on_predict_end(self, logs: dict | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None: ...


class CallbackList:
    """Dispatches each hook to a list of callbacks."""

    def __init__(self, callbacks: list[Callback], model: Any, params: dict) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {cb!r}.")
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def dispatch(*args: Any) -> None:
            for cb in self.callbacks:
                getattr(cb, hook)(*args)

        return dispatch


class History(Callback):
    """Records ``logs`` per epoch: ``history.history["loss"]`` etc.; returned by ``fit``."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def __getattr__(name: str):
    # ProgbarLogger (what fit prints, as Keras prints it) lives in fastrnn._progbar, which
    # imports this module; it is re-exported here lazily, where Keras users look for it.
    if name == "ProgbarLogger":
        from fastrnn._progbar import ProgbarLogger

        return ProgbarLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _mode_op(mode: str, monitor: str):
    """``"min"``/``"max"``; ``"auto"`` maximizes accuracies, AUC, precision and recall and
    minimizes losses and errors (Keras's metric directions), else maximizes names with "acc"."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}.")
    if mode == "auto":
        from fastrnn import metrics as metrics_module

        found = metrics_module.direction(monitor)
        if found is not None:
            return "max" if found == "up" else "min"
        mode = "max" if "acc" in monitor else "min"
    return mode


class EarlyStopping(Callback):
    """Stops training when a monitored quantity has stopped improving.

    Args:
        monitor: default ``"val_loss"``.
        min_delta: minimum change counted as an improvement (default 0).
        patience: epochs without improvement before stopping (default 0).
        verbose: 1 prints a message when stopping.
        mode: ``"auto"`` (max for names with "acc", else min), ``"min"`` or ``"max"``.
        baseline: the monitored value must beat this to count as improvement.
        restore_best_weights: restore the weights of the best epoch when stopping (and at the
            end of training when the best epoch was not the last).
        start_from_epoch: epochs to wait before monitoring.

    Example:
        >>> model.fit(x, y, validation_split=0.2, epochs=100,
        ...           callbacks=[EarlyStopping(patience=3, restore_best_weights=True)])
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _mode_op(mode, monitor)
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)

    def _better(self, current: float, reference: float) -> bool:
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = np.inf if self.mode == "min" else -np.inf
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is not among the logged values "
                f"{sorted(logs or {})}."
            )
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._better(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (or only its weights) after epochs.

    Args:
        filepath: path, may contain ``{epoch}`` and log names, e.g.
            ``"ckpt-{epoch:02d}-{val_loss:.3f}.fastrnn"``.
        monitor: default ``"val_loss"``; used with ``save_best_only``.
        verbose: 1 prints a line per save.
        save_best_only: only save when ``monitor`` improves.
        save_weights_only: write ``model.save_weights`` instead of ``model.save``.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        save_freq: only ``"epoch"`` is supported.

    Raises:
        ValueError: ``save_freq`` other than ``"epoch"``.
    """

    def __init__(
        self,
        filepath: str,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__()
        if save_freq != "epoch":
            raise ValueError("ModelCheckpoint: only save_freq='epoch' is supported.")
        self.filepath = str(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _mode_op(mode, monitor)
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = np.inf if self.mode == "min" else -np.inf

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                raise ValueError(
                    f"ModelCheckpoint: monitor {self.monitor!r} is not among the logged values "
                    f"{sorted(logs)}."
                )
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                return
            self.best = current
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")


# ---- learning-rate callbacks --------------------------------------------------------------------
def _monitor_improves(mode: str, monitor: str, model: Any, owner: str) -> str:
    """``"min"`` or ``"max"`` for ``mode``; ``"auto"`` as Keras 3's MonitorCallback decides it.

    Losses are minimized; other names by the direction of the model's metric of that name (Keras
    metric objects carry one) or of the known metric names.

    Raises:
        ValueError: ``"auto"`` and the direction of ``monitor`` is unknown.
    """
    if mode != "auto":
        return mode
    from fastrnn import metrics as metrics_module

    base = monitor.removeprefix("val_")
    for m in getattr(model, "metrics", None) or []:
        if getattr(m, "name", None) == base and hasattr(m, "_direction"):
            return "max" if m._direction == "up" else "min"
    found = metrics_module.direction(monitor)
    if found is None:
        raise ValueError(
            f"{owner} callback received monitor={monitor}, but fastrnn isn't able to "
            "automatically determine whether that metric should be maximized or minimized. Pass "
            "mode='max' in order to monitor based on the highest metric value, or pass "
            "mode='min' in order to use the lowest value."
        )
    return "max" if found == "up" else "min"


def _current_lr(optimizer: Any) -> float:
    """The learning rate as Keras reads it back: its float32 variable's value."""
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError('Optimizer must have a "learning_rate" attribute.')
    return float(np.float32(optimizer.learning_rate))


class ReduceLROnPlateau(Callback):
    """Reduces the learning rate when a monitored quantity has stopped improving.

    After ``patience`` epochs without improvement the optimizer's learning rate is multiplied by
    ``factor`` (not below ``min_lr``), then ``cooldown`` epochs pass before waiting starts again.
    Each epoch's logs get a ``learning_rate`` entry (so History records it), as in Keras.

    Args:
        monitor: default ``"val_loss"``.
        factor: default 0.1, < 1: ``new_lr = lr * factor``.
        patience: default 10, epochs without improvement before reducing.
        verbose: default 0; 1 prints a message when the rate is reduced.
        mode: ``"auto"`` (default: minimize losses, maximize accuracy/AUC/precision/recall ...),
            ``"min"`` or ``"max"``.
        min_delta: default 1e-4, the smallest change counted as an improvement.
        cooldown: default 0, epochs to wait after a reduction before counting again.
        min_lr: default 0.0, the lower bound on the learning rate.

    Raises:
        ValueError: ``factor >= 1``, an unknown ``mode``, or (at the first epoch end, with
            ``mode="auto"``) a monitored name whose direction is unknown.

    Example:
        >>> model.fit(x, y, validation_split=0.2, epochs=50,
        ...           callbacks=[ReduceLROnPlateau(factor=0.5, patience=3, min_lr=1e-5)])
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__()
        if not float(factor) < 1.0:
            raise ValueError(
                f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}"
            )
        if mode not in ("auto", "min", "max"):
            raise ValueError(
                f"ReduceLROnPlateau: mode must be 'auto', 'min' or 'max', got {mode!r}."
            )
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = mode
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._improves: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_improvement(self, current: float) -> bool:
        if self.best is None:
            return True
        if self._improves == "min":
            return current + self.min_delta < self.best
        return current - self.min_delta > self.best

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._improves is None:
            self._improves = _monitor_improves(
                self.mode, self.monitor, self.model, "ReduceLROnPlateau"
            )
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = _current_lr(optimizer)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not "
                f"available. Available metrics are: {','.join(logs)}.",
                stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = _current_lr(optimizer)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(
                            f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                            f"{new_lr}."
                        )
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of every epoch from ``schedule(epoch, lr)``.

    Args:
        schedule: a function ``(epoch, lr) -> new lr`` (epoch counted from 0, lr the current
            rate as a float) or, Keras's older form, ``(epoch) -> new lr``. It must return a
            float.
        verbose: default 0; 1 prints the rate set each epoch.

    Each epoch's logs get a ``learning_rate`` entry, as in Keras.

    Raises:
        ValueError: the optimizer has no ``learning_rate``, or the schedule returns something
            other than a float.

    Example:
        >>> def halve_every_10(epoch, lr):
        ...     return lr * 0.5 if epoch and epoch % 10 == 0 else lr
        >>> model.fit(x, y, epochs=30, callbacks=[LearningRateScheduler(halve_every_10)])
    """

    def __init__(self, schedule: Callable, verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got {schedule!r}.")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        lr = _current_lr(optimizer)
        try:  # Keras's new form first, its old one-argument form on TypeError
            learning_rate = self.schedule(epoch, lr)
        except TypeError:
            learning_rate = self.schedule(epoch)
        if not isinstance(learning_rate, (float, np.float32, np.float64)):
            raise ValueError(
                f"The output of the `schedule` function should be a float. Got: {learning_rate}"
            )
        optimizer.learning_rate = float(learning_rate)
        if self.verbose > 0:
            print(
                f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                f"{learning_rate}."
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = _current_lr(self.model.optimizer)


# ---- other callbacks ----
class LambdaCallback(Callback):
    """A callback made of plain functions given for Keras's hooks.

    Args:
        on_epoch_begin, on_epoch_end: ``f(epoch, logs)``.
        on_train_begin, on_train_end: ``f(logs)``.
        on_train_batch_begin, on_train_batch_end: ``f(batch, logs)``.
        **kwargs: other hooks with Keras's names (``on_batch_end``, ``on_test_begin`` ...),
            set on the callback as they are (as Keras does).

    Example:
        >>> losses = []
        >>> cb = LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append(logs["loss"]))
    """

    def __init__(
        self,
        on_epoch_begin: Callable | None = None,
        on_epoch_end: Callable | None = None,
        on_train_begin: Callable | None = None,
        on_train_end: Callable | None = None,
        on_train_batch_begin: Callable | None = None,
        on_train_batch_end: Callable | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.__dict__.update(kwargs)
        hooks = {
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
        }
        for hook, fn in hooks.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"LambdaCallback: {hook} must be callable, got {fn!r}.")
                setattr(self, hook, fn)


def _csv_value(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable) and not (isinstance(value, np.ndarray) and value.ndim == 0):
        return f'"[{", ".join(map(str, value))}]"'
    return value


class CSVLogger(Callback):
    """Streams each epoch's logs to a CSV file, as Keras writes it.

    The header is ``epoch`` then the log keys sorted; when no key starts with ``val_``, the
    ``val_`` forms are added too (written ``NA``), exactly as Keras does. Epochs are numbered
    from 0.

    Args:
        filename: path of the CSV file.
        separator: default ``","``.
        append: default False (overwrite); True appends, writing the header only to an empty or
            new file.

    Example:
        >>> model.fit(x, y, epochs=5, callbacks=[CSVLogger("training.csv")])
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}.")
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = bool(append)
        self.writer: Any = None
        self.keys: list[str] | None = None
        self.append_header = True
        self.csv_file: Any = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename) as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="")  # closed at train end
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys.extend([f"val_{k}" for k in self.keys])
        if self.writer is None:
            sep = self.sep

            class Dialect(csv.excel):
                delimiter = sep

            self.writer = csv.DictWriter(
                self.csv_file, fieldnames=["epoch"] + self.keys, dialect=Dialect
            )
            if self.append_header:
                self.writer.writeheader()
        row = collections.OrderedDict({"epoch": epoch})
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


class TerminateOnNaN(Callback):
    """Stops training when a batch's loss is NaN or infinite.

    Args:
        raise_error: default False: set ``model.stop_training`` (and print Keras's message);
            True: raise RuntimeError at once.

    Raises:
        RuntimeError: with ``raise_error=True``, on the first NaN/inf loss.
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and (np.isnan(loss) or np.isinf(loss)):
            if self.raise_error:
                raise RuntimeError(
                    f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                    "Terminating training immediately."
                )
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True
