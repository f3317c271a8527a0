"""Bit-exact inference of a `CodePrior`, so an entropy decoder sees the encoder's numbers.

An arithmetic decoder must rebuild, symbol by symbol, exactly the probabilities the
encoder used; a difference in the last bit of one float can derail the rest of the file.
Floating-point results depend on the order of summation, which BLAS chooses by thread
count, matrix shape and CPU, so the encoder (all frames at once) and the decoder (one
frame, one codebook at a time) would disagree now and then.

This module makes order irrelevant instead of fixing it. Every sum it computes is a sum
of integers below 2^53 held in float64, which is exact in any order:

- matrix products quantise their input rows (a scale per row) and use weights quantised
  per output column (8 bits), then rescale; the input gets as many bits (10 at most) as
  keep every partial sum below 2^24, so float32 BLAS is exact too, and twice as fast;
- embeddings are integers on one scale per family, so the codes' embeddings add exactly;
- RMSNorm sums the squares of a quantised row (and is folded into the next product);
- softmax reads `exp` from a fixed integer table indexed by the rounded distance to the
  row maximum (1/256 nat steps), so no `exp` from a maths library is ever called.

Everything else is element-wise IEEE arithmetic (+, -, *, /, sqrt, rint), which is
correctly rounded and so identical on every code path. The results therefore do not
depend on thread count, batch size, chunking or whether frames arrive one at a time.
The quantised model predicts as well as the float one to within about 0.01 bit/token.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from codec.prior.model import CodePrior, PriorConfig, alibi_slopes

# The arithmetic below is part of the entropy-coded format: any change to what it
# computes must bump this version (it enters every prior's id).
EXACT_VERSION = 1
ACT_MAX = 2**15 - 1  # attention and norms: 16-bit signed activations, a scale per row
WEIGHT_MAX = 2**7 - 1  # weights: 8-bit signed, one scale per output column
LINEAR_ACT_MAX = 2**9 - 1  # inputs of a matrix product: at most 10-bit signed
FLOAT32_EXACT = 2**24  # integers below this add exactly in float32
EMBED_MAX = 2**15 - 1  # embeddings: 16-bit signed, one scale per family
EXP_RES = 256  # softmax table steps per nat
EXP_SPAN = 32  # nats below the maximum that still get weight
EXP_ONE = 2**30  # table value of exp(0)
# exp(-i / EXP_RES) * EXP_ONE, rounded; beyond EXP_SPAN nats (and for masked keys) 0.
EXP_TABLE = np.array(
    [round(EXP_ONE * math.exp(-i / EXP_RES)) for i in range(EXP_SPAN * EXP_RES)] + [0],
    dtype=np.float64,
)
_EXP_TABLE_INT = EXP_TABLE.astype(np.int64)
FREQ_BITS = 24  # frequency tables of the range coder sum to at most 2^24
FREQ_TOTAL = 1 << FREQ_BITS


def quant_rows(x: np.ndarray, qmax: int = ACT_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued `xi` and per-row scale `s` (`[..., 1]`) with `x ~= xi * s`."""
    s = np.abs(x).max(axis=-1, keepdims=True)
    np.maximum(s, 1e-300, out=s)
    s /= qmax
    xi = x / s
    return np.rint(xi, out=xi), s


