"""Model registry: architecture name -> constructor, and the contract every architecture declares.

A fusion model is an ``nn.Module`` with ``forward(ms_up (B,4,H,W), pan (B,1,H,W)) -> (B,4,H,W)`` in the
unit range (bands R, G, B, NIR) and an int class attribute ``receptive_radius``: the pixels of context
on each side that an output pixel depends on (attention statistics aside). The tiling engine needs
tile overlap >= 2 x ``receptive_radius`` for tiled == whole-image inference.
"""

from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from ..errors import ConfigError
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
        raise ConfigError(f"unknown model architecture {name!r}; known: {', '.join(MODELS)}")
    model = MODELS[key]()
    radius = getattr(model, "receptive_radius", None)
    if not isinstance(radius, int) or radius < 0:  # pragma: no cover - a new architecture missing it
        raise AssertionError(f"architecture {key!r} does not declare an int receptive_radius")
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MODELS", "PanTinyBig", "PanTinySmall", "build_model", "count_parameters"]
