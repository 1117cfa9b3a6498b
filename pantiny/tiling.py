"""The tiling engine: overlapping tiles, batched inference, smooth blending, strip-wise streaming.

Used by both :func:`pantiny.pansharpen` and the CLI. The engine never sees files or dtypes: a
*source* hands it normalised tiles on the PAN grid, a *fuse* function maps a batch of tiles to
fused tiles, and finished full-width row strips are yielded as soon as no later tile can touch
them, so memory is bounded by ``tile x width`` whatever the scene height.

Blending: each tile is weighted by a separable raised-cosine ramp over ``overlap`` pixels on every
side that borders another tile (weight 1 at the image border), and the output is the weighted mean.
The PanTiny attention is global over a tile, so tiles never agree exactly; the ramps hide the
differences instead of leaving seams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Protocol, Tuple

import numpy as np
import torch


@dataclass(frozen=True)
class Tile:
    """A window on the PAN grid, in pixels."""

    row: int
    col: int
    height: int
    width: int


class TileSource(Protocol):
    """Anything that yields normalised tiles of a scene on the PAN grid."""

    height: int
    width: int

    def read(self, tile: Tile) -> Tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Return ``(ms_up (C,h,w), pan (1,h,w), valid (h,w) bool)`` for ``tile``, float32 unit range."""


FuseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _starts(size: int, tile: int, step: int) -> List[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> List[List[Tile]]:
    """Tiles covering a height x width grid, as rows of tiles; neighbours share >= ``overlap`` pixels."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need tile > overlap >= 0, got tile={tile}, overlap={overlap}")
    step = tile - overlap
    th, tw = min(tile, height), min(tile, width)
    return [[Tile(r, c, th, tw) for c in _starts(width, tile, step)] for r in _starts(height, tile, step)]


def _ramp(n: int, lead: int, trail: int) -> np.ndarray:
    """1-D weights: raised cosine rising over ``lead`` pixels, falling over ``trail``, 1 elsewhere."""
    w = np.ones(n, np.float32)
    for length, sl in ((lead, slice(0, lead)), (trail, slice(n - trail, n))):
        if length:
            x = (np.arange(length, dtype=np.float32) + 0.5) / length
            r = 0.5 - 0.5 * np.cos(np.pi * x)
            w[sl] = np.minimum(w[sl], r if sl.start == 0 else r[::-1])
    return w


def _weights(t: Tile, height: int, width: int, overlap: int) -> np.ndarray:
    """Blend weights (h,w) of a tile: ramps only on sides that have a neighbour."""
    top = overlap if t.row > 0 else 0
    left = overlap if t.col > 0 else 0
    bottom = overlap if t.row + t.height < height else 0
    right = overlap if t.col + t.width < width else 0
    return np.outer(_ramp(t.height, top, bottom), _ramp(t.width, left, right))


def run_tiled(source: TileSource, fuse: FuseFn, *, tile: int = 512, overlap: int = 64, batch_size: int = 4,
              progress: Optional[Callable[[int], None]] = None) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
    """Fuse a scene tile by tile; yield ``(row, fused (C,n,W) float32, valid (n,W) bool)`` strips top-down.

    ``fuse(ms_up (B,C,h,w), pan (B,1,h,w)) -> (B,C',h,w)`` runs on whatever device it chooses and
    returns CPU tensors. ``progress`` is called with the number of tiles done after each batch.
    """
    height, width = source.height, source.width
    rows = plan_tiles(height, width, tile, overlap)
    strip_h = rows[0][0].height
    acc: Optional[np.ndarray] = None
    wsum = np.zeros((strip_h, width), np.float32)
    valid = np.zeros((strip_h, width), bool)
    top = 0
    for k, row_tiles in enumerate(rows):
        for b in range(0, len(row_tiles), batch_size):
            batch = row_tiles[b:b + batch_size]
            reads = [source.read(t) for t in batch]
            out = fuse(torch.stack([r[0] for r in reads]), torch.stack([r[1] for r in reads]))
            out = out.detach().to("cpu", torch.float32).numpy()
            if acc is None:
                acc = np.zeros((out.shape[1], strip_h, width), np.float32)
            for t, o, (_, _, v) in zip(batch, out, reads):
                w = _weights(t, height, width, overlap)
                r0, c0 = t.row - top, t.col
                acc[:, r0:r0 + t.height, c0:c0 + t.width] += o * w
                wsum[r0:r0 + t.height, c0:c0 + t.width] += w
                valid[r0:r0 + t.height, c0:c0 + t.width] = v
            if progress is not None:
                progress(len(batch))
        done = rows[k + 1][0].row - top if k + 1 < len(rows) else strip_h
        yield top, acc[:, :done] / wsum[:done], valid[:done].copy()
        # Shift the accumulator up by the finished rows; the rest still waits for the next tile row.
        for a in (acc, wsum, valid):
            a[..., :strip_h - done, :] = a[..., done:, :]
            a[..., strip_h - done:, :] = 0
        top += done


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    """Number of tiles :func:`run_tiled` will process (for progress bars)."""
    return sum(len(r) for r in plan_tiles(height, width, tile, overlap))



