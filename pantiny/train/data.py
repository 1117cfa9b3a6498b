"""Training data: reduced-resolution samples from PanCollection HDF5 cubes or Wald-degraded GeoTIFF scenes.

A *sample* is ``(gt, lms, pan)``: float32 tensors of shapes (4,h,w), (4,h,w), (1,h,w) in the model's
unit range (digital number / sensor scale), bands in model order R, G, B, NIR:

* ``gt``: the reference MS,
* ``lms``: the degraded MS upsampled back onto the reference grid (the model's ``ms_up`` input),
* ``pan``: the degraded PAN on the same grid.

Every dataset draws its patches from a ``numpy.random.Generator`` it is handed, so the sampler
(:mod:`pantiny.train.mixing`) alone decides what batch ``k`` is: training can stop and resume at any
step and see exactly the same data.

Public: :class:`WaldScene`, :class:`H5Dataset`, :class:`Source` (one ``[[data]]`` entry of a config),
:func:`augment`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import io as rio_io
from ..errors import ConfigError, InputError
from ..mtf import mtf_degrade
from ..resample import downsample_bicubic, upsample
from ..sensors import Sensor, get_sensor

#: ``(gt (4,h,w), lms (4,h,w), pan (1,h,w))``, float32, unit range.
Sample = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]

#: How the PAN of a Wald pair is degraded: ``"mtf"`` = sensor PAN MTF filter + decimation (Vivone
#: toolbox 1.0), ``"bicubic"`` = antialiased bicubic reduction (MATLAB ``imresize``, toolbox 2020),
#: ``"mixed"`` = each training patch's PAN a random blend of the two (validation uses ``"mtf"``).
from ..choices import PAN_FILTERS  # noqa: E402  (re-exported)

#: A reduced-resolution pixel counts as touched by nodata when the nodata indicator, passed through
#: the same degradation as the data, weighs more than this in it.
NODATA_INFLUENCE = 1e-3


class SceneTooSmall(InputError):
    """A scene (or its row band) is smaller than any usable training sample."""


def augment(sample: Sample, rng: np.random.Generator) -> Sample:
    """Apply one random element of the 8 dihedral transforms (rot90 k times, optional flip) to all parts."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def t(x: torch.Tensor) -> torch.Tensor:
        x = torch.rot90(x, k, dims=(-2, -1))
        return x.flip(-1) if flip else x

    return tuple(t(x).contiguous() for x in sample)  # type: ignore[return-value]


def _crop(sample: Sample, patch: Optional[int], rng: np.random.Generator) -> Sample:
    """A uniformly placed ``patch`` x ``patch`` crop of all parts (the whole sample if ``patch`` is None)."""
    h, w = sample[0].shape[-2:]
    if patch is None or (patch == h and patch == w):
        return sample
    if patch > h or patch > w:
        raise InputError(f"patch {patch} is larger than the {h}x{w} samples of this dataset")
    r, c = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
    return tuple(x[..., r:r + patch, c:c + patch] for x in sample)  # type: ignore[return-value]


def clean_corners(bad: np.ndarray, patch: int) -> np.ndarray:
    """Flat indices ``r * W + c`` of the top-left corners of all ``patch`` x ``patch`` windows of the
    (H,W) boolean mask ``bad`` that contain no ``True`` pixel (summed-area table, O(H*W))."""
    h, w = bad.shape
    if patch > h or patch > w:
        return np.zeros(0, dtype=np.int64)
    s = np.zeros((h + 1, w + 1), dtype=np.int64)
    s[1:, 1:] = np.cumsum(np.cumsum(bad, 0), 1)
    win = s[patch:, patch:] - s[:-patch, patch:] - s[patch:, :-patch] + s[:-patch, :-patch]
    rows, cols = np.nonzero(win == 0)
    return rows * w + cols


