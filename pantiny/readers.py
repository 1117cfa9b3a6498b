"""The reader layer: one interface over the rasters pantiny reads (arrays and GeoTIFFs).

Fusion (:func:`pantiny.pansharpen`) and the metrics (:mod:`pantiny.metrics`) read pixels only through
a :class:`Raster`: ``read(window, bands)`` returns digital numbers ``(C,h,w)`` in the raster's own
dtype, never modifying the source. This is where georeferenced alignment (a PAN-grid view of an MS
raster), vendor metadata and xarray/Dask backends plug in: each is one more ``Raster``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import InputError
from .windows import Window

PathLike = Union[str, "os.PathLike[str]"]
# Error threshold of GDAL's approximate transformer, in pixels (0 itself is refused by rasterio's
# WarpedVRT): small enough that every window warps as the whole raster would.
_EXACT = 1e-9


class Raster:
    """A (C,H,W) raster readable by window. ``name`` is used in error messages."""

    name: str
    shape: Tuple[int, int, int]
    dtype: np.dtype
    nodata: Optional[float] = None
    tags: Dict[str, str] = {}
    crs: Any = None
    transform: Any = None

    @property
    def count(self) -> int:
        return self.shape[0]

    @property
    def hw(self) -> Tuple[int, int]:
        return self.shape[1], self.shape[2]

    def read(self, window: Optional[Window] = None, bands: Optional[Sequence[int]] = None) -> np.ndarray:
        """Digital numbers ``(C',h,w)`` of ``window`` (None: everything), bands 0-based (None: all)."""
        raise NotImplementedError  # pragma: no cover - interface


class ArrayRaster(Raster):
    """A numpy (C,H,W) (or (H,W)) array; reads are views or fancy-index copies, never writes."""

    def __init__(self, arr: np.ndarray, name: str = "array", nodata: Optional[float] = None) -> None:
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise InputError(f"{name} must be (C,H,W) or (H,W), got shape {arr.shape}")
        self.arr, self.name, self.nodata = arr, name, nodata
        self.shape = tuple(arr.shape)  # type: ignore[assignment]
        self.dtype = np.dtype(arr.dtype)
        self.tags = {}

    def read(self, window: Optional[Window] = None, bands: Optional[Sequence[int]] = None) -> np.ndarray:
        a = self.arr if window is None else self.arr[:, window[0]:window[0] + window[2],
                                                     window[1]:window[1] + window[3]]
        return a if bands is None else a[list(bands)]


class GeoTIFFRaster(Raster):
    """A raster file read with rasterio/GDAL (GeoTIFF, COG, VRT, anything GDAL opens), window by window."""

    def __init__(self, path: PathLike, name: Optional[str] = None) -> None:
        from .io import raster_info

        self.info = raster_info(path)  # clear errors for a missing or unreadable file
        self.path = str(path)
        self.name = name or Path(path).name
        self.shape = self.info.shape
        self.dtype = self.info.dtype
        self.nodata = self.info.nodata
        self.tags = self.info.tags
        self.crs, self.transform = self.info.crs, self.info.transform

    def read(self, window: Optional[Window] = None, bands: Optional[Sequence[int]] = None) -> np.ndarray:
        from .io import read

        return read(self.path, window, bands=bands)


class WindowedRaster(Raster):
    """A window of another raster, seen as a raster of its own (its georeferencing is the window's).

    Alignment (:mod:`pantiny.align`) uses it for the overlap of PAN and MS: reads are exact window
    reads of the base raster, no resampling.
    """

    def __init__(self, base: Raster, window: Window, name: Optional[str] = None) -> None:
        self.base, self.window = base, Window(*window)
        self.name = name or base.name
        self.shape = (base.count, self.window.height, self.window.width)
        self.dtype, self.nodata, self.tags, self.crs = base.dtype, base.nodata, base.tags, base.crs
        self.transform = None
        if base.transform is not None:
            from rasterio.windows import Window as RioWindow
            from rasterio.windows import transform as window_transform

            w = self.window
            self.transform = window_transform(RioWindow(w.col, w.row, w.width, w.height), base.transform)
        self.info = _info_like(self, getattr(base, "info", None))

    def read(self, window: Optional[Window] = None, bands: Optional[Sequence[int]] = None) -> np.ndarray:
        w = self.window
        if window is None:
            return self.base.read(w, bands)
        return self.base.read(Window(w.row + window[0], w.col + window[1], window[2], window[3]), bands)


class WarpedRaster(Raster):
    """A raster file resampled by GDAL's warper onto another grid (``rasterio.vrt.WarpedVRT``).

    ``crs``/``transform``/``height``/``width`` give the target grid. Source nodata pixels are left out
    of the resampling kernels and stay nodata. A near-zero transformer tolerance: each window gives
    the pixels a whole-raster warp would, so tiles do not show.
    """

    def __init__(self, path: PathLike, *, crs: Any, transform: Any, height: int, width: int,
                 resampling: str = "cubic", name: Optional[str] = None) -> None:
        from .io import raster_info

        src = raster_info(path)
        self.path, self.name = str(path), name or Path(path).name
        self.shape = (src.count, int(height), int(width))
        self.dtype, self.nodata, self.tags = src.dtype, src.nodata, src.tags
        self.crs, self.transform, self.resampling = crs, transform, resampling
        self.info = _info_like(self, src)

    def read(self, window: Optional[Window] = None, bands: Optional[Sequence[int]] = None) -> np.ndarray:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT
        from rasterio.windows import Window as RioWindow

        idx = [b + 1 for b in bands] if bands is not None else list(range(1, self.count + 1))
        win = None if window is None else RioWindow(window[1], window[0], window[3], window[2])
        kw: Dict[str, Any] = {}
        if self.nodata is not None:
            kw = {"src_nodata": self.nodata, "nodata": self.nodata}
        try:
            with rasterio.open(self.path) as src, WarpedVRT(
                    src, crs=self.crs, transform=self.transform, height=self.shape[1], width=self.shape[2],
                    resampling=Resampling[self.resampling], tolerance=_EXACT, **kw) as vrt:
                return vrt.read(idx, window=win)
        except rasterio.errors.RasterioIOError as e:
            from .io import _gdal_cause

            raise InputError(f"cannot warp {self.path} onto the PAN grid: {_gdal_cause(e)}") from None


class DataArrayRaster(Raster):
    """An xarray DataArray ``(band, y, x)`` (or ``(y, x)``), eager or Dask-backed; reads compute
    only the requested window. Georeferencing and nodata come from rioxarray's ``.rio`` accessor
    when it is installed and the array carries them."""

    def __init__(self, da: Any, name: str = "array") -> None:
        if da.ndim == 2:
            da = da.expand_dims("band")
        if da.ndim != 3:
            raise InputError(f"{name} must be a (band, y, x) or (y, x) DataArray, got dims {da.dims}")
        self.da, self.name = da, name
        self.shape = tuple(int(n) for n in da.shape)  # type: ignore[assignment]
        self.dtype = np.dtype(da.dtype)
        if self.dtype.kind not in "uif":
            raise InputError(f"{name} has unsupported dtype {self.dtype}; use integer or float data")
        self.tags = {str(k): str(v) for k, v in da.attrs.items() if isinstance(v, (str, int, float))}
        # the file it was opened from (rioxarray keeps it): vendor sidecars (.IMD, XML) are read there
        source = da.encoding.get("source")
        self.path = str(source) if source and os.path.isfile(str(source)) else None
        names = da.attrs.get("long_name")  # rioxarray: the band descriptions
        self.descriptions = (tuple(str(n) for n in names) if isinstance(names, (tuple, list))
                             and len(names) == self.shape[0] else None)
        self.nodata, self.crs, self.transform = da.attrs.get("nodata", da.attrs.get("_FillValue")), None, None
        try:
            rio = da.rio  # registered by `import rioxarray`
            self.crs = rio.crs
            self.transform = rio.transform() if self.crs is not None else None
            if rio.nodata is not None:
                self.nodata = rio.nodata
        except (AttributeError, ImportError):
            pass
        if self.nodata is not None:
            self.nodata = float(self.nodata)
        self.info = _info_like(self, None)

    def read(self, window: Optional[Window] = None, bands: Optional[Sequence[int]] = None) -> np.ndarray:
        a = self.da.data
        if bands is not None:
            a = a[list(bands)]
        if window is not None:
            a = a[:, window[0]:window[0] + window[2], window[1]:window[1] + window[3]]
        return np.asarray(a.compute() if hasattr(a, "compute") else a)


class OffsetRaster(Raster):
    """The pixels ``arr`` (C,h,w) of a larger raster of ``shape``, starting at ``(row, col)``: reads
    use the larger raster's coordinates and must fall inside ``arr`` (a block of a distributed job)."""

    def __init__(self, arr: np.ndarray, row: int, col: int, shape: Tuple[int, int, int], name: str = "block",
                 nodata: Optional[float] = None) -> None:
        self.arr, self.row, self.col, self.name, self.nodata = arr, int(row), int(col), name, nodata
        self.shape, self.dtype, self.tags = tuple(shape), np.dtype(arr.dtype), {}  # type: ignore[assignment]

    def read(self, window: Optional[Window] = None, bands: Optional[Sequence[int]] = None) -> np.ndarray:
        r, c, h, w = window if window is not None else (0, 0, self.shape[1], self.shape[2])
        r, c = r - self.row, c - self.col
        if r < 0 or c < 0 or r + h > self.arr.shape[1] or c + w > self.arr.shape[2]:
            raise InputError(f"{self.name}: window {tuple(window or ())} is outside the block held "  # pragma: no cover
                             f"(rows {self.row}.., columns {self.col}.., {self.arr.shape[1:]})")
        a = self.arr[:, r:r + h, c:c + w]
        return a if bands is None else a[list(bands)]


def _info_like(r: Raster, base: Any) -> Any:
    """A :class:`pantiny.io.RasterInfo` describing the view ``r`` (path of the underlying file)."""
    from .io import RasterInfo

    path = getattr(base, "path", r.name)
    c, h, w = r.shape
    return RasterInfo(path, c, h, w, r.dtype, r.nodata, r.crs, r.transform, r.tags)


def open_raster(x: Any, name: str) -> Raster:
    """A :class:`Raster` for a numpy array, a torch tensor or a file path."""
    if isinstance(x, Raster):
        return x
    if isinstance(x, (str, os.PathLike)):
        return GeoTIFFRaster(x, name)
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            if x.dtype in (torch.bfloat16, torch.float16):
                x = x.float()
            x = x.numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if not isinstance(x, np.ndarray):
        raise InputError(f"{name} must be a numpy array, a torch tensor or a raster file path, got {type(x).__name__}")
    if x.dtype.kind not in "uif":
        raise InputError(f"{name} has unsupported dtype {x.dtype}; use integer or float data")
    return ArrayRaster(x, name)


class PairReader:
    """PAN and MS :class:`~pantiny.readers.Raster` s of one scene, read by window."""

    def __init__(self, pan: Raster, ms: Raster) -> None:
        self.pan, self.ms = pan, ms
        self.dtype = ms.dtype
        self.n_bands = ms.count
        self.pan_hw = pan.hw
        self.ms_hw = ms.hw

    def read_pan(self, r: int, c: int, h: int, w: int) -> np.ndarray:
        return self.pan.read(Window(r, c, h, w))

    def read_ms(self, r: int, c: int, h: int, w: int, bands: Sequence[int]) -> np.ndarray:
        return self.ms.read(Window(r, c, h, w), bands=bands)
