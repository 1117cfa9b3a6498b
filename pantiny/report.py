"""Per-scene JSON reports of batch fusion (``pantiny fuse IN_DIR OUT_DIR`` writes ``<stem>_fused.json``).

A report says what was fused with what (method, model, sensor), where the files are, the output's
shape, how long each step took, the QNR scores when asked, and why a scene failed. It is written for
failed scenes too, so a batch leaves one report per scene either way.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

from ._atomic import atomic_write_bytes

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class SceneReport:
    """One scene of a batch; :meth:`write` saves it as JSON (field names are the JSON keys).

    Attributes:
        scene: the pair's stem (``<stem>_pan.tif`` / ``<stem>_ms.tif``).
        pan, ms, output: input and output paths; ``quicklook``: the PNG preview, if written.
        method: fusion method; ``model``: the weights' manifest name or path (None for classical methods).
        sensor: the output's ``SENSOR`` tag (what fusion resolved), else the one asked for.
        shape: ``[C, H, W]`` of the output.
        seconds: wall-clock seconds per step: ``fusion``, ``quicklook``, ``scoring``.
        scores: :meth:`pantiny.metrics.QNRResult.as_dict` (``D_lambda``, ``D_s``, ``QNR``, ...) when scored.
        error: one-line reason when the scene failed, and ``failed_step`` where.
    """

    scene: str
    pan: str
    ms: str
    output: str
    method: str
    model: Optional[str] = None
    sensor: Optional[str] = None
    shape: Optional[List[int]] = None
    quicklook: Optional[str] = None
    seconds: Dict[str, float] = field(default_factory=dict)
    scores: Optional[Dict[str, object]] = None
    error: Optional[str] = None
    failed_step: Optional[str] = None

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the step ``name`` into :attr:`seconds`; an exception marks it as :attr:`failed_step`."""
        t0 = time.perf_counter()
        try:
            yield
        except BaseException:
            self.failed_step = name
            raise
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 3)

    def describe_output(self) -> None:
        """Fill :attr:`shape` and :attr:`sensor` from the written output."""
        from .io import raster_info

        info = raster_info(self.output)
        self.shape = list(info.shape)
        self.sensor = info.tags.get("SENSOR", self.sensor)

    def write(self, path: PathLike) -> Path:
        """Save as indented JSON, atomically."""
        atomic_write_bytes(path, (json.dumps(asdict(self), indent=2) + "\n").encode())
        return Path(path)
