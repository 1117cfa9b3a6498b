import math

import numpy as np
import pytest
import torch

from pantiny.mtf import (
    decimate,
    frequency_response,
    mtf_degrade,
    mtf_filter,
    mtf_kernel_1d,
    toolbox_mtf_filter,
    toolbox_mtf_kernel,
)
from pantiny.sensors import SENSORS


@pytest.mark.parametrize("gnyq", sorted({g for s in SENSORS.values() for g in (*s.mtf_ms, s.mtf_pan)}))
def test_gain_at_nyquist_equals_gnyq(gnyq):
    k = mtf_kernel_1d(gnyq, ratio=4)
    assert abs(k.sum() - 1) < 1e-12
    assert abs(frequency_response(k, 0.0) - 1.0) < 1e-9
    assert abs(frequency_response(k, 1 / 8) - gnyq) < 1e-3


def test_filter_preserves_constants_and_degrade_shapes():
    x = torch.full((1, 3, 37, 40), 0.7)
    assert torch.allclose(mtf_filter(x, [0.3, 0.2, 0.1]), x, atol=1e-6)
    y = torch.rand(2, 4, 64, 48)
    assert mtf_degrade(y, 0.3).shape == (2, 4, 16, 12)
    assert torch.equal(decimate(y)[0, 0], y[0, 0, 2::4, 2::4])
    with pytest.raises(ValueError, match="3 MTF gains given for 4 bands"):
        mtf_filter(y, [0.3, 0.3, 0.3])


