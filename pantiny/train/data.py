"""Training data: reduced-resolution samples from HDF5 cubes or Wald-degraded GeoTIFF scenes.

A *sample* is ``(gt (4,h,w), lms (4,h,w), pan (1,h,w))`` float32 tensors in the model's unit range
(DN / sensor scale), bands in model order R, G, B, NIR: ``gt`` the reference MS, ``lms`` the
degraded MS upsampled back onto the PAN grid, ``pan`` the degraded PAN on the same grid.

Every dataset draws its patches from a ``numpy.random.Generator`` it is handed, so the
sampler (:mod:`pantiny.train.mixing`) alone decides what batch ``k`` is: training can stop and resume
at any step and see exactly the same data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .. import io as rio_io
from ..mtf import mtf_degrade
from ..resample import upsample
from ..sensors import Sensor, get_sensor

Sample = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def augment(sample: Sample, rng: np.random.Generator) -> Sample:
    """Same random flip / 90-degree rotation (one of the 8 dihedral transforms) applied to all parts."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def t(x: torch.Tensor) -> torch.Tensor:
        x = torch.rot90(x, k, dims=(-2, -1))
        return x.flip(-1) if flip else x

    return tuple(t(x).contiguous() for x in sample)  # type: ignore[return-value]


def _crop(sample: Sample, patch: Optional[int], rng: np.random.Generator) -> Sample:
    h, w = sample[0].shape[-2:]
    if patch is None or (patch == h and patch == w):
        return sample
    if patch > h or patch > w:
        raise ValueError(f"patch {patch} is larger than the {h}x{w} samples of this dataset")
    r, c = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
    return tuple(x[..., r:r + patch, c:c + patch] for x in sample)  # type: ignore[return-value]


class WaldScene:
    """Reduced-resolution training pairs from one full-resolution PAN/MS GeoTIFF pair (Wald's protocol).

    The original MS (model bands) is the reference ``gt``; the inputs are the MS and the PAN each
    filtered with the sensor's MTF (Gaussian matched to the gain at Nyquist, :mod:`pantiny.mtf`) and
    decimated by ``ratio``, the MS then bicubic-upsampled back to the reference grid. So the pairs
    live at MS resolution: a 320x320 MS scene gives a 320x320 reduced-resolution scene.

    ``rows`` keeps a band of the scene, as fractions of its height (e.g. ``(0, 0.8)`` for training,
    ``(0.8, 1)`` held out), so one scene can give disjoint train / validation parts.
    """

    def __init__(self, pan: "str | os.PathLike[str]", ms: "str | os.PathLike[str]", sensor: "str | Sensor | None" = None,
                 *, ratio: int = 4, rows: Tuple[float, float] = (0.0, 1.0), scale: Optional[float] = None) -> None:
        pan_info, ms_info = rio_io.raster_info(pan), rio_io.raster_info(ms)
        rio_io.check_pair(pan_info, ms_info, ratio)
        self.sensor = get_sensor(sensor or ms_info.tags.get("SENSOR") or _no_sensor(ms))
        if ms_info.count != self.sensor.n_bands:
            raise ValueError(f"{ms}: {ms_info.count} bands but sensor {self.sensor.name!r} has {self.sensor.n_bands}")
        self.scale = float(scale or self.sensor.max_value or 2047.0)
        self.name = f"{self.sensor.name}:{Path(ms).name}"
        gt = torch.from_numpy(rio_io.read(ms, bands=self.sensor.model_bands).astype(np.float32) / self.scale)
        p = torch.from_numpy(rio_io.read(pan).astype(np.float32) / self.scale)
        h, w = gt.shape[-2:]
        p = p[:, :h * ratio, :w * ratio]
        ms_lr = mtf_degrade(gt[None], self.sensor.model_mtf, ratio)
        pan_lr = mtf_degrade(p[None], self.sensor.mtf_pan, ratio)[0]
        lms = upsample(ms_lr, ratio)[0]
        r0, r1 = int(round(rows[0] * h)), int(round(rows[1] * h))
        if r1 - r0 < 8:
            raise ValueError(f"rows={rows} leaves {r1 - r0} rows of {ms}: too few")
        self.gt, self.lms, self.pan = gt[:, r0:r1], lms[:, r0:r1], pan_lr[:, r0:r1]

    def __len__(self) -> int:
        return 1

    def draw(self, rng: np.random.Generator, patch: Optional[int]) -> Sample:
        return _crop((self.gt, self.lms, self.pan), patch, rng)

    def full(self) -> Sample:
        return self.gt, self.lms, self.pan


