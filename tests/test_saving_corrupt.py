"""Hostile and corrupt model files: one table, every case a ValueError naming the file and entry.

Each case starts from a valid file (a ``.fastrnn`` zip, or a ``.keras`` archive written by
fastrnn when h5py is installed), breaks one thing, and loads it under a time and memory bound
(``tracemalloc`` sees NumPy's and Python's allocations): bombs and absurd shapes must be refused
from their headers, before anything big is read or allocated.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from fastrnn import layers as F
from fastrnn.models import Model, Sequential, load_model
from fastrnn.saving import ModelFileError

try:
    import h5py
except ImportError:  # the Keras cases skip
    h5py = None

needs_h5py = pytest.mark.skipif(h5py is None, reason="h5py (the h5 extra) is not installed")

T, FEATURES = 4, 2


def _model() -> Sequential:
    model = Sequential(
        [
            F.LSTM(3, return_sequences=True, input_shape=(T, FEATURES), name="lstm"),
            F.GRU(2, name="gru"),
            F.Dense(1, name="dense"),
        ],
        name="victim",
    )
    rng = np.random.default_rng(5)
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    model.compile("adam", "mse")
    x, y = rng.standard_normal((6, T, FEATURES)), rng.standard_normal((6, 1))
    model.fit(x, y, epochs=1, batch_size=6, verbose=0)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("valid")
    model = _model()
    out = {"fastrnn": folder / "valid.fastrnn"}
    model.save(out["fastrnn"])
    if h5py is not None:
        out["keras"] = folder / "valid.keras"
        model.save(out["keras"])
        out["weights"] = folder / "valid.weights.h5"
        model.save_weights(out["weights"])
    return out


# ---- crafting ------------------------------------------------------------------------------------
def _entries(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _rebuild(src: Path, dst: Path, replace=None, drop=(), add=None, method=None) -> Path:
    """A copy of ``src`` with entries replaced, dropped or added."""
    replace, add = replace or {}, add or {}
    with warnings.catch_warnings(), zipfile.ZipFile(dst, "w") as zf:
        warnings.simplefilter("ignore")  # "Duplicate name": the duplicate case wants one
        for info, data in _entries(src):
            if info.filename in drop:
                continue
            data = replace.get(info.filename, data)
            zf.writestr(info.filename, data, compress_type=method or info.compress_type)
        for name, data in add.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return dst


def _json_entry(path: Path, name: str):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read(name))


def _edit_json(name: str, edit: Callable) -> Callable:
    """A case builder: loads entry ``name``'s JSON, lets ``edit`` change it in place, writes it
    back."""

    def build(src: Path, dst: Path) -> Path:
        obj = _json_entry(src, name)
        edit(obj)
        return _rebuild(src, dst, replace={name: json.dumps(obj)})

    return build


def _new_json(name: str, make: Callable) -> Callable:
    """A case builder: entry ``name`` becomes ``make(its JSON)``."""

    def build(src: Path, dst: Path) -> Path:
        return _rebuild(src, dst, replace={name: json.dumps(make(_json_entry(src, name)))})

    return build


def _pop(path: list) -> Callable:
    def edit(obj):
        target = obj
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


def _npy(descr: str, shape, data: bytes, fortran: bool = False, major: int = 1) -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {tuple(shape)!r}, }}"
    header = header.ljust((len(header) // 64 + 1) * 64 - 1) + "\n"
    size = struct.pack("<H", len(header)) if major == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([major, 0]) + size + header.encode("latin1") + data


def _raw_header(body: str) -> bytes:
    body = body.ljust(63) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def _replace_entry(name: str, data: bytes | Callable) -> Callable:
    def build(src: Path, dst: Path) -> Path:
        value = data(src) if callable(data) else data
        return _rebuild(src, dst, replace={name: value})

    return build


def _weight(src: Path, index: int) -> np.ndarray:
    with zipfile.ZipFile(src) as zf:
        return np.load(io.BytesIO(zf.read(f"weights/{index:05d}.npy")))


def _patch_central(path: Path, name: str, **fields) -> None:
    """Rewrites fields of ``name``'s local and central headers in place (non-zip64 archives)."""
    data = bytearray(path.read_bytes())
    offsets = {  # field: (local header offset, central header offset, struct format)
        "flags": (6, 8, "<H"),
        "method": (8, 10, "<H"),
        "compress_size": (18, 20, "<L"),
        "file_size": (22, 24, "<L"),
    }
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        if pos < 0:
            raise AssertionError(f"{name} not found")
        name_len = struct.unpack("<H", data[pos + 28 : pos + 30])[0]
        if data[pos + 46 : pos + 46 + name_len].decode() == name:
            break
        pos += 4
    local = struct.unpack("<L", data[pos + 42 : pos + 46])[0]
    for key, value in fields.items():
        local_off, central_off, fmt = offsets[key]
        struct.pack_into(fmt, data, local + local_off, value)
        struct.pack_into(fmt, data, pos + central_off, value)
    path.write_bytes(bytes(data))


def _patched(name: str, **fields) -> Callable:
    def build(src: Path, dst: Path) -> Path:
        dst.write_bytes(src.read_bytes())
        _patch_central(dst, name, **fields)
        return dst

    return build


def _eocd_count(count: int) -> Callable:
    def build(src: Path, dst: Path) -> Path:
        data = bytearray(src.read_bytes())
        pos = data.rfind(b"PK\x05\x06")
        struct.pack_into("<HH", data, pos + 8, count, count)
        dst.write_bytes(bytes(data))
        return dst

    return build


def _bytes(data: bytes | Callable) -> Callable:
    def build(src: Path, dst: Path) -> Path:
        dst.write_bytes(data(src) if callable(data) else data)
        return dst

    return build


def _zeros_bomb(name: str, size: int) -> Callable:
    """Adds (or replaces) ``name`` with ``size`` deflated zero bytes: a small file, big inside."""

    def build(src: Path, dst: Path) -> Path:
        entries = [(i, d) for i, d in _entries(src) if i.filename != name]
        with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for info, data in entries:
                zf.writestr(info.filename, data, compress_type=info.compress_type)
            with zf.open(name, "w", force_zip64=True) as f:  # streamed: cheap to craft
                chunk = bytes(1 << 20)
                for _ in range(size >> 20):
                    f.write(chunk)
        return dst

    return build


