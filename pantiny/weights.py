"""Weights: the manifest, sha256-verified safetensors loading, optional Hugging Face download, export.

``weights_manifest.json`` (repo root, shipped inside the wheel as ``pantiny/weights_manifest.json``)
lists named checkpoints::

    {"format": 1, "default": "pantiny-big", "models": [{
        "name": "pantiny-big", "architecture": "pantiny-big",
        "file": "weights/pantiny-big.safetensors",      # relative to the pantiny package, or absolute
        "sha256": "...", "size": 330000,
        "bands": ["R", "G", "B", "NIR"], "normalisation": "DN / sensor max value",
        "training_data": {...}, "metrics": {...},
        "hf": {"repo_id": "org/pantiny", "revision": "<commit>", "filename": "pantiny-big.safetensors"}}]}

A file is used only if its size and sha256 match the manifest; weights are read with safetensors
only (never pickle). When the bundled file is absent and the entry names an ``hf`` source, the file
is fetched with ``huggingface_hub.hf_hub_download`` into the standard HF cache (``HF_HUB_OFFLINE=1``
is honoured: then only the cache is consulted).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ._atomic import atomic_write_bytes
from .errors import InputError, WeightsError
from .models import MODELS, build_model

_log = logging.getLogger("pantiny")

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST_PATH = PACKAGE_DIR / "weights_manifest.json"

PathLike = Union[str, "os.PathLike[str]"]


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- manifest -----------------------------------------------------------------------------------

#: Names the shipped manifest used before ``arch.tag`` names; still accepted, with a FutureWarning.
LEGACY_NAMES = {"pantiny-big-preview": "pantiny-big.preview"}


@dataclass(frozen=True)
class WeightsEntry:
    """One manifest entry, validated when the manifest is read.

    ``name`` is ``"<architecture>.<tag>"`` (timm style, e.g. ``"pantiny-big.allinone"``) in the shipped
    manifest; a user's manifest may use any plain name. ``file`` is relative to the manifest's folder
    (or the package), or absolute. ``sha256`` and ``size`` are checked before the file is used.
    """

    name: str
    architecture: str
    file: str
    sha256: str
    size: int
    bands: Tuple[str, ...] = ("R", "G", "B", "NIR")
    normalisation: str = ""
    description: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)  # training data, schedule, metrics, hf, ...

    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest") -> "WeightsEntry":
        if not isinstance(d, dict):
            raise WeightsError(f"{where}: every entry of 'models' must be an object, got {type(d).__name__}")
        name = d.get("name")
        label = f"{where}: entry {name!r}"
        for key, typ in (("name", str), ("architecture", str), ("file", str), ("sha256", str), ("size", int)):
            if not isinstance(d.get(key), typ) or isinstance(d.get(key), bool):
                raise WeightsError(f"{label}: {key!r} must be a {typ.__name__}, got {d.get(key)!r}")
        if d["architecture"] not in MODELS:
            raise WeightsError(f"{label}: unknown architecture {d['architecture']!r} (known: {', '.join(MODELS)})")
        if not re.fullmatch(r"[0-9a-f]{64}", d["sha256"]):
            raise WeightsError(f"{label}: sha256 must be 64 lower-case hex digits")
        if d["size"] <= 0:
            raise WeightsError(f"{label}: size must be a positive byte count")
        if "/" in name or not name.strip() or name.endswith(".safetensors"):
            raise WeightsError(f"{label}: invalid name")
        bands = tuple(d.get("bands", ("R", "G", "B", "NIR")))
        known = {"name", "architecture", "file", "sha256", "size", "bands", "normalisation", "description"}
        return cls(name, d["architecture"], d["file"], d["sha256"], int(d["size"]), bands,
                   str(d.get("normalisation", "")), str(d.get("description", "")),
                   {k: v for k, v in d.items() if k not in known})

    def as_dict(self) -> Dict[str, Any]:
        """The JSON form written to a manifest (plain dict; ``extra`` keys at top level)."""
        out: Dict[str, Any] = {"name": self.name, "architecture": self.architecture, "file": self.file,
                               "sha256": self.sha256, "size": self.size, "bands": list(self.bands),
                               "normalisation": self.normalisation, "description": self.description}
        out.update(self.extra)
        return out


def load_manifest(path: Optional[PathLike] = None) -> Dict[str, Any]:
    """Parse and validate the manifest (default: the one shipped with the package).

    Every entry must be a valid :class:`WeightsEntry`, names must be unique, and ``default`` must
    name an entry: so a default model always resolves.
    """
    return _read_manifest(path)[0]


def _read_manifest(path: Optional[PathLike]) -> Tuple[Dict[str, Any], List[WeightsEntry]]:
    """The manifest as parsed JSON and as validated entries (one read, one validation)."""
    p = Path(path) if path is not None else MANIFEST_PATH
    if not p.is_file():
        raise FileNotFoundError(f"weights manifest not found: {p}")
    try:
        manifest = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"weights manifest {p} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), list):
        raise WeightsError(f"weights manifest {p} has no 'models' list")
    entries = [WeightsEntry.from_dict(e, str(p)) for e in manifest["models"]]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise WeightsError(f"weights manifest {p} names an entry twice: {sorted(n for n in names if names.count(n) > 1)}")
    default = manifest.get("default")
    if entries and default not in names:
        raise WeightsError(f"weights manifest {p}: default {default!r} names no entry (entries: {', '.join(names)})")
    return manifest, entries


def manifest_entries(path: Optional[PathLike] = None) -> List[WeightsEntry]:
    """The manifest's entries, typed."""
    return _read_manifest(path)[1]


