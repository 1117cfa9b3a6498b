"""Full-resolution (no-reference) quality: D_lambda, D_s, QNR and HQNR.

Definitions (Alparone et al., PE&RS 2008; Khan et al., IEEE TGRS 2009 for D_lambda_K; exponents
p = q = alpha = beta = 1 by default, all settable; S = block = 32 PAN pixels):

    D_lambda   = ( 2/(L(L-1)) sum_{i<j} |Q(F_i, F_j) - Q(R_i, R_j)|^p )^(1/p)
    D_s        = ( 1/L sum_b |Q(F_b, P) - Q(R_b, P_ref)|^q )^(1/q)
    QNR        = (1 - D_lambda)^alpha * (1 - D_s)^beta
    D_lambda_K = 1 - Q2n(R, MTF(F))                       (Q2n on distinct S x S blocks)
    HQNR       = (1 - D_lambda_K)^alpha * (1 - D_s)^beta

with F the fused image (L bands, PAN grid), P the PAN, R a reference built from the MS and P_ref a
degraded PAN; Q is the universal image quality index averaged over windows
(:mod:`pantiny.metrics.uiqi`). All scores are unit-less; D's lie in [0, 1] (lower is better) for
any sane input, QNR/HQNR in [0, 1] (higher is better).

``variant="toolbox"`` (default) = Vivone 2020 toolbox (``Quality_Indices/QNR.m``, ``D_lambda.m``,
``D_s.m`` with flag_orig_paper = 0, ``HQNR.m``, ``D_lambda_K.m``): Q on distinct S x S blocks at the
PAN scale; R = MS upsampled to the PAN grid with ``interp23tap`` (``upsample="bicubic"`` as an
option); P_ref = interp23tap(imresize(PAN, 1/ratio)) (MATLAB bicubic with antialiasing,
:mod:`pantiny.metrics.imresize`; no MTF filter); MTF = the toolbox's own MS MTF filter
(``genMTF.m`` + ``MTF.m``: :func:`pantiny.mtf.toolbox_mtf_filter`; gains from
:mod:`pantiny.sensors`, 0.3 per band when the sensor is unknown, as ``genMTF.m``). The toolbox's
default full-resolution index is HQNR (``flagQNR = 0``).

``variant="orig_paper"`` = the same toolbox files with ``flag_orig_paper = 1`` (Alparone et al.
2008 as published): the reference Q's are taken at the MS scale on (S/ratio) x (S/ratio) blocks,
R = the MS itself and P_ref = imresize(PAN, 1/ratio); the fused image's Q's stay at the PAN scale
on S x S blocks. S must be a multiple of the ratio. HQNR in this variant uses this D_s.

``variant="pantiny"`` = the code PanTiny / Pan-Mamba ran (``py_tra/metrics.py``, from wasaCheney
IQA_pansharpening_python): inputs converted to uint8 (``x/scale*255``, clipped, truncated), Q on a
sliding 32 x 32 window ('valid' positions), R = the LRMS itself at the MS scale, P_ref = MTF-filtered
PAN (GNyq 0.15 for every sensor) decimated by nearest neighbour (PAN pixel ``ratio*i``).

Nodata (``nodata=``, default from the GeoTIFFs' metadata): windows holding a nodata pixel of the
fused image, the PAN or the MS are skipped and counted (:attr:`QNRResult.blocks_skipped`); nodata
pixels are filled from their nearest valid neighbours before filtering (see
:class:`~pantiny.metrics.sources.ScoredSource`). An image without a single valid window is refused
(``ValueError``). A zero-variance (constant, e.g. all-zero) band of the fused image, the MS or the
PAN makes the distortions that use it undefined: they are NaN, with a :class:`DegenerateInputWarning`.

Numbers are only comparable within one variant. See ``docs/metrics.md``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..choices import QNR_UPSAMPLERS as UPSAMPLERS  # noqa: E402  (re-exported)
from ..choices import QNR_VARIANTS as VARIANTS
from ..errors import InputError
from ..normalize import resolve_scale
from ..sensors import Sensor, get_sensor, resolve_bands
from .sources import Input, RasterSource, RowSource, ScoredSource, is_file, open_source, select_bands
from .streaming import STRIP_VALUES, QSums, sliding_sums, toolbox_sums, upsampler

#: Rows read beyond a strip to fill nodata consistently (>= the reach of every filter, PAN pixels).
_FILL_MARGIN_PAN = 64


class DegenerateInputWarning(RuntimeWarning):
    """An index is undefined for the input (e.g. a zero-variance band) and was returned as NaN."""


@dataclass(frozen=True)
class QNRResult:
    """Full-resolution scores of one fused image (unit-less).

    ``d_lambda``, ``d_s`` (lower is better) and ``qnr`` (higher is better) are always set (NaN
    when undefined for a zero-variance input, with a :class:`DegenerateInputWarning`);
    ``hqnr`` and ``d_lambda_k`` only when HQNR was asked for (else None). ``variant`` names the
    definition used, ``block`` the window size S in PAN pixels. ``blocks_scored`` counts the
    PAN-scale windows scored (distinct blocks; sliding positions for the pantiny variant) and
    ``blocks_skipped`` those left out because they hold a nodata pixel.
    """

    d_lambda: float
    d_s: float
    qnr: float
    variant: str = "toolbox"
    block: int = 32
    hqnr: Optional[float] = None
    d_lambda_k: Optional[float] = None
    blocks_scored: Optional[int] = None
    blocks_skipped: int = 0

    # Names as written in the literature.
    D_lambda = property(lambda self: self.d_lambda)
    D_s = property(lambda self: self.d_s)
    QNR = property(lambda self: self.qnr)
    HQNR = property(lambda self: self.hqnr)
    D_lambda_K = property(lambda self: self.d_lambda_k)

    def as_dict(self) -> Dict[str, object]:
        """``{"D_lambda", "D_s", "QNR", ["D_lambda_K", "HQNR"], "variant", "block", "blocks_scored",
        "blocks_skipped"}``; NaN scores become None (JSON-ready)."""
        nan_none = lambda v: None if v is not None and math.isnan(v) else v  # noqa: E731
        d: Dict[str, object] = {"D_lambda": nan_none(self.d_lambda), "D_s": nan_none(self.d_s),
                                "QNR": nan_none(self.qnr)}
        if self.hqnr is not None:
            d["D_lambda_K"] = nan_none(self.d_lambda_k)
            d["HQNR"] = nan_none(self.hqnr)
        d["variant"], d["block"] = self.variant, self.block
        d["blocks_scored"], d["blocks_skipped"] = self.blocks_scored, self.blocks_skipped
        return d

    def __str__(self) -> str:
        parts = [f"D_lambda={self.d_lambda:.4f}", f"D_s={self.d_s:.4f}", f"QNR={self.qnr:.4f}"]
        if self.hqnr is not None:
            parts += [f"D_lambda_K={self.d_lambda_k:.4f}", f"HQNR={self.hqnr:.4f}"]
        skipped = f", {self.blocks_skipped} nodata blocks skipped" if self.blocks_skipped else ""
        return " ".join(parts) + f" ({self.variant}, S={self.block}{skipped})"


@dataclass(frozen=True)
class _Prepared:
    fused: RowSource
    ms: RowSource
    pan: Optional[RowSource]
    sensor: Optional[Sensor]
    ms_bands: Tuple[int, ...]
    scale: float
    n_ms: int


def _check_int(name: str, v: object, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise InputError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _same_transform(t1, t2, tol: float) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(tuple(t1)[:6], tuple(t2)[:6]))


def _check_grids(f: RowSource, m: RowSource, p: Optional[RowSource], ratio: int) -> None:
    """Georeferencing checks for GeoTIFF inputs (as ``pansharpen``): PAN/MS nested grids of one CRS
    and extent (``pantiny.io.check_pair``), fused image on the PAN grid (same CRS, transform, size),
    or, without a PAN, fused and MS nested like PAN and MS."""
    from ..io import check_pair

    if is_file(p) and is_file(m):
        check_pair(p.info, m.info, ratio)
    if not is_file(f):
        return
    fi = f.info
    if is_file(p):
        pi = p.info
        if (fi.crs is None) != (pi.crs is None) or (fi.crs is not None and fi.crs != pi.crs):
            raise InputError(f"the fused image must be on the PAN grid: its CRS is {fi.crs or 'unset'}, "
                             f"the PAN's {pi.crs or 'unset'}")
        if (fi.height, fi.width) != (pi.height, pi.width):
            raise InputError(f"the fused image must be on the PAN grid: it is {fi.height}x{fi.width}, "
                             f"the PAN {pi.height}x{pi.width}")
        if not _same_transform(fi.transform, pi.transform, 1e-6 * max(abs(pi.transform.a), abs(pi.transform.e))):
            raise InputError(f"the fused image must be on the PAN grid: its geotransform {tuple(fi.transform)[:6]} "
                             f"differs from the PAN's {tuple(pi.transform)[:6]}")
    elif is_file(m):
        try:  # the fused image plays the PAN's part: same CRS/extent, pixel size = MS / ratio
            check_pair(replace(fi, count=1), m.info, ratio)
        except ValueError as e:
            msg = str(e).replace("PAN", "fused image")
            raise InputError(f"the fused image must be on the PAN grid of the MS: {msg}") from None


def _nodata_of(src: RowSource, nodata: Optional[float]) -> Optional[float]:
    """``nodata`` when given, else the GeoTIFF's nodata value (arrays: none)."""
    if nodata is not None:
        return float(nodata)
    return src.info.nodata if is_file(src) else None


