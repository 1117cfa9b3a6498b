"""Issue #16 (data side): corpus.json indexes, per-scene bit depth and band maps, published RR
triplets, small scenes checked before step 0, whole-scene validation splits, the spectral loss term."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
import torch
from conftest import SHARED_DATA, write_tif

from pantiny.synthetic import make_scene
from pantiny.train.config import from_dict
from pantiny.train.data import RRScene, WaldScene, corpus_sources
from pantiny.train.loop import open_sources, train
from pantiny.train.loss import CompositeLoss, spectral_angle

_CORPUS = SHARED_DATA / "corpus" / "corpus.json"


def _corpus(tmp_path):
    """A tiny corpus: an 8-bit R,G,B,NIR 'wv2' FR pair, an 11-bit 8-band WV3 FR pair, a 10-bit GF2 RR
    triplet and a too-small GF2 FR pair."""
    root = tmp_path / "corpus"
    (root / "wv2").mkdir(parents=True)
    (root / "wv3").mkdir()
    (root / "gf2").mkdir()
    pan4, ms4, _ = make_scene(256, "ikonos", seed=11)  # B,G,R,NIR, 11-bit
    rgbn8 = (ms4[[2, 1, 0, 3]] // 8).astype(np.uint8)  # stored R,G,B,NIR, 8-bit
    write_tif(root / "wv2" / "a_pan.tif", (pan4 // 8).astype(np.uint8), gsd=0.5)
    write_tif(root / "wv2" / "a_ms.tif", rgbn8, gsd=2.0)
    pan8, ms8, _ = make_scene(256, "wv3", seed=12)
    write_tif(root / "wv3" / "b_pan.tif", pan8, gsd=0.5)
    write_tif(root / "wv3" / "b_ms.tif", ms8, gsd=2.0)
    pan_g, ms_g, gt_g = make_scene(128, "gf2", seed=13)
    write_tif(root / "gf2" / "c_pan.tif", pan_g // 2, gsd=0.5)
    write_tif(root / "gf2" / "c_ms.tif", ms_g // 2, gsd=2.0)
    write_tif(root / "gf2" / "c_gt.tif", gt_g // 2, gsd=0.5)
    write_tif(root / "gf2" / "d_pan.tif", pan_g[:, :96, :96] // 2, gsd=0.5)  # 24x24 MS: no 32x32 RR patch
    write_tif(root / "gf2" / "d_ms.tif", ms_g[:, :24, :24] // 2, gsd=2.0)
    write_tif(root / "gf2" / "e_pan.tif", pan_g[:, :48, :48] // 2, gsd=0.5)  # 12x12 MS: below any sample
    write_tif(root / "gf2" / "e_ms.tif", ms_g[:, :12, :12] // 2, gsd=2.0)
    recs = [
        {"scene_id": "a", "sensor": "wv2", "kind": "fr", "max_dn": 255, "band_map": [0, 1, 2, 3],
         "files": {"pan": "wv2/a_pan.tif", "ms": "wv2/a_ms.tif"}},
        {"scene_id": "b", "sensor": "wv3", "kind": "rr_nogt", "max_dn": 2047, "band_map": [4, 2, 1, 6],
         "files": {"pan": "wv3/b_pan.tif", "ms": "wv3/b_ms.tif"}},
        {"scene_id": "c", "sensor": "gf2", "kind": "rr", "max_dn": 1023, "band_map": [2, 1, 0, 3],
         "files": {"pan": "gf2/c_pan.tif", "ms": "gf2/c_ms.tif", "gt": "gf2/c_gt.tif"}},
        {"scene_id": "d", "sensor": "gf2", "kind": "fr", "max_dn": 1023, "band_map": [2, 1, 0, 3],
         "files": {"pan": "gf2/d_pan.tif", "ms": "gf2/d_ms.tif"}},
        {"scene_id": "e", "sensor": "gf2", "kind": "fr", "max_dn": 1023, "band_map": [2, 1, 0, 3],
         "files": {"pan": "gf2/e_pan.tif", "ms": "gf2/e_ms.tif"}},
    ]
    (root / "corpus.json").write_text(json.dumps(recs))
    return root / "corpus.json", rgbn8


def test_corpus_sources_follow_each_scenes_bit_depth_and_band_map(tmp_path):
    index, rgbn8 = _corpus(tmp_path)
    srcs = {s.name: s for s in corpus_sources(index)}
    assert sorted(srcs) == ["gf2/c", "gf2/d", "gf2/e", "wv2/a", "wv3/b"]
    a = srcs["wv2/a"].open()
    assert isinstance(a, WaldScene) and a.scale == 255.0 and a.bands == [0, 1, 2, 3]
    # gt = the stored R,G,B,NIR bands divided by the scene's own 8-bit maximum
    np.testing.assert_allclose(a.gt.numpy(), rgbn8[:, :64, :64].astype(np.float32) / 255.0, atol=1e-7)
    b = srcs["wv3/b"].open()
    assert b.scale == 2047.0 and b.bands == [4, 2, 1, 6]
    c = srcs["gf2/c"].open()
    assert isinstance(c, RRScene) and c.scale == 1023.0 and c.gt.shape == (4, 128, 128)
    assert c.lms.shape == c.gt.shape and c.pan.shape == (1, 128, 128)
    assert [s.name for s in corpus_sources(index, sensors=["gf2"], exclude=["c", "e"])] == ["gf2/d"]
    with pytest.raises(ValueError, match=r"unknown scene id\(s\) \['zz'\]"):
        corpus_sources(index, exclude=["zz"])


def test_band_names_pick_stand_in_bands_by_name(tmp_path):
    index, _ = _corpus(tmp_path)
    recs = json.loads(index.read_text())
    recs[0]["bands"] = ["R", "G", "B", "NIR"]
    recs[1]["bands"] = ["Coastal", "B", "G", "Y", "R", "RedEdge", "NIR1", "NIR2"]
    index.write_text(json.dumps(recs))
    srcs = corpus_sources(index, band_names=["Y", "G", "B", "NIR1"])
    assert [s.name for s in srcs] == ["wv3/b[Y,G,B,NIR1]"]  # only the record that has all four names
    b = srcs[0].open()
    assert b.bands == [3, 2, 1, 6] and b.scale == 2047.0
    plain = corpus_sources(index, scenes=["b"])[0].open()
    assert torch.equal(b.gt[[1, 2, 3]], plain.gt[[1, 2, 3]]) and not torch.equal(b.gt[0], plain.gt[0])
    with pytest.raises(ValueError, match="4 bands"):
        corpus_sources(index, band_names=["Y", "G", "B"])
    cfg = from_dict({"run": {"steps": 1}, "data": [{"kind": "corpus", "path": str(index),
                                                     "band_names": ["R", "G", "B", "NIR2"]}]})
    assert [s.bands for s in cfg.data[0].expand()] == [(4, 2, 1, 7)]


def test_zero_padded_scenes_declare_nodata_and_no_sample_touches_the_padding(tmp_path):
    """Products padded with zeros but declaring no nodata (many QuickBird corpus scenes are 2-38 %
    padding): ``nodata = 0`` on a [[data]] entry (or a record's own ``nodata``) keeps every reduced-
    resolution patch, published-triplet patch and full-resolution crop off the padding. Without it,
    whole crops of zeros were drawn (a full-resolution crop with MS and PAN all 0 made the loss 100x
    its usual value). A triplet without nodata draws exactly as before."""
    index, _ = _corpus(tmp_path)
    root = index.parent
    recs = json.loads(index.read_text())
    for name, dn in (("c_pan", None), ("c_ms", None), ("c_gt", None), ("b_pan", None), ("b_ms", None)):
        sub = "gf2" if name.startswith("c") else "wv3"
        path = root / sub / f"{name}.tif"
        with rasterio.open(path) as ds:
            a, prof = ds.read(), ds.profile
        f = 4 if name.endswith("_ms") else 1
        a[:, : a.shape[1] // 2, : 48 // f] = 0  # a zero-filled block at the top left: padding
        with rasterio.open(path, "w", **prof) as ds:
            ds.write(a)
    plain = {s.name: s for s in corpus_sources(index)}
    c0 = plain["gf2/c"].open()
    assert not c0.has_nodata
    old = RRScene(*(root / "gf2" / f"c_{k}.tif" for k in ("pan", "ms", "gt")), "gf2", scale=1023.0,
                  bands=[2, 1, 0, 3])
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(5):  # no nodata: the same draws as a plain uniform crop
        assert all(torch.equal(x, y) for x, y in zip(c0.draw(rng_a, 32), old.draw(rng_b, 32)))
    zero_patches = sum(float(c0.draw(rng_a, 32)[0].abs().sum()) == 0 for _ in range(200))
    assert zero_patches > 0  # without nodata, all-zero patches are drawn

    srcs = {s.name: s for s in corpus_sources(index, nodata=0)}
    c = srcs["gf2/c"].open()
    assert c.has_nodata and c.bad[:64, :40].all() and not c.bad[70:, 60:].any()
    rng = np.random.default_rng(2)
    for _ in range(200):
        gt, lms, pan = c.draw(rng, 32)
        assert (gt > 0).any(0).all() and (pan > 0).all()
    assert not c.can_draw(128)  # the padding leaves no 128x128 patch
    for stage, patch in (("rr", 32), ("fr", 64)):
        b = srcs["wv3/b"].open(stage)
        assert b.has_nodata if stage == "rr" else b.bad.any()
        for _ in range(100):
            sample = b.draw(rng, patch)
            assert all(float(x.amin()) > 0 or (x > 0).any(0).all() for x in sample)
    # a record's own nodata wins over the entry's
    recs[2]["nodata"] = 7
    index.write_text(json.dumps(recs))
    assert {s.name: s.nodata for s in corpus_sources(index, nodata=0)}["gf2/c"] == 7.0
    cfg = from_dict({"run": {"steps": 1}, "data": [{"kind": "corpus", "path": str(index), "nodata": 0}]})
    assert {s.name: s.nodata for s in cfg.data[0].expand()}["wv3/b"] == 0.0
    assert cfg.data[0].expand()[0].describe()["nodata"] == 0.0


def test_small_scenes_are_left_out_before_training_starts(tmp_path):
    index, _ = _corpus(tmp_path)
    cfg = from_dict({"run": {"model": "pantiny-small", "steps": 2, "batch": 2, "patch": 32, "device": "cpu",
                             "out": str(tmp_path / "run"), "log_every": 1},
                     "data": [{"kind": "corpus", "path": str(index), "exclude": ["c"]},
                              {"kind": "corpus", "path": str(index), "scenes": ["c"], "split": "val"}]})
    skipped = []
    sets = open_sources(cfg, "train", skipped)
    assert [d.name for d in sets] == ["wv2/a", "wv3/b"]
    assert skipped[0] == "gf2/d (no 32x32 patch)" and skipped[1].startswith("gf2/e (") and "too small" in skipped[1]
    with pytest.warns(UserWarning, match="left out: gf2/d"):
        res = train(cfg, progress=False)
    assert res["step"] == 2
    val_scenes = {d["scene"] for d in res["data"] if d["split"] == "val"}
    train_scenes = {d["scene"] for d in res["data"] if d["split"] == "train"}
    assert val_scenes == {"gf2/c"} and not (val_scenes & train_scenes)  # whole scenes apart
    assert set(res["val"]) == {"gf2"}
    # an explicitly listed scene that is too small is an error at the start, not minutes in
    cfg2 = from_dict({"run": {"steps": 2, "patch": 32, "device": "cpu", "out": str(tmp_path / "run2")},
                      "data": [{"kind": "geotiff", "pan": str(index.parent / "gf2/d_pan.tif"),
                                "ms": str(index.parent / "gf2/d_ms.tif"), "sensor": "gf2"}]})
    with pytest.raises(ValueError, match="no 32x32 patch"):
        train(cfg2, progress=False)


def test_spectral_angle_term():
    g = torch.rand(2, 4, 8, 8) + 0.1
    assert float(spectral_angle(g * 1.7, g)) < 2e-3  # same direction: (almost) zero angle
    p = g.clone()
    p[:, 0] = 0.0
    expected = torch.acos((g[:, 1:] ** 2).sum(1) / (g[:, 1:].norm(dim=1) * g.norm(dim=1))).mean()
    assert math.isclose(float(spectral_angle(p, g)), float(expected), rel_tol=1e-4)
    base, terms = CompositeLoss()(p, g)
    with_sam, terms2 = CompositeLoss(sam=2.0)(p, g)
    assert "sam" not in terms and math.isclose(terms2["sam"], float(expected), rel_tol=1e-4)
    assert math.isclose(float(with_sam), float(base) + 2.0 * terms2["sam"], rel_tol=1e-5)
    p.requires_grad_(True)
    spectral_angle(p, g).backward()
    assert torch.isfinite(p.grad).all()


@pytest.mark.skipif(not _CORPUS.is_file(), reason="needs ../shared/data/corpus")
@pytest.mark.parametrize("config", ["pantiny-big.toml", "pantiny-big-wv.toml", "pantiny-small-wv.toml",
                                    "pantiny-big-wv-fr.toml", "pantiny-big-nodata.toml", "pantiny-big-nodata-wv.toml",
                                    "pantiny-big-nodata-joint.toml", "pantiny-small-joint.toml",
                                    "pantiny-big-nodata-joint-pf.toml", "pantiny-small-joint-pf.toml"])
def test_the_shipped_training_config_reads_the_real_corpus(config):
    from conftest import REPO

    from pantiny.train.config import load_config

    cfg = load_config(REPO / "training" / config)
    val = [s for e in cfg.data if e.split == "val" for s in e.expand()]
    tr = [s for e in cfg.data if e.split == "train" for s in e.expand()]
    scene = {s.name.split("[")[0] for s in tr}  # band stand-ins of a scene are that scene
    assert {s.name for s in val} & scene == set()
    assert {s.sensor for s in val} == {"wv2", "wv3", "gf2"}
    assert not {s.sensor for s in tr} & {"spot6", "pleiades"}  # unseen sensors kept for adaptation


def test_eval_heldout_reads_a_corpus_index_with_per_scene_bands_and_bit_depth(tmp_path, capsys):
    import importlib.util

    from conftest import REPO

    from pantiny.models import build_model
    from pantiny.weights import save_weights

    spec = importlib.util.spec_from_file_location("eval_heldout", REPO / "benchmarks" / "eval_heldout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    index, _ = _corpus(tmp_path)
    torch.manual_seed(0)
    w = tmp_path / "w.safetensors"
    save_weights(build_model("pantiny-small"), w, architecture="pantiny-small")
    assert mod.main([str(w), str(index), "--scenes", "a", "c", "--methods", "brovey",
                     "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "### wv2: 1 scene(s)" in out and "### gf2: 1 scene(s)" in out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert set(scores) == {"a", "c"} and scores["a"]["sensor"] == "wv2"
    # the 8-bit R,G,B,NIR scene is scored on its own scale: EXP PSNR is a sane number, not ~18 dB low
    assert 20 < scores["a"]["scores"]["EXP"]["psnr"] < 60


@pytest.mark.skipif(not _CORPUS.is_file(), reason="needs ../shared/data/corpus")
@pytest.mark.parametrize("scene_id", ["vivone_rio", "liqilei_mountain", "pairmax_W3_Muni_Nat",
                                      "d2tnet_gf_full_08", "lppn_gaofen2"])
def test_the_default_weights_beat_bicubic_on_held_out_real_products(scene_id):
    """Issue #16: ``pansharpen(pan, ms)`` with no ``model=`` (the shipped checkpoint) on held-out real
    products as they are stored: 8-band WV2/WV3 and 4-band WV2/GF2 files, 8-, 10- and 11-bit integer DN,
    the sensor named and the scale left to pantiny. At reduced resolution (Wald's protocol with the
    sensor's MTF, or the published triplet's own reference) it beats bicubic upsampling on PSNR and SAM."""
    from pantiny import pansharpen
    from pantiny.metrics import psnr, sam
    from pantiny.mtf import mtf_degrade
    from pantiny.resample import upsample
    from pantiny.sensors import get_sensor

    rec = next(r for r in json.loads(_CORPUS.read_text()) if r["scene_id"] == scene_id)
    root, s, band_map = _CORPUS.parent, get_sensor(rec["sensor"]), rec["band_map"]

    def read(key):
        with rasterio.open(root / rec["files"][key]) as ds:
            return ds.read()

    pan, ms = read("pan"), read("ms")
    if rec["kind"] == "rr":  # a published reduced-resolution triplet: its own reference
        pan_lr, ms_lr, ref = pan, ms, read("gt")
    else:
        n = min(pan.shape[1], pan.shape[2], 4 * ms.shape[1], 4 * ms.shape[2]) // 16 * 16
        pan, ms = pan[:, :n, :n], ms[:, :n // 4, :n // 4]
        gains = s.mtf_ms if ms.shape[0] == len(s.bands) else [s.model_mtf[band_map.index(i)] for i in range(4)]

        def degrade(x, g):  # stored like a product: integer DN of the file's type
            y = mtf_degrade(torch.from_numpy(x.astype(np.float32))[None], g)[0].numpy()
            return np.clip(np.rint(y), 0, np.iinfo(x.dtype).max).astype(x.dtype)

        pan_lr, ms_lr, ref = degrade(pan, s.mtf_pan), degrade(ms, gains), ms
    assert ms_lr.dtype.kind == "u" and ms_lr.shape[0] in (4, 8)
    out = pansharpen(pan_lr, ms_lr, sensor=rec["sensor"], bands=band_map)  # no model=: the default
    fused = sorted(band_map)  # the four fused bands come back in file order
    ref = ref[fused].astype(np.float64)
    exp = upsample(torch.from_numpy(ms_lr[fused].astype(np.float32))[None], 4)[0].numpy()
    peak = float(rec["max_dn"])
    assert out.shape == ref.shape and out.dtype == ms_lr.dtype
    gain = psnr(out, ref, data_range=peak) - psnr(exp, ref, data_range=peak)
    assert gain > 1.0, f"{scene_id}: PSNR only {gain:+.2f} dB over bicubic"
    assert sam(out, ref, degrees=True) < sam(exp, ref, degrees=True)


@pytest.mark.skipif(not _CORPUS.is_file(), reason="needs ../shared/data/corpus")
def test_the_default_weights_hold_up_when_the_pan_is_sharper_than_the_mtf_protocol():
    """Issue #16: reduced-resolution pairs are made with the PAN filtered by the sensor's MTF or reduced by
    antialiased bicubic interpolation (sharper). The default weights are trained on both (``pan_filter =
    "mixed"``): on the held-out WorldView-3 Munich scene the bicubic-reduced PAN costs < 2 dB (the weights
    trained on the MTF PAN alone lost 3.4 dB there) and the result stays well above bicubic upsampling."""
    from pantiny import pansharpen
    from pantiny.metrics import psnr
    from pantiny.train.data import WaldScene

    rec = next(r for r in json.loads(_CORPUS.read_text()) if r["scene_id"] == "pairmax_W3_Muni_Nat")
    root, peak = _CORPUS.parent, float(rec["max_dn"])
    scores = {}
    for f in ("mtf", "bicubic"):  # the Wald pairs eval_heldout.py builds, with either PAN degradation
        sc = WaldScene(root / rec["files"]["pan"], root / rec["files"]["ms"], rec["sensor"], bands=rec["band_map"],
                       scale=peak, pan_filter=f)
        out = pansharpen((sc.pan * peak).numpy(), (sc.ms_lr * peak).numpy(), sensor="wv3", bands=[0, 1, 2, 3],
                         scale=peak)  # no model=: the default weights
        ref = (sc.gt * peak).numpy()
        scores[f] = psnr(out, ref, data_range=peak)
    exp = psnr((sc.lms * peak).numpy(), ref, data_range=peak)  # the same for both: the MS side is unchanged
    assert scores["mtf"] - scores["bicubic"] < 2.0, scores
    assert min(scores.values()) > exp + 2.0, (scores, exp)
