"""Reduced-resolution (reference-based) metrics: PSNR, SSIM, SAM, ERGAS, Q2n, Q, CC, SCC.

Every function takes ``fused`` and ``reference`` (the ground truth) as (C,H,W) numpy arrays, torch
tensors or GeoTIFF paths ((H,W) is read as one band), on the same grid and in the same units, and
computes in float64. ``crop`` removes a border before scoring: an int ``c`` drops ``c`` pixels on
every side; a pair ``(before, after)`` drops ``before`` rows/columns at the top/left and ``after``
at the bottom/right; ``crop="toolbox"`` is the toolbox's cut: ``indexes_evaluation.m`` with
``dim_cut = 21`` keeps ``I(dim_cut:end-dim_cut, ...)`` in 1-based MATLAB indexing, i.e. drops 20
rows/columns before and 21 after: ``crop=(20, 21)`` (:data:`TOOLBOX_CROP`).

Definitions (Vivone 2020 toolbox ``Quality_Indices`` unless said otherwise):

* PSNR (dB) = 10 log10(R^2 / MSE), MSE over all bands and pixels, R = ``data_range`` (the peak
  value, e.g. 2047 for 11-bit DN or 1.0 for [0, 1] data); ``inf`` for identical images.
* SSIM = mean over bands of Wang et al. (IEEE TIP 2004) SSIM: Gaussian window 11x11, sigma 1.5,
  K1 = 0.01, K2 = 0.03, C_k = (K_k R)^2, mean over the 'valid' window positions (Wang's
  ``ssim_index.m``; skimage/kornia/PanTiny pad the borders instead, which changes the 5-pixel rim).
* SAM = mean over pixels of ``arccos(<x,y> / (|x||y|))`` (cosine clamped to [-1, 1]); pixels where
  either vector is zero are left out (toolbox ``SAM.m``; 0 if no pixel is left). **Radians** by
  default, degrees with ``degrees=True`` (the toolbox reports degrees, PanTiny radians).
* ERGAS = 100/ratio * sqrt(mean_c MSE_c / mean(ref_c)^2) (toolbox ``ERGAS.m``, ratio 4 = PAN/MS
  resolution ratio); unit-less, 0 for identical images.
* Q2n = hypercomplex index on distinct 32x32 blocks (Q4 for 4 bands, Q8 for 8; toolbox ``q2n.m``,
  :mod:`pantiny.metrics.hypercomplex`), with the toolbox's uint16 cast when the reference is
  integer DN data.
* Q = mean over bands of UIQI on a sliding 32x32 window (toolbox ``Q.m`` -> ``img_qi.m``).
* CC = mean over bands of the Pearson correlation (PanTiny / Pan-Mamba ``metricsutil.py``); a band
  pair with zero variance counts 1 if identical, else 0.
* SCC = spatial correlation coefficient, toolbox ``SCC.m``: per band, the 1-pixel image border is
  cut, the Sobel gradient magnitude ``sqrt(gx^2 + gy^2)`` is taken with ``imfilter``'s zero
  padding, and SCC = sum(G_F * G_R) / sqrt(sum G_F^2 * sum G_R^2) over all bands and pixels
  together. NaN (with a ``DegenerateInputWarning``) when an image has no gradient at all.

``reduced_resolution(..., clip_bits=L)`` is the toolbox's ``th_values`` option: the fused image is
clipped to [0, 2^L] before scoring.
"""

from __future__ import annotations

import math
import warnings
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..normalize import resolve_scale
from ..sensors import get_sensor
from .full_resolution import DegenerateInputWarning
from .hypercomplex import q2n_index
from .sources import Input, open_source
from .uiqi import q_sliding

Crop = Union[int, Tuple[int, int], str]
#: The toolbox's reduced-resolution border cut (``dim_cut = 21``): 20 pixels before, 21 after.
TOOLBOX_CROP: Tuple[int, int] = (20, 21)


def _load(x: Input, name: str) -> Tuple[torch.Tensor, np.dtype]:
    """(C,H,W) float64 tensor and the input's dtype (paths read whole; (H,W) -> (1,H,W))."""
    src = open_source(x, name)
    return src.rows(0, src.shape[1]), src.dtype


