"""PanTiny-Small (48,269 parameters): science.md §1.2, ``algorithm: panrestormer``, ``fusion_type: attention``."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from .blocks import TransformerBlock, conv3x3
from .layerwise import Attention, Local, Stage


class GatedPanFusion(nn.Module):
    """``out = f * a + feat * (1 - a)`` with a per-pixel gate ``a`` computed from cat(feat, PAN)."""

    def __init__(self, dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Conv2d(dim + 1, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, 1, 1), nn.Sigmoid())
        self.mix = nn.Conv2d(dim + 1, dim, 1, bias=False)

    def forward(self, feat: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        x = torch.cat([feat, pan], dim=1)
        a = self.gate(x)
        return self.mix(x) * a + feat * (1 - a)


class PanTinySmall(nn.Module):
    """PAN concatenated at the input, 2 latent + 1 refinement blocks, gated PAN fusion at the end.

    forward(ms_up (B,4,H,W), pan (B,1,H,W)) -> (B,4,H,W) = ``ms_up + residual`` (no clamp).
    """

    #: Convolutional context radius: embed 1 + 3 blocks x 2 + output 1 (fusion is 1x1).
    receptive_radius = 8

    def __init__(self, dim: int = 32, heads: int = 2, expansion: float = 2.66, bands: int = 4) -> None:
        super().__init__()
        self.patch_embed = conv3x3(bands + 1, dim)
        self.latent = nn.Sequential(*(TransformerBlock(dim, heads, expansion) for _ in range(2)))
        self.refinement = TransformerBlock(dim, heads, expansion)
        self.fusion = GatedPanFusion(dim)
        self.output = conv3x3(dim, bands)

    def forward(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        feat = self.refinement(self.latent(self.patch_embed(torch.cat([ms_up, pan], dim=1))))
        return self.output(self.fusion(feat, pan)) + ms_up

    def stages(self) -> List[Stage]:
        """The forward pass as stages for layer-wise inference (:mod:`pantiny.models.layerwise`)."""
        return [Local(lambda x, ms_up, pan: self.patch_embed(torch.cat([ms_up, pan], dim=1)), 1),
                *(Attention(b) for b in self.latent), Attention(self.refinement),
                Local(lambda x, ms_up, pan: self.output(self.fusion(x, pan)) + ms_up, 1)]
