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
:mod:`pantiny.metrics.imresize`; no MTF filter); MTF = the sensor's MS MTF filter from
:mod:`pantiny.mtf` (gains from :mod:`pantiny.sensors`, 0.3 per band when the sensor is unknown, as
``genMTF.m``). The toolbox's default full-resolution index is HQNR (``flagQNR = 0``).

``variant="pantiny"`` = the code PanTiny / Pan-Mamba ran (``py_tra/metrics.py``, from wasaCheney
IQA_pansharpening_python): inputs converted to uint8 (``x/scale*255``, clipped, truncated), Q on a
sliding 32 x 32 window ('valid' positions), R = the LRMS itself at the MS scale, P_ref = MTF-filtered
PAN (GNyq 0.15 for every sensor) decimated by nearest neighbour (PAN pixel ``ratio*i``).

Numbers are only comparable within one variant. See ``docs/metrics.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..normalize import resolve_scale
from ..sensors import Sensor, get_sensor, resolve_bands
from .sources import Input, RowSource, TiffSource, open_source, select_bands
from .streaming import STRIP_VALUES, QSums, sliding_sums, toolbox_sums, upsampler

VARIANTS = ("toolbox", "pantiny")
UPSAMPLERS = ("interp23tap", "bicubic")


@dataclass(frozen=True)
class QNRResult:
    """Full-resolution scores of one fused image (unit-less).

    ``d_lambda``, ``d_s`` (lower is better) and ``qnr`` (higher is better) are always set;
    ``hqnr`` and ``d_lambda_k`` only when HQNR was asked for (else None). ``variant`` names the
    definition used, ``block`` the window size S in PAN pixels.
    """

    d_lambda: float
    d_s: float
    qnr: float
    variant: str = "toolbox"
    block: int = 32
    hqnr: Optional[float] = None
    d_lambda_k: Optional[float] = None

    # Names as written in the literature.
    D_lambda = property(lambda self: self.d_lambda)
    D_s = property(lambda self: self.d_s)
    QNR = property(lambda self: self.qnr)
    HQNR = property(lambda self: self.hqnr)
    D_lambda_K = property(lambda self: self.d_lambda_k)

    def as_dict(self) -> Dict[str, object]:
        """``{"D_lambda", "D_s", "QNR", ["D_lambda_K", "HQNR"], "variant", "block"}`` (JSON-ready)."""
        d: Dict[str, object] = {"D_lambda": self.d_lambda, "D_s": self.d_s, "QNR": self.qnr}
        if self.hqnr is not None:
            d["D_lambda_K"] = self.d_lambda_k
            d["HQNR"] = self.hqnr
        d["variant"], d["block"] = self.variant, self.block
        return d

    def __str__(self) -> str:
        parts = [f"D_lambda={self.d_lambda:.4f}", f"D_s={self.d_s:.4f}", f"QNR={self.qnr:.4f}"]
        if self.hqnr is not None:
            parts += [f"D_lambda_K={self.d_lambda_k:.4f}", f"HQNR={self.hqnr:.4f}"]
        return " ".join(parts) + f" ({self.variant}, S={self.block})"


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
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _prepare(fused: Input, ms: Input, pan: Optional[Input], *, sensor, ratio: int, block: int,
             bands: Optional[Sequence[int]], scale: Optional[float]) -> _Prepared:
    """Open the inputs, check shapes, choose the MS bands that match the fused bands."""
    ratio = _check_int("ratio", ratio, 1)
    block = _check_int("block", block, 2)
    f, m = open_source(fused, "fused image"), open_source(ms, "MS")
    p = open_source(pan, "PAN") if pan is not None else None
    (cf, hh, ww), (cm, h, w) = f.shape, m.shape
    if p is not None:
        if p.shape[0] != 1:
            raise ValueError(f"PAN must have 1 band, got {p.shape[0]} (shape {p.shape})")
        if (hh, ww) != p.shape[1:]:
            raise ValueError(f"fused image is {hh}x{ww} but PAN is {p.shape[1]}x{p.shape[2]}: "
                             "the fused image must be on the PAN grid")
    if (h * ratio, w * ratio) != (hh, ww):
        raise ValueError(f"MS is {h}x{w} and the fused image is {hh}x{ww}: with ratio {ratio} the MS "
                         f"must be {hh / ratio:g}x{ww / ratio:g} (PAN size = ratio x MS size)")
    if min(hh, ww) < block:
        raise ValueError(f"PAN grid {hh}x{ww} is smaller than one {block}x{block} block")
    if sensor is None and isinstance(m, TiffSource) and m.tags.get("SENSOR"):
        try:
            sensor = get_sensor(m.tags["SENSOR"])
        except ValueError:
            sensor = None
    if cf == cm and bands is None:
        idx = tuple(range(cm))
        s = get_sensor(sensor) if sensor is not None else None
        if s is not None and s.n_bands != cm:
            raise ValueError(f"MS has {cm} bands but sensor {s.name!r} has {s.n_bands} ({', '.join(s.bands)})")
    elif cf == 4:
        # fused = the model's 4 bands, returned in the MS's ascending band order (as pansharpen does)
        s, model = resolve_bands(cm, sensor, bands)
        idx = tuple(sorted(model))
    else:
        raise ValueError(f"fused image has {cf} bands but MS has {cm}: expected the same bands, "
                         "or 4 fused bands (the model's R,G,B,NIR) out of a larger MS")
    if cf < 2:
        raise ValueError(f"D_lambda needs at least 2 bands, the fused image has {cf}")
    if idx != tuple(range(cm)):
        m = select_bands(m, idx)
    sc = resolve_scale(m.dtype, s, scale)
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
    raise ValueError(f"the fused image (mean {mf:.4g}) and the MS (mean {mm:.4g}) do not look like the "
                     f"same units; {why} compares them directly: give the fused image in the MS's "
                     "digital numbers (or both as reflectance)")


