"""``pansharpen()``: the public fusion entry point.

Data flows one way: read (arrays or GeoTIFF windows) -> select bands -> normalise (DN / scale) ->
upsample MS onto the PAN grid -> tile -> infer (model or classical method) -> blend -> denormalise ->
restore band order and nodata -> return or write.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _allocator
from . import io as rio_io
from .align import align_pair
from .choices import ATTENTION, MODEL_METHODS, OTHER_BANDS, PRECISIONS, SAMPLED_TILES, UPSAMPLING, check
from .errors import InputError, ModelOutputError
from .nodata import avoid_nodata
from .products import ProductInfo, describe_product, model_band_indices, product_of
from .readers import ArrayRaster, GeoTIFFRaster, PairReader, Raster
from .sensors import Sensor, get_sensor, parse_band_weights, resolve_bands, with_band_names

# torch (1-2 s to import) and the modules built on it load on first use: Brovey with GDAL's cubic
# resampling on files runs entirely in GDAL, so that call never pays for them.
if TYPE_CHECKING:
    import torch
    from torch import nn

    from .scene_attention import SceneRunner
    from .source import SceneSource

_log = logging.getLogger("pantiny")

ArrayLike = Union[np.ndarray, "torch.Tensor", str, "os.PathLike[str]"]


def _is_tensor(x: Any) -> bool:
    """A torch tensor, without importing torch (a caller holding one has imported it)."""
    torch_mod = sys.modules.get("torch")
    return torch_mod is not None and isinstance(x, torch_mod.Tensor)


# --- argument handling --------------------------------------------------------------------------

def _to_numpy(x: Union[np.ndarray, torch.Tensor], what: str, ndim_2d_ok: bool) -> np.ndarray:
    a = x.detach().cpu().numpy() if _is_tensor(x) else np.asarray(x)
    if a.ndim == 2 and ndim_2d_ok:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"{what} must be (C,H,W){' or (H,W)' if ndim_2d_ok else ''}, got shape {a.shape}")
    if a.dtype.kind not in "uif":
        raise InputError(f"{what} has unsupported dtype {a.dtype}; use integer or float data")
    return a


def _product_of(ms: Raster) -> ProductInfo:
    """Vendor metadata of the MS (sensor, bit depth, band names), logged when found: of its file (a
    GeoTIFF path, or the file an xarray DataArray was opened from), else of its tags and band names."""
    path = getattr(ms, "path", None)
    info = product_of(path, ms.tags) if path else describe_product(None, ms.tags, None,
                                                                    getattr(ms, "descriptions", None))
    if info.source:
        _log.info("metadata: %s", info.summary())
    return info


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _check_precision(method: str, precision: str) -> None:
    """Half precision is the network's: an error for a classical method (no silently ignored option)."""
    check(precision, PRECISIONS, "precision")
    if precision != "float32" and method not in MODEL_METHODS:
        raise InputError(f"precision={precision!r} is for the network; the classical method {method!r} "
                         "computes in float32: leave precision at 'float32'")


