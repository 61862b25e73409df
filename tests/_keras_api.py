"""Compares a fastrnn callable's arguments with the Keras callable it mirrors."""

from __future__ import annotations

import inspect


def _named(fn) -> dict:
    return {
        n: p.default
        for n, p in inspect.signature(fn).parameters.items()
        if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def keras_argument_mismatches(ours, theirs, skip=()) -> list[str]:
    """Keras's named arguments that ``ours`` lacks or defaults differently, and positional
    arguments out of Keras's order. Arguments ``ours`` takes through ``**kwargs`` count as
    present (callers check separately that Keras's defaults are accepted)."""
    mine, keras_args = _named(ours), _named(theirs)
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(ours).parameters.values())
    problems = []
    for name, default in keras_args.items():
        if name in skip:
            continue
        if name in mine:
            if mine[name] != default:
                problems.append(f"{name}: default {mine[name]!r}, Keras {default!r}")
        elif not takes_kwargs:
            problems.append(f"{name}: missing")
    shared_keras = [n for n in keras_args if n in mine and n not in skip]
    shared_mine = [n for n in mine if n in keras_args and n not in skip]
    if shared_keras != shared_mine:
        problems.append(f"argument order {shared_mine}, Keras {shared_keras}")
    return problems


def keras_defaults(theirs, skip=()) -> dict:
    """Keras's arguments that have defaults, with them (to pass to ours)."""
    return {
        n: d
        for n, d in _named(theirs).items()
        if d is not inspect.Parameter.empty and n not in skip
    }
