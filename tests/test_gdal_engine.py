"""GDAL's cubic resampling (``upsampling="cubic"``) and GDAL's engine for Brovey on files.

``method="brovey", upsampling="cubic"`` is GDAL's weighted Brovey: on georeferenced files (with one
nodata value or none), GDAL's VRTPansharpenedDataset computes it; otherwise the tiling engine does,
and both must agree (rounding of ties aside; next to nodata, each resampler's rule for holes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.enums import Resampling

import pantiny
from pantiny import api, gdal_engine
from pantiny.resample import upsample
from pantiny.synthetic import make_scene

from conftest import write_tif

pytestmark = pytest.mark.skipif(not gdal_engine.available(), reason="this GDAL has no VRTPansharpenedDataset")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A georeferenced 4-band uint16 pair (B, G, R, NIR), 4x nested, no nodata, 300x260 PAN (not a
    multiple of the 512 tile, so several tiles and image edges are exercised)."""
    pan, ms, _ = make_scene(320, "ikonos", seed=11)
    pan, ms = pan[:, :300, :260], ms[:, :75, :65]
    d = tmp_path_factory.mktemp("gdal_pair")
    p = write_tif(d / "p_pan.tif", pan, gsd=1.0, tags={"SENSOR": "IKONOS"})
    m = write_tif(d / "p_ms.tif", ms, gsd=4.0, tags={"SENSOR": "IKONOS"})
    return p, m


@pytest.fixture
def engine_calls(monkeypatch):
    """Counts calls into GDAL's engine, whole or in strips (still running it)."""
    calls = []
    for name in ("brovey", "brovey_strips"):
        real = getattr(gdal_engine, name)

        def spy(*a, _real=real, **kw):
            calls.append((a, kw))
            return _real(*a, **kw)

        monkeypatch.setattr(gdal_engine, name, spy)
    return calls


def _tiling_engine(monkeypatch, *args, **kwargs):
    with monkeypatch.context() as m:
        m.setattr(api, "_gdal_brovey_bands", lambda *a, **k: None)
        return pantiny.pansharpen(*args, **kwargs)


def test_cubic_is_gdals_cubic_resampling(tmp_path):
    rng = np.random.default_rng(0)
    ms = (rng.random((3, 23, 31)) * 1000).astype(np.float32)
    path = write_tif(tmp_path / "ms.tif", ms, gsd=4.0)
    with rasterio.open(path) as ds:  # GDAL resamples float data in float
        gdal = ds.read(out_shape=(3, 92, 124), resampling=Resampling.cubic)
    ours = upsample(torch.from_numpy(ms)[None], 4, "cubic")[0].numpy()
    assert np.abs(ours - gdal).max() < 1e-3  # the image edges included (GDAL's renormalised weights)
    bicubic = upsample(torch.from_numpy(ms)[None], 4, "bicubic")[0].numpy()
    assert np.abs(bicubic - gdal).max() > 1.0  # torch's a=-0.75 kernel is another convention


def test_cubic_crop_with_margin_equals_whole_image():
    x = torch.rand(1, 2, 20, 24, dtype=torch.float64)
    whole = upsample(x, 4, "cubic")
    crop = upsample(x[..., 5:15, 3:20], 4, "cubic")
    assert torch.equal(crop[..., 8:-8, 8:-8], whole[..., 28:52, 20:72])
    assert torch.allclose(upsample(torch.full((1, 1, 5, 7), 3.0), 4, "cubic"), torch.tensor(3.0))


@pytest.mark.parametrize("ratio", [2, 3, 4, 8])
def test_cubic_fast_path_equals_the_kernel_by_hand(ratio):
    """Power-of-two ratios go through torch's antialiased bicubic: the same kernel and border rule as
    the explicit one (kept for other ratios), image edges and tiny images included; crops stay exact."""
    from pantiny.resample import _cubic_axis

    for h, w in [(1, 1), (2, 3), (7, 11), (23, 31)]:
        x = torch.rand(1, 3, h, w, dtype=torch.float64) * 1000
        by_hand = _cubic_axis(_cubic_axis(x, -2, ratio), -1, ratio)
        assert (upsample(x, ratio, "cubic") - by_hand).abs().max() < 1e-8
    x = torch.rand(1, 4, 60, 70)
    m = 2 * ratio
    whole, crop = upsample(x, ratio, "cubic"), upsample(x[..., 7:41, 5:50], ratio, "cubic")
    assert torch.equal(crop[..., m:-m, m:-m], whole[..., 7 * ratio + m:41 * ratio - m, 5 * ratio + m:50 * ratio - m])


