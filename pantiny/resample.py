"""Resampling between the MS and PAN grids.

Grid convention (used everywhere in pantiny): the MS and PAN images share their top-left corner, an
MS pixel covers ``ratio x ratio`` PAN pixels, so MS pixel ``j`` is centred on PAN coordinate
``ratio * j + ratio / 2`` (pixel-is-area, as in GeoTIFF products). Bicubic interpolation with
``align_corners=False`` honours exactly this convention.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .choices import UPSAMPLING
from .errors import InputError


def upsample(ms: torch.Tensor, ratio: int = 4, mode: str = "bicubic") -> torch.Tensor:
    """Interpolate MS (B,C,h,w) onto the PAN grid (B,C,h*ratio,w*ratio).

    ``mode``: ``"bicubic"`` (Keys a=-0.75 as in torch, the default), ``"cubic"`` (GDAL's cubic
    convolution: Keys a=-0.5, the weights of taps outside the image dropped and the rest renormalised,
    as GDAL resamples), ``"bilinear"`` or ``"nearest"``. Other borders are handled by clamping
    (replicate). Either way a crop with >= 2 MS pixels of margin on each side upsamples to exactly
    the same values as the whole image.

    Examples:
        >>> import torch
        >>> from pantiny.resample import upsample
        >>> ms = torch.arange(4.0).reshape(1, 1, 2, 2)  # (B,C,h,w)
        >>> tuple(upsample(ms).shape)  # onto the 4x finer PAN grid
        (1, 1, 8, 8)
        >>> upsample(ms, mode="nearest")[0, 0, ::4, ::4]  # each MS pixel covers 4x4 PAN pixels
        tensor([[0., 1.],
                [2., 3.]])
        >>> upsample(torch.full((1, 3, 4, 4), 7.0)).unique()  # a constant stays constant
        tensor([7.])
    """
    if mode not in UPSAMPLING:
        raise InputError(f"unknown upsampling mode {mode!r}; use one of {', '.join(UPSAMPLING)}")
    if mode == "cubic":
        if ratio & (ratio - 1) == 0 and ms.is_floating_point():
            # torch's antialiased bicubic is this very kernel (Keys a=-0.5, taps outside the image
            # dropped and the rest renormalised; equal to _cubic_axis to ~1e-11 in float64) and 9x
            # faster; for power-of-two ratios its pixel centres are exact in float, so crops stay exact.
            return F.interpolate(ms, scale_factor=ratio, mode="bicubic", align_corners=False, antialias=True)
        return _cubic_axis(_cubic_axis(ms, -2, ratio), -1, ratio)
    if mode == "nearest":
        return F.interpolate(ms, scale_factor=ratio, mode="nearest")
    return F.interpolate(ms, scale_factor=ratio, mode=mode, align_corners=False)


def _keys(x: torch.Tensor, a: float) -> torch.Tensor:
    """Keys' cubic convolution kernel with parameter ``a`` at offsets ``x``."""
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _cubic_axis(x: torch.Tensor, dim: int, ratio: int, a: float = -0.5) -> torch.Tensor:
    """Upsample along ``dim`` by ``ratio`` with Keys' kernel (pixel-is-area centres); taps outside the
    image get weight 0 and the others are renormalised to sum 1 (GDAL's border rule)."""
    n = x.shape[dim]
    pos = (torch.arange(n * ratio, dtype=torch.float64) + 0.5) / ratio - 0.5  # source coordinate
    first = pos.floor()
    taps = first.long()[:, None] + torch.arange(-1, 3)  # (n*ratio, 4) source indices
    w = _keys(pos[:, None] - taps, a) * ((taps >= 0) & (taps < n))
    w = (w / w.sum(1, keepdim=True)).to(x.dtype if x.is_floating_point() else torch.float32)
    taps = taps.clamp(0, n - 1).to(x.device)
    shape = [1] * x.ndim
    shape[dim] = n * ratio
    out = None
    for k in range(4):
        part = x.index_select(dim, taps[:, k]) * w[:, k].to(x.device).reshape(shape)
        out = part if out is None else out.add_(part)
    return out


def downsample_bicubic(x: torch.Tensor, ratio: int = 4) -> torch.Tensor:
    """Antialiased bicubic reduction by ``ratio`` (B,C,H,W) -> (B,C,H/r,W/r), like MATLAB ``imresize(x, 1/r)``.

    Examples:
        >>> import torch
        >>> from pantiny.resample import downsample_bicubic
        >>> tuple(downsample_bicubic(torch.ones(1, 2, 16, 16)).shape)
        (1, 2, 4, 4)
    """
    h, w = x.shape[-2] // ratio, x.shape[-1] // ratio
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)


