"""The layer-wise, chunked inference path (pantiny.models.layerwise) and the scene runner that keeps
tile features between the per-layer sweeps (pantiny.scene_attention) against the reference path:
``model.forward`` on the whole image."""

import numpy as np
import pytest
import torch

from pantiny import pansharpen
from pantiny import scene_attention as sa
from pantiny.models import MODELS, build_model
from pantiny.models import layerwise as lw
from pantiny.models.blocks import AttentionStats
from pantiny.scene_attention import SceneRunner
from pantiny.synthetic import make_scene
from pantiny.tiling import plan_tiles


def _model(name, seed=0):
    torch.manual_seed(seed)
    net = build_model(name).eval()
    with torch.no_grad():  # temperatures away from 1, so the attention maps matter
        for m in net.modules():
            if hasattr(m, "temperature"):
                m.temperature.uniform_(0.5, 3.0)
    return net


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("chunk", [None, (8, 13), (24, 1000)])
def test_layerwise_equals_forward_per_tile_attention(name, chunk):
    net = _model(name)
    ms_up, pan = torch.rand(2, 4, 61, 47), torch.rand(2, 1, 61, 47)  # odd sizes: uneven chunks
    with torch.no_grad():
        ref = net(ms_up, pan)
    out = lw.forward(net.to(memory_format=torch.channels_last), ms_up, pan, chunk)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-5
    # each sample has its own attention map: swapping the batch swaps the outputs
    swapped = lw.forward(net, ms_up.flip(0), pan.flip(0), chunk)
    assert (swapped.flip(0) - out).abs().max() < 1e-5


def test_layerwise_uses_fixed_scene_statistics():
    net = _model("pantiny-big", 1)
    other = torch.rand(1, 4, 40, 40), torch.rand(1, 1, 40, 40)
    blocks = [st.block for st in net.stages() if isinstance(st, lw.Attention)]
    for b in blocks:  # maps from another image: both paths must use them, not the tile's own
        st = AttentionStats()
        st.accumulate(torch.rand(1, 2, 14, 100), torch.rand(1, 2, 14, 100))
        st.finalise()
        b.attn.scene_stats = st
    ms_up, pan = torch.rand(1, 4, 50, 33), torch.rand(1, 1, 50, 33)
    with torch.no_grad():
        ref = net(ms_up, pan)
    out = lw.forward(net, ms_up, pan, (9, 11))
    assert (out - ref).abs().max() < 1e-5
    for b in blocks:
        b.attn.scene_stats = None
    with torch.no_grad():
        assert (net(ms_up, pan) - ref).abs().max() > 1e-3  # the fixed maps did change the result
    del other


@pytest.mark.parametrize("size,step,radius", [(100, 30, 2), (61, 8, 1), (10, 30, 2), (47, 13, 2), (512, 39, 2)])
def test_chunk_splits_cover_the_axis_with_their_halo(size, step, radius):
    splits = lw._splits(size, step, radius)
    covered = np.zeros(size, int)
    lengths = set()
    for o0, o1, i0, i1 in splits:
        covered[o0:o1] += 1
        assert 0 <= i0 <= o0 and o1 <= i1 <= size
        assert i0 == 0 or o0 - i0 >= radius  # halo above, unless at the tile's edge
        assert i1 == size or i1 - o1 >= radius
        lengths.add(i1 - i0)
    assert (covered == 1).all()
    assert len(lengths) == 1  # one input shape per axis: one oneDNN kernel per layer


@pytest.mark.parametrize("masked", [False, True])
def test_pixel_sums_of_a_cropped_chunk_equal_the_flattened_reference(masked):
    """The row-wise batched sums on a view cropped out of a channels_last window (no copy) equal the
    sums over the flattened pixels."""
    torch.manual_seed(5)
    window = torch.randn(1, 56, 30, 41).contiguous(memory_format=torch.channels_last)
    qk = window[0, :, 2:27, 3:39]  # (2C, h, w), rows strided
    mask = (torch.rand(25, 36) > 0.3).float() if masked else None
    got = AttentionStats()
    got.add_sums(*lw._pixel_sums(qk, 2, mask))
    q, k = (t.reshape(1, 2, 14, -1) for t in qk.contiguous().chunk(2, dim=0))
    ref = AttentionStats()
    ref.accumulate(q, k, None if mask is None else mask[None, None])
    for a, b in ((got.qk, ref.qk), (got.qq, ref.qq), (got.kk, ref.kk)):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_gate_equals_the_feed_forward_modules_gate(layout):
    torch.manual_seed(6)
    t = torch.randn(2, 112, 17, 23).contiguous(memory_format=layout)
    x1, x2 = t.chunk(2, dim=1)
    torch.testing.assert_close(lw._gate(t), torch.nn.functional.gelu(x1) * x2, rtol=1e-5, atol=1e-5)