@dataclass
class QLinear:
    """A weight `[in, out]` quantised per output column: integer values and scales.

    Inputs are quantised to `act_max` levels, the most for which `act_max * WEIGHT_MAX *
    in` stays below 2^24: the product then runs exactly in float32.
    """

    w: np.ndarray  # [in, out], integer-valued float32
    scale: np.ndarray  # [out]
    act_max: int

    @classmethod
    def from_torch(cls, weight: torch.Tensor) -> QLinear:
        """From an `nn.Linear` weight `[out, in]` (or an `[in, out]` matrix, transposed)."""
        w = weight.detach().double().numpy().T
        scale = np.maximum(np.abs(w).max(axis=0), 1e-300) / WEIGHT_MAX
        act_max = min(LINEAR_ACT_MAX, (FLOAT32_EXACT - 1) // (WEIGHT_MAX * w.shape[0]))
        if act_max < 15:
            raise ValueError(f"a {w.shape[0]}-input layer is too wide for exact float32 products")
        wi = np.ascontiguousarray(np.rint(w / scale), dtype=np.float32)
        return cls(wi, scale, act_max)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 1 and x.ndim == 2:  # one row (a decoder step): the same
            row = x[0]  # operations with a Python float for the scale, fewer array calls
            s = max(float(np.abs(row).max()), 1e-300) / self.act_max
            xi = np.rint(row / s)
            return ((xi.astype(np.float32) @ self.w) * (s * self.scale))[None]
        xi, sx = quant_rows(x, self.act_max)
        return (xi.astype(np.float32) @ self.w) * (sx * self.scale)


@dataclass
class QNormLinear:
    """RMSNorm then a linear layer, as one exact step: the norm's gain is folded into
    the weights, and its 1/rms into the per-row scale of the quantised input."""

    linear: QLinear  # weights already multiplied by the gain, row by row
    eps: float

    @classmethod
    def from_torch(cls, gain: torch.Tensor, weight: torch.Tensor, eps: float) -> QNormLinear:
        """From an RMSNorm gain `[in]` and an `nn.Linear` weight `[out, in]`."""
        return cls(QLinear.from_torch(weight.double() * gain.double()[None, :]), eps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        lin = self.linear
        if x.shape[0] == 1 and x.ndim == 2:  # one row, as in QLinear
            row = x[0]
            s = max(float(np.abs(row).max()), 1e-300) / lin.act_max
            xi = np.rint(row / s)
            mean_square = float(np.dot(xi, xi)) / x.shape[-1] * (s * s)
            row_scale = s / math.sqrt(mean_square + self.eps)
            return ((xi.astype(np.float32) @ lin.w) * (row_scale * lin.scale))[None]
        xi, sx = quant_rows(x, lin.act_max)
        mean_square = np.sum(xi * xi, axis=-1, keepdims=True) / x.shape[-1] * (sx * sx)
        row_scale = sx / np.sqrt(mean_square + self.eps)
        return (xi.astype(np.float32) @ lin.w) * (row_scale * lin.scale)


def _exp_index(scores: np.ndarray) -> np.ndarray:
    """Row of `EXP_TABLE` for each score: its distance below the row's maximum, in
    1/EXP_RES nat steps, rounded (the last row, 0, beyond EXP_SPAN nats)."""
    z = scores - scores.max(axis=-1, keepdims=True)
    index = np.minimum(-z * EXP_RES, len(EXP_TABLE) - 1)
    return np.rint(index, out=index).astype(np.int64)


def exact_softmax_weights(scores: np.ndarray) -> np.ndarray:
    """Integer-valued weights proportional to softmax(scores) along the last axis."""
    return EXP_TABLE[_exp_index(scores)]


def frequencies(logits: np.ndarray) -> np.ndarray:
    """Integer frequency tables `[..., K]` (each >= 1, summing to at most 2^24).

    Deterministic given the logits: an integer softmax, then integer division.
    """
    w = _EXP_TABLE_INT[_exp_index(logits)]
    total = w.sum(axis=-1, keepdims=True)
    w *= FREQ_TOTAL - logits.shape[-1]
    w //= total
    w += 1
    return w


class KVCache:
    """Quantised keys and values of one layer's recent frames, in a buffer that grows
    in place: the frames later ones can still see (`keep`) are moved to the front only
    when it is full, so a step costs no copy of the whole cache."""

    def __init__(self, n_heads: int, head_dim: int, keep: int, capacity: int = 512) -> None:
        self.keep = keep
        self.start = self.end = 0
        self.k = np.zeros((n_heads, max(capacity, keep + 1), head_dim))
        self.v = np.zeros_like(self.k)
        self.sk = np.zeros((n_heads, self.k.shape[1], 1))
        self.sv = np.zeros_like(self.sk)

    def append(self, k, sk, v, sv) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Add F frames (`[H, F, dh]` and `[H, F, 1]` scales); return the keys, key
        scales, values and value scales of the kept frames then the new ones, in order."""
        f = k.shape[1]
        self.start = max(self.start, self.end - self.keep)
        n = self.end - self.start
        if self.end + f > self.k.shape[1]:
            arrays = [self.k, self.sk, self.v, self.sv]
            if n + f > self.k.shape[1]:  # a chunk larger than the buffer: grow it
                size = n + f + self.keep
                arrays = [np.zeros((a.shape[0], size, a.shape[2])) for a in arrays]
            for new, old in zip(arrays, [self.k, self.sk, self.v, self.sv], strict=True):
                new[:, :n] = old[:, self.start : self.end]
            self.k, self.sk, self.v, self.sv = arrays
            self.start, self.end = 0, n
        for buffer, x in ((self.k, k), (self.sk, sk), (self.v, v), (self.sv, sv)):
            buffer[:, self.end : self.end + f] = x
        self.end += f
        window = slice(self.start, self.end)
        return self.k[:, window], self.sk[:, window], self.v[:, window], self.sv[:, window]


@dataclass
class PriorState:
    """Where an `ExactPrior` is in a stream: frames seen, caches, the last frame's codes."""

    n_q: int
    position: int = 0
    caches: list[KVCache] = field(default_factory=list)
    last: np.ndarray | None = None  # [Q] codes of the previous frame, None before the first


class ExactPrior:
    """The integer-exact twin of a `CodePrior`, in NumPy.

    Example:
        >>> exact = ExactPrior(prior)
        >>> state = exact.start(n_q=12)
        >>> logits = exact.logits(state, codes)   # [F, Q, K] for codes [Q, F]; advances state
        >>> summary = exact.next_summary(state)   # one frame at a time, as a decoder does
        >>> logits0 = exact.depth_logits(summary, exact.depth_offset(0, codes[:0]), 0)
    """

    def __init__(self, prior: CodePrior) -> None:
        c: PriorConfig = prior.config
        self.config = c
        self.head_dim = c.dim // c.n_heads
        sd = {k: v.detach().double() for k, v in prior.state_dict().items()}
        self.frame_scale, (self.frame_embed, self.count_embed) = _embed_family(
            sd["frame_embed"], sd["count_embed"]
        )
        self.depth_scale, (self.depth_embed, self.depth_pos) = _embed_family(
            sd["depth_embed"], sd["depth_pos"]
        )
        self.layers = []
        for i, block in enumerate(prior.blocks):
            p = f"blocks.{i}."
            self.layers.append(
                dict(
                    qkv=QNormLinear.from_torch(
                        sd[p + "norm1.weight"], sd[p + "attn.qkv.weight"], block.norm1.eps
                    ),
                    out=QLinear.from_torch(sd[p + "attn.out.weight"]),
                    up=QNormLinear.from_torch(
                        sd[p + "norm2.weight"], sd[p + "mlp.up.weight"], block.norm2.eps
                    ),
                    down=QLinear.from_torch(sd[p + "mlp.down.weight"]),
                )
            )
        self.depth_in = QNormLinear.from_torch(
            sd["norm.weight"], sd["depth_in.weight"], prior.norm.eps
        )
        self.depth_layers = [
            dict(
                up=QNormLinear.from_torch(
                    sd[f"depth_blocks.{i}.norm.weight"],
                    sd[f"depth_blocks.{i}.mlp.up.weight"],
                    b.norm.eps,
                ),
                down=QLinear.from_torch(sd[f"depth_blocks.{i}.mlp.down.weight"]),
            )
            for i, b in enumerate(prior.depth_blocks)
        ]
        self.heads = [
            QNormLinear.from_torch(sd["depth_norm.weight"], sd["heads"][q].T, prior.depth_norm.eps)
            for q in range(c.n_codebooks)
        ]
        self.slopes = alibi_slopes(c.n_heads).double().numpy()[:, None, None]
        self.inv_sqrt_dh = 1.0 / math.sqrt(self.head_dim)

    # -- the temporal Transformer -------------------------------------------------------

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one prior, a few shapes
    def _bias(self, f: int, n: int) -> np.ndarray:
        """`[H, f, n]` ALiBi bias of the last f of n frames, -inf outside the window."""
        distance = (np.arange(n - f, n)[:, None] - np.arange(n)[None, :]).astype(np.float64)
        bias = -self.slopes * distance
        bias[:, (distance < 0) | (distance >= self.config.window)] = -np.inf
        bias.flags.writeable = False
        return bias

    def start(self, n_q: int) -> PriorState:
        """A fresh stream of frames with `n_q` codebooks each."""
        if not 1 <= n_q <= self.config.n_codebooks:
            raise ValueError(
                f"the prior models 1 to {self.config.n_codebooks} codebooks, got {n_q}"
            )
        c = self.config
        caches = [KVCache(c.n_heads, self.head_dim, c.window - 1) for _ in range(c.n_layers)]
        return PriorState(n_q=n_q, caches=caches)

    def _frame_inputs(self, state: PriorState, prev: np.ndarray) -> np.ndarray:
        """`[F, dim]` temporal inputs from the codes `prev` `[n_q, F]` of each frame's
        previous frame (value `bos` before the first)."""
        rows = self.frame_embed[np.arange(state.n_q)[:, None], prev]  # [n_q, F, dim]
        total = rows.sum(axis=0) + self.count_embed[state.n_q - 1]  # integers: exact
        return total * self.frame_scale

    def _attend(self, layer: dict, cache: KVCache, x: np.ndarray) -> np.ndarray:
        """Self-attention (with its pre-norm) of the next F frames `x` over the cached
        frames and themselves."""
        c, h, dh = self.config, self.config.n_heads, self.head_dim
        f = x.shape[0]
        qkv = layer["qkv"](x).reshape(f, 3, h, dh).transpose(1, 2, 0, 3)  # [3, H, F, dh]
        (qi, ki, vi), (sq, sk, sv) = quant_rows(qkv)  # per row: all three at once
        keys, key_scale, values, value_scale = cache.append(ki, sk, vi, sv)
        n = keys.shape[1]
        scores = (qi @ keys.transpose(0, 2, 1)) * sq * key_scale.transpose(0, 2, 1)
        scores = scores * self.inv_sqrt_dh + self._bias(f, n)
        w = exact_softmax_weights(scores)  # [H, F, N], integers
        u = (w * value_scale.transpose(0, 2, 1)) / np.sum(w, axis=-1, keepdims=True)
        ui, su = quant_rows(u)
        y = (ui @ values) * su  # [H, F, dh]
        return layer["out"](y.transpose(1, 0, 2).reshape(f, c.dim))

    def _previous(self, state: PriorState) -> np.ndarray:
        """`[n_q]` codes of the frame before the next one (BOS at the start)."""
        if state.last is None:
            return np.full(state.n_q, self.config.bos, dtype=np.int64)
        return state.last

    def _temporal(self, state: PriorState, prev: np.ndarray) -> np.ndarray:
        """Depth inputs `[F, depth_dim]` of the next F frames, given their previous
        frames' codes `prev` `[n_q, F]`; moves `state.position` on."""
        x = self._frame_inputs(state, prev)
        for layer, cache in zip(self.layers, state.caches, strict=True):
            x = x + self._attend(layer, cache, x)
            x = x + layer["down"](np.maximum(layer["up"](x), 0.0))
        state.position += prev.shape[1]
        return self.depth_in(x)

    def summaries(self, state: PriorState, codes: np.ndarray) -> np.ndarray:
        """`[F, depth_dim]` depth inputs of the next F frames, whose codes are `codes`
        `[n_q, F]` (each frame sees only the frames before it); advances `state`."""
        prev = np.concatenate([self._previous(state)[:, None], codes[:, :-1]], axis=1)
        summary = self._temporal(state, prev)
        state.last = codes[:, -1].astype(np.int64)
        return summary

    def next_summary(self, state: PriorState) -> np.ndarray:
        """`[1, depth_dim]` depth input of the next frame, before its codes are known;
        call `state.last = codes` once they are."""
        return self._temporal(state, self._previous(state)[:, None])

    # -- the depth network --------------------------------------------------------------

    def depth_logits(self, summary: np.ndarray, above: np.ndarray, q: int) -> np.ndarray:
        """Logits `[..., K]` of codebook `q` from a frame summary `[..., depth_dim]` and
        `above`, the integer sum of the depth embeddings of codebooks < q (from
        `depth_offset`)."""
        z = summary + above * self.depth_scale
        for layer in self.depth_layers:
            z = z + layer["down"](np.maximum(layer["up"](z), 0.0))
        return self.heads[q](z)

    def depth_offset(self, q: int, codes_above: np.ndarray) -> np.ndarray:
        """Integer depth input of codebook q: its position plus the embeddings of the
        codes `codes_above` `[q, ...]` of codebooks 0..q-1."""
        total = self.depth_pos[q]
        for j in range(q):
            total = total + self.depth_embed[j, codes_above[j]]
        return total

    def logits(self, state: PriorState, codes: np.ndarray) -> np.ndarray:
        """Logits `[F, n_q, K]` of the codes `[n_q, F]` of the next F frames (teacher
        forcing, all frames at once); advances `state` past them."""
        codes = np.asarray(codes, dtype=np.int64)
        summary = self.summaries(state, codes)
        out = np.empty((codes.shape[1], state.n_q, self.config.codebook_size))
        for q in range(state.n_q):
            above = self.depth_offset(q, codes[:q])
            out[:, q] = self.depth_logits(summary, np.broadcast_to(above, summary.shape), q)
        return out


def _embed_family(*tables: torch.Tensor) -> tuple[float, list[np.ndarray]]:
    """Tables that are added together, as integers on one shared scale."""
    scale = max(float(t.abs().max()) for t in tables) / EMBED_MAX or 1.0
    return scale, [np.rint(t.numpy() / scale) for t in tables]