# ---- the table -----------------------------------------------------------------------------------
def _set(path: list, value) -> Callable:
    def edit(obj):
        target = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _nest(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


CFG = "config.json"
LSTM_CFG = ["config", "layers", 0, "config"]

NATIVE_CASES: dict[str, tuple[Callable, str | None, str]] = {
    # not a zip / broken zips
    "empty file": (_bytes(b""), None, "not a fastrnn or Keras model file"),
    "random bytes": (_bytes(os.urandom(3000)), None, "not a fastrnn or Keras"),
    "truncated at half": (
        _bytes(lambda s: s.read_bytes()[: len(s.read_bytes()) // 2]),
        None,
        "not a",
    ),
    "truncated end record": (_bytes(lambda s: s.read_bytes()[:-10]), None, "not a"),
    "zeroed middle": (
        _bytes(
            lambda s: (lambda d: d[: len(d) // 2] + bytes(64) + d[len(d) // 2 + 64 :])(
                s.read_bytes()
            )
        ),
        r".",
        r"corrupt|truncated|not a|header|bad",
    ),
    "end record declares 60000 entries": (_eocd_count(60000), None, r"60000 entries"),
    "zip64 sentinel without locator": (_eocd_count(0xFFFF), None, r"zip64"),
    "bzip2 entry": (_patched("config.json", method=12), "config.json", "compression method 12"),
    "lzma entry": (_patched("config.json", method=14), "config.json", "compression method 14"),
    "encrypted entry": (_patched("config.json", flags=1), "config.json", "encrypted"),
    "declared size lies (bigger)": (
        _patched("config.json", file_size=3 << 30),
        None,
        r"max_bytes|ratio|stored entry",
    ),
    "deflated entry declares 1 GiB": (
        lambda s, d: _patched("config.json", file_size=1 << 30)(
            s, _rebuild(s, d, method=zipfile.ZIP_DEFLATED)
        ),
        "config.json",
        r"ratio",
    ),
    "declared size lies (smaller)": (
        lambda s, d: _patched("config.json", file_size=10)(
            s, _rebuild(s, d, method=zipfile.ZIP_DEFLATED)
        ),
        "config.json",
        r"corrupt|truncated|invalid JSON",
    ),
    "zip bomb: 64 MiB of zeros": (
        _zeros_bomb("weights/00000.npy", 64 << 20),
        "weights/00000.npy",
        "ratio",
    ),
    "duplicate entry": (
        lambda s, d: _rebuild(s, d, add={"config.json": b"{}"}),
        "config.json",
        "twice",
    ),
    "extra entry": (
        lambda s, d: _rebuild(s, d, add={"run_me.py": b"print(1)"}),
        "run_me.py",
        "unexpected",
    ),
    "extra weight array": (
        lambda s, d: _rebuild(s, d, add={"weights/00099.npy": _npy("<f4", (1,), bytes(4))}),
        r"weights/0000\d\.npy|weights/00099",
        r"numbered|names",
    ),
    # missing entries
    **{
        f"missing {name}": (lambda s, d, n=name: _rebuild(s, d, drop=(n,)), name, "missing entry")
        for name in ("metadata.json", "config.json", "weights/index.json")
    },
    "missing weight array": (
        lambda s, d: _rebuild(s, d, drop=("weights/00003.npy",)),
        r"weights/",
        r"numbered|names",
    ),
    "missing optimizer arrays": (
        lambda s, d: _rebuild(s, d, drop=[f"optimizer/{i:05d}.npy" for i in range(3)]),
        r"compile.json|optimizer/",
        r"numbered|state arrays",
    ),
    # JSON: syntax, nesting, numbers
    "config not JSON": (_replace_entry(CFG, b"{'units': 3"), CFG, "invalid JSON"),
    "config not UTF-8": (_replace_entry(CFG, b'{"a": "\xff\xfe"}'), CFG, "UTF-8"),
    "deeply nested config": (_replace_entry(CFG, _nest(100_000)), CFG, "nested deeper"),
    "nested 70 levels": (_replace_entry(CFG, _nest(70)), CFG, "nested deeper"),
    "duplicate JSON keys": (_replace_entry(CFG, b'{"a": 1, "a": 2}'), CFG, "duplicate key"),
    "NaN units": (
        _replace_entry(
            CFG,
            lambda s: (
                _json_entry(s, CFG)
                and json.dumps(_json_entry(s, CFG)).replace('"units": 3', '"units": NaN').encode()
            ),
        ),
        CFG,
        "NaN",
    ),
    "Infinity rate": (
        _replace_entry(
            CFG,
            lambda s: (
                json.dumps(_json_entry(s, CFG))
                .replace('"dropout": 0.0', '"dropout": -Infinity', 1)
                .encode()
            ),
        ),
        CFG,
        "Infinity",
    ),
    "1e999": (
        _replace_entry(
            CFG,
            lambda s: (
                json.dumps(_json_entry(s, CFG))
                .replace('"dropout": 0.0', '"dropout": 1e999', 1)
                .encode()
            ),
        ),
        CFG,
        "infinity",
    ),
    "huge int literal": (
        _replace_entry(CFG, b'{"units": ' + b"9" * 5000 + b"}"),
        CFG,
        r"invalid JSON|digits",
    ),
    # wrong JSON types at every level
    "metadata is a list": (
        _new_json("metadata.json", lambda o: [o]),
        "metadata.json",
        "not a fastrnn or Keras",
    ),
    "metadata format unknown": (
        _edit_json("metadata.json", _set(["format"], "zip")),
        "metadata.json",
        "not a fastrnn or Keras",
    ),
    "metadata version 2": (
        _edit_json("metadata.json", _set(["version"], 2)),
        "metadata.json",
        "version",
    ),
    "metadata version true": (
        _edit_json("metadata.json", _set(["version"], True)),
        "metadata.json",
        "version",
    ),
    "weights-only file as a model": (
        _edit_json("metadata.json", _set(["format"], "fastrnn.weights")),
        "metadata.json",
        "load_weights",
    ),
    "config is a number": (_new_json(CFG, lambda o: 7), CFG, "Sequential config"),
    "config is a string": (_new_json(CFG, lambda o: "Sequential"), CFG, "Sequential config"),
    "class_name is a list": (
        _edit_json(CFG, _set(["class_name"], ["Sequential"])),
        CFG,
        "class_name",
    ),
    "unknown model class": (_edit_json(CFG, _set(["class_name"], "Evil")), CFG, "'Evil'"),
    "config.config is a list": (_edit_json(CFG, _set(["config"], [])), CFG, "Sequential config"),
    "layers is a dict": (_edit_json(CFG, _set(["config", "layers"], {})), CFG, "'layers' list"),
    "layer spec is a string": (
        _edit_json(CFG, _set(["config", "layers", 0], "LSTM")),
        CFG,
        r"layers\[0\]",
    ),
    "layer class_name missing": (
        _edit_json(CFG, _pop(["config", "layers", 0, "class_name"])),
        CFG,
        r"layers\[0\]",
    ),
    "unknown layer class": (
        _edit_json(CFG, _set(["config", "layers", 1, "class_name"], "Conv3D")),
        CFG,
        r"layers\[1\].*Conv3D",
    ),
    "layer config is a list": (
        _edit_json(CFG, _set(["config", "layers", 0, "config"], [1])),
        CFG,
        r"layers\[0\]",
    ),
    "units is a string": (
        _edit_json(CFG, _set(LSTM_CFG + ["units"], "3")),
        CFG,
        r"layers\[0\].*units",
    ),
    "units is negative": (_edit_json(CFG, _set(LSTM_CFG + ["units"], -3)), CFG, r"units"),
    "units is a float": (_edit_json(CFG, _set(LSTM_CFG + ["units"], 3.5)), CFG, r"units"),
    "units is true": (_edit_json(CFG, _set(LSTM_CFG + ["units"], True)), CFG, r"units"),
    "units is 10**9": (
        _edit_json(CFG, _set(LSTM_CFG + ["units"], 10**9)),
        "weights/00000.npy",
        r"shape \(2, 4000000000\).*\(2, 12\)",
    ),
    "units is 2**62": (
        _edit_json(CFG, _set(LSTM_CFG + ["units"], 2**62)),
        "weights/00000.npy",
        r"shape",
    ),
    "dense units 10**12": (
        _edit_json(CFG, _set(["config", "layers", 2, "config", "units"], 10**12)),
        "weights/00006.npy",
        r"shape",
    ),
    "unknown layer argument": (_edit_json(CFG, _set(LSTM_CFG + ["evil"], 1)), CFG, r"evil"),
    "activation is a number": (
        _edit_json(CFG, _set(LSTM_CFG + ["activation"], 5)),
        CFG,
        r"activation",
    ),
    "dtype int8": (_edit_json(CFG, _set(LSTM_CFG + ["dtype"], "int8")), CFG, r"dtype"),
    "dtype float64 (weights are float32)": (
        _edit_json(
            CFG,
            lambda o: (
                [spec["config"].__setitem__("dtype", "float64") for spec in o["config"]["layers"]]
                and None
            ),
        ),
        "weights/00000.npy",
        r"float32.*float64|weights are never cast",
    ),
    "layer name is a number": (_edit_json(CFG, _set(LSTM_CFG + ["name"], 5)), CFG, r"name"),
    "duplicate layer names": (
        _edit_json(CFG, _set(["config", "layers", 1, "config", "name"], "lstm")),
        CFG,
        r"lstm",
    ),
    "input_shape absurd": (
        _edit_json(CFG, _set(LSTM_CFG + ["input_shape"], [T, 2**40])),
        r"weights/00000.npy|config.json",
        r"shape",
    ),
    "build_input_shape is a string": (
        _edit_json(CFG, _set(["config", "build_input_shape"], "x")),
        CFG,
        r"build_input_shape",
    ),
    "build_input_shape negative": (
        _edit_json(CFG, _set(["config", "build_input_shape"], [None, -1, 2])),
        CFG,
        r"build_input_shape",
    ),
    "build_input_shape nested": (
        _edit_json(CFG, _set(["config", "build_input_shape"], [[1], 2, 2])),
        CFG,
        r"build_input_shape",
    ),
    "bidirectional wraps a dense": (
        _edit_json(
            CFG,
            lambda o: o["config"]["layers"].insert(
                0,
                {
                    "class_name": "Bidirectional",
                    "config": {"layer": {"class_name": "Dense", "config": {"units": 2}}},
                },
            ),
        ),
        CFG,
        r"layers\[0\].*Bidirectional",
    ),
    "bidirectional nested 40 deep": (
        _edit_json(
            CFG,
            lambda o: o["config"]["layers"].insert(
                0,
                json.loads(
                    '{"class_name": "Bidirectional", "config": {"layer": ' * 40
                    + '{"class_name": "LSTM", "config": {"units": 1}}'
                    + "}}" * 40
                ),
            ),
        ),
        CFG,
        r"nested deeper",
    ),
    "bidirectional nested 12 deep": (
        _edit_json(
            CFG,
            lambda o: o["config"]["layers"].insert(
                0,
                json.loads(
                    '{"class_name": "Bidirectional", "config": {"layer": ' * 12
                    + '{"class_name": "LSTM", "config": {"units": 1}}'
                    + "}}" * 12
                ),
            ),
        ),
        CFG,
        r"layers\[0\].*Bidirectional",
    ),
    "index.json is a dict": (
        _new_json("weights/index.json", lambda o: {"a": 1}),
        "weights/index.json",
        "list of weight names",
    ),
    "index.json holds numbers": (
        _new_json("weights/index.json", lambda o: list(range(len(o)))),
        "weights/index.json",
        "list of weight names",
    ),
    "index.json too short": (
        _new_json("weights/index.json", lambda o: o[:-1]),
        "weights/index.json",
        "weight arrays",
    ),
    "compile.json is a list": (
        _new_json("compile.json", lambda o: [o]),
        "compile.json",
        "object or null",
    ),
    "optimizer is a string": (
        _edit_json("compile.json", _set(["optimizer"], "adam")),
        "compile.json",
        "'optimizer'",
    ),
    "unknown optimizer class": (
        _edit_json("compile.json", _set(["optimizer", "class_name"], "Evil")),
        "compile.json",
        "Evil",
    ),
    "optimizer config wrong type": (
        _edit_json("compile.json", _set(["optimizer", "config"], [1])),
        "compile.json",
        r"compile",
    ),
    "optimizer lr negative": (
        _edit_json("compile.json", _set(["optimizer", "config", "learning_rate"], -1)),
        "compile.json",
        r"learning_rate",
    ),
    "unknown loss class": (
        _edit_json("compile.json", _set(["loss"], {"class_name": "Evil", "config": {}})),
        "compile.json",
        "Evil",
    ),
    "metrics is a string": (
        _edit_json("compile.json", _set(["metrics"], "mae")),
        "compile.json",
        "'metrics'",
    ),
    "unknown metric": (
        _edit_json("compile.json", _set(["metrics"], ["evil"])),
        "compile.json",
        "evil",
    ),
    "iterations negative": (
        _edit_json("compile.json", _set(["iterations"], -1)),
        "compile.json",
        "iterations",
    ),
    "iterations a string": (
        _edit_json("compile.json", _set(["iterations"], "1")),
        "compile.json",
        "iterations",
    ),
    "built a string": (_edit_json("compile.json", _set(["built"], "yes")), "compile.json", "built"),
    "built false with state": (
        _edit_json("compile.json", _set(["built"], False)),
        "optimizer/00000.npy",
        "unbuilt",
    ),
    # .npy headers and data
    "npy bad magic": (
        _replace_entry("weights/00000.npy", b"NOTNUMPY" + bytes(100)),
        "weights/00000.npy",
        "bad magic",
    ),
    "npy version 9": (
        _replace_entry("weights/00000.npy", b"\x93NUMPY\x09\x00" + bytes(100)),
        "weights/00000.npy",
        "version 9",
    ),
    "npy header length beyond entry": (
        _replace_entry("weights/00000.npy", b"\x93NUMPY\x01\x00\xff\xff" + bytes(10)),
        "weights/00000.npy",
        "header length",
    ),
    "npy header garbage": (
        _replace_entry("weights/00000.npy", _raw_header("{'descr': <f4")),
        "weights/00000.npy",
        "unreadable",
    ),
    "npy header code": (
        _replace_entry("weights/00000.npy", _raw_header("__import__('os').system('true')")),
        "weights/00000.npy",
        "unreadable",
    ),
    "npy header extra key": (
        _replace_entry(
            "weights/00000.npy",
            _raw_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}"),
        ),
        "weights/00000.npy",
        "bad .npy header",
    ),
    "npy shape 2**40": (
        _replace_entry("weights/00000.npy", _npy("<f4", (2**40,), bytes(16))),
        "weights/00000.npy",
        r"2\d+",
    ),
    "npy shape (2**20, 2**20, 2**20)": (
        _replace_entry("weights/00000.npy", _npy("<f8", (2**20,) * 3, b"")),
        "weights/00000.npy",
        r"max_bytes|declares",
    ),
    "npy negative shape": (
        _replace_entry(
            "weights/00000.npy",
            _raw_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 12)}"),
        ),
        "weights/00000.npy",
        "bad .npy shape",
    ),
    "npy shape not a tuple": (
        _replace_entry(
            "weights/00000.npy",
            _raw_header("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 12]}"),
        ),
        "weights/00000.npy",
        "bad .npy shape",
    ),
    "npy float shape": (
        _replace_entry(
            "weights/00000.npy",
            _raw_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 12)}"),
        ),
        "weights/00000.npy",
        "bad .npy shape",
    ),
    "npy fortran_order a string": (
        _replace_entry(
            "weights/00000.npy",
            _raw_header("{'descr': '<f4', 'fortran_order': 'no', 'shape': (2, 12)}"),
        ),
        "weights/00000.npy",
        "fortran_order",
    ),
    "npy data truncated": (
        _replace_entry("weights/00000.npy", lambda s: _npy("<f4", (2, 12), bytes(90))),
        "weights/00000.npy",
        "holds 90 bytes",
    ),
    "npy trailing bytes": (
        _replace_entry("weights/00000.npy", lambda s: _npy("<f4", (2, 12), bytes(97))),
        "weights/00000.npy",
        "holds 97 bytes",
    ),
    "npy wrong shape": (
        _replace_entry("weights/00001.npy", lambda s: _npy("<f4", (3, 13), bytes(3 * 13 * 4))),
        "weights/00001.npy",
        r"\(3, 12\).*\(3, 13\)",
    ),
    "npy complex": (
        _replace_entry("weights/00000.npy", _npy("<c8", (2, 12), bytes(192))),
        "weights/00000.npy",
        "complex64",
    ),
    "npy int": (
        _replace_entry("weights/00000.npy", _npy("<i4", (2, 12), bytes(96))),
        "weights/00000.npy",
        "int32",
    ),
    "npy bool": (
        _replace_entry("weights/00000.npy", _npy("|b1", (2, 12), bytes(24))),
        "weights/00000.npy",
        "bool",
    ),
    "npy object": (
        _replace_entry("weights/00000.npy", _npy("|O", (2, 12), bytes(192))),
        "weights/00000.npy",
        "object",
    ),
    "npy float16": (
        _replace_entry("weights/00000.npy", _npy("<f2", (2, 12), bytes(48))),
        "weights/00000.npy",
        "float16",
    ),
    "npy string": (
        _replace_entry("weights/00000.npy", _npy("<U4", (2, 12), bytes(384))),
        "weights/00000.npy",
        r"U4|str",
    ),
    "npy structured": (
        _replace_entry(
            "weights/00000.npy",
            _raw_header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 12)}")
            + bytes(96),
        ),
        "weights/00000.npy",
        "structured",
    ),
    "npy sub-array dtype": (
        _replace_entry("weights/00000.npy", _npy("(2,)<f4", (2, 6), bytes(96))),
        "weights/00000.npy",
        r"dtype",
    ),
    "npy float64 into float32 layer": (
        _replace_entry("weights/00000.npy", _npy("<f8", (2, 12), bytes(192))),
        "weights/00000.npy",
        r"float64.*float32|never cast",
    ),
    "optimizer slot wrong shape": (
        _replace_entry("optimizer/00000.npy", _npy("<f4", (5,), bytes(20))),
        "optimizer/00000.npy",
        r"\(5,\)",
    ),
    "optimizer slot complex": (
        _replace_entry("optimizer/00000.npy", _npy("<c8", (2, 12), bytes(192))),
        "optimizer/00000.npy",
        "complex",
    ),
}


