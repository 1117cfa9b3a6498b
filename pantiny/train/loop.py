"""The training loop: Adam + cosine schedule, resumable checkpoints, per-sensor validation, JSON-lines log.

Outputs in ``run.out``:

* ``config.toml`` / ``config.json``: the resolved config (the TOML one can be run again as is);
* ``checkpoint.pt``: model, optimiser, scheduler, torch RNG states, data position (the next batch
  number), last validation, config and the data actually used, and with ``[run] ema`` the moving
  average of the weights (``ema``: what validation scores and export ships); rewritten atomically every
  ``checkpoint_every`` steps and at the end;
* ``log.jsonl``: one JSON object per logged step (loss terms, lr, sensors drawn, patches/s) and per
  validation (per sensor: PSNR, SAM, ERGAS, loss, with the same scores of EXP, the upsampled MS).

Resuming (the default when ``checkpoint.pt`` exists) continues bit-for-bit: batches are a pure
function of ``(seed, step)`` (:class:`~pantiny.train.mixing.Mixer`), the model has no randomness of
its own, and everything stateful is in the checkpoint. Log lines written after the checkpoint (by
an interrupted process) are dropped on resume, so the log reads like the one of an uninterrupted run.
A checkpoint only resumes a run with the same model, schedule, loss, seed, batch, patch and training
data; anything else is refused with the list of differences. Bit-identity holds on CPU; CUDA
kernels (cuDNN) may be non-deterministic.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from .. import __version__ as PANTINY_VERSION
from .._allocator import keep_heap
from .._atomic import atomic_path
from ..devices import pick_device
from ..errors import ConfigError, ModelOutputError, one_line
from ..models import build_model
from .config import TrainConfig, to_toml
from .data import SceneTooSmall
from .fr_loss import FullResolutionLoss
from .loss import CompositeLoss
from .mixing import Mixer

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
FORMAT = "pantiny-train-1"

#: [run] keys that may change between an interrupted run and its resumption.
_FREE_RUN_KEYS = {"out", "device", "compile", "checkpoint_every", "validate_every", "log_every"}


def open_sources(cfg: TrainConfig, split: str, skipped: Optional[List[str]] = None, *,
                 stage: Optional[str] = None, patch: Optional[int] = None) -> List[Any]:
    """Open the config's ``split`` sources (skipping absent optional ones); each gets ``.source``.

    ``stage`` ("rr" or "fr", default the run's stage; validation is always "rr") and ``patch``
    (default ``[run] patch``) say how training sets are opened and what they must yield. Every
    dataset is checked here, before step 0, for what training will ask of it: a training set
    must hold at least one ``patch``-sized sample free of nodata. A scene of a corpus index that does
    not is skipped and its name appended to ``skipped`` (logged); an explicitly listed one is an error.
    """
    patch = cfg.run.patch if patch is None else patch
    stage = stage or ("rr" if cfg.run.stage == "joint" else cfg.run.stage)
    out = []
    for entry in cfg.data:
        if entry.split != split:
            continue
        if not entry.exists():
            if entry.optional:
                continue
            missing = ", ".join(str(f) for f in entry.files() if not (f and Path(f).is_file()))
            raise FileNotFoundError(f"training data not found: {missing} (mark the source optional = true to skip it)")
        for src in entry.expand():
            if not src.exists():
                missing = ", ".join(str(f) for f in src.files() if not (f and Path(f).is_file()))
                raise FileNotFoundError(f"corpus scene {src.name}: file(s) not found: {missing}")
            try:
                ds = src.open(stage if split == "train" else "rr")  # validation: always RR scores
            except SceneTooSmall as e:
                if entry.kind == "corpus" and skipped is not None:
                    skipped.append(f"{src.name} ({e})")
                    continue
                raise
            ds.source = src
            if split == "train" and not ds.can_draw(patch):
                if entry.kind == "corpus" and skipped is not None:
                    skipped.append(f"{ds.name} (no {patch}x{patch} patch)")
                    continue
                raise ConfigError(f"training data {ds.name} has no {patch}x{patch} patch free of "
                                 "nodata: use a smaller [run] patch or leave the scene out")
            out.append(ds)
    return out


def _atomic_save(obj: Dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """Read a training checkpoint (tensors and plain Python values only: never unpickles code)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such checkpoint: {p}")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{p} is not a pantiny training checkpoint: {str(e).splitlines()[0]}") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ConfigError(f"{p} is not a pantiny training checkpoint (format {FORMAT!r} expected)")
    return ck