# --- interp23tap (Vivone 2020 toolbox Tools/interp23tap.m) -----------------------------------------

#: Half of the symmetric 23-tap interpolation kernel (centre tap first) of the toolbox's
#: ``interp23tap``: twice the half-band polynomial filter ``CDF23`` listed there. The taps at even
#: offsets other than 0 are 0, so the original samples pass unchanged; the odd taps sum to
#: 0.999999999596 (as published), so a constant c comes back within 4e-10 * c per stage (1.2e-9 * c
#: after the two stages of ratio 4) between the original samples.
_CDF23_HALF = (1.0, 0.61066818237, 0.0, -0.145397186478, 0.0, 0.043619155884, 0.0,
               -0.010385513306, 0.0, 0.001615524292, 0.0, -0.000120162964)


def _upsample2_circular(x: torch.Tensor, dim: int, offset: int) -> torch.Tensor:
    """One interp23tap stage along ``dim``: zero-stuff by 2 (samples at ``2j + offset``) and filter
    with the 23-tap kernel, circular borders; computed polyphase (the exact same sums without the
    multiplications by the stuffed zeros).

    Samples keep their value (the only even tap that is non-zero is the centre, 1). The new sample
    between ``x[j]`` and ``x[j+1]`` (position ``2j + offset + 1`` mod ``2n``) is
    ``sum_k CDF23[k] x[(j + (k+1)/2) mod n]`` over the odd offsets ``k = -11..11``.
    """
    n = x.shape[dim]
    # circular padding by 5 before / 6 after, then one multiply-add per non-zero odd tap
    idx = torch.arange(-5, n + 6, device=x.device) % n
    xp = x.index_select(dim, idx)
    z = None
    for k in range(-11, 12, 2):
        s = (k + 1) // 2 + 5  # start of x[(j + (k+1)/2) mod n], j = 0..n-1, inside xp
        part = xp.narrow(dim, s, n)
        if z is None:
            z = part * _CDF23_HALF[abs(k)]
        else:
            z.add_(part, alpha=_CDF23_HALF[abs(k)])
    if offset == 1:  # new samples sit at 2j+2 mod 2n: the last one wraps to position 0
        z = torch.roll(z, shifts=1, dims=dim)
    pair = (z, x) if offset == 1 else (x, z)  # (even positions, odd positions)
    y = torch.stack(pair, dim=dim + 1 if dim >= 0 else dim)
    shape = list(x.shape)
    shape[dim] = 2 * n
    return y.reshape(shape)


def interp23tap(ms: torch.Tensor, ratio: int = 4) -> torch.Tensor:
    """Upsample MS (B,C,h,w) -> (B,C,h*ratio,w*ratio), ``ratio`` a power of 2, with the toolbox's
    23-tap kernel (same units as the input).

    Follows Vivone 2020 toolbox ``Tools/interp23tap.m``: ``log2(ratio)`` stages, each zero-stuffing
    by 2 and filtering rows then columns with the 23-tap kernel with **circular** borders. The first
    stage puts sample ``j`` at odd position ``2j+1``, the later ones at even positions, so MS pixel
    ``j`` lands exactly on PAN pixel ``ratio*j + ratio/2`` (0-based) and keeps its value.
    (The toolbox loops ``ratio/2`` times, which equals ``log2(ratio)`` only for ratio 2 and 4.)

    Note the registration differs from :func:`upsample` (bicubic, pixel-is-area) by half a PAN
    pixel; it is what the toolbox's D_lambda/D_s references use. Floating input keeps its dtype
    (use float64 for metrics); integer input is computed and returned as float64.

    Examples:
        >>> import torch
        >>> from pantiny.resample import interp23tap
        >>> ms = torch.arange(64.0, dtype=torch.float64).reshape(1, 1, 8, 8)
        >>> up = interp23tap(ms)
        >>> tuple(up.shape)
        (1, 1, 32, 32)
        >>> torch.equal(up[..., 2::4, 2::4], ms)  # MS pixel j sits on PAN pixel 4j+2, unchanged
        True
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 1 \
            or (int(ratio) & (int(ratio) - 1)) != 0:
        raise InputError(f"interp23tap needs a power-of-2 integer ratio, got {ratio!r}; use upsample(mode='bicubic')")
    ratio = int(ratio)
    if ms.ndim != 4:
        raise InputError(f"interp23tap expects (B,C,h,w), got shape {tuple(ms.shape)}")
    x = ms if ms.is_floating_point() else ms.double()
    for stage in range(ratio.bit_length() - 1):  # log2(ratio) stages
        o = 1 if stage == 0 else 0
        x = _upsample2_circular(_upsample2_circular(x, -2, o), -1, o)
    return x
