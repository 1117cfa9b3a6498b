"""Layer-by-layer inference of the PanTiny models, in cache-sized chunks (the fast path).

``model.forward`` computes every layer on the whole tile at once: on CPU each intermediate tensor
of a 512² tile (up to 112 channels, ~120 MB) lives in main memory, and the small, memory-bound
convolutions run 3-6x slower than on data that stays in the CPU cache (measured: the GDFN of one
block costs ~840 ns per pixel on a 576² tile, ~190 ns on a 128² one). This module runs the same
network as a list of *stages* (``model.stages()``):

* :class:`Local`: a purely convolutional piece with a receptive ``radius`` (embedding, PAN fusion,
  output head); computed chunk by chunk, each read with ``radius`` pixels of halo, so the result
  equals the whole-tile computation (zero padding only at the tile's own edges);
* :class:`Attention`: a transformer block. Its channel attention needs a C/heads x C/heads map from
  statistics over all pixels (:class:`AttentionStats`); given the map, the rest of the block is local
  (radius 2) and q, k are not needed: v alone is computed and the attention, head mixing and output
  projection collapse into one C x C 1x1 convolution.

The statistics of a block come from its ``scene_stats`` when fixed (whole-scene statistics, see
:mod:`pantiny.scene_attention`), else from the tile itself in a first chunked sweep over q and k
(``attention="tile"``, what ``model.forward`` does). :func:`advance` runs the stages of one batch up
to the first block whose statistics are still missing, so a scene can be computed one sweep per
attention layer with the features kept in between, instead of re-running the network from its input
for every layer. Results equal ``model.forward`` up to float rounding (< 1e-5 in unit range: the
sums are accumulated in another order).

Under ``torch.autocast`` (``pansharpen(precision="bfloat16" | "float16")``) the features are kept in
the half type; the attention sums and maps stay float32.

All tensors are (B,C,H,W); inference only (no autograd).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AttentionStats, TransformerBlock, channel_layer_norm

#: Pixels per chunk: activations of up to 112 channels of ~20k pixels (~9 MB) stay in a CPU's cache
#: (measured on 2 Zen 3 cores: chunks of 14-23k pixels ran a 576² tile 2.5-3x faster than whole).
CHUNK_PIXELS = 20000


@dataclass(frozen=True)
class Local:
    """A convolutional stage ``fn(x, ms_up, pan) -> x'`` seeing ``radius`` pixels of context on each
    side; ``inputs``: it reads ``ms_up``/``pan`` (x is None for the first stage)."""

    fn: Callable[[Optional[torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]
    radius: int
    inputs: bool = True


@dataclass(frozen=True)
class Attention:
    """A :class:`TransformerBlock` (pre-norm channel attention + GDFN, receptive radius 2)."""

    block: TransformerBlock


Stage = Union[Local, Attention]


@dataclass
class State:
    """A batch part-way through the network: ``x`` (B,C,H,W) features at the input of stage ``pos``;
    ``spares``: tensors no one else uses that the next layers may write into (see :func:`advance`)."""

    x: Optional[torch.Tensor]
    pos: int = 0
    spares: List[torch.Tensor] = field(default_factory=list)


#: Free feature tensors a run keeps for reuse: a stage reads x and writes a new tensor, so two
#: circulate (the input and output of the stage in progress are the others).
MAX_SPARES = 2


def stages_of(model: nn.Module) -> List[Stage]:
    """The model's stages (its ``stages()`` method); an error for a model without one."""
    fn = getattr(model, "stages", None)
    if fn is None:
        raise TypeError(f"{type(model).__name__} does not declare stages(): layer-wise inference needs them")
    return list(fn())


