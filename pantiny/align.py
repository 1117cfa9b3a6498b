"""Alignment by georeferencing: bring a PAN/MS pair onto nested grids over their overlap.

Real deliveries (Maxar ``.TIL`` tiles, GaoFen PAN and MSS files) have PAN and MS grids that overlap
but do not start at the same corner, and sometimes not even in the same CRS. Fusion needs the MS on a
grid nested in the PAN grid (MS pixel ``j`` covers PAN pixels ``ratio*j .. ratio*j + ratio - 1``).
:func:`align_pair` decides how to get there, cheapest first:

1. ``nested``: the inputs already are (today's path, bit-for-bit, no pixel touched);
2. ``window``: same CRS and pixel sizes, MS corners on PAN pixel corners (e.g. MS shifted by whole
   PAN or MS pixels, or a different extent): the PAN is cropped to the overlap, starting on an MS
   pixel corner, and both are read by window: exact pixels, no resampling;
3. ``warp``: anything else (a fractional shift, another CRS, a slightly different pixel size): GDAL's
   warper (``WarpedVRT``) resamples the MS onto the grid nested in the PAN crop; the PAN is never
   resampled.

The output of fusion is on the PAN crop's grid (its transform is the crop's), so it stays
georeferenced. No overlap, a resolution ratio far from the one asked, a rotated geotransform or one
input without a CRS are clear :class:`~pantiny.errors.GeoreferenceError` s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .errors import GeoreferenceError
from .readers import GeoTIFFRaster, Raster, WarpedRaster, WindowedRaster
from .windows import Window

#: Relative deviation of the measured MS/PAN pixel-size ratio from ``ratio`` that is still resampled
#: onto the nested grid; beyond it the inputs are refused (a 3x product given to a 4x fusion).
RATIO_TOLERANCE = 0.05
#: Offsets closer than this to a whole PAN pixel count as whole (float noise in geotransforms).
_PIXEL_EPS = 1e-3
#: Points sampled along each edge of the MS footprint when it is reprojected into the PAN CRS.
_EDGE_POINTS = 33


@dataclass(frozen=True)
class Alignment:
    """PAN and MS views on nested grids. ``how`` is ``nested``, ``window`` or ``warp``; ``pan_window``
    is the PAN crop ``(row, col, height, width)`` in the PAN file's pixels; ``note`` says what was done."""

    pan: Raster
    ms: Raster
    how: str
    pan_window: Window
    note: str = ""


