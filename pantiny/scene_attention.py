"""Whole-scene channel attention, so that tiled inference equals whole-image inference.

The PanTiny attention layers normalise q and k over *all* pixels of their input, so a tile alone
yields a slightly different attention map than the full scene (up to ~1% of the value range for a
512 tile). The fix is exact and keeps memory bounded: the sums that define each layer's map are
additive over pixels, so they are accumulated tile by tile over the scene (each pixel counted once,
via the crop ownership masks, nodata pixels not at all), one sweep per attention layer in forward
order. With tile overlap >= 2 x the model's receptive radius, cropping the tiles gives the
whole-image result.

Each sweep continues every tile from where the previous sweep left it (:mod:`pantiny.models.layerwise`
keeps a tile's features at the input of the next layer), so the whole scene costs about one forward
pass plus the q/k projections of each layer, instead of re-running the network from its input for
every layer (3.6 passes for PanTiny-Big; 1.04-1.16x the time of per-tile attention, measured in
``benchmarks/infer_speed.py``). The kept features (28 float32 channels per tile pixel) live
in memory up to :data:`CACHE_BYTES`, then in a temporary folder on disk; a tile that fits in neither
is recomputed from the input, which gives the same result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .models.blocks import AttentionStats, ChannelAttention
from .models.layerwise import Attention, Local, Stage, State, advance, block_sums, chunk_shape, stages_of
from .tiling import Tile, TileSource, iter_batches, sample_tiles

_log = logging.getLogger("pantiny")


def _cache_bytes() -> int:
    """Features kept in memory between sweeps: ``PANTINY_CACHE_MB`` if set, else a quarter of the RAM
    (at most 8 GiB); the rest goes to a temporary folder on disk."""
    env = os.environ.get("PANTINY_CACHE_MB")
    if env:
        return int(float(env) * 2**20)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        ram = 8 * 2**30
    return int(min(ram // 4, 8 * 2**30))


CACHE_BYTES = _cache_bytes()


def attention_layers(model: nn.Module) -> List[ChannelAttention]:
    """The model's attention layers in forward (registration) order."""
    return [m for m in model.modules() if isinstance(m, ChannelAttention)]


def _reads_inputs(stages: Sequence[Stage], pos: int) -> bool:
    """Whether running from stage ``pos`` to the next block without fixed statistics reads the inputs."""
    for st in stages[pos:]:
        if isinstance(st, Local):
            if st.inputs:
                return True
        elif st.block.attn.fixed_stats is None:
            return False
    return True


