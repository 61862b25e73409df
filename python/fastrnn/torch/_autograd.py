"""One fused recurrence as a ``torch.autograd.Function``: fastrnn's forward, fastrnn's BPTT.

Everything here works in fastrnn's own layout (Keras's): time-major ``x (T, B, I)``,
``kernel (I, G*H)``, ``recurrent_kernel (H, G*H)``, ``bias (G*H,)`` or, for GRU with
``reset_after``, ``(2, 3*H)``. The PyTorch modules (``fastrnn.torch``) and the Keras layers on the
torch backend (``fastrnn.keras``) reshape their own weights into this layout with ordinary torch
operations, so autograd maps the gradients back to their parameters by itself.

Tensors cross to fastrnn without copies: a CPU tensor is handed over as ``tensor.numpy()`` (a
view) and each result comes back as ``torch.from_numpy`` (a view of the array the kernel wrote).
A CUDA tensor crosses through DLPack as a CuPy array and runs on fastrnn's CUDA path, on
PyTorch's current stream.

Dimension legend: T steps, B batch, I input features, H units, G gates.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from fastrnn import _backend
from fastrnn._adapter_core import Recurrence, ops_calls

SUPPORTED_DTYPES = (torch.float32, torch.float64)


class _CpuBridge:
    """CPU tensors <-> NumPy views."""

    device_type = "cpu"

    @staticmethod
    def to_array(t):
        return None if t is None else t.detach().numpy()

    @staticmethod
    def from_array(a) -> torch.Tensor:
        return torch.from_numpy(a)

    @staticmethod
    def mask(mask):
        return mask.detach().numpy() if isinstance(mask, torch.Tensor) else mask

    @staticmethod
    def context():
        return contextlib.nullcontext()


class _CudaBridge:
    """CUDA tensors <-> CuPy arrays (DLPack, no copies), on PyTorch's current stream.

    fastrnn's CUDA path enqueues its kernels on CuPy's current stream; making that stream
    PyTorch's current one orders them after the operations that produced the inputs and before
    those that consume the outputs, as any PyTorch operation would be.
    """

    device_type = "cuda"

    def __init__(self, device: torch.device):
        import cupy  # _backend.cuda_available() said it imports

        self._cp = cupy
        self._device = device

    def to_array(self, t):
        return None if t is None else self._cp.from_dlpack(t.detach())

    @staticmethod
    def from_array(a) -> torch.Tensor:
        return torch.from_dlpack(a)

    def mask(self, mask):
        if mask is None:
            return None
        if isinstance(mask, torch.Tensor):  # small: a host round trip keeps this path simple
            mask = mask.detach().cpu().numpy()
        with self._cp.cuda.Device(self._device.index):
            return self._cp.asarray(mask)

    @contextlib.contextmanager
    def context(self):
        stream = torch.cuda.current_stream(self._device)
        with (
            self._cp.cuda.Device(self._device.index),
            self._cp.cuda.ExternalStream(stream.cuda_stream),
        ):
            yield


def bridge_for(device: torch.device):
    """The bridge that hands tensors of ``device`` to fastrnn.

    Raises:
        RuntimeError: ``device`` is a CUDA device but fastrnn's CUDA path cannot run (not built,
            CuPy missing, or no usable GPU; the message says which), or any other device type.
    """
    if device.type == "cpu":
        return _CpuBridge
    if device.type == "cuda":
        status = _backend.cuda_status()
        if status != "ok":
            raise RuntimeError(
                f"fastrnn.torch got tensors on {device}, but fastrnn's CUDA path cannot run: "
                f"{status}. Move the module and inputs to the CPU, or use torch.nn's module."
            )
        return _CudaBridge(device)
    raise RuntimeError(
        f"fastrnn.torch runs on CPU and CUDA tensors only, got tensors on {device}; "
        "use torch.nn's module for this device"
    )


def _initial_state(bridge, h0, c0, num_states: int):
    if h0 is None and c0 is None:
        return None
    states = [bridge.to_array(h0), bridge.to_array(c0)]
    return states[:num_states]


class FusedRecurrence(torch.autograd.Function):
    """fastrnn's fused forward (``training=True``) and fused BPTT as one autograd node.

    ``apply(rec, bridge, mask, x, h0, c0, kernel, recurrent_kernel, bias, dropout_mask,
    recurrent_dropout_mask)`` returns ``(outputs, h_last)`` or, for LSTM,
    ``(outputs, h_last, c_last)``. Gradients flow to ``x, h0, c0, kernel, recurrent_kernel,
    bias``; masks are constants. Double backward is not supported.
    """

    @staticmethod
    def forward(
        ctx,
        rec,
        bridge,
        mask,
        x,
        h0,
        c0,
        kernel,
        recurrent_kernel,
        bias,
        dropout_mask,
        recurrent_dropout_mask,
    ):
        forward, _, kwargs = ops_calls(rec)
        num_states = rec.num_states
        with bridge.context():
            outputs, states, kernel_ctx = forward(
                bridge.to_array(x),
                bridge.to_array(kernel),
                bridge.to_array(recurrent_kernel),
                bridge.to_array(bias),
                _initial_state(bridge, h0, c0, num_states),
                mask,
                dropout_mask=bridge.to_array(dropout_mask),
                recurrent_dropout_mask=bridge.to_array(recurrent_dropout_mask),
                training=True,
                **kwargs,
            )
        ctx.rec, ctx.bridge, ctx.kernel_ctx = rec, bridge, kernel_ctx
        # Saved so that autograd refuses a backward after any of them was modified in place
        # (fastrnn's context may hold views of them).
        ctx.save_for_backward(x, h0, c0, kernel, recurrent_kernel, bias)
        ctx.set_materialize_grads(False)
        return tuple(bridge.from_array(a) for a in (outputs, *states))

    @staticmethod
    @once_differentiable
    def backward(ctx, d_outputs, *d_states):
        ctx.saved_tensors  # noqa: B018 (raises if an input was modified in place since forward)
        _, backward, _ = ops_calls(ctx.rec)
        bridge = ctx.bridge
        with bridge.context():
            grads = backward(
                ctx.kernel_ctx,
                bridge.to_array(d_outputs),
                [bridge.to_array(d) for d in d_states],
            )
        need = ctx.needs_input_grad
        dh0 = grads.dinitial_state[0]
        dc0 = grads.dinitial_state[1] if len(grads.dinitial_state) > 1 else None

        def grad(k, a):
            return bridge.from_array(a) if need[k] and a is not None else None

        return (
            None,
            None,
            None,
            grad(3, grads.dx),
            grad(4, dh0),
            grad(5, dc0),
            grad(6, grads.dkernel),
            grad(7, grads.drecurrent_kernel),
            grad(8, grads.dbias),
            None,
            None,
        )


def recurrence(
    rec: Recurrence,
    x: torch.Tensor,
    kernel: torch.Tensor,
    recurrent_kernel: torch.Tensor,
    bias: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
    mask: np.ndarray | None = None,
    dropout_mask: torch.Tensor | None = None,
    recurrent_dropout_mask: torch.Tensor | None = None,
) -> tuple:
    """One fused recurrence on torch tensors, differentiable when autograd needs it.

    Args:
        rec: the cell and its options.
        x: (T, B, I) time-major input.
        kernel: (I, G*H). recurrent_kernel: (H, G*H). bias: (G*H,), (2, 3H) or None.
        h0, c0: (B, H) initial states or None (zeros); ``c0`` for LSTM only.
        mask: None or a bool (T, B) NumPy array or tensor, in input time order (False: skip
            the step).
        dropout_mask: None or (B, I). recurrent_dropout_mask: None or (B, H).

    Returns:
        ``(outputs (T, B, H), h_last (B, H))`` or, for LSTM, ``(outputs, h_last, c_last)``;
        outputs in processing order (reversed time when ``rec.go_backwards``).

    Raises:
        RuntimeError: the tensors live on a device fastrnn cannot run on.
        TypeError, ValueError: from ``fastrnn.ops`` (dtypes, shapes), naming the argument.
    """
    bridge = bridge_for(x.device)
    mask = bridge.mask(mask)
    tensors = (x, h0, c0, kernel, recurrent_kernel, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        results = FusedRecurrence.apply(
            rec,
            bridge,
            mask,
            x,
            h0,
            c0,
            kernel,
            recurrent_kernel,
            bias,
            dropout_mask,
            recurrent_dropout_mask,
        )
    else:  # inference: no workspace, no autograd node
        forward, _, kwargs = ops_calls(rec)
        with bridge.context():
            outputs, states, _ = forward(
                bridge.to_array(x),
                bridge.to_array(kernel),
                bridge.to_array(recurrent_kernel),
                bridge.to_array(bias),
                _initial_state(bridge, h0, c0, rec.num_states),
                mask,
                dropout_mask=bridge.to_array(dropout_mask),
                recurrent_dropout_mask=bridge.to_array(recurrent_dropout_mask),
                training=False,
                **kwargs,
            )
        results = tuple(bridge.from_array(a) for a in (outputs, *states))
    return results
