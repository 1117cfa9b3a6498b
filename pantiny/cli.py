"""``pantiny`` command line: fuse scenes (one pair or a folder), score them, inspect weights, train.

Every subcommand goes through the same :func:`pantiny.pansharpen` / :mod:`pantiny.metrics` code as
the Python API. Errors print one line on stderr and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from . import __version__
from . import cli_options as opt
from .choices import MODEL_METHODS
from .errors import InputError, PantinyError, one_line
from .report import SceneReport

_PAIR_PATTERNS = (("_pan", "_ms"), ("-pan", "-ms"), ("_PAN", "_MS"), ("_p", "_m"))


def _add_fusion_options(p: argparse.ArgumentParser) -> None:
    opt.add_sensor(p, "auto: from the product's metadata (SENSOR tag, Maxar .IMD, GaoFen XML, DIMAP), "
                      "else the band count")
    opt.add_bands(p)
    opt.add_model(p)
    opt.add_method(p)
    opt.add_device(p)
    p.add_argument("--tile", type=int, default=1024, help="tile size in PAN pixels (default: %(default)s)")
    p.add_argument("--overlap", type=int, default=64, help="tile overlap in PAN pixels (default: %(default)s)")
    opt.add_attention(p)
    opt.add_precision(p)
    p.add_argument("--batch-size", type=int, default=None, help="tiles per forward pass")
    opt.add_ratio(p)
    opt.add_scale(p)
    opt.add_other_bands(p)
    opt.add_upsampling(p)
    opt.add_nodata(p)
    p.add_argument("--no-overwrite", action="store_true", help="fail instead of replacing an existing output")
    p.add_argument("--adapt", action="store_true",
                   help="fine-tune the model on each scene first (full-resolution, no reference; see `pantiny adapt`)")
    p.add_argument("--adapt-steps", type=int, default=None, help="adaptation steps (default: 80, stops early)")
    opt.add_output_options(p)
    p.add_argument("--report-qnr", action="store_true",
                   help="batch mode: add D_lambda, D_s and QNR to each scene's <stem>_fused.json report")
    p.add_argument("--dask", nargs="?", const="local", default=None, metavar="SCHEDULER_ADDRESS",
                   help="batch mode: one task per scene on a Dask cluster (needs pantiny[dask]); no address: "
                        "a local cluster, one worker per core")
    p.add_argument("--dask-workers", type=int, default=None,
                   help="workers of the local cluster started by --dask (default: one per core)")
    opt.add_quiet(p)


def _fusion_kwargs(args: argparse.Namespace) -> dict:
    return dict(sensor=args.sensor, bands=args.bands, method=args.method, device=args.device, tile=args.tile,
                overlap=args.overlap, attention=args.attention, precision=args.precision,
                batch_size=args.batch_size, ratio=args.ratio,
                scale=args.scale, other_bands=args.other_bands, upsampling=args.upsampling, nodata=args.nodata,
                overwrite=not args.no_overwrite, cog=args.cog, creation_options=dict(args.creation_options),
                adapt=(dict(steps=args.adapt_steps) if args.adapt_steps else True) if args.adapt else False)


def find_pairs(folder: Path, orphans: Optional[List[Tuple[Path, Path]]] = None) -> List[Tuple[Path, Path, str]]:
    """(pan, ms, stem) for every ``<stem>_pan.tif`` with a matching ``<stem>_ms.tif`` in ``folder``.

    PAN files without their MS partner are appended to ``orphans`` as ``(pan, expected ms)``.
    """
    pairs = []
    for pan in sorted(folder.iterdir()):
        if pan.suffix.lower() not in (".tif", ".tiff"):
            continue
        for p_tag, m_tag in _PAIR_PATTERNS:
            m = re.match(rf"^(.*){re.escape(p_tag)}$", pan.stem)
            if m:
                ms = pan.with_name(f"{m.group(1)}{m_tag}{pan.suffix}")
                if ms.is_file():
                    pairs.append((pan, ms, m.group(1)))
                elif orphans is not None:
                    orphans.append((pan, ms))
                break
    return pairs


class _TqdmHandler(logging.Handler):
    """Log records printed above a running progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _setup_logging(quiet: bool) -> None:
    log = logging.getLogger("pantiny")
    if not any(isinstance(h, _TqdmHandler) for h in log.handlers):
        h = _TqdmHandler()
        h.setFormatter(logging.Formatter("pantiny: %(message)s"))
        log.addHandler(h)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def _cmd_fuse(args: argparse.Namespace) -> int:
    from .api import pansharpen

    _setup_logging(args.quiet)
    kwargs = _fusion_kwargs(args)
    src = Path(args.pan)
    if src.is_dir():  # batch mode: fuse PAN_DIR OUT_DIR
        if args.ms is None:
            raise InputError("batch mode: pantiny fuse INPUT_FOLDER OUTPUT_FOLDER")
        from tqdm.auto import tqdm

        out_dir = Path(args.ms)
        orphans: List[Tuple[Path, Path]] = []
        pairs = find_pairs(src, orphans)
        for pan, ms in orphans:
            print(f"pantiny: {pan.name}: no MS partner {ms.name}; skipped", file=sys.stderr)
        if not pairs:
            raise FileNotFoundError(f"no <name>_pan.tif / <name>_ms.tif pairs found in {src}")
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.dask is not None:
            return _batch_on_dask(args, kwargs, pairs, out_dir, len(orphans))
        if args.method in MODEL_METHODS:  # load and verify the weights once for the whole batch
            from .devices import pick_device
            from .weights import load_model

            kwargs["model"] = load_model(args.model, device=pick_device(args.device))
        else:
            kwargs["model"] = args.model
        _check_creation_options(args, pairs[0][1])
        failed = 0
        for pan, ms, stem in tqdm(pairs, unit="scene", desc="scenes", disable=args.quiet):
            report = _scene_report(args, pan, ms, str(out_dir / f"{stem}_fused.tif"), stem)
            try:
                with report.step("fusion"):
                    pansharpen(str(pan), str(ms), out=report.output, progress=False, **kwargs)
            except (PantinyError, OSError) as e:  # a bug elsewhere stops the batch with its traceback
                report.error = one_line(e)
            failed += _finish_scene(args, report, out_dir)
        return _batch_summary(len(pairs), failed, out_dir, len(orphans))
    if args.ms is None or args.out is None:
        raise InputError("usage: pantiny fuse PAN.tif MS.tif OUT.tif  (or: pantiny fuse IN_FOLDER OUT_FOLDER)")
    if args.report_qnr:
        raise InputError("--report-qnr is for batch mode; score one output with: pantiny qnr PAN MS OUT")
    if args.dask is not None:
        raise InputError("--dask is for batch mode (pantiny fuse IN_FOLDER OUT_FOLDER --dask); for one large "
                         "scene use pantiny.xarray.pansharpen")
    _check_creation_options(args, Path(args.ms))
    out = pansharpen(args.pan, args.ms, out=args.out, model=args.model, progress=not args.quiet, **kwargs)
    print(f"wrote {out}")
    if args.quicklook:
        from .preview import quicklook

        print(f"wrote {quicklook(out, Path(out).with_suffix('.png'))}")
    return 0


