"""``pansharpen()``: the public fusion entry point.

Data flows one way: read (arrays or GeoTIFF windows) -> select bands -> normalise (DN / scale) ->
upsample MS onto the PAN grid -> tile -> infer (model or classical method) -> blend -> denormalise ->
restore band order and nodata -> return or write.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from . import io as rio_io
from .align import align_pair
from .choices import ATTENTION, MODEL_METHODS, OTHER_BANDS, SAMPLED_TILES, UPSAMPLING, check
from .devices import pick_device
from .errors import InputError, ModelOutputError
from .nodata import FILL_STEPS, fill_holes, invalid_mask
from .normalize import choose_scale, from_unit, scale_warnings, to_unit
from .products import ProductInfo, model_band_indices, product_of
from .readers import ArrayRaster, GeoTIFFRaster, Raster
from .resample import upsample
from .scene_attention import attention_layers, scene_attention
from .sensors import Sensor, get_sensor, resolve_bands, with_band_names
from .tiling import Tile, count_tiles, run_tiled
from .windows import Window

_log = logging.getLogger("pantiny")

ArrayLike = Union[np.ndarray, torch.Tensor, str, "os.PathLike[str]"]
# MS pixels of context around a tile: bicubic needs 2, the nodata fill FILL_STEPS more.
MS_MARGIN = 2 + FILL_STEPS


# --- the scene pair: PAN and MS rasters of the reader layer ------------------------------------

class _PairReader:
    """PAN and MS :class:`~pantiny.readers.Raster` s of one scene, read by window."""

    def __init__(self, pan: Raster, ms: Raster) -> None:
        self.pan, self.ms = pan, ms
        self.dtype = ms.dtype
        self.n_bands = ms.count
        self.pan_hw = pan.hw
        self.ms_hw = ms.hw

    def read_pan(self, r: int, c: int, h: int, w: int) -> np.ndarray:
        return self.pan.read(Window(r, c, h, w))

    def read_ms(self, r: int, c: int, h: int, w: int, bands: Sequence[int]) -> np.ndarray:
        return self.ms.read(Window(r, c, h, w), bands=bands)


def _check_finite(x: np.ndarray, what: str, invalid: Optional[np.ndarray]) -> None:
    if x.dtype.kind == "f":
        ok = np.isfinite(x)
        if invalid is not None:
            ok |= invalid[None]
        if not ok.all():
            raise InputError(f"{what} contains NaN or infinite values; mask them as nodata first")


@dataclass
class SceneStats:
    """What one pass over the MS (and a pooled PAN) says about a scene, nodata excluded.

    ``ms_mean``/``ms_std`` per band (DN), ``ms_max`` over bands (DN), ``pan_std`` of the PAN averaged
    onto the MS grid (DN).
    """

    ms_mean: np.ndarray
    ms_std: np.ndarray
    ms_max: float
    pan_std: float


@dataclass
class _SceneSource:
    """Normalised, upsampled tiles of a scene for the tiling engine (implements ``TileSource``).

    Nodata never enters interpolation or the network: MS holes are filled from valid neighbours
    (:func:`pantiny.nodata.fill_holes`, local, so tiles fill as the whole image would) before
    upsampling, and PAN holes take the mean of the upsampled MS bands.
    """

    reader: Any
    channels: List[int]  # MS band indices fed through the pipeline, model bands first (model order)
    scale: float
    ratio: int
    upsampling: str
    pan_nodata: Optional[float]
    ms_nodata: Optional[float]
    ms_fill: Optional[np.ndarray] = None  # per-channel DN for pixels deep inside MS holes
    _pan_lr: Optional[Tuple[np.ndarray, np.ndarray]] = None  # cached _pan_overview()

    @property
    def height(self) -> int:
        return self.reader.pan_hw[0]

    @property
    def width(self) -> int:
        return self.reader.pan_hw[1]

    def read(self, t: Tile) -> Tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        r, m = self.ratio, MS_MARGIN
        mh, mw = self.reader.ms_hw
        # MS window covering the tile plus margin, clipped to the image, then edge-padded so that
        # upsampling a window gives exactly what upsampling the whole image gives.
        r0, c0 = t.row // r - m, t.col // r - m
        r1, c1 = -(-(t.row + t.height) // r) + m, -(-(t.col + t.width) // r) + m
        rr0, cc0, rr1, cc1 = max(r0, 0), max(c0, 0), min(r1, mh), min(c1, mw)
        ms = self.reader.read_ms(rr0, cc0, rr1 - rr0, cc1 - cc0, self.channels)
        pan = self.reader.read_pan(t.row, t.col, t.height, t.width)
        ms_bad = invalid_mask(ms, self.ms_nodata)
        pan_bad = invalid_mask(pan, self.pan_nodata)
        _check_finite(ms, "MS", ms_bad)
        _check_finite(pan, "PAN", pan_bad)
        pad = ((rr0 - r0, r1 - rr1), (cc0 - c0, c1 - cc1))
        oy, ox = t.row - r0 * r, t.col - c0 * r
        valid = np.ones(pan.shape[1:], bool) if pan_bad is None else ~pan_bad
        if ms_bad is not None:
            ms_ok = np.pad(~ms_bad, pad, mode="edge")
            up_ok = ms_ok.repeat(r, 0).repeat(r, 1)
            valid &= up_ok[oy:oy + t.height, ox:ox + t.width]
            fill = self.ms_fill if self.ms_fill is not None else np.zeros(len(self.channels))
            ms = fill_holes(ms, ms_bad, fill)
        ms = np.pad(ms, ((0, 0), *pad), mode="edge")
        ms_up = upsample(to_unit(ms, self.scale)[None], r, self.upsampling)[0]
        ms_up = ms_up[:, oy:oy + t.height, ox:ox + t.width].contiguous()
        pan_t = to_unit(pan, self.scale)
        if pan_bad is not None:
            hole = torch.from_numpy(pan_bad)
            pan_t[0][hole] = ms_up[:4].mean(0)[hole]
        return ms_up, pan_t, valid

    def _strips(self, rows: int) -> Iterator[Tuple[int, int]]:
        mh = self.reader.ms_hw[0]
        for a in range(0, mh, rows):
            yield a, min(mh, a + rows)

    def stats(self) -> SceneStats:
        """One pass over the MS in strips (bounded memory) and the pooled PAN, nodata excluded."""
        mh, mw = self.reader.ms_hw
        c = len(self.channels)
        s1, s2, n, mx = np.zeros(c), np.zeros(c), 0, -np.inf
        for a, b in self._strips(256):
            ms = self.reader.read_ms(a, 0, b - a, mw, self.channels)
            bad = invalid_mask(ms, self.ms_nodata)
            _check_finite(ms, "MS", bad)
            v = ms.reshape(c, -1) if bad is None else ms[:, ~bad]
            if v.size:
                v = v.astype(np.float64)
                s1 += v.sum(1)
                s2 += (v * v).sum(1)
                n += v.shape[1]
                mx = max(mx, float(v.max()))
        if n == 0:
            raise InputError("the MS has no valid pixel: every pixel equals the nodata value "
                             f"{self.ms_nodata:g}" if self.ms_nodata is not None else "the MS is empty")
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        pan_lr, ok = self._pan_overview()
        pv = pan_lr[ok]
        return SceneStats(mean, std, mx, float(pv.std()) if pv.size else 0.0)

    def _pan_overview(self) -> Tuple[np.ndarray, np.ndarray]:
        """PAN averaged over each MS pixel's ratio x ratio block, nodata excluded: ``(mean DN (h,w)
        float64, ok (h,w) bool: the block has a valid pixel)``; read in strips (bounded memory), once
        per scene: the scene statistics and the classical fits both use it (MS-grid sized, 1/16 of a
        PAN band's pixels)."""
        if self._pan_lr is None:
            self._pan_lr = self._read_pan_overview()
        return self._pan_lr

    def _read_pan_overview(self) -> Tuple[np.ndarray, np.ndarray]:
        r = self.ratio
        mh, mw = self.reader.ms_hw
        ph, pw = self.reader.pan_hw
        mean = np.zeros((mh, mw), np.float64)  # valid PAN mean per MS pixel (DN)
        ok = np.zeros((mh, mw), bool)
        for a, b in self._strips(max(1, 512 // r)):  # 512 PAN rows at a time
            pan = self.reader.read_pan(a * r, 0, min(ph, b * r) - a * r, pw)[0].astype(np.float64)
            bad = invalid_mask(pan[None], self.pan_nodata)
            _check_finite(pan[None], "PAN", bad)
            good = np.ones(pan.shape, bool) if bad is None else ~bad
            hh, ww = (b - a) * r, mw * r
            vals = np.zeros((hh, ww))
            cnt = np.zeros((hh, ww))
            vals[:pan.shape[0], :pan.shape[1]] = np.where(good, pan, 0.0)
            cnt[:pan.shape[0], :pan.shape[1]] = good
            sv = vals.reshape(b - a, r, mw, r).sum((1, 3))
            sc = cnt.reshape(b - a, r, mw, r).sum((1, 3))
            ok[a:b] = sc > 0
            mean[a:b] = np.where(sc > 0, sv / np.maximum(sc, 1), 0.0)
        return mean, ok

    def overview(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Whole scene at MS resolution: ``(ms (C,h,w), pan averaged onto the MS grid (1,h,w))``, unit
        range. Pixels that are nodata in either (or whose PAN block is all nodata) are 0 in both, which
        the classical fits skip."""
        mh, mw = self.reader.ms_hw
        ms = self.reader.read_ms(0, 0, mh, mw, self.channels)
        bad = invalid_mask(ms, self.ms_nodata)
        pan_lr, ok = self._pan_overview()
        if bad is not None:
            ok = ok & ~bad  # not in place: the overview is cached
        ms_u = to_unit(ms, self.scale)
        pan_u = torch.from_numpy((pan_lr / self.scale).astype(np.float32))[None]
        if not ok.all():
            hole = torch.from_numpy(~ok)
            ms_u[:, hole] = 0.0
            pan_u[:, hole] = 0.0
        return ms_u, pan_u


# --- argument handling --------------------------------------------------------------------------

def _to_numpy(x: Union[np.ndarray, torch.Tensor], what: str, ndim_2d_ok: bool) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 2 and ndim_2d_ok:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"{what} must be (C,H,W){' or (H,W)' if ndim_2d_ok else ''}, got shape {a.shape}")
    if a.dtype.kind not in "uif":
        raise InputError(f"{what} has unsupported dtype {a.dtype}; use integer or float data")
    return a


def _product_of(ms: GeoTIFFRaster) -> ProductInfo:
    """Vendor metadata of the MS file (sensor, bit depth, band names), logged when found."""
    info = product_of(ms.path, ms.tags)
    if info.source:
        _log.info("metadata: %s", info.summary())
    return info


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _fuser(method: str, model: Union[str, nn.Module], device: torch.device, source: _SceneSource,
           sensor: Sensor, method_options: Optional[Dict[str, Any]], other_bands: str, overlap: int,
           ) -> Tuple[Any, Optional[nn.Module]]:
    """``fuse(ms_up, pan)`` for the chosen method (the core sees the 4 model bands only), and the
    network when the method is the model."""
    net: Optional[nn.Module] = None
    if method in MODEL_METHODS:
        from .weights import load_model

        net = load_model(model, device=device) if not isinstance(model, nn.Module) else model.to(device).eval()
        # channels_last conv weights make the oneDNN/cuDNN kernels ~1.7x faster on CPU (same results).
        net = net.to(memory_format=torch.channels_last)

        def core(ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                y = net(ms_up.to(device), pan.to(device)).float().cpu()
            if not bool(torch.isfinite(y).all()):
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

        def core(ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
            return cm.apply(ms_up, pan, state)

    def fuse(ms_up: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        fused = core(ms_up[:, :4], pan)
        if net is None and not bool(torch.isfinite(fused).all()):
            raise ModelOutputError(f"method {method!r} produced NaN or infinite values on this scene")
        if ms_up.shape[1] == 4:
            return fused
        extra = ms_up[:, 4:]
        if other_bands == "ratio":  # carry the fused detail to the other bands as a brightness ratio
            gain = fused.sum(1, keepdim=True).clamp_min(1e-6) / ms_up[:, :4].sum(1, keepdim=True).clamp_min(1e-6)
            extra = extra * gain
        return torch.cat([fused, extra], 1)

    return fuse, net


@dataclass
class Scene:
    """A PAN/MS pair ready for fusion or adaptation: the normalised tile source (its first four
    channels are the model bands), the sensor and the PAN raster (georeferencing)."""

    source: "_SceneSource"
    sensor: Sensor
    pan: Raster


def prepare_scene(pan: ArrayLike, ms: ArrayLike, *, sensor: Union[str, Sensor, None] = "auto",
                  bands: Optional[Sequence[int]] = None, ratio: int = 4, scale: Optional[float] = None,
                  upsampling: str = "bicubic", other_bands: str = "drop", nodata: Optional[float] = None) -> Scene:
    """Read, check and describe a scene (steps *read, bands, normalise* of :func:`pansharpen`, whose
    arguments these are): one place for the API, adaptation and the CLI."""
    if not isinstance(ratio, int) or ratio < 1:
        raise InputError(f"ratio must be a positive integer, got {ratio!r}")
    if _is_path(pan) != _is_path(ms):
        raise InputError("pass PAN and MS both as arrays/tensors or both as file paths")
    if isinstance(sensor, str) and sensor.strip().lower() == "auto":
        sensor = None
    sensor_from = "given" if sensor is not None else None
    product = None
    if _is_path(pan):
        pan_r, ms_r = GeoTIFFRaster(pan, "PAN"), GeoTIFFRaster(ms, "MS")
        product = _product_of(ms_r)
        aligned = align_pair(pan_r, ms_r, ratio)
        if aligned.note:
            _log.info(aligned.note)
        pan_r, ms_r = aligned.pan, aligned.ms
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
        if sensor is None and ms_r.tags.get("SENSOR"):
            sensor, sensor_from = ms_r.tags["SENSOR"], "SENSOR tag"
        pan_nodata = nodata if nodata is not None else pan_r.nodata
        ms_nodata = nodata if nodata is not None else ms_r.nodata
    else:
        pan_r = ArrayRaster(_to_numpy(pan, "PAN", True), "PAN")
        ms_r = ArrayRaster(_to_numpy(ms, "MS", False), "MS")
        if pan_r.count != 1:
            raise InputError(f"PAN must have 1 band, got {pan_r.count} (shape {pan_r.shape})")
        rio_io.check_sizes(pan_r.hw, ms_r.hw, ratio)
        pan_nodata = ms_nodata = nodata
    reader = _PairReader(pan_r, ms_r)
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
    extras = [] if other_bands == "drop" else [b for b in range(reader.n_bands) if b not in model_idx]
    source = _SceneSource(reader, list(model_idx) + extras, 1.0, ratio, upsampling, pan_nodata, ms_nodata)
    st = source.stats()
    # A sensor guessed from the band count says nothing about the bit depth: only a named one does.
    sens_for_scale = sens if sensor is not None else None
    meta_max = product.max_value if product is not None and scale is None else None
    sc, why = choose_scale(reader.dtype, sens_for_scale, scale if meta_max is None else meta_max, data_max=st.ms_max)
    if meta_max is not None:
        why = f"{product.bits}-bit product per {product.source}"  # type: ignore[union-attr]
    source.scale = sc
    source.ms_fill = st.ms_mean
    _log.info("sensor %s (%s), model bands R,G,B,NIR = MS bands %s, value scale %g (%s)",
              sens.name, sensor_from, list(model_idx), sc, why)
    for msg in scale_warnings(sc, why, reader.dtype, st.ms_max):
        warnings.warn(msg, stacklevel=3)
    if not (st.ms_std[:4] > 0).any() or st.pan_std == 0:
        which = "MS" if not (st.ms_std[:4] > 0).any() else "PAN"
        warnings.warn(f"the {which} has zero variance (a constant image): there is no spatial or spectral "
                      "information to fuse, so the result is not meaningful", stacklevel=3)
    return Scene(source, sens, pan_r)


# --- public API ---------------------------------------------------------------------------------

def pansharpen(pan: ArrayLike, ms: ArrayLike, *, sensor: Union[str, Sensor, None] = "auto",
               bands: Optional[Sequence[int]] = None, model: Union[str, nn.Module] = "pantiny-big",
               method: str = "pantiny", device: Union[str, torch.device] = "auto", tile: int = 512,
               overlap: int = 64, attention: str = "scene", batch_size: Optional[int] = None, ratio: int = 4,
               scale: Optional[float] = None, upsampling: str = "bicubic", other_bands: str = "drop",
               nodata: Optional[float] = None, out: Union[str, "os.PathLike[str]", None] = None,
               overwrite: bool = True, progress: bool = False,
               method_options: Optional[Dict[str, Any]] = None,
               adapt: Union[bool, Dict[str, Any]] = False, cog: bool = False,
               creation_options: Optional[Dict[str, Any]] = None) -> Union[np.ndarray, torch.Tensor, Path]:
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
        tile, overlap: tile size and overlap in PAN pixels. Each pixel is taken from the tile whose
            centre holds it, keeping >= overlap/2 pixels of context (the model needs overlap >= 34).
        attention: ``"scene"`` (default): the model's channel attention uses whole-scene statistics,
            gathered in extra passes over the tiles, so the result does not depend on ``tile``: it
            equals whole-image inference (about 3.6x the compute of one pass). ``"sampled"``: the same
            statistics estimated from at most 16 tiles spread over the scene, so their cost stops
            growing with the scene (exact up to 16 tiles; see docs for the measured deviation).
            ``"tile"``: each tile
            uses its own statistics (one pass, fastest); tiles are then blended with raised-cosine
            ramps over the overlap, and results differ from whole-image inference by up to ~1%.
        batch_size: tiles per forward pass (default 4 on CUDA, 1 on CPU).
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

    Returns:
        The fused image (C',H,W) in the MS dtype and DN range (a tensor if ``ms`` was a tensor), or
        the output path when ``out`` is given.
    """
    check(attention, ATTENTION, "attention")
    check(other_bands, OTHER_BANDS, "other_bands")
    check(upsampling, UPSAMPLING, "upsampling")
    scene = prepare_scene(pan, ms, sensor=sensor, bands=bands, ratio=ratio, scale=scale, upsampling=upsampling,
                          other_bands=other_bands, nodata=nodata)
    source, sens, reader, pan_r = scene.source, scene.sensor, scene.source.reader, scene.pan
    sc, tags, as_tensor = source.scale, {"SENSOR": sens.name.upper()}, isinstance(ms, torch.Tensor)
    ms_nodata, pan_nodata = source.ms_nodata, source.pan_nodata
    dev = pick_device(device)
    if adapt:
        model = _adapted(model, scene, dev, progress, dict(adapt) if isinstance(adapt, dict) else {})
    fuse, net = _fuser(method, model, dev, source, sens, method_options, other_bands, overlap)
    bs = batch_size or (4 if dev.type == "cuda" else 1)
    order = np.argsort(source.channels)  # back to the input's band order
    out_nodata = ms_nodata if ms_nodata is not None else pan_nodata
    h, w = source.height, source.width
    scene_passes = len(attention_layers(net)) if net is not None and attention in ("scene", "sampled") else 0
    sample = SAMPLED_TILES if attention == "sampled" else None

    def finish(fused: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return _denormalise(fused, valid, order, sc, reader.dtype, out_nodata)

    with ExitStack() as stack:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            n_tiles = count_tiles(h, w, tile, overlap)
            total = n_tiles + scene_passes * min(n_tiles, sample or n_tiles)
            bar = stack.enter_context(tqdm(total=total, unit="tile", desc="fusing"))
        tick = bar.update if bar is not None else None
        if scene_passes:
            stack.enter_context(scene_attention(net, source, tile=tile, overlap=overlap, batch_size=bs,
                                                device=dev, sample=sample, progress=tick))
        blend = "ramp" if net is not None and attention == "tile" else "crop"
        strips = run_tiled(source, fuse, tile=tile, overlap=overlap, batch_size=bs, blend=blend, progress=tick)
        if out is None:
            if cog or creation_options:
                raise InputError("cog= and creation_options= shape the file written to out=; pass out=")
            result = np.empty((len(order), h, w), reader.dtype)
            for row, fused, valid in strips:
                result[:, row:row + fused.shape[1]] = finish(fused, valid)
            return torch.from_numpy(result).to(ms.device) if as_tensor else result  # type: ignore[union-attr]
        if pan_r.transform is None:  # arrays: no georeferencing to write
            raise InputError("out= is for GeoTIFF inputs; with arrays, write the returned array yourself")
        from .band_names import output_band_names  # only file outputs carry band names

        names = output_band_names(source.channels, sens, reader.n_bands, rio_io.raster_info(ms).descriptions)
        with rio_io.AtomicGeoTIFFWriter(out, count=len(order), height=h, width=w, dtype=reader.dtype,
                                        crs=pan_r.crs, transform=pan_r.transform,
                                        nodata=out_nodata, protect=(pan, ms), tags=tags,
                                        overwrite=overwrite, cog=cog, creation_options=creation_options,
                                        descriptions=names) as writer:
            for row, fused, valid in strips:
                writer.write(row, finish(fused, valid))
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
    from .train.adapt import adapt_source
    from .weights import load_model

    base = model if isinstance(model, nn.Module) else load_model(model, device=device)
    return adapt_source(base, scene, device=device, progress=progress, **options)


def _denormalise(fused: np.ndarray, valid: np.ndarray, order: np.ndarray, scale: float, dtype: np.dtype,
                 nodata: Optional[float]) -> np.ndarray:
    """Fused unit-range channels (C,h,w) -> DN in ``dtype``, input band order, nodata where invalid."""
    y = from_unit(torch.from_numpy(fused[order]), scale, dtype)
    if nodata is not None:
        _avoid_nodata(y, valid, nodata)
        y[:, ~valid] = nodata
    return y


def _avoid_nodata(y: np.ndarray, valid: np.ndarray, nodata: float) -> None:
    """Nudge valid pixels that happen to equal the nodata value by one DN, so they stay valid."""
    hit = (y == nodata) & valid[None]
    if hit.any():
        if y.dtype.kind in "ui":
            bump = 1 if nodata < np.iinfo(y.dtype).max else -1
        else:
            bump = np.finfo(y.dtype).eps * max(1.0, abs(nodata))
        y[hit] = nodata + bump