def _load_expecting(
    path: Path,
    entry: str | None,
    message: str,
    loader: Callable = load_model,
    seconds: float = 3.0,
    mib: float = 64,
    **kwargs,
) -> ModelFileError:
    """Loads ``path`` expecting a ModelFileError; checks message, time and peak memory."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError) as info:
            loader(path, **kwargs)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = info.value
    assert isinstance(err, ModelFileError), f"{type(err).__name__}: {err}"
    text = str(err)
    assert path.name in text, text
    if entry is not None:
        assert err.entry is not None and re.search(entry, err.entry), (err.entry, text)
    assert re.search(message, text), text
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert peak < mib * 2**20, f"peak {peak / 2**20:.1f} MiB"
    return err


@pytest.mark.parametrize("case", list(NATIVE_CASES))
def test_corrupt_fastrnn_file(case, files, tmp_path):
    build, entry, message = NATIVE_CASES[case]
    path = build(files["fastrnn"], tmp_path / "broken.fastrnn")
    _load_expecting(path, entry, message)


def test_valid_files_load(files, rng):
    """The table's starting points load, so each case fails for its own reason."""
    x = rng.standard_normal((3, T, FEATURES)).astype(np.float32)
    reference = load_model(files["fastrnn"])
    if h5py is not None:
        for name in ("keras",):
            other = load_model(files[name])
            np.testing.assert_array_equal(other.predict(x), reference.predict(x))
        clone = Sequential.from_config(reference.get_config())
        clone.load_weights(files["weights"])
        np.testing.assert_array_equal(clone.predict(x), reference.predict(x))


