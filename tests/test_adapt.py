"""Issue #11: the full-resolution loss and scene adaptation (API and CLI)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from conftest import write_tif

import pantiny
from pantiny.api import prepare_scene
from pantiny.cli import main
from pantiny.resample import upsample
from pantiny.sensors import get_sensor
from pantiny.synthetic import make_scene
from pantiny.train.adapt import _draw_crops
from pantiny.train.fr_loss import FullResolutionLoss, local_correlation


def _unit(scene, sensor="ikonos"):
    pan, ms, gt = scene
    s = get_sensor(sensor)
    idx = list(s.model_bands)
    t = lambda a: torch.from_numpy(a.astype(np.float32) / 2047.0)[None]  # noqa: E731
    return t(pan), t(ms[idx]), t(gt[idx]), s


def _ideal_case():
    """A synthetic scene whose true fusion is known and scale-invariant: every band is a constant times
    one texture T, the PAN is their mean, the MS is the truth degraded by the sensor's MTF + decimation."""
    pan, _, _ = make_scene(128, "ikonos", seed=3)
    s = get_sensor("ikonos")
    t = torch.from_numpy(pan.astype(np.float32) / 2047.0)[None]
    c = torch.tensor([0.8, 1.0, 0.9, 1.3]).view(1, 4, 1, 1)
    truth, p = t * c, t * c.mean()
    from pantiny.mtf import mtf_degrade

    m = mtf_degrade(truth, list(s.model_mtf), 4)
    return truth, m, p, upsample(m, 4), s


@pytest.mark.parametrize("match", [True, False])
def test_fr_loss_is_at_its_minimum_for_the_ideal_fusion(match):
    truth, m, p, u, s = _ideal_case()
    loss = FullResolutionLoss(tuple(s.model_mtf), 4, match=match)
    ideal, t_terms = loss(truth, m, p, u)
    exp, e_terms = loss(u, m, p, u)  # PAN detail removed
    distorted, d_terms = loss(truth * torch.tensor([1.2, 1.0, 0.8, 1.0]).view(1, 4, 1, 1), m, p, u)
    assert float(ideal) < 1e-4  # zero up to float rounding
    assert e_terms["spatial"] > 0.1 and float(exp) > 1000 * float(ideal)  # detail removed: spatial term grows
    assert d_terms["spectral"] > 0.05 and float(distorted) > 100 * float(ideal)  # spectra distorted


def test_local_correlation_hand_values():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    assert torch.allclose(local_correlation(x, 2 * x + 1, 3), torch.ones(1, 1, 1, 1), atol=1e-6)
    assert torch.allclose(local_correlation(x, -x, 3), -torch.ones(1, 1, 1, 1), atol=1e-6)


@pytest.fixture(scope="module")
def small_scene():
    return make_scene(128, "ikonos", seed=21)


def _fixed_loss(net, scene_arrays):
    pan, ms, _ = scene_arrays
    scene = prepare_scene(pan, ms, sensor="ikonos")
    crops = _draw_crops(scene, 4, 64, np.random.default_rng(123))
    u, p, m = (torch.stack([c[j] for c in crops]) for j in range(3))
    loss = FullResolutionLoss(tuple(scene.sensor.model_mtf), 4)
    with torch.no_grad():
        return float(loss(net(u, p), m, p, u)[0])


@pytest.mark.slow
def test_adaptation_lowers_the_loss_and_is_deterministic(small_scene, random_weights):
    pan, ms, _ = small_scene
    base = pantiny.load_model(str(random_weights))
    before = _fixed_loss(base, small_scene)
    hist = []
    opts = dict(steps=25, crop=64, batch=2, lr=1e-3, patience=100)
    a = pantiny.adapt(pan, ms, model=base, sensor="ikonos", device="cpu", history=hist, **opts)
    assert len(hist) == 25 and _fixed_loss(a, small_scene) < 0.8 * before
    b = pantiny.adapt(pan, ms, model=base, sensor="ikonos", device="cpu", **opts)
    c = pantiny.adapt(pan, ms, model=base, sensor="ikonos", device="cpu", seed=1, **opts)
    for (k, x), (_, y), (_, z) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(x, y), k  # same seed, same weights
    assert any(not torch.equal(x, z) for x, z in zip(a.state_dict().values(), c.state_dict().values()))
    # the base model is untouched
    assert _fixed_loss(base, small_scene) == before


def test_adaptation_stops_early_when_the_loss_stalls(small_scene, random_weights):
    pan, ms, _ = small_scene
    hist = []
    pantiny.adapt(pan, ms, model=str(random_weights), sensor="ikonos", device="cpu", history=hist,
                  steps=200, crop=64, batch=1, lr=1e-9, patience=5)
    assert len(hist) < 30


def test_adaptation_crops_avoid_nodata():
    pan, ms, _ = make_scene(128, "ikonos", seed=22)
    ms, pan = ms.copy(), pan.copy()
    ms[:, :, :16] = 0  # left half of the MS is nodata
    scene = prepare_scene(pan, ms, sensor="ikonos", nodata=0)
    crops = _draw_crops(scene, 20, 48, np.random.default_rng(0))
    for ms_up, p, ms_lr in crops:
        assert (ms_lr > 0).all()  # no nodata pixel inside any crop
    with pytest.raises(ValueError, match="no 128x128 crop free of nodata"):
        _draw_crops(scene, 1, 128, np.random.default_rng(0), tries=5)


@pytest.mark.slow
def test_pansharpen_adapt_and_the_cli(tmp_path, small_scene, random_weights, capsys):
    pan, ms, _ = small_scene
    plain = pantiny.pansharpen(pan, ms, sensor="ikonos", model=str(random_weights), device="cpu")
    adapted = pantiny.pansharpen(pan, ms, sensor="ikonos", model=str(random_weights), device="cpu",
                                 adapt=dict(steps=3, crop=64, batch=1))
    assert adapted.shape == plain.shape and not np.array_equal(adapted, plain)
    p = write_tif(tmp_path / "s_pan.tif", pan, gsd=0.5, tags={"SENSOR": "IKONOS"})
    m = write_tif(tmp_path / "s_ms.tif", ms, gsd=2.0, tags={"SENSOR": "IKONOS"})
    w = tmp_path / "adapted.safetensors"
    assert main(["adapt", str(p), str(m), "-o", str(w), "--model", str(random_weights), "--steps", "3",
                 "--crop", "64", "-q"]) == 0
    assert w.is_file() and (tmp_path / "weights_manifest.json").is_file()
    assert main(["fuse", str(p), str(m), str(tmp_path / "f.tif"), "--model", str(w), "-q"]) == 0
    assert main(["fuse", str(p), str(m), str(tmp_path / "g.tif"), "--model", str(random_weights), "--adapt",
                 "--adapt-steps", "2", "-q"]) == 0
    with rasterio.open(tmp_path / "f.tif") as a, rasterio.open(tmp_path / "g.tif") as b:
        assert a.read().shape == b.read().shape == (4, 128, 128)
