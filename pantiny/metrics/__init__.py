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

from .full_resolution import DegenerateInputWarning, QNRResult, d_lambda, d_lambda_k, d_s, expand_ms, qnr
from .hypercomplex import q2n_index
from .reduced_resolution import TOOLBOX_CROP, cc, ergas, psnr, q2n, q_avg, reduced_resolution, sam, scc, ssim
from .uiqi import q_blocks, q_sliding, qindex

__all__ = ["QNRResult", "DegenerateInputWarning", "qnr", "d_lambda", "d_s", "d_lambda_k", "expand_ms", "q2n",
           "q2n_index", "q_blocks", "q_sliding", "qindex", "q_avg", "psnr", "ssim", "sam", "ergas", "cc", "scc",
           "reduced_resolution", "TOOLBOX_CROP"]
