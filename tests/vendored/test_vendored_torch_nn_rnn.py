# From PyTorch (https://github.com/pytorch/pytorch), test/test_nn.py.
# Modified for fastrnn: see "Changes" below.
#
# Copyright (c) 2016-     Facebook, Inc            (Adam Paszke)
# Copyright (c) 2014-     Facebook, Inc            (Soumith Chintala)
# Copyright (c) 2011-2014 Idiap Research Institute (Ronan Collobert)
# Copyright (c) 2012-2014 Deepmind Technologies    (Koray Kavukcuoglu)
# Copyright (c) 2011-2012 NEC Laboratories America (Koray Kavukcuoglu)
# Copyright (c) 2011-2013 NYU                      (Clement Farabet)
# Copyright (c) 2006-2010 NEC Laboratories America (Ronan Collobert, Leon Bottou, Iain Melvin,
#                                                   Jason Weston)
# Copyright (c) 2006      Idiap Research Institute (Samy Bengio)
# Copyright (c) 2001-2004 Idiap Research Institute (Ronan Collobert, Samy Bengio,
#                                                   Johnny Mariethoz)
# All rights reserved.
#
# Redistribution and use in source and binary forms, with or without modification, are
# permitted provided that the following conditions are met:
#
# 1. Redistributions of source code must retain the above copyright notice, this list of
#    conditions and the following disclaimer.
# 2. Redistributions in binary form must reproduce the above copyright notice, this list of
#    conditions and the following disclaimer in the documentation and/or other materials
#    provided with the distribution.
# 3. Neither the names of Facebook, Deepmind Technologies, NYU, NEC Laboratories America and
#    IDIAP Research Institute nor the names of its contributors may be used to endorse or
#    promote products derived from this software without specific prior written permission.
#
# THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS
# OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF
# MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE
# COPYRIGHT OWNER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL,
# EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE
# GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND
# ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING
# NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED
# OF THE POSSIBILITY OF SUCH DAMAGE.
"""PyTorch's own tests of the ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` modules, run on fastrnn.torch.

Source: ``test/test_nn.py`` of pytorch/pytorch at commit 74f2fa66feec00335f72813782f4802e80bff4cb
(classes ``TestNN`` and ``TestNNDeviceType``), vendored under the BSD-style licence above.
docs/adapters.md lists every RNN-module test of that file: vendored as is, adapted, or left out,
each with its reason.

Changes (the only ones):
  * ``nn`` is a namespace in which ``RNN``, ``LSTM`` and ``GRU`` are ``fastrnn.torch``'s (the
    rest is ``torch.nn``), so the test bodies run the fastrnn modules unchanged.
  * ``TestCase`` is a small ``unittest.TestCase`` with PyTorch's ``assertEqual`` /
    ``assertNotEqual`` on tensors (``torch.testing.assert_close``, PyTorch's default
    tolerances): PyTorch's own ``common_utils.TestCase`` needs its test-only dependencies
    (``expecttest``), which are not installed here.
  * Tests that compare the CPU implementation with cuDNN (``_test_RNN_cpu_vs_cudnn``,
    ``test_rnn_fused``) compare stock ``torch.nn`` (the reference) with fastrnn on the CPU:
    the "cuda" side of each comparison is fastrnn. LSTM projection (``proj_size``) cases are
    removed (fastrnn has no projection; ``fastrnn.torch.LSTM`` rejects it).
  * Tests decorated to need cuDNN only because of their CUDA half keep their CPU half
    (``test_RNN_dropout``, ``test_RNN_dropout_state``, ``test_RNN_change_dropout``,
    ``test_error_RNN_seq_len_zero``); devices are ``["cpu"]``.
  * PyTorch runs on one intra-op thread while the module runs (``one_torch_thread`` of
    ``conftest.py``, restored after), for speed only: interleaved with fastrnn's calls, PyTorch's
    spinning OpenMP threads on a 2-core machine ran these small shapes 10-100x slower.
  * Reformatted by ruff (line length 100); ``Variable``-era idioms kept.
"""

