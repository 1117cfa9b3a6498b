"""Scene adaptation, before and after, on real scenes of sensors the checkpoint never saw.

For each PAN/MS pair given (``--scene NAME PAN MS SENSOR [MAX_DN] [R,G,B,NIR]``), on the model bands:

* full resolution: QNR and HQNR (toolbox definition, :func:`pantiny.qnr`) of the unadapted model,
  the adapted model (adapted on this scene), EXP and every classical method;
* reduced resolution (Wald's protocol: MS and PAN MTF-filtered and decimated by 4 with the sensor's
  gains): the model adapted on the *degraded* pair, scored against the real MS (PSNR, SAM, ERGAS),
  next to the unadapted model and the classical methods;
* seconds taken by adaptation and by fusion.

    python benchmarks/adapt_eval.py --scene ikonos ../shared/data/ikonos_scene_pan.tif ../shared/data/ikonos_scene_ms.tif ikonos
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict

import numpy as np
import torch

import pantiny
from pantiny import io as rio_io
from pantiny import metrics
from pantiny.classical import METHODS
from pantiny.mtf import mtf_degrade
from pantiny.sensors import get_sensor


def _fuse(pan, ms, **kw):
    return pantiny.pansharpen(pan, ms, **kw)


def run(name: str, pan_path: str, ms_path: str, sensor: str, max_dn: float, bands, steps: int,
        attention: str) -> Dict[str, Dict[str, float]]:
    s = get_sensor(sensor)
    pan = rio_io.read(pan_path)
    ms_all = rio_io.read(ms_path)
    idx = list(bands) if bands else list(s.model_bands)
    ms = ms_all[sorted(idx)]  # the 4 model bands, in file order (so pansharpen's output order matches)
    order = [sorted(idx).index(i) for i in idx]  # -> R,G,B,NIR positions
    b = [order[0], order[1], order[2], order[3]]
    kw = dict(sensor=sensor, bands=b, scale=max_dn, attention=attention, device="cpu")
    rows: Dict[str, Dict[str, float]] = {}

    def fr(tag, fused, secs=None):
        q = metrics.qnr(pan, ms, fused, sensor=sensor, bands=b, hqnr=True)
        rows.setdefault(tag, {}).update(qnr=q.qnr, hqnr=q.hqnr, d_lambda=q.d_lambda, d_s=q.d_s)
        if secs is not None:
            rows[tag]["fuse_s"] = secs

    t = time.perf_counter()
    fr("model", _fuse(pan, ms, **kw), time.perf_counter() - t)
    t = time.perf_counter()
    net = pantiny.adapt(pan, ms, sensor=sensor, bands=b, scale=max_dn, device="cpu", steps=steps)
    ta = time.perf_counter() - t
    t = time.perf_counter()
    fr("model+adapt", _fuse(pan, ms, model=net, **kw), time.perf_counter() - t)
    rows["model+adapt"]["adapt_s"] = ta
    for m in sorted(METHODS):
        fr(m, _fuse(pan, ms, method=m, sensor=sensor, bands=b, scale=max_dn))
    # reduced resolution: degrade, fuse (and adapt) on the degraded pair, score against the real MS
    sc = float(max_dn)
    gains = [s.model_mtf[i] for i in range(4)]
    ms_t = torch.from_numpy(ms.astype(np.float32))[None]
    g_file = [gains[b.index(i)] for i in range(4)]  # gains in file order of the 4 bands
    h4, w4 = (ms.shape[1] // 4) * 4, (ms.shape[2] // 4) * 4
    ms_lr = mtf_degrade(ms_t[..., :h4, :w4], g_file, 4)[0].numpy()
    pan_lr = mtf_degrade(torch.from_numpy(pan[:, :h4 * 4, :w4 * 4].astype(np.float32))[None], s.mtf_pan, 4)[0].numpy()
    ms_lr, pan_lr = np.rint(ms_lr).astype(ms.dtype), np.rint(pan_lr).astype(pan.dtype)
    ref = ms[:, :h4, :w4].astype(np.float64)

    def rr(tag, fused):
        f = fused.astype(np.float64)
        rows.setdefault(tag, {}).update(rr_psnr=metrics.psnr(f, ref, data_range=sc),
                                        rr_sam=metrics.sam(f, ref, degrees=True), rr_ergas=metrics.ergas(f, ref, ratio=4))

    rr("model", _fuse(pan_lr, ms_lr, **kw))
    net_rr = pantiny.adapt(pan_lr, ms_lr, sensor=sensor, bands=b, scale=max_dn, device="cpu", steps=steps)
    rr("model+adapt", _fuse(pan_lr, ms_lr, model=net_rr, **kw))
    for m in sorted(METHODS):
        rr(m, _fuse(pan_lr, ms_lr, method=m, sensor=sensor, bands=b, scale=max_dn))
    up = torch.nn.functional.interpolate(torch.from_numpy(ms_lr.astype(np.float32))[None], scale_factor=4,
                                         mode="bicubic", align_corners=False)[0].numpy()
    rr("EXP", up)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", nargs="+", action="append", required=True,
                    metavar="NAME PAN MS SENSOR [MAX_DN] [R,G,B,NIR]")
    ap.add_argument("--steps", type=int, default=None, help="adaptation steps (default: pantiny's default)")
    ap.add_argument("--attention", default="scene", choices=("scene", "tile"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    steps = args.steps or 80
    allres = {}
    for sc in args.scene:
        name, pan, ms, sensor = sc[:4]
        max_dn = float(sc[4]) if len(sc) > 4 else get_sensor(sensor).max_value
        bands = [int(x) for x in sc[5].split(",")] if len(sc) > 5 else None
        res = run(name, pan, ms, sensor, max_dn, bands, steps, args.attention)
        allres[name] = res
        print(f"\n### {name} ({sensor}, adaptation {steps} steps max)\n")
        print("| method | QNR ↑ | HQNR ↑ | RR PSNR ↑ | RR SAM ↓ | RR ERGAS ↓ | adapt s | fuse s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for tag, r in res.items():
            f = lambda k, fmt: (fmt.format(r[k]) if k in r and r[k] is not None else "")  # noqa: E731
            print(f"| {tag} | {f('qnr', '{:.4f}')} | {f('hqnr', '{:.4f}')} | {f('rr_psnr', '{:.2f}')} | "
                  f"{f('rr_sam', '{:.2f}')} | {f('rr_ergas', '{:.2f}')} | {f('adapt_s', '{:.0f}')} | {f('fuse_s', '{:.0f}')} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(allres, fh, indent=1)


if __name__ == "__main__":
    main()
