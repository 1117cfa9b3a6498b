"""pantiny.train: data (Wald pairs, HDF5), mixing, loss, resumable loop, config, CLI run + export."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import REPO, SHARED_DATA, write_tif

from pantiny import pansharpen
from pantiny.cli import main
from pantiny.models import build_model
from pantiny.mtf import frequency_response, mtf_filter, mtf_kernel_1d
from pantiny.sensors import get_sensor
from pantiny.synthetic import make_scene
from pantiny.train.config import from_dict, load_config, to_toml
from pantiny.train.data import H5Dataset, WaldScene, clean_corners
from pantiny.train.loop import load_checkpoint, train
from pantiny.train.loss import CompositeLoss, charbonnier, focal, ssim_zero_pad
from pantiny.train.mixing import Mixer
from pantiny.weights import load_model


@pytest.fixture(scope="module")
def wv3_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    pan, ms, _ = make_scene(256, "wv3", seed=3)
    return (write_tif(folder / "s_pan.tif", pan, gsd=0.5, tags={"SENSOR": "WV3"}),
            write_tif(folder / "s_ms.tif", ms, gsd=2.0, tags={"SENSOR": "WV3"}))


def _cfg(tmp_path, pair, run=None, **extra):
    pan, ms = pair
    d = {"run": {"model": "pantiny-small", "steps": 6, "batch": 2, "patch": 16, "seed": 5, "device": "cpu",
                 "checkpoint_every": 2, "validate_every": 3, "log_every": 1, "out": str(tmp_path / "run"),
                 **(run or {})},
         "data": [{"kind": "geotiff", "pan": str(pan), "ms": str(ms), "rows": [0.0, 0.75]},
                  {"kind": "geotiff", "pan": str(pan), "ms": str(ms), "rows": [0.75, 1.0], "split": "val"}],
         **extra}
    return from_dict(d, tmp_path)


# --- data: Wald-protocol pairs ------------------------------------------------------------------

def test_wald_pairs_have_the_right_shapes_bands_and_degradation(wv3_pair):
    scene = WaldScene(*wv3_pair)
    assert scene.sensor.name == "wv3"  # from the SENSOR tag
    gt, lms, pan = scene.full()
    assert gt.shape == (4, 64, 64) and lms.shape == (4, 64, 64) and pan.shape == (1, 64, 64)
    assert gt.dtype == lms.dtype == pan.dtype == torch.float32
    # gt is the original MS's R, G, B, NIR1 (0-based 4, 2, 1, 6 of the WV3 cube) over 2047
    with rasterio.open(wv3_pair[1]) as ds:
        ms = ds.read().astype(np.float32)
    np.testing.assert_allclose(gt.numpy(), ms[[4, 2, 1, 6]] / 2047, rtol=1e-6)
    # inputs are low-passed versions of the references: less high-frequency energy, same mean level
    with rasterio.open(wv3_pair[0]) as ds:
        pan_full = torch.from_numpy(ds.read().astype(np.float32) / 2047)
    assert float(lms.diff(dim=-1).abs().mean()) < 0.8 * float(gt.diff(dim=-1).abs().mean())
    assert abs(float(lms.mean()) - float(gt.mean())) < 0.01 * float(gt.mean())
    assert abs(float(pan.mean()) - float(pan_full.mean())) < 0.01 * float(pan_full.mean())
    assert not scene.has_nodata and scene.size(16) == 16


def test_wald_row_parts_are_degraded_independently(wv3_pair, tmp_path):
    # The top half of the scene, as its own files, must give exactly the same pairs as rows=(0, 0.5):
    # no pixel of the other part leaks into a part's degraded inputs.
    with rasterio.open(wv3_pair[0]) as ds:
        pan = ds.read()
    with rasterio.open(wv3_pair[1]) as ds:
        ms = ds.read()
    p = write_tif(tmp_path / "top_pan.tif", pan[:, :128], gsd=0.5, tags={"SENSOR": "WV3"})
    m = write_tif(tmp_path / "top_ms.tif", ms[:, :32], gsd=2.0, tags={"SENSOR": "WV3"})
    part, alone = WaldScene(*wv3_pair, rows=(0.0, 0.5)), WaldScene(p, m)
    for a, b in zip(part.full(), alone.full()):
        assert a.shape == b.shape and torch.equal(a, b)
    bottom = WaldScene(*wv3_pair, rows=(0.5, 1.0))
    assert torch.equal(bottom.gt, WaldScene(*wv3_pair).gt[:, 32:])
    with pytest.raises(ValueError, match="rows"):
        WaldScene(*wv3_pair, rows=(0.6, 0.2))
    with pytest.raises(ValueError, match="too small"):
        WaldScene(*wv3_pair, rows=(0.0, 0.1))


@pytest.mark.parametrize("sensor", ["wv3", "gf2", "ikonos"])
def test_wald_mtf_gain_at_nyquist_matches_the_sensor(sensor):
    # Filter a cosine at the reduced MS Nyquist frequency (1/(2*4) cycle per pixel) with the filters the
    # Wald builder uses (model bands, and PAN) and measure the gain in the image domain.
    s = get_sensor(sensor)
    x = torch.arange(256, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * x / 8)
    gains = list(s.model_mtf) + [s.mtf_pan]
    y = mtf_filter(wave.expand(1, len(gains), 8, 256).contiguous(), gains)
    for b, g in enumerate(gains):
        measured = float(y[0, b, 4, 64:192].abs().max())
        assert abs(measured - g) < 1e-3, (sensor, b, measured, g)
        assert abs(frequency_response(mtf_kernel_1d(g), 1 / 8) - g) < 1e-3


def test_mixed_pan_filter_blends_the_two_degradations_per_patch(wv3_pair):
    mtf, bic = WaldScene(*wv3_pair), WaldScene(*wv3_pair, pan_filter="bicubic")
    mixed = WaldScene(*wv3_pair, pan_filter="mixed")
    for a, b in zip(mixed.full(), mtf.full()):  # validation and full() keep the "mtf" protocol
        assert torch.equal(a, b)
    assert float((bic.pan - mtf.pan).abs().max()) > 1e-3  # the two ends differ
    rng = np.random.default_rng(7)
    ts = []
    for _ in range(40):
        state = rng.bit_generator.state
        gt, lms, pan = mixed.draw(rng, 16)
        plain = np.random.default_rng()
        plain.bit_generator.state = state
        g0, _, p_mtf = mtf.draw(plain, 16)  # same position: the mixed scene draws t after the corner
        plain.bit_generator.state = state
        g1, _, p_bic = bic.draw(plain, 16)
        assert torch.equal(gt, g0) and torch.equal(gt, g1)
        # pan = p_mtf + t * (p_bic - p_mtf) at that position, with one t in [0, 1] for the whole patch
        delta = p_bic - p_mtf
        t = float(((pan - p_mtf) * delta).sum() / (delta * delta).sum())
        assert 0.0 <= t <= 1.0 and torch.allclose(pan, p_mtf + t * delta, atol=1e-6)
        ts.append(t)
    assert min(ts) < 0.2 and max(ts) > 0.8  # spread over the whole range
    with pytest.raises(ValueError, match="pan_filter"):
        WaldScene(*wv3_pair, pan_filter="gauss")


def test_wald_scene_never_draws_nodata(tmp_path):
    pan, ms, _ = make_scene(256, "wv3", seed=4)
    pan, ms = pan.copy(), ms.copy()
    ms[:, :20, :24] = 0  # a nodata corner (MS pixels) ...
    pan[:, :80, :96] = 0  # ... and the PAN under it
    p = write_tif(tmp_path / "n_pan.tif", pan, gsd=0.5, nodata=0, tags={"SENSOR": "WV3"})
    m = write_tif(tmp_path / "n_ms.tif", ms, gsd=2.0, nodata=0, tags={"SENSOR": "WV3"})
    scene = WaldScene(p, m)
    assert scene.has_nodata and scene.bad[:20, :24].all()
    assert scene.bad[20:24, :24].any() and not scene.bad[40:, :].any()  # influence reaches a few pixels out
    rng = np.random.default_rng(0)
    for _ in range(50):
        gt, lms, pan_lr = scene.draw(rng, 24)
        assert gt.shape == (4, 24, 24) and float(gt.min()) > 0  # no zero-valued (nodata) reference pixel
    tiles = scene.eval_samples(16)
    assert 0 < len(tiles) < 16 and all(float(t[0].min()) > 0 for t in tiles)
    assert {tuple(t[0].shape) for t in scene.eval_samples(64)} == {(4, 32, 32)}  # no clean 64 tile: 32s
    with pytest.raises(ValueError, match="no 64x64 patch free of nodata"):
        scene.draw(rng, 64)
    # summed-area corner search agrees with brute force
    bad = np.random.default_rng(1).random((9, 11)) < 0.1
    brute = [r * 11 + c for r in range(9 - 3 + 1) for c in range(11 - 3 + 1) if not bad[r:r + 3, c:c + 3].any()]
    assert clean_corners(bad, 3).tolist() == brute


# --- data: HDF5 -----------------------------------------------------------------------------------

def test_hdf5_loader_maps_eight_bands_to_r_g_b_nir(tmp_path):
    h5py = pytest.importorskip("h5py")
    n, c, h = 3, 8, 16
    cube = np.stack([np.full((h, h), 100 * (b + 1), np.float64) for b in range(c)])  # band b holds 100(b+1)
    with h5py.File(tmp_path / "train_wv3.h5", "w") as f:
        f["gt"] = np.stack([cube * (i + 1) for i in range(n)])
        f["lms"] = np.stack([cube * 0.5 for _ in range(n)])
        f["ms"] = np.zeros((n, c, h // 4, h // 4))
        f["pan"] = np.full((n, 1, h, h), 2047.0)
    ds = H5Dataset(tmp_path / "train_wv3.h5", "wv3")
    assert len(ds) == 3
    gt, lms, pan = ds.get(1)
    assert gt.dtype == torch.float32 and gt.shape == (4, h, h)
    np.testing.assert_allclose(gt[:, 0, 0].numpy() * 2047, [1000, 600, 400, 1400], rtol=1e-6)  # R, G, B, NIR1
    np.testing.assert_allclose(lms[:, 0, 0].numpy() * 2047, [250, 150, 100, 350], rtol=1e-6)
    assert pan.shape == (1, h, h) and float(pan.max()) == 1.0
    crop = ds.draw(np.random.default_rng(0), 8)
    assert [tuple(x.shape) for x in crop] == [(4, 8, 8), (4, 8, 8), (1, 8, 8)]
    ds.close()


def test_hdf5_four_band_cubes_scale_and_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    bgrn = np.stack([np.full((8, 8), v, np.float64) for v in (10, 20, 30, 40)])[None]  # B, G, R, NIR
    with h5py.File(tmp_path / "gf2.h5", "w") as f:
        f["gt"], f["lms"], f["pan"] = bgrn, bgrn, np.ones((1, 1, 8, 8))
    gt, _, _ = H5Dataset(tmp_path / "gf2.h5", "gf2").get(0)
    np.testing.assert_allclose(gt[:, 0, 0].numpy() * 1023, [30, 20, 10, 40], rtol=1e-6)  # 10-bit, R,G,B,NIR
    gt, _, _ = H5Dataset(tmp_path / "gf2.h5", "wv3", bands=[0, 1, 2, 3], scale=255.0).get(0)
    np.testing.assert_allclose(gt[:, 0, 0].numpy() * 255, [10, 20, 30, 40], rtol=1e-6)
    with pytest.raises(ValueError, match="4 bands but sensor 'wv3' has 8"):
        H5Dataset(tmp_path / "gf2.h5", "wv3")
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["gt"] = np.zeros((1, 8, 4, 4))
    with pytest.raises(ValueError, match="lacks"):
        H5Dataset(tmp_path / "bad.h5", "wv3")
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f["gt"], f["lms"], f["pan"] = np.zeros((2, 8, 4, 4)), np.zeros((2, 8, 4, 4)), np.zeros((2, 1, 8, 8))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        H5Dataset(tmp_path / "shape.h5", "wv3")


def test_train_cli_imports_without_h5py_or_torch():
    code = ("import sys; sys.modules['h5py'] = None\n"
            "import argparse, pantiny.train.cli as c\n"
            "p = argparse.ArgumentParser(); c.register(p.add_subparsers())\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --- loss ---------------------------------------------------------------------------------------

def test_loss_terms_equal_hand_computed_values():
    g = torch.full((1, 2, 12, 12), 0.5)
    p = g + 0.1
    assert float(charbonnier(p, g)) == pytest.approx(math.sqrt(0.1 ** 2 + 1e-12), rel=1e-5)
    assert float(charbonnier(g, g)) == pytest.approx(1e-6, rel=1e-3)  # eps at d = 0
    assert float(focal(p, g)) == pytest.approx((25.5 ** 1.1 / 255) * 0.1, rel=1e-4)
    # SSIM with a 1-pixel window is pointwise: (2xy + C1) / (x^2 + y^2 + C1) (variances are 0)
    x, y = 0.6, 0.5
    assert float(ssim_zero_pad(p, g, size=1)) == pytest.approx((2 * x * y + 1e-4) / (x * x + y * y + 1e-4), rel=1e-5)
    assert float(ssim_zero_pad(g, g)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim_zero_pad(p, g)) < 1.0
    total, terms = CompositeLoss()(p, g)
    assert terms["ssim"] == pytest.approx(1 - float(ssim_zero_pad(p, g)), rel=1e-6)
    assert float(total) == pytest.approx(1.5 * terms["charbonnier"] + 4.0 * terms["ssim"] + 1.5 * terms["focal"],
                                         rel=1e-6)
    # focal_as_l1: the third term becomes mean |O - G| (the released code's fallback), weight kept
    total_l1, t2 = CompositeLoss(focal_as_l1=True)(p, g)
    assert t2["focal"] == pytest.approx(0.1, rel=1e-5) and terms["focal"] == pytest.approx(25.5 ** 1.1 / 2550, rel=1e-4)
    assert float(total_l1) - float(total) == pytest.approx(1.5 * (0.1 - terms["focal"]), rel=1e-4)
    # weights are settable
    only_focal, t3 = CompositeLoss(charbonnier=0, ssim=0, focal=2.0)(p, g)
    assert float(only_focal) == pytest.approx(2 * t3["focal"], rel=1e-6)
    with pytest.raises(ValueError, match="weight ssim"):
        CompositeLoss(ssim=-1)
    with pytest.raises(ValueError, match="differ in shape"):
        CompositeLoss()(p, g[:, :1])


def test_one_training_step_reduces_the_loss_on_a_fixed_batch(wv3_pair):
    torch.manual_seed(0)
    model = build_model("pantiny-small")
    gt, lms, pan, _ = Mixer([WaldScene(*wv3_pair)], patch=32, batch=4, seed=0).batch_at(0)
    loss_fn = CompositeLoss()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.999), weight_decay=1e-4)
    before, _ = loss_fn(model(lms, pan), gt)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after, _ = loss_fn(model(lms, pan), gt)
    assert float(after) < float(before.detach())


# --- mixing -------------------------------------------------------------------------------------

class _Fake:
    def __init__(self, sensor, n):
        self.sensor, self.n = get_sensor(sensor), n

    def __len__(self):
        return self.n

    def draw(self, rng, patch):
        v = float(rng.random())
        return torch.full((4, 4, 4), v), torch.zeros(4, 4, 4), torch.zeros(1, 4, 4)


class _FakePan(_Fake):
    def draw(self, rng, patch):
        v = float(rng.random())
        return torch.full((4, 4, 4), v), torch.full((4, 4, 4), v), torch.full((1, 4, 4), v)


def test_pan_gain_scales_only_the_pan_within_its_range():
    sets = [_FakePan("wv3", 10)]
    plain = Mixer(sets, patch=None, batch=64, seed=3)
    off = Mixer(sets, patch=None, batch=64, seed=3, pan_gain=1.0)
    on = Mixer(sets, patch=None, batch=64, seed=3, pan_gain=2.0)
    assert all(torch.equal(a, b) for a, b in zip(plain.batch_at(5)[:3], off.batch_at(5)[:3]))  # off: same stream
    gt, lms, pan, _ = on.batch_at(5)
    assert torch.equal(lms, gt)  # target and MS untouched (the fake sets all three to one value)
    gain = (pan[:, 0, 0, 0] / gt[:, 0, 0, 0]).numpy()
    assert gain.min() >= 0.5 - 1e-6 and gain.max() <= 2.0 + 1e-6
    assert (gain < 0.8).any() and (gain > 1.25).any()  # both directions, log-uniform
    assert torch.allclose(pan, pan[:, :, :1, :1].expand_as(pan))  # one gain per sample
    with pytest.raises(ValueError, match="pan_gain"):
        Mixer(sets, patch=None, batch=2, seed=1, pan_gain=0.5)


def test_sensor_balancing_draws_sensors_equally():
    sets = [_Fake("wv3", 900), _Fake("gf2", 60), _Fake("gf2", 40)]
    plain = Mixer(sets, patch=None, batch=50, seed=1, balance="none")
    fair = Mixer(sets, patch=None, batch=50, seed=1, balance="sensor")
    assert plain.sensor_shares() == pytest.approx({"wv3": 0.9, "gf2": 0.1})
    assert fair.sensor_shares() == pytest.approx({"wv3": 0.5, "gf2": 0.5})
    counts = {"wv3": 0, "gf2": 0}
    for k in range(40):
        for s in fair.batch_at(k)[3]:
            counts[s] += 1
    assert abs(counts["gf2"] / 2000 - 0.5) < 0.04
    plain_gf2 = sum(s == "gf2" for k in range(40) for s in plain.batch_at(k)[3])
    assert abs(plain_gf2 / 2000 - 0.1) < 0.03
    # batch k is a pure function of (seed, k)
    assert torch.equal(fair.batch_at(7)[0], fair.batch_at(7)[0])
    assert not torch.equal(fair.batch_at(7)[0], fair.batch_at(8)[0])
    with pytest.raises(ValueError, match="balance"):
        Mixer(sets, patch=None, batch=2, seed=1, balance="area")
    with pytest.raises(ValueError, match="no training data"):
        Mixer([], patch=None, batch=2, seed=1)


def test_plain_concatenation_weighs_scenes_by_area(wv3_pair):
    whole, quarter = WaldScene(*wv3_pair), WaldScene(*wv3_pair, rows=(0.0, 0.25))
    mixer = Mixer([whole, quarter], patch=16, batch=4, seed=0)
    assert mixer.probs == pytest.approx([0.8, 0.2])  # 16 vs 4 tiles of 16x16
    gt, lms, pan, sensors = Mixer([whole], patch=16, batch=3, seed=0, augment=True).batch_at(0)
    assert gt.shape == (3, 4, 16, 16) and pan.shape == (3, 1, 16, 16) and sensors == ["wv3"] * 3


# --- loop, resume, export -------------------------------------------------------------------------

def _records(path):
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for r in recs:
        r.pop("patches_per_s", None)
    return recs


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path, wv3_pair, monkeypatch):
    straight = _cfg(tmp_path / "a", wv3_pair)
    train(straight, progress=False)
    a = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")

    # 1) clean stop after 3 steps, then resume
    stopped = _cfg(tmp_path / "b", wv3_pair)
    assert train(stopped, progress=False, stop_after=3)["step"] == 3
    assert train(stopped, progress=False)["step"] == 6
    # 2) a crash during step 6 (after step 5 was logged; last checkpoint at step 4), then resume
    crashed = _cfg(tmp_path / "c", wv3_pair)
    real = Mixer.batch_at

    def dying(self, step):
        if step == 5:
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(Mixer, "batch_at", dying)
    with pytest.raises(KeyboardInterrupt):
        train(crashed, progress=False)
    assert load_checkpoint(tmp_path / "c" / "run" / "checkpoint.pt")["step"] == 4
    monkeypatch.setattr(Mixer, "batch_at", real)
    assert train(crashed, progress=False)["step"] == 6

    # 3) a crash while validating the last step (its checkpoint is written, its validation is not)
    import pantiny.train.loop as loop_mod

    in_val = _cfg(tmp_path / "d", wv3_pair)
    real_validate = loop_mod.validate

    calls = []

    def counting_validate(model, datasets, device, **kw):
        calls.append(1)
        if len(calls) == 2:  # validations come at steps 3 and 6
            raise KeyboardInterrupt
        return real_validate(model, datasets, device, **kw)

    monkeypatch.setattr(loop_mod, "validate", counting_validate)
    with pytest.raises(KeyboardInterrupt):
        train(in_val, progress=False)
    monkeypatch.setattr(loop_mod, "validate", real_validate)
    assert load_checkpoint(tmp_path / "d" / "run" / "checkpoint.pt")["step"] == 6
    assert train(in_val, progress=False)["val"] is not None  # validates step 6 on resume

    for run in ("b", "c", "d"):
        b = load_checkpoint(tmp_path / run / "run" / "checkpoint.pt")
        assert a["step"] == b["step"] == 6
        for k in a["model"]:
            assert torch.equal(a["model"][k], b["model"][k]), (run, k)
        assert a["sched"]["last_epoch"] == b["sched"]["last_epoch"] == 6
        assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
        # the resumed log reads like the uninterrupted one (no duplicated steps from the dead process)
        assert _records(tmp_path / "a" / "run" / "log.jsonl") == _records(tmp_path / run / "run" / "log.jsonl")
    assert b["data_position"] == {"seed": 5, "next_batch": 6}

    log = _records(tmp_path / "a" / "run" / "log.jsonl")
    val = [r for r in log if "val" in r]
    assert [r["step"] for r in val] == [3, 6] and set(val[-1]["val"]) == {"wv3"}
    assert {"psnr", "exp_psnr", "sam_deg", "ergas", "loss", "n"} <= set(val[-1]["val"]["wv3"])
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6] and steps[0]["sensors"] == {"wv3": 2}
    # the lr each step used: cosine from 5e-4 towards eta_min 1e-6 over the 6 steps
    cosine = [1e-6 + (5e-4 - 1e-6) * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)]
    assert [r["lr"] for r in steps] == pytest.approx(cosine, rel=1e-9)

    # a checkpoint refuses to resume a different run
    other = _cfg(tmp_path / "a", wv3_pair, optim={"lr": 1e-3})
    with pytest.raises(ValueError, match="different run.*optim.lr"):
        train(other, progress=False)


def test_cli_run_export_and_use_the_weights(tmp_path, wv3_pair, capsys):
    pan, ms = wv3_pair
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[run]
model = "pantiny-small"
steps = 40
batch = 2
patch = 16
device = "cpu"
checkpoint_every = 2
validate_every = 4
out = "run"

[loss]
focal_as_l1 = true

[[data]]
kind = "geotiff"
pan = "{pan}"
ms = "{ms}"
rows = [0.0, 0.75]

[[data]]
kind = "geotiff"
pan = "{pan}"
ms = "{ms}"
rows = [0.75, 1.0]
split = "val"

[[data]]
kind = "hdf5"
path = "absent.h5"
sensor = "gf2"
optional = true
""")
    assert main(["train", "run", "--config", str(cfg), "-q", "--steps", "4", "--seed", "9"]) == 0
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").is_file() and (run / "config.json").is_file()
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and any("val" in r for r in log) and any("patches_per_s" in r for r in log)
    # the saved config.toml is the resolved config, overrides included: it repeats the run
    saved = load_config(run / "config.toml")
    assert saved.to_dict() == json.loads((run / "config.json").read_text())
    assert saved.run.steps == 4 and saved.run.seed == 9 and saved.loss.focal_as_l1 is True

    manifest = tmp_path / "manifest.json"
    weights = tmp_path / "weights" / "tiny.safetensors"
    assert main(["train", "export", str(run / "checkpoint.pt"), "--name", "tiny", "--out", str(weights),
                 "--manifest", str(manifest)]) == 0
    entry = json.loads(manifest.read_text())["models"][0]
    assert entry["name"] == "tiny" and entry["file"] == "weights/tiny.safetensors"
    assert entry["architecture"] == "pantiny-small" and entry["bands"] == ["R", "G", "B", "NIR"]
    assert entry["size"] == weights.stat().st_size and entry["steps"] == 4
    assert "wv3" in entry["metrics"] and entry["training"]["seed"] == 9
    # the absent optional source was not used, and is not claimed
    assert [(d["sensor"], d["split"]) for d in entry["training_data"]] == [("wv3", "train"), ("wv3", "val")]
    assert entry["training_data"][0]["files"] == ["s_pan.tif", "s_ms.tif"]

    model = load_model("tiny", manifest_path=manifest)
    ck = load_checkpoint(run / "checkpoint.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["model"][k])
    fused = pansharpen(str(pan), str(ms), model=model, tile=128, overlap=40)
    assert fused.shape == (4, 256, 256) and fused.dtype == np.uint16
    capsys.readouterr()
    assert main(["train", "export", str(run / "log.jsonl"), "--name", "x", "--out", str(tmp_path / "x.safetensors"),
                 "--manifest", str(manifest)]) == 1
    assert "not a pantiny training checkpoint" in capsys.readouterr().err


def test_config_errors_are_clear(tmp_path, wv3_pair):
    with pytest.raises(ValueError, match="unknown key"):
        from_dict({"run": {"steps": 3, "stpes": 4}})
    with pytest.raises(ValueError, match="steps"):
        from_dict({"run": {}})
    with pytest.raises(ValueError, match="wrong type"):
        from_dict({"run": {"steps": "300"}})
    with pytest.raises(ValueError, match="model"):
        from_dict({"run": {"steps": 3, "model": "pantiny-huge"}})
    with pytest.raises(ValueError, match="kind"):
        from_dict({"run": {"steps": 3}, "data": [{"kind": "png"}]})
    cfg = _cfg(tmp_path, wv3_pair)
    cfg.data[0] = type(cfg.data[0])(kind="geotiff", pan=str(tmp_path / "nope.tif"), ms=str(tmp_path / "nope2.tif"))
    with pytest.raises(FileNotFoundError, match="training data not found"):
        train(cfg, progress=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nsteps=")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)


def test_to_toml_round_trips(tmp_path, wv3_pair):
    cfg = _cfg(tmp_path, wv3_pair, optim={"lr": 3e-4, "betas": [0.8, 0.99]})
    (tmp_path / "c.toml").write_text(to_toml(cfg))
    assert load_config(tmp_path / "c.toml") == cfg


def test_example_config_parses():
    cfg = load_config(REPO / "examples" / "train_small.toml")
    assert cfg.run.model == "pantiny-big" and cfg.run.batch == 16
    assert {s.split for s in cfg.data} == {"train", "val"}
    assert cfg.optim.lr == 5e-4 and cfg.optim.weight_decay == 1e-4 and cfg.optim.eta_min == 1e-6
    assert all(s.exists() for s in cfg.data if not s.optional)  # the bundled sample scene


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="real scenes in ../shared/data are not available here")
def test_real_scenes_give_wald_pairs():
    ik = WaldScene(SHARED_DATA / "ikonos_scene_pan.tif", SHARED_DATA / "ikonos_scene_ms.tif")
    gt, lms, pan = ik.full()
    assert ik.sensor.name == "ikonos" and gt.shape == (4, 320, 320) and pan.shape == (1, 320, 320)
    assert 0 < float(gt.mean()) < 1 and float(lms.min()) > -0.1
    wv = WaldScene(SHARED_DATA / "wv3_crop_pan.tif", SHARED_DATA / "wv3_crop_ms.tif")
    with rasterio.open(SHARED_DATA / "wv3_crop_ms.tif") as ds:
        ms = ds.read().astype(np.float32)
    np.testing.assert_allclose(wv.gt.numpy(), ms[[4, 2, 1, 6]] / 2047, rtol=1e-6)


def test_compile_failure_falls_back_to_eager(tmp_path, wv3_pair, monkeypatch):
    def broken(model, **kw):
        def fail(*a, **k):
            raise RuntimeError("inductor: no working C++ compiler")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    compiled = _cfg(tmp_path / "x", wv3_pair, run={"compile": True, "steps": 2})
    with pytest.warns(UserWarning, match="torch.compile failed"):
        assert train(compiled, progress=False)["step"] == 2
    train(_cfg(tmp_path / "y", wv3_pair, run={"steps": 2}), progress=False)
    x = load_checkpoint(tmp_path / "x" / "run" / "checkpoint.pt")["model"]
    y = load_checkpoint(tmp_path / "y" / "run" / "checkpoint.pt")["model"]
    assert all(torch.equal(x[k], y[k]) for k in x)  # the failed step was redone, nothing applied twice
    events = [r.get("event") for r in _records(tmp_path / "x" / "run" / "log.jsonl")]
    assert events.count("compile_failed") == 1


# --- stage 2: full-resolution fine-tuning -------------------------------------------------------

def test_full_resolution_stage_fine_tunes_from_init_weights(wv3_pair, tmp_path):
    """Stage "fr": starts from the stage-1 weights given by [run] init, trains on full-resolution
    crops (MS kept whole: crops on MS corners) with the no-reference loss, validates at reduced
    resolution, and the weights move."""
    from pantiny.train.data import FRScene

    scene = FRScene(*wv3_pair)
    ms_nn, lms, pan = scene.full()
    assert ms_nn.shape == lms.shape == (4, 256, 256) and pan.shape == (1, 256, 256)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, _, _ = scene.draw(rng, 32)
        lr = a[..., ::4, ::4]  # every 4th pixel is the MS pixel itself: crops start on MS corners
        assert torch.equal(a, lr.repeat_interleave(4, -2).repeat_interleave(4, -1))
    with pytest.raises(ValueError, match="multiple of 4"):
        scene.draw(rng, 30)

    s1 = _cfg(tmp_path / "s1", wv3_pair, run={"steps": 2, "model": "pantiny-big"})
    train(s1, progress=False)
    init = tmp_path / "s1" / "run" / "checkpoint.pt"
    with pytest.raises(ValueError, match="init"):
        _cfg(tmp_path / "bad", wv3_pair, run={"stage": "fr"})
    with pytest.raises(ValueError, match="multiple of 4 and >= 32"):  # refused when the config is read
        _cfg(tmp_path / "bad", wv3_pair, run={"stage": "fr", "init": str(init), "patch": 30})
    cfg = _cfg(tmp_path / "s2", wv3_pair, run={"stage": "fr", "init": str(init), "model": "pantiny-big",
                                               "steps": 3, "patch": 32, "validate_every": 3})
    res = train(cfg, progress=False)
    log = [json.loads(line) for line in open(res["log"])]
    steps = [r for r in log if "spectral" in r]
    assert steps and all(math.isfinite(r["spectral"]) and math.isfinite(r["spatial"]) for r in steps)
    assert any("val" in r for r in log)  # reduced-resolution validation: does stage 2 hurt RR?
    before, after = load_checkpoint(init)["model"], load_checkpoint(res["checkpoint"])["model"]
    moved = sum(float((before[k].float() - after[k].float()).abs().max()) for k in before)
    assert moved > 0


def test_joint_stage_adds_the_full_resolution_loss_to_the_composite_one(wv3_pair, tmp_path):
    """Stage "joint": every step is one reduced-resolution batch (composite loss) plus one
    full-resolution batch of fr_batch x fr_patch crops (no-reference loss); the log carries both
    sets of terms, the weights move, and resuming an interrupted joint run is bit-identical."""
    s1 = _cfg(tmp_path / "s1", wv3_pair, run={"steps": 2, "model": "pantiny-big"})
    train(s1, progress=False)
    init = str(tmp_path / "s1" / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match="init"):
        _cfg(tmp_path / "bad", wv3_pair, run={"stage": "joint"})
    with pytest.raises(ValueError, match="fr_patch"):
        _cfg(tmp_path / "bad", wv3_pair, run={"stage": "joint", "init": init, "fr_patch": 30})
    run = {"stage": "joint", "init": init, "model": "pantiny-big", "steps": 4, "fr_batch": 2, "fr_patch": 32,
           "validate_every": 4}
    res = train(_cfg(tmp_path / "j", wv3_pair, run=run), progress=False)
    steps = [r for r in _records(Path(res["log"])) if "loss" in r and "val" not in r]
    assert steps and all({"charbonnier", "ssim", "spectral", "spatial"} <= set(r) for r in steps)
    for r in steps:  # the logged total is the sum of both losses' weighted terms
        composite = 1.5 * r["charbonnier"] + 4.0 * r["ssim"] + 1.5 * r["focal"]
        assert r["loss"] == pytest.approx(composite + r["spectral"] + r["spatial"], rel=1e-4)
    before, after = load_checkpoint(init)["model"], load_checkpoint(res["checkpoint"])["model"]
    assert sum(float((before[k].float() - after[k].float()).abs().max()) for k in before) > 0
    # interrupted after 2 steps and resumed: the same weights as the uninterrupted run
    part = _cfg(tmp_path / "k", wv3_pair, run=run)
    train(part, progress=False, stop_after=2)
    resumed = load_checkpoint(train(part, progress=False)["checkpoint"])["model"]
    assert all(torch.equal(resumed[k], after[k]) for k in after)


def test_export_wise_ships_the_interpolation_between_start_and_fine_tuned_weights(wv3_pair, tmp_path, capsys):
    """`pantiny train export --wise A`: the shipped weights are (1 - A) * the run's [run] init + A * its
    trained weights, key by key; the manifest records A and the start weights; a run without init, a
    missing start file and A outside (0, 1] are refused with a message naming the problem."""
    from pantiny.train.export import export
    from pantiny.train.loop import trained_weights
    from pantiny.weights import manifest_entry

    train(_cfg(tmp_path / "s1", wv3_pair, run={"steps": 2}), progress=False)
    init = tmp_path / "s1" / "run" / "checkpoint.pt"
    fine = _cfg(tmp_path / "s2", wv3_pair, run={"stage": "fr", "init": str(init), "steps": 2, "patch": 32})
    ck_path = train(fine, progress=False)["checkpoint"]
    start, tuned = trained_weights(load_checkpoint(init)), trained_weights(load_checkpoint(ck_path))
    manifest = tmp_path / "m.json"
    assert main(["train", "export", str(ck_path), "--name", "w", "--out", str(tmp_path / "w.safetensors"),
                 "--manifest", str(manifest), "--wise", "0.7"]) == 0
    shipped = load_model("w", manifest_path=manifest).state_dict()
    moved = 0.0
    for k, v in shipped.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.3 * start[k] + 0.7 * tuned[k], rtol=1e-5, atol=1e-7)
            moved = max(moved, float((v - tuned[k]).abs().max()))
    assert moved > 0  # not the trained weights themselves
    entry = manifest_entry("w", manifest)
    assert entry["training"]["wise"] == 0.7 and entry["training"]["init"] == "run/checkpoint.pt"
    # its validation scores are the interpolated weights', not the run's last validation
    from pantiny.train.loop import open_sources, validate

    own = validate(load_model("w", manifest_path=manifest), open_sources(fine, "val"), torch.device("cpu"),
                   patch=fine.run.patch)
    assert entry["metrics"]["wv3"]["psnr"] == pytest.approx(own["wv3"]["psnr"], abs=1e-6)
    assert entry["metrics"]["wv3"]["psnr"] != pytest.approx(load_checkpoint(ck_path)["val"]["wv3"]["psnr"], abs=1e-9)
    # default 1: the trained weights, bit for bit
    export(ck_path, "t", tmp_path / "t.safetensors", manifest=manifest)
    plain = load_model("t", manifest_path=manifest).state_dict()
    assert all(torch.equal(plain[k], tuned[k]) for k in tuned)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        export(ck_path, "x", tmp_path / "x.safetensors", manifest=manifest, wise=1.5)
    with pytest.raises(ValueError, match="not fine-tuned"):
        export(init, "x", tmp_path / "x.safetensors", manifest=manifest, wise=0.5)
    with pytest.raises(ValueError, match="not found"):
        export(ck_path, "x", tmp_path / "x.safetensors", manifest=manifest, wise=0.5, init=tmp_path / "gone.pt")