def test_limits_are_parameters(files, tmp_path):
    path = files["fastrnn"]
    _load_expecting(path, None, "max_bytes=1000", max_bytes=1000)
    _load_expecting(path, None, "at most 3", max_entries=3)
    bomb = _zeros_bomb("weights/00000.npy", 4 << 20)(path, tmp_path / "bomb.fastrnn")
    _load_expecting(bomb, "weights/00000.npy", "ratio", max_ratio=50)
    # With the ratio raised, the same entry is read up to its declared size, then rejected as
    # an array: the budget was the declared size, not whatever inflating produces.
    _load_expecting(bomb, "weights/00000.npy", "bad magic", max_ratio=10**6, mib=96)
    with pytest.raises(ValueError, match="max_bytes"):
        load_model(path, max_bytes=0)
    with pytest.raises(TypeError, match="max_entries"):
        load_model(path, max_entries="10")
    with pytest.raises(ValueError, match="max_ratio"):
        load_model(path, max_ratio=float("nan"))


def test_big_endian_and_fortran_arrays_are_converted_explicitly(files, tmp_path):
    src = files["fastrnn"]
    kernel = _weight(src, 0)
    recurrent = _weight(src, 1)
    path = _rebuild(
        src,
        tmp_path / "be.fastrnn",
        replace={
            "weights/00000.npy": _npy(">f4", kernel.shape, kernel.astype(">f4").tobytes()),
            "weights/00001.npy": _npy(
                "<f4", recurrent.shape, recurrent.tobytes(order="F"), fortran=True
            ),
        },
    )
    model = load_model(path)
    assert model.weights[0].dtype == np.float32 and model.weights[0].dtype.isnative
    np.testing.assert_array_equal(model.weights[0], kernel)
    np.testing.assert_array_equal(model.weights[1], recurrent)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.fastrnn")
    with pytest.raises(FileNotFoundError):
        _model().load_weights(tmp_path / "nope.weights.h5")


def test_load_weights_checks_everything_before_writing(files, tmp_path):
    model = Sequential.from_config(load_model(files["fastrnn"]).get_config())
    before = model.get_weights()
    path = _replace_entry("weights/00004.npy", _npy("<f4", (7,), bytes(28)))(
        files["fastrnn"], tmp_path / "w.fastrnn"
    )
    _load_expecting(path, "weights/00004.npy", r"shape", loader=model.load_weights)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_byte_flips_never_escape_as_other_errors(files, tmp_path):
    data = files["fastrnn"].read_bytes()
    rng = np.random.default_rng(3)
    path = tmp_path / "flip.fastrnn"
    for _ in range(150):
        corrupt = bytearray(data)
        for pos in rng.integers(0, len(data), 3):
            corrupt[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(corrupt))
        try:
            load_model(path)
        except ModelFileError as exc:
            assert path.name in str(exc)


# ---- Keras archives and HDF5 ---------------------------------------------------------------------
H5 = "model.weights.h5"


def _h5_edit(edit: Callable) -> Callable:
    """A case builder: ``edit(h5py.File)`` changes the archive's HDF5 weights."""

    def build(src: Path, dst: Path) -> Path:
        with zipfile.ZipFile(src) as zf:
            buf = io.BytesIO(zf.read(H5))
        with h5py.File(buf, "r+") as f:
            edit(f)
        return _rebuild(src, dst, replace={H5: buf.getvalue()})

    return build


def _replace_dataset(path: str, data=None, **kwargs) -> Callable:
    def edit(f):
        del f[path]
        f.create_dataset(path, data=data, **kwargs)

    return edit


LSTM_K = "layers/lstm/cell/vars/0"  # (2, 12)

