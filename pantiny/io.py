"""GeoTIFF I/O with rasterio: georeferencing checks, windowed reads, atomic tiled writes.

Nothing here knows about models or normalisation; it moves digital numbers between files and
(C,H,W) numpy arrays. Windows are ``(row, col, height, width)`` in the file's own pixel grid.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ._atomic import atomic_path, scratch_path
from .errors import GeoreferenceError, InputError
from .windows import Window  # noqa: E402  (re-exported: ``(row, col, height, width)``)


@dataclass(frozen=True)
class RasterInfo:
    """What a GeoTIFF says about itself (no pixels read)."""

    path: str
    count: int
    height: int
    width: int
    dtype: np.dtype
    nodata: Optional[float]
    crs: Any
    transform: Any
    tags: Dict[str, str]
    #: Band descriptions in band order (None where a band has none).
    descriptions: Tuple[Optional[str], ...] = ()

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (self.count, self.height, self.width)


def _rasterio():
    import rasterio  # imported at the edge only: the array API does not need GDAL

    return rasterio


def raster_info(path: "str | os.PathLike[str]") -> RasterInfo:
    """Open ``path`` and describe it; clear errors for a missing or unreadable file."""
    rio = _rasterio()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such raster file: {p}")
    try:
        with rio.open(p) as ds:
            dtypes = set(ds.dtypes)
            if len(dtypes) != 1:
                raise InputError(f"{p}: bands have mixed data types {sorted(dtypes)}")
            return RasterInfo(str(p), ds.count, ds.height, ds.width, np.dtype(ds.dtypes[0]), ds.nodata,
                              ds.crs, ds.transform, dict(ds.tags()), tuple(ds.descriptions))
    except rio.errors.RasterioIOError as e:
        raise InputError(f"cannot read {p} as a raster: {_gdal_cause(e)}") from None


def read(path: "str | os.PathLike[str]", window: Optional[Window] = None,
         bands: Optional[Sequence[int]] = None, out_shape: Optional[Tuple[int, int]] = None,
         resampling: str = "nearest") -> np.ndarray:
    """Read (C,h,w) digital numbers. ``bands`` are 0-based; ``out_shape`` resamples on read (overviews)."""
    rio = _rasterio()
    from rasterio.enums import Resampling
    from rasterio.windows import Window as RioWindow

    try:
        with rio.open(path) as ds:
            idx = [b + 1 for b in bands] if bands is not None else list(range(1, ds.count + 1))
            win = RioWindow(window[1], window[0], window[3], window[2]) if window is not None else None
            kw: Dict[str, Any] = {}
            if out_shape is not None:
                kw = {"out_shape": (len(idx), *out_shape), "resampling": Resampling[resampling]}
            return ds.read(idx, window=win, **kw)
    except rio.errors.RasterioIOError as e:
        where = f"window (row, col, h, w) = {tuple(window)}" if window is not None else "the whole raster"
        cause = _gdal_cause(e)
        raise InputError(f"cannot read {where} of {path}: the file is truncated or corrupt ({cause})") from None


def write_png(path: "str | os.PathLike[str]", rgb: np.ndarray) -> Path:
    """Write (3,H,W) (or (1,H,W)) uint8 ``rgb`` as a PNG with GDAL's PNG driver, atomically."""
    rio = _rasterio()
    import warnings

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[0] not in (1, 3):
        raise InputError(f"a PNG needs (3,H,W) or (1,H,W) uint8 data, got {rgb.dtype} {rgb.shape}")
    with atomic_path(path, suffix=".tmp.png") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", rio.errors.NotGeoreferencedWarning)  # a picture, no map
        # PNG is a CreateCopy-only driver: rasterio writes to memory and copies on close.
        with rio.open(tmp, "w", driver="PNG", count=rgb.shape[0], height=rgb.shape[1], width=rgb.shape[2],
                      dtype="uint8") as ds:
            ds.write(rgb)
    return Path(path)


def _gdal_cause(e: BaseException) -> str:
    """The most specific message of a rasterio/GDAL error chain ("Read failed. See previous
    exception" alone names nothing)."""
    msgs = []
    while e is not None:
        msgs.append(str(e).strip())
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    useful = [m for m in msgs if m and "see previous exception" not in m.lower()]
    return (useful or msgs or ["unknown GDAL error"])[-1].splitlines()[0]


