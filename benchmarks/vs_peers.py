#!/usr/bin/env python
"""pantiny vs its peers (GDAL, Orfeo ToolBox): speed, peak memory and quality, in one markdown table.

    python benchmarks/vs_peers.py [--scenes sample,ikonos,wv3crop] [--weights PATH] [--otb lmvm,rcs] [--out FILE.md]

For each scene (the bundled synthetic WorldView-3 sample ``examples/data/sample_{pan,ms}.tif`` and,
when present, the real scenes of ``../shared/data/``: ``ikonos_scene_*`` and ``wv3_crop_*``):

* **GDAL**: weighted Brovey through GDAL's ``VRTPansharpenedDataset`` (the engine behind
  ``gdal_pansharpen``), opened and read with rasterio's bundled GDAL; spectral bands = the four
  bands pantiny fuses (R, G, B, NIR; for 8-band WorldView: B, G, R, NIR1), default weights (1/4
  each), MS resampling ``Cubic`` (GDAL's default), ``NumThreads`` = ``--threads``.
* **Orfeo ToolBox** (when ``otbcli_BundleToPerfectSensor`` is on the PATH, e.g. Debian ``otb-bin``):
  ``BundleToPerfectSensor -method lmvm`` (and the other ``--otb`` methods: ``rcs``, ``bayes``) on
  the same files, run as a subprocess (its start-up is part of its time, as a user would see it),
  ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` = ``--threads``; the four fused bands are read back from
  its output. OTB works on every MS band; only those four are scored.
* **pantiny**: :func:`pantiny.pansharpen` on the same GeoTIFFs with each classical method
  (bicubic MS upsampling, default tiles) and the model when weights are available (the manifest's
  default model, or ``--weights PATH``); torch uses ``--threads`` threads.

Reported per output:

* ``MPix/s``: PAN pixels fused per second, wall clock of the whole call (read both files, fuse, hold
  the result in memory), best of ``--repeat`` runs after one untimed warm-up run (so GDAL's block
  cache is equally warm for everybody); ``x GDAL`` = pantiny MPix/s / GDAL MPix/s (> 1: faster).
* ``peak MB``: peak resident memory above the resident memory just before the call, i.e. Linux
  ``VmHWM`` after resetting it through ``/proc/self/clear_refs`` (and ``malloc_trim``), on the
  first timed run. It counts everything the process touches (GDAL buffers, torch tensors, the
  output array), unlike ``tracemalloc``, which would miss C/C++ allocations.
* ``D_lambda``, ``D_s``, ``QNR``: :func:`pantiny.metrics.qnr` at full resolution (toolbox
  variant, the library default) against the original MS and PAN.
* reduced resolution (Wald protocol): PAN and MS degraded by 4 with
  :func:`pantiny.mtf.mtf_degrade` and the sensor's MTF gains (``pantiny.sensors``), fused the same
  way, compared with the original MS: ``PSNR`` (dB, peak = sensor max DN), ``SAM`` (degrees),
  ``ERGAS``.

``--write``: every tool writes its result to a GeoTIFF instead (file to file, as from the command
line): GDAL copies its pansharpened VRT with the creation options pantiny's writer uses (tiled
256², DEFLATE, PREDICTOR=2, ``NUM_THREADS`` = ``--threads``), pantiny fuses with ``out=``; the
scores are computed on the files read back (not timed).

The machine this runs on is usually shared: timings are indicative, compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data"
SHARED_DATA = Path(os.environ.get("PANTINY_SHARED_DATA", REPO.parent / "shared" / "data"))
CLASSICAL = ("brovey", "ihs", "gs", "gsa", "pca", "sfim", "mtf-glp", "lmvm")
OTB_APP = "otbcli_BundleToPerfectSensor"
OTB_METHODS = ("lmvm", "rcs", "bayes")


# --- measurement ---------------------------------------------------------------------------------

def otb_available() -> bool:
    import shutil

    return shutil.which(OTB_APP) is not None


def otb_pansharpen(pan: "str | os.PathLike[str]", ms: "str | os.PathLike[str]", bands: Sequence[int], method: str,
                   *, threads: int, folder: Path, dtype: str) -> np.ndarray:
    """Orfeo ToolBox ``BundleToPerfectSensor`` (subprocess) -> the fused ``bands`` (1-based) as (4,H,W)."""
    import subprocess

    out = folder / f"otb_{method}.tif"
    otb_type = {"uint8": "uint8", "uint16": "uint16", "int16": "int16", "float32": "float"}.get(dtype, "float")
    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(threads), OTB_LOGGER_LEVEL="WARNING")
    cmd = [OTB_APP, "-inp", str(pan), "-inxs", str(ms), "-method", method, "-out", str(out), otb_type,
           "-ram", "512"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(res.stderr or res.stdout).strip()[-500:]}")
    with rasterio.open(out) as ds:
        return ds.read(list(bands))


def _status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak resident memory (MB) above the resident memory at entry; ``None`` if not measurable."""

    def __enter__(self) -> "PeakRSS":
        _trim()
        self.mb: Optional[float] = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
            self.base = _status_kb("VmRSS")
        except OSError:
            self.base = None
        return self

    def __exit__(self, *exc) -> None:
        peak = _status_kb("VmHWM")
        if self.base is not None and peak is not None:
            self.mb = max(0, peak - self.base) / 1024.0


