"""Tests of pantiny.metrics: UIQI, Q2n, D_lambda / D_s / QNR / HQNR, reduced-resolution scores, CLI.

Reference values come from hand computation or from the plain-numpy loop implementations below,
written from the published definitions (Vivone 2020 toolbox .m files, MATLAB imresize), not from
pantiny's own output.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, write_tif

from pantiny.cli import main
from pantiny.metrics import (
    cc,
    d_lambda,
    d_lambda_k,
    d_s,
    ergas,
    expand_ms,
    psnr,
    q2n,
    q2n_index,
    q_avg,
    q_blocks,
    q_sliding,
    qindex,
    qnr,
    reduced_resolution,
    sam,
    ssim,
)
from pantiny.metrics.imresize import imresize_down
from pantiny.mtf import mtf_filter, toolbox_mtf_filter
from pantiny.resample import downsample_bicubic, interp23tap
from pantiny.synthetic import make_scene

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------
# Independent reference implementations (plain numpy, loops)
# --------------------------------------------------------------------------------------------------

def ref_q(x: np.ndarray, y: np.ndarray) -> float:
    """UIQI of one window from the formula, with the degenerate-window rules of docs/metrics.md."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    mx, my = x.mean(), y.mean()
    vx, vy = ((x - mx) ** 2).mean(), ((y - my) ** 2).mean()
    cxy = ((x - mx) * (y - my)).mean()
    if vx + vy == 0:
        return 1.0 if mx == 0 and my == 0 else 2 * mx * my / (mx * mx + my * my)
    if mx == 0 and my == 0:
        return 2 * cxy / (vx + vy)
    return 4 * cxy * mx * my / ((vx + vy) * (mx * mx + my * my))


def ref_q_blocks(x: np.ndarray, y: np.ndarray, s: int) -> float:
    vals = []
    for i in range(0, x.shape[0] - s + 1, s):
        for j in range(0, x.shape[1] - s + 1, s):
            vals.append(ref_q(x[i:i + s, j:j + s], y[i:i + s, j:j + s]))
    return float(np.mean(vals))


def ref_q_sliding(x: np.ndarray, y: np.ndarray, s: int) -> float:
    vals = []
    for i in range(x.shape[0] - s + 1):
        for j in range(x.shape[1] - s + 1):
            vals.append(ref_q(x[i:i + s, j:j + s], y[i:i + s, j:j + s]))
    return float(np.mean(vals))


_CDF23 = [0.5, 0.305334091185, 0, -0.072698593239, 0, 0.021809577942, 0, -0.005192756653, 0,
          0.000807762146, 0, -0.000060081482]  # Tools/interp23tap.m, before the factor 2


def ref_interp23tap(x: np.ndarray, ratio: int) -> np.ndarray:
    """interp23tap.m: per stage, zero-stuff (first stage at odd 1-based-even positions) and filter
    rows and columns with the 23-tap kernel, circular borders."""
    k = 2 * np.array(_CDF23[:0:-1] + _CDF23)
    x = np.asarray(x, float)
    for stage in range(int(round(math.log2(ratio)))):
        c, h, w = x.shape
        up = np.zeros((c, 2 * h, 2 * w))
        o = 1 if stage == 0 else 0
        up[:, o::2, o::2] = x
        for axis in (1, 2):
            out = np.zeros_like(up)
            for t in range(-11, 12):
                out += k[t + 11] * np.roll(up, -t, axis=axis)
            up = out
        x = up
    return x


def _matlab_cubic(t: float) -> float:
    a = abs(t)
    if a <= 1:
        return 1.5 * a ** 3 - 2.5 * a ** 2 + 1
    if a <= 2:
        return -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2
    return 0.0


