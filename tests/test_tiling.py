import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pantiny import pansharpen
from pantiny.tiling import Tile, iter_batches, plan_tiles, run_tiled


class ArraySource:
    """Minimal TileSource over in-memory unit-range arrays; records the tiles it was asked for."""

    def __init__(self, ms_up: np.ndarray, pan: np.ndarray) -> None:
        self.ms_up, self.pan = torch.from_numpy(ms_up), torch.from_numpy(pan)
        self.height, self.width = pan.shape[1:]
        self.reads = []

    def read(self, t: Tile):
        self.reads.append(t)
        sl = (slice(None), slice(t.row, t.row + t.height), slice(t.col, t.col + t.width))
        return self.ms_up[sl], self.pan[sl], np.ones((t.height, t.width), bool)


def _scene(h=300, w=260, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((4, h, w), dtype=np.float32), rng.random((1, h, w), dtype=np.float32)


def local_fuse(ms_up, pan, tiles=None):  # 5x5 neighbourhood operator: context radius 2
    k = torch.ones(4, 1, 5, 5) / 25
    return F.conv2d(F.pad(ms_up * pan, (2, 2, 2, 2), mode="replicate"), k, groups=4)


@pytest.mark.parametrize("h,w,tile,overlap", [(300, 260, 64, 16), (100, 100, 128, 16), (257, 129, 50, 10)])
def test_tiles_cover_and_crop_weights_partition(h, w, tile, overlap):
    rows = plan_tiles(h, w, tile, overlap)
    src = ArraySource(*_scene(h, w))
    total = np.zeros((h, w))
    for _, tiles, _, _, _, weights in iter_batches(src, tile=tile, overlap=overlap, batch_size=3, blend="crop"):
        for t, wt in zip(tiles, weights):
            assert t.row + t.height <= h and t.col + t.width <= w
            total[t.row:t.row + t.height, t.col:t.col + t.width] += wt
            owned = np.argwhere(wt > 0)
            if t.row > 0:  # owned pixels keep >= overlap/2 of context above
                assert owned[:, 0].min() >= overlap // 2
    assert (total == 1).all()
    assert len(src.reads) == sum(len(r) for r in rows)


def test_crop_blend_is_exact_for_local_operators():
    ms_up, pan = _scene()
    whole = local_fuse(torch.from_numpy(ms_up)[None], torch.from_numpy(pan)[None])[0].numpy()
    strips = list(run_tiled(ArraySource(ms_up, pan), local_fuse, tile=64, overlap=8, batch_size=2, blend="crop"))
    tiled = np.concatenate([s[1] for s in strips], axis=1)
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_ramp_blend_is_a_weighted_mean():
    ms_up, pan = _scene(200, 200)
    strips = list(run_tiled(ArraySource(ms_up, pan), lambda m, p, t: m, tile=64, overlap=16, batch_size=4,
                            blend="ramp"))
    np.testing.assert_allclose(np.concatenate([s[1] for s in strips], 1), ms_up, atol=1e-6)


def test_strips_stream_before_the_scene_is_read():
    """Bounded memory: the first rows come out while most of the scene is still unread."""
    ms_up, pan = _scene(1024, 96)
    src = ArraySource(ms_up, pan)
    gen = run_tiled(src, lambda m, p, t: m, tile=64, overlap=16, batch_size=1)
    row, strip, valid = next(gen)
    assert row == 0 and strip.shape[1] < 64 and valid.all()
    assert max(t.row for t in src.reads) < 128  # only the first two tile rows were needed
    rows = [row] + [r for r, _, _ in gen]
    assert rows == sorted(rows) and rows[-1] < 1024


def test_bad_tiling_arguments():
    with pytest.raises(ValueError, match="tile > overlap"):
        plan_tiles(100, 100, 32, 32)


@pytest.mark.slow
def test_model_tiled_equals_untiled_on_a_scene_several_tiles_wide(random_weights):
    from pantiny.synthetic import make_scene

    pan, ms, _ = make_scene(384, "wv3", seed=5)
    whole = pansharpen(pan, ms, model=str(random_weights), tile=384, device="cpu")
    tiled = pansharpen(pan, ms, model=str(random_weights), tile=128, overlap=40, batch_size=3, device="cpu")
    diff = np.abs(whole.astype(np.int64) - tiled.astype(np.int64))
    assert diff.max() <= 0.001 * 2047, diff.max()
    # Per-tile attention is what breaks this: the scene mode must be doing real work.
    per_tile = pansharpen(pan, ms, model=str(random_weights), tile=128, overlap=40, attention="tile")
    assert np.abs(whole.astype(np.int64) - per_tile.astype(np.int64)).max() > 0.001 * 2047


def test_overlap_too_small_for_exact_model_tiling(scene_4band, random_weights):
    pan, ms, _ = scene_4band
    with pytest.raises(ValueError, match="overlap 16 is too small"):
        pansharpen(pan, ms, model=str(random_weights), tile=128, overlap=16)


def test_sample_tiles_spread_over_the_scene():
    from pantiny.tiling import plan_tiles, sample_tiles

    all_tiles = [t for row in plan_tiles(1000, 1000, 128, 64) for t in row]
    some = sample_tiles(1000, 1000, 128, 64, 16)
    assert len(some) == 16 and set(some) <= set(all_tiles)
    assert some[0] == all_tiles[0] and some[-1] == all_tiles[-1]  # corners included, spread between
    assert len({t.row for t in some}) >= 4 and len({t.col for t in some}) >= 4
    assert sample_tiles(300, 300, 128, 64, 16) == all_tiles[:0] + [t for row in plan_tiles(300, 300, 128, 64) for t in row]


def test_sampled_attention_is_exact_on_small_scenes_and_close_on_large(scene_4band):
    """'sampled' statistics: identical to 'scene' when the scene has <= 16 tiles; on 49 tiles
    (16 sampled) within a few DN, far closer than per-tile attention. Real-scene figures: README."""
    pan, ms, _ = scene_4band  # 256 x 256
    exact = pansharpen(pan, ms, sensor="ikonos", tile=128, overlap=40)  # 3 x 3 tiles
    np.testing.assert_array_equal(pansharpen(pan, ms, sensor="ikonos", tile=128, overlap=40, attention="sampled"),
                                  exact)
    exact = pansharpen(pan, ms, sensor="ikonos", tile=72, overlap=40)  # 7 x 7 tiles
    sampled = pansharpen(pan, ms, sensor="ikonos", tile=72, overlap=40, attention="sampled")
    per_tile = pansharpen(pan, ms, sensor="ikonos", tile=72, overlap=40, attention="tile")
    d_sampled = np.abs(sampled.astype(np.int64) - exact)
    d_tile = np.abs(per_tile.astype(np.int64) - exact)
    assert d_sampled.max() > 0  # the sample really is a sample
    assert d_sampled.mean() < 0.25 * d_tile.mean(), (d_sampled.mean(), d_tile.mean())


@pytest.mark.parametrize("blend", ["crop", "ramp"])
def test_strips_are_cut_at_multiples_of_strip_rows(monkeypatch, blend):
    """Each tile row's finished rows go out in pieces of at most STRIP_ROWS, cut at multiples of it in
    the scene (whole output blocks per piece), covering the scene once, top-down, same values."""
    import pantiny.tiling as tiling

    ms_up, pan = _scene(300, 90)
    whole = list(run_tiled(ArraySource(ms_up, pan), local_fuse, tile=120, overlap=16, batch_size=2, blend=blend))
    monkeypatch.setattr(tiling, "STRIP_ROWS", 32)
    pieces = list(run_tiled(ArraySource(ms_up, pan), local_fuse, tile=120, overlap=16, batch_size=2, blend=blend))
    assert len(pieces) > len(whole)
    top = 0
    for row, strip, valid in pieces:
        n = strip.shape[1]
        assert row == top and 0 < n <= 32 and valid.shape == (n, 90)
        assert row // 32 == (row + n - 1) // 32  # never across a multiple of 32
        top += n
    assert top == 300
    np.testing.assert_array_equal(np.concatenate([s for _, s, _ in pieces], 1),
                                  np.concatenate([s for _, s, _ in whole], 1))
