"""Optimizers with Keras 3's update rules and defaults, and learning-rate schedules.

Optimizers: SGD, Adam, AdamW, Nadam, RMSprop, Adagrad. An optimizer updates a list of NumPy
arrays in place from a list of gradients of the same shapes. Each step, as in Keras 3's
``BaseOptimizer.apply``: the learning rate is read (a schedule is evaluated at ``iterations``,
the number of steps already taken), gradients are unscaled (``loss_scale_factor``) and clipped,
decoupled weight decay ``w -= w * weight_decay * learning_rate`` is applied to every variable not
excluded, then the optimizer's own update, then ``iterations`` grows by one.

The state (``iterations`` and one set of slot arrays per variable) is exposed by
``get_state``/``set_state`` so that ``save``/``load_model`` restore it exactly; schedules are
saved in the optimizer's config (``serialize``/``deserialize``).

Learning-rate schedules live in ``fastrnn.optimizers.schedules`` (as in Keras):
``ExponentialDecay``, ``PiecewiseConstantDecay``, ``PolynomialDecay``, ``InverseTimeDecay``,
``CosineDecay``, ``CosineDecayRestarts`` and the ``LearningRateSchedule`` base class.
"""

from __future__ import annotations

import math
import re
import sys
import types
import warnings
from typing import Any

import numpy as np


