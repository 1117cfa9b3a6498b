"""Row sources: the one place where metric inputs are read (numpy arrays or GeoTIFF files).

A source yields float64 row strips ``(C, r1-r0, W)`` of a (C,H,W) image with an optional band
selection, so that large scenes are scored strip by strip without loading them whole (only one
strip at a time is ever held in float64). rasterio is imported only when a path is given, and then
only the requested rows are read (rasterio windows).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import InputError
from ..nodata import invalid_mask
from ..readers import Raster, open_raster
from ..windows import Window

Input = Union[str, "os.PathLike[str]", np.ndarray, torch.Tensor]


class RowSource:
    """A (C,H,W) image readable by row ranges. ``name`` is used in error messages."""

    name: str
    shape: Tuple[int, int, int]
    dtype: np.dtype

    def _read(self, r0: int, r1: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def rows(self, r0: int, r1: int) -> torch.Tensor:
        """Rows ``[r0, r1)`` as a float64 tensor (C, r1-r0, W); ValueError on NaN/inf."""
        a = np.asarray(self._read(r0, r1), dtype=np.float64)
        if not np.isfinite(a).all():
            raise InputError(f"{self.name} contains NaN or infinite values (rows {r0}..{r1 - 1}); "
                             "mask or fill them before scoring")
        return torch.from_numpy(np.ascontiguousarray(a))

    def gather(self, idx: np.ndarray) -> torch.Tensor:
        """Rows at arbitrary indices (e.g. wrapped or clamped margins), read as contiguous runs."""
        idx = np.asarray(idx, dtype=np.int64)
        cuts = np.flatnonzero(np.diff(idx) != 1) + 1
        parts = []
        for run in np.split(idx, cuts):
            parts.append(self.rows(int(run[0]), int(run[-1]) + 1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


class RasterSource(RowSource):
    """Rows of a :class:`pantiny.readers.Raster` (array or file), optionally a band subset."""

    def __init__(self, raster: Raster, bands: Optional[Sequence[int]] = None) -> None:
        self.raster, self.name, self.dtype = raster, raster.name, raster.dtype
        self.tags = raster.tags
        self.info = getattr(raster, "info", None)  # georeferencing and nodata of files
        self.bands = list(bands) if bands is not None else None
        c = len(self.bands) if self.bands is not None else raster.count
        self.shape = (c, raster.shape[1], raster.shape[2])

    def _read(self, r0: int, r1: int) -> np.ndarray:
        return self.raster.read(Window(r0, 0, r1 - r0, self.shape[2]), bands=self.bands)


def is_file(src: RowSource) -> bool:
    """True when ``src`` reads a raster file (it then has georeferencing and a nodata value)."""
    return isinstance(src, RasterSource) and src.info is not None


def open_source(x: Input, name: str) -> RowSource:
    """Wrap an array / tensor ((C,H,W), or (H,W) for PAN) or a GeoTIFF path as a :class:`RowSource`."""
    if not isinstance(x, (str, os.PathLike)):
        a = x.detach().cpu() if isinstance(x, torch.Tensor) else x
        if isinstance(a, np.ndarray) and a.ndim not in (2, 3):
            raise InputError(f"{name} must be (C,H,W) (or (H,W) for PAN), got shape {a.shape}")
        if isinstance(a, np.ndarray) and a.dtype.kind not in "uif":
            raise InputError(f"{name} has non-numeric dtype {a.dtype}")
    return RasterSource(open_raster(x, name))


def select_bands(src: RowSource, bands: Sequence[int]) -> RowSource:
    """The same source restricted to ``bands`` (0-based, in the given order)."""
    assert isinstance(src, RasterSource)
    return RasterSource(src.raster, bands)


FILL_MODES = ("nearest", "wrap", "mirror")


def _nearest_valid(valid: np.ndarray, axis: int) -> np.ndarray:
    """Index along ``axis`` of the nearest True of ``valid`` (ties: lower index); -1 where the whole
    line is False. ``valid`` is 2-D."""
    v = np.moveaxis(valid, axis, -1)
    n = v.shape[-1]
    idx = np.arange(n)
    before = np.maximum.accumulate(np.where(v, idx, -1), axis=-1)
    after = np.minimum.accumulate(np.where(v, idx, n)[..., ::-1], axis=-1)[..., ::-1]
    use_after = (before < 0) | ((after < n) & (after - idx < idx - before))
    out = np.where(use_after, after, before)
    out[out >= n] = -1
    return np.moveaxis(out, -1, axis)


def extend_index(x: np.ndarray, start: np.ndarray, n: np.ndarray, mode: str) -> np.ndarray:
    """Map indices ``x`` outside ``[start, start + n)`` back inside, as a border rule would:
    "nearest" = replicate (MATLAB 'replicate'), "wrap" = periodic ('circular'), "mirror" =
    symmetric with the edge repeated ('symmetric'). Indices inside are returned unchanged."""
    q = x - start
    if mode == "nearest":
        q = np.clip(q, 0, n - 1)
    elif mode == "wrap":
        q = np.mod(q, n)
    elif mode == "mirror":
        q = np.mod(q, 2 * n)
        q = np.where(q < n, q, 2 * n - 1 - q)
    else:
        raise InputError(f"unknown fill mode {mode!r}; use one of {', '.join(FILL_MODES)}")
    return start + q


class ScoredSource(RowSource):
    """A source as the metrics score it: nodata pixels found, the toolbox's ``th_values`` clipping
    applied, and nodata pixels *filled* so that the filters of the neighbouring valid windows see
    what they would see at the border of the valid area alone.

    * A pixel is nodata when **all** its bands equal ``nodata`` (NaN nodata: all bands NaN), as
      ``pansharpen`` marks them; other NaN/inf values are refused.
    * ``clip`` = (lo, hi) clips the values (toolbox ``th_values``: I_F to [0, 2^L]).
    * Fill, per row then per column: outside the row's valid span (and above/below the image's
      valid rows) by the border rule ``fill`` of the filter that reads this source ("nearest" =
      replicate for the MTF filter, "wrap" = circular for interp23tap, "mirror" = symmetric for
      MATLAB imresize), inside it (holes) from the nearest valid pixel / row. For a rectangular
      valid area this reproduces, exactly, the filter applied to the valid area cut out.

    ``margin`` (rows) must cover the reach of every filter applied to this source. The rows that
    hold valid pixels are found once, by a pass over the nodata mask.
    """

    def __init__(self, src: RowSource, nodata: Optional[float] = None,
                 clip: Optional[Tuple[float, float]] = None, fill: str = "nearest", margin: int = 64) -> None:
        if fill not in FILL_MODES:
            raise InputError(f"unknown fill mode {fill!r}; use one of {', '.join(FILL_MODES)}")
        self.src, self.nodata, self.clip, self.fill, self.margin = src, nodata, clip, fill, int(margin)
        self.name, self.shape, self.dtype = src.name, src.shape, src.dtype
        self.tags = getattr(src, "tags", {})
        self._span: Optional[Tuple[int, int]] = None

    @property
    def masks(self) -> bool:
        """True when this source can have nodata pixels."""
        return self.nodata is not None

    def _values(self, r0: int, r1: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Rows [r0, r1) as float64 (C, R, W), clipped, nodata set to 0, and the (R, W) nodata mask
        (None when there is no nodata value)."""
        a = np.asarray(self.src._read(r0, r1), dtype=np.float64)
        bad = None
        if self.nodata is not None:  # the pipeline's rule: all bands equal nodata (or all NaN)
            bad = invalid_mask(a, float(self.nodata))
            if bad is None:
                bad = np.zeros(a.shape[1:], bool)
            a = np.where(bad[None], 0.0, a)
        if not np.isfinite(a).all():
            raise InputError(f"{self.name} contains NaN or infinite values (rows {r0}..{r1 - 1}); "
                             "mask or fill them before scoring (or declare them as nodata)")
        if self.clip is not None:
            a = np.clip(a, self.clip[0], self.clip[1])
        return a, bad

    def _mask(self, r0: int, r1: int) -> np.ndarray:
        """(r1-r0, W) nodata mask (only called when :attr:`masks`)."""
        return self._values(r0, r1)[1]

    def _scan_rows(self) -> int:
        """Rows per chunk when scanning the mask (about 4 Mi values read at a time)."""
        return max(1, (1 << 22) // max(1, self.shape[0] * self.shape[2]))

    def invalid(self, r0: int, r1: int) -> Optional[torch.Tensor]:
        """(r1-r0, W) bool nodata mask of rows [r0, r1), or None when there is no nodata value."""
        if not self.masks:
            return None
        return torch.from_numpy(self._mask(r0, r1))

    def valid_rows(self) -> Tuple[int, int]:
        """(first, last + 1) of the rows holding a valid pixel; (0, 0) when there is none."""
        if self._span is None:
            h, step = self.shape[1], self._scan_rows()
            rows = np.concatenate([~self._mask(a, min(h, a + step)).all(1) for a in range(0, h, step)])
            hit = np.flatnonzero(rows)
            self._span = (int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, 0)
        return self._span

    def _fill_block(self, q0: int, q1: int) -> np.ndarray:
        """Rows [q0, q1) (inside the valid rows), filled along rows, then holes from nearest rows."""
        a, bad = self._values(q0, q1)
        if bad is None or not bad.any():
            return a
        ok = ~bad
        has = ok.any(1)
        w = a.shape[2]
        c0 = np.argmax(ok, 1)
        c1 = w - np.argmax(ok[:, ::-1], 1)
        near = _nearest_valid(ok, axis=1)
        j = np.arange(w)[None, :]
        col = extend_index(np.broadcast_to(j, bad.shape), c0[:, None], np.maximum(c1 - c0, 1)[:, None], self.fill)
        col = np.take_along_axis(near, col, 1)  # a hole at the mapped place: its nearest valid pixel
        rr = np.arange(a.shape[1])[:, None]
        a = a[:, rr, np.where(has[:, None], col, 0)]
        if not has.all():  # rows without a valid pixel inside the span: nearest filled row
            nr = _nearest_valid(has[:, None], axis=0)[:, 0]
            a = np.where(nr[None, :, None] >= 0, a[:, np.maximum(nr, 0)], 0.0)
        return a

    def _read(self, r0: int, r1: int) -> np.ndarray:
        if not self.masks:
            return self._values(r0, r1)[0]
        v0, v1 = self.valid_rows()
        if v1 == v0:  # nothing valid: any finite value (every window is skipped)
            return np.zeros((self.shape[0], r1 - r0, self.shape[2]))
        rows = np.arange(r0, r1)
        src_rows = extend_index(rows, np.array(v0), np.array(v1 - v0), self.fill)
        out = np.empty((self.shape[0], r1 - r0, self.shape[2]))
        # monotonic runs of source rows, each read once with a margin for the hole fill
        cuts = np.flatnonzero(np.abs(np.diff(src_rows)) != 1) + 1
        for seg_dst, seg in zip(np.split(np.arange(r1 - r0), cuts), np.split(src_rows, cuts)):
            lo, hi = int(seg.min()), int(seg.max()) + 1
            q0, q1 = max(v0, lo - self.margin), min(v1, hi + self.margin)
            out[:, seg_dst] = self._fill_block(q0, q1)[:, seg - q0]
        return out
