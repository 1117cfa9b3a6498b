"""Strip-by-strip accumulation of the Q statistics behind D_lambda, D_s and D_lambda_K.

Images are read in row strips (float64, one strip at a time), filters get the margin rows they
need, and only per-pair sums of window Q values (float64 scalars) are kept, so memory is bounded by
the strip size whatever the scene size. Two engines, one per definition:

* :func:`toolbox_sums` - Vivone 2020 toolbox: distinct ``S x S`` blocks at PAN scale, reference
  = MS upsampled to the PAN grid (interp23tap), PAN reference = interp23tap(imresize(PAN, 1/r))
  (or, ``orig_paper``, the MS and imresize(PAN, 1/r) on S/r blocks at the MS scale); optionally
  the Q2n blocks of ``(MS_up, MTF(fused))`` for Khan's D_lambda_K (HQNR), MTF = the toolbox's
  ``genMTF.m`` filter.

Nodata: sources wrapped in :class:`~pantiny.metrics.sources.ScoredSource` with a nodata value
report a mask; windows holding a nodata pixel of any input are left out (``QSums.skipped``), and
the filled values keep the filters of the neighbouring windows as on the valid area alone.
Per-band value ranges of the scored pixels (``QSums.ranges``) reveal zero-variance inputs.
* :func:`sliding_sums` - PanTiny / Pan-Mamba / wasaCheney: sliding ``S x S`` window, 'valid';
  fused vs PAN at PAN scale, LRMS vs PAN_lr at MS scale, all quantised to uint8 first.

Margins: the upsampler sees ``_UP_MARGIN`` MS rows beyond the strip (wrapped for interp23tap's
circular borders, clamped for bicubic), the MATLAB-style PAN reduction reads exactly the PAN rows
its taps need (mirrored at the true image edges), the MTF filter 20 rows (replicate at the true
image edges): strips then give the same values as processing the whole image (to float rounding,
~1e-12 relative). When one strip covers the scene the whole image is processed in one go.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..mtf import MTF_TAPS, mtf_filter, toolbox_mtf_filter
from ..resample import interp23tap, upsample
from .hypercomplex import q2n_windows
from .imresize import reduce_cols, reduce_rows, reduce_taps
from .sources import RowSource, ScoredSource
from .uiqi import block_view, box_sums, q_block_sums, q_sliding_sums

_UP_MARGIN = 10  # MS rows; interp23tap reaches 8.25 MS rows at ratio 4, bicubic 2
_MTF_MARGIN = (MTF_TAPS - 1) // 2
_Q2N_CHUNK = 64  # Q2n windows processed together
_U8_MID = torch.tensor(128.0, dtype=torch.float64)  # float32-MTF offset for uint8-scaled PAN
#: Default number of values per strip and image (float64: 32 MiB): bounds memory.
STRIP_VALUES = 1 << 22


def strip_height(width: int, bands: int, unit: int, values: int = STRIP_VALUES) -> int:
    """Rows per strip: a multiple of ``unit`` holding about ``values`` numbers per image."""
    return max(unit, (values // max(1, width * bands)) // unit * unit)


def upsampler(name: str, ratio: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """(B,C,h,w) -> (B,C,h*r,w*r) for ``name`` in {"interp23tap", "bicubic"}."""
    if name == "interp23tap":
        return lambda x: interp23tap(x, ratio)
    if name == "bicubic":
        return lambda x: upsample(x, ratio, "bicubic")
    raise InputError(f"unknown upsampling {name!r}; use 'interp23tap' (toolbox) or 'bicubic'")


def _up_rows(rows_at: Callable[[np.ndarray], torch.Tensor], h: int, a: int, b: int, width: int,
             ratio: int, up: str, whole: bool) -> torch.Tensor:
    """PAN-grid rows [a, b) (first ``width`` columns) of the upsampled low-resolution image of
    ``h`` rows whose rows ``rows_at(indices)`` returns as (C, len, w) float64."""
    if whole:
        m0, idx = 0, np.arange(h)
    else:
        m0 = a // ratio - _UP_MARGIN
        idx = np.arange(m0, -(-b // ratio) + _UP_MARGIN)
        # interp23tap has circular borders (toolbox): wrap; bicubic replicates: clamp.
        idx = idx % h if up == "interp23tap" else np.clip(idx, 0, h - 1)
    x = upsampler(up, ratio)(rows_at(idx)[None])[0]
    off = a - m0 * ratio
    return x[:, off: off + (b - a), :width]


def _filtered_rows(src: RowSource, a: int, b: int, margin: int,
                   fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Rows [a, b) of ``fn(src)`` for a same-size filter ``fn`` with ``margin`` rows of support."""
    r0, r1 = max(0, a - margin), min(src.shape[1], b + margin)
    return fn(src.rows(r0, r1)[None])[0][:, a - r0: b - r0]


