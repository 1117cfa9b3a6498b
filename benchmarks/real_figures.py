"""Figures of real results for the docs: PAN | MS (upsampled) | fused quick-look panels of held-out
corpus scenes (never seen in training), one per sensor, with the default model.

No scene of ``../shared/data/`` may be redistributed as data (licence notes: "not stated" or
non-commercial), so the bundled sample stays synthetic and the real results are shown as small
figures (a 256x256 PAN crop each, 8-bit natural-colour previews) in ``docs/figures/``.

    python benchmarks/real_figures.py [--corpus ../shared/data/corpus/corpus.json] [--out docs/figures]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

import pantiny
from pantiny.preview import quicklook

ROOT = Path(__file__).resolve().parent.parent
# (scene id, PAN crop row, col): held-out scenes of training/pantiny-big.toml, a busy part of each
SCENES = (("vivone_rio", 128, 128), ("pairmax_W3_Muni_Nat", 128, 128), ("d2tnet_gf_full_08", 640, 640))
CROP = 256


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "corpus" / "corpus.json")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = ap.parse_args()
    index = {s["scene_id"]: s for s in json.loads(args.corpus.read_text())}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for scene_id, r0, c0 in SCENES:
            s = index[scene_id]
            base = args.corpus.parent
            with rasterio.open(base / s["files"]["pan"]) as ds:
                pan = ds.read(window=((r0, r0 + CROP), (c0, c0 + CROP)))
            with rasterio.open(base / s["files"]["ms"]) as ds:
                ms = ds.read(list(np.asarray(s["band_map"]) + 1),
                             window=((r0 // 4, (r0 + CROP) // 4), (c0 // 4, (c0 + CROP) // 4)))
            # R,G,B,NIR cube; descriptions tell the quick-look which band is which
            paths = {}
            for name, arr, gsd in (("pan", pan, 1.0), ("ms", ms, 4.0)):
                p = Path(tmp) / f"{scene_id}_{name}.tif"
                with rasterio.open(p, "w", driver="GTiff", count=arr.shape[0], height=arr.shape[1],
                                   width=arr.shape[2], dtype=arr.dtype, transform=from_origin(0, 0, gsd, gsd)) as out:
                    out.write(arr)
                    if name == "ms":
                        for i, d in enumerate(("R", "G", "B", "NIR")):
                            out.set_band_description(i + 1, d)
                paths[name] = p
            fused = pantiny.pansharpen(str(paths["pan"]), str(paths["ms"]), sensor=s["sensor"],
                                       scale=float(s["max_dn"]), out=Path(tmp) / f"{scene_id}_fused.tif")
            png = quicklook(fused, args.out / f"{s['sensor']}_{scene_id}.png", size=CROP,
                            panel=(paths["pan"], paths["ms"]))
            print(f"wrote {png} ({s['sensor']}, {s['bits']}-bit, source {s['source'].split('@')[0]})")


if __name__ == "__main__":
    main()
