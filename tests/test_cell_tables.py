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
