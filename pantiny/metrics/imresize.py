"""MATLAB-style bicubic reduction by an integer factor (``imresize(x, 1/ratio)``), for D_s.

The Vivone 2020 toolbox degrades the PAN for D_s with ``imresize(I_PAN, 1/ratio)``: bicubic, with
antialiasing. This module follows MATLAB's documented resampling scheme:

* output pixel ``i`` (0-based) sits at input coordinate ``u = ratio*i + (ratio-1)/2`` (pixel-is-area:
  the centre of the ``ratio x ratio`` input block it covers);
* weights ``w_k = cubic((u - k) / ratio) / ratio`` on input pixels ``k`` with ``|u - k| < 2*ratio``,
  where ``cubic`` is Keys' kernel with ``a = -0.5`` (the antialiased kernel is the cubic stretched by
  ``ratio``), normalised to sum 1;
* indices outside the image are mirrored with the edge pixel repeated (``... 1 0 | 0 1 ...``).

Inside the image this equals torch's antialiased bicubic (``F.interpolate(..., antialias=True)``,
also a = -0.5); the two differ only within ``2*ratio`` pixels of the border, where torch drops the
outside taps instead of mirroring them. Rows and columns are reduced separably. Only row subsets
are ever materialised, so a strip of the output can be computed from a strip of the input.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ..errors import InputError


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB ``imresize`` 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def reduce_taps(n_in: int, ratio: int, out_idx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Input indices (K, P) and weights (K, P) float64 of the output samples ``out_idx`` (0-based).

    ``n_in`` is the input length along the axis (a multiple of ``ratio``); indices are already
    mirrored into ``[0, n_in)``; each row of weights sums to 1.
    """
    out_idx = np.asarray(out_idx, dtype=np.int64)
    u = ratio * out_idx.astype(np.float64) + (ratio - 1) / 2.0      # 0-based input coordinate
    width = 4.0 * ratio                                              # support of the stretched cubic
    left = np.floor(u - width / 2.0).astype(np.int64)
    p = int(np.ceil(width)) + 2
    k = left[:, None] + np.arange(p)[None, :]
    w = _cubic((u[:, None] - k) / ratio) / ratio
    w = w / w.sum(1, keepdims=True)
    period = 2 * n_in
    m = np.mod(k, period)
    k = np.where(m < n_in, m, period - 1 - m)                        # symmetric (edge repeated)
    return k, w


def reduce_rows(rows: torch.Tensor, pos: np.ndarray, w: np.ndarray) -> torch.Tensor:
    """Apply row taps to ``rows`` (C, R, W): ``pos`` (K, P) are positions of the tap rows inside
    ``rows`` and ``w`` (K, P) their weights. Returns (C, K, W)."""
    pos = torch.as_tensor(pos)
    wt = torch.as_tensor(w, dtype=rows.dtype)
    out = wt[:, 0, None] * rows[:, pos[:, 0]]
    for j in range(1, pos.shape[1]):
        out = out + wt[:, j, None] * rows[:, pos[:, j]]
    return out


def reduce_cols(x: torch.Tensor, ratio: int) -> torch.Tensor:
    """Reduce the last axis of ``x`` (..., W) by ``ratio`` (W a multiple of ratio): -> (..., W/ratio)."""
    n = x.shape[-1]
    idx, w = reduce_taps(n, ratio, np.arange(n // ratio))
    pos = torch.as_tensor(idx)
    wt = torch.as_tensor(w, dtype=x.dtype)
    out = wt[:, 0] * x[..., pos[:, 0]]
    for j in range(1, idx.shape[1]):
        out = out + wt[:, j] * x[..., pos[:, j]]
    return out


def imresize_down(x: torch.Tensor, ratio: int) -> torch.Tensor:
    """MATLAB ``imresize(x, 1/ratio)`` (bicubic, antialiased) of a whole (C,H,W) image -> (C,H/r,W/r).

    ``H`` and ``W`` must be multiples of ``ratio``. Computed in ``x``'s floating dtype (use float64).
    """
    if x.ndim != 3:
        raise InputError(f"imresize_down expects (C,H,W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % ratio or w % ratio:
        raise InputError(f"image {h}x{w} is not a multiple of the ratio {ratio}")
    idx, wt = reduce_taps(h, ratio, np.arange(h // ratio))
    return reduce_cols(reduce_rows(x, idx, wt), ratio)
