"""CuPy-side wrapper of ``fastrnn._cuda``: same calls and results as ``fastrnn._cpu``.

``fastrnn._cuda`` never allocates: this wrapper allocates the outputs, the training workspace and
the scratch buffer with CuPy (on the device of ``x``, from CuPy's memory pool) and passes CuPy's
current stream, so a call is asynchronous like any CuPy operation. ``ops.py`` calls
``module.forward(**args, training=...)`` and ``module.backward(**args, workspace=..., ...)`` on
either backend and gets the same tuples.

Dimension legend: T steps, B batch, I input features, H units, G gates.
"""

from __future__ import annotations

_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def _shape(a, name: str, ndim: int) -> tuple:
    if not hasattr(a, "__cuda_array_interface__"):
        raise TypeError(
            f"{name} must be a CUDA device array (cupy.ndarray), got {type(a).__name__} "
            "(do not mix NumPy and CuPy arrays in one call)"
        )
    shape = tuple(a.shape)
    if len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {shape}")
    return shape


class CudaModule:
    """``forward`` / ``backward`` with the signatures and return tuples of ``fastrnn._cpu``."""

    def __init__(self, ext, cupy):
        self.ext = ext
        self._cp = cupy

    def workspace_size(self, cell, T, B, H, reset_after=True):
        return self.ext.workspace_size(cell, T, B, H, reset_after)

    def forward(
        self,
        cell,
        x,
        kernel,
        recurrent_kernel,
        bias=None,
        h0=None,
        c0=None,
        mask=None,
        dropout_mask=None,
        recurrent_dropout_mask=None,
        activation="tanh",
        recurrent_activation="sigmoid",
        reset_after=True,
        go_backwards=False,
        training=False,
    ):
        """Returns ``(outputs (T,B,H), h_last (B,H), c_last (B,H) or None, workspace or None)``."""
        cp = self._cp
        steps, batch, features = _shape(x, "x", 3)
        units = _shape(recurrent_kernel, "recurrent_kernel", 2)[0]
        with cp.cuda.Device(x.device.id):
            dtype = x.dtype
            outputs = cp.empty((steps, batch, units), dtype)
            h_last = cp.empty((batch, units), dtype)
            c_last = cp.empty((batch, units), dtype) if cell == "lstm" else None
            workspace = None
            if training:
                n = self.ext.workspace_size(cell, steps, batch, units, reset_after)
                workspace = cp.empty((n,), dtype)
            n = self.ext.forward_scratch_size(
                cell,
                steps,
                batch,
                features,
                units,
                reset_after,
                dropout=dropout_mask is not None,
                recurrent_dropout=recurrent_dropout_mask is not None,
                training=bool(training),
            )
            scratch = cp.empty((max(n, 1),), dtype)
            self.ext.forward(
                cell,
                x,
                kernel,
                recurrent_kernel,
                bias,
                h0,
                c0,
                mask,
                dropout_mask,
                recurrent_dropout_mask,
                activation,
                recurrent_activation,
                reset_after,
                go_backwards,
                outputs=outputs,
                h_last=h_last,
                c_last=c_last,
                workspace=workspace,
                scratch=scratch,
                stream=cp.cuda.get_current_stream().ptr,
            )
        return outputs, h_last, c_last, workspace

    def backward(
        self,
        cell,
        x,
        kernel,
        recurrent_kernel,
        bias=None,
        h0=None,
        c0=None,
        mask=None,
        dropout_mask=None,
        recurrent_dropout_mask=None,
        activation="tanh",
        recurrent_activation="sigmoid",
        reset_after=True,
        go_backwards=False,
        workspace=None,
        d_outputs=None,
        d_h_last=None,
        d_c_last=None,
    ):
        """Returns ``(dx, dkernel, drecurrent_kernel, dbias or None, dh0, dc0 or None)``."""
        cp = self._cp
        steps, batch, features = _shape(x, "x", 3)
        units = _shape(recurrent_kernel, "recurrent_kernel", 2)[0]
        gh = _GATES.get(cell, 1) * units
        with cp.cuda.Device(x.device.id):
            dtype = x.dtype
            dx = cp.empty((steps, batch, features), dtype)
            dkernel = cp.empty((features, gh), dtype)
            drecurrent_kernel = cp.empty((units, gh), dtype)
            dbias = None if bias is None else cp.empty(tuple(bias.shape), dtype)
            dh0 = cp.empty((batch, units), dtype)
            dc0 = cp.empty((batch, units), dtype) if cell == "lstm" else None
            n = self.ext.backward_scratch_size(
                cell,
                steps,
                batch,
                features,
                units,
                reset_after,
                dropout=dropout_mask is not None,
                recurrent_dropout=recurrent_dropout_mask is not None,
            )
            scratch = cp.empty((max(n, 1),), dtype)
            self.ext.backward(
                cell,
                x,
                kernel,
                recurrent_kernel,
                bias,
                h0,
                c0,
                mask,
                dropout_mask,
                recurrent_dropout_mask,
                activation,
                recurrent_activation,
                reset_after,
                go_backwards,
                workspace=workspace,
                d_outputs=d_outputs,
                d_h_last=d_h_last,
                d_c_last=d_c_last,
                dx=dx,
                dkernel=dkernel,
                drecurrent_kernel=drecurrent_kernel,
                dbias=dbias,
                dh0=dh0,
                dc0=dc0,
                scratch=scratch,
                stream=cp.cuda.get_current_stream().ptr,
            )
        return dx, dkernel, drecurrent_kernel, dbias, dh0, dc0