def _prepare(fused: Input, ms: Input, pan: Optional[Input], *, sensor, ratio: int, block: int,
             bands: Optional[Sequence[int]], scale: Optional[float], nodata: Optional[float] = None,
             clip_bits: Optional[int] = None, variant: str = "toolbox", upsample: str = "interp23tap") -> _Prepared:
    """Open the inputs, check shapes and grids, choose the MS bands that match the fused bands, and
    wrap the sources for nodata masking / clipping when asked."""
    ratio = _check_int("ratio", ratio, 1)
    block = _check_int("block", block, 2)
    f, m = open_source(fused, "fused image"), open_source(ms, "MS")
    p = open_source(pan, "PAN") if pan is not None else None
    if p is not None and is_file(p) and is_file(m):  # PAN/MS files on other grids: as pansharpen aligns them
        from ..align import align_pair

        aligned = align_pair(p.raster, m.raster, ratio)  # type: ignore[attr-defined]
        if aligned.how != "nested":
            p, m = RasterSource(aligned.pan), RasterSource(aligned.ms)
    (cf, hh, ww), (cm, h, w) = f.shape, m.shape
    if p is not None:
        if p.shape[0] != 1:
            raise InputError(f"PAN must have 1 band, got {p.shape[0]} (shape {p.shape})")
        if (hh, ww) != p.shape[1:]:
            raise InputError(f"fused image is {hh}x{ww} but PAN is {p.shape[1]}x{p.shape[2]}: "
                             "the fused image must be on the PAN grid")
    if (h * ratio, w * ratio) != (hh, ww):
        raise InputError(f"MS is {h}x{w} and the fused image is {hh}x{ww}: with ratio {ratio} the MS "
                         f"must be {hh / ratio:g}x{ww / ratio:g} (PAN size = ratio x MS size)")
    if min(hh, ww) < block:
        raise InputError(f"PAN grid {hh}x{ww} is smaller than one {block}x{block} block")
    _check_grids(f, m, p, ratio)
    if isinstance(sensor, str) and sensor.strip().lower() == "auto":
        sensor = None
    if is_file(m):  # the product's metadata, as pansharpen reads it: sensor, and band names for any sensor
        from ..products import product_of
        from ..sensors import with_band_names

        product = product_of(m.info.path, m.tags)
        if sensor is None and product.sensor:
            sensor = get_sensor(product.sensor)
        if sensor is not None and bands is None and product.band_names is not None \
                and len(product.band_names) == cm:
            sensor = with_band_names(get_sensor(sensor), product.band_names)
    if cf == cm and bands is None:
        idx = tuple(range(cm))
        s = get_sensor(sensor) if sensor is not None else None
        if s is not None and s.n_bands != cm:
            raise InputError(f"MS has {cm} bands but sensor {s.name!r} has {s.n_bands} ({', '.join(s.bands)})")
    elif cf == 4:
        # fused = the model's 4 bands, returned in the MS's ascending band order (as pansharpen does)
        s, model = resolve_bands(cm, sensor, bands)
        idx = tuple(sorted(model))
    else:
        raise InputError(f"fused image has {cf} bands but MS has {cm}: expected the same bands, "
                         "or 4 fused bands (the model's R,G,B,NIR) out of a larger MS")
    if cf < 2:
        raise InputError(f"D_lambda needs at least 2 bands, the fused image has {cf}")
    if idx != tuple(range(cm)):
        m = select_bands(m, idx)
    sc = resolve_scale(m.dtype, s, scale)
    if nodata is not None and (isinstance(nodata, bool)
                               or not isinstance(nodata, (int, float, np.integer, np.floating))):
        raise InputError(f"nodata must be a number, got {nodata!r}")
    clip = None
    if clip_bits is not None:
        clip = (0.0, float(2 ** _check_int("clip_bits", clip_bits, 1)))
    nd_f, nd_m = _nodata_of(f, nodata), _nodata_of(m, nodata)
    nd_p = _nodata_of(p, nodata) if p is not None else None
    # nodata fill = the border rule of the filter that reads the image (see ScoredSource), so that
    # a scene with a nodata border scores as the valid rectangle cut out would
    toolbox = variant != "pantiny"
    if nd_f is not None or clip is not None:
        f = ScoredSource(f, nd_f, clip, "nearest", _FILL_MARGIN_PAN)  # MTF.m: replicate
    if nd_m is not None:
        fill = "wrap" if toolbox and upsample == "interp23tap" else "nearest"  # interp23tap: circular
        m = ScoredSource(m, nd_m, None, fill, -(-_FILL_MARGIN_PAN // ratio))
    if p is not None and nd_p is not None:  # imresize: symmetric; pantiny's MTF: replicate
        p = ScoredSource(p, nd_p, None, "mirror" if toolbox else "nearest", _FILL_MARGIN_PAN)
    return _Prepared(f, m, p, s, idx, sc, cm)


def _mtf_gains(prep: _Prepared) -> Tuple[float, ...]:
    """MS MTF gains of the scored bands (toolbox default 0.3 when the sensor is unknown)."""
    s = prep.sensor
    if s is None or s.n_bands != prep.n_ms:
        return (0.3,) * len(prep.ms_bands)
    return tuple(s.mtf_ms[i] for i in prep.ms_bands)


def _sample_mean(src: RowSource, n: int = 16, rows: int = 4) -> float:
    """Mean of up to ``n`` evenly spaced ``rows``-row strips (a cheap look at the value range)."""
    h = src.shape[1]
    starts = np.unique(np.linspace(0, max(0, h - rows), n).astype(int))
    return float(np.mean([float(src.rows(int(a), min(h, int(a) + rows)).mean()) for a in starts]))


def _check_units(prep: _Prepared, why: str) -> None:
    """Refuse a fused image whose values are clearly not in the MS's units (e.g. [0,1] vs DN)."""
    mf, mm = _sample_mean(prep.fused), _sample_mean(prep.ms)
    if mm > 0 and mf > 0 and 0.2 <= mf / mm <= 5.0:
        return
    if mm == 0 and mf == 0:
        return
    raise InputError(f"the fused image (mean {mf:.4g}) and the MS (mean {mm:.4g}) do not look like the "
                     f"same units; {why} compares them directly: give the fused image in the MS's "
                     "digital numbers (or both as reflectance)")


def _distortions(sums: QSums, p: float, q: float) -> Tuple[float, float]:
    qf, qr = sums.fused_pairs / sums.n_high, sums.ref_pairs / sums.n_low
    d_lambda = float(np.mean(np.abs(qf - qr) ** p) ** (1.0 / p))
    qh, ql = sums.fused_pan / sums.n_high, sums.ref_pan / sums.n_low
    d_s = float(np.mean(np.abs(qh - ql) ** q) ** (1.0 / q))
    return d_lambda, d_s


_NAMES = {"fused": "fused image", "ms": "MS", "pan": "PAN"}


def _check_some_valid(sums: QSums, block: int, variant: str) -> None:
    """ValueError when nodata left no window to score, naming the image(s) at fault."""
    if sums.n_high > 0 and sums.n_low > 0:
        return
    full = [_NAMES[k] for k, n in sums.nodata_px.items() if n and n == sums.seen_px.get(k)]
    what = "sliding window position" if variant == "pantiny" else "block"
    if full:
        names = full[0] if len(full) == 1 else ", ".join(full[:-1]) + " and " + full[-1]
        raise InputError(f"the {names} {'is' if len(full) == 1 else 'are'} entirely nodata (every pixel "
                         "equals the nodata value): there is nothing to score")
    share = ", ".join(f"{_NAMES[k]} {100.0 * n / max(1, sums.seen_px[k]):.1f}%" for k, n in sums.nodata_px.items())
    raise InputError(f"no valid {block}x{block} {what}: every one holds a nodata pixel (nodata pixels: {share}); "
                     "score a larger area or a smaller block")


def _degenerate(sums: QSums) -> Dict[str, List[int]]:
    """Zero-variance bands per image ("fused", "ms", "pan") over the scored pixels."""
    return {k: r.constant_bands() for k, r in sums.ranges.items() if r.constant_bands()}


def _warn_undefined(flat: Dict[str, List[int]], undefined: Sequence[str]) -> None:
    where = "; ".join(f"{_NAMES[k]} band(s) {v}" if k != "pan" else "PAN" for k, v in flat.items())
    warnings.warn(f"zero-variance (constant) input: {where}. {', '.join(undefined)} "
                  f"{'is' if len(undefined) == 1 else 'are'} undefined and returned as NaN",
                  DegenerateInputWarning, stacklevel=4)


def _check_exponents(**kw: float) -> None:
    for k, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v) or v <= 0:
            raise InputError(f"{k} must be a positive number, got {v!r}")


def _score(fused: Input, ms: Input, pan: Optional[Input], *, sensor, ratio: int, variant: str,
           hqnr: bool, block: int, p: float, q: float, alpha: float, beta: float,
           scale: Optional[float], bands: Optional[Sequence[int]], upsample: str,
           strip_values: int, spectral: bool = True, spatial: bool = True,
           nodata: Optional[float] = None, clip_bits: Optional[int] = None) -> QNRResult:
    if variant not in VARIANTS:
        raise InputError(f"unknown QNR variant {variant!r}; use one of {', '.join(VARIANTS)}")
    if upsample not in UPSAMPLERS:
        raise InputError(f"unknown upsampling {upsample!r}; use one of {', '.join(UPSAMPLERS)}")
    _check_exponents(p=p, q=q, alpha=alpha, beta=beta)
    strip_values = _check_int("strip_values", strip_values, 1)
    if (variant == "toolbox" or hqnr) and upsample == "interp23tap" and isinstance(ratio, (int, np.integer)) \
            and ratio >= 1 and ratio & (ratio - 1):
        raise InputError(f"interp23tap needs a power-of-2 ratio, got {ratio}; pass upsample='bicubic'")
    if hqnr and variant == "pantiny":
        raise InputError("HQNR is defined by the toolbox only: use variant='toolbox' (or 'orig_paper') "
                         "with hqnr=True")
    if variant == "orig_paper" and isinstance(ratio, (int, np.integer)) and isinstance(block, (int, np.integer)) \
            and ratio >= 1 and block % ratio:
        raise InputError(f"variant 'orig_paper' scores the MS on block/ratio blocks: block {block} must be a "
                         f"multiple of the ratio {ratio}")
    prep = _prepare(fused, ms, pan, sensor=sensor, ratio=ratio, block=block, bands=bands, scale=scale,
                    nodata=nodata, clip_bits=clip_bits, variant=variant, upsample=upsample)
    if variant == "pantiny":
        _check_units(prep, "the pantiny variant's uint8 conversion")
    if hqnr:
        _check_units(prep, "D_lambda_K (Q2n of the fused image against the upsampled MS)")
    if variant in ("toolbox", "orig_paper"):
        gains = _mtf_gains(prep) if hqnr else None
        sums = toolbox_sums(prep.fused, prep.ms, prep.pan, ratio=ratio, block=block, up=upsample,
                            spectral=spectral, spatial=spatial, mtf_gains=gains,
                            as_uint16=prep.ms.dtype.kind in "ui", strip_values=strip_values,
                            orig_paper=variant == "orig_paper")
    else:
        sums = sliding_sums(prep.fused, prep.ms, prep.pan, ratio=ratio, block=block, scale=prep.scale,
                            spectral=spectral, spatial=spatial, strip_values=strip_values)
    _check_some_valid(sums, block, variant)
    d_lambda, d_s = _distortions(sums, p, q)
    d_lambda_k = 1.0 - sums.q2n / sums.n_high if hqnr else None
    # Zero-variance images: UIQI is 0/0 on every window (the toolbox returns NaN), so the
    # distortions built on it are undefined; Q2n (D_lambda_K) is undefined for a constant reference.
    flat = _degenerate(sums)
    undefined = []
    if spectral and ("fused" in flat or "ms" in flat):
        d_lambda = math.nan
        undefined.append("D_lambda")
    if spatial and flat:
        d_s = math.nan
        undefined.append("D_s")
    if d_lambda_k is not None and "ms" in flat:
        d_lambda_k = math.nan
        undefined.append("D_lambda_K")
    if undefined:
        _warn_undefined(flat, undefined)
    value = float((1 - d_lambda) ** alpha * (1 - d_s) ** beta)
    counts = dict(blocks_scored=sums.n_high, blocks_skipped=sums.skipped)
    if d_lambda_k is None:
        return QNRResult(d_lambda, d_s, value, variant, block, **counts)
    h = float((1 - d_lambda_k) ** alpha * (1 - d_s) ** beta)
    return QNRResult(d_lambda, d_s, value, variant, block, h, float(d_lambda_k), **counts)


def _band_count(x: Input) -> int:
    if isinstance(x, (str, os.PathLike)):
        from ..io import raster_info

        return raster_info(x).count
    shape = tuple(getattr(x, "shape", ()))
    return 1 if len(shape) == 2 else (shape[0] if shape else 0)


def _pan_ms_fused(a: Input, ms: Input, c: Input, who: str) -> Tuple[Input, Input, Input]:
    """``(pan, ms, fused)`` from a call in the documented order ``(pan, ms, fused)``, or in the
    deprecated order ``(fused, ms, pan)`` (recognised by the 1-band PAN in third place)."""
    if _band_count(a) > 1 and _band_count(c) == 1:
        warnings.warn(f"{who}(fused, ms, pan) is deprecated: call {who}(pan, ms, fused), the order of "
                      "pansharpen(pan, ms) and of the command line", FutureWarning, stacklevel=3)
        return c, ms, a
    return a, ms, c


def qnr(pan: Input, ms: Input, fused: Input, *, sensor: "str | Sensor | None" = None, ratio: int = 4,
        variant: str = "toolbox", hqnr: bool = False, block: int = 32, p: float = 1, q: float = 1,
        alpha: float = 1, beta: float = 1, scale: Optional[float] = None,
        bands: Optional[Sequence[int]] = None, upsample: str = "interp23tap",
        strip_values: int = STRIP_VALUES, nodata: Optional[float] = None,
        clip_bits: Optional[int] = None) -> QNRResult:
    """No-reference quality (D_lambda, D_s, QNR and optionally HQNR) of a pan-sharpened image.

    The arguments come in the order of ``pansharpen(pan, ms)`` and of ``pantiny qnr PAN MS FUSED``.
    The former order ``qnr(fused, ms, pan)`` still works (recognised by the 1-band PAN last) with a
    ``FutureWarning``.

    Args:
        pan: (H,W) or (1,H,W) PAN: numpy array, torch tensor or GeoTIFF path.
        fused: (C,H,W) fused image on the PAN grid (same kinds of input).
            Same units as the MS (digital numbers) for HQNR and the pantiny variant; plain QNR
            is insensitive to a gain between the two.
        ms: (Cm,H/r,W/r) original MS (same kinds of input). ``C == Cm``, or ``C == 4`` out of a
            larger MS: then the MS bands ``sorted(model_bands)`` of the sensor (or of ``bands``)
            are compared, in ascending band order, which is how ``pansharpen`` returns them.
        sensor: sensor name (MTF gains for HQNR, value scale for the pantiny variant, band map);
            read from the MS GeoTIFF's ``SENSOR`` tag when not given.
        ratio: PAN/MS resolution ratio (H = ratio x MS height exactly).
        variant: "toolbox" (Vivone 2020, default), "orig_paper" (the toolbox with
            ``flag_orig_paper = 1``: MS-scale reference on S/ratio blocks) or "pantiny"
            (PanTiny / Pan-Mamba code).
        hqnr: also compute D_lambda_K and HQNR (toolbox and orig_paper variants), with the
            toolbox's own MTF filter (``genMTF.m``, :func:`pantiny.mtf.toolbox_mtf_filter`).
        block: Q block / window size S in PAN pixels (32). The toolbox variant scores the
            complete S x S blocks from the top-left corner (a remainder of ``H mod S`` rows /
            ``W mod S`` columns is left out).
        p, q, alpha, beta: exponents of D_lambda, D_s and QNR/HQNR (all 1).
        scale: full-scale value (e.g. 2047 for 11-bit); only the pantiny variant's uint8
            conversion uses it. Default: the sensor's maximum, else from the MS dtype.
        bands: 4 MS band indices (R,G,B,NIR) when fused has 4 bands of a larger MS.
        upsample: "interp23tap" (toolbox) or "bicubic": MS -> PAN grid, and the re-interpolation
            of the degraded PAN (toolbox variant).
        strip_values: numbers per image per strip (bounds memory when streaming large scenes).
        nodata: DN marking missing pixels in all three inputs (default: each GeoTIFF's own nodata
            value; arrays: none). A pixel is nodata when all its bands equal it. Windows holding
            a nodata pixel of any input are skipped and counted in ``blocks_skipped``.
        clip_bits: the toolbox's ``th_values`` option: clip the fused image to [0, 2**clip_bits]
            (e.g. 11) before scoring. Default: no clipping.

    Returns:
        :class:`QNRResult`. Distortions that a zero-variance (constant) band makes undefined are
        NaN, with a :class:`DegenerateInputWarning`.

    Raises:
        ValueError: shape/ratio/band-count mismatch, GeoTIFFs on different grids (CRS, extent,
            pixel size; the fused file must have the PAN's CRS, transform and size), NaN or inf
            values that are not nodata, unknown variant or sensor, non-positive exponents, fused
            and MS in clearly different units (HQNR and the pantiny variant), images smaller than
            one window, an image that is entirely nodata or leaves no window without nodata.

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import expand_ms, qnr
        >>> rng = np.random.default_rng(0)
        >>> ms = rng.integers(200, 1800, (4, 16, 16)).astype(np.uint16)   # (C,h,w) 11-bit DN
        >>> pan = rng.integers(200, 1800, (1, 64, 64)).astype(np.uint16)  # (1,H,W), H = 4 h
        >>> r = qnr(pan=pan, ms=ms, fused=expand_ms(ms), sensor="ikonos")  # score the upsampled MS
        >>> r.d_lambda  # the toolbox's own reference: no spectral distortion by construction
        0.0
        >>> 0.0 < r.d_s < 1.0 and r.qnr == (1.0 - r.d_lambda) * (1.0 - r.d_s)
        True
        >>> r.blocks_scored, r.variant  # 2 x 2 distinct 32 x 32 blocks
        (4, 'toolbox')
        >>> sorted(qnr(pan=pan, ms=ms, fused=expand_ms(ms), sensor="ikonos", hqnr=True).as_dict())[:3]
        ['D_lambda', 'D_lambda_K', 'D_s']
    """
    pan, ms, fused = _pan_ms_fused(pan, ms, fused, "qnr")
    return _score(fused, ms, pan, sensor=sensor, ratio=ratio, variant=variant, hqnr=hqnr, block=block,
                  p=p, q=q, alpha=alpha, beta=beta, scale=scale, bands=bands, upsample=upsample,
                  strip_values=strip_values, nodata=nodata, clip_bits=clip_bits)


def d_lambda(fused: Input, ms: Input, *, sensor: "str | Sensor | None" = None, ratio: int = 4,
             variant: str = "toolbox", block: int = 32, p: float = 1, scale: Optional[float] = None,
             bands: Optional[Sequence[int]] = None, upsample: str = "interp23tap",
             strip_values: int = STRIP_VALUES, nodata: Optional[float] = None,
             clip_bits: Optional[int] = None) -> float:
    """Spectral distortion D_lambda (no PAN needed); arguments and definitions as :func:`qnr`.

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import d_lambda, expand_ms
        >>> ms = np.random.default_rng(0).integers(200, 1800, (4, 16, 16)).astype(np.uint16)
        >>> d_lambda(fused=expand_ms(ms), ms=ms)
        0.0
    """
    return _score(fused, ms, None, sensor=sensor, ratio=ratio, variant=variant, hqnr=False, block=block,
                  p=p, q=1, alpha=1, beta=1, scale=scale, bands=bands, upsample=upsample,
                  strip_values=strip_values, spatial=False, nodata=nodata, clip_bits=clip_bits).d_lambda


def d_s(pan: Input, ms: Input, fused: Input, *, sensor: "str | Sensor | None" = None, ratio: int = 4,
        variant: str = "toolbox", block: int = 32, q: float = 1, scale: Optional[float] = None,
        bands: Optional[Sequence[int]] = None, upsample: str = "interp23tap",
        strip_values: int = STRIP_VALUES, nodata: Optional[float] = None,
        clip_bits: Optional[int] = None) -> float:
    """Spatial distortion D_s; arguments (order ``pan, ms, fused``) and definitions as :func:`qnr`.

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import d_s, expand_ms
        >>> rng = np.random.default_rng(0)
        >>> ms = rng.integers(200, 1800, (4, 16, 16)).astype(np.uint16)
        >>> pan = rng.integers(200, 1800, (1, 64, 64)).astype(np.uint16)
        >>> 0.0 <= d_s(pan=pan, ms=ms, fused=expand_ms(ms)) <= 1.0
        True
    """
    pan, ms, fused = _pan_ms_fused(pan, ms, fused, "d_s")
    return _score(fused, ms, pan, sensor=sensor, ratio=ratio, variant=variant, hqnr=False, block=block,
                  p=1, q=q, alpha=1, beta=1, scale=scale, bands=bands, upsample=upsample,
                  strip_values=strip_values, spectral=False, nodata=nodata, clip_bits=clip_bits).d_s


def d_lambda_k(fused: Input, ms: Input, *, sensor: "str | Sensor | None" = None, ratio: int = 4,
               block: int = 32, bands: Optional[Sequence[int]] = None, upsample: str = "interp23tap",
               strip_values: int = STRIP_VALUES, nodata: Optional[float] = None,
               clip_bits: Optional[int] = None) -> float:
    """Khan's D_lambda_K = 1 - Q2n(MS_up, MTF(fused)) on distinct S x S blocks (toolbox
    ``D_lambda_K.m``, MTF = the toolbox's ``genMTF.m`` filter); arguments as :func:`qnr`.
    Fused in the MS's units."""
    r = _score(fused, ms, None, sensor=sensor, ratio=ratio, variant="toolbox", hqnr=True, block=block,
               p=1, q=1, alpha=1, beta=1, scale=None, bands=bands, upsample=upsample,
               strip_values=strip_values, spectral=False, spatial=False, nodata=nodata, clip_bits=clip_bits)
    return r.d_lambda_k  # type: ignore[return-value]


def expand_ms(ms: Input, ratio: int = 4, upsample: str = "interp23tap") -> np.ndarray:
    """The reference the toolbox variant compares with: MS (C,h,w) upsampled to (C,h*r,w*r) float64.

    This is the toolbox's ``I_MS`` / "EXP" image (``interp23tap`` by default, circular borders).
    Scoring it as the fused image gives D_lambda = 0 exactly (toolbox variant, same ``upsample``).

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import expand_ms
        >>> ms = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
        >>> exp = expand_ms(ms)
        >>> exp.shape, exp.dtype
        ((4, 32, 32), dtype('float64'))
        >>> np.array_equal(exp[:, 2::4, 2::4], ms)  # MS pixel j lands on PAN pixel 4 j + 2
        True
    """
    if upsample not in UPSAMPLERS:
        raise InputError(f"unknown upsampling {upsample!r}; use one of {', '.join(UPSAMPLERS)}")
    ratio = _check_int("ratio", ratio, 1)
    if upsample == "interp23tap" and ratio & (ratio - 1):
        raise InputError(f"interp23tap needs a power-of-2 ratio, got {ratio}; pass upsample='bicubic'")
    src = open_source(ms, "MS")
    x = src.rows(0, src.shape[1])
    return upsampler(upsample, ratio)(x[None])[0].numpy()