def test_lower_gain_blurs_more():
    x = torch.zeros(1, 1, 64, 64)
    x[..., 32, 32] = 1
    sharp, soft = mtf_filter(x, 0.4), mtf_filter(x, 0.1)
    assert soft.max() < sharp.max()
    assert np.isclose(float(soft.sum()), 1.0, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Toolbox MTF filter (genMTF.m / MTF_PAN.m / MTF.m), written out from the toolbox's formulas
# --------------------------------------------------------------------------------------------------

def _bessel_i0(x: float) -> float:
    """Modified Bessel function I0 by its power series sum_k ((x/2)^k / k!)^2."""
    term, total, k = 1.0, 1.0, 0
    while term > 1e-18 * total:
        k += 1
        term *= (x / 2.0) ** 2 / (k * k)
        total += term
    return total


def ref_toolbox_kernel(gnyq: float, ratio: int = 4, n: int = 41) -> np.ndarray:
    """h = fwind1(Hd, kaiser(n)) with Hd = fspecial('gaussian', n, alpha) / max, written out:

    alpha  = sqrt(((n-1) * fcut/2)^2 / (-2 ln GNyq)), fcut = 1/ratio          (genMTF.m)
    fspecial('gaussian'): exp(-(x^2+y^2)/(2 alpha^2)), values < eps*max zeroed, sum 1
    kaiser(n), beta = 0.5: I0(beta sqrt(1 - (k/c)^2)) / I0(beta), k = -c..c, c = (n-1)/2
    fwind1, Huang's method: t = (-(n-1)/2:(n-1)/2) * 2/(n-1); the 2-D window at (t1, t2) is the
        1-D window linearly interpolated (interp1) at r = sqrt(t1^2 + t2^2), 0 where r > 1
    fsamp2(Hd) = fftshift(ifft2(ifftshift(Hd))), here as the explicit inverse DFT sum:
        h[m1, m2] = 1/n^2 sum_k1 sum_k2 Hd[k1, k2] exp(2 pi i ((k1-c)(m1-c) + (k2-c)(m2-c)) / n)
    """
    c = (n - 1) // 2
    alpha = math.sqrt(((n - 1) * (1.0 / ratio) / 2.0) ** 2 / (-2.0 * math.log(gnyq)))
    g = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            g[i, j] = math.exp(-((i - c) ** 2 + (j - c) ** 2) / (2.0 * alpha * alpha))
    g[g < np.finfo(float).eps * g.max()] = 0.0
    g /= g.sum()
    hd = g / g.max()
    w1 = [_bessel_i0(0.5 * math.sqrt(1.0 - ((k - c) / c) ** 2)) / _bessel_i0(0.5) for k in range(n)]
    t = [(k - c) * 2.0 / (n - 1) for k in range(n)]
    w2 = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            r = math.sqrt(t[i] ** 2 + t[j] ** 2)
            if r <= t[-1]:
                k = min(int(math.floor((r - t[0]) / (t[1] - t[0]))), n - 2)  # interp1 'linear'
                u = (r - t[k]) / (t[k + 1] - t[k])
                w2[i, j] = (1 - u) * w1[k] + u * w1[k + 1]
    e = np.exp(2j * np.pi * np.outer(np.arange(n) - c, np.arange(n) - c) / n) / n
    h = (e.T @ hd @ e).real  # e is symmetric: sum over k1 and k2 of Hd[k1,k2] e[k1,m1] e[k2,m2]
    return np.rot90(h, 2) * w2


# Kernel sums measured by running the toolbox's genMTF.m / MTF_PAN.m under GNU Octave 7.3 (signal
# and image packages; fwind1/fsamp2 transcribed from MATLAB's Image Processing Toolbox).
OCTAVE_SUMS = {0.35: 0.9988992738662434, 0.27: 0.9986311061665485, 0.325: 0.9988226646273577,
               0.26: 0.9985921279505232, 0.29: 0.9987049220741294, 0.3: 0.9987399482656552,
               0.11: 0.9977046261170447, 0.14: 0.9979532965247873, 0.17: 0.998153571434962,
               0.15: 0.9980244557322664}


@pytest.mark.parametrize("sensor", ["wv2", "wv3", "ikonos", "gf2"])
def test_toolbox_kernel_matches_genmtf_formulas(sensor):
    s = SENSORS[sensor]
    for g in sorted(set(s.mtf_ms)) + [s.mtf_pan]:
        k = toolbox_mtf_kernel(g, 4)
        assert k.shape == (41, 41)
        np.testing.assert_allclose(k, ref_toolbox_kernel(g, 4), rtol=0, atol=1e-9)
        assert np.allclose(k, k.T, rtol=0, atol=1e-16) and np.allclose(k, k[::-1, ::-1], rtol=0, atol=1e-16)
        if g in OCTAVE_SUMS:
            assert k.sum() == pytest.approx(OCTAVE_SUMS[g], abs=1e-12)
        # not normalised (sums ~0.998-0.999), unlike the simulation filter, which sums to 1
        assert 0.997 < k.sum() < 0.9995
        # its Nyquist gain is near GNyq, not equal to it (the normalised filter hits GNyq)
        along = k.sum(0)
        gain = float(np.sum(along * np.cos(2 * np.pi * (np.arange(41) - 20) / 8)))
        assert 0.5 * g < gain < g and abs(gain - g) > 1e-3


def test_toolbox_kernel_other_ratio_and_bad_args():
    np.testing.assert_allclose(toolbox_mtf_kernel(0.3, 2), ref_toolbox_kernel(0.3, 2), rtol=0, atol=1e-9)
    np.testing.assert_allclose(toolbox_mtf_kernel(0.3, 4, n=21), ref_toolbox_kernel(0.3, 4, n=21), rtol=0, atol=1e-9)
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="Nyquist"):
            toolbox_mtf_kernel(bad)
    with pytest.raises(ValueError, match="odd"):
        toolbox_mtf_kernel(0.3, n=40)


def test_toolbox_filter_is_imfilter_replicate():
    """MTF.m: imfilter(band, real(h), 'replicate') = correlation with replicated borders."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2047, size=(1, 2, 30, 27))
    gains = [0.29, 0.11]
    y = toolbox_mtf_filter(torch.from_numpy(x), gains, 4)[0].numpy()
    for b, g in enumerate(gains):
        k = ref_toolbox_kernel(g, 4)
        xp = np.pad(x[0, b], 20, mode="edge")
        ref = np.zeros((30, 27))
        for i in range(41):
            for j in range(41):
                ref += k[i, j] * xp[i:i + 30, j:j + 27]
        np.testing.assert_allclose(y[b], ref, rtol=0, atol=1e-9)
    # a constant image comes out scaled by the kernel sum (no unit-DC normalisation, as the toolbox)
    c = toolbox_mtf_filter(torch.full((1, 1, 50, 50), 1000.0, dtype=torch.float64), 0.3)
    assert torch.allclose(c, torch.full_like(c, 1000.0 * OCTAVE_SUMS[0.3]), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="1 MTF gains given for 2 bands"):
        toolbox_mtf_filter(torch.zeros(1, 2, 8, 8), [0.3])
