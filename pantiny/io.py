"""GeoTIFF I/O with rasterio: georeferencing checks, windowed reads, atomic tiled writes.

Nothing here knows about models or normalisation; it moves digital numbers between files and
(C,H,W) numpy arrays. Windows are ``(row, col, height, width)`` in the file's own pixel grid.
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ._atomic import atomic_path
from .errors import GeoreferenceError, InputError

from .windows import Window  # noqa: E402  (re-exported: ``(row, col, height, width)``)


@dataclass(frozen=True)
class RasterInfo:
    """What a GeoTIFF says about itself (no pixels read)."""

    path: str
    count: int
    height: int
    width: int
    dtype: np.dtype
    nodata: Optional[float]
    crs: Any
    transform: Any
    tags: Dict[str, str]

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (self.count, self.height, self.width)


def _rasterio():
    import rasterio  # imported at the edge only: the array API does not need GDAL

    return rasterio


def raster_info(path: "str | os.PathLike[str]") -> RasterInfo:
    """Open ``path`` and describe it; clear errors for a missing or unreadable file."""
    rio = _rasterio()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such raster file: {p}")
    try:
        with rio.open(p) as ds:
            dtypes = set(ds.dtypes)
            if len(dtypes) != 1:
                raise InputError(f"{p}: bands have mixed data types {sorted(dtypes)}")
            return RasterInfo(str(p), ds.count, ds.height, ds.width, np.dtype(ds.dtypes[0]), ds.nodata,
                              ds.crs, ds.transform, dict(ds.tags()))
    except rio.errors.RasterioIOError as e:
        raise InputError(f"cannot read {p} as a raster: {_gdal_cause(e)}") from None


def read(path: "str | os.PathLike[str]", window: Optional[Window] = None,
         bands: Optional[Sequence[int]] = None, out_shape: Optional[Tuple[int, int]] = None,
         resampling: str = "nearest") -> np.ndarray:
    """Read (C,h,w) digital numbers. ``bands`` are 0-based; ``out_shape`` resamples on read (overviews)."""
    rio = _rasterio()
    from rasterio.enums import Resampling
    from rasterio.windows import Window as RioWindow

    try:
        with rio.open(path) as ds:
            idx = [b + 1 for b in bands] if bands is not None else list(range(1, ds.count + 1))
            win = RioWindow(window[1], window[0], window[3], window[2]) if window is not None else None
            kw: Dict[str, Any] = {}
            if out_shape is not None:
                kw = {"out_shape": (len(idx), *out_shape), "resampling": Resampling[resampling]}
            return ds.read(idx, window=win, **kw)
    except rio.errors.RasterioIOError as e:
        where = f"window (row, col, h, w) = {tuple(window)}" if window is not None else "the whole raster"
        cause = _gdal_cause(e)
        raise InputError(f"cannot read {where} of {path}: the file is truncated or corrupt ({cause})") from None


def _gdal_cause(e: BaseException) -> str:
    """The most specific message of a rasterio/GDAL error chain ("Read failed. See previous
    exception" alone names nothing)."""
    msgs = []
    while e is not None:
        msgs.append(str(e).strip())
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    useful = [m for m in msgs if m and "see previous exception" not in m.lower()]
    return (useful or msgs or ["unknown GDAL error"])[-1].splitlines()[0]


def check_pair(pan: RasterInfo, ms: RasterInfo, ratio: int) -> None:
    """Raise ``ValueError`` unless PAN and MS are on nested grids of the same CRS and extent.

    Accepted: same CRS (or both without one), same top-left corner within half a PAN pixel, MS pixel
    size = ratio x PAN pixel size, and ``ms size == ceil(pan size / ratio)`` on both axes.
    """
    if pan.count != 1:
        raise GeoreferenceError(f"PAN file {pan.path} has {pan.count} bands, expected 1")
    if (pan.crs is None) != (ms.crs is None) or (pan.crs is not None and pan.crs != ms.crs):
        raise GeoreferenceError(f"CRS mismatch: PAN is {pan.crs or 'unset'}, MS is {ms.crs or 'unset'}; "
                         "reproject one onto the other first (e.g. gdalwarp)")
    tp, tm = pan.transform, ms.transform
    if abs(tp.b) > 1e-12 or abs(tp.d) > 1e-12 or abs(tm.b) > 1e-12 or abs(tm.d) > 1e-12:
        raise GeoreferenceError("rotated geotransforms are not supported; warp to a north-up grid first")
    for axis, ap, am in (("x", tp.a, tm.a), ("y", tp.e, tm.e)):
        if not math.isclose(am, ap * ratio, rel_tol=1e-6):
            raise GeoreferenceError(f"MS pixel size along {axis} ({am:g}) is not {ratio} x the PAN pixel size "
                             f"({ap:g}); pass the right ratio or resample the inputs")
    if abs(tp.c - tm.c) > abs(tp.a) / 2 or abs(tp.f - tm.f) > abs(tp.e) / 2:
        raise GeoreferenceError(f"PAN and MS do not cover the same extent: top-left corners ({tp.c:g}, {tp.f:g}) "
                         f"and ({tm.c:g}, {tm.f:g}) differ by more than half a PAN pixel")
    check_sizes((pan.height, pan.width), (ms.height, ms.width), ratio)


def check_sizes(pan_hw: Tuple[int, int], ms_hw: Tuple[int, int], ratio: int) -> None:
    """``ValueError`` unless ``ms == ceil(pan / ratio)`` on both axes (PAN may be cropped < ratio px)."""
    want = (math.ceil(pan_hw[0] / ratio), math.ceil(pan_hw[1] / ratio))
    if tuple(ms_hw) != want:
        raise GeoreferenceError(f"size mismatch: PAN is {pan_hw[0]}x{pan_hw[1]} and MS is {ms_hw[0]}x{ms_hw[1]}, "
                         f"but with ratio {ratio} the MS should be {want[0]}x{want[1]}")


class AtomicGeoTIFFWriter:
    """Write a tiled, compressed GeoTIFF window by window to a temporary file, renamed on success.

    Use as a context manager; on an exception the temporary file is removed and ``path`` untouched.
    Refuses to write over any path in ``protect`` (the inputs). While writing, an exclusive lock on
    ``.<name>.lock`` makes a second process writing the same output fail at once
    (:class:`~pantiny.errors.OutputLockedError`) instead of both "succeeding" with the last rename winning.
    The file gets the usual permissions (``0o666 & ~umask``).
    """

    def __init__(self, path: "str | os.PathLike[str]", *, count: int, height: int, width: int,
                 dtype: np.dtype, crs: Any, transform: Any, nodata: Optional[float] = None,
                 protect: Sequence["str | os.PathLike[str]"] = (), tags: Optional[Dict[str, str]] = None,
                 compress: str = "deflate", overwrite: bool = True) -> None:
        self.path = Path(path)
        for p in protect:
            if Path(p).exists() and self.path.exists() and os.path.samefile(p, self.path):
                raise InputError(f"refusing to write the output over an input file: {self.path}")
        self.overwrite = overwrite  # the folder and an existing output are checked by atomic_path
        block = 256 if min(height, width) >= 256 else 16 * max(1, min(height, width) // 16)
        self.profile = dict(driver="GTiff", count=count, height=height, width=width, dtype=np.dtype(dtype).name,
                            crs=crs, transform=transform, nodata=nodata, compress=compress,
                            tiled=min(height, width) >= 16, blockxsize=block, blockysize=block,
                            BIGTIFF="IF_SAFER")
        if np.dtype(dtype).kind in "ui" and compress == "deflate":
            self.profile["predictor"] = 2
        if not self.profile["tiled"]:
            for k in ("tiled", "blockxsize", "blockysize"):
                self.profile.pop(k)
        self.tags = tags or {}
        self._ds = None
        self._tmp: Optional[str] = None

    def __enter__(self) -> "AtomicGeoTIFFWriter":
        rio = _rasterio()
        self._stack = ExitStack()
        try:
            self._tmp = self._stack.enter_context(
                atomic_path(self.path, overwrite=self.overwrite, lock=True, suffix=".tmp.tif"))
            self._ds = rio.open(self._tmp, "w", **self.profile)
            if self.tags:
                self._ds.update_tags(**self.tags)
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, row: int, data: np.ndarray) -> None:
        """Write full-width rows ``data`` (C,n,W) starting at ``row``."""
        from rasterio.windows import Window as RioWindow

        self._ds.write(data, window=RioWindow(0, row, data.shape[2], data.shape[1]))

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._ds.close()
        finally:
            self._stack.__exit__(exc_type, exc, tb)
