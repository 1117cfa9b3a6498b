import numpy as np
import pytest

from pantiny.normalize import from_unit, resolve_scale, to_unit
from pantiny.sensors import MODEL_BANDS, SENSORS, get_sensor, resolve_bands


def test_worldview_8_band_selection_is_r_g_b_nir1():
    for key in ("wv2", "wv3"):
        s = get_sensor(key)
        assert s.model_bands == (4, 2, 1, 6)
        assert [s.bands[i] for i in s.model_bands] == ["R", "G", "B", "NIR1"]


def test_four_band_sensors_reorder_bgrn_to_model_order():
    for key in ("gf2", "qb", "ikonos", "generic"):
        s = get_sensor(key)
        names = [s.bands[i] for i in s.model_bands]
        assert names == list(MODEL_BANDS)


def test_table_is_consistent():
    for s in SENSORS.values():
        assert len(s.mtf_ms) == s.n_bands
        assert len(set(s.model_bands)) == 4 and max(s.model_bands) < s.n_bands
        assert 0 < s.mtf_pan < 1


def test_scales_follow_bit_depth():
    assert get_sensor("GaoFen-2").max_value == 1023
    assert get_sensor("WorldView-3").max_value == 2047
    assert resolve_scale(np.uint8) == 255
    assert resolve_scale(np.uint16, get_sensor("gf2")) == 1023
    assert resolve_scale(np.float32) == 1.0
    assert resolve_scale(np.uint16, None, 4095) == 4095
    with pytest.raises(ValueError, match="cannot infer the value scale"):
        resolve_scale(np.int32)
    with pytest.raises(ValueError, match="positive"):
        resolve_scale(np.uint16, None, 0)


def test_resolve_bands_errors_name_the_problem():
    with pytest.raises(ValueError, match="MS has 4 bands but sensor 'wv3' has 8"):
        resolve_bands(4, "wv3")
    with pytest.raises(ValueError, match="out of range"):
        resolve_bands(4, None, [0, 1, 2, 9])
    with pytest.raises(ValueError, match="4 MS band indices"):
        resolve_bands(4, None, [0, 1, 2])
    with pytest.raises(ValueError, match="unknown sensor 'landsat'"):
        get_sensor("landsat")
    with pytest.raises(ValueError, match="MS has 3 bands"):
        resolve_bands(3)
    assert resolve_bands(6, None, [5, 3, 1, 0])[1] == (5, 3, 1, 0)


def test_normalisation_round_trip_clips_and_rounds():
    x = np.array([[[0, 1, 2047, 65535]]], np.uint16)
    u = to_unit(x, 2047.0)
    assert u.dtype.is_floating_point and abs(float(u[0, 0, 2]) - 1.0) < 1e-7
    back = from_unit(u * 1.0004, 2047.0, np.uint16)
    assert back.dtype == np.uint16
    assert back.tolist() == [[[0, 1, 2048, 65535]]]
    neg = from_unit(u - 1.0, 2047.0, np.uint16)
    assert neg.min() == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("order", [None, [0, 1, 2, 3], [2, 1, 0, 3], [3, 0]])
def test_from_unit_consuming_equals_from_unit(dtype, order):
    """The in-place denormalisation of the tiling engine's strips gives exactly from_unit's values (out
    of range, negative and half-way values included), channels in ``order``, and refuses non-float32."""
    import torch

    from pantiny.normalize import from_unit_consuming

    rng = np.random.default_rng(3)
    x = rng.uniform(-0.2, 1.3, (4, 17, 9)).astype(np.float32)
    x[0, 0, :3] = [0.5 / 255, 1.5 / 255, 2.5 / 255]  # ties at 8 bits
    expect = from_unit(torch.from_numpy(x if order is None else x[order]), 255.0, dtype)
    got = from_unit_consuming(x.copy(), 255.0, dtype, None if order is None else np.asarray(order))
    assert got.dtype == np.dtype(dtype) and got.shape == expect.shape
    np.testing.assert_array_equal(got, expect)
    with pytest.raises(TypeError, match="float32"):
        from_unit_consuming(x.astype(np.float64), 255.0, dtype)
