"""fastrnn.torch against torch.nn's own RNN / LSTM / GRU, weights loaded across.

Every comparison is with stock PyTorch: float32 results (outputs, final states and every
gradient) are judged against the stock module run in float64 on the same weights, and may be
at most 4x as far from it as the stock module's own float32 result is (conftest's rule).
"""

from __future__ import annotations

import copy
import io
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastrnn.torch as ft  # noqa: E402
from fastrnn.torch._autograd import FusedRecurrence, Recurrence, bridge_for  # noqa: E402
from harness import assert_close, assert_close_float32  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

T, B, I, H = 7, 5, 3, 17  # noqa: E741 (the dimension legend)
STOCK = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
OURS = {"RNN": ft.RNN, "LSTM": ft.LSTM, "GRU": ft.GRU}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


KINDS = [
    ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu"}),
    ("LSTM", {}),
    ("GRU", {}),
]


def _pair(kind, seed=0, **kwargs):
    """(stock module, fastrnn module) holding the same random weights (realistic scale)."""
    torch.manual_seed(seed)
    stock = STOCK[kind](I, H, **kwargs)
    ours = OURS[kind](I, H, **kwargs)
    ours.load_state_dict(stock.state_dict())
    return stock, ours


def _states(kind, hx):
    return list(hx) if kind == "LSTM" else [hx]


def _run(module, kind, x, hx, weights_out):
    """Forward + backward of a loss touching the output and every final state.

    Returns the output, final states and the gradients of x, of each initial state and of
    every parameter (in ``named_parameters`` order), as float64 NumPy arrays.
    """
    x = x.clone().requires_grad_(True)
    hx = None if hx is None else [h.clone().requires_grad_(True) for h in hx]
    out, final = module(x, None if hx is None else (tuple(hx) if kind == "LSTM" else hx[0]))
    finals = _states(kind, final)
    gen = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for f in finals:
        loss = loss + (f * torch.randn(f.shape, generator=gen, dtype=f.dtype)).sum()
    loss.backward()
    result = {"output": out, **{f"state{k}": f for k, f in enumerate(finals)}, "dx": x.grad}
    for k, h in enumerate(hx or []):
        result[f"dh{k}"] = h.grad
    for name, p in module.named_parameters():
        result[f"d{name}"] = p.grad
    weights_out.extend(result)
    return {k: v.detach().double().numpy() for k, v in result.items()}


def _compare(kind, stock, ours, x, hx=None):
    """ours (float32) vs stock (float64 reference, float32 for the tolerance)."""
    ref64 = copy.deepcopy(stock).double()
    names = []
    expected = _run(ref64, kind, x.double(), None if hx is None else [h.double() for h in hx], [])
    reference32 = _run(stock, kind, x, hx, names)
    actual = _run(ours, kind, x, hx, [])
    assert set(actual) == set(expected)
    for name in names:
        assert_close_float32(actual[name], expected[name], reference32[name], name=name)


@pytest.mark.parametrize("kind,kw", KINDS)
@pytest.mark.parametrize(
    "config",
    [
        {},
        {"num_layers": 2, "bidirectional": True},
        {"batch_first": True, "bias": False},
        {"num_layers": 3, "batch_first": True},
    ],
    ids=["plain", "2layer-bidir", "batchfirst-nobias", "3layer"],
)
@pytest.mark.parametrize("with_hx", [False, True], ids=["zeros", "hx"])
def test_matches_torch_nn(kind, kw, config, with_hx):
    stock, ours = _pair(kind, **kw, **config)
    gen = torch.Generator().manual_seed(2)
    shape = (B, T, I) if config.get("batch_first") else (T, B, I)
    x = torch.randn(shape, generator=gen)
    hx = None
    if with_hx:
        n = config.get("num_layers", 1) * (2 if config.get("bidirectional") else 1)
        hx = [torch.randn(n, B, H, generator=gen) for _ in range(2 if kind == "LSTM" else 1)]
    _compare(kind, stock, ours, x, hx)


