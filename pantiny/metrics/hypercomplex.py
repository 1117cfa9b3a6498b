"""Q2n: the hypercomplex (Q4 / Q8 / Q2^n) quality index (Alparone et al. 2004 for Q4; Garzelli &
Nencini, IEEE GRSL 2009, for Q2^n).

Follows the Vivone 2020 toolbox ``Quality_Indices/q2n.m`` + ``onions_quality.m`` +
``onion_mult.m`` / ``onion_mult2D.m`` + ``norm_blocco.m``:

1. the image is padded by mirror reflection (edge pixel repeated, numpy ``'symmetric'``) at the
   bottom/right so that ``(steps-1)*shift + block`` covers it, ``steps = ceil(N/shift)``;
2. bands are zero-padded to the next power of two (3 -> 4, 5..7 -> 8, ...), as the toolbox does;
3. on each ``block x block`` window (``shift`` apart) both images are normalised with the
   *reference* band's mean and (N-1) standard deviation (``x -> (x-mean)/std + 1``; std 0 -> eps;
   a reference band with mean 0 only shifts by +1, a toolbox quirk kept for equality);
4. the window's hypercomplex correlation ``q`` (Cayley-Dickson product of the reference and the
   conjugated fused image) times the mean-bias and contrast terms gives a 2^n-vector; its modulus
   is the window's Q2n. Q2n = mean over windows.

The toolbox casts both images to ``uint16`` first (round, clip to 0..65535); here that cast is the
``as_uint16`` option, which the full- and reduced-resolution metrics turn on when the reference
(MS / ground truth) is integer DN data, and leave off for float data (where it would destroy
[0, 1] reflectances). Windows are processed in one vectorised float64 pass; second moments are
taken about the mean (same value, less rounding) and flat windows are detected exactly.

Flat windows (the documented value, never NaN): a reference band that is constant in a window gets
std = eps as in ``norm_blocco.m`` (so any deviation of the fused band there is amplified to a
near-zero score); when every band of both images is constant in a window, its Q2n is the
mean-bias term only, 1 when the two constant vectors are equal.
"""

from __future__ import annotations

import math
from typing import Tuple, Union

import numpy as np
import torch

from ..errors import InputError

ArrayLike = Union[np.ndarray, torch.Tensor]
_EPS = float(np.finfo(np.float64).eps)


def _conj(x: torch.Tensor) -> torch.Tensor:
    """Hypercomplex conjugate along dim 1: keep component 0, negate the others."""
    return torch.cat([x[:, :1], -x[:, 1:]], dim=1)


def onion_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cayley-Dickson product of 2^n-ions stored along dim 1 (toolbox ``onion_mult2D``)."""
    n = a.shape[1]
    if n == 1:
        return a * b
    h = n // 2
    a1, a2 = a[:, :h], _conj(a[:, h:])
    b1, b2 = b[:, :h], _conj(b[:, h:])
    if n == 2:
        return torch.cat([a1 * b1 - b2 * a2, a1 * b2 + b1 * a2], dim=1)
    return torch.cat([onion_mul(a1, b1) - onion_mul(b2, _conj(a2)),
                      onion_mul(_conj(a1), b2) + onion_mul(b1, a2)], dim=1)


def _window_q(ref: torch.Tensor, fus: torch.Tensor) -> torch.Tensor:
    """Q2n vectors of K windows: ref, fus (K, N, P) float64, N a power of 2 -> (K, N).

    Same quantities as ``onions_quality.m``, with second moments taken about the mean (bilinearity
    of the product) rather than as E[x^2] - E[x]^2, and constant bands detected exactly (max == min),
    so that flat windows give the toolbox's exact-arithmetic value instead of rounding noise.
    """
    p = ref.shape[-1]
    ref_const = ref.amax(-1, keepdim=True) == ref.amin(-1, keepdim=True)
    mean = torch.where(ref_const, ref[..., :1], ref.mean(-1, keepdim=True))
    std = ref.std(-1, keepdim=True)  # N-1, as MATLAB std2
    std = torch.where(ref_const | (std == 0), torch.full_like(std, _EPS), std)
    ref_n = torch.where(ref_const, torch.ones_like(ref), (ref - mean) / std + 1)
    fus_n = torch.where(mean == 0, fus - mean + 1, (fus - mean) / std + 1)
    fus_n = _conj(fus_n)
    m1, m2 = ref_n.mean(-1), fus_n.mean(-1)                  # (K, N)
    n1, n2 = (m1 * m1).sum(1), (m2 * m2).sum(1)              # |m1|^2, |m2|^2
    unb = p / (p - 1.0)
    d1, d2 = ref_n - m1[..., None], fus_n - m2[..., None]
    var_sum = unb * ((d1 * d1).sum(1).mean(-1) + (d2 * d2).sum(1).mean(-1))
    mean_bias = 2 * torch.sqrt(n1 * n2) / (n1 + n2)
    qv = unb * onion_mul(d1, d2).mean(-1)                    # = E[ref*fus] - E[ref]*E[fus], unbiased
    fus_const = fus.amax(-1) == fus.amin(-1)
    flat_win = (ref_const[..., 0].all(1) & fus_const.all(1)) | (var_sum == 0)
    safe = torch.where(flat_win, torch.ones_like(var_sum), var_sum)
    q = qv * (mean_bias * 2 / safe)[:, None]
    flat = torch.zeros_like(q)
    flat[:, -1] = mean_bias  # toolbox: zero joint variance -> only the last component, = mean bias
    return torch.where(flat_win[:, None], flat, q)


def to_uint16_values(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``uint16(x)`` as float64: rounded half away from zero, clipped to [0, 65535]."""
    return torch.floor(x.clamp(0.0, 65535.0) + 0.5)


