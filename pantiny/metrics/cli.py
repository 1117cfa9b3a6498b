"""``pantiny qnr`` and ``pantiny score-rr``: quality scores from the command line.

Registered into the main parser by :func:`register`; each subcommand's ``func(args) -> int`` raises
``ValueError`` / ``OSError`` with a clear message on bad input (the main CLI prints one line and
exits 1).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Dict

from .. import cli_options as opt
from ..choices import QNR_UPSAMPLERS, QNR_VARIANTS
from ..errors import InputError


def _cmd_qnr(args: argparse.Namespace) -> int:
    from .full_resolution import qnr

    r = qnr(args.pan, args.ms, args.fused, sensor=args.sensor, ratio=args.ratio, variant=args.variant,
            hqnr=args.hqnr, block=args.block, p=args.p, q=args.q, alpha=args.alpha, beta=args.beta,
            scale=args.scale, bands=args.bands, upsample=args.upsample, nodata=args.nodata,
            clip_bits=args.clip_bits)
    if args.json:
        print(json.dumps(r.as_dict()))  # NaN (undefined) scores are null
        return 0
    print(f"D_lambda  {r.d_lambda:.6f}")
    print(f"D_s       {r.d_s:.6f}")
    print(f"QNR       {r.qnr:.6f}")
    if r.hqnr is not None:
        print(f"D_lambda_K {r.d_lambda_k:.6f}")
        print(f"HQNR      {r.hqnr:.6f}")
    skipped = f", {r.blocks_skipped} of {r.blocks_scored + r.blocks_skipped} windows skipped for nodata" \
        if r.blocks_skipped else ""
    print(f"({r.variant} definition, S={r.block}{skipped}; see docs/metrics.md)")
    return 0


def _crop(text: str):
    if text.strip() == "toolbox":
        return "toolbox"
    parts = text.split(",")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"--crop must be N, BEFORE,AFTER (integers) or 'toolbox', got {text!r}") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) == 2:
        return (vals[0], vals[1])
    raise InputError(f"--crop must be N, BEFORE,AFTER or 'toolbox', got {text!r}")


def _cmd_score_rr(args: argparse.Namespace) -> int:
    from .reduced_resolution import reduced_resolution

    res: Dict[str, float] = reduced_resolution(args.fused, args.reference, ratio=args.ratio,
                                               data_range=args.data_range, crop=_crop(args.crop),
                                               block=args.block, sensor=args.sensor, scale=args.scale,
                                               clip_bits=args.clip_bits)
    if args.json:
        print(json.dumps({k: (None if math.isinf(v) or math.isnan(v) else v) for k, v in res.items()}))
        return 0
    labels = {"psnr": "PSNR (dB)", "ssim": "SSIM", "sam": "SAM (rad)", "sam_deg": "SAM (deg)",
              "ergas": "ERGAS", "q2n": "Q2n", "q": "Q", "cc": "CC", "scc": "SCC"}
    for k, v in res.items():
        print(f"{labels[k]:<10} {v:.6f}")
    return 0


def register(subparsers) -> None:
    """Add ``qnr`` and ``score-rr`` to the main CLI's argparse subparsers."""
    p = subparsers.add_parser(
        "qnr", help="full-resolution quality: D_lambda, D_s, QNR (and HQNR) of a fused image",
        description="No-reference quality of FUSED given the PAN and MS it was made from. Default: the "
                    "Vivone 2020 toolbox definition (32x32 blocks, upsampled-MS reference); "
                    "--variant pantiny reproduces the PanTiny/Pan-Mamba code. See docs/metrics.md.")
    p.add_argument("pan", help="PAN GeoTIFF (1 band)")
    p.add_argument("ms", help="MS GeoTIFF (original, low resolution)")
    p.add_argument("fused", help="fused GeoTIFF on the PAN grid (same bands as MS, or 4 of them)")
    opt.add_sensor(p)
    p.add_argument("--variant", default=QNR_VARIANTS[0], choices=QNR_VARIANTS,
                   help="metric definition (default toolbox; orig_paper = toolbox flag_orig_paper=1)")
    p.add_argument("--hqnr", action="store_true", help="also compute D_lambda_K and HQNR (toolbox variants)")
    p.add_argument("--nodata", type=float, default=None,
                   help="nodata DN of all inputs (default: each file's own); windows with nodata are skipped")
    p.add_argument("--clip-bits", type=int, default=None,
                   help="toolbox th_values: clip the fused image to [0, 2^L] first (e.g. 11)")
    p.add_argument("--block", type=int, default=32, help="Q block / window size in PAN pixels (default 32)")
    opt.add_ratio(p)
    p.add_argument("--upsample", default=QNR_UPSAMPLERS[0], choices=QNR_UPSAMPLERS,
                   help="MS -> PAN grid interpolation of the toolbox reference (default interp23tap)")
    opt.add_bands(p, "when FUSED has 4 bands of a larger MS")
    opt.add_scale(p, "full-scale DN (pantiny variant's uint8 conversion)")
    for name in ("p", "q", "alpha", "beta"):
        p.add_argument(f"--{name}", type=float, default=1.0, help=f"exponent {name} (default 1)")
    opt.add_json(p)
    p.set_defaults(func=_cmd_qnr)

    r = subparsers.add_parser(
        "score-rr", help="reduced-resolution scores of a fused image against a reference",
        description="PSNR, SSIM, SAM, ERGAS, Q2n, Q, CC and SCC of FUSED against REFERENCE (same grid, same "
                    "units). See docs/metrics.md.")
    r.add_argument("fused", help="fused GeoTIFF")
    r.add_argument("reference", help="reference (ground-truth) GeoTIFF")
    r.add_argument("--data-range", type=float, default=None,
                   help="peak value for PSNR/SSIM (default: sensor maximum or from the dtype)")
    r.add_argument("--ratio", type=float, default=4, help="resolution ratio in ERGAS (default 4)")
    r.add_argument("--crop", default="0",
                   help="border to drop: N, BEFORE,AFTER, or 'toolbox' (= 20,21, the toolbox's dim_cut 21); default 0")
    r.add_argument("--clip-bits", type=int, default=None,
                   help="toolbox th_values: clip the fused image to [0, 2^L] first (e.g. 11)")
    r.add_argument("--block", type=int, default=32, help="Q / Q2n block size (default 32)")
    opt.add_sensor(r, "none (the data range then comes from the data type)")
    opt.add_scale(r, "full-scale DN (the default data range)")
    opt.add_json(r)
    r.set_defaults(func=_cmd_score_rr)