KERAS_CASES: dict[str, tuple[Callable, str | None, str]] = {
    "missing weights entry": (lambda s, d: _rebuild(s, d, drop=(H5,)), H5, "missing entry"),
    "extra entry": (
        lambda s, d: _rebuild(s, d, add={"model.weights.npz": b"x"}),
        "model.weights.npz",
        "unexpected",
    ),
    "weights not HDF5": (_replace_entry(H5, b"\x89HDF\r\n\x1a\n" + bytes(200)), H5, "HDF5"),
    "weights garbage": (_replace_entry(H5, os.urandom(500)), H5, "HDF5"),
    "keras_version a number": (
        _edit_json("metadata.json", _set(["keras_version"], 3)),
        "metadata.json",
        "not a fastrnn or Keras",
    ),
    "Sequential config as Functional": (
        _edit_json(CFG, _set(["class_name"], "Functional")),
        CFG,
        "no 'input_layers'",
    ),
    "model class missing": (_edit_json(CFG, _pop(["class_name"])), CFG, "class_name"),
    "layers not a list": (_edit_json(CFG, _set(["config", "layers"], "x")), CFG, "config.layers"),
    "unknown Keras layer": (
        _edit_json(CFG, _set(["config", "layers", 1, "class_name"], "Conv2D")),
        CFG,
        r"config\.layers\[1\].*'Conv2D'",
    ),
    "custom registered layer": (
        _edit_json(CFG, _set(["config", "layers", 1, "registered_name"], "Custom>LSTM")),
        CFG,
        r"Custom>LSTM",
    ),
    "InputLayer not first": (
        _edit_json(CFG, lambda o: o["config"]["layers"].append(o["config"]["layers"][0])),
        CFG,
        "InputLayer",
    ),
    "batch_shape a string": (
        _edit_json(CFG, _set(["config", "layers", 0, "config", "batch_shape"], "x")),
        CFG,
        "batch_shape",
    ),
    "units a string": (
        _edit_json(CFG, _set(["config", "layers", 1, "config", "units"], "3")),
        CFG,
        r"config\.layers\[1\].*units",
    ),
    "units 10**9": (
        _edit_json(CFG, _set(["config", "layers", 1, "config", "units"], 10**9)),
        rf"{H5}:{LSTM_K}",
        r"shape",
    ),
    "unknown Keras key set": (
        _edit_json(CFG, _set(["config", "layers", 1, "config", "new_thing"], 3)),
        CFG,
        "new_thing",
    ),
    "regularizer set": (
        _edit_json(
            CFG, _set(["config", "layers", 1, "config", "kernel_regularizer"], {"class_name": "L2"})
        ),
        CFG,
        "kernel_regularizer",
    ),
    "initializer a number": (
        _edit_json(CFG, _set(["config", "layers", 1, "config", "kernel_initializer"], 3)),
        CFG,
        "kernel_initializer",
    ),
    "dtype policy quantized": (
        _edit_json(
            CFG,
            _set(
                ["config", "layers", 1, "config", "dtype"],
                {"class_name": "QuantizedDTypePolicy", "config": {"name": "int8"}},
            ),
        ),
        CFG,
        "QuantizedDTypePolicy",
    ),
    "layer config NaN": (
        _replace_entry(
            CFG,
            lambda s: (
                json.dumps(_json_entry(s, CFG))
                .replace('"dropout": 0.0', '"dropout": NaN', 1)
                .encode()
            ),
        ),
        CFG,
        "NaN",
    ),
    "deeply nested config": (_replace_entry(CFG, _nest(50_000)), CFG, "nested deeper"),
    # HDF5 layouts
    "no layers group": (_h5_edit(lambda f: f.__delitem__("layers")), rf"{H5}:layers", "missing"),
    "layer group missing": (
        _h5_edit(lambda f: f.__delitem__("layers/gru")),
        rf"{H5}:layers/gru",
        "no more weights|no array",
    ),
    "extra layer group": (
        _h5_edit(lambda f: f.create_group("layers/evil/vars")),
        rf"{H5}:layers/evil",
        "does not have",
    ),
    "cell is a dataset": (
        _h5_edit(
            lambda f: (
                f.__delitem__("layers/lstm/cell"),
                f.create_dataset("layers/lstm/cell", data=1.0),
            )
        ),
        rf"{H5}:layers/lstm/cell",
        "group",
    ),
    "vars member is a group": (
        _h5_edit(lambda f: (f.__delitem__(LSTM_K), f.create_group(LSTM_K))),
        rf"{H5}:{LSTM_K}",
        "found a group",
    ),
    "extra array": (
        _h5_edit(lambda f: f.create_dataset("layers/lstm/cell/vars/3", data=np.zeros(3, "f4"))),
        rf"{H5}:layers/lstm/cell/vars/3",
        "holds 4 (weight )?arrays",
    ),
    "array named foo": (
        _h5_edit(lambda f: f.create_dataset("layers/lstm/cell/vars/foo", data=1.0)),
        rf"{H5}:layers/lstm/cell/vars/foo",
        "unexpected member",
    ),
    "arrays numbered with a gap": (
        _h5_edit(lambda f: f.move("layers/lstm/cell/vars/2", "layers/lstm/cell/vars/5")),
        rf"{H5}:layers/lstm/cell/vars",
        "0..n-1",
    ),
    "wrong shape": (
        _h5_edit(_replace_dataset(LSTM_K, np.zeros((2, 13), "f4"))),
        rf"{H5}:{LSTM_K}",
        r"\(2, 12\).*\(2, 13\)",
    ),
    "complex array": (
        _h5_edit(_replace_dataset(LSTM_K, np.zeros((2, 12), "c8"))),
        rf"{H5}:{LSTM_K}",
        "complex",
    ),
    "int array": (
        _h5_edit(_replace_dataset(LSTM_K, np.zeros((2, 12), "i4"))),
        rf"{H5}:{LSTM_K}",
        "int32",
    ),
    "float16 array": (
        _h5_edit(_replace_dataset(LSTM_K, np.zeros((2, 12), "f2"))),
        rf"{H5}:{LSTM_K}",
        "float16",
    ),
    "float64 array": (
        _h5_edit(_replace_dataset(LSTM_K, np.zeros((2, 12), "f8"))),
        rf"{H5}:{LSTM_K}",
        "never cast",
    ),
    "string array": (
        _h5_edit(_replace_dataset(LSTM_K, np.array([b"ab"] * 24).reshape(2, 12))),
        rf"{H5}:{LSTM_K}",
        "dtype",
    ),
    "compound array": (
        _h5_edit(_replace_dataset(LSTM_K, np.zeros((2, 12), [("a", "f4")]))),
        rf"{H5}:{LSTM_K}",
        "structured",
    ),
    "soft link": (
        _h5_edit(
            lambda f: (
                f.__delitem__(LSTM_K),
                f.__setitem__(LSTM_K, h5py.SoftLink("/layers/dense/vars/0")),
            )
        ),
        rf"{H5}:{LSTM_K}",
        "SoftLink",
    ),
    "external link": (
        _h5_edit(
            lambda f: (
                f.__delitem__(LSTM_K),
                f.__setitem__(LSTM_K, h5py.ExternalLink("/etc/passwd", "/x")),
            )
        ),
        rf"{H5}:{LSTM_K}",
        "ExternalLink",
    ),
    "external group link": (
        _h5_edit(
            lambda f: (
                f.__delitem__("layers/lstm"),
                f.__setitem__("layers/lstm", h5py.ExternalLink("other.h5", "/")),
            )
        ),
        rf"{H5}:layers/lstm",
        "ExternalLink",
    ),
    "shape bomb (chunked, unwritten)": (
        _h5_edit(_replace_dataset(LSTM_K, shape=(2**20, 2**20), dtype="f4", chunks=(1, 1024))),
        rf"{H5}:{LSTM_K}",
        r"max_bytes",
    ),
    "medium shape bomb": (
        _h5_edit(_replace_dataset(LSTM_K, shape=(2, 2**23), dtype="f4", chunks=(1, 1024))),
        rf"{H5}:{LSTM_K}",
        r"ratio",
    ),
    "iterations a float": (
        _h5_edit(_replace_dataset("optimizer/vars/0", np.float32(3))),
        rf"{H5}:optimizer/vars/0",
        "integer scalar",
    ),
    "iterations negative": (
        _h5_edit(_replace_dataset("optimizer/vars/0", np.int64(-3))),
        rf"{H5}:optimizer/vars/0",
        "negative",
    ),
    "optimizer slot wrong shape": (
        _h5_edit(_replace_dataset("optimizer/vars/2", np.zeros(3, "f4"))),
        rf"{H5}:optimizer/vars/2",
        "optimizer slot",
    ),
}


H5_LAYOUT_CASES = [
    "layer group missing",
    "extra layer group",
    "cell is a dataset",
    "vars member is a group",
    "extra array",
    "array named foo",
    "arrays numbered with a gap",
    "wrong shape",
    "complex array",
    "int array",
    "float16 array",
    "float64 array",
    "string array",
    "compound array",
    "soft link",
    "external link",
    "external group link",
    "shape bomb (chunked, unwritten)",
    "medium shape bomb",
]


@needs_h5py
@pytest.mark.parametrize("case", list(KERAS_CASES))
def test_corrupt_keras_archive(case, files, tmp_path):
    build, entry, message = KERAS_CASES[case]
    path = build(files["keras"], tmp_path / "broken.keras")
    _load_expecting(path, entry, message)


@needs_h5py
@pytest.mark.parametrize("case", H5_LAYOUT_CASES)
def test_corrupt_weights_h5(case, files, tmp_path):
    build, entry, message = KERAS_CASES[case]
    archive = build(files["keras"], tmp_path / "broken.keras")
    path = tmp_path / "broken.weights.h5"
    with zipfile.ZipFile(archive) as zf:
        path.write_bytes(zf.read(H5))
    model = load_model(files["keras"])
    before = model.get_weights()
    entry = None if entry is None else entry.replace(H5, "broken.weights.h5")
    _load_expecting(path, entry, message, loader=model.load_weights)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@needs_h5py
def test_big_endian_h5_arrays_are_converted_explicitly(files, tmp_path):
    reference = load_model(files["keras"]).get_weights()[0]
    build = _h5_edit(_replace_dataset(LSTM_K, reference.astype(">f4")))
    model = load_model(build(files["keras"], tmp_path / "be.keras"))
    assert model.weights[0].dtype.isnative
    np.testing.assert_array_equal(model.weights[0], reference)


