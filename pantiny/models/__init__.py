"""Model registry: architecture name -> constructor."""

from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from .pantiny_big import PanTinyBig
from .pantiny_small import PanTinySmall

MODELS: Dict[str, Callable[[], nn.Module]] = {
    "pantiny-big": PanTinyBig,
    "pantiny-small": PanTinySmall,
}


def build_model(name: str) -> nn.Module:
    """A freshly initialised model of architecture ``name`` (``pantiny-big`` or ``pantiny-small``)."""
    key = name.strip().lower()
    if key not in MODELS:
        raise ValueError(f"unknown model architecture {name!r}; known: {', '.join(MODELS)}")
    return MODELS[key]()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MODELS", "PanTinyBig", "PanTinySmall", "build_model", "count_parameters"]