def _fuser(method: str, model: Union[str, nn.Module], device: torch.device, source: SceneSource,
           sensor: Sensor, method_options: Optional[Dict[str, Any]], other_bands: str, *, tile: int, overlap: int,
           batch_size: int, precision: str = "float32") -> Tuple[Any, Optional[SceneRunner]]:
    """``fuse(ms_up, pan, tiles)`` for the chosen method (the core sees the 4 model bands only), and,
    when the method is the model, the :class:`~pantiny.scene_attention.SceneRunner` that computes it
    (layer by layer, in ``precision``; whole-scene statistics once its ``gather`` has run)."""
    import torch
    from torch import nn

    from .devices import compute_dtype

    _check_precision(method, precision)
    dtype = compute_dtype(precision, device)
    runner: Optional[SceneRunner] = None
    if device.type == "cpu":  # chunk-sized buffers reused from the heap, not page-faulted in afresh
        _allocator.keep_heap()
    if method in MODEL_METHODS:
        from .scene_attention import SceneRunner
        from .weights import load_model

        net = load_model(model, device=device) if not isinstance(model, nn.Module) else model.to(device).eval()
        # channels_last conv weights make the oneDNN/cuDNN kernels ~1.7x faster on CPU (same results).
        net = net.to(memory_format=torch.channels_last)
        runner = SceneRunner(net, source, tile=tile, overlap=overlap, batch_size=batch_size, device=device,
                             dtype=dtype)

        def core(ms_up: torch.Tensor, pan: torch.Tensor, tiles: Sequence[Any]) -> torch.Tensor:
            y = runner.fuse(ms_up, pan, tiles).float().cpu()
            if not _all_finite(y):
                raise ModelOutputError(
                    f"the network produced NaN or infinite values ({int((~torch.isfinite(y)).sum())} of {y.numel()}): "
                    f"its weights ({model if isinstance(model, str) else type(model).__name__}) are corrupt or "
                    f"diverged, or the input is far outside the range it was trained on (value scale {source.scale:g})")
            return y
    else:
        from . import classical

        if method not in classical.METHODS:
            raise InputError(f"unknown method {method!r}; use 'pantiny' or one of {sorted(classical.METHODS)}")
        cm = classical.METHODS[method]
        if overlap // 2 < cm.context:
            raise InputError(f"method {method!r} needs {cm.context} pixels of context: use overlap >= {2 * cm.context}")
        state: Dict[str, Any] = {}
        if cm.fit is not None:
            ms_lr, pan_lr = source.overview()
            state = cm.fit(ms_lr[:4], pan_lr, sensor, **(method_options or {}))
        elif method_options:
            raise InputError(f"method {method!r} takes no options, got {sorted(method_options)}")

        def core(ms_up: torch.Tensor, pan: torch.Tensor, tiles: Sequence[Any]) -> torch.Tensor:
            return cm.apply(ms_up, pan, state)

    def fuse(ms_up: torch.Tensor, pan: torch.Tensor, tiles: Sequence[Any]) -> torch.Tensor:
        fused = core(ms_up[:, :4], pan, tiles)
        if runner is None and not _all_finite(fused):
            raise ModelOutputError(f"method {method!r} produced NaN or infinite values on this scene")
        if ms_up.shape[1] == 4:
            return fused
        extra = ms_up[:, 4:]
        if other_bands == "ratio":  # carry the fused detail to the other bands as a brightness ratio
            gain = fused.sum(1, keepdim=True).clamp_min(1e-6) / ms_up[:, :4].sum(1, keepdim=True).clamp_min(1e-6)
            extra = extra * gain
        return torch.cat([fused, extra], 1)

    return fuse, runner


@dataclass
class Scene:
    """A PAN/MS pair ready for fusion or adaptation: the normalised tile source (its first four
    channels are the model bands), the sensor and the PAN raster (georeferencing)."""

    source: "SceneSource"
    sensor: Sensor
    pan: Raster


@dataclass
class _Pair:
    """What the files' headers say about a scene (no pixel read yet): the rasters on nested grids,
    the sensor and its model bands, nodata values, vendor metadata."""

    pan: Raster
    ms: Raster
    reader: PairReader
    sensor: Sensor
    model_idx: Tuple[int, ...]
    sensor_named: bool  # False: guessed from the band count (says nothing about the bit depth)
    sensor_from: str
    product: Optional[ProductInfo]
    pan_nodata: Optional[float]
    ms_nodata: Optional[float]
    nested: bool  # files whose grids nest as they are (no window or warp)