@pytest.mark.parametrize("kind,kw", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_unbatched_input(kind, kw, bidirectional):
    stock, ours = _pair(kind, bidirectional=bidirectional, **kw)
    x = torch.randn(T, I, generator=torch.Generator().manual_seed(3))
    out_s, h_s = stock(x)
    out_o, h_o = ours(x)
    assert out_o.shape == out_s.shape == (T, H * (2 if bidirectional else 1))
    for a, b in zip(_states(kind, h_o), _states(kind, h_s)):
        assert a.shape == b.shape
        assert_close(a.detach().numpy(), b.detach().numpy(), rtol=1e-5)
    assert_close(out_o.detach().numpy(), out_s.detach().numpy(), rtol=1e-5)


def _packed_run(module, kind, x, lengths, hx):
    x = x.clone().requires_grad_(True)
    hx = [h.clone().requires_grad_(True) for h in hx]
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, final = module(packed, tuple(hx) if kind == "LSTM" else hx[0])
    finals = _states(kind, final)
    padded, out_lengths = pad_packed_sequence(out)
    gen = torch.Generator().manual_seed(4)
    loss = (out.data * torch.randn(out.data.shape, generator=gen, dtype=x.dtype)).sum()
    for f in finals:
        loss = loss + (f * torch.randn(f.shape, generator=gen, dtype=x.dtype)).sum()
    loss.backward()
    result = {"padded": padded, "dx": x.grad}
    result.update({f"state{k}": f for k, f in enumerate(finals)})
    result.update({f"dh{k}": h.grad for k, h in enumerate(hx)})
    result.update({f"d{n}": p.grad for n, p in module.named_parameters()})
    return out, out_lengths, {k: v.detach().double().numpy() for k, v in result.items()}


@pytest.mark.parametrize("kind,kw", KINDS)
@pytest.mark.parametrize("config", [{}, {"num_layers": 2, "bidirectional": True}])
def test_packed_sequence_matches_torch_nn(kind, kw, config):
    """Unsorted lengths (including 1 and T): padded outputs are zeros in PyTorch's packed
    output while fastrnn's masks repeat the last output, and h_n must be each sequence's state
    at its own last step (and, in reverse, after its first)."""
    stock, ours = _pair(kind, seed=5, **kw, **config)
    gen = torch.Generator().manual_seed(6)
    lengths = [3, T, 1, 4, T - 1]
    x = torch.randn(T, B, I, generator=gen)
    n = config.get("num_layers", 1) * (2 if config.get("bidirectional") else 1)
    hx = [torch.randn(n, B, H, generator=gen) for _ in range(2 if kind == "LSTM" else 1)]
    ref64 = copy.deepcopy(stock).double()
    _, _, expected = _packed_run(ref64, kind, x.double(), lengths, [h.double() for h in hx])
    out_s, len_s, reference32 = _packed_run(stock, kind, x, lengths, hx)
    out_o, len_o, actual = _packed_run(ours, kind, x, lengths, hx)
    assert isinstance(out_o, torch.nn.utils.rnn.PackedSequence)
    assert torch.equal(out_o.batch_sizes, out_s.batch_sizes)
    assert torch.equal(out_o.sorted_indices, out_s.sorted_indices)
    assert torch.equal(len_o, len_s)
    for name in expected:
        assert_close_float32(actual[name], expected[name], reference32[name], name=name)
    padded = actual["padded"]  # positions past each length are exactly zero, as PyTorch's
    for b, length in enumerate(lengths):
        assert not padded[length:, b].any()


@pytest.mark.parametrize("kind,kw", KINDS)
def test_gradcheck_float64(kind, kw):
    """torch.autograd.gradcheck of input, initial states and every weight, through
    torch.func.functional_call (which also replaces the module's weights per call)."""
    torch.manual_seed(7)
    module = OURS[kind](3, 5, num_layers=2, bidirectional=True, **kw).double()
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    x = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    states = [
        torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
        for _ in range(2 if kind == "LSTM" else 1)
    ]

    def f(x, *rest):
        hs, ps = rest[: len(states)], rest[len(states) :]
        hx = tuple(hs) if kind == "LSTM" else hs[0]
        out, final = torch.func.functional_call(module, dict(zip(names, ps)), (x, hx))
        return (out, *_states(kind, final))

    assert torch.autograd.gradcheck(f, (x, *states, *params), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind,kw", KINDS)
def test_gradcheck_packed_float64(kind, kw):
    torch.manual_seed(8)
    module = OURS[kind](2, 3, bidirectional=True, **kw).double()
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    lengths = [2, 4, 1]

    def f(x):
        out, final = module(pack_padded_sequence(x, lengths, enforce_sorted=False))
        return (out.data, *_states(kind, final))

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "rec",
    [
        Recurrence("simple_rnn", "relu", go_backwards=True),
        Recurrence("lstm", "tanh", "hard_sigmoid"),
        Recurrence("gru", reset_after=False, go_backwards=True),
    ],
)
def test_function_gradcheck_with_mask_and_dropout(rec):
    """The autograd.Function on its own, with a mask and both dropout masks (constants)."""
    gen = torch.Generator().manual_seed(9)
    g = {"simple_rnn": 1, "lstm": 4, "gru": 3}[rec.cell]
    t, b, i, h = 5, 3, 2, 3

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    bias_shape = (2, g * h) if rec.cell == "gru" and rec.reset_after else (g * h,)
    args = [rand(t, b, i), rand(b, h), rand(b, h) if rec.cell == "lstm" else None]
    args += [rand(i, g * h), rand(h, g * h), rand(*bias_shape)]
    mask = np.ones((t, b), bool)
    mask[3:, 0] = False
    mask[0, 2] = False
    dmask = (torch.rand(b, i, generator=gen) > 0.3).double() / 0.7
    rdmask = (torch.rand(b, h, generator=gen) > 0.3).double() / 0.7
    inputs = [a for a in args if a is not None]

    def f(*tensors):
        it = iter(tensors)
        full = [next(it) if a is not None else None for a in args]
        return FusedRecurrence.apply(
            rec, bridge_for(torch.device("cpu")), mask, *full, dmask, rdmask
        )

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


def test_lstm_biases_get_the_same_gradient():
    _, ours = _pair("LSTM")
    out, _ = ours(torch.randn(T, B, I))
    out.sum().backward()
    assert torch.equal(ours.bias_ih_l0.grad, ours.bias_hh_l0.grad)
    assert ours.bias_ih_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("kind,kw", KINDS)
def test_inference_paths_match_autograd_path(kind, kw):
    _, ours = _pair(kind, num_layers=2, bidirectional=True, **kw)
    x = torch.randn(T, B, I)
    out_grad, h_grad = ours(x)
    with torch.no_grad():
        out_nograd, h_nograd = ours(x)
    with torch.inference_mode():
        out_inf, h_inf = ours(x)
    assert out_grad.requires_grad and not out_nograd.requires_grad
    assert torch.equal(out_grad.detach(), out_nograd) and torch.equal(out_nograd, out_inf)
    for a, b in zip(_states(kind, h_grad), _states(kind, h_inf)):
        assert torch.equal(a.detach(), b)


@pytest.mark.parametrize("kind,kw", KINDS)
def test_inference_sees_every_weight_change(kind, kw):
    """The inference path reuses its converted weights only while the parameters' bytes are
    unchanged: writes through ``.data`` (no version bump), under ``no_grad``, by an optimizer
    step, by ``load_state_dict``, NaN written over NaN and a sign flip of a zero all show."""
    stock, ours = _pair(kind, num_layers=2, bidirectional=True, **kw)
    x = torch.randn(T, B, I)

    def check():
        with torch.no_grad():
            want, got = stock(x), ours(x)
            want64 = copy.deepcopy(stock).double()(x.double())
        pairs = zip(
            [want[0], *_states(kind, want[1])],
            [want64[0], *_states(kind, want64[1])],
            [got[0], *_states(kind, got[1])],
        )
        for ref32, ref64, actual in pairs:
            assert_close_float32(actual.numpy(), ref64.numpy(), ref32.numpy())

    check()
    ours.weight_hh_l0.data.mul_(0.5)  # .data: PyTorch's version counter does not move
    stock.weight_hh_l0.data.mul_(0.5)
    check()
    with torch.no_grad():
        for m in (stock, ours):
            m.weight_ih_l1_reverse.copy_(torch.randn_like(m.weight_ih_l1_reverse))
            m.weight_ih_l1_reverse.copy_(stock.weight_ih_l1_reverse)
    check()
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)  # a step moves ours in place
    ours(x)[0].square().sum().backward()
    opt.step()
    stock.load_state_dict(ours.state_dict())
    check()
    fresh, _ = _pair(kind, seed=3, num_layers=2, bidirectional=True, **kw)
    stock.load_state_dict(fresh.state_dict())
    ours.load_state_dict(fresh.state_dict())
    check()
    with torch.no_grad():
        ours.bias_hh_l0.data[0] = float("nan")
        assert torch.isnan(ours(x)[0]).any()
        ours.bias_hh_l0.data[0] = float("nan")  # NaN over NaN: same bytes, same result
        assert torch.isnan(ours(x)[0]).any()
        ours.bias_hh_l0.data[0] = stock.bias_hh_l0[0]
    check()
    # -0.0 == 0.0 as values, not as bytes: a zero weight whose sign flips is a change.
    with torch.no_grad():
        ours.weight_hh_l0.data[0, 0] = 0.0
        before = ours(x)[0].clone()
        ours.weight_hh_l0.data[0, 0] = -0.0
        cache = ours.__dict__["_fastrnn_inference_weights"]._state
        ours(x)
        assert ours.__dict__["_fastrnn_inference_weights"]._state is not cache
        assert torch.equal(ours(x)[0], before)


