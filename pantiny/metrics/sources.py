"""Row sources: the one place where metric inputs are read (numpy arrays or GeoTIFF files).

A source yields float64 row strips ``(C, r1-r0, W)`` of a (C,H,W) image with an optional band
selection, so that large scenes are scored strip by strip without loading them whole (only one
strip at a time is ever held in float64). rasterio is imported only when a path is given, and then
only the requested rows are read (rasterio windows).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

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
            raise ValueError(f"{self.name} contains NaN or infinite values (rows {r0}..{r1 - 1}); "
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


class ArraySource(RowSource):
    def __init__(self, arr: np.ndarray, name: str, bands: Optional[Sequence[int]] = None) -> None:
        if arr.ndim == 2:
            arr = arr[None]
        self.arr, self.name, self.dtype = arr, name, np.dtype(arr.dtype)
        self.bands = list(bands) if bands is not None else None
        c = len(self.bands) if self.bands is not None else arr.shape[0]
        self.shape = (c, arr.shape[1], arr.shape[2])

    def _read(self, r0: int, r1: int) -> np.ndarray:
        a = self.arr[:, r0:r1]
        return a[self.bands] if self.bands is not None else a


class TiffSource(RowSource):
    def __init__(self, path: "str | os.PathLike[str]", name: str, bands: Optional[Sequence[int]] = None) -> None:
        from ..io import raster_info

        info = raster_info(path)  # FileNotFoundError / ValueError with a clear message
        self.path, self.name, self.dtype, self.tags = str(path), name, info.dtype, info.tags
        self.bands = list(bands) if bands is not None else None
        c = len(self.bands) if self.bands is not None else info.count
        self.shape = (c, info.height, info.width)

    def _read(self, r0: int, r1: int) -> np.ndarray:
        from ..io import read

        return read(self.path, window=(r0, 0, r1 - r0, self.shape[2]), bands=self.bands)


def open_source(x: Input, name: str) -> RowSource:
    """Wrap an array / tensor ((C,H,W), or (H,W) for PAN) or a GeoTIFF path as a :class:`RowSource`."""
    if isinstance(x, (str, os.PathLike)):
        return TiffSource(Path(x), name)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        x = x.numpy()
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, a torch tensor or a GeoTIFF path, got {type(x).__name__}")
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must be (C,H,W) (or (H,W) for PAN), got shape {x.shape}")
    if x.dtype.kind not in "uif":
        raise ValueError(f"{name} has non-numeric dtype {x.dtype}")
    return ArraySource(x, name)


def select_bands(src: RowSource, bands: Sequence[int]) -> RowSource:
    """The same source restricted to ``bands`` (0-based, in the given order)."""
    if isinstance(src, ArraySource):
        return ArraySource(src.arr, src.name, bands)
    assert isinstance(src, TiffSource)
    return TiffSource(src.path, src.name, bands)
