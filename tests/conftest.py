"""Shared fixtures: synthetic scenes, GeoTIFF pairs, and self-made weights (no shipped weights needed).

Options and markers offered here:

* ``--device cpu|cuda|cuda:N`` (default ``cpu``): the torch device of the ``device`` fixture, so the
  tests that take it run on CUDA with ``--device cuda``. Asking for CUDA on a machine without it is a
  usage error at start-up, never a silent fallback to the CPU.
* ``@pytest.mark.realdata`` or ``@pytest.mark.realdata("corpus/corpus.json", ...)``: the test reads the
  real scenes in :data:`SHARED_DATA` (``$PANTINY_DATA`` when set, else ``../shared/data``) and is skipped,
  with the path in the reason, when that directory or one of the named files is absent. The
  ``shared_data`` fixture gives the directory with the same skip.
"""

from __future__ import annotations

import os
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
#: Real test imagery: ``$PANTINY_DATA`` when set (and not empty), else ``../shared/data`` next to the repository.
SHARED_DATA = (Path(os.environ["PANTINY_DATA"]).expanduser() if os.environ.get("PANTINY_DATA")
               else REPO.parent / "shared" / "data")


def _device_name(text: str) -> str:
    """Validate ``--device``: cpu, cuda or cuda:N (argparse turns the error into a usage message)."""
    import argparse

    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return str(dev)


def pytest_addoption(parser):
    parser.addoption("--device", action="store", default="cpu", type=_device_name, metavar="DEVICE",
                     help="torch device of the `device` fixture: cpu (default), cuda or cuda:N")


def pytest_configure(config):
    dev = torch.device(config.getoption("device", "cpu"))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise pytest.UsageError(
                f"--device {dev}: CUDA is not available here (torch {torch.__version__}, "
                f"built {'with CUDA ' + torch.version.cuda if torch.version.cuda else 'without CUDA'}); "
                "run with --device cpu (the default)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise pytest.UsageError(f"--device {dev}: only {torch.cuda.device_count()} CUDA device(s) present")


def _realdata_missing(item) -> "str | None":
    """Why a ``realdata`` test cannot run here (None when it can)."""
    marker = item.get_closest_marker("realdata")
    if marker is None:
        return None
    if not SHARED_DATA.is_dir():
        return f"real test imagery not found: {SHARED_DATA} is not a directory (set PANTINY_DATA to it)"
    missing = [str(f) for f in marker.args if not (SHARED_DATA / f).exists()]
    if missing:
        return f"real test data missing in {SHARED_DATA}: {', '.join(missing)}"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = _realdata_missing(item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    """The torch device chosen with ``--device`` (``cpu`` unless asked otherwise)."""
    return torch.device(pytestconfig.getoption("device"))


@pytest.fixture()
def shared_data() -> Path:
    """:data:`SHARED_DATA`, skipping the test (with the path in the reason) when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test imagery not found: {SHARED_DATA} is not a directory (set PANTINY_DATA to it)")
    return SHARED_DATA


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


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors on a shared 2-core machine: one torch thread avoids OpenMP contention
    (``pytestmark = pytest.mark.usefixtures("one_thread")`` in a module)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