def chunk_shape(width: int, device: torch.device) -> Optional[Tuple[int, int]]:
    """(rows, cols) of the chunks a tile ``width`` pixels wide is computed in on ``device`` (None:
    whole tiles, e.g. on GPU, where the tile is not the cache's problem and larger kernels are faster).

    Chunks span the tile's width up to 768 columns, else ~512-column strips (a thin full-width band
    would spend most of its work on halo rows); rows fill :data:`CHUNK_PIXELS`.
    """
    if device.type != "cpu":
        return None
    cols = width if width <= 768 else -(-width // -(-width // 512))
    return max(24, CHUNK_PIXELS // cols), cols


def _splits(size: int, step: Optional[int], radius: int) -> List[Tuple[int, int, int, int]]:
    """One axis of the chunks: ``(o0, o1, i0, i1)``, output ``o0:o1`` computed from input ``i0:i1``.

    The chunks split ``size`` evenly and every input window has the same length ``step + 2 radius``
    (shifted inwards at the tile's edges instead of cut), so each convolution sees few input shapes:
    oneDNN builds a kernel per shape.
    """
    if step is None or size <= step + 2 * radius:
        return [(0, size, 0, size)]
    n = -(-size // step)
    step = -(-size // n)
    length = step + 2 * radius
    out = []
    for o0 in range(0, size, step):
        o1 = min(size, o0 + step)
        i0 = min(max(0, o0 - radius), size - length)
        out.append((o0, o1, i0, i0 + length))
    return out


def _windows(height: int, width: int, chunk: Optional[Tuple[int, int]], radius: int
             ) -> List[Tuple[Tuple[int, int, int, int], Tuple[int, int, int, int]]]:
    """The chunks of a height x width tile: (row split, column split) pairs, row-major."""
    rows = _splits(height, None if chunk is None else chunk[0], radius)
    cols = _splits(width, None if chunk is None else chunk[1], radius)
    return [(r, c) for r in rows for c in cols]


def _crop(t: Optional[torch.Tensor], r: Tuple[int, int, int, int], c: Tuple[int, int, int, int]
          ) -> Optional[torch.Tensor]:
    return None if t is None else t[:, :, r[2]:r[3], c[2]:c[3]]


def _chunked(fn: Callable[..., torch.Tensor], radius: int, chunk: Optional[Tuple[int, int]],
             tensors: Sequence[Optional[torch.Tensor]],
             reuse: Optional[Callable[[torch.Tensor, Tuple[int, ...]], Optional[torch.Tensor]]] = None
             ) -> torch.Tensor:
    """``fn(*tensors)`` computed chunk by chunk, each chunk read with >= ``radius`` pixels of halo.

    ``reuse(first_chunk, shape)``: a free tensor of ``shape`` (like the chunk's dtype and device; none
    of ``tensors`` may share it) to write the result into, or None for a new one.
    """
    ref = next(t for t in tensors if t is not None)
    height, width = ref.shape[-2:]
    wins = _windows(height, width, chunk, radius)
    if len(wins) == 1:
        return fn(*tensors)
    out: Optional[torch.Tensor] = None
    for r, c in wins:
        y = fn(*(_crop(t, r, c) for t in tensors))[:, :, r[0] - r[2]:r[1] - r[2], c[0] - c[2]:c[1] - c[2]]
        if out is None:
            shape = (y.shape[0], y.shape[1], height, width)
            out = reuse(y, shape) if reuse is not None else None
            if out is None:
                out = torch.empty(shape, dtype=y.dtype, device=y.device, memory_format=torch.channels_last)
        out[:, :, r[0]:r[1], c[0]:c[1]] = y
    assert out is not None
    return out


def _qk(block: TransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """q and k (B,2C,h,w) of ``block``'s attention: the first 2C channels of its qkv branch."""
    attn = block.attn
    c = x.shape[1]
    y = block.norm1(x)
    qk = F.conv2d(y, attn.qkv.weight[:2 * c])
    return F.conv2d(qk, attn.qkv_dwconv.weight[:2 * c], padding=1, groups=2 * c)


def block_sums(block: TransformerBlock, x: torch.Tensor, mask: Optional[torch.Tensor],
               chunk: Optional[Tuple[int, int]], per_sample: bool = False) -> List[AttentionStats]:
    """The attention sums of ``block`` over ``x`` (B,C,H,W), pixels weighted by ``mask`` (B,1,H,W) or all.

    One :class:`AttentionStats` for the whole batch, or one per sample with ``per_sample``.
    """
    heads, (b, c, height, width) = block.attn.heads, x.shape
    out = [AttentionStats() for _ in range(b if per_sample else 1)]
    for r, cc in _windows(height, width, chunk, 1):  # the depthwise 3x3: one pixel of halo
        with torch.inference_mode():  # no autograd graph: it would keep every chunk's tensors alive
            qk = _qk(block, _crop(x, r, cc))[:, :, r[0] - r[2]:r[1] - r[2], cc[0] - cc[2]:cc[1] - cc[2]]
            m = None if mask is None else mask[:, :, r[0]:r[1], cc[0]:cc[1]]
            # the sums run over every pixel of the scene: float32 even when the network runs in half
            # precision (a no-op in float32)
            with torch.autocast(x.device.type, enabled=False):
                qk = qk.float()
                for i in range(b):
                    sums = _pixel_sums(qk[i], heads, None if m is None else m[i, 0])
                    out[i if per_sample else 0].add_sums(*sums)
    return out


def _pixel_sums(qk: torch.Tensor, heads: int, mask: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sum q_i k_j (heads,d,d), sum q_i^2 and sum k_j^2 (heads,d) over the pixels of ``qk`` (2C,h,w), q
    being its first C channels, pixels weighted by ``mask`` (h,w) or all counted.

    Row by row as a batched matmul on the (h,w,2C) view: a chunk cropped out of a channels_last window
    cannot be flattened to (2C, h*w) without a copy, which cost as much as the sums themselves.
    """
    t = qk.permute(1, 2, 0)  # (h, w, 2C): channels contiguous, rows strided
    c = t.shape[-1] // 2
    d = c // heads
    tm = t if mask is None else t * mask[:, :, None].to(t.dtype)
    qs = [tm[..., j * d:(j + 1) * d].transpose(1, 2) for j in range(heads)]  # (h, d, w) each
    ks = [t[..., c + j * d:c + (j + 1) * d] for j in range(heads)]  # (h, w, d)
    qk_sums = torch.stack([torch.bmm(q, k).sum(0) for q, k in zip(qs, ks)])
    sq = (t * tm).sum((0, 1))
    return qk_sums, sq[:c].reshape(heads, d), sq[c:].reshape(heads, d)


def mixing_matrix(block: TransformerBlock, stats: AttentionStats) -> torch.Tensor:
    """The C x C matrix ``project_out @ blockdiag(softmax(gram * temperature))`` applied to v."""
    attn = block.attn
    maps = (stats.gram.to(attn.temperature.device) * attn.temperature).softmax(dim=-1)  # (heads, d, d)
    return attn.project_out.weight[:, :, 0, 0] @ torch.block_diag(*maps)


def _block_weights(block: TransformerBlock) -> Tuple[torch.Tensor, ...]:
    """What a block computes with once its attention is fixed: norm1 (weight, bias), v's 1x1 and
    depthwise weights, norm2 (weight, bias), the feed-forward's 1x1, depthwise and output weights."""
    attn, ffn, c = block.attn, block.ffn, block.norm1.weight.shape[0]
    return (block.norm1.weight, block.norm1.bias, attn.qkv.weight[2 * c:], attn.qkv_dwconv.weight[2 * c:],
            block.norm2.weight, block.norm2.bias, ffn.project_in.weight, ffn.dwconv.weight, ffn.project_out.weight)


def _block_window(x: torch.Tensor, mix: torch.Tensor, weights: Tuple[torch.Tensor, ...], eps: Tuple[float, float],
                  crop: Tuple[int, ...], out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A transformer block with its attention fixed, on the window ``x`` (B,C,H,W); ``mix`` (C,C) or
    (B,C,C) acts on v (see :func:`mixing_matrix`), ``weights`` from :func:`_block_weights`, ``eps``
    those of its two LayerNorms.

    ``crop`` = (a0, a1, b0, b1, r0, r1, c0, c1): the feed-forward half runs on rows a0:a1 and columns
    b0:b1 of the window, and rows r0:r1, columns c0:c1 of that are returned (or written into ``out``).
    Each half of the block has one depthwise 3x3, so a chunk needs its attention half one pixel beyond
    the feed-forward half, which needs one pixel beyond the output (where the window has a halo).
    """
    n1w, n1b, wv, wdv, n2w, n2b, w_in, w_dw, w_out = weights
    a0, a1, b0, b1, r0, r1, c0, c1 = crop
    c = x.shape[1]
    v = F.conv2d(F.conv2d(channel_layer_norm(x, n1w, n1b, eps[0]), wv), wdv, padding=1, groups=c)
    if mix.dim() == 2:
        h = x + F.conv2d(v, mix[:, :, None, None])
    else:  # per-sample maps (attention per tile, batched)
        h = x + torch.cat([F.conv2d(v[i:i + 1], mix[i][:, :, None, None]) for i in range(x.shape[0])])
    h = h[:, :, a0:a1, b0:b1]
    t = F.conv2d(F.conv2d(channel_layer_norm(h, n2w, n2b, eps[1]), w_in), w_dw, padding=1, groups=w_dw.shape[0])
    f = F.conv2d(_gate(t), w_out)
    h, f = h[:, :, r0:r1, c0:c1], f[:, :, r0:r1, c0:c1]
    return h + f if out is None else torch.add(h, f, out=out)


def _gate(t: torch.Tensor) -> torch.Tensor:
    """GELU(first half of the channels of ``t``) * second half, as ``GatedFeedForward`` computes it.

    For a channels_last ``t``, its GELU half is a channel slice; torch's erf GELU on such a strided
    view runs a scalar loop, ~8x slower than on a contiguous tensor (measured on a 43x516 chunk with
    112 channels: 3.7 vs 0.43 ms; the copy costs 0.5 ms), and its output would come back
    channels-first, which makes the product slow too. So the half is copied first.
    """
    tn = t.permute(0, 2, 3, 1)  # (B,H,W,2*hidden): contiguous for channels_last
    hidden = tn.shape[-1] // 2
    g = F.gelu(tn[..., :hidden].contiguous())
    g.mul_(tn[..., hidden:])
    return g.permute(0, 3, 1, 2)


def _chunked_block(block: TransformerBlock, mix: torch.Tensor, x: torch.Tensor, chunk: Optional[Tuple[int, int]],
                   reuse: Callable[[torch.Tensor, Tuple[int, ...]], Optional[torch.Tensor]]) -> torch.Tensor:
    """The block on ``x`` (B,C,H,W), chunk by chunk (receptive radius 2), into a free tensor if ``reuse``
    has one; the residual sums are written straight into it (no chunk-sized result to copy)."""
    height, width = x.shape[-2:]
    wins = _windows(height, width, chunk, 2)
    weights, eps = _block_weights(block), (block.norm1.eps, block.norm2.eps)
    if len(wins) == 1:
        return _block_window(x, mix, weights, eps, (0, height, 0, width, 0, height, 0, width))
    out = reuse(x, tuple(x.shape))
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    for r, c in wins:
        xw = _crop(x, r, c)
        hw, ww = xw.shape[-2:]
        r0, r1, c0, c1 = r[0] - r[2], r[1] - r[2], c[0] - c[2], c[1] - c[2]  # the output, in the window
        # the feed-forward half one pixel beyond the output where the window has a halo, which
        # _splits makes either 0 (a tile edge: zero padding is right there) or >= 2
        a0, a1, b0, b1 = max(0, r0 - 1), min(hw, r1 + 1), max(0, c0 - 1), min(ww, c1 + 1)
        crop = (a0, a1, b0, b1, r0 - a0, r1 - a0, c0 - b0, c1 - b0)
        _block_window(xw, mix, weights, eps, crop, out=out[:, :, r[0]:r[1], c[0]:c[1]])
    return out


def advance(stages: Sequence[Stage], state: State, ms_up: Optional[torch.Tensor], pan: Optional[torch.Tensor],
            chunk: Optional[Tuple[int, int]], *, stop_at_missing: bool = False, owned: bool = False) -> State:
    """Run ``state`` through the stages from ``state.pos``, in chunks of ``chunk`` = (rows, cols).

    Blocks use their fixed ``scene_stats`` map, else (``stop_at_missing`` False) the map of each tile
    itself. With ``stop_at_missing``, stop at the first block without a fixed map and return the
    state there (its ``x`` is that block's input). ``ms_up`` (B,4,H,W) and ``pan`` (B,1,H,W) are
    needed only by stages with ``inputs``. After the last stage ``x`` is the network's output.
    ``owned``: ``state.x`` may be overwritten (else it is left as it is). The returned state's
    ``spares`` are free tensors to pass on to the next call (as ``state.spares``).
    """
    x, pos = state.x, state.pos
    # Stages write into free tensors of the right shape (the features two stages back, or a tile
    # before) instead of new ones: a new 28-channel tile tensor costs a page fault per 4 KiB (~10 % of
    # the run time), and above glibc's largest mmap threshold (32 MiB) the heap cannot keep them.
    pool = list(state.spares)

    def reuse(like: torch.Tensor, shape: Tuple[int, ...]) -> Optional[torch.Tensor]:
        for i, t in enumerate(pool):
            # a view into a larger storage (one tile of a kept batch) may share it with live features
            whole = t.untyped_storage().nbytes() == t.numel() * t.element_size()
            if (whole and tuple(t.shape) == shape and t.dtype == like.dtype and t.device == like.device
                    and t.is_contiguous(memory_format=torch.channels_last)):
                return pool.pop(i)
        return None

    with torch.inference_mode():
        while pos < len(stages):
            st = stages[pos]
            if isinstance(st, Local):
                if st.inputs and (ms_up is None or pan is None):
                    raise AssertionError(f"stage {pos} reads ms_up and pan, which were not given")
                y = _chunked(st.fn, st.radius, chunk, (x, ms_up, pan), reuse)
            else:
                stats = st.block.attn.fixed_stats
                if stats is None and stop_at_missing:
                    break
                assert x is not None
                if stats is None:
                    per = block_sums(st.block, x, None, chunk, per_sample=True)
                    for s in per:
                        s.finalise()
                with torch.autocast(x.device.type, enabled=False):  # the map in float32 under autocast
                    if stats is None:
                        mix = torch.stack([mixing_matrix(st.block, s) for s in per])
                        if mix.shape[0] == 1:
                            mix = mix[0]
                    else:
                        mix = mixing_matrix(st.block, stats)
                mix = mix.to(x.dtype)
                y = _chunked_block(st.block, mix, x, chunk, reuse)
            if owned and x is not None and x is not y:
                pool.append(x)  # free now: the next stage may write into it
            x, owned = y, True
            pos += 1
    return State(x, pos, pool[-MAX_SPARES:])


def forward(model: nn.Module, ms_up: torch.Tensor, pan: torch.Tensor,
            chunk: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """``model(ms_up, pan)`` computed stage by stage in chunks of ``chunk`` = (rows, cols) (None: whole tiles)."""
    cl = torch.channels_last
    state = advance(stages_of(model), State(None), ms_up.contiguous(memory_format=cl),
                    pan.contiguous(memory_format=cl), chunk)
    assert state.x is not None
    return state.x
