"""The one window type: a rectangle of a raster's pixel grid (no I/O, no dependencies)."""

from __future__ import annotations

from typing import NamedTuple


class Window(NamedTuple):
    """``(row, col, height, width)`` in pixels of one raster's own grid.

    A ``NamedTuple``, so code that unpacks ``r, c, h, w = window`` or passes plain 4-tuples keeps
    working. Used for file reads (:mod:`pantiny.readers`, :mod:`pantiny.io`), tiles of the tiling
    engine (``pantiny.tiling.Tile`` is this type) and metric strips.
    """

    row: int
    col: int
    height: int
    width: int

