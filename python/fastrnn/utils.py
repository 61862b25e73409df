"""Data utilities with Keras's names and arguments: ``pad_sequences``, ``to_categorical``,
``timeseries_dataset_from_array`` and ``set_random_seed``.

NumPy only: where Keras returns a ``tf.data.Dataset``, ``timeseries_dataset_from_array``
returns a ``TimeseriesDataset``, a plain Python sequence of NumPy batches (``len``, indexing and
iteration), the ``__len__``/``__getitem__`` protocol of Keras's ``PyDataset``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fastrnn.initializers import set_random_seed

__all__ = [
    "TimeseriesDataset",
    "pad_sequences",
    "set_random_seed",
    "timeseries_dataset_from_array",
    "to_categorical",
]


def pad_sequences(
    sequences: Any,
    maxlen: int | None = None,
    dtype: Any = "int32",
    padding: str = "pre",
    truncating: str = "pre",
    value: Any = 0.0,
) -> np.ndarray:
    """Pads (and truncates) sequences to one length: a list of N sequences -> (N, maxlen, ...).

    Args:
        sequences: a list (or other sized iterable) of sequences; each item may be a list of
            numbers or an array whose trailing axes (e.g. feature vectors) all items share.
        maxlen: default None: the longest sequence's length; longer sequences are truncated.
        dtype: default ``"int32"``, the output dtype (use ``object`` or a string dtype for
            strings).
        padding: ``"pre"`` (default, pad at the start) or ``"post"``.
        truncating: ``"pre"`` (default, drop values from the start) or ``"post"``.
        value: default 0.0, the padding value.

    Returns:
        A new array (N, maxlen, *item_shape) of ``dtype``; the inputs are not modified.

    Raises:
        ValueError: ``sequences`` not a list of sequences, items of different trailing shapes,
            a negative ``maxlen``, an unknown ``padding``/``truncating``, or a string ``value``
            with a non-string ``dtype``.

    Example:
        >>> pad_sequences([[1, 2, 3], [4, 5], [6]], maxlen=2)
        array([[2, 3], [4, 5], [0, 6]], dtype=int32)
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError("`sequences` must be iterable.")
    if padding not in ("pre", "post"):
        raise ValueError(f'Padding type "{padding}" not understood (use "pre" or "post").')
    if truncating not in ("pre", "post"):
        raise ValueError(f'Truncating type "{truncating}" not understood (use "pre" or "post").')
    lengths = []
    sample_shape: tuple = ()
    found_shape = False
    for x in sequences:
        try:
            lengths.append(len(x))
        except TypeError:
            raise ValueError(
                f"`sequences` must be a list of iterables. Found non-iterable: {x!r}"
            ) from None
        if not found_shape and len(x):
            sample_shape = np.asarray(x).shape[1:]
            found_shape = True
    if maxlen is None:
        maxlen = max(lengths) if lengths else 0
    if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
        raise ValueError(
            f"pad_sequences: maxlen must be a non-negative int or None, got {maxlen!r}."
        )
    maxlen = int(maxlen)
    is_str_dtype = np.issubdtype(np.dtype(dtype), np.str_) or np.issubdtype(
        np.dtype(dtype), np.bytes_
    )
    if isinstance(value, str) and dtype is not object and not is_str_dtype:
        raise ValueError(
            f"`dtype` {dtype} is not compatible with `value`'s type: {type(value)}\n"
            "You should set `dtype=object` for variable length strings."
        )
    out = np.full((len(lengths), maxlen) + sample_shape, value, dtype=dtype)
    if maxlen == 0:
        return out
    for idx, s in enumerate(sequences):
        if not len(s):
            continue
        trunc = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        trunc = np.asarray(trunc, dtype=dtype)
        if trunc.shape[1:] != sample_shape:
            raise ValueError(
                f"Shape of sample {trunc.shape[1:]} of sequence at position {idx} is different "
                f"from expected shape {sample_shape}"
            )
        if padding == "post":
            out[idx, : len(trunc)] = trunc
        else:
            out[idx, -len(trunc) :] = trunc
    return out


