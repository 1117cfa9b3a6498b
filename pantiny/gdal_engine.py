"""GDAL's pansharpening engine (``VRTPansharpenedDataset``, the engine of ``gdal_pansharpen``).

pantiny's ``method="brovey"`` is GDAL's "WeightedBrovey" (``F_k = MS_k * P / I``, ``I = sum w_k MS_k``,
negative resampled MS clipped to 0, 0 where ``I == 0``), and ``upsampling="cubic"`` is GDAL's cubic
MS resampling (Keys a=-0.5, weights renormalised at the borders). For that pair of choices on files
GDAL computes exactly what pantiny's tiling engine would (within 1 DN of rounding), in C, several
threads, straight from the files, so :func:`pantiny.pansharpen` hands such scenes to GDAL
(``api._gdal_brovey_bands``). With a nodata value GDAL masks each band on its own and renormalises
the cubic weights over valid MS pixels; pantiny then applies its own mask to GDAL's result
(:func:`pantiny_nodata`), so only values within 2 MS pixels of a hole differ from the tiling
engine's (which fills holes before resampling). Everything else goes through the tiling engine.

Torch-free on purpose: rasterio (GDAL) and numpy only.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

import numpy as np

from .errors import InputError

PathLike = "str | os.PathLike[str]"


def brovey_vrt_xml(pan: PathLike, ms: PathLike, bands: Sequence[int], *, weights: Optional[Sequence[float]] = None,
                   resampling: str = "Cubic", threads: int = 1, nodata: Optional[float] = None) -> str:
    """VRT XML of GDAL's weighted Brovey pansharpening of ``pan`` (band 1) with MS ``bands`` (1-based).

    Output band i = MS band ``bands[i]`` sharpened. ``weights`` (one per band, in ``bands`` order)
    default to GDAL's 1/N. ``resampling``: GDAL's name (``Nearest``, ``Bilinear``, ``Cubic``, ...).
    ``threads``: GDAL worker threads (``NumThreads``).
    """
    def src(path: PathLike, band: int) -> str:
        return (f'<SourceFilename relativeToVRT="0">{escape(str(Path(path).resolve()))}</SourceFilename>'
                f"<SourceBand>{int(band)}</SourceBand>")

    opts = [f"<Algorithm>WeightedBrovey</Algorithm><Resampling>{escape(resampling)}</Resampling>",
            f"<NumThreads>{max(1, int(threads))}</NumThreads>"]
    if weights is not None:
        if len(weights) != len(bands):
            raise InputError(f"{len(weights)} weights for {len(bands)} spectral bands")
        opts.append("<AlgorithmOptions><Weights>" + ",".join(repr(float(w)) for w in weights)
                    + "</Weights></AlgorithmOptions>")
    if nodata is not None:
        opts.append(f"<NoData>{float(nodata)!r}</NoData>")
    opts.append(f"<PanchroBand>{src(pan, 1)}</PanchroBand>")
    opts += [f'<SpectralBand dstBand="{i + 1}">{src(ms, b)}</SpectralBand>' for i, b in enumerate(bands)]
    return ('<VRTDataset subClass="VRTPansharpenedDataset"><PansharpeningOptions>'
            + "".join(opts) + "</PansharpeningOptions></VRTDataset>")


def brovey(pan: PathLike, ms: PathLike, bands: Sequence[int], **kw) -> np.ndarray:
    """GDAL's weighted Brovey (see :func:`brovey_vrt_xml` for ``kw``): the whole (C,H,W) result."""
    import rasterio

    with rasterio.open(brovey_vrt_xml(pan, ms, bands, **kw)) as ds:
        return ds.read()


