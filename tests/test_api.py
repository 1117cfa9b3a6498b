import numpy as np
import pytest
import torch

from pantiny import pansharpen
from pantiny.resample import upsample


def _up(ms, bands, scale=2047.0):
    x = torch.from_numpy(ms[list(bands)].astype(np.float32) / scale)[None]
    return np.clip(np.rint(upsample(x, 4)[0].numpy() * scale), 0, 65535)


def test_eight_band_input_feeds_r_g_b_nir1_and_returns_input_order(scene_wv3, identity_model):
    pan, ms, _ = scene_wv3
    out = pansharpen(pan, ms, sensor="wv3", model=identity_model, device="cpu", tile=256)
    assert out.shape == (4, 256, 256) and out.dtype == np.uint16
    # Identity model -> output is the upsampled B, G, R, NIR1 (input indices 1, 2, 4, 6, ascending).
    np.testing.assert_array_equal(out, _up(ms, [1, 2, 4, 6]))
    assert identity_model.seen[0][0][1] == 4


def test_model_order_is_r_g_b_nir(scene_wv3):
    pan, ms, _ = scene_wv3

    class First(torch.nn.Module):  # output = first model channel everywhere -> must be R (index 4)
        def forward(self, ms_up, pan):
            return ms_up[:, :1].expand_as(ms_up).clone()

    out = pansharpen(pan, ms, sensor="wv3", model=First(), device="cpu", tile=256)
    np.testing.assert_array_equal(out[0], _up(ms, [4])[0])


def test_other_bands_upsample_keeps_all_eight_in_order(scene_wv3, identity_model):
    pan, ms, _ = scene_wv3
    out = pansharpen(pan, ms, sensor="wv3", model=identity_model, other_bands="upsample", tile=256)
    np.testing.assert_array_equal(out, _up(ms, range(8)))
    ratio = pansharpen(pan, ms, sensor="wv3", model=identity_model, other_bands="ratio", tile=256)
    assert ratio.shape == (8, 256, 256)
    np.testing.assert_allclose(ratio.astype(float), out.astype(float), atol=1)  # identity -> gain 1


def test_explicit_band_map(scene_wv3, identity_model):
    pan, ms, _ = scene_wv3
    out = pansharpen(pan, ms, bands=[5, 3, 0, 7], model=identity_model, tile=256)
    np.testing.assert_array_equal(out, _up(ms, [0, 3, 5, 7]))


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 255), (np.uint16, 2047), (np.float32, 1.0), (np.int16, 2047)])
def test_dtype_round_trip(scene_4band, dtype, scale, random_weights):
    pan, ms, _ = scene_4band
    f = {np.uint8: 255 / 2047, np.float32: 1 / 2047}.get(dtype, 1.0)
    p, m = (pan * f).astype(dtype), (ms * f).astype(dtype)
    out = pansharpen(p, m, model=str(random_weights), device="cpu")
    assert out.dtype == np.dtype(dtype) and out.shape == (4, 256, 256)
    assert np.isfinite(out.astype(np.float64)).all()
    if np.dtype(dtype).kind in "ui":
        assert out.max() <= np.iinfo(dtype).max


def test_tensor_in_tensor_out_and_2d_pan(scene_4band, identity_model):
    pan, ms, _ = scene_4band
    out = pansharpen(torch.from_numpy(pan[0].astype(np.int16)), torch.from_numpy(ms.astype(np.int16)),
                     model=identity_model, device="cpu")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int16 and out.shape == (4, 256, 256)


@pytest.mark.slow
def test_cpu_device_path_with_real_architecture(scene_4band, random_weights, identity_model):
    from pantiny.weights import load_model

    pan, ms, _ = scene_4band
    out = pansharpen(pan, ms, model=str(random_weights), device="cpu", tile=128, overlap=40)
    same = pansharpen(pan, ms, model=load_model(str(random_weights)), device="cpu", tile=128, overlap=40)
    exp = pansharpen(pan, ms, model=identity_model, device="cpu", tile=128, overlap=40)
    assert out.shape == (4, 256, 256)
    np.testing.assert_array_equal(out, same)
    assert np.abs(out.astype(int) - exp.astype(int)).mean() > 1  # the network changed the image