def measure(fn: Callable[[], np.ndarray], repeat: int, warmup: bool = True) -> Tuple[np.ndarray, float, Optional[float]]:
    """``(result, best seconds, peak MB of the first timed run)``."""
    if warmup:
        fn()
    best, peak, out = float("inf"), None, None
    for i in range(max(1, repeat)):
        out = None
        _trim()
        if i == 0:
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                out = fn()
                dt = time.perf_counter() - t0
            peak = mem.mb
        else:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
        best = min(best, dt)
    return out, best, peak


# --- scenes ----------------------------------------------------------------------------------------

@dataclass
class Scene:
    name: str
    pan_path: Path
    ms_path: Path
    sensor: str = ""
    pan: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    ms: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    nodata: Optional[float] = None
    transform: object = None
    ms_transform: object = None
    crs: object = None

    def load(self) -> "Scene":
        with rasterio.open(self.pan_path) as p, rasterio.open(self.ms_path) as m:
            self.pan, self.ms = p.read(), m.read()
            self.sensor = (m.tags().get("SENSOR") or p.tags().get("SENSOR") or "").lower()
            self.nodata = m.nodata if m.nodata is not None else p.nodata
            self.transform, self.ms_transform, self.crs = p.transform, m.transform, p.crs
        return self


def find_scenes(names: Sequence[str], data_dir: Path) -> Tuple[List[Scene], List[str]]:
    known = {
        "sample": (SAMPLE / "sample_pan.tif", SAMPLE / "sample_ms.tif"),
        "ikonos": (data_dir / "ikonos_scene_pan.tif", data_dir / "ikonos_scene_ms.tif"),
        "wv3crop": (data_dir / "wv3_crop_pan.tif", data_dir / "wv3_crop_ms.tif"),
    }
    known["ikonos4x"] = known["ikonos"]  # built below: the large-scene case
    scenes, notes = [], []
    for n in names:
        if n not in known:
            raise SystemExit(f"unknown scene {n!r}; choose from {', '.join(known)}")
        pan, ms = known[n]
        if n == "ikonos4x" and pan.exists() and ms.exists():
            pan, ms = mirror_tiled(pan, ms, 4)
        if pan.exists() and ms.exists():
            scenes.append(Scene(n, pan, ms).load())
        else:
            notes.append(f"scene {n!r} skipped: {pan.parent} has no {pan.name} / {ms.name}")
    return scenes, notes