def test_fr_sensors_restricts_the_full_resolution_half_of_a_joint_run(wv3_pair, tmp_path, monkeypatch):
    """[run] fr_sensors: the full-resolution crops of stage "joint" come only from scenes of the named
    sensors (aliases accepted), the reduced-resolution half still from every scene; a selection that
    matches no scene, an unknown sensor name, or the key outside stage "joint" is refused up front."""
    import pantiny.train.loop as loop

    folder = tmp_path / "gf2"
    folder.mkdir()
    pan, ms, _ = make_scene(128, "gf2", seed=4)
    gf2 = (write_tif(folder / "g_pan.tif", pan, gsd=0.8, tags={"SENSOR": "GF2"}),
           write_tif(folder / "g_ms.tif", ms, gsd=3.2, tags={"SENSOR": "GF2"}))
    s1 = _cfg(tmp_path / "s1", wv3_pair, run={"steps": 1, "model": "pantiny-big"})
    train(s1, progress=False)
    init = str(tmp_path / "s1" / "run" / "checkpoint.pt")
    run = {"stage": "joint", "init": init, "model": "pantiny-big", "steps": 2, "fr_batch": 2, "fr_patch": 32,
           "validate_every": 2}

    def cfg(where, **more):
        c = _cfg(tmp_path / where, wv3_pair, run={**run, **more})
        extra = from_dict({"run": {"steps": 1}, "data": [{"kind": "geotiff", "pan": str(gf2[0]),
                                                          "ms": str(gf2[1])}]}, tmp_path)
        c.data.insert(0, extra.data[0])
        return c

    seen = []
    real_mixer = loop.Mixer

    def recording_mixer(datasets, **kw):
        seen.append(sorted(d.sensor.name for d in datasets))
        return real_mixer(datasets, **kw)

    monkeypatch.setattr(loop, "Mixer", recording_mixer)
    train(cfg("all"), progress=False)
    assert seen == [["gf2", "wv3"], ["gf2", "wv3"]]  # reduced-resolution mixer, then full-resolution one
    seen.clear()
    c = cfg("gf", fr_sensors=["GaoFen-2"])
    assert c.run.fr_sensors == ("gf2",)
    res = train(c, progress=False)
    assert seen == [["gf2", "wv3"], ["gf2"]]
    steps = [r for r in _records(Path(res["log"])) if "loss" in r and "val" not in r]
    assert steps and all(math.isfinite(r["spectral"]) for r in steps)
    with pytest.raises(ValueError, match="selects none"):
        train(cfg("qb", fr_sensors=["qb"]), progress=False)
    with pytest.raises(ValueError, match="unknown sensor"):
        cfg("bad", fr_sensors=["landsat"])
    with pytest.raises(ValueError, match="stage"):
        _cfg(tmp_path / "rr", wv3_pair, run={"fr_sensors": ["gf2"]})


