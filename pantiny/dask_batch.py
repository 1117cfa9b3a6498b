"""Batch fusion on a Dask cluster: each scene one task (optional extra ``pantiny[dask]``).

``pantiny fuse IN_DIR OUT_DIR --dask [SCHEDULER_ADDRESS]`` lands here. Without an address a
``LocalCluster`` of one single-threaded worker process per core is started (and stopped at the end).
Each task runs :func:`pantiny.pansharpen` on one pair and writes its output atomically from the
worker (temporary file, then rename), so a failed or killed task leaves nothing half-written. A
scene that fails is reported with its error; the others go on. Named weights are loaded once per
worker process (cached), not shipped with every task.

Workers need pantiny (with the same weights) installed; the input and output folders must be
paths that every worker sees (a shared file system or the same machine).
"""

from __future__ import annotations

import copy
import functools
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, device: str) -> Any:
    """The model ``name`` on ``device``, loaded once per worker process."""
    from .devices import pick_device
    from .weights import load_model

    return load_model(name, device=pick_device(device))


def fuse_one(pan: str, ms: str, out: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """Fuse one pair on a worker; returns ``{"out", "seconds", "error"}`` (``error`` None on success).

    User errors (bad input, georeferencing, I/O) are returned, not raised, so one bad scene does
    not stop the batch; anything else is a bug and raises with its traceback.
    """
    from .api import pansharpen
    from .choices import MODEL_METHODS
    from .errors import PantinyError, one_line

    opts = dict(options)
    t0 = time.perf_counter()
    try:
        if opts.get("method", "pantiny") in MODEL_METHODS and isinstance(opts.get("model", "pantiny-big"), str):
            # a private copy: the scene's attention statistics are set on it during the call
            opts["model"] = copy.deepcopy(_load_cached(opts.get("model", "pantiny-big"), opts.get("device", "auto")))
        pansharpen(pan, ms, out=out, progress=False, **opts)
        return {"out": out, "seconds": time.perf_counter() - t0, "error": None}
    except (PantinyError, OSError) as e:
        return {"out": out, "seconds": time.perf_counter() - t0, "error": one_line(e)}


def fuse_on_dask(pairs: Sequence[Tuple[Path, Path, str]], out_dir: Path, options: Dict[str, Any], *,
                 address: Optional[str] = None, workers: Optional[int] = None,
                 on_done: Optional[Callable[[str, Dict[str, Any]], None]] = None) -> Dict[str, Dict[str, Any]]:
    """Fuse ``(pan, ms, stem)`` pairs into ``out_dir/<stem>_fused.tif`` on a Dask cluster.

    Args:
        address: a ``dask.distributed`` scheduler address (``tcp://host:8786``); None starts a
            ``LocalCluster`` with ``workers`` single-threaded worker processes (default: one per core).
        on_done: called with ``(stem, result)`` as each scene finishes (progress, reports).

    Returns:
        ``{stem: {"out", "seconds", "error"}}`` for every pair.
    """
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if address:
        client = Client(address)
    else:
        n = workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
        client = Client(cluster)
    results: Dict[str, Dict[str, Any]] = {}
    try:
        futures = {}
        for pan, ms, stem in pairs:
            fut = client.submit(fuse_one, str(pan), str(ms), str(Path(out_dir) / f"{stem}_fused.tif"), options,
                                pure=False, key=f"pantiny-fuse-{stem}-{os.getpid()}-{time.time_ns()}")
            futures[fut] = stem
        for fut in as_completed(list(futures)):
            stem = futures[fut]
            try:
                res = fut.result()
            except Exception as e:  # a worker died or a bug: reported for this scene, the rest go on
                res = {"out": str(Path(out_dir) / f"{stem}_fused.tif"), "seconds": None,
                       "error": f"{type(e).__name__}: {e}".splitlines()[0]}
            results[stem] = res
            if on_done is not None:
                on_done(stem, res)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results
