"""Score a trained model on held-out scenes, per sensor, against EXP and the classical methods.

For every ``<stem>_pan.tif`` / ``<stem>_ms.tif`` pair in FOLDER (sensor from ``--sensor`` or the MS
file's ``SENSOR`` tag) it computes, on the 4 model bands (R, G, B, NIR):

* reduced resolution (Wald's protocol, :class:`pantiny.train.data.WaldScene`: MS and PAN filtered
  with the sensor's MTF and decimated by 4, the original MS as reference): PSNR (dB, peak = the
  sensor's max DN), SSIM, SAM (degrees), ERGAS;
* full resolution (no reference, the original files): D_lambda, D_s, QNR and HQNR (Vivone 2020
  toolbox definitions of :func:`pantiny.metrics.qnr`);

for the model, EXP (the bicubic-upsampled MS, the model's own input) and every method of
``pantiny.classical.METHODS``, all run through :func:`pantiny.pansharpen`. ``--adapt`` adds a row
``pantiny+adapt``: the model adapted on each pair it fuses (``pansharpen(..., adapt=True)``, no
reference: on the degraded pair for the reduced-resolution scores, on the original for QNR). Scores
are averaged over the scenes of each sensor and printed as one markdown table per sensor.

``--precision bfloat16`` (or ``float16`` on CUDA) adds a row ``pantiny@bfloat16``: the same model run in
that precision (``pansharpen(..., precision=...)``), to measure what half precision costs in quality.

``--pan-gain G`` multiplies every PAN by ``G`` (inputs and QNR): robustness to products whose PAN and
MS are not on one radiometric scale.

``--pan-filter bicubic`` degrades the PAN of the Wald pairs by antialiased bicubic reduction (MATLAB
``imresize``, as many published reduced-resolution datasets do) instead of the sensor's MTF: the
reduced-resolution scores under the other common protocol, where the PAN keeps more detail (published
triplets, ``rr`` scenes, are used as they are either way).

``--rows A B`` scores only that band of each scene (fractions of its height), e.g. the part a
training config held out (``rows = [0.8, 1.0]``), so training rows are never scored.

    python benchmarks/eval_heldout.py MODEL FOLDER [--sensor wv3] [--rows 0.8 1.0] [--methods brovey gsa]
    python benchmarks/eval_heldout.py MODEL corpus.json --scenes vivone_rio d2tnet_gf_full_08   # per-scene bands/bit depth
        MODEL: a training checkpoint.pt, a .safetensors file, or a manifest name (--manifest FILE)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

import pantiny
from pantiny import io as rio_io
from pantiny import metrics
from pantiny.classical import METHODS
from pantiny.cli import find_pairs
from pantiny.models import build_model
from pantiny.resample import upsample
from pantiny.sensors import with_band_names
from pantiny.train.data import RRScene, WaldScene, corpus_sources
from pantiny.train.loop import load_checkpoint, trained_weights
from pantiny.weights import load_model

RR_KEYS = ("psnr", "ssim", "sam_deg", "ergas")
FR_KEYS = ("d_lambda", "d_s", "qnr", "hqnr")


def model_from(spec: str, manifest: Optional[str] = None) -> torch.nn.Module:
    """A model in eval mode from a training checkpoint (.pt), a .safetensors file or a manifest name."""
    if spec.endswith(".pt"):
        ck = load_checkpoint(spec)
        m = build_model(ck["model_name"])
        m.load_state_dict(trained_weights(ck))  # the moving average when the run kept one
        return m.eval()
    return load_model(spec, manifest_path=manifest)


def score_scene(pan: Path, ms: Path, sensor: Optional[str], net: torch.nn.Module, methods: Sequence[str],
                rows: Tuple[float, float] = (0.0, 1.0), bands: Optional[Sequence[int]] = None,
                scale: Optional[float] = None, gt: Optional[str] = None, adapt: Union[bool, dict] = False,
                pan_gain: float = 1.0, precisions: Sequence[str] = (),
                pan_filter: str = "mtf") -> Tuple[str, Dict[str, Dict[str, float]]]:
    """``(sensor name, {method: {metric: value}})`` for one scene (the ``rows`` band of it).

    ``bands`` / ``scale``: the scene's own R,G,B,NIR indices and maximum DN (corpus scenes); ``gt``: a
    published reduced-resolution triplet's reference (then PAN/MS are already degraded and are used
    as they are for the reduced-resolution scores); ``adapt``: also score ``pantiny+adapt`` (True, or
    :func:`pantiny.adapt` options); ``pan_gain``: multiply the PAN by it (at both resolutions, inputs and
    QNR alike), as a product whose PAN is on another radiometric scale than its MS would be;
    ``pan_filter``: how Wald pairs degrade the PAN, ``"mtf"`` or ``"bicubic"`` (``"mixed"`` is a training
    option: its scene scores the ``"mtf"`` PAN)."""
    if gt is not None:
        scene = RRScene(pan, ms, gt, sensor, bands=bands, scale=scale)
    else:
        scene = WaldScene(pan, ms, sensor, rows=rows, bands=bands, scale=scale, pan_filter=pan_filter)
    s, scale = scene.sensor, scene.scale
    model_bands = list(scene.bands)
    kw = dict(sensor=s.name, bands=[0, 1, 2, 3], scale=scale, tile=512, overlap=64)
    scores: Dict[str, Dict[str, float]] = defaultdict(dict)

    # Reduced resolution, in DN, model bands in model order (inputs are 4-band R,G,B,NIR arrays).
    pan_lr, ms_lr = (scene.pan * (scale * pan_gain)).numpy(), (scene.ms_lr * scale).numpy()
    ref = scene.gt.numpy() * scale
    outputs = {"EXP": scene.lms.numpy() * scale, "pantiny": pantiny.pansharpen(pan_lr, ms_lr, model=net, **kw)}
    if adapt:
        outputs["pantiny+adapt"] = pantiny.pansharpen(pan_lr, ms_lr, model=net, adapt=adapt, **kw)
    for p in precisions:
        outputs[f"pantiny@{p}"] = pantiny.pansharpen(pan_lr, ms_lr, model=net, precision=p, **kw)
    for m in methods:
        outputs[m] = pantiny.pansharpen(pan_lr, ms_lr, method=m, **kw)
    for name, out in outputs.items():
        scores[name].update(psnr=metrics.psnr(out, ref, data_range=scale), ssim=metrics.ssim(out, ref, data_range=scale),
                            sam_deg=metrics.sam(out, ref, degrees=True), ergas=metrics.ergas(out, ref, ratio=4))

    # Full resolution: the same rows of the original files (whole ratio-blocks).
    r = scene.ratio
    info = rio_io.raster_info(ms)
    h = min(info.height, rio_io.raster_info(pan).height // r)
    w = min(info.width, rio_io.raster_info(pan).width // r)
    h, w = h - h % r, w - w % r  # the rounding WaldScene uses, so RR and FR score the same rows
    r0, r1 = int(round(rows[0] * h / r)) * r, int(round(rows[1] * h / r)) * r
    ms_full = rio_io.read(ms, window=(r0, 0, r1 - r0, w), bands=model_bands).astype(np.float32)
    pan_full = rio_io.read(pan, window=(r0 * r, 0, (r1 - r0) * r, w * r)).astype(np.float32) * np.float32(pan_gain)
    fr = {"EXP": upsample(torch.from_numpy(ms_full)[None], r)[0].numpy(),
          "pantiny": pantiny.pansharpen(pan_full, ms_full, model=net, **kw)}
    if adapt:
        fr["pantiny+adapt"] = pantiny.pansharpen(pan_full, ms_full, model=net, adapt=adapt, **kw)
    for p in precisions:
        fr[f"pantiny@{p}"] = pantiny.pansharpen(pan_full, ms_full, model=net, precision=p, **kw)
    for m in methods:
        fr[m] = pantiny.pansharpen(pan_full, ms_full, method=m, **kw)
    # The sensor's entry for a 4-band R,G,B,NIR cube (MTF gains of those bands, for HQNR's D_lambda_K).
    fr_sensor = with_band_names(s, [s.bands[i] for i in s.model_bands])
    for name, out in fr.items():
        q = metrics.qnr(pan_full, ms_full, out, sensor=fr_sensor, hqnr=True)
        scores[name].update(d_lambda=q.d_lambda, d_s=q.d_s, qnr=q.qnr, hqnr=q.hqnr)
    return s.name, dict(scores)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="checkpoint.pt of a training run, a .safetensors file or a manifest name")
    ap.add_argument("folder", type=Path, help="folder of <stem>_pan.tif / <stem>_ms.tif pairs, or a corpus.json")
    ap.add_argument("--sensor", default=None, help="sensor of all scenes (default: each MS file's SENSOR tag)")
    ap.add_argument("--rows", type=float, nargs=2, default=(0.0, 1.0), metavar=("A", "B"),
                    help="score only this band of each scene (fractions of its height)")
    ap.add_argument("--methods", nargs="*", default=sorted(METHODS), help="classical methods (default: all)")
    ap.add_argument("--manifest", default=None, help="weights manifest for a model name")
    ap.add_argument("--adapt", action="store_true", help="also score the model adapted on each pair (pantiny+adapt)")
    ap.add_argument("--adapt-steps", type=int, default=None, help="adaptation steps at most (default: pantiny's)")
    ap.add_argument("--pan-gain", type=float, default=1.0,
                    help="multiply every PAN by this gain (robustness to PAN/MS radiometric mismatch)")
    ap.add_argument("--pan-filter", default="mtf", choices=("mtf", "bicubic"),
                    help="PAN degradation of the Wald pairs (default: the sensor's MTF)")
    ap.add_argument("--precision", nargs="*", default=[], choices=("bfloat16", "float16"),
                    help="also score the model in these precisions (rows pantiny@PRECISION)")
    ap.add_argument("--json", type=Path, default=None, help="also write the per-scene scores as JSON")
    ap.add_argument("--scenes", nargs="*", default=None,
                    help="with a corpus.json as FOLDER: the scene ids to score (default: all)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; available: {sorted(METHODS)}")
    if args.folder.is_file() and args.folder.suffix == ".json":  # a corpus index: --scenes picks scenes
        jobs = [(Path(src.pan), Path(src.ms), (src.name or "").split("/")[-1], src.sensor, src.bands, src.scale, src.gt)
                for src in corpus_sources(args.folder, scenes=args.scenes or None)]
    else:
        if not args.folder.is_dir():
            raise SystemExit(f"no such folder: {args.folder}")
        jobs = [(pan, ms, stem, args.sensor, None, None, None) for pan, ms, stem in find_pairs(args.folder)]
    if not jobs:
        raise SystemExit(f"no scenes to score in {args.folder}")
    net = model_from(args.model, args.manifest)
    adapt: Union[bool, dict] = args.adapt
    if args.adapt and args.adapt_steps is not None:
        adapt = {"steps": args.adapt_steps}
    per_sensor: Dict[str, Dict[str, List[Dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    per_scene = {}
    for pan, ms, stem, sensor_arg, bands, scale, gt in jobs:
        sensor, scores = score_scene(pan, ms, sensor_arg, net, args.methods, tuple(args.rows), bands, scale, gt,
                                     adapt, args.pan_gain, args.precision, args.pan_filter)
        per_scene[stem] = {"sensor": sensor, "scores": scores}
        for name, sc in scores.items():
            per_sensor[sensor][name].append(sc)
        print(f"scored {stem} ({sensor})", flush=True)
    keys = RR_KEYS + FR_KEYS
    for sensor, by_method in per_sensor.items():
        n = len(next(iter(by_method.values())))
        print(f"\n### {sensor}: {n} scene(s), rows {args.rows[0]:g}-{args.rows[1]:g}\n")
        print("| method | RR PSNR (dB) ↑ | RR SSIM ↑ | RR SAM (°) ↓ | RR ERGAS ↓ | D_λ ↓ | D_s ↓ | QNR ↑ | HQNR ↑ |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, rs in by_method.items():
            mean = {k: float(np.mean([r[k] for r in rs])) for k in keys}
            print(f"| {name} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | {mean['sam_deg']:.3f} | {mean['ergas']:.3f} | "
                  f"{mean['d_lambda']:.4f} | {mean['d_s']:.4f} | {mean['qnr']:.4f} | {mean['hqnr']:.4f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(per_scene, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
