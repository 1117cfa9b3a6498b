"""Half precision for the network (``pansharpen(precision=...)``): autocast, float32 statistics."""

import numpy as np
import pytest
import torch

from conftest import REPO

from pantiny import pansharpen
from pantiny.cli import main
from pantiny.devices import compute_dtype
from pantiny.errors import ConfigError, InputError
from pantiny.models import build_model
from pantiny.models import layerwise as lw
from pantiny.scene_attention import _TileCache
from pantiny.tiling import Tile


#: (mean, max) |half - float32| in DN of an 11-bit scene that each precision must stay below
BOUNDS_DN = {"bfloat16": (6.0, 80), "float16": (1.0, 16)}


def _halves(device: torch.device):
    return ["bfloat16"] if device.type == "cpu" else ["float16", "bfloat16"]


@pytest.mark.parametrize("attention", ["scene", "tile"])
def test_half_precision_stays_within_a_few_dn_of_float32(scene_wv3, device, attention):
    pan, ms, _ = scene_wv3  # 11-bit, 8 bands, the shipped default model
    ref = pansharpen(pan, ms, sensor="wv3", device=device, attention=attention, tile=128, overlap=64)
    for precision in _halves(device):
        out = pansharpen(pan, ms, sensor="wv3", device=device, attention=attention, tile=128, overlap=64,
                         precision=precision)
        assert out.dtype == ref.dtype and out.shape == ref.shape
        d = np.abs(out.astype(np.int32) - ref.astype(np.int32))
        assert d.max() > 0, "the option changed nothing: the network did not run in half precision"
        # measured on this scene on CPU (11-bit, values up to 2785): bfloat16 mean 3.2 DN, max 37;
        # float16 (forced on CPU) mean 0.37 DN, max 5. The bounds leave about 2x room for other kernels.
        mean_max, max_max = BOUNDS_DN[precision]
        assert d.mean() < mean_max and d.max() < max_max, (precision, float(d.mean()), int(d.max()))


def test_attention_sums_are_taken_in_float32_under_autocast():
    """The sums run over every pixel of the scene: under float16 autocast a sum of q^2 overflows (max
    65504) long before that, so the engine takes them in float32 from the half-precision q and k."""
    torch.manual_seed(0)
    block = build_model("pantiny-big").latent[0].eval()
    with torch.no_grad():
        block.attn.qkv.weight.mul_(30.0)  # q, k up to ~50: q^2 summed over one 24x24 chunk > 65504
    x = torch.randn(1, 28, 24, 24)
    ref = lw.block_sums(block, x, None, None)[0]  # one chunk (the engine's hold ~20k pixels)
    with torch.autocast("cpu", dtype=torch.float16):
        half = lw.block_sums(block, x, None, None)[0]
    assert ref.qq.max() > 65504  # would overflow in float16
    for a, b in ((ref.qk, half.qk), (ref.qq, half.qq), (ref.kk, half.kk)):
        assert torch.isfinite(b).all()
        assert ((a - b).abs().max() / a.abs().max()) < 1e-2


def test_feature_cache_on_disk_keeps_bfloat16():
    cache = _TileCache(budget=0)  # nothing fits in memory: every state goes to disk
    try:
        x = torch.randn(1, 28, 12, 10).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        tile = Tile(0, 0, 12, 10)
        cache.put(tile, lw.State(x, 3))
        assert tile in cache.disk
        back = cache.pop(tile)
        assert back is not None and back.pos == 3 and back.x.dtype == torch.bfloat16
        assert torch.equal(back.x, x)
    finally:
        cache.close()


def test_float16_on_cpu_is_refused_with_the_reason():
    with pytest.raises(InputError, match="float16.*CUDA.*bfloat16"):
        compute_dtype("float16", torch.device("cpu"))
    assert compute_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16
    assert compute_dtype("float32", torch.device("cpu")) is torch.float32
    with pytest.raises(ConfigError, match="precision"):
        compute_dtype("half", torch.device("cpu"))


def test_half_precision_with_a_classical_method_is_an_error_not_ignored(scene_4band):
    pan, ms, _ = scene_4band
    for method in ("gsa", "brovey"):  # brovey: also the GDAL-engine path's check
        with pytest.raises(InputError, match="classical method"):
            pansharpen(pan, ms, sensor="ikonos", method=method, precision="bfloat16")


def test_cli_precision_option_reaches_the_library(tmp_path, capsys):
    sample = REPO / "examples" / "data"
    rc = main(["fuse", str(sample / "sample_pan.tif"), str(sample / "sample_ms.tif"), str(tmp_path / "o.tif"),
               "--device", "cpu", "--precision", "float16", "-q"])
    assert rc != 0
    assert "float16" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()