def _pair(fused: Input, reference: Input, crop: Crop = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    f, _ = _load(fused, "fused image")
    g, _ = _load(reference, "reference")
    if f.shape != g.shape:
        raise InputError(f"fused and reference must both be (C,H,W) of the same shape, "
                         f"got {tuple(f.shape)} and {tuple(g.shape)}")
    if isinstance(crop, str):
        if crop != "toolbox":
            raise InputError(f"crop must be an int, a (before, after) pair or 'toolbox', got {crop!r}")
        crop = TOOLBOX_CROP
    if isinstance(crop, (int, np.integer)) and not isinstance(crop, bool):
        before, after = int(crop), int(crop)
    elif isinstance(crop, (tuple, list)) and len(crop) == 2:
        before, after = int(crop[0]), int(crop[1])
    else:
        raise InputError(f"crop must be an int, a (before, after) pair or 'toolbox', got {crop!r}")
    if before < 0 or after < 0 or before + after >= min(f.shape[-2:]):
        raise InputError(f"crop {crop} is negative or leaves nothing of a {f.shape[-2]}x{f.shape[-1]} image")
    if before or after:
        f = f[..., before: f.shape[-2] - after, before: f.shape[-1] - after]
        g = g[..., before: g.shape[-2] - after, before: g.shape[-1] - after]
    return f, g


def _positive(name: str, v: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not np.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be a positive number, got {v!r}")
    return float(v)


def psnr(fused: Input, reference: Input, data_range: float, crop: Crop = 0) -> float:
    """PSNR in dB over all bands and pixels, peak ``data_range``; ``inf`` for identical images.

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import psnr
        >>> ref = np.full((4, 32, 32), 1000.0)  # (C,H,W) 11-bit DN
        >>> round(psnr(ref + 10, ref, data_range=2047), 2)  # RMSE 10 DN
        46.22
        >>> psnr(ref, ref, data_range=2047)
        inf
    """
    r = _positive("data_range", data_range)
    f, g = _pair(fused, reference, crop)
    mse = float(((f - g) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(r * r / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(fused: Input, reference: Input, data_range: float, crop: Crop = 0) -> float:
    """Mean SSIM over bands (Wang 2004): Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, 'valid' positions.

    ``data_range`` is the peak value R of the data (C1 = (0.01 R)^2, C2 = (0.03 R)^2). Unit-less,
    1 for identical images.

    Examples:
        >>> from pantiny.metrics import ssim
        >>> import numpy as np
        >>> ref = np.full((4, 32, 32), 100.0)  # (C,H,W) reference: two flat halves
        >>> ref[:, :, 16:] = 200.0
        >>> ssim(ref, ref, data_range=2047)
        1.0
        >>> round(ssim(ref + 10, ref, data_range=2047), 4)
        0.9973
    """
    r = _positive("data_range", data_range)
    f, g = _pair(fused, reference, crop)
    if min(f.shape[-2:]) < 11:
        raise InputError(f"SSIM needs images of at least 11x11 pixels, got {f.shape[-2]}x{f.shape[-1]}")
    w = _gaussian().view(1, 1, 11, 11)
    x, y = f[:, None], g[:, None]  # bands as batch
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mu_x ** 2
    syy = F.conv2d(y * y, w) - mu_y ** 2
    sxy = F.conv2d(x * y, w) - mu_x * mu_y
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return float(m.mean())


def sam(fused: Input, reference: Input, degrees: bool = False, crop: Crop = 0) -> float:
    """Mean spectral angle, **radians** unless ``degrees=True``. Zero-norm pixels are left out.

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import sam
        >>> a, b = np.zeros((2, 4, 4)), np.zeros((2, 4, 4))
        >>> a[0], b[1] = 1.0, 1.0  # orthogonal spectra at every pixel
        >>> round(sam(a, b, degrees=True), 6), round(sam(a, b), 6)
        (90.0, 1.570796)
        >>> sam(3 * a, a)  # a gain does not change the angle
        0.0
    """
    f, g = _pair(fused, reference, crop)
    dot = (f * g).sum(0)
    nrm = torch.sqrt((f * f).sum(0) * (g * g).sum(0))
    ok = nrm > 0
    if not bool(ok.any()):
        return 0.0
    ang = torch.arccos((dot[ok] / nrm[ok]).clamp(-1.0, 1.0)).mean()
    return float(torch.rad2deg(ang) if degrees else ang)


def ergas(fused: Input, reference: Input, ratio: float = 4, crop: Crop = 0) -> float:
    """ERGAS = 100/ratio * sqrt(mean_c MSE_c / mean(ref_c)^2); 0 for identical images.

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import ergas
        >>> ref = np.full((4, 32, 32), 100.0)
        >>> round(ergas(ref + 10, ref), 6)  # 100/4 * sqrt(10^2 / 100^2)
        2.5
        >>> ergas(ref, ref)
        0.0
    """
    ratio = _positive("ratio", ratio)
    f, g = _pair(fused, reference, crop)
    mse = ((f - g) ** 2).mean((-2, -1))
    mu2 = g.mean((-2, -1)) ** 2
    if bool((mu2 == 0).any()):
        bad = [int(i) for i in torch.nonzero(mu2 == 0).flatten()]
        raise InputError(f"ERGAS is undefined for reference bands with zero mean (bands {bad})")
    return float(100.0 / ratio * torch.sqrt((mse / mu2).mean()))


def cc(fused: Input, reference: Input, crop: Crop = 0) -> float:
    """Mean over bands of the Pearson correlation (1 for a constant, identical band pair).

    Examples:
        >>> from pantiny.metrics import cc
        >>> import numpy as np
        >>> ref = np.full((4, 32, 32), 100.0)  # (C,H,W) reference: two flat halves
        >>> ref[:, :, 16:] = 200.0
        >>> cc(2 * ref + 5, ref)  # invariant to gain and offset
        1.0
    """
    f, g = _pair(fused, reference, crop)
    fc = f - f.mean((-2, -1), keepdim=True)
    gc = g - g.mean((-2, -1), keepdim=True)
    num = (fc * gc).sum((-2, -1))
    den = torch.sqrt((fc * fc).sum((-2, -1)) * (gc * gc).sum((-2, -1)))
    same = torch.tensor([bool(torch.equal(a, b)) for a, b in zip(f, g)])
    r = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)),
                    torch.where(same, torch.ones_like(den), torch.zeros_like(den)))
    return float(r.mean())


_SOBEL = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]], dtype=torch.float64)


