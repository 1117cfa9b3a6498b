"""The tile source of the tiling engine: a scene's PAN and MS read by window, normalised (DN /
scale) and the MS upsampled onto the PAN grid, nodata kept out of interpolation (steps *normalise,
upsample* of the pipeline), plus the one statistics pass over the scene the normalisation needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np
import torch

from .errors import InputError
from .nodata import FILL_STEPS, fill_holes, invalid_mask
from .normalize import to_unit
from .resample import upsample
from .tiling import Tile

# MS pixels of context around a tile: bicubic needs 2, the nodata fill FILL_STEPS more.
MS_MARGIN = 2 + FILL_STEPS


def check_finite(x: np.ndarray, what: str, invalid: Optional[np.ndarray]) -> None:
    if x.dtype.kind == "f":
        ok = np.isfinite(x)
        if invalid is not None:
            ok |= invalid[None]
        if not ok.all():
            raise InputError(f"{what} contains NaN or infinite values; mask them as nodata first")


@dataclass
class SceneStats:
    """What one pass over the MS (and a pooled PAN) says about a scene, nodata excluded.

    ``ms_mean``/``ms_std`` per band (DN), ``ms_max`` over bands (DN), ``pan_std`` of the PAN averaged
    onto the MS grid (DN).
    """

    ms_mean: np.ndarray
    ms_std: np.ndarray
    ms_max: float
    pan_std: float


@dataclass
class SceneSource:
    """Normalised, upsampled tiles of a scene for the tiling engine (implements ``TileSource``).

    Nodata never enters interpolation or the network: MS holes are filled from valid neighbours
    (:func:`pantiny.nodata.fill_holes`, local, so tiles fill as the whole image would) before
    upsampling, and PAN holes take the mean of the upsampled MS bands.
    """

    reader: Any
    channels: List[int]  # MS band indices fed through the pipeline, model bands first (model order)
    scale: float
    ratio: int
    upsampling: str
    pan_nodata: Optional[float]
    ms_nodata: Optional[float]
    ms_fill: Optional[np.ndarray] = None  # per-channel DN for pixels deep inside MS holes
    _pan_lr: Optional[Tuple[np.ndarray, np.ndarray]] = None  # cached _pan_overview()

    @property
    def height(self) -> int:
        return self.reader.pan_hw[0]

    @property
    def width(self) -> int:
        return self.reader.pan_hw[1]

    def read(self, t: Tile) -> Tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        r, m = self.ratio, MS_MARGIN
        mh, mw = self.reader.ms_hw
        # MS window covering the tile plus margin, clipped to the image, then edge-padded so that
        # upsampling a window gives exactly what upsampling the whole image gives.
        r0, c0 = t.row // r - m, t.col // r - m
        r1, c1 = -(-(t.row + t.height) // r) + m, -(-(t.col + t.width) // r) + m
        rr0, cc0, rr1, cc1 = max(r0, 0), max(c0, 0), min(r1, mh), min(c1, mw)
        ms = self.reader.read_ms(rr0, cc0, rr1 - rr0, cc1 - cc0, self.channels)
        pan = self.reader.read_pan(t.row, t.col, t.height, t.width)
        ms_bad = invalid_mask(ms, self.ms_nodata)
        pan_bad = invalid_mask(pan, self.pan_nodata)
        check_finite(ms, "MS", ms_bad)
        check_finite(pan, "PAN", pan_bad)
        pad = ((rr0 - r0, r1 - rr1), (cc0 - c0, c1 - cc1))
        oy, ox = t.row - r0 * r, t.col - c0 * r
        valid = np.ones(pan.shape[1:], bool) if pan_bad is None else ~pan_bad
        if ms_bad is not None:
            ms_ok = np.pad(~ms_bad, pad, mode="edge")
            up_ok = ms_ok.repeat(r, 0).repeat(r, 1)
            valid &= up_ok[oy:oy + t.height, ox:ox + t.width]
            fill = self.ms_fill if self.ms_fill is not None else np.zeros(len(self.channels))
            ms = fill_holes(ms, ms_bad, fill)
        if self.upsampling == "cubic":
            ms_up = self._gdal_cubic(ms)  # GDAL's rule at the image edge: the window unpadded
            oy, ox = t.row - rr0 * r, t.col - cc0 * r
        else:
            ms = np.pad(ms, ((0, 0), *pad), mode="edge")
            ms_up = upsample(to_unit(ms, self.scale)[None], r, self.upsampling)[0]
        ms_up = ms_up[:, oy:oy + t.height, ox:ox + t.width].contiguous()
        pan_t = to_unit(pan, self.scale)
        if pan_bad is not None:
            hole = torch.from_numpy(pan_bad)
            pan_t[0][hole] = ms_up[:4].mean(0)[hole]
        return ms_up, pan_t, valid

    def _gdal_cubic(self, ms: np.ndarray) -> torch.Tensor:
        """MS window (C,h,w) in DN -> unit range on the PAN grid, as GDAL resamples a file: cubic
        convolution with the image's own edges (a window touching them is not padded; elsewhere the
        margin keeps tiles exact), integer data rounded and clipped to its type, as GDAL's buffer is."""
        up = upsample(torch.from_numpy(np.ascontiguousarray(ms, np.float32))[None], self.ratio, "cubic")[0]
        if self.reader.dtype.kind in "ui":
            info = np.iinfo(self.reader.dtype)
            up = torch.where(up >= 0, (up + 0.5).floor_(), (up - 0.5).ceil_())  # GDAL: half away from 0
            up = up.clamp_(float(info.min), float(info.max))
        return up.div_(float(self.scale))

    def _strips(self, rows: int) -> Iterator[Tuple[int, int]]:
        mh = self.reader.ms_hw[0]
        for a in range(0, mh, rows):
            yield a, min(mh, a + rows)

    def stats(self) -> SceneStats:
        """One pass over the MS in strips (bounded memory) and the pooled PAN, nodata excluded."""
        mh, mw = self.reader.ms_hw
        c = len(self.channels)
        s1, s2, n, mx = np.zeros(c), np.zeros(c), 0, -np.inf
        for a, b in self._strips(256):
            ms = self.reader.read_ms(a, 0, b - a, mw, self.channels)
            bad = invalid_mask(ms, self.ms_nodata)
            check_finite(ms, "MS", bad)
            v = ms.reshape(c, -1) if bad is None else ms[:, ~bad]
            if v.size:
                v = v.astype(np.float64)
                s1 += v.sum(1)
                s2 += (v * v).sum(1)
                n += v.shape[1]
                mx = max(mx, float(v.max()))
        if n == 0:
            raise InputError("the MS has no valid pixel: every pixel equals the nodata value "
                             f"{self.ms_nodata:g}" if self.ms_nodata is not None else "the MS is empty")
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        pan_lr, ok = self._pan_overview()
        pv = pan_lr[ok]
        return SceneStats(mean, std, mx, float(pv.std()) if pv.size else 0.0)

    def _pan_overview(self) -> Tuple[np.ndarray, np.ndarray]:
        """PAN averaged over each MS pixel's ratio x ratio block, nodata excluded: ``(mean DN (h,w)
        float64, ok (h,w) bool: the block has a valid pixel)``; read in strips (bounded memory), once
        per scene: the scene statistics and the classical fits both use it (MS-grid sized, 1/16 of a
        PAN band's pixels)."""
        if self._pan_lr is None:
            self._pan_lr = self._read_pan_overview()
        return self._pan_lr

    def _read_pan_overview(self) -> Tuple[np.ndarray, np.ndarray]:
        r = self.ratio
        mh, mw = self.reader.ms_hw
        ph, pw = self.reader.pan_hw
        mean = np.zeros((mh, mw), np.float64)  # valid PAN mean per MS pixel (DN)
        ok = np.zeros((mh, mw), bool)
        for a, b in self._strips(max(1, 512 // r)):  # 512 PAN rows at a time
            pan = self.reader.read_pan(a * r, 0, min(ph, b * r) - a * r, pw)[0].astype(np.float64)
            bad = invalid_mask(pan[None], self.pan_nodata)
            check_finite(pan[None], "PAN", bad)
            good = np.ones(pan.shape, bool) if bad is None else ~bad
            hh, ww = (b - a) * r, mw * r
            vals = np.zeros((hh, ww))
            cnt = np.zeros((hh, ww))
            vals[:pan.shape[0], :pan.shape[1]] = np.where(good, pan, 0.0)
            cnt[:pan.shape[0], :pan.shape[1]] = good
            sv = vals.reshape(b - a, r, mw, r).sum((1, 3))
            sc = cnt.reshape(b - a, r, mw, r).sum((1, 3))
            ok[a:b] = sc > 0
            mean[a:b] = np.where(sc > 0, sv / np.maximum(sc, 1), 0.0)
        return mean, ok

    def overview(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Whole scene at MS resolution: ``(ms (C,h,w), pan averaged onto the MS grid (1,h,w))``, unit
        range. Pixels that are nodata in either (or whose PAN block is all nodata) are 0 in both, which
        the classical fits skip."""
        mh, mw = self.reader.ms_hw
        ms = self.reader.read_ms(0, 0, mh, mw, self.channels)
        bad = invalid_mask(ms, self.ms_nodata)
        pan_lr, ok = self._pan_overview()
        if bad is not None:
            ok = ok & ~bad  # not in place: the overview is cached
        ms_u = to_unit(ms, self.scale)
        pan_u = torch.from_numpy((pan_lr / self.scale).astype(np.float32))[None]
        if not ok.all():
            hole = torch.from_numpy(~ok)
            ms_u[:, hole] = 0.0
            pan_u[:, hole] = 0.0
        return ms_u, pan_u
