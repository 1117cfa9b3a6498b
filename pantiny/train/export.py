"""Export a training checkpoint as a safetensors weights file plus its weights-manifest entry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

import torch

from ..errors import InputError
from ..models import build_model
from ..weights import MANIFEST_PATH, PACKAGE_DIR, save_weights, upsert_manifest_entry
from .loop import initial_weights, load_checkpoint, trained_weights

NORMALISATION = ("DN / sensor maximum (2047 for 11-bit WV2/WV3/QB/IKONOS, 1023 for 10-bit GF2, 255 for "
                 "8-bit); MS bicubic-upsampled onto the PAN grid; bands R, G, B, NIR")


def manifest_file_field(out: "str | os.PathLike[str]", manifest: "str | os.PathLike[str] | None") -> str:
    """The ``file`` value under which :func:`pantiny.weights.resolve_weights_file` finds ``out``.

    Relative paths are looked up beside the manifest, then in the package folder: so ``out`` is
    written relative to the manifest's folder when it lies below it, relative to the package when
    the package manifest is updated with a file inside the package, and absolute otherwise.
    """
    out_p = Path(out).resolve()
    bases = [Path(manifest).resolve().parent] if manifest is not None else [MANIFEST_PATH.resolve().parent]
    bases.append(PACKAGE_DIR.resolve())
    for base in bases:
        try:
            return out_p.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(out_p)


def interpolate_weights(init: Dict[str, torch.Tensor], trained: Dict[str, torch.Tensor],
                        alpha: float) -> Dict[str, torch.Tensor]:
    """``(1 - alpha) * init + alpha * trained`` key by key (WiSE-FT, Wortsman et al. 2022): a fine-tuned
    model moved back part of the way toward the weights it started from. Non-float entries come from
    ``trained``. ``alpha`` in (0, 1]; 1 returns ``trained``."""
    if not 0.0 < alpha <= 1.0:
        raise InputError(f"the interpolation weight must be in (0, 1] (1 = the trained weights), got {alpha}")
    if set(init) != set(trained) or any(init[k].shape != t.shape for k, t in trained.items()):
        raise InputError("the init weights and the trained weights are of different architectures")
    out = {}
    for k, t in trained.items():
        if t.is_floating_point():
            out[k] = ((1.0 - alpha) * init[k].to(torch.float64) + alpha * t.to(torch.float64)).to(t.dtype)
        else:
            out[k] = t
    return out


def export(checkpoint: "str | os.PathLike[str]", name: str, out: "str | os.PathLike[str]", *,
           manifest: "str | os.PathLike[str] | None" = None, description: str = "",
           wise: float = 1.0, init: "str | os.PathLike[str] | None" = None) -> Dict[str, Any]:
    """Write ``out`` (safetensors) from a training ``checkpoint`` and add/replace entry ``name`` in the
    manifest (default: ``weights_manifest.json`` beside ``out``; the package's own manifest only when
    passed explicitly). Returns the entry.

    The entry records name, architecture, file, sha256, byte size, bands, normalisation, the training
    data actually used (sensors, files, splits), the schedule (steps done / planned, batch, patch,
    seed, optimiser, loss) and the last per-sensor validation scores, so that
    ``pantiny.weights.load_model(name, manifest_path=...)`` and ``pantiny.pansharpen(..., model=...)``
    can use the weights.

    ``wise`` < 1 ships ``(1 - wise) * init + wise * trained`` (:func:`interpolate_weights`) for a
    fine-tuning run: ``init`` is the run's ``[run] init`` (checkpoint.pt or .safetensors) unless given.
    """
    if not name or not name.strip() or "/" in name or name.endswith(".safetensors"):
        raise InputError(f"invalid weights name {name!r}: use a plain name such as 'my-model'")
    if Path(out).suffix != ".safetensors":
        raise InputError(f"--out must name a .safetensors file, got {out}")
    ck = load_checkpoint(checkpoint)
    cfg = json.loads(ck["config"])
    used = json.loads(ck["data_used"])
    model = build_model(ck["model_name"])
    weights = trained_weights(ck)
    init_name = cfg["run"].get("init")
    if wise != 1.0:
        init = init if init is not None else init_name
        if init is None:
            raise InputError(f"{checkpoint} was not fine-tuned from other weights ([run] init is unset): "
                             "there is nothing to interpolate toward; pass the start weights with --init")
        if not str(init).endswith((".pt", ".safetensors")) or not Path(init).is_file():
            raise InputError(f"interpolation start weights {init} not found (a checkpoint.pt or .safetensors "
                             "file): pass them with --init")
        init_name = str(init)
        weights = interpolate_weights(initial_weights(init_name), weights, wise)
    model.load_state_dict(weights)
    # The run's last validation scored its own weights; interpolated ones are validated afresh.
    metrics = (ck.get("val") or {}) if wise == 1.0 else _validate(model, cfg)
    info = save_weights(model, out, architecture=ck["model_name"],
                        metadata={"name": name, "steps": ck["step"], "config": ck["config"]})
    # Default: a manifest beside the weights, never the installed package's own (pass it explicitly
    # to ship weights with pantiny).
    man = Path(manifest) if manifest is not None else Path(out).resolve().parent / "weights_manifest.json"
    entry = {
        "name": name,
        "architecture": ck["model_name"],
        "file": manifest_file_field(out, man),
        "sha256": info["sha256"],
        "size": info["size"],
        "bands": ["R", "G", "B", "NIR"],
        "normalisation": NORMALISATION,
        "description": description,
        "steps": ck["step"],
        "training_data": used,
        "training": {
            "schedule_steps": cfg["run"]["steps"],
            "batch": cfg["run"]["batch"],
            "patch": cfg["run"]["patch"],
            "seed": cfg["run"]["seed"],
            "balance": cfg["run"]["balance"],
            "augment": cfg["run"]["augment"],
            "pan_gain": cfg["run"].get("pan_gain", 1.0),
            "ema": cfg["run"].get("ema", 0.0),
            "stage": cfg["run"].get("stage", "rr"),
            # a fine-tuning run starts from other weights: name them (run folder / file, no machine path)
            "init": "/".join(Path(init_name).parts[-2:]) if init_name else None,
            # WiSE-FT: the shipped weights are (1 - wise) * init + wise * the trained ones
            "wise": wise,
            "optimiser": cfg["optim"],
            "loss": cfg["loss"],
            "pantiny_version": ck.get("versions", {}).get("pantiny"),
            "torch_version": ck.get("versions", {}).get("torch"),
        },
        "metrics": metrics,
    }
    upsert_manifest_entry(entry, man)
    return entry


def _validate(model: torch.nn.Module, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Per-sensor validation scores of ``model`` on the validation sources of the run's config (the
    run's own protocol, :func:`pantiny.train.loop.validate`); empty when they cannot be opened here."""
    from .config import from_dict
    from .loop import open_sources, validate

    try:
        run_cfg = from_dict(cfg)  # the checkpoint's config is resolved: absolute paths
        sets = open_sources(run_cfg, "val")
    except (OSError, ValueError):
        return {}
    return validate(model, sets, torch.device("cpu"), patch=run_cfg.run.patch) if sets else {}
