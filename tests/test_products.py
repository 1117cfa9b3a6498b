"""Vendor products (issue #12): fake Maxar .TIL/.IMD and GaoFen-2 XML products, written by the test,
are read with sensor, bit depth and band order from their metadata."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

import pantiny
from pantiny.products import describe_product

X0, Y0, RES = 500000.0, 4000000.0, 0.5


@pytest.fixture
def log(caplog):
    """Records of the ``pantiny`` logger (which the CLI may have set not to propagate)."""
    lg = logging.getLogger("pantiny")
    lg.addHandler(caplog.handler)
    old = lg.level
    lg.setLevel(logging.INFO)
    yield caplog
    lg.removeHandler(caplog.handler)
    lg.setLevel(old)


def _scene(n_ms=8, h=96, w=128, dtype=np.uint16, top=1800, seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / 9.0
    base = 0.45 + 0.3 * np.sin(xx) * np.cos(0.8 * yy) + 0.03 * rng.standard_normal((h, w))
    pan = (np.clip(base, 0, 1) * top).astype(dtype)[None]
    lr = base.reshape(h // 4, 4, w // 4, 4).mean((1, 3))
    ms = np.stack([np.clip(lr * (0.5 + 0.06 * b) + 0.02 * b, 0, 1) * top for b in range(n_ms)]).astype(dtype)
    return pan, ms


def _tif(path, arr, transform, crs="EPSG:32633", descriptions=None):
    with rasterio.open(path, "w", driver="GTiff", count=arr.shape[0], height=arr.shape[1], width=arr.shape[2],
                       dtype=arr.dtype, crs=crs, transform=transform) as ds:
        ds.write(arr)
        for i, d in enumerate(descriptions or []):
            ds.set_band_description(i + 1, d)
    return path


def _maxar(folder, stem, arr, pixel, col_off, row_off, sat, bits, band_groups):
    """A one-tile Maxar product: <stem>_R1C1.TIF, <stem>.TIL, <stem>.IMD (the fields GDAL's TIL driver
    needs, the band groups in file order, satId and bitsPerPixel)."""
    c, h, w = arr.shape
    ulx, uly = X0 + col_off * RES, Y0 - row_off * RES
    _tif(folder / f"{stem}_R1C1.TIF", arr, from_origin(ulx, uly, pixel, pixel))
    (folder / f"{stem}.TIL").write_text(
        'version = "AA";\ndeliveredTiling = "Tiled";\nnumTiles = 1;\ntileSizeX = %d;\ntileSizeY = %d;\n'
        'tileUnits = "Pixels";\ntileOverlap = 0;\nBEGIN_GROUP = TILE_1\n\tfilename = "%s_R1C1.TIF";\n'
        '\tULColOffset = 0;\n\tULRowOffset = 0;\n\tLRColOffset = %d;\n\tLRRowOffset = %d;\nEND_GROUP = TILE_1\nEND;\n'
        % (w, h, stem, w - 1, h - 1))
    groups = "".join(f"BEGIN_GROUP = BAND_{b}\n\tabsCalFactor = 0.01;\nEND_GROUP = BAND_{b}\n" for b in band_groups)
    (folder / f"{stem}.IMD").write_text(
        f'version = "28.4";\nbandId = "{"P" if band_groups == ["P"] else "Multi"}";\nnumRows = {h};\n'
        f'numColumns = {w};\nbitsPerPixel = {bits};\n{groups}'
        f'BEGIN_GROUP = IMAGE_1\n\tsatId = "{sat}";\n\tfirstLineTime = 2020-01-01T10:00:00.000000Z;\nEND_GROUP = IMAGE_1\n'
        f'BEGIN_GROUP = MAP_PROJECTED_PRODUCT\n\tULX = {ulx + pixel / 2};\n\tULY = {uly - pixel / 2};\n'
        'END_GROUP = MAP_PROJECTED_PRODUCT\nEND;\n')
    return str(folder / f"{stem}.TIL")


def test_worldview3_til_imd_product_is_detected_and_aligned(tmp_path, log):
    pan, ms = _scene(8)
    # PAN and MS tiles with their own extents: the MS starts one MS pixel right of and below the PAN.
    p = _maxar(tmp_path, "20JAN01-P1BS", pan, RES, 0, 0, "WV03", 16, ["P"])
    m = _maxar(tmp_path, "20JAN01-M1BS", np.ascontiguousarray(ms[:, 1:, 1:]), 4 * RES, 4, 4, "WV03", 16,
               ["C", "B", "G", "Y", "R", "RE", "N", "N2"])
    info = describe_product(m)
    assert info.sensor == "wv3" and info.bits == 11 and info.band_names[4] == "R" and "IMD" in info.source
    out = pantiny.pansharpen(p, m, method="brovey", out=tmp_path / "f.tif")
    text = log.text
    assert "sensor wv3 (WV03 in 20JAN01-M1BS.IMD)" in text and "value scale 2047" in text
    assert "not nested" in text
    with rasterio.open(out) as ds:
        fused = ds.read()
        assert ds.transform == from_origin(X0 + 4 * RES, Y0 - 4 * RES, RES, RES)
    by_hand = pantiny.pansharpen(pan[:, 4:, 4:], ms[:, 1:, 1:], sensor="wv3", method="brovey")
    np.testing.assert_array_equal(fused, by_hand)


def test_8bit_four_band_worldview2_bundle(tmp_path, log):
    """A 4-band (B,G,R,N) 8-bit WV2 product: the 8-band sensor's bands are picked by name, scale 255."""
    pan, ms = _scene(4, dtype=np.uint8, top=250)
    p = _maxar(tmp_path, "P", pan, RES, 0, 0, "WV02", 8, ["P"])
    m = _maxar(tmp_path, "M", ms, 4 * RES, 0, 0, "WV02", 8, ["B", "G", "R", "N"])
    fused = pantiny.pansharpen(p, m, method="mtf-glp", out=tmp_path / "f.tif")
    assert "sensor wv2" in log.text and "value scale 255" in log.text
    assert "model bands R,G,B,NIR = MS bands [2, 1, 0, 3]" in log.text
    with rasterio.open(fused) as ds:
        got = ds.read()
    # the same fusion with everything given explicitly, WV2's R, G, B, NIR1 gains
    from pantiny.sensors import get_sensor, with_band_names

    wv2_4 = with_band_names(get_sensor("wv2"), ["B", "G", "R", "NIR"])
    assert wv2_4.model_mtf == get_sensor("wv2").model_mtf
    np.testing.assert_array_equal(got, pantiny.pansharpen(pan, ms, sensor=wv2_4, scale=255, method="mtf-glp"))


