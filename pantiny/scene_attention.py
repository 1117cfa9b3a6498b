"""Whole-scene channel attention, so that tiled inference equals whole-image inference.

The PanTiny attention layers normalise q and k over *all* pixels of their input, so a tile alone
yields a slightly different attention map than the full scene (up to ~1% of the value range for a
512 tile). The fix is exact and keeps memory bounded: the sums that define each layer's map are
additive over pixels, so they are accumulated tile by tile over the scene (each pixel counted once,
via the crop ownership masks), one pass per attention layer in forward order, each pass using the
maps already fixed for the earlier layers and stopping at the layer it measures. A final pass then
runs the whole network with all maps fixed; with tile overlap >= 2 x the model's receptive radius,
cropping the tiles gives the whole-image result.

Cost: for PanTiny-Big about 3.6 forward passes instead of 1 (the passes stop early).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .models.blocks import AttentionStats, ChannelAttention, StopForward
from .tiling import Tile, TileSource, iter_batches, sample_tiles


def attention_layers(model: nn.Module) -> List[ChannelAttention]:
    """The model's attention layers in forward (registration) order."""
    return [m for m in model.modules() if isinstance(m, ChannelAttention)]


def layer_sums(model: nn.Module, index: int, source: TileSource, *, tile: int, overlap: int, batch_size: int,
               device: torch.device, core: Optional[Tuple[int, int, int, int]] = None,
               only: Optional[Sequence[Tile]] = None,
               progress: Optional[Callable[[int], None]] = None) -> AttentionStats:
    """The sums defining attention layer ``index`` over ``source`` (layers before it already fixed).

    Each pixel is counted once (tile ownership), nodata pixels not at all; ``core`` =
    ``(row, col, height, width)`` counts only that window of the source (a block of a scene split
    across workers, whose margin belongs to other blocks). Sums of blocks add up to the scene's.
    ``only``: gather over these tiles alone (a sample of the scene, :func:`pantiny.tiling.sample_tiles`).
    """
    layer = attention_layers(model)[index]
    stats = AttentionStats()
    layer.scene_stats = stats
    try:
        for _, tiles, ms_up, pan, valid, weights in iter_batches(source, tile=tile, overlap=overlap,
                                                                 batch_size=batch_size, blend="crop", only=only):
            own = np.stack(weights) * np.stack(valid)
            if core is not None:
                r0, c0, h, w = core
                for i, t in enumerate(tiles):
                    rows = (np.arange(t.row, t.row + t.height) >= r0) & (np.arange(t.row, t.row + t.height) < r0 + h)
                    cols = (np.arange(t.col, t.col + t.width) >= c0) & (np.arange(t.col, t.col + t.width) < c0 + w)
                    own[i] *= np.outer(rows, cols)
            stats.mask = torch.from_numpy(own.astype(np.float32))[:, None].to(device)
            try:
                with torch.inference_mode():
                    model(ms_up[:, :4].to(device), pan.to(device))
            except StopForward:
                pass
            else:  # pragma: no cover - a layer that never ran would leave the stats empty
                raise AssertionError("attention layer was not reached during statistics collection")
            if progress is not None:
                progress(len(weights))
    finally:
        stats.mask = None
        layer.scene_stats = None
    return stats


@contextmanager
def scene_attention(model: nn.Module, source: TileSource, *, tile: int, overlap: int, batch_size: int,
                    device: torch.device, sample: Optional[int] = None,
                    progress: Optional[Callable[[int], None]] = None) -> Iterator[nn.Module]:
    """Fix every attention layer of ``model`` to whole-scene statistics for the duration of the block.

    ``model(ms_up, pan)`` must take the 4 model bands; the layers are restored on exit, so the same
    model object can be reused for another scene. ``sample``: estimate the statistics from at most
    that many tiles spread over the scene (:func:`pantiny.tiling.sample_tiles`) instead of all of
    them: the passes then cost ``sample`` tiles each, whatever the scene size (the ``"sampled"``
    attention mode; exact when the scene has no more tiles than that).
    """
    radius = getattr(model, "receptive_radius", None)
    if radius is not None and overlap // 2 < radius:
        raise InputError(f"tile overlap {overlap} is too small for exact tiling with this model: "
                         f"need at least {2 * radius} pixels (2 x its receptive radius {radius})")
    layers = attention_layers(model)
    only = None if sample is None else sample_tiles(source.height, source.width, tile, overlap, sample)
    try:
        for k, layer in enumerate(layers):
            stats = layer_sums(model, k, source, tile=tile, overlap=overlap, batch_size=batch_size, device=device,
                               only=only, progress=progress)
            stats.finalise()
            layer.scene_stats = stats
        yield model
    finally:
        for layer in layers:
            layer.scene_stats = None
