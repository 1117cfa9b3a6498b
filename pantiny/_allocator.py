"""The C heap's settings for CPU inference (glibc only; a no-op elsewhere).

The layer-wise engine allocates and frees activation tensors of 1-10 MB per chunk, thousands of
times per tile. glibc's defaults hand blocks of that size to fresh ``mmap`` calls or trim them off
the heap as soon as they are freed, so every chunk pays a page fault (and the kernel's zeroing) per
4 KiB touched: measured on 2 Zen 3 cores, the network ran at 0.13 MPix/s with the defaults and 0.21
with the heap kept (same results, same peak RSS; ``benchmarks/infer_speed.py --malloc default``).

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