def brovey_strips(pan: PathLike, ms: PathLike, bands: Sequence[int], rows: int = 512, **kw):
    """GDAL's weighted Brovey read in strips of ``rows`` PAN rows: yields ``(row, (C,rows',W) array)``,
    so a scene larger than memory streams to a file."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(brovey_vrt_xml(pan, ms, bands, **kw)) as ds:
        for r in range(0, ds.height, rows):
            n = min(rows, ds.height - r)
            yield r, ds.read(window=Window(0, r, ds.width, n))


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether the GDAL under rasterio opens a VRTPansharpenedDataset (a tiny smoke test, run once)."""
    try:
        import rasterio
        from rasterio.transform import from_origin

        with tempfile.TemporaryDirectory() as d:
            p, m = Path(d) / "p.tif", Path(d) / "m.tif"
            for path, arr, gsd in ((p, np.ones((1, 8, 8), np.uint16), 1.0), (m, np.ones((2, 2, 2), np.uint16), 4.0)):
                with rasterio.open(path, "w", driver="GTiff", count=arr.shape[0], height=arr.shape[1],
                                   width=arr.shape[2], dtype="uint16", crs="EPSG:32633",
                                   transform=from_origin(1000.0, 1000.0, gsd, gsd)) as ds:
                    ds.write(arr)
            return brovey(p, m, [1, 2]).shape == (2, 8, 8)
    except Exception:  # noqa: BLE001 - any failure means "not available": the tiling engine runs instead
        return False


#: MS rows per read when the MS is scanned for holes.
_SCAN_ROWS = 1024


def ms_holes(reader: Any, spectral: Sequence[int], nodata: float) -> Tuple[bool, Optional[np.ndarray]]:
    """``(partial, holes)`` of the MS of ``reader`` (a :class:`pantiny.readers.PairReader`): whether some
    pixel has some of the ``spectral`` bands (0-based) at ``nodata`` but not all (GDAL masks each band
    on its own, pantiny only pixels with every band at nodata, so a dark band stays data: such scenes
    take the tiling engine), and the (mh,mw) bool mask of pixels with every band at nodata (None when
    there is none). The MS is read once, in strips."""
    from .nodata import invalid_mask, partial_nodata

    mh, mw = reader.ms_hw
    holes = np.zeros((mh, mw), bool)
    for r in range(0, mh, _SCAN_ROWS):
        x = reader.read_ms(r, 0, min(_SCAN_ROWS, mh - r), mw, spectral)
        if partial_nodata(x, nodata):
            return True, None
        bad = invalid_mask(x, nodata)
        if bad is not None:
            holes[r:r + x.shape[1]] = bad
    return False, holes if holes.any() else None


def pantiny_nodata(strips: Iterable[Tuple[int, np.ndarray]], reader: Any, holes: Optional[np.ndarray],
                   nodata: float, ratio: int) -> Iterator[Tuple[int, np.ndarray]]:
    """GDAL's fused strips ``(row, (C,n,W) DN)`` with pantiny's nodata rule, in place: nodata where the
    PAN is nodata or the PAN pixel lies in an MS pixel of ``holes`` (GDAL fills the edge of such
    pixels from valid neighbours), and valid pixels never at the nodata value. GDAL writes nodata in
    every band or in none (valid values equal to it are nudged), where the PAN or a resampled band is
    nodata or its pseudo-PAN is 0; where pantiny sees data there, its fusion gives 0 (nudged)."""
    from .nodata import avoid_nodata, footprint

    w = reader.pan_hw[1]
    for row, y in strips:
        n = y.shape[1]
        gdal_nd = y[0] == nodata
        ms_bad = None if holes is None else footprint(holes, 0, row, n, w, ratio)
        maybe = gdal_nd if ms_bad is None else gdal_nd & ~ms_bad  # nodata for GDAL, perhaps not for us
        if maybe.any():  # the PAN decides (read only when needed)
            revive = maybe & (reader.read_pan(row, 0, n, w)[0] != nodata)
            if revive.any():
                avoid_nodata(y, revive, nodata)
        if ms_bad is not None:
            kill = ms_bad & ~gdal_nd
            if kill.any():
                y[:, kill] = y.dtype.type(nodata)
        yield row, y
