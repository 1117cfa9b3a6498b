"""pantiny's exception tree (modelled on rasterio's ``errors.py``).

Every error pantiny raises on purpose derives from :class:`PantinyError` *and* from the built-in
type callers already catch, so ``except ValueError`` keeps working:

* :class:`InputError` (``ValueError``): unusable input data or arguments (shapes, dtypes, bands,
  values, nodata, scale).
* :class:`GeoreferenceError` (``InputError``): PAN / MS / fused grids that do not fit together.
* :class:`ConfigError` (``ValueError``): an invalid configuration (training configs, options).
* :class:`WeightsError` (``RuntimeError``): a checkpoint missing, corrupt, tampered with, or unfit.
* :class:`ModelOutputError` (``RuntimeError``): the network produced non-finite values.
* :class:`OutputLockedError` (``FileExistsError``): another process is writing the same output.

The command line turns these (and ``OSError``) into one-line messages; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class PantinyError(Exception):
    """Base class of the errors pantiny raises deliberately."""


class InputError(PantinyError, ValueError):
    """Input data or arguments that cannot be fused or scored as given."""


class GeoreferenceError(InputError):
    """PAN, MS (or fused) rasters whose CRS, extent or pixel grids do not fit together."""


class ConfigError(PantinyError, ValueError):
    """An invalid configuration value."""


class WeightsError(PantinyError, RuntimeError):
    """A checkpoint is missing, corrupt, tampered with or does not fit its architecture."""


class ModelOutputError(PantinyError, RuntimeError):
    """The network produced NaN or infinite values."""


class OutputLockedError(PantinyError, FileExistsError):
    """Another process holds the lock on the output being written."""


def one_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): what a
    command line or a batch report shows of a user error."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