def to_categorical(x: Any, num_classes: int | None = None) -> np.ndarray:
    """One-hot encodes integer class labels: shape ``x.shape + (num_classes,)``, float64.

    A trailing axis of size 1 is dropped first ((N, 1) labels give (N, num_classes)), as Keras
    does.

    Args:
        x: integer labels in [0, num_classes) (floats holding whole numbers are accepted).
        num_classes: default None: ``max(x) + 1``.

    Returns:
        A new float64 array of 0s and 1s.

    Raises:
        ValueError: negative labels, labels >= ``num_classes``, non-integer values, or a
            ``num_classes`` that is not a positive int.

    Example:
        >>> to_categorical([0, 2, 1], num_classes=3)
        array([[1., 0., 0.], [0., 0., 1.], [0., 1., 0.]])
    """
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"to_categorical: x must hold integer labels, got dtype {a.dtype}.")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a) & (a == np.round(a))):
        raise ValueError("to_categorical: x must hold integer labels (whole numbers).")
    labels = a.astype(np.int64)
    shape = labels.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if labels.size and labels.min() < 0:
        raise ValueError(f"to_categorical: labels must be >= 0, got {labels.min()}.")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"to_categorical: num_classes must be an int, got {num_classes!r}.")
    elif num_classes <= 0:
        raise ValueError(f"to_categorical: num_classes must be positive, got {num_classes}.")
    if labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"to_categorical: label {labels.max()} is out of range for num_classes={num_classes}."
        )
    out = np.zeros((labels.size, num_classes))
    out[np.arange(labels.size), labels] = 1
    return out.reshape(shape + (num_classes,))


class TimeseriesDataset:
    """Sliding windows over a time series, in batches: what ``timeseries_dataset_from_array``
    returns.

    A sequence: ``len(ds)`` batches, ``ds[i]`` the i-th batch (an ``(x, y)`` tuple, or ``x``
    alone without targets), iteration in order, ``on_epoch_end()`` reshuffles when built with
    ``shuffle=True`` (the ``PyDataset`` protocol). Batches are new NumPy arrays of the data's
    dtype: x (batch, sequence_length, *data.shape[1:]), y (batch, *targets.shape[1:]).
    """

    def __init__(
        self,
        data: np.ndarray,
        targets: np.ndarray | None,
        starts: np.ndarray,
        sequence_length: int,
        sampling_rate: int,
        batch_size: int | None,
        shuffle: bool,
        rng: np.random.RandomState | None,
    ) -> None:
        self._data = data
        self._targets = targets
        self._starts = starts
        self._offsets = np.arange(sequence_length) * sampling_rate
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._rng = rng
        self.sequence_length = sequence_length
        self.sampling_rate = sampling_rate

    @property
    def num_samples(self) -> int:
        """How many windows the dataset holds."""
        return len(self._starts)

    def __len__(self) -> int:
        if self.batch_size is None:
            return len(self._starts)
        return -(-len(self._starts) // self.batch_size)

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"TimeseriesDataset indices must be ints, got {index!r}.")
        if not -n <= index < n:
            raise IndexError(f"TimeseriesDataset index {index} out of range for {n} batches.")
        index = int(index) % n
        if self.batch_size is None:
            starts = self._starts[index : index + 1]
        else:
            starts = self._starts[index * self.batch_size : (index + 1) * self.batch_size]
        x = self._data[starts[:, None] + self._offsets[None, :]]
        y = None if self._targets is None else self._targets[starts]
        if self.batch_size is None:
            x = x[0]
            y = None if y is None else y[0]
        return x if y is None else (x, y)

    def __iter__(self) -> Iterator:
        for i in range(len(self)):
            yield self[i]

    def on_epoch_end(self) -> None:
        """Reshuffles the windows (when built with ``shuffle=True``)."""
        if self.shuffle:
            self._rng.shuffle(self._starts)

    def __repr__(self) -> str:
        return (
            f"<TimeseriesDataset windows={self.num_samples} batches={len(self)} "
            f"batch_size={self.batch_size} sequence_length={self.sequence_length}>"
        )


