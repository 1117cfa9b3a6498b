"""Quick-look PNGs of fused GeoTIFFs: natural colour, decimated, percentile-stretched, 8-bit RGB.

:func:`quicklook` is also ``pantiny.quicklook`` (this module is not called ``quicklook`` so that
importing it can never shadow that top-level function).

Needs numpy and rasterio only (no torch), so a viewer or a batch job can import it cheaply. The
fused file is read decimated (``out_shape``: GDAL uses the COG's overviews when it has them, and
averages over nodata-free pixels), so a quick-look of a large scene never loads it at full size.

Which bands are red, green and blue (:func:`rgb_bands`), first rule that applies:

1. band descriptions naming them (``R``/``Red``, ``G``/``Green``, ``B``/``Blue``, any case: the
   vocabulary of :func:`pantiny.products.band_name`), as
   :func:`pantiny.pansharpen` writes them;
2. the ``SENSOR`` tag's entry of the sensor table: its model bands R, G, B when the file has all the
   sensor's bands, or their ranks when it has 4 (``pansharpen``'s default output of an 8-band sensor);
3. the band-count guess ``pansharpen`` itself makes: B,G,R,NIR for 4 bands, WorldView for 8;
   3 bands are read as R,G,B; anything else is shown grey (band 1).

Each colour band is stretched linearly from its 2nd to its 98th percentile over valid pixels
(:data:`STRETCH`); nodata pixels (all bands equal the nodata value, or NaN) are black.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import io as rio_io
from .errors import InputError
from .nodata import invalid_mask
from .products import band_name
from .sensors import get_sensor, sensor_for_bands

#: Percentiles mapped to 0 and 255.
STRETCH: Tuple[float, float] = (2.0, 98.0)
#: Width in pixels of the white columns between the panels of ``panel=``.
SEPARATOR = 4

PathLike = Union[str, "os.PathLike[str]"]


def rgb_bands(count: int, descriptions: Sequence[Optional[str]] = (),
              tags: Optional[dict] = None) -> Tuple[int, int, int]:
    """0-based indices of the red, green and blue bands of a ``count``-band file (rules: module docstring).

    Examples:
        >>> from pantiny.preview import rgb_bands
        >>> rgb_bands(4, ["Blue", "Green", "Red", "NIR1"])
        (2, 1, 0)
        >>> rgb_bands(4, tags={"SENSOR": "WV3"})  # R,G,B,NIR of 8 bands, kept in file order
        (2, 1, 0)
        >>> rgb_bands(8), rgb_bands(3), rgb_bands(1)
        ((4, 2, 1), (0, 1, 2), (0, 0, 0))
    """
    names = [band_name(d) for d in descriptions]
    found = [next((i for i, n in enumerate(names) if n == colour), None) for colour in ("R", "G", "B")]
    if all(i is not None for i in found):
        return tuple(found)  # type: ignore[return-value]
    sensor = None
    if (tags or {}).get("SENSOR"):
        try:
            sensor = get_sensor(tags["SENSOR"])  # type: ignore[index]
        except InputError:  # someone else's tag: fall through to the band-count guess
            sensor = None
    if sensor is None and count in (4, 8):
        sensor = sensor_for_bands(count)
    if sensor is not None:
        if count == sensor.n_bands:
            return tuple(sensor.model_bands[:3])  # type: ignore[return-value]
        if count == 4:  # the 4 model bands, stored in ascending MS order
            ranks = sorted(sensor.model_bands)
            return tuple(ranks.index(b) for b in sensor.model_bands[:3])  # type: ignore[return-value]
    return (0, 1, 2) if count == 3 else (0, 0, 0)


def fit_size(height: int, width: int, size: int) -> Tuple[int, int]:
    """``(h, w)`` with the aspect ratio of ``height x width`` and the longest side ``min(size, longest)``.

    Examples:
        >>> from pantiny.preview import fit_size
        >>> fit_size(2000, 1000, 1024), fit_size(300, 200, 1024)
        ((1024, 512), (300, 200))
    """
    if size < 1:
        raise InputError(f"quick-look size must be a positive number of pixels, got {size}")
    f = min(1.0, size / max(height, width))
    return max(1, round(height * f)), max(1, round(width * f))


def valid_mask(img: np.ndarray, nodata: Optional[float]) -> np.ndarray:
    """(h,w) True where a pixel of (C,h,w) ``img`` is data: not NaN, and not nodata in all bands."""
    bad = np.isnan(img).any(0) if img.dtype.kind == "f" else np.zeros(img.shape[1:], bool)
    hole = invalid_mask(img, nodata)
    return ~bad if hole is None else ~(bad | hole)


def stretch_limits(img: np.ndarray, valid: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-band :data:`STRETCH` percentiles ``(lo (C,), hi (C,))`` of (C,h,w) ``img`` over ``valid`` pixels."""
    if not valid.any():
        return np.zeros(img.shape[0]), np.ones(img.shape[0])
    px = img[:, valid].astype(np.float64)
    lo, hi = np.percentile(px, STRETCH, axis=1)
    return lo, np.maximum(hi, lo + 1e-9)  # a constant band maps to black, not to NaN


