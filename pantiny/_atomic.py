"""The one atomic-write helper: write to a temporary file beside the target, then rename.

Used for fused GeoTIFFs, weights, manifests and training checkpoints; :func:`scratch_path` gives
intermediate files (the GeoTIFF a COG is made from) the same home and cleanup. The temporary file gets the
permissions a plain ``open()`` would give (``0o666 & ~umask``; ``mkstemp`` alone makes it 0600, and
the rename would keep that). Optionally an exclusive lock on ``.<name>.lock`` guards the target
against a second concurrent writer, which then fails at once instead of silently racing.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

from .errors import OutputLockedError

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock for ``path`` (a ``.<name>.lock`` file beside it)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, rename stays atomic
        yield
        return
    lock_path = path.with_name(f".{path.name}.lock")
    while True:
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputLockedError(f"{path} is being written by another process (lock {lock_path}); "
                                    "wait for it or choose another output") from None
        # The holder before us may have removed the lock file after we opened it: retry on the new one.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock_path)
        except FileNotFoundError:  # pragma: no cover
            pass
        os.close(fd)


@contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = True, lock: bool = False,
                suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it becomes ``path``, on error it is removed.

    ``overwrite=False`` refuses an existing target, also one that appears while writing. ``lock``
    holds an exclusive lock during the write, so a concurrent writer of the same target fails with
    :class:`~pantiny.errors.OutputLockedError`.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {target.parent}")
    with (_lock(target) if lock else _nullcontext()):
        if not overwrite and target.exists():
            raise FileExistsError(f"output exists: {target} (use overwrite)")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
        os.close(fd)
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())
            if overwrite:
                os.replace(tmp, target)
            else:  # link fails if the target appeared meanwhile; never replace it
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise FileExistsError(f"output exists: {target} (it appeared while writing)") from None
                os.unlink(tmp)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


@contextmanager
def scratch_path(path: PathLike, *, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path`` for an intermediate file, always removed afterwards.

    Beside the target (not in ``/tmp``) because intermediates of large rasters need the target's disk.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (parent folders are created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
