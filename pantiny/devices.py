"""The one device-selection helper, used by fusion, the CLI and training."""

from __future__ import annotations

from typing import Union

import torch

from .choices import PRECISIONS, check
from .errors import InputError


def pick_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.

    Raises :class:`~pantiny.errors.InputError` for an unknown name or CUDA without a CUDA device.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {str(device)!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the network computes in on ``device``: ``"float32"`` (exact), ``"bfloat16"`` or
    ``"float16"`` (autocast; see :data:`pantiny.choices.PRECISIONS`).

    Raises :class:`~pantiny.errors.InputError` for float16 on CPU: CPUs without float16 arithmetic run
    it through slow fallback kernels (measured 20x slower than float32 on a Zen CPU); bfloat16 is the
    CPU's half precision.
    """
    check(precision, PRECISIONS, "precision")
    dtype = getattr(torch, precision)
    if dtype is torch.float16 and device.type == "cpu":
        raise InputError("precision='float16' is for CUDA devices (on CPU it runs about 20x slower than "
                         "float32); use precision='bfloat16' on CPU, or 'float32'")
    return dtype
