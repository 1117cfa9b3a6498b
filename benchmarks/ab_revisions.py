"""Speed of ``pansharpen`` at two git revisions of this repository, run alternately.

Timings on a small shared VM drift by +-20 % from minute to minute, so comparing a run today with a
table measured another day says little. This script checks the base revision out into a temporary
git worktree and times the same scene with the base and the working tree in turn, each in a fresh
process (best of ``--repeat`` calls per process), for ``--rounds`` rounds, then prints each round's
ratio::

    python benchmarks/ab_revisions.py --base HEAD~3 --size 2048 --attention scene --rounds 3

The scene is ``infer_speed.py``'s: the synthetic WorldView-3 sample mirror-tiled to ``--size``
(random model weights: speed does not depend on their values). For memory use ``infer_speed.py`` (its
child processes' peak RSS): here the synthetic scene's own generation dominates the process's peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in a child process with the tree under test first on sys.path.
_CHILD = r"""
import importlib.util, json, sys, time
tree, bench, size, attention, model, repeat, method = sys.argv[1:8]
sys.path.insert(0, tree)
import torch
import pantiny
assert pantiny.__file__.startswith(tree), f"imported {pantiny.__file__}, not the tree under test"
from pantiny.models import build_model
spec = importlib.util.spec_from_file_location("infer_speed", bench)  # infer_speed's scene, from this checkout
infer_speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(infer_speed)
size = int(size)
pan, ms = infer_speed.tiled_scene(size)
torch.manual_seed(0)
kw = dict(method=method, sensor="wv3")
if method == "pantiny":
    kw.update(model=build_model(model).eval(), attention=attention)
times = []
for _ in range(int(repeat)):
    t0 = time.perf_counter()
    pantiny.pansharpen(pan, ms, **kw)
    times.append(time.perf_counter() - t0)
print(json.dumps({"best": min(times), "mpix_s": size * size / 1e6 / min(times)}))
"""


def run(tree: Path, args: argparse.Namespace) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(ROOT / "benchmarks" / "infer_speed.py"),
                          str(args.size), args.attention, args.model, str(args.repeat), args.method],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the run in {tree} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git revision to compare the working tree with")
    p.add_argument("--size", type=int, default=2048, help="PAN side in pixels")
    p.add_argument("--attention", default="scene", choices=("scene", "sampled", "tile"))
    p.add_argument("--model", default="pantiny-big")
    p.add_argument("--method", default="pantiny", help="'pantiny' or a classical method")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=2, help="timed calls per process (best is kept)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="pantiny-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base],
                       check=True)
        try:
            print(f"| round | base ({args.base}) MPix/s | working tree MPix/s | ratio |")
            print("|---:|---:|---:|---:|")
            for r in range(1, args.rounds + 1):
                old, new = run(base, args), run(ROOT, args)
                print(f"| {r} | {old['mpix_s']:.3f} | {new['mpix_s']:.3f} | {new['mpix_s'] / old['mpix_s']:.2f} |",
                      flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)


if __name__ == "__main__":
    main()