def _batch_on_dask(args: argparse.Namespace, kwargs: dict, pairs: List[Tuple[Path, Path, str]], out_dir: Path,
                   n_orphans: int) -> int:
    """Batch mode on a Dask cluster (``--dask [ADDRESS]``): each scene a task on a worker; reports,
    quick-looks and scores are made here as scenes finish."""
    from tqdm.auto import tqdm

    from .dask_batch import fuse_on_dask

    _check_creation_options(args, pairs[0][1])
    kwargs = dict(kwargs, model=args.model)  # a name: each worker loads the weights once
    address = None if args.dask == "local" else args.dask
    where = f"the Dask scheduler at {address}" if address else "a local Dask cluster"
    print(f"fusing {len(pairs)} scenes on {where}", file=sys.stderr)
    inputs = {stem: (pan, ms) for pan, ms, stem in pairs}
    failed = 0
    with tqdm(total=len(pairs), unit="scene", desc="scenes", disable=args.quiet) as bar:
        def done(stem: str, res: dict) -> None:
            nonlocal failed
            report = _scene_report(args, *inputs[stem], res["out"], stem)
            if res["seconds"] is not None:
                report.seconds["fusion"] = round(res["seconds"], 3)
            report.error = res["error"]
            failed += _finish_scene(args, report, out_dir)
            bar.update(1)

        fuse_on_dask(pairs, out_dir, kwargs, address=address, workers=args.dask_workers, on_done=done)
    return _batch_summary(len(pairs), failed, out_dir, n_orphans)


