"""``RNN``, ``LSTM``, ``GRU``: ``torch.nn``'s modules whose recurrence runs fastrnn's kernels.

Each class subclasses its ``torch.nn`` counterpart, so construction, parameters (names, shapes,
initialisation, ``state_dict``), ``repr``, pickling and the argument checks are PyTorch's own;
only ``forward`` is replaced: per layer and direction, one fused fastrnn forward (and, under
autograd, one fused BPTT).

Layout mapping (PyTorch -> fastrnn/Keras), per layer and direction:
    kernel = weight_ih.T (I, G*H); recurrent_kernel = weight_hh.T (H, G*H).
    LSTM: same gate order (i, f, g, o); one bias = bias_ih + bias_hh (each receives dbias).
    RNN: tanh or relu; bias = bias_ih + bias_hh.
    GRU: PyTorch's gate order is r, z, n and Keras's z, r, h: the first two blocks swap.
        PyTorch's GRU is the reset_after formulation: bias (2, 3H) = [bias_ih, bias_hh].

Dimension legend: T steps, B batch, I input features, H hidden size, L layers, D directions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from fastrnn import _backend
from fastrnn._adapter_core import Recurrence, ops_calls
from fastrnn.torch._autograd import SUPPORTED_DTYPES, recurrence

_CELL = {"RNN_TANH": "simple_rnn", "RNN_RELU": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}
_RECURRENCES = {
    (mode, backwards): Recurrence(
        cell, "relu" if mode == "RNN_RELU" else "tanh", "sigmoid", True, backwards
    )
    for mode, cell in _CELL.items()
    for backwards in (False, True)
}


class _TorchOps:
    cat = staticmethod(torch.cat)
    stack = staticmethod(torch.stack)


class _NumpyOps:
    cat = staticmethod(np.concatenate)
    stack = staticmethod(np.stack)


def _gru_blocks(w, units: int, xp):
    """PyTorch GRU gate blocks (r, z, n) along axis 0 -> Keras order (z, r, h)."""
    return xp.cat((w[units : 2 * units], w[:units], w[2 * units :]), 0)


def keras_weights(mode: str, hidden_size: int, w_ih, w_hh, b_ih, b_hh, xp=_TorchOps) -> tuple:
    """One layer-direction's PyTorch parameters as fastrnn's ``(kernel, recurrent_kernel, bias)``.

    On torch tensors (``xp=_TorchOps``) only differentiable operations are used (transpose,
    slicing, cat, add), so autograd maps fastrnn's gradients back onto the PyTorch parameters;
    the same code runs on NumPy views (``xp=_NumpyOps``) for the inference path.
    """
    if mode == "GRU":
        kernel = _gru_blocks(w_ih, hidden_size, xp).T
        recurrent_kernel = _gru_blocks(w_hh, hidden_size, xp).T
        bias = None
        if b_ih is not None:
            bias = xp.stack(
                (_gru_blocks(b_ih, hidden_size, xp), _gru_blocks(b_hh, hidden_size, xp))
            )
        return kernel, recurrent_kernel, bias
    bias = None if b_ih is None else b_ih + b_hh
    return w_ih.T, w_hh.T, bias


def _bits(a: np.ndarray) -> np.ndarray:
    """``a``'s elements as unsigned integers of the same width (compared bit for bit)."""
    return a.view(np.uint64 if a.itemsize == 8 else np.uint32)