def check_pair(pan: RasterInfo, ms: RasterInfo, ratio: int) -> None:
    """Raise ``ValueError`` unless PAN and MS are on nested grids of the same CRS and extent.

    Accepted: same CRS (or both without one), same top-left corner within half a PAN pixel, MS pixel
    size = ratio x PAN pixel size, and ``ms size == ceil(pan size / ratio)`` on both axes.
    """
    if pan.count != 1:
        raise GeoreferenceError(f"PAN file {pan.path} has {pan.count} bands, expected 1")
    if (pan.crs is None) != (ms.crs is None) or (pan.crs is not None and pan.crs != ms.crs):
        raise GeoreferenceError(f"CRS mismatch: PAN is {pan.crs or 'unset'}, MS is {ms.crs or 'unset'}; "
                         "reproject one onto the other first (e.g. gdalwarp)")
    tp, tm = pan.transform, ms.transform
    if abs(tp.b) > 1e-12 or abs(tp.d) > 1e-12 or abs(tm.b) > 1e-12 or abs(tm.d) > 1e-12:
        raise GeoreferenceError("rotated geotransforms are not supported; warp to a north-up grid first")
    for axis, ap, am in (("x", tp.a, tm.a), ("y", tp.e, tm.e)):
        if not math.isclose(am, ap * ratio, rel_tol=1e-6):
            raise GeoreferenceError(f"MS pixel size along {axis} ({am:g}) is not {ratio} x the PAN pixel size "
                             f"({ap:g}); pass the right ratio or resample the inputs")
    if abs(tp.c - tm.c) > abs(tp.a) / 2 or abs(tp.f - tm.f) > abs(tp.e) / 2:
        raise GeoreferenceError(f"PAN and MS do not cover the same extent: top-left corners ({tp.c:g}, {tp.f:g}) "
                         f"and ({tm.c:g}, {tm.f:g}) differ by more than half a PAN pixel")
    check_sizes((pan.height, pan.width), (ms.height, ms.width), ratio)


def check_sizes(pan_hw: Tuple[int, int], ms_hw: Tuple[int, int], ratio: int) -> None:
    """``ValueError`` unless ``ms == ceil(pan / ratio)`` on both axes (PAN may be cropped < ratio px)."""
    want = (math.ceil(pan_hw[0] / ratio), math.ceil(pan_hw[1] / ratio))
    if tuple(ms_hw) != want:
        raise GeoreferenceError(f"size mismatch: PAN is {pan_hw[0]}x{pan_hw[1]} and MS is {ms_hw[0]}x{ms_hw[1]}, "
                         f"but with ratio {ratio} the MS should be {want[0]}x{want[1]}")


#: COG layout of ``cog=True`` outputs (GDAL's COG driver): 512 px tiles, overviews down to one tile,
#: averaged (nodata-aware in GDAL) so that zoomed-out views keep the radiometry.
COG_DEFAULTS: Dict[str, str] = {"BLOCKSIZE": "512", "OVERVIEWS": "AUTO", "OVERVIEW_RESAMPLING": "AVERAGE",
                                "BIGTIFF": "IF_SAFER"}