def _scene_report(args: argparse.Namespace, pan: Path, ms: Path, out: str, stem: str) -> SceneReport:
    return SceneReport(stem, str(pan), str(ms), out, args.method,
                       model=args.model if args.method in MODEL_METHODS else None, sensor=args.sensor)


def _finish_scene(args: argparse.Namespace, report: SceneReport, out_dir: Path) -> bool:
    """After a scene's fusion: its quick-look and scores unless it failed, the error above the
    progress bar, and its JSON report. True when the scene failed."""
    from tqdm.auto import tqdm

    if report.error is None:
        try:
            report.describe_output()
            _products(args, report)
        except (PantinyError, OSError) as e:
            report.error = one_line(e)
    if report.error is not None:
        tqdm.write(f"pantiny: {report.scene}: {report.error}", file=sys.stderr)
    report.write(out_dir / f"{report.scene}_fused.json")
    return report.error is not None


def _batch_summary(n: int, failed: int, out_dir: Path, n_orphans: int) -> int:
    """Print the batch's last line; exit status 1 when a scene failed or a PAN had no MS."""
    print(f"fused {n - failed}/{n} scenes into {out_dir}"
          + (f"; {n_orphans} PAN file(s) without MS skipped" if n_orphans else ""))
    return 1 if failed or n_orphans else 0


def _check_creation_options(args: argparse.Namespace, ms: Path) -> None:
    """Bad ``--co`` options fail before any fusion work (the writer checks again with the real bands)."""
    if args.creation_options and ms.is_file():
        from .io import check_creation_options, raster_info

        info = raster_info(ms)
        check_creation_options(dict(args.creation_options), cog=args.cog, count=info.count, dtype=info.dtype)


def _products(args: argparse.Namespace, report: SceneReport) -> None:
    """The optional products of one fused scene: quick-look PNG, QNR scores (into ``report``)."""
    if args.quicklook:
        from .preview import quicklook

        with report.step("quicklook"):
            report.quicklook = str(quicklook(report.output, Path(report.output).with_suffix(".png")))
    if args.report_qnr:
        from .metrics import qnr

        with report.step("scoring"):
            report.scores = qnr(report.pan, report.ms, report.output, sensor=args.sensor, bands=args.bands,
                                ratio=args.ratio, nodata=args.nodata).as_dict()


def _cmd_quicklook(args: argparse.Namespace) -> int:
    from .preview import quicklook

    out = quicklook(args.fused, args.out, size=args.size, rgb=args.rgb, panel=args.panel)
    print(f"wrote {out}")
    return 0


