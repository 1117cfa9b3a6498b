"""Every fixed set of string options, defined once (no heavy imports: the CLI builds its
``argparse`` choices and help from here without loading torch).

Modules validate against these tuples and re-export them under their historical names.
"""

from __future__ import annotations

from typing import Sequence

#: ``pansharpen(method=...)`` values that select the network.
MODEL_METHODS = ("pantiny", "model")
#: Classical methods of :mod:`pantiny.classical` (``METHODS`` keys, checked by a test).
CLASSICAL_METHODS = ("brovey", "gs", "gsa", "ihs", "lmvm", "mtf-glp", "pca", "sfim")
#: Channel-attention statistics of the network under tiling.
ATTENTION = ("scene", "sampled", "tile")
#: Tiles the ``"sampled"`` attention mode gathers its scene statistics from (spread over the scene).
SAMPLED_TILES = 16
#: What happens to MS bands that are not model inputs.
OTHER_BANDS = ("drop", "upsample", "ratio")
#: MS interpolation onto the PAN grid.
#: MS upsampling modes (pantiny.resample.upsample): "bicubic" is torch's (Keys a=-0.75, the model's
#: training convention), "cubic" GDAL's cubic convolution (Keys a=-0.5, weights renormalised at the
#: borders), so ``method="brovey", upsampling="cubic"`` is exactly GDAL's pansharpening.
UPSAMPLING = ("bicubic", "cubic", "bilinear", "nearest")
#: What the network computes in: float32 (exact), or autocast to bfloat16 / float16 (convolutions and
#: matmuls in that type; normalisations, attention statistics and the output's MS sum in float32).
PRECISIONS = ("float32", "bfloat16", "float16")
#: Tile blending of the tiling engine.
BLENDS = ("crop", "ramp")
#: Full-resolution quality index definitions and their MS upsamplers.
QNR_VARIANTS = ("toolbox", "orig_paper", "pantiny")
QNR_UPSAMPLERS = ("interp23tap", "bicubic")
#: MTF-GLP injection gains.
MTF_GLP_GAINS = ("hpm", "regression", "unit")
#: Training: data source kinds, corpus scene kinds, PAN degradation, sensor balancing.
DATA_KINDS = ("geotiff", "hdf5", "corpus")
CORPUS_KINDS = ("fr", "rr", "rr_nogt")
PAN_FILTERS = ("mtf", "bicubic", "mixed")
BALANCES = ("none", "sensor")
#: Training stages: ``rr`` reduced resolution with a reference (stage 1), ``fr`` full resolution
#: without one (stage 2, :mod:`pantiny.train.fr_loss`), ``joint`` a batch of each per step, both losses.
TRAIN_STAGES = ("rr", "fr", "joint")


def check(value: object, allowed: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``allowed``, else :class:`~pantiny.errors.ConfigError` naming ``what``."""
    from .errors import ConfigError

    if value not in allowed:
        raise ConfigError(f"{what} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value  # type: ignore[return-value]
