import json
import math

import numpy as np
import pytest
import torch

from conftest import REPO, SHARED_DATA, write_tif
from pantiny import pansharpen
from pantiny.cli import main
from pantiny.models import build_model
from pantiny.sensors import get_sensor
from pantiny.synthetic import make_scene
from pantiny.train.config import from_dict, load_config
from pantiny.train.data import H5Dataset, WaldScene
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


def _cfg(tmp_path, pair, **run):
    pan, ms = pair
    d = {"run": {"model": "pantiny-small", "steps": 6, "batch": 2, "patch": 16, "seed": 5, "device": "cpu",
                 "checkpoint_every": 2, "validate_every": 3, "log_every": 1, "out": str(tmp_path / "run"), **run},
         "data": [{"kind": "geotiff", "pan": str(pan), "ms": str(ms), "rows": [0.0, 0.75]},
                  {"kind": "geotiff", "pan": str(pan), "ms": str(ms), "rows": [0.75, 1.0], "split": "val"}]}
    return from_dict(d, tmp_path)


# --- data ---------------------------------------------------------------------------------------

def test_wald_pairs_have_the_right_shapes_and_bands(wv3_pair):
    scene = WaldScene(*wv3_pair)
    assert scene.sensor.name == "wv3"  # from the SENSOR tag
    gt, lms, pan = scene.full()
    assert gt.shape == (4, 64, 64) and lms.shape == (4, 64, 64) and pan.shape == (1, 64, 64)
    # gt is the original MS's R, G, B, NIR1 (0-based 4, 2, 1, 6) over 2047
    import rasterio

    with rasterio.open(wv3_pair[1]) as ds:
        ms = ds.read().astype(np.float32)
    np.testing.assert_allclose(gt.numpy(), ms[[4, 2, 1, 6]] / 2047, rtol=1e-6)
    # inputs are degraded: smoother than the reference, same mean level
    assert float(lms.diff(dim=-1).abs().mean()) < float(gt.diff(dim=-1).abs().mean())
    assert abs(float(lms.mean()) - float(gt.mean())) < 0.02 * float(gt.mean())
    top = WaldScene(*wv3_pair, rows=(0.0, 0.5))
    assert top.gt.shape[-2] == 32 and torch.equal(top.gt, gt[:, :32])


def test_wald_mtf_gain_at_nyquist_matches_the_sensor():
    # Filter a cosine at the MS Nyquist frequency (1/8 cycle per PAN pixel) and measure its gain.
    from pantiny.mtf import mtf_filter

    for s in ("wv3", "gf2", "wv2"):
        sensor = get_sensor(s)
        x = torch.arange(256, dtype=torch.float64)
        wave = torch.cos(2 * math.pi * x / 8).expand(1, 4, 8, 256).contiguous()
        y = mtf_filter(wave, sensor.model_mtf)
        mid = slice(64, 192)
        for b, g in enumerate(sensor.model_mtf):
            gain = float(y[0, b, 4, mid].abs().max())
            assert abs(gain - g) < 1e-3, (s, b, gain, g)