class _TileCache:
    """Per-tile :class:`State` kept between sweeps: in memory up to ``budget`` bytes, then on disk.

    Lossy by design: a state that fits nowhere (disk full) is dropped, and the tile is recomputed
    from its input, with the same result.
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self.mem: Dict[Tile, State] = {}
        self.disk: Dict[Tile, Tuple[str, int, torch.dtype]] = {}
        self.dir: Optional[str] = None
        self.full = False

    def put(self, tile: Tile, state: State) -> None:
        x = state.x
        assert x is not None and x.shape[0] == 1
        x = x.detach()
        nbytes = x.numel() * x.element_size()
        if self.used + nbytes <= self.budget:
            self.mem[tile] = State(x.to("cpu"), state.pos)
            self.used += nbytes
            return
        if self.full:
            return
        try:
            if self.dir is None:
                self.dir = tempfile.mkdtemp(prefix="pantiny-features-")
            if shutil.disk_usage(self.dir).free < 2 * nbytes + 2**28:
                raise OSError("no room left")
            path = os.path.join(self.dir, f"{tile.row}_{tile.col}.npy")
            a = x.to("cpu").permute(0, 2, 3, 1)  # (1,H,W,C): channels_last order
            np.save(path, (a.view(torch.int16) if a.dtype == torch.bfloat16 else a).numpy())  # numpy has no bf16
            self.disk[tile] = (path, state.pos, x.dtype)
        except OSError as e:
            self.full = True
            _log.info("feature cache: %s; the remaining tiles are recomputed from their input", e)

    def pop(self, tile: Tile) -> Optional[State]:
        if tile in self.mem:
            st = self.mem.pop(tile)
            assert st.x is not None
            self.used -= st.x.numel() * st.x.element_size()
            return st
        if tile in self.disk:
            path, pos, dtype = self.disk.pop(tile)
            x = torch.from_numpy(np.load(path)).view(dtype).permute(0, 3, 1, 2)
            os.remove(path)
            return State(x, pos)
        return None

    def close(self) -> None:
        self.mem.clear()
        self.disk.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


def _own_mask(t: Tile, weight: np.ndarray, valid: np.ndarray, core: Optional[Tuple[int, int, int, int]]
              ) -> np.ndarray:
    """(h,w) 0/1: the pixels of tile ``t`` counted in the scene sums (owned, valid, inside ``core``)."""
    own = weight * valid
    if core is not None:
        r0, c0, h, w = core
        rows = (np.arange(t.row, t.row + t.height) >= r0) & (np.arange(t.row, t.row + t.height) < r0 + h)
        cols = (np.arange(t.col, t.col + t.width) >= c0) & (np.arange(t.col, t.col + t.width) < c0 + w)
        own = own * np.outer(rows, cols)
    return own.astype(np.float32)


class SceneRunner:
    """Runs a model with stages over a scene's tiles: whole-scene attention statistics (``gather``),
    then the output of any batch of tiles (``fuse``), resuming the tiles kept from the sweeps.

    Use it as a context manager: on exit the model's attention layers are restored (the same model
    object can serve another scene) and the kept features are deleted. ``dtype`` bfloat16 / float16:
    the network runs under ``torch.autocast`` to that type (features kept in it, attention sums and maps
    in float32; see :func:`pantiny.devices.compute_dtype`).
    """

    def __init__(self, model: nn.Module, source: TileSource, *, tile: int, overlap: int, batch_size: int,
                 device: torch.device, cache_bytes: Optional[int] = None, dtype: torch.dtype = torch.float32) -> None:
        self.model, self.source, self.device, self.dtype = model, source, device, dtype
        self.tile, self.overlap, self.batch_size = tile, overlap, batch_size
        # a model without stages() (any nn.Module taking (ms_up, pan)) runs as a whole per tile
        self.stages = stages_of(model) if hasattr(model, "stages") else None
        self.blocks = [st.block for st in self.stages or () if isinstance(st, Attention)]
        self.chunk = chunk_shape(min(tile, source.width), device)
        self.cache = _TileCache(CACHE_BYTES if cache_bytes is None else cache_bytes)
        self.masks: Dict[Tile, torch.Tensor] = {}  # (h,w) pixels each tile counts in the scene sums
        # free feature tensors per thread, handed from tile to tile (Dask workers fuse blocks in threads)
        self.spares: Dict[int, List[torch.Tensor]] = {}

    def __enter__(self) -> "SceneRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        for b in self.blocks:
            b.attn.scene_stats = None
        self.cache.close()
        self.masks.clear()
        self.spares.clear()

    def _autocast(self) -> ContextManager[object]:
        """The network's precision: autocast to ``dtype`` when it is a half type, else nothing."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _inputs(self, ms_up: Optional[torch.Tensor], pan: Optional[torch.Tensor]
                ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        cl = torch.channels_last
        if ms_up is None or pan is None:
            return None, None
        return (ms_up[:, :4].to(self.device).contiguous(memory_format=cl),
                pan.to(self.device).contiguous(memory_format=cl))

    def _states(self, tiles: Sequence[Tile]) -> List[State]:
        return [self.cache.pop(t) or State(None, 0) for t in tiles]

    def _run(self, states: Sequence[State], ms_up: Optional[torch.Tensor], pan: Optional[torch.Tensor],
             stop_at_missing: bool) -> State:
        """A batch of tiles in ``states`` advanced as far as possible; tiles kept at different stages are
        advanced separately, then joined."""
        ms_up, pan = self._inputs(ms_up, pan)
        groups: Dict[int, List[int]] = {}
        for i, st in enumerate(states):
            groups.setdefault(st.pos, []).append(i)
        parts: List[Tuple[List[int], State]] = []
        for p, idx in groups.items():
            xs = [states[i].x for i in idx]
            x = None if p == 0 else (xs[0] if len(xs) == 1 else torch.cat(xs)).to(self.device)  # type: ignore
            sel = torch.tensor(idx)
            whole = len(idx) == len(states)
            m = ms_up if whole or ms_up is None else ms_up[sel]
            q = pan if whole or pan is None else pan[sel]
            tid = threading.get_ident()
            with self._autocast():
                st = advance(self.stages, State(x, p, self.spares.pop(tid, [])), m, q, self.chunk,
                             stop_at_missing=stop_at_missing, owned=True)
            self.spares[tid] = st.spares  # free again (never a returned x): the next part may write into it
            parts.append((idx, st))
        if len({st.pos for _, st in parts}) != 1:
            raise AssertionError("tiles of one batch stopped at different stages")
        if len(parts) == 1:
            return parts[0][1]
        out: List[Optional[torch.Tensor]] = [None] * len(states)
        for idx, st in parts:
            for j, i in enumerate(idx):
                out[i] = st.x[j:j + 1]  # type: ignore[index]
        return State(torch.cat(out), parts[0][1].pos)  # type: ignore[arg-type]

    def layer_sums(self, index: int, *, core: Optional[Tuple[int, int, int, int]] = None,
                   only: Optional[Sequence[Tile]] = None, keep: bool = True,
                   progress: Optional[Callable[[int], None]] = None) -> AttentionStats:
        """The sums defining attention layer ``index`` over the scene (the layers before it fixed).

        Each pixel is counted once (tile ownership), nodata pixels not at all; ``core`` =
        ``(row, col, height, width)`` counts only that window (a block of a scene split across workers,
        whose margin belongs to other blocks). Sums of blocks add up to the scene's. ``only``: these
        tiles alone (a sample of the scene). ``keep``: keep each tile's features for the next sweep.
        A tile is read from the source only when the stages still to run need the inputs.
        """
        block = self.blocks[index]
        if any(b.attn.fixed_stats is None for b in self.blocks[:index]):
            raise AssertionError(f"attention layers before {index} must have their statistics fixed")
        block.attn.scene_stats = None
        total = AttentionStats()
        for _, tiles, _, _, _, weights in iter_batches(self.source, tile=self.tile, overlap=self.overlap,
                                                       batch_size=self.batch_size, blend="crop", only=only,
                                                       read=False):
            states = self._states(tiles)
            ms_up = pan = None
            if any(t not in self.masks for t in tiles) or any(
                    st.x is None or _reads_inputs(self.stages, st.pos) for st in states):
                reads = [self.source.read(t) for t in tiles]
                ms_up, pan = torch.stack([r[0] for r in reads]), torch.stack([r[1] for r in reads])
                for t, w, r in zip(tiles, weights, reads):
                    self.masks[t] = torch.from_numpy(_own_mask(t, w, r[2], core))
            st = self._run(states, ms_up, pan, stop_at_missing=True)
            stage = self.stages[st.pos] if st.pos < len(self.stages) else None
            if not isinstance(stage, Attention) or stage.block is not block:
                raise AssertionError(f"the sweep for attention layer {index} stopped at stage {st.pos}")
            mask = torch.stack([self.masks[t] for t in tiles])[:, None].to(self.device)
            assert st.x is not None
            with self._autocast():
                total.add(block_sums(block, st.x, mask, self.chunk)[0])
            if keep:
                for i, t in enumerate(tiles):
                    self.cache.put(t, State(st.x[i:i + 1], st.pos))
            if progress is not None:
                progress(len(tiles))
        return total

    def gather(self, *, sample: Optional[int] = None, progress: Optional[Callable[[int], None]] = None) -> None:
        """Fix every attention layer to whole-scene statistics, one sweep per layer. ``sample``: from at
        most that many tiles spread over the scene (exact when the scene has no more tiles)."""
        if self.stages is None:
            if attention_layers(self.model):
                raise InputError(f"{type(self.model).__name__} has channel attention layers but no stages(): "
                                 "whole-scene statistics need them; use attention='tile'")
            return
        only = None if sample is None else sample_tiles(self.source.height, self.source.width, self.tile,
                                                         self.overlap, sample)
        for b in self.blocks:
            b.attn.scene_stats = None
        for k, b in enumerate(self.blocks):
            stats = self.layer_sums(k, only=only, progress=progress)
            stats.finalise()
            b.attn.scene_stats = stats

    def fuse(self, ms_up: torch.Tensor, pan: torch.Tensor, tiles: Sequence[Tile]) -> torch.Tensor:
        """The network's output (B,4,h,w) for a batch of tiles, with the fixed statistics where set
        (else each tile's own); tiles kept from the sweeps resume where they stopped."""
        if self.stages is None:
            ms_up, pan = self._inputs(ms_up, pan)
            with torch.inference_mode(), self._autocast():
                return self.model(ms_up, pan)
        st = self._run(self._states(tiles), ms_up, pan, stop_at_missing=False)
        assert st.x is not None and st.pos == len(self.stages)
        return st.x