def normalize_creation_options(options: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    """GDAL creation options as ``{"KEY": "value"}`` (keys upper-cased; booleans -> YES/NO).

    Examples:
        >>> from pantiny.io import normalize_creation_options
        >>> normalize_creation_options({"compress": "lzw", "tiled": True, "zlevel": 9})
        {'COMPRESS': 'lzw', 'TILED': 'YES', 'ZLEVEL': '9'}
    """
    out: Dict[str, str] = {}
    for k, v in (options or {}).items():
        key = str(k).strip().upper()
        if not re.fullmatch(r"[A-Z0-9_]+", key):
            raise InputError(f"bad creation option name {k!r}: expected KEY=VALUE with KEY like COMPRESS")
        out[key] = ("YES" if v else "NO") if isinstance(v, bool) else str(v).strip()
    return out


def check_creation_options(options: Optional[Mapping[str, Any]], *, cog: bool = False, count: int = 1,
                           dtype: "np.dtype | str" = "uint16") -> Dict[str, str]:
    """The normalised ``options`` if GDAL's ``COG`` (``cog``) or ``GTiff`` driver accepts them all, else
    :class:`~pantiny.errors.InputError` with GDAL's complaint.

    GDAL only *warns* about unknown option names or values (and the write goes on without them), and a
    malformed value can even abort the process (``BLOCKSIZE=abc``), so the options are tried on a tiny
    in-memory raster of the same band count and dtype in a child process (about 0.3 s).
    """
    opts = normalize_creation_options(options)
    if not opts:
        return opts
    driver = "COG" if cog else "GTiff"
    problems = _gdal_complaints(driver, tuple(opts.items()), int(count), np.dtype(dtype).name)
    if problems:
        what = " ".join(f"{k}={v}" for k, v in opts.items())
        raise InputError(f"GDAL's {driver} driver rejects creation options {what}: " + "; ".join(problems))
    return opts


@functools.lru_cache(maxsize=64)
def _gdal_complaints(driver: str, options: Tuple[Tuple[str, str], ...], count: int, dtype: str) -> Tuple[str, ...]:
    """What GDAL says when ``driver`` creates a tiny raster with ``options`` (nothing: accepted), from a
    child process. Cached: a batch writing every scene with the same options asks once."""
    job = json.dumps({"driver": driver, "options": dict(options), "count": count, "dtype": dtype})
    env = dict(os.environ)  # the child imports this very package, installed or not
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    try:
        run = subprocess.run([sys.executable, "-c", "from pantiny.io import _probe_child; _probe_child()"],
                             input=job, capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        raise InputError("GDAL did not finish checking the creation options") from None
    # One JSON string per line, flushed as it comes: what GDAL said before a crash still arrives.
    problems = tuple(dict.fromkeys(json.loads(line) for line in run.stdout.splitlines() if line.strip()))
    if run.returncode != 0 and not problems:
        problems = (f"GDAL aborted ({(run.stderr.strip().splitlines() or ['no message'])[-1].strip()})",)
    return problems


def _probe_child() -> None:
    """Child of :func:`check_creation_options`: JSON job on stdin, GDAL's warnings on stdout (JSON lines)."""
    import logging
    import warnings

    import rasterio.shutil
    from rasterio.io import MemoryFile

    job = json.loads(sys.stdin.read())

    def report(msg: str) -> None:
        print(json.dumps(msg), flush=True)

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            report(record.getMessage().split(" in ", 1)[-1])  # rasterio: "CPLE_NotSupported in <message>"
            # GDAL validates the options before it writes; going on with a bad one can take minutes
            # of huge allocations before it aborts (BLOCKSIZE=abc), so stop at its first complaint.
            os._exit(0)

    log = logging.getLogger("rasterio._env")
    log.addHandler(Collect(logging.WARNING))
    log.setLevel(logging.WARNING)
    log.propagate = False
    warnings.simplefilter("ignore")  # NotGeoreferencedWarning of the probe raster
    shape = dict(count=job["count"], height=64, width=64, dtype=job["dtype"])
    try:
        if job["driver"] == "COG":
            with MemoryFile() as mem, mem.open(driver="GTiff", **shape) as src:
                src.write(np.zeros((shape["count"], 64, 64), shape["dtype"]))
                rasterio.shutil.copy(src, "/vsimem/pantiny_probe_cog.tif", driver="COG", **job["options"])
            rasterio.shutil.delete("/vsimem/pantiny_probe_cog.tif")
        else:
            with MemoryFile() as mem, mem.open(driver="GTiff", **shape, **job["options"]) as dst:
                dst.write(np.zeros((shape["count"], 64, 64), shape["dtype"]))
    except Exception as e:  # any GDAL error is the options' fault: the probe itself is known to work
        report(_gdal_cause(e))


#: GDAL block cache (MB) while pantiny writes a GeoTIFF, unless the caller set ``GDAL_CACHEMAX``:
#: dirty blocks go to disk as it fills (measured, ``vs_peers.py --write``: same speed, lower peak RSS).
WRITE_CACHE_MB = 64


def _cachemax_unset(rio: Any) -> bool:
    """Whether neither the environment nor an active ``rasterio.Env`` sets ``GDAL_CACHEMAX``."""
    if "GDAL_CACHEMAX" in os.environ:
        return False
    return not (rio.env.hasenv() and "GDAL_CACHEMAX" in rio.env.getenv())


class AtomicGeoTIFFWriter:
    """Write a tiled, compressed GeoTIFF window by window to a temporary file, renamed on success.

    Use as a context manager; on an exception the temporary file is removed and ``path`` untouched.
    Refuses to write over any path in ``protect`` (the inputs). While writing, an exclusive lock on
    ``.<name>.lock`` makes a second process writing the same output fail at once
    (:class:`~pantiny.errors.OutputLockedError`) instead of both "succeeding" with the last rename winning.
    The file gets the usual permissions (``0o666 & ~umask``).

    ``cog=True`` writes a Cloud Optimized GeoTIFF: the tiled GeoTIFF goes to an intermediate file
    beside ``path`` and is converted by GDAL's COG driver at close (:data:`COG_DEFAULTS`, overviews
    included), into the temporary file that is then renamed. ``creation_options`` (GDAL's, of the
    ``COG`` or ``GTiff`` driver) override the defaults and are checked first
    (:func:`check_creation_options`). ``descriptions`` name the bands (GDAL band descriptions).
    ``threads`` > 1: GDAL compresses blocks with that many threads (``NUM_THREADS``; same file content).
    """

    def __init__(self, path: "str | os.PathLike[str]", *, count: int, height: int, width: int,
                 dtype: np.dtype, crs: Any, transform: Any, nodata: Optional[float] = None,
                 protect: Sequence["str | os.PathLike[str]"] = (), tags: Optional[Dict[str, str]] = None,
                 compress: str = "deflate", overwrite: bool = True, cog: bool = False,
                 creation_options: Optional[Mapping[str, Any]] = None,
                 descriptions: Optional[Sequence[Optional[str]]] = None, threads: int = 1) -> None:
        self.path = Path(path)
        for p in protect:
            if Path(p).exists() and self.path.exists() and os.path.samefile(p, self.path):
                raise InputError(f"refusing to write the output over an input file: {self.path}")
        if descriptions is not None and len(descriptions) != count:
            raise InputError(f"{len(descriptions)} band descriptions for {count} bands")
        self.overwrite = overwrite  # the folder and an existing output are checked by atomic_path
        self.profile: Dict[str, Any] = dict(driver="GTiff", count=count, height=height, width=width,
                                            dtype=np.dtype(dtype).name, crs=crs, transform=transform,
                                            nodata=nodata)
        # Creation options, upper-case like GDAL's, so that user options replace defaults key by key.
        self.options: Dict[str, str] = {"COMPRESS": compress.upper(), "BIGTIFF": "IF_SAFER"}
        if min(height, width) >= 16:
            block = 256 if min(height, width) >= 256 else 16 * (min(height, width) // 16)
            self.options.update(TILED="YES", BLOCKXSIZE=str(block), BLOCKYSIZE=str(block))
        if np.dtype(dtype).kind in "ui" and compress == "deflate":
            self.options["PREDICTOR"] = "2"
        if threads > 1 and compress.upper() != "NONE":
            # GDAL compresses the blocks in worker threads: deflate on one core took longer than a
            # classical fusion of the same scene (IKONOS 1280², 4 x uint16: 0.47 s)
            self.options["NUM_THREADS"] = str(int(threads))
        user = check_creation_options(creation_options, cog=cog, count=count, dtype=dtype)
        self.cog_options: Optional[Dict[str, str]] = None
        if cog:  # the intermediate keeps the defaults; the user's options shape the COG
            self.cog_options = {**COG_DEFAULTS, **{k: v for k, v in self.options.items()
                                                   if k in ("COMPRESS", "PREDICTOR", "NUM_THREADS")}, **user}
        else:
            self.options.update(user)
        self.tags = tags or {}
        self.descriptions = list(descriptions) if descriptions is not None else None
        self._ds = None
        self._tmp: Optional[str] = None
        self._gtiff: Optional[str] = None

    def __enter__(self) -> "AtomicGeoTIFFWriter":
        rio = _rasterio()
        self._stack = ExitStack()
        try:
            if _cachemax_unset(rio):
                # Written blocks wait in GDAL's block cache (default 5 % of RAM) until it fills or the
                # file closes: a 26 MPix 4-band output kept ~120 MB more resident than GDAL's own copy.
                self._stack.enter_context(rio.Env(GDAL_CACHEMAX=WRITE_CACHE_MB))
            self._tmp = self._stack.enter_context(
                atomic_path(self.path, overwrite=self.overwrite, lock=True, suffix=".tmp.tif"))
            # With cog the pixels go to an intermediate first (removed before the rename, see __exit__).
            self._gtiff = self._tmp if self.cog_options is None else self._stack.enter_context(
                scratch_path(self.path, suffix=".gtiff.tmp.tif"))
            self._ds = rio.open(self._gtiff, "w", **self.profile, **self.options)
            if self.tags:
                self._ds.update_tags(**self.tags)
            for i, d in enumerate(self.descriptions or (), start=1):
                if d:
                    self._ds.set_band_description(i, d)
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, row: int, data: np.ndarray) -> None:
        """Write full-width rows ``data`` (C,n,W) starting at ``row``."""
        from rasterio.windows import Window as RioWindow

        self._ds.write(data, window=RioWindow(0, row, data.shape[2], data.shape[1]))

    def _write_cog(self) -> None:
        """Convert the finished intermediate into the COG at the temporary path."""
        rio = _rasterio()
        import rasterio.shutil
        from rasterio._err import CPLE_BaseError

        try:
            rasterio.shutil.copy(self._gtiff, self._tmp, driver="COG", **self.cog_options)
        except (rio.errors.RasterioError, CPLE_BaseError) as e:
            raise OSError(f"cannot write the COG {self.path}: {_gdal_cause(e)}") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._ds.close()
            if exc_type is None and self.cog_options is not None:
                self._write_cog()
        except BaseException:  # a failed close or conversion: nothing is renamed, temp files go
            self._stack.__exit__(*sys.exc_info())
            raise
        self._stack.__exit__(exc_type, exc, tb)