def align_pair(pan: GeoTIFFRaster, ms: GeoTIFFRaster, ratio: int, *, resampling: str = "cubic") -> Alignment:
    """PAN and MS views on nested grids over their overlap (see the module docstring).

    Args:
        pan: the PAN file (1 band).
        ms: the MS file.
        ratio: the PAN/MS resolution ratio asked for (4 for every sensor of the table).
        resampling: GDAL resampling of the MS in the ``warp`` case (``cubic``, ``bilinear``, ...).
    """
    from .io import check_pair

    pi, mi = pan.info, ms.info
    full = Window(0, 0, pi.height, pi.width)
    if pi.count != 1:
        raise GeoreferenceError(f"PAN file {pi.path} has {pi.count} bands, expected 1")
    try:
        check_pair(pi, mi, ratio)
        offset = _corner_offset(pi, mi)
        if offset is None or max(abs(offset[0]), abs(offset[1])) <= _PIXEL_EPS:
            return Alignment(pan, ms, "nested", full)
        nested_error = GeoreferenceError(f"the MS corner is off the PAN grid by ({offset[0]:.3g}, {offset[1]:.3g}) "
                                         "PAN pixels (column, row)")
    except GeoreferenceError as e:
        nested_error = e
    if pi.crs is None and mi.crs is None and (_is_identity(pi.transform) or _is_identity(mi.transform)):
        raise nested_error  # no georeferencing: only the nested layout can be checked
    if (pi.crs is None) != (mi.crs is None):
        raise GeoreferenceError(f"PAN CRS is {pi.crs or 'unset'} but MS CRS is {mi.crs or 'unset'}: "
                                "both need a CRS to be aligned")
    for name, t in (("PAN", pi.transform), ("MS", mi.transform)):
        if abs(t.b) > 1e-12 or abs(t.d) > 1e-12:
            raise GeoreferenceError(f"the {name} geotransform is rotated; warp it to a north-up grid first")
    same_crs = pi.crs == mi.crs
    (left, right, top, bottom), size = _footprint_in_pan_pixels(pi, mi, same_crs)
    measured = (size[0] / mi.width, size[1] / mi.height)
    # In another CRS pixels need not be square (degrees): the pixel area is what must match.
    checked = measured if same_crs else (math.sqrt(measured[0] * measured[1]),)
    if any(abs(m - ratio) > RATIO_TOLERANCE * ratio for m in checked):
        raise GeoreferenceError(
            f"the MS pixel is {measured[1]:.3g} x {measured[0]:.3g} PAN pixels (rows x columns), not the "
            f"ratio {ratio} asked for; pass the right ratio or check that these files belong together")
    c0, c1 = max(0.0, left), min(float(pi.width), right)
    r0, r1 = max(0.0, top), min(float(pi.height), bottom)
    if c1 - c0 < ratio or r1 - r0 < ratio:
        raise GeoreferenceError(
            f"PAN and MS do not overlap: PAN bounds {_bounds(pi)}, MS bounds {_bounds(mi)}"
            + ("" if same_crs else f" (MS in {mi.crs}, PAN in {pi.crs})"))
    whole = same_crs and all(abs(m - ratio) <= 1e-6 * ratio for m in measured) and all(
        abs(v - round(v)) <= _PIXEL_EPS for v in (left, top))
    if whole:  # MS corners sit on PAN pixel corners: crop both, read exact pixels
        left, top = round(left), round(top)
        kc, kr = math.ceil((c0 - left) / ratio - 1e-9), math.ceil((r0 - top) / ratio - 1e-9)
        col0, row0 = left + kc * ratio, top + kr * ratio
        w, h = int(math.floor(c1 + _PIXEL_EPS)) - col0, int(math.floor(r1 + _PIXEL_EPS)) - row0
        if w < ratio or h < ratio:
            raise GeoreferenceError(f"PAN and MS overlap by less than one MS pixel: PAN bounds {_bounds(pi)}, "
                                    f"MS bounds {_bounds(mi)}")
        pw = Window(row0, col0, h, w)
        ms_view: Raster = WindowedRaster(ms, Window(kr, kc, -(-h // ratio), -(-w // ratio)))
        how = "window"
        what = "MS read by window (exact pixels, no resampling)"
    else:  # resample the MS (never the PAN) onto the grid nested in the PAN crop
        col0, row0 = math.ceil(c0 - _PIXEL_EPS), math.ceil(r0 - _PIXEL_EPS)
        w = (int(math.floor(c1 + _PIXEL_EPS)) - col0) // ratio * ratio
        h = (int(math.floor(r1 + _PIXEL_EPS)) - row0) // ratio * ratio
        if w < ratio or h < ratio:
            raise GeoreferenceError(f"PAN and MS overlap by less than one MS pixel: PAN bounds {_bounds(pi)}, "
                                    f"MS bounds {_bounds(mi)}")
        pw = Window(row0, col0, h, w)
        from rasterio.transform import Affine

        target = pi.transform * Affine.translation(col0, row0) * Affine.scale(ratio)
        ms_view = WarpedRaster(mi.path, crs=pi.crs, transform=target, height=h // ratio, width=w // ratio,
                               resampling=resampling, name=ms.name)
        how = "warp"
        what = f"MS resampled onto the nested grid by GDAL ({resampling})" + (
            "" if same_crs else f", reprojected from {mi.crs} to {pi.crs}")
    pan_view: Raster = pan if tuple(pw) == tuple(full) else WindowedRaster(pan, pw)
    note = (f"PAN and MS grids are not nested ({nested_error}): fusing their overlap, PAN rows {pw.row}..{pw.row + h - 1}, "
            f"columns {pw.col}..{pw.col + w - 1} ({h}x{w} of {pi.height}x{pi.width}); {what}")
    return Alignment(pan_view, ms_view, how, pw, note)


def _is_identity(t) -> bool:
    return t is None or tuple(t)[:6] == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _corner_offset(pi, mi) -> "Tuple[float, float] | None":
    """MS top-left corner in PAN pixels (column, row), or None without georeferencing."""
    if _is_identity(pi.transform) and _is_identity(mi.transform):
        return None
    col, row = ~pi.transform * (mi.transform.c, mi.transform.f)
    return col, row


def _footprint_in_pan_pixels(pi, mi, same_crs: bool) -> Tuple[Tuple[float, float, float, float],
                                                                Tuple[float, float]]:
    """The largest PAN-pixel box ``(left, right, top, bottom)`` inside the MS footprint, and the
    footprint's mean ``(width, height)`` in PAN pixels.

    In the same CRS this is the MS rectangle itself. In another CRS the footprint is a slightly
    curved quadrilateral: each side is sampled and the box keeps inside all of them.
    """
    h, w = mi.height, mi.width
    s = np.linspace(0.0, 1.0, _EDGE_POINTS)
    edges = {"left": (np.zeros_like(s), s * h), "right": (np.full_like(s, w), s * h),
             "top": (s * w, np.zeros_like(s)), "bottom": (s * w, np.full_like(s, h))}
    inv = ~pi.transform
    out = {}
    for name, (cols, rows) in edges.items():
        xs, ys = mi.transform * (cols, rows)
        if not same_crs:
            from rasterio.warp import transform as reproject_points

            try:
                xs, ys = reproject_points(mi.crs, pi.crs, list(xs), list(ys))
            except Exception as e:  # rasterio raises CRSError / PROJ errors with their own types
                raise GeoreferenceError(f"cannot transform the MS footprint from {mi.crs} to {pi.crs}: {e}") from None
        pc, pr = inv * (np.asarray(xs), np.asarray(ys))
        out[name] = (np.asarray(pc), np.asarray(pr))
    left = float(out["left"][0].max())
    right = float(out["right"][0].min())
    top = float(out["top"][1].max())
    bottom = float(out["bottom"][1].min())
    if right < left or bottom < top:  # a flipped axis (south-up): not a north-up grid
        raise GeoreferenceError("the MS footprint is flipped relative to the PAN grid; warp both to north-up grids")
    size = (float(out["right"][0].mean() - out["left"][0].mean()),
            float(out["bottom"][1].mean() - out["top"][1].mean()))
    return (left, right, top, bottom), size


def _bounds(info) -> str:
    t = info.transform
    x0, y0 = t.c, t.f
    x1, y1 = t * (info.width, info.height)
    return f"x {min(x0, x1):.6g}..{max(x0, x1):.6g}, y {min(y0, y1):.6g}..{max(y0, y1):.6g}"
