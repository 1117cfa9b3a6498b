"""One TOML file describes a training run completely (stdlib ``tomllib``).

    [run]                       # everything optional except steps
    model = "pantiny-big"       # or "pantiny-small"
    steps = 300                 # optimiser steps (the cosine schedule spans them)
    batch = 16
    patch = 64                  # reduced-resolution patch side in pixels (the PAN grid of the pair)
    seed = 123
    device = "auto"             # auto | cpu | cuda
    balance = "none"            # "none" (paper: plain concatenation) | "sensor"
    augment = false             # random flips / 90-degree rotations
    compile = false             # torch.compile the training step (~1.5x on CPU, needs a C++ compiler)
    checkpoint_every = 100
    validate_every = 100
    log_every = 10
    out = "runs/small"          # relative paths are relative to this file

    [optim]                     # Adam with L2 weight decay, cosine annealing to eta_min
    lr = 5e-4
    betas = [0.9, 0.999]
    weight_decay = 1e-4
    eta_min = 1e-6

    [loss]                      # see pantiny.train.loss
    charbonnier = 1.5
    ssim = 4.0
    focal = 1.5
    focal_as_l1 = false

    [[data]]                    # as many as needed; split = "train" or "val"
    kind = "geotiff"            # Wald-degraded full-resolution scene (or kind = "hdf5", path = ...)
    pan = "data/sample_pan.tif"
    ms = "data/sample_ms.tif"
    sensor = "wv3"
    rows = [0.0, 0.8]           # band of the scene used (fractions of its height)
    optional = false            # true: skip silently when the files are absent

Unknown keys are errors, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .data import Source


@dataclass
class RunConfig:
    steps: int
    model: str = "pantiny-big"
    batch: int = 16
    patch: int = 64
    seed: int = 123
    device: str = "auto"
    balance: str = "none"
    augment: bool = False
    compile: bool = False
    checkpoint_every: int = 100
    validate_every: int = 100
    log_every: int = 10
    out: str = "runs/pantiny"


@dataclass
class OptimConfig:
    lr: float = 5e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    eta_min: float = 1e-6


@dataclass
class LossConfig:
    charbonnier: float = 1.5
    ssim: float = 4.0
    focal: float = 1.5
    focal_as_l1: bool = False


@dataclass
class TrainConfig:
    run: RunConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: List[Source] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, table: Dict[str, Any], where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{where}]; known: {sorted(known)}")
    table = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    try:
        return cls(**table)
    except TypeError as e:
        raise ValueError(f"[{where}]: {e}") from None


def from_dict(d: Dict[str, Any], base: Path = Path(".")) -> TrainConfig:
    """Validate a parsed config; relative paths are made absolute against ``base``."""
    unknown = sorted(set(d) - {"run", "optim", "loss", "data"})
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; expected [run], [optim], [loss], [[data]]")
    if "run" not in d or "steps" not in d["run"]:
        raise ValueError("the config needs [run] steps = N")
    run = _build(RunConfig, dict(d["run"]), "run")
    for name in ("steps", "batch", "patch", "checkpoint_every", "validate_every", "log_every"):
        if int(getattr(run, name)) < 1:
            raise ValueError(f"[run] {name} must be >= 1, got {getattr(run, name)}")
    run.out = str((base / run.out).resolve())
    sources = []
    for i, s in enumerate(d.get("data", [])):
        s = dict(s)
        for key in ("pan", "ms", "path"):
            if s.get(key):
                s[key] = str((base / s[key]).resolve())
        src = _build(Source, s, f"data #{i + 1}")
        if src.split not in ("train", "val"):
            raise ValueError(f"[data #{i + 1}] split must be 'train' or 'val', got {src.split!r}")
        sources.append(src)
    return TrainConfig(run, _build(OptimConfig, dict(d.get("optim", {})), "optim"),
                       _build(LossConfig, dict(d.get("loss", {})), "loss"), sources)


def load_config(path: "str | Path") -> TrainConfig:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such config file: {p}")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p} is not valid TOML: {e}") from None
    return from_dict(d, p.resolve().parent)
