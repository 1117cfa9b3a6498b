"""Options shared by the ``pantiny`` subcommands, defined once (as ``rio/options.py`` does for rasterio).

Each ``add_*`` adds one option to an ``argparse`` parser with the same name, type, default and help
everywhere; values are validated by argparse (a bad value is a usage error, exit status 2).
"""

from __future__ import annotations

import argparse
from typing import List, Tuple

from .choices import ATTENTION, CLASSICAL_METHODS, MODEL_METHODS, OTHER_BANDS, PRECISIONS, UPSAMPLING


def parse_bands(text: str) -> List[int]:
    """``"4,2,1,6"`` -> ``[4, 2, 1, 6]``: four distinct non-negative 0-based MS band indices."""
    try:
        vals = [int(b) for b in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated integers (R,G,B,NIR), got {text!r}") from None
    if len(vals) != 4 or len(set(vals)) != 4 or min(vals) < 0:
        raise argparse.ArgumentTypeError(f"expected 4 distinct 0-based band indices (R,G,B,NIR), got {text!r}")
    return vals


def sensor_name(text: str) -> str:
    """A sensor key known to :mod:`pantiny.sensors` (aliases accepted), lower-cased, or ``auto``."""
    from .sensors import get_sensor

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return get_sensor(text).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def creation_option(text: str) -> Tuple[str, str]:
    """``"COMPRESS=LZW"`` -> ``("COMPRESS", "LZW")``: one GDAL creation option (GDAL checks the name)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a GDAL creation option), got {text!r}")
    return key.strip(), value.strip()


def parse_rgb(text: str) -> List[int]:
    """``"2,1,0"`` -> ``[2, 1, 0]``: 0-based band indices of red, green and blue."""
    try:
        vals = [int(b) for b in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 3 or min(vals) < 0:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated 0-based band indices (R,G,B), got {text!r}")
    return vals


def add_sensor(p: argparse.ArgumentParser, default_help: str = "the MS file's SENSOR tag") -> None:
    from .sensors import SENSORS

    p.add_argument("--sensor", type=sensor_name, default=None,
                   help=f"sensor key ({', '.join(sorted(SENSORS))}); default: {default_help}")


def add_bands(p: argparse.ArgumentParser, when: str = "overrides --sensor's band map") -> None:
    p.add_argument("--bands", type=parse_bands, default=None,
                   help=f"0-based MS indices of R,G,B,NIR, e.g. 4,2,1,6 ({when})")


def add_ratio(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ratio", type=int, default=4, help="PAN/MS resolution ratio (default: %(default)s)")


def add_scale(p: argparse.ArgumentParser, what: str = "DN mapped to 1.0") -> None:
    p.add_argument("--scale", type=positive_float, default=None,
                   help=f"{what} (default: from the data type and sensor, see the README)")


def add_model(p: argparse.ArgumentParser, what: str = "manifest name or .safetensors path") -> None:
    p.add_argument("--model", default="pantiny-big", help=f"{what} (default: %(default)s; see `pantiny info`)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N (default: %(default)s)")


def add_nodata(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodata", type=float, default=None, help="override the inputs' nodata value")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")


def add_method(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=MODEL_METHODS[0], choices=(*MODEL_METHODS, *CLASSICAL_METHODS),
                   metavar="METHOD", help=f"'{MODEL_METHODS[0]}' (the network) or a classical method: "
                   f"{', '.join(CLASSICAL_METHODS)} (default: %(default)s)")


def add_attention(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attention", default=ATTENTION[0], choices=ATTENTION,
                   help="scene (default): result independent of tiling, about one pass of compute; "
                   "sampled: statistics from 16 tiles; tile: per-tile statistics")


def add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default=PRECISIONS[0], choices=PRECISIONS,
                   help="what the network computes in: float32 (default, exact), bfloat16, float16 (CUDA only); "
                   "half types are meant for GPUs (not faster on CPU) and differ by a few DN")


def add_other_bands(p: argparse.ArgumentParser) -> None:
    p.add_argument("--other-bands", default=OTHER_BANDS[0], choices=OTHER_BANDS,
                   help="non-model MS bands: drop (default), upsample, or ratio-sharpen")


def add_upsampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--upsampling", default=UPSAMPLING[0], choices=UPSAMPLING,
                   help="MS interpolation onto the PAN grid: bicubic (default; the model's), cubic (GDAL's: "
                        "with --method brovey the scene is fused by GDAL's own pansharpening engine), "
                        "bilinear, nearest")


def add_output_options(p: argparse.ArgumentParser) -> None:
    """GIS products of ``fuse``: COG layout, GDAL creation options, quick-look PNGs."""
    p.add_argument("--cog", action="store_true",
                   help="write Cloud Optimized GeoTIFFs (512 px tiles, averaged overviews)")
    p.add_argument("--co", dest="creation_options", type=creation_option, action="append", default=[],
                   metavar="KEY=VALUE", help="GDAL creation option of the output (COG driver with --cog, "
                   "else GTiff), e.g. --co COMPRESS=ZSTD; repeatable; overrides the defaults")
    p.add_argument("--quicklook", action="store_true",
                   help="also write a natural-colour PNG preview <output stem>.png next to each output")
