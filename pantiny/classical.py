"""Classical pan-sharpening baselines: Brovey, IHS, GS, GSA, PCA, SFIM, MTF-GLP and LMVM.

Every method is split in two so that a tiled run equals a whole-image run:

* ``fit(ms_lr, pan_lr, sensor, **options) -> state`` estimates whatever needs the *whole scene*
  (band weights, injection gains, regression coefficients, PAN moment matching) once, from the
  low-resolution scene: ``ms_lr`` (4,h,w) and ``pan_lr`` (1,h,w), float tensors in the model's
  unit range (DN / scale), bands in model order **R, G, B, NIR**, ``pan_lr`` = PAN averaged onto
  the MS grid. It also validates ``options`` (a bad option raises ``ValueError``).
* ``apply(ms_up, pan, state) -> fused`` is a pure function on one tile at the PAN grid:
  ``ms_up`` (B,4,H,W) = MS interpolated onto the PAN grid, ``pan`` (B,1,H,W), same units; it
  returns (B,4,H,W) float32 in the same units. It only looks ``context`` pixels around each
  output pixel (0 for pointwise methods), so tiles overlapping by ``2 * context`` are seamless.

:func:`pantiny.pansharpen` (``method="brovey"`` etc., ``method_options={...}``) drives both.

Notation: ``MS_k`` = upsampled band k, ``P`` = PAN, ``I`` = an intensity (synthetic PAN) made of
the MS bands, ``P'`` = PAN *moment-matched* to a target: ``P' = (P - mean(P)) * std(T) / std(P) +
mean(T)``. Component-substitution (CS) methods compute ``F_k = MS_k + g_k (P' - I)``;
multiresolution-analysis (MRA) methods ``F_k = MS_k + g_k (P'_k - LP(P'_k))`` or, with
high-pass modulation (HPM), ``F_k = MS_k * P'_k / LP(P'_k)`` (Vivone et al. 2015).

PAN equalisation follows the Vivone toolbox (Vivone et al. 2015, IEEE TGRS 53(5); Matlab toolbox
2020): the CS methods (IHS, GS, GSA, PCA) moment-match the PAN to their intensity ``I``, like the
toolbox's ``IHS.m``, ``GS.m``, ``GSA.m``, ``PCA.m``; MTF-GLP with unit gains matches it to each
band; the HPM methods (SFIM, MTF-GLP-HPM) leave it off by default (see :func:`sfim_fit`) and
Brovey too, to stay GDAL-compatible (both accept ``match=True``). One documented difference: all
moments are estimated **at the MS scale** (on ``ms_lr`` and on the PAN averaged onto the MS grid),
not on the full-resolution PAN, because the fit sees only the low-resolution scene; this matches
the PAN's low-pass part to the MS, which is the component CS methods subtract.

Statistics ignore fill pixels: MS pixels whose four bands are all exactly 0, or whose PAN average is
exactly 0, are left out (a common nodata value; ``pansharpen`` masks them in the output anyway).
Scenes with more than ``MAX_FIT_PIXELS`` (4 Mi) MS pixels are subsampled on a regular stride.

Numerical safety: no division by a value closer to zero than ``EPS`` (1e-12 for Brovey, where
GDAL's rule "pseudo-PAN 0 -> output 0" is kept; 1e-6 in unit range for the HPM denominators, where
the upsampled MS is kept instead); degenerate statistics (a constant PAN or MS) fall back to unit
gains. Outputs may leave [0, 1] slightly: the API clips when it converts back to integer DN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .mtf import MTF_TAPS, mtf_filter
from .sensors import Sensor, get_sensor, parse_band_weights

State = Dict[str, Any]
FitFn = Callable[..., State]
ApplyFn = Callable[[torch.Tensor, torch.Tensor, State], torch.Tensor]

N_BANDS = 4
#: Largest number of MS pixels the statistics are computed on (regular subsampling above).
MAX_FIT_PIXELS = 1 << 22
BROVEY_EPS = 1e-12  # |pseudo-PAN| at or below this (unit range) -> output 0, as GDAL's "== 0" rule
HPM_EPS = 1e-6  # HPM denominators at or below this (unit range) -> keep the upsampled MS
DEGENERATE_STD = 1e-9  # std (unit range) below which a band / the PAN counts as constant


@dataclass(frozen=True)
class ClassicalMethod:
    """A classical method as :func:`pantiny.pansharpen` uses it.

    Attributes:
        name: key in :data:`METHODS`.
        fit: ``fit(ms_lr (4,h,w), pan_lr (1,h,w), sensor, **options) -> state`` or ``None``.
        apply: ``apply(ms_up (B,4,H,W), pan (B,1,H,W), state) -> (B,4,H,W)``.
        context: PAN pixels of neighbourhood one output pixel depends on (tiles need
            ``overlap >= 2 * context``).
        reference: the paper(s) the implementation follows.
    """

    name: str
    fit: Optional[FitFn]
    apply: ApplyFn
    context: int
    reference: str


# --- option and statistics helpers ------------------------------------------------------------

def _check_options(method: str, options: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        ok = ", ".join(allowed) if allowed else "none"
        raise InputError(f"unknown option(s) {unknown} for method {method!r}; valid options: {ok}")


def _check_bool(method: str, key: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"option {key!r} of method {method!r} must be True or False, got {value!r}")
    return bool(value)


def _parse_weights(method: str, weights: Any) -> torch.Tensor:
    """Band weights in model order (R, G, B, NIR), float64 (see :func:`pantiny.sensors.parse_band_weights`)."""
    return torch.from_numpy(parse_band_weights(method, weights))


def _samples(ms_lr: torch.Tensor, pan_lr: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Valid low-resolution pixels as float64 ``(X (N,4), p (N,))``."""
    if not isinstance(ms_lr, torch.Tensor) or ms_lr.ndim != 3 or ms_lr.shape[0] != N_BANDS:
        raise InputError(f"ms_lr must be a (4,h,w) tensor in model band order, got "
                         f"{tuple(getattr(ms_lr, 'shape', ()))}")
    if not isinstance(pan_lr, torch.Tensor) or pan_lr.ndim != 3 or pan_lr.shape[0] != 1 \
            or pan_lr.shape[1:] != ms_lr.shape[1:]:
        raise InputError(f"pan_lr must be (1,h,w) on the MS grid {tuple(ms_lr.shape[1:])}, got "
                         f"{tuple(getattr(pan_lr, 'shape', ()))}")
    step = max(1, -(-ms_lr[0].numel() // MAX_FIT_PIXELS))  # subsample before any float64 copy
    x = ms_lr.detach().reshape(N_BANDS, -1)[:, ::step].to("cpu", torch.float64)
    p = pan_lr.detach().reshape(-1)[::step].to("cpu", torch.float64)
    for what, v in (("MS", x), ("PAN", p)):
        if not torch.isfinite(v).all():
            raise InputError(f"{what} contains NaN or infinite values; mask them as nodata first")
    valid = (x != 0).any(0) & (p != 0)
    return x[:, valid].T.contiguous(), p[valid]


def _moments(v: torch.Tensor) -> Tuple[float, float]:
    if v.numel() == 0:
        return 0.0, 0.0
    return float(v.mean()), float(v.std(unbiased=False))


def _match(src: torch.Tensor, target: torch.Tensor) -> Tuple[float, float]:
    """``(a, b)`` with ``a * src + b`` having the mean and std of ``target`` (a = 1 if src is constant)."""
    ms_, ss = _moments(src)
    mt, st = _moments(target)
    a = st / ss if ss > DEGENERATE_STD else 1.0
    return a, mt - a * ms_


def _regress_gain(y: torch.Tensor, x: torch.Tensor) -> float:
    """cov(y, x) / var(x), or 1 when x is constant."""
    if x.numel() < 2:
        return 1.0
    xc, yc = x - x.mean(), y - y.mean()
    var = float((xc * xc).mean())
    return float((xc * yc).mean()) / var if var > DEGENERATE_STD ** 2 else 1.0


def _vec(values: Sequence[float]) -> torch.Tensor:
    """Per-band scalars as a (1,4,1,1) float32 tensor that broadcasts over tiles."""
    return torch.tensor([float(v) for v in values], dtype=torch.float32).view(1, -1, 1, 1)


def _weighted_sum(ms_up: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k MS_k`` (B,1,H,W), accumulated band by band in float32 as GDAL does in double."""
    out = ms_up[:, :1] * float(w[0])  # a new tensor: the other bands are added into it in place
    for k in range(1, ms_up.shape[1]):
        out.add_(ms_up[:, k:k + 1] * float(w[k]))  # product rounded first, as before (alpha= may fuse)
    return out


def _check_tile(ms_up: torch.Tensor, pan: torch.Tensor) -> None:
    if ms_up.ndim != 4 or ms_up.shape[1] != N_BANDS or pan.ndim != 4 or pan.shape[1] != 1 \
            or pan.shape[0] != ms_up.shape[0] or pan.shape[2:] != ms_up.shape[2:]:
        raise InputError(f"apply expects ms_up (B,4,H,W) and pan (B,1,H,W) on the same grid, got "
                         f"{tuple(ms_up.shape)} and {tuple(pan.shape)}")


def _cs_apply(ms_up: torch.Tensor, pan: torch.Tensor, state: State) -> torch.Tensor:
    """Component substitution: ``F_k = MS_k + g_k (a P + b - (sum_j w_j MS_j + c))``."""
    _check_tile(ms_up, pan)
    intensity = _weighted_sum(ms_up, state["w"]) + state["c"]
    detail = pan * state["a"] + state["b"] - intensity
    return ms_up + state["g"] * detail


# --- Brovey -------------------------------------------------------------------------------------

def _weighted_intensity_fit(method: str, ms_lr: torch.Tensor, pan_lr: torch.Tensor, options: Mapping[str, Any],
                            match_default: bool) -> Tuple[torch.Tensor, float, float]:
    """Options ``weights`` / ``match`` of Brovey and IHS: intensity weights ``w`` and the PAN gain and
    offset ``(a, b)`` that moment-match PAN to ``I = sum_k w_k MS_k`` (1, 0 without matching)."""
    _check_options(method, options, ("weights", "match"))
    w = _parse_weights(method, options.get("weights"))
    a, b = 1.0, 0.0
    if _check_bool(method, "match", options.get("match", match_default)):
        x, p = _samples(ms_lr, pan_lr)
        a, b = _match(p, x @ w)
    return w, a, b


def brovey_fit(ms_lr: torch.Tensor, pan_lr: torch.Tensor, sensor: Sensor, **options: Any) -> State:
    """Weighted Brovey transform, as GDAL's ``VRTPansharpenedDataset`` "WeightedBrovey".

    ``F_k = MS_k * P / I`` with the pseudo-PAN ``I = sum_k w_k MS_k``; where ``I == 0`` the output
    is 0 (GDAL's rule; here ``|I| <= 1e-12`` in unit range). Negative interpolated MS values
    (bicubic undershoot) are set to 0 first, as in GDAL, whose resampled MS has the unsigned
    input type; with non-negative weights every ``F_k`` then stays below ``P / w_k``.

    Options:
        weights: 4 weights in **model band order R, G, B, NIR** (or a dict ``{"R": .., "G": ..,
            "B": .., "NIR": ..}``); default 1/4 each, which is GDAL's default (1/N for N spectral
            bands) when GDAL is given the same 4 bands. Note the weights also set the output
            brightness: they should sum to about 1 when PAN and MS share a radiometric scale.
        match: moment-match PAN to ``I`` first (Vivone toolbox ``BT``); default ``False`` (GDAL).

    Shapes and units: ``ms_lr`` (4,h,w), ``pan_lr`` (1,h,w); tiles ``ms_up`` (B,4,H,W), ``pan`` (B,1,H,W);
    all in unit range (DN / scale), bands R, G, B, NIR (see :class:`ClassicalMethod`).

    Reference: Gillespie, Kahle & Walker 1987 (Brovey transform); GDAL ``gdalpansharpen.cpp``.
    """
    w, a, b = _weighted_intensity_fit("brovey", ms_lr, pan_lr, options, match_default=False)
    return {"w": w, "a": a, "b": b}


def brovey_apply(ms_up: torch.Tensor, pan: torch.Tensor, state: State) -> torch.Tensor:
    _check_tile(ms_up, pan)
    ms_up = ms_up.clamp_min(0.0)  # bicubic undershoot; GDAL's resampled MS buffer is unsigned too
    pseudo = _weighted_sum(ms_up, state["w"])
    p = pan if (state["a"], state["b"]) == (1.0, 0.0) else pan * state["a"] + state["b"]
    factor = p / pseudo  # inf or NaN where pseudo is ~0: replaced by 0 (GDAL's rule)
    factor.masked_fill_(pseudo.abs_() <= BROVEY_EPS, 0.0)
    return ms_up.mul_(factor)  # ms_up is the clamped copy: the caller's tensor is untouched


# --- IHS, GS, GSA, PCA (component substitution) ------------------------------------------------

def ihs_fit(ms_lr: torch.Tensor, pan_lr: torch.Tensor, sensor: Sensor, **options: Any) -> State:
    """Generalised IHS (GIHS / fast IHS): ``F_k = MS_k + (P' - I)``, ``I = sum_k w_k MS_k``.

    ``P'`` = PAN moment-matched to ``I`` (Vivone toolbox ``IHS.m``).

    Options:
        weights: intensity weights in model order R, G, B, NIR (default 1/4 each: the N-band
            extension of Tu et al.'s I = (R+G+B)/3).
        match: moment matching of PAN to ``I`` (default ``True``).

    Shapes and units: ``ms_lr`` (4,h,w), ``pan_lr`` (1,h,w); tiles ``ms_up`` (B,4,H,W), ``pan`` (B,1,H,W);
    all in unit range (DN / scale), bands R, G, B, NIR (see :class:`ClassicalMethod`).

    Reference: Tu, Su, Shyu & Huang 2001, "A new look at IHS-like image fusion methods",
    Information Fusion 2(3):177-186.
    """
    w, a, b = _weighted_intensity_fit("ihs", ms_lr, pan_lr, options, match_default=True)
    return {"w": w, "c": 0.0, "a": a, "b": b, "g": _vec([1.0] * N_BANDS)}


def _gs_state(x: torch.Tensor, p: torch.Tensor, w: torch.Tensor, c: float) -> State:
    """CS state with GS injection gains ``g_k = cov(MS_k, I) / var(I)`` and PAN matched to ``I``."""
    intensity = x @ w + c
    a, b = _match(p, intensity)
    g = [_regress_gain(x[:, k], intensity) for k in range(N_BANDS)]
    return {"w": w, "c": c, "a": a, "b": b, "g": _vec(g)}


def gs_fit(ms_lr: torch.Tensor, pan_lr: torch.Tensor, sensor: Sensor, **options: Any) -> State:
    """Gram-Schmidt spectral sharpening, mode 1 (synthetic PAN = mean of the MS bands).

    Written in its CS form (Vivone 2015 / toolbox ``GS.m``): ``I = mean_k MS_k``,
    ``F_k = MS_k + g_k (P' - I)`` with ``g_k = cov(MS_k, I) / var(I)`` and ``P'`` = PAN
    moment-matched to ``I``. No options.

    Shapes and units: ``ms_lr`` (4,h,w), ``pan_lr`` (1,h,w); tiles ``ms_up`` (B,4,H,W), ``pan`` (B,1,H,W);
    all in unit range (DN / scale), bands R, G, B, NIR (see :class:`ClassicalMethod`).

    Reference: Laben & Brower 2000, US Patent 6,011,875 (Gram-Schmidt pan-sharpening).
    """
    _check_options("gs", options, ())
    x, p = _samples(ms_lr, pan_lr)
    return _gs_state(x, p, torch.full((N_BANDS,), 1.0 / N_BANDS, dtype=torch.float64), 0.0)


def gsa_fit(ms_lr: torch.Tensor, pan_lr: torch.Tensor, sensor: Sensor, **options: Any) -> State:
    """Adaptive Gram-Schmidt (GSA): intensity weights by regressing the PAN on the MS bands.

    ``pan_lr ~ sum_k w_k MS_k + c`` by least squares over the low-resolution scene (PAN averaged
    onto the MS grid; the toolbox ``GSA.m`` low-passes the PAN with a Gaussian instead), then GS
    injection as in :func:`gs_fit` with ``I = sum_k w_k MS_k + c``. No options.

    Shapes and units: ``ms_lr`` (4,h,w), ``pan_lr`` (1,h,w); tiles ``ms_up`` (B,4,H,W), ``pan`` (B,1,H,W);
    all in unit range (DN / scale), bands R, G, B, NIR (see :class:`ClassicalMethod`).

    Reference: Aiazzi, Baronti & Selva 2007, "Improving component substitution pansharpening
    through multivariate regression of MS+Pan data", IEEE TGRS 45(10):3230-3239.
    """
    _check_options("gsa", options, ())
    x, p = _samples(ms_lr, pan_lr)
    if p.numel() <= N_BANDS:
        w, c = torch.full((N_BANDS,), 1.0 / N_BANDS, dtype=torch.float64), 0.0
    else:
        design = torch.cat([x, torch.ones_like(p)[:, None]], 1).numpy()
        coef = np.linalg.lstsq(design, p.numpy(), rcond=None)[0]
        w, c = torch.from_numpy(coef[:N_BANDS].copy()), float(coef[N_BANDS])
    return _gs_state(x, p, w, c)


def pca_fit(ms_lr: torch.Tensor, pan_lr: torch.Tensor, sensor: Sensor, **options: Any) -> State:
    """Principal component substitution.

    The first principal component ``PC1 = v1 . (MS - mean)`` of the MS covariance (estimated on the
    low-resolution scene) is replaced by the PAN moment-matched to ``PC1``; the inverse transform
    is ``F_k = MS_k + v1_k (P' - PC1)`` (CS form, Vivone 2015). ``v1``'s sign is chosen so that
    PC1 correlates positively with the PAN. No options.

    Shapes and units: ``ms_lr`` (4,h,w), ``pan_lr`` (1,h,w); tiles ``ms_up`` (B,4,H,W), ``pan`` (B,1,H,W);
    all in unit range (DN / scale), bands R, G, B, NIR (see :class:`ClassicalMethod`).

    Reference: Chavez, Sides & Anderson 1991, "Comparison of three different methods to merge
    multiresolution and multispectral data: Landsat TM and SPOT panchromatic", PE&RS 57(3):295-303.
    """
    _check_options("pca", options, ())
    x, p = _samples(ms_lr, pan_lr)
    if p.numel() < 2:
        v1 = torch.full((N_BANDS,), 0.5, dtype=torch.float64)
        mu = torch.zeros(N_BANDS, dtype=torch.float64)
    else:
        mu = x.mean(0)
        xc = x - mu
        _, vecs = torch.linalg.eigh(xc.T @ xc / x.shape[0])
        v1 = vecs[:, -1].clone()  # eigh: ascending eigenvalues
        cov = float(((xc @ v1) * (p - p.mean())).mean())
        if cov < 0 or (cov == 0 and float(v1.sum()) < 0):
            v1 = -v1
    pc1 = (x - mu) @ v1
    a, b = _match(p, pc1)
    return {"w": v1, "c": -float(mu @ v1), "a": a, "b": b, "g": _vec(v1.tolist())}


# --- SFIM and MTF-GLP (multiresolution analysis) ------------------------------------------------

SFIM_MAX_BOX = 7


def _band_match(x: torch.Tensor, p: torch.Tensor, match: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-band PAN equalisation ``P'_k = a_k P + b_k`` (toolbox MRA methods), or identity."""
    if not match:
        return _vec([1.0] * N_BANDS), _vec([0.0] * N_BANDS)
    ab = [_match(p, x[:, k]) for k in range(N_BANDS)]
    return _vec([a for a, _ in ab]), _vec([b for _, b in ab])


def _modulate(ms_up: torch.Tensor, pan_eq: torch.Tensor, low_eq: torch.Tensor) -> torch.Tensor:
    """HPM: ``MS_k * P'_k / LP(P'_k)``; where the denominator is <= HPM_EPS keep ``MS_k``."""
    ok = low_eq > HPM_EPS
    ratio = torch.where(ok, pan_eq / torch.where(ok, low_eq, torch.ones_like(low_eq)), torch.ones_like(low_eq))
    return ms_up * ratio


def sfim_fit(ms_lr: torch.Tensor, pan_lr: torch.Tensor, sensor: Sensor, **options: Any) -> State:
    """Smoothing-Filter-based Intensity Modulation: ``F_k = MS_k * P'_k / box(P'_k)``.

    ``box`` = a ``box x box`` mean filter (replicate borders); ``P'_k`` = ``P`` or, with
    ``match=True``, PAN moment-matched to band k (toolbox ``SFIM`` / ``HPM``).

    Options:
        box: odd filter size, 3..7 (default: the toolbox's ``ratio + 1`` for an even ratio, i.e.
            5 for ratio 4, else ``ratio``).
        match: per-band moment matching of PAN first (toolbox style), default ``False`` = Liu's
            original ``MS * P / box(P)``. In a ratio the matching only moves the PAN's offset, by
            ``mean_k / a_k - mean(P)``; for bands whose contrast differs from the PAN's (NIR over
            water and vegetation) that pushes ``box(P'_k)`` towards 0 and the ratio blows up, so
            it is off unless asked for.

    Shapes and units: ``ms_lr`` (4,h,w), ``pan_lr`` (1,h,w); tiles ``ms_up`` (B,4,H,W), ``pan`` (B,1,H,W);
    all in unit range (DN / scale), bands R, G, B, NIR (see :class:`ClassicalMethod`).

    Reference: Liu 2000, "Smoothing Filter-based Intensity Modulation: a spectral preserve image
    fusion technique for improving spatial details", Int. J. Remote Sensing 21(18):3461-3472.
    """
    _check_options("sfim", options, ("box", "match"))
    ratio = get_sensor(sensor).ratio if sensor is not None else 4
    box = options.get("box", ratio + 1 if ratio % 2 == 0 else ratio)
    if isinstance(box, bool) or not isinstance(box, (int, np.integer)) or box % 2 == 0 \
            or not 3 <= box <= SFIM_MAX_BOX:
        raise InputError(f"option 'box' of method 'sfim' must be an odd integer in 3..{SFIM_MAX_BOX}, got {box!r}")
    x, p = _samples(ms_lr, pan_lr)
    a, b = _band_match(x, p, _check_bool("sfim", "match", options.get("match", False)))
    return {"box": int(box), "a": a, "b": b}


def sfim_apply(ms_up: torch.Tensor, pan: torch.Tensor, state: State) -> torch.Tensor:
    _check_tile(ms_up, pan)
    r = state["box"] // 2
    low = F.avg_pool2d(F.pad(pan, (r, r, r, r), mode="replicate"), state["box"], stride=1)
    a, b = state["a"], state["b"]
    return _modulate(ms_up, pan * a + b, low * a + b)


from .choices import MTF_GLP_GAINS  # noqa: E402  (re-exported)


def mtf_glp_fit(ms_lr: torch.Tensor, pan_lr: torch.Tensor, sensor: Sensor, **options: Any) -> State:
    """MTF-GLP: detail = PAN minus its MTF-matched low-pass, injected into each band.

    ``LP_k`` = :func:`pantiny.mtf.mtf_filter` with band k's MS gain at Nyquist
    (``sensor.model_mtf``, Vivone toolbox values), 41 taps, replicate borders. ``P'_k`` = PAN,
    or PAN moment-matched to band k (toolbox ``MTF_GLP*.m``) when ``match``. Difference from the
    toolbox: ``LP_k`` is *not* decimated and re-interpolated (the "GLP" reduce/expand step), so
    each output pixel depends on a fixed 41x41 neighbourhood and tiles are seamless whatever
    their offsets.

    Options:
        gains: ``"regression"`` (default; MTF-GLP-CBD: global regression gains
            ``g_k = cov(MS_k, P_L) / var(P_L)``, estimated at the MS scale with ``P_L`` = PAN averaged
            onto the MS grid, ``F_k = MS_k + g_k (P - LP_k(P))``; a global counterpart of the
            context-adaptive gains of Aiazzi et al. 2006), ``"hpm"`` (MTF-GLP-HPM,
            ``F_k = MS_k * P'_k / LP_k(P'_k)``) or ``"unit"`` (``F_k = MS_k + P'_k - LP_k(P'_k)``)
            -- the injection schemes compared by Vivone et al. 2015, Sec. III-B.
        match: per-band moment matching of PAN. Default ``True`` for ``"unit"`` (it sets the detail
            gain ``std(MS_k) / std(P_L)``), ``False`` for ``"hpm"`` (see :func:`sfim_fit`: in a ratio
            it only moves the offset and can make the denominator vanish); no effect with
            ``"regression"``.
        ratio: PAN/MS ratio the MTF gains refer to (default ``sensor.ratio``).

    Shapes and units: ``ms_lr`` (4,h,w), ``pan_lr`` (1,h,w); tiles ``ms_up`` (B,4,H,W), ``pan`` (B,1,H,W);
    all in unit range (DN / scale), bands R, G, B, NIR (see :class:`ClassicalMethod`).

    References: Aiazzi, Alparone, Baronti, Garzelli & Selva 2006, "MTF-tailored multiscale fusion of
    high-resolution MS and Pan imagery", PE&RS 72(5):591-596; Vivone et al. 2015, "A critical
    comparison among pansharpening algorithms", IEEE TGRS 53(5):2565-2586.
    """
    _check_options("mtf-glp", options, ("gains", "match", "ratio"))
    s = get_sensor(sensor) if sensor is not None else get_sensor("generic")
    gains = options.get("gains", "regression")
    if gains not in MTF_GLP_GAINS:
        raise InputError(f"option 'gains' of method 'mtf-glp' must be one of {MTF_GLP_GAINS}, got {gains!r}")
    ratio = options.get("ratio", s.ratio)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 2:
        raise InputError(f"option 'ratio' of method 'mtf-glp' must be an integer >= 2, got {ratio!r}")
    match = _check_bool("mtf-glp", "match", options.get("match", gains == "unit"))
    x, p = _samples(ms_lr, pan_lr)
    if gains == "regression":
        a, b = _vec([1.0] * N_BANDS), _vec([0.0] * N_BANDS)
        g = _vec([_regress_gain(x[:, k], p) for k in range(N_BANDS)])
    else:
        a, b = _band_match(x, p, match)
        g = _vec([1.0] * N_BANDS)
    return {"gains": gains, "mtf": tuple(float(v) for v in s.model_mtf), "ratio": int(ratio),
            "a": a, "b": b, "g": g}


def mtf_glp_apply(ms_up: torch.Tensor, pan: torch.Tensor, state: State) -> torch.Tensor:
    _check_tile(ms_up, pan)
    low = mtf_filter(pan.expand(-1, N_BANDS, -1, -1), state["mtf"], state["ratio"])
    a, b = state["a"], state["b"]
    if state["gains"] == "hpm":
        return _modulate(ms_up, pan * a + b, low * a + b)
    return ms_up + state["g"] * a * (pan - low)


# --- LMVM (local mean and variance matching) ----------------------------------------------------

LMVM_MAX_RADIUS = 7


def lmvm_fit(ms_lr: torch.Tensor, pan_lr: torch.Tensor, sensor: Sensor, **options: Any) -> State:
    """Local mean and variance matching: the PAN, standardised in a sliding window, takes each
    band's local mean and standard deviation:
    ``F_k = (P - mu_w(P)) * sigma_w(MS_k) / sigma_w(P) + mu_w(MS_k)``.

    ``mu_w`` / ``sigma_w`` = mean / standard deviation over the ``(2 radius + 1)^2`` window around
    each pixel (replicate borders), on the PAN grid (``MS_k`` upsampled). Where the PAN is locally
    constant (``sigma_w(P)`` <= 1e-6 in unit range) the upsampled MS is kept. Purely local: no
    scene-wide state, ``context = radius``.

    Options:
        radius: window radius in PAN pixels, 1..7 (default 3: a 7x7 window, Orfeo ToolBox's
            ``BundleToPerfectSensor -method lmvm`` default).

    Reference: de Béthune, Muller & Binard 1998, "Adaptive intensity matching filters: a new tool
    for multi-resolution data fusion", AGARD Conf. Proc. 595; the LMVM filter of Orfeo ToolBox.
    """
    _check_options("lmvm", options, ("radius",))
    r = options.get("radius", 3)
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= r <= LMVM_MAX_RADIUS:
        raise InputError(f"option 'radius' of method 'lmvm' must be an integer in 1..{LMVM_MAX_RADIUS}, got {r!r}")
    return {"radius": int(r)}


def _local_moments(x: torch.Tensor, r: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sliding-window mean and standard deviation (B,C,H,W), float64 (no cancellation in E[x^2] - E[x]^2)."""
    k = 2 * r + 1
    xp = F.pad(x.double(), (r, r, r, r), mode="replicate")
    mean = F.avg_pool2d(xp, k, stride=1)
    sq = F.avg_pool2d(xp * xp, k, stride=1)
    return mean, (sq - mean * mean).clamp_min(0.0).sqrt()


def lmvm_apply(ms_up: torch.Tensor, pan: torch.Tensor, state: State) -> torch.Tensor:
    _check_tile(ms_up, pan)
    r = state["radius"]
    mu_p, sd_p = _local_moments(pan, r)
    mu_m, sd_m = _local_moments(ms_up, r)
    ok = sd_p > HPM_EPS
    fused = (pan.double() - mu_p) * sd_m / torch.where(ok, sd_p, torch.ones_like(sd_p)) + mu_m
    return torch.where(ok, fused, ms_up.double()).float()


# --- registry -----------------------------------------------------------------------------------

_VIVONE = ("Vivone, Alparone, Chanussot, Dalla Mura, Garzelli, Licciardi, Restaino & Wald 2015, "
           "'A critical comparison among pansharpening algorithms', IEEE TGRS 53(5):2565-2586")

METHODS: Dict[str, ClassicalMethod] = {
    m.name: m
    for m in (
        ClassicalMethod("brovey", brovey_fit, brovey_apply, 0,
                        "Gillespie, Kahle & Walker 1987, 'Color enhancement of highly correlated images. II. "
                        "Channel ratio and chromaticity transformation techniques', Remote Sens. Environ. "
                        "22(3):343-365; weighted form and zero rule of GDAL's VRT pansharpening (WeightedBrovey)"),
        ClassicalMethod("ihs", ihs_fit, _cs_apply, 0,
                        "Tu, Su, Shyu & Huang 2001, 'A new look at IHS-like image fusion methods', "
                        "Information Fusion 2(3):177-186"),
        ClassicalMethod("gs", gs_fit, _cs_apply, 0,
                        "Laben & Brower 2000, 'Process for enhancing the spatial resolution of multispectral "
                        "imagery using pan-sharpening', US Patent 6,011,875 (GS mode 1); CS form of " + _VIVONE),
        ClassicalMethod("gsa", gsa_fit, _cs_apply, 0,
                        "Aiazzi, Baronti & Selva 2007, 'Improving component substitution pansharpening "
                        "through multivariate regression of MS+Pan data', IEEE TGRS 45(10):3230-3239"),
        ClassicalMethod("pca", pca_fit, _cs_apply, 0,
                        "Chavez, Sides & Anderson 1991, 'Comparison of three different methods to merge "
                        "multiresolution and multispectral data', PE&RS 57(3):295-303"),
        ClassicalMethod("sfim", sfim_fit, sfim_apply, SFIM_MAX_BOX // 2,
                        "Liu 2000, 'Smoothing Filter-based Intensity Modulation: a spectral preserve image "
                        "fusion technique for improving spatial details', Int. J. Remote Sens. 21(18):3461-3472"),
        ClassicalMethod("lmvm", lmvm_fit, lmvm_apply, LMVM_MAX_RADIUS,
                        "de Béthune, Muller & Binard 1998, 'Adaptive intensity matching filters: a new tool "
                        "for multi-resolution data fusion', AGARD Conf. Proc. 595; Orfeo ToolBox's LMVM filter"),
        ClassicalMethod("mtf-glp", mtf_glp_fit, mtf_glp_apply, (MTF_TAPS - 1) // 2,
                        "Aiazzi, Alparone, Baronti, Garzelli & Selva 2006, 'MTF-tailored multiscale fusion of "
                        "high-resolution MS and Pan imagery', PE&RS 72(5):591-596; injection gains as in "
                        + _VIVONE),
    )
}


__all__ = ["ClassicalMethod", "METHODS", "MTF_GLP_GAINS"]