from __future__ import annotations

import io
import re
import unittest
import warnings
from itertools import product

import pytest

torch = pytest.importorskip("torch")

import fastrnn.torch as fastrnn_torch  # noqa: E402
import torch.nn.utils.rnn as rnn_utils  # noqa: E402
from torch import nn as torch_nn  # noqa: E402


class _NN:
    """``torch.nn`` with fastrnn's RNN, LSTM and GRU."""

    RNN = fastrnn_torch.RNN
    LSTM = fastrnn_torch.LSTM
    GRU = fastrnn_torch.GRU

    def __getattr__(self, name):
        return getattr(torch_nn, name)


nn = _NN()


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def get_all_device_types():
    return ["cpu"]


class set_default_dtype:  # noqa: N801 (the name of PyTorch's decorator)
    """``torch.testing._internal.common_utils.set_default_dtype`` as a decorator."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            saved = torch.get_default_dtype()
            torch.set_default_dtype(self.dtype)
            try:
                return fn(*args, **kwargs)
            finally:
                torch.set_default_dtype(saved)

        wrapper.__name__ = fn.__name__
        return wrapper


class TestCase(unittest.TestCase):
    """PyTorch's ``assertEqual`` / ``assertNotEqual`` semantics for tensors and containers."""

    def assertEqual(self, x, y, msg=None, *, atol=None, rtol=None, **kwargs):  # noqa: N802
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            x = torch.as_tensor(x)
            y = torch.as_tensor(y, dtype=x.dtype if not isinstance(y, torch.Tensor) else None)
            if atol is None and rtol is not None:
                atol = 0.0
            if rtol is None and atol is not None:
                rtol = 0.0
            torch.testing.assert_close(
                x, y, atol=atol, rtol=rtol, check_dtype=False, equal_nan=True, msg=msg
            )
        elif isinstance(x, (tuple, list)) and isinstance(y, (tuple, list)):
            super().assertEqual(len(x), len(y), msg)
            for a, b in zip(x, y):
                self.assertEqual(a, b, msg, atol=atol, rtol=rtol)
        else:
            super().assertEqual(x, y, msg)

    def assertNotEqual(self, x, y, msg=None):  # noqa: N802
        try:
            self.assertEqual(x, y)
        except AssertionError:
            return
        raise AssertionError(msg or f"{x!r} == {y!r}")


