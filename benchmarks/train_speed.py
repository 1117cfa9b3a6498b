"""CPU (or CUDA) training throughput of PanTiny, in patches/s, with cheap speed-ups compared in one run.

For each patch size (default 64 and 128, batch 16) it times full training steps (forward, the
composite loss of :mod:`pantiny.train.loss`, backward, Adam) of ``pantiny-big`` in these variants,
each reported as a ratio to the plain baseline measured in the same run:

* ``plain``: default (NCHW) memory layout, torch's default thread count;
* ``channels_last``: model weights and inputs in NHWC (oneDNN's preferred layout);
* ``channels_last, threads=N``: ``torch.set_num_threads(N)`` for each N of ``--threads`` other than
  the default;
* ``channels_last + torch.compile``: ``torch.compile`` on top (inductor needs a C++ compiler on CPU;
  a failure is reported in the table instead of stopping the run).

Throughput is ``batch / median step time`` over ``--steps`` timed steps after 2 warm-up steps
(compilation happens in the warm-up), so a busy shared machine disturbs it less than a mean would.

    python benchmarks/train_speed.py [--model pantiny-big] [--patches 64 128] [--steps 5] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable, List, Tuple

import torch

from pantiny.models import build_model
from pantiny.train.loss import CompositeLoss


def time_steps(model: torch.nn.Module, patch: int, batch: int, steps: int, channels_last: bool,
               device: torch.device) -> float:
    """Patches per second of full training steps on a fixed random batch (B,4,P,P)."""
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(batch, 4, patch, patch, generator=g)
    lms = (gt + 0.02 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    pan = gt.mean(1, keepdim=True)
    gt, lms, pan = gt.to(device), lms.to(device), pan.to(device)
    if channels_last:
        gt, lms, pan = (t.contiguous(memory_format=torch.channels_last) for t in (gt, lms, pan))
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.999), weight_decay=1e-4)
    loss_fn = CompositeLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = loss_fn(model(lms, pan), gt)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (and compilation)
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pantiny-big")
    ap.add_argument("--patches", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    ap.add_argument("--threads", type=int, nargs="*", default=None,
                    help="thread counts to try besides the default (default: 1 and the core count)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1 or any(p < 8 for p in args.patches):
        raise SystemExit("--steps and --batch must be >= 1 and patches >= 8")
    device = torch.device(args.device)
    default_threads = torch.get_num_threads()
    cores = os.cpu_count() or 1
    threads = args.threads if args.threads is not None else [1, cores]
    print(f"{args.model}, batch {args.batch}, {device}, torch {torch.__version__}, {platform.processor() or '?'}, "
          f"{cores} cores, default {default_threads} threads, median of {args.steps} steps")
    print("\n| patch | variant | patches/s | vs plain |\n|---:|---|---:|---:|")
    for patch in args.patches:
        rows: List[Tuple[str, float]] = []

        def run(label: str, channels_last: bool = False, n_threads: int = default_threads,
                compile_: bool = False) -> None:
            torch.set_num_threads(n_threads)
            torch.manual_seed(0)
            model = build_model(args.model).to(device).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            fwd: Callable = model
            try:
                if compile_:
                    torch._dynamo.reset()  # fresh compilation per run: no shape specialisation carried over
                    fwd = torch.compile(model, dynamic=False)
                rows.append((label, time_steps(fwd, patch, args.batch, args.steps, channels_last, device)))
            except Exception as e:  # torch.compile needs a working C++ toolchain; report rather than crash
                msg = str(e).strip().splitlines()[0][:70] if str(e).strip() else ""
                rows.append((f"{label} (failed: {type(e).__name__}: {msg})", float("nan")))
            finally:
                torch.set_num_threads(default_threads)

        run("plain")
        run("channels_last", channels_last=True)
        for n in sorted(set(threads)):
            if n != default_threads and n >= 1:
                run(f"channels_last, threads={n}", channels_last=True, n_threads=n)
        if not args.no_compile:
            run("channels_last + torch.compile", channels_last=True, compile_=True)
        base = rows[0][1]
        for label, v in rows:
            print(f"| {patch} | {label} | {v:.2f} | {v / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
