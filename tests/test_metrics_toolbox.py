"""Issue #10: toolbox parity (MTF kernel in HQNR, SCC, border cut, th_values, flag_orig_paper),
nodata masking, grid checks of GeoTIFF inputs, and degenerate (zero-variance / all-nodata) input.

Every feature is tested on synthetic data made here; the checks on ``../shared/data`` are extras.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, write_tif
from test_metrics import (
    detail_injection,
    ref_imresize_down,
    ref_interp23tap,
    ref_q4_block,
    ref_q_blocks,
    ref_toolbox_dl_ds,
)
from test_mtf import ref_toolbox_kernel

from pantiny.cli import main
from pantiny.metrics import (
    TOOLBOX_CROP,
    DegenerateInputWarning,
    d_lambda,
    d_lambda_k,
    expand_ms,
    psnr,
    qnr,
    reduced_resolution,
    sam,
    scc,
)
from pantiny.mtf import mtf_filter
from pantiny.sensors import get_sensor
from pantiny.synthetic import make_scene

ND = 65535


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    """IKONOS-like 4-band 11-bit scene: pan (1,128,128), ms (4,32,32), gt (4,128,128) uint16."""
    return make_scene(128, "ikonos", seed=3)


def _noisy(gt: np.ndarray, sigma: float = 25.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(gt + rng.normal(0, sigma, gt.shape), 0, 2047).astype(np.uint16)


def _border(x: np.ndarray, b: int, value: int = ND) -> np.ndarray:
    return np.pad(x, ((0, 0), (b, b), (b, b)), constant_values=value)


# --------------------------------------------------------------------------------------------------
# HQNR with the toolbox MTF filter, against the toolbox formulas written out
# --------------------------------------------------------------------------------------------------

def _matlab_uint16(x: np.ndarray) -> np.ndarray:
    """MATLAB uint16(): round half away from zero, saturate to 0..65535."""
    return np.clip(np.floor(np.abs(x) + 0.5) * np.sign(x), 0, 65535)


def ref_hqnr(fused: np.ndarray, ms: np.ndarray, pan: np.ndarray, gains, s: int = 32) -> tuple:
    """HQNR.m: D_lambda_K.m (MTF.m with the genMTF kernel, imfilter 'replicate'; q2n.m on S x S
    blocks with the uint16 cast) and D_s.m (flag_orig_paper = 0), with loops."""
    f = np.asarray(fused, float)
    c, h, w = f.shape
    e = ref_interp23tap(ms, 4)
    fm = np.zeros_like(f)
    for b in range(c):
        k = ref_toolbox_kernel(gains[b], 4)
        xp = np.pad(f[b], 20, mode="edge")
        for i in range(41):
            for j in range(41):
                fm[b] += k[i, j] * xp[i:i + h, j:j + w]
    eu, fu = _matlab_uint16(e), _matlab_uint16(fm)
    q = [ref_q4_block(eu[:, i:i + s, j:j + s], fu[:, i:i + s, j:j + s])
         for i in range(0, h, s) for j in range(0, w, s)]
    dlk = 1 - float(np.mean(q))
    _, ds = ref_toolbox_dl_ds(f, ms, pan, s)
    return dlk, ds, (1 - dlk) * (1 - ds)


def test_hqnr_equals_toolbox_formulas_on_a_small_scene(small):
    pan, ms, gt = small
    fused = detail_injection(pan, ms)
    gains = get_sensor("ikonos").mtf_ms
    dlk, ds, hqnr = ref_hqnr(fused, ms, pan, gains)
    r = qnr(fused, ms, pan, sensor="ikonos", hqnr=True)
    assert r.d_lambda_k == pytest.approx(dlk, abs=1e-9)
    assert r.d_s == pytest.approx(ds, abs=1e-9)
    assert r.hqnr == pytest.approx(hqnr, abs=1e-9)
    assert d_lambda_k(fused, ms, sensor="ikonos") == pytest.approx(dlk, abs=1e-9)
    # the normalised simulation filter (pantiny.mtf.mtf_filter), used before, is measurably off
    fm_old = mtf_filter(torch.from_numpy(fused)[None], gains, 4)[0]
    from pantiny.metrics import q2n_index

    old = 1 - q2n_index(expand_ms(ms), fm_old, 32, 32, as_uint16=True)[0]
    assert abs(old - dlk) > 1e-4


# --------------------------------------------------------------------------------------------------
# SCC, border cut, th_values
# --------------------------------------------------------------------------------------------------

def ref_scc(f: np.ndarray, g: np.ndarray) -> float:
    """SCC.m with loops: 1-pixel border cut, Sobel magnitude with zero padding, global correlation."""
    def mag(x):
        x = np.pad(np.asarray(x, float)[:, 1:-1, 1:-1], ((0, 0), (1, 1), (1, 1)))
        c, h, w = x.shape
        out = np.zeros((c, h - 2, w - 2))
        for b in range(c):
            for i in range(1, h - 1):
                for j in range(1, w - 1):
                    p = x[b, i - 1:i + 2, j - 1:j + 2]
                    gy = p[0, 0] + 2 * p[0, 1] + p[0, 2] - p[2, 0] - 2 * p[2, 1] - p[2, 2]
                    gx = p[0, 0] + 2 * p[1, 0] + p[2, 0] - p[0, 2] - 2 * p[1, 2] - p[2, 2]
                    out[b, i - 1, j - 1] = math.hypot(gx, gy)
        return out
    a, b = mag(f), mag(g)
    return float((a * b).sum() / math.sqrt((a * a).sum()) / math.sqrt((b * b).sum()))


def test_scc_hand_values_and_loops():
    # 4x4 images: only the inner 2x2 counts; zero padding around it (imfilter's default)
    f = np.zeros((1, 4, 4))
    f[0, 1:3, 1:3] = [[1, 2], [3, 4]]
    g = np.zeros((1, 4, 4))
    g[0, 1:3, 1:3] = 1.0
    # |grad f| = sqrt(10^2+8^2), sqrt(11^2+5^2), sqrt(4^2+10^2), sqrt(5^2+7^2); |grad g| = sqrt(18) everywhere
    expected = (math.sqrt(164) + math.sqrt(146) + math.sqrt(116) + math.sqrt(74)) / (2 * math.sqrt(500))
    assert scc(f, g) == pytest.approx(expected, abs=1e-15)
    assert scc(g, f) == pytest.approx(expected, abs=1e-15)
    assert scc(f, f) == pytest.approx(1.0, abs=1e-15)
    assert scc(3 * f, f) == pytest.approx(1.0, abs=1e-15)  # proportional gradients
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 100, (3, 9, 11)), rng.uniform(0, 100, (3, 9, 11))
    assert scc(x, y) == pytest.approx(ref_scc(x, y), abs=1e-12)
    assert scc(x, y, crop=(1, 2)) == pytest.approx(ref_scc(x[:, 1:-2, 1:-2], y[:, 1:-2, 1:-2]), abs=1e-12)
    with pytest.warns(DegenerateInputWarning, match="no gradient"):
        assert math.isnan(scc(np.zeros((2, 8, 8)), x[:2, :8, :8]))
    with pytest.raises(ValueError, match="3x3"):
        scc(x[:, :2, :2], y[:, :2, :2])
    x, y = rng.uniform(0, 100, (3, 24, 20)), rng.uniform(0, 100, (3, 24, 20))
    rr = reduced_resolution(x, y, data_range=100, block=8)
    assert rr["scc"] == pytest.approx(ref_scc(x, y), abs=1e-12)


def test_toolbox_crop_is_20_before_and_21_after():
    assert TOOLBOX_CROP == (20, 21)
    rng = np.random.default_rng(2)
    g = rng.uniform(0, 2047, (3, 80, 70))
    f = g + rng.normal(0, 30, g.shape)
    # MATLAB I(dim_cut:end-dim_cut, ...) with dim_cut = 21 (1-based, end inclusive)
    d = 21
    cut = (slice(None), slice(d - 1, g.shape[1] - d), slice(d - 1, g.shape[2] - d))
    assert f[cut].shape == (3, 80 - 41, 70 - 41)
    assert psnr(f, g, 2047, crop="toolbox") == pytest.approx(psnr(f[cut], g[cut], 2047), abs=1e-12)
    assert sam(f, g, crop="toolbox") == pytest.approx(sam(f[cut], g[cut]), abs=1e-12)
    assert scc(f, g, crop="toolbox") == pytest.approx(scc(f[cut], g[cut]), abs=1e-12)
    assert reduced_resolution(f, g, crop="toolbox", block=8) == reduced_resolution(f[cut], g[cut], block=8)
    with pytest.raises(ValueError, match="'toolbox'"):
        psnr(f, g, 2047, crop="matlab")


def test_clip_bits_is_the_toolbox_th_values_option(small):
    pan, ms, gt = small
    rng = np.random.default_rng(3)
    f = gt + rng.normal(0, 300, gt.shape)  # overshoots below 0 and above 2^11
    assert f.min() < 0 and f.max() > 2048
    clipped = np.clip(f, 0, 2048)
    rr = reduced_resolution(f, gt, clip_bits=11)
    assert rr == reduced_resolution(clipped, gt)
    assert rr["psnr"] != reduced_resolution(f, gt)["psnr"]
    a, b = qnr(f, ms, pan, sensor="ikonos", hqnr=True, clip_bits=11), qnr(clipped, ms, pan, sensor="ikonos", hqnr=True)
    assert (a.d_lambda, a.d_s, a.d_lambda_k) == (b.d_lambda, b.d_s, b.d_lambda_k)
    assert a.d_s != qnr(f, ms, pan).d_s
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="clip_bits"):
            qnr(f, ms, pan, clip_bits=bad)
        with pytest.raises(ValueError, match="clip_bits"):
            reduced_resolution(f, gt, clip_bits=bad)


# --------------------------------------------------------------------------------------------------
# flag_orig_paper = 1
# --------------------------------------------------------------------------------------------------

def test_orig_paper_variant_matches_loops(small):
    """D_lambda.m / D_s.m with flag_orig_paper = 1: reference Q's of the MS itself on S/ratio
    blocks at the MS scale; PAN reference = imresize(PAN, 1/ratio)."""
    pan, ms, gt = small
    f = _noisy(gt, 40).astype(float)
    m = ms.astype(float)
    p_lr = ref_imresize_down(pan.astype(float), 4)[0]
    c = f.shape[0]
    dl = np.mean([abs(ref_q_blocks(f[i], f[j], 32) - ref_q_blocks(m[i], m[j], 8))
                  for i in range(c) for j in range(i + 1, c)])
    ds = np.mean([abs(ref_q_blocks(f[b], pan[0].astype(float), 32) - ref_q_blocks(m[b], p_lr, 8)) for b in range(c)])
    r = qnr(f, ms, pan, variant="orig_paper")
    assert r.d_lambda == pytest.approx(dl, abs=1e-9)
    assert r.d_s == pytest.approx(ds, abs=1e-9)
    assert r.qnr == pytest.approx((1 - dl) * (1 - ds), abs=1e-9)
    assert r.variant == "orig_paper" and r.blocks_scored == 16
    assert d_lambda(f, ms, variant="orig_paper") == pytest.approx(dl, abs=1e-9)
    t = qnr(f, ms, pan, variant="toolbox")
    assert abs(t.d_lambda - r.d_lambda) > 1e-4  # a different definition
    # HQNR in this variant = the same D_lambda_K with this D_s
    h = qnr(f, ms, pan, variant="orig_paper", hqnr=True, sensor="ikonos")
    assert h.d_lambda_k == pytest.approx(qnr(f, ms, pan, hqnr=True, sensor="ikonos").d_lambda_k, abs=1e-15)
    assert h.hqnr == pytest.approx((1 - h.d_lambda_k) * (1 - ds), abs=1e-9)
    # strips reproduce the whole image
    s = qnr(f, ms, pan, variant="orig_paper", strip_values=128 * 6 * 32)
    assert (s.d_lambda, s.d_s) == pytest.approx((r.d_lambda, r.d_s), abs=1e-12)
    with pytest.raises(ValueError, match="multiple of the ratio"):
        qnr(f, ms, pan, variant="orig_paper", block=30)


# --------------------------------------------------------------------------------------------------
# Nodata
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(variant="toolbox", hqnr=True), dict(variant="orig_paper", hqnr=True),
                                dict(variant="toolbox", upsample="bicubic"), dict(variant="pantiny", block=16)],
                         ids=["toolbox", "orig_paper", "bicubic", "pantiny"])
def test_nodata_border_scores_like_the_cropped_scene(kw):
    pan, ms, gt = make_scene(128, "ikonos", seed=1)
    fused = _noisy(gt)
    b = 64  # a multiple of the block (32) and of the ratio: the block grids coincide
    pb, mb, fb = _border(pan, b), _border(ms, b // 4), _border(fused, b)
    cropped = qnr(fused, ms, pan, sensor="ikonos", **kw)
    masked = qnr(fb, mb, pb, sensor="ikonos", nodata=ND, **kw)
    for k in ("d_lambda", "d_s", "qnr", "d_lambda_k", "hqnr"):
        if getattr(cropped, k) is not None:
            assert getattr(masked, k) == pytest.approx(getattr(cropped, k), abs=1e-9), k
    assert masked.blocks_scored == cropped.blocks_scored and cropped.blocks_skipped == 0
    if kw["variant"] != "pantiny":
        assert (masked.blocks_scored, masked.blocks_skipped) == (16, 8 * 8 - 16)
    else:  # sliding windows at the PAN scale
        assert masked.blocks_skipped == (256 - 15) ** 2 - (128 - 15) ** 2
    # strips give the same values
    strips = qnr(fb, mb, pb, sensor="ikonos", nodata=ND, strip_values=256 * 6 * 32, **kw)
    assert strips.qnr == pytest.approx(masked.qnr, abs=1e-9)
    # without the mask the 65535 border is scored as image
    unmasked = qnr(fb, mb, pb, sensor="ikonos", **kw)
    assert abs(unmasked.qnr - cropped.qnr) > 0.005


def test_nodata_from_geotiff_metadata_and_irregular_footprints(tmp_path, small):
    pan, ms, gt = small
    fused = _noisy(gt)
    b = 32
    pb, mb, fb = _border(pan, b), _border(ms, b // 4), _border(fused, b)
    paths = [write_tif(tmp_path / f"{n}.tif", a, gsd=g, nodata=ND) for n, a, g in
             (("fused", fb, 0.5), ("ms", mb, 2.0), ("pan", pb, 0.5))]
    expected = qnr(fused, ms, pan, sensor="ikonos", hqnr=True)
    disk = qnr(*paths, sensor="ikonos", hqnr=True, strip_values=192 * 6 * 32)  # nodata from the files
    assert disk.hqnr == pytest.approx(expected.hqnr, abs=1e-9)
    assert disk.qnr == pytest.approx(expected.qnr, abs=1e-9)
    assert disk.blocks_skipped == 36 - 16 and "20 nodata blocks skipped" in str(disk)
    # a nodata triangle (e.g. an orthorectified footprint) and holes: its blocks are skipped and
    # the neighbouring blocks see filled, finite values
    tri = fused.copy()
    yy, xx = np.mgrid[:128, :128]
    tri[:, xx + yy < 60] = ND
    tri[:, 100:103, 90:95] = ND
    r = qnr(tri, ms, pan, sensor="ikonos", hqnr=True, nodata=ND)
    assert r.blocks_skipped == 3 + 1 and r.blocks_scored == 12
    assert all(np.isfinite([r.d_lambda, r.d_s, r.qnr, r.hqnr]))
    assert abs(r.qnr - expected.qnr) < 0.02
    # MS nodata masks the PAN-scale blocks it covers (one MS pixel = 4x4 PAN pixels)
    m2 = ms.copy()
    m2[:, 20, 5] = ND
    assert qnr(fused, m2, pan, nodata=ND).blocks_skipped == 1
    p2 = pan.copy()
    p2[:, 70, 70] = ND
    assert qnr(fused, ms, p2, nodata=ND).blocks_skipped == 1
    # a pixel is nodata only when all its bands are
    f2 = fused.copy()
    f2[0, 5, 5] = ND
    with pytest.raises(ValueError, match="same units"):  # 65535 in one band is a (wild) value
        qnr(f2.astype(float) * 100, ms, pan, nodata=ND, hqnr=True)
    assert qnr(f2, ms, pan, nodata=ND).blocks_skipped == 0


def test_all_nodata_and_no_valid_block_are_refused(small):
    pan, ms, gt = small
    full = np.full_like(gt, ND)
    for call, msg in (
        (lambda: qnr(full, ms, pan, nodata=ND), "fused image is entirely nodata"),
        (lambda: qnr(full, np.full_like(ms, ND), pan, nodata=ND), "fused image and MS are entirely nodata"),
        (lambda: qnr(gt, ms, np.full_like(pan, ND), nodata=ND, variant="pantiny"), "PAN is entirely nodata"),
        (lambda: d_lambda(gt, np.full_like(ms, ND), nodata=ND), "MS is entirely nodata"),
        (lambda: qnr(np.where((np.arange(128) % 20 == 0)[None, :, None], ND, gt).astype(np.uint16), ms, pan,
                     nodata=ND), r"no valid 32x32 block.*fused image 5\.\d%"),
        (lambda: qnr(gt, ms, pan, nodata="none"), "nodata must be a number"),
    ):
        with pytest.raises(ValueError, match=msg):
            call()
    # NaN as the nodata value (float files)
    f = gt.astype(np.float32)
    f[:, :32] = np.nan
    r = qnr(f, ms, pan, nodata=float("nan"))
    assert r.blocks_skipped == 4 and np.isfinite(r.qnr)
    with pytest.raises(ValueError, match="NaN"):
        qnr(f, ms, pan)


# --------------------------------------------------------------------------------------------------
# Degenerate (zero-variance) input
# --------------------------------------------------------------------------------------------------

def test_zero_variance_inputs_give_nan_with_a_warning(small):
    pan, ms, gt = small
    zeros = (np.zeros_like(gt), np.zeros_like(ms), np.zeros_like(pan))
    for args, kw, nan, finite in (
        (zeros, {}, ("d_lambda", "d_s", "qnr"), ()),
        (zeros, dict(variant="pantiny"), ("d_lambda", "d_s", "qnr"), ()),
        ((np.full_like(gt, 700), ms, pan), dict(hqnr=True, sensor="ikonos"), ("d_lambda", "d_s", "qnr", "hqnr"),
         ("d_lambda_k",)),
        ((gt, ms, np.full_like(pan, 900)), dict(hqnr=True, sensor="ikonos"), ("d_s", "qnr", "hqnr"),
         ("d_lambda", "d_lambda_k")),
        ((gt, np.full_like(ms, 500), pan), dict(hqnr=True, sensor="ikonos"),
         ("d_lambda", "d_s", "qnr", "d_lambda_k", "hqnr"), ()),
    ):
        with pytest.warns(DegenerateInputWarning, match="zero-variance"):
            r = qnr(*args, **kw)
        assert all(math.isnan(getattr(r, k)) for k in nan), r
        assert all(math.isfinite(getattr(r, k)) for k in finite), r
        assert all(v is None for k, v in r.as_dict().items() if k.lower() in nan)
    # one flat band is enough; a flat *window* inside a textured image is not degenerate
    f = gt.copy()
    f[2] = 1000
    with pytest.warns(DegenerateInputWarning, match=r"fused image band\(s\) \[2\]"):
        assert math.isnan(qnr(f, ms, pan).qnr)
    f = gt.copy()
    f[:, :32, :32] = 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateInputWarning)
        assert math.isfinite(qnr(f, ms, pan).qnr)


# --------------------------------------------------------------------------------------------------
# Grids of GeoTIFF inputs, CLI
# --------------------------------------------------------------------------------------------------

def test_geotiff_grids_are_checked(tmp_path, small):
    pan, ms, gt = small
    p = write_tif(tmp_path / "pan.tif", pan, gsd=0.5)
    m = write_tif(tmp_path / "ms.tif", ms, gsd=2.0)
    ok = write_tif(tmp_path / "ok.tif", gt, gsd=0.5)
    assert qnr(ok, m, p).qnr == pytest.approx(qnr(gt, ms, pan).qnr, abs=1e-12)
    cases = [
        ((write_tif(tmp_path / "f1.tif", gt, gsd=0.5, crs="EPSG:32634"), m, p), "PAN grid: its CRS"),
        ((write_tif(tmp_path / "f2.tif", gt, gsd=0.5, origin=(500010.0, 4200000.0)), m, p),
         "PAN grid: its geotransform"),
        ((write_tif(tmp_path / "f3.tif", gt, gsd=0.6), m, p), "PAN grid: its geotransform"),
        ((ok, write_tif(tmp_path / "m1.tif", ms, gsd=2.0, crs="EPSG:32634"), p), "do not overlap"),
        ((ok, write_tif(tmp_path / "m2.tif", ms, gsd=2.0, origin=(500100.0, 4200000.0)), p), "do not overlap"),
        # an MS 8 m east: PAN and MS are aligned over their overlap, so a fused image on the whole PAN
        # grid is not on the grid being scored
        ((ok, write_tif(tmp_path / "m4.tif", ms, gsd=2.0, origin=(500008.0, 4200000.0)), p), "fused image is"),
        ((ok, write_tif(tmp_path / "m3.tif", ms, gsd=2.5), p), "not the ratio 4"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            qnr(*args)
    with pytest.raises(ValueError, match="PAN grid of the MS.*same extent"):  # no PAN: fused vs MS
        d_lambda(cases[1][0][0], m)


def test_cli_nodata_orig_paper_toolbox_crop_and_scc(tmp_path, small, capsys):
    pan, ms, gt = small
    b = 32
    fused = _noisy(gt)
    p = write_tif(tmp_path / "pan.tif", _border(pan, b), gsd=0.5)
    m = write_tif(tmp_path / "ms.tif", _border(ms, b // 4), gsd=2.0)
    f = write_tif(tmp_path / "fused.tif", _border(fused, b), gsd=0.5)
    assert main(["qnr", str(p), str(m), str(f), "--nodata", str(ND), "--hqnr", "--json", "--sensor", "ikonos"]) == 0
    d = json.loads(capsys.readouterr().out)
    expected = qnr(fused, ms, pan, sensor="ikonos", hqnr=True)
    assert d["HQNR"] == pytest.approx(expected.hqnr, abs=1e-9)
    assert (d["blocks_scored"], d["blocks_skipped"]) == (16, 20)
    assert main(["qnr", str(p), str(m), str(f), "--nodata", str(ND), "--variant", "orig_paper"]) == 0
    out = capsys.readouterr().out
    assert "orig_paper definition" in out and "20 of 36 windows skipped for nodata" in out
    z = write_tif(tmp_path / "zero.tif", np.zeros_like(_border(fused, b)), gsd=0.5)
    with pytest.warns(DegenerateInputWarning):
        assert main(["qnr", str(p), str(m), str(z), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["QNR"] is None  # NaN -> null: valid JSON
    g = write_tif(tmp_path / "gt.tif", gt, gsd=0.5)
    over_arr = gt.astype(np.float32) * np.float32(1.3)
    over = write_tif(tmp_path / "over.tif", over_arr, gsd=0.5)
    assert main(["score-rr", str(over), str(g), "--crop", "toolbox", "--clip-bits", "11", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    rr = reduced_resolution(np.clip(over_arr, 0, 2048), gt, crop=(20, 21))
    assert d["scc"] == pytest.approx(rr["scc"], abs=1e-12) and d["psnr"] == pytest.approx(rr["psnr"], abs=1e-9)
    assert main(["score-rr", str(over), str(g)]) == 0
    assert "SCC" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# Real imagery (extra; skipped when ../shared/data is absent)
# --------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="real test imagery (../shared/data) not present")
def test_real_scenes_d_lambda_k_equals_the_toolbox_under_octave():
    """D_lambda_K of the EXP image as computed by the toolbox's D_lambda_K.m (MTF.m, genMTF.m,
    q2n.m) under GNU Octave 7.3 on these scenes (msexp = pantiny's interp23tap)."""
    from pantiny.io import read

    for name, sensor, octave in (("ikonos_scene", "ikonos", 0.054745755193228),
                                 ("wv3_crop", "wv3", 0.079442494077304)):
        ms = read(SHARED_DATA / f"{name}_ms.tif")
        assert d_lambda_k(expand_ms(ms), ms, sensor=sensor) == pytest.approx(octave, abs=1e-12)