def check_overlap(model: nn.Module, overlap: int) -> None:
    """Tiled == whole-image inference needs ``overlap >= 2 x`` the model's receptive radius."""
    radius = getattr(model, "receptive_radius", None)
    if radius is not None and overlap // 2 < radius:
        raise InputError(f"tile overlap {overlap} is too small for exact tiling with this model: "
                         f"need at least {2 * radius} pixels (2 x its receptive radius {radius})")


def layer_sums(model: nn.Module, index: int, source: TileSource, *, tile: int, overlap: int, batch_size: int,
               device: torch.device, core: Optional[Tuple[int, int, int, int]] = None,
               only: Optional[Sequence[Tile]] = None,
               progress: Optional[Callable[[int], None]] = None, dtype: torch.dtype = torch.float32) -> AttentionStats:
    """The sums defining attention layer ``index`` over ``source``, the layers before it already fixed
    (their ``scene_stats``), recomputed from the input (e.g. a block of a scene on a Dask worker)."""
    runner = SceneRunner(model, source, tile=tile, overlap=overlap, batch_size=batch_size, device=device,
                         dtype=dtype)
    saved = runner.blocks[index].attn.scene_stats
    try:
        return runner.layer_sums(index, core=core, only=only, keep=False, progress=progress)
    finally:
        runner.blocks[index].attn.scene_stats = saved
        runner.cache.close()

