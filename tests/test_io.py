import numpy as np
import pytest
import rasterio
from conftest import write_tif

from pantiny import pansharpen


@pytest.mark.slow
def test_geotiff_output_keeps_pan_grid_ms_dtype_and_nodata(tmp_path, scene_wv3, random_weights):
    pan, ms, _ = scene_wv3
    pan, ms = pan.copy(), ms.copy()
    ms[:, -4:, :] = 0
    p = write_tif(tmp_path / "a_pan.tif", pan, gsd=0.5, nodata=0)
    m = write_tif(tmp_path / "a_ms.tif", ms, gsd=2.0, nodata=0, tags={"SENSOR": "WV3"})
    out = pansharpen(str(p), str(m), out=tmp_path / "fused.tif", model=str(random_weights), tile=128, overlap=40)
    with rasterio.open(p) as dp, rasterio.open(out) as do:
        assert do.crs == dp.crs and do.transform == dp.transform
        assert (do.height, do.width) == (dp.height, dp.width) and do.count == 4
        assert do.dtypes[0] == "uint16" and do.nodata == 0
        assert do.tags()["SENSOR"] == "WV3"
        assert do.profile["compress"] == "deflate" and do.block_shapes[0] == (256, 256)
        data = do.read()
    assert (data[:, -16:, :] == 0).all() and (data[:, :-16, :] > 0).all()
    # Same numbers as the array path.
    arr = pansharpen(pan, ms, sensor="wv3", nodata=0, model=str(random_weights), tile=128, overlap=40)
    np.testing.assert_array_equal(arr, data)
    assert not list(tmp_path.glob(".*tmp*"))


def test_crs_mismatch_is_refused(tmp_path, scene_4band, identity_model):
    pan, ms, _ = scene_4band
    p = write_tif(tmp_path / "p.tif", pan, gsd=0.5, crs="EPSG:32633")
    # the same numbers in the next UTM zone are 600 km away: alignment finds no overlap
    m = write_tif(tmp_path / "m.tif", ms, gsd=2.0, crs="EPSG:32634")
    with pytest.raises(ValueError, match="do not overlap.*EPSG:32634"):
        pansharpen(str(p), str(m), model=identity_model)
    m2 = write_tif(tmp_path / "m2.tif", ms, gsd=2.0, crs=None)
    with pytest.raises(ValueError, match="PAN CRS is EPSG:32633 but MS CRS is unset"):
        pansharpen(str(p), str(m2), model=identity_model)


def test_extent_and_pixel_size_mismatch(tmp_path, scene_4band, identity_model):
    """Other extents are aligned by georeferencing (tests/test_align.py); a wrong ratio is refused."""
    pan, ms, _ = scene_4band
    p = write_tif(tmp_path / "p.tif", pan, gsd=0.5)
    shifted = write_tif(tmp_path / "s.tif", ms, gsd=2.0, origin=(500010.0, 4200000.0))  # 5 MS pixels east
    out = pansharpen(str(p), str(shifted), model=identity_model, out=tmp_path / "o.tif")
    with rasterio.open(out) as ds:
        assert ds.width == pan.shape[2] - 20 and ds.transform.c == 500010.0
    coarse = write_tif(tmp_path / "c.tif", ms, gsd=3.0)
    with pytest.raises(ValueError, match="not the ratio 4"):
        pansharpen(str(p), str(coarse), model=identity_model)
    small = write_tif(tmp_path / "sm.tif", ms[:, :60], gsd=2.0)
    assert pansharpen(str(p), str(small), model=identity_model).shape[1] == 240
    tiny = write_tif(tmp_path / "t.tif", pan[:, :60, :60], gsd=0.5)  # arrays keep the nested rule
    with pytest.raises(ValueError, match="size mismatch"):
        pansharpen(rasterio.open(tiny).read(), ms, model=identity_model)


def test_missing_file_and_never_overwrite_an_input(tmp_path, tif_pair, identity_model):
    p, m = tif_pair
    with pytest.raises(FileNotFoundError, match="no such raster file"):
        pansharpen(str(p), str(tmp_path / "absent_ms.tif"), model=identity_model)
    before = m.read_bytes()
    with pytest.raises(ValueError, match="refusing to write the output over an input"):
        pansharpen(str(p), str(m), out=m, model=identity_model)
    assert m.read_bytes() == before


def test_failed_write_leaves_existing_output_and_no_temp(tmp_path, tif_pair):
    p, m = tif_pair
    out = tmp_path / "out.tif"
    out.write_bytes(b"previous result")

    class Boom(Exception):
        pass

    class Failing:
        calls = 0

        def __call__(self, ms_up, pan):
            Failing.calls += 1
            if Failing.calls > 2:
                raise Boom("disk full")
            return ms_up

    import torch

    class Net(torch.nn.Module):
        def forward(self, ms_up, pan):
            return Failing()(ms_up, pan)

    with pytest.raises(Boom):
        pansharpen(str(p), str(m), out=out, model=Net(), tile=64, overlap=16)
    assert out.read_bytes() == b"previous result"
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([p.name, m.name, "out.tif"])


def test_nan_in_float_file_is_reported(tmp_path, scene_4band, identity_model):
    pan, ms, _ = scene_4band
    msf = ms.astype(np.float32) / 2047
    msf[2, 10, 10] = np.nan
    p = write_tif(tmp_path / "p.tif", pan.astype(np.float32) / 2047, gsd=0.5)
    m = write_tif(tmp_path / "m.tif", msf, gsd=2.0)
    with pytest.raises(ValueError, match="MS contains NaN"):
        pansharpen(str(p), str(m), model=identity_model)


def test_sensor_tag_drives_band_selection(tmp_path, tif_pair, identity_model):
    p, m = tif_pair  # 8-band file tagged WV3
    out = pansharpen(str(p), str(m), model=identity_model)
    assert out.shape[0] == 4
    with pytest.raises(ValueError, match="MS has 8 bands but sensor 'gf2' has 4"):
        pansharpen(str(p), str(m), sensor="gf2", model=identity_model)
