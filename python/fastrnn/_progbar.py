"""Console progress output as Keras 3 prints it: ``Progbar`` and the ``ProgbarLogger`` callback.

The text is Keras's, byte for byte apart from the timings: the same bar of 20 ``━``, the same ANSI
bold/colour codes, ``\\b``/``\\r`` redraws on POSIX consoles, ``ETA``, ``ms/step`` and metric
formats (``.4f``, or ``.4e`` for tiny values), ``Epoch i/n`` only when ``epochs > 1``, one line
per epoch with ``verbose=2``, and no bar for validation inside ``fit``.
"""

from __future__ import annotations

import math
import os
import sys
import time

from fastrnn.callbacks import Callback


def _write(text: str) -> None:
    stream = sys.stdout
    try:
        stream.write(text)
    except UnicodeEncodeError:  # a console that cannot show the bar characters
        encoding = getattr(stream, "encoding", None) or "utf-8"
        stream.write(text.encode(encoding, errors="ignore").decode(encoding))
    stream.flush()


def _format_time_per_unit(seconds: float, unit: str) -> str:
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f" {seconds * 1000:.0f}ms/{unit}"
    return f" {seconds * 1e6:.0f}us/{unit}"


def _format_value(value: float, signed: bool = True) -> str:
    big = abs(value) > 1e-3 if signed else value > 1e-3
    return f" {value:.4f}" if big else f" {value:.4e}"


class Progbar:
    """A progress bar with Keras's output.

    Args:
        target: total number of steps, None if unknown (``N/Unknown`` is shown).
        width: bar width in characters, default 20.
        verbose: 0 silent, 1 live bar, 2 one line when finished.
        interval: minimum seconds between redraws, default 0.05.
        unit_name: ``"step"`` (default) or e.g. ``"sample"``.

    Example:
        >>> bar = Progbar(10)
        >>> for i in range(10):
        ...     bar.update(i + 1, [("loss", 0.5)])
    """

    def __init__(
        self,
        target: int | None,
        width: int = 20,
        verbose: int = 1,
        interval: float = 0.05,
        unit_name: str = "step",
    ) -> None:
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self._dynamic_display = (
            (hasattr(sys.stdout, "isatty") and sys.stdout.isatty())
            or "ipykernel" in sys.modules
            or os.name == "posix"
            or "PYCHARM_HOSTED" in os.environ
        )
        self._values: dict[str, float] = {}
        self._values_order: list[str] = []
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step: float | None = None
        self._prev_total_width = 0

    def _step_duration(self, current: int, now: float) -> float:
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per_unit

    def update(self, current: int, values: list | None = None, finalize: bool | None = None):
        """Shows progress ``current`` with ``values`` (``(name, value)`` pairs, shown as given).

        ``finalize`` defaults to ``current >= target``.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for key, value in values or []:
            if key not in self._values_order:
                self._values_order.append(key)
            self._values[key] = float(value)
        now = time.time()
        per_unit = self._step_duration(current, now)
        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            message = ("\b" * self._prev_total_width + "\r") if self._dynamic_display else "\n"
            special = 0
            if self.target is not None and self.target > 0:
                digits = int(math.log10(self.target)) + 1
                count = f"{current:{digits}d}/{self.target}"
                bar = f"\x1b[1m{count}\x1b[0m "
                special += 8
                filled = int(self.width * current / self.target)
                if filled > 0:
                    bar += f"\x1b[32m{'━' * filled}\x1b[0m"
                    special += 9
                bar += f"\x1b[37m{'━' * (self.width - filled)}\x1b[0m"
                special += 9
            else:
                bar = f"{current:7d}/Unknown"
            message += bar
            if self.target is not None and self.target > 0 and not finalize:
                eta = per_unit * (self.target - current)
                if eta > 3600:
                    eta_text = f"{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}"
                elif eta > 60:
                    eta_text = f"{int(eta // 60)}:{int(eta % 60):02d}"
                else:
                    eta_text = f"{int(eta)}s"
                info = f" \x1b[1m{eta_text}\x1b[0m"
            else:
                info = f" \x1b[1m{now - self._start:.0f}s\x1b[0m"
            special += 8
            info += _format_time_per_unit(per_unit, self.unit_name)
            for key in self._values_order:
                info += f" - {key}:" + _format_value(self._values[key])
            message += info
            total_width = len(bar) + len(info) - special
            if self._prev_total_width > total_width:
                message += " " * (self._prev_total_width - total_width)
            if finalize:
                message += "\n"
            _write(message)
            self._prev_total_width = total_width
        elif self.verbose == 2 and finalize and self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            info = f"{current:{digits}d}/{self.target} - {now - self._start:.0f}s"
            info += " -" + _format_time_per_unit(per_unit, self.unit_name)
            for key in self._values_order:
                info += f" - {key}:" + _format_value(self._values[key], signed=False)
            _write(info + "\n")
        self._last_update = now


class ProgbarLogger(Callback):
    """Prints Keras's progress output for ``fit``, ``evaluate`` and ``predict``.

    ``fit``/``evaluate``/``predict`` add one themselves when ``verbose`` is not 0; the
    ``params`` they pass (``verbose``, ``epochs``, ``steps``) configure it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.progbar: Progbar | None = None
        self.target: int | None = None
        self.verbose: int = 1
        self.epochs = 1
        self.seen = 0
        self._called_in_fit = False

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else int(verbose)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def _reset(self) -> None:
        self.seen = 0
        self.progbar = None

    def _ensure(self) -> None:
        if self.progbar is None:
            self.progbar = Progbar(target=self.target, verbose=self.verbose)

    def _update(self, batch: int, logs: dict | None) -> None:
        self._ensure()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=False)

    def _finalize(self, logs: dict | None) -> None:
        self._ensure()
        if self.target is None:
            self.target = self.seen
            self.progbar.target = self.seen
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._called_in_fit = True  # validation inside fit stays silent

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._reset()
        self._ensure()
        if self.verbose and self.epochs > 1:
            _write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._update(batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._finalize(logs)

    def on_test_begin(self, logs: dict | None = None) -> None:
        if not self._called_in_fit:
            self._reset()
            self._ensure()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self._called_in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs: dict | None = None) -> None:
        if not self._called_in_fit:
            self._finalize(logs)

    def on_predict_begin(self, logs: dict | None = None) -> None:
        self._reset()
        self._ensure()

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._update(batch, None)

    def on_predict_end(self, logs: dict | None = None) -> None:
        self._finalize(logs)


__all__ = ["Progbar", "ProgbarLogger"]
