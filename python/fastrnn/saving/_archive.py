"""Reading zip archives that may be hostile: bounds checked from headers before any inflating.

Everything here treats the file as untrusted input. The order of work is always: check what the
headers declare (end-of-central-directory record, central directory, ``.npy`` headers) against
the limits, then read exactly the declared number of bytes. Every failure is a
``ModelFileError`` (a ``ValueError``) naming the file and the entry.
"""

from __future__ import annotations

import ast
import io
import json
import math
import os
import re
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

DEFAULT_MAX_BYTES = 4 * 1024**3
"""Default bound on the bytes a file may inflate to (all entries together): 4 GiB."""

DEFAULT_MAX_ENTRIES = 10_000
"""Default bound on the number of entries in a zip archive or arrays in an HDF5 weights file."""

DEFAULT_MAX_RATIO = 100.0
"""Default bound on an entry's inflated/compressed size ratio (checked above ``RATIO_FLOOR``)."""

RATIO_FLOOR = 1 << 20
"""Entries (and HDF5 datasets) of at most this many inflated bytes skip the ratio check."""

MAX_JSON_BYTES = 16 * 1024**2
"""JSON entries (configs) larger than this are rejected: 16 MiB is far above any real config."""

MAX_JSON_DEPTH = 64
"""JSON nesting deeper than this is rejected (real configs nest about 10 levels)."""

MAX_NPY_HEADER = 65535
"""An ``.npy`` header longer than this is rejected (NumPy writes a few hundred bytes)."""

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_CHUNK = 1 << 24


class ModelFileError(ValueError):
    """A model or weights file that cannot be loaded: corrupt, hostile, foreign or inconsistent.

    Attributes:
        filepath: the file, as given.
        entry: the entry inside it (a zip member, an HDF5 path or a config path), or None.
    """

    def __init__(self, filepath: Any, entry: str | None, message: str) -> None:
        self.filepath = os.fspath(filepath) if isinstance(filepath, os.PathLike) else filepath
        self.entry = entry
        where = f"{self.filepath!r}" if entry is None else f"{self.filepath!r}, entry {entry!r}"
        super().__init__(f"Cannot load {where}: {message}")


@dataclass(frozen=True)
class Limits:
    """Bounds applied while loading a file (see ``fastrnn.saving.load_model``).

    Attributes:
        max_bytes: total bytes all entries (and HDF5 datasets) may inflate to.
        max_entries: most entries in the zip archive / arrays in an HDF5 file.
        max_ratio: most inflated/stored size ratio of an entry or dataset above ``RATIO_FLOOR``.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_ratio: float = DEFAULT_MAX_RATIO

    @classmethod
    def checked(cls, max_bytes: Any, max_entries: Any, max_ratio: Any) -> Limits:
        """Validates user-supplied limits.

        Raises:
            TypeError: a limit of the wrong type.
            ValueError: a limit that is not positive.
        """
        for name, value in (("max_bytes", max_bytes), ("max_entries", max_entries)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be a positive int, got {value!r}.")
            if value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if isinstance(max_ratio, bool) or not isinstance(max_ratio, (int, float, np.number)):
            raise TypeError(f"max_ratio must be a positive number, got {max_ratio!r}.")
        if not max_ratio > 0:  # also rejects NaN
            raise ValueError(f"max_ratio must be a positive number, got {max_ratio!r}.")
        return cls(int(max_bytes), int(max_entries), float(max_ratio))


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_float_dtype(dtype: np.dtype) -> np.dtype:
    """The native-order float32/float64 dtype an array of ``dtype`` is read as.

    Big-endian (or little-endian on a big-endian machine) IEEE floats are accepted and converted
    explicitly to native order, value for value; every other kind is rejected, never cast.

    Raises:
        ValueError: complex, integer, bool, object, string, structured, sub-array or float16 data.
    """
    if dtype.names is not None or dtype.subdtype is not None:
        raise ValueError(f"structured or sub-array dtype {dtype.descr!r}; expected float32/float64")
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise ValueError(f"dtype {dtype.str!r} ({dtype.name}); expected float32 or float64")
    return dtype.newbyteorder("=")


@dataclass(frozen=True)
class NpyHeader:
    """What an ``.npy`` entry declares, read before its data."""

    entry: str
    shape: tuple
    dtype: np.dtype  # as stored (byte order kept)
    fortran_order: bool
    offset: int  # bytes before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} (configs must hold finite numbers)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} overflows to infinity")
    return value


def _no_duplicate_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _check_depth(obj: Any) -> None:
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def parse_json(data: bytes) -> Any:
    """Parses untrusted JSON: finite numbers only, no duplicate keys, bounded nesting.

    Raises:
        ValueError: anything else (the message says what).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc})") from None
    try:
        obj = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicate_keys,
        )
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"invalid JSON ({exc})") from None
    _check_depth(obj)
    return obj


