"""Issue #12, GIS-ready products: COG outputs, creation options, band descriptions, quick-look PNGs,
batch reports and the worked example ``examples/gis_pipeline.py``. Classical methods keep it fast."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import rasterio
from conftest import REPO, write_tif

import pantiny
from pantiny.cli import main
from pantiny.errors import InputError
from pantiny.preview import SEPARATOR, quicklook

SAMPLE_PAN = REPO / "examples" / "data" / "sample_pan.tif"
SAMPLE_MS = REPO / "examples" / "data" / "sample_ms.tif"


def read_png(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            assert ds.driver == "PNG" and ds.dtypes[0] == "uint8"
            return ds.read()


def assert_cog(path):
    """GDAL's COG layout rules, checked on the file itself."""
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        # 512 x 512 blocks; rasterio calls one block covering the whole width "not tiled"
        assert set(ds.block_shapes) == {(512, 512)} and (ds.profile.get("tiled") or ds.width <= 512)
        n_ovr = len(ds.overviews(1))
        if max(ds.height, ds.width) > 512:
            assert n_ovr >= 1, "an image larger than one tile needs overviews"

        def offset(item, ovr=None):
            kw = {} if ovr is None else {"ovr": ovr}
            return int(ds.get_tag_item(item, "TIFF", bidx=1, **kw))

        main_ifd, main_data = offset("IFD_OFFSET"), offset("BLOCK_OFFSET_0_0")
        for k in range(n_ovr):
            assert main_ifd < offset("IFD_OFFSET", k), "the main image's IFD comes first"
            assert offset("BLOCK_OFFSET_0_0", k) < main_data, "overview tiles come before the main image's"
        return n_ovr


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory):
    """A 640x768 PAN / 160x192 MS pair (larger than one 512 px COG tile), tiled from the sample."""
    d = tmp_path_factory.mktemp("big")
    with rasterio.open(SAMPLE_PAN) as p, rasterio.open(SAMPLE_MS) as m:
        pan, ms, pprof, mprof = np.tile(p.read(), (1, 2, 2)), np.tile(m.read(), (1, 2, 2)), p.profile, m.profile
        tags, desc = m.tags(), m.descriptions
    pprof.update(height=640, width=768)
    mprof.update(height=160, width=192)
    with rasterio.open(d / "big_pan.tif", "w", **pprof) as ds:
        ds.write(pan[:, :640, :768])
        ds.update_tags(**tags)
    with rasterio.open(d / "big_ms.tif", "w", **mprof) as ds:
        ds.write(ms[:, :160, :192])
        ds.update_tags(**tags)
        ds.descriptions = desc
    return d / "big_pan.tif", d / "big_ms.tif"


def test_cog_follows_the_layout_rules_and_equals_the_plain_geotiff(big_pair, tmp_path):
    pan, ms = map(str, big_pair)
    plain = pantiny.pansharpen(pan, ms, method="brovey", out=tmp_path / "plain.tif")
    cog = pantiny.pansharpen(pan, ms, method="brovey", out=tmp_path / "cog.tif", cog=True)
    assert assert_cog(cog) >= 1
    with rasterio.open(plain) as a, rasterio.open(cog) as b:
        assert a.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG"
        np.testing.assert_array_equal(a.read(), b.read())
        assert (a.crs, a.transform, a.nodata, a.descriptions) == (b.crs, b.transform, b.nodata, b.descriptions)
        assert b.nodata == 0 and b.tags()["SENSOR"] == "WV3" and b.compression.name == "deflate"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cog.tif", "plain.tif"]  # no temp or lock files


def test_band_descriptions_come_from_the_ms_file_else_the_sensor(tmp_path, tif_pair, scene_4band):
    out = pantiny.pansharpen(str(SAMPLE_PAN), str(SAMPLE_MS), method="brovey", out=tmp_path / "s.tif")
    with rasterio.open(out) as ds:  # the sample's own descriptions of its bands 2, 3, 5, 7
        assert ds.descriptions == ("Blue", "Green", "Red", "NIR1") and ds.nodata == 0
    pan, ms = map(str, tif_pair)  # WV3 without descriptions, all 8 bands out
    out = pantiny.pansharpen(pan, ms, method="brovey", other_bands="upsample", out=tmp_path / "w.tif")
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("Coastal", "B", "G", "Y", "R", "RedEdge", "NIR", "NIR2")
    p4, m4, _ = scene_4band
    p = write_tif(tmp_path / "p4.tif", p4, gsd=0.5)
    m = write_tif(tmp_path / "m4.tif", m4, gsd=2.0)
    out = pantiny.pansharpen(str(p), str(m), method="ihs", out=tmp_path / "g.tif")
    with rasterio.open(out) as ds:  # 4 bands without a sensor: B,G,R,NIR
        assert ds.descriptions == ("B", "G", "R", "NIR")


