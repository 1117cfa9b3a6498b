"""``pantiny train run|export``: registered into the main ``pantiny`` command line.

Imports nothing heavy at module level (no torch, no h5py), so ``pantiny --help`` stays fast and works
without the ``train`` extra.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import from_dict, load_config
    from .loop import train

    cfg = load_config(args.config)
    overrides = {k: getattr(args, k) for k in ("steps", "batch", "seed", "device") if getattr(args, k) is not None}
    if args.out is not None:
        overrides["out"] = str(Path(args.out).resolve())
    if overrides:  # re-validate through the same checks as the file
        d = cfg.to_dict()
        d["run"].update(overrides)
        cfg = from_dict(d, Path(args.config).resolve().parent)
    summary = train(cfg, resume=not args.no_resume, progress=not args.quiet)
    print(f"trained {summary['step']}/{summary['steps']} steps; checkpoint {summary['checkpoint']}; "
          f"log {summary['log']}")
    for sensor, m in sorted((summary["val"] or {}).items()):
        print(f"  val {sensor} ({int(m['n'])} sample(s)): PSNR {m['psnr']:.2f} dB (EXP {m['exp_psnr']:.2f}), "
              f"SAM {m['sam_deg']:.3f} deg (EXP {m['exp_sam_deg']:.3f}), "
              f"ERGAS {m['ergas']:.3f} (EXP {m['exp_ergas']:.3f})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    entry = export(args.checkpoint, args.name, args.out, manifest=args.manifest, description=args.description,
                   wise=args.wise, init=args.init)
    print(f"wrote {args.out} ({entry['size']} bytes, sha256 {entry['sha256'][:12]}...) as {entry['name']!r} "
          f"in {args.manifest or 'the package manifest'}")
    if args.json:
        print(json.dumps(entry, indent=2))
    return 0


def register(sub: Any) -> None:
    """Add the ``train`` command (with ``run`` and ``export``) to the main parser's subparsers."""
    p = sub.add_parser("train", help="train a model (pantiny train run --config cfg.toml) or export a checkpoint")
    tsub = p.add_subparsers(dest="train_command", metavar="ACTION")
    tsub.required = True
    r = tsub.add_parser("run", help="train (or resume) the run a TOML config describes")
    r.add_argument("--config", required=True, help="TOML file (format: pantiny.train.config)")
    r.add_argument("--steps", type=int, default=None, help="override [run] steps")
    r.add_argument("--batch", type=int, default=None, help="override [run] batch")
    r.add_argument("--seed", type=int, default=None, help="override [run] seed")
    r.add_argument("--out", default=None, help="override [run] out (run folder)")
    r.add_argument("--device", default=None, help="override [run] device: auto, cpu, cuda")
    r.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)
    e = tsub.add_parser("export", help="write a checkpoint as safetensors and add it to a weights manifest")
    e.add_argument("checkpoint", help="checkpoint.pt of a run")
    e.add_argument("--name", required=True, help="manifest name, e.g. my-model")
    e.add_argument("--out", required=True, help="output .safetensors file")
    e.add_argument("--manifest", default=None, help="weights_manifest.json to update (default: one beside --out)")
    e.add_argument("--description", default="", help="free text stored in the manifest entry")
    e.add_argument("--wise", type=float, default=1.0, metavar="ALPHA",
                   help="ship (1 - ALPHA) * start weights + ALPHA * trained weights (WiSE-FT) for a fine-tuning "
                        "run; default 1: the trained weights")
    e.add_argument("--init", default=None, help="start weights for --wise (default: the run's [run] init)")
    e.add_argument("--json", action="store_true", help="print the manifest entry")
    e.set_defaults(func=_cmd_export)