def test_scene_statistics_hold_no_autograd_graph():
    """The sums are plain tensors: a graph would keep every chunk's activations alive (the leak that
    grew the process to 14 GB on a 1 MPix scene)."""
    net = _model("pantiny-small")
    stats = lw.block_sums(net.latent[0], torch.rand(1, 32, 20, 20), None, (8, 8))[0]
    assert not stats.qk.requires_grad and stats.qk.grad_fn is None


class CountingSource:
    """A tile source over arrays that counts its reads."""

    def __init__(self, ms_up, pan):
        self.ms_up, self.pan = ms_up, pan
        self.height, self.width = pan.shape[-2:]
        self.reads = 0

    def read(self, t):
        self.reads += 1
        sl = (slice(None), slice(t.row, t.row + t.height), slice(t.col, t.col + t.width))
        return self.ms_up[sl], self.pan[sl], np.ones((t.height, t.width), bool)


def _scene_outputs(net, src, **kw):
    from pantiny.tiling import run_tiled

    with SceneRunner(net, src, tile=96, overlap=40, batch_size=2, device=torch.device("cpu"), **kw) as runner:
        runner.gather()
        return np.concatenate([s for _, s, _ in run_tiled(src, lambda m, p, t: runner.fuse(m, p, t), tile=96,
                                                          overlap=40, batch_size=2, blend="crop")], axis=1)


def test_scene_runner_equals_whole_image_and_reads_tiles_only_when_needed():
    net = _model("pantiny-big", 2)
    torch.manual_seed(3)
    ms_up, pan = torch.rand(4, 200, 170), torch.rand(1, 200, 170)
    with torch.no_grad():
        whole = net(ms_up[None], pan[None])[0].numpy()
    src = CountingSource(ms_up, pan)
    tiled = _scene_outputs(net, src)
    assert np.abs(tiled - whole).max() < 1e-4
    # kept features: tiles are read by the first sweep, the sweep through the PAN fusion and the
    # final pass (3 reads), not once per attention layer plus the final pass (7)
    n_tiles = len([t for row in plan_tiles(200, 170, 96, 40) for t in row])
    assert src.reads == 3 * n_tiles


def test_features_on_disk_or_recomputed_give_the_same_result(monkeypatch):
    net = _model("pantiny-small", 4)
    ms_up, pan = torch.rand(4, 150, 150), torch.rand(1, 150, 150)
    in_memory = _scene_outputs(net, CountingSource(ms_up, pan))
    on_disk = _scene_outputs(net, CountingSource(ms_up, pan), cache_bytes=0)
    np.testing.assert_array_equal(on_disk, in_memory)

    def no_room(*a, **k):
        raise OSError("no room left")

    monkeypatch.setattr(sa.tempfile, "mkdtemp", no_room)
    src = CountingSource(ms_up, pan)
    recomputed = _scene_outputs(net, src, cache_bytes=0)
    np.testing.assert_array_equal(recomputed, in_memory)
    n_tiles = len([t for row in plan_tiles(150, 150, 96, 40) for t in row])
    assert src.reads == (3 + 1) * n_tiles  # every sweep and the final pass read again


def test_pansharpen_default_mode_equals_whole_image_with_chunked_tiles(monkeypatch, random_weights):
    """The public path with chunks smaller than the tiles (as on a real scene): tiled, chunked,
    kept between sweeps == one tile covering the scene, to 1 DN."""
    monkeypatch.setattr(lw, "CHUNK_PIXELS", 1500)
    pan, ms, _ = make_scene(256, "wv3", seed=7)
    whole = pansharpen(pan, ms, model=str(random_weights), tile=256, device="cpu")
    tiled = pansharpen(pan, ms, model=str(random_weights), tile=120, overlap=40, device="cpu")
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
