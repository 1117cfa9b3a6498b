"""Export a training checkpoint as a safetensors weights file plus its weights-manifest entry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

from ..models import build_model
from ..weights import MANIFEST_PATH, save_weights, upsert_manifest_entry
from .loop import load_checkpoint

NORMALISATION = ("DN / sensor maximum (2047 for 11-bit WV2/WV3/QB/IKONOS, 1023 for 10-bit GF2, 255 for "
                 "8-bit); MS bicubic-upsampled onto the PAN grid; bands R, G, B, NIR")


def export(checkpoint: "str | os.PathLike[str]", name: str, out: "str | os.PathLike[str]", *,
           manifest: "str | os.PathLike[str] | None" = None, description: str = "") -> Dict[str, Any]:
    """Write ``out`` (safetensors) from ``checkpoint`` and add/replace entry ``name`` in the manifest.

    The entry records file, sha256, byte size, architecture, bands, normalisation, the training data
    and schedule (from the checkpoint's config) and the last per-sensor validation scores. Its
    ``file`` is relative to the manifest's folder when ``out`` lies below it, else absolute.
    """
    ck = load_checkpoint(checkpoint)
    cfg = json.loads(ck["config"])
    model = build_model(ck["model_name"])
    model.load_state_dict(ck["model"])
    info = save_weights(model, out, architecture=ck["model_name"],
                        metadata={"name": name, "steps": ck["step"], "config": ck["config"]})
    man = Path(manifest) if manifest is not None else MANIFEST_PATH
    out_p, base = Path(out).resolve(), man.resolve().parent
    try:
        rel = out_p.relative_to(base).as_posix()
    except ValueError:
        rel = str(out_p)
    if manifest is None and out_p.parent.name == "weights" and out_p.parent.parent.name == "pantiny":
        rel = f"weights/{out_p.name}"  # bundled in the wheel: resolved against the package folder
    entry = {
        "name": name,
        "architecture": ck["model_name"],
        "file": rel,
        "sha256": info["sha256"],
        "size": info["size"],
        "bands": ["R", "G", "B", "NIR"],
        "normalisation": NORMALISATION,
        "description": description,
        "training": {
            "steps": ck["step"],
            "schedule_steps": cfg["run"]["steps"],
            "batch": cfg["run"]["batch"],
            "patch": cfg["run"]["patch"],
            "seed": cfg["run"]["seed"],
            "balance": cfg["run"]["balance"],
            "optimiser": cfg["optim"],
            "loss": cfg["loss"],
            "data": [{k: v for k, v in d.items() if v is not None} for d in cfg["data"]],
        },
        "metrics": ck.get("val") or {},
    }
    upsert_manifest_entry(entry, man)
    return entry
