"""Lazy fusion of xarray / Dask scenes (issue #13): chunked fusion on a 2-worker LocalCluster equals
in-memory fusion on a scene several chunks wide."""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")  # the [test] extra installs it: CI never skips these
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
rioxarray = pytest.importorskip("rioxarray")

import pantiny  # noqa: E402
import pantiny.xarray as px  # noqa: E402
from pantiny.synthetic import make_scene  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes, as a small real cluster."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            Client(lc) as client:
        yield client


def _arrays(h, w, seed=3):
    """A synthetic QuickBird-like scene cropped to (1,h,w) / (4,h/4,w/4)."""
    pan, ms, _ = make_scene(max(h, w), sensor="qb", seed=seed)
    return np.ascontiguousarray(pan[:, :h, :w]), np.ascontiguousarray(ms[:, :h // 4, :w // 4])


def _dataarrays(pan, ms, chunk):
    from rasterio.transform import from_origin

    h, w = pan.shape[-2:]
    x = 500000 + 0.5 * (np.arange(w) + 0.5)
    y = 4000000 - 0.5 * (np.arange(h) + 0.5)
    pda = xr.DataArray(pan.reshape(1, h, w), dims=("band", "y", "x"), coords={"y": y, "x": x}).chunk(
        {"y": chunk, "x": chunk})
    mda = xr.DataArray(ms, dims=("band", "y", "x"),
                       coords={"y": 4000000 - 2.0 * (np.arange(ms.shape[1]) + 0.5),
                               "x": 500000 + 2.0 * (np.arange(ms.shape[2]) + 0.5)}).chunk({"y": chunk // 4, "x": chunk // 4})
    pda = pda.rio.write_crs("EPSG:32633")
    mda = mda.rio.write_crs("EPSG:32633")
    assert pda.rio.transform() == from_origin(500000, 4000000, 0.5, 0.5)
    return pda, mda


@pytest.mark.parametrize("method", ["brovey", "mtf-glp", "gsa"])
def test_chunked_classical_fusion_equals_in_memory_bit_for_bit(cluster, method):
    pan, ms = _arrays(384, 512)
    pda, mda = _dataarrays(pan, ms, 128)
    lazy = px.pansharpen(pda, mda, method=method, sensor="qb", chunks=128)
    assert lazy.chunks is not None and len(lazy.chunks[1]) == 3 and len(lazy.chunks[2]) == 4  # 3 x 4 blocks
    got = lazy.compute()
    want = pantiny.pansharpen(pan, ms, method=method, sensor="qb")
    np.testing.assert_array_equal(got.values, want)
    assert got.rio.crs.to_epsg() == 32633 and list(got.band.values) == ["B", "G", "R", "NIR"]
    np.testing.assert_array_equal(got.x.values, pda.x.values)


@pytest.mark.slow
def test_chunked_model_fusion_equals_in_memory(cluster):
    """Whole-scene attention gathered as a reduction over blocks on 2 workers: the exact mode."""
    pan, ms = _arrays(256, 384)
    pda, mda = _dataarrays(pan, ms, 128)
    lazy = px.pansharpen(pda, mda, sensor="qb", chunks=128, tile=128)
    got = lazy.compute().values
    want = pantiny.pansharpen(pan, ms, sensor="qb", tile=128)
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


def test_chunked_model_fusion_in_bfloat16(cluster):
    """precision reaches the workers (sums and fusion): near the in-memory bfloat16 result, not float32's."""
    pan, ms = _arrays(256, 256, seed=4)
    pda, mda = _dataarrays(pan, ms, 128)
    got = px.pansharpen(pda, mda, sensor="qb", chunks=128, tile=128, precision="bfloat16").compute().values
    half = pantiny.pansharpen(pan, ms, sensor="qb", tile=128, precision="bfloat16")
    full = pantiny.pansharpen(pan, ms, sensor="qb", tile=128)
    to_half = np.abs(got.astype(np.int64) - half.astype(np.int64)).mean()
    to_full = np.abs(got.astype(np.int64) - full.astype(np.int64)).mean()
    assert to_half < 0.5 * to_full, (to_half, to_full)


def test_nodata_and_eager_arrays(cluster):
    pan, ms = _arrays(256, 256, seed=5)
    ms = ms.copy()
    ms[:, :8, :8] = 0
    pda = xr.DataArray(pan.reshape(1, 256, 256), dims=("band", "y", "x"))
    mda = xr.DataArray(ms, dims=("band", "y", "x"))
    got = px.pansharpen(pda, mda, method="brovey", sensor="qb", nodata=0, chunks=96).compute().values
    want = pantiny.pansharpen(pan, ms, method="brovey", sensor="qb", nodata=0)
    np.testing.assert_array_equal(got, want)
    assert (got[:, :32, :32] == 0).all()


def test_bad_inputs_are_clear():
    pan, ms = _arrays(64, 64)
    with pytest.raises(ValueError, match="DataArrays"):
        px.pansharpen(pan, ms)
    with pytest.raises(ValueError, match="size mismatch"):
        px.pansharpen(xr.DataArray(pan.reshape(1, 64, 64), dims=("band", "y", "x")),
                      xr.DataArray(ms[:, :8], dims=("band", "y", "x")), method="brovey")


def _pair_files(folder, stem, seed):
    import rasterio
    from rasterio.transform import from_origin

    pan, ms = _arrays(128, 128, seed=seed)
    for suffix, arr, gsd in (("pan", pan, 0.5), ("ms", ms, 2.0)):
        with rasterio.open(folder / f"{stem}_{suffix}.tif", "w", driver="GTiff", count=arr.shape[0],
                           height=arr.shape[1], width=arr.shape[2], dtype=arr.dtype, crs="EPSG:32633",
                           transform=from_origin(500000, 4000000, gsd, gsd)) as ds:
            ds.write(arr)
    return pan, ms


def test_batch_on_a_local_cluster_survives_a_corrupt_scene(tmp_path, capsys):
    import json

    from pantiny.cli import main

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    pans = {stem: _pair_files(src, stem, seed) for seed, stem in enumerate(("a", "b", "c"))}
    (src / "b_ms.tif").write_bytes((src / "b_ms.tif").read_bytes()[:300])  # truncated file
    rc = main(["fuse", str(src), str(out), "--method", "brovey", "--sensor", "qb", "--dask", "--dask-workers", "2",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "b:" in err and "local Dask cluster" in err
    for stem in ("a", "c"):
        import rasterio

        with rasterio.open(out / f"{stem}_fused.tif") as ds:
            got = ds.read()
        pan, ms = pans[stem]
        np.testing.assert_array_equal(got, pantiny.pansharpen(pan, ms, method="brovey", sensor="qb"))
        assert json.loads((out / f"{stem}_fused.json").read_text())["error"] is None
    assert not (out / "b_fused.tif").exists()
    assert json.loads((out / "b_fused.json").read_text())["error"]
    assert not [p for p in out.iterdir() if p.name.startswith(".") or "tmp" in p.name]


def test_workers_load_named_weights_once(tmp_path):
    from pantiny import dask_batch

    dask_batch._load_cached.cache_clear()
    for stem in ("a", "b"):
        _pair_files(tmp_path, stem, 1)
        res = dask_batch.fuse_one(str(tmp_path / f"{stem}_pan.tif"), str(tmp_path / f"{stem}_ms.tif"),
                                  str(tmp_path / f"{stem}_out.tif"), {"sensor": "qb", "tile": 128})
        assert res["error"] is None
    info = dask_batch._load_cached.cache_info()
    assert (info.misses, info.hits) == (1, 1)
