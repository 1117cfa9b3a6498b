"""Restormer-style building blocks shared by the PanTiny models (science.md §1.1).

All convolutions are bias-free; LayerNorm is the "WithBias" variant normalising over channels.
Tensors are (B,C,H,W) throughout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B,C,H,W), with weight and bias (eps 1e-5, biased variance)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_layer_norm(x, self.weight, self.bias, self.eps)


def channel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the channels of ``x`` (B,C,H,W) at each pixel, then ``weight * . + bias`` (C,)."""
    # torch's fused layer_norm over the last axis of the (B,H,W,C) view: the same formula (biased
    # variance, eps inside the root) as mean/var by hand, 4x faster on CPU, and for a channels_last
    # tensor the permuted view is already contiguous.
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, eps)
    return y.permute(0, 3, 1, 2)


class AttentionStats:
    """Whole-scene statistics for one :class:`ChannelAttention` layer.

    The sums that define its attention map on the whole scene (sum q_i k_j, sum q_i^2, sum k_j^2 per
    head), accumulated over the pixels of many tiles; after :meth:`finalise` the layer uses that map
    (``gram``) instead of one computed from the tile alone. This is what makes tiled inference equal
    to whole-image inference (see :mod:`pantiny.scene_attention`).
    """

    def __init__(self) -> None:
        self.qk = self.qq = self.kk = None
        self.gram: "torch.Tensor | None" = None

    def accumulate(self, q: torch.Tensor, k: torch.Tensor, mask: "torch.Tensor | None" = None) -> None:
        """Add the sums of q, k (B,heads,d,HW), pixels weighted by ``mask`` (B,1,H,W) or all counted."""
        if mask is not None:
            m = mask.flatten(2).unsqueeze(1).to(q.dtype)  # (B,1,1,HW)
            qm, km = q * m, k * m
        else:
            qm, km = q, k
        self.add_sums(torch.einsum("bhip,bhjp->hij", qm, k), (q * qm).sum((0, 3)), (k * km).sum((0, 3)))

    def add_sums(self, qk: torch.Tensor, qq: torch.Tensor, kk: torch.Tensor) -> None:
        """Add sums computed elsewhere: ``qk`` (heads,d,d) = sum q_i k_j, ``qq``, ``kk`` (heads,d)."""
        qk, qq, kk = qk.double(), qq.double(), kk.double()
        if self.qk is None:
            self.qk, self.qq, self.kk = qk, qq, kk
        else:
            self.qk += qk
            self.qq += qq
            self.kk += kk

    def add(self, other: "AttentionStats") -> None:
        """Add the sums of ``other`` (a part of the scene counted elsewhere, e.g. on another worker)."""
        if other.qk is None:
            return
        if self.qk is None:
            self.qk, self.qq, self.kk = other.qk.clone(), other.qq.clone(), other.kk.clone()
        else:
            self.qk += other.qk
            self.qq += other.qq
            self.kk += other.kk

    def finalise(self) -> None:
        eps = 1e-12  # as F.normalize
        nq = self.qq.sqrt().clamp_min(eps)
        nk = self.kk.sqrt().clamp_min(eps)
        self.gram = (self.qk / (nq[:, :, None] * nk[:, None, :])).float()


class ChannelAttention(nn.Module):
    """Transposed (channel) self-attention: heads attend across channels, not pixels.

    q and k are L2-normalised over the spatial axis, so the attention map is C/heads x C/heads
    whatever the tile size; it depends on the whole image's statistics, so a tile alone gives a
    slightly different map. Setting ``scene_stats`` (a finalised :class:`AttentionStats`) makes the
    layer use whole-scene statistics.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)
        self.scene_stats: "AttentionStats | None" = None

    @property
    def fixed_stats(self) -> "AttentionStats | None":
        """The whole-scene statistics this layer uses, once finalised; else None (the tile's own)."""
        stats = self.scene_stats
        return stats if stats is not None and stats.gram is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        stats = self.fixed_stats
        if stats is None:
            gram = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        else:
            gram = stats.gram.to(x.dtype)
        attn = (gram * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """GDFN: 1x1 expand to 2*hidden, depthwise 3x3, GELU gate, 1x1 back to ``dim``."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + Attn(LN(x))`` then ``x + GDFN(LN(x))``."""

    def __init__(self, dim: int, heads: int, expansion: float) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = ChannelAttention(dim, heads)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GatedFeedForward(dim, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)