class TestNN(TestCase):
    def test_cudnn_forward_exception(self):
        # Adapted: the proj_size=10 LSTM of the original is removed (fastrnn has no projection).
        rnns = [
            (nn.LSTM(10, 20, batch_first=True), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
            (nn.GRU(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
            (nn.RNN(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
        ]
        x_wrong = torch.randn(2, 3, 3)
        x_right = torch.randn(2, 3, 10)
        for rnn, hidden in rnns:
            self.assertRaisesRegex(RuntimeError, "Expected hidden.*size.*got", rnn, x_right, hidden)
            self.assertRaisesRegex(
                RuntimeError, re.escape("input.size(-1) must be equal to input_size"), rnn, x_wrong
            )

    def test_rnn_args_check(self):
        input_size = 3
        hidden_size = 5
        num_layers = 2
        batch_size = 4
        seq_len = 6
        num_directions = 1
        bad_size = 7  # prime number so that no size can divide it.

        def test(input_shape, hidden_shape, mode):
            for input, hidden in get_inputs(input_shape, hidden_shape, mode):
                model = getattr(nn, mode)(input_size, hidden_size, num_layers)
                self.assertRaises(RuntimeError, lambda: model(input, hidden))  # noqa: B023

        correct_input_shape = (seq_len, batch_size, input_size)
        correct_hidden_shape = (num_layers * num_directions, batch_size, hidden_size)

        def update_shape(shape, dim, new_dim_size):
            new_shape = list(shape)
            new_shape[dim] = new_dim_size
            return tuple(new_shape)

        def get_inputs(input_shape, hidden_shape, mode):
            """returns list( tuple(input, hidden) )
            where input, hidden are inputs to a model"""
            input = torch.randn(input_shape)
            hidden = torch.randn(hidden_shape)
            if mode != "LSTM":
                return [(input, hidden)]
            if hidden_shape == correct_hidden_shape:
                return [(input, (hidden, hidden))]
            good_hidden = torch.randn(correct_hidden_shape)
            return [
                (input, (hidden, good_hidden)),
                (input, (good_hidden, hidden)),
            ]

        rnn_modes = ["RNN", "GRU", "LSTM"]
        for mode in rnn_modes:
            # Incorrect input batch size
            input_shape = update_shape(correct_input_shape, 1, bad_size)
            hidden_shape = correct_hidden_shape
            test(input_shape, hidden_shape, mode)

            # Incorrect hidden batch size
            input_shape = correct_input_shape
            hidden_shape = update_shape(correct_hidden_shape, 1, bad_size)
            test(input_shape, hidden_shape, mode)

            # Incorrect input size
            input_shape = update_shape(correct_input_shape, 2, bad_size)
            hidden_shape = correct_hidden_shape
            test(input_shape, hidden_shape, mode)

            # Incorrect hidden size
            input_shape = correct_input_shape
            hidden_shape = update_shape(correct_hidden_shape, 2, bad_size)
            test(input_shape, hidden_shape, mode)

            # Incorrect hidden[0]
            input_shape = correct_input_shape
            hidden_shape = update_shape(correct_hidden_shape, 0, bad_size)
            test(input_shape, hidden_shape, mode)

    def test_rnn_initial_hidden_state(self):
        rnn_modes = ["RNN", "GRU", "LSTM"]
        for mode in rnn_modes:
            rnn = getattr(nn, mode)(30, 20, 2)
            input = torch.randn(10, 32, 30)
            hidden = torch.zeros(2, 32, 20)

            if mode == "LSTM":
                hidden = (hidden, hidden)
            output1, hidden1 = rnn(input, hidden)
            output2, hidden2 = rnn(input)
            self.assertEqual(output1, output2)
            self.assertEqual(hidden1, hidden2)

    def test_projections_errors_on_gru_and_rnn(self):
        error_msg = "proj_size argument is only supported for LSTM, not RNN or GRU"
        for mode in ["RNN", "GRU"]:
            with self.assertRaisesRegex(ValueError, error_msg):
                getattr(nn, mode)(30, 20, 2, proj_size=10)

    def _test_RNN_cpu_vs_cudnn(self, dropout, dtype=torch.double):  # noqa: N802
        # Adapted: "cpu" is stock torch.nn (the reference), "cuda" is fastrnn, both on the CPU;
        # the LSTM-with-projections half is removed.
        def forward_backward(
            fastrnn, rnn, input_val, grad_output, weights_val, hx_val, grad_hy, cx_val=None,
            grad_cy=None,
        ):  # fmt: skip
            is_lstm = isinstance(rnn, torch_nn.LSTM)

            for x_layer, y_layer in zip(rnn.all_weights, weights_val):
                for x, y in zip(x_layer, y_layer):
                    x.data.copy_(y.data)

            if isinstance(input_val, rnn_utils.PackedSequence):
                input = rnn_utils.PackedSequence(
                    input_val.data.data.requires_grad_(True), input_val.batch_sizes
                )
                input_var = input.data
            else:
                input = input_val.clone().requires_grad_(True)
                input_var = input
            if is_lstm:
                if cx_val is None:
                    hx = (
                        hx_val.clone().requires_grad_(True),
                        hx_val.add(1).requires_grad_(True),
                    )
                else:
                    hx = (
                        hx_val.clone().requires_grad_(True),
                        cx_val.add(1).requires_grad_(True),
                    )
            else:
                hx = hx_val.clone().requires_grad_(True)

            output, hy = rnn(input, hx)

            if isinstance(output, rnn_utils.PackedSequence):
                output = output.data

            if is_lstm:
                if grad_cy is None:
                    torch.autograd.backward(
                        [output, hy[0], hy[1]], [grad_output, grad_hy, grad_hy + 1]
                    )
                else:
                    torch.autograd.backward(
                        [output, hy[0], hy[1]], [grad_output, grad_hy, grad_cy + 1]
                    )
            else:
                torch.autograd.backward([output, hy], [grad_output, grad_hy])

            return {
                "output": output.data,
                "hy": hy[0].data if is_lstm else hy.data,
                "weights": rnn.all_weights,
                "grad_input": input_var.grad.data,
                "grad_hx": hx[0].grad.data if is_lstm else hx.grad.data,
                "cy": hy[1].data if is_lstm else None,
                "grad_cx": hx[1].grad.data if is_lstm else None,
            }

        input_size = 10
        hidden_size = 6
        num_layers = 2
        seq_length = 7
        batch = 6

        def make_noncontig(tensor):
            ndim = tensor.dim()
            return torch.stack([tensor.clone().zero_(), tensor], ndim).select(ndim, 1)

        def compare_cpu_gpu(outputs_cpu, outputs_gpu):
            self.assertEqual(list(outputs_cpu.keys()), list(outputs_gpu.keys()))
            for key in outputs_cpu.keys():
                if key != "weights":
                    self.assertEqual(outputs_cpu[key], outputs_gpu[key], atol=5e-5, rtol=0, msg=key)

            # check grad weights separately, as nested dict
            for cpu_layer_weight, gpu_layer_weight in zip(
                outputs_cpu["weights"], outputs_gpu["weights"]
            ):
                for cpu_weight, gpu_weight in zip(cpu_layer_weight, gpu_layer_weight):
                    self.assertEqual(cpu_weight.grad.data, gpu_weight.grad.data, atol=5e-5, rtol=0)

        for stock, ours in (
            (torch_nn.RNN, nn.RNN),
            (torch_nn.LSTM, nn.LSTM),
            (torch_nn.GRU, nn.GRU),
        ):
            for bias, bidirectional, batch_first, contig, variable_len, lens_as_tensor in product(
                (True, False), repeat=6
            ):
                num_directions = 2 if bidirectional else 1
                if batch_first:
                    input_val = torch.randn(batch, seq_length, input_size, dtype=dtype)
                    grad_output = torch.randn(
                        batch, seq_length, hidden_size * num_directions, dtype=dtype
                    )
                else:
                    input_val = torch.randn(seq_length, batch, input_size, dtype=dtype)
                    grad_output = torch.randn(
                        seq_length, batch, hidden_size * num_directions, dtype=dtype
                    )

                hx_val = torch.randn(num_layers * num_directions, batch, hidden_size, dtype=dtype)
                grad_hy = torch.randn(num_layers * num_directions, batch, hidden_size, dtype=dtype)

                if not contig:
                    grad_output = make_noncontig(grad_output)
                    grad_hy = make_noncontig(grad_hy)
                    input_var = make_noncontig(input_val)  # noqa: F841 (as in PyTorch)
                    hx_val = make_noncontig(hx_val)

                if variable_len:
                    lengths = [7, 5, 5, 2, 1, 1]
                    if lens_as_tensor:
                        lengths = torch.tensor(lengths, dtype=torch.long)
                    input_val = rnn_utils.pack_padded_sequence(
                        input_val, lengths, batch_first=batch_first
                    )
                    grad_output = rnn_utils.pack_padded_sequence(
                        grad_output, lengths, batch_first=batch_first
                    ).data

                rnn = stock(
                    input_size,
                    hidden_size,
                    num_layers,
                    bias=bias,
                    dropout=dropout,
                    bidirectional=bidirectional,
                    batch_first=batch_first,
                ).to(dtype)

                outputs_cpu = forward_backward(
                    False, rnn, input_val, grad_output, rnn.all_weights, hx_val, grad_hy
                )

                rnn_gpu = ours(
                    input_size,
                    hidden_size,
                    num_layers,
                    bias=bias,
                    dropout=dropout,
                    bidirectional=bidirectional,
                    batch_first=batch_first,
                ).to(dtype)

                outputs_gpu = forward_backward(
                    True, rnn_gpu, input_val, grad_output, rnn.all_weights, hx_val, grad_hy
                )

                compare_cpu_gpu(outputs_cpu, outputs_gpu)

        for nonlinearity in ("tanh", "relu"):
            hx_val = torch.randn(num_layers, batch, hidden_size, dtype=dtype)
            input_val = torch.randn(seq_length, batch, input_size, dtype=dtype)
            grad_output = torch.randn(seq_length, batch, hidden_size * num_directions, dtype=dtype)
            grad_hy = torch.randn(num_layers * num_directions, batch, hidden_size, dtype=dtype)

            rnn = torch_nn.RNN(
                input_size, hidden_size, num_layers, bias=bias, nonlinearity=nonlinearity
            ).to(dtype)
            outputs_cpu = forward_backward(
                False, rnn, input_val, grad_output, rnn.all_weights, hx_val, grad_hy
            )

            rnn_gpu = nn.RNN(
                input_size, hidden_size, num_layers, bias=bias, nonlinearity=nonlinearity
            ).to(dtype)
            outputs_gpu = forward_backward(
                True, rnn_gpu, input_val, grad_output, rnn.all_weights, hx_val, grad_hy
            )

            compare_cpu_gpu(outputs_cpu, outputs_gpu)

    def test_RNN_cpu_vs_cudnn_no_dropout(self):  # noqa: N802
        dtype = torch.double
        self._test_RNN_cpu_vs_cudnn(0, dtype)

    def test_RNN_cpu_vs_cudnn_with_dropout(self):  # noqa: N802
        # Because of dropout randomness, can only compare dropout=0 and dropout=1
        self._test_RNN_cpu_vs_cudnn(1)

    @set_default_dtype(torch.double)
    def test_RNN_dropout(self):  # noqa: N802
        # checking the assumption that cuDNN sticks dropout in between
        # RNN layers
        for p in (0, 0.276, 0.731, 1):
            for train in (True, False):
                for cuda in (False,):  # Adapted: CPU only
                    rnn = nn.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu")
                    if cuda:
                        rnn.cuda()

                    if train:
                        rnn.train()
                    else:
                        rnn.eval()
                    rnn.weight_ih_l0.data.fill_(1)
                    rnn.weight_hh_l0.data.fill_(1)
                    rnn.weight_ih_l1.data.fill_(1)
                    rnn.weight_hh_l1.data.fill_(1)
                    input = torch.ones(1, 1, 10)
                    hx = torch.zeros(2, 1, 1000)
                    if cuda:
                        input = input.cuda()
                        hx = hx.cuda()

                    output, hy = rnn(input, hx)
                    self.assertEqual(output.data.min(), output.data.max())
                    output_val = output.data[0][0][0]
                    if p == 0 or not train:
                        self.assertEqual(output_val, 10000)
                    elif p == 1:
                        self.assertEqual(output_val, 0)
                    else:
                        self.assertGreater(output_val, 8000)
                        self.assertLess(output_val, 12000)
                        denorm_mod = (output_val * (1 - p)) % 10
                        self.assertLess(min(denorm_mod, 10 - denorm_mod), 1e-2)

                    self.assertEqual(hy[0].data.min(), hy[0].data.max())
                    self.assertEqual(hy[1].data.min(), hy[1].data.max())
                    self.assertEqual(hy.data[0][0][0], 10)
                    self.assertEqual(hy.data[1][0][0], output_val)

    @set_default_dtype(torch.double)
    def test_error_RNN_seq_len_zero(self):  # noqa: N802
        # checking error message when RNN has seq_len = 0
        for module in (nn.RNN, nn.LSTM, nn.GRU):
            for bidirectional in [True, False]:
                for device in get_all_device_types():
                    input = torch.ones(0, 10, 5)
                    rnn = module(5, 6, bidirectional=bidirectional)
                    if device == "cuda":
                        rnn.cuda()
                        input = input.cuda()

                    with self.assertRaisesRegex(
                        RuntimeError, "Expected sequence length to be larger than 0 in RNN"
                    ):
                        rnn(input)

    def test_RNN_input_size_zero(self):  # noqa: N802
        for module in (nn.RNN, nn.LSTM, nn.GRU):
            for device in get_all_device_types():
                input = torch.zeros((5, 0, 3))
                rnn = module(input_size=3, hidden_size=4)
                if device == "cuda":
                    rnn.cuda()
                    input = input.cuda()
                outs = rnn(input)
                self.assertEqual(outs[0].shape, torch.Size([5, 0, 4]))
                # Check that backward does not cause a hard error
                outs[0].sum().backward()

    def test_RNN_dropout_state(self):  # noqa: N802
        for p in (0, 0.1234):
            for train in (True, False):
                for cuda in (False,):  # Adapted: CPU only
                    rnn = nn.RNN(100, 100, 2, bias=False, dropout=p, nonlinearity="relu")
                    if cuda:
                        rnn.cuda()

                    if train:
                        rnn.train()
                    else:
                        rnn.eval()
                    input = torch.rand(1, 1, 100)
                    hx = torch.rand(2, 1, 100)
                    if cuda:
                        input = input.cuda()
                        hx = hx.cuda()

                    output1, hy1 = rnn(input, hx)
                    output2, hy2 = rnn(input, hx)

                    buf = io.BytesIO()
                    torch.save(rnn, buf)
                    buf.seek(0)
                    # weights_only=False as this is legacy code that saves the model
                    rnn2 = torch.load(buf, weights_only=False)
                    rnn2.flatten_parameters()
                    output3, hy3 = rnn2(input, hx)

                    if p == 0 or not train:
                        self.assertEqual(output1, output2)
                        self.assertEqual(output1, output3)
                        self.assertEqual(hy1, hy2)
                        self.assertEqual(hy1, hy3)
                    else:
                        self.assertNotEqual(output1, output2)
                        self.assertNotEqual(output1, output3)
                        self.assertNotEqual(hy1, hy2)
                        self.assertNotEqual(hy1, hy3)

    @set_default_dtype(torch.double)
    def test_RNN_change_dropout(self):  # noqa: N802
        for train, cuda in product((True, False), (False,)):  # Adapted: CPU only
            rnn = nn.RNN(100, 100, 2, dropout=0, nonlinearity="relu")
            input = torch.rand(3, 2, 100)
            if cuda:
                input.data = input.data.cuda()
                rnn.cuda()

            if train:
                rnn.train()
            else:
                rnn.eval()

            prev_output = None
            for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
                rnn.dropout = p
                output1, hy1 = rnn(input)
                output2, hy2 = rnn(input)

                if p == 0 or p == 1 or not train:
                    self.assertEqual(output1, output2)
                    self.assertEqual(hy1, hy2)
                else:
                    self.assertNotEqual(output1, output2)
                    self.assertNotEqual(hy1, hy2)

                if prev_output is not None:
                    if not train:
                        self.assertEqual(output1.data, prev_output)
                        self.assertEqual(output2.data, prev_output)
                    else:
                        self.assertNotEqual(output1.data, prev_output)
                        self.assertNotEqual(output2.data, prev_output)
                prev_output = output1.data


class TestNNDeviceType(TestCase):
    device = "cpu"

    def _test_rnn_fused(self, device, dtype):
        # Adapted from the onlyCUDA test_rnn_fused: "rnn" is stock torch.nn, "rnn_device" is
        # fastrnn, both on the CPU (the cuDNN flags context is removed).
        def copy_rnn(rnn1, rnn2):
            for x_layer, y_layer in zip(rnn1.all_weights, rnn2.all_weights):
                for x, y in zip(x_layer, y_layer):
                    x.data.copy_(y.data)

        def check_rnn_grads(rnn1, rnn2):
            for x_layer, y_layer in zip(rnn1.all_weights, rnn2.all_weights):
                for x, y in zip(x_layer, y_layer):
                    self.assertEqual(x.grad, y.grad, atol=5e-5, rtol=0)

        input_size = 10
        hidden_size = 6
        num_layers = 2
        seq_length = 7
        batch = 6
        input_val = torch.randn(seq_length, batch, input_size, dtype=dtype)
        grad_output = torch.randn(seq_length, batch, hidden_size, dtype=dtype)
        hx_val = torch.randn(num_layers, batch, hidden_size, dtype=dtype)
        grad_hy = torch.randn(num_layers, batch, hidden_size, dtype=dtype)
        for module, module_device in ((torch_nn.GRU, nn.GRU), (torch_nn.LSTM, nn.LSTM)):
            for bias in (True, False):
                rnn = module(input_size, hidden_size, num_layers, bias=bias).to(dtype)
                rnn_device = module_device(input_size, hidden_size, num_layers, bias=bias).to(
                    device, dtype
                )
                copy_rnn(rnn, rnn_device)

                is_lstm = isinstance(rnn, torch_nn.LSTM)
                if is_lstm:
                    hx = (
                        hx_val.clone().requires_grad_(True),
                        hx_val.clone().add(1).requires_grad_(True),
                    )
                    hx_device = (
                        hx_val.clone().to(device).requires_grad_(True),
                        hx_val.clone().to(device).add(1).requires_grad_(True),
                    )
                else:
                    hx = hx_val.clone().requires_grad_(True)
                    hx_device = hx_val.clone().to(device).requires_grad_(True)

                inp = input_val.clone().requires_grad_(True)
                inp_cu = input_val.clone().to(device).requires_grad_(True)
                output1, hy1 = rnn(inp, hx)
                output2, hy2 = rnn_device(inp_cu, hx_device)
                if is_lstm:
                    torch.autograd.backward(
                        [output1, hy1[0], hy1[1]], [grad_output, grad_hy, grad_hy + 1]
                    )
                    torch.autograd.backward(
                        [output2, hy2[0], hy2[1]],
                        [grad_output.to(device), grad_hy.to(device), (grad_hy + 1).to(device)],
                    )
                else:
                    torch.autograd.backward([output1, hy1], [grad_output, grad_hy])
                    torch.autograd.backward(
                        [output2, hy2], [grad_output.to(device), grad_hy.to(device)]
                    )

                self.assertEqual(output1, output2)
                self.assertEqual(hy1, hy2)

                check_rnn_grads(rnn, rnn_device)
                self.assertEqual(inp.grad, inp_cu.grad)
                if is_lstm:
                    self.assertEqual(hx[0].grad, hx_device[0].grad)
                    self.assertEqual(hx[1].grad, hx_device[1].grad)
                else:
                    self.assertEqual(hx.grad, hx_device.grad)

    def test_rnn_fused_cpu_float32(self):
        self._test_rnn_fused(self.device, torch.float)

    def test_rnn_fused_cpu_float64(self):
        self._test_rnn_fused(self.device, torch.double)

    def test_save_lstm_compatibility(self):
        device = self.device
        # Test that saving an LSTM in PyTorch 1.7 and older can still be
        # loaded in newer versions of PyTorch.
        model = nn.LSTM(2, 3)
        x = torch.randn(32, 5, 2)
        expected = model(x)

        # Get a state dict for PyTorch 1.7 LSTM. Before PyTorch 1.8, proj_size
        # didn't exist.
        assert model.proj_size == 0
        state_dict = model.__dict__
        del state_dict["proj_size"]

        # load a model
        loaded_model = nn.LSTM(2, 3)
        loaded_model.__setstate__(state_dict)
        result = loaded_model(x)
        self.assertEqual(result, expected)
        del device


def test_fused_path_is_what_ran():
    """Guard (not vendored): the modules above are fastrnn's, and no warning is raised."""
    assert nn.LSTM is fastrnn_torch.LSTM and nn.Linear is torch_nn.Linear
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = nn.GRU(3, 4, num_layers=2)(torch.randn(5, 2, 3))
    assert out.shape == (5, 2, 4)
