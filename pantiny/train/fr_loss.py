"""The full-resolution (no reference) loss: used by training stage 2 and by scene adaptation.

In the spirit of Z-PNN / lambda-PNN (Ciotola et al.): a fused image F (B,4,H,W), unit range, is good
when

* **spectral consistency**: F degraded as the sensor degrades (its MS MTF low-pass, then decimation
  by the ratio: :func:`pantiny.mtf.mtf_degrade`, the same operator that simulates training pairs)
  reproduces the real MS (B,4,H/r,W/r). Term: mean |MTF(F)↓ - MS| divided by mean |MS| (relative
  L1, so the weight does not depend on the bit depth or brightness of the scene);
* **spatial consistency**: each band of F relates to the PAN as the MS relates to the PAN at its own
  scale (the scale-invariance assumption behind QNR's D_s). Term: mean over bands and windows of
  ``|rho_ref - rho(F_b, P)|`` (``match=True``, the default for adaptation), where ``rho`` is the local
  correlation coefficient over ``window`` x ``window`` boxes and ``rho_ref`` the same correlation
  between the upsampled MS and the PAN taken through the MS's own chain (MTF, decimation,
  upsampling), so a fusion that relates to the PAN as the MS does at its scale costs nothing. ``match=False`` uses
  ``relu(rho_ref - rho)`` instead (Z-PNN's one-sided threshold: only too little PAN structure costs).
  On real IKONOS, adaptation with the two-sided term raised QNR 0.904 -> 0.937 and HQNR 0.870 ->
  0.895; the one-sided term lowered QNR to 0.748 (more detail, larger D_s).

On a synthetic scene whose truth is scale-invariant (every band a constant times one texture, the
PAN their mean, the MS the truth degraded by the same operator) the truth scores 0 (up to float
rounding, ~6e-6), the upsampled MS (PAN detail removed) ~0.50 and spectrally distorted truth ~0.085
(tests/test_adapt.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..mtf import mtf_degrade
from ..resample import upsample


def local_correlation(x: torch.Tensor, y: torch.Tensor, window: int, eps: float = 1e-14) -> torch.Tensor:
    """Correlation coefficient of ``x`` (B,C,H,W) and ``y`` (B,1 or C,H,W) over every ``window`` x
    ``window`` box ('valid' positions): (B,C,H-window+1,W-window+1)."""
    # float64: the moments of nearly flat windows cancel badly in float32
    dtype = x.dtype
    x, y = x.double(), y.double()
    mean = lambda t: F.avg_pool2d(t, window, stride=1)  # noqa: E731
    mx, my = mean(x), mean(y)
    cov = mean(x * y) - mx * my
    vx = (mean(x * x) - mx * mx).clamp_min(0)
    vy = (mean(y * y) - my * my).clamp_min(0)
    return (cov / torch.sqrt(vx * vy + eps)).to(dtype)


@dataclass(frozen=True)
class FullResolutionLoss:
    """Callable ``loss(fused, ms_lr, pan, ms_up) -> (total, terms)``.

    Args:
        mtf: the MS gains at Nyquist of the 4 bands, in model order (``Sensor.model_mtf``).
        ratio: PAN/MS ratio.
        spectral, spatial: weights of the two terms.
        window: side of the correlation windows in PAN pixels (default 2 x ratio + 1).
        margin: PAN pixels at each border left out of both terms (filter edge effects on crops).
    """

    mtf: Tuple[float, float, float, float]
    ratio: int = 4
    spectral: float = 1.0
    spatial: float = 1.0
    window: int = 0
    margin: int = 8
    match: bool = True  # |rho_ref - rho| (the MS's own relation to the PAN, like D_s); False: relu

    def __post_init__(self) -> None:
        if min(self.spectral, self.spatial) < 0 or self.spectral == self.spatial == 0:
            raise ConfigError(f"full-resolution loss weights must be >= 0 and not both 0: {self}")
        if len(tuple(self.mtf)) != 4:
            raise ConfigError(f"mtf must hold the 4 model bands' gains, got {self.mtf}")
        if self.margin % self.ratio:
            raise ConfigError(f"margin must be a multiple of the ratio {self.ratio}, got {self.margin}")

    @property
    def win(self) -> int:
        return self.window or 2 * self.ratio + 1

    def reference(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """``rho_ref`` (B,4,h',w'): local correlation of the upsampled MS with the PAN taken through the
        same chain as the MS (MTF low-pass, decimation, the same upsampling), as the toolbox's D_s
        compares the upsampled MS with the re-interpolated reduced PAN."""
        pan_lr = mtf_degrade(pan.expand(-1, 4, -1, -1), list(self.mtf), self.ratio)
        pan_chain = upsample(pan_lr, self.ratio)[..., :pan.shape[-2], :pan.shape[-1]]
        return local_correlation(ms_up, pan_chain, self.win)

    def __call__(self, fused: torch.Tensor, ms_lr: torch.Tensor, pan: torch.Tensor, ms_up: torch.Tensor,
                 rho_ref: "torch.Tensor | None" = None) -> Tuple[torch.Tensor, Dict[str, float]]:
        r, m = self.ratio, self.margin
        if fused.shape[-2] != ms_lr.shape[-2] * r or fused.shape[-1] != ms_lr.shape[-1] * r:
            raise ConfigError(f"fused {tuple(fused.shape)} is not {r} x the MS {tuple(ms_lr.shape)}")
        deg = mtf_degrade(fused, list(self.mtf), r)
        mm = m // r
        crop = (slice(None), slice(None), slice(mm, deg.shape[-2] - mm), slice(mm, deg.shape[-1] - mm))
        ref = ms_lr[crop]
        spec = (deg[crop] - ref).abs().mean() / ref.abs().mean().clamp_min(1e-6)
        if rho_ref is None:
            rho_ref = self.reference(ms_up, pan)
        rho = local_correlation(fused, pan, self.win)
        inner = (slice(None), slice(None), slice(m, rho.shape[-2] - m), slice(m, rho.shape[-1] - m))
        gap = rho_ref[inner] - rho[inner]
        spat = (gap.abs() if self.match else F.relu(gap)).mean()
        total = self.spectral * spec + self.spatial * spat
        return total, {"spectral": float(spec.detach()), "spatial": float(spat.detach())}

