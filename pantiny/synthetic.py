"""Synthetic but realistic-looking PAN/MS scenes, for the bundled sample, the examples and the tests.

A scene is a label map of land-cover parcels (vegetation, bare soil, water, concrete, roofs) with
roads and buildings, each class with its own spectral signature over the sensor's MS bands, plus
textured within-class variation. The high-resolution MS ("ground truth") is degraded to the MS grid
by the sensor's MTF filter and decimation (Wald's protocol), and the PAN is a weighted sum of the
visible/NIR bands of the ground truth with a little noise. Values are digital numbers in the
sensor's bit depth.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from .errors import InputError
from .mtf import mtf_degrade
from .sensors import Sensor, get_sensor

# Reflectance-like signatures per class, keyed by band name (unlisted bands interpolate by wavelength).
_WAVELENGTH = {"Coastal": 425, "B": 480, "G": 545, "Y": 605, "R": 660, "RedEdge": 725, "NIR": 830,
               "NIR1": 830, "NIR2": 950}
_CLASS_CURVES = {  # reflectance at 425, 480, 545, 605, 660, 725, 830, 950 nm
    "vegetation": [0.04, 0.05, 0.10, 0.08, 0.05, 0.25, 0.45, 0.42],
    "soil": [0.10, 0.12, 0.16, 0.20, 0.24, 0.27, 0.30, 0.32],
    "water": [0.09, 0.08, 0.06, 0.04, 0.03, 0.02, 0.01, 0.01],
    "concrete": [0.25, 0.27, 0.29, 0.30, 0.30, 0.31, 0.32, 0.32],
    "roof": [0.12, 0.11, 0.10, 0.12, 0.18, 0.20, 0.22, 0.23],
}
_GRID = [425, 480, 545, 605, 660, 725, 830, 950]


def _signature(cls: str, bands) -> np.ndarray:
    return np.array([np.interp(_WAVELENGTH.get(b, 660), _GRID, _CLASS_CURVES[cls]) for b in bands])


def _smooth_noise(rng: np.random.Generator, h: int, w: int, beta: float = 2.0) -> np.ndarray:
    """Zero-mean, unit-std noise with a 1/f^beta power spectrum."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spec[0, 0] = 0
    x = np.fft.irfft2(spec, s=(h, w))
    return (x - x.mean()) / (x.std() + 1e-12)


def make_scene(size: int = 256, sensor: "str | Sensor" = "wv3", seed: int = 0, ratio: int = 4,
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(pan, ms, gt)`` as uint16 digital numbers (uint8 for 8-bit sensors).

    Shapes: pan (1, size, size), ms (C, size/ratio, size/ratio), gt (C, size, size), with C the
    sensor's band count. ``size`` must be a multiple of ``ratio``.
    """
    s = get_sensor(sensor)
    if size % ratio:
        raise InputError(f"size {size} must be a multiple of ratio {ratio}")
    rng = np.random.default_rng(seed)
    h = w = size
    classes = list(_CLASS_CURVES)
    # Parcels: nearest-seed regions on a warped grid give irregular field shapes.
    n_seeds = max(8, (size // 48) ** 2)
    sy, sx = rng.uniform(0, h, n_seeds), rng.uniform(0, w, n_seeds)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warp = 6.0 * _smooth_noise(rng, h, w, 3.0)
    parcel = np.empty((h, w), np.int64)
    step = max(1, (32 << 20) // (n_seeds * w))  # rows per chunk: keeps the distance cube ~256 MB
    for r in range(0, h, step):
        y, x, wp = yy[r:r + step], xx[r:r + step], warp[r:r + step]
        d = (y[None] + wp - sy[:, None, None]) ** 2 + (x[None] - wp - sx[:, None, None]) ** 2
        parcel[r:r + step] = d.argmin(0)
    parcel_class = rng.choice([0, 0, 1, 1, 2, 3, 4], size=n_seeds)
    label = parcel_class[parcel]
    # Roads: a few straight concrete lines; buildings: small roof rectangles.
    for _ in range(max(2, size // 128)):
        a, c = rng.uniform(0, np.pi), rng.uniform(-0.5, 0.5) * size
        dist = np.abs((xx - w / 2) * np.cos(a) + (yy - h / 2) * np.sin(a) - c)
        label[dist < rng.uniform(1.5, 3.5)] = 3
    for _ in range(size // 8):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        bh, bw = rng.integers(3, 12), rng.integers(3, 12)
        label[y0:y0 + bh, x0:x0 + bw] = 4
    sig = np.stack([_signature(c, s.bands) for c in classes])  # (K, C)
    gt = sig[label].transpose(2, 0, 1)  # (C, H, W)
    texture = 1.0 + 0.08 * _smooth_noise(rng, h, w, 1.5) + 0.04 * rng.normal(size=(h, w))
    gt = gt * texture[None] * (1.0 + 0.03 * rng.normal(size=(len(s.bands), 1, 1)))
    max_value = s.max_value or 2047.0
    gt = np.clip(gt * 2.2 * max_value, 1, max_value)
    # PAN: broad band covering visible and NIR (weights favour G, R, NIR as real PAN responses do).
    wts = np.array([{"Coastal": 0.05, "B": 0.15, "G": 0.25, "Y": 0.15, "R": 0.25, "RedEdge": 0.1,
                     "NIR": 0.2, "NIR1": 0.2, "NIR2": 0.05}.get(b, 0.1) for b in s.bands])
    pan = (wts[:, None, None] * gt).sum(0, keepdims=True) / wts.sum()
    pan = np.clip(pan + rng.normal(scale=0.002 * max_value, size=pan.shape), 1, max_value)
    ms = mtf_degrade(torch.from_numpy(gt[None]).float(), s.mtf_ms, ratio)[0].numpy()
    dtype = np.uint8 if max_value <= 255 else np.uint16
    as_dn = lambda a: np.clip(np.rint(a), 0, max_value).astype(dtype)  # noqa: E731
    return as_dn(pan), as_dn(ms), as_dn(gt)