def _imresize_matrix(n: int, r: int) -> np.ndarray:
    """MATLAB imresize(., 1/r) 'bicubic' (antialiased) along one axis as an (n/r, n) matrix (1-based
    coordinates as in imresize.m's contributions(); symmetric index mirroring)."""
    m = np.zeros((n // r, n))
    for i in range(1, n // r + 1):
        u = i * r + 0.5 * (1 - r)
        left = math.floor(u - 2 * r)
        taps = [(jj, _matlab_cubic((u - jj) / r) / r) for jj in range(left, left + 4 * r + 2)]
        total = sum(w for _, w in taps)
        for jj, w in taps:
            q = (jj - 1) % (2 * n)
            m[i - 1, q if q < n else 2 * n - 1 - q] += w / total
    return m


def ref_imresize_down(x: np.ndarray, r: int) -> np.ndarray:
    a, b = _imresize_matrix(x.shape[-2], r), _imresize_matrix(x.shape[-1], r)
    return np.stack([a @ band @ b.T for band in np.asarray(x, float)])


def ref_toolbox_dl_ds(fused, ms, pan, s=32, ratio=4):
    """D_lambda.m and D_s.m (flag_orig_paper = 0) with plain loops."""
    f = np.asarray(fused, float)
    e = ref_interp23tap(ms, ratio)
    p = np.asarray(pan, float).reshape(f.shape[-2:])
    pf = ref_interp23tap(ref_imresize_down(p[None], ratio), ratio)[0]
    c = f.shape[0]
    dl = [abs(ref_q_blocks(f[i], f[j], s) - ref_q_blocks(e[i], e[j], s)) for i in range(c) for j in range(i + 1, c)]
    ds = [abs(ref_q_blocks(f[b], p, s) - ref_q_blocks(e[b], pf, s)) for b in range(c)]
    return float(np.mean(dl)), float(np.mean(ds))


def detail_injection(pan: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """A simple correct fusion: upsampled MS + regression gain x (PAN - its low-pass), with the
    low-pass registered like the upsampled MS (imresize then interp23tap)."""
    p = pan.astype(float)
    pl = ref_interp23tap(ref_imresize_down(p, 4), 4)
    e = ref_interp23tap(ms, 4)
    g = [np.cov(e[b].ravel(), pl[0].ravel())[0, 1] / pl[0].var(ddof=1) for b in range(e.shape[0])]
    return e + np.array(g)[:, None, None] * (p - pl)


@pytest.fixture(scope="module")
def scene():
    """IKONOS-like 4-band 11-bit scene: pan (1,256,256), ms (4,64,64), gt (4,256,256) uint16."""
    return make_scene(256, "ikonos", seed=1)


@pytest.fixture(scope="module")
def small():
    """IKONOS-like 4-band scene of 128x128 PAN pixels."""
    return make_scene(128, "ikonos", seed=3)


# --------------------------------------------------------------------------------------------------
# Q index (UIQI)
# --------------------------------------------------------------------------------------------------

def test_q_hand_computed_2x2():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.array([[2.0, 2.0], [3.0, 5.0]])
    # mu_x 2.5, mu_y 3, var_x 1.25, var_y 1.5, cov 1.25 -> 4*1.25*2.5*3 / ((1.25+1.5)*(2.5^2+3^2))
    expected = 37.5 / (2.75 * 15.25)
    assert float(q_blocks(x, y, 2)) == pytest.approx(expected, abs=1e-15)
    assert float(q_sliding(x, y, 2)) == pytest.approx(expected, abs=1e-15)
    assert qindex(x, y, 2) == pytest.approx(expected, abs=1e-15)


def test_q_constant_and_zero_variance_blocks_are_documented_values_not_nan():
    ones, twos, zeros = np.ones((4, 4)), np.full((4, 4), 2.0), np.zeros((4, 4))
    tex = np.arange(16.0).reshape(4, 4)
    assert float(q_blocks(ones, ones, 4)) == 1.0               # equal constants
    assert float(q_blocks(ones, twos, 4)) == pytest.approx(0.8, abs=1e-15)  # 2*1*2/(1+4)
    assert float(q_blocks(zeros, zeros, 4)) == 1.0             # two all-zero blocks
    assert float(q_blocks(ones, tex + 1, 4)) == 0.0            # constant vs textured
    signed = np.array([[1.0, -1.0], [-1.0, 1.0]])              # zero mean, non-zero variance
    assert float(q_blocks(signed, signed, 2)) == 1.0
    assert float(q_blocks(signed, -signed, 2)) == -1.0
    m = q_sliding(np.ones((6, 6)), np.full((6, 6), 3.0), 4)
    assert torch.isfinite(m).all() and torch.allclose(m, torch.full_like(m, 0.6))
    # float data: a constant block of a non-representable value still counts as constant
    assert float(q_blocks(np.full((8, 8), 0.1), np.full((8, 8), 0.1), 8)) == 1.0


def test_q_of_an_image_with_itself_is_one_and_edges_are_dropped():
    rng = np.random.default_rng(0)
    x = rng.uniform(100, 2000, size=(3, 70, 70))
    assert torch.allclose(q_blocks(x, x, 32), torch.ones(3, 2, 2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(q_sliding(x, x, 32), torch.ones(3, 39, 39, dtype=torch.float64), atol=1e-9)
    y = x + rng.normal(0, 50, size=x.shape)
    assert torch.equal(q_blocks(x, y, 32), q_blocks(x[:, :64, :64], y[:, :64, :64], 32))


def test_q_blocks_and_sliding_match_numpy_loops():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(40, 48))
    y = 0.7 * x + rng.normal(0, 30, size=x.shape) + 20
    assert qindex(x, y, 8, "blocks") == pytest.approx(ref_q_blocks(x, y, 8), abs=1e-6)
    assert qindex(x, y, 32, "blocks") == pytest.approx(ref_q_blocks(x, y, 32), abs=1e-6)
    assert qindex(x, y, 8, "sliding") == pytest.approx(ref_q_sliding(x, y, 8), abs=1e-6)
    with pytest.raises(ValueError, match="unknown Q mode"):
        qindex(x, y, 8, "gaussian")
    with pytest.raises(ValueError, match="same shape"):
        q_blocks(x, y[:-1], 8)


# --------------------------------------------------------------------------------------------------
# interp23tap and the MATLAB-style bicubic reduction
# --------------------------------------------------------------------------------------------------

def test_interp23tap_keeps_samples_maps_constants_and_matches_the_m_file():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 2047, size=(3, 9, 7))
    for r in (2, 4, 8):
        up = interp23tap(torch.from_numpy(x)[None], r)[0].numpy()
        assert up.shape == (3, 9 * r, 7 * r)
        assert np.array_equal(up[:, r // 2::r, r // 2::r], x)  # original samples unchanged
        np.testing.assert_allclose(up, ref_interp23tap(x, r), rtol=0, atol=1e-9)
    const = interp23tap(torch.full((1, 2, 5, 6), 1500.0, dtype=torch.float64), 4)
    np.testing.assert_allclose(const.numpy(), 1500.0, rtol=2e-9, atol=0)  # odd taps sum to 1 - 4e-10
    assert interp23tap(torch.ones(1, 1, 3, 3, dtype=torch.uint8), 4).dtype == torch.float64
    for bad in (3, 0, 2.0):
        with pytest.raises(ValueError, match="power-of-2"):
            interp23tap(torch.ones(1, 1, 4, 4), bad)


def test_imresize_down_matches_matlab_algorithm_and_torch_inside():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 2047, size=(2, 32, 24))
    got = imresize_down(torch.from_numpy(x), 4).numpy()
    np.testing.assert_allclose(got, ref_imresize_down(x, 4), rtol=0, atol=1e-9)
    # away from the border (2 output pixels) MATLAB and torch's antialiased bicubic agree
    tb = downsample_bicubic(torch.from_numpy(x)[None], 4)[0].numpy()
    np.testing.assert_allclose(got[:, 2:-2, 2:-2], tb[:, 2:-2, 2:-2], rtol=0, atol=1e-9)
    assert np.allclose(imresize_down(torch.full((1, 16, 16), 7.0, dtype=torch.float64), 4).numpy(), 7.0)


# --------------------------------------------------------------------------------------------------
# Full resolution: D_lambda, D_s, QNR, HQNR
# --------------------------------------------------------------------------------------------------

def test_toolbox_d_lambda_of_exp_is_exactly_zero(scene, small):
    for pan, ms, _ in (scene, small):
        exp = expand_ms(ms)
        np.testing.assert_allclose(exp, ref_interp23tap(ms, 4), rtol=0, atol=1e-9)
        assert d_lambda(exp, ms) == 0.0
        r = qnr(exp, ms, pan)
        assert r.d_lambda == 0.0 and r.qnr == pytest.approx(1 - r.d_s, abs=1e-15)
    # with bicubic as the reference interpolation, its own EXP is the zero point instead
    pan, ms, _ = small
    assert d_lambda(expand_ms(ms, upsample="bicubic"), ms, upsample="bicubic") == 0.0
    assert d_lambda(expand_ms(ms, upsample="bicubic"), ms) > 0.0


def test_toolbox_d_lambda_and_d_s_match_numpy_loops(small):
    pan, ms, gt = small
    rng = np.random.default_rng(4)
    fused = gt.astype(float) + rng.normal(0, 20, size=gt.shape)
    dl, ds = ref_toolbox_dl_ds(fused, ms, pan)
    r = qnr(fused, ms, pan)
    assert r.d_lambda == pytest.approx(dl, abs=1e-6)
    assert r.d_s == pytest.approx(ds, abs=1e-6)
    assert r.qnr == pytest.approx((1 - dl) * (1 - ds), abs=1e-6)
    assert d_lambda(fused, ms) == pytest.approx(dl, abs=1e-6)
    assert d_s(fused, ms, pan) == pytest.approx(ds, abs=1e-6)
    # exponents p, q, alpha, beta
    r2 = qnr(fused, ms, pan, p=2, q=3, alpha=0.5, beta=2)
    c = fused.shape[0]
    e = ref_interp23tap(ms, 4)
    dl2 = np.mean([abs(ref_q_blocks(fused[i], fused[j], 32) - ref_q_blocks(e[i], e[j], 32)) ** 2
                   for i in range(c) for j in range(i + 1, c)]) ** 0.5
    assert r2.d_lambda == pytest.approx(dl2, abs=1e-6)
    assert r2.qnr == pytest.approx((1 - r2.d_lambda) ** 0.5 * (1 - r2.d_s) ** 2, abs=1e-12)


def test_pantiny_variant_matches_numpy_loops():
    """Sliding window, uint8 truncation, LRMS at MS scale, PAN_lr = MTF(0.15) + nearest decimation."""
    pan, ms, gt = make_scene(64, "ikonos", seed=5)
    fused = gt.astype(float) * 1.01
    s, scale = 8, 2047.0
    u8 = lambda a: np.floor(np.clip(np.asarray(a, float) / scale * 255.0, 0, 255))  # noqa: E731
    f, m, p = u8(fused), u8(ms), u8(pan)[0]
    p_lr = mtf_filter(torch.from_numpy(p)[None, None], 0.15, 4)[0, 0].numpy()[::4, ::4]
    c = f.shape[0]
    dl = np.mean([abs(ref_q_sliding(f[i], f[j], s) - ref_q_sliding(m[i], m[j], s))
                  for i in range(c) for j in range(i + 1, c)])
    ds = np.mean([abs(ref_q_sliding(f[b], p, s) - ref_q_sliding(m[b], p_lr, s)) for b in range(c)])
    r = qnr(fused, ms, pan, variant="pantiny", block=s, scale=scale)
    assert r.d_lambda == pytest.approx(dl, abs=1e-6)
    assert r.d_s == pytest.approx(ds, abs=1e-6)
    assert r.variant == "pantiny"


def test_qnr_ranks_fusions_on_a_synthetic_scene(scene):
    pan, ms, gt = scene
    exp = expand_ms(ms)
    inj = detail_injection(pan, ms)
    pan_copy = np.repeat(pan, ms.shape[0], 0)
    res = {k: qnr(v, ms, pan, sensor="ikonos", hqnr=True) for k, v in
           (("gt", gt), ("inj", inj), ("exp", exp), ("pan", pan_copy))}
    for good in ("gt", "inj"):
        assert res[good].qnr > res["exp"].qnr + 0.03, res
        assert res[good].hqnr > res["exp"].hqnr + 0.03, res
        assert res[good].d_s < res["exp"].d_s
        assert res[good].qnr > res["pan"].qnr + 0.3
        assert res[good].hqnr > res["pan"].hqnr + 0.3
    assert res["pan"].d_lambda > 0.3  # same PAN in every band destroys the spectral relations
    for r in res.values():
        assert 0 <= r.d_lambda <= 1 and 0 <= r.d_s <= 1 and 0 <= r.qnr <= 1 and 0 <= r.hqnr <= 1


def test_d_s_grows_when_pan_detail_is_removed(scene):
    pan, ms, gt = scene
    x = torch.from_numpy(gt.astype(np.float64))[None]
    values = [d_s(gt, ms, pan)]
    for k in (3, 7, 15):  # box blur of growing size removes more and more PAN detail
        blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (k // 2,) * 4, mode="replicate"),
                                                 k, stride=1)[0].numpy()
        values.append(d_s(blurred, ms, pan))
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_hqnr_uses_q2n_of_mtf_filtered_fusion(small):
    pan, ms, gt = small
    r = qnr(gt, ms, pan, sensor="ikonos", hqnr=True)
    # D_lambda_K.m: 1 - q2n(msexp, MTF(fused), 32, 32), toolbox uint16 cast for DN data; MTF.m is
    # the toolbox's genMTF filter (not the normalised simulation filter of pantiny.mtf.mtf_filter)
    from pantiny.sensors import get_sensor

    fm = toolbox_mtf_filter(torch.from_numpy(gt.astype(np.float64))[None], get_sensor("ikonos").mtf_ms, 4)[0]
    expected = 1 - q2n_index(expand_ms(ms), fm, 32, 32, as_uint16=True)[0]
    assert r.d_lambda_k == pytest.approx(expected, abs=1e-6)
    assert d_lambda_k(gt, ms, sensor="ikonos") == pytest.approx(expected, abs=1e-6)
    assert r.hqnr == pytest.approx((1 - r.d_lambda_k) * (1 - r.d_s), abs=1e-12)
    assert r.qnr == qnr(gt, ms, pan, sensor="ikonos").qnr  # HQNR leaves QNR unchanged
    d = r.as_dict()
    assert set(d) == {"D_lambda", "D_s", "QNR", "D_lambda_K", "HQNR", "variant", "block",
                      "blocks_scored", "blocks_skipped"}
    assert (d["blocks_scored"], d["blocks_skipped"]) == (16, 0)
    assert r.D_lambda == r.d_lambda and r.HQNR == r.hqnr


def test_four_fused_bands_out_of_eight_band_ms():
    pan, ms, gt = make_scene(128, "wv3", seed=6)
    sel = [1, 2, 4, 6]  # B, G, R, NIR1 in ascending order, as pansharpen returns them
    a = qnr(gt[sel], ms, pan, sensor="wv3", hqnr=True)
    b = qnr(gt[sel], ms[sel], pan, sensor="generic", hqnr=True)
    assert (a.d_lambda, a.d_s) == (b.d_lambda, b.d_s)
    assert a.d_lambda_k != b.d_lambda_k  # WV3 MTF gains of those bands vs the generic 0.3
    full = qnr(gt, ms, pan, sensor="wv3")
    assert full.d_lambda != a.d_lambda  # 28 band pairs instead of 6


def test_streaming_in_strips_equals_whole_image(scene):
    pan, ms, gt = scene
    fused = detail_injection(pan, ms)
    for kw in (dict(hqnr=True, sensor="ikonos"), dict(variant="pantiny"), dict(upsample="bicubic")):
        whole = qnr(fused, ms, pan, **kw)
        strips = qnr(fused, ms, pan, strip_values=256 * 6 * 40, **kw)  # ~40-row strips
        assert strips.d_lambda == pytest.approx(whole.d_lambda, abs=1e-10), kw
        assert strips.d_s == pytest.approx(whole.d_s, abs=1e-10), kw
        if whole.hqnr is not None:
            assert strips.hqnr == pytest.approx(whole.hqnr, abs=1e-6)


def test_geotiff_inputs_stream_to_the_in_memory_result(tmp_path, small):
    pan, ms, gt = small
    paths = [write_tif(tmp_path / f"{n}.tif", a, gsd=g) for n, a, g in
             (("fused", gt, 0.5), ("ms", ms, 2.0), ("pan", pan, 0.5))]
    for kw in (dict(hqnr=True), dict(variant="pantiny")):
        mem = qnr(gt, ms, pan, sensor="ikonos", **kw)
        disk = qnr(*paths, sensor="ikonos", strip_values=128 * 6 * 32, **kw)
        assert disk.d_lambda == pytest.approx(mem.d_lambda, abs=1e-10)
        assert disk.d_s == pytest.approx(mem.d_s, abs=1e-10)
        if mem.hqnr is not None:
            assert disk.hqnr == pytest.approx(mem.hqnr, abs=1e-6)
    # torch tensors and (H,W) PAN are accepted too
    t = qnr(torch.from_numpy(gt.astype(np.float32)), torch.from_numpy(ms.astype(np.float32)), pan[0],
            sensor="ikonos")
    assert t.qnr == pytest.approx(qnr(gt, ms, pan, sensor="ikonos").qnr, abs=1e-12)


def test_bad_inputs_raise_clear_errors(small, tmp_path):
    pan, ms, gt = small
    f = gt.astype(np.float64)
    cases = [
        (lambda: qnr(f[:, :-4], ms, pan), "PAN grid"),
        (lambda: qnr(f, ms[:, :-1], pan), "ratio 4"),
        (lambda: qnr(f, ms, pan, ratio=2), "ratio 2"),
        (lambda: qnr(f[:3], ms, pan), "3 bands but MS has 4"),
        (lambda: qnr(f, ms, np.concatenate([pan, pan])), "PAN must have 1 band"),
        (lambda: qnr(np.where(f > 1000, np.nan, f), ms, pan), "NaN"),
        (lambda: qnr(f, ms, pan, variant="sewar"), "unknown QNR variant"),
        (lambda: qnr(f, ms, pan, variant="pantiny", hqnr=True), "toolbox only"),
        (lambda: qnr(f, ms, pan, p=0), "p must be a positive"),
        (lambda: qnr(f, ms, pan, block=1), "block"),
        (lambda: qnr(f, ms, pan, block=256), "smaller than one 256x256 block"),
        (lambda: qnr(f, ms, pan, sensor="wv3"), "sensor 'wv3' has 8"),
        (lambda: qnr(f, ms, pan, sensor="landsat"), "unknown sensor"),
        (lambda: qnr(f / 2047.0, ms, pan, hqnr=True), "same units"),
        (lambda: qnr(f / 2047.0, ms, pan, variant="pantiny"), "same units"),
        (lambda: qnr(f[:1], ms[:1], pan), "at least 2 bands"),
        (lambda: qnr(f, ms, pan, upsample="lanczos"), "unknown upsampling"),
        (lambda: qnr(f, ms, pan, ratio=3, upsample="interp23tap"), "power-of-2"),
        (lambda: qnr(f.astype(complex), ms, pan), "non-numeric"),
        (lambda: qnr(tmp_path / "missing.tif", ms, pan), "no such raster"),
        (lambda: qnr(f[:, :64, :64], ms[:, :16, :16], pan[:, :64, :64], variant="pantiny"), "at least 32x32"),
    ]
    for call, msg in cases:
        with pytest.raises((ValueError, OSError), match=msg):
            call()


# --------------------------------------------------------------------------------------------------
# Q2n (Q4 / Q8)
# --------------------------------------------------------------------------------------------------

def _toolbox_normalise(ref_block: np.ndarray, fus_block: np.ndarray):
    """norm_blocco.m per band with the reference's mean and N-1 std (std 0 -> eps)."""
    r, f = [], []
    for a, b in zip(ref_block, fus_block):
        m, s = a.mean(), a.std(ddof=1)
        s = s if s != 0 else np.finfo(float).eps
        r.append((a - m) / s + 1)
        f.append(b - m + 1 if m == 0 else (b - m) / s + 1)
    return np.array(r), np.array(f)


def _hamilton(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a1, b1, c1, d1 = a
    a2, b2, c2, d2 = b
    return np.array([a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2, a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
                     a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2, a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2])


def ref_q4_block(ref_block: np.ndarray, fus_block: np.ndarray) -> float:
    """Q4 of one block (Alparone et al. 2004) with Hamilton quaternions:
    |E[(z1 - m1)(z2 - m2)*]| * 2/(s1^2 + s2^2) * 2|m1||m2|/(|m1|^2 + |m2|^2), unbiased moments."""
    r, f = _toolbox_normalise(ref_block.reshape(4, -1), fus_block.reshape(4, -1))
    n = r.shape[1]
    m1, m2 = r.mean(1), f.mean(1)
    d1, d2 = r - m1[:, None], f - m2[:, None]
    conj = np.array([1, -1, -1, -1])[:, None]
    cov = sum(_hamilton(d1[:, k], (conj * d2)[:, k]) for k in range(n)) / (n - 1)
    v = ((d1 ** 2).sum() + (d2 ** 2).sum()) / (n - 1)
    nm1, nm2 = np.sqrt((m1 ** 2).sum()), np.sqrt((m2 ** 2).sum())
    return float(np.linalg.norm(cov) * 2 / v * 2 * nm1 * nm2 / (nm1 ** 2 + nm2 ** 2))


def ref_q2_block(ref_block: np.ndarray, fus_block: np.ndarray) -> float:
    """Two bands: the hypercomplex index is the complex-number UIQI modulus."""
    r, f = _toolbox_normalise(ref_block.reshape(2, -1), fus_block.reshape(2, -1))
    z1, z2 = r[0] + 1j * r[1], f[0] + 1j * f[1]
    m1, m2 = z1.mean(), z2.mean()
    cov = ((z1 - m1) * np.conj(z2 - m2)).mean()
    v = (np.abs(z1 - m1) ** 2).mean() + (np.abs(z2 - m2) ** 2).mean()
    return float(abs(cov) * 2 / v * 2 * abs(m1) * abs(m2) / (abs(m1) ** 2 + abs(m2) ** 2))


def test_q2n_matches_complex_and_quaternion_formulas():
    rng = np.random.default_rng(7)
    for c, ref_fn in ((2, ref_q2_block), (4, ref_q4_block)):
        ref = rng.uniform(200, 1800, size=(c, 64, 64))
        fus = ref * rng.uniform(0.8, 1.2, size=(c, 1, 1)) + rng.normal(0, 150, size=ref.shape)
        value, qmap = q2n_index(ref, fus, 32, 32)
        assert qmap.shape == (2, 2)
        expected = [ref_fn(ref[:, i:i + 32, j:j + 32], fus[:, i:i + 32, j:j + 32])
                    for i in (0, 32) for j in (0, 32)]
        np.testing.assert_allclose(qmap.flatten().numpy(), expected, rtol=0, atol=1e-9)
        assert value == pytest.approx(np.mean(expected), abs=1e-9)


def test_q2n_identity_noise_and_flat_blocks():
    pan, ms, gt = make_scene(64, "wv3", seed=8)
    g = gt.astype(float)
    assert q2n(g, g) == pytest.approx(1.0, abs=1e-12)                  # Q8
    assert q2n(g[:4], g[:4]) == pytest.approx(1.0, abs=1e-12)          # Q4
    assert q2n(g[:3], g[:3]) == pytest.approx(1.0, abs=1e-12)          # 3 bands padded to 4
    rng = np.random.default_rng(9)
    small_noise, big_noise = g + rng.normal(0, 10, g.shape), g + rng.normal(0, 80, g.shape)
    assert 1.0 > q2n(small_noise, g) > q2n(big_noise, g) > 0.0
    flat = np.broadcast_to(np.arange(1.0, 5.0)[:, None, None] * 100, (4, 32, 32)).copy()
    assert q2n(flat, flat) == pytest.approx(1.0, abs=1e-12)             # constant bands: mean bias = 1
    other = flat + 50.0
    v = q2n(other, flat)
    assert np.isfinite(v) and 0.0 <= v < 1e-6                          # std -> eps: deviation amplified
    assert q2n(np.zeros((4, 32, 32)), np.zeros((4, 32, 32))) == pytest.approx(1.0, abs=1e-12)
    # the toolbox's uint16 cast applies to integer references only
    assert q2n(g + 0.3, gt) == q2n(g, gt)
    assert q2n(g + 0.3, g) < 1.0


# --------------------------------------------------------------------------------------------------
# Reduced resolution
# --------------------------------------------------------------------------------------------------

def test_rr_hand_computed_values():
    ref = np.full((3, 16, 16), 5.0)
    assert psnr(ref + 1, ref, data_range=10) == pytest.approx(20.0, abs=1e-12)  # 10 log10(100 / 1)
    assert psnr(ref, ref, data_range=10) == math.inf
    # SAM: orthogonal spectra -> pi/2 (radians) = 90 degrees
    a = np.zeros((2, 4, 4))
    b = np.zeros((2, 4, 4))
    a[0], b[1] = 1.0, 3.0
    assert sam(a, b) == pytest.approx(math.pi / 2, abs=1e-12)
    assert sam(a, b, degrees=True) == pytest.approx(90.0, abs=1e-10)
    assert sam(2 * b, b) == pytest.approx(0.0, abs=1e-7)  # scaling does not change the angle
    # ERGAS: 10% relative error in every band -> 100/4 * sqrt(0.01) = 2.5
    assert ergas(1.1 * ref, ref, ratio=4) == pytest.approx(2.5, abs=1e-12)
    rng = np.random.default_rng(10)
    x = rng.uniform(0, 1, size=(2, 20, 20))
    assert cc(2 * x + 3, x) == pytest.approx(1.0, abs=1e-12)
    assert cc(-x, x) == pytest.approx(-1.0, abs=1e-12)
    assert ssim(x, x, data_range=1.0) == pytest.approx(1.0, abs=1e-12)
    y = rng.uniform(0, 1, size=(2, 40, 40))
    assert q_avg(y, y) == pytest.approx(1.0, abs=1e-9)
    assert q_avg(y, y, block=8) > q_avg(y + rng.normal(0, 0.2, y.shape), y, block=8)


def test_rr_match_numpy_loops():
    rng = np.random.default_rng(11)
    ref = rng.uniform(100, 2000, size=(4, 12, 10))
    fus = ref + rng.normal(0, 60, size=ref.shape)
    angles = []
    for i in range(ref.shape[1]):
        for j in range(ref.shape[2]):
            u, v = fus[:, i, j], ref[:, i, j]
            angles.append(math.acos(min(1.0, float(u @ v) / math.sqrt(float(u @ u) * float(v @ v)))))
    assert sam(fus, ref) == pytest.approx(np.mean(angles), abs=1e-6)
    assert sam(fus, ref, degrees=True) == pytest.approx(np.degrees(np.mean(angles)), abs=1e-6)
    terms = []
    for b in range(ref.shape[0]):
        mse = sum((fus[b, i, j] - ref[b, i, j]) ** 2 for i in range(12) for j in range(10)) / 120
        terms.append(mse / ref[b].mean() ** 2)
    assert ergas(fus, ref, ratio=4) == pytest.approx(100 / 4 * math.sqrt(np.mean(terms)), abs=1e-6)
    mse_all = ((fus - ref) ** 2).mean()
    assert psnr(fus, ref, data_range=2047) == pytest.approx(10 * math.log10(2047 ** 2 / mse_all), abs=1e-9)


def test_ssim_and_crop():
    pan, ms, gt = make_scene(64, "ikonos", seed=12)
    g = gt.astype(float)
    rng = np.random.default_rng(13)
    a, b = g + rng.normal(0, 20, g.shape), g + rng.normal(0, 80, g.shape)
    assert 1.0 > ssim(a, g, 2047) > ssim(b, g, 2047) > 0.0
    assert psnr(a, g, 2047, crop=5) == pytest.approx(psnr(a[:, 5:-5, 5:-5], g[:, 5:-5, 5:-5], 2047), abs=1e-12)
    assert sam(a, g, crop=(2, 3)) == pytest.approx(sam(a[:, 2:-3, 2:-3], g[:, 2:-3, 2:-3]), abs=1e-12)
    rr = reduced_resolution(a, gt, crop=4)
    assert set(rr) == {"psnr", "ssim", "sam", "sam_deg", "ergas", "q2n", "q", "cc", "scc"}
    assert rr["sam_deg"] == pytest.approx(math.degrees(rr["sam"]), abs=1e-9)
    assert rr["psnr"] == pytest.approx(psnr(a, g, 2047, crop=4), abs=1e-12)  # uint16 -> 2047
    assert rr["q2n"] == pytest.approx(q2n(a, gt, crop=4), abs=1e-12)
    for call, msg in ((lambda: psnr(a, g[:, :-1], 2047), "same shape"),
                      (lambda: psnr(a, g, 0), "data_range"),
                      (lambda: sam(a, g, crop=40), "leaves nothing"),
                      (lambda: ssim(a[:, :8, :8], g[:, :8, :8], 2047), "11x11"),
                      (lambda: ergas(a, np.zeros_like(a)), "zero mean"),
                      (lambda: cc(np.where(a > 900, np.inf, a), g), "NaN or infinite")):
        with pytest.raises(ValueError, match=msg):
            call()


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------

@pytest.fixture()
def tif_triplet(tmp_path, small):
    pan, ms, gt = small
    tags = {"SENSOR": "IKONOS"}
    return (write_tif(tmp_path / "pan.tif", pan, gsd=0.5, tags=tags),
            write_tif(tmp_path / "ms.tif", ms, gsd=2.0, tags=tags),
            write_tif(tmp_path / "fused.tif", gt, gsd=0.5))


def test_cli_qnr_prints_values_and_json(tif_triplet, small, capsys):
    pan_p, ms_p, fused_p = tif_triplet
    pan, ms, gt = small
    expected = qnr(gt, ms, pan, sensor="ikonos", hqnr=True)
    assert main(["qnr", str(pan_p), str(ms_p), str(fused_p)]) == 0
    out = capsys.readouterr().out
    values = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line[:1] in "DQH"}
    assert values["D_lambda"] == pytest.approx(expected.d_lambda, abs=1e-6)
    assert values["D_s"] == pytest.approx(expected.d_s, abs=1e-6)
    assert values["QNR"] == pytest.approx(expected.qnr, abs=1e-6)
    assert main(["qnr", str(pan_p), str(ms_p), str(fused_p), "--hqnr", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["HQNR"] == pytest.approx(expected.hqnr, abs=1e-12)  # sensor from the MS file's tag
    assert d["variant"] == "toolbox" and d["block"] == 32
    assert main(["qnr", str(pan_p), str(ms_p), str(fused_p), "--variant", "pantiny", "--block", "16",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["QNR"] == pytest.approx(qnr(gt, ms, pan, variant="pantiny", block=16).qnr, abs=1e-12)


def test_cli_errors_are_one_line(tif_triplet, tmp_path, capsys):
    pan_p, ms_p, fused_p = tif_triplet
    assert main(["qnr", str(pan_p), str(ms_p), str(tmp_path / "nope.tif")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pantiny: error:") and "no such raster" in err and "\n" not in err
    assert main(["qnr", str(pan_p), str(ms_p), str(ms_p)]) == 1  # MS given as fused: wrong grid
    assert "PAN grid" in capsys.readouterr().err


def test_cli_score_rr(tif_triplet, small, tmp_path, capsys):
    pan, ms, gt = small
    rng = np.random.default_rng(14)
    noisy = np.clip(gt + rng.normal(0, 30, gt.shape), 0, 2047).astype(np.uint16)
    p = write_tif(tmp_path / "noisy.tif", noisy)
    assert main(["score-rr", str(p), str(tif_triplet[2]), "--json", "--crop", "4"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["psnr"] == pytest.approx(psnr(noisy, gt, 2047, crop=4), abs=1e-9)
    assert d["sam"] == pytest.approx(sam(noisy, gt, crop=4), abs=1e-12)
    assert main(["score-rr", str(p), str(tif_triplet[2])]) == 0
    assert "ERGAS" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# Real imagery (skipped when ../shared/data is absent)
# --------------------------------------------------------------------------------------------------

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="real test imagery (../shared/data) not present")


@needs_data
def test_real_wv3_crop():
    from pantiny.io import read

    pan, ms = read(SHARED_DATA / "wv3_crop_pan.tif"), read(SHARED_DATA / "wv3_crop_ms.tif")
    exp = expand_ms(ms)
    r_exp = qnr(exp, ms, pan, sensor="wv3", hqnr=True)
    r_inj = qnr(detail_injection(pan, ms), ms, pan, sensor="wv3", hqnr=True)
    r_pan = qnr(np.repeat(pan, 8, 0), ms, pan, sensor="wv3", hqnr=True)
    assert r_exp.d_lambda == 0.0
    assert r_inj.d_s < r_exp.d_s and r_inj.hqnr > r_exp.hqnr
    assert r_pan.qnr < min(r_exp.qnr, r_inj.qnr)
    dl, ds = ref_toolbox_dl_ds(exp, ms, pan)
    assert (r_exp.d_lambda, r_exp.d_s) == pytest.approx((dl, ds), abs=1e-6)


@needs_data
def test_real_ikonos_geotiffs_stream_in_strips():
    from pantiny.io import read

    pan_p, ms_p = SHARED_DATA / "ikonos_scene_pan.tif", SHARED_DATA / "ikonos_scene_ms.tif"
    pan, ms = read(pan_p), read(ms_p)
    whole = qnr(expand_ms(ms), ms, pan, sensor="ikonos")
    strips = qnr(expand_ms(ms), ms_p, pan_p, strip_values=1280 * 6 * 128)  # 10 strips, sensor from tag
    assert whole.d_lambda == 0.0 and strips.d_lambda == pytest.approx(0.0, abs=1e-12)
    assert strips.d_s == pytest.approx(whole.d_s, abs=1e-10)
