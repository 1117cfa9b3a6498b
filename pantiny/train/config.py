"""One TOML file describes a training run completely (read with the stdlib ``tomllib``).

    [run]                       # everything optional except steps
    model = "pantiny-big"       # or "pantiny-small"
    steps = 300                 # optimiser steps (the cosine schedule spans them)
    batch = 16
    patch = 64                  # reduced-resolution patch side in pixels (the PAN grid of the pair)
    seed = 123
    device = "auto"             # auto | cpu | cuda | cuda:1
    balance = "none"            # "none" (paper: plain concatenation) | "sensor"
    augment = false             # random flips / 90-degree rotations
    pan_gain = 1.0              # > 1: each sample's PAN times a random gain in [1/g, g] (log-uniform),
                                # so the model copes with PAN/MS radiometric mismatch of real products
    compile = false             # torch.compile the training step (needs a C++ compiler)
    checkpoint_every = 100      # steps between checkpoints (and one at the end)
    validate_every = 100        # steps between validations (and one at the end)
    log_every = 10              # steps between log lines
    out = "runs/small"          # run folder; relative paths are relative to this file
    stage = "rr"                # "rr": reduced-resolution pairs, composite loss (stage 1);
                                # "fr": full-resolution pairs, no reference (stage 2, see [loss]);
                                # "joint": both every step, composite + full-resolution loss
    fr_batch = 8                # stage "joint": full-resolution crops per step (besides `batch`)
    fr_patch = 128              # stage "joint": their side in PAN pixels (stage "fr" uses `patch`)
    fr_sensors = []             # stage "joint": sensors whose scenes give full-resolution crops (empty: all)
    init = "runs/s1/checkpoint.pt"  # start from these weights (checkpoint.pt, .safetensors, manifest name)
    ema = 0.0                   # > 0: also keep an exponential moving average of the weights with this
                                # decay per step (e.g. 0.998); validation and export then use the average

    [optim]                     # Adam with L2 weight decay, cosine annealing to eta_min
    lr = 5e-4
    betas = [0.9, 0.999]
    weight_decay = 1e-4
    eta_min = 1e-6

    [loss]                      # see pantiny.train.loss
    charbonnier = 1.5
    ssim = 4.0
    focal = 1.5
    focal_as_l1 = false         # true: the released code's behaviour (focal term -> L1)
    sam = 0.0                   # spectral-angle term (radians), ours; 0 = the paper's loss
    spectral = 1.0              # stages "fr", "joint": spectral consistency weight (pantiny.train.fr_loss)
    spatial = 1.0               # stages "fr", "joint": spatial consistency weight

    [[data]]                    # as many as needed
    kind = "geotiff"            # Wald-degraded full-resolution scene ...
    pan = "data/sample_pan.tif"
    ms = "data/sample_ms.tif"
    sensor = "wv3"              # default: the file's SENSOR tag
    split = "train"             # "train" or "val"
    rows = [0.0, 0.8]           # band of the scene used (fractions of its height)
    pan_filter = "mtf"          # "mtf" (sensor PAN MTF + decimation), "bicubic", or "mixed" (random blend per patch)
    # nodata = 0                # DN of missing pixels where the files declare none (zero-padded products)
    optional = false            # true: skip silently when the files are absent

    [[data]]
    kind = "hdf5"               # ... or a PanCollection HDF5 file (gt, ms, lms, pan)
    path = "train_wv3.h5"
    sensor = "wv3"              # needed: band map and scale (2047 / 1023)
    # scale = 255.0             # override the sensor's maximum DN
    # bands = [0, 1, 2, 3]      # override the R, G, B, NIR band indices of the cube

Unknown keys and wrongly typed values are errors, so a typo cannot silently fall back to a default.
:func:`to_toml` writes a resolved config back (the run folder gets one as ``config.toml``), which
:func:`load_config` reads again to repeat the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

try:  # Python >= 3.11
    import tomllib
except ImportError:  # pragma: no cover - Python 3.9 / 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:
        tomllib = None  # type: ignore[assignment]

from ..choices import DATA_KINDS, TRAIN_STAGES, check
from ..errors import ConfigError, InputError
from ..models import MODELS
from ..sensors import get_sensor
from .data import PAN_FILTERS, Source
from .mixing import BALANCES


@dataclass
class RunConfig:
    """``[run]``: model, schedule length, batching, seeding, device and output folder."""

    steps: int
    model: str = "pantiny-big"
    batch: int = 16
    patch: int = 64
    seed: int = 123
    device: str = "auto"
    balance: str = "none"
    augment: bool = False
    pan_gain: float = 1.0
    compile: bool = False
    checkpoint_every: int = 100
    validate_every: int = 100
    log_every: int = 10
    out: str = "runs/pantiny"
    stage: str = "rr"
    init: Optional[str] = None
    fr_batch: int = 8
    fr_patch: int = 128
    fr_sensors: Tuple[str, ...] = ()
    ema: float = 0.0


@dataclass
class OptimConfig:
    """``[optim]``: Adam (L2 weight decay, not AdamW) and the cosine schedule's floor."""

    lr: float = 5e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    eta_min: float = 1e-6


@dataclass
class LossConfig:
    """``[loss]``: weights of :class:`~pantiny.train.loss.CompositeLoss`."""

    charbonnier: float = 1.5
    ssim: float = 4.0
    focal: float = 1.5
    focal_as_l1: bool = False
    sam: float = 0.0
    spectral: float = 1.0
    spatial: float = 1.0