def test_weight_average_follows_its_decay_resumes_and_is_what_export_ships(tmp_path, wv3_pair):
    """[run] ema: the average equals the recurrence over the weights after each step (first step: a
    copy), survives an interruption bit for bit, and is what validation, export and init use."""
    from pantiny.train.export import export
    from pantiny.train.loop import trained_weights

    decay = 0.8
    straight = _cfg(tmp_path / "a", wv3_pair, run={"ema": decay, "checkpoint_every": 1, "validate_every": 6})
    per_step = []
    for n in range(1, 5):  # step by step, recording the optimiser's weights after each step
        train(straight, progress=False, stop_after=1)
        ck = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")
        assert ck["step"] == n
        per_step.append({k: v.clone() for k, v in ck["model"].items()})
    avg = trained_weights(ck)
    assert set(avg) == set(ck["model"])
    for k, v in avg.items():
        expect = per_step[0][k].float()
        for w in per_step[1:]:
            expect = decay * expect + (1 - decay) * w[k].float()
        torch.testing.assert_close(v.float(), expect, rtol=1e-5, atol=1e-7)
    changed = [k for k in avg if avg[k].is_floating_point() and not torch.equal(avg[k], ck["model"][k])]
    assert changed, "after 4 steps the average differs from the last weights"

    # uninterrupted run == the step-by-step one, average included
    whole = _cfg(tmp_path / "b", wv3_pair, run={"ema": decay, "checkpoint_every": 1, "validate_every": 6})
    train(whole, progress=False, stop_after=4)
    ck_b = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")
    for k in avg:
        assert torch.equal(trained_weights(ck_b)[k], avg[k]), k

    # validation scores the average; export ships it
    out = train(whole, progress=False)
    ck_b = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")
    from pantiny.train.loop import validate, open_sources
    m = build_model("pantiny-small")
    m.load_state_dict(trained_weights(ck_b))
    val = validate(m, open_sources(whole, "val"), torch.device("cpu"), patch=16)
    assert val["wv3"]["psnr"] == pytest.approx(out["val"]["wv3"]["psnr"], abs=1e-4)
    entry = export(tmp_path / "b" / "run" / "checkpoint.pt", "avg", tmp_path / "avg.safetensors")
    assert entry["training"]["ema"] == decay
    shipped = load_model("avg", manifest_path=tmp_path / "weights_manifest.json")
    for k, v in shipped.state_dict().items():
        assert torch.equal(v, trained_weights(ck_b)[k]), k
    # a checkpoint without the average stands for its last weights; a bad decay is refused
    assert trained_weights({"model": ck_b["model"]}) is ck_b["model"]
    with pytest.raises(ValueError, match="ema must be in"):
        _cfg(tmp_path / "c", wv3_pair, run={"ema": 1.0})
