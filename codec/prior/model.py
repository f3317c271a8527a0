"""A Transformer prior over a codec's residual-VQ tokens (the float model, for training).

Frame t's Q codes are predicted in two stages, as in the RQ-Transformer (Lee et al. 2022):

- a causal **temporal** Transformer reads one vector per frame (the sum of the previous
  frame's Q code embeddings) and summarises the past into `h_t`;
- a small **depth** network predicts the codes of frame t one codebook after another:
  codebook q sees `h_t` and the codes of codebooks < q of the same frame (the sum of
  their embeddings), so the residual structure of RVQ is modelled inside each frame.

Attention uses ALiBi biases over a sliding window of `window` frames (stacked, the
layers reach `n_layers * (window - 1)` frames back): no positions are stored, long files
slide through with bounded memory, and every operation of the model
can be reproduced exactly by the integer inference in `codec.prior.exact`.

A frame with only its first `n` codebooks (a lower bitrate) is modelled by the same
network: the input sums only `n` embeddings and a learned vector tells the model `n`.
Code value `codebook_size` is BOS, the input of a file's first frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from codec.config import PriorConfig


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes, 2^(-8 (h + 1) / H): each head looks back its own distance."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])


def window_bias(n_heads: int, n_queries: int, n_keys: int, window: int) -> torch.Tensor:
    """`[H, n_queries, n_keys]` ALiBi bias; the queries are the last `n_queries` positions.

    Key j is visible from query i when `i - window < j <= i`; others get -inf.
    """
    q = torch.arange(n_keys - n_queries, n_keys)[:, None]
    k = torch.arange(n_keys)[None, :]
    distance = (q - k).float()
    bias = -alibi_slopes(n_heads)[:, None, None] * distance
    visible = (distance >= 0) & (distance < window)
    return bias.masked_fill(~visible, float("-inf"))


class RMSNorm(nn.Module):
    """x / rms(x) * gain (no mean subtraction, no bias)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MLP(nn.Module):
    """Linear -> ReLU -> Linear, no biases (ReLU is exact in integer inference)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)))


class Attention(nn.Module):
    """Multi-head causal self-attention with ALiBi over a sliding window."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias
        )
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm Transformer block."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = Attention(dim, n_heads)
        self.norm2 = RMSNorm(dim)
        self.mlp = MLP(dim, mlp_ratio * dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class DepthBlock(nn.Module):
    """Pre-norm residual MLP of the depth network (no attention: it is per codebook)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.mlp = MLP(dim, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class CodePrior(nn.Module):
    """p(codes) = prod_t prod_q p(c[q, t] | frames < t, codes < q of frame t).

    Example:
        >>> prior = CodePrior(PriorConfig(n_codebooks=4, codebook_size=16, dim=32))
        >>> codes = torch.randint(0, 16, (2, 4, 50))      # [B, Q, T]
        >>> prior.loss(codes).shape                       # mean nats per token
        torch.Size([])
    """

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        # Temporal input: one table per codebook (+ BOS), and one vector per codebook count.
        self.frame_embed = nn.Parameter(
            torch.randn(c.n_codebooks, c.codebook_size + 1, c.dim) * 0.02
        )
        self.count_embed = nn.Parameter(torch.zeros(c.n_codebooks, c.dim))
        self.blocks = nn.ModuleList(Block(c.dim, c.n_heads, c.mlp_ratio) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim)
        # Depth network: the frame summary, a codebook position, the codes above in the frame.
        self.depth_in = nn.Linear(c.dim, c.depth_dim, bias=False)
        self.depth_pos = nn.Parameter(torch.randn(c.n_codebooks, c.depth_dim) * 0.02)
        self.depth_embed = nn.Parameter(
            torch.randn(c.n_codebooks, c.codebook_size, c.depth_dim) * 0.02
        )
        self.depth_blocks = nn.ModuleList(DepthBlock(c.depth_dim) for _ in range(c.depth_layers))
        self.depth_norm = RMSNorm(c.depth_dim)
        self.heads = nn.Parameter(
            torch.randn(c.n_codebooks, c.depth_dim, c.codebook_size) / math.sqrt(c.depth_dim)
        )
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual outputs
            if name.endswith(("attn.out.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * max(c.n_layers, 1)))

    def frame_inputs(self, codes: torch.Tensor, n_q: torch.Tensor) -> torch.Tensor:
        """`[B, T, dim]` temporal inputs: for frame t, the codes of frame t - 1.

        `codes` `[B, Q, T]` may hold BOS frames (value `codebook_size`); only the first
        `n_q[b]` codebooks of each item are summed.
        """
        b, q, t = codes.shape
        c = self.config
        shifted = torch.cat([torch.full_like(codes[:, :, :1], c.bos), codes[:, :, :-1]], dim=2)
        table = self.frame_embed[torch.arange(q, device=codes.device)[None, :, None], shifted]
        used = (torch.arange(q, device=codes.device)[None, :] < n_q[:, None]).to(table.dtype)
        return (table * used[:, :, None, None]).sum(1) + self.count_embed[n_q - 1][:, None, :]

    def forward(self, codes: torch.Tensor, n_q: torch.Tensor | None = None) -> torch.Tensor:
        """Logits `[B, T, Q, K]` of every code of `codes` `[B, Q, T]` (teacher forcing)."""
        b, q, t = codes.shape
        c = self.config
        if q > c.n_codebooks:
            raise ValueError(f"the prior models {c.n_codebooks} codebooks, got {q}")
        if n_q is None:
            n_q = torch.full((b,), q, dtype=torch.long, device=codes.device)
        x = self.frame_inputs(codes, n_q)
        bias = window_bias(c.n_heads, t, t, c.window).to(x)
        for block in self.blocks:
            x = block(x, bias)
        h = self.norm(x)  # [B, T, D]
        # Depth input of codebook i: h_t, position i, the codes 0..i-1 of frame t.
        above = self.depth_embed[
            torch.arange(q, device=codes.device)[None, :, None],
            codes.clamp(max=c.codebook_size - 1),
        ]  # [B, Q, T, Dd]
        above = torch.cumsum(above, dim=1)
        above = torch.cat([torch.zeros_like(above[:, :1]), above[:, :-1]], dim=1)  # < i
        z = self.depth_in(h)[:, :, None, :] + self.depth_pos[:q] + above.permute(0, 2, 1, 3)
        for block in self.depth_blocks:
            z = block(z)
        z = self.depth_norm(z)  # [B, T, Q, Dd]
        return torch.einsum("btqd,qdk->btqk", z, self.heads[:q])

    def loss(
        self, codes: torch.Tensor, n_q: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean cross-entropy in nats per token of the codes `[B, Q, T]` that count.

        A token counts when its codebook is below the item's `n_q`, its value is not BOS,
        and `mask` `[B, T]` (if given) is true at its frame.
        """
        per_token = self.token_nll(codes, n_q)
        counted = self.counted(codes, n_q, mask)
        return (per_token * counted).sum() / counted.sum().clamp(min=1)

    def token_nll(self, codes: torch.Tensor, n_q: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, T, Q]` nats of each code (BOS targets give 0 and must be masked)."""
        logits = self(codes, n_q)
        target = codes.permute(0, 2, 1).clamp(max=self.config.codebook_size - 1)
        return F.cross_entropy(
            logits.flatten(0, 2).float(), target.flatten(), reduction="none"
        ).view(target.shape)

    def counted(
        self, codes: torch.Tensor, n_q: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`[B, T, Q]` float mask of the tokens that count in `loss`."""
        b, q, t = codes.shape
        keep = codes.permute(0, 2, 1) < self.config.codebook_size
        if n_q is not None:
            keep = keep & (torch.arange(q, device=codes.device)[None, None, :] < n_q[:, None, None])
        if mask is not None:
            keep = keep & mask[:, :, None]
        return keep.float()
