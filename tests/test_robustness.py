"""Issue #9: nodata values other than 0, non-finite network output, scale choice, output file mode,
the default model's message, truncated files, degenerate scenes and concurrent writes."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import rasterio
import torch
from conftest import write_tif

from pantiny import pansharpen
from pantiny._atomic import _lock
from pantiny.cli import build_parser, main
from pantiny.errors import InputError, ModelOutputError, OutputLockedError
from pantiny.models import build_model
from pantiny.synthetic import make_scene


def _bordered(nodata: int, border: int = 16):
    """A 256x256 11-bit WV3-like scene with an MS (and PAN) nodata frame ``border`` MS pixels wide."""
    pan, ms, _ = make_scene(256, "wv3", seed=5)
    pan, ms = pan.copy(), ms.copy()
    ms[:, :border], ms[:, :, :border] = nodata, nodata
    pan[:, :4 * border], pan[:, :, :4 * border] = nodata, nodata
    return pan, ms


@pytest.fixture(scope="module")
def big_model():
    torch.manual_seed(0)
    return build_model("pantiny-big").eval()


@pytest.mark.parametrize("method", ["pantiny", "brovey", "mtf-glp"])
def test_nodata_value_does_not_leak_into_valid_pixels(method, big_model):
    outs = {}
    for nd in (0, 65535):
        pan, ms = _bordered(nd)
        outs[nd] = pansharpen(pan, ms, sensor="wv3", method=method, model=big_model, nodata=nd, tile=128,
                              overlap=64, device="cpu")
    valid = outs[0][0] != 0
    assert valid.sum() == (256 - 64) ** 2 and (outs[65535][:, ~valid] == 65535).all()
    # The nodata DN is never data: the same scene with nodata 0 or 65535 gives the same valid pixels
    # (except that a valid 0 is nudged to 1 when 0 is the nodata value).
    a, b = outs[0][:, valid], outs[65535][:, valid]
    np.testing.assert_array_equal(a[b != 0], b[b != 0])
    assert (a[b == 0] == 1).all()


@pytest.mark.slow
def test_scene_attention_ignores_nodata_pixels(big_model):
    """Two scenes that differ only under an MS nodata hole (the PAN there is noise in one of them):
    beyond the network's reach of the hole, the outputs are identical, because the whole-scene
    attention statistics count valid pixels only."""
    pan, ms, _ = make_scene(256, "wv3", seed=6)
    ms = ms.copy()
    ms[:, 8:24, 8:24] = 0  # hole: MS nodata over PAN rows/cols 32..95
    pan_b = pan.copy()
    pan_b[:, 32:96, 32:96] = np.random.default_rng(0).integers(0, 2047, (1, 64, 64))
    kw = dict(sensor="wv3", model=big_model, nodata=0, tile=128, overlap=64, device="cpu")
    a = pansharpen(pan, ms, **kw).astype(int)
    b = pansharpen(pan_b, ms, **kw).astype(int)
    reach = 96 + big_model.receptive_radius + 4 * 5  # the hole, the network's radius, bicubic + fill
    # (1 DN: float summation order of the tiled passes, as for tiled vs untiled)
    assert np.abs(a[:, reach:, :] - b[:, reach:, :]).max() <= 1
    assert np.abs(a[:, :, reach:] - b[:, :, reach:]).max() <= 1
    assert (a[:, 32:96, 32:96] == 0).all()


def test_nan_inside_the_network_is_an_error_naming_the_cause(tmp_path, tif_pair):
    net = build_model("pantiny-big").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1e30)
    pan, ms = tif_pair
    with pytest.raises(ModelOutputError, match="NaN or infinite"):
        pansharpen(str(pan), str(ms), model=net, device="cpu", out=tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.tif")]


def _fuse_scale(pan, ms, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = pansharpen(pan, ms, method="brovey", **kw)
    return out, [str(x.message) for x in w]


def test_float_reflectance_in_8_bands_without_sensor_is_scale_1(scene_wv3):
    pan, ms, _ = scene_wv3
    pan_f, ms_f = (pan / 2047.0).astype(np.float32), (ms / 2047.0).astype(np.float32)
    out, _ = _fuse_scale(pan_f, ms_f)
    ref, _ = _fuse_scale(pan, ms, sensor="wv3")
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() < 1.5
    np.testing.assert_allclose(out * 2047.0, ref, atol=1.0)


def test_uint8_is_scaled_by_255_even_with_an_11_bit_sensor_tag(scene_wv3, caplog):
    pan, ms, _ = scene_wv3
    pan8, ms8 = (pan // 8).astype(np.uint8), (ms // 8).astype(np.uint8)
    with caplog.at_level("INFO", logger="pantiny"):
        out, msgs = _fuse_scale(pan8, ms8, sensor="wv3")
    assert "value scale 255 (uint8 data)" in caplog.text and "sensor wv3 (given)" in caplog.text
    assert not msgs
    assert (out == 255).mean() < 0.03  # only real highlights clip (45 % with the 11-bit scale)
    nir = out[3].astype(float).mean() / ms8[6].astype(float).mean()
    assert 0.8 < nir < 1.25  # NIR keeps its level (was at 1.4 % of its mean)


def test_values_beyond_the_nominal_range_warn(scene_wv3):
    pan, ms, _ = scene_wv3
    _, msgs = _fuse_scale(pan * 2, ms * 2, sensor="wv3")  # 12-bit data tagged as 11-bit WV3
    assert any("above the value scale 2047" in m for m in msgs)
    _, msgs = _fuse_scale(pan, ms, sensor="wv3")
    assert not msgs


def test_float_data_above_one_without_sensor_is_refused(scene_wv3):
    pan, ms, _ = scene_wv3
    with pytest.raises(InputError, match="pass scale="):
        pansharpen(pan.astype(np.float32), ms.astype(np.float32), method="brovey")


def test_outputs_honour_the_umask(tmp_path, tif_pair):
    pan, ms = tif_pair
    old = os.umask(0o022)
    try:
        out = pansharpen(str(pan), str(ms), method="brovey", out=tmp_path / "f.tif")
    finally:
        os.umask(old)
    assert (os.stat(out).st_mode & 0o777) == 0o644


def test_the_default_model_always_resolves_and_is_named_in_the_log(scene_4band, caplog):
    from pantiny.weights import load_manifest

    pan, ms, _ = scene_4band
    with caplog.at_level("INFO", logger="pantiny"):
        out = pansharpen(pan[:, :64, :64], ms[:, :16, :16], sensor="ikonos", attention="tile")
    assert out.shape == (4, 64, 64)
    assert f"weights {load_manifest()['default']} (" in caplog.text
    help_text = build_parser()._subparsers._group_actions[0].choices["fuse"].format_help()
    assert "(default:pantiny-big;" in "".join(help_text.split())


def test_a_truncated_cog_is_a_clear_error_naming_the_file(tmp_path, scene_wv3):
    pan, ms, _ = scene_wv3
    p = write_tif(tmp_path / "t_pan.tif", pan, gsd=0.5)
    m = write_tif(tmp_path / "t_ms.tif", ms, gsd=2.0)
    cog = tmp_path / "cog_pan.tif"
    with rasterio.open(p) as src:
        profile = dict(src.profile, driver="COG", compress="deflate")
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        with rasterio.open(cog, "w", **profile) as dst:
            dst.write(src.read())
    data = cog.read_bytes()
    cog.write_bytes(data[: len(data) * 2 // 3])
    before = cog.read_bytes()
    with pytest.raises(InputError, match=r"cog_pan\.tif.*truncated or corrupt"):
        pansharpen(str(cog), str(m), method="brovey", out=tmp_path / "o.tif")
    assert cog.read_bytes() == before and not (tmp_path / "o.tif").exists()
    rc = main(["fuse", str(cog), str(m), str(tmp_path / "o.tif"), "--method", "brovey", "-q"])
    assert rc == 1


def test_constant_scenes_warn():
    pan = np.full((1, 64, 64), 700, np.uint16)
    ms = np.full((4, 16, 16), 600, np.uint16)
    with pytest.warns(UserWarning, match="zero variance"):
        pansharpen(pan, ms, method="brovey", sensor="ikonos")


def test_all_nodata_ms_is_refused():
    pan = np.full((1, 64, 64), 700, np.uint16)
    ms = np.zeros((4, 16, 16), np.uint16)
    with pytest.raises(InputError, match="no valid pixel"):
        pansharpen(pan, ms, method="brovey", sensor="ikonos", nodata=0)


def test_a_second_concurrent_writer_fails_and_the_first_wins(tmp_path, tif_pair):
    pan, ms = tif_pair
    out = tmp_path / "f.tif"
    with _lock(out):  # another process is writing out
        with pytest.raises(OutputLockedError, match="being written by another process"):
            pansharpen(str(pan), str(ms), method="brovey", out=out)
        assert not out.exists()
    pansharpen(str(pan), str(ms), method="brovey", out=out)  # lock released: fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tif", "scene_ms.tif", "scene_pan.tif"]


def test_no_overwrite_never_replaces_a_file_that_appears_while_writing(tmp_path):
    from pantiny._atomic import atomic_path

    target = tmp_path / "x.bin"
    with pytest.raises(FileExistsError, match="appeared while writing"):
        with atomic_path(target, overwrite=False) as tmp:
            open(tmp, "wb").write(b"new")
            target.write_bytes(b"theirs")  # another writer finished first
    assert target.read_bytes() == b"theirs" and sorted(os.listdir(tmp_path)) == ["x.bin"]


def test_no_overwrite_refuses_an_existing_output_and_leaves_it(tmp_path, tif_pair):
    pan, ms = tif_pair
    out = tmp_path / "f.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="output exists"):
        pansharpen(str(pan), str(ms), method="brovey", out=out, overwrite=False)
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tif", "scene_ms.tif", "scene_pan.tif"]
