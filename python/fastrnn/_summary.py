"""``model.summary()`` text laid out as Keras 3 lays it out (its table through ``rich``).

Column widths, wrapping of long cells at spaces, ``…`` for a word wider than its column, the
box characters and the parameter lines follow Keras 3's ``print_summary`` rendered by ``rich``
without colours: the same input gives the same characters. Line length defaults to Keras's:
88 (three columns) or 108 (four, with "Connected to"), at most the terminal width minus 4.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

_WORD = re.compile(r"\s*\S+\s*")


def readable_bytes(size: float) -> str:
    """Keras's ``readable_memory_size``: ``"1.38 KB"``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def format_shape(shape: Any) -> str:
    """``(None, 7, 5)`` for one shape; a bracketed list for several (as Keras prints them)."""
    if shape is None:
        return "?"
    if isinstance(shape, (list, tuple)) and shape and not _is_shape(shape):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _is_shape(s: Any) -> bool:
    return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, int) for d in s)


def _ratio_reduce(total: int, ratios: list[int], maximums: list[int], values: list[int]) -> list:
    ratios = [r if m else 0 for r, m in zip(ratios, maximums)]
    total_ratio = sum(ratios)
    if not total_ratio:
        return list(values)
    remaining = total
    out = []
    for ratio, maximum, value in zip(ratios, maximums, values):
        if ratio and total_ratio > 0:
            distributed = min(maximum, round(ratio * remaining / total_ratio))
            out.append(value - distributed)
            remaining -= distributed
            total_ratio -= ratio
        else:
            out.append(value)
    return out


def _break_offsets(text: str, width: int) -> list[int]:
    """Where a line breaks to fit ``width``: at spaces; a word too wide keeps its own line."""
    breaks = []
    offset = 0
    for match in _WORD.finditer(text):
        start, word = match.start(), match.group(0)
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:
            if start:
                breaks.append(start)
            offset = len(word)
        elif offset and start:
            breaks.append(start)
            offset = len(word)
    return breaks


def _truncate(text: str, width: int) -> str:
    return text[: width - 1] + "…" if len(text) > width else text


def wrap_cell(text: str, width: int, justify: str) -> list[str]:
    """The lines of one cell, each exactly ``width`` characters."""
    lines = []
    for paragraph in text.split("\n"):
        cuts = [0, *_break_offsets(paragraph, width), len(paragraph)]
        for a, b in zip(cuts, cuts[1:]):
            piece = paragraph[a:b]
            if len(piece) > width:  # trailing spaces beyond the width go first
                excess = len(piece) - width
                stripped = piece.rstrip()
                piece = piece[: len(piece) - min(len(piece) - len(stripped), excess)]
            if justify == "right":
                piece = _truncate(piece.rstrip(), width)
                piece = " " * (width - len(piece)) + piece
            else:
                piece = _truncate(piece, width).ljust(width)
            lines.append(piece)
    return lines


def render_table(
    header: list[str],
    rows: list[list[str]],
    positions: list[float],
    line_length: int,
    justify: list[str],
) -> list[str]:
    """Keras's summary table (rich ``HEAVY_HEAD`` box, a rule between rows) as text lines."""
    widths, current = [], 0
    for pos in positions:
        width = int(pos * line_length) - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width)
        current += width
    max_width = line_length - (len(widths) + 1)
    cols = [min(w + 2, max_width) for w in widths]
    if sum(cols) > max_width:
        cols = _ratio_reduce(sum(cols) - max_width, [1] * len(cols), cols, cols)

    def render_row(cells: list[str], bar: str) -> list[str]:
        wrapped = [wrap_cell(c, w - 2, j) for c, w, j in zip(cells, cols, justify)]
        height = max(len(w) for w in wrapped)
        out = []
        for i in range(height):
            parts = [
                " " + (cell[i] if i < len(cell) else " " * (w - 2)) + " "
                for cell, w in zip(wrapped, cols)
            ]
            out.append(bar + bar.join(parts) + bar)
        return out

    def rule(left: str, mid: str, right: str, fill: str) -> str:
        return left + mid.join(fill * w for w in cols) + right

    lines = [rule("┏", "┳", "┓", "━"), *render_row(header, "┃"), rule("┡", "╇", "┩", "━")]
    for i, row in enumerate(rows):
        lines.extend(render_row(row, "│"))
        if i != len(rows) - 1:
            lines.append(rule("├", "┼", "┤", "─"))
    lines.append(rule("└", "┴", "┘", "─"))
    return lines


def terminal_columns() -> int:
    return shutil.get_terminal_size().columns


def summary_text(
    name: str,
    rows: list[list[str]],
    connected: bool,
    counts: dict,
    line_length: int | None = None,
    positions: list[float] | None = None,
) -> str:
    """The whole summary as Keras prints it (ending with a newline).

    Args:
        name: the model's name.
        rows: one ``[layer (type), output shape, params(, connected to)]`` per layer.
        connected: True for the four-column layout of non-sequential functional models.
        counts: ``trainable``, ``non_trainable`` (counts and ``*_bytes``) and optionally
            ``optimizer``/``optimizer_bytes``.
        line_length: total width; Keras's default when None.
        positions: relative column ends; Keras's defaults when None.
    """
    columns = terminal_columns()
    if connected:
        default, positions = 108, positions or [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        justify = ["left", "left", "right", "left"]
    else:
        default, positions = 88, positions or [0.45, 0.80, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #"]
        justify = ["left", "left", "right"]
    line_length = line_length or min(default, columns - 4)
    table = [line[:columns] for line in render_table(header, rows, positions, line_length, justify)]
    trainable, non_trainable = counts["trainable"], counts["non_trainable"]
    optimizer = counts.get("optimizer")
    total = trainable + non_trainable + (optimizer or 0)
    total_bytes = counts["trainable_bytes"] + counts["non_trainable_bytes"]
    total_bytes += counts.get("optimizer_bytes", 0) if optimizer is not None else 0
    lines = [f'Model: "{name}"', *table]
    lines.append(f" Total params: {total:,} ({readable_bytes(total_bytes)})")
    lines.append(f" Trainable params: {trainable:,} ({readable_bytes(counts['trainable_bytes'])})")
    lines.append(
        f" Non-trainable params: {non_trainable:,} "
        f"({readable_bytes(counts['non_trainable_bytes'])})"
    )
    if optimizer is not None:
        lines.append(
            f" Optimizer params: {optimizer:,} ({readable_bytes(counts['optimizer_bytes'])})"
        )
    return "\n".join(lines) + "\n"
