"""Quality metrics for pan-sharpening (definitions, defaults and sources: ``docs/metrics.md``).

Full resolution (no reference): :func:`qnr` (D_lambda, D_s, QNR and HQNR in one pass),
:func:`d_lambda`, :func:`d_s`, :func:`d_lambda_k`, in the Vivone 2020 toolbox definition
(default) or the PanTiny / Pan-Mamba code path (``variant="pantiny"``); :func:`expand_ms` gives the
toolbox's upsampled-MS reference ("EXP").
Reduced resolution (with reference): :func:`psnr`, :func:`ssim`, :func:`sam`, :func:`ergas`,
:func:`q2n`, :func:`q_avg`, :func:`cc`, :func:`scc`, or all at once with :func:`reduced_resolution`
(``crop="toolbox"`` = :data:`TOOLBOX_CROP`, the toolbox's (20, 21) border cut).
Undefined scores of degenerate (zero-variance) input are NaN with a :class:`DegenerateInputWarning`.
Building blocks: :func:`q_blocks`, :func:`q_sliding`, :func:`qindex` (UIQI), :func:`q2n_index`.
"""

import sys
import types

# Loaded on first use (PEP 562), so the CLI can register `pantiny qnr` without importing torch.
_LAZY = {
    **dict.fromkeys(["DegenerateInputWarning", "QNRResult", "d_lambda", "d_lambda_k", "d_s", "expand_ms", "qnr"],
                    "full_resolution"),
    "q2n_index": "hypercomplex",
    **dict.fromkeys(["TOOLBOX_CROP", "cc", "ergas", "psnr", "q2n", "q_avg", "reduced_resolution", "sam", "scc",
                     "ssim"], "reduced_resolution"),
    **dict.fromkeys(["q_blocks", "q_sliding", "qindex"], "uiqi"),
}

__all__ = ["QNRResult", "DegenerateInputWarning", "qnr", "d_lambda", "d_s", "d_lambda_k", "expand_ms", "q2n",
           "q2n_index", "q_blocks", "q_sliding", "qindex", "q_avg", "psnr", "ssim", "sam", "ergas", "cc", "scc",
           "reduced_resolution", "TOOLBOX_CROP"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _MetricsModule(types.ModuleType):
    """``reduced_resolution`` names both a submodule and its main function: the import system sets the
    package attribute to the submodule when it loads, so a property keeps the public name on the
    function (as the eager imports used to)."""

    @property
    def reduced_resolution(self):
        from .reduced_resolution import reduced_resolution

        return reduced_resolution

    @reduced_resolution.setter
    def reduced_resolution(self, value) -> None:  # the submodule being registered: keep the function
        pass


sys.modules[__name__].__class__ = _MetricsModule
