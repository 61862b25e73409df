"""fastrnn for PyTorch: ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` running fastrnn's fused kernels.

``fastrnn.torch.RNN``, ``LSTM`` and ``GRU`` subclass the ``torch.nn`` modules: the constructor,
parameters (names, shapes, gate order, initialisation), ``state_dict``, inputs and outputs
(including ``PackedSequence``, ``batch_first``, unbatched inputs, ``bidirectional``,
``num_layers`` with ``dropout``) are PyTorch's. ``forward`` runs each layer and direction as one
fused fastrnn call, and autograd's backward as one fused BPTT call (gradients for the input, the
initial states and every weight). ``convert(model)`` swaps them into an existing model.

Devices and dtypes: CPU tensors (zero-copy), float32 and float64; CUDA tensors through fastrnn's
CUDA path where it is built and usable (CuPy arrays shared through DLPack, on PyTorch's current
stream), else a ``RuntimeError`` saying why. Not supported, with a clear error: ``proj_size``,
other dtypes, double backward, ``torch.jit.script``.

PyTorch is an optional dependency: ``pip install "fastrnn[torch]"``.

Example:

>>> import torch, fastrnn.torch
>>> model = torch.nn.Sequential()  # any model holding nn.RNN / nn.LSTM / nn.GRU modules
>>> model.rnn = torch.nn.GRU(8, 16, batch_first=True)
>>> model = fastrnn.torch.convert(model)  # same parameters, now running fastrnn
>>> type(model.rnn)
<class 'fastrnn.torch.GRU'>
"""

from __future__ import annotations

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "fastrnn.torch needs PyTorch: pip install 'fastrnn[torch]' (or pip install torch)"
    ) from e

import warnings

from torch import nn

from fastrnn._adapter_core import Recurrence
from fastrnn.torch._autograd import recurrence
from fastrnn.torch._modules import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN", "Recurrence", "convert", "recurrence"]

_REPLACEMENTS = {nn.RNN: RNN, nn.LSTM: LSTM, nn.GRU: GRU}


def _unsupported_reason(module: nn.RNNBase) -> str | None:
    """Why fastrnn cannot run ``module`` (a stock ``torch.nn`` RNN), or None."""
    from fastrnn import _backend
    from fastrnn.torch._autograd import SUPPORTED_DTYPES

    if getattr(module, "proj_size", 0):
        return f"proj_size={module.proj_size} (fastrnn's LSTM has no projection)"
    weights = list(module.parameters())
    if not weights:
        return None
    dtypes = {w.dtype for w in weights}
    devices = {w.device for w in weights}
    if len(dtypes) > 1 or len(devices) > 1:
        return f"parameters with mixed dtypes/devices ({sorted(map(str, dtypes | devices))})"
    dtype, device = dtypes.pop(), devices.pop()
    if dtype not in SUPPORTED_DTYPES:
        return f"dtype {dtype} (fastrnn runs float32 and float64)"
    if device.type == "cuda":
        status = _backend.cuda_status()
        if status != "ok":
            return f"parameters on {device} but fastrnn's CUDA path cannot run ({status})"
    elif device.type != "cpu":
        return f"parameters on {device} (fastrnn runs on CPU and CUDA)"
    return None


def _converted(module: nn.RNNBase) -> nn.RNNBase:
    """A fastrnn module sharing ``module``'s parameters, buffers, hooks and mode."""
    cls = _REPLACEMENTS[type(module)]
    new = cls.__new__(cls)
    state = module.__dict__.copy()
    for key, value in state.items():  # own containers, same tensors and hooks inside
        if isinstance(value, (dict, list)):
            state[key] = value.copy()
    new.__dict__.update(state)
    new._init_flat_weights()
    return new


def convert(model: nn.Module, *, strict: bool = True) -> nn.Module:
    """Replaces every ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` in ``model`` with fastrnn's.

    Each replacement holds the very same ``Parameter`` objects (so an optimizer built before the
    conversion keeps training them), buffers, hooks, and training/eval mode; only ``forward``
    changes. Subclasses of the ``torch.nn`` modules (which may override ``forward``) are left
    alone. Modules are replaced in their parent in place; if ``model`` itself is an RNN module
    the converted module is returned instead (so write ``model = convert(model)``).

    Args:
        model: any ``torch.nn.Module``.
        strict: when a module uses something fastrnn cannot run (``proj_size``, float16,
            a device without fastrnn support), raise (True) or leave that module as it is with
            a warning (False). Default: True.

    Returns:
        ``model`` (converted in place), or the converted module when ``model`` is itself an
        ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

    Raises:
        TypeError: ``model`` is not a ``torch.nn.Module``.
        ValueError: with ``strict=True``, a module fastrnn cannot run (the message names it and
            the reason).

    Example:

    >>> import torch, fastrnn.torch
    >>> net = torch.nn.ModuleDict({"enc": torch.nn.LSTM(4, 8, num_layers=2)})
    >>> net = fastrnn.torch.convert(net)
    >>> isinstance(net["enc"], fastrnn.torch.LSTM)
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")

    def replacement(path: str, module: nn.Module):
        if type(module) not in _REPLACEMENTS:
            return None
        reason = _unsupported_reason(module)
        if reason is None:
            return _converted(module)
        message = f"cannot convert {path or 'model'} ({type(module).__name__}): {reason}"
        if strict:
            raise ValueError(message + "; pass strict=False to leave such modules unconverted")
        warnings.warn(message + "; left as torch.nn's module", stacklevel=3)
        return None

    root = replacement("", model)
    if root is not None:
        return root
    done = {}  # id(module) -> its replacement: a module shared by two parents stays shared
    # Collect first, then replace: named_modules() must not see a changing tree.
    targets = [  # every slot (named_children() would skip a second slot of a shared module)
        (parent, name, f"{prefix}.{name}" if prefix else name, child)
        for prefix, parent in model.named_modules()
        for name, child in parent._modules.items()
        if child is not None
    ]
    for parent, name, path, child in targets:
        if id(child) not in done:
            done[id(child)] = replacement(path, child)
        if done[id(child)] is not None:
            setattr(parent, name, done[id(child)])
    return model


del torch  # only needed to fail early, with the extra's name, when PyTorch is missing