def pad_bands_pow2(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad dim 1 (bands) of (K, C, ...) up to the next power of two."""
    c = x.shape[1]
    n = 1 << max(0, math.ceil(math.log2(c)))
    if n == c:
        return x
    return torch.cat([x, x.new_zeros((x.shape[0], n - c, *x.shape[2:]))], dim=1)


def q2n_windows(ref: torch.Tensor, fus: torch.Tensor, as_uint16: bool = False) -> torch.Tensor:
    """Q2n of K windows: (K, C, P) float64 pairs -> (K,) moduli. Bands padded to a power of 2.

    ``as_uint16``: first round and clip both as the toolbox's ``uint16`` cast (for DN data).
    """
    if as_uint16:
        ref, fus = to_uint16_values(ref), to_uint16_values(fus)
    q = _window_q(pad_bands_pow2(ref), pad_bands_pow2(fus))
    return torch.sqrt((q * q).sum(1))


def _mirror_pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Append ``ph`` rows / ``pw`` columns mirrored with the edge repeated (toolbox q2n.m)."""
    if ph:
        x = torch.cat([x, x[..., x.shape[-2] - ph:, :].flip(-2)], dim=-2)
    if pw:
        x = torch.cat([x, x[..., :, x.shape[-1] - pw:].flip(-1)], dim=-1)
    return x


def q2n_index(ref: ArrayLike, fused: ArrayLike, block: int = 32, shift: int = 32,
              as_uint16: bool = False) -> Tuple[float, torch.Tensor]:
    """Q2n index of ``fused`` against ``ref``, both (C,H,W) on the same grid, in the same units.

    Argument order and results as the toolbox's ``q2n(I_GT, I_F, Q_blocks_size, Q_shift)``: returns
    ``(value, map)`` with ``map`` (steps_y, steps_x) float64 of per-window Q2n moduli (unit-less,
    in [0, 1] for sane data). ``block`` is the window size in pixels, ``shift`` the step
    (``shift == block``: distinct blocks, the toolbox default). 1 for identical images.
    ``as_uint16`` rounds and clips both images as the toolbox's ``uint16`` cast (meant for DN data;
    leave False for reflectance-like floats, which the cast would destroy).

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import q2n_index
        >>> ref = np.random.default_rng(0).uniform(0, 1, (4, 64, 64))  # (C,H,W)
        >>> value, qmap = q2n_index(ref, ref)
        >>> value, tuple(qmap.shape)  # identical images, 2 x 2 blocks of 32
        (1.0, (2, 2))
    """
    r = torch.as_tensor(np.asarray(ref) if isinstance(ref, np.ndarray) else ref).to(torch.float64)
    f = torch.as_tensor(np.asarray(fused) if isinstance(fused, np.ndarray) else fused).to(torch.float64)
    if r.shape != f.shape or r.ndim != 3:
        raise InputError(f"q2n needs two (C,H,W) images of the same shape, got {tuple(r.shape)} and {tuple(f.shape)}")
    if block < 2 or shift < 1:
        raise InputError(f"q2n needs block >= 2 and shift >= 1, got block={block}, shift={shift}")
    h, w = r.shape[-2:]
    sy, sx = math.ceil(h / shift), math.ceil(w / shift)
    ph, pw = max(0, (sy - 1) * shift + block - h), max(0, (sx - 1) * shift + block - w)
    if ph > h or pw > w:
        raise InputError(f"image {h}x{w} is too small for {block}x{block} Q2n windows")
    if not (torch.isfinite(r).all() and torch.isfinite(f).all()):
        raise InputError("q2n inputs contain NaN or infinite values")
    r, f = _mirror_pad(r, ph, pw), _mirror_pad(f, ph, pw)
    # (C, sy, sx, block, block) windows -> (K, C, block*block)
    rw = r.unfold(1, block, shift).unfold(2, block, shift)[:, :sy, :sx]
    fw = f.unfold(1, block, shift).unfold(2, block, shift)[:, :sy, :sx]
    c = r.shape[0]
    rw = rw.permute(1, 2, 0, 3, 4).reshape(sy * sx, c, block * block)
    fw = fw.permute(1, 2, 0, 3, 4).reshape(sy * sx, c, block * block)
    qmap = q2n_windows(rw, fw, as_uint16).reshape(sy, sx)
    return float(qmap.mean()), qmap