def _sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """SCC.m's gradient image: (C,H,W) -> (C,H-2,W-2), 1-pixel border cut, then MATLAB
    ``imfilter(., fspecial('sobel'))`` and its transpose (correlation, zero padding, same size)."""
    inner = x[:, 1:-1, 1:-1][:, None]
    gy = F.conv2d(inner, _SOBEL.view(1, 1, 3, 3), padding=1)  # conv2d is a correlation, as imfilter
    gx = F.conv2d(inner, _SOBEL.t().reshape(1, 1, 3, 3), padding=1)
    return torch.sqrt(gx * gx + gy * gy)[:, 0]


def scc(fused: Input, reference: Input, crop: Crop = 0) -> float:
    """Spatial correlation coefficient (toolbox ``SCC.m``; Vivone et al. 2015/2020): correlation of
    the Sobel gradient magnitudes over all bands and pixels (not centred). Unit-less, 1 when the
    gradient magnitudes are proportional; NaN with a ``DegenerateInputWarning`` when either image
    has no gradient (0/0 in the toolbox). Images of at least 3x3 pixels (after ``crop``).

    Examples:
        >>> from pantiny.metrics import scc
        >>> import numpy as np
        >>> ref = np.full((4, 32, 32), 100.0)  # (C,H,W) reference: two flat halves
        >>> ref[:, :, 16:] = 200.0
        >>> round(scc(2 * ref, ref), 12)  # proportional gradient magnitudes
        1.0
    """
    f, g = _pair(fused, reference, crop)
    if min(f.shape[-2:]) < 3:
        raise InputError(f"SCC needs images of at least 3x3 pixels, got {f.shape[-2]}x{f.shape[-1]}")
    a, b = _sobel_magnitude(f), _sobel_magnitude(g)
    na, nb = float((a * a).sum()), float((b * b).sum())
    if na == 0 or nb == 0:
        which = "fused image" if na == 0 else "reference"
        warnings.warn(f"SCC is undefined: the {which} has no gradient (flat after the 1-pixel border cut); "
                      "returning NaN", DegenerateInputWarning, stacklevel=2)
        return math.nan
    return float((a * b).sum()) / math.sqrt(na) / math.sqrt(nb)


