"""Hostile inputs through both the API and the CLI: each gives a clear error (or the documented
result), never modifies an input file, and leaves nothing behind in the output folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tif

from pantiny import pansharpen
from pantiny.cli import main
from pantiny.synthetic import make_scene


def _digest(paths):
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths if Path(p).is_file()}


def _case(tmp: Path, name: str):
    """(pan path, ms path, out path, extra kwargs, expected message pattern)."""
    pan, ms, _ = make_scene(64, "ikonos", seed=3)
    good_pan = write_tif(tmp / "pan.tif", pan, gsd=0.5, tags={"SENSOR": "IKONOS"})
    good_ms = write_tif(tmp / "ms.tif", ms, gsd=2.0, tags={"SENSOR": "IKONOS"})
    out = tmp / "out" / "fused.tif"
    if name == "missing_pan":
        return tmp / "nope.tif", good_ms, out, {}, "no such raster file"
    if name == "not_a_raster":
        (tmp / "text.tif").write_text("hello")
        return tmp / "text.tif", good_ms, out, {}, "cannot read .*text.tif as a raster"
    if name == "truncated_pan":
        data = good_pan.read_bytes()
        (tmp / "trunc.tif").write_bytes(data[: len(data) // 2])
        return tmp / "trunc.tif", good_ms, out, {}, "trunc.tif"
    if name == "wrong_ratio":
        bad = write_tif(tmp / "ms3.tif", ms, gsd=1.5)
        return good_pan, bad, out, {}, "not the ratio 4"
    if name == "crs_mismatch":
        bad = write_tif(tmp / "ms_crs.tif", ms, gsd=2.0, crs="EPSG:32634")
        return good_pan, bad, out, {}, "do not overlap"  # same numbers, next UTM zone: 600 km east
    if name == "shifted_extent":
        bad = write_tif(tmp / "ms_shift.tif", ms, gsd=2.0, origin=(510004.0, 4200000.0))  # 10 km east
        return good_pan, bad, out, {}, "do not overlap"
    if name == "band_count":
        bad = write_tif(tmp / "ms3b.tif", ms[:3], gsd=2.0)
        return good_pan, bad, out, {}, "3 bands"
    if name == "nan_ms":
        f = ms.astype(np.float32) / 2047
        f[0, 3, 3] = np.nan
        return (write_tif(tmp / "pf.tif", pan.astype(np.float32) / 2047, gsd=0.5),
                write_tif(tmp / "mf.tif", f, gsd=2.0), out, {}, "NaN or infinite")
    if name == "float_no_scale":
        return (write_tif(tmp / "pf.tif", pan.astype(np.float32), gsd=0.5),
                write_tif(tmp / "mf.tif", ms.astype(np.float32), gsd=2.0), out, {}, "pass scale=")
    if name == "all_nodata":
        z = write_tif(tmp / "mz.tif", np.zeros_like(ms), gsd=2.0, nodata=0)
        return good_pan, z, out, {}, "no valid pixel"
    if name == "out_over_input":
        return good_pan, good_ms, good_ms, {}, "over an input"
    if name == "missing_out_folder":
        return good_pan, good_ms, tmp / "no" / "such" / "f.tif", {}, "output folder does not exist"
    if name == "unknown_sensor":
        return good_pan, good_ms, out, {"sensor": "landsat9"}, "unknown sensor"
    raise AssertionError(name)


CASES = ["missing_pan", "not_a_raster", "truncated_pan", "wrong_ratio", "crs_mismatch", "shifted_extent",
         "band_count", "nan_ms", "float_no_scale", "all_nodata", "out_over_input", "missing_out_folder",
         "unknown_sensor"]


@pytest.mark.parametrize("via", ["api", "cli"])
@pytest.mark.parametrize("name", CASES)
def test_hostile_input(tmp_path, name, via, capsys):
    pan, ms, out, kw, pattern = _case(tmp_path, name)
    (tmp_path / "out").mkdir()
    before = _digest([pan, ms])
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    if via == "api":
        with pytest.raises((ValueError, OSError, RuntimeError), match=pattern):
            pansharpen(str(pan), str(ms), out=out, method="brovey", **kw)
    else:
        argv = ["fuse", str(pan), str(ms), str(out), "--method", "brovey", "-q"]
        if "sensor" in kw:
            argv += ["--sensor", kw["sensor"]]
        if name == "unknown_sensor":  # an option value argparse validates: a usage error (exit 2)
            with pytest.raises(SystemExit) as e:
                main(argv)
            assert e.value.code == 2
            err = [line for line in capsys.readouterr().err.strip().splitlines() if "error:" in line]
        else:
            rc = main(argv)
            err = capsys.readouterr().err.strip().splitlines()
            assert rc == 1
            assert err[0].startswith("pantiny: error: ")
        assert len(err) == 1
        import re

        assert re.search(pattern, err[0]), err[0]
    assert _digest([pan, ms]) == before  # inputs byte-identical
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing  # no output, no temporary, no lock
