"""The one device-selection helper, used by fusion, the CLI and training."""

from __future__ import annotations

from typing import Union

import torch

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
