"""The tiling engine: overlapping tiles, batched inference, blending, strip-wise streaming.

Used by both :func:`pantiny.pansharpen` and the CLI. The engine never sees files or dtypes: a
*source* hands it normalised tiles on the PAN grid, a *fuse* function maps a batch of tiles to
fused tiles, and finished full-width row strips are yielded as soon as no later tile can touch
them, so memory is bounded by ``tile x width`` whatever the scene height.

Two blends:

* ``"crop"``: every pixel belongs to exactly one tile, the one whose centre region holds it (the
  boundary between neighbours is the middle of their overlap, so each pixel keeps >= overlap/2 of
  context on every side). Exact when the fuse function is local within overlap/2: then the tiled
  result equals the whole-image result.
* ``"ramp"``: tiles are weighted by separable raised-cosine ramps over the overlap on each side that
  borders another tile and averaged; hides the differences of fuse functions that are not local
  (e.g. attention computed per tile).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Protocol, Sequence, Tuple

import numpy as np
import torch

from .errors import InputError
from .windows import Window

#: A tile is a :class:`pantiny.windows.Window` on the PAN grid (one window type everywhere).
Tile = Window


class TileSource(Protocol):
    """Anything that yields normalised tiles of a scene on the PAN grid."""

    height: int
    width: int

    def read(self, tile: Tile) -> Tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Return ``(ms_up (C,h,w), pan (1,h,w), valid (h,w) bool)`` for ``tile``, float32 unit range."""


#: ``fuse(ms_up (B,C,h,w), pan (B,1,h,w), tiles) -> (B,C',h,w)``: the batch's tiles are passed along
#: for fuse functions that keep per-tile state (:class:`pantiny.scene_attention.SceneRunner`).
FuseFn = Callable[[torch.Tensor, torch.Tensor, Sequence[Tile]], torch.Tensor]
from .choices import BLENDS  # noqa: E402  (re-exported)