def mirror_tiled(pan: Path, ms: Path, k: int) -> Tuple[Path, Path]:
    """A k x k larger pair made of mirrored copies of ``pan``/``ms`` (seamless, same statistics), written
    to a temporary folder removed at exit: a large real-data scene for the speed and memory columns."""
    import atexit
    import shutil

    folder = Path(tempfile.mkdtemp(prefix="vs_peers_"))
    atexit.register(shutil.rmtree, folder, True)
    out = []
    for src in (pan, ms):
        with rasterio.open(src) as ds:
            a, profile, tags = ds.read(), ds.profile, ds.tags()
        row = np.concatenate([a if j % 2 == 0 else a[..., ::-1] for j in range(k)], axis=2)
        rows = [row if i % 2 == 0 else row[..., ::-1, :] for i in range(k)]
        big = np.ascontiguousarray(np.concatenate(rows, axis=1))
        profile.update(height=big.shape[1], width=big.shape[2], tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate")
        path = folder / f"{src.stem}_x{k}.tif"
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(big)
            ds.update_tags(**tags)  # SENSOR: same sensor table entry as the original pair
        out.append(path)
    return out[0], out[1]


def write_like(path: Path, arr: np.ndarray, scene: Scene, transform) -> Path:
    with rasterio.open(path, "w", driver="GTiff", count=arr.shape[0], height=arr.shape[1], width=arr.shape[2],
                       dtype=arr.dtype.name, crs=scene.crs, transform=transform, nodata=scene.nodata) as ds:
        ds.write(arr)
        if scene.sensor:
            ds.update_tags(SENSOR=scene.sensor.upper())
    return path


def reduced_pair(scene: Scene, folder: Path) -> Tuple[Path, Path]:
    """Wald protocol: PAN and MS degraded by 4 (MTF filter with the sensor's gains + decimation)."""
    from pantiny.mtf import mtf_degrade
    from pantiny.sensors import get_sensor

    s = get_sensor(scene.sensor or "generic")
    r = s.ratio

    def degrade(a: np.ndarray, gains) -> np.ndarray:
        y = mtf_degrade(torch.from_numpy(a.astype(np.float32))[None], gains, r)[0].numpy()
        if a.dtype.kind in "ui":
            y = np.clip(np.rint(y), 0, np.iinfo(a.dtype).max)
        return y.astype(a.dtype)

    t, tm = scene.transform, scene.ms_transform
    return (write_like(folder / f"{scene.name}_rr_pan.tif", degrade(scene.pan, s.mtf_pan), scene, t * t.scale(r, r)),
            write_like(folder / f"{scene.name}_rr_ms.tif", degrade(scene.ms, s.mtf_ms), scene, tm * tm.scale(r, r)))


# --- the benchmark -------------------------------------------------------------------------------

def resolve_model(weights: Optional[str]) -> Tuple[Optional[object], str]:
    """The model to benchmark and a note: ``--weights`` file, else the manifest's default, else none."""
    from pantiny.weights import load_model

    try:
        if weights:
            return load_model(weights), f"model weights: {weights}"
        return load_model(), "model weights: the manifest's default (pantiny-big)"
    except Exception as e:  # noqa: BLE001 - any reason to have no model is reported, not fatal
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if weights:
            raise SystemExit(f"cannot load --weights {weights}: {why}")
        return None, (f"model skipped: no weights for the default model ({why}); "
                      "pass --weights PATH to include it")


def run(args: argparse.Namespace) -> str:
    from pantiny import pansharpen
    from pantiny.metrics import ergas, psnr, qnr, sam
    from pantiny.sensors import get_sensor

    torch.set_num_threads(args.threads)
    scenes, notes = find_scenes(args.scenes.split(","), Path(args.data_dir))
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in CLASSICAL]
    if bad:
        raise SystemExit(f"unknown methods {bad}; choose from {', '.join(CLASSICAL)}")
    from pantiny import gdal_engine

    have_gdal = gdal_engine.available()
    if not have_gdal:
        notes.append("GDAL pansharpening (VRTPansharpenedDataset) not available in this GDAL: GDAL rows skipped")
    otb_methods = [m for m in args.otb.split(",") if m]
    have_otb = bool(otb_methods) and otb_available()
    if otb_methods and not have_otb:
        notes.append(f"Orfeo ToolBox ({OTB_APP}) not installed: OTB rows skipped (Debian: apt install otb-bin)")
    bad_otb = [m for m in otb_methods if m not in OTB_METHODS]
    if bad_otb:
        raise SystemExit(f"unknown OTB methods {bad_otb}; choose from {', '.join(OTB_METHODS)}")
    model, model_note = (None, "model skipped (--no-model)") if args.no_model else resolve_model(args.weights)
    notes.append(model_note)

    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for sc in scenes:
            s = get_sensor(sc.sensor or "generic")
            _, model_idx = _bands(sc, s)
            fused_idx = sorted(model_idx)  # pansharpen returns the 4 bands in ascending input order
            gdal_bands = [i + 1 for i in fused_idx]
            gt = sc.ms[fused_idx].astype(np.float64)
            peak_dn = float(s.max_value or np.iinfo(sc.ms.dtype).max)
            rr_pan, rr_ms = reduced_pair(sc, Path(tmp))
            h, w = sc.pan.shape[1:]
            mpix = h * w / 1e6

            runs: List[Tuple[str, Callable[[Path, Path], np.ndarray], int, bool]] = []
            out_tif = Path(tmp) / "out.tif"
            dest = {"out": out_tif} if args.write else {}
            if have_gdal:
                if args.write:
                    runs.append(("GDAL Brovey (cubic)", lambda p, m: gdal_write(
                        p, m, gdal_bands, out_tif, threads=args.threads, nodata=sc.nodata), args.repeat, True))
                else:
                    runs.append(("GDAL Brovey (cubic)", lambda p, m: gdal_engine.brovey(  # nodata as gdal_pansharpen
                        p, m, gdal_bands, threads=args.threads, nodata=sc.nodata), args.repeat, True))
            for meth in methods:
                runs.append((f"pantiny {meth}", lambda p, m, meth=meth: pansharpen(
                    str(p), str(m), method=meth, sensor=sc.sensor or None, device="cpu", **dest), args.repeat, True))
                if meth == "brovey":  # GDAL's resampling: the scene goes to GDAL's engine when it can
                    runs.append(("pantiny brovey --upsampling cubic", lambda p, m: pansharpen(
                        str(p), str(m), method="brovey", upsampling="cubic", sensor=sc.sensor or None,
                        device="cpu", **dest), args.repeat, True))
            if have_otb:
                for om in otb_methods:
                    runs.append((f"OTB {om}", lambda p, m, om=om: otb_pansharpen(
                        p, m, gdal_bands, om, threads=args.threads, folder=Path(tmp), dtype=sc.ms.dtype.name),
                        args.repeat, True))
            if model is not None:
                runs.append((f"pantiny model ({args.attention} attention)", lambda p, m: pansharpen(
                    str(p), str(m), model=model, sensor=sc.sensor or None, device="cpu",
                    attention=args.attention, **dest), args.model_repeat, False))

            if have_gdal:  # same formula check: with nearest MS resampling both see the same MS
                g = gdal_engine.brovey(sc.pan_path, sc.ms_path, gdal_bands, resampling="Nearest", threads=args.threads)
                o = pansharpen(str(sc.pan_path), str(sc.ms_path), method="brovey", upsampling="nearest",
                               sensor=sc.sensor or None, device="cpu")
                d = np.abs(g.astype(np.int64) - o.astype(np.int64))
                notes.append(f"{sc.name}: pantiny brovey vs GDAL WeightedBrovey, both with nearest MS resampling: "
                             f"max |diff| = {d.max()} DN, {100 * (d == 0).mean():.2f} % of values identical")

            gdal_speed = otb_speed = None
            for label, fn, repeat, warm in runs:
                t_start = time.perf_counter()
                out, secs, peak = measure(lambda: fn(sc.pan_path, sc.ms_path), repeat, warm)
                speed = mpix / secs
                if label.startswith("GDAL"):
                    gdal_speed = speed
                if label == "OTB lmvm":
                    otb_speed = speed
                out = _as_array(out)
                q = qnr(sc.pan, sc.ms, out, sensor=sc.sensor or None)
                rr = _as_array(fn(rr_pan, rr_ms)).astype(np.float64)
                rows.append({
                    "scene": f"{sc.name} ({s.name.upper()}, {w}x{h})", "method": label,
                    "mpix_s": speed, "ratio": None if gdal_speed is None else speed / gdal_speed,
                    "ratio_otb": None if otb_speed is None else speed / otb_speed,
                    "peak_mb": peak, "d_lambda": q.d_lambda, "d_s": q.d_s, "qnr": q.qnr,
                    "psnr": psnr(rr, gt, data_range=peak_dn), "sam": sam(rr, gt, degrees=True),
                    "ergas": ergas(rr, gt, ratio=s.ratio),
                })
                if args.verbose:
                    print(f"  {sc.name}: {label} done in {time.perf_counter() - t_start:.1f} s", file=sys.stderr)
    return render(rows, notes, args)


