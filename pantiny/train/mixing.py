"""All-in-one mixing: several sensors' datasets behind one deterministic batch sampler.

``balance="none"`` is the paper's plain concatenation (``ConcatDataset`` + shuffle): a sample comes
from dataset ``d`` with probability ``size(d) / sum(size)``, where ``size`` is the number of cubes of
an HDF5 file or the number of patch-sized tiles a GeoTIFF scene holds. ``balance="sensor"`` first
picks a sensor uniformly, then one of its datasets by size, so a small sensor set is not drowned out.

Batch ``k`` depends only on ``(seed, k)``: resuming at step ``k`` sees exactly the batches an
uninterrupted run would have seen, with no loader state to save.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..choices import BALANCES  # noqa: E402  (re-exported)
from ..errors import ConfigError
from .data import augment


def _size(d: Any, patch: Optional[int]) -> int:
    size = getattr(d, "size", None)
    return int(size(patch)) if callable(size) else len(d)


class Mixer:
    """Draws batches ``(gt (B,4,P,P), lms (B,4,P,P), pan (B,1,P,P), sensors [B names])``.

    Args:
        datasets: objects with ``.sensor`` (a :class:`~pantiny.sensors.Sensor`), ``len()``, optionally
            ``size(patch)``, and ``draw(rng, patch) -> (gt, lms, pan)``.
        patch: patch side in pixels (None: whole samples, which must then share one size).
        batch: samples per batch.
        seed: base seed; batch ``k`` uses ``numpy.random.default_rng([seed, k])``.
        balance: ``"none"`` or ``"sensor"`` (see module docstring).
        augment: apply a random flip / 90-degree rotation to every sample.
        pan_gain: > 1: multiply each sample's PAN by a log-uniform random gain in ``[1/pan_gain,
            pan_gain]`` (the target is unchanged): real products do not share one radiometric scale
            between PAN and MS, and the model must not rely on it.
    """

    def __init__(self, datasets: Sequence[Any], *, patch: Optional[int], batch: int, seed: int,
                 balance: str = "none", augment: bool = False, pan_gain: float = 1.0) -> None:
        if not datasets:
            raise ConfigError("no training data: the config lists no usable [[data]] source with split = \"train\"")
        if balance not in BALANCES:
            raise ConfigError(f"balance must be one of {BALANCES}, got {balance!r}")
        if batch < 1:
            raise ConfigError(f"batch must be >= 1, got {batch}")
        self.datasets, self.patch, self.batch, self.seed = list(datasets), patch, int(batch), int(seed)
        self.augment = bool(augment)
        if not pan_gain >= 1.0:
            raise ConfigError(f"pan_gain must be >= 1 (1 = off), got {pan_gain}")
        self.log_gain = float(np.log(pan_gain))
        self.balance = balance
        sizes = np.array([_size(d, patch) for d in self.datasets], dtype=np.float64)
        if (sizes <= 0).any():
            raise ConfigError("every training dataset needs at least one sample")
        if balance == "none":
            self.probs = sizes / sizes.sum()
        else:
            sensors = [d.sensor.name for d in self.datasets]
            per_sensor: Counter = Counter()
            for s, n in zip(sensors, sizes):
                per_sensor[s] += n
            self.probs = np.array([n / per_sensor[s] / len(per_sensor) for s, n in zip(sensors, sizes)])

    def sensor_shares(self) -> Dict[str, float]:
        """Expected fraction of samples from each sensor."""
        out: Dict[str, float] = {}
        for d, p in zip(self.datasets, self.probs):
            out[d.sensor.name] = out.get(d.sensor.name, 0.0) + float(p)
        return out

    def batch_at(self, step: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[str]]:
        """Batch number ``step`` (0-based), a pure function of ``(seed, step)``."""
        rng = np.random.default_rng([self.seed, int(step)])
        which = rng.choice(len(self.datasets), size=self.batch, p=self.probs)
        parts, sensors = [], []
        for i in which:
            d = self.datasets[int(i)]
            s = d.draw(rng, self.patch)
            s = augment(s, rng) if self.augment else s
            if self.log_gain > 0:  # drawn only when on, so runs without it keep their random stream
                s = (s[0], s[1], s[2] * float(np.exp(rng.uniform(-self.log_gain, self.log_gain))))
            parts.append(s)
            sensors.append(d.sensor.name)
        shapes = {tuple(p[0].shape) for p in parts}
        if len(shapes) > 1:
            raise ConfigError(f"samples of different sizes {sorted(shapes)} in one batch: set a patch size")
        gt, lms, pan = (torch.stack([p[j] for p in parts]) for j in range(3))
        return gt, lms, pan, sensors
