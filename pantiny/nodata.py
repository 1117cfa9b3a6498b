"""Nodata handling on arrays: masks, and filling holes from valid neighbours before interpolation.

Nodata pixels must never enter the MS interpolation, a scene statistic or the network as if they
were data: a 65535 border would otherwise leak into every valid pixel within the interpolation
kernel and the network's receptive field. The fill is *local* (each filled value depends only on the
pixels within ``steps`` of it) so a window read with ``steps`` + kernel radius of margin fills
exactly as the whole image would: tiled results stay equal to untiled ones. Pixels deeper inside a
hole than ``steps`` get a scene-wide constant (the valid mean of each band); they are nodata in the
output anyway.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

#: Rings of valid-neighbour averaging applied to MS holes (each ring reaches one pixel further).
FILL_STEPS = 3


def invalid_mask(x: np.ndarray, nodata: Optional[float], *, all_bands: bool = True) -> Optional[np.ndarray]:
    """(h,w) bool mask of nodata pixels of a (C,h,w) array (all bands == nodata, or any band when
    ``all_bands`` is False); None when there is no nodata value or no such pixel.

    Examples:
        >>> import numpy as np
        >>> from pantiny.nodata import invalid_mask
        >>> x = np.array([[[5, 0], [0, 7]], [[5, 0], [3, 7]]], np.uint16)  # (C=2, h=2, w=2)
        >>> invalid_mask(x, 0)  # nodata = every band equals the value
        array([[False,  True],
               [False, False]])
        >>> invalid_mask(x, 0, all_bands=False)
        array([[False,  True],
               [ True, False]])
        >>> invalid_mask(x, 65535) is None  # no such pixel
        True
    """
    if nodata is None:
        return None
    hit = x == nodata if not (isinstance(nodata, float) and np.isnan(nodata)) else np.isnan(x)
    m = hit.all(0) if all_bands else hit.any(0)
    return m if m.any() else None


def fill_holes(x: np.ndarray, invalid: np.ndarray, fallback: Sequence[float], steps: int = FILL_STEPS) -> np.ndarray:
    """Fill the ``invalid`` pixels of (C,h,w) ``x`` (float) from their valid neighbours.

    ``steps`` times: every invalid pixel with at least one valid pixel among its 8 neighbours takes
    their mean and becomes valid. Remaining pixels take ``fallback`` (one value per band). Returns a
    new float32 array; ``x`` is not modified.

    Examples:
        >>> import numpy as np
        >>> from pantiny.nodata import fill_holes, invalid_mask
        >>> x = np.array([[[1, 2, 3], [4, 0, 6], [7, 8, 9]]], np.float32)  # one band, a hole at the centre
        >>> fill_holes(x, invalid_mask(x, 0), fallback=[0.0])  # the mean of its 8 valid neighbours
        array([[[1., 2., 3.],
                [4., 5., 6.],
                [7., 8., 9.]]], dtype=float32)
        >>> x[0, 1, 1].item()  # the input is left as it was
        0.0
        >>> hole = np.ones((3, 3), bool)  # nothing valid: the per-band fallback
        >>> fill_holes(x, hole, fallback=[42.0])[0, 0]
        array([42., 42., 42.], dtype=float32)
    """
    out = np.array(x, dtype=np.float32, copy=True)
    bad = invalid.copy()
    if not bad.any():
        return out
    c, h, w = out.shape
    for _ in range(steps):
        if not bad.any():
            break
        ok = (~bad).astype(np.float32)
        vals = np.pad(out * ok, ((0, 0), (1, 1), (1, 1)))
        cnt = np.pad(ok, 1)
        s = np.zeros((c, h, w), np.float32)
        n = np.zeros((h, w), np.float32)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                if dy == 1 and dx == 1:
                    continue
                s += vals[:, dy:dy + h, dx:dx + w]
                n += cnt[dy:dy + h, dx:dx + w]
        new = bad & (n > 0)
        if not new.any():
            break
        out[:, new] = s[:, new] / n[new]
        bad &= ~new
    if bad.any():
        out[:, bad] = np.asarray(fallback, np.float32)[:, None]
    return out


def avoid_nodata(y: np.ndarray, valid: np.ndarray, nodata: float) -> None:
    """Nudge valid pixels of (C,h,w) ``y`` that equal the nodata value by one DN (in place), so that
    they stay valid; ``valid`` is (h,w) bool."""
    hit = (y == nodata) & valid[None]
    if hit.any():
        if y.dtype.kind in "ui":
            bump = 1 if nodata < np.iinfo(y.dtype).max else -1
        else:
            bump = np.finfo(y.dtype).eps * max(1.0, abs(nodata))
        y[hit] = nodata + bump


def partial_nodata(x: np.ndarray, nodata: float) -> bool:
    """True when some pixel of (C,h,w) ``x`` has some bands, but not all, at ``nodata`` (a dark
    band, not a hole: tools that mask per band treat it differently from pantiny's all-bands rule)."""
    hit = x == nodata
    return bool((hit.any(0) & ~hit.all(0)).any())


def footprint(ms_mask: np.ndarray, ms_row0: int, row: int, rows: int, width: int, ratio: int) -> np.ndarray:
    """An MS-grid (h,w) mask whose first row is MS row ``ms_row0``, on PAN rows ``row .. row + rows - 1``
    and columns ``0 .. width - 1`` of the nested grid (MS pixel ``j`` covers PAN pixels ``ratio*j ..
    ratio*j + ratio - 1``); PAN pixels beyond the MS extent take the nearest MS pixel, as the tiling
    engine's edge padding does. Returns (rows, width) bool.

    Examples:
        >>> import numpy as np
        >>> from pantiny.nodata import footprint
        >>> m = np.array([[True, False]])  # one MS row, two MS pixels
        >>> footprint(m, 0, 1, 2, 5, ratio=2).astype(int)  # PAN rows 1-2, five PAN columns
        array([[1, 1, 0, 0, 0],
               [1, 1, 0, 0, 0]])
    """
    h, w = ms_mask.shape
    r = np.clip(np.arange(row, row + rows) // ratio - ms_row0, 0, h - 1)
    up = np.repeat(ms_mask[r], ratio, axis=1)  # whole rows gathered, then columns repeated (no 2-D gather)
    if up.shape[1] >= width:
        return up[:, :width]
    return np.pad(up, ((0, 0), (0, width - up.shape[1])), mode="edge")
