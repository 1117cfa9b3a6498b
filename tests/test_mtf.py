import numpy as np
import pytest
import torch

from pantiny.mtf import decimate, frequency_response, mtf_degrade, mtf_filter, mtf_kernel_1d
from pantiny.sensors import SENSORS


@pytest.mark.parametrize("gnyq", sorted({g for s in SENSORS.values() for g in (*s.mtf_ms, s.mtf_pan)}))
def test_gain_at_nyquist_equals_gnyq(gnyq):
    k = mtf_kernel_1d(gnyq, ratio=4)
    assert abs(k.sum() - 1) < 1e-12
    assert abs(frequency_response(k, 0.0) - 1.0) < 1e-9
    assert abs(frequency_response(k, 1 / 8) - gnyq) < 1e-3


def test_filter_preserves_constants_and_degrade_shapes():
    x = torch.full((1, 3, 37, 40), 0.7)
    assert torch.allclose(mtf_filter(x, [0.3, 0.2, 0.1]), x, atol=1e-6)
    y = torch.rand(2, 4, 64, 48)
    assert mtf_degrade(y, 0.3).shape == (2, 4, 16, 12)
    assert torch.equal(decimate(y)[0, 0], y[0, 0, 2::4, 2::4])
    with pytest.raises(ValueError, match="3 MTF gains given for 4 bands"):
        mtf_filter(y, [0.3, 0.3, 0.3])


def test_lower_gain_blurs_more():
    x = torch.zeros(1, 1, 64, 64)
    x[..., 32, 32] = 1
    sharp, soft = mtf_filter(x, 0.4), mtf_filter(x, 0.1)
    assert soft.max() < sharp.max()
    assert np.isclose(float(soft.sum()), 1.0, atol=1e-5)