def test_cuda_request_without_cuda_is_an_error(scene_4band, identity_model):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error path cannot occur")
    pan, ms, _ = scene_4band
    with pytest.raises(ValueError, match="CUDA is not available"):
        pansharpen(pan, ms, model=identity_model, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(scene_4band, random_weights):
    pan, ms, _ = scene_4band
    a = pansharpen(pan, ms, model=str(random_weights), device="cpu")
    b = pansharpen(pan, ms, model=str(random_weights), device="cuda")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_bad_inputs_get_clear_errors(scene_4band, identity_model):
    pan, ms, _ = scene_4band
    kw = dict(model=identity_model)
    with pytest.raises(ValueError, match="size mismatch: PAN is 256x256 and MS is 32x32"):
        pansharpen(pan, ms[:, :32, :32], **kw)
    with pytest.raises(ValueError, match="with ratio 2 the MS should be 128x128"):
        pansharpen(pan, ms, ratio=2, **kw)
    with pytest.raises(ValueError, match="PAN must have 1 band"):
        pansharpen(np.concatenate([pan, pan]), ms, **kw)
    with pytest.raises(ValueError, match="MS has 3 bands"):
        pansharpen(pan, ms[:3], **kw)
    with pytest.raises(ValueError, match=r"MS must be \(C,H,W\)"):
        pansharpen(pan, ms[0], **kw)
    bad = ms.astype(np.float32) / 2047
    bad[1, 5, 5] = np.nan
    with pytest.raises(ValueError, match="MS contains NaN"):
        pansharpen(pan.astype(np.float32) / 2047, bad, **kw)
    with pytest.raises(ValueError, match="values up to"):
        pansharpen(pan.astype(np.float32), ms.astype(np.float32), **kw)
    with pytest.raises(ValueError, match="differ in kind"):
        pansharpen(pan.astype(np.float32), ms, **kw)
    with pytest.raises(ValueError, match="unsupported dtype"):
        pansharpen(pan.astype(bool), ms, **kw)
    with pytest.raises(ValueError, match="other_bands"):
        pansharpen(pan, ms, other_bands="keep", **kw)
    with pytest.raises(ValueError, match="both as arrays"):
        pansharpen("pan.tif", ms, **kw)


def test_nodata_propagates_and_valid_pixels_avoid_it(scene_4band, random_weights):
    pan, ms, _ = scene_4band
    pan, ms = pan.copy(), ms.copy()
    ms[:, :8, :8] = 0  # MS gap -> 32x32 PAN pixels
    pan[:, 200:210, 100:120] = 0  # PAN gap
    out = pansharpen(pan, ms, model=str(random_weights), nodata=0, tile=128, overlap=40)
    gap = np.zeros(pan.shape[1:], bool)
    gap[:32, :32] = True
    gap[200:210, 100:120] = True
    assert (out[:, gap] == 0).all()
    assert (out[:, ~gap] != 0).all()


def test_inputs_are_never_modified(scene_4band, identity_model):
    pan, ms, _ = scene_4band
    pan_f, ms_f = pan.astype(np.float32), ms.astype(np.float32)
    before = pan_f.copy(), ms_f.copy()
    fused = pansharpen(pan_f, ms_f, model=identity_model, scale=2047, tile=128, overlap=40)
    np.testing.assert_array_equal(pan_f, before[0])
    np.testing.assert_array_equal(ms_f, before[1])
    # and the DN range is kept: the identity model returns the upsampled MS in DN
    assert abs(float(fused.mean()) - float(ms_f.mean())) < 0.02 * float(ms_f.mean())
