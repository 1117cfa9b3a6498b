"""Inference speed and memory of ``pantiny.pansharpen`` on CPU (or CUDA), with in-run baselines.

Prints, for a SIZE x SIZE PAN scene (default 2048, 8-band WorldView-3-like MS at 1/4), the
throughput in MPix/s (PAN pixels per second) of:

* ``exp``: bicubic upsampling of the MS alone (``pantiny.resample.upsample``), the floor any
  pan-sharpener pays; every other row is also given as a ratio to it, measured in the same run;
* ``pantiny-big`` / ``pantiny-small`` with ``attention="scene"`` (default: tiled == whole image)
  and ``attention="tile"`` (one pass, per-tile attention statistics);
* the reference path measured in the same run: ``model.forward`` on whole 512² tiles with per-tile
  attention (the engine before layer-wise chunked inference; its exact mode ran 3.6 such passes),
  and the largest difference between its output and the fast path's;
* a classical method through the same pipeline, when :mod:`pantiny.classical` is installed.

Then it fuses GeoTIFF scenes of SIZE^2 and (2*SIZE)^2 pixels file-to-file in child processes and
reports each child's peak RSS: with streaming tiles it should barely grow although the scene is
4x larger. Model speed does not depend on the weight values, so seeded random weights are used
unless ``--weights`` names a checkpoint.

``--half bfloat16`` (or ``float16`` on CUDA) adds PanTiny-Big rows in that precision
(``pansharpen(precision=...)``) and its deviation from float32 in DN.

    python benchmarks/infer_speed.py [--size 2048] [--device cpu] [--quick] [--malloc default] [--half bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pantiny import pansharpen
from pantiny.models import build_model
from pantiny.resample import upsample
from pantiny.synthetic import make_scene


def tiled_scene(size: int, base: int = 1024, seed: int = 0):
    """A size x size scene made by mirror-tiling one synthetic base scene (fast at any size)."""
    pan, ms, _ = make_scene(min(base, size), "wv3", seed=seed)
    reps = -(-size // pan.shape[-1])

    def grow(a: np.ndarray, n: int) -> np.ndarray:
        row = np.concatenate([a if i % 2 == 0 else a[:, :, ::-1] for i in range(reps)], axis=2)
        full = np.concatenate([row if i % 2 == 0 else row[:, ::-1] for i in range(reps)], axis=1)
        return np.ascontiguousarray(full[:, :n, :n])

    return grow(pan, size), grow(ms, size // 4)


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def load(name: str, weights: str | None) -> torch.nn.Module:
    if weights:
        from pantiny.weights import load_model

        return load_model(weights)
    torch.manual_seed(0)
    return build_model(name).eval()


# Peak RSS of the child itself: Linux's VmHWM. ru_maxrss would not do: across fork + exec it keeps
# the parent's high-water mark (this benchmark's parent holds ~1 GB by then), so every child looked
# at least that large.
_PEAK = """
def peak_kib():
    try:
        with open("/proc/self/status") as f:
            return int(next(line.split()[1] for line in f if line.startswith("VmHWM")))
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

_CHILD = _PEAK + """
import json, sys, time
import pantiny
from pantiny.models import build_model
args = json.loads(sys.argv[1])
net = build_model(args["model"]).eval()
t0 = time.perf_counter()
pantiny.pansharpen(args["pan"], args["ms"], model=net, device=args["device"], attention=args["attention"],
                   out=args["out"], sensor="wv3")
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "maxrss_kib": peak_kib()}))
"""

_CHILD_IDLE = _PEAK + """
import json, pantiny, torch
from pantiny.models import build_model
build_model("pantiny-big")
print(json.dumps({"maxrss_kib": peak_kib()}))
"""