def _gaofen(folder, stem, arr, pixel, sat, sensor_id, bands):
    path = _tif(folder / f"{stem}.tiff", arr, from_origin(X0, Y0, pixel, pixel))
    (folder / f"{stem}.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ProductMetaData>\n'
        f'  <SatelliteID>{sat}</SatelliteID>\n  <SensorID>{sensor_id}</SensorID>\n'
        f'  <ProductLevel>LEVEL1A</ProductLevel>\n  <Bands>{bands}</Bands>\n  <ImageGSD>{pixel}</ImageGSD>\n'
        '</ProductMetaData>\n')
    return str(path)


def test_gaofen2_xml_product_is_detected(tmp_path, log):
    pan, ms = _scene(4, top=1000)
    stem = "GF2_PMS1_E113.6_N23.1_20200101_L1A0001234567"
    p = _gaofen(tmp_path, f"{stem}-PAN1", pan, RES, "GF2", "PMS1", "5")
    m = _gaofen(tmp_path, f"{stem}-MSS1", ms, 4 * RES, "GF2", "PMS1", "1,2,3,4")
    info = describe_product(m)
    assert info.sensor == "gf2" and info.band_names == ("B", "G", "R", "NIR")
    fused = pantiny.pansharpen(p, m, method="brovey")
    assert "sensor gf2 (GF2 PMS1 in" in log.text and "value scale 1023" in log.text
    np.testing.assert_array_equal(fused, pantiny.pansharpen(pan, ms, sensor="gf2", method="brovey"))


def test_xarray_inputs_read_the_product_their_file_belongs_to(tmp_path, log):
    """A DataArray opened with rioxarray from a GaoFen-2 file: sensor and bit depth from the XML beside
    the file, as for the path itself; an in-memory copy falls back to the band count."""
    rioxarray = pytest.importorskip("rioxarray")
    import pantiny.xarray as px

    pan, ms = _scene(4, top=1000)
    p = _tif(tmp_path / "g_pan.tiff", pan, from_origin(X0, Y0, RES, RES))
    m = _gaofen(tmp_path, "g_ms", ms, 4 * RES, "GF2", "PMS1", "1,2,3,4")
    pan_da, ms_da = rioxarray.open_rasterio(p), rioxarray.open_rasterio(m)
    fused = px.pansharpen(pan_da, ms_da, method="brovey", chunks=64).values
    assert "sensor gf2 (GF2 PMS1 in" in log.text and "value scale 1023" in log.text
    np.testing.assert_array_equal(fused, pantiny.pansharpen(p, m, method="brovey"))
    log.clear()
    mem = ms_da.copy(data=ms_da.values)
    mem.encoding = {}  # not from a file any more
    px.pansharpen(pan_da, mem, method="brovey", chunks=64).values
    assert "sensor generic (guessed from 4 bands)" in log.text