def test_inputs_unmodified_and_in_place_change_detected():
    _, ours = _pair("LSTM")
    x = torch.randn(T, B, I, requires_grad=True)
    hx = (torch.randn(1, B, H), torch.randn(1, B, H))
    before = [x.detach().clone(), hx[0].clone(), hx[1].clone()]
    out, _ = ours(x, hx)
    for a, b in zip(before, [x.detach(), *hx]):
        assert torch.equal(a, b)
    x2 = torch.randn(T, B, I).requires_grad_(True)
    y = x2 * 1.0
    out, _ = ours(y)
    with torch.no_grad():
        y.mul_(2.0)  # the backward would need y's old values
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_dropout_between_layers():
    _, ours = _pair("GRU", num_layers=3, dropout=0.5)
    stock_eval, _ = _pair("GRU", num_layers=3, dropout=0.5)
    x = torch.randn(T, B, I)
    ours.train()
    a, _ = ours(x)
    b, _ = ours(x)
    assert not torch.equal(a, b)  # a fresh dropout mask per call
    ours.eval()
    stock_eval.eval()
    assert_close(ours(x)[0].detach().numpy(), stock_eval(x)[0].detach().numpy(), rtol=1e-5)
    ours.dropout = 1.0  # everything after layer 1 sees zeros, as PyTorch's
    stock_eval.dropout = 1.0
    ours.train()
    stock_eval.train()
    assert_close(ours(x)[0].detach().numpy(), stock_eval(x)[0].detach().numpy(), rtol=1e-5)


