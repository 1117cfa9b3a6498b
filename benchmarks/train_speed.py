"""CPU (or CUDA) training throughput of PanTiny, in patches/s, with cheap speed-ups compared in one run.

For each patch size (default 64 and 128, batch 16) it times full training steps (forward, composite
loss, backward, Adam) of ``pantiny-big`` in these variants, each reported as a ratio to the plain
baseline measured in the same run:

* ``plain``: default memory layout, torch's default thread count;
* ``channels_last``: model weights and inputs in NHWC (oneDNN's preferred layout);
* ``threads=N``: ``torch.set_num_threads(N)`` for N in 1 and the core count;
* ``compile``: ``torch.compile`` on top of channels_last (skipped, with the reason, if it fails).

    python benchmarks/train_speed.py [--model pantiny-big] [--patches 64 128] [--steps 5]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from pantiny.models import build_model
from pantiny.train.loss import CompositeLoss


def time_steps(model: torch.nn.Module, patch: int, batch: int, steps: int, channels_last: bool) -> float:
    torch.manual_seed(0)
    gt = torch.rand(batch, 4, patch, patch)
    lms = (gt + 0.02 * torch.randn_like(gt)).clamp(0, 1)
    pan = gt.mean(1, keepdim=True)
    if channels_last:
        gt, lms, pan = (t.contiguous(memory_format=torch.channels_last) for t in (gt, lms, pan))
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-4)
    loss_fn = CompositeLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = loss_fn(model(lms, pan), gt)
        loss.backward()
        opt.step()

    step()  # warm-up (and compilation)
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pantiny-big")
    ap.add_argument("--patches", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    cores = os.cpu_count() or 1
    print(f"{args.model}, batch {args.batch}, torch {torch.__version__}, {cores} cores, default {default_threads} threads")
    print("\n| patch | variant | patches/s | vs plain |\n|---:|---|---:|---:|")
    for patch in args.patches:
        rows = []

        def run(label: str, channels_last: bool = False, threads: int = default_threads, compile_: bool = False):
            torch.set_num_threads(threads)
            model = build_model(args.model).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            if compile_:
                torch._dynamo.reset()  # fresh compilation per run: no shape specialisation carried over
                model = torch.compile(model, dynamic=False)
            try:
                rows.append((label, time_steps(model, patch, args.batch, args.steps, channels_last)))
            except Exception as e:  # torch.compile needs a C++ toolchain; report rather than crash
                rows.append((f"{label} (failed: {type(e).__name__}: {str(e).splitlines()[0][:60]})", float("nan")))
            finally:
                torch.set_num_threads(default_threads)

        run("plain")
        run("channels_last", channels_last=True)
        for n in sorted({1, cores}):
            if n != default_threads:
                run(f"channels_last, threads={n}", channels_last=True, threads=n)
        if not args.no_compile:
            run("channels_last + torch.compile", channels_last=True, compile_=True)
        base = rows[0][1]
        for label, v in rows:
            print(f"| {patch} | {label} | {v:.2f} | {v / base:.2f} |")


if __name__ == "__main__":
    main()