def _describe_pair(pan: ArrayLike, ms: ArrayLike, sensor: Union[str, Sensor, None], bands: Optional[Sequence[int]],
                   ratio: int, nodata: Optional[float]) -> _Pair:
    """Step *read, bands* of :func:`pansharpen` from headers and metadata only."""
    if not isinstance(ratio, int) or ratio < 1:
        raise InputError(f"ratio must be a positive integer, got {ratio!r}")
    if _is_path(pan) != _is_path(ms):
        raise InputError("pass PAN and MS both as arrays/tensors or both as file paths")
    if isinstance(sensor, str) and sensor.strip().lower() == "auto":
        sensor = None
    sensor_from = "given" if sensor is not None else None
    product, nested = None, False
    if _is_path(pan):
        pan_r, ms_r = GeoTIFFRaster(pan, "PAN"), GeoTIFFRaster(ms, "MS")
        product = _product_of(ms_r)
        aligned = align_pair(pan_r, ms_r, ratio)
        if aligned.note:
            _log.info(aligned.note)
        pan_r, ms_r, nested = aligned.pan, aligned.ms, aligned.how == "nested"
        if sensor is None and product.sensor:
            sensor, sensor_from = product.sensor, product.source
        pan_nodata = nodata if nodata is not None else pan_r.nodata
        ms_nodata = nodata if nodata is not None else ms_r.nodata
    elif isinstance(pan, Raster) and isinstance(ms, Raster):  # other backends (xarray / Dask)
        pan_r, ms_r = pan, ms
        if pan_r.count != 1:
            raise InputError(f"PAN must have 1 band, got {pan_r.count} (shape {pan_r.shape})")
        if pan_r.transform is not None and ms_r.transform is not None:
            rio_io.check_pair(pan_r.info, ms_r.info, ratio)
        else:
            rio_io.check_sizes(pan_r.hw, ms_r.hw, ratio)
        product = _product_of(ms_r)
        if sensor is None and product.sensor:
            sensor, sensor_from = product.sensor, product.source
        pan_nodata = nodata if nodata is not None else pan_r.nodata
        ms_nodata = nodata if nodata is not None else ms_r.nodata
    else:
        pan_r = ArrayRaster(_to_numpy(pan, "PAN", True), "PAN")
        ms_r = ArrayRaster(_to_numpy(ms, "MS", False), "MS")
        if pan_r.count != 1:
            raise InputError(f"PAN must have 1 band, got {pan_r.count} (shape {pan_r.shape})")
        rio_io.check_sizes(pan_r.hw, ms_r.hw, ratio)
        pan_nodata = ms_nodata = nodata
    reader = PairReader(pan_r, ms_r)
    pan_dtype = pan_r.dtype
    if pan_dtype != reader.dtype and (pan_dtype.kind == "f") != (reader.dtype.kind == "f"):
        raise InputError(f"PAN dtype {pan_dtype} and MS dtype {reader.dtype} differ in kind (int vs float): "
                         "they must share one value scale")
    names = product.band_names if product is not None and bands is None else None
    if names is not None and len(names) != reader.n_bands:
        _log.info("ignoring the metadata's band list (%d bands) for an MS of %d bands", len(names), reader.n_bands)
        names = None
    if names is not None:
        if sensor is not None:
            sensor = with_band_names(get_sensor(sensor), names)
        else:
            bands = model_band_indices(names)
            sensor_from = product.source if bands is not None else None  # type: ignore[union-attr]
    sens, model_idx = resolve_bands(reader.n_bands, sensor, bands)
    if sensor_from is None:
        sensor_from = "explicit bands" if bands is not None else f"guessed from {reader.n_bands} bands"
    return _Pair(pan_r, ms_r, reader, sens, tuple(int(i) for i in model_idx), sensor is not None, sensor_from,
                 product, pan_nodata, ms_nodata, nested)


def prepare_scene(pan: ArrayLike, ms: ArrayLike, *, sensor: Union[str, Sensor, None] = "auto",
                  bands: Optional[Sequence[int]] = None, ratio: int = 4, scale: Optional[float] = None,
                  upsampling: str = "bicubic", other_bands: str = "drop", nodata: Optional[float] = None) -> Scene:
    """Read, check and describe a scene (steps *read, bands, normalise* of :func:`pansharpen`, whose
    arguments these are): one place for the API, adaptation and the CLI."""
    return _prepare(_describe_pair(pan, ms, sensor, bands, ratio, nodata), ratio=ratio, scale=scale,
                    upsampling=upsampling, other_bands=other_bands, stacklevel=4)