def test_brovey_cubic_on_files_is_gdals_engine(pair, engine_calls, monkeypatch):
    p, m = pair
    fast = pantiny.pansharpen(p, m, method="brovey", upsampling="cubic")
    assert len(engine_calls) == 1
    ref = _tiling_engine(monkeypatch, p, m, method="brovey", upsampling="cubic", tile=128, overlap=32)
    assert fast.dtype == ref.dtype == np.uint16 and fast.shape == ref.shape == (4, 300, 260)
    d = np.abs(fast.astype(np.int64) - ref.astype(np.int64))
    assert d.max() <= 2 and (d > 0).mean() < 0.005  # rounding ties of the resampled MS only
    # ... and it is GDAL's own result, bit for bit
    direct = gdal_engine.brovey(p, m, [1, 2, 3, 4])
    assert np.array_equal(fast, direct)


def test_weights_reach_gdal_in_file_band_order(pair, engine_calls, monkeypatch):
    p, m = pair  # IKONOS file order B, G, R, NIR; weights are given in model order R, G, B, NIR
    w = {"R": 0.5, "G": 0.3, "B": 0.15, "NIR": 0.05}
    fast = pantiny.pansharpen(p, m, method="brovey", upsampling="cubic", method_options={"weights": w})
    assert engine_calls and engine_calls[0][1]["weights"] == [0.15, 0.3, 0.5, 0.05]
    ref = _tiling_engine(monkeypatch, p, m, method="brovey", upsampling="cubic", method_options={"weights": w})
    d = np.abs(fast.astype(np.int64) - ref.astype(np.int64))
    # a rounding tie of the resampled MS (1 DN) comes out multiplied by the Brovey gain P / I
    assert d.max() <= 3 and (d > 0).mean() < 0.005


def test_written_file_matches_and_is_described(pair, tmp_path, engine_calls):
    p, m = pair
    out = pantiny.pansharpen(p, m, method="brovey", upsampling="cubic", out=tmp_path / "f.tif")
    assert len(engine_calls) == 1
    with rasterio.open(out) as ds, rasterio.open(p) as ps:
        assert ds.transform == ps.transform and ds.crs == ps.crs and ds.nodata is None
        assert ds.descriptions == ("B", "G", "R", "NIR") and ds.tags()["SENSOR"] == "IKONOS"
        assert np.array_equal(ds.read(), pantiny.pansharpen(p, m, method="brovey", upsampling="cubic"))


@pytest.mark.parametrize("case", ["match", "arrays", "bicubic"])
def test_other_cases_take_the_tiling_engine(pair, tmp_path, engine_calls, case):
    p, m = pair
    kw = dict(method="brovey", upsampling="cubic")
    if case == "match":
        kw["method_options"] = {"match": True}
    elif case == "bicubic":
        kw["upsampling"] = "bicubic"
    if case == "arrays":
        with rasterio.open(p) as a, rasterio.open(m) as b:
            out = pantiny.pansharpen(a.read(), b.read(), sensor="ikonos", **kw)
    else:
        out = pantiny.pansharpen(p, m, **kw)
    assert engine_calls == [] and out.shape == (4, 300, 260)


@pytest.fixture(scope="module")
def holed_pair(tmp_path_factory):
    """As ``pair``, with nodata 0 declared in both files: a slanted collar and a round hole, drawn
    on each grid on its own (the PAN's edge is not on MS pixel boundaries, as in real products)."""
    pan, ms, _ = make_scene(320, "ikonos", seed=11)
    pan, ms = pan[:, :300, :260].copy(), ms[:, :75, :65].copy()
    for a, f in ((pan, 1), (ms, 4)):
        yy, xx = np.mgrid[0:a.shape[1], 0:a.shape[2]] * f
        a[:, (xx + 0.7 * yy < 70) | ((xx - 170) ** 2 + (yy - 160) ** 2 < 35 ** 2)] = 0
    d = tmp_path_factory.mktemp("gdal_holed")
    p = write_tif(d / "p_pan.tif", pan, gsd=1.0, tags={"SENSOR": "IKONOS"}, nodata=0)
    m = write_tif(d / "p_ms.tif", ms, gsd=4.0, tags={"SENSOR": "IKONOS"}, nodata=0)
    return p, m