def test_creation_options_override_the_defaults(tmp_path, capsys):
    pan, ms = str(SAMPLE_PAN), str(SAMPLE_MS)
    cog = pantiny.pansharpen(pan, ms, method="brovey", out=tmp_path / "c.tif", cog=True,
                             creation_options={"compress": "lzw"})
    with rasterio.open(cog) as ds:
        assert ds.compression.name == "lzw" and ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert main(["fuse", pan, ms, str(tmp_path / "g.tif"), "--method", "brovey", "-q",
                 "--co", "COMPRESS=LZW", "--co", "BLOCKXSIZE=128", "--co", "BLOCKYSIZE=128"]) == 0
    with rasterio.open(tmp_path / "g.tif") as ds:
        assert ds.compression.name == "lzw" and ds.block_shapes[0] == (128, 128)
    assert main(["fuse", pan, ms, str(tmp_path / "z.tif"), "--method", "brovey", "-q", "--cog",
                 "--co", "COMPRESS=ZSTD"]) == 0
    with rasterio.open(tmp_path / "z.tif") as ds:
        assert ds.compression.name == "zstd"
    assert_cog(tmp_path / "z.tif")


@pytest.mark.parametrize("cog", [False, True])
def test_threaded_compression_writes_the_same_file(big_pair, tmp_path, cog):
    """The writer hands GDAL NUM_THREADS for compression (the fusion's thread count): the same pixels,
    compression and layout as one thread; a user's NUM_THREADS creation option wins."""
    from pantiny.io import AtomicGeoTIFFWriter

    with rasterio.open(big_pair[1]) as src:
        data, crs, transform = src.read(), src.crs, src.transform
    paths = {}
    for threads in (1, 2):
        w = AtomicGeoTIFFWriter(tmp_path / f"t{threads}.tif", count=data.shape[0], height=data.shape[1],
                                width=data.shape[2], dtype=data.dtype, crs=crs, transform=transform,
                                cog=cog, threads=threads)
        opts = w.options if w.cog_options is None else w.cog_options
        assert opts.get("NUM_THREADS") == (None if threads == 1 else "2")
        with w:
            w.write(0, data[:, :100])
            w.write(100, data[:, 100:])
        paths[threads] = w.path
    with rasterio.open(paths[1]) as a, rasterio.open(paths[2]) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert b.compression.name == "deflate" and a.block_shapes == b.block_shapes
    assert paths[1].read_bytes() == paths[2].read_bytes()  # blocks are compressed independently
    user = AtomicGeoTIFFWriter(tmp_path / "u.tif", count=1, height=64, width=64, dtype=np.uint16, crs=crs,
                               transform=transform, threads=2, creation_options={"NUM_THREADS": "1"})
    assert user.options["NUM_THREADS"] == "1"


def test_writer_bounds_gdal_block_cache_unless_the_caller_set_it(tmp_path, monkeypatch):
    """While a GeoTIFF is written GDAL's block cache is WRITE_CACHE_MB (written blocks go to disk as it
    fills instead of staying resident until the file closes); a GDAL_CACHEMAX set by the caller, in
    the environment or a rasterio.Env, is kept; afterwards the caller's settings are back."""
    from rasterio.transform import from_origin

    from pantiny.io import WRITE_CACHE_MB, AtomicGeoTIFFWriter

    def cache_while_writing(name):
        w = AtomicGeoTIFFWriter(tmp_path / name, count=1, height=64, width=64, dtype=np.uint16,
                                crs="EPSG:32633", transform=from_origin(500000.0, 4000000.0, 1.0, 1.0))
        with w:
            seen = rasterio.env.getenv().get("GDAL_CACHEMAX") if rasterio.env.hasenv() else None
            w.write(0, np.ones((1, 64, 64), np.uint16))
        with rasterio.open(w.path) as ds:
            assert ds.read(1).sum() == 64 * 64
        return seen

    assert cache_while_writing("a.tif") == WRITE_CACHE_MB
    assert not rasterio.env.hasenv()  # the writer's Env is gone
    with rasterio.Env(GDAL_CACHEMAX=512):
        assert cache_while_writing("b.tif") == 512
        assert rasterio.env.getenv()["GDAL_CACHEMAX"] == 512
    monkeypatch.setenv("GDAL_CACHEMAX", "300")
    assert cache_while_writing("c.tif") is None  # the environment's value: no Env of ours