def child_rss(code: str, *argv: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_scene(folder: Path, size: int) -> tuple[Path, Path]:
    import rasterio
    from rasterio.transform import from_origin

    pan, ms = tiled_scene(size)
    paths = folder / f"s{size}_pan.tif", folder / f"s{size}_ms.tif"
    for path, arr, gsd in ((paths[0], pan, 0.31), (paths[1], ms, 1.24)):
        with rasterio.open(path, "w", driver="GTiff", count=arr.shape[0], height=arr.shape[1],
                           width=arr.shape[2], dtype="uint16", crs="EPSG:32633", tiled=True,
                           transform=from_origin(500000, 4200000, gsd, gsd)) as ds:
            ds.write(arr)
    return paths


def reference_row(pan: np.ndarray, ms: np.ndarray, net: torch.nn.Module, device: str) -> tuple[str, float]:
    """Time ``model.forward`` on whole 512² tiles (per-tile attention, ramp blend) through the same tile
    source and engine, and print its largest deviation from the fast path on the same tiles."""
    from pantiny.api import prepare_scene
    from pantiny.models.layerwise import chunk_shape
    from pantiny.models.layerwise import forward as layerwise_forward
    from pantiny.tiling import plan_tiles, run_tiled

    dev = torch.device(device)
    net = net.to(dev).to(memory_format=torch.channels_last)
    scene = prepare_scene(pan, ms, sensor="wv3")
    cl = torch.channels_last

    def fuse(ms_up: torch.Tensor, p: torch.Tensor, tiles) -> torch.Tensor:
        with torch.inference_mode():
            x, pp = ms_up[:, :4].to(dev).contiguous(memory_format=cl), p.to(dev).contiguous(memory_format=cl)
            y = net(x, pp)
        return y.cpu()

    def run() -> None:
        for _ in run_tiled(scene.source, fuse, tile=512, overlap=64, batch_size=1, blend="ramp"):
            pass

    t = timed(run)
    ms_up, p, _ = scene.source.read(plan_tiles(scene.source.height, scene.source.width, 512, 64)[0][0])
    with torch.inference_mode():
        ref = net(ms_up[None, :4].to(dev), p[None].to(dev))
    fast = layerwise_forward(net, ms_up[None, :4].to(dev), p[None].to(dev), chunk_shape(ms_up.shape[-1], dev))
    print(f"fast path vs model.forward on one 512² tile: max |diff| {float((fast - ref).abs().max()):.2e} "
          "(unit range)")
    return "pantiny-big, reference: model.forward per 512² tile (attention=tile)", t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="PAN side in pixels (multiple of 4)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--weights", default=None, help="a .safetensors checkpoint (default: random weights)")
    ap.add_argument("--quick", action="store_true", help="skip the scene-attention and memory runs")
    ap.add_argument("--half", choices=("bfloat16", "float16"), default=None,
                    help="also time PanTiny-Big in this precision, and report its DN deviation from float32 "
                         "with the shipped weights")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS runs")
    ap.add_argument("--malloc", choices=("kept", "default"), default="kept",
                    help="'default': leave glibc's heap settings as they are (PANTINY_MALLOC=default), to "
                         "measure what pantiny._allocator.keep_heap buys")
    args = ap.parse_args()
    if args.malloc == "default":
        os.environ["PANTINY_MALLOC"] = "default"  # read at the first CPU fusion; children inherit it

    pan, ms = tiled_scene(args.size)
    mpix = pan.shape[-1] * pan.shape[-2] / 1e6
    print(f"scene: PAN {pan.shape[1]}x{pan.shape[2]} ({mpix:.2f} MPix), MS {ms.shape}, device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, heap {args.malloc}")

    rows = []
    ms_t = torch.from_numpy(ms.astype(np.float32) / 2047)[None]
    t_exp = timed(lambda: upsample(ms_t, 4), repeat=3)
    rows.append(("exp (bicubic MS upsampling only)", t_exp))

    runs = [("pantiny-big", "tile"), ("pantiny-small", "tile")]
    if not args.quick:
        runs = [("pantiny-big", "scene"), ("pantiny-big", "sampled")] + runs
    for name, attention in runs:
        net = load(name, args.weights if name == "pantiny-big" else None)
        t = timed(lambda: pansharpen(pan, ms, sensor="wv3", model=net, device=args.device, tile=args.tile,
                                     attention=attention))
        rows.append((f"{name}, attention={attention}", t))
    if args.half:
        for attention in ("scene", "tile"):
            net = load("pantiny-big", args.weights)
            t = timed(lambda: pansharpen(pan, ms, sensor="wv3", model=net, device=args.device, tile=args.tile,
                                         attention=attention, precision=args.half))
            rows.append((f"pantiny-big, attention={attention}, {args.half}", t))
        # quality: the shipped weights (random ones would say nothing), same scene, default mode
        kw = dict(sensor="wv3", model="pantiny-big", device=args.device, tile=args.tile)
        d = np.abs(pansharpen(pan, ms, precision=args.half, **kw).astype(np.int32)
                   - pansharpen(pan, ms, **kw).astype(np.int32))
        print(f"{args.half} vs float32 (shipped pantiny-big, attention=scene, 11-bit DN): mean {d.mean():.2f}, "
              f"99th percentile {np.percentile(d, 99):.0f}, max {d.max()}")
    rows.append(reference_row(pan, ms, load("pantiny-big", args.weights), args.device))
    try:
        from pantiny import classical  # noqa: F401

        t = timed(lambda: pansharpen(pan, ms, sensor="wv3", method="brovey", tile=args.tile))
        rows.append(("brovey (pantiny.classical, same pipeline)", t))
    except ImportError:
        pass

    # The hardware limit, measured in the same run: a 2048^2 float32 matmul (2 n^3 FLOP).
    a = torch.rand(2048, 2048)
    t_mm = timed(lambda: a @ a, repeat=3)
    peak = 2 * 2048 ** 3 / t_mm / 1e9
    flop_px = {n: 2 * sum(p.numel() for p in build_model(n).parameters()) for n in ("pantiny-big", "pantiny-small")}
    print(f"\nmatmul peak: {peak:.1f} GFLOP/s; network cost ~2 x parameters per pixel and pass "
          f"(big {flop_px['pantiny-big'] / 1e3:.0f} kFLOP, small {flop_px['pantiny-small'] / 1e3:.0f} kFLOP)")
    print("\n| method | seconds | MPix/s | speed vs exp | GFLOP/s (one pass) | of matmul peak |\n"
          "|---|---:|---:|---:|---:|---:|")
    for label, t in rows:
        name = label.split(",")[0]
        gf = f"{flop_px[name] * mpix * 1e6 / t / 1e9:.1f}" if name in flop_px else ""
        frac = f"{flop_px[name] * mpix * 1e6 / t / 1e9 / peak:.1%}" if name in flop_px else ""
        print(f"| {label} | {t:.2f} | {mpix / t:.3f} | {t_exp / t:.4f} | {gf} | {frac} |")

    if args.quick or args.no_memory:
        return
    print("\npeak RSS of a child process fusing GeoTIFF -> GeoTIFF (pantiny-big; 'scene' keeps each tile's "
          "features between its sweeps):")
    idle = child_rss(_CHILD_IDLE)["maxrss_kib"] / 1024
    print("| scene | attention | MPix | float32 scene size (MiB) | seconds | peak RSS (MiB) "
          "| RSS above idle import (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (args.size, 2 * args.size):
            p, m = write_scene(Path(tmp), size)
            for attention in ("tile", "scene"):
                spec = {"pan": str(p), "ms": str(m), "out": str(Path(tmp) / f"fused{size}.tif"),
                        "model": "pantiny-big", "device": args.device, "attention": attention}
                r = child_rss(_CHILD, json.dumps(spec))
                scene_mib = size * size * (1 + 4 + 4) * 4 / 2**20  # PAN + MS_up + fused (4 bands) at float32
                rss = r["maxrss_kib"] / 1024
                print(f"| {size}x{size} | {attention} | {size * size / 1e6:.1f} | {scene_mib:.0f} | "
                      f"{r['seconds']:.1f} | {rss:.0f} | {rss - idle:.0f} |")
            os.remove(p), os.remove(m)


if __name__ == "__main__":
    main()