class _InferenceWeights:
    """fastrnn-layout copies of a module's weights for the inference path, reused while the
    parameters' bytes stay the same.

    PyTorch keeps ``weight_ih`` as (G*H, I) and fastrnn takes (I, G*H): the conversion is a
    transposing copy (~0.1 ms per MB on our 2-core VM with fastrnn's blocked transpose, 0.4-2 ms
    with NumPy's) that would be repeated on every call, a large share of a small call. Checking
    that the parameters are unchanged reads them once in order against a saved copy (~0.06 ms
    per MB). The check is on the bytes,
    not on PyTorch's version counters (a write through ``.data`` bumps none) nor on values
    (NaN differs from itself; -0.0 equals 0.0). Costs one copy of the weights in each layout.
    """

    def __init__(self) -> None:
        self._state = None  # (saved parameter copies, converted weights): replaced, never edited

    def get(self, params: list, convert) -> list:
        """``convert(params)``, or the result of an earlier call on the same bytes."""
        state = self._state  # one read: a concurrent call may replace it meanwhile
        if state is not None:
            saved, converted = state
            if len(saved) == len(params) and all(
                p.shape == s.shape and p.dtype == s.dtype and np.array_equal(_bits(p), _bits(s))
                for p, s in zip(params, saved)
            ):
                return converted
        converted = convert(params)
        self._state = ([p.copy() for p in params], converted)
        return converted