@pytest.mark.parametrize("cog", [True, False])
@pytest.mark.parametrize("bad", [{"NO_SUCH_OPTION": "1"}, {"COMPRESS": "SQUEEZE"}, {"BLOCKSIZE": "abc"}])
def test_bad_creation_options_are_a_clear_error_before_writing(tmp_path, bad, cog):
    if not cog and "BLOCKSIZE" in bad:
        bad = {"BLOCKXSIZE": "abc", "TILED": "YES"}
    (tmp_path / "o.tif").write_bytes(b"old")
    key = next(iter(bad))
    # BLOCKSIZE=abc aborts GDAL inside the process that tries it: the check runs in a child process.
    with pytest.raises(InputError, match=rf"rejects creation options .*{key}"):
        pantiny.pansharpen(str(SAMPLE_PAN), str(SAMPLE_MS), method="brovey", out=tmp_path / "o.tif", cog=cog,
                           creation_options=bad)
    assert (tmp_path / "o.tif").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["o.tif"]


def test_bad_creation_option_on_the_command_line(tmp_path, capsys):
    argv = ["fuse", str(SAMPLE_PAN), str(SAMPLE_MS), str(tmp_path / "o.tif"), "--method", "brovey", "--cog"]
    assert main([*argv, "--co", "NO_SUCH_OPTION=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NO_SUCH_OPTION" in err[0] and not (tmp_path / "o.tif").exists()
    with pytest.raises(SystemExit) as e:
        main([*argv, "--co", "COMPRESS"])
    assert e.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err


def test_cog_options_need_an_output_file():
    rng = np.random.default_rng(0)
    pan, ms = rng.integers(1, 2047, (1, 32, 32), "uint16"), rng.integers(1, 2047, (4, 8, 8), "uint16")
    with pytest.raises(InputError, match="out="):
        pantiny.pansharpen(pan, ms, method="brovey", cog=True)


def test_a_failed_cog_conversion_keeps_the_old_output_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import rasterio.shutil
    from rasterio.errors import RasterioIOError

    def broken(*a, **k):
        raise RasterioIOError("disk full")

    (tmp_path / "o.tif").write_bytes(b"old")
    monkeypatch.setattr(rasterio.shutil, "copy", broken)
    with pytest.raises(OSError, match="cannot write the COG .*disk full"):
        pantiny.pansharpen(str(SAMPLE_PAN), str(SAMPLE_MS), method="brovey", out=tmp_path / "o.tif", cog=True)
    assert (tmp_path / "o.tif").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["o.tif"]


@pytest.fixture(scope="module")
def sample_fused(tmp_path_factory):
    d = tmp_path_factory.mktemp("fused")
    return pantiny.pansharpen(str(SAMPLE_PAN), str(SAMPLE_MS), method="brovey", out=d / "f.tif", cog=True)


def test_quicklook_size_and_content(sample_fused, tmp_path):
    img = read_png(quicklook(sample_fused, tmp_path / "a.png", size=200))
    assert img.shape == (3, 200, 200)
    assert img.std() > 20 and len(np.unique(img)) > 50
    assert (img[:, 0, 0] == 0).all() and img[:, -1, -1].any()  # the nodata corner is black, data is not
    assert read_png(quicklook(sample_fused, tmp_path / "b.png", size=4096)).shape == (3, 512, 512)


def test_quicklook_picks_red_green_blue_by_description_and_keeps_the_aspect(tmp_path):
    yy, xx = np.mgrid[0:300, 0:500]
    bands = np.stack([np.full_like(xx, 7), (yy % 50) * 10, xx * 2, (xx + yy) % 97]).astype("uint16")
    src = write_tif(tmp_path / "r.tif", bands)
    with rasterio.open(src, "r+") as ds:
        ds.descriptions = ("Coastal", "Green", "Red", "Blue")
    img = read_png(quicklook(src, tmp_path / "r.png", size=250)).astype(float)
    assert img.shape == (3, 150, 250)
    ramp = np.broadcast_to(np.arange(250.0), (150, 250))  # the red band grows along x only
    assert np.corrcoef(img[0].ravel(), ramp.ravel())[0, 1] > 0.99
    assert np.abs(np.diff(img[1], axis=1)).mean() < np.abs(np.diff(img[1], axis=0)).mean()  # green: along y
    with pytest.raises(InputError, match="band indices"):
        quicklook(src, tmp_path / "x.png", rgb=(0, 1, 9))


def test_panel_is_pan_ms_fused_side_by_side(sample_fused, tmp_path):
    img = read_png(quicklook(sample_fused, tmp_path / "p.png", size=128, panel=(SAMPLE_PAN, SAMPLE_MS)))
    assert img.shape == (3, 128, 3 * 128 + 2 * SEPARATOR)
    pan, sep, ms = img[:, :, :128], img[:, :, 128:128 + SEPARATOR], img[:, :, 128 + SEPARATOR:256 + SEPARATOR]
    fused = img[:, :, -128:]
    assert (sep == 255).all() and (pan[0] == pan[1]).all() and (pan[0] == pan[2]).all()  # grey PAN
    assert not (ms[0] == ms[1]).all() and fused.std() > 20
    assert np.abs(ms.astype(int) - fused.astype(int)).mean() < 40  # same stretch: colours compare


def test_quicklook_from_the_command_line_and_after_fuse(sample_fused, tmp_path, capsys):
    assert main(["quicklook", str(sample_fused), "-o", str(tmp_path / "q.png"), "--size", "64"]) == 0
    assert read_png(tmp_path / "q.png").shape == (3, 64, 64)
    assert main(["quicklook", str(sample_fused), "-o", str(tmp_path / "p.png"), "--size", "64",
                 "--panel", str(SAMPLE_PAN), str(SAMPLE_MS)]) == 0
    assert read_png(tmp_path / "p.png").shape == (3, 64, 3 * 64 + 2 * SEPARATOR)
    assert main(["fuse", str(SAMPLE_PAN), str(SAMPLE_MS), str(tmp_path / "f.tif"), "--method", "brovey", "-q",
                 "--quicklook"]) == 0
    assert read_png(tmp_path / "f.png").shape == (3, 512, 512)
    assert main(["fuse", str(SAMPLE_PAN), str(SAMPLE_MS), str(tmp_path / "f.tif"), "--report-qnr"]) == 1
    assert "batch mode" in capsys.readouterr().err


def test_batch_writes_a_report_per_scene_also_for_a_failed_one(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(SAMPLE_PAN, src / "good_pan.tif")
    shutil.copy(SAMPLE_MS, src / "good_ms.tif")
    (src / "bad_pan.tif").write_bytes(SAMPLE_PAN.read_bytes()[:3000])  # truncated
    shutil.copy(SAMPLE_MS, src / "bad_ms.tif")
    assert main(["fuse", str(src), str(out), "--method", "brovey", "--cog", "--quicklook", "--report-qnr", "-q"]) == 1
    good = json.loads((out / "good_fused.json").read_text())
    assert good["method"] == "brovey" and good["model"] is None and good["sensor"] == "WV3"
    assert good["shape"] == [4, 512, 512] and good["error"] is None
    assert good["pan"].endswith("good_pan.tif") and good["output"].endswith("good_fused.tif")
    assert good["quicklook"].endswith("good_fused.png") and (out / "good_fused.png").is_file()
    assert set(good["seconds"]) == {"fusion", "quicklook", "scoring"} and min(good["seconds"].values()) >= 0
    assert 0 < good["scores"]["QNR"] <= 1 and {"D_lambda", "D_s"} <= set(good["scores"])
    r = pantiny.qnr(str(SAMPLE_PAN), str(SAMPLE_MS), str(out / "good_fused.tif"))
    assert good["scores"]["QNR"] == pytest.approx(r.qnr)
    assert_cog(out / "good_fused.tif")
    bad = json.loads((out / "bad_fused.json").read_text())
    assert "bad_pan.tif" in bad["error"] and bad["failed_step"] == "fusion"
    assert bad["shape"] is None and bad["scores"] is None and not (out / "bad_fused.tif").exists()


def test_models_are_named_in_the_report(tmp_path, random_weights):
    src = tmp_path / "in"
    src.mkdir()
    from pantiny.synthetic import make_scene

    pan, ms, _ = make_scene(64, "ikonos", seed=3)
    write_tif(src / "s_pan.tif", pan, gsd=0.5)
    write_tif(src / "s_ms.tif", ms, gsd=2.0)
    assert main(["fuse", str(src), str(tmp_path / "out"), "--model", str(random_weights), "--attention", "tile",
                 "--device", "cpu", "-q"]) == 0
    rep = json.loads((tmp_path / "out" / "s_fused.json").read_text())
    assert rep["method"] == "pantiny" and rep["model"] == str(random_weights) and rep["scores"] is None


def test_example_pipeline_writes_cogs_pngs_and_one_qnr_row_per_scene(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("one", "two"):
        shutil.copy(SAMPLE_PAN, src / f"{name}_pan.tif")
        shutil.copy(SAMPLE_MS, src / f"{name}_ms.tif")
    run = subprocess.run([sys.executable, str(REPO / "examples" / "gis_pipeline.py"), str(src),
                          str(tmp_path / "out"), "--method", "brovey"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "out" / "qnr.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["scene"] for r in rows] == ["one", "two"]
    assert all(0 < float(r["QNR"]) <= 1 and float(r["D_lambda"]) >= 0 for r in rows)
    for name in ("one", "two"):
        assert_cog(tmp_path / "out" / f"{name}_fused.tif")
        assert read_png(tmp_path / "out" / f"{name}_fused.png").shape == (3, 512, 512)


def test_quicklook_needs_no_torch_and_is_the_top_level_function():
    code = "import sys, pantiny.preview; assert 'torch' not in sys.modules; print(callable(pantiny.quicklook))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "True", run.stderr
