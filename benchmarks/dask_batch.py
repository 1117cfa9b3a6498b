"""Batch fusion throughput on a Dask LocalCluster: 1 worker vs N workers, same scenes, same run.

Copies the bundled sample pair (or every pair of FOLDER) ``--copies`` times into a temporary input
folder, then fuses the folder with :func:`pantiny.dask_batch.fuse_on_dask` once per worker count
(single-threaded workers, torch limited to one thread each) and prints scenes/minute, MPix/s and
the speed-up over 1 worker. Cluster start-up is included, as a user would see it.

    python benchmarks/dask_batch.py [--folder FOLDER] [--copies 6] [--workers 1 2] [--method brovey]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import rasterio

from pantiny.cli import find_pairs
from pantiny.dask_batch import fuse_on_dask

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=HERE.parent / "examples" / "data")
    ap.add_argument("--copies", type=int, default=6, help="copies of each pair (default: %(default)s)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--method", default="pantiny")
    ap.add_argument("--attention", default="tile", help="model attention mode (default: %(default)s)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # workers inherit it: one core each
    pairs = find_pairs(args.folder)
    if not pairs:
        raise SystemExit(f"no <name>_pan.tif / <name>_ms.tif pairs in {args.folder}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        mpix = 0.0
        for pan, ms, stem in pairs:
            with rasterio.open(pan) as ds:
                size = ds.width * ds.height / 1e6
            for k in range(args.copies):
                shutil.copy(pan, src / f"{stem}{k}_pan.tif")
                shutil.copy(ms, src / f"{stem}{k}_ms.tif")
                mpix += size
        batch = find_pairs(src)
        options = {"method": args.method, "attention": args.attention}
        print(f"{len(batch)} scenes, {mpix:.2f} MPix, method {args.method}; {os.cpu_count()} cores\n")
        print("| workers | seconds | scenes/min | MPix/s | speed-up vs 1 worker |")
        print("|---:|---:|---:|---:|---:|")
        base = None
        for n in args.workers:
            out = Path(tmp) / f"out{n}"
            out.mkdir()
            t0 = time.perf_counter()
            res = fuse_on_dask(batch, out, options, workers=n)
            dt = time.perf_counter() - t0
            bad = [s for s, r in res.items() if r["error"]]
            if bad:
                raise SystemExit(f"scenes failed: {bad}")
            base = base or dt
            print(f"| {n} | {dt:.1f} | {60 * len(batch) / dt:.1f} | {mpix / dt:.3f} | {base / dt:.2f}x |")


if __name__ == "__main__":
    main()
