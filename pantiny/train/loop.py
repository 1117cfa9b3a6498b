"""The training loop: Adam + cosine schedule, resumable checkpoints, per-sensor validation, JSON-lines log.

Outputs in ``run.out``: ``config.json`` (the resolved config), ``checkpoint.pt`` (model, optimiser,
scheduler, step, last validation; rewritten atomically every ``checkpoint_every`` steps and at the
end), ``log.jsonl`` (one JSON object per logged step and per validation).

Resuming (the default when ``checkpoint.pt`` exists) restores everything needed to continue
bit-for-bit: batches are a pure function of ``(seed, step)`` (:class:`~pantiny.train.mixing.Mixer`)
and the model has no randomness of its own.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..models import build_model
from .config import TrainConfig
from .data import H5Dataset, WaldScene
from .loss import CompositeLoss
from .mixing import Mixer

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return dev


def open_sources(cfg: TrainConfig, split: str) -> List[Any]:
    out = []
    for src in cfg.data:
        if src.split != split:
            continue
        if not src.exists():
            if src.optional:
                continue
            missing = src.path if src.kind == "hdf5" else f"{src.pan} / {src.ms}"
            raise FileNotFoundError(f"training data not found: {missing} (mark the source optional = true to skip it)")
        out.append(src.open())
    return out


def _atomic_save(obj: Dict[str, Any], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: "str | Path") -> Dict[str, Any]:
    """Read a training checkpoint (tensors and plain Python values only: never unpickles code)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such checkpoint: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{p} is not a pantiny training checkpoint: {str(e).splitlines()[0]}") from None


@torch.no_grad()
def validate(model: torch.nn.Module, datasets: List[Any], device: torch.device, max_h5: int = 16) -> Dict[str, Dict[str, float]]:
    """Per-sensor reduced-resolution scores of ``model`` (and of EXP, the upsampled MS) on held-out data.

    Scores use :mod:`pantiny.metrics` on the unit range: PSNR (dB, peak 1), SAM (degrees), ERGAS.
    """
    from ..metrics import ergas, psnr, sam

    acc: Dict[str, Dict[str, List[float]]] = {}
    model.eval()
    for d in datasets:
        samples = [d.full()] if isinstance(d, WaldScene) else [d.get(i) for i in range(min(len(d), max_h5))]
        for gt, lms, pan in samples:
            pred = model(lms[None].to(device), pan[None].to(device))[0].float().cpu().clamp(0, None)
            a = acc.setdefault(d.sensor.name, {})
            for tag, img in (("", pred), ("exp_", lms)):
                a.setdefault(tag + "psnr", []).append(psnr(img, gt, data_range=1.0))
                a.setdefault(tag + "sam_deg", []).append(sam(img, gt, degrees=True))
                a.setdefault(tag + "ergas", []).append(ergas(img, gt, ratio=4))
    model.train()
    return {s: {k: float(sum(v) / len(v)) for k, v in m.items()} for s, m in acc.items()}


def train(cfg: TrainConfig, *, resume: bool = True, progress: bool = True,
          stop_after: Optional[int] = None) -> Dict[str, Any]:
    """Run (or resume) the training described by ``cfg``; returns a summary.

    ``stop_after`` ends the process early after that many steps *of this call*, as an interruption
    would (used to test resuming); the schedule still spans ``cfg.run.steps``.
    """
    run = cfg.run
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(run.device)
    train_sets = open_sources(cfg, "train")
    val_sets = open_sources(cfg, "val")
    mixer = Mixer(train_sets, patch=run.patch, batch=run.batch, seed=run.seed, balance=run.balance,
                  augment=run.augment)

    torch.manual_seed(run.seed)
    model = build_model(run.model).to(device)
    model = model.to(memory_format=torch.channels_last)  # faster oneDNN convolutions on CPU
    model.train()
    # torch.compile (fixed patch shape) is ~1.5x faster on CPU; validation runs the plain module.
    step_model = torch.compile(model, dynamic=False) if run.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                           weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=run.steps, eta_min=cfg.optim.eta_min)
    loss_fn = CompositeLoss(cfg.loss.charbonnier, cfg.loss.ssim, cfg.loss.focal, cfg.loss.focal_as_l1)

    ckpt_path, log_path = out / CHECKPOINT, out / LOG
    start, last_val = 0, None
    if resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        if ck.get("model_name") != run.model:
            raise ValueError(f"{ckpt_path} holds a {ck.get('model_name')!r} run, the config asks for {run.model!r}: "
                             "use another out folder or --no-resume")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        start, last_val = int(ck["step"]), ck.get("val")
    elif log_path.exists():
        log_path.unlink()  # a fresh run starts a fresh log
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    def save(step: int) -> None:
        _atomic_save({"step": step, "model_name": run.model, "model": model.state_dict(), "optim": opt.state_dict(),
                      "sched": sched.state_dict(), "val": last_val, "config": json.dumps(cfg.to_dict())}, ckpt_path)

    def log(rec: Dict[str, Any]) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    end = run.steps if stop_after is None else min(run.steps, start + stop_after)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=run.steps, initial=start, unit="step", desc=f"train {run.model}")
    seen: Counter = Counter()
    t0, n0 = time.perf_counter(), 0
    for step in range(start, end):
        gt, lms, pan, sensors = mixer.batch_at(step)
        gt, lms, pan = gt.to(device), lms.to(device), pan.to(device)
        pred = step_model(lms, pan)
        loss, terms = loss_fn(pred, gt)
        if not math.isfinite(float(loss)):
            raise RuntimeError(f"loss became {float(loss)} at step {step + 1}: lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        seen.update(sensors)
        n0 += len(sensors)
        done = step + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.4f}")
        if done % run.log_every == 0 or done == end:
            dt = time.perf_counter() - t0
            log({"step": done, "loss": float(loss), **terms, "lr": opt.param_groups[0]["lr"],
                 "sensors": dict(seen), "patches_per_s": n0 / dt if dt > 0 else None})
            seen, t0, n0 = Counter(), time.perf_counter(), 0
        if done % run.checkpoint_every == 0 or done == end:
            save(done)  # before validating: a failing validation never costs trained steps
        if val_sets and (done % run.validate_every == 0 or done == run.steps):
            last_val = validate(model, val_sets, device)
            log({"step": done, "val": last_val})
            save(done)
    if bar is not None:
        bar.close()
    if start == end == run.steps and val_sets and last_val is None:  # finished run, never validated
        last_val = validate(model, val_sets, device)
        log({"step": end, "val": last_val})
        save(end)
    return {"step": end, "steps": run.steps, "checkpoint": str(ckpt_path), "log": str(log_path), "val": last_val}
