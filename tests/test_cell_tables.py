"""The cell and activation names are one table: the compiled modules and Python agree."""

from __future__ import annotations

import importlib

import pytest
from fastrnn import _cells, _cpu, activations


def _modules():
    mods = [_cpu]
    try:
        mods.append(importlib.import_module("fastrnn._cuda"))
    except ImportError:
        pass
    return mods


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_compiled_names_match_python(module):
    assert tuple(module.CELLS) == tuple(_cells.CELLS)
    assert tuple(module.ACTIVATIONS) == activations.RECURRENT
    assert activations.RECURRENT == _cells.ACTIVATIONS


@pytest.mark.parametrize("cell", list(_cells.CELLS))
def test_workspace_size_follows_cell_spec(cell):
    # states + gates (+ c and a(c) for LSTM, + the candidate term for GRU), per step and row.
    spec = _cells.CELLS[cell]
    extra = {"simple_rnn": 0, "lstm": 2, "gru": 1}[cell]
    T, B, H = 7, 5, 3
    assert _cpu.workspace_size(cell, T, B, H) == T * B * H * (1 + spec.gates + extra)


def _stub_functions(module) -> dict:
    """{name: [argument names]} of the module's .pyi stub."""
    import ast
    from pathlib import Path

    path = Path(module.__file__).with_name(module.__name__.rsplit(".", 1)[1] + ".pyi")
    tree = ast.parse(path.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            out[node.name] = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    return out


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_type_stubs_match_the_compiled_module(module):
    """The .pyi stubs name every public function with the compiled signature's arguments."""
    import re

    stubs = _stub_functions(module)
    public = {n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))}
    assert public <= set(stubs), f"functions without a stub: {sorted(public - set(stubs))}"
    for name, args in stubs.items():
        assert hasattr(module, name), f"stub for a function the module lacks: {name}"
        if args and args != ["args", "kwargs"]:
            signature = getattr(module, name).__doc__.splitlines()[0]
            assert re.findall(r"(\w+): ", signature) == args, name
