"""Shared fixtures: synthetic scenes, GeoTIFF pairs, and self-made weights (no shipped weights needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from pantiny.models import build_model
from pantiny.synthetic import make_scene
from pantiny.weights import save_weights

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def write_tif(path: Path, arr: np.ndarray, *, gsd: float = 0.5, crs="EPSG:32633", nodata=None,
              origin=(500000.0, 4200000.0), tags=None) -> Path:
    """Write (C,H,W) ``arr`` as a GeoTIFF on a north-up grid with pixel size ``gsd``."""
    with rasterio.open(path, "w", driver="GTiff", count=arr.shape[0], height=arr.shape[1], width=arr.shape[2],
                       dtype=arr.dtype.name, crs=crs, transform=from_origin(*origin, gsd, gsd), nodata=nodata) as ds:
        ds.write(arr)
        if tags:
            ds.update_tags(**tags)
    return path


@pytest.fixture(scope="session")
def scene_wv3():
    """(pan (1,256,256), ms (8,64,64), gt (8,256,256)) uint16 11-bit WorldView-3-like scene."""
    return make_scene(256, "wv3", seed=1)


@pytest.fixture(scope="session")
def scene_4band():
    return make_scene(256, "ikonos", seed=2)


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """A pantiny-big checkpoint with seeded random init, written by our own exporter."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random-big.safetensors"
    save_weights(build_model("pantiny-big"), path, architecture="pantiny-big")
    return path


@pytest.fixture()
def tif_pair(tmp_path, scene_wv3):
    pan, ms, _ = scene_wv3
    return (write_tif(tmp_path / "scene_pan.tif", pan, gsd=0.5, tags={"SENSOR": "WV3"}),
            write_tif(tmp_path / "scene_ms.tif", ms, gsd=2.0, tags={"SENSOR": "WV3"}))


class Identity(torch.nn.Module):
    """A 'model' that returns its upsampled MS input: isolates the pipeline from the network."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def forward(self, ms_up, pan):
        self.seen.append((ms_up.shape, pan.shape))
        return ms_up.clone()


@pytest.fixture()
def identity_model():
    return Identity()