def test_band_descriptions_give_the_band_order(tmp_path, log):
    """An R,G,B,NIR file (no vendor metadata) is not read as the generic B,G,R,NIR."""
    pan, ms = _scene(4)
    p = _tif(tmp_path / "p.tif", pan, from_origin(X0, Y0, RES, RES))
    m = _tif(tmp_path / "m.tif", ms, from_origin(X0, Y0, 4 * RES, 4 * RES), descriptions=["Red", "Green", "Blue", "NIR"])
    fused = pantiny.pansharpen(p, m, method="gsa", scale=2047)
    assert "MS bands [0, 1, 2, 3]" in log.text
    np.testing.assert_array_equal(fused, pantiny.pansharpen(pan, ms, bands=[0, 1, 2, 3], method="gsa", scale=2047))
    assert not np.array_equal(fused, pantiny.pansharpen(pan, ms, method="gsa", scale=2047))


def test_qnr_reads_band_descriptions_for_a_given_sensor_as_pansharpen_does(tmp_path):
    """With sensor="qb" given, an R,G,B,NIR file's descriptions still set which band is which (and so
    each band's MTF gain in HQNR), in qnr as in pansharpen."""
    pan, ms = _scene(4)
    p = _tif(tmp_path / "p.tif", pan, from_origin(X0, Y0, RES, RES))
    m = _tif(tmp_path / "m.tif", ms, from_origin(X0, Y0, 4 * RES, 4 * RES), descriptions=["Red", "Green", "Blue", "NIR"])
    fused = pantiny.pansharpen(p, m, method="gsa", sensor="qb")
    np.testing.assert_array_equal(fused, pantiny.pansharpen(pan, ms, method="gsa", sensor="qb", bands=[0, 1, 2, 3]))
    from pantiny.sensors import get_sensor, with_band_names

    renamed = with_band_names(get_sensor("qb"), ["R", "G", "B", "NIR"])
    by_file = pantiny.qnr(p, m, fused, sensor="qb", hqnr=True)
    by_table = pantiny.qnr(pan, ms, fused, sensor=renamed, hqnr=True)
    assert by_file.d_lambda_k == pytest.approx(by_table.d_lambda_k, abs=1e-12)
    stored_order = pantiny.qnr(pan, ms, fused, sensor="qb", hqnr=True)  # B,G,R,NIR gains on R,G,B,NIR bands
    assert stored_order.d_lambda_k != pytest.approx(by_file.d_lambda_k, abs=1e-9)


def test_explicit_sensor_wins_and_a_broken_sidecar_is_ignored(tmp_path, log):
    pan, ms = _scene(4, top=1000)
    p = _tif(tmp_path / "s_pan.tif", pan, from_origin(X0, Y0, RES, RES))
    m = _tif(tmp_path / "s_ms.tif", ms, from_origin(X0, Y0, 4 * RES, 4 * RES))
    (tmp_path / "s_ms.xml").write_text("<ProductMetaData><SatelliteID>GF2</Sat")  # truncated XML
    fused = pantiny.pansharpen(p, m, method="brovey", sensor="qb")
    assert "ignoring unreadable metadata" in log.text and "sensor qb (given)" in log.text
    np.testing.assert_array_equal(fused, pantiny.pansharpen(pan, ms, sensor="qb", method="brovey"))
    assert describe_product(m).sensor is None


def test_a_vrt_input_reads_like_its_source(tmp_path):
    """VRT mosaics (what gdalbuildvrt writes for tiled deliveries) are inputs like any GeoTIFF."""
    pan, ms = _scene(4, top=1000)
    p = _tif(tmp_path / "p.tif", pan, from_origin(X0, Y0, RES, RES))
    m = _tif(tmp_path / "m.tif", ms, from_origin(X0, Y0, 4 * RES, 4 * RES))
    c, h, w = ms.shape
    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><SimpleSource><SourceFilename relativeToVRT="1">m.tif'
        f'</SourceFilename><SourceBand>{b}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/></SimpleSource></VRTRasterBand>' for b in range(1, c + 1))
    with rasterio.open(m) as ds:
        srs, gt = ds.crs.to_wkt(), ", ".join(str(v) for v in ds.transform.to_gdal())
    (tmp_path / "m.vrt").write_text(f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{srs}</SRS>'
                                    f'<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>')
    got = pantiny.pansharpen(p, str(tmp_path / "m.vrt"), method="brovey", sensor="gf2")
    np.testing.assert_array_equal(got, pantiny.pansharpen(p, m, method="brovey", sensor="gf2"))
