"""A folder of PAN/MS scenes -> Cloud Optimized GeoTIFFs, quick-look PNGs and a CSV of QNR scores.

    python examples/gis_pipeline.py IN_DIR OUT_DIR [--method brovey]

Scenes are pairs ``<name>_pan.tif`` / ``<name>_ms.tif`` in IN_DIR (the bundled sample works:
copy ``examples/data/sample_{pan,ms}.tif`` to ``IN/sample_pan.tif``, ``IN/sample_ms.tif``). For each
one, OUT_DIR gets ``<name>_fused.tif`` (a COG: tiled, with overviews, ready for a web map or QGIS)
and ``<name>_fused.png``; ``OUT_DIR/qnr.csv`` gets one row of D_lambda, D_s and QNR per scene.
Only the public API is used: ``pantiny.pansharpen``, ``pantiny.quicklook``, ``pantiny.metrics.qnr``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import pantiny
from pantiny.metrics import qnr


def scenes(folder: Path):
    """(name, pan, ms) of every ``<name>_pan.tif`` with its ``<name>_ms.tif``."""
    for pan in sorted(folder.glob("*_pan.tif")):
        name = pan.name[: -len("_pan.tif")]
        ms = folder / f"{name}_ms.tif"
        if ms.is_file():
            yield name, pan, ms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("in_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--method", default="pantiny", help="pantiny (the model) or a classical method, e.g. brovey")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, pan, ms in scenes(args.in_dir):
        fused = pantiny.pansharpen(str(pan), str(ms), method=args.method, cog=True,
                                   out=args.out_dir / f"{name}_fused.tif")
        pantiny.quicklook(fused, fused.with_suffix(".png"))
        score = qnr(str(pan), str(ms), str(fused))  # same argument order as pansharpen
        rows.append({"scene": name, "D_lambda": score.d_lambda, "D_s": score.d_s, "QNR": score.qnr})
        print(f"{name}: QNR {score.qnr:.4f} -> {fused}")
    if not rows:
        print(f"no <name>_pan.tif / <name>_ms.tif pairs in {args.in_dir}", file=sys.stderr)
        return 1
    with open(args.out_dir / "qnr.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out_dir / 'qnr.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
