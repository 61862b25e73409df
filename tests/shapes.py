"""The table of test shapes ``(T, B, I, H)`` shared by every parity test.

Odd sizes catch indexing and tiling bugs; 1-sized dimensions catch broadcasting bugs.
"""

from __future__ import annotations

from typing import NamedTuple


class Shape(NamedTuple):
    """One test shape: T time steps, B batch, I input features, H hidden units."""

    T: int
    B: int
    I: int  # noqa: E741 (the dimension legend's name)
    H: int

    @property
    def id(self) -> str:
        return f"T{self.T}-B{self.B}-I{self.I}-H{self.H}"


SHAPES = [
    Shape(1, 1, 1, 1),  # every dimension 1
    Shape(7, 5, 33, 17),  # odd sizes, I and H not multiples of any vector width
    Shape(3, 2, 4, 3),  # small, I > H
    Shape(12, 1, 1, 3),  # longer sequence, single sample, scalar input
    Shape(5, 3, 17, 33),  # H > I
    Shape(1, 4, 3, 5),  # single step
]

SHAPE_IDS = [shape.id for shape in SHAPES]