def _check_int(value: Any, argument: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(
            f"timeseries_dataset_from_array: {argument} must be an int >= {low}, got {value!r}."
        )
    return int(value)


def timeseries_dataset_from_array(
    data: Any,
    targets: Any,
    sequence_length: int,
    sequence_stride: int = 1,
    sampling_rate: int = 1,
    batch_size: int | None = 128,
    shuffle: bool = False,
    seed: int | None = None,
    start_index: int | None = None,
    end_index: int | None = None,
) -> TimeseriesDataset:
    """Sliding windows over a time series, batched (Keras's function, NumPy batches).

    Window i starts at ``start_index + i * sequence_stride`` and holds the steps
    ``start, start + sampling_rate, ..., start + (sequence_length - 1) * sampling_rate``; its
    target is ``targets[start]`` (so to predict the step after a window, pass
    ``targets = data[sequence_length:]``). Windows never read past ``end_index``.

    Args:
        data: array-like, time on axis 0.
        targets: array-like with ``targets[i]`` the target of the window starting at i, or None
            (the dataset then yields inputs only).
        sequence_length: positive int, steps per window.
        sequence_stride: default 1, steps between the starts of consecutive windows.
        sampling_rate: default 1, steps between the steps of one window.
        batch_size: default 128; None yields single windows instead of batches.
        shuffle: default False; True shuffles the windows (reshuffled by ``on_epoch_end``).
        seed: default None, the shuffle's seed.
        start_index: default None (0), the first step windows may use.
        end_index: default None (``len(data)``), the step windows stop before.

    Returns:
        A ``TimeseriesDataset``: ``len`` batches of ``(x, y)`` (or ``x``) NumPy arrays. With
        ``shuffle=False`` its batches equal Keras's; with ``shuffle=True`` it holds the same
        windows, in a different order than tf.data's shuffle.

    Raises:
        ValueError: Keras's checks (indices inside the data, strides and rates between 1 and
            ``len(data) - 1``), non-positive sizes, or targets shorter than needed.

    Example:
        >>> series = np.arange(100, dtype=np.float32)
        >>> ds = timeseries_dataset_from_array(series[:-10], series[10:], sequence_length=10,
        ...                                    batch_size=32)
        >>> x, y = ds[0]   # x (32, 10), y (32,): x[0] = series[0:10], y[0] = series[10]
    """
    data = np.asarray(data)
    if data.ndim == 0:
        raise ValueError("timeseries_dataset_from_array: data must have a time axis (axis 0).")
    n = len(data)
    sequence_length = _check_int(sequence_length, "sequence_length", 1)
    if start_index is not None:
        start_index = _check_int(start_index, "start_index", 0)
        if start_index >= n:
            raise ValueError(
                "`start_index` must be lower than the length of the data. Received: "
                f"start_index={start_index}, for data of length {n}"
            )
    if end_index is not None:
        end_index = _check_int(end_index, "end_index", 1)
        if start_index and end_index <= start_index:
            raise ValueError(
                "`end_index` must be higher than `start_index`. Received: "
                f"start_index={start_index}, and end_index={end_index} "
            )
        if end_index >= n:
            raise ValueError(
                "`end_index` must be lower than the length of the data. Received: "
                f"end_index={end_index}, for data of length {n}"
            )
    sampling_rate = _check_int(sampling_rate, "sampling_rate", 1)
    if sampling_rate >= n:
        raise ValueError(
            "`sampling_rate` must be lower than the length of the data. Received: "
            f"sampling_rate={sampling_rate}, for data of length {n}"
        )
    sequence_stride = _check_int(sequence_stride, "sequence_stride", 1)
    if sequence_stride >= n:
        raise ValueError(
            "`sequence_stride` must be lower than the length of the data. Received: "
            f"sequence_stride={sequence_stride}, for data of length {n}"
        )
    if batch_size is not None:
        batch_size = _check_int(batch_size, "batch_size", 1)
    start = 0 if start_index is None else start_index
    end = n if end_index is None else end_index
    num_seqs = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        targets = np.asarray(targets)
        if targets.ndim == 0:
            raise ValueError("timeseries_dataset_from_array: targets must have a time axis.")
        num_seqs = min(num_seqs, len(targets) - start)
    starts = np.arange(0, max(num_seqs, 0), sequence_stride, dtype=np.int64)
    rng = None
    if shuffle:
        rng = np.random.RandomState(np.random.randint(1e6) if seed is None else seed)
        rng.shuffle(starts)
    window_data = data[start:end]
    window_targets = None if targets is None else targets[start:]
    return TimeseriesDataset(
        window_data,
        window_targets,
        starts,
        sequence_length,
        sampling_rate,
        batch_size,
        bool(shuffle),
        rng,
    )