def list_models(pretrained: bool = False, manifest_path: Optional[PathLike] = None) -> List[str]:
    """Architecture names (``pretrained=False``), or the names of every weights entry of the manifest."""
    if not pretrained:
        return sorted(MODELS)
    return sorted(e.name for e in manifest_entries(manifest_path))


def resolve_model_name(name: str, manifest_path: Optional[PathLike] = None) -> str:
    """The entry a model name stands for: an entry name as is; an architecture name (``"pantiny-big"``)
    -> the manifest's default when it has that architecture, else that architecture's only entry
    (timm's ``arch`` -> ``arch.default_tag``); a legacy name -> its new name, with a FutureWarning."""
    return _resolve(name, *_read_manifest(manifest_path))


def _resolve(name: str, manifest: Dict[str, Any], entries: List[WeightsEntry]) -> str:
    names = {e.name for e in entries}
    if name in names:
        return name
    if name in LEGACY_NAMES and LEGACY_NAMES[name] in names:
        warnings.warn(f"weights name {name!r} is deprecated: use {LEGACY_NAMES[name]!r}", FutureWarning, stacklevel=4)
        return LEGACY_NAMES[name]
    if name in MODELS:
        of_arch = [e.name for e in entries if e.architecture == name]
        default = manifest.get("default")
        if default in of_arch:
            return default
        if len(of_arch) == 1:
            return of_arch[0]
        if of_arch:
            raise WeightsError(f"architecture {name!r} has several weights ({', '.join(sorted(of_arch))}): name one")
        raise WeightsError(f"no weights for architecture {name!r} in the manifest (entries: "
                           f"{', '.join(sorted(names)) or 'none'}); pass a .safetensors path or a classical method=")
    raise WeightsError(f"no weights named {name!r} in the manifest (available: {', '.join(sorted(names)) or 'none'}); "
                       "pass a .safetensors path, train one with `pantiny train`, or use a classical method")


def manifest_entry(name: str, manifest_path: Optional[PathLike] = None) -> Dict[str, Any]:
    """The manifest entry that ``name`` resolves to (:func:`resolve_model_name`), as a dict."""
    manifest, entries = _read_manifest(manifest_path)
    resolved = _resolve(name, manifest, entries)
    return next(e for e in manifest["models"] if e["name"] == resolved)


def upsert_manifest_entry(entry: Dict[str, Any], manifest_path: Optional[PathLike] = None) -> Path:
    """Add ``entry`` to the manifest, replacing an entry of the same name; written atomically."""
    for key in ("name", "architecture", "file", "sha256", "size"):
        if key not in entry:
            raise InputError(f"manifest entry lacks {key!r}")
    WeightsEntry.from_dict(entry, "new entry")
    p = Path(manifest_path) if manifest_path is not None else MANIFEST_PATH
    manifest = load_manifest(p) if p.exists() else {"format": 1, "default": entry["name"], "models": []}
    models: List[Dict[str, Any]] = [e for e in manifest["models"] if e.get("name") != entry["name"]]
    models.append(entry)
    manifest["models"] = sorted(models, key=lambda e: e["name"])
    atomic_write_bytes(p.resolve(), (json.dumps(manifest, indent=2) + "\n").encode())
    return p


# --- locating and verifying files ---------------------------------------------------------------

