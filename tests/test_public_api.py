"""Every public name resolves, the ``device`` fixture drives the same checks on CPU or CUDA, and the
``realdata`` marker / ``PANTINY_DATA`` plumbing of ``conftest.py`` behaves.

* the package's lazy top-level API (``pantiny.__all__``), the names the README and ``docs/`` cite as
  ``pantiny.x.y``, and every name in every submodule's ``__all__``;
* ``python -m pytest -q --device cuda`` runs the device tests below on CUDA (a usage error without it).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import re

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED_DATA

import pantiny

# --------------------------------------------------------------------------------------------------
# Public names
# --------------------------------------------------------------------------------------------------

MODULES = sorted(m.name for m in pkgutil.walk_packages(pantiny.__path__, "pantiny."))


def resolve(dotted: str):
    """What ``dotted`` names for a user: attribute access from the top package, importing a submodule
    only where no attribute of that name exists (``pantiny.metrics.reduced_resolution`` is the
    function the package re-exports, not the submodule of the same name)."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, attr in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i]))
    return obj


def documented_names():
    names = set()
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        names |= set(re.findall(r"\bpantiny(?:\.[A-Za-z_]\w*)+", doc.read_text(encoding="utf-8")))
    return sorted(names)


def test_top_level_api_is_lazy_and_complete():
    assert {"__version__", "pansharpen", "qnr", "load_model"} <= set(pantiny.__all__)
    for name in pantiny.__all__:
        assert getattr(pantiny, name) is not None, name
    for name in ("pansharpen", "qnr", "load_model"):
        assert callable(getattr(pantiny, name)), name
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", pantiny.__version__)
    assert pantiny.qnr is resolve("pantiny.metrics.qnr")
    assert pantiny.pansharpen is resolve("pantiny.api.pansharpen")
    assert pantiny.load_model is resolve("pantiny.weights.load_model")
    assert pantiny.quicklook is resolve("pantiny.preview.quicklook")
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        pantiny.no_such_name  # noqa: B018


# The public API the README describes, named explicitly (the regex test below adds whatever the
# docs mention later).
README_API = [
    "pantiny.pansharpen", "pantiny.qnr", "pantiny.load_model", "pantiny.quicklook",
    "pantiny.metrics.qnr", "pantiny.metrics.d_lambda", "pantiny.metrics.d_s", "pantiny.metrics.d_lambda_k",
    "pantiny.metrics.psnr", "pantiny.metrics.ssim", "pantiny.metrics.sam", "pantiny.metrics.ergas",
    "pantiny.metrics.q2n", "pantiny.metrics.cc", "pantiny.metrics.scc", "pantiny.metrics.reduced_resolution",
    "pantiny.metrics.expand_ms", "pantiny.sensors.get_sensor", "pantiny.sensors.resolve_bands",
    "pantiny.weights.save_weights", "pantiny.models.build_model", "pantiny.synthetic.make_scene",
    "pantiny.train.train", "pantiny.train.load_config", "pantiny.train.export_checkpoint",
]


@pytest.mark.parametrize("name", README_API)
def test_readme_api_is_callable(name):
    assert callable(resolve(name))


@pytest.mark.parametrize("name", documented_names())
def test_names_cited_in_the_docs_resolve(name):
    resolve(name)


def test_classical_methods_and_sensor_table():
    from pantiny.classical import METHODS, ClassicalMethod
    from pantiny.sensors import SENSORS, Sensor, get_sensor

    assert list(METHODS) == ["brovey", "ihs", "gs", "gsa", "pca", "sfim", "lmvm", "mtf-glp"]
    for key, m in METHODS.items():
        assert isinstance(m, ClassicalMethod) and m.name == key and callable(m.apply)
        assert m.fit is None or callable(m.fit)
    assert {"wv2", "wv3", "gf2"} <= set(SENSORS)
    for key, s in SENSORS.items():
        assert isinstance(s, Sensor) and s.name == key and get_sensor(key) is s


def test_error_tree():
    from pantiny import errors

    builtin = {"InputError": ValueError, "GeoreferenceError": ValueError, "ConfigError": ValueError,
               "WeightsError": RuntimeError, "ModelOutputError": RuntimeError, "OutputLockedError": FileExistsError}
    for name, base in builtin.items():
        cls = getattr(errors, name)
        assert issubclass(cls, errors.PantinyError) and issubclass(cls, base), name
    assert issubclass(errors.GeoreferenceError, errors.InputError)


@pytest.mark.parametrize("module", MODULES)
def test_module_all_resolves(module):
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is None:
        return
    assert len(names) == len(set(names)), f"{module}.__all__ lists a name twice"
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ names undefined attributes: {missing}"


OPTIONAL = {"h5py", "tomli", "scipy", "pytest", "dask", "distributed", "xarray", "rioxarray"}  # extras, never needed to import pantiny


def _top_level_imports(body, guarded=False):
    """(package, guarded) of the imports run when a module is imported (not inside functions/classes);
    ``guarded``: inside a ``try`` that handles ImportError."""
    for node in body:
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[0], guarded) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], guarded
        elif isinstance(node, ast.Try):
            handles = any(h.type is None or "ImportError" in ast.unparse(h.type) for h in node.handlers)
            yield from _top_level_imports(node.body, guarded or handles)
            for h in node.handlers:
                yield from _top_level_imports(h.body, guarded)
            yield from _top_level_imports(node.orelse + node.finalbody, guarded)
        elif isinstance(node, (ast.If, ast.With)):
            yield from _top_level_imports(node.body + getattr(node, "orelse", []), guarded)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_without_optional_extras(module):
    """Importing any pantiny module (as doctest collection does) needs no extra: h5py, tomli and scipy
    are imported inside the functions that use them, or under ``try/except ImportError``."""
    path = importlib.util.find_spec(module).origin
    tree = ast.parse(open(path, encoding="utf-8").read())
    bad = sorted({pkg for pkg, guarded in _top_level_imports(tree.body) if pkg in OPTIONAL and not guarded})
    assert not bad, f"{module} imports {bad} at import time"