def _cmd_adapt(args: argparse.Namespace) -> int:
    from .api import adapt

    _setup_logging(args.quiet)
    opts = {k: v for k, v in (("steps", args.steps), ("crop", args.crop), ("seed", args.seed)) if v is not None}
    adapt(args.pan, args.ms, model=args.model, sensor=args.sensor, bands=args.bands, scale=args.scale,
          ratio=args.ratio, nodata=args.nodata, device=args.device, progress=not args.quiet, out=args.out,
          name=args.name, **opts)
    print(f"wrote {args.out} (use it with: pantiny fuse PAN MS OUT --model {args.out})")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .sensors import SENSORS
    from .weights import MANIFEST_PATH, PACKAGE_DIR, load_manifest

    manifest = load_manifest(args.manifest)
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    print(f"pantiny {__version__}  torch {torch.__version__}")
    cuda = torch.cuda.is_available()
    print(f"device: {'cuda (' + torch.cuda.get_device_name(0) + ')' if cuda else 'cpu'}"
          f"  threads={torch.get_num_threads()}")
    print(f"manifest: {args.manifest or MANIFEST_PATH}")
    if not manifest["models"]:
        print("  (no weights listed)")
    for e in manifest["models"]:
        path = Path(e["file"]) if Path(e["file"]).is_absolute() else PACKAGE_DIR / e["file"]
        where = "bundled" if path.is_file() else ("huggingface:" + e["hf"]["repo_id"] if e.get("hf") else "MISSING")
        default = " (default)" if e["name"] == manifest.get("default") else ""
        print(f"  {e['name']}{default}: {e['architecture']}, {e['size']} bytes, sha256 {e['sha256'][:12]}..., {where}")
        for k, v in (e.get("metrics") or {}).items():
            print(f"      {k}: {v}")
    print("sensors: " + ", ".join(sorted(SENSORS)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pantiny", description="Pan-sharpening with a tiny all-in-one model.")
    parser.add_argument("--version", action="version", version=f"pantiny {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    fuse = sub.add_parser("fuse", help="fuse PAN + MS GeoTIFFs (one pair, or every pair in a folder)",
                          description="pantiny fuse PAN.tif MS.tif OUT.tif | pantiny fuse IN_FOLDER OUT_FOLDER "
                                      "(pairs named <name>_pan.tif / <name>_ms.tif)")
    fuse.add_argument("pan", help="PAN GeoTIFF, or a folder of <name>_pan.tif/<name>_ms.tif pairs")
    fuse.add_argument("ms", nargs="?", help="MS GeoTIFF (or the output folder in batch mode)")
    fuse.add_argument("out", nargs="?", help="output GeoTIFF")
    _add_fusion_options(fuse)
    fuse.set_defaults(func=_cmd_fuse)

    ad = sub.add_parser("adapt", help="fine-tune the model on one scene (no reference) and save the weights",
                        description="pantiny adapt PAN.tif MS.tif -o ADAPTED.safetensors: full-resolution "
                                    "adaptation with the loss of training stage 2")
    ad.add_argument("pan", help="PAN GeoTIFF")
    ad.add_argument("ms", help="MS GeoTIFF")
    ad.add_argument("-o", "--out", required=True, help="output .safetensors (a weights_manifest.json is written beside it)")
    ad.add_argument("--name", default=None, help="manifest name of the adapted weights (default: the file stem)")
    opt.add_model(ad, "starting weights: manifest name or .safetensors path")
    ad.add_argument("--steps", type=int, default=None, help="adaptation steps (default: 80, stops early)")
    ad.add_argument("--crop", type=int, default=None, help="crop side in PAN pixels (default: 96)")
    ad.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    opt.add_device(ad)
    opt.add_sensor(ad)
    opt.add_bands(ad)
    opt.add_ratio(ad)
    opt.add_scale(ad)
    opt.add_nodata(ad)
    opt.add_quiet(ad)
    ad.set_defaults(func=_cmd_adapt)

    ql = sub.add_parser("quicklook", help="natural-colour PNG preview of a fused GeoTIFF",
                        description="pantiny quicklook FUSED.tif -o LOOK.png: decimated read, R,G,B from the band "
                                    "descriptions (else the SENSOR tag, else the band count), 2-98% stretch")
    ql.add_argument("fused", help="fused GeoTIFF (any multiband raster)")
    ql.add_argument("-o", "--out", required=True, help="output PNG")
    ql.add_argument("--size", type=int, default=1024, help="longest side in pixels (default: %(default)s)")
    ql.add_argument("--rgb", type=opt.parse_rgb, default=None, help="0-based band indices of R,G,B, e.g. 2,1,0")
    ql.add_argument("--panel", nargs=2, metavar=("PAN", "MS"), default=None,
                    help="side-by-side PAN | MS (upsampled) | fused comparison")
    ql.set_defaults(func=_cmd_quicklook)

    info = sub.add_parser("info", help="show the weights manifest, the device and the sensors")
    info.add_argument("--manifest", default=None, help="another weights_manifest.json")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(func=_cmd_info)

    for module in ("pantiny.metrics.cli", "pantiny.train.cli"):
        try:
            import importlib

            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith(module.rsplit(".", 1)[0]):
                raise
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("pantiny: interrupted", file=sys.stderr)
        return 130
    except (PantinyError, OSError) as e:  # user errors: one line; anything else is a bug: traceback
        print(f"pantiny: error: {one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
