"""``pantiny.train``: the all-in-one joint training submodule (needs the ``train`` extra for HDF5).

Data (:mod:`.data`: PanCollection HDF5 cubes, Wald-degraded GeoTIFF scenes) -> mixing of sensors
(:mod:`.mixing`) -> composite loss (:mod:`.loss`) -> resumable loop (:mod:`.loop`) -> export to
safetensors + weights manifest (:mod:`.export`), all driven by one TOML config (:mod:`.config`) and
the ``pantiny train`` command (:mod:`.cli`).
"""

from .config import TrainConfig, load_config
from .export import export
from .loop import train
from .loss import CompositeLoss

__all__ = ["TrainConfig", "load_config", "train", "export", "CompositeLoss"]
