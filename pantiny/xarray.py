"""Lazy fusion of xarray / Dask scenes (optional extra ``pantiny[dask]``).

:func:`pansharpen` takes (rio)xarray DataArrays, eager or Dask-backed, and returns a lazy DataArray
on the PAN grid, computed block by block by Dask (on a ``dask.distributed`` cluster when a client is
active). The pieces are those of :func:`pantiny.pansharpen`:

* **scene statistics first, as reductions**: the MS statistics and the PAN overview are read
  through the reader layer (:class:`pantiny.readers.DataArrayRaster`, each read a Dask computation);
  classical methods fit their scene-wide state on them; the model's whole-scene attention is one
  Dask computation per attention layer, each block adding the sums of the pixels it owns
  (:func:`pantiny.scene_attention.layer_sums`), summed on the client;
* **then the fusion, lazily**: each output block is a task that reads its PAN block plus a margin
  (and the MS under it), runs the same tiling engine (:func:`pantiny.tiling.run_tiled`) and keeps
  the block without its margin. With a margin >= the method's context (the model's receptive
  radius), block boundaries do not show: the result equals ``pantiny.pansharpen`` on the same arrays.

The fusion function (with the model and its fixed statistics) is one task of the graph whose result
every block task depends on, so a worker receives the weights once, not once per task.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .api import _denormalise, _fuser, prepare_scene
from .choices import ATTENTION, OTHER_BANDS, UPSAMPLING, check
from .devices import compute_dtype, pick_device
from .errors import InputError
from .models.blocks import AttentionStats
from .readers import DataArrayRaster, OffsetRaster, PairReader
from .scene_attention import attention_layers, check_overlap, layer_sums
from .source import SceneSource
from .tiling import run_tiled
from .windows import Window

__all__ = ["pansharpen"]


@dataclass(frozen=True)
class _Plan:
    """Everything a block task needs besides its pixels and the fusion function (small, picklable)."""

    pan_shape: Tuple[int, int, int]
    ms_shape: Tuple[int, int, int]
    channels: Tuple[int, ...]
    scale: float
    ratio: int
    upsampling: str
    pan_nodata: Optional[float]
    ms_nodata: Optional[float]
    ms_fill: Optional[Tuple[float, ...]]
    tile: int
    overlap: int
    batch_size: int
    blend: str
    order: Tuple[int, ...]
    dtype: str
    out_nodata: Optional[float]
    margin: int
    precision: str = "float32"


@dataclass(frozen=True)
class _Block:
    """One output block ``core`` (PAN rows/cols) and the PAN / MS windows its task reads."""

    core: Window
    pan: Window
    ms: Window


def pansharpen(pan: Any, ms: Any, *, chunks: int = 2048, sensor: Any = None, bands: Optional[Sequence[int]] = None,
               model: Union[str, nn.Module] = "pantiny-big", method: str = "pantiny", device: str = "cpu",
               tile: int = 1024, overlap: int = 64, attention: str = "scene", batch_size: Optional[int] = None,
               ratio: int = 4, scale: Optional[float] = None, upsampling: str = "bicubic",
               other_bands: str = "drop", nodata: Optional[float] = None,
               method_options: Optional[Dict[str, Any]] = None, precision: str = "float32") -> Any:
    """Fuse xarray DataArrays lazily; options as :func:`pantiny.pansharpen`.

    Args:
        pan: PAN DataArray ``(y, x)`` or ``(1, y, x)`` (numpy- or Dask-backed), on a grid nested with the MS
            (``ms.rio.reproject_match`` a coarser grid first when it is not).
        ms: MS DataArray ``(band, y/ratio, x/ratio)``.
        chunks: output block side in PAN pixels (rounded up to a multiple of ``ratio``); each block is
            one task reading its block plus a margin of ``overlap`` pixels.
        device: where each task runs the network (``"cpu"`` or ``"cuda"`` on GPU workers).

    Returns:
        A lazy ``(band, y, x)`` DataArray of the MS dtype on the PAN grid: PAN coordinates, band names,
        CRS, transform and nodata (through rioxarray when installed). ``.compute()``, ``.rio.to_raster``
        or ``dask.compute`` runs it.
    """
    import dask
    import dask.array as da
    import xarray as xr

    check(attention, ATTENTION, "attention")
    check(other_bands, OTHER_BANDS, "other_bands")
    check(upsampling, UPSAMPLING, "upsampling")
    if not isinstance(chunks, int) or chunks < 1:
        raise InputError(f"chunks must be a positive integer (PAN pixels), got {chunks!r}")
    if not isinstance(pan, xr.DataArray) or not isinstance(ms, xr.DataArray):
        raise InputError("pantiny.xarray.pansharpen takes xarray DataArrays; "
                         "use pantiny.pansharpen for arrays and files")
    pan_r, ms_r = DataArrayRaster(pan, "PAN"), DataArrayRaster(ms, "MS")
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model)  # its attention layers get this scene's statistics
    scene = prepare_scene(pan_r, ms_r, sensor=sensor, bands=bands, ratio=ratio, scale=scale, upsampling=upsampling,
                          other_bands=other_bands, nodata=nodata)
    source, sens = scene.source, scene.sensor
    dev = pick_device(device)
    fuse, runner = _fuser(method, model, dev, source, sens, method_options, other_bands, tile=tile, overlap=overlap,
                          batch_size=batch_size or 1, precision=precision)
    net = runner.model if runner is not None else None
    if net is not None:
        check_overlap(net, overlap)
    chunks = -(-chunks // ratio) * ratio
    h, w = source.height, source.width
    out_nodata = source.ms_nodata if source.ms_nodata is not None else source.pan_nodata
    order = tuple(int(i) for i in np.argsort(source.channels))
    plan = _Plan(pan_r.shape, ms_r.shape, tuple(source.channels), float(source.scale), ratio, upsampling,
                 source.pan_nodata, source.ms_nodata,
                 tuple(float(v) for v in source.ms_fill) if source.ms_fill is not None else None,
                 tile, overlap, batch_size or 1, "ramp" if net is not None and attention == "tile" else "crop",
                 order, np.dtype(ms_r.dtype).str, out_nodata, overlap, precision)
    grid = _blocks(h, w, chunks, plan)

    def inputs(b: _Block) -> Tuple[Any, Any]:
        p, m = b.pan, b.ms
        return (pan_r.da.data[:, p.row:p.row + p.height, p.col:p.col + p.width],
                ms_r.da.data[:, m.row:m.row + m.height, m.col:m.col + m.width])

    if net is not None and attention in ("scene", "sampled"):  # one reduction per layer ("sampled": exact here)
        for k, layer in enumerate(attention_layers(net)):
            shared = dask.delayed(_identity, pure=False)(net)
            parts = dask.compute(*[dask.delayed(_block_sums)(shared, k, plan, *inputs(b), b)
                                   for row in grid for b in row])
            total = AttentionStats()
            for part in parts:
                total.add(part)
            total.finalise()
            layer.scene_stats = total
    shared_fuse = dask.delayed(_identity, pure=False)(fuse)
    n_out = len(plan.channels)
    data = da.block([[da.from_delayed(dask.delayed(_fuse_block)(shared_fuse, plan, *inputs(b), b),
                                      shape=(n_out, b.core.height, b.core.width), dtype=np.dtype(plan.dtype))
                      for b in row] for row in grid])
    return _as_dataarray(data, pan, ms_r, sens, plan)


def _identity(x: Any) -> Any:
    return x


def _blocks(h: int, w: int, chunks: int, plan: _Plan) -> List[List[_Block]]:
    """Output blocks (row-major) with the PAN and MS windows each task reads."""
    from .source import MS_MARGIN

    r, m = plan.ratio, plan.margin
    mh, mw = plan.ms_shape[1], plan.ms_shape[2]
    grid = []
    for r0 in range(0, h, chunks):
        row = []
        for c0 in range(0, w, chunks):
            core = Window(r0, c0, min(chunks, h - r0), min(chunks, w - c0))
            pr0, pc0 = max(0, r0 - m), max(0, c0 - m)
            pr1, pc1 = min(h, r0 + core.height + m), min(w, c0 + core.width + m)
            mr0, mc0 = max(0, pr0 // r - MS_MARGIN), max(0, pc0 // r - MS_MARGIN)
            mr1, mc1 = min(mh, math.ceil(pr1 / r) + MS_MARGIN), min(mw, math.ceil(pc1 / r) + MS_MARGIN)
            row.append(_Block(core, Window(pr0, pc0, pr1 - pr0, pc1 - pc0), Window(mr0, mc0, mr1 - mr0, mc1 - mc0)))
        grid.append(row)
    return grid


class _WindowSource:
    """The tile source of a window of a scene (tiles in window coordinates)."""

    def __init__(self, parent: SceneSource, window: Window) -> None:
        self.parent, self.window = parent, window
        self.height, self.width = window.height, window.width

    def read(self, t: Window) -> Tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        return self.parent.read(Window(t.row + self.window.row, t.col + self.window.col, t.height, t.width))


def _block_source(plan: _Plan, pan_blk: np.ndarray, ms_blk: np.ndarray, b: _Block) -> _WindowSource:
    reader = PairReader(OffsetRaster(np.asarray(pan_blk), b.pan.row, b.pan.col, plan.pan_shape, "PAN"),
                         OffsetRaster(np.asarray(ms_blk), b.ms.row, b.ms.col, plan.ms_shape, "MS"))
    src = SceneSource(reader, list(plan.channels), plan.scale, plan.ratio, plan.upsampling, plan.pan_nodata,
                       plan.ms_nodata)
    src.ms_fill = np.asarray(plan.ms_fill) if plan.ms_fill is not None else None
    return _WindowSource(src, b.pan)


def _tiling(plan: _Plan, b: _Block) -> Dict[str, Any]:
    return dict(tile=min(plan.tile, max(b.pan.height, b.pan.width)), overlap=plan.overlap,
                batch_size=plan.batch_size)


def _block_sums(net: nn.Module, index: int, plan: _Plan, pan_blk: np.ndarray, ms_blk: np.ndarray,
                b: _Block) -> AttentionStats:
    """Attention sums of layer ``index`` over the pixels of block ``b`` (its core; the margin is context)."""
    net = copy.deepcopy(net)  # tasks of one worker run in threads: each sets its own statistics
    src = _block_source(plan, pan_blk, ms_blk, b)
    core = (b.core.row - b.pan.row, b.core.col - b.pan.col, b.core.height, b.core.width)
    dev = next(net.parameters()).device
    return layer_sums(net, index, src, device=dev, core=core, dtype=compute_dtype(plan.precision, dev),
                      **_tiling(plan, b))


def _fuse_block(fuse: Any, plan: _Plan, pan_blk: np.ndarray, ms_blk: np.ndarray, b: _Block) -> np.ndarray:
    """Fused DN ``(C', core h, core w)`` of block ``b``."""
    src = _block_source(plan, pan_blk, ms_blk, b)
    t = _tiling(plan, b)
    fused = valid = None
    for row, strip, ok in run_tiled(src, fuse, blend=plan.blend, **t):
        if fused is None:
            fused = np.empty((strip.shape[0], src.height, src.width), np.float32)
            valid = np.empty((src.height, src.width), bool)
        fused[:, row:row + strip.shape[1]] = strip
        valid[row:row + strip.shape[1]] = ok
    r0, c0 = b.core.row - b.pan.row, b.core.col - b.pan.col
    core = (slice(r0, r0 + b.core.height), slice(c0, c0 + b.core.width))
    return _denormalise(fused[:, core[0], core[1]], valid[core], np.asarray(plan.order), plan.scale,  # type: ignore
                        np.dtype(plan.dtype), plan.out_nodata)


def _band_names(sens: Any, ms_r: DataArrayRaster, plan: _Plan) -> List[str]:
    chans = sorted(plan.channels)
    if "band" in ms_r.da.coords and ms_r.da.coords["band"].dtype.kind in "UO":
        names = [str(v) for v in ms_r.da.coords["band"].values]
        return [names[i] for i in chans]
    if sens.n_bands == ms_r.count:
        return [sens.bands[i] for i in chans]
    return [f"band {i + 1}" for i in chans]


def _as_dataarray(data: Any, pan: Any, ms_r: DataArrayRaster, sens: Any, plan: _Plan) -> Any:
    import xarray as xr

    pan3 = pan if pan.ndim == 3 else pan.expand_dims("band")
    ydim, xdim = pan3.dims[1], pan3.dims[2]
    coords: Dict[str, Any] = {"band": _band_names(sens, ms_r, plan)}
    for d in (ydim, xdim):
        if d in pan3.coords:
            coords[d] = pan3.coords[d].values
    out = xr.DataArray(data, dims=("band", ydim, xdim), coords=coords, name="fused",
                       attrs={"SENSOR": sens.name.upper()})
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        if pan3.rio.crs is not None:
            # the PAN's own geotransform: recomputing it from the coordinates adds float noise
            out = out.rio.write_crs(pan3.rio.crs).rio.write_transform(pan3.rio.transform(recalc=False))
        if plan.out_nodata is not None:
            out = out.rio.write_nodata(plan.out_nodata)
    except ImportError:
        if plan.out_nodata is not None:
            out.attrs["nodata"] = plan.out_nodata
    return out