def _split(size: int, tile: int, overlap: int) -> Tuple[List[int], int]:
    """Tile starts along one axis and the common tile length: as few tiles of at most ``tile`` pixels
    as cover ``size`` with >= ``overlap`` pixels shared by neighbours, all of one length and spread
    evenly, so the overlap is not wasted on a last tile pushed back over its neighbour."""
    if size <= tile:
        return [0], size
    n = -(-(size - overlap) // (tile - overlap))
    length = -(-(size + (n - 1) * overlap) // n)
    return [i * (size - length) // (n - 1) for i in range(n)], length


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> List[List[Tile]]:
    """Tiles covering a height x width grid, as rows of tiles of one size (at most ``tile`` square);
    neighbours share >= ``overlap`` pixels."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise InputError(f"need tile > overlap >= 0, got tile={tile}, overlap={overlap}")
    (rows, th), (cols, tw) = _split(height, tile, overlap), _split(width, tile, overlap)
    return [[Tile(r, c, th, tw) for c in cols] for r in rows]


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    """Number of tiles one pass over the scene processes (for progress bars)."""
    return sum(len(r) for r in plan_tiles(height, width, tile, overlap))


def _ramp(n: int, lead: int, trail: int) -> np.ndarray:
    """1-D weights: raised cosine rising over ``lead`` pixels, falling over ``trail``, 1 elsewhere."""
    w = np.ones(n, np.float32)
    for length, sl in ((lead, slice(0, lead)), (trail, slice(n - trail, n))):
        if length:
            x = (np.arange(length, dtype=np.float32) + 0.5) / length
            r = 0.5 - 0.5 * np.cos(np.pi * x)
            w[sl] = np.minimum(w[sl], r if sl.start == 0 else r[::-1])
    return w


def _axis_weights(starts: Sequence[int], n: int, size: int, overlap: int, blend: str) -> List[np.ndarray]:
    """Per-tile 1-D weights along one axis (tiles of length ``n`` at ``starts``)."""
    out = []
    for k, s in enumerate(starts):
        if blend == "ramp":
            out.append(_ramp(n, overlap if k > 0 else 0, overlap if k + 1 < len(starts) else 0))
            continue
        lo = (starts[k - 1] + n + s) // 2 if k > 0 else 0  # middle of the overlap with the previous tile
        hi = (s + n + starts[k + 1]) // 2 if k + 1 < len(starts) else size
        w = np.zeros(n, np.float32)
        w[lo - s:hi - s] = 1
        out.append(w)
    return out


def sample_tiles(height: int, width: int, tile: int, overlap: int, n: int) -> List[Tile]:
    """``n`` tiles spread evenly over the scene (row-major order), or all of them when there are fewer.

    Examples:
        >>> from pantiny.tiling import sample_tiles
        >>> len(sample_tiles(2048, 2048, 512, 64, 4)), len(sample_tiles(600, 600, 512, 64, 16))
        (4, 4)
    """
    rows = plan_tiles(height, width, tile, overlap)
    n_r, n_c = len(rows), len(rows[0])
    if n >= n_r * n_c:
        return [t for row in rows for t in row]
    # a lattice of k_r x k_c <= n tiles with the scene's aspect ratio, corners included
    k_r = max(1, min(n_r, int(round(np.sqrt(n * n_r / n_c)))))
    k_c = max(1, min(n_c, n // k_r))
    pick_r = np.unique(np.round(np.linspace(0, n_r - 1, k_r)).astype(int))
    pick_c = np.unique(np.round(np.linspace(0, n_c - 1, k_c)).astype(int))
    return [rows[i][j] for i in pick_r for j in pick_c]


def iter_batches(source: TileSource, *, tile: int, overlap: int, batch_size: int, blend: str = "ramp",
                 only: Optional[Sequence[Tile]] = None, read: bool = True,
                 ) -> Iterator[Tuple[int, List[Tile], Any, Any, Any, List[np.ndarray]]]:
    """One pass over the scene: ``(tile_row_index, tiles, ms_up (B,C,h,w), pan (B,1,h,w), valid, weights)``.

    Tiles come in row-major order, batches never span two tile rows. ``weights`` are the blend
    weights (h,w) of each tile; with ``blend="crop"`` they are the 0/1 ownership masks. ``only``:
    visit just these tiles of the plan (e.g. :func:`sample_tiles`); the others are not even read.
    ``read=False``: the tiles and weights only (``ms_up``, ``pan`` and ``valid`` are None), for a caller
    that reads the tiles it needs itself.
    """
    if blend not in BLENDS:
        raise InputError(f"blend must be one of {BLENDS}, got {blend!r}")
    rows = plan_tiles(source.height, source.width, tile, overlap)
    row_w = _axis_weights([r[0].row for r in rows], rows[0][0].height, source.height, overlap, blend)
    col_w = _axis_weights([t.col for t in rows[0]], rows[0][0].width, source.width, overlap, blend)
    keep = None if only is None else set(only)
    for k, row_tiles in enumerate(rows):
        cols = [i for i, t in enumerate(row_tiles) if keep is None or t in keep]
        for b in range(0, len(cols), batch_size):
            idx = cols[b:b + batch_size]
            ws = [np.outer(row_w[k], col_w[i]) for i in idx]
            if not read:
                yield k, [row_tiles[i] for i in idx], None, None, None, ws
                continue
            reads = [source.read(row_tiles[i]) for i in idx]
            stack = (lambda ts: ts[0][None]) if len(reads) == 1 else torch.stack  # one tile: a view, no copy
            yield (k, [row_tiles[i] for i in idx], stack([r[0] for r in reads]),
                   stack([r[1] for r in reads]), [r[2] for r in reads], ws)


#: Rows per strip :func:`run_tiled` yields (the GeoTIFF block height pantiny writes).
STRIP_ROWS = 256


def run_tiled(source: TileSource, fuse: FuseFn, *, tile: int = 512, overlap: int = 64, batch_size: int = 4,
              blend: str = "ramp", progress: Optional[Callable[[int], None]] = None,
              ) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
    """Fuse a scene tile by tile; yield ``(row, fused (C,n,W) float32, valid (n,W) bool)`` strips top-down,
    each at most :data:`STRIP_ROWS` rows and within one multiple of it (whole output blocks).

    ``fuse(ms_up (B,C,h,w), pan (B,1,h,w), tiles) -> (B,C',h,w)`` runs on whatever device it chooses and
    returns CPU tensors. ``progress`` is called with the number of tiles done after each batch.
    """
    height, width = source.height, source.width
    rows = plan_tiles(height, width, tile, overlap)
    row_starts = [r[0].row for r in rows] + [height]
    strip_h = rows[0][0].height
    acc: Optional[np.ndarray] = None
    wsum = np.zeros((strip_h, width), np.float32)
    valid = np.zeros((strip_h, width), bool)
    top, current = 0, 0

    def flush(k: int) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
        nonlocal top
        done = row_starts[k + 1] - top if k + 1 < len(rows) else strip_h
        # The finished rows go out in pieces of STRIP_ROWS: each piece's float copy (and what the
        # caller makes of it: DN cast, GeoTIFF blocks) is a fraction of the tile row's.
        # Cut at multiples of STRIP_ROWS of the scene: an output block is then complete in one piece.
        cuts = [0, *range(STRIP_ROWS - top % STRIP_ROWS, done, STRIP_ROWS), done]
        for a, b in zip(cuts[:-1], cuts[1:]):  # done > 0 and the first cut is > 0: no empty piece
            yield top + a, acc[:, a:b] / np.maximum(wsum[a:b], 1e-12), valid[a:b].copy()
        # Shift the accumulator up by the finished rows; the rest still waits for the next tile row.
        for arr in (acc, wsum, valid):
            arr[..., :strip_h - done, :] = arr[..., done:, :]
            arr[..., strip_h - done:, :] = 0
        top += done

    for k, tiles, ms_up, pan, vals, weights in iter_batches(source, tile=tile, overlap=overlap,
                                                            batch_size=batch_size, blend=blend):
        if k != current:
            yield from flush(current)
            current = k
        out = fuse(ms_up, pan, tiles).detach().to("cpu", torch.float32).numpy()
        if acc is None:
            acc = np.zeros((out.shape[1], strip_h, width), np.float32)
        for t, o, v, w in zip(tiles, out, vals, weights):
            r0 = t.row - top
            acc[:, r0:r0 + t.height, t.col:t.col + t.width] += o * w
            wsum[r0:r0 + t.height, t.col:t.col + t.width] += w
            valid[r0:r0 + t.height, t.col:t.col + t.width] = v
        if progress is not None:
            progress(len(tiles))
    yield from flush(current)
