"""MTF-matched low-pass filters: two constructions, each used where it is the better choice.

**Toolbox filter** (:func:`toolbox_mtf_kernel`, :func:`toolbox_mtf_filter`) reproduces the Vivone
2020 toolbox exactly (``Tools/genMTF.m``, ``MTF.m``, ``MTF_PAN.m``; science.md §2.8)::

    alpha = sqrt(((N-1) * fcut/2)^2 / (-2 ln GNyq)),  fcut = 1/ratio,  N = 41
    Hd    = fspecial('gaussian', N, alpha) / max(...)      (desired response, peak 1)
    h     = fwind1(Hd, kaiser(N))                          (Kaiser beta 0.5, Huang's method)

``fwind1`` (MATLAB's window method) rotates the 1-D window into a circular 2-D one by linear
interpolation at radius ``sqrt(t1^2 + t2^2)`` on the grid ``t = linspace(-1, 1, N)`` (zero beyond
radius 1), takes the frequency-sampling filter ``fsamp2(Hd) = fftshift(ifft2(ifftshift(Hd)))`` and
multiplies the two. The kernel is not normalised: it sums to ~0.9986-0.9989 for the usual gains,
and its gain at the MS Nyquist frequency is near, not exactly, GNyq. Filtering is MATLAB
``imfilter(x, real(h), 'replicate')`` (correlation, replicate borders), done in float64 by FFT.
Used by the metrics that the toolbox defines with it: D_lambda_K / HQNR.

**Normalised separable filter** (:func:`mtf_kernel_1d`, :func:`mtf_filter`, :func:`mtf_degrade`):
the same Gaussian-times-Kaiser idea, but the Gaussian width is solved so that the gain at Nyquist
is *exactly* GNyq, the taps sum to exactly 1 (a constant image stays constant) and the filter is
separable (1-D Kaiser on each axis), ~20x cheaper. Used for data simulation (Wald-protocol pairs in
``pantiny.train.data`` and ``pantiny.synthetic``), for the classical MTF-GLP fusion, and by the
PanTiny-variant metric path (which reproduces code that used a normalised filter).

Borders are replicated (MATLAB ``imfilter(..., 'replicate')`` / scipy ``mode='nearest'``).
Decimation picks the pixel at offset ``ratio // 2`` in each block, as MATLAB ``imresize(..., 'nearest')``.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

MTF_TAPS = 41
KAISER_BETA = 0.5


def gaussian_sigma(gnyq: float, ratio: int = 4) -> float:
    """Spatial sigma (PAN pixels) of the Gaussian whose gain at 1/(2*ratio) cycles/pixel is ``gnyq``.

    Examples:
        >>> from pantiny.mtf import gaussian_sigma
        >>> round(gaussian_sigma(0.29), 3)  # IKONOS red, ratio 4
        2.003
    """
    if not 0.0 < gnyq < 1.0:
        raise InputError(f"MTF gain at Nyquist must be in (0, 1), got {gnyq}")
    f = 1.0 / (2.0 * ratio)
    return math.sqrt(-math.log(gnyq) / (2.0 * math.pi ** 2 * f ** 2))


def mtf_kernel_1d(gnyq: float, ratio: int = 4, taps: int = MTF_TAPS) -> np.ndarray:
    """1-D MTF filter taps (float64, sums to 1). The 2-D filter is ``outer(k, k)``.

    Examples:
        >>> from pantiny.mtf import frequency_response, mtf_kernel_1d
        >>> k = mtf_kernel_1d(0.29)  # MS gain 0.29 at the MS Nyquist frequency, ratio 4
        >>> k.shape, round(float(k.sum()), 12)
        ((41,), 1.0)
        >>> round(frequency_response(k, 1 / 8), 2)  # gain at 1/(2*ratio) cycles per PAN pixel
        0.29
    """
    sigma = gaussian_sigma(gnyq, ratio)
    n = np.arange(taps) - (taps - 1) / 2.0
    k = np.exp(-0.5 * (n / sigma) ** 2) * np.kaiser(taps, KAISER_BETA)
    return k / k.sum()


def frequency_response(kernel_1d: np.ndarray, freq: float) -> float:
    """Gain of a symmetric 1-D filter at ``freq`` cycles/pixel (DTFT, real part).

    Examples:
        >>> import numpy as np
        >>> from pantiny.mtf import frequency_response
        >>> frequency_response(np.array([0.25, 0.5, 0.25]), 0.0)  # DC gain = sum of taps
        1.0
    """
    n = np.arange(len(kernel_1d)) - (len(kernel_1d) - 1) / 2.0
    return float(np.sum(kernel_1d * np.cos(2.0 * math.pi * freq * n)))


def _band_gains(x: torch.Tensor, gnyq: Union[float, Sequence[float]], who: str) -> list:
    """One gain per band of (B,C,H,W) ``x`` from a scalar or a length-C sequence."""
    if x.ndim != 4:
        raise InputError(f"{who} expects (B,C,H,W), got shape {tuple(x.shape)}")
    c = x.shape[1]
    gains = [float(gnyq)] * c if np.isscalar(gnyq) else [float(g) for g in gnyq]  # type: ignore[arg-type]
    if len(gains) != c:
        raise InputError(f"{len(gains)} MTF gains given for {c} bands")
    return gains


def mtf_filter(x: torch.Tensor, gnyq: Union[float, Sequence[float]], ratio: int = 4) -> torch.Tensor:
    """Low-pass each band of ``x`` (B,C,H,W) with its own MTF filter, same size out, replicate borders.

    ``gnyq`` is one gain for all bands or one per band (length C).

    Examples:
        >>> import torch
        >>> from pantiny.mtf import mtf_filter
        >>> x = torch.full((1, 2, 16, 16), 3.0, dtype=torch.float64)
        >>> torch.allclose(mtf_filter(x, [0.3, 0.2]), x)  # taps sum to 1: constants stay constant
        True
    """
    gains = _band_gains(x, gnyq, "mtf_filter")
    c = len(gains)
    k = torch.as_tensor(np.stack([mtf_kernel_1d(g, ratio) for g in gains]), dtype=x.dtype, device=x.device)
    pad = (MTF_TAPS - 1) // 2
    y = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    y = F.conv2d(y, k.view(c, 1, 1, MTF_TAPS), groups=c)
    return F.conv2d(y, k.view(c, 1, MTF_TAPS, 1), groups=c)


def decimate(x: torch.Tensor, ratio: int = 4) -> torch.Tensor:
    """Nearest-neighbour decimation by ``ratio`` (offset ratio//2), as MATLAB imresize 'nearest'.

    Examples:
        >>> import torch
        >>> from pantiny.mtf import decimate
        >>> decimate(torch.arange(64).reshape(8, 8))  # keeps rows and columns 2 and 6
        tensor([[18, 22],
                [50, 54]])
    """
    o = ratio // 2
    return x[..., o::ratio, o::ratio]


def mtf_degrade(x: torch.Tensor, gnyq: Union[float, Sequence[float]], ratio: int = 4) -> torch.Tensor:
    """Wald-protocol degradation: MTF low-pass then decimation by ``ratio``. (B,C,H,W) -> (B,C,H/r,W/r).

    Examples:
        >>> import torch
        >>> from pantiny.mtf import mtf_degrade
        >>> from pantiny.sensors import get_sensor
        >>> tuple(mtf_degrade(torch.rand(1, 4, 64, 64), get_sensor("ikonos").mtf_ms).shape)
        (1, 4, 16, 16)
    """
    return decimate(mtf_filter(x, gnyq, ratio), ratio)


# --------------------------------------------------------------------------------------------------
# Toolbox (genMTF.m / MTF_PAN.m) filter
# --------------------------------------------------------------------------------------------------

def _fspecial_gaussian(n: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', n, sigma)``: (n,n), values < eps*max set to 0, sum 1."""
    x = np.arange(n) - (n - 1) / 2.0
    h = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0.0
    return h / h.sum()


def _huang_window(w1: np.ndarray) -> np.ndarray:
    """fwind1's circular 2-D window from a symmetric 1-D window of length n (n,n): the 1-D window
    sampled on ``t = linspace(-1, 1, n)`` and linearly interpolated at radius sqrt(t1^2 + t2^2),
    zero beyond radius 1."""
    n = len(w1)
    t = np.linspace(-1.0, 1.0, n)
    r = np.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
    return np.where(r > t[-1], 0.0, np.interp(r, t, w1))


def toolbox_mtf_kernel(gnyq: float, ratio: int = 4, n: int = MTF_TAPS) -> np.ndarray:
    """The Vivone 2020 toolbox's MTF filter (``genMTF.m`` per MS band, ``MTF_PAN.m`` for the PAN).

    Args:
        gnyq: MTF gain at the MS Nyquist frequency, in (0, 1) (e.g. 0.29 for IKONOS red).
        ratio: PAN/MS resolution ratio (``fcut = 1/ratio``).
        n: kernel size (41 in the toolbox).

    Returns:
        (n, n) float64 kernel ``real(fwind1(Hd, kaiser(n)))``, *not* normalised (sums to ~0.999).

    Examples:
        >>> import numpy as np
        >>> from pantiny.mtf import toolbox_mtf_kernel
        >>> h = toolbox_mtf_kernel(0.29)
        >>> h.shape, round(float(h.sum()), 4), np.allclose(h, h.T)
        ((41, 41), 0.9987, True)
    """
    if not 0.0 < gnyq < 1.0:
        raise InputError(f"MTF gain at Nyquist must be in (0, 1), got {gnyq}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3 or n % 2 == 0:
        raise InputError(f"kernel size must be an odd integer >= 3, got {n!r}")
    fcut = 1.0 / ratio
    alpha = math.sqrt(((n - 1) * (fcut / 2.0)) ** 2 / (-2.0 * math.log(gnyq)))
    g = _fspecial_gaussian(n, alpha)
    hd = g / g.max()
    # fsamp2: frequency sampling of Hd (samples at freqspace(n): DC at the centre)
    h = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(hd))).real
    h = np.rot90(h, 2)  # fsamp2 returns a computational molecule for filter2 (no-op: h is symmetric)
    return np.ascontiguousarray(h * _huang_window(np.kaiser(n, KAISER_BETA)))


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (FFT-friendly size)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def toolbox_mtf_filter(x: torch.Tensor, gnyq: Union[float, Sequence[float]], ratio: int = 4,
                       n: int = MTF_TAPS) -> torch.Tensor:
    """MATLAB ``imfilter(band, real(h), 'replicate')`` of every band of ``x`` (B,C,H,W) with its own
    toolbox kernel (:func:`toolbox_mtf_kernel`): same size out, float64, computed by FFT (exact up to
    ~1e-15 relative float rounding). ``gnyq``: one gain for all bands or one per band (length C)."""
    gains = _band_gains(x, gnyq, "toolbox_mtf_filter")
    x = x.to(torch.float64)
    pad = (n - 1) // 2
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    fh, fw = _fast_len(h + 2 * pad), _fast_len(w + 2 * pad)
    # correlation with h = convolution with h flipped; the 'valid' part of the circular
    # convolution of the padded image is free of wrap-around when the FFT size >= padded size
    k = torch.as_tensor(np.stack([toolbox_mtf_kernel(g, ratio, n)[::-1, ::-1].copy() for g in gains]))
    spec = torch.fft.rfft2(xp, s=(fh, fw)) * torch.fft.rfft2(k, s=(fh, fw))
    y = torch.fft.irfft2(spec, s=(fh, fw))
    return y[..., n - 1: n - 1 + h, n - 1: n - 1 + w].contiguous()