def _usable_samples(bad: np.ndarray, patch: Optional[int]) -> int:
    """Non-overlapping ``patch``-sized samples the pixels not ``bad`` (H,W) hold, at least 1 (1 without a patch)."""
    if patch is None:
        return 1
    return max(1, int((bad.size - int(bad.sum())) // (patch * patch)))


def _ms_holes_on_pan_grid(ms_dn: np.ndarray, nodata: float, ratio: int, shape: Tuple[int, int]) -> np.ndarray:
    """(h,w) bool on the PAN grid (``shape``): PAN pixels within the bicubic support (2 MS pixels) of an
    MS pixel of (C,h/ratio,w/ratio) ``ms_dn`` with every band at ``nodata``."""
    hole = np.all(ms_dn == nodata, axis=0)
    if not hole.any():
        return np.zeros(shape, dtype=bool)
    t = torch.from_numpy(hole.astype(np.float32))[None, None]  # dilated by 2 MS pixels (max-pool)
    hole = torch.nn.functional.max_pool2d(t, 5, stride=1, padding=2)[0, 0].numpy() > 0
    return hole.repeat(ratio, 0).repeat(ratio, 1)[:shape[0], :shape[1]]


class _MaskedScene:
    """Patches of a scene held in memory, drawn only where its ``bad`` (h,w) mask of unusable pixels
    (nodata, or influenced by it) has no pixel: shared by :class:`WaldScene` and :class:`RRScene`."""

    name: str
    gt: torch.Tensor
    lms: torch.Tensor
    pan: torch.Tensor
    bad: np.ndarray
    _corners: Dict[int, np.ndarray]

    @property
    def has_nodata(self) -> bool:
        """True when some pixels of this part are unusable (nodata or influenced by it)."""
        return bool(self.bad.any())

    def _clean(self, patch: int) -> np.ndarray:
        if patch not in self._corners:
            self._corners[patch] = clean_corners(self.bad, patch)
        return self._corners[patch]

    def size(self, patch: Optional[int]) -> int:
        """How many non-overlapping ``patch``-sized samples the usable area holds (>= 1): its weight
        in a plain concatenation, as if the scene had been cut into tiles."""
        return _usable_samples(self.bad, patch)

    def __len__(self) -> int:
        return 1

    def can_draw(self, patch: Optional[int]) -> bool:
        """True when at least one ``patch``-sized sample free of nodata exists (checked before training)."""
        return not self.has_nodata if patch is None else self._clean(patch).size > 0

    def draw(self, rng: np.random.Generator, patch: Optional[int]) -> Sample:
        """One ``patch`` x ``patch`` sample at a uniformly drawn position free of nodata."""
        if patch is None:
            if self.has_nodata:
                raise InputError(f"{self.name} contains nodata: set a patch size to train on its clean parts")
            return self._window(rng, 0, 0, None)
        corners = self._clean(patch)
        if corners.size == 0:
            raise InputError(f"{self.name}: no {patch}x{patch} patch free of nodata (part is "
                             f"{self.gt.shape[-2]}x{self.gt.shape[-1]})")
        r, c = divmod(int(corners[int(rng.integers(corners.size))]), self.gt.shape[-1])
        return self._window(rng, r, c, patch)

    def _window(self, rng: np.random.Generator, r: int, c: int, patch: Optional[int]) -> Sample:
        """The ``patch``-sized sample at row ``r``, column ``c`` (the whole part for None; subclasses
        may draw more from ``rng``)."""
        if patch is None:
            return self.full()
        return tuple(x[..., r:r + patch, c:c + patch] for x in self.full())  # type: ignore[return-value]

    def full(self) -> Sample:
        """The whole reduced-resolution part ``(gt, lms, pan)``."""
        return self.gt, self.lms, self.pan

    def eval_samples(self, patch: int) -> List[Sample]:
        """Validation samples: the whole part when it is free of nodata, else its nodata-free tiles of
        a non-overlapping grid, ``patch`` pixels wide or, when no such tile exists, the largest of
        patch/2, patch/4, ... (>= 16) that has one. Empty when none exists."""
        if not self.has_nodata:
            return [self.full()]
        h, w = self.gt.shape[-2:]
        size = int(patch)
        while True:
            out = []
            for r in range(0, h - size + 1, size):
                for c in range(0, w - size + 1, size):
                    if not self.bad[r:r + size, c:c + size].any():
                        out.append(tuple(x[..., r:r + size, c:c + size] for x in self.full()))
            if out or size // 2 < 16:
                return out  # type: ignore[return-value]
            size //= 2


class WaldScene(_MaskedScene):
    """Reduced-resolution training pairs from one full-resolution PAN/MS GeoTIFF pair (Wald's protocol).

    The original MS (the 4 model bands, unit range) is the reference ``gt``; the inputs are the MS
    filtered with the sensor's MTF (Gaussian matched to each band's gain at Nyquist,
    :func:`pantiny.mtf.mtf_degrade`), decimated by ``ratio`` and bicubic-upsampled back
    (:func:`pantiny.resample.upsample`), and the PAN degraded by ``ratio`` (``pan_filter``). The pairs
    live at MS resolution: a 320x320 MS scene gives a 320x320 reduced-resolution scene.

    Args:
        pan, ms: GeoTIFF paths of the full-resolution pair (PAN grid ``ratio`` times finer).
        sensor: sensor table key; default the MS file's ``SENSOR`` tag.
        ratio: PAN/MS resolution ratio.
        rows: the band of the scene to use, as fractions of its height, e.g. ``(0, 0.8)`` for training
            and ``(0.8, 1)`` held out. Rounded to multiples of ``ratio`` MS rows. Each band is read
            and degraded on its own, so no pixel of one band influences the other.
        scale: DN mapped to 1.0 (default: the sensor's maximum, e.g. 2047).
        pan_filter: ``"mtf"`` (default), ``"bicubic"`` or ``"mixed"``, see :data:`PAN_FILTERS`. With
            ``"mixed"`` each drawn patch's PAN is ``(1 - t) * mtf + t * bicubic`` with ``t`` uniform in
            [0, 1]: the PAN's sharpness relative to the MS differs between products and between
            reduced-resolution protocols, and a model trained on one degradation alone over- or
            under-injects detail on the other. ``full()`` and validation keep the ``"mtf"`` PAN.
        nodata: DN marking missing pixels (default: the files' nodata values). Pixels that are nodata,
            or whose degraded inputs are influenced by nodata, are never drawn into a patch.

    Attributes:
        gt, lms: (4,h,w) float32; pan: (1,h,w) float32; ms_lr: (4,h/ratio,w/ratio) float32, the
        degraded MS before upsampling; bad: (h,w) bool numpy mask of unusable pixels.
    """

    def __init__(self, pan: "str | os.PathLike[str]", ms: "str | os.PathLike[str]",
                 sensor: "str | Sensor | None" = None, *, ratio: int = 4, rows: Tuple[float, float] = (0.0, 1.0),
                 scale: Optional[float] = None, pan_filter: str = "mtf", nodata: Optional[float] = None,
                 bands: Optional[Sequence[int]] = None, name: Optional[str] = None) -> None:
        if pan_filter not in PAN_FILTERS:
            raise InputError(f"pan_filter must be one of {PAN_FILTERS}, got {pan_filter!r}")
        if len(rows) != 2 or not 0.0 <= rows[0] < rows[1] <= 1.0:
            raise InputError(f"rows must be two fractions 0 <= start < end <= 1, got {list(rows)}")
        pan_info, ms_info = rio_io.raster_info(pan), rio_io.raster_info(ms)
        rio_io.check_pair(pan_info, ms_info, ratio)
        self.sensor, self.bands, self.scale = _identify(ms, ms_info, sensor, bands, scale)
        self.ratio = ratio
        self.rows = (float(rows[0]), float(rows[1]))
        self.name = name or f"{self.sensor.name}:{Path(ms).name}[{rows[0]:g}:{rows[1]:g}]"

        # MS pixels fully covered by PAN, in whole ratio-blocks (so decimation + upsampling round-trip)
        h = min(ms_info.height, pan_info.height // ratio)
        w = min(ms_info.width, pan_info.width // ratio)
        h, w = h - h % ratio, w - w % ratio
        r0 = int(round(rows[0] * h / ratio)) * ratio
        r1 = int(round(rows[1] * h / ratio)) * ratio
        if r1 - r0 < 4 * ratio or w < 4 * ratio:
            raise SceneTooSmall(f"rows={list(rows)} leaves a {r1 - r0}x{w} part of {ms}: too small "
                             f"(need at least {4 * ratio} MS pixels each way)")
        ms_dn = rio_io.read(ms, window=(r0, 0, r1 - r0, w), bands=self.bands).astype(np.float32)
        pan_dn = rio_io.read(pan, window=(r0 * ratio, 0, (r1 - r0) * ratio, w * ratio)).astype(np.float32)
        gt = torch.from_numpy(ms_dn / self.scale)
        p = torch.from_numpy(pan_dn / self.scale)

        ms_lr = mtf_degrade(gt[None], self.sensor.model_mtf, ratio)
        filters = ("mtf", "bicubic") if pan_filter == "mixed" else (pan_filter,)
        pans = [self._degrade_pan(p[None], f) for f in filters]
        self.gt = gt.contiguous()
        self.ms_lr = ms_lr[0].contiguous()
        self.lms = upsample(ms_lr, ratio)[0].contiguous()
        self.pan = pans[0][0].contiguous()
        # the other end of the "mixed" blend, kept as the difference to add a random part of
        self._pan_delta = (pans[1][0] - pans[0][0]).contiguous() if len(pans) > 1 else None

        ms_nd = nodata if nodata is not None else ms_info.nodata
        pan_nd = nodata if nodata is not None else pan_info.nodata
        self.bad = np.zeros(self.gt.shape[-2:], dtype=bool)
        if ms_nd is not None:
            inv = torch.from_numpy(np.all(ms_dn == ms_nd, axis=0).astype(np.float32))[None, None]
            if bool(inv.any()):
                spread = upsample(mtf_degrade(inv, min(self.sensor.model_mtf), ratio), ratio)[0, 0].abs()
                self.bad |= inv[0, 0].numpy() > 0
                self.bad |= spread.numpy() > NODATA_INFLUENCE
        if pan_nd is not None:
            inv = torch.from_numpy((pan_dn == pan_nd).astype(np.float32))[None]
            if bool(inv.any()):
                for f in filters:
                    self.bad |= self._degrade_pan(inv, f)[0, 0].abs().numpy() > NODATA_INFLUENCE
        self._corners: Dict[int, np.ndarray] = {}

    def _degrade_pan(self, pan: torch.Tensor, pan_filter: str) -> torch.Tensor:
        """(1,1,H,W) PAN-grid image -> (1,1,H/ratio,W/ratio), by the sensor's PAN MTF or antialiased bicubic."""
        if pan_filter == "mtf":
            return mtf_degrade(pan, self.sensor.mtf_pan, self.ratio)
        return downsample_bicubic(pan, self.ratio)

    def _window(self, rng: np.random.Generator, r: int, c: int, patch: Optional[int]) -> Sample:
        gt, lms, pan = super()._window(rng, r, c, patch)
        if self._pan_delta is None:
            return gt, lms, pan
        delta = self._pan_delta if patch is None else self._pan_delta[..., r:r + patch, c:c + patch]
        t = float(rng.uniform())  # drawn only for "mixed", so other scenes keep their random stream
        return gt, lms, pan + t * delta


class FRScene:
    """Full-resolution training crops of one real PAN/MS pair, for stage 2 (no reference, no degradation).

    A sample is ``(ms_nn, lms, pan)`` on the PAN grid: the MS (4 model bands, unit range)
    nearest-upsampled by ``ratio`` (so crops and flips keep MS pixels whole; the loss reads every
    ``ratio``-th pixel back: ``ms_lr = ms_nn[..., ::ratio, ::ratio]``), the bicubic-upsampled MS (the
    network input, as :func:`pantiny.pansharpen` makes it) and the PAN. Crops start on MS pixel
    corners. Arguments as :class:`WaldScene` (``rows`` in fractions of the height).
    """

    def __init__(self, pan: "str | os.PathLike[str]", ms: "str | os.PathLike[str]",
                 sensor: "str | Sensor | None" = None, *, ratio: int = 4, rows: Tuple[float, float] = (0.0, 1.0),
                 scale: Optional[float] = None, nodata: Optional[float] = None,
                 bands: Optional[Sequence[int]] = None, name: Optional[str] = None) -> None:
        pan_info, ms_info = rio_io.raster_info(pan), rio_io.raster_info(ms)
        rio_io.check_pair(pan_info, ms_info, ratio)
        self.sensor, self.bands, self.scale = _identify(ms, ms_info, sensor, bands, scale)
        self.ratio = ratio
        self.name = name or f"{self.sensor.name}:{Path(ms).name}[full resolution]"
        h, w = min(ms_info.height, pan_info.height // ratio), min(ms_info.width, pan_info.width // ratio)
        r0, r1 = int(round(rows[0] * h)), int(round(rows[1] * h))
        if r1 - r0 < 8 or w < 8:
            raise SceneTooSmall(f"{ms}: a {r1 - r0}x{w} MS part is too small for full-resolution crops")
        ms_dn = rio_io.read(ms, window=(r0, 0, r1 - r0, w), bands=self.bands).astype(np.float32)
        pan_dn = rio_io.read(pan, window=(r0 * ratio, 0, (r1 - r0) * ratio, w * ratio)).astype(np.float32)
        ms_u = torch.from_numpy(ms_dn / self.scale)
        self.pan = torch.from_numpy(pan_dn / self.scale).contiguous()
        self.lms = upsample(ms_u[None], ratio)[0].contiguous()
        self.ms_nn = ms_u.repeat_interleave(ratio, -2).repeat_interleave(ratio, -1).contiguous()
        self.bad = np.zeros(self.pan.shape[-2:], dtype=bool)
        ms_nd = nodata if nodata is not None else ms_info.nodata
        pan_nd = nodata if nodata is not None else pan_info.nodata
        if ms_nd is not None:
            self.bad |= _ms_holes_on_pan_grid(ms_dn, ms_nd, ratio, self.bad.shape)
        if pan_nd is not None:
            self.bad |= pan_dn[0] == pan_nd
        self._corners: Dict[int, np.ndarray] = {}

    def _clean(self, patch: int) -> np.ndarray:
        if patch not in self._corners:
            c = clean_corners(self.bad, patch)
            w = self.bad.shape[1]
            self._corners[patch] = c[((c // w) % self.ratio == 0) & ((c % w) % self.ratio == 0)]
        return self._corners[patch]

    def size(self, patch: Optional[int]) -> int:
        return _usable_samples(self.bad, patch)

    def __len__(self) -> int:
        return 1

    def can_draw(self, patch: Optional[int]) -> bool:
        return patch is not None and patch % self.ratio == 0 and self._clean(patch).size > 0

    def draw(self, rng: np.random.Generator, patch: Optional[int]) -> Sample:
        if patch is None or patch % self.ratio:
            raise InputError(f"full-resolution crops need a patch that is a multiple of {self.ratio}, got {patch}")
        corners = self._clean(patch)
        if corners.size == 0:
            raise InputError(f"{self.name}: no {patch}x{patch} crop free of nodata")
        r, c = divmod(int(corners[int(rng.integers(corners.size))]), self.pan.shape[-1])
        return tuple(x[..., r:r + patch, c:c + patch] for x in self.full())  # type: ignore[return-value]

    def full(self) -> Sample:
        """The whole part ``(ms_nn, lms, pan)``."""
        return self.ms_nn, self.lms, self.pan


def _model_bands(path: Any, count: int, sensor: Sensor, bands: Optional[Sequence[int]]) -> List[int]:
    """0-based indices of R, G, B, NIR in a file of ``count`` bands: ``bands`` if given, else the sensor's map."""
    if bands is not None:
        idx = [int(b) for b in bands]
        if len(idx) != 4 or len(set(idx)) != 4 or not all(0 <= b < count for b in idx):
            raise InputError(f"{path}: bands must be 4 distinct indices in 0..{count - 1} (R, G, B, NIR), "
                             f"got {list(bands)}")
        return idx
    if count != sensor.n_bands:
        raise InputError(f"{path}: {count} bands but sensor {sensor.name!r} has {sensor.n_bands}; "
                         "give bands = [r, g, b, nir] for this file")
    return list(sensor.model_bands)


def _identify(ms: Any, ms_info: Any, sensor: "str | Sensor | None", bands: Optional[Sequence[int]],
              scale: Optional[float]) -> Tuple[Sensor, List[int], float]:
    """``(sensor, R,G,B,NIR band indices, scale)`` of a scene: arguments first, else the MS file's tags."""
    tag = ms_info.tags.get("SENSOR")
    if sensor is None and not tag:
        raise InputError(f"{ms} has no SENSOR tag: give the scene's sensor (sensor = \"wv3\" in the config)")
    sens = get_sensor(sensor if sensor is not None else tag)  # type: ignore[arg-type]
    return sens, _model_bands(ms, ms_info.count, sens, bands), float(scale or sens.max_value or 2047.0)


class RRScene(_MaskedScene):
    """A published reduced-resolution triplet used as it is: reference ``gt`` (C,H,W) on the PAN grid,
    degraded MS (C,H/ratio,W/ratio), degraded PAN (1,H,W). ``lms`` is the MS bicubic-upsampled onto
    the PAN grid (:func:`pantiny.resample.upsample`), exactly as at inference.

    Args:
        pan, ms, gt: GeoTIFF paths of the triplet.
        sensor: sensor table key (default: the MS file's ``SENSOR`` tag).
        bands: 0-based indices of R, G, B, NIR in the files (default: the sensor's map).
        scale: DN mapped to 1.0 (default: the sensor's maximum).
        nodata: DN marking missing pixels (default: the files' nodata values): reference pixels with
            every band at it, PAN pixels at it, and pixels within the bicubic support (2 MS pixels)
            of an MS pixel with every band at it are never drawn into a patch.
    """

    def __init__(self, pan: "str | os.PathLike[str]", ms: "str | os.PathLike[str]", gt: "str | os.PathLike[str]",
                 sensor: "str | Sensor | None" = None, *, ratio: int = 4, scale: Optional[float] = None,
                 nodata: Optional[float] = None, bands: Optional[Sequence[int]] = None,
                 name: Optional[str] = None) -> None:
        pan_info, ms_info, gt_info = (rio_io.raster_info(p) for p in (pan, ms, gt))
        rio_io.check_sizes((pan_info.height, pan_info.width), (ms_info.height, ms_info.width), ratio)
        if (gt_info.height, gt_info.width) != (pan_info.height, pan_info.width) or gt_info.count != ms_info.count:
            raise InputError(f"{gt}: reference is {gt_info.shape}, expected {ms_info.count} bands on the PAN grid "
                             f"{pan_info.height}x{pan_info.width}")
        self.sensor, self.bands, self.scale = _identify(ms, ms_info, sensor, bands, scale)
        self.ratio = ratio
        self.name = name or f"{self.sensor.name}:{Path(ms).name}"
        sc = np.float32(self.scale)
        gt_dn = rio_io.read(gt, bands=self.bands).astype(np.float32)
        ms_dn = rio_io.read(ms, bands=self.bands).astype(np.float32)
        pan_dn = rio_io.read(pan).astype(np.float32)
        self.gt = torch.from_numpy(gt_dn / sc).contiguous()
        self.ms_lr = torch.from_numpy(ms_dn / sc).contiguous()
        self.pan = torch.from_numpy(pan_dn / sc).contiguous()
        h, w = self.gt.shape[-2:]
        self.lms = upsample(self.ms_lr[None], ratio)[0, :, :h, :w].contiguous()
        self.bad = np.zeros((h, w), dtype=bool)
        nds = [nodata] * 3 if nodata is not None else [gt_info.nodata, ms_info.nodata, pan_info.nodata]
        if nds[0] is not None:
            self.bad |= np.all(gt_dn == nds[0], axis=0)
        if nds[1] is not None:
            self.bad |= _ms_holes_on_pan_grid(ms_dn, nds[1], ratio, (h, w))
        if nds[2] is not None:
            self.bad |= pan_dn[0] == nds[2]
        self._corners: Dict[int, np.ndarray] = {}

    def draw(self, rng: np.random.Generator, patch: Optional[int]) -> Sample:
        """A uniformly placed ``patch`` x ``patch`` crop, free of nodata."""
        if not self.has_nodata:  # the same random draws as before nodata was looked at
            return _crop(self.full(), patch, rng)
        return super().draw(rng, patch)


class H5Dataset:
    """PanCollection-format HDF5 (datasets ``gt``, ``lms``, ``pan`` [, ``ms``]; N x C x H x W; DN).

    The cube's bands are reduced to the model's R, G, B, NIR: by ``bands`` (0-based indices in that
    order) when given, else by the sensor table (8-band WorldView cubes: Coastal..NIR2 -> bands
    4, 2, 1, 6; 4-band B,G,R,NIR cubes: 2, 1, 0, 3). Values are divided by ``scale`` (default: the
    sensor's maximum DN: 2047 for WV2/WV3/QB, 1023 for GF2). h5py is imported here only (the
    ``train`` extra), and samples are read on demand, so the file may be larger than memory.
    """

    def __init__(self, path: "str | os.PathLike[str]", sensor: "str | Sensor", *, scale: Optional[float] = None,
                 bands: Optional[Sequence[int]] = None) -> None:
        try:
            import h5py
        except ImportError:  # pragma: no cover - depends on the install
            raise ConfigError("reading HDF5 training data needs h5py: pip install 'pantiny[train]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such HDF5 file: {self.path}")
        self.sensor = get_sensor(sensor)
        self.scale = float(scale or self.sensor.max_value or 2047.0)
        self.name = f"{self.sensor.name}:{self.path.name}"
        try:
            self._h5: Any = h5py.File(self.path, "r")
        except OSError as e:
            raise InputError(f"{self.path} is not a readable HDF5 file: {e}") from None
        missing = [k for k in ("gt", "lms", "pan") if k not in self._h5]
        if missing:
            self.close()
            raise InputError(f"{self.path} lacks dataset(s) {missing}: expected PanCollection keys gt, ms, lms, pan")
        gt, lms, pan = self._h5["gt"], self._h5["lms"], self._h5["pan"]
        ok = (gt.ndim == 4 and gt.shape == lms.shape and pan.ndim == 4 and pan.shape[0] == gt.shape[0]
              and pan.shape[1] == 1 and pan.shape[2:] == gt.shape[2:])
        if "ms" in self._h5:
            ms = self._h5["ms"]
            ok = ok and ms.ndim == 4 and ms.shape[:2] == gt.shape[:2]
        if not ok or gt.shape[0] == 0:
            shapes = {k: tuple(self._h5[k].shape) for k in ("gt", "ms", "lms", "pan") if k in self._h5}
            self.close()
            raise InputError(f"{self.path}: inconsistent shapes {shapes} (expected N x C x H x W with N > 0, "
                             "lms like gt, pan N x 1 x H x W, ms N x C x H/r x W/r)")
        c = gt.shape[1]
        if bands is not None:
            idx = [int(b) for b in bands]
            if len(idx) != 4 or len(set(idx)) != 4 or not all(0 <= b < c for b in idx):
                self.close()
                raise InputError(f"{self.path}: bands must be 4 distinct indices in 0..{c - 1}, got {list(bands)}")
            self.bands: List[int] = idx
        elif c == self.sensor.n_bands:
            self.bands = list(self.sensor.model_bands)
        else:
            self.close()
            raise InputError(f"{self.path}: {c} bands but sensor {self.sensor.name!r} has {self.sensor.n_bands}; "
                             "give bands = [r, g, b, nir] for this cube")

    def close(self) -> None:
        """Close the HDF5 file."""
        if getattr(self, "_h5", None) is not None:
            self._h5.close()
            self._h5 = None

    def __len__(self) -> int:
        return int(self._h5["gt"].shape[0])

    def size(self, patch: Optional[int]) -> int:
        """Weight in a plain concatenation: the number of cubes."""
        return len(self)

    def get(self, i: int) -> Sample:
        """Sample ``i`` (model bands, unit range), read from disk."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {self.name} ({len(self)} samples)")

        def load(key: str, bands: Optional[Sequence[int]]) -> torch.Tensor:
            a = np.asarray(self._h5[key][i], dtype=np.float32)
            if bands is not None:
                a = a[list(bands)]
            return torch.from_numpy(np.ascontiguousarray(a / np.float32(self.scale)))

        return load("gt", self.bands), load("lms", self.bands), load("pan", None)

    def draw(self, rng: np.random.Generator, patch: Optional[int]) -> Sample:
        """A uniformly drawn cube, cropped to ``patch`` at a uniform position."""
        return _crop(self.get(int(rng.integers(len(self)))), patch, rng)

    def can_draw(self, patch: Optional[int]) -> bool:
        h, w = self._h5["gt"].shape[-2:]
        return patch is None or (patch <= h and patch <= w)

    def eval_samples(self, patch: int, limit: int = 16) -> List[Sample]:
        """The first ``limit`` cubes, whole."""
        return [self.get(i) for i in range(min(len(self), limit))]


@dataclass(frozen=True)
class Source:
    """One ``[[data]]`` entry of a training config.

    * ``kind = "geotiff"``: ``pan`` and ``ms`` of a full-resolution pair, Wald-degraded by
      :class:`WaldScene` (``rows``, ``pan_filter``); with ``gt`` as well, a published reduced-resolution
      triplet used as it is (:class:`RRScene`).
    * ``kind = "hdf5"``: ``path`` and ``sensor`` of a PanCollection cube file.
    * ``kind = "corpus"``: ``path`` of a ``corpus.json`` index (see :func:`corpus_sources`), filtered
      by ``sensors``, ``scenes`` (scene ids) and ``exclude``; expands to one geotiff source per scene.

    ``split`` is ``"train"`` or ``"val"``; ``optional`` sources are skipped when their files are absent.
    ``scale`` overrides the sensor's maximum DN, ``bands`` the sensor's R, G, B, NIR band map.
    ``band_names`` (corpus only) picks the model's R, G, B, NIR from each record's band names, e.g.
    ``["Y", "G", "B", "NIR1"]``: neighbouring bands of 8-band products as stand-ins, more training
    samples from scarce sensors; records without all four names are left out.
    ``nodata`` (DN) marks missing pixels where the files declare none (a corpus record's own
    ``nodata`` wins), e.g. ``0`` for products padded with zeros: no patch or crop touches them.
    """

    kind: str
    sensor: Optional[str] = None
    pan: Optional[str] = None
    ms: Optional[str] = None
    gt: Optional[str] = None
    path: Optional[str] = None
    split: str = "train"
    rows: Tuple[float, float] = (0.0, 1.0)
    optional: bool = False
    scale: Optional[float] = None
    bands: Optional[Tuple[int, ...]] = None
    pan_filter: str = "mtf"
    name: Optional[str] = None
    sensors: Optional[Tuple[str, ...]] = None
    scenes: Optional[Tuple[str, ...]] = None
    exclude: Optional[Tuple[str, ...]] = None
    band_names: Optional[Tuple[str, ...]] = None
    nodata: Optional[float] = None

    def files(self) -> List[Optional[str]]:
        if self.kind in ("hdf5", "corpus"):
            return [self.path]
        return [self.pan, self.ms] + ([self.gt] if self.gt else [])

    def exists(self) -> bool:
        """True when all files of the source are present."""
        return all(f is not None and Path(f).is_file() for f in self.files())

    def describe(self) -> Dict[str, Any]:
        """What identifies the data (file names, not machine-specific paths), for logs and manifests."""
        d: Dict[str, Any] = {"kind": self.kind, "sensor": self.sensor, "split": self.split,
                             "files": [Path(f).name for f in self.files() if f]}
        if self.name:
            d["scene"] = self.name
        if self.kind == "geotiff" and not self.gt:
            d["rows"] = list(self.rows)
            d["pan_filter"] = self.pan_filter
        if self.scale is not None:
            d["scale"] = self.scale
        if self.bands is not None:
            d["bands"] = list(self.bands)
        if self.nodata is not None:
            d["nodata"] = self.nodata
        return d

    def expand(self) -> List["Source"]:
        """The per-scene sources this entry stands for (itself, unless it is a corpus index)."""
        if self.kind != "corpus":
            return [self]
        return corpus_sources(self.path or "", split=self.split, sensors=self.sensors, scenes=self.scenes,
                              exclude=self.exclude, pan_filter=self.pan_filter, band_names=self.band_names,
                              nodata=self.nodata)

    def open(self, stage: str = "rr") -> "WaldScene | RRScene | FRScene | H5Dataset":
        """Open the dataset this (per-scene) entry describes; ``stage="fr"``: full-resolution crops of
        the PAN/MS pair (:class:`FRScene`; a triplet's reference is not used)."""
        if self.kind == "geotiff":
            if not (self.pan and self.ms):
                raise InputError("a geotiff data source needs pan = and ms = paths")
            if stage == "fr":
                return FRScene(self.pan, self.ms, self.sensor, rows=tuple(self.rows),  # type: ignore[arg-type]
                               scale=self.scale, nodata=self.nodata, bands=self.bands, name=self.name)
            if self.gt:
                return RRScene(self.pan, self.ms, self.gt, self.sensor, scale=self.scale, nodata=self.nodata,
                               bands=self.bands, name=self.name)
            return WaldScene(self.pan, self.ms, self.sensor, rows=tuple(self.rows),  # type: ignore[arg-type]
                             scale=self.scale, pan_filter=self.pan_filter, nodata=self.nodata, bands=self.bands,
                             name=self.name)
        if self.kind == "hdf5":
            if stage == "fr":
                raise ConfigError("hdf5 cubes hold reduced-resolution samples: full-resolution training (stage "
                                  "\"fr\") needs geotiff or corpus sources")
            if not (self.path and self.sensor):
                raise InputError("an hdf5 data source needs path = and sensor =")
            return H5Dataset(self.path, self.sensor, scale=self.scale, bands=self.bands)
        if self.kind == "corpus":
            raise InputError("a corpus source stands for many scenes: open its expand() entries")
        raise InputError(f"unknown data kind {self.kind!r}: use 'geotiff', 'hdf5' or 'corpus'")


#: Scene kinds of a corpus index: ``fr`` real full-resolution pair (Wald-degraded for training),
#: ``rr`` published reduced-resolution triplet with reference (used as is), ``rr_nogt`` simulated pair
#: without reference (used like ``fr``).
from ..choices import CORPUS_KINDS  # noqa: E402  (re-exported)


def corpus_sources(index: "str | os.PathLike[str]", *, split: str = "train",
                   sensors: Optional[Sequence[str]] = None, scenes: Optional[Sequence[str]] = None,
                   exclude: Optional[Sequence[str]] = None, pan_filter: str = "mtf",
                   band_names: Optional[Sequence[str]] = None, nodata: Optional[float] = None) -> List[Source]:
    """Per-scene sources from a ``corpus.json`` index (a list of scene records).

    Each record needs ``scene_id``, ``sensor``, ``kind`` (:data:`CORPUS_KINDS`), ``max_dn`` (the
    scene's own normalisation: 255 for 8-bit products, 2047 for 11-bit, ...), ``band_map`` (0-based
    indices of R, G, B, NIR in file order) and ``files`` (``pan``, ``ms`` [, ``gt``], relative to the
    index's folder). Records are kept when their sensor is in ``sensors`` and their id in ``scenes``
    (when given) and not in ``exclude``. A record's ``nodata`` (DN, optional) marks its missing pixels,
    else ``nodata`` (for all records; the files' own nodata values when both are None). Unknown scene
    ids in ``scenes``/``exclude`` are errors, so a typo cannot silently move a held-out scene into training.

    ``band_names`` (4 names from the records' ``bands`` lists) replaces ``band_map``: the model's R, G,
    B, NIR are read from those bands (scene name suffixed ``[Y,G,B,NIR1]``); records that lack one of
    the names are left out.
    """
    import json

    if band_names is not None and len(band_names) != 4:
        raise InputError(f"band_names must name 4 bands (R, G, B, NIR stand-ins), got {list(band_names)}")

    path = Path(index)
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read corpus index {path}: {e}") from None
    if isinstance(records, dict):
        records = records.get("scenes", [])
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a list of scene records")
    ids = {str(r.get("scene_id")) for r in records if isinstance(r, dict)}
    for what, names in (("scenes", scenes), ("exclude", exclude)):
        unknown = sorted(set(names or ()) - ids)
        if unknown:
            raise InputError(f"{path}: {what} lists unknown scene id(s) {unknown}")
    want = {get_sensor(s).name for s in sensors} if sensors else None
    out = []
    for i, r in enumerate(records):
        try:
            sid, kind, files = str(r["scene_id"]), str(r["kind"]), r["files"]
            sensor = get_sensor(r["sensor"]).name
            scale, band_map = float(r["max_dn"]), tuple(int(b) for b in r["band_map"])
            scene_nodata = float(r["nodata"]) if r.get("nodata") is not None else nodata
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: record #{i + 1} is incomplete or invalid ({e})") from None
        if kind not in CORPUS_KINDS:
            raise InputError(f"{path}: scene {sid} has unknown kind {kind!r} (use one of {CORPUS_KINDS})")
        if (want is not None and sensor not in want) or (scenes and sid not in scenes) or (exclude and sid in exclude):
            continue
        name = f"{sensor}/{sid}"
        if band_names is not None:
            have = [str(b) for b in r.get("bands") or ()]
            if not set(band_names) <= set(have):
                continue
            band_map = tuple(have.index(b) for b in band_names)
            name += f"[{','.join(band_names)}]"
        f = {k: str((path.parent / v).resolve()) for k, v in files.items() if v}
        out.append(Source(kind="geotiff", sensor=sensor, pan=f["pan"], ms=f["ms"],
                          gt=f.get("gt") if kind == "rr" else None, split=split, scale=scale, bands=band_map,
                          pan_filter=pan_filter, name=name, nodata=scene_nodata))
    return out