def _hf_download(entry: Dict[str, Any]) -> Path:
    from huggingface_hub import hf_hub_download  # only needed for hub-hosted weights

    hf = entry["hf"]
    try:
        return Path(hf_hub_download(repo_id=hf["repo_id"], filename=hf.get("filename", Path(entry["file"]).name),
                                    revision=hf.get("revision")))
    except Exception as e:  # network, offline mode, missing repo: all end the same way for the user
        raise WeightsError(f"weights {entry['name']!r} are not bundled and could not be fetched from "
                           f"Hugging Face repo {hf['repo_id']!r}: {e}") from None


def resolve_weights_file(entry: Dict[str, Any], base: Optional[PathLike] = None) -> Path:
    """Path of a verified weights file for a manifest entry (bundled, else Hugging Face).

    A relative ``file`` is looked up beside the manifest that named it (``base``), then in the
    package (where the wheel bundles ``weights/*.safetensors``).
    """
    path = Path(entry["file"])
    if not path.is_absolute():
        candidates = ([Path(base) / path] if base is not None else []) + [PACKAGE_DIR / path]
        path = next((c for c in candidates if c.is_file()), candidates[-1])
    if not path.is_file():
        if entry.get("hf"):
            path = _hf_download(entry)
        else:
            raise WeightsError(
                f"weights {entry['name']!r}: file {path} is not present (the trained checkpoint is not "
                "bundled in this build and the manifest names no Hugging Face source); train one with "
                "`pantiny train` or pass model='path/to/file.safetensors'")
    verify_file(path, entry["sha256"], entry.get("size"))
    return path


def verify_file(path: PathLike, sha256: str, size: Optional[int] = None) -> None:
    """Raise :class:`WeightsError` unless the file has the expected size and sha256."""
    actual_size = os.path.getsize(path)
    if size is not None and actual_size != int(size):
        raise WeightsError(f"weights file {path} is {actual_size} bytes, the manifest says {size}: "
                           "truncated or replaced; delete it and reinstall / re-download")
    digest = sha256_file(path)
    if digest != sha256:
        raise WeightsError(f"weights file {path} fails its sha256 check (got {digest[:12]}..., manifest "
                           f"{sha256[:12]}...): the file is corrupt or has been tampered with")


# --- reading and writing ------------------------------------------------------------------------

def _read_state(path: Path) -> tuple:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"cannot read safetensors file {path}: {e}") from None
    return state, meta


def _instantiate(architecture: str, state: Dict[str, torch.Tensor], source: Path) -> nn.Module:
    model = build_model(architecture)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"weights {source} do not fit architecture {architecture!r}: "
                           f"{str(e).splitlines()[0]}") from None
    return model.eval()


def load_model(name_or_path: str = "pantiny-big", *, device: Union[str, torch.device] = "cpu",
               manifest_path: Optional[PathLike] = None, architecture: Optional[str] = None) -> nn.Module:
    """A model in eval mode with verified weights, on ``device``.

    ``name_or_path`` is a manifest entry (``"pantiny-big.allinone"``), an architecture name standing for
    its default weights (``"pantiny-big"``, see :func:`resolve_model_name`), or a path to a
    ``.safetensors`` file. A
    path is checked against a manifest entry with the same sha256 when there is one; otherwise its
    architecture comes from the file's own metadata (written by :func:`save_weights`) or the
    ``architecture`` argument.
    """
    p = Path(str(name_or_path))
    if p.suffix == ".safetensors" or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"weights file not found: {p}")
        state, meta = _read_state(p)
        arch = architecture or meta.get("architecture")
        if not arch:
            raise WeightsError(f"{p} does not record its architecture; pass architecture='pantiny-big'")
        return _instantiate(arch, state, p).to(device)
    entry = manifest_entry(str(name_or_path), manifest_path)
    path = resolve_weights_file(entry, Path(manifest_path).resolve().parent if manifest_path else None)
    state, _ = _read_state(path)
    _log.info("weights %s (%s)", entry["name"], (entry.get("description") or entry["architecture"])[:120])
    return _instantiate(entry["architecture"], state, path).to(device)


def save_weights(model: nn.Module, path: PathLike, *, architecture: str,
                 metadata: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Write the model's weights as safetensors (atomically); returns file name, sha256 and size."""
    from safetensors.torch import save

    meta = {"architecture": architecture, "format": "pantiny-1", **{k: str(v) for k, v in (metadata or {}).items()}}
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    atomic_write_bytes(path, save(state, metadata=meta))
    return {"file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size}