def _prepare(pair: _Pair, *, ratio: int, scale: Optional[float], upsampling: str, other_bands: str,
             stacklevel: int = 3) -> Scene:
    """Step *normalise*: scene statistics, value scale and the tile source of a described pair
    (``stacklevel``: of the warnings, so they point at the user's call)."""
    from .normalize import choose_scale, scale_warnings
    from .source import SceneSource

    reader, sens, model_idx, product = pair.reader, pair.sensor, pair.model_idx, pair.product
    extras = [] if other_bands == "drop" else [b for b in range(reader.n_bands) if b not in model_idx]
    source = SceneSource(reader, list(model_idx) + extras, 1.0, ratio, upsampling, pair.pan_nodata, pair.ms_nodata)
    st = source.stats()
    # A sensor guessed from the band count says nothing about the bit depth: only a named one does.
    sens_for_scale = sens if pair.sensor_named else None
    meta_max = product.max_value if product is not None and scale is None else None
    sc, why = choose_scale(reader.dtype, sens_for_scale, scale if meta_max is None else meta_max, data_max=st.ms_max)
    if meta_max is not None:
        why = f"{product.bits}-bit product per {product.source}"  # type: ignore[union-attr]
    source.scale = sc
    source.ms_fill = st.ms_mean
    _log.info("sensor %s (%s), model bands R,G,B,NIR = MS bands %s, value scale %g (%s)",
              sens.name, pair.sensor_from, list(model_idx), sc, why)
    for msg in scale_warnings(sc, why, reader.dtype, st.ms_max):
        warnings.warn(msg, stacklevel=stacklevel)
    if not (st.ms_std[:4] > 0).any() or st.pan_std == 0:
        which = "MS" if not (st.ms_std[:4] > 0).any() else "PAN"
        warnings.warn(f"the {which} has zero variance (a constant image): there is no spatial or spectral "
                      "information to fuse, so the result is not meaningful", stacklevel=stacklevel)
    return Scene(source, sens, pair.pan)


# --- public API ---------------------------------------------------------------------------------