def _no_sensor(path: "str | os.PathLike[str]") -> str:
    raise ValueError(f"{path} has no SENSOR tag: give the scene's sensor in the config (sensor = \"wv3\")")


class H5Dataset:
    """PanCollection-format HDF5 (``gt``, ``lms``, ``pan`` [, ``ms``], N x C x H x W, DN).

    8-band cubes are reduced to the model's R, G, B, NIR with the sensor table; values are divided by
    ``scale`` (default: the sensor's max DN, 2047 for WV2/WV3/QB, 1023 for GF2). Read lazily:
    only the drawn samples are loaded, so the file may be larger than memory.
    """

    def __init__(self, path: "str | os.PathLike[str]", sensor: "str | Sensor", *, scale: Optional[float] = None) -> None:
        try:
            import h5py
        except ImportError:  # pragma: no cover - depends on the install
            raise ImportError("reading HDF5 needs h5py: pip install 'pantiny[train]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such HDF5 file: {self.path}")
        self.sensor = get_sensor(sensor)
        self.scale = float(scale or self.sensor.max_value or 2047.0)
        self.name = f"{self.sensor.name}:{self.path.name}"
        self._h5 = h5py.File(self.path, "r")
        missing = [k for k in ("gt", "lms", "pan") if k not in self._h5]
        if missing:
            raise ValueError(f"{self.path} lacks dataset(s) {missing}: expected PanCollection keys gt, ms, lms, pan")
        gt, lms, pan = self._h5["gt"], self._h5["lms"], self._h5["pan"]
        if gt.ndim != 4 or gt.shape != lms.shape or pan.shape[0] != gt.shape[0] or pan.shape[1] != 1 \
                or pan.shape[2:] != gt.shape[2:]:
            raise ValueError(f"{self.path}: inconsistent shapes gt {gt.shape}, lms {lms.shape}, pan {pan.shape} "
                             "(expected N x C x H x W, pan N x 1 x H x W)")
        if gt.shape[1] == self.sensor.n_bands:
            self.bands: Sequence[int] = list(self.sensor.model_bands)
        elif gt.shape[1] == 4:
            self.bands = [0, 1, 2, 3]
        else:
            raise ValueError(f"{self.path}: {gt.shape[1]} bands, sensor {self.sensor.name!r} has {self.sensor.n_bands}")

    def __len__(self) -> int:
        return int(self._h5["gt"].shape[0])

    def get(self, i: int) -> Sample:
        def load(key: str, bands: Optional[Sequence[int]]) -> torch.Tensor:
            a = np.asarray(self._h5[key][i], dtype=np.float32)
            if bands is not None:
                a = a[list(bands)]
            return torch.from_numpy(a / self.scale)

        return load("gt", self.bands), load("lms", self.bands), load("pan", None)

    def draw(self, rng: np.random.Generator, patch: Optional[int]) -> Sample:
        return _crop(self.get(int(rng.integers(len(self)))), patch, rng)

    def full(self) -> Sample:
        raise NotImplementedError("use get(i) for HDF5 samples")


@dataclass(frozen=True)
class Source:
    """One entry of a training config's ``[[data]]`` list."""

    kind: str  # "geotiff" or "hdf5"
    sensor: Optional[str] = None
    pan: Optional[str] = None
    ms: Optional[str] = None
    path: Optional[str] = None
    split: str = "train"  # "train" or "val"
    rows: Tuple[float, float] = (0.0, 1.0)
    optional: bool = False

    def exists(self) -> bool:
        files = [self.path] if self.kind == "hdf5" else [self.pan, self.ms]
        return all(f is not None and Path(f).is_file() for f in files)

    def open(self) -> "WaldScene | H5Dataset":
        if self.kind == "geotiff":
            if not (self.pan and self.ms):
                raise ValueError("a geotiff data source needs pan = and ms = paths")
            return WaldScene(self.pan, self.ms, self.sensor, rows=tuple(self.rows))  # type: ignore[arg-type]
        if self.kind == "hdf5":
            if not (self.path and self.sensor):
                raise ValueError("an hdf5 data source needs path = and sensor =")
            return H5Dataset(self.path, self.sensor)
        raise ValueError(f"unknown data kind {self.kind!r}: use 'geotiff' or 'hdf5'")