@dataclass
class TrainConfig:
    """A whole training run."""

    run: RunConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: List[Source] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_type_ok(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
    return True


def _build(cls: Any, table: Dict[str, Any], where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [{where}]; known: {sorted(known)}")
    for k, v in table.items():
        if not _type_ok(v, hints[k]):
            raise ConfigError(f"[{where}] {k} = {v!r} has the wrong type (expected {hints[k]})")
    table = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore
               and f.name not in table]
    if missing:
        raise ConfigError(f"[{where}] needs {', '.join(missing)}")
    return cls(**table)


def from_dict(d: Dict[str, Any], base: "str | Path" = ".") -> TrainConfig:
    """Validate a parsed config; relative paths are made absolute against the folder ``base``."""
    base = Path(base)
    unknown = sorted(set(d) - {"run", "optim", "loss", "data"})
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; expected [run], [optim], [loss], [[data]]")
    if "run" not in d or "steps" not in d["run"]:
        raise ConfigError("the config needs [run] steps = N")
    run = _build(RunConfig, dict(d["run"]), "run")
    for name in ("steps", "batch", "patch", "checkpoint_every", "validate_every", "log_every", "fr_batch"):
        if int(getattr(run, name)) < 1:
            raise ConfigError(f"[run] {name} must be >= 1, got {getattr(run, name)}")
    if run.model not in MODELS:
        raise ConfigError(f"[run] model {run.model!r} is unknown; use one of {sorted(MODELS)}")
    if not 0.0 <= run.ema < 1.0:
        raise ConfigError(f"[run] ema must be in [0, 1) (0 = off, e.g. 0.998), got {run.ema}")
    if not run.pan_gain >= 1.0:
        raise ConfigError(f"[run] pan_gain must be >= 1 (1 = off), got {run.pan_gain}")
    if run.balance not in BALANCES:
        raise ConfigError(f"[run] balance must be one of {BALANCES}, got {run.balance!r}")
    run.out = str((base / run.out).resolve())
    check(run.stage, TRAIN_STAGES, "[run] stage")
    if run.init is not None and run.init.endswith((".pt", ".safetensors")):
        run.init = str((base / run.init).resolve())
    if run.stage in ("fr", "joint") and run.init is None:
        raise ConfigError(f"[run] stage = \"{run.stage}\" fine-tunes trained weights: give [run] init = "
                          "\"<checkpoint.pt | .safetensors | manifest name>\"")
    # full-resolution crops start on MS pixels and need room for the loss's windows
    if run.stage == "fr" and (run.patch % 4 or run.patch < 32):
        raise ConfigError(f"[run] stage = \"fr\" needs a patch that is a multiple of 4 and >= 32, got {run.patch}")
    if run.fr_sensors:
        if run.stage != "joint":
            raise ConfigError(f"[run] fr_sensors selects the full-resolution half of stage \"joint\"; "
                              f"this run's stage is {run.stage!r}")
        try:  # canonical names, so "GaoFen-2" and "gf2" select the same scenes
            run.fr_sensors = tuple(get_sensor(s).name for s in run.fr_sensors)
        except InputError as e:
            raise ConfigError(f"[run] fr_sensors: {e}") from None
    if run.stage == "joint" and (run.fr_patch % 4 or run.fr_patch < 32):
        raise ConfigError(f"[run] fr_patch must be a multiple of 4 and >= 32, got {run.fr_patch}")
    optim = _build(OptimConfig, dict(d.get("optim", {})), "optim")
    if not (optim.lr > 0 and 0 <= optim.eta_min <= optim.lr and optim.weight_decay >= 0
            and all(0 <= b < 1 for b in optim.betas)):
        raise ConfigError(f"[optim] needs lr > 0, 0 <= eta_min <= lr, weight_decay >= 0, betas in [0, 1): {optim}")
    loss = _build(LossConfig, dict(d.get("loss", {})), "loss")
    if min(loss.charbonnier, loss.ssim, loss.focal, loss.sam, loss.spectral, loss.spatial) < 0:
        raise ConfigError(f"[loss] weights must be >= 0: {loss}")
    data = d.get("data", [])
    if not isinstance(data, list):
        raise ConfigError("data must be an array of tables: write [[data]] (double brackets)")
    sources = []
    for i, s in enumerate(data):
        where = f"data #{i + 1}"
        s = dict(s) if isinstance(s, dict) else s
        if isinstance(s, dict):
            for key in ("pan", "ms", "gt", "path"):
                if isinstance(s.get(key), str):
                    s[key] = str((base / s[key]).resolve())
        src = _build(Source, s, where)
        check(src.kind, DATA_KINDS, f"[{where}] kind")
        if src.split not in ("train", "val"):
            raise ConfigError(f"[{where}] split must be 'train' or 'val', got {src.split!r}")
        if src.pan_filter not in PAN_FILTERS:
            raise ConfigError(f"[{where}] pan_filter must be one of {PAN_FILTERS}, got {src.pan_filter!r}")
        sources.append(src)
    return TrainConfig(run, optim, loss, sources)


def load_config(path: "str | Path") -> TrainConfig:
    """Read and validate a TOML training config (paths relative to the file's folder)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such config file: {p}")
    if tomllib is None:  # pragma: no cover - Python < 3.11 without tomli
        raise ConfigError("reading TOML configs needs Python >= 3.11 or the tomli package (pip install tomli)")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not a UTF-8 text file") from None
    return from_dict(d, p.resolve().parent)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # shortest round-tripping form, e.g. 0.0005 or 1e-06
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(cfg: TrainConfig) -> str:
    """The config as TOML text with every value spelled out (absolute paths; ``None`` values left out)."""
    d = cfg.to_dict()
    lines = ["# Resolved pantiny training config: `pantiny train run --config THIS_FILE` repeats the run."]
    for table in ("run", "optim", "loss"):
        lines.append(f"\n[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in d[table].items() if v is not None]
    for s in d["data"]:
        lines.append("\n[[data]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in s.items() if v is not None]
    return "\n".join(lines) + "\n"
