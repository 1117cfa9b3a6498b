"""Separate vs all-in-one (issue #16): the same model, schedule and step budget trained on one sensor
alone or on several jointly, scored on the held-out scenes of every sensor.

Runs ``training/compare/*.toml`` must have finished (``pantiny train run --config ...``); each run's
``checkpoint.pt`` is scored with :func:`eval_heldout.score_scene` (reduced resolution: PSNR, SAM,
ERGAS; full resolution: QNR, HQNR) on the held-out scenes of its config's ``split = "val"`` source,
and one markdown table per sensor is printed: every run that saw that sensor, plus EXP.

    python benchmarks/compare_separate.py [--runs training/runs] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_heldout import model_from, score_scene  # noqa: E402

from pantiny.train.config import load_config  # noqa: E402
from pantiny.train.data import corpus_sources  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNS = ("wv2", "wv3", "gf2", "joint3", "joint5")
LABEL = {"wv2": "separate (WV2 only)", "wv3": "separate (WV3 only)", "gf2": "separate (GF2 only)",
         "joint3": "all-in-one (WV2+WV3+GF2)", "joint5": "all-in-one (+QuickBird, GF-1)"}
KEYS = ("psnr", "sam_deg", "ergas", "qnr", "hqnr")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "training" / "runs")
    ap.add_argument("--configs", type=Path, default=ROOT / "training" / "compare")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", nargs="+", choices=RUNS, default=list(RUNS), help="score only these runs")
    args = ap.parse_args()
    table: Dict[str, Dict[str, List[Dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    per_scene = {}
    for run in args.only:
        ck = args.runs / f"compare-{run}" / "checkpoint.pt"
        cfg_path = args.configs / f"{run}.toml"
        if not ck.is_file():
            print(f"skipping {run}: no {ck}", file=sys.stderr)
            continue
        cfg = load_config(cfg_path)
        train_sensors = set(next(s for s in cfg.data if s.split == "train").sensors or ())
        val = next(s for s in cfg.data if s.split == "val")
        net = model_from(str(ck))
        for src in corpus_sources(Path(val.path), scenes=list(val.scenes or [])):
            if src.sensor not in train_sensors:
                continue  # a separate model is scored on its own sensor only
            stem = (src.name or "").split("/")[-1]
            sensor, scores = score_scene(Path(src.pan), Path(src.ms), src.sensor, net, [], (0.0, 1.0),
                                         src.bands, src.scale, src.gt)
            per_scene.setdefault(stem, {"sensor": sensor})[run] = scores["pantiny"]
            table[sensor][LABEL[run]].append(scores["pantiny"])
            if len(table[sensor]["EXP"]) < len(table[sensor][LABEL[run]]):
                table[sensor]["EXP"].append(scores["EXP"])
                per_scene[stem]["EXP"] = scores["EXP"]
            print(f"scored {stem} ({sensor}) with {run}", file=sys.stderr, flush=True)
    for sensor in ("wv2", "wv3", "gf2"):
        if sensor not in table:
            continue
        n = len(table[sensor]["EXP"])
        print(f"\n### {sensor.upper()}: {n} held-out scene(s)\n")
        print("| trained on | RR PSNR (dB) ↑ | RR SAM (°) ↓ | RR ERGAS ↓ | QNR ↑ | HQNR ↑ |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, rows in table[sensor].items():
            m = {k: float(np.mean([r[k] for r in rows])) for k in KEYS}
            print(f"| {name} | {m['psnr']:.2f} | {m['sam_deg']:.3f} | {m['ergas']:.3f} | {m['qnr']:.4f} | {m['hqnr']:.4f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(per_scene, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
