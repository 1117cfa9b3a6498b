"""Wall-clock of `--adapt` with default settings: adapt + fuse (default mode) of a 1024x1024 scene.

    python benchmarks/adapt_speed.py PAN.tif MS.tif SENSOR [MAX_DN] [R,G,B,NIR]

The PAN/MS pair is cropped to its top-left 1024x1024 PAN pixels. Prints seconds for adaptation,
for fusion, and in total, next to plain fusion (no adaptation) measured in the same run.
"""

from __future__ import annotations

import sys
import time

import torch

import pantiny
from pantiny import io as rio_io


def main() -> None:
    pan_p, ms_p, sensor = sys.argv[1:4]
    scale = float(sys.argv[4]) if len(sys.argv) > 4 else None
    bands = [int(b) for b in sys.argv[5].split(",")] if len(sys.argv) > 5 else None
    pan = rio_io.read(pan_p, (0, 0, 1024, 1024))
    ms = rio_io.read(ms_p, (0, 0, 256, 256))
    kw = dict(sensor=sensor, scale=scale, bands=bands, device="cpu")
    t = time.perf_counter()
    pantiny.pansharpen(pan, ms, **kw)
    plain = time.perf_counter() - t
    t = time.perf_counter()
    pantiny.pansharpen(pan, ms, adapt=True, **kw)
    total = time.perf_counter() - t
    print(f"threads {torch.get_num_threads()}: plain fusion {plain:.1f} s, adapt + fuse {total:.1f} s "
          f"(adaptation {total - plain:.1f} s) for 1024x1024; ratio {total / plain:.2f}")


if __name__ == "__main__":
    main()
