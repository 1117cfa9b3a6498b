"""``pantiny.train``: the all-in-one joint training submodule (needs the ``train`` extra for HDF5).

Data (:mod:`.data`: PanCollection HDF5 cubes, Wald-degraded GeoTIFF scenes) -> mixing of sensors
(:mod:`.mixing`) -> composite loss (:mod:`.loss`) -> resumable loop (:mod:`.loop`) -> export to
safetensors + weights manifest (:mod:`.export`), all driven by one TOML config (:mod:`.config`) and
the ``pantiny train`` command (:mod:`.cli`).

The names below are imported lazily, so ``pantiny.train.cli`` (registered into the main command
line) loads neither torch nor h5py.
"""

from __future__ import annotations

from typing import Any

#: public name -> (submodule, attribute). ``export`` is a submodule, so its function is
#: ``export_checkpoint`` here (``pantiny.train.export.export``).
_LAZY = {
    "TrainConfig": ("config", "TrainConfig"), "load_config": ("config", "load_config"),
    "from_dict": ("config", "from_dict"), "to_toml": ("config", "to_toml"),
    "WaldScene": ("data", "WaldScene"), "H5Dataset": ("data", "H5Dataset"), "Source": ("data", "Source"),
    "Mixer": ("mixing", "Mixer"), "CompositeLoss": ("loss", "CompositeLoss"),
    "train": ("loop", "train"), "validate": ("loop", "validate"), "load_checkpoint": ("loop", "load_checkpoint"),
    "export_checkpoint": ("export", "export"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pantiny.train' has no attribute {name!r}")