def pan_reduced_rows(pan: RowSource, ratio: int, idx: np.ndarray) -> torch.Tensor:
    """Rows ``idx`` (MS grid, any order, repeats allowed) of MATLAB ``imresize(PAN, 1/ratio)``.

    Reads only the PAN rows the bicubic taps touch. Returns (1, len(idx), W/ratio) float64.
    """
    taps, w = reduce_taps(pan.shape[1], ratio, idx)
    need = np.unique(taps)
    rows = pan.gather(need)
    return reduce_cols(reduce_rows(rows, np.searchsorted(need, taps), w), ratio)


class ReducedPan(ScoredSource):
    """MATLAB ``imresize(PAN, 1/ratio)`` on the MS grid as a row source (rows computed on demand by
    :func:`pan_reduced_rows`), carrying the PAN's nodata over (an MS cell is nodata when any of its
    ratio x ratio PAN pixels is) and filled with ``fill``, the border rule of the upsampler that
    reads it ("wrap" for interp23tap). ``pan`` should itself be filled with "mirror" (imresize's
    symmetric border)."""

    def __init__(self, pan: RowSource, ratio: int, fill: str = "wrap", margin: int = 16) -> None:
        super().__init__(pan, None, None, fill, margin)
        self.pan, self.ratio = pan, ratio
        self.shape = (1, pan.shape[1] // ratio, pan.shape[2] // ratio)
        self.dtype = np.dtype(np.float64)
        self._masked = isinstance(pan, ScoredSource) and pan.masks

    @property
    def masks(self) -> bool:
        return self._masked

    def _mask(self, k0: int, k1: int) -> np.ndarray:
        r, w = self.ratio, self.shape[2]
        inv = self.pan.invalid(k0 * r, k1 * r).numpy()[:, : w * r]
        return inv.reshape(k1 - k0, r, w, r).any(axis=(1, 3))

    def _scan_rows(self) -> int:  # the mask comes from ratio x ratio as many PAN values
        return max(1, (1 << 22) // max(1, self.pan.shape[2] * self.ratio))

    def _values(self, k0: int, k1: int):
        a = pan_reduced_rows(self.pan, self.ratio, np.arange(k0, k1)).numpy()
        return a, (self._mask(k0, k1) if self._masked else None)


def _mtf_lowpass(x: torch.Tensor, gains: Sequence[float], ratio: int, offset: torch.Tensor) -> torch.Tensor:
    """``pantiny.mtf.mtf_filter`` (normalised filter; pantiny variant only) of (B,C,H,W) float64,
    run in float32 on the deviation from a per-band ``offset`` (C,1,1) near the data level (linear
    filter with unit DC gain and replicate borders, so adding the offset back is exact). Float32
    convolution is ~25x faster than float64; errors are ~1e-7 of the local contrast. The same
    offsets are used for every strip, so strips reproduce the whole-image values."""
    return mtf_filter((x - offset).float(), gains, ratio).double() + offset


class BandRange:
    """Running per-band minimum and maximum of the scored (non-nodata) pixels of one image."""

    def __init__(self, c: int) -> None:
        self.lo = np.full(c, np.inf)
        self.hi = np.full(c, -np.inf)

    def update(self, x: torch.Tensor, invalid: Optional[torch.Tensor] = None) -> None:
        """``x`` (C, R, W) float64; ``invalid`` (R, W) bool pixels to leave out (None: none)."""
        v = x.reshape(x.shape[0], -1) if invalid is None else x[:, ~invalid]
        if v.shape[1]:
            self.lo = np.minimum(self.lo, v.min(1).values.numpy())
            self.hi = np.maximum(self.hi, v.max(1).values.numpy())

    def constant_bands(self) -> List[int]:
        """Bands with zero variance (range <= 1e-9 of the magnitude; exactly 0 for integer data)."""
        mag = np.maximum(np.abs(self.lo), np.abs(self.hi))
        return [int(i) for i in np.flatnonzero(np.isfinite(self.lo) & (self.hi - self.lo <= 1e-9 * mag))]


@dataclass
class QSums:
    """Sums of window Q values (float64) and the window counts they were taken over."""

    fused_pairs: np.ndarray          # (P,) Q(F_i, F_j), i<j
    ref_pairs: np.ndarray            # (P,) Q(M_i, M_j) on the reference (MS_up or LRMS)
    fused_pan: np.ndarray            # (C,) Q(F_b, PAN)
    ref_pan: np.ndarray              # (C,) Q(M_b, PAN_ref)
    n_high: int = 0                  # windows scored at PAN scale
    n_low: int = 0                   # windows scored at the reference's scale
    q2n: float = 0.0                 # sum of Q2n over blocks (HQNR only)
    pairs: List[tuple] = field(default_factory=list)
    skipped: int = 0                 # PAN-scale windows left out because they hold nodata
    total: int = 0                   # PAN-scale windows in the scored area
    ranges: Dict[str, BandRange] = field(default_factory=dict)  # "fused", "ms", "pan"
    nodata_px: Dict[str, int] = field(default_factory=dict)     # nodata pixels seen per image
    seen_px: Dict[str, int] = field(default_factory=dict)       # pixels looked at per image

    @classmethod
    def empty(cls, c: int) -> "QSums":
        pairs = list(combinations(range(c), 2))
        z = lambda n: np.zeros(n, dtype=np.float64)  # noqa: E731
        return cls(z(len(pairs)), z(len(pairs)), z(c), z(c), pairs=pairs)

    def count_nodata(self, name: str, invalid: Optional[torch.Tensor], n: int) -> None:
        self.seen_px[name] = self.seen_px.get(name, 0) + n
        self.nodata_px[name] = self.nodata_px.get(name, 0) + (int(invalid.sum()) if invalid is not None else 0)


def _invalid(src: Optional[RowSource], r0: int, r1: int) -> Optional[torch.Tensor]:
    """Nodata mask (r1-r0, W) of a :class:`ScoredSource` with a nodata value, else None."""
    if isinstance(src, ScoredSource) and src.masks:
        return src.invalid(r0, r1)
    return None


def _or(*masks: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out | m
    return out


def _ms_invalid_on_pan(ms: RowSource, a: int, b: int, ratio: int, width: int) -> Optional[torch.Tensor]:
    """MS nodata mask of PAN rows [a, b), first ``width`` columns (each MS pixel covers ratio x ratio)."""
    m = _invalid(ms, a // ratio, -(-b // ratio))
    if m is None:
        return None
    up = m.repeat_interleave(ratio, 0).repeat_interleave(ratio, 1)
    o = a - (a // ratio) * ratio
    return up[o: o + (b - a), :width]


def _block_valid(invalid: Optional[torch.Tensor], block: int) -> Optional[torch.Tensor]:
    """(nb,) bool, row-major: complete ``block`` x ``block`` blocks without a nodata pixel."""
    if invalid is None:
        return None
    return ~block_view(invalid.to(torch.float64), block).gt(0).any(-1).reshape(-1)


def toolbox_sums(fused: RowSource, ms: RowSource, pan: Optional[RowSource], *, ratio: int, block: int,
                 up: str = "interp23tap", spectral: bool = True, spatial: bool = True,
                 mtf_gains: Optional[Sequence[float]] = None, as_uint16: bool = False,
                 strip_values: int = STRIP_VALUES, orig_paper: bool = False) -> QSums:
    """Block-Q sums of the Vivone 2020 toolbox definition (see module docstring).

    ``fused``/``pan`` (C,H,W)/(1,H,W) on the PAN grid, ``ms`` (C,H/r,W/r). Only complete blocks
    are scored (the last ``H mod S`` rows / ``W mod S`` columns are left out), and, when the sources
    are :class:`ScoredSource` with a nodata value, only blocks without a nodata pixel in the fused
    image, the PAN or the MS (MS pixels cover ratio x ratio PAN pixels). ``pan`` may be None when
    ``spatial`` is False. ``mtf_gains`` (one per band) turns on the Q2n blocks for D_lambda_K
    (toolbox MTF filter, ``pantiny.mtf.toolbox_mtf_filter``); ``as_uint16`` applies the toolbox's
    uint16 cast to both Q2n inputs (for DN data). ``orig_paper`` = the toolbox's
    ``flag_orig_paper = 1``: the reference Q's are taken at the MS scale on ``block/ratio`` blocks,
    between MS bands (D_lambda) and between MS bands and ``imresize(PAN, 1/ratio)`` (D_s).
    """
    c, hh, ww = fused.shape
    h = ms.shape[1]
    hs, ws = hh // block * block, ww // block * block
    s = QSums.empty(c)
    s.ranges = {"fused": BandRange(c), "ms": BandRange(c)}
    if pan is not None and spatial:
        s.ranges["pan"] = BandRange(1)
    unit = block * ratio // math.gcd(block, ratio)
    step = strip_height(ww, c + 2, unit, strip_values)
    whole = step >= hs  # one strip: upsample the whole MS, exactly as a whole-image call would
    need_up = not orig_paper or mtf_gains is not None
    lb = block // ratio  # MS-scale block (orig_paper)
    pan_rows: Callable[[np.ndarray], torch.Tensor] = lambda idx: pan_reduced_rows(pan, ratio, idx)  # noqa: E731
    if isinstance(pan, ScoredSource) and pan.masks:  # nodata: fill the reduced PAN for the upsampler
        pan_rows = ReducedPan(pan, ratio, "wrap" if up == "interp23tap" else "nearest").gather

    for a in range(0, hs, step):
        b = min(a + step, hs)
        f = fused.rows(a, b)[..., :ws]
        fi = _invalid(fused, a, b)
        pi = _invalid(pan, a, b) if pan is not None else None
        mi = _ms_invalid_on_pan(ms, a, b, ratio, ws)
        fi, pi = (fi[:, :ws] if fi is not None else None), (pi[:, :ws] if pi is not None else None)
        inv = _or(fi, pi, mi)
        valid = _block_valid(inv, block)
        nb = (b - a) // block * (ws // block)
        s.total += nb
        if valid is not None:
            s.skipped += nb - int(valid.sum())
        s.count_nodata("fused", fi, f.shape[1] * f.shape[2])
        s.ranges["fused"].update(f, inv)
        m0, m1 = a // ratio, -(-b // ratio)
        mraw = ms.rows(m0, m1)[..., : -(-ws // ratio)]
        mraw_inv = _invalid(ms, m0, m1)
        mraw_inv = mraw_inv[:, : -(-ws // ratio)] if mraw_inv is not None else None
        s.count_nodata("ms", mraw_inv, mraw.shape[1] * mraw.shape[2])
        s.ranges["ms"].update(mraw, mraw_inv)
        e = _up_rows(ms.gather, h, a, b, ws, ratio, up, whole) if need_up else None
        if spectral:
            s.fused_pairs += q_block_sums(f, s.pairs, block, valid=valid).numpy()
            if orig_paper:
                s.ref_pairs += q_block_sums(mraw[:, : (b - a) // ratio, : ws // ratio], s.pairs, lb,
                                            valid=valid).numpy()
            else:
                s.ref_pairs += q_block_sums(e, s.pairs, block, valid=valid).numpy()
        if spatial:
            assert pan is not None
            p = pan.rows(a, b)[..., :ws]
            s.count_nodata("pan", pi, p.shape[1] * p.shape[2])
            s.ranges["pan"].update(p, inv)
            s.fused_pan += q_block_sums(f, (), block, p, valid=valid).numpy()
            if orig_paper:
                pl = pan_reduced_rows(pan, ratio, np.arange(a // ratio, b // ratio))[..., : ws // ratio]
                s.ref_pan += q_block_sums(mraw[:, : (b - a) // ratio, : ws // ratio], (), lb, pl,
                                          valid=valid).numpy()
            else:
                pf = _up_rows(pan_rows, h, a, b, ws, ratio, up, whole)
                s.ref_pan += q_block_sums(e, (), block, pf, valid=valid).numpy()
        if mtf_gains is not None:
            assert e is not None
            fm = _filtered_rows(fused, a, b, _MTF_MARGIN, lambda x: toolbox_mtf_filter(x, mtf_gains, ratio))
            bf = block_view(fm[..., :ws], block).reshape(c, -1, block * block).transpose(0, 1)
            be = block_view(e, block).reshape(c, -1, block * block).transpose(0, 1)
            if valid is not None:
                bf, be = bf[valid], be[valid]
            for k0 in range(0, be.shape[0], _Q2N_CHUNK):  # bounded temporaries
                s.q2n += float(q2n_windows(be[k0:k0 + _Q2N_CHUNK], bf[k0:k0 + _Q2N_CHUNK], as_uint16).sum())
        s.n_high += nb if valid is None else int(valid.sum())
    s.n_low = s.n_high
    return s


def quantize_u8(x: torch.Tensor, scale: float) -> torch.Tensor:
    """PanTiny's FR input conversion: ``x/scale*255``, clipped to [0,255], truncated (uint8 cast)."""
    return torch.floor((x / scale * 255.0).clamp(0.0, 255.0))


def _sliding_pass(rows: Callable[[int, int], torch.Tensor], n_rows: int, width: int, bands: int,
                  block: int, pairs: Sequence[tuple], with_last: Sequence[int], strip_values: int,
                  invalid: Optional[Callable[[int, int], Optional[torch.Tensor]]] = None,
                  rng: Optional[BandRange] = None, on_rows: Optional[Callable[[int, int], None]] = None) -> tuple:
    """Sliding-Q sums over a stack whose rows ``rows(r0, r1)`` returns (K, r1-r0, W) float64.

    ``pairs`` index pairs inside the stack; ``with_last`` bands compared with the last stack entry.
    Window tops are processed in strips; each strip reads ``block - 1`` extra rows. ``invalid``
    gives the (r1-r0, W) nodata mask of the same rows (None: no nodata): windows holding a nodata
    pixel are left out. ``rng`` collects the per-band range of the stack's non-nodata pixels;
    ``on_rows(r0, r1)`` is called once for every row range (each row once).
    Returns (pair sums, with-last sums, windows scored, windows in all).
    """
    tops = n_rows - block + 1
    if tops < 1 or width < block:
        raise InputError(f"image of {n_rows}x{width} pixels is smaller than the {block}x{block} window")
    sp, sl = np.zeros(len(pairs)), np.zeros(len(with_last))
    step = strip_height(width, bands + 2, 1, strip_values)
    n_ok = 0
    for a in range(0, tops, step):
        b = min(a + step, tops)
        x = rows(a, b + block - 1)
        inv = invalid(a, b + block - 1) if invalid is not None else None
        ok = None if inv is None else box_sums(inv.to(torch.float64), block) == 0
        own = slice(0, b - a) if b < tops else slice(0, x.shape[1])  # each row once (last: the rest)
        if rng is not None:
            rng.update(x[:, own], inv[own] if inv is not None else None)
        if on_rows is not None:
            on_rows(a, a + (own.stop - own.start))
        last = x.shape[0] - 1
        q = q_sliding_sums(x, list(pairs) + [(i, last) for i in with_last], block, ok).numpy()
        sp += q[:len(pairs)]
        sl += q[len(pairs):]
        n_ok += (b - a) * (width - block + 1) if ok is None else int(ok.sum())
    return sp, sl, n_ok, tops * (width - block + 1)


def sliding_sums(fused: RowSource, ms: RowSource, pan: Optional[RowSource], *, ratio: int, block: int,
                 scale: float, pan_gnyq: float = 0.15, spectral: bool = True, spatial: bool = True,
                 strip_values: int = STRIP_VALUES) -> QSums:
    """Sliding-Q sums of the PanTiny / Pan-Mamba (wasaCheney) definition (see module docstring).

    All inputs are first converted as PanTiny does (``quantize_u8``); PAN_lr = MTF filter
    (GNyq ``pan_gnyq``, 0.15 = QuickBird, hard-wired in that code) then nearest decimation picking
    PAN pixel ``ratio*i`` (OpenCV ``INTER_NEAREST``). ``pan`` may be None when ``spatial`` is False.
    """
    c, hh, ww = fused.shape
    h, w = ms.shape[1:]
    if min(h, w) < block:
        raise InputError(f"the pantiny variant scores the MS at its own scale with a {block}x{block} window: "
                         f"the MS ({h}x{w}) must be at least {block}x{block} (PAN {block * ratio}x{block * ratio})")
    s = QSums.empty(c)
    pairs = s.pairs if spectral else []
    last = list(range(c)) if spatial else []
    masked = any(isinstance(x, ScoredSource) and x.masks for x in (fused, ms, pan))

    def high(r0: int, r1: int) -> torch.Tensor:
        x = fused.rows(r0, r1)
        if spatial:
            x = torch.cat([x, pan.rows(r0, r1)])
        return quantize_u8(x, scale)

    def high_invalid(r0: int, r1: int) -> Optional[torch.Tensor]:
        return _or(_invalid(fused, r0, r1), _invalid(pan, r0, r1) if spatial else None,
                   _ms_invalid_on_pan(ms, r0, r1, ratio, ww))

    def pan_lr(k0: int, k1: int) -> torch.Tensor:
        lp = _filtered_rows(pan, k0 * ratio, k1 * ratio, _MTF_MARGIN,
                            lambda x: _mtf_lowpass(quantize_u8(x, scale), [pan_gnyq], ratio, _U8_MID))
        return lp[:, ::ratio, ::ratio][..., :w]

    def low(r0: int, r1: int) -> torch.Tensor:
        x = quantize_u8(ms.rows(r0, r1), scale)
        return torch.cat([x, pan_lr(r0, r1)]) if spatial else x

    def low_invalid(k0: int, k1: int) -> Optional[torch.Tensor]:
        hi = _or(_invalid(fused, k0 * ratio, k1 * ratio), _invalid(pan, k0 * ratio, k1 * ratio) if spatial else None)
        if hi is not None:  # an MS pixel is out when any PAN pixel of its cell is
            hi = hi[:, : w * ratio].reshape(k1 - k0, ratio, w, ratio).any(3).any(1)
        return _or(_invalid(ms, k0, k1), hi)

    def count_high(r0: int, r1: int) -> None:  # nodata statistics, for the error messages
        s.count_nodata("fused", _invalid(fused, r0, r1), (r1 - r0) * ww)
        if spatial:
            s.count_nodata("pan", _invalid(pan, r0, r1), (r1 - r0) * ww)

    def count_low(k0: int, k1: int) -> None:
        s.count_nodata("ms", _invalid(ms, k0, k1), (k1 - k0) * w)

    rh, rl = BandRange(c + (1 if spatial else 0)), BandRange(c + (1 if spatial else 0))
    s.fused_pairs, s.fused_pan, s.n_high, s.total = _sliding_pass(
        high, hh, ww, c, block, pairs, last, strip_values, high_invalid if masked else None, rh,
        count_high if masked else None)
    # MS-scale strips also read ratio^2 times as many PAN values: size them by the PAN
    s.ref_pairs, s.ref_pan, s.n_low, _ = _sliding_pass(
        low, h, w, c, block, pairs, last, max(1, strip_values // (ratio * ratio)),
        low_invalid if masked else None, rl, count_low if masked else None)
    s.skipped = s.total - s.n_high
    s.ranges = {"fused": _sub_range(rh, slice(0, c)), "ms": _sub_range(rl, slice(0, c))}
    if spatial:
        s.ranges["pan"] = _sub_range(rh, slice(c, c + 1))
    if not spectral:
        s.fused_pairs, s.ref_pairs = np.zeros(len(s.pairs)), np.zeros(len(s.pairs))
    if not spatial:
        s.fused_pan, s.ref_pan = np.zeros(c), np.zeros(c)
    return s


def _sub_range(r: BandRange, sel: slice) -> BandRange:
    out = BandRange(0)
    out.lo, out.hi = r.lo[sel], r.hi[sel]
    return out
