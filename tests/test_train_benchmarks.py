"""Smoke tests of the training benchmarks (tiny inputs): they run and print what they promise."""

import importlib.util
import json

import pytest
import torch
from conftest import REPO, write_tif

from pantiny.models import build_model
from pantiny.synthetic import make_scene
from pantiny.weights import save_weights


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_train_speed_prints_a_ratio_table(monkeypatch, capsys):
    mod = _load("train_speed")
    monkeypatch.setattr("sys.argv", ["train_speed", "--model", "pantiny-small", "--patches", "16", "--batch", "2",
                                     "--steps", "1", "--threads", "1", "--no-compile"])
    mod.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 16 |")]
    assert [r.split("|")[2].strip() for r in rows][:2] == ["plain", "channels_last"]
    assert rows[0].rstrip().endswith("| 1.00 |")
    assert all(float(r.split("|")[3]) > 0 for r in rows)


def _held_out_folder(tmp_path, seed):
    """A folder with one synthetic WV3 pair (128² PAN) and untrained pantiny-small weights."""
    pan, ms, _ = make_scene(128, "wv3", seed=seed)
    folder = tmp_path / "held"
    folder.mkdir()
    write_tif(folder / "a_pan.tif", pan, gsd=0.5, tags={"SENSOR": "WV3"})
    write_tif(folder / "a_ms.tif", ms, gsd=2.0, tags={"SENSOR": "WV3"})
    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save_weights(build_model("pantiny-small"), weights, architecture="pantiny-small")
    return weights, folder


def test_eval_heldout_scores_model_exp_and_classical(tmp_path, capsys):
    mod = _load("eval_heldout")
    weights, folder = _held_out_folder(tmp_path, seed=11)
    assert mod.main([str(weights), str(folder), "--methods", "brovey", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "### wv3: 1 scene(s)" in out
    table = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"EXP", "pantiny", "brovey"} <= set(table)
    # Brovey injects PAN detail: a better reduced-resolution PSNR than plain upsampling on this scene
    psnr = {k: float(table[k].split("|")[2]) for k in ("EXP", "brovey")}
    assert psnr["brovey"] > psnr["EXP"]
    with pytest.raises(SystemExit, match="unknown method"):
        mod.main([str(weights), str(folder), "--methods", "nope"])


def test_eval_heldout_adapt_row_scores_the_model_adapted_on_each_pair(tmp_path, capsys):
    mod = _load("eval_heldout")
    weights, folder = _held_out_folder(tmp_path, seed=12)  # an untrained model
    args = [str(weights), str(folder), "--methods", "brovey", "--adapt", "--adapt-steps", "4"]
    assert mod.main(args + ["--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())["a"]["scores"]
    assert {"EXP", "pantiny", "pantiny+adapt", "brovey"} <= set(scores)
    plain, adapted = scores["pantiny"], scores["pantiny+adapt"]
    # adaptation minimises the full-resolution loss on the pair itself: an untrained model's QNR rises
    assert adapted["qnr"] > plain["qnr"] + 0.02, (plain["qnr"], adapted["qnr"])
    assert adapted["psnr"] != plain["psnr"]


def test_eval_heldout_precision_row_scores_the_model_in_half_precision(tmp_path, capsys):
    mod = _load("eval_heldout")
    weights, folder = _held_out_folder(tmp_path, seed=13)
    assert mod.main([str(weights), str(folder), "--methods", "--precision", "bfloat16",
                     "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())["a"]["scores"]
    assert set(scores) == {"EXP", "pantiny", "pantiny@bfloat16"}
    full, half = scores["pantiny"], scores["pantiny@bfloat16"]
    assert half["psnr"] != full["psnr"]  # it really ran in bfloat16
    assert abs(half["psnr"] - full["psnr"]) < 0.5 and abs(half["qnr"] - full["qnr"]) < 0.02


def test_eval_heldout_pan_filter_changes_only_the_reduced_resolution_pan(tmp_path, capsys):
    mod = _load("eval_heldout")
    weights, folder = _held_out_folder(tmp_path, seed=14)
    runs = {}
    for f in ("mtf", "bicubic"):
        assert mod.main([str(weights), str(folder), "--methods", "gsa", "--pan-filter", f,
                         "--json", str(tmp_path / f"{f}.json")]) == 0
        runs[f] = json.loads((tmp_path / f"{f}.json").read_text())["a"]["scores"]
    # EXP is the upsampled MS: the PAN's degradation cannot change it; GSA injects the PAN's detail: it does
    assert runs["mtf"]["EXP"]["psnr"] == runs["bicubic"]["EXP"]["psnr"]
    assert runs["mtf"]["gsa"]["psnr"] != runs["bicubic"]["gsa"]["psnr"]
    # full resolution reads the original files either way
    assert runs["mtf"]["gsa"]["qnr"] == runs["bicubic"]["gsa"]["qnr"]
    with pytest.raises(SystemExit):
        mod.main([str(weights), str(folder), "--pan-filter", "gauss"])