def gdal_write(pan: Path, ms: Path, bands: Sequence[int], out: Path, *, threads: int,
               nodata: Optional[float]) -> Path:
    """GDAL's weighted Brovey written to ``out`` with the creation options of pantiny's writer (taken
    from :class:`pantiny.io.AtomicGeoTIFFWriter` for the same raster, so the two stay alike)."""
    import rasterio.shutil
    from pantiny import gdal_engine
    from pantiny.io import AtomicGeoTIFFWriter

    with rasterio.open(gdal_engine.brovey_vrt_xml(pan, ms, bands, threads=threads, nodata=nodata)) as src:
        like = AtomicGeoTIFFWriter(out, count=src.count, height=src.height, width=src.width, dtype=src.dtypes[0],
                                   crs=src.crs, transform=src.transform, threads=threads)  # options only
        rasterio.shutil.copy(src, out, driver="GTiff", **like.options)
    return out


def _as_array(x: object) -> np.ndarray:
    """A result array, read back from the file when the run wrote one (``--write``)."""
    if isinstance(x, Path):
        with rasterio.open(x) as ds:
            return ds.read()
    return x  # type: ignore[return-value]


def _bands(scene: Scene, s) -> Tuple[object, Tuple[int, ...]]:
    from pantiny.sensors import resolve_bands

    return resolve_bands(scene.ms.shape[0], scene.sensor or None)