def q2n(fused: Input, reference: Input, block: int = 32, shift: Optional[int] = None, crop: Crop = 0,
        as_uint16: Optional[bool] = None) -> float:
    """Q2n (Q4 / Q8 / Q2^n) of ``fused`` against ``reference`` on ``block`` windows ``shift`` apart
    (default ``shift = block``: distinct blocks, toolbox ``q2n(I_GT, I_F, 32, 32)``).

    ``as_uint16`` (default: True iff the reference has an integer dtype) applies the toolbox's
    ``uint16`` cast (round, clip to 0..65535) to both images first.

    Examples:
        >>> from pantiny.metrics import q2n
        >>> import numpy as np
        >>> ref = np.full((4, 32, 32), 100.0)  # (C,H,W) reference: two flat halves
        >>> ref[:, :, 16:] = 200.0
        >>> q2n(ref, ref)  # Q4 of 4 bands, 32 x 32 blocks
        1.0
        >>> round(q2n(ref + 10, ref), 4)
        0.9836
    """
    if as_uint16 is None:
        as_uint16 = open_source(reference, "reference").dtype.kind in "ui"
    f, g = _pair(fused, reference, crop)
    return q2n_index(g, f, block, block if shift is None else shift, as_uint16)[0]


def q_avg(fused: Input, reference: Input, block: int = 32, crop: Crop = 0) -> float:
    """Toolbox ``Q.m``: mean over bands of the sliding-window (``block``) UIQI of fused vs reference.

    Examples:
        >>> from pantiny.metrics import q_avg
        >>> import numpy as np
        >>> ref = np.full((4, 32, 32), 100.0)  # (C,H,W) reference: two flat halves
        >>> ref[:, :, 16:] = 200.0
        >>> q_avg(ref, ref)
        1.0
    """
    f, g = _pair(fused, reference, crop)
    return float(q_sliding(g, f, block).mean((-2, -1)).mean())


def reduced_resolution(fused: Input, reference: Input, *, ratio: int = 4, data_range: Optional[float] = None,
                       crop: Crop = 0, block: int = 32, sensor: Optional[str] = None,
                       scale: Optional[float] = None, clip_bits: Optional[int] = None) -> Dict[str, float]:
    """All RR metrics at once: ``psnr`` (dB), ``ssim``, ``sam`` (radians), ``sam_deg`` (degrees),
    ``ergas``, ``q2n``, ``q``, ``cc``, ``scc``.

    ``data_range`` defaults to the value scale of the reference (``resolve_scale``: ``scale``, else
    the sensor's maximum, else from the reference's dtype: 255 for uint8, 2047 for (u)int16 i.e.
    11-bit, 1.0 for floats). ``crop="toolbox"`` = the toolbox's (20, 21) cut; ``clip_bits=L`` = the
    toolbox's ``th_values`` option (fused image clipped to [0, 2^L] first, e.g. L = 11).

    Examples:
        >>> from pantiny.metrics import reduced_resolution
        >>> import numpy as np
        >>> ref = np.full((4, 32, 32), 100.0)  # (C,H,W) reference: two flat halves
        >>> ref[:, :, 16:] = 200.0
        >>> r = reduced_resolution(ref + 10, ref, sensor="wv3")  # data_range 2047 from the sensor
        >>> sorted(r)
        ['cc', 'ergas', 'psnr', 'q', 'q2n', 'sam', 'sam_deg', 'scc', 'ssim']
        >>> round(r["psnr"], 2), round(r["ergas"], 4), r["sam"]
        (46.22, 1.6667, 0.0)
    """
    g, dt = _load(reference, "reference")
    f, _ = _load(fused, "fused image")
    if data_range is None:
        data_range = resolve_scale(dt, get_sensor(sensor) if sensor is not None else None, scale)
    f, g = _pair(f, g, crop)
    if clip_bits is not None:
        if isinstance(clip_bits, bool) or not isinstance(clip_bits, (int, np.integer)) or clip_bits < 1:
            raise InputError(f"clip_bits must be an integer >= 1, got {clip_bits!r}")
        f = f.clamp(0.0, float(2 ** int(clip_bits)))
    return {
        "psnr": psnr(f, g, data_range), "ssim": ssim(f, g, data_range),
        "sam": sam(f, g), "sam_deg": sam(f, g, degrees=True), "ergas": ergas(f, g, ratio),
        "q2n": q2n(f, g, block, as_uint16=np.dtype(dt).kind in "ui"), "q": q_avg(f, g, block), "cc": cc(f, g),
        "scc": scc(f, g),
    }
