"""Universal image quality index Q (UIQI, Wang & Bovik 2002) on distinct blocks or a sliding window.

    Q(x, y) = [2 mu_x mu_y / (mu_x^2 + mu_y^2)] * [2 sigma_xy / (sigma_x^2 + sigma_y^2)]

(= 4 sigma_xy mu_x mu_y / ((sigma_x^2 + sigma_y^2)(mu_x^2 + mu_y^2)), the toolbox ``uqi``), computed
per window and averaged over windows. Statistics are population moments in float64 (the toolbox's
N-1 normalisation cancels in the ratio).

Degenerate windows (the toolbox's ``uqi`` returns NaN there; we follow Wang's ``img_qi.m`` and
wasaCheney ``_qindex``, so Q is never NaN):

* "zero variance" means ``sigma_x^2 + sigma_y^2 <= 1e-12 * (mu_x^2 + mu_y^2)`` (exactly 0 for
  integer data; the tolerance absorbs float rounding of a constant window);
* zero variance, both means 0            -> Q = 1 (two all-zero windows are identical);
* zero variance, some mean != 0          -> Q = 2 mu_x mu_y / (mu_x^2 + mu_y^2) (luminance term only:
  1 for two equal constants, < 1 otherwise, e.g. 0.8 for constants 1 and 2);
* non-zero variance, both means 0        -> Q = 2 sigma_xy / (sigma_x^2 + sigma_y^2);
* otherwise the formula above. A constant window against a textured one gives 0.

Edge handling: :func:`q_blocks` scores only complete ``S x S`` blocks starting at the top-left
corner; the last ``H mod S`` rows and ``W mod S`` columns are ignored (the toolbox refuses such
images; PanCollection's strided convolution drops them the same way). :func:`q_sliding` keeps the
'valid' window positions only, as ``img_qi.m`` / wasaCheney.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import InputError

ArrayLike = Union[np.ndarray, torch.Tensor]

#: Relative tolerance under which the summed variance of a window counts as zero.
ZERO_VARIANCE_RTOL = 1e-12


def _as64(x: ArrayLike) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if isinstance(x, np.ndarray) else x
    return t.to(torch.float64)


def q_from_moments(mx: torch.Tensor, my: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor,
                   cxy: torch.Tensor) -> torch.Tensor:
    """Q from window means, variances and covariance (any broadcastable shapes), with the
    degenerate-window rules of the module docstring. Never NaN."""
    den_m = mx * mx + my * my
    den_v = vx + vy
    zero_v = den_v <= ZERO_VARIANCE_RTOL * den_m
    zero_m = den_m == 0
    safe_m = torch.where(zero_m, torch.ones_like(den_m), den_m)
    safe_v = torch.where(zero_v, torch.ones_like(den_v), den_v)
    lum = torch.where(zero_m, torch.ones_like(den_m), 2.0 * mx * my / safe_m)
    con = torch.where(zero_v, torch.ones_like(den_v), 2.0 * cxy / safe_v)
    return lum * con


def _check_pair(x: torch.Tensor, y: torch.Tensor, block: int) -> None:
    if x.shape != y.shape:
        raise InputError(f"Q needs two images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if block < 2:
        raise InputError(f"block size must be >= 2, got {block}")
    if x.shape[-2] < block or x.shape[-1] < block:
        raise InputError(f"image {tuple(x.shape[-2:])} is smaller than one {block}x{block} block")


def block_view(x: torch.Tensor, block: int) -> torch.Tensor:
    """(..., H, W) -> (..., H//S, W//S, S*S): the complete distinct blocks, edge remainder dropped."""
    nby, nbx = x.shape[-2] // block, x.shape[-1] // block
    x = x[..., : nby * block, : nbx * block]
    x = x.reshape(*x.shape[:-2], nby, block, nbx, block).transpose(-3, -2)
    return x.reshape(*x.shape[:-2], block * block)


def q_blocks(x: ArrayLike, y: ArrayLike, block: int = 32) -> torch.Tensor:
    """Q map on distinct ``block x block`` blocks: (..., H, W) x2 -> (..., H//S, W//S) float64.

    This is the toolbox's ``blockproc(band, [S S], uqi)`` (D_lambda.m / D_s.m), edge blocks
    dropped (see module docstring).

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import q_blocks
        >>> x = np.tile(np.arange(64.0), (64, 1))
        >>> tuple(q_blocks(x, x).shape)  # 2 x 2 distinct 32 x 32 blocks
        (2, 2)
    """
    x, y = _as64(x), _as64(y)
    _check_pair(x, y, block)
    bx, by = block_view(x, block), block_view(y, block)
    mx, my = bx.mean(-1), by.mean(-1)
    dx, dy = bx - mx[..., None], by - my[..., None]  # centred: exact zero variance for constant blocks
    return q_from_moments(mx, my, (dx * dx).mean(-1), (dy * dy).mean(-1), (dx * dy).mean(-1))


def block_moments(x: torch.Tensor, block: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-block statistics of (C, H, W) float64: means (C, nb), centred values (C, nb, S*S) and
    population variances (C, nb), over the complete distinct blocks (row-major block order)."""
    bx = block_view(x, block).reshape(x.shape[0], -1, block * block)
    m = bx.mean(-1)
    d = bx - m[..., None]
    return m, d, (d * d).mean(-1)


def q_block_sums(x: torch.Tensor, pairs: Sequence[Tuple[int, int]], block: int,
                 y: Optional[torch.Tensor] = None, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sums over blocks of Q for many band pairs at once, each band's moments computed once.

    ``x`` (C, H, W) float64. Without ``y``: Q(x_i, x_j) for each ``(i, j)`` in ``pairs``. With ``y``
    (1, H, W): Q(x_b, y) for every band b (``pairs`` ignored). ``valid`` (nb,) bool, blocks in
    row-major order: only those blocks are summed (nodata masking). Returns float64 sums, one per
    pair / band; divide by the (valid) block count for the mean.
    """
    if valid is not None:
        if not bool(valid.any()):
            return torch.zeros(x.shape[0] if y is not None else len(pairs), dtype=torch.float64)
        keep = valid.to(torch.float64)
    m, d, v = block_moments(x, block)
    if y is not None:
        my, dy, vy = block_moments(y, block)
        q = q_from_moments(m, my, v, vy, (d * dy).mean(-1))
        return (q * keep).sum(-1) if valid is not None else q.sum(-1)
    out = torch.zeros(len(pairs), dtype=torch.float64)
    for k, (i, j) in enumerate(pairs):
        q = q_from_moments(m[i], m[j], v[i], v[j], (d[i] * d[j]).mean(-1))
        out[k] = (q * keep).sum() if valid is not None else q.sum()
    return out


def box_sums(x: torch.Tensor, block: int) -> torch.Tensor:
    """Sums over every ``block x block`` window ('valid'): (..., H, W) -> (..., H-S+1, W-S+1).

    Integral image in float64 (exact for integer data), O(1) per window.
    """
    c = torch.nn.functional.pad(x.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    s = block
    return c[..., s:, s:] - c[..., :-s, s:] - c[..., s:, :-s] + c[..., :-s, :-s]


def sliding_moments(x: torch.Tensor, y: torch.Tensor, block: int) -> Tuple[torch.Tensor, ...]:
    """Window means, variances and covariance for every 'valid' sliding window (float64)."""
    n = float(block * block)
    # Shift by a whole-number offset first: variances are shift-invariant, the integral images stay
    # small (less cancellation), and integer data stay exact.
    ox, oy = torch.round(x.mean()), torch.round(y.mean())
    x, y = x - ox, y - oy
    mx, my = box_sums(x, block) / n, box_sums(y, block) / n
    vx = (box_sums(x * x, block) / n - mx * mx).clamp_min(0)
    vy = (box_sums(y * y, block) / n - my * my).clamp_min(0)
    cxy = box_sums(x * y, block) / n - mx * my
    return mx + ox, my + oy, vx, vy, cxy


def q_sliding_sums(x: torch.Tensor, pairs: Sequence[Tuple[int, int]], block: int,
                   valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sums over all 'valid' sliding windows of Q(x_i, x_j) for each pair, x (K, H, W) float64.

    Same values as :func:`q_sliding` per pair; each band's window means and variances are
    computed once (one integral image per band and one per pair). ``valid`` (H-S+1, W-S+1) bool:
    only those window positions are summed (nodata masking).
    """
    n = float(block * block)
    o = torch.round(x.mean((-2, -1), keepdim=True))
    xs = x - o
    m = box_sums(xs, block) / n
    v = (box_sums(xs * xs, block) / n - m * m).clamp_min(0)
    out = torch.zeros(len(pairs), dtype=torch.float64)
    for k, (i, j) in enumerate(pairs):
        c = box_sums(xs[i] * xs[j], block) / n - m[i] * m[j]
        q = q_from_moments(m[i] + o[i], m[j] + o[j], v[i], v[j], c)
        out[k] = (q * valid).sum() if valid is not None else q.sum()
    return out


def q_sliding(x: ArrayLike, y: ArrayLike, block: int = 32) -> torch.Tensor:
    """Q map on a sliding ``block x block`` box window, 'valid' positions only (stride 1).

    (..., H, W) x2 -> (..., H-S+1, W-S+1) float64. This is Wang's ``img_qi.m`` and wasaCheney
    ``_qindex`` (used by Pan-Mamba / PanTiny with S=32, and by the toolbox's RR ``Q.m``).

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import q_sliding
        >>> x = np.tile(np.arange(64.0), (64, 1))
        >>> tuple(q_sliding(x, x).shape)  # 64 - 32 + 1 positions per axis
        (33, 33)
    """
    x, y = _as64(x), _as64(y)
    _check_pair(x, y, block)
    return q_from_moments(*sliding_moments(x, y, block))


def qindex(x: ArrayLike, y: ArrayLike, block: int = 32, mode: str = "blocks") -> float:
    """Mean Q over windows and bands. ``x``, ``y``: (H,W) or (C,H,W); ``mode`` "blocks" | "sliding".

    Examples:
        >>> import numpy as np
        >>> from pantiny.metrics import qindex
        >>> x = np.tile(np.arange(64.0), (64, 1))  # (H,W) ramp
        >>> qindex(x, x)
        1.0
        >>> round(qindex(x, x + 5, mode="sliding"), 4)  # a bias lowers the luminance term
        0.986
    """
    if mode == "blocks":
        return float(q_blocks(x, y, block).mean())
    if mode == "sliding":
        return float(q_sliding(x, y, block).mean())
    raise InputError(f"unknown Q mode {mode!r}; use 'blocks' or 'sliding'")
