"""Regenerate the bundled sample scene ``examples/data/sample_{pan,ms}.tif``.

The sample is synthetic (see :mod:`pantiny.synthetic`): a 512x512 WorldView-3-like PAN band and a
128x128 8-band MS image, 11-bit DN in uint16, on a UTM grid (0.31 m PAN / 1.24 m MS, as WV3), with a
nodata (0) corner, so that every part of the GeoTIFF path (band selection, CRS/transform, nodata)
is exercised. Deterministic: the same seed gives the same files.

    python examples/make_sample.py [OUT_FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from pantiny.synthetic import make_scene

PAN_GSD = 0.31
RATIO = 4


def write_sample(folder: Path, size: int = 512, seed: int = 7) -> None:
    pan, ms, _ = make_scene(size, "wv3", seed=seed, ratio=RATIO)
    # A nodata wedge in the top-left corner, aligned to whole MS pixels as in real scene edges.
    yy, xx = np.mgrid[0:ms.shape[1], 0:ms.shape[2]]
    ms_gap = (yy + xx) < ms.shape[1] // 5
    ms[:, ms_gap] = 0
    pan[:, ms_gap.repeat(RATIO, 0).repeat(RATIO, 1)] = 0
    folder.mkdir(parents=True, exist_ok=True)
    x0, y0 = 500000.0, 4200000.0  # UTM 33N
    common = dict(driver="GTiff", crs="EPSG:32633", nodata=0, dtype="uint16", compress="deflate", predictor=2)
    with rasterio.open(folder / "sample_pan.tif", "w", count=1, height=pan.shape[1], width=pan.shape[2],
                       transform=from_origin(x0, y0, PAN_GSD, PAN_GSD), **common) as ds:
        ds.write(pan)
        ds.update_tags(SENSOR="WV3", SYNTHETIC="pantiny.synthetic.make_scene seed=%d" % seed)
    with rasterio.open(folder / "sample_ms.tif", "w", count=ms.shape[0], height=ms.shape[1], width=ms.shape[2],
                       transform=from_origin(x0, y0, PAN_GSD * RATIO, PAN_GSD * RATIO), **common) as ds:
        ds.write(ms)
        ds.update_tags(SENSOR="WV3", SYNTHETIC="pantiny.synthetic.make_scene seed=%d" % seed)
        ds.descriptions = ("Coastal", "Blue", "Green", "Yellow", "Red", "RedEdge", "NIR1", "NIR2")


if __name__ == "__main__":
    write_sample(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