def to_8bit(img: np.ndarray, lo: np.ndarray, hi: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(C,h,w) ``img`` mapped linearly from ``[lo, hi]`` to 0..255 (clipped) as uint8; invalid pixels 0."""
    x = (img.astype(np.float64) - lo[:, None, None]) / (hi - lo)[:, None, None]
    out = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out


def _read(path: PathLike, bands: Sequence[int], hw: Tuple[int, int], resampling: str) -> Tuple[np.ndarray, np.ndarray]:
    """Bands of ``path`` read onto ``hw`` pixels (float64) and their valid mask."""
    info = rio_io.raster_info(path)
    bad = [b for b in bands if not 0 <= b < info.count]
    if bad:
        raise InputError(f"{path} has {info.count} bands; band indices {bad} do not exist")
    img = rio_io.read(path, bands=bands, out_shape=hw, resampling=resampling)
    return img.astype(np.float64), valid_mask(img, info.nodata)


def quicklook(fused_path: PathLike, out_png: PathLike, *, size: int = 1024,
              rgb: Optional[Sequence[int]] = None,
              panel: Optional[Tuple[PathLike, PathLike]] = None) -> Path:
    """Write a natural-colour PNG preview of a fused GeoTIFF (or of any multiband raster).

    Args:
        fused_path: the GeoTIFF (C,H,W) to show.
        out_png: PNG path, written atomically (8-bit RGB, no georeferencing).
        size: longest side of the preview in pixels; smaller images keep their size.
        rgb: 0-based band indices (red, green, blue) of ``fused_path``; default :func:`rgb_bands`.
        panel: ``(pan_path, ms_path)``: a side-by-side comparison PAN | MS | fused, each panel the
            preview's size (the MS upsampled nearest-neighbour, so its pixels show), separated by
            :data:`SEPARATOR` white columns. The MS shares the fused image's stretch (same DN scale,
            so colours compare); the PAN has its own.

    Returns:
        ``out_png`` as a :class:`~pathlib.Path`.
    """
    info = rio_io.raster_info(fused_path)
    bands = tuple(int(b) for b in rgb) if rgb is not None else rgb_bands(info.count, info.descriptions, info.tags)
    if len(bands) != 3:
        raise InputError(f"rgb must name 3 bands (red, green, blue), got {list(bands)}")
    hw = fit_size(info.height, info.width, size)
    img, valid = _read(fused_path, bands, hw, "average")
    lo, hi = stretch_limits(img, valid)
    picture = to_8bit(img, lo, hi, valid)
    if panel is not None:
        pan_path, ms_path = panel
        pan, pan_valid = _read(pan_path, [0], hw, "average")
        pan8 = np.repeat(to_8bit(pan, *stretch_limits(pan, pan_valid), pan_valid), 3, axis=0)
        ms_info = rio_io.raster_info(ms_path)
        ms, ms_valid = _read(ms_path, rgb_bands(ms_info.count, ms_info.descriptions, ms_info.tags), hw, "nearest")
        sep = np.full((3, hw[0], SEPARATOR), 255, np.uint8)
        picture = np.concatenate([pan8, sep, to_8bit(ms, lo, hi, ms_valid), sep, picture], axis=2)
    return rio_io.write_png(out_png, picture)
