"""PanTiny-Big (81,744 parameters): science.md §1.1, ``algorithm: pantiny``, ``fusion_type: enhanced_conv``."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from .blocks import TransformerBlock, conv3x3
from .layerwise import Attention, Local, Stage


class PanTinyBig(nn.Module):
    """Encoder on the upsampled MS, "Enhanced Conv" PAN fusion, latent blocks, one-conv refinement.

    forward(ms_up (B,4,H,W), pan (B,1,H,W)) -> (B,4,H,W), both inputs on the PAN grid, values in the
    normalised [0, ~1] range; the output is ``ms_up + residual`` (no clamp).
    """

    #: Pixels of context each output pixel sees through the convolutions (the attention is global):
    #: embed 1 + 6 blocks x 2 (two depthwise 3x3 each) + fusion 2 + refine 1 + output 1.
    receptive_radius = 17

    def __init__(self, dim: int = 28, blocks: int = 3, heads: int = 2, expansion: float = 2.0,
                 bands: int = 4) -> None:
        super().__init__()
        self.patch_embed = conv3x3(bands, dim)
        self.encoder = nn.Sequential(*(TransformerBlock(dim, heads, expansion) for _ in range(blocks)))
        self.fusion = nn.Sequential(conv3x3(dim + 1, dim), nn.ReLU(inplace=True), conv3x3(dim, dim))
        self.latent = nn.Sequential(*(TransformerBlock(dim, heads, expansion) for _ in range(blocks)))
        self.refine = conv3x3(dim, dim)
        self.output = conv3x3(dim, bands)

    def forward(self, ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        feat = self.encoder(self.patch_embed(ms_up))
        feat = self.fusion(torch.cat([feat, pan], dim=1))
        feat = self.refine(self.latent(feat))
        return self.output(feat) + ms_up

    def stages(self) -> List[Stage]:
        """The forward pass as stages for layer-wise inference (:mod:`pantiny.models.layerwise`)."""
        return [Local(lambda x, ms_up, pan: self.patch_embed(ms_up), 1),
                *(Attention(b) for b in self.encoder),
                Local(lambda x, ms_up, pan: self.fusion(torch.cat([x, pan], dim=1)), 2),
                *(Attention(b) for b in self.latent),
                Local(lambda x, ms_up, pan: self.output(self.refine(x)) + ms_up, 2)]
