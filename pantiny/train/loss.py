"""The PanTiny composite training loss (science.md §1.6).

``L = w_c * Charbonnier(eps) + w_s * (1 - SSIM) + w_f * focal`` with the paper's weights 1.5 / 4.0 /
1.5, on outputs and targets in the unit range, shapes (B,C,H,W):

* Charbonnier: ``mean(sqrt(d^2 + eps^2))``, eps = 1e-6 (the paper's "L1").
* SSIM: single-scale SSIM as in the released ``MEF_SSIM_Loss`` (despite its name): Gaussian window
  11, sigma 1.5, per channel, **zero padding** (``padding=5``, same-size map), C1 = 0.01^2,
  C2 = 0.03^2 (data range 1), mean of the map. This differs from the evaluation SSIM of
  :mod:`pantiny.metrics` ('valid' window positions), as in the published code.
* focal: ``mean(((255 d)^1.1 / 255) * d)`` with ``d = max(|O - G|, 1e-8)`` (mean reduction).

``focal_as_l1=True`` reproduces what the released code actually trains with: its loss factory does
not know the name ``focal`` and falls back to plain L1, so the third term is ``mean(|O - G|)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn.functional as F


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    d = pred - target
    return torch.sqrt(d * d + eps * eps).mean()


def _gauss_window(channels: int, size: int = 11, sigma: float = 1.5, *, dtype=torch.float32, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).to(dtype=dtype, device=device)
    return w.expand(channels, 1, size, size).contiguous()


def ssim_zero_pad(pred: torch.Tensor, target: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (data range 1) with a zero-padded Gaussian window, as the released PanTiny loss."""
    c = pred.shape[1]
    w = _gauss_window(c, size, sigma, dtype=pred.dtype, device=pred.device)
    pad = size // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, padding=pad, groups=c)

    mu_x, mu_y = blur(pred), blur(target)
    sxx = blur(pred * pred) - mu_x * mu_x
    syy = blur(target * target) - mu_y * mu_y
    sxy = blur(pred * target) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return (num / den).mean()


def focal(pred: torch.Tensor, target: torch.Tensor, r: float = 1.1) -> torch.Tensor:
    d = (pred - target).abs().clamp_min(1e-8)
    return ((d * 255.0).pow(r) / 255.0 * d).mean()


@dataclass(frozen=True)
class CompositeLoss:
    """Callable ``loss(pred, target) -> (total, terms)`` with the weights of the paper by default."""

    charbonnier: float = 1.5
    ssim: float = 4.0
    focal: float = 1.5
    focal_as_l1: bool = False
    eps: float = 1e-6

    def __call__(self, pred: torch.Tensor, target: torch.Tensor):
        terms: Dict[str, torch.Tensor] = {
            "charbonnier": charbonnier(pred, target, self.eps),
            "ssim": 1.0 - ssim_zero_pad(pred, target),
            "focal": (pred - target).abs().mean() if self.focal_as_l1 else focal(pred, target),
        }
        total = self.charbonnier * terms["charbonnier"] + self.ssim * terms["ssim"] + self.focal * terms["focal"]
        return total, {k: float(v.detach()) for k, v in terms.items()}
