"""Resampling between the MS and PAN grids.

Grid convention (used everywhere in pantiny): the MS and PAN images share their top-left corner, an
MS pixel covers ``ratio x ratio`` PAN pixels, so MS pixel ``j`` is centred on PAN coordinate
``ratio * j + ratio / 2`` (pixel-is-area, as in GeoTIFF products). Bicubic interpolation with
``align_corners=False`` honours exactly this convention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample(ms: torch.Tensor, ratio: int = 4, mode: str = "bicubic") -> torch.Tensor:
    """Interpolate MS (B,C,h,w) onto the PAN grid (B,C,h*ratio,w*ratio).

    ``mode``: ``"bicubic"`` (Keys a=-0.75 as in torch, the default), ``"bilinear"`` or ``"nearest"``.
    Borders are handled by clamping (replicate), so a crop with >= 2 MS pixels of margin on each side
    upsamples to exactly the same values as the whole image.
    """
    if mode not in ("bicubic", "bilinear", "nearest"):
        raise ValueError(f"unknown upsampling mode {mode!r}; use 'bicubic', 'bilinear' or 'nearest'")
    if mode == "nearest":
        return F.interpolate(ms, scale_factor=ratio, mode="nearest")
    return F.interpolate(ms, scale_factor=ratio, mode=mode, align_corners=False)


def downsample_bicubic(x: torch.Tensor, ratio: int = 4) -> torch.Tensor:
    """Antialiased bicubic reduction by ``ratio`` (B,C,H,W) -> (B,C,H/r,W/r), like MATLAB ``imresize(x, 1/r)``."""
    h, w = x.shape[-2] // ratio, x.shape[-1] // ratio
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