def _distortions(sums: QSums, p: float, q: float) -> Tuple[float, float]:
    qf, qr = sums.fused_pairs / sums.n_high, sums.ref_pairs / sums.n_low
    d_lambda = float(np.mean(np.abs(qf - qr) ** p) ** (1.0 / p))
    qh, ql = sums.fused_pan / sums.n_high, sums.ref_pan / sums.n_low
    d_s = float(np.mean(np.abs(qh - ql) ** q) ** (1.0 / q))
    return d_lambda, d_s


def _check_exponents(**kw: float) -> None:
    for k, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v) or v <= 0:
            raise ValueError(f"{k} must be a positive number, got {v!r}")


def _score(fused: Input, ms: Input, pan: Optional[Input], *, sensor, ratio: int, variant: str,
           hqnr: bool, block: int, p: float, q: float, alpha: float, beta: float,
           scale: Optional[float], bands: Optional[Sequence[int]], upsample: str,
           strip_values: int, spectral: bool = True, spatial: bool = True) -> QNRResult:
    if variant not in VARIANTS:
        raise ValueError(f"unknown QNR variant {variant!r}; use one of {', '.join(VARIANTS)}")
    if upsample not in UPSAMPLERS:
        raise ValueError(f"unknown upsampling {upsample!r}; use one of {', '.join(UPSAMPLERS)}")
    _check_exponents(p=p, q=q, alpha=alpha, beta=beta)
    strip_values = _check_int("strip_values", strip_values, 1)
    if variant == "toolbox" and upsample == "interp23tap" and isinstance(ratio, (int, np.integer)) \
            and ratio >= 1 and ratio & (ratio - 1):
        raise ValueError(f"interp23tap needs a power-of-2 ratio, got {ratio}; pass upsample='bicubic'")
    if hqnr and variant != "toolbox":
        raise ValueError("HQNR is defined by the toolbox only: use variant='toolbox' with hqnr=True")
    prep = _prepare(fused, ms, pan, sensor=sensor, ratio=ratio, block=block, bands=bands, scale=scale)
    if variant == "pantiny":
        _check_units(prep, "the pantiny variant's uint8 conversion")
    if hqnr:
        _check_units(prep, "D_lambda_K (Q2n of the fused image against the upsampled MS)")
    if variant == "toolbox":
        gains = _mtf_gains(prep) if hqnr else None
        sums = toolbox_sums(prep.fused, prep.ms, prep.pan, ratio=ratio, block=block, up=upsample,
                            spectral=spectral, spatial=spatial, mtf_gains=gains,
                            as_uint16=prep.ms.dtype.kind in "ui", strip_values=strip_values)
    else:
        sums = sliding_sums(prep.fused, prep.ms, prep.pan, ratio=ratio, block=block, scale=prep.scale,
                            spectral=spectral, spatial=spatial, strip_values=strip_values)
    d_lambda, d_s = _distortions(sums, p, q)
    value = float((1 - d_lambda) ** alpha * (1 - d_s) ** beta)
    if not hqnr:
        return QNRResult(d_lambda, d_s, value, variant, block)
    d_lambda_k = 1.0 - sums.q2n / sums.n_high
    h = float((1 - d_lambda_k) ** alpha * (1 - d_s) ** beta)
    return QNRResult(d_lambda, d_s, value, variant, block, h, float(d_lambda_k))


