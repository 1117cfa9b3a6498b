"""All-in-one mixing: several sensors' datasets behind one deterministic batch sampler.

``balance="none"`` is the paper's plain concatenation (``ConcatDataset`` + shuffle): a sample comes
from dataset ``d`` with probability ``len(d) / sum(len)``. ``balance="sensor"`` first picks a
sensor uniformly, then a dataset of that sensor by size, so a small sensor set is not drowned out.

Batch ``k`` depends only on ``(seed, k)``: resuming at step ``k`` sees exactly the batches an
uninterrupted run would have seen, with no loader state to save.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .data import augment

BALANCES = ("none", "sensor")


class Mixer:
    """Draws batches ``(gt, lms, pan)`` (B,4,P,P)/(B,4,P,P)/(B,1,P,P) and their sensor names."""

    def __init__(self, datasets: Sequence, *, patch: Optional[int], batch: int, seed: int,
                 balance: str = "none", augment: bool = False) -> None:
        if not datasets:
            raise ValueError("no training data: the config lists no usable [[data]] source with split = \"train\"")
        if balance not in BALANCES:
            raise ValueError(f"balance must be one of {BALANCES}, got {balance!r}")
        self.datasets, self.patch, self.batch, self.seed = list(datasets), patch, batch, seed
        self.augment = augment
        sizes = np.array([len(d) for d in self.datasets], dtype=np.float64)
        if balance == "none":
            self.probs = sizes / sizes.sum()
        else:
            sensors = [d.sensor.name for d in self.datasets]
            per_sensor = Counter()
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
        rng = np.random.default_rng([self.seed, step])
        which = rng.choice(len(self.datasets), size=self.batch, p=self.probs)
        parts, sensors = [], []
        for i in which:
            d = self.datasets[int(i)]
            s = d.draw(rng, self.patch)
            parts.append(augment(s, rng) if self.augment else s)
            sensors.append(d.sensor.name)
        gt, lms, pan = (torch.stack([p[j] for p in parts]) for j in range(3))
        return gt, lms, pan, sensors