@needs_h5py
def test_weights_h5_byte_flips_in_a_subprocess(files, tmp_path):
    """libhdf5 parses .weights.h5 files directly (no zip CRC in front): flipped bytes must give
    ValueError or a clean load, never a crash (run apart, so that a crash fails the test)."""
    script = f"""
import numpy as np
from pathlib import Path
from fastrnn.models import load_model
from fastrnn.saving import ModelFileError
model = load_model({str(files["keras"])!r})
data = Path({str(files["weights"])!r}).read_bytes()
rng = np.random.default_rng(11)
path = Path({str(tmp_path / "flip.weights.h5")!r})
for _ in range(60):
    corrupt = bytearray(data)
    for pos in rng.integers(0, len(data), 4):
        corrupt[pos] ^= 1 << int(rng.integers(0, 8))
    path.write_bytes(bytes(corrupt))
    try:
        model.load_weights(path)
    except ModelFileError as exc:
        assert path.name in str(exc)
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_zlib_corruption_is_named(files, tmp_path):
    """A deflated entry whose stream is damaged (not only its CRC)."""
    path = _rebuild(files["fastrnn"], tmp_path / "z.fastrnn", method=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("config.json")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    assert zlib  # imported for clarity: zlib.error must not escape
    _load_expecting(path, "config.json", r"corrupt|invalid JSON")


# ---- wrapped, convolutional and normalization layers ---------------------------------------------
# A second valid model for the rows whose configs nest a layer (TimeDistributed) or hold sizes
# that do not come from the weights alone (Conv1D's kernel_size, LayerNormalization's axis,
# Reshape's target_shape).
def _wrapped_model() -> Sequential:
    model = Sequential(
        [
            F.TimeDistributed(F.Dense(3, name="inner"), input_shape=(T, FEATURES), name="td"),
            F.Conv1D(2, 2, name="conv"),
            F.LayerNormalization(name="norm"),
            F.Reshape((-1,), name="reshape"),
            F.Dense(1, name="dense"),
        ],
        name="victim2",
    )
    rng = np.random.default_rng(6)
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def wrapped_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("valid_wrapped")
    model = _wrapped_model()
    out = {"fastrnn": folder / "valid.fastrnn"}
    model.save(out["fastrnn"])
    if h5py is not None:
        out["keras"] = folder / "valid.keras"
        model.save(out["keras"])
    return out


def _nested(outer: str, depth: int, inner: dict) -> dict:
    """``depth`` ``outer`` wrappers around the layer spec ``inner``."""
    spec = inner
    for i in range(depth):
        spec = {"class_name": outer, "config": {"name": f"w{i}", "layer": spec}}
    return spec


def _wrap_inner(path: list, outer: str, depth: int) -> Callable:
    """Edits the JSON at ``path`` (a TimeDistributed's ``layer``) into ``depth`` more wrappers."""

    def edit(obj):
        target = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = _nested(outer, depth, target[path[-1]])

    return edit


def _keras_layer(i: int, *keys) -> list:
    return ["config", "layers", i, "config", *keys]


TD_INNER = "layers/time_distributed/layer"
WRAPPED_KERAS_CASES: dict[str, tuple[Callable, str | None, str]] = {
    "td layer missing": (
        _edit_json(CFG, _pop(_keras_layer(1, "layer"))),
        CFG,
        r"layers\[1\].*'layer' must hold a serialized layer",
    ),
    "td layer null": (
        _edit_json(CFG, _set(_keras_layer(1, "layer"), None)),
        CFG,
        r"layers\[1\].*'layer' must hold a serialized layer",
    ),
    "td layer a string": (
        _edit_json(CFG, _set(_keras_layer(1, "layer"), "Dense")),
        CFG,
        r"layers\[1\].*\.layer: a layer must be a JSON object",
    ),
    "td wraps an unknown class": (
        _edit_json(CFG, _set(_keras_layer(1, "layer", "class_name"), "Conv3D")),
        CFG,
        r"layers\[1\].*\.layer.*'Conv3D'",
    ),
    "td wraps a custom registered layer": (
        _edit_json(CFG, _set(_keras_layer(1, "layer", "registered_name"), "Custom>Dense")),
        CFG,
        r"Custom>Dense",
    ),
    "td inner key unknown": (
        _edit_json(CFG, _set(_keras_layer(1, "layer", "config", "evil"), 1)),
        CFG,
        r"\.layer.*evil",
    ),
    "td inner units 10**9": (
        _edit_json(CFG, _set(_keras_layer(1, "layer", "config", "units"), 10**9)),
        rf"{H5}:{TD_INNER}/vars/0",
        r"shape \(2, 1000000000\).*\(2, 3\)",
    ),
    "td nested 40 deep": (
        _edit_json(CFG, _wrap_inner(_keras_layer(1, "layer"), "TimeDistributed", 40)),
        CFG,
        r"nested deeper",
    ),
    "td nested 8 deep": (
        _edit_json(CFG, _wrap_inner(_keras_layer(1, "layer"), "TimeDistributed", 8)),
        CFG,
        r"at least 3 dimensions",
    ),
    "td inner weights of another class": (
        _h5_edit(lambda f: f.create_dataset(f"{TD_INNER}/cell/vars/0", data=np.zeros(3, "f4"))),
        rf"{H5}:{TD_INNER}/cell",
        r"does not have",
    ),
    "td inner group missing": (
        _h5_edit(lambda f: f.__delitem__(TD_INNER)),
        rf"{H5}:layers/time_distributed",
        r"no more weights|holds no array for its weight 'kernel'",
    ),
    "td inner group a dataset": (
        _h5_edit(lambda f: (f.__delitem__(TD_INNER), f.create_dataset(TD_INNER, data=1.0))),
        rf"{H5}:{TD_INNER}",
        r"group",
    ),
    "conv filters 10**12": (
        _edit_json(CFG, _set(_keras_layer(2, "filters"), 10**12)),
        rf"{H5}:layers/conv1d/vars/0",
        r"shape",
    ),
    "conv kernel_size 10**9": (
        _edit_json(CFG, _set(_keras_layer(2, "kernel_size"), [10**9])),
        rf"{H5}:layers/conv1d/vars/0",
        r"shape \(1000000000, 3, 2\).*\(2, 3, 2\)",
    ),
    "conv kernel_size two ints": (
        _edit_json(CFG, _set(_keras_layer(2, "kernel_size"), [2, 2])),
        CFG,
        r"layers\[2\].*kernel_size",
    ),
    "conv padding unknown": (
        _edit_json(CFG, _set(_keras_layer(2, "padding"), "full")),
        CFG,
        r"layers\[2\].*padding",
    ),
    "norm axis mixes signs": (
        _edit_json(CFG, _set(_keras_layer(3, "axis"), [-1, 1])),
        CFG,
        r"layers\[3\].*axis.*mixes negative and non-negative",
    ),
    "norm axis out of range": (
        _edit_json(CFG, _set(_keras_layer(3, "axis"), [5])),
        CFG,
        r"axis 5 is out of bounds",
    ),
    "norm axis a string": (
        _edit_json(CFG, _set(_keras_layer(3, "axis"), "x")),
        CFG,
        r"layers\[3\].*axis",
    ),
    "norm axis over the batch": (
        _edit_json(CFG, _set(_keras_layer(3, "axis"), [0])),
        CFG,
        r"batch axis",
    ),
    "norm rms_scaling": (
        _edit_json(CFG, _set(_keras_layer(3, "rms_scaling"), True)),
        CFG,
        r"layers\[3\].*rms_scaling",
    ),
    "norm gamma wrong shape": (
        _h5_edit(_replace_dataset("layers/layer_normalization/vars/0", np.ones(3, "f4"))),
        rf"{H5}:layers/layer_normalization/vars/0",
        r"\(2,\).*\(3,\)",
    ),
    "reshape target_shape does not fit": (
        _edit_json(CFG, _set(_keras_layer(4, "target_shape"), [7])),
        CFG,
        r"target_shape",
    ),
    "reshape target_shape 2**62": (
        _edit_json(CFG, _set(_keras_layer(4, "target_shape"), [2**62, -1])),
        CFG,
        r"target_shape",
    ),
    "reshape target_shape a string": (
        _edit_json(CFG, _set(_keras_layer(4, "target_shape"), "x")),
        CFG,
        r"layers\[4\].*target_shape",
    ),
}


def _native_layer(i: int, *keys) -> list:
    return ["config", "layers", i, "config", *keys]


WRAPPED_NATIVE_CASES: dict[str, tuple[Callable, str | None, str]] = {
    "td layer missing": (
        _edit_json(CFG, _pop(_native_layer(0, "layer"))),
        CFG,
        r"layers\[0\]",
    ),
    "td wraps an unknown class": (
        _edit_json(CFG, _set(_native_layer(0, "layer", "class_name"), "Conv3D")),
        CFG,
        r"layers\[0\].*Conv3D",
    ),
    "td inner units 10**9": (
        _edit_json(CFG, _set(_native_layer(0, "layer", "config", "units"), 10**9)),
        "weights/00000.npy",
        r"shape \(2, 1000000000\).*\(2, 3\)",
    ),
    "td nested 40 deep": (
        _edit_json(CFG, _wrap_inner(_native_layer(0, "layer"), "TimeDistributed", 40)),
        CFG,
        r"nested deeper",
    ),
    "conv filters 10**12": (
        _edit_json(CFG, _set(_native_layer(1, "filters"), 10**12)),
        "weights/00002.npy",
        r"shape",
    ),
    "norm axis out of range": (
        _edit_json(CFG, _set(_native_layer(2, "axis"), 7)),
        CFG,
        r"axis 7 is out of bounds",
    ),
    "reshape target_shape does not fit": (
        _edit_json(CFG, _set(_native_layer(3, "target_shape"), [7])),
        CFG,
        r"target_shape",
    ),
}


def test_wrapped_valid_files_load(wrapped_files, rng):
    """The starting points of the tables below load, so each case fails for its own reason."""
    x = rng.standard_normal((3, T, FEATURES)).astype(np.float32)
    reference = _wrapped_model()
    for path in wrapped_files.values():
        np.testing.assert_array_equal(load_model(path).predict(x), reference.predict(x))


@pytest.mark.parametrize("case", list(WRAPPED_NATIVE_CASES))
def test_corrupt_wrapped_fastrnn_file(case, wrapped_files, tmp_path):
    build, entry, message = WRAPPED_NATIVE_CASES[case]
    path = build(wrapped_files["fastrnn"], tmp_path / "broken.fastrnn")
    _load_expecting(path, entry, message)


@needs_h5py
@pytest.mark.parametrize("case", list(WRAPPED_KERAS_CASES))
def test_corrupt_wrapped_keras_archive(case, wrapped_files, tmp_path):
    build, entry, message = WRAPPED_KERAS_CASES[case]
    path = build(wrapped_files["keras"], tmp_path / "broken.keras")
    _load_expecting(path, entry, message)


WRAPPED_H5_CASES = [
    "td inner weights of another class",
    "td inner group missing",
    "norm gamma wrong shape",
]


@needs_h5py
@pytest.mark.parametrize("case", WRAPPED_H5_CASES)
def test_corrupt_wrapped_weights_h5(case, wrapped_files, tmp_path):
    build, entry, message = WRAPPED_KERAS_CASES[case]
    archive = build(wrapped_files["keras"], tmp_path / "broken.keras")
    path = tmp_path / "broken.weights.h5"
    with zipfile.ZipFile(archive) as zf:
        path.write_bytes(zf.read(H5))
    model = _wrapped_model()
    before = model.get_weights()
    _load_expecting(
        path, entry.replace(H5, "broken.weights.h5"), message, loader=model.load_weights
    )
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


# ---- Functional models: hostile graphs ---------------------------------------------------------
def _functional_victim() -> Model:
    """Two inputs (masked), a shared LSTM, a merge, a nested Sequential, two outputs. Its Keras
    file holds the operations Keras records to compute masks."""
    tok = F.Input((T,), dtype="int32", name="tok")
    seq = F.Input((T, FEATURES), name="seq")
    emb = F.Embedding(11, FEATURES, mask_zero=True, name="emb")(tok)
    shared = F.LSTM(4, return_sequences=True, name="shared")
    joined = F.Concatenate(name="joined")([shared(emb), shared(F.Masking(name="masking")(seq))])
    head = Sequential([F.Input((8,)), F.Dense(2, name="hidden")], name="head")
    out = head(F.GRU(8, name="gru")(joined))
    model = Model([tok, seq], [out, F.Dense(1, name="score")(joined)], name="victim3")
    rng = np.random.default_rng(7)
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def functional_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("valid_functional")
    model = _functional_victim()
    out = {"fastrnn": folder / "valid.fastrnn"}
    model.save(out["fastrnn"])
    if h5py is not None:
        out["keras"] = folder / "valid.keras"
        model.save(out["keras"])
    return out


def _spec(obj: dict, name: str) -> dict:
    return next(s for s in obj["config"]["layers"] if s["name"] == name)


def _edit_layer(name: str, edit: Callable) -> Callable:
    """A case builder: ``edit`` changes the config of the layer (or operation) named ``name``."""
    return _edit_json(CFG, lambda obj: edit(_spec(obj, name)))


def _history(spec: dict, node: int = 0, item: int | None = None) -> list:
    """The ``keras_history`` of the first argument of call ``node`` (item ``item`` of a list)."""
    arg = spec["inbound_nodes"][node]["args"][0]
    return (arg if item is None else arg[item])["config"]["keras_history"]


def _set_history(name: str, value: list, node: int = 0, item: int | None = None) -> Callable:
    return _edit_layer(name, lambda s: _history(s, node, item).__setitem__(slice(None), value))


def _more_calls(name: str, n: int) -> Callable:
    return _edit_layer(name, lambda s: s.__setitem__("inbound_nodes", [{}] * n))


def _nest_models(depth: int) -> Callable:
    """Wraps the nested Sequential ``head`` in ``depth`` more Sequential models."""

    def edit(obj):
        spec = _spec(obj, "head")
        inner = {k: v for k, v in spec.items() if k not in ("name", "inbound_nodes")}
        for i in range(depth):
            config = {"name": f"n{i}", "layers": [inner], "build_input_shape": [None, 8]}
            inner = {"module": "keras", "class_name": "Sequential", "config": config}
        spec.update(inner)

    return edit


def _graph_cases(flavour: str) -> dict[str, tuple[Callable, str | None, str]]:
    """Cases common to both formats (the Keras file's graph and fastrnn's own are alike)."""
    return {
        "unknown layer in a call": (
            _set_history("gru", ["nope", 0, 0]),
            CFG,
            r"'gru'.*unknown layer 'nope'",
        ),
        "node index out of range": (
            _set_history("gru", ["joined", 3, 0]),
            CFG,
            r"call 3 of layer 'joined', which has 1 call",
        ),
        "tensor index out of range": (
            _set_history("gru", ["joined", 0, 2]),
            CFG,
            r"output 2 of call 0 of layer 'joined', which has 1 output",
        ),
        "negative node index": (
            _set_history("gru", ["joined", -1, 0]),
            CFG,
            r"node index must be an int",
        ),
        "huge node index": (
            _set_history("gru", ["joined", 10**18, 0]),
            CFG,
            r"node index must be an int",
        ),
        "cycle of two layers": (
            _set_history("joined", ["gru", 0, 0], item=0),
            CFG,
            r"wait on each other \(a cycle\)",
        ),
        "call of its own output": (
            _set_history("gru", ["gru", 0, 0]),
            CFG,
            r"'gru'.*uses its own output",
        ),
        "duplicate layer names": (
            _edit_layer("score", lambda s: (s.update(name="gru"), s["config"].update(name="gru"))),
            CFG,
            r"layer name 'gru' is used twice",
        ),
        "name differs from its config's": (
            _edit_layer("score", lambda s: s.update(name="other")),
            CFG,
            r"named 'score' in its config",
        ),
        "unknown non-null call argument": (
            _edit_layer("gru", lambda s: s["inbound_nodes"][0]["kwargs"].update(constants=[1])),
            CFG,
            r"'gru'.*call argument 'constants'",
        ),
        "training not a bool": (
            _edit_layer("gru", lambda s: s["inbound_nodes"][0]["kwargs"].update(training="yes")),
            CFG,
            r"training must be true, false or null",
        ),
        "two positional arguments": (
            _edit_layer("score", lambda s: s["inbound_nodes"][0]["args"].append(1)),
            CFG,
            r"'score'.*one positional argument, got 2",
        ),
        "a list for a layer taking one tensor": (
            _edit_layer(
                "score",
                lambda s: s["inbound_nodes"][0].__setitem__(
                    "args", [[s["inbound_nodes"][0]["args"][0]] * 2]
                ),
            ),
            CFG,
            r"'score'.*Dense takes one tensor",
        ),
        "one tensor for a merge layer": (
            _edit_layer(
                "joined",
                lambda s: s["inbound_nodes"][0].__setitem__(
                    "args", [s["inbound_nodes"][0]["args"][0][0]]
                ),
            ),
            CFG,
            r"'joined'.*takes a list of tensors",
        ),
        "declared shape disagrees": (
            _edit_layer(
                "score",
                lambda s: s["inbound_nodes"][0]["args"][0]["config"].update(shape=[None, T, 99]),
            ),
            CFG,
            rf"declares shape \(None, {T}, 99\).*\(None, {T}, 8\)",
        ),
        "input_layers missing": (_edit_json(CFG, _pop(["config", "input_layers"])), CFG, "input"),
        "model input not an InputLayer": (
            _edit_json(CFG, _set(["config", "input_layers", 0], ["emb", 0, 0])),
            CFG,
            r"model inputs must be InputLayers",
        ),
        "output of an unknown layer": (
            _edit_json(CFG, _set(["config", "output_layers", 1], ["nope", 0, 0])),
            CFG,
            r"output_layers.*unknown layer 'nope'",
        ),
        "InputLayer called": (
            _edit_layer("tok", lambda s: s.__setitem__("inbound_nodes", [{"args": []}])),
            CFG,
            r"InputLayer is not called",
        ),
        "InputLayer sparse": (
            _edit_layer("tok", lambda s: s["config"].update(sparse=True)),
            CFG,
            r"sparse",
        ),
        "InputLayer complex dtype": (
            _edit_layer("seq", lambda s: s["config"].update(dtype="complex64")),
            CFG,
            r"real numeric dtype",
        ),
        "20,001 calls of a layer": (_more_calls("score", 20_001), CFG, r"more than 20000"),
        "20,001 layers": (
            _edit_json(CFG, _set(["config", "layers"], [{}] * 20_001)),
            CFG,
            r"more than 20000 layer calls",
        ),
        "models nested 17 deep": (_edit_json(CFG, _nest_models(17)), CFG, r"nest more than 16"),
        "gru units 10**9": (
            _edit_layer("gru", lambda s: s["config"].update(units=10**9)),
            CFG,
            r"\(None, 1000000000\)",
        ),
        "nested layer units 10**9": (
            _edit_layer("head", lambda s: s["config"]["layers"][-1]["config"].update(units=10**9)),
            None,
            r"shape",
        ),
    }


FUNCTIONAL_KERAS_CASES = {
    **_graph_cases("keras"),
    "Keras operation as a layer input": (
        _set_history("score", ["any_1", 0, 0]),
        CFG,
        r"'score'.*uses the Keras operation 'any_1' as a layer input",
    ),
    "model output from a Keras operation": (
        _edit_json(CFG, _set(["config", "output_layers", 1], ["any_1", 0, 0])),
        CFG,
        r"uses the Keras operation 'any_1'",
    ),
    "hand-made mask": (
        _edit_layer("not_equal_1", lambda s: s["inbound_nodes"][0]["args"].__setitem__(1, 5)),
        CFG,
        r"'shared'.*hand-made mask",
    ),
    "unknown Keras operation": (
        _edit_layer("any", lambda s: s.update(class_name="Sqrt")),
        CFG,
        r"operation 'Sqrt' is not supported",
    ),
    "operation config key not understood": (
        _edit_layer("any", lambda s: s["config"].update(where=[1])),
        CFG,
        r"Any config key 'where' is not understood",
    ),
    "operation with a bad axis": (
        _edit_layer("any", lambda s: s["config"].update(axis=9)),
        CFG,
        r"axis 9 is out of range",
    ),
    "operation called twice": (
        _edit_layer("any", lambda s: s["inbound_nodes"].append(s["inbound_nodes"][0])),
        CFG,
        r"an operation is called once",
    ),
}

FUNCTIONAL_NATIVE_CASES = _graph_cases("fastrnn")

H5_FUNCTIONAL_CASES: dict[str, tuple[Callable, str | None, str]] = {
    "nested model with variables of its own": (
        _h5_edit(lambda f: f.create_dataset("layers/sequential/vars/0", data=np.zeros(2, "f4"))),
        rf"{H5}:layers/sequential/vars/0",
        r"a model has no variables of its own",
    ),
    "nested model with an extra group": (
        _h5_edit(lambda f: f.create_group("layers/sequential/extra")),
        rf"{H5}:layers/sequential/extra",
        r"not part of a nested model|the config does not have",
    ),
    "nested model's layer missing": (
        _h5_edit(lambda f: f.__delitem__("layers/sequential/layers/dense")),
        None,
        r"no more weights",
    ),
    "nested model's layer of another class": (
        _h5_edit(
            lambda f: f.move("layers/sequential/layers/dense", "layers/sequential/layers/lstm")
        ),
        rf"{H5}:layers/sequential/layers/lstm",
        r"the config does not have",
    ),
    "InputLayer with weights": (
        _h5_edit(lambda f: f.create_dataset("layers/input_layer/vars/0", data=np.zeros(2, "f4"))),
        rf"{H5}:layers/input_layer/vars/0",
        r"has no weights|has 0 weights; the file holds 1",
    ),
    "InputLayers swapped": (
        _h5_edit(lambda f: f.create_dataset("layers/input_layer_2/vars/0", data=np.zeros(2, "f4"))),
        rf"{H5}:layers/input_layer_2",
        r"a layer the config does not have",
    ),
}


def test_functional_valid_files_load(functional_files, rng):
    """The starting points of the tables below load, so each case fails for its own reason."""
    tok = rng.integers(0, 11, (3, T))
    x = [tok, rng.standard_normal((3, T, FEATURES)).astype(np.float32)]
    reference = _functional_victim()
    for path in functional_files.values():
        for a, b in zip(load_model(path).predict(x), reference.predict(x)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", list(FUNCTIONAL_NATIVE_CASES))
def test_corrupt_functional_fastrnn_file(case, functional_files, tmp_path):
    build, entry, message = FUNCTIONAL_NATIVE_CASES[case]
    path = build(functional_files["fastrnn"], tmp_path / "broken.fastrnn")
    _load_expecting(path, entry, message)


@needs_h5py
@pytest.mark.parametrize("case", list(FUNCTIONAL_KERAS_CASES) + list(H5_FUNCTIONAL_CASES))
def test_corrupt_functional_keras_archive(case, functional_files, tmp_path):
    build, entry, message = {**FUNCTIONAL_KERAS_CASES, **H5_FUNCTIONAL_CASES}[case]
    path = build(functional_files["keras"], tmp_path / "broken.keras")
    _load_expecting(path, entry, message)


@needs_h5py
@pytest.mark.parametrize("case", list(H5_FUNCTIONAL_CASES))
def test_corrupt_functional_weights_h5(case, functional_files, tmp_path):
    """The same HDF5 damage in a .weights.h5 file, loaded into the model built in fastrnn."""
    build, entry, message = H5_FUNCTIONAL_CASES[case]
    archive = build(functional_files["keras"], tmp_path / "broken.keras")
    path = tmp_path / "broken.weights.h5"
    with zipfile.ZipFile(archive) as zf:
        path.write_bytes(zf.read(H5))
    model = _functional_victim()
    before = model.get_weights()
    entry = None if entry is None else entry.replace(H5, "broken.weights.h5")
    message = message.replace("no more weights", "no more weights|holds no array")
    _load_expecting(path, entry, message, loader=model.load_weights)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@needs_h5py
def test_keras_masks_fastrnn_carries_itself_may_be_left_out(functional_files, tmp_path, rng):
    """A call without its recorded mask gets the mask the graph carries, as in Keras."""
    x = [rng.integers(0, 11, (3, T)), rng.standard_normal((3, T, FEATURES)).astype(np.float32)]
    reference = _functional_victim().predict(x)
    for edit in (
        _edit_layer("gru", lambda s: s["inbound_nodes"][0]["kwargs"].update(mask=None)),
        _edit_layer("gru", lambda s: s["inbound_nodes"][0].__setitem__("kwargs", {})),
    ):
        path = edit(functional_files["keras"], tmp_path / "edited.keras")
        for a, b in zip(load_model(path).predict(x), reference):
            np.testing.assert_array_equal(a, b)


@needs_h5py
def test_masks_through_nested_models_are_traced_within_a_bound(tmp_path):
    """Each level calls the level below twice with masks derived from its own: following the
    masks would take 2**15 traces; the loader stops at its bound, quickly."""
    inp = F.Input((None, 2))
    model = Model(inp, F.Dense(2)(inp))
    for _ in range(15):
        x = F.Input((None, 2))
        doubled = model(F.Concatenate(axis=1)([x, x]))
        model = Model(x, F.Concatenate(axis=1)([model(x), doubled]))
    tok = F.Input((None,), dtype="int32")
    outer = Model(tok, F.LSTM(2, name="lstm")(model(F.Embedding(5, 2, name="emb")(tok))))
    outer.save(tmp_path / "valid.keras")  # no mask anywhere: cheap to trace
    build = _edit_layer("emb", lambda s: s["config"].update(mask_zero=True))
    path = build(tmp_path / "valid.keras", tmp_path / "broken.keras")
    # tracemalloc slows this pure-Python tracing about fivefold (under a second without it).
    _load_expecting(path, CFG, r"tracing masks.*more than 20000 calls", seconds=10)
