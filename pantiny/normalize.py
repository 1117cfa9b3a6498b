"""The one normalisation path: digital numbers <-> the model's unit range.

The model sees ``DN / scale`` where ``scale`` is the sensor's nominal maximum (2047 for 11-bit,
1023 for 10-bit, 255 for 8-bit). Output goes back by ``* scale``, rounded and clipped to the range of
the output dtype for integer types.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch

from .errors import InputError
from .sensors import Sensor

#: Floating point data whose maximum is at most this is taken as reflectance in [0, 1].
FLOAT_UNIT_MAX = 1.5
#: Data this far above the chosen scale triggers a warning (real 11-bit data slightly exceeds 2047).
OVER_RANGE = 1.25

_DTYPE_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.int8): 127.0,
                np.dtype(np.uint16): 2047.0, np.dtype(np.int16): 2047.0}


def choose_scale(dtype: np.dtype, sensor: Optional[Sensor] = None, scale: Optional[float] = None, *,
                 data_max: Optional[float] = None) -> Tuple[float, str]:
    """The divisor that maps this data to the model's unit range, and why it was chosen.

    Priority:

    1. an explicit ``scale``;
    2. 8-bit data types: 255, whatever the sensor (8-bit products are display-stretched; a sensor's
       11-bit maximum would leave them at 1/8 of the range);
    3. floating point data whose (valid) maximum ``data_max`` is <= 1.5: 1.0 (reflectance-like);
    4. the sensor's nominal maximum (2047 for 11-bit, 1023 for 10-bit, 4095 for 12-bit);
    5. the data type: (u)int16 -> 2047 (11-bit), float -> 1.0.

    Floating point data above 1.5 with no sensor maximum, and 32-bit integers without a sensor, need
    an explicit ``scale`` (:class:`~pantiny.errors.InputError`).

    Examples:
        >>> import numpy as np
        >>> from pantiny.normalize import choose_scale
        >>> from pantiny.sensors import get_sensor
        >>> choose_scale(np.uint16, get_sensor("gf2"))
        (1023.0, 'nominal maximum of sensor gf2')
        >>> choose_scale(np.uint8, get_sensor("wv3"))  # 8-bit products are display-stretched
        (255.0, 'uint8 data')
        >>> choose_scale(np.float32, data_max=0.8)[0]  # reflectance
        1.0
        >>> choose_scale(np.uint16, scale=4095)
        (4095.0, 'given')
    """
    dt = np.dtype(dtype)
    if scale is not None:
        scale = float(scale)
        if not np.isfinite(scale) or scale <= 0:
            raise InputError(f"scale must be a positive number, got {scale}")
        return scale, "given"
    if dt in (np.dtype(np.uint8), np.dtype(np.int8)):
        return _DTYPE_SCALE[dt], f"{dt} data"
    if dt.kind == "f" and data_max is not None and data_max <= FLOAT_UNIT_MAX:
        return 1.0, f"floating point data with values <= {data_max:.3g} (reflectance-like)"
    if sensor is not None and sensor.max_value is not None:
        return float(sensor.max_value), f"nominal maximum of sensor {sensor.name}"
    if dt.kind == "f":
        if data_max is not None:
            raise InputError(f"floating point data with values up to {data_max:g} and no sensor: pass scale= "
                             "(e.g. 2047 for 11-bit DN) or sensor=")
        return 1.0, "floating point data"
    if dt in _DTYPE_SCALE:
        return _DTYPE_SCALE[dt], f"{dt} data, assumed 11-bit"
    raise InputError(f"cannot infer the value scale of {dt} data: pass scale= (e.g. 2047 for 11-bit) or sensor=")


def resolve_scale(dtype: np.dtype, sensor: Optional[Sensor] = None, scale: Optional[float] = None, *,
                  data_max: Optional[float] = None) -> float:
    """The divisor of :func:`choose_scale`, without the reason.

    Examples:
        >>> import numpy as np
        >>> from pantiny.normalize import resolve_scale
        >>> resolve_scale(np.uint16)  # 16-bit integers without a sensor: 11-bit assumed
        2047.0
    """
    return choose_scale(dtype, sensor, scale, data_max=data_max)[0]


def scale_warnings(scale: float, reason: str, dtype: np.dtype, data_max: Optional[float]) -> List[str]:
    """Why this scale may give a wrong result: data far above it, or an output type that cannot hold it."""
    out = []
    dt = np.dtype(dtype)
    if data_max is not None and data_max > scale * OVER_RANGE:
        out.append(f"MS values reach {data_max:g}, above the value scale {scale:g} ({reason}): the data may have "
                   "a higher bit depth than assumed; pass scale= or the right sensor=")
    if dt.kind in "ui" and scale > np.iinfo(dt).max:
        out.append(f"the output type {dt} cannot hold values up to the scale {scale:g} ({reason}): bright pixels "
                   "will saturate; pass scale=")
    return out


def to_unit(x: np.ndarray, scale: float) -> torch.Tensor:
    """DN array -> float32 tensor in the model's unit range (shape unchanged); never modifies ``x``.

    Examples:
        >>> import numpy as np
        >>> from pantiny.normalize import to_unit
        >>> x = np.array([[[0, 1024, 2047]]], np.uint16)  # (C,H,W) 11-bit DN
        >>> u = to_unit(x, 2047)
        >>> u.dtype, tuple(u.shape), u.max().item()
        (torch.float32, (1, 1, 3), 1.0)
    """
    a = np.ascontiguousarray(x, dtype=np.float32)
    t = torch.from_numpy(a)
    # in place only on a fresh copy: for float32 input ascontiguousarray may return ``x`` itself
    return t.div(float(scale)) if np.may_share_memory(a, x) else t.div_(float(scale))


def from_unit(x: torch.Tensor, scale: float, dtype: np.dtype) -> np.ndarray:
    """Unit-range tensor -> array of ``dtype`` (rounded and clipped for integer types).

    Examples:
        >>> import numpy as np, torch
        >>> from pantiny.normalize import from_unit, to_unit
        >>> from_unit(torch.tensor([[[-0.1, 0.5, 1.2]]]), 255, np.uint8)  # rounded, clipped
        array([[[  0, 128, 255]]], dtype=uint8)
        >>> x = np.array([[[0, 1023, 2047]]], np.uint16)
        >>> np.array_equal(from_unit(to_unit(x, 2047), 2047, np.uint16), x)  # exact round trip
        True
    """
    y = x.detach().to("cpu", torch.float32).mul(float(scale)).numpy()  # a new array: rounded in place
    return _round_cast(y, dtype)


def from_unit_consuming(x: np.ndarray, scale: float, dtype: np.dtype,
                        order: "np.ndarray | None" = None) -> np.ndarray:
    """:func:`from_unit` of a float32 array (C,h,w) the caller gives up, channels taken in ``order``: it
    is scaled, rounded and clipped in place and only the result is allocated (no full-size float
    copy: a 4-band strip of a large scene is ~90 MB). Same values as :func:`from_unit`."""
    if x.dtype != np.float32:
        raise TypeError(f"from_unit_consuming needs float32, got {x.dtype}")
    np.multiply(x, np.float32(scale), out=x)
    if order is None or np.array_equal(order, np.arange(x.shape[0])):
        return _round_cast(x, dtype)
    _round_cast(x, dtype, cast=False)
    out = np.empty((len(order),) + x.shape[1:], np.dtype(dtype))
    for i, o in enumerate(order):
        out[i] = x[int(o)]  # rounded and clipped already: the cast is exact
    return out


def _round_cast(y: np.ndarray, dtype: np.dtype, cast: bool = True) -> np.ndarray:
    """``y`` (float32, DN) rounded and clipped in place for integer ``dtype``, then cast (if ``cast``)."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        np.clip(np.rint(y, out=y), info.min, info.max, out=y)
    return y.astype(dt, copy=False) if cast else y