def _end_record(f: Any, size: int) -> tuple[int, int]:
    """(entry count, central directory size) from the end-of-central-directory record(s).

    Raises:
        ValueError: no end record (not a zip file) or an inconsistent zip64 record.
    """
    tail_len = min(size, 22 + 65535)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        raise ValueError("not a zip archive (no end-of-central-directory record)")
    fields = struct.unpack("<4s4H2LH", tail[pos : pos + 22])
    count, cd_size, cd_offset = fields[4], fields[5], fields[6]
    if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        locator_at = size - tail_len + pos - 20
        if locator_at < 0:
            raise ValueError("truncated zip64 end record")
        f.seek(locator_at)
        locator = f.read(20)
        if len(locator) != 20 or locator[:4] != b"PK\x06\x07":
            raise ValueError("missing zip64 end-of-central-directory locator")
        (record_at,) = struct.unpack("<Q", locator[8:16])
        if record_at > size - 56:
            raise ValueError("zip64 end record outside the file")
        f.seek(record_at)
        record = f.read(56)
        if len(record) != 56 or record[:4] != b"PK\x06\x06":
            raise ValueError("bad zip64 end-of-central-directory record")
        count, cd_size = struct.unpack("<QQ", record[32:48])
    return count, cd_size


class SafeZip:
    """A zip archive opened for reading under ``Limits``.

    On construction, before anything is inflated: the entry count and central directory size
    are checked from the end record; then every entry's declared sizes, compression method,
    encryption flag and name (unique; ``check_names`` checks them against a format); the
    declared inflated total against ``max_bytes`` and each entry's ratio against ``max_ratio``.

    Args:
        filepath: path of the archive.
        limits: the bounds.
        kind: what the file is supposed to be, for messages (``"model file"``).

    Raises:
        FileNotFoundError, PermissionError, IsADirectoryError: from opening the path.
        ModelFileError: everything about the content.
    """

    def __init__(self, filepath: Any, limits: Limits, kind: str) -> None:
        self.path = os.fspath(filepath)
        self.limits = limits
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._open(kind)
        except BaseException:
            self._file.close()
            raise

    def fail(self, entry: str | None, message: str) -> ModelFileError:
        return ModelFileError(self.path, entry, message)

    def _open(self, kind: str) -> None:
        limits = self.limits
        size = os.fstat(self._file.fileno()).st_size
        try:
            count, cd_size = _end_record(self._file, size)
        except ValueError as exc:
            raise self.fail(None, f"not a {kind}: {exc}") from None
        if count > limits.max_entries:
            raise self.fail(
                None, f"the archive declares {count} entries; at most {limits.max_entries} allowed"
            )
        # Each central-directory record is >= 46 bytes plus its name; ours are short.
        if cd_size > 46 + limits.max_entries * 256:
            raise self.fail(
                None,
                f"the central directory declares {format_bytes(cd_size)}, too large for "
                f"{limits.max_entries} entries",
            )
        self._file.seek(0)
        try:
            self.zf = zipfile.ZipFile(self._file)
            infos = self.zf.infolist()
        except Exception as exc:  # zipfile raises many kinds on corrupt directories
            raise self.fail(None, f"not a {kind} (corrupt zip: {exc})") from None
        if len(infos) > limits.max_entries:
            raise self.fail(
                None, f"the archive holds {len(infos)} entries; at most {limits.max_entries}"
            )
        total = 0
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            if name in self.infos:
                raise self.fail(name, "the entry appears twice in the archive")
            if info.flag_bits & 0x1:
                raise self.fail(name, "encrypted entries are not supported")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self.fail(
                    name,
                    f"compression method {info.compress_type} is not allowed (only stored or "
                    "deflated)",
                )
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise self.fail(name, "stored entry with different stored and declared sizes")
            if info.file_size > RATIO_FLOOR and (
                info.file_size > limits.max_ratio * max(info.compress_size, 1)
            ):
                raise self.fail(
                    name,
                    f"declares {format_bytes(info.file_size)} from "
                    f"{format_bytes(info.compress_size)} (ratio above max_ratio="
                    f"{limits.max_ratio:g}); refusing a likely zip bomb (raise max_ratio if the "
                    "file is trusted)",
                )
            total += info.file_size
            self.infos[name] = info
        if total > limits.max_bytes:
            raise self.fail(
                None,
                f"the entries declare {format_bytes(total)} in all, above max_bytes="
                f"{limits.max_bytes} ({format_bytes(limits.max_bytes)}); pass a larger "
                "max_bytes if the file is trusted",
            )

    def check_names(self, allowed: Callable[[str], bool], kind: str) -> None:
        """Rejects the file when an entry's name is not one ``allowed`` accepts."""
        for name in self.infos:
            if not allowed(name):
                raise self.fail(name, f"unexpected entry in a {kind}")

    # ---- context manager ---------------------------------------------------------------------
    def close(self) -> None:
        zf = getattr(self, "zf", None)
        if zf is not None:
            zf.close()
        self._file.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- entries -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.infos)

    def __contains__(self, name: str) -> bool:
        return name in self.infos

    def info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self.infos[name]
        except KeyError:
            raise self.fail(name, "missing entry") from None

    def open(self, name: str) -> Any:
        """A file object for entry ``name`` (never yields more than its declared size)."""
        try:
            return self.zf.open(self.info(name))
        except ModelFileError:
            raise
        except Exception as exc:
            raise self.fail(name, f"cannot open the entry ({exc})") from None

    def _read_exact(self, f: Any, n: int, name: str) -> bytes:
        parts = []
        left = n
        try:
            while left > 0:
                chunk = f.read(min(left, _CHUNK))
                if not chunk:
                    break
                parts.append(chunk)
                left -= len(chunk)
        except Exception as exc:  # zlib.error, BadZipFile (CRC), EOFError, OSError
            raise self.fail(name, f"corrupt data ({type(exc).__name__}: {exc})") from None
        if left:
            raise self.fail(name, f"truncated: {n - left} of {n} bytes")
        return b"".join(parts)

    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        """The whole entry; its declared size is checked against ``limit`` first."""
        info = self.info(name)
        if limit is not None and info.file_size > limit:
            raise self.fail(
                name, f"declares {format_bytes(info.file_size)}; at most {format_bytes(limit)}"
            )
        with self.open(name) as f:
            data = self._read_exact(f, info.file_size, name)
            try:
                f.read(1)  # reaching the end checks the CRC
            except Exception as exc:
                raise self.fail(name, f"corrupt data ({type(exc).__name__}: {exc})") from None
        return data

    def read_json(self, name: str) -> Any:
        """Parses a JSON entry (at most ``MAX_JSON_BYTES``; see ``parse_json``)."""
        data = self.read_bytes(name, MAX_JSON_BYTES)
        try:
            return parse_json(data)
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None

    def verify(self, name: str) -> None:
        """Streams through an entry once so that zipfile checks its size and CRC-32."""
        info = self.info(name)
        with self.open(name) as f:
            left = info.file_size
            try:
                while True:
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        break
                    left -= len(chunk)
            except Exception as exc:
                raise self.fail(name, f"corrupt data ({type(exc).__name__}: {exc})") from None
        if left:
            raise self.fail(name, f"truncated: {info.file_size - left} of {info.file_size} bytes")

    def window(self, name: str) -> Any:
        """A read-only, seekable file object over a *stored* entry's bytes in place (no copy).

        Deflated entries are read into memory instead (their size is within the budget). The
        entry's CRC is verified first.
        """
        info = self.info(name)
        self.verify(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return io.BytesIO(self.read_bytes(name))
        self._file.seek(info.header_offset)
        local = self._file.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise self.fail(name, "bad local file header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        return _Window(self._file, start, info.file_size)

    # ---- .npy entries --------------------------------------------------------------------------
    def npy_header(self, name: str) -> NpyHeader:
        """Reads and checks an ``.npy`` header without touching the data.

        Raises:
            ModelFileError: bad magic or header, a dtype other than float32/float64 (also
                complex, int, object, structured), a shape that is not a tuple of non-negative
                ints, or an entry whose size differs from what the header declares.
        """
        info = self.info(name)
        with self.open(name) as f:
            head = self._read_exact(f, min(info.file_size, 12), name)
            if len(head) < 10 or head[:6] != b"\x93NUMPY":
                raise self.fail(name, "not an .npy array (bad magic)")
            major = head[6]
            if major == 1:
                (header_len,) = struct.unpack("<H", head[8:10])
                start = 10
            elif major in (2, 3):
                if len(head) < 12:
                    raise self.fail(name, "truncated .npy header")
                (header_len,) = struct.unpack("<I", head[8:12])
                start = 12
            else:
                raise self.fail(name, f"unsupported .npy format version {major}.{head[7]}")
            if header_len > MAX_NPY_HEADER or start + header_len > info.file_size:
                raise self.fail(name, f"bad .npy header length {header_len}")
            rest = self._read_exact(f, start + header_len - len(head), name)
        raw = (head + rest)[start:]
        header = self._parse_npy_dict(raw, name, "utf-8" if major == 3 else "latin1")
        shape, fortran, dtype = header
        offset = start + header_len
        out = NpyHeader(name, shape, dtype, fortran, offset)
        if out.nbytes != info.file_size - offset:
            raise self.fail(
                name,
                f"the header declares shape {shape} of {dtype.name} ({format_bytes(out.nbytes)}) "
                f"but the entry holds {format_bytes(info.file_size - offset)} of data",
            )
        return out

    def _parse_npy_dict(self, raw: bytes, name: str, encoding: str) -> tuple:
        try:
            text = raw.decode(encoding)
            header = ast.literal_eval(text.strip())
        except Exception as exc:
            raise self.fail(name, f"unreadable .npy header ({type(exc).__name__})") from None
        if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
            raise self.fail(name, f"bad .npy header {text[:200]!r}")
        descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
        if not isinstance(descr, str):
            raise self.fail(name, f"structured .npy dtype {str(descr)[:200]}; expected a float")
        if not re.fullmatch(r"[<>|=]?[a-zA-Z]\d{0,2}", descr):
            raise self.fail(name, f"unsupported .npy dtype {descr[:100]!r}")
        try:
            dtype = np.dtype(descr)
        except Exception:
            raise self.fail(name, f"unknown .npy dtype {descr[:100]!r}") from None
        try:
            check_float_dtype(dtype)
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None
        if not isinstance(fortran, bool):
            raise self.fail(name, f"bad fortran_order {fortran!r}")
        if not isinstance(shape, tuple) or len(shape) > 32:
            raise self.fail(name, f"bad .npy shape {str(shape)[:200]}")
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                raise self.fail(name, f"bad .npy shape {str(shape)[:200]}")
        if math.prod(shape) * dtype.itemsize > self.limits.max_bytes:
            raise self.fail(
                name,
                f"the header declares shape {shape} "
                f"({format_bytes(math.prod(shape) * dtype.itemsize)}), above max_bytes="
                f"{self.limits.max_bytes}",
            )
        return shape, fortran, dtype

    def read_npy(self, header: NpyHeader) -> np.ndarray:
        """The array of a checked header: native byte order, C-contiguous, a fresh copy."""
        name = header.entry
        with self.open(name) as f:
            self._read_exact(f, header.offset, name)
            data = self._read_exact(f, header.nbytes, name)
            try:
                f.read(1)  # reaching the end checks the CRC
            except Exception as exc:
                raise self.fail(name, f"corrupt data ({type(exc).__name__}: {exc})") from None
        flat = np.frombuffer(data, dtype=header.dtype, count=math.prod(header.shape))
        if header.fortran_order:
            array = flat.reshape(header.shape[::-1]).transpose()
        else:
            array = flat.reshape(header.shape)
        return np.ascontiguousarray(array, dtype=check_float_dtype(header.dtype))


class _Window(io.RawIOBase):
    """Bytes [start, start + size) of an open file, as a read-only seekable file."""

    def __init__(self, f: Any, start: int, size: int) -> None:
        super().__init__()
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)