class _FastRNNMixin:
    """The replacement ``forward`` shared by ``RNN``, ``LSTM`` and ``GRU``."""

    mode: str  # PyTorch's: "RNN_TANH", "RNN_RELU", "LSTM", "GRU"

    def _check_config(self) -> None:
        if getattr(self, "proj_size", 0):
            raise ValueError(
                f"fastrnn.torch.LSTM does not support proj_size (got proj_size={self.proj_size}): "
                "fastrnn's LSTM kernel has no output projection; use torch.nn.LSTM for it"
            )

    def _recurrence(self, go_backwards: bool) -> Recurrence:
        return _RECURRENCES[self.mode, go_backwards]

    def _sync_flat_weights(self) -> None:
        """``_update_flat_weights`` (PyTorch's) with a fast exit when no weight was replaced."""
        params = self._parameters
        for ref, name in zip(self._flat_weight_refs, self._flat_weights_names):
            w = params.get(name)
            if w is None or ref is None or ref() is not w:
                self._update_flat_weights()  # parametrized, deleted or swapped weights
                return

    def _check_devices_and_dtypes(self, input: torch.Tensor, hx: list) -> None:
        weights = [w for w in self._flat_weights if w is not None]
        dtype = weights[0].dtype
        if (
            input.is_cpu
            and input.dtype is dtype
            and all(w.is_cpu and w.dtype is dtype for w in weights)
            and all(h.is_cpu and h.dtype is dtype for h in hx)
            and dtype in SUPPORTED_DTYPES
        ):
            return  # the common case, checked cheaply
        device = weights[0].device
        for w in weights:
            if w.device != device or w.dtype != dtype:
                raise RuntimeError(
                    "fastrnn.torch needs all parameters of one module on one device with one "
                    f"dtype, got {device}/{dtype} and {w.device}/{w.dtype}"
                )
        if input.device != device:
            raise RuntimeError(
                "Input and parameter tensors are not at the same device, found input tensor at "
                f"{input.device} and parameter tensor at {device}"
            )
        for h in hx:
            if h.device != input.device:
                raise RuntimeError(
                    "Input and hidden tensors are not at the same device, found input tensor at "
                    f"{input.device} and hidden tensor at {h.device}"
                )
        if dtype not in SUPPORTED_DTYPES:
            raise TypeError(
                f"fastrnn.torch supports float32 and float64 parameters, got {dtype}; convert "
                "the module with .float() / .double(), or use torch.nn's module for this dtype"
            )
        for name, t in [("input", input)] + [(f"hx[{k}]", h) for k, h in enumerate(hx)]:
            if t.dtype != dtype:
                raise TypeError(
                    f"fastrnn.torch: {name} has dtype {t.dtype} but the parameters have {dtype}"
                )

    def _numpy_weights(self, weights: list) -> list:
        """Per layer and direction, C-contiguous ``(kernel, recurrent_kernel, bias)`` arrays
        from the NumPy views of ``_flat_weights``."""
        per = len(weights) // (self.num_layers * (2 if self.bidirectional else 1))
        converted = []
        for idx in range(len(weights) // per):
            w = weights[idx * per : (idx + 1) * per]
            b_ih, b_hh = (w[2], w[3]) if self.bias else (None, None)
            arrays = keras_weights(self.mode, self.hidden_size, w[0], w[1], b_ih, b_hh, _NumpyOps)
            converted.append(
                tuple(None if a is None else _backend.CPU.prepare(a, "weight") for a in arrays)
            )
        return converted

    def _run(self, x: torch.Tensor, hx: list, mask, numpy_path: bool) -> tuple:
        """All layers and directions, each one fused fastrnn call.

        Args:
            x: (T, B, I) time-major. hx: a list of (L*D, B, H) tensors, or [] for zeros.
            mask: None or NumPy bool (T, B). numpy_path: CPU inference (no autograd node):
                run ``fastrnn.ops`` on NumPy views directly.

        Returns:
            ``(output (T, B, D*H), [h_n (L*D, B, H), c_n])``.
        """
        num_directions = 2 if self.bidirectional else 1
        num_states = 2 if self.mode == "LSTM" else 1
        weights = self._flat_weights
        per = len(weights) // (self.num_layers * num_directions)
        xp = _NumpyOps if numpy_path else _TorchOps
        converted = None
        if numpy_path:
            cache = self.__dict__.setdefault("_fastrnn_inference_weights", _InferenceWeights())
            converted = cache.get([w.detach().numpy() for w in weights], self._numpy_weights)
            hx = [h.detach().numpy() for h in hx]
            x = x.detach().numpy()
        finals = [[] for _ in range(num_states)]
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(num_directions):
                idx = layer * num_directions + direction
                if numpy_path:
                    kernel, recurrent_kernel, bias = converted[idx]
                else:
                    w = weights[idx * per : (idx + 1) * per]
                    b_ih, b_hh = (w[2], w[3]) if self.bias else (None, None)
                    kernel, recurrent_kernel, bias = keras_weights(
                        self.mode, self.hidden_size, w[0], w[1], b_ih, b_hh, xp
                    )
                initial = [h[idx] for h in hx]
                rec = self._recurrence(go_backwards=direction == 1)
                if numpy_path:
                    forward, _, kwargs = ops_calls(rec)
                    out, states, _ = forward(
                        layer_input,
                        kernel,
                        recurrent_kernel,
                        bias,
                        initial or None,
                        mask,
                        training=False,
                        **kwargs,
                    )
                else:
                    h0, c0 = (initial + [None, None])[:2]
                    out, *states = recurrence(
                        rec, layer_input, kernel, recurrent_kernel, bias, h0, c0, mask
                    )
                if direction == 1:  # processing order -> input order
                    out = out[::-1] if numpy_path else out.flip(0)
                outputs.append(out)
                for k in range(num_states):
                    finals[k].append(states[k])
            layer_output = outputs[0] if num_directions == 1 else xp.cat(outputs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                if numpy_path:
                    layer_output = torch.from_numpy(layer_output)
                layer_output = F.dropout(layer_output, p=self.dropout, training=True)
                if numpy_path:
                    layer_output = layer_output.numpy()
            layer_input = layer_output
        if numpy_path:
            stacked = [f[0][None] if len(f) == 1 else np.stack(f) for f in finals]
            return torch.from_numpy(layer_input), [torch.from_numpy(f) for f in stacked]
        stacked = [f[0].unsqueeze(0) if len(f) == 1 else torch.stack(f) for f in finals]
        return layer_input, stacked

    def forward(self, input, hx=None):
        """Runs the recurrence; arguments, shapes and results as ``torch.nn``'s module.

        Call arguments:
            input: (L, B, I) (``(B, L, I)`` with ``batch_first``), (L, I) unbatched, or a
                ``PackedSequence``.
            hx: initial state(s): (num_layers * D, B, H), or for LSTM a tuple ``(h_0, c_0)``;
                None for zeros.

        Returns:
            ``(output, h_n)`` or, for LSTM, ``(output, (h_n, c_n))``; ``output`` is a
            ``PackedSequence`` when ``input`` is one.
        """
        self._sync_flat_weights()
        self._check_config()
        is_lstm = self.mode == "LSTM"
        name = {"LSTM": "LSTM", "GRU": "GRU"}.get(self.mode, "RNN")
        orig_input = input
        batch_sizes = sorted_indices = unsorted_indices = None
        is_batched = True
        if isinstance(orig_input, PackedSequence):
            input, batch_sizes, sorted_indices, unsorted_indices = orig_input
            if hx is not None:
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"{name}: Expected input to be 2D or 3D, got {input.dim()}D tensor instead"
                )
            is_batched = input.dim() == 3
            if not is_batched:
                input = input.unsqueeze(0 if self.batch_first else 1)
            if hx is not None:
                states = hx if is_lstm else (hx,)
                if is_lstm and not isinstance(hx, (tuple, list)):
                    raise RuntimeError("LSTM expects hx as a tuple (h_0, c_0)")
                want = 3 if is_batched else 2
                if any(h.dim() != want for h in states):
                    kind = "batched 3-D" if is_batched else "unbatched 2-D"
                    dims = ", ".join(f"{h.dim()}-D" for h in states)
                    raise RuntimeError(
                        f"For {kind} input, hx should also be {want}-D but got ({dims}) tensor(s)"
                    )
                if not is_batched:
                    states = tuple(h.unsqueeze(1) for h in states)
                hx = states if is_lstm else states[0]
        if hx is not None:
            self.check_forward_args(input, hx, batch_sizes)
        else:
            self.check_input(input, batch_sizes)
        hx_list = ([] if hx is None else list(hx)) if is_lstm else ([] if hx is None else [hx])
        if torch.is_autocast_enabled(input.device.type):
            # fastrnn computes in the parameters' dtype; autocast's lower precision does not apply
            dtype = self._flat_weights[0].dtype
            input = input.to(dtype)
            hx_list = [h.to(dtype) for h in hx_list]
        self._check_devices_and_dtypes(input, hx_list)

        if batch_sizes is not None:
            steps, batch = len(batch_sizes), int(batch_sizes[0])
            valid = torch.arange(batch) < batch_sizes.unsqueeze(1)  # (T, B), CPU
            valid_dev = valid.to(input.device)
            x = input.new_zeros((steps, batch, input.shape[-1]))
            x[valid_dev] = input  # PackedSequence.data is (t, b) row-major over valid steps
            mask = valid.numpy()
        else:
            x = input.transpose(0, 1) if self.batch_first else input
            mask = None
        if x.shape[0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        numpy_path = x.is_cpu and not (
            torch.is_grad_enabled()
            and (
                x.requires_grad
                or any(w.requires_grad for w in self._flat_weights)
                or any(h.requires_grad for h in hx_list)
            )
        )
        output, finals = self._run(x, hx_list, mask, numpy_path)

        if batch_sizes is not None:
            output = PackedSequence(
                output[valid_dev], batch_sizes, sorted_indices, unsorted_indices
            )
        elif self.batch_first:
            output = output.transpose(0, 1)
        hidden = (finals[0], finals[1]) if is_lstm else finals[0]
        if batch_sizes is None and not is_batched:
            output = output.squeeze(0 if self.batch_first else 1)
            hidden = (hidden[0].squeeze(1), hidden[1].squeeze(1)) if is_lstm else hidden.squeeze(1)
        return output, self.permute_hidden(hidden, unsorted_indices)


class RNN(_FastRNNMixin, nn.RNN):
    r"""``torch.nn.RNN`` (Elman, tanh or relu) running fastrnn's fused kernels.

    A drop-in for ``torch.nn.RNN``: same constructor, parameters (``weight_ih_l{k}``,
    ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, ``_reverse`` for the second
    direction), initialisation, ``state_dict``, inputs and outputs, so
    ``load_state_dict(torch_rnn.state_dict())`` moves weights unchanged. Each layer and direction
    is one fused fastrnn call forward and one fused BPTT backward.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of the hidden state ``h``.
        num_layers: stacked layers. Default: 1.
        nonlinearity: ``"tanh"`` or ``"relu"``. Default: ``"tanh"``.
        bias: whether the layers have ``bias_ih`` and ``bias_hh``. Default: True.
        batch_first: input and output as ``(B, L, features)``. Default: False.
        dropout: dropout on the outputs of every layer but the last (training only).
            Default: 0.
        bidirectional: run a second, reversed direction. Default: False.
        device, dtype: of the parameters; fastrnn runs float32 and float64 on CPU, and on CUDA
            where its CUDA path is built and usable.

    Call arguments:
        input: (L, B, I), (B, L, I) with ``batch_first``, (L, I) unbatched, or a
            ``PackedSequence``.
        hx: (num_layers * D, B, H) initial hidden state, or None (zeros).

    Returns:
        ``(output, h_n)``: output (L, B, D*H) (or packed), h_n (num_layers * D, B, H).

    Raises:
        ValueError, RuntimeError: as ``torch.nn.RNN`` for bad arguments and shapes.
        TypeError: dtypes other than float32/float64, or input and parameters of different
            dtypes.
        RuntimeError: tensors on a device fastrnn cannot run on (the message says why).

    Example:

    >>> import torch, fastrnn.torch
    >>> rnn = fastrnn.torch.RNN(10, 20, num_layers=2)
    >>> output, h_n = rnn(torch.randn(5, 3, 10))  # output (5, 3, 20), h_n (2, 3, 20)
    """


class LSTM(_FastRNNMixin, nn.LSTM):
    r"""``torch.nn.LSTM`` running fastrnn's fused kernels (no ``proj_size``).

    A drop-in for ``torch.nn.LSTM``: same constructor, parameters, initialisation,
    ``state_dict``, inputs and outputs (gate order i, f, g, o, as PyTorch's). fastrnn's LSTM has
    one bias per gate: ``bias_ih + bias_hh`` is what runs, and each of the two receives the
    same gradient, exactly as in PyTorch.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device,
        dtype: as ``fastrnn.torch.RNN`` (and ``torch.nn.LSTM``).
        proj_size: must be 0 (fastrnn has no LSTM projection). Default: 0.

    Call arguments:
        input: (L, B, I), (B, L, I) with ``batch_first``, (L, I) unbatched, or a
            ``PackedSequence``.
        hx: ``(h_0, c_0)``, each (num_layers * D, B, H), or None (zeros).

    Returns:
        ``(output, (h_n, c_n))`` with PyTorch's shapes.

    Raises:
        ValueError: ``proj_size > 0``, and PyTorch's own argument errors.
        TypeError, RuntimeError: as ``fastrnn.torch.RNN``.

    Example:

    >>> import torch, fastrnn.torch
    >>> lstm = fastrnn.torch.LSTM(10, 20, batch_first=True, bidirectional=True)
    >>> output, (h_n, c_n) = lstm(torch.randn(3, 5, 10))  # output (3, 5, 40), h_n (2, 3, 20)
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._check_config()


class GRU(_FastRNNMixin, nn.GRU):
    r"""``torch.nn.GRU`` running fastrnn's fused kernels.

    A drop-in for ``torch.nn.GRU``: same constructor, parameters (gate order r, z, n),
    initialisation, ``state_dict``, inputs and outputs. PyTorch's GRU is fastrnn's
    ``reset_after=True`` formulation with ``bias = [bias_ih, bias_hh]`` (Keras gate order
    z, r, h; the adapter reorders the blocks, and autograd reorders the gradients back).

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device,
        dtype: as ``fastrnn.torch.RNN`` (and ``torch.nn.GRU``).

    Call arguments:
        input, hx: as ``fastrnn.torch.RNN``.

    Returns:
        ``(output, h_n)`` with PyTorch's shapes.

    Raises:
        As ``fastrnn.torch.RNN``.

    Example:

    >>> import torch, fastrnn.torch
    >>> gru = fastrnn.torch.GRU(10, 20)
    >>> output, h_n = gru(torch.randn(5, 3, 10), torch.zeros(1, 3, 20))  # (5, 3, 20), (1, 3, 20)
    """


# Pickles and reprs name the public module, not this private file.
for _cls in (RNN, LSTM, GRU):
    _cls.__module__ = "fastrnn.torch"