def _fmt(v: object, spec: str) -> str:
    if v is None:
        return "n/a"
    return format(v, spec)  # type: ignore[arg-type]


def render(rows: List[Dict[str, object]], notes: List[str], args: argparse.Namespace) -> str:
    head = ["| scene | method | MPix/s | x GDAL | x OTB LMVM | peak MB | D_lambda | D_s | QNR | RR PSNR (dB) | "
            "RR SAM (deg) | RR ERGAS |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    body = [f"| {r['scene']} | {r['method']} | {_fmt(r['mpix_s'], '.2f')} | {_fmt(r['ratio'], '.2f')} | "
            f"{_fmt(r.get('ratio_otb'), '.2f')} | "
            f"{_fmt(r['peak_mb'], '.1f')} | {_fmt(r['d_lambda'], '.4f')} | {_fmt(r['d_s'], '.4f')} | "
            f"{_fmt(r['qnr'], '.4f')} | {_fmt(r['psnr'], '.2f')} | {_fmt(r['sam'], '.3f')} | {_fmt(r['ergas'], '.3f')} |"
            for r in rows]
    info = (f"pantiny vs GDAL and Orfeo ToolBox pansharpening - {platform.machine()}, {os.cpu_count()} CPUs, "
            f"{args.threads} threads (torch and GDAL NumThreads), torch {torch.__version__}, "
            f"GDAL {rasterio.__gdal_version__} (rasterio {rasterio.__version__}); "
            f"{'file to file (--write)' if args.write else 'files to an array'}; best of {args.repeat} "
            f"timed runs after a warm-up; peak MB = VmHWM above the pre-call RSS; QNR = pantiny.metrics.qnr "
            f"(toolbox variant); RR = Wald protocol (MTF degradation by 4), PSNR peak = sensor max DN.")
    lines = [info, "", *head, *body]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default="sample,ikonos,wv3crop",
                    help="comma-separated: sample, ikonos, wv3crop, ikonos4x (the IKONOS pair mirrored 4 x 4: "
                         "5120 x 5120 PAN; missing ones are skipped)")
    ap.add_argument("--methods", default=",".join(CLASSICAL), help="classical pantiny methods to run")
    ap.add_argument("--otb", default="lmvm", help="Orfeo ToolBox methods to run (lmvm, rcs, bayes; '' for none)")
    ap.add_argument("--weights", help="model .safetensors (default: the manifest's model, skipped if absent)")
    ap.add_argument("--no-model", action="store_true", help="classical methods and peers only")
    ap.add_argument("--attention", default="scene", choices=("scene", "sampled", "tile"), help="model attention mode")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per method (best is kept)")
    ap.add_argument("--model-repeat", type=int, default=1, help="timed runs of the model (no warm-up run)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads and GDAL NumThreads")
    ap.add_argument("--data-dir", default=str(SHARED_DATA), help="folder with the real scenes")
    ap.add_argument("--write", action="store_true",
                    help="file to file: every tool writes a compressed GeoTIFF (see the module docstring)")
    ap.add_argument("--out", help="also write the markdown table to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        text = run(args)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