def qnr(fused: Input, ms: Input, pan: Input, *, sensor: "str | Sensor | None" = None, ratio: int = 4,
        variant: str = "toolbox", hqnr: bool = False, block: int = 32, p: float = 1, q: float = 1,
        alpha: float = 1, beta: float = 1, scale: Optional[float] = None,
        bands: Optional[Sequence[int]] = None, upsample: str = "interp23tap",
        strip_values: int = STRIP_VALUES) -> QNRResult:
    """No-reference quality (D_lambda, D_s, QNR and optionally HQNR) of a pan-sharpened image.

    Args:
        fused: (C,H,W) fused image on the PAN grid: numpy array, torch tensor or GeoTIFF path.
            Same units as the MS (digital numbers) for HQNR and the pantiny variant; plain QNR
            is insensitive to a gain between the two.
        ms: (Cm,H/r,W/r) original MS (same kinds of input). ``C == Cm``, or ``C == 4`` out of a
            larger MS: then the MS bands ``sorted(model_bands)`` of the sensor (or of ``bands``)
            are compared, in ascending band order, which is how ``pansharpen`` returns them.
        pan: (H,W) or (1,H,W) PAN (same kinds of input).
        sensor: sensor name (MTF gains for HQNR, value scale for the pantiny variant, band map);
            read from the MS GeoTIFF's ``SENSOR`` tag when not given.
        ratio: PAN/MS resolution ratio (H = ratio x MS height exactly).
        variant: "toolbox" (Vivone 2020, default) or "pantiny" (PanTiny / Pan-Mamba code).
        hqnr: also compute D_lambda_K and HQNR (toolbox variant only).
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

    Returns:
        :class:`QNRResult`.

    Raises:
        ValueError: shape/ratio/band-count mismatch, NaN or inf values, unknown variant or
            sensor, non-positive exponents, fused and MS in clearly different units (HQNR and
            the pantiny variant), images smaller than one window.
    """
    return _score(fused, ms, pan, sensor=sensor, ratio=ratio, variant=variant, hqnr=hqnr, block=block,
                  p=p, q=q, alpha=alpha, beta=beta, scale=scale, bands=bands, upsample=upsample,
                  strip_values=strip_values)


def d_lambda(fused: Input, ms: Input, *, sensor: "str | Sensor | None" = None, ratio: int = 4,
             variant: str = "toolbox", block: int = 32, p: float = 1, scale: Optional[float] = None,
             bands: Optional[Sequence[int]] = None, upsample: str = "interp23tap",
             strip_values: int = STRIP_VALUES) -> float:
    """Spectral distortion D_lambda (no PAN needed); arguments and definitions as :func:`qnr`."""
    return _score(fused, ms, None, sensor=sensor, ratio=ratio, variant=variant, hqnr=False, block=block,
                  p=p, q=1, alpha=1, beta=1, scale=scale, bands=bands, upsample=upsample,
                  strip_values=strip_values, spatial=False).d_lambda


def d_s(fused: Input, ms: Input, pan: Input, *, sensor: "str | Sensor | None" = None, ratio: int = 4,
        variant: str = "toolbox", block: int = 32, q: float = 1, scale: Optional[float] = None,
        bands: Optional[Sequence[int]] = None, upsample: str = "interp23tap",
        strip_values: int = STRIP_VALUES) -> float:
    """Spatial distortion D_s; arguments and definitions as :func:`qnr`."""
    return _score(fused, ms, pan, sensor=sensor, ratio=ratio, variant=variant, hqnr=False, block=block,
                  p=1, q=q, alpha=1, beta=1, scale=scale, bands=bands, upsample=upsample,
                  strip_values=strip_values, spectral=False).d_s


def d_lambda_k(fused: Input, ms: Input, *, sensor: "str | Sensor | None" = None, ratio: int = 4,
               block: int = 32, bands: Optional[Sequence[int]] = None, upsample: str = "interp23tap",
               strip_values: int = STRIP_VALUES) -> float:
    """Khan's D_lambda_K = 1 - Q2n(MS_up, MTF(fused)) on distinct S x S blocks (toolbox
    ``D_lambda_K.m``); arguments as :func:`qnr`. Fused in the MS's units."""
    r = _score(fused, ms, None, sensor=sensor, ratio=ratio, variant="toolbox", hqnr=True, block=block,
               p=1, q=1, alpha=1, beta=1, scale=None, bands=bands, upsample=upsample,
               strip_values=strip_values, spectral=False, spatial=False)
    return r.d_lambda_k  # type: ignore[return-value]


def expand_ms(ms: Input, ratio: int = 4, upsample: str = "interp23tap") -> np.ndarray:
    """The reference the toolbox variant compares with: MS (C,h,w) upsampled to (C,h*r,w*r) float64.

    This is the toolbox's ``I_MS`` / "EXP" image (``interp23tap`` by default, circular borders).
    Scoring it as the fused image gives D_lambda = 0 exactly (toolbox variant, same ``upsample``).
    """
    if upsample not in UPSAMPLERS:
        raise ValueError(f"unknown upsampling {upsample!r}; use one of {', '.join(UPSAMPLERS)}")
    ratio = _check_int("ratio", ratio, 1)
    if upsample == "interp23tap" and ratio & (ratio - 1):
        raise ValueError(f"interp23tap needs a power-of-2 ratio, got {ratio}; pass upsample='bicubic'")
    src = open_source(ms, "MS")
    x = src.rows(0, src.shape[1])
    return upsampler(upsample, ratio)(x[None])[0].numpy()
