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
