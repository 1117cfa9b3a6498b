import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from conftest import REPO

from pantiny.cli import find_pairs, main

SAMPLE = REPO / "examples" / "data"


def _crop(src, dst, size):
    """Top-right size x size corner of a GeoTIFF (away from the sample's nodata wedge), georeferenced."""
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        win = Window(ds.width - size, 0, size, size)
        profile = dict(ds.profile, width=size, height=size, transform=ds.window_transform(win))
        with rasterio.open(dst, "w", **profile) as out:
            out.write(ds.read(window=win))
            out.update_tags(**ds.tags())


def _small_pair(folder, stem):
    """A 128x128 PAN / 32x32 MS crop of the sample: the batch tests exercise the loop, not the model."""
    _crop(SAMPLE / "sample_pan.tif", folder / f"{stem}_pan.tif", 128)
    _crop(SAMPLE / "sample_ms.tif", folder / f"{stem}_ms.tif", 32)


@pytest.mark.slow
def test_fuse_sample_scene_keeps_georeferencing(tmp_path, random_weights, capsys):
    out = tmp_path / "fused.tif"
    rc = main(["fuse", str(SAMPLE / "sample_pan.tif"), str(SAMPLE / "sample_ms.tif"), str(out),
               "--model", str(random_weights), "--tile", "256", "-q"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    with rasterio.open(SAMPLE / "sample_pan.tif") as p, rasterio.open(SAMPLE / "sample_ms.tif") as m, \
            rasterio.open(out) as o:
        assert o.crs == p.crs and o.transform == p.transform
        assert o.dtypes[0] == m.dtypes[0] and o.nodata == m.nodata and o.count == 4
        fused, pan = o.read(), p.read(1)
    assert (fused[:, pan == 0] == 0).all()  # the sample's nodata corner stays nodata


def test_batch_mode_over_a_folder(tmp_path, random_weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for stem in ("a", "b"):
        _small_pair(src, stem)
    (src / "c_pan.tif").write_bytes(b"unpaired")  # no c_ms.tif: reported, not silently skipped
    orphans = []
    assert [s for _, _, s in find_pairs(src, orphans)] == ["a", "b"]
    assert [(p.name, m.name) for p, m in orphans] == [("c_pan.tif", "c_ms.tif")]
    rc = main(["fuse", str(src), str(tmp_path / "out"), "--model", str(random_weights), "-q"])
    cap = capsys.readouterr()
    assert rc == 1  # something was skipped: a pipeline must notice
    assert "c_pan.tif: no MS partner c_ms.tif" in cap.err
    assert "fused 2/2 scenes" in cap.out and "1 PAN file(s) without MS skipped" in cap.out
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outs == ["a_fused.json", "a_fused.tif", "b_fused.json", "b_fused.tif"]  # + one report per scene
    with rasterio.open(tmp_path / "out" / "a_fused.tif") as a, rasterio.open(tmp_path / "out" / "b_fused.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_batch_mode_reports_a_bad_scene_and_fails(tmp_path, random_weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _small_pair(src, "ok")
    _small_pair(src, "bad")
    shutil.copy(src / "bad_pan.tif", src / "bad_ms.tif")  # 1-band "MS"
    rc = main(["fuse", str(src), str(tmp_path / "out"), "--model", str(random_weights), "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "bad:" in err
    assert (tmp_path / "out" / "ok_fused.tif").exists() and not (tmp_path / "out" / "bad_fused.tif").exists()


def test_errors_are_one_line_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pantiny.cli", "fuse", str(SAMPLE / "sample_pan.tif"),
                        str(tmp_path / "missing_ms.tif"), str(tmp_path / "o.tif")], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "no such raster file" in r.stderr


def test_info_lists_manifest_and_device(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "device:" in out and "manifest:" in out and "wv3" in out
