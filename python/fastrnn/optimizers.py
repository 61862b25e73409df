"""Optimizers with Keras 3's update rules and defaults: SGD, Adam, RMSprop, Adagrad.

An optimizer updates a list of NumPy arrays in place from a list of gradients of the same
shapes. Its state (``iterations`` and one set of slot arrays per variable) is exposed by
``get_state``/``set_state`` so that ``save``/``load_model`` restore it exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Optimizer:
    """Base class: gradient clipping, iteration count and slot bookkeeping.

    Args:
        learning_rate: float > 0.
        clipnorm: clip each gradient to this L2 norm.
        clipvalue: clip each gradient element to [-clipvalue, clipvalue].
        global_clipnorm: scale all gradients together so their joint L2 norm is at most this.
        name: optional name.

    Raises:
        ValueError: a non-positive learning rate or clipping value, more than one of
            clipnorm/clipvalue/global_clipnorm, or an unsupported Keras argument set.
    """

    _slot_names: tuple = ()

    def __init__(
        self,
        learning_rate: float,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        name: str | None = None,
        weight_decay: None = None,
        use_ema: bool = False,
        loss_scale_factor: None = None,
        gradient_accumulation_steps: None = None,
    ) -> None:
        cls = type(self).__name__
        if weight_decay or use_ema or loss_scale_factor or gradient_accumulation_steps:
            raise ValueError(
                f"{cls}: weight_decay, use_ema, loss_scale_factor and gradient_accumulation_steps "
                "are not supported by fastrnn; leave them at their defaults."
            )
        if not float(learning_rate) > 0:
            raise ValueError(f"{cls}: learning_rate must be > 0, got {learning_rate!r}.")
        for key, value in (
            ("clipnorm", clipnorm),
            ("clipvalue", clipvalue),
            ("global_clipnorm", global_clipnorm),
        ):
            if value is not None and not float(value) > 0:
                raise ValueError(f"{cls}: {key} must be > 0, got {value!r}.")
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                f"{cls}: only one of clipnorm, clipvalue and global_clipnorm can be set."
            )
        self.learning_rate = float(learning_rate)
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.name = name or cls.lower()
        self.iterations = 0
        self.slots: list[list[np.ndarray]] | None = None

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
        return 1 + sum(s.size for per_var in (self.slots or []) for s in per_var)

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

    def apply(self, grads: list[np.ndarray], variables: list[np.ndarray]) -> None:
        """Updates ``variables`` in place from ``grads`` (same order and shapes)."""
        if len(grads) != len(variables):
            raise ValueError(f"apply: {len(grads)} gradients for {len(variables)} variables.")
        if self.slots is None or len(self.slots) != len(variables):
            self.build(variables)
        grads = self._clip([np.asarray(g, dtype=v.dtype) for g, v in zip(grads, variables)])
        self.iterations += 1
        for v, g, slots in zip(variables, grads, self.slots):
            self._update(v, g, slots)

    def _update(self, v: np.ndarray, g: np.ndarray, slots: list[np.ndarray]) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "clipnorm": self.clipnorm,
            "clipvalue": self.clipvalue,
            "global_clipnorm": self.global_clipnorm,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> Optimizer:
        return cls(**config)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Args:
        learning_rate: default 0.01.
        momentum: default 0.0, in [0, 1].
        nesterov: default False.
        **kwargs: clipnorm, clipvalue, global_clipnorm, name.

    Example:
        >>> opt = SGD(0.1, momentum=0.9)
        >>> opt.apply([grad], [weight])   # weight updated in place
    """

    def __init__(
        self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum!r}.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._slot_names = ("momentum",) if self.momentum else ()

    def _update(self, v, g, slots):
        lr = v.dtype.type(self.learning_rate)
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
        learning_rate: default 0.001.
        beta_1: default 0.9.
        beta_2: default 0.999.
        epsilon: default 1e-7.
        amsgrad: default False.
        **kwargs: clipnorm, clipvalue, global_clipnorm, name.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
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

    def _update(self, v, g, slots):
        t = self.iterations
        lr = self.learning_rate * np.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        m, s = slots[0], slots[1]
        m += (g - m) * (1 - self.beta_1)
        s += (g * g - s) * (1 - self.beta_2)
        if self.amsgrad:
            np.maximum(slots[2], s, out=slots[2])
            s = slots[2]
        v -= (lr * m / (np.sqrt(s) + self.epsilon)).astype(v.dtype, copy=False)

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


class RMSprop(Optimizer):
    """RMSprop (Hinton), Keras's formulation.

    Args:
        learning_rate: default 0.001.
        rho: default 0.9.
        momentum: default 0.0.
        epsilon: default 1e-7.
        centered: default False.
        **kwargs: clipnorm, clipvalue, global_clipnorm, name.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
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

    def _update(self, v, g, slots):
        vel = slots[0]
        vel *= self.rho
        vel += (1 - self.rho) * g * g
        denom = vel
        if self.centered:
            avg = slots[-1]
            avg *= self.rho
            avg += (1 - self.rho) * g
            denom = vel - avg * avg
        increment = (self.learning_rate * g / np.sqrt(denom + self.epsilon)).astype(v.dtype)
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
        learning_rate: default 0.001.
        initial_accumulator_value: default 0.1.
        epsilon: default 1e-7.
        **kwargs: clipnorm, clipvalue, global_clipnorm, name.
    """

    _slot_names = ("accumulator",)

    def __init__(
        self,
        learning_rate: float = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def _init_slot(self, name, v):
        return np.full_like(v, self.initial_accumulator_value)

    def _update(self, v, g, slots):
        (acc,) = slots
        acc += g * g
        v -= (self.learning_rate * g / np.sqrt(acc + self.epsilon)).astype(v.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }


_NAMES = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}
_CLASSES = {c.__name__: c for c in _NAMES.values()}


def get(identifier: str | Optimizer) -> Optimizer:
    """An optimizer from a name (Keras defaults) or an instance.

    Raises:
        ValueError: unknown name (valid names listed).
        TypeError: neither a string nor an Optimizer.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer {identifier!r}. Valid names: {', '.join(_NAMES)}.")
        return cls()
    raise TypeError(
        f"optimizer must be a string or a fastrnn.optimizers.Optimizer, got {identifier!r}."
    )


def serialize(optimizer: Optimizer) -> dict:
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(spec: dict) -> Optimizer:
    cls = _CLASSES.get(spec.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown optimizer class {spec.get('class_name')!r}.")
    return cls.from_config(spec["config"])
