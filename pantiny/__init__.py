"""pantiny: pan-sharpening with one tiny all-in-one model, tiled GeoTIFF fusion and QNR scoring.

Public API (imported lazily so ``import pantiny`` stays cheap):

* :func:`pantiny.pansharpen` - fuse PAN + MS (arrays, tensors or GeoTIFF paths).
* :func:`pantiny.adapt` - fine-tune the model on a scene at full resolution (no reference needed).
* :func:`pantiny.qnr` - full-resolution no-reference quality (D_lambda, D_s, QNR, HQNR).
* :func:`pantiny.quicklook` - a natural-colour PNG preview of a fused GeoTIFF (numpy + rasterio only).
* :func:`pantiny.load_model` - a model with its verified weights.
* :func:`pantiny.list_models` - architectures, or (``pretrained=True``) every shipped weights entry.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "pansharpen": ("pantiny.api", "pansharpen"),
    "adapt": ("pantiny.api", "adapt"),
    "load_model": ("pantiny.weights", "load_model"),
    "list_models": ("pantiny.weights", "list_models"),
    "qnr": ("pantiny.metrics", "qnr"),
    "quicklook": ("pantiny.preview", "quicklook"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pantiny' has no attribute {name!r}")
