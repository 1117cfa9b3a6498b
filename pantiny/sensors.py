"""The one sensor table: band names and order, model band selection, value scale and MTF gains.

Every other module asks this table; nothing else hard-codes a band index, a bit depth or a gain.

The model works on 4 bands in the order **R, G, B, NIR** (the order of the PanTiny training data,
see ``shared/research/science.md`` §1.5). ``Sensor.model_bands`` lists, in that order, the 0-based
indices of those bands inside the sensor's native MS band order.

MTF gains at Nyquist (GNyq) follow the Vivone 2020 toolbox ``genMTF.m`` / ``MTF_PAN.m`` (§2.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError

#: Names of the model's four input/output bands, in model order.
MODEL_BANDS: Tuple[str, ...] = ("R", "G", "B", "NIR")

_WV8 = ("Coastal", "B", "G", "Y", "R", "RedEdge", "NIR1", "NIR2")
_BGRN = ("B", "G", "R", "NIR")


@dataclass(frozen=True)
class Sensor:
    """One entry of the sensor table.

    Attributes:
        name: canonical lower-case key (``"wv3"``).
        bands: MS band names in the order they are stored in the sensor's products.
        model_bands: 0-based indices into ``bands`` of the model's R, G, B, NIR inputs.
        max_value: nominal maximum digital number (2047 for 11-bit, 1023 for 10-bit, 255 for 8-bit);
            ``None`` for the generic entry, where the scale comes from the data type.
        mtf_ms: MS gain at the MS Nyquist frequency, one per entry of ``bands``.
        mtf_pan: PAN gain at the MS Nyquist frequency.
        ratio: PAN/MS ground-sample-distance ratio.
    """

    name: str
    bands: Tuple[str, ...]
    model_bands: Tuple[int, int, int, int]
    max_value: Optional[float]
    mtf_ms: Tuple[float, ...]
    mtf_pan: float
    ratio: int = 4
    description: str = ""

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def model_mtf(self) -> Tuple[float, float, float, float]:
        """MS gains of the four model bands, in model order (R, G, B, NIR)."""
        return tuple(self.mtf_ms[i] for i in self.model_bands)  # type: ignore[return-value]


def _bgrn(name: str, max_value: Optional[float], mtf_ms: Sequence[float], mtf_pan: float, desc: str) -> Sensor:
    return Sensor(name, _BGRN, (2, 1, 0, 3), max_value, tuple(mtf_ms), mtf_pan, 4, desc)


def _wv8(name: str, mtf_ms: Sequence[float], mtf_pan: float, desc: str) -> Sensor:
    return Sensor(name, _WV8, (4, 2, 1, 6), 2047.0, tuple(mtf_ms), mtf_pan, 4, desc)


SENSORS: Dict[str, Sensor] = {
    s.name: s
    for s in (
        _wv8("wv2", [0.35] * 7 + [0.27], 0.11, "WorldView-2, 8 MS bands, 11-bit"),
        _wv8("wv3", [0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315], 0.14,
             "WorldView-3, 8 MS bands (VNIR), 11-bit"),
        _bgrn("gf2", 1023.0, [0.3] * 4, 0.15, "GaoFen-2, 4 MS bands, 10-bit (toolbox default gains)"),
        _bgrn("qb", 2047.0, [0.34, 0.32, 0.30, 0.22], 0.15, "QuickBird, 4 MS bands, 11-bit"),
        _bgrn("ikonos", 2047.0, [0.26, 0.28, 0.29, 0.28], 0.17, "IKONOS, 4 MS bands, 11-bit"),
        _bgrn("geoeye1", 2047.0, [0.23] * 4, 0.16, "GeoEye-1, 4 MS bands, 11-bit"),
        # No published toolbox gains for these three: the toolbox's defaults (0.3 MS, 0.15 PAN) apply.
        _bgrn("gf1", 1023.0, [0.3] * 4, 0.15, "GaoFen-1, 4 MS bands, 10-bit (toolbox default gains)"),
        _bgrn("spot6", 4095.0, [0.3] * 4, 0.15, "SPOT-6/7, 4 MS bands, 12-bit (toolbox default gains)"),
        _bgrn("pleiades", 4095.0, [0.3] * 4, 0.15, "Pleiades 1A/1B, 4 MS bands, 12-bit (toolbox default gains)"),
        _bgrn("generic", None, [0.3] * 4, 0.15,
              "any 4-band B,G,R,NIR product; scale from the data type unless given"),
    )
}

_ALIASES = {
    "worldview2": "wv2", "worldview-2": "wv2", "wv-2": "wv2",
    "worldview3": "wv3", "worldview-3": "wv3", "wv-3": "wv3",
    "gaofen2": "gf2", "gaofen-2": "gf2", "gf-2": "gf2",
    "quickbird": "qb", "geoeye": "geoeye1", "geoeye-1": "geoeye1",
    "gaofen1": "gf1", "gaofen-1": "gf1", "gf-1": "gf1", "spot-6": "spot6", "spot-7": "spot6", "spot7": "spot6",
    "phr": "pleiades", "pleiades-1a": "pleiades", "pleiades-1b": "pleiades",
}


def get_sensor(name: "str | Sensor") -> Sensor:
    """Look a sensor up by name (case-insensitive, common aliases accepted).

    Examples:
        >>> from pantiny.sensors import get_sensor
        >>> s = get_sensor("WorldView-3")
        >>> s.name, s.n_bands, s.max_value
        ('wv3', 8, 2047.0)
        >>> [s.bands[i] for i in s.model_bands]  # the model's R, G, B, NIR inputs
        ['R', 'G', 'B', 'NIR1']
        >>> get_sensor("GF-2") is get_sensor("gf2")
        True
    """
    if isinstance(name, Sensor):
        return name
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SENSORS:
        raise InputError(f"unknown sensor {name!r}; known sensors: {', '.join(sorted(SENSORS))}")
    return SENSORS[key]


def sensor_for_bands(n_bands: int) -> Sensor:
    """Default sensor when none is given: ``generic`` for 4 bands, ``wv3`` layout for 8 bands.

    Examples:
        >>> from pantiny.sensors import sensor_for_bands
        >>> sensor_for_bands(4).name, sensor_for_bands(8).name
        ('generic', 'wv3')
    """
    if n_bands == 4:
        return SENSORS["generic"]
    if n_bands == 8:
        return SENSORS["wv3"]
    raise InputError(
        f"MS has {n_bands} bands: without sensor= or bands= only 4-band (B,G,R,NIR) and "
        "8-band WorldView (Coastal..NIR2) inputs are understood; pass bands=[r,g,b,nir] indices"
    )


def resolve_bands(n_bands: int, sensor: "str | Sensor | None" = None,
                  bands: Optional[Sequence[int]] = None) -> Tuple[Sensor, Tuple[int, int, int, int]]:
    """Pick the sensor entry and the 0-based MS band indices feeding the model (R, G, B, NIR order).

    An explicit ``bands`` list overrides the sensor's band map. Raises ``ValueError`` when the MS band
    count does not match the sensor or an index is out of range.

    Examples:
        >>> from pantiny.sensors import resolve_bands
        >>> sensor, idx = resolve_bands(8)  # 8 bands, no sensor: the WorldView layout
        >>> sensor.name, idx
        ('wv3', (4, 2, 1, 6))
        >>> resolve_bands(4, "gf2")[1]  # B, G, R, NIR products
        (2, 1, 0, 3)
        >>> resolve_bands(8, "wv2", bands=[5, 3, 2, 7])[1]  # explicit indices win
        (5, 3, 2, 7)
        >>> try:
        ...     resolve_bands(4, "wv3")
        ... except ValueError as e:
        ...     print(e)
        MS has 4 bands but sensor 'wv3' has 8 ...
    """
    s = get_sensor(sensor) if sensor is not None else (
        SENSORS["generic"] if bands is not None else sensor_for_bands(n_bands))
    if bands is None:
        if n_bands != s.n_bands:
            raise InputError(
                f"MS has {n_bands} bands but sensor {s.name!r} has {s.n_bands} "
                f"({', '.join(s.bands)}); pass bands=[r,g,b,nir] to choose bands explicitly")
        idx = s.model_bands
    else:
        idx = tuple(int(b) for b in bands)
        if len(idx) != 4:
            raise InputError(f"bands must list 4 MS band indices (R, G, B, NIR), got {list(bands)}")
        bad = [b for b in idx if not 0 <= b < n_bands]
        if bad:
            raise InputError(f"band indices {bad} out of range for an MS image with {n_bands} bands")
        if len(set(idx)) != 4:
            raise InputError(f"bands must be 4 distinct indices, got {list(bands)}")
    return s, idx  # type: ignore[return-value]


def with_band_names(sensor: Sensor, names: Sequence[str]) -> Sensor:
    """The entry of ``sensor`` for a product whose MS bands are ``names``, in file order: a subset or a
    reordering of the sensor's bands (a 4-band B,G,R,NIR bundle of an 8-band WorldView sensor, an
    R,G,B,NIR file). ``NIR`` names the first near-infrared band (``NIR1`` of WorldView). Band map and
    MTF gains follow the names.

    Examples:
        >>> from pantiny.sensors import get_sensor, with_band_names
        >>> s = with_band_names(get_sensor("wv3"), ["B", "G", "R", "NIR"])
        >>> s.bands, s.model_bands, s.model_mtf == get_sensor("wv3").model_mtf
        (('B', 'G', 'R', 'NIR1'), (2, 1, 0, 3), True)
    """
    import dataclasses

    where = {n: i for i, n in enumerate(sensor.bands)}
    idx = []
    for n in names:
        key = "NIR1" if n == "NIR" and "NIR1" in where else n
        if key not in where:
            raise InputError(f"the product's band {n!r} is not a band of sensor {sensor.name} "
                             f"({', '.join(sensor.bands)}); pass bands=[r,g,b,nir]")
        idx.append(where[key])
    if tuple(idx) == tuple(range(sensor.n_bands)):
        return sensor
    bands = tuple(sensor.bands[i] for i in idx)
    model = []
    for want in (sensor.bands[i] for i in sensor.model_bands):
        if want not in bands:
            raise InputError(f"the product's bands {list(names)} lack {want}, a model input; pass bands=[r,g,b,nir]")
        model.append(bands.index(want))
    return dataclasses.replace(sensor, bands=bands, model_bands=tuple(model),  # type: ignore[arg-type]
                               mtf_ms=tuple(sensor.mtf_ms[i] for i in idx),
                               description=f"{sensor.description}; product bands {', '.join(bands)}")


def parse_band_weights(method: str, weights: Any) -> np.ndarray:
    """Per-band weights of a classical ``method`` in model order (R, G, B, NIR), float64 (4,), from a
    sequence of 4 numbers or a dict by band name; ``None``: 1/4 each. Errors name the method."""
    if weights is None:
        return np.full(len(MODEL_BANDS), 1.0 / len(MODEL_BANDS))
    if isinstance(weights, Mapping):
        keys = {str(k).upper(): v for k, v in weights.items()}
        if set(keys) != set(MODEL_BANDS):
            raise InputError(f"weights of method {method!r} given as a dict must have exactly the keys "
                             f"{list(MODEL_BANDS)}, got {sorted(weights)}")
        weights = [keys[b] for b in MODEL_BANDS]
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"weights of method {method!r} must be 4 numbers (R, G, B, NIR), got {weights!r}") from None
    if w.shape != (len(MODEL_BANDS),):
        raise InputError(f"weights of method {method!r} must be 4 numbers in model band order "
                         f"(R, G, B, NIR), got {w.size} ({weights!r})")
    if not np.isfinite(w).all():
        raise InputError(f"weights of method {method!r} must be finite, got {weights!r}")
    if not np.any(w):
        raise InputError(f"weights of method {method!r} are all zero")
    return w
