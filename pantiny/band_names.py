"""Names of the fused output's bands, written as GDAL band descriptions.

One rule, per output band (the input MS bands ``sorted(channels)``, in the input's order):

1. the MS file's own band description, when it has one;
2. ``R``, ``G``, ``B``, ``NIR`` for the four model bands;
3. the sensor table's name of that band, when the sensor's band list fits the MS;
4. ``band N`` (1-based index in the MS file).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from .sensors import MODEL_BANDS, Sensor


def output_band_names(channels: Sequence[int], sensor: Sensor, n_ms: int,
                      descriptions: Sequence[Optional[str]] = ()) -> List[str]:
    """One name per output band, in output order (see the module docstring).

    Args:
        channels: 0-based MS band indices fused, model bands (R, G, B, NIR) first, as
            ``pansharpen`` orders them; the output holds them in ascending order.
        sensor: the resolved sensor entry (its ``bands`` name the MS bands when ``n_ms`` matches).
        n_ms: number of bands of the MS input.
        descriptions: the MS file's band descriptions (empty or None entries are ignored).

    Examples:
        >>> from pantiny.band_names import output_band_names
        >>> from pantiny.sensors import get_sensor
        >>> output_band_names([2, 1, 0, 3], get_sensor("ikonos"), 4)  # B,G,R,NIR file
        ['B', 'G', 'R', 'NIR']
        >>> output_band_names([4, 2, 1, 6, 0, 3, 5, 7], get_sensor("wv3"), 8)
        ['Coastal', 'B', 'G', 'Y', 'R', 'RedEdge', 'NIR', 'NIR2']
        >>> output_band_names([0, 1, 2, 3, 4], get_sensor("generic"), 5, ["red", "", None, "nir", ""])
        ['red', 'G', 'B', 'nir', 'band 5']
    """
    model = {b: MODEL_BANDS[k] for k, b in enumerate(channels[:4])}
    names = []
    for b in sorted(channels):
        own = descriptions[b] if b < len(descriptions) else None
        if own and own.strip():
            names.append(own.strip())
        elif b in model:
            names.append(model[b])
        elif sensor.n_bands == n_ms:
            names.append(sensor.bands[b])
        else:
            names.append(f"band {b + 1}")
    return names
