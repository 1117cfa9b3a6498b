"""The one normalisation path: digital numbers <-> the model's unit range.

The model sees ``DN / scale`` where ``scale`` is the sensor's nominal maximum (2047 for 11-bit,
1023 for 10-bit, 255 for 8-bit). Output goes back by ``* scale``, rounded and clipped to the range of
the output dtype for integer types.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .sensors import Sensor

_DTYPE_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.int8): 127.0,
                np.dtype(np.uint16): 2047.0, np.dtype(np.int16): 2047.0}


def resolve_scale(dtype: np.dtype, sensor: Optional[Sensor] = None, scale: Optional[float] = None) -> float:
    """The divisor that maps this data to the model's unit range.

    Priority: explicit ``scale`` > the sensor's ``max_value`` > the data type (uint8 -> 255,
    (u)int16 -> 2047 i.e. 11-bit, float -> 1.0: reflectance-like data in [0, 1]).
    32-bit integers need an explicit ``scale`` or sensor.
    """
    if scale is not None:
        scale = float(scale)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive number, got {scale}")
        return scale
    if sensor is not None and sensor.max_value is not None:
        return float(sensor.max_value)
    dt = np.dtype(dtype)
    if dt in _DTYPE_SCALE:
        return _DTYPE_SCALE[dt]
    if dt.kind == "f":
        return 1.0
    raise ValueError(f"cannot infer the value scale of {dt} data: pass scale= (e.g. 2047 for 11-bit) or sensor=")


def to_unit(x: np.ndarray, scale: float) -> torch.Tensor:
    """DN array -> float32 tensor in the model's unit range (shape unchanged); never modifies ``x``."""
    # Out of place: for float32 input ascontiguousarray may return ``x`` itself.
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).div(float(scale))


def from_unit(x: torch.Tensor, scale: float, dtype: np.dtype) -> np.ndarray:
    """Unit-range tensor -> array of ``dtype`` (rounded and clipped for integer types)."""
    y = x.detach().to("cpu", torch.float32).mul(float(scale)).numpy()
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        y = np.clip(np.rint(y), info.min, info.max)
    return y.astype(dt, copy=False)