# The layers of docs/design.md: a module may import its own layer and the ones below, never above.
LAYERS = {
    0: ["errors", "windows", "nodata", "models.blocks"],
    1: ["choices", "sensors", "devices", "_atomic", "_allocator", "mtf", "resample", "tiling", "band_names"],
    2: ["normalize", "io", "readers", "align", "products", "models", "models.pantiny_big", "models.pantiny_small", "synthetic",
        "weights", "report", "gdal_engine"],
    3: ["classical", "scene_attention", "metrics", "preview", "source"],  # metrics.* too
    4: ["api", "train", "xarray", "dask_batch"],  # train.* too
    5: ["cli", "cli_options", "metrics.cli", "train.cli"],
}


def _layer(module: str):
    name = module[len("pantiny."):] if module.startswith("pantiny.") else ""
    for key in (name, name.rsplit(".", 1)[0] if "." in name else None):
        for layer, names in LAYERS.items():
            if key in names:
                return layer
    return None


def _pantiny_imports(module: str):
    """Absolute names of the pantiny modules ``module`` imports anywhere (functions included)."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    package = module if spec.origin.endswith("__init__.py") else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    yield from (f"{target}.{a.name}" for a in node.names if _layer(f"{target}.{a.name}") is not None)
                    continue
                yield target
            elif node.module and node.module.startswith("pantiny."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("pantiny."))


@pytest.mark.parametrize("module", [m for m in MODULES if _layer(m) is not None])
def test_no_module_imports_a_higher_layer(module):
    mine = _layer(module)
    up = sorted({t for t in _pantiny_imports(module) if (_layer(t) or 0) > mine})
    assert not up, f"{module} (layer {mine}) imports higher layers: {up} (see docs/design.md, Layering)"


def test_every_module_has_a_layer():
    assert [m for m in MODULES if _layer(m) is None] == []


# --------------------------------------------------------------------------------------------------
# Device-parametrised checks (``--device``)
# --------------------------------------------------------------------------------------------------

def test_pick_device_honours_the_option(device):
    from pantiny.devices import pick_device

    assert pick_device(str(device)) == device


def test_upsample_and_mtf_on_device_match_cpu(device):
    from pantiny.mtf import mtf_filter
    from pantiny.resample import upsample

    x = torch.rand(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    for fn in (lambda t: upsample(t), lambda t: mtf_filter(t, [0.29, 0.28, 0.26, 0.28])):
        ref = fn(x)
        got = fn(x.to(device))
        assert got.device.type == device.type
        torch.testing.assert_close(got.cpu(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["pantiny", "brovey"])
def test_pansharpen_on_device_matches_cpu(device, scene_4band, identity_model, method):
    pan, ms, _ = scene_4band
    kw = dict(model=identity_model) if method == "pantiny" else dict(method=method)
    cpu = pantiny.pansharpen(pan, ms, device="cpu", **kw)
    got = pantiny.pansharpen(pan, ms, device=str(device), **kw)
    assert got.shape == cpu.shape == (4, 256, 256) and got.dtype == cpu.dtype
    assert np.abs(got.astype(np.int64) - cpu.astype(np.int64)).max() <= 1


# --------------------------------------------------------------------------------------------------
# Real data: PANTINY_DATA and the realdata marker
# --------------------------------------------------------------------------------------------------

def _load_conftest(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shared_data_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PANTINY_DATA", str(tmp_path))
    assert _load_conftest("_conftest_env").SHARED_DATA == tmp_path
    monkeypatch.delenv("PANTINY_DATA")
    assert _load_conftest("_conftest_noenv").SHARED_DATA == REPO.parent / "shared" / "data"


def test_realdata_marker_skips_with_the_reason(monkeypatch, tmp_path):
    import conftest

    class Item:
        def __init__(self, *args):
            self.marker = pytest.mark.realdata(*args).mark if args else pytest.mark.realdata.mark

        def get_closest_marker(self, name):
            return self.marker if name == "realdata" else None

    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "absent")
    assert "absent is not a directory (set PANTINY_DATA" in conftest._realdata_missing(Item())
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path)
    (tmp_path / "a.tif").touch()
    assert conftest._realdata_missing(Item()) is None
    assert conftest._realdata_missing(Item("a.tif")) is None
    assert conftest._realdata_missing(Item("a.tif", "corpus/corpus.json")).endswith(": corpus/corpus.json")


@pytest.mark.realdata("ikonos_scene_pan.tif", "ikonos_scene_ms.tif")
def test_real_ikonos_pair_is_on_nested_grids(shared_data):
    from pantiny.io import check_pair, raster_info

    pan, ms = raster_info(shared_data / "ikonos_scene_pan.tif"), raster_info(shared_data / "ikonos_scene_ms.tif")
    check_pair(pan, ms, 4)
    assert shared_data == SHARED_DATA and pan.count == 1 and ms.count == 4