def pansharpen(pan: ArrayLike, ms: ArrayLike, *, sensor: Union[str, Sensor, None] = "auto",
               bands: Optional[Sequence[int]] = None, model: Union[str, nn.Module] = "pantiny-big",
               method: str = "pantiny", device: Union[str, torch.device] = "auto", tile: int = 1024,
               overlap: int = 64, attention: str = "scene", batch_size: Optional[int] = None, ratio: int = 4,
               scale: Optional[float] = None, upsampling: str = "bicubic", other_bands: str = "drop",
               nodata: Optional[float] = None, out: Union[str, "os.PathLike[str]", None] = None,
               overwrite: bool = True, progress: bool = False,
               method_options: Optional[Dict[str, Any]] = None,
               adapt: Union[bool, Dict[str, Any]] = False, cog: bool = False,
               creation_options: Optional[Dict[str, Any]] = None,
               precision: str = "float32") -> Union[np.ndarray, torch.Tensor, Path]:
    """Fuse a panchromatic band with a multispectral image onto the PAN grid.

    Args:
        pan: PAN as (H,W) or (1,H,W) array/tensor, or a GeoTIFF path (1 band).
        ms: MS as (C,h,w) array/tensor with ``h == ceil(H / ratio)``, or a raster path (GeoTIFF, COG,
            VRT, Maxar ``.TIL``: anything GDAL opens). MS pixel ``j`` covers PAN pixels
            ``ratio*j .. ratio*j + ratio - 1``. Files that overlap without being nested (another
            corner, extent or CRS) are aligned by georeferencing (:mod:`pantiny.align`) and fused
            over their overlap; the output is then on the PAN crop's grid.
        sensor: sensor table key (``"wv2"``, ``"wv3"``, ``"gf2"``, ``"qb"``, ``"ikonos"``, ...): band map, bit
            depth and MTF. ``"auto"`` (default; ``None`` too): from the files' metadata
            (:mod:`pantiny.products`: ``SENSOR`` tag, Maxar ``.IMD``, GaoFen XML, DIMAP, GDAL
            ``IMAGERY``; bit depth and band order too), else ``generic`` for 4 bands (B,G,R,NIR) and
            the WorldView layout for 8 bands. The log says what was found.
        bands: explicit 0-based MS indices of the R, G, B, NIR bands (overrides the sensor's map).
        model: manifest name, ``.safetensors`` path, or an ``nn.Module`` taking ``(ms_up, pan)``.
        method: ``"pantiny"`` (the model) or a classical method of :mod:`pantiny.classical`
            (``"brovey"``, ``"ihs"``, ``"gs"``, ``"gsa"``, ``"sfim"``, ``"pca"``, ``"mtf-glp"``, ``"lmvm"``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        tile, overlap: largest tile side and overlap in PAN pixels; the scene is covered by as few
            equal tiles of at most ``tile`` pixels as keep ``overlap`` between neighbours. Each pixel is
            taken from the tile whose centre holds it, keeping >= overlap/2 pixels of context (the
            model needs overlap >= 34). On CPU the network runs each tile in cache-sized chunks
            (:mod:`pantiny.models.layerwise`), so large tiles cost no speed and waste less on overlap.
        attention: ``"scene"`` (default): the model's channel attention uses whole-scene statistics,
            gathered in extra passes over the tiles, so the result does not depend on ``tile``: it
            equals whole-image inference (about the compute of one pass: each tile's features are kept
            between the per-layer sweeps, in memory, then on disk). ``"sampled"``: the same
            statistics estimated from at most 16 tiles spread over the scene, so their cost stops
            growing with the scene (exact up to 16 tiles; see docs for the measured deviation).
            ``"tile"``: each tile
            uses its own statistics (one pass, fastest); tiles are then blended with raised-cosine
            ramps over the overlap, and results differ from whole-image inference by up to ~1%.
        batch_size: tiles per forward pass (default 2 on CUDA, 1 on CPU).
        ratio: PAN/MS resolution ratio (default 4).
        scale: DN value mapped to 1.0 for the model (default: the sensor's max, e.g. 2047 for 11-bit;
            else 255 for uint8, 2047 for (u)int16, 1.0 for float data).
        upsampling: how MS is interpolated onto the PAN grid: ``"bicubic"`` (default), ``"bilinear"``, ``"nearest"``.
        other_bands: what happens to MS bands that are not model inputs (8-band WorldView):
            ``"drop"`` (default: output the 4 fused bands, in the input's band order),
            ``"upsample"`` (all bands out, the others bicubic-upsampled only) or ``"ratio"`` (all bands
            out, the others multiplied by the fused/upsampled brightness ratio of the model bands).
        nodata: DN marking missing pixels in both inputs (files: default from their metadata). Output
            pixels are nodata where PAN or all MS bands are; valid pixels never equal nodata.
        out: GeoTIFF path to write (PAN grid CRS/transform, MS dtype, tiled+deflate, written to a
            temporary file then renamed); required to stream scenes larger than memory. Its bands are
            described (GDAL band descriptions): the MS file's descriptions, else R, G, B, NIR for the
            model bands and the sensor's names for the others (:mod:`pantiny.band_names`).
        progress: show a progress bar over tiles.
        adapt: fine-tune the model on this scene first, without a reference
            (:func:`pantiny.adapt`, the full-resolution loss of training stage 2); ``True`` for the
            defaults or a dict of its options (``steps``, ``crop``, ``batch``, ``lr``, ``seed``, ...).
        cog: write ``out`` as a Cloud Optimized GeoTIFF (GDAL's COG driver: 512 px tiles, averaged
            overviews, same compression).
        creation_options: GDAL creation options for ``out`` (of the COG driver with ``cog``, else of
            GTiff), e.g. ``{"COMPRESS": "ZSTD"}``; they override the defaults. Unknown names or values
            raise :class:`~pantiny.errors.InputError` before anything is written.
        precision: what the network computes in: ``"float32"`` (default, exact), ``"float16"`` (CUDA
            only) or ``"bfloat16"``: ``torch.autocast`` to that type, the attention statistics and the
            output's final sum staying float32. Meant for GPUs (where its speed is not measured yet);
            on CPU only 1.03-1.07x with bfloat16 instructions. Results differ from float32 by a few DN
            (measured in the README).

    Returns:
        The fused image (C',H,W) in the MS dtype and DN range (a tensor if ``ms`` was a tensor), or
        the output path when ``out`` is given.
    """
    check(attention, ATTENTION, "attention")
    check(other_bands, OTHER_BANDS, "other_bands")
    check(upsampling, UPSAMPLING, "upsampling")
    _check_precision(method, precision)
    pair = _describe_pair(pan, ms, sensor, bands, ratio, nodata)
    gdal_bands = None if adapt else _gdal_brovey_bands(pair, method, upsampling, other_bands, method_options)
    holes = None
    if gdal_bands is not None:
        from . import gdal_engine

        if gdal_bands[2] is not None:  # a nodata value: the MS's holes, or the tiling engine
            partial, holes = gdal_engine.ms_holes(pair.reader, gdal_bands[0], gdal_bands[2])
            if partial:
                _log.info("some MS pixels have some bands at the nodata value, not all: the tiling engine's rule")
                gdal_bands = None
    if gdal_bands is not None:  # exactly GDAL's method and resampling: GDAL's engine computes it
        _log.info("brovey with cubic upsampling: GDAL's pansharpening engine (VRTPansharpenedDataset)")
        spectral, weights, nd = gdal_bands
        kw = dict(weights=weights, threads=_threads(), nodata=nd)
        bands_1 = [b + 1 for b in spectral]
        if out is None and pair.pan.hw[0] <= _GDAL_STRIP and not (cog or creation_options):
            whole = gdal_engine.brovey(pan, ms, bands_1, **kw)  # type: ignore[arg-type]  # no copy
            if nd is not None:
                list(gdal_engine.pantiny_nodata([(0, whole)], pair.reader, holes, nd, ratio))  # in place
            return whole
        rows = _GDAL_STRIP if out is None else _GDAL_WRITE_STRIP
        dn_strips = gdal_engine.brovey_strips(pan, ms, bands_1, rows=rows, **kw)  # type: ignore[arg-type]
        if nd is not None:
            dn_strips = gdal_engine.pantiny_nodata(dn_strips, pair.reader, holes, nd, ratio)
        return _emit(dn_strips, pair, list(pair.model_idx), pan=pan, ms=ms, out=out, out_nodata=nd,
                     overwrite=overwrite, cog=cog, creation_options=creation_options, like=None)
    from .devices import pick_device
    from .scene_attention import check_overlap
    from .tiling import count_tiles, run_tiled

    scene = _prepare(pair, ratio=ratio, scale=scale, upsampling=upsampling, other_bands=other_bands)
    source, sens, reader = scene.source, scene.sensor, scene.source.reader
    sc, as_tensor = source.scale, _is_tensor(ms)
    ms_nodata, pan_nodata = source.ms_nodata, source.pan_nodata
    dev = pick_device(device)
    if adapt:
        model = _adapted(model, scene, dev, progress, dict(adapt) if isinstance(adapt, dict) else {})
    bs = batch_size or (2 if dev.type == "cuda" else 1)
    fuse, runner = _fuser(method, model, dev, source, sens, method_options, other_bands, tile=tile, overlap=overlap,
                          batch_size=bs, precision=precision)
    order = np.argsort(source.channels)  # back to the input's band order
    out_nodata = ms_nodata if ms_nodata is not None else pan_nodata
    h, w = source.height, source.width
    scene_passes = len(runner.blocks) if runner is not None and attention in ("scene", "sampled") else 0
    sample = SAMPLED_TILES if attention == "sampled" else None

    with ExitStack() as stack:
        stack.callback(_allocator.release_heap)  # a no-op unless the heap was kept for CPU fusion
        bar = None
        if progress:
            from tqdm.auto import tqdm

            n_tiles = count_tiles(h, w, tile, overlap)
            total = n_tiles + scene_passes * min(n_tiles, sample or n_tiles)
            bar = stack.enter_context(tqdm(total=total, unit="tile", desc="fusing"))
        tick = bar.update if bar is not None else None
        if runner is not None:
            stack.enter_context(runner)  # restores the model's attention layers, deletes kept features
            if scene_passes:
                check_overlap(runner.model, overlap)
                runner.gather(sample=sample, progress=tick)
        blend = "ramp" if runner is not None and attention == "tile" else "crop"
        strips = run_tiled(source, fuse, tile=tile, overlap=overlap, batch_size=bs, blend=blend, progress=tick)
        dn_strips = ((row, _denormalise(fused, valid, order, sc, reader.dtype, out_nodata))
                     for row, fused, valid in strips)
        return _emit(dn_strips, pair, source.channels, pan=pan, ms=ms, out=out, out_nodata=out_nodata,
                     overwrite=overwrite, cog=cog, creation_options=creation_options,
                     like=ms if as_tensor else None)