def trained_weights(ck: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The state dict a checkpoint stands for: its moving average of the weights when the run kept one
    (``[run] ema``; what its validation scored), else the optimiser's current weights."""
    avg = ck.get("ema")
    if not avg:
        return ck["model"]
    # an AveragedModel's state: the averaged module under "module.", plus its update counter
    return {k[len("module."):]: v for k, v in avg.items() if k.startswith("module.")}


# Keys added after runs were started: at their default they match a checkpoint written without them.
_LATER_DEFAULTS = {"run": {"stage": "rr", "init": None, "pan_gain": 1.0, "fr_batch": 8, "fr_patch": 128,
                           "fr_sensors": [], "ema": 0.0}, "loss": {"spectral": 1.0, "spatial": 1.0}}


def _fingerprint(cfg: Dict[str, Any], used: List[Dict[str, Any]]) -> Dict[str, Any]:
    """What must not change for a resumed run to continue the interrupted one exactly."""
    def strip(table: str, d: Dict[str, Any]) -> Dict[str, Any]:
        later = _LATER_DEFAULTS.get(table, {})
        return {k: v for k, v in d.items() if not (k in later and v == later[k])}

    return {"run": strip("run", {k: v for k, v in cfg["run"].items() if k not in _FREE_RUN_KEYS}),
            "optim": cfg["optim"], "loss": strip("loss", cfg["loss"]),
            "train_data": [d for d in used if d["split"] == "train"]}


def _diff(a: Any, b: Any, where: str = "") -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
        return out
    return [] if a == b else [f"{where}: {a!r} -> {b!r}"]


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records of steps after ``step`` (written by a process that died before checkpointing)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the interruption
        if int(rec.get("step", 0)) <= step:
            keep.append(line)
    path.write_text("".join(x + "\n" for x in keep))


@torch.no_grad()
def validate(model: torch.nn.Module, datasets: List[Any], device: torch.device, *, patch: int = 64,
             loss_fn: Optional[CompositeLoss] = None) -> Dict[str, Dict[str, float]]:
    """Per-sensor reduced-resolution scores of ``model`` and of EXP (the upsampled MS) on held-out data.

    Every dataset yields samples through ``eval_samples(patch)`` (whole scenes, or their nodata-free
    tiles); scores use :mod:`pantiny.metrics` on the unit range and are averaged over samples:
    ``psnr`` (dB, peak 1), ``sam_deg`` (degrees), ``ergas``, ``loss`` (the training loss, when
    ``loss_fn`` is given), ``exp_*`` the same for EXP, ``n`` the number of samples.
    """
    from ..metrics import ergas, psnr, sam

    acc: Dict[str, Dict[str, List[float]]] = {}
    was_training = model.training
    model.eval()
    try:
        for d in datasets:
            for gt, lms, pan in d.eval_samples(patch):
                pred = model(lms[None].to(device), pan[None].to(device)).float().cpu()
                a = acc.setdefault(d.sensor.name, {})
                if loss_fn is not None:
                    a.setdefault("loss", []).append(float(loss_fn(pred, gt[None])[0]))
                    a.setdefault("exp_loss", []).append(float(loss_fn(lms[None], gt[None])[0]))
                for tag, img in (("", pred[0]), ("exp_", lms)):
                    a.setdefault(tag + "psnr", []).append(psnr(img, gt, data_range=1.0))
                    a.setdefault(tag + "sam_deg", []).append(sam(img, gt, degrees=True))
                    a.setdefault(tag + "ergas", []).append(ergas(img, gt, ratio=4))
                a.setdefault("n", []).append(1.0)
    finally:
        model.train(was_training)
    return {s: {k: (float(len(v)) if k == "n" else float(sum(v) / len(v))) for k, v in m.items()}
            for s, m in acc.items()}


def _backward(loss: torch.Tensor, terms: Dict[str, float], opt: torch.optim.Optimizer, step: int) -> Any:
    """Gradients of ``loss`` (no optimiser step), refusing a non-finite loss: ``(loss tensor, terms)``."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise ModelOutputError(f"loss became {value} at step {step + 1}: lower the learning rate")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), terms


def _fr_loss(net: Any, losses: Dict[str, FullResolutionLoss], ms_nn: torch.Tensor, lms: torch.Tensor,
             pan: torch.Tensor, sensors: List[str], ratio: int) -> Any:
    """The full-resolution loss of one batch, each sensor's samples with its own MTF gains:
    ``(loss tensor, terms)``."""
    fused = net(lms, pan)
    ms_lr = ms_nn[..., ::ratio, ::ratio]
    total: Any = 0.0
    terms = {"spectral": 0.0, "spatial": 0.0}
    for name in sorted(set(sensors)):
        idx = [i for i, s in enumerate(sensors) if s == name]
        fn, share = losses[name], len(idx) / len(sensors)
        with torch.no_grad():
            rho_ref = fn.reference(lms[idx], pan[idx])
        loss, t = fn(fused[idx], ms_lr[idx], pan[idx], lms[idx], rho_ref)
        total = total + share * loss
        for k in terms:
            terms[k] += share * t[k]
    return total, terms


def initial_weights(spec: str) -> Dict[str, torch.Tensor]:
    """State dict of ``[run] init``: a training checkpoint.pt, a .safetensors file or a manifest name."""
    if spec.endswith(".pt"):
        return trained_weights(load_checkpoint(spec))
    from ..weights import load_model

    return load_model(spec).state_dict()


def train(cfg: TrainConfig, *, resume: bool = True, progress: bool = True,
          stop_after: Optional[int] = None) -> Dict[str, Any]:
    """Run (or resume) the training described by ``cfg``.

    Args:
        cfg: the run (see :mod:`pantiny.train.config`).
        resume: continue from ``run.out/checkpoint.pt`` when it exists (else start over).
        progress: show a tqdm progress bar.
        stop_after: end early after that many steps *of this call*, as an interruption would (the
            schedule still spans ``cfg.run.steps``).

    Returns:
        ``{"step", "steps", "checkpoint", "log", "val", "data"}``: the step reached, the planned
        steps, the checkpoint and log paths, the last per-sensor validation (or None), and the
        training/validation data used.
    """
    run = cfg.run
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(run.device)
    if device.type == "cpu":  # batch-sized activations reused from the heap, not page-faulted in afresh
        keep_heap()
    skipped: List[str] = []
    train_sets = open_sources(cfg, "train", skipped)
    # stage "joint": the same training sources also as full-resolution pairs, a batch of each per step
    fr_sets = open_sources(cfg, "train", skipped, stage="fr", patch=run.fr_patch) if run.stage == "joint" else []
    if run.fr_sensors:  # e.g. the full-resolution loss only where scenes are plentiful
        fr_sets = [d for d in fr_sets if d.sensor.name in run.fr_sensors]
        if not fr_sets:
            raise ConfigError(f"[run] fr_sensors = {list(run.fr_sensors)} selects none of the training scenes")
    val_sets = open_sources(cfg, "val", skipped)
    if skipped:
        warnings.warn(f"{len(skipped)} corpus scene(s) left out: {', '.join(skipped)}")
    for d in val_sets:
        if not d.eval_samples(run.patch):
            raise ConfigError(f"validation data {d.name} has no 16x16 part free of nodata: choose other rows")
    used = [d.source.describe() for d in train_sets + val_sets]
    for d, u in zip(train_sets + val_sets, used):
        u["sensor"] = d.sensor.name
    mixer = Mixer(train_sets, patch=run.patch, batch=run.batch, seed=run.seed, balance=run.balance,
                  augment=run.augment, pan_gain=run.pan_gain)
    fr_mixer = (Mixer(fr_sets, patch=run.fr_patch, batch=run.fr_batch, seed=run.seed + 1, balance=run.balance,
                      augment=run.augment, pan_gain=run.pan_gain) if fr_sets else None)
    cfg_dict = cfg.to_dict()

    torch.manual_seed(run.seed)
    model = build_model(run.model)
    if run.init is not None:  # stage 2 (or any fine-tuning) starts from trained weights
        model.load_state_dict(initial_weights(run.init))
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last)  # faster oneDNN / cuDNN convolutions
    model.train()
    step_model = torch.compile(model, dynamic=False) if run.compile else model
    # Exponential moving average of the weights (and buffers): smoother than the last iterate, whose
    # held-out scores swing by tenths of a dB from one validation to the next on the scarce sensors.
    ema = (torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(run.ema),
                                               use_buffers=True) if run.ema > 0 else None)
    shipped = model if ema is None else ema.module  # the weights validated and exported
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                           weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=run.steps, eta_min=cfg.optim.eta_min)
    loss_fn = CompositeLoss(cfg.loss.charbonnier, cfg.loss.ssim, cfg.loss.focal, cfg.loss.focal_as_l1,
                           sam=cfg.loss.sam)
    fr_losses: Dict[str, FullResolutionLoss] = {}
    fr_ratio = 4
    if run.stage in ("fr", "joint"):
        for d in (fr_sets if run.stage == "joint" else train_sets):
            fr_ratio = d.ratio
            fr_losses[d.sensor.name] = FullResolutionLoss(tuple(d.sensor.model_mtf), d.ratio,  # type: ignore[arg-type]
                                                          cfg.loss.spectral, cfg.loss.spatial, margin=2 * d.ratio)

    ckpt_path, log_path = out / CHECKPOINT, out / LOG
    start, last_val, val_step = 0, None, -1
    if resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        old = _fingerprint(json.loads(ck["config"]), json.loads(ck["data_used"]))
        diffs = _diff(old, _fingerprint(cfg_dict, used))
        if diffs:
            raise ConfigError(f"{ckpt_path} belongs to a different run ({'; '.join(diffs[:4])}"
                             f"{'; ...' if len(diffs) > 4 else ''}): use another out folder or --no-resume")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        torch.set_rng_state(ck["rng"]["torch"])
        if device.type == "cuda" and ck["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
        start, last_val, val_step = int(ck["step"]), ck.get("val"), int(ck.get("val_step", -1))
        _truncate_log(log_path, start)
    else:  # a fresh run: no stale log lines or checkpoint of an earlier run in this folder
        for stale in (log_path, ckpt_path):
            if stale.exists():
                stale.unlink()
    (out / "config.json").write_text(json.dumps(cfg_dict, indent=2) + "\n")
    (out / "config.toml").write_text(to_toml(cfg))

    def save(step: int) -> None:
        _atomic_save({
            "format": FORMAT, "step": step, "model_name": run.model, "model": model.state_dict(),
            "optim": opt.state_dict(), "sched": sched.state_dict(),
            **({} if ema is None else {"ema": ema.state_dict()}),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []},
            "data_position": {"seed": run.seed, "next_batch": step},
            "val": last_val, "val_step": val_step, "config": json.dumps(cfg_dict), "data_used": json.dumps(used),
            "versions": {"pantiny": PANTINY_VERSION, "torch": str(torch.__version__)},
        }, ckpt_path)

    def log(rec: Dict[str, Any]) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    if start == 0:
        log({"step": 0, "event": "start", "model": run.model, "device": str(device),
             "sensor_shares": mixer.sensor_shares(), "data": used, "skipped": skipped})
    end = run.steps if stop_after is None else min(run.steps, start + max(0, int(stop_after)))
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is optional: no bar then
            tqdm = None
        if tqdm is not None:
            bar = tqdm(total=run.steps, initial=start, unit="step", desc=f"train {run.model}")
    seen: Counter = Counter()
    t0, n0 = time.perf_counter(), 0
    def validate_now(step: int) -> None:
        nonlocal last_val, val_step
        last_val, val_step = validate(shipped, val_sets, device, patch=run.patch, loss_fn=loss_fn), step
        log({"step": step, "val": last_val})
        save(step)

    def one_step(net: Any, gt: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor, sensors: List[str],
                 step: int) -> Any:
        if run.stage == "fr":
            loss, terms = _fr_loss(net, fr_losses, gt, lms, pan, sensors, fr_ratio)
            return _backward(loss, terms, opt, step)
        loss, terms = loss_fn(net(lms, pan), gt)
        if fr_mixer is not None:  # stage "joint": plus the full-resolution loss of its own batch
            ms_nn, f_lms, f_pan, f_sensors = fr_mixer.batch_at(step)
            fr, fr_terms = _fr_loss(net, fr_losses, ms_nn.to(device), f_lms.to(device), f_pan.to(device),
                                    f_sensors, fr_ratio)
            loss, terms = loss + fr, {**terms, **fr_terms}
        return _backward(loss, terms, opt, step)

    def validation_due(step: int) -> bool:
        return bool(val_sets) and step > 0 and (step % run.validate_every == 0 or step == run.steps)

    try:
        if validation_due(start) and val_step != start:
            validate_now(start)  # the interrupted process died while validating this step
        for step in range(start, end):
            gt, lms, pan, sensors = mixer.batch_at(step)
            gt, lms, pan = gt.to(device), lms.to(device), pan.to(device)
            try:
                loss, terms = one_step(step_model, gt, lms, pan, sensors, step)
            except Exception as e:
                if step_model is model or "loss became" in str(e):
                    raise
                # torch.compile failed (typically: no working C++ compiler): same step, eager mode
                msg = one_line(e)[:200]
                warnings.warn(f"torch.compile failed ({msg}); training continues without it")
                log({"step": step, "event": "compile_failed", "error": msg})
                step_model = model
                loss, terms = one_step(step_model, gt, lms, pan, sensors, step)
            value = float(loss)
            lr = opt.param_groups[0]["lr"]  # the rate this step uses
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            seen.update(sensors)
            n0 += len(sensors)
            done = step + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
            if done % run.log_every == 0 or done == end:
                dt = time.perf_counter() - t0
                log({"step": done, "loss": value, **terms, "lr": lr,
                     "sensors": dict(seen), "patches_per_s": round(n0 / dt, 3) if dt > 0 else None})
                seen, t0, n0 = Counter(), time.perf_counter(), 0
            if done % run.checkpoint_every == 0 or done == end:
                save(done)  # before validating: a failing validation never costs trained steps
            if validation_due(done):
                validate_now(done)
                t0 = time.perf_counter()  # validation time is not training throughput
    finally:
        if bar is not None:
            bar.close()
        for d in train_sets + fr_sets + val_sets:
            if hasattr(d, "close"):
                d.close()
    return {"step": end, "steps": run.steps, "checkpoint": str(ckpt_path), "log": str(log_path),
            "val": last_val, "data": used}
