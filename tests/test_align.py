"""Alignment by georeferencing (issue #12): PAN and MS that overlap but are not nested fuse to the same
pixels as a pair the user pre-aligned by hand, over the overlap."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine, from_origin
from rasterio.warp import Resampling, reproject

import pantiny
from pantiny.align import align_pair
from pantiny.errors import GeoreferenceError
from pantiny.readers import GeoTIFFRaster

CRS = "EPSG:32633"
X0, Y0, RES = 500000.0, 4000000.0, 0.5  # PAN origin and pixel size (m)


def _scene(h=160, w=192, seed=0):
    """A smooth 11-bit PAN (1,h,w) and a 4-band MS (4,h/4,w/4) correlated with it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / 16.0
    base = 900 + 300 * np.sin(xx) * np.cos(yy * 0.7) + 40 * rng.standard_normal((h, w))
    pan = np.clip(base, 0, 2047).astype(np.uint16)[None]
    lr = base.reshape(h // 4, 4, w // 4, 4).mean((1, 3))
    ms = np.stack([lr * g + o for g, o in ((0.5, 100), (0.6, 80), (0.7, 60), (0.9, 200))])
    return pan, np.clip(ms, 0, 2047).astype(np.uint16)


def _write(path, arr, transform, crs=CRS, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", count=arr.shape[0], height=arr.shape[1], width=arr.shape[2],
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(arr)
    return str(path)


def _pan_tf(col=0, row=0):
    return from_origin(X0 + col * RES, Y0 - row * RES, RES, RES)


def _fuse(pan, ms, out, **kw):
    kw.setdefault("method", "brovey")
    pantiny.pansharpen(pan, ms, sensor="qb", out=out, **kw)
    with rasterio.open(out) as ds:
        return ds.read(), ds.transform


def test_nested_pair_keeps_the_nested_path(tmp_path):
    pan, ms = _scene()
    p = _write(tmp_path / "p.tif", pan, _pan_tf())
    m = _write(tmp_path / "m.tif", ms, from_origin(X0, Y0, 4 * RES, 4 * RES))
    al = align_pair(GeoTIFFRaster(p), GeoTIFFRaster(m), 4)
    assert al.how == "nested" and al.note == ""
    fused, tf = _fuse(p, m, tmp_path / "f.tif")
    np.testing.assert_array_equal(fused, pantiny.pansharpen(pan, ms, sensor="qb", method="brovey"))
    assert tf == _pan_tf()


@pytest.mark.parametrize("ms_cols, ms_rows", [((1, None), (0, None)),   # MS starts 1 MS pixel right
                                              ((0, -1), (2, -1)),      # smaller extent on every side
                                              ])
def test_ms_shifted_by_whole_ms_pixels_reads_exact_pixels(tmp_path, ms_cols, ms_rows):
    pan, ms = _scene()
    c0, c1 = ms_cols
    r0, r1 = ms_rows
    sub = ms[:, r0:r1, c0:c1]
    p = _write(tmp_path / "p.tif", pan, _pan_tf())
    m = _write(tmp_path / "m.tif", np.ascontiguousarray(sub),
               from_origin(X0 + 4 * c0 * RES, Y0 - 4 * r0 * RES, 4 * RES, 4 * RES))
    al = align_pair(GeoTIFFRaster(p), GeoTIFFRaster(m), 4)
    assert al.how == "window"
    assert (al.pan_window.row, al.pan_window.col) == (4 * r0, 4 * c0)
    assert al.pan_window.height == 4 * sub.shape[1] and al.pan_window.width == 4 * sub.shape[2]
    fused, tf = _fuse(p, m, tmp_path / "f.tif")
    # The hand-aligned pair: PAN cropped to the MS footprint, MS as it is.
    by_hand = pantiny.pansharpen(pan[:, 4 * r0:4 * r0 + 4 * sub.shape[1], 4 * c0:4 * c0 + 4 * sub.shape[2]],
                                 sub, sensor="qb", method="brovey")
    np.testing.assert_array_equal(fused, by_hand)
    assert tf == _pan_tf(4 * c0, 4 * r0)  # the output stays georeferenced on the PAN crop


def test_pan_inside_a_larger_ms_with_an_offset_of_whole_pan_pixels(tmp_path):
    """MS corners 2 PAN pixels left of/above the PAN's: the PAN crop starts on the next MS corner."""
    pan, ms = _scene()
    p = _write(tmp_path / "p.tif", pan, _pan_tf())
    m = _write(tmp_path / "m.tif", ms, from_origin(X0 - 2 * RES, Y0 + 2 * RES, 4 * RES, 4 * RES))
    al = align_pair(GeoTIFFRaster(p), GeoTIFFRaster(m), 4)
    assert al.how == "window" and (al.pan_window.row, al.pan_window.col) == (2, 2)
    fused, tf = _fuse(p, m, tmp_path / "f.tif")
    h, w = al.pan_window.height, al.pan_window.width
    by_hand = pantiny.pansharpen(pan[:, 2:2 + h, 2:2 + w], ms[:, 1:1 + -(-h // 4), 1:1 + -(-w // 4)],
                                 sensor="qb", method="brovey")
    np.testing.assert_array_equal(fused, by_hand)


def _by_hand_warp(ms_path, pan, al, tmp_path, resampling=Resampling.cubic):
    """What a user does with gdalwarp: MS onto the grid nested in the PAN crop, PAN cropped."""
    pw = al.pan_window
    dst_tf = _pan_tf(pw.col, pw.row) * Affine.scale(4)
    with rasterio.open(ms_path) as src:
        dst = np.zeros((src.count, pw.height // 4, pw.width // 4), src.dtypes[0])
        reproject(rasterio.band(src, list(range(1, src.count + 1))), dst, dst_transform=dst_tf, dst_crs=CRS,
                  resampling=resampling)
    crop = np.ascontiguousarray(pan[:, pw.row:pw.row + pw.height, pw.col:pw.col + pw.width])
    p2 = _write(tmp_path / "p_by_hand.tif", crop, _pan_tf(pw.col, pw.row))
    m2 = _write(tmp_path / "m_by_hand.tif", dst, dst_tf)
    return p2, m2


@pytest.mark.parametrize("method", ["brovey", "pantiny"])
def test_half_pan_pixel_shift_matches_a_hand_warped_pair(tmp_path, method):
    pan, ms = _scene()
    p = _write(tmp_path / "p.tif", pan, _pan_tf())
    m = _write(tmp_path / "m.tif", ms, from_origin(X0 + RES / 2, Y0 - RES / 2, 4 * RES, 4 * RES))
    al = align_pair(GeoTIFFRaster(p), GeoTIFFRaster(m), 4)
    assert al.how == "warp" and "cubic" in al.note
    fused, tf = _fuse(p, m, tmp_path / "f.tif", method=method, tile=64, overlap=40)
    p2, m2 = _by_hand_warp(m, pan, al, tmp_path)
    ref, tf2 = _fuse(p2, m2, tmp_path / "f2.tif", method=method)
    assert fused.shape == ref.shape and tf == tf2
    assert np.abs(fused.astype(int) - ref.astype(int)).max() <= 1


def test_different_crs_matches_a_hand_warped_pair(tmp_path):
    pan, ms = _scene(h=192, w=192)
    p = _write(tmp_path / "p.tif", pan, _pan_tf())
    # The MS delivered in geographic coordinates (EPSG:4326), as some products are.
    with rasterio.open(_write(tmp_path / "m_utm.tif", ms, from_origin(X0, Y0, 4 * RES, 4 * RES))) as src:
        from rasterio.warp import calculate_default_transform

        tf, w, h = calculate_default_transform(CRS, "EPSG:4326", src.width, src.height, *src.bounds)
        geo = np.zeros((4, h, w), np.uint16)
        reproject(src.read(), geo, src_transform=src.transform, src_crs=CRS, dst_transform=tf,
                  dst_crs="EPSG:4326", resampling=Resampling.cubic)
    m = _write(tmp_path / "m.tif", geo, tf, crs="EPSG:4326")
    al = align_pair(GeoTIFFRaster(p), GeoTIFFRaster(m), 4)
    assert al.how == "warp" and "EPSG:4326" in al.note
    assert al.pan_window.height >= 150 and al.pan_window.width >= 150  # most of the scene survives
    fused, _ = _fuse(p, m, tmp_path / "f.tif", tile=64, overlap=16)
    p2, m2 = _by_hand_warp(m, pan, al, tmp_path)
    ref, _ = _fuse(p2, m2, tmp_path / "f2.tif")
    assert np.abs(fused.astype(int) - ref.astype(int)).max() <= 1
    # and the scores read the same pair the same way
    q1 = pantiny.qnr(p, m, str(tmp_path / "f.tif"), sensor="qb")
    q2 = pantiny.qnr(p2, m2, str(tmp_path / "f2.tif"), sensor="qb")
    assert abs(q1.qnr - q2.qnr) < 1e-3


def test_no_overlap_is_a_clear_error(tmp_path):
    pan, ms = _scene()
    p = _write(tmp_path / "p.tif", pan, _pan_tf())
    m = _write(tmp_path / "m.tif", ms, from_origin(X0 + 10_000, Y0, 4 * RES, 4 * RES))
    with pytest.raises(GeoreferenceError, match="do not overlap"):
        pantiny.pansharpen(p, m, method="brovey", out=tmp_path / "f.tif")
    assert not (tmp_path / "f.tif").exists()


def test_wrong_ratio_is_a_clear_error(tmp_path):
    pan, ms = _scene()
    p = _write(tmp_path / "p.tif", pan, _pan_tf())
    m = _write(tmp_path / "m.tif", ms, from_origin(X0, Y0, 3 * RES, 3 * RES))  # a 3x product
    with pytest.raises(GeoreferenceError, match="not the ratio 4"):
        pantiny.pansharpen(p, m, method="brovey", out=tmp_path / "f.tif")


def test_one_input_without_crs_is_refused(tmp_path):
    pan, ms = _scene()
    p = _write(tmp_path / "p.tif", pan, _pan_tf())
    m = _write(tmp_path / "m.tif", ms, from_origin(X0 + 8, Y0, 4 * RES, 4 * RES), crs=None)
    with pytest.raises(GeoreferenceError, match="CRS"):
        pantiny.pansharpen(p, m, method="brovey", out=tmp_path / "f.tif")