#: PAN rows per read from GDAL's engine: one read for small scenes (each read has a fixed cost),
#: bounded memory and cache-friendly strips for large ones (measured: benchmarks/vs_peers.py).
_GDAL_STRIP = 2048
#: The same when writing a file, where only a strip is held at a time: 26 MPix IKONOS mosaic file to
#: file, 2048 -> 512 rows: peak RSS 276 -> 74 MB (GDAL's own copy 116 MB), same speed.
_GDAL_WRITE_STRIP = 512


def _threads() -> int:
    """Worker threads for GDAL: torch's setting when torch is loaded (the caller's choice, as for the
    tiling engine), else the CPUs this process may use."""
    torch_mod = sys.modules.get("torch")
    if torch_mod is not None:
        return int(torch_mod.get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _gdal_brovey_bands(pair: _Pair, method: str, upsampling: str, other_bands: str,
                       method_options: Optional[Dict[str, Any]]) -> Optional[Tuple[List[int], List[float]]]:
    """The MS bands (0-based, file order), their Brovey weights and the nodata value (or None) when
    GDAL's engine computes this fusion: Brovey with GDAL's cubic resampling, files on nested grids,
    georeferenced, unsigned data, one nodata value for PAN and MS (or none), no PAN moment matching,
    no extra bands carried along; else None. With nodata the caller still checks the MS for pixels
    with some bands at nodata (:func:`pantiny.gdal_engine.ms_holes`) and applies pantiny's mask
    (:func:`pantiny.gdal_engine.pantiny_nodata`)."""
    if method != "brovey" or upsampling != "cubic" or not isinstance(pair.pan, GeoTIFFRaster):
        return None
    nd = pair.ms_nodata
    if not pair.nested or pair.pan_nodata != nd:  # GDAL takes one nodata value for every input
        return None
    if pair.pan.dtype != pair.reader.dtype or pair.reader.dtype.kind != "u":  # GDAL clips at 0 only for unsigned
        return None
    if nd is not None and not (float(nd).is_integer() and 0 <= nd <= np.iinfo(pair.reader.dtype).max):
        return None
    (h, w), (mh, mw) = pair.pan.hw, pair.ms.hw
    if pair.pan.crs is None and (h, w) != (mh * 4, mw * 4):
        return None  # without a CRS GDAL stretches the MS over the PAN extent: only exact 4x sizes agree
    options = dict(method_options or {})
    if other_bands != "drop" and pair.reader.n_bands != len(pair.model_idx):
        return None
    if set(options) - {"weights", "match"} or options.get("match", False) is not False:
        return None  # unknown options are reported by the tiling engine's check
    from . import gdal_engine

    if not gdal_engine.available():
        return None
    w = parse_band_weights("brovey", options.get("weights")).tolist()  # model order R, G, B, NIR
    spectral = sorted(pair.model_idx)
    return spectral, [w[pair.model_idx.index(b)] for b in spectral], None if nd is None else float(nd)


def _emit(dn_strips: Iterator[Tuple[int, np.ndarray]], pair: _Pair, channels: Sequence[int], *, pan: ArrayLike,
          ms: ArrayLike, out: Union[str, "os.PathLike[str]", None], out_nodata: Optional[float], overwrite: bool,
          cog: bool, creation_options: Optional[Dict[str, Any]], like: Optional[torch.Tensor]
          ) -> Union[np.ndarray, torch.Tensor, Path]:
    """Step *write*: gather the fused strips (row, (C,rows,W) DN in the input's band order) into an
    array (a tensor on ``like``'s device when given) or stream them into the GeoTIFF ``out``."""
    h, w = pair.pan.hw
    n, dtype = len(channels), pair.reader.dtype
    if out is None:
        if cog or creation_options:
            raise InputError("cog= and creation_options= shape the file written to out=; pass out=")
        result = np.empty((n, h, w), dtype)
        for row, y in dn_strips:
            result[:, row:row + y.shape[1]] = y
        if like is None:
            return result
        import torch

        return torch.from_numpy(result).to(like.device)
    if pair.pan.transform is None:  # arrays: no georeferencing to write
        raise InputError("out= is for GeoTIFF inputs; with arrays, write the returned array yourself")
    from .band_names import output_band_names  # only file outputs carry band names

    names = output_band_names(channels, pair.sensor, pair.reader.n_bands, rio_io.raster_info(ms).descriptions)
    with rio_io.AtomicGeoTIFFWriter(out, count=n, height=h, width=w, dtype=dtype, crs=pair.pan.crs,
                                    transform=pair.pan.transform, nodata=out_nodata, protect=(pan, ms),
                                    tags={"SENSOR": pair.sensor.name.upper()}, overwrite=overwrite, cog=cog,
                                    creation_options=creation_options, descriptions=names,
                                    threads=_threads()) as writer:
        for row, y in dn_strips:
            writer.write(row, y)
    return Path(out)


def adapt(pan: ArrayLike, ms: ArrayLike, *, model: Union[str, nn.Module] = "pantiny-big",
          sensor: Union[str, Sensor, None] = "auto", bands: Optional[Sequence[int]] = None, ratio: int = 4,
          scale: Optional[float] = None, nodata: Optional[float] = None,
          device: Union[str, torch.device] = "auto", progress: bool = False,
          out: Union[str, "os.PathLike[str]", None] = None, name: Optional[str] = None,
          **options: Any) -> nn.Module:
    """Fine-tune ``model`` on this scene at full resolution, without a reference, and return the
    adapted copy (optionally also written to ``out`` as safetensors, with a manifest entry ``name``
    in a ``weights_manifest.json`` beside it).

    Inputs as :func:`pansharpen`. ``options``: ``steps`` (80), ``crop`` (96 PAN px), ``batch`` (4),
    ``lr`` (1e-4), ``seed`` (0), ``patience`` (25), ``min_delta`` (1e-3), loss weights ``spectral``
    and ``spatial`` (1, 1); see :mod:`pantiny.train.adapt`. Same seed, same weights.
    """
    from .devices import pick_device

    scene = prepare_scene(pan, ms, sensor=sensor, bands=bands, ratio=ratio, scale=scale, nodata=nodata)
    net = _adapted(model, scene, pick_device(device), progress, options)
    if out is not None:
        from .models import MODELS
        from .weights import save_weights, sha256_file, upsert_manifest_entry

        arch = next((a for a, cls in MODELS.items() if type(net) is cls), None)
        if arch is None:
            raise InputError(f"cannot save a {type(net).__name__}: not a registered architecture")
        info = save_weights(net, out, architecture=arch, metadata={"adapted_on": str(pan)})
        upsert_manifest_entry({"name": name or Path(out).stem, "architecture": arch, "file": Path(out).name,
                               "sha256": sha256_file(out), "size": info["size"],
                               "description": f"adapted at full resolution on {Path(str(pan)).name}"},
                              Path(out).resolve().parent / "weights_manifest.json")
    return net


def _adapted(model: Union[str, nn.Module], scene: Scene, device: torch.device, progress: bool,
             options: Dict[str, Any]) -> nn.Module:
    """``model`` (a module, or weights to load) adapted to ``scene`` (:mod:`pantiny.train.adapt`)."""
    from torch import nn

    from .train.adapt import adapt_source
    from .weights import load_model

    base = model if isinstance(model, nn.Module) else load_model(model, device=device)
    return adapt_source(base, scene, device=device, progress=progress, **options)


def _all_finite(t: "torch.Tensor") -> bool:
    """Whether every value of ``t`` is finite: a NaN or an infinity makes the sum non-finite, so one
    sum (no mask tensor) answers, unless huge finite values overflow it (then the exact check)."""
    import torch

    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _denormalise(fused: np.ndarray, valid: np.ndarray, order: np.ndarray, scale: float, dtype: np.dtype,
                 nodata: Optional[float]) -> np.ndarray:
    """Fused unit-range channels (C,h,w) float32 -> DN in ``dtype``, input band order, nodata where
    invalid. ``fused`` is consumed (scaled in place): the strips of the tiling engine are the caller's."""
    from .normalize import from_unit_consuming

    y = from_unit_consuming(fused, scale, dtype, order)
    if nodata is not None:
        avoid_nodata(y, valid, nodata)
        y[:, ~valid] = nodata
    return y