def test_state_dict_and_pickle_round_trip():
    stock, ours = _pair("LSTM", num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(stock.state_dict())
    back = nn.LSTM(I, H, num_layers=2, bidirectional=True)
    back.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I)
    buf = io.BytesIO()
    torch.save(ours, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert type(loaded) is ft.LSTM
    for module in (loaded, copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert torch.equal(module(x)[0], ours(x)[0])
    assert_close(back(x)[0].detach().numpy(), ours(x)[0].detach().numpy(), rtol=1e-5)
    assert repr(ours) == repr(stock)


def test_convert_in_place_keeps_parameters_and_optimizer():
    torch.manual_seed(10)
    shared = nn.GRU(I, H)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.LSTM(I, H, num_layers=2, batch_first=True)
            self.blocks = nn.ModuleList([nn.Sequential(nn.RNN(H, H, nonlinearity="relu"))])
            self.a, self.b = shared, shared
            self.head = nn.Linear(H, 1)

    net = Net()
    reference = copy.deepcopy(net)
    params_before = list(net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    out = ft.convert(net)
    assert out is net
    assert type(net.enc) is ft.LSTM and type(net.blocks[0][0]) is ft.RNN
    assert type(net.a) is ft.GRU and net.a is net.b  # a shared module stays shared
    assert all(p is q for p, q in zip(net.parameters(), params_before))
    assert type(shared) is nn.GRU  # the original object itself is untouched
    x = torch.randn(B, T, I)
    assert_close(net.enc(x)[0].detach().numpy(), reference.enc(x)[0].detach().numpy(), rtol=1e-5)
    before = net.enc.weight_hh_l1.detach().clone()
    net.enc(x)[0].sum().backward()
    opt.step()
    assert not torch.equal(before, net.enc.weight_hh_l1)  # the old optimizer trains them


def test_convert_root_module_and_training_mode():
    module = nn.GRU(I, H, dropout=0.3, num_layers=2).eval()
    converted = ft.convert(module)
    assert type(converted) is ft.GRU and not converted.training
    assert converted.weight_ih_l0 is module.weight_ih_l0


def test_convert_strict_and_unsupported():
    net = nn.Sequential(nn.LSTM(I, H, proj_size=4), nn.GRU(4, H))
    with pytest.raises(ValueError, match=r"0 \(LSTM\): proj_size=4"):
        ft.convert(net)
    assert type(net[1]) is nn.GRU  # nothing was replaced
    with pytest.warns(UserWarning, match="proj_size=4"):
        ft.convert(net, strict=False)
    assert type(net[0]) is nn.LSTM and type(net[1]) is ft.GRU
    half = nn.Sequential(nn.RNN(I, H).half())
    with pytest.raises(ValueError, match="float16"):
        ft.convert(half)

    class MyLSTM(nn.LSTM):
        pass

    custom = nn.Sequential(MyLSTM(I, H))
    ft.convert(custom)
    assert type(custom[0]) is MyLSTM  # subclasses may override forward: left alone
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ft.convert("not a module")


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="proj_size"):
        ft.LSTM(I, H, proj_size=2)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        ft.GRU(I, H, proj_size=2)
    ours = ft.GRU(I, H)
    with pytest.raises(ValueError, match="input dtype"):
        ours(torch.randn(T, B, I, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        ours(torch.randn(T, B, I), torch.randn(1, B + 1, H))
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        ours(torch.randn(T, B, I + 1))
    with pytest.raises(RuntimeError, match="sequence length to be larger than 0"):
        ours(torch.randn(0, B, I))
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D"):
        ours(torch.randn(T, B, I, 1))
    with pytest.raises(TypeError, match="float16"):
        ft.RNN(I, H).half()(torch.randn(T, B, I).half())
    with pytest.raises(TypeError, match="hx\\[0\\] has dtype torch.float64"):
        ours(torch.randn(T, B, I), torch.randn(1, B, H, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="fastrnn's CUDA path cannot run|CPU and CUDA"):
        bridge_for(torch.device("cuda", 0))
    with pytest.raises(RuntimeError, match="CPU and CUDA tensors only"):
        bridge_for(torch.device("meta"))


def test_empty_batch():
    _, ours = _pair("LSTM")
    x = torch.randn(T, 0, I, requires_grad=True)
    out, (h, c) = ours(x)
    assert out.shape == (T, 0, H) and h.shape == (1, 0, H)
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_import_fastrnn_does_not_import_frameworks():
    code = "import sys, fastrnn; print('torch' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_no_warnings_on_the_fused_path():
    _, ours = _pair("GRU", num_layers=2, bidirectional=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = ours(torch.randn(T, B, I, requires_grad=True))
        out.sum().backward()


def test_autocast_runs_in_the_parameters_dtype():
    _, ours = _pair("GRU")
    x = torch.randn(T, B, I)
    expected, _ = ours(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, h_n = ours(x.to(torch.bfloat16))  # a lower-precision input, as autocast makes
    assert got.dtype == h_n.dtype == torch.float32
    assert_close(got.detach().numpy(), expected.detach().numpy(), rtol=0, atol=0.05)