def test_nodata_files_take_gdals_engine_with_pantinys_nodata_rule(holed_pair, tmp_path, engine_calls, monkeypatch):
    """One nodata value for PAN and MS: GDAL's engine fuses, then pantiny's rule sets the mask (PAN
    nodata, or inside an MS pixel with every band at nodata; valid pixels never at the nodata value),
    identical to the tiling engine's. Away from holes the values agree as without nodata; within a
    few pixels of a hole each engine resamples the MS by its own hole rule (GDAL renormalises the
    cubic weights over valid pixels, pantiny fills holes from valid neighbours first)."""
    from scipy import ndimage

    p, m = holed_pair
    fast = pantiny.pansharpen(p, m, method="brovey", upsampling="cubic")
    assert len(engine_calls) == 1 and engine_calls[0][1]["nodata"] == 0.0
    ref = _tiling_engine(monkeypatch, p, m, method="brovey", upsampling="cubic")
    hole = (ref == 0).all(0)
    assert 0.1 < hole.mean() < 0.5
    assert np.array_equal((fast == 0).all(0), hole) and not (fast[:, ~hole] == 0).any()
    d = np.abs(fast.astype(np.int64) - ref.astype(np.int64)).max(0)
    dist = ndimage.distance_transform_edt(~hole)  # PAN pixels to the nearest hole pixel
    assert d[dist > 12].max() <= 1  # 3 MS pixels from any hole: as without nodata
    assert dist[d > 2].max() <= 8  # the differences sit within 2 MS pixels of a hole
    assert d[~hole].max() > 2  # the hole rules do differ next to holes: this is not the same path twice
    out = pantiny.pansharpen(p, m, method="brovey", upsampling="cubic", out=tmp_path / "f.tif")  # in strips
    with rasterio.open(out) as ds:
        assert ds.nodata == 0 and np.array_equal(ds.read(), fast)
    assert len(engine_calls) == 2


def test_nodata_cases_gdal_cannot_take(holed_pair, tmp_path, engine_calls):
    """GDAL masks every band on its own and takes one nodata value for all inputs: an MS pixel with
    some bands (not all) at nodata, or PAN and MS with different nodata values, take the tiling engine."""
    p, m = holed_pair
    with rasterio.open(m) as ds:
        ms, prof = ds.read(), ds.profile
    ms[2, 10, 60] = 0  # one dark band: data for pantiny, a hole in that band for GDAL
    m2 = tmp_path / "partial_ms.tif"
    with rasterio.open(m2, "w", **prof) as ds:
        ds.write(ms)
    out = pantiny.pansharpen(p, m2, method="brovey", upsampling="cubic")
    assert engine_calls == [] and (out[:, 40:44, 240:244] > 0).all()
    with rasterio.open(p) as ds:
        pan, prof = ds.read(), ds.profile
    prof.update(nodata=None)
    p2 = tmp_path / "pan_no_nodata.tif"
    with rasterio.open(p2, "w", **prof) as ds:
        ds.write(pan)
    pantiny.pansharpen(p2, m, method="brovey", upsampling="cubic")
    assert engine_calls == []


def test_pan_not_a_multiple_of_4_and_signed_data(tmp_path, engine_calls, monkeypatch):
    pan, ms, _ = make_scene(320, "ikonos", seed=5)
    p = write_tif(tmp_path / "p.tif", pan[:, :301, :259], gsd=1.0)  # MS 76 x 65 covers it (ceil)
    m = write_tif(tmp_path / "m.tif", ms[:, :76, :65], gsd=4.0)
    fast = pantiny.pansharpen(p, m, sensor="ikonos", method="brovey", upsampling="cubic")
    assert len(engine_calls) == 1 and fast.shape == (4, 301, 259)
    ref = _tiling_engine(monkeypatch, p, m, sensor="ikonos", method="brovey", upsampling="cubic")
    assert np.abs(fast.astype(np.int64) - ref.astype(np.int64)).max() <= 1
    # int16: GDAL would not clip negative resampled MS at 0 as Brovey does: the tiling engine runs
    p16 = write_tif(tmp_path / "p16.tif", pan[:, :300, :260].astype(np.int16), gsd=1.0)
    m16 = write_tif(tmp_path / "m16.tif", ms[:, :75, :65].astype(np.int16), gsd=4.0)
    pantiny.pansharpen(p16, m16, sensor="ikonos", method="brovey", upsampling="cubic")
    assert len(engine_calls) == 1


