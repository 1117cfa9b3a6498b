"""Score a checkpoint on held-out scenes, per sensor, against EXP and the classical methods.

For every ``<stem>_pan.tif`` / ``<stem>_ms.tif`` pair in FOLDER (sensor from ``--sensor`` or the
files' ``SENSOR`` tag) it prints, per sensor:

* reduced resolution (Wald's protocol: PAN and MS MTF-filtered and decimated by 4, the original MS as
  reference): PSNR (dB, peak = sensor max DN), SSIM, SAM (degrees), ERGAS;
* full resolution (no reference): D_lambda, D_s, QNR (Vivone 2020 toolbox definition);

for the model, EXP (the bicubic-upsampled MS) and every method in ``pantiny.classical.METHODS``.

    python benchmarks/eval_heldout.py CHECKPOINT_OR_NAME FOLDER [--sensor wv3] [--methods brovey gsa]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

import pantiny
from pantiny import metrics
from pantiny.classical import METHODS
from pantiny.cli import find_pairs
from pantiny.mtf import mtf_degrade
from pantiny.resample import upsample
from pantiny.train.data import WaldScene
from pantiny.train.loop import load_checkpoint
from pantiny.models import build_model
from pantiny.weights import load_model


def model_from(spec: str) -> torch.nn.Module:
    if spec.endswith(".pt"):
        ck = load_checkpoint(spec)
        m = build_model(ck["model_name"])
        m.load_state_dict(ck["model"])
        return m.eval()
    return load_model(spec)


def score_scene(pan: Path, ms: Path, sensor: str | None, net: torch.nn.Module, methods: List[str]) -> Dict[str, Dict[str, float]]:
    scene = WaldScene(pan, ms, sensor)
    s, scale = scene.sensor, scene.scale
    gt, _, pan_lr = scene.full()
    ms_lr = mtf_degrade(gt[None], s.model_mtf)[0]
    rows: Dict[str, Dict[str, float]] = {}
    # Reduced resolution: everything in DN of the sensor, model bands R, G, B, NIR.
    kw = dict(sensor=s.name, bands=[0, 1, 2, 3], scale=scale, tile=512, overlap=64)
    rr_inputs = ((pan_lr * scale).numpy(), (ms_lr * scale).numpy())
    outputs = {"EXP": upsample(ms_lr[None], 4)[0].numpy() * scale,
               "pantiny": pantiny.pansharpen(*rr_inputs, model=net, **kw)}
    for m in methods:
        outputs[m] = pantiny.pansharpen(*rr_inputs, method=m, **kw)
    ref = gt.numpy() * scale
    for name, out in outputs.items():
        rows[name] = {"psnr": metrics.psnr(out, ref, data_range=scale), "ssim": metrics.ssim(out, ref, data_range=scale),
                      "sam_deg": metrics.sam(out, ref, degrees=True), "ergas": metrics.ergas(out, ref, ratio=4)}
    # Full resolution: the original files, scored with the toolbox QNR on the model bands.
    import rasterio

    with rasterio.open(ms) as ds:
        ms_full = ds.read([b + 1 for b in s.model_bands]).astype(np.float32)
    with rasterio.open(pan) as ds:
        pan_full = ds.read().astype(np.float32)
    fr = {"EXP": upsample(torch.from_numpy(ms_full)[None], 4)[0].numpy(),
          "pantiny": pantiny.pansharpen(pan_full, ms_full, model=net, **kw)}
    for m in methods:
        fr[m] = pantiny.pansharpen(pan_full, ms_full, method=m, **kw)
    for name, out in fr.items():
        q = metrics.qnr(out, ms_full, pan_full)
        rows[name].update({"d_lambda": q.d_lambda, "d_s": q.d_s, "qnr": q.qnr})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="checkpoint.pt of a training run, a .safetensors file or a manifest name")
    ap.add_argument("folder", type=Path)
    ap.add_argument("--sensor", default=None)
    ap.add_argument("--methods", nargs="*", default=sorted(METHODS))
    args = ap.parse_args()
    net = model_from(args.model)
    per_sensor: Dict[str, Dict[str, List[Dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    pairs = find_pairs(args.folder)
    if not pairs:
        raise SystemExit(f"no <stem>_pan.tif / <stem>_ms.tif pairs in {args.folder}")
    for pan, ms, stem in pairs:
        sensor = args.sensor or pantiny.io.raster_info(ms).tags.get("SENSOR", "").lower() or None
        for name, r in score_scene(pan, ms, sensor, net, args.methods).items():
            per_sensor[sensor or "?"][name].append(r)
        print(f"scored {stem}")
    keys = ["psnr", "ssim", "sam_deg", "ergas", "d_lambda", "d_s", "qnr"]
    for sensor, by_method in per_sensor.items():
        print(f"\n### {sensor} ({len(next(iter(by_method.values())))} scene(s))\n")
        print("| method | RR PSNR | RR SSIM | RR SAM (deg) | RR ERGAS | D_lambda | D_s | QNR |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, rs in by_method.items():
            mean = {k: float(np.mean([r[k] for r in rs])) for k in keys}
            print(f"| {name} | " + " | ".join(f"{mean[k]:.4f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
