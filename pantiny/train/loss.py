"""The PanTiny composite training loss (science.md §1.6).

``L = w_c * Charbonnier + w_s * (1 - SSIM) + w_f * focal`` with the paper's weights 1.5 / 4.0 / 1.5,
on outputs and targets in the unit range, shapes (B,C,H,W):

* Charbonnier: ``mean(sqrt(d^2 + eps^2))`` with ``d = O - G``, eps = 1e-6 (the paper's "L1").
* SSIM: single-scale SSIM as in the released ``MEF_SSIM_Loss`` (despite its name): Gaussian window
  11, sigma 1.5, per channel, **zero padding** (``padding=5``, same-size map), C1 = 0.01^2,
  C2 = 0.03^2 (data range 1), mean of the map. This differs from the evaluation SSIM of
  :mod:`pantiny.metrics` ('valid' window positions), as in the published code.
* focal: ``mean(((255 d)^1.1 / 255) * d)`` with ``d = max(|O - G|, 1e-8)`` (mean reduction).
* sam (ours, weight 0 by default = the paper's loss): mean spectral angle in radians between the
  output and target pixel spectra. The paper's terms are per band and leave the spectral angle
  free; on real data that made the model's SAM worse than bicubic upsampling, so the shipped
  configs add this term.

``focal_as_l1=True`` reproduces what the released code actually trains with: its loss factory does
not know the name ``focal`` and falls back to plain L1, so the third term becomes ``mean(|O - G|)``
(still weighted by ``w_f``). The Charbonnier term is kept as the paper states it (the released
code's ``L1`` entry is a plain ``nn.L1Loss``; with eps = 1e-6 the two differ by < 1e-6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..errors import ConfigError

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ConfigError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.ndim != 4:
        raise ConfigError(f"loss inputs must be (B,C,H,W), got shape {tuple(pred.shape)}")


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean Charbonnier penalty ``sqrt((pred - target)^2 + eps^2)`` over all elements (unit range)."""
    d = pred - target
    return torch.sqrt(d * d + eps * eps).mean()


def gaussian_window(channels: int, size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float32,
                    device: "torch.device | str | None" = None) -> torch.Tensor:
    """Normalised 2-D Gaussian window repeated per channel: (channels, 1, size, size), for grouped conv."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).to(dtype=dtype, device=device)
    return w.expand(channels, 1, size, size).contiguous()


def ssim_zero_pad(pred: torch.Tensor, target: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (data range 1) of (B,C,H,W) tensors with a zero-padded Gaussian window, as the released
    PanTiny loss computes it (a same-size SSIM map, averaged over all positions, channels and images)."""
    _check(pred, target)
    c = pred.shape[1]
    w = gaussian_window(c, size, sigma, dtype=pred.dtype, device=pred.device)
    pad = size // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, padding=pad, groups=c)

    mu_x, mu_y = blur(pred), blur(target)
    sxx = blur(pred * pred) - mu_x * mu_x
    syy = blur(target * target) - mu_y * mu_y
    sxy = blur(pred * target) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * sxy + SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sxx + syy + SSIM_C2)
    return (num / den).mean()


def focal(pred: torch.Tensor, target: torch.Tensor, r: float = 1.1) -> torch.Tensor:
    """The paper's focal term ``mean((255 d)^r / 255 * d)``, ``d = max(|pred - target|, 1e-8)`` (unit range)."""
    d = (pred - target).abs().clamp_min(1e-8)
    return ((d * 255.0).pow(r) / 255.0 * d).mean()


def spectral_angle(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean spectral angle (radians) between the (B,C,H,W) spectra of ``pred`` and ``target``.

    The cosine is clamped below 1 so the gradient of ``acos`` stays finite for identical spectra.
    """
    _check(pred, target)
    dot = (pred * target).sum(1)
    norm = pred.norm(dim=1) * target.norm(dim=1)
    cos = dot / (norm + eps)
    return torch.acos(cos.clamp(-1.0 + 1e-6, 1.0 - 1e-6)).mean()


@dataclass(frozen=True)
class CompositeLoss:
    """Callable ``loss(pred, target) -> (total, terms)``, paper weights by default.

    ``pred``, ``target``: (B,4,H,W) unit range. ``total`` is a differentiable scalar tensor; ``terms``
    maps ``"charbonnier"``, ``"ssim"`` (= 1 - SSIM) and ``"focal"`` (or its L1 replacement) to floats,
    unweighted.
    """

    charbonnier: float = 1.5
    ssim: float = 4.0
    focal: float = 1.5
    focal_as_l1: bool = False
    eps: float = 1e-6
    sam: float = 0.0

    def __post_init__(self) -> None:
        for name in ("charbonnier", "ssim", "focal", "sam"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or v != v:
                raise ConfigError(f"loss weight {name} must be a number >= 0, got {v!r}")
        if self.charbonnier == self.ssim == self.focal == self.sam == 0:
            raise ConfigError("all loss weights are 0: nothing to train")
        if not self.eps > 0:
            raise ConfigError(f"Charbonnier eps must be > 0, got {self.eps!r}")

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        _check(pred, target)
        terms: Dict[str, torch.Tensor] = {
            "charbonnier": charbonnier(pred, target, self.eps),
            "ssim": 1.0 - ssim_zero_pad(pred, target),
            "focal": (pred - target).abs().mean() if self.focal_as_l1 else focal(pred, target),
        }
        total = self.charbonnier * terms["charbonnier"] + self.ssim * terms["ssim"] + self.focal * terms["focal"]
        if self.sam:
            terms["sam"] = spectral_angle(pred, target)
            total = total + self.sam * terms["sam"]
        return total, {k: float(v.detach()) for k, v in terms.items()}