def test_extra_bands_carried_along_take_the_tiling_engine(tmp_path, engine_calls):
    pan, ms, _ = make_scene(128, "wv3", seed=3)  # 8 bands: 4 are model bands, 4 are carried along
    p, m = write_tif(tmp_path / "p.tif", pan, gsd=1.0), write_tif(tmp_path / "m.tif", ms, gsd=4.0)
    out = pantiny.pansharpen(p, m, sensor="wv3", method="brovey", upsampling="cubic", other_bands="upsample")
    assert engine_calls == [] and out.shape == (8, 128, 128)
    four = pantiny.pansharpen(p, m, sensor="wv3", method="brovey", upsampling="cubic")  # drop: GDAL, 4 bands
    assert len(engine_calls) == 1 and four.shape == (4, 128, 128)


@pytest.mark.parametrize("which", ["pair", "holed_pair"])
def test_brovey_cubic_never_imports_torch(which, request, tmp_path):
    p, m = request.getfixturevalue(which)  # without and with nodata
    out = tmp_path / "cli.tif"
    code = ("import sys, pantiny.cli as c; rc = c.main(['fuse', sys.argv[1], sys.argv[2], sys.argv[3], "
            "'--method', 'brovey', '--upsampling', 'cubic', '-q']); "
            "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch was imported'")
    env = dict(os.environ, PYTHONPATH=str(Path(pantiny.__file__).parents[1]))
    r = subprocess.run([sys.executable, "-c", code, str(p), str(m), str(out)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), pantiny.pansharpen(p, m, method="brovey", upsampling="cubic"))
        if which == "pair":
            assert np.array_equal(ds.read(), gdal_engine.brovey(p, m, [1, 2, 3, 4]))


@pytest.mark.realdata("ikonos_scene_pan.tif", "ikonos_scene_ms.tif")
def test_real_scene_gdal_engine_matches_tiling_engine(shared_data, monkeypatch):
    p, m = shared_data / "ikonos_scene_pan.tif", shared_data / "ikonos_scene_ms.tif"
    fast = pantiny.pansharpen(p, m, method="brovey", upsampling="cubic")
    ref = _tiling_engine(monkeypatch, p, m, method="brovey", upsampling="cubic")
    d = np.abs(fast.astype(np.int64) - ref.astype(np.int64))
    assert d.max() <= 2 and (d > 0).mean() < 0.001


@pytest.mark.realdata("ikonos_scene_pan.tif", "ikonos_scene_ms.tif")
def test_real_scene_with_nodata_gdal_engine_matches_tiling_engine(shared_data, tmp_path, monkeypatch):
    """The README's figures for nodata scenes: the real IKONOS pair with a slanted collar and a round
    hole cut into both files (each on its own grid) and nodata 0 declared: identical nodata mask,
    < 0.2 % of valid values more than 2 DN apart, all within 2 MS pixels of a hole, <= 1 DN beyond 12."""
    from scipy import ndimage

    paths = []
    for name, f in (("pan", 1), ("ms", 4)):
        with rasterio.open(shared_data / f"ikonos_scene_{name}.tif") as ds:
            a, prof = ds.read(), ds.profile
        yy, xx = np.mgrid[0:a.shape[1], 0:a.shape[2]] / a.shape[1]  # the same shapes on both (square) grids
        a[:, (xx + 0.7 * yy < 0.25) | ((xx - 0.6) ** 2 + (yy - 0.6) ** 2 < 0.01)] = 0
        prof.update(nodata=0)
        paths.append(tmp_path / f"{name}.tif")
        with rasterio.open(paths[-1], "w", **prof) as ds:
            ds.write(a)
    fast = pantiny.pansharpen(*paths, method="brovey", upsampling="cubic")
    ref = _tiling_engine(monkeypatch, *paths, method="brovey", upsampling="cubic")
    hole = (ref == 0).all(0)
    assert np.array_equal((fast == 0).all(0), hole) and not (fast[:, ~hole] == 0).any()
    d = np.abs(fast.astype(np.int64) - ref.astype(np.int64))
    dist = ndimage.distance_transform_edt(~hole)
    assert (d[:, ~hole] > 2).mean() < 0.002
    assert dist[(d > 2).any(0)].max() <= 8 and d[:, dist > 12].max() <= 1