def test_hdf5_loader_maps_eight_bands_to_r_g_b_nir(tmp_path):
    h5py = pytest.importorskip("h5py")
    n, c, h = 3, 8, 16
    cube = np.stack([np.full((h, h), 100 * (b + 1), np.float32) for b in range(c)])
    with h5py.File(tmp_path / "train_wv3.h5", "w") as f:
        f["gt"] = np.repeat(cube[None], n, 0)
        f["lms"] = np.repeat(cube[None] * 0.5, n, 0)
        f["ms"] = np.zeros((n, c, h // 4, h // 4), np.float32)
        f["pan"] = np.full((n, 1, h, h), 2047, np.float32)
    ds = H5Dataset(tmp_path / "train_wv3.h5", "wv3")
    assert len(ds) == 3
    gt, lms, pan = ds.get(1)
    np.testing.assert_allclose(gt[:, 0, 0].numpy() * 2047, [500, 300, 200, 700])  # bands 4, 2, 1, 6
    np.testing.assert_allclose(lms[:, 0, 0].numpy() * 2047, [250, 150, 100, 350])
    assert pan.shape == (1, h, h) and float(pan.max()) == 1.0
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["gt"] = np.zeros((1, 8, 4, 4))
    with pytest.raises(ValueError, match="lacks"):
        H5Dataset(tmp_path / "bad.h5", "wv3")


# --- loss ---------------------------------------------------------------------------------------

def test_loss_terms_equal_hand_computed_values():
    g = torch.full((1, 2, 12, 12), 0.5)
    p = g + 0.1
    assert float(charbonnier(p, g)) == pytest.approx(math.sqrt(0.1 ** 2 + 1e-12), rel=1e-5)
    assert float(focal(p, g)) == pytest.approx((25.5 ** 1.1 / 255) * 0.1, rel=1e-4)
    assert float(ssim_zero_pad(g, g)) == pytest.approx(1.0, abs=1e-6)
    # a constant offset keeps structure but changes luminance: SSIM < 1 by the luminance term only
    assert float(ssim_zero_pad(p, g)) < 1.0
    paper = CompositeLoss()
    total, terms = paper(p, g)
    assert float(total) == pytest.approx(1.5 * terms["charbonnier"] + 4.0 * terms["ssim"] + 1.5 * terms["focal"],
                                         rel=1e-6)
    as_l1 = CompositeLoss(focal_as_l1=True)
    _, t2 = as_l1(p, g)
    assert t2["focal"] == pytest.approx(0.1, rel=1e-5) and terms["focal"] != pytest.approx(0.1, rel=1e-2)


def test_one_training_step_reduces_the_loss_on_a_fixed_batch(wv3_pair):
    torch.manual_seed(0)
    model = build_model("pantiny-small")
    mixer = Mixer([WaldScene(*wv3_pair)], patch=32, batch=4, seed=0)
    gt, lms, pan, _ = mixer.batch_at(0)
    loss_fn = CompositeLoss()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    with torch.no_grad():
        before, _ = loss_fn(model(lms, pan), gt)
    for _ in range(3):
        opt.zero_grad()
        loss, _ = loss_fn(model(lms, pan), gt)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after, _ = loss_fn(model(lms, pan), gt)
    assert float(after) < float(before)


# --- mixing -------------------------------------------------------------------------------------

class _Fake:
    def __init__(self, sensor, n):
        self.sensor, self.n = get_sensor(sensor), n

    def __len__(self):
        return self.n

    def draw(self, rng, patch):
        v = float(rng.random())
        return torch.full((4, 4, 4), v), torch.zeros(4, 4, 4), torch.zeros(1, 4, 4)


def test_sensor_balancing_draws_sensors_equally():
    sets = [_Fake("wv3", 900), _Fake("gf2", 100)]
    plain = Mixer(sets, patch=None, batch=50, seed=1, balance="none")
    fair = Mixer(sets, patch=None, batch=50, seed=1, balance="sensor")
    assert plain.sensor_shares() == pytest.approx({"wv3": 0.9, "gf2": 0.1})
    assert fair.sensor_shares() == pytest.approx({"wv3": 0.5, "gf2": 0.5})
    counts = {"wv3": 0, "gf2": 0}
    for k in range(40):
        for s in fair.batch_at(k)[3]:
            counts[s] += 1
    assert abs(counts["gf2"] / 2000 - 0.5) < 0.05
    # batch k is a pure function of (seed, k)
    assert torch.equal(fair.batch_at(7)[0], fair.batch_at(7)[0])
    assert not torch.equal(fair.batch_at(7)[0], fair.batch_at(8)[0])


# --- loop, resume, export -------------------------------------------------------------------------

def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path, wv3_pair):
    straight = _cfg(tmp_path / "a", wv3_pair)
    train(straight, progress=False)
    interrupted = _cfg(tmp_path / "b", wv3_pair)
    first = train(interrupted, progress=False, stop_after=3)
    assert first["step"] == 3
    second = train(interrupted, progress=False)  # resumes from the checkpoint at step 3
    assert second["step"] == 6
    a = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # the log has per-sensor validation with the EXP baseline
    vals = [json.loads(line) for line in (tmp_path / "a" / "run" / "log.jsonl").read_text().splitlines()]
    val = [r for r in vals if "val" in r]
    assert [r["step"] for r in val] == [3, 6] and set(val[-1]["val"]) == {"wv3"}
    assert {"psnr", "exp_psnr", "sam_deg", "ergas"} <= set(val[-1]["val"]["wv3"])


def test_cli_run_export_and_use_the_weights(tmp_path, wv3_pair, capsys):
    pan, ms = wv3_pair
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[run]
model = "pantiny-small"
steps = 4
batch = 2
patch = 16
device = "cpu"
checkpoint_every = 2
validate_every = 4
out = "run"

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
""")
    assert main(["train", "run", "--config", str(cfg), "-q"]) == 0
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").is_file() and (run / "config.json").is_file()
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and any("val" in r for r in log) and any("patches_per_s" in r for r in log)
    manifest = tmp_path / "manifest.json"
    weights = tmp_path / "weights" / "tiny.safetensors"
    weights.parent.mkdir()
    assert main(["train", "export", str(run / "checkpoint.pt"), "--name", "tiny", "--out", str(weights),
                 "--manifest", str(manifest)]) == 0
    entry = json.loads(manifest.read_text())["models"][0]
    assert entry["name"] == "tiny" and entry["file"] == "weights/tiny.safetensors"
    assert entry["size"] == weights.stat().st_size and entry["training"]["steps"] == 4
    assert "wv3" in entry["metrics"] and entry["bands"] == ["R", "G", "B", "NIR"]
    model = load_model("tiny", manifest_path=manifest)
    ck = load_checkpoint(run / "checkpoint.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["model"][k])
    fused = pansharpen(str(pan), str(ms), model=model, tile=128, overlap=40)
    assert fused.shape == (4, 256, 256) and fused.dtype == np.uint16


def test_config_errors_are_clear(tmp_path, wv3_pair):
    with pytest.raises(ValueError, match="unknown key"):
        from_dict({"run": {"steps": 3, "stpes": 4}})
    with pytest.raises(ValueError, match="steps"):
        from_dict({"run": {}})
    cfg = _cfg(tmp_path, wv3_pair)
    cfg.data[0] = type(cfg.data[0])(kind="geotiff", pan=str(tmp_path / "nope.tif"), ms=str(tmp_path / "nope2.tif"))
    with pytest.raises(FileNotFoundError, match="training data not found"):
        train(cfg, progress=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nsteps=")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)


def test_example_config_parses():
    cfg = load_config(REPO / "examples" / "train_small.toml")
    assert cfg.run.model == "pantiny-big" and cfg.run.batch == 16
    assert {s.split for s in cfg.data} == {"train", "val"}
    assert cfg.optim.lr == 5e-4 and cfg.optim.weight_decay == 1e-4 and cfg.optim.eta_min == 1e-6


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="real scenes in ../shared/data are not available here")
def test_real_ikonos_scene_gives_wald_pairs():
    scene = WaldScene(SHARED_DATA / "ikonos_scene_pan.tif", SHARED_DATA / "ikonos_scene_ms.tif", "ikonos")
    gt, lms, pan = scene.full()
    assert gt.shape == (4, 320, 320) and pan.shape == (1, 320, 320)
    assert 0 < float(gt.mean()) < 1 and float(lms.min()) > -0.1
