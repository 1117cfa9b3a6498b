"""Vendor metadata: which sensor, bit depth and band order a product file comes from.

Real deliveries do not carry pantiny's ``SENSOR`` tag. They carry vendor metadata beside the
raster, which :func:`describe_product` reads (first match wins, in this order):

1. pantiny's own ``SENSOR`` tag (files pantiny wrote);
2. Maxar/DigitalGlobe ``.IMD`` (``<stem>.IMD`` beside the ``.TIF``/``.TIL``): ``satId`` (WV02, WV03,
   QB02, GE01, ...), ``bitsPerPixel`` and the ``BEGIN_GROUP = BAND_x`` groups, whose order is the
   band order of the file;
3. GaoFen/ZiYuan ``ProductMetaData`` XML (``<stem>.xml``): ``SatelliteID`` (GF1, GF2, ...) and ``SensorID``;
4. Airbus DIMAP (``DIM_*.XML`` in the folder): ``MISSION`` + ``MISSION_INDEX`` (PHR 1A, SPOT 6) and
   ``NBITS``;
5. GDAL's ``IMAGERY`` metadata domain (``SATELLITEID``, filled by GDAL's own metadata readers).

Band names also come from the MS file's band descriptions when they name colours (pantiny's own
outputs, many vendor GeoTIFFs), so an R,G,B,NIR file is not read as B,G,R,NIR. Parsing never
raises on a malformed sidecar: it is skipped and the log says so.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .sensors import get_sensor

_log = logging.getLogger("pantiny")

#: Maxar ``satId`` / GaoFen ``SatelliteID`` / DIMAP mission -> sensor table key.
SATELLITES: Dict[str, str] = {
    "WV02": "wv2", "WV03": "wv3", "QB02": "qb", "GE01": "geoeye1", "IK02": "ikonos", "IKONOS": "ikonos",
    "GF1": "gf1", "GF2": "gf2", "GF-1": "gf1", "GF-2": "gf2",
    "PHR": "pleiades", "PHR1A": "pleiades", "PHR1B": "pleiades", "PHR 1A": "pleiades", "PHR 1B": "pleiades",
    "SPOT6": "spot6", "SPOT7": "spot6", "SPOT 6": "spot6", "SPOT 7": "spot6",
    "WORLDVIEW-2": "wv2", "WORLDVIEW-3": "wv3", "QUICKBIRD": "qb", "QUICKBIRD-2": "qb", "GEOEYE-1": "geoeye1",
}

# Maxar IMD band groups -> band names of the sensor table.
_IMD_BANDS = {"C": "Coastal", "B": "B", "G": "G", "Y": "Y", "R": "R", "RE": "RedEdge", "N": "NIR", "N2": "NIR2",
              "P": "PAN"}
# Free-form band descriptions -> band names (lower-case keys).
_NAME_ALIASES = {
    "r": "R", "red": "R", "band_r": "R", "g": "G", "green": "G", "band_g": "G", "b": "B", "blue": "B",
    "band_b": "B", "nir": "NIR", "n": "NIR", "nir1": "NIR", "near-ir": "NIR", "near infrared": "NIR",
    "near-infrared": "NIR", "band_n": "NIR", "nir2": "NIR2", "n2": "NIR2", "y": "Y", "yellow": "Y",
    "c": "Coastal", "coastal": "Coastal", "coastal blue": "Coastal", "re": "RedEdge", "rededge": "RedEdge",
    "red edge": "RedEdge", "red-edge": "RedEdge",
}


@dataclass(frozen=True)
class ProductInfo:
    """What the metadata says about an MS product. Every field may be unknown (``None``).

    ``max_value`` is the DN mapped to 1.0 when the metadata gives a bit depth that differs from
    the sensor's native one (8-bit display products) or when the sensor is unknown.
    ``band_names`` are the file's bands in order, in the sensor table's vocabulary (R, G, B, NIR, ...).
    """

    sensor: Optional[str] = None
    bits: Optional[int] = None
    max_value: Optional[float] = None
    band_names: Optional[Tuple[str, ...]] = None
    source: str = ""

    def summary(self) -> str:
        parts = [f"sensor {self.sensor}" if self.sensor else None,
                 f"{self.bits}-bit" if self.bits else None,
                 "bands " + ",".join(self.band_names) if self.band_names else None]
        return ", ".join(p for p in parts if p) + (f" ({self.source})" if self.source else "")


def describe_product(path: "str | Path | None", tags: Optional[Dict[str, str]] = None,
                     imagery: Optional[Dict[str, str]] = None,
                     descriptions: Optional[Sequence[Optional[str]]] = None) -> ProductInfo:
    """Sensor, bit depth and band names of the MS product at ``path`` (see the module docstring).

    ``tags`` (default domain), ``imagery`` (GDAL ``IMAGERY`` domain) and ``descriptions`` (band
    descriptions) are what GDAL reports for the file; :func:`read_gdal_metadata` gets them. ``path``
    None: an in-memory raster (no sidecar files), described by its tags and band names only.
    """
    p = Path(path) if path else None
    tags, imagery = tags or {}, imagery or {}
    found: Optional[ProductInfo] = None
    if tags.get("SENSOR"):
        found = ProductInfo(sensor=_sensor_key(tags["SENSOR"]), source="SENSOR tag")
    for reader in (_from_imd, _from_gaofen_xml, _from_dimap):
        if found is not None or p is None:
            break
        try:
            found = reader(p)
        except (ET.ParseError, OSError, UnicodeDecodeError, ValueError) as e:
            _log.info("ignoring unreadable metadata next to %s: %s", p.name, e)
    if found is None and imagery.get("SATELLITEID"):
        key = _sensor_key(imagery["SATELLITEID"])
        if key:
            found = ProductInfo(sensor=key, source=f"GDAL IMAGERY SATELLITEID={imagery['SATELLITEID']}")
    found = found or ProductInfo()
    if found.band_names is None and descriptions:
        names = [band_name(d) for d in descriptions]
        if all(names) and len(set(names)) == len(names) and {"R", "G", "B"} <= set(names):
            found = ProductInfo(found.sensor, found.bits, found.max_value, tuple(names),  # type: ignore[arg-type]
                                (found.source + "; " if found.source else "") + "band descriptions")
    return found


def product_of(path: "str | Path", tags: Optional[Dict[str, str]] = None) -> ProductInfo:
    """:func:`describe_product` of the raster file at ``path`` with what GDAL reports for it
    (``tags``: its default-domain tags when the caller already has them)."""
    imagery, descriptions = read_gdal_metadata(path)
    if tags is None:
        import rasterio

        with rasterio.open(path) as ds:
            tags = dict(ds.tags())
    return describe_product(path, tags, imagery, descriptions)


def band_name(text: Optional[str]) -> Optional[str]:
    """A free-form band description in the sensor table's vocabulary (``"Red"`` -> ``"R"``), or None.

    Examples:
        >>> from pantiny.products import band_name
        >>> band_name(" Near-IR "), band_name("BAND_R"), band_name("pan") is None
        ('NIR', 'R', True)
    """
    return _NAME_ALIASES.get((text or "").strip().lower())


def read_gdal_metadata(path: "str | Path") -> Tuple[Dict[str, str], List[Optional[str]]]:
    """``(IMAGERY domain, band descriptions)`` as GDAL reports them for ``path``."""
    import rasterio

    with rasterio.open(path) as ds:
        try:
            imagery = dict(ds.tags(ns="IMAGERY"))
        except Exception:  # a driver without that domain
            imagery = {}
        return imagery, list(ds.descriptions)


def model_band_indices(names: Sequence[str]) -> Optional[Tuple[int, int, int, int]]:
    """0-based indices of R, G, B, NIR (NIR1 when there are two) in ``names``, or None.

    Examples:
        >>> from pantiny.products import model_band_indices
        >>> model_band_indices(["Coastal", "B", "G", "Y", "R", "RedEdge", "NIR", "NIR2"])
        (4, 2, 1, 6)
        >>> model_band_indices(["R", "G", "B"]) is None
        True
    """
    try:
        return tuple(list(names).index(n) for n in ("R", "G", "B", "NIR"))  # type: ignore[return-value]
    except ValueError:
        return None


# --- vendor formats -----------------------------------------------------------------------------

def _sensor_key(name: str) -> Optional[str]:
    n = name.strip().upper()
    if n in SATELLITES:
        return SATELLITES[n]
    try:
        return get_sensor(name).name
    except ValueError:
        return None


def _sidecar(p: Path, suffixes: Sequence[str]) -> Optional[Path]:
    for suf in suffixes:
        for cand in (p.with_suffix(suf), p.with_suffix(suf.lower())):
            if cand.is_file():
                return cand
    return None


def parse_imd(text: str) -> Tuple[Dict[str, str], List[Tuple[str, Dict[str, str]]]]:
    """Maxar ``.IMD`` text -> ``(top-level keys, [(group name, keys), ...] in file order)``.

    Values lose their quotes; ``( ... )`` lists are kept as text.

    Examples:
        >>> from pantiny.products import parse_imd
        >>> top, groups = parse_imd('bitsPerPixel = 16;\\nBEGIN_GROUP = BAND_R\\n absCalFactor = 0.01;\\n'
        ...                         'END_GROUP = BAND_R\\nEND;')
        >>> top["bitsPerPixel"], groups[0][0], groups[0][1]["absCalFactor"]
        ('16', 'BAND_R', '0.01')
    """
    top: Dict[str, str] = {}
    groups: List[Tuple[str, Dict[str, str]]] = []
    current: Optional[Dict[str, str]] = None
    for raw in text.splitlines():
        line = raw.strip().rstrip(";").strip()
        if not line or "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        value = value.strip('"')
        if key == "BEGIN_GROUP":
            current = {}
            groups.append((value, current))
        elif key == "END_GROUP":
            current = None
        else:
            (current if current is not None else top)[key] = value
    return top, groups


def _from_imd(p: Path) -> Optional[ProductInfo]:
    imd = _sidecar(p, (".IMD",))
    if imd is None:
        return None
    top, groups = parse_imd(imd.read_text(errors="replace"))
    sat = next((g.get("satId") for _, g in groups if g.get("satId")), None) or top.get("satId")
    sensor = _sensor_key(sat) if sat else None
    names = tuple(_IMD_BANDS[m.group(1)] for m in (re.fullmatch(r"BAND_([A-Z0-9]+)", g) for g, _ in groups)
                  if m and m.group(1) in _IMD_BANDS)
    bits = int(top["bitsPerPixel"]) if top.get("bitsPerPixel", "").isdigit() else None
    # Maxar stores 11-bit DN in 16-bit products: only an 8-bit product changes the value scale.
    max_value = 255.0 if bits == 8 else None
    if sensor is None and bits == 16:
        max_value = 2047.0  # every Maxar VNIR sensor is 11-bit
    return ProductInfo(sensor, 8 if bits == 8 else (11 if bits == 16 else bits), max_value,
                       names if names and "PAN" not in names else None, f"{sat or 'unknown satId'} in {imd.name}")


def _from_gaofen_xml(p: Path) -> Optional[ProductInfo]:
    xml = _sidecar(p, (".XML",))
    if xml is None:
        return None
    root = ET.parse(xml).getroot()
    if root.tag != "ProductMetaData":
        return None
    sat = (root.findtext("SatelliteID") or "").strip()
    sensor_id = (root.findtext("SensorID") or "").strip()
    sensor = _sensor_key(sat) if sat else None
    bands = (root.findtext("Bands") or "").replace(" ", "")
    # GaoFen PMS multispectral bands 1..4 are blue, green, red, near infrared.
    names = tuple("BGRN"[int(b) - 1] if b in "1234" else "?" for b in bands.split(",")) if bands else ()
    names = tuple({"N": "NIR"}.get(n, n) for n in names)
    return ProductInfo(sensor, None, None, names if names and "?" not in names else None,
                       f"{sat or 'unknown SatelliteID'} {sensor_id} in {xml.name}".replace("  ", " "))


def _from_dimap(p: Path) -> Optional[ProductInfo]:
    dims = sorted(p.parent.glob("DIM_*.XML")) + sorted(p.parent.glob("DIM_*.xml"))
    if not dims:
        return None
    root = ET.parse(dims[0]).getroot()
    mission = (root.findtext(".//MISSION") or "").strip()
    index = (root.findtext(".//MISSION_INDEX") or "").strip()
    sensor = _sensor_key(f"{mission}{index}") or _sensor_key(mission)
    nbits = (root.findtext(".//NBITS") or "").strip()
    bits = int(nbits) if nbits.isdigit() else None
    # The band order of the image file is not read from DIMAP (it depends on the order options):
    # it comes from the file's band descriptions, else the sensor table's B, G, R, NIR.
    max_value = 255.0 if bits == 8 else None
    return ProductInfo(sensor, bits, max_value, None, f"{mission} {index} in {dims[0].name}".replace("  ", " "))
