"""The C heap's settings for CPU inference (glibc only; a no-op elsewhere).

The layer-wise engine allocates and frees activation tensors of 1-10 MB per chunk, thousands of
times per tile. glibc's defaults hand blocks of that size to fresh ``mmap`` calls or trim them off
the heap as soon as they are freed, so every chunk pays a page fault (and the kernel's zeroing) per
4 KiB touched (a second forward over a 128x768 tile: 115k page faults with the defaults, 168 with
the heap kept). Measured on 2 Zen 3 cores (``benchmarks/infer_speed.py --size 2048`` with and
without ``--malloc default``, consecutive runs): PanTiny-Big 0.171 -> 0.194 MPix/s in the default
mode, 0.182 -> 0.203 per tile, Brovey through the pipeline 10.7 -> 12.7; same results.

:func:`keep_heap` raises the mmap threshold to glibc's maximum (32 MiB) and the trim threshold to
256 MiB, so freed chunks are reused from the heap; :func:`release_heap` hands free memory back to
the system when a fusion ends. Both are process-wide; set ``PANTINY_MALLOC=default`` to leave the
allocator as it is (e.g. when jemalloc or tcmalloc is preloaded).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Optional

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for the mmap threshold on 64-bit systems
_TRIM_THRESHOLD = 256 << 20

_libc: Optional[ctypes.CDLL] = None
_tuned = False


def _glibc() -> Optional[ctypes.CDLL]:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.mallopt  # absent on musl: leave the allocator alone
            lib.malloc_trim
        except (OSError, AttributeError):
            return None
        _libc = lib
    return _libc


def enabled() -> bool:
    """Whether pantiny may tune the heap: not with ``PANTINY_MALLOC=default`` in the environment."""
    return os.environ.get("PANTINY_MALLOC", "").strip().lower() not in ("default", "0", "off", "no")


def keep_heap() -> bool:
    """Keep freed blocks of up to 32 MiB in the heap for reuse (see the module doc); once per process.

    Returns True when the settings are in force (glibc, not disabled), False otherwise.
    """
    global _tuned
    if _tuned:
        return True
    lib = _glibc() if enabled() else None
    if lib is None:
        return False
    # Both together: setting either one alone turns off glibc's adaptive thresholds and was slower.
    ok = bool(lib.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(lib.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    _tuned = ok
    return ok


def release_heap() -> None:
    """Return the heap's free memory to the system (after a fusion; no-op unless :func:`keep_heap` ran)."""
    if _tuned and _libc is not None:
        _libc.malloc_trim(0)