# ---- learning-rate schedules ---------------------------------------------------------------------
class LearningRateSchedule:
    """Base class of learning-rate schedules: ``schedule(step) -> learning rate``.

    ``step`` is the optimizer's ``iterations`` (0 for the first update). Subclasses implement
    ``__call__`` and, to be saved with a model, ``get_config`` (``from_config`` calls the class
    with the config's items). A subclass defined by the user is found by ``deserialize`` by its
    class name once the class is defined.

    Example:
        >>> class InverseSqrt(LearningRateSchedule):
        ...     def __init__(self, base): self.base = base
        ...     def __call__(self, step): return self.base / math.sqrt(step + 1)
        ...     def get_config(self): return {"base": self.base}
        >>> opt = Adam(learning_rate=InverseSqrt(0.01))
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override __call__(self, step)."
        )

    def get_config(self) -> dict:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override get_config() to be "
            "serializable."
        )

    @classmethod
    def from_config(cls, config: dict) -> LearningRateSchedule:
        return cls(**config)


def _positive_steps(value: Any, argument: str, owner: str) -> Any:
    try:
        ok = float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{owner}: {argument} must be > 0, got {value!r}.")
    return value


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    Args:
        initial_learning_rate: float.
        decay_steps: > 0.
        decay_rate: float.
        staircase: default False; True uses ``step // decay_steps`` (decay at discrete steps).
        name: default ``"ExponentialDecay"``.

    Raises:
        ValueError: ``decay_steps`` not positive.

    Example:
        >>> opt = SGD(learning_rate=ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96))
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
        name: str = "ExponentialDecay",
    ) -> None:
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _positive_steps(decay_steps, "decay_steps", "ExponentialDecay")
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step: int) -> float:
        p = float(step) / float(self.decay_steps)
        if self.staircase:
            p = math.floor(p)
        return float(self.initial_learning_rate) * float(self.decay_rate) ** p

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[1]`` up to ``boundaries[1]`` ...,
    ``values[-1]`` after the last boundary.

    Args:
        boundaries: strictly increasing step numbers.
        values: one more value than boundaries.
        name: default ``"PiecewiseConstant"``.

    Raises:
        ValueError: ``len(values) != len(boundaries) + 1`` or boundaries not increasing.
    """

    def __init__(self, boundaries: list, values: list, name: str = "PiecewiseConstant") -> None:
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "PiecewiseConstantDecay: the length of boundaries should be 1 less than the "
                f"length of values, got boundaries={boundaries} and values={values}."
            )
        if any(b >= a for b, a in zip(boundaries, boundaries[1:])):
            raise ValueError(
                f"PiecewiseConstantDecay: boundaries must be strictly increasing, got {boundaries}."
            )
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return float(value)
        return float(self.values[-1])

    def get_config(self) -> dict:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """Decays from ``initial_learning_rate`` to ``end_learning_rate`` over ``decay_steps``:
    ``(initial - end) * (1 - step / decay_steps) ** power + end``.

    Args:
        initial_learning_rate: float.
        decay_steps: > 0.
        end_learning_rate: default 1e-4.
        power: default 1.0.
        cycle: default False; True restarts at the next multiple of ``decay_steps``.
        name: default ``"PolynomialDecay"``.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
        name: str = "PolynomialDecay",
    ) -> None:
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _positive_steps(decay_steps, "decay_steps", "PolynomialDecay")
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name

    def __call__(self, step: int) -> float:
        step = float(step)
        decay_steps = float(self.decay_steps)
        if self.cycle:
            decay_steps *= 1.0 if step == 0 else math.ceil(step / decay_steps)
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        initial, end = float(self.initial_learning_rate), float(self.end_learning_rate)
        return (initial - end) * (1 - p) ** float(self.power) + end

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
            "name": self.name,
        }


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``.

    Args:
        initial_learning_rate: float.
        decay_steps: > 0.
        decay_rate: float.
        staircase: default False; True uses ``floor(step / decay_steps)``.
        name: default ``"InverseTimeDecay"``.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
        name: str = "InverseTimeDecay",
    ) -> None:
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _positive_steps(decay_steps, "decay_steps", "InverseTimeDecay")
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step: int) -> float:
        p = float(step) / float(self.decay_steps)
        if self.staircase:
            p = math.floor(p)
        return float(self.initial_learning_rate) / (1.0 + float(self.decay_rate) * p)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup, then cosine decay (Loshchilov & Hutter 2016, SGDR).

    Without ``warmup_target``: ``initial * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps))
    + alpha)`` with ``s = min(step, decay_steps)``. With it: a linear ramp from
    ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``, then the cosine decay
    from ``warmup_target``.

    Args:
        initial_learning_rate: float.
        decay_steps: > 0.
        alpha: default 0.0, the final rate as a fraction of the decay's start.
        name: default ``"CosineDecay"``.
        warmup_target: default None (no warmup).
        warmup_steps: default 0.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        name: str = "CosineDecay",
        warmup_target: float | None = None,
        warmup_steps: int = 0,
    ) -> None:
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _positive_steps(decay_steps, "decay_steps", "CosineDecay")
        self.alpha = alpha
        self.name = name
        self.warmup_target = warmup_target
        self.warmup_steps = warmup_steps

    def _decay(self, step: float, start: float) -> float:
        fraction = step / float(self.decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return start * ((1 - float(self.alpha)) * cosine + float(self.alpha))

    def __call__(self, step: int) -> float:
        initial = float(self.initial_learning_rate)
        step = float(step)
        if self.warmup_target is None:
            return self._decay(min(step, float(self.decay_steps)), initial)
        warmup_steps = float(self.warmup_steps)
        target = float(self.warmup_target)
        step = min(step, float(self.decay_steps) + warmup_steps)
        if step < warmup_steps:
            return (target - initial) * (step / warmup_steps) + initial
        return self._decay(step - warmup_steps, target)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): each period ``t_mul`` times longer than the last,
    restarting at ``m_mul`` times the previous period's initial rate.

    Args:
        initial_learning_rate: float.
        first_decay_steps: > 0, the first period's length.
        t_mul: default 2.0.
        m_mul: default 1.0.
        alpha: default 0.0, the minimum as a fraction of ``initial_learning_rate``.
        name: default ``"SGDRDecay"``.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        first_decay_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
        name: str = "SGDRDecay",
    ) -> None:
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = _positive_steps(
            first_decay_steps, "first_decay_steps", "CosineDecayRestarts"
        )
        self._t_mul = t_mul
        self._m_mul = m_mul
        self.alpha = alpha
        self.name = name

    def __call__(self, step: int) -> float:
        fraction = float(step) / float(self.first_decay_steps)
        t_mul, m_mul = float(self._t_mul), float(self._m_mul)
        if t_mul == 1.0:
            restart = math.floor(fraction)
            fraction -= restart
        else:
            restart = math.floor(math.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
            done = (1.0 - t_mul**restart) / (1.0 - t_mul)
            fraction = (fraction - done) / t_mul**restart
        cosine = 0.5 * m_mul**restart * (1.0 + math.cos(math.pi * fraction))
        alpha = float(self.alpha)
        return float(self.initial_learning_rate) * ((1 - alpha) * cosine + alpha)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self._t_mul,
            "m_mul": self._m_mul,
            "alpha": self.alpha,
            "name": self.name,
        }


def _schedule_classes() -> dict[str, type]:
    """Every LearningRateSchedule subclass defined so far (built-in and the user's), by name."""
    found: dict[str, type] = {}
    todo = [LearningRateSchedule]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            found.setdefault(sub.__name__, sub)
            todo.append(sub)
    return found


def serialize_schedule(schedule: LearningRateSchedule) -> dict:
    """``{"class_name": ..., "config": ...}`` for a schedule (JSON-compatible)."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize_schedule(spec: dict) -> LearningRateSchedule:
    """Rebuilds a schedule from ``serialize_schedule``'s output (also the user's subclasses).

    Raises:
        ValueError: unknown class name or malformed spec.
    """
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"A schedule spec needs 'class_name' and 'config', got {spec!r}.")
    cls = _schedule_classes().get(spec["class_name"])
    if cls is None:
        raise ValueError(
            f"Unknown learning rate schedule {spec['class_name']!r}; define (import) the class "
            "before loading."
        )
    return cls.from_config(dict(spec.get("config") or {}))


# ``fastrnn.optimizers.schedules.ExponentialDecay`` etc., as in Keras.
schedules = types.ModuleType(
    __name__ + ".schedules", "Learning-rate schedules (see fastrnn.optimizers)."
)
for _cls in (
    LearningRateSchedule,
    ExponentialDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
    InverseTimeDecay,
    CosineDecay,
    CosineDecayRestarts,
):
    setattr(schedules, _cls.__name__, _cls)
schedules.serialize = serialize_schedule
schedules.deserialize = deserialize_schedule
sys.modules[schedules.__name__] = schedules


# ---- optimizers ----
def _check_learning_rate(value: Any, owner: str) -> float | LearningRateSchedule | Any:
    if isinstance(value, LearningRateSchedule) or (
        callable(value) and not isinstance(value, (int, float, np.number))
    ):
        return value
    try:
        lr = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"{owner}: learning_rate must be a float, a LearningRateSchedule or a callable, got "
            f"{value!r}."
        ) from None
    if not (np.isfinite(lr) and lr >= 0):
        raise ValueError(f"{owner}: learning_rate must be a finite number >= 0, got {value!r}.")
    return lr


class Optimizer:
    """Base class: learning rate (or schedule), clipping, weight decay, slot bookkeeping.

    Args:
        learning_rate: float >= 0, a ``LearningRateSchedule`` (evaluated at ``iterations``
            each step) or a zero-argument callable returning the rate.
        weight_decay: default None; decoupled weight decay: every step, before the update,
            ``w -= w * weight_decay * learning_rate`` for each variable not excluded with
            ``exclude_from_weight_decay`` (Keras 3's rule).
        clipnorm: clip each gradient to this L2 norm.
        clipvalue: clip each gradient element to [-clipvalue, clipvalue].
        global_clipnorm: scale all gradients together so their joint L2 norm is at most this.
        use_ema, ema_momentum, ema_overwrite_frequency, gradient_accumulation_steps: Keras
            arguments fastrnn does not implement; only their defaults are accepted.
        loss_scale_factor: default None; gradients are divided by it before anything else.
        name: optional name (default: the class name in lower case).

    Raises:
        ValueError: a negative learning rate or weight decay, a non-positive clipping value, more
            than one of clipnorm/clipvalue/global_clipnorm, or an unsupported Keras argument set.
        TypeError: a learning rate that is neither a number, a schedule nor a callable.
    """

    _slot_names: tuple = ()
    _extra_variables = 0  # scalar state Keras keeps as a variable (Nadam's momentum product)

    def __init__(
        self,
        learning_rate: Any,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
    ) -> None:
        cls = type(self).__name__
        if use_ema or ema_overwrite_frequency or gradient_accumulation_steps:
            raise ValueError(
                f"{cls}: use_ema, ema_overwrite_frequency and gradient_accumulation_steps are not "
                "supported by fastrnn; leave them at their defaults."
            )
        self._learning_rate = _check_learning_rate(learning_rate, cls)
        for key, value in (
            ("clipnorm", clipnorm),
            ("clipvalue", clipvalue),
            ("global_clipnorm", global_clipnorm),
            ("loss_scale_factor", loss_scale_factor),
        ):
            if value is not None and not float(value) > 0:
                raise ValueError(f"{cls}: {key} must be > 0, got {value!r}.")
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                f"{cls}: only one of clipnorm, clipvalue and global_clipnorm can be set."
            )
        if weight_decay is not None:
            try:
                weight_decay = float(weight_decay)
            except (TypeError, ValueError):
                raise TypeError(
                    f"{cls}: weight_decay must be a float or None, got {weight_decay!r}."
                ) from None
            if not (np.isfinite(weight_decay) and weight_decay >= 0):
                raise ValueError(f"{cls}: weight_decay must be >= 0, got {weight_decay!r}.")
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.loss_scale_factor = loss_scale_factor
        self.ema_momentum = ema_momentum
        self.name = name or cls.lower()
        self.iterations = 0
        self.slots: list[list[np.ndarray]] | None = None
        self._exclude_ids: set[int] = set()
        self._exclude_pattern: re.Pattern | None = None

    # ---- learning rate -----------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The current learning rate (a schedule evaluated at ``iterations``).

        Settable (e.g. by ``ReduceLROnPlateau``) to a float, a schedule or a callable; as in
        Keras, a float cannot replace a schedule given at construction.
        """
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            return float(lr(self.iterations))
        if callable(lr):
            return float(lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        value = _check_learning_rate(value, type(self).__name__)
        if isinstance(self._learning_rate, LearningRateSchedule) and not callable(value):
            raise TypeError(
                "This optimizer was created with a LearningRateSchedule as its learning_rate, "
                "hence its learning rate is not settable. If you need the learning rate to be "
                "settable, create the optimizer with a float learning_rate."
            )
        self._learning_rate = value

    # ---- weight decay --------------------------------------------------------------------------
    def exclude_from_weight_decay(
        self, var_list: list | None = None, var_names: list[str] | None = None
    ) -> None:
        """Leaves variables out of weight decay (call before the first ``apply``).

        Args:
            var_list: arrays to exclude (matched by identity).
            var_names: substrings; a variable whose name contains one is excluded (names are
                those passed to ``apply(..., names=...)``, e.g. ``"bias"``).

        Raises:
            ValueError: the optimizer already has its slots (it was built).
        """
        if self.slots is not None:
            raise ValueError(
                "exclude_from_weight_decay() can only be configured before the optimizer is built."
            )
        self._exclude_ids = {id(v) for v in (var_list or [])}
        names = list(var_names or [])
        self._exclude_pattern = re.compile("|".join(map(re.escape, names))) if names else None

    def _use_weight_decay(self, variable: np.ndarray, name: str | None) -> bool:
        if id(variable) in self._exclude_ids:
            return False
        return not (
            self._exclude_pattern is not None and name and self._exclude_pattern.search(name)
        )

    # ---- state -------------------------------------------------------------------------------
    def build(self, variables: list[np.ndarray]) -> None:
        """Creates the slot arrays for ``variables`` (called by the first ``apply``)."""
        self.slots = [[self._init_slot(name, v) for name in self._slot_names] for v in variables]

    def _init_slot(self, name: str, v: np.ndarray) -> np.ndarray:
        return np.zeros_like(v)

    def get_state(self) -> tuple[int, list[np.ndarray]]:
        """(iterations, flat list of slot arrays) — what save() writes."""
        flat = [s for per_var in (self.slots or []) for s in per_var]
        return self.iterations, flat

    def set_state(self, iterations: int, flat: list[np.ndarray], variables: list) -> None:
        self.build(variables)
        n = len(self._slot_names)
        if len(flat) != n * len(variables):
            raise ValueError(
                f"{type(self).__name__}: optimizer state holds {len(flat)} arrays, expected "
                f"{n * len(variables)}."
            )
        for i, per_var in enumerate(self.slots):
            for j, slot in enumerate(per_var):
                src = np.asarray(flat[i * n + j])
                if src.shape != slot.shape:
                    raise ValueError("Optimizer state does not match the model's weights.")
                slot[...] = src
        self.iterations = int(iterations)

    def count_params(self) -> int:
        """What Keras's summary counts as optimizer params: its variables (iterations, the
        learning rate when it is a number, the slots and any extra scalar state)."""
        numeric_lr = not callable(self._learning_rate)
        slots = sum(s.size for per_var in (self.slots or []) for s in per_var)
        return 1 + int(numeric_lr) + self._extra_variables + slots

    # ---- update --------------------------------------------------------------------------------
    def _clip(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        if self.clipvalue is not None:
            grads = [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            out = []
            for g in grads:
                norm = np.sqrt(np.sum(np.square(g, dtype=np.float64)))
                out.append(g * (self.clipnorm / norm) if norm > self.clipnorm else g)
            grads = out
        if self.global_clipnorm is not None:
            norm = np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in grads))
            if norm > self.global_clipnorm:
                grads = [g * (self.global_clipnorm / norm) for g in grads]
        return grads

    def apply(
        self, grads: list[np.ndarray], variables: list[np.ndarray], names: list[str] | None = None
    ) -> None:
        """Updates ``variables`` in place from ``grads`` (same order and shapes).

        Args:
            grads: one gradient per variable.
            variables: the arrays to update.
            names: optional variable names, for ``exclude_from_weight_decay(var_names=...)``.

        Raises:
            ValueError: different numbers of gradients, variables or names.
        """
        if len(grads) != len(variables):
            raise ValueError(f"apply: {len(grads)} gradients for {len(variables)} variables.")
        if names is not None and len(names) != len(variables):
            raise ValueError(f"apply: {len(names)} names for {len(variables)} variables.")
        if self.slots is None or len(self.slots) != len(variables):
            self.build(variables)
        lr = self.learning_rate  # read before the step counter moves, as Keras does
        grads = [np.asarray(g, dtype=v.dtype) for g, v in zip(grads, variables)]
        if self.loss_scale_factor is not None:
            grads = [g / v.dtype.type(self.loss_scale_factor) for g, v in zip(grads, variables)]
        grads = self._clip(grads)
        if self.weight_decay is not None:
            for i, v in enumerate(variables):
                if self._use_weight_decay(v, None if names is None else names[i]):
                    v -= v * v.dtype.type(self.weight_decay * lr)
        self.iterations += 1
        for v, g, slots in zip(variables, grads, self.slots):
            self._update(v, g, slots, lr)

    def _update(self, v: np.ndarray, g: np.ndarray, slots: list[np.ndarray], lr: float) -> None:
        """One variable's update; ``self.iterations`` is already the 1-based step number."""
        raise NotImplementedError

    def get_config(self) -> dict:
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            learning_rate: Any = serialize_schedule(lr)
        elif callable(lr):
            warnings.warn(
                f"{type(self).__name__}: a callable learning_rate cannot be serialized; its "
                "current value is saved instead (use a LearningRateSchedule subclass with "
                "get_config to keep it).",
                stacklevel=2,
            )
            learning_rate = float(lr())
        else:
            learning_rate = lr
        return {
            "name": self.name,
            "learning_rate": learning_rate,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": False,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": None,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": None,
        }

    @classmethod
    def from_config(cls, config: dict) -> Optimizer:
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = deserialize_schedule(config["learning_rate"])
        return cls(**config)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Args:
        learning_rate: default 0.01 (or a schedule).
        momentum: default 0.0, in [0, 1].
        nesterov: default False.
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, loss_scale_factor, name.

    Example:
        >>> opt = SGD(0.1, momentum=0.9)
        >>> opt.apply([grad], [weight])   # weight updated in place
    """

    def __init__(
        self, learning_rate: Any = 0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum!r}.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._slot_names = ("momentum",) if self.momentum else ()

    def _update(self, v, g, slots, lr):
        lr = v.dtype.type(lr)
        if not self.momentum:
            v -= lr * g
            return
        (m,) = slots
        m *= self.momentum
        m -= lr * g
        if self.nesterov:
            v += self.momentum * m - lr * g
        else:
            v += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2014), Keras's formulation with bias correction folded into the rate.

    Args:
        learning_rate: default 0.001 (or a schedule).
        beta_1: default 0.9.
        beta_2: default 0.999.
        epsilon: default 1e-7.
        amsgrad: default False.
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, loss_scale_factor, name.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.amsgrad = bool(amsgrad)
        self._slot_names = ("m", "v", "vhat") if self.amsgrad else ("m", "v")

    def _update(self, v, g, slots, lr):
        t = self.iterations
        alpha = lr * np.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        m, s = slots[0], slots[1]
        m += (g - m) * (1 - self.beta_1)
        s += (g * g - s) * (1 - self.beta_2)
        if self.amsgrad:
            np.maximum(slots[2], s, out=slots[2])
            s = slots[2]
        v -= (alpha * m / (np.sqrt(s) + self.epsilon)).astype(v.dtype, copy=False)

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), Keras 3's AdamW.

    Each step first shrinks every variable, ``w -= w * weight_decay * learning_rate``, then takes
    the Adam step.

    Args:
        learning_rate: default 0.001 (or a schedule).
        weight_decay: default 0.004 (must be a float).
        beta_1: default 0.9.
        beta_2: default 0.999.
        epsilon: default 1e-7.
        amsgrad: default False.
        **kwargs: clipnorm, clipvalue, global_clipnorm, loss_scale_factor, name.

    Raises:
        ValueError: ``weight_decay`` is None.

    Example:
        >>> model.compile(optimizer=AdamW(1e-3, weight_decay=1e-2), loss="mse")
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a float, got None.")
        super().__init__(
            learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            weight_decay=weight_decay,
            **kwargs,
        )


class Nadam(Optimizer):
    """Nadam: Adam with Nesterov momentum (Dozat 2016), Keras's formulation.

    Uses the momentum schedule ``u_t = beta_1 * (1 - 0.5 * 0.96**t)`` and its running product;
    the product is a function of ``iterations``, so the state saved is just m and v.

    Args:
        learning_rate: default 0.001 (or a schedule).
        beta_1: default 0.9.
        beta_2: default 0.999.
        epsilon: default 1e-7.
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, loss_scale_factor, name.
    """

    _slot_names = ("momentum", "velocity")
    _extra_variables = 1

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self._u_product_step = 0
        self._u_product = 1.0

    def _u(self, t: int) -> float:
        return self.beta_1 * (1.0 - 0.5 * 0.96**t)

    def _product(self, t: int) -> float:
        """prod_{s=1..t} u_s (cached for consecutive steps)."""
        if t < self._u_product_step:
            self._u_product_step, self._u_product = 0, 1.0
        while self._u_product_step < t:
            self._u_product_step += 1
            self._u_product *= self._u(self._u_product_step)
        return self._u_product

    def _update(self, v, g, slots, lr):
        t = self.iterations
        u_t, u_next = self._u(t), self._u(t + 1)
        product = self._product(t)
        product_next = product * u_next
        m, s = slots
        m += (g - m) * (1 - self.beta_1)
        s += (g * g - s) * (1 - self.beta_2)
        m_hat = u_next * m / (1 - product_next) + (1 - u_t) * g / (1 - product)
        v_hat = s / (1 - self.beta_2**t)
        v -= (lr * m_hat / (np.sqrt(v_hat) + self.epsilon)).astype(v.dtype, copy=False)

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


class RMSprop(Optimizer):
    """RMSprop (Hinton), Keras's formulation.

    Args:
        learning_rate: default 0.001 (or a schedule).
        rho: default 0.9.
        momentum: default 0.0.
        epsilon: default 1e-7.
        centered: default False.
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, loss_scale_factor, name.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)
        self.centered = bool(centered)
        names = ["velocity"]
        if self.momentum:
            names.append("momentum")
        if self.centered:
            names.append("average_gradient")
        self._slot_names = tuple(names)

    def _update(self, v, g, slots, lr):
        vel = slots[0]
        vel *= self.rho
        vel += (1 - self.rho) * g * g
        denom = vel
        if self.centered:
            avg = slots[-1]
            avg *= self.rho
            avg += (1 - self.rho) * g
            denom = vel - avg * avg
        increment = (lr * g / np.sqrt(denom + self.epsilon)).astype(v.dtype)
        if self.momentum:
            mom = slots[1]
            mom *= self.momentum
            mom += increment
            v -= mom
        else:
            v -= increment

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), Keras's formulation.

    Args:
        learning_rate: default 0.001 (or a schedule).
        initial_accumulator_value: default 0.1.
        epsilon: default 1e-7.
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, loss_scale_factor, name.
    """

    _slot_names = ("accumulator",)

    def __init__(
        self,
        learning_rate: Any = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def _init_slot(self, name, v):
        return np.full_like(v, self.initial_accumulator_value)

    def _update(self, v, g, slots, lr):
        (acc,) = slots
        acc += g * g
        v -= (lr * g / np.sqrt(acc + self.epsilon)).astype(v.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }


_NAMES = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "nadam": Nadam,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
}
_CLASSES = {c.__name__: c for c in _NAMES.values()}


def get(identifier: str | dict | Optimizer) -> Optimizer:
    """An optimizer from a name (Keras defaults), a ``serialize`` dict or an instance.

    Raises:
        ValueError: unknown name (valid names listed).
        TypeError: neither a string, a dict nor an Optimizer.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer {identifier!r}. Valid names: {', '.join(_NAMES)}.")
        return cls()
    raise TypeError(
        f"optimizer must be a string or a fastrnn.optimizers.Optimizer, got {identifier!r}."
    )


def serialize(optimizer: Optimizer) -> dict:
    """``{"class_name": ..., "config": ...}``; a schedule is serialized inside the config."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(spec: dict) -> Optimizer:
    """Rebuilds an optimizer (and its schedule) from ``serialize``'s output.

    Raises:
        ValueError: unknown class name or malformed spec.
    """
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"An optimizer spec needs 'class_name' and 'config', got {spec!r}.")
    cls = _CLASSES.get(spec.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown optimizer class {spec.get('class_name')!r}.")
    return cls.from_config(dict(spec.get("config") or {}))
