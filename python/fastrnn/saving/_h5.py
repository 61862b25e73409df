"""HDF5 access for Keras weights files, through h5py (the ``h5`` extra), treating files as hostile.

Only the paths the model's structure names are visited. Soft and external links, external and
virtual datasets are refused; every dataset's shape and dtype are checked (float32/float64 only,
declared size within the budget, declared size not far above what is stored) before its data is
read. The HDF5 library itself parses the file's structure: a file crafted against libhdf5 is
outside what these checks can cover.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np

from fastrnn.saving._archive import RATIO_FLOOR, Limits, check_float_dtype, format_bytes

_INDEX = re.compile(r"0|[1-9]\d{0,8}")


def h5py_module() -> Any:
    """Imports h5py lazily.

    Raises:
        ImportError: h5py is not installed; names the extra that provides it.
    """
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "Reading or writing Keras files (.keras, .weights.h5) needs h5py, which is not "
            "installed. Install the extra: pip install 'fastrnn[h5]' (or pip install h5py)."
        ) from None
    return h5py


class H5Reader:
    """Checked access to an open ``h5py.File``.

    Args:
        h5file: the open file.
        fail: ``fail(entry, message)`` returns the exception to raise; entries are HDF5 paths
            prefixed with ``label`` (e.g. ``"model.weights.h5:layers/lstm/cell/vars/0"``).
        limits: bounds on the datasets' declared bytes, count and expansion ratio.
        label: the name of the HDF5 file inside the archive, or its file name.
    """

    def __init__(
        self, h5file: Any, fail: Callable[[str | None, str], Exception], limits: Limits, label: str
    ) -> None:
        self.h5py = h5py_module()
        self.file = h5file
        self._fail = fail
        self.limits = limits
        self.label = label
        self.declared = 0
        self.count = 0

    def entry(self, path: str) -> str:
        return f"{self.label}:{path}" if path else self.label

    def fail(self, path: str, message: str) -> Exception:
        return self._fail(self.entry(path), message)

    def _child(self, parent: Any, parent_path: str, name: str) -> tuple[Any, str]:
        path = f"{parent_path}/{name}" if parent_path else name
        try:
            link = parent.get(name, default=None, getlink=True)
        except Exception as exc:
            raise self.fail(path, f"unreadable HDF5 link ({exc})") from None
        if link is None:
            return None, path
        if not isinstance(link, self.h5py.HardLink):
            raise self.fail(path, f"{type(link).__name__} objects are not allowed")
        try:
            return parent[name], path
        except Exception as exc:
            raise self.fail(path, f"unreadable HDF5 object ({exc})") from None

    def group(self, path: str, required: bool = True) -> Any:
        """The group at ``path`` (``a/b/c``); None when absent and not ``required``."""
        node, node_path = self.file, ""
        for part in path.split("/") if path else []:
            if not isinstance(node, self.h5py.Group):
                raise self.fail(node_path, "expected an HDF5 group, found a dataset")
            node, node_path = self._child(node, node_path, part)
            if node is None:
                if required:
                    raise self.fail(node_path, "missing HDF5 group")
                return None
        if not isinstance(node, self.h5py.Group):
            raise self.fail(path, "expected an HDF5 group, found a dataset")
        return node

    def keys(self, group: Any, path: str) -> list[str]:
        try:
            count = len(group)  # the group's link count, before listing any name
            names = list(group.keys()) if count <= self.limits.max_entries else None
        except Exception as exc:
            raise self.fail(path, f"unreadable HDF5 group ({exc})") from None
        if names is None:
            raise self.fail(path, f"holds {count} objects; at most {self.limits.max_entries}")
        return names

    def vars(self, path: str) -> list[tuple[str, Any]]:
        """The datasets ``path/vars/0``, ``1`` ... in order (none when ``path/vars`` is absent).

        Raises:
            the ``fail`` exception: members that are not datasets named 0..n-1, links,
            external/virtual datasets, non-float dtypes, shapes beyond the budget.
        """
        vars_path = f"{path}/vars" if path else "vars"
        group = self.group(vars_path, required=False)
        if group is None:
            return []
        names = self.keys(group, vars_path)
        if not all(isinstance(n, str) and _INDEX.fullmatch(n) for n in names):
            bad = next(n for n in names if not (isinstance(n, str) and _INDEX.fullmatch(n)))
            raise self.fail(f"{vars_path}/{bad}", "unexpected member of a vars group")
        indices = sorted(int(n) for n in names)
        if indices != list(range(len(indices))):
            raise self.fail(vars_path, f"arrays must be named 0..n-1, found {sorted(names)[:20]}")
        out = []
        for i in indices:
            node, node_path = self._child(group, vars_path, str(i))
            out.append((node_path, self.dataset(node, node_path)))
        return out

    def dataset(self, node: Any, path: str) -> Any:
        if not isinstance(node, self.h5py.Dataset):
            raise self.fail(path, "expected an HDF5 dataset, found a group")
        self.count += 1
        if self.count > self.limits.max_entries:
            raise self.fail(path, f"more than {self.limits.max_entries} arrays")
        try:
            external, virtual = node.external, node.is_virtual
            shape = node.shape
        except Exception as exc:
            raise self.fail(path, f"unreadable HDF5 dataset ({exc})") from None
        if external:
            raise self.fail(path, "external datasets are not allowed")
        if virtual:
            raise self.fail(path, "virtual datasets are not allowed")
        if shape is None:
            raise self.fail(path, "empty (null-dataspace) dataset")
        return node

    def declare(self, node: Any, path: str, scalar_int: bool = False) -> tuple[tuple, np.dtype]:
        """Checks a dataset's declared shape and dtype before reading; returns them.

        Args:
            scalar_int: the dataset is an integer counter (optimizer iterations).
        """
        shape, dtype = tuple(int(d) for d in node.shape), node.dtype
        if scalar_int:
            if shape != () or dtype.kind not in "iu" or dtype.names is not None:
                raise self.fail(path, f"expected an integer scalar, found {dtype} {shape}")
        else:
            try:
                check_float_dtype(dtype)
            except ValueError as exc:
                raise self.fail(path, str(exc)) from None
        nbytes = math.prod(shape) * dtype.itemsize
        self.declared += nbytes
        if self.declared > self.limits.max_bytes:
            raise self.fail(
                path,
                f"the arrays declare more than max_bytes={self.limits.max_bytes} "
                f"({format_bytes(self.limits.max_bytes)}); this one has shape {shape}",
            )
        if nbytes > RATIO_FLOOR:
            try:
                stored = node.id.get_storage_size()
            except Exception as exc:
                raise self.fail(path, f"unreadable HDF5 dataset ({exc})") from None
            if nbytes > self.limits.max_ratio * max(stored, 1):
                raise self.fail(
                    path,
                    f"declares {format_bytes(nbytes)} but stores {format_bytes(stored)} (ratio "
                    f"above max_ratio={self.limits.max_ratio:g}); refusing a likely bomb",
                )
        return shape, dtype

    def read(self, node: Any, path: str, dtype: np.dtype) -> np.ndarray:
        """Reads a declared dataset into a fresh native-order array of ``dtype``."""
        shape = tuple(int(d) for d in node.shape)
        out = np.empty(shape, dtype=dtype)
        try:
            if out.size:
                node.read_direct(out)
        except Exception as exc:
            raise self.fail(path, f"cannot read the data ({type(exc).__name__}: {exc})") from None
        return out


def write_groups(h5file: Any, groups: list[tuple[str, str | None, list[np.ndarray]]]) -> None:
    """Writes ``(path, name, arrays)`` as Keras does: ``path/vars`` (attr ``name``), 0..n-1."""
    for path, name, arrays in groups:
        vars_group = h5file.create_group(f"{path}/vars" if path else "vars")
        if name is not None:
            vars_group.attrs["name"] = name
        for i, array in enumerate(arrays):
            vars_group.create_dataset(str(i), data=np.asarray(array))
