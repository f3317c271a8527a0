"""Residual vector quantisation (SoundStream, Zeghidour et al. 2021).

Each codebook quantises what the previous ones left over, so the first `n` codebooks
alone give a coarser but valid code: that is what lets one model serve several bitrates.
Quantizer dropout trains for this by letting each item use a random number of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from codec.quantize.vq import EMAVectorQuantizer


@dataclass
class RVQOutput:
    """Result of residual quantisation of `[B, D, F]` latents."""

    quantized: torch.Tensor  # [B, D, F]
    codes: torch.Tensor  # [B, Q, F] int64 (every codebook, even those dropped)
    commitment_loss: torch.Tensor  # scalar, summed over codebooks
    n_codebooks: torch.Tensor  # [B] codebooks each item used


class ResidualVectorQuantizer(nn.Module):
    """A stack of `n_codebooks` EMA codebooks applied to successive residuals.

    Args:
        quantizer_dropout: in training, the probability that an item uses a random
            number of codebooks, uniform in 1..n_codebooks (DAC uses 0.5 per item;
            SoundStream drops per batch).
        **vq_kwargs: passed to each `EMAVectorQuantizer`.
    """

    def __init__(
        self,
        dim: int,
        n_codebooks: int = 12,
        codebook_size: int = 1024,
        *,
        quantizer_dropout: float = 0.5,
        **vq_kwargs,
    ) -> None:
        super().__init__()
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.quantizer_dropout = quantizer_dropout
        self.layers = nn.ModuleList(
            EMAVectorQuantizer(dim, codebook_size, **vq_kwargs) for _ in range(n_codebooks)
        )

    def forward(
        self,
        x: torch.Tensor,
        n_codebooks: int | None = None,
        generator: torch.Generator | None = None,
    ) -> RVQOutput:
        """Quantise `x [B, D, F]` with the first `n_codebooks` (all by default)."""
        b = x.shape[0]
        n = n_codebooks or self.n_codebooks
        per_item = torch.full((b,), n, dtype=torch.long, device=x.device)
        if self.training and self.quantizer_dropout > 0:
            drop = torch.rand(b, generator=generator) < self.quantizer_dropout
            random_n = torch.randint(1, n + 1, (b,), generator=generator)
            per_item = torch.where(drop, random_n, per_item.cpu()).to(x.device)
        residual = x
        quantized = torch.zeros_like(x)
        commitment = x.new_zeros(())
        codes = []
        for i, layer in enumerate(self.layers[:n]):
            mask = per_item > i
            out = layer(residual, mask=mask if self.training else None)
            quantized = quantized + out.quantized * mask[:, None, None]
            # Deeper codebooks see a constant residual, so the encoder gets exactly one
            # straight-through gradient (identity) and only the first commitment term,
            # as in EnCodec and DAC, whatever the number of codebooks used.
            residual = (residual - out.quantized).detach()
            commitment = commitment + out.commitment_loss
            codes.append(out.codes)
        return RVQOutput(quantized, torch.stack(codes, dim=1), commitment, per_item)

    def encode(self, x: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """Codes of `x [B, D, F]` with the first `n_codebooks` -> `[B, Q, F]`."""
        b, d, f = x.shape
        residual = x.permute(0, 2, 1).reshape(-1, d)  # [B * F, D], one row per frame
        codes = []
        for layer in self.layers[: n_codebooks or self.n_codebooks]:
            idx = layer.nearest(residual)
            residual = residual - layer.codebook[idx]
            codes.append(idx.view(b, f))
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of codewords for `codes [B, Q, F]` (any Q <= n_codebooks) -> `[B, D, F]`."""
        return sum(
            layer.lookup(codes[:, i]) for i, layer in enumerate(self.layers[: codes.shape[1]])
        )

    @torch.no_grad()
    def usage(self) -> dict[str, list[float]]:
        """Per codebook: perplexity of the EMA code distribution, and the dead codes
        restarted at the last training step."""
        perplexity, dead = [], []
        for layer in self.layers:
            p = layer.cluster_size / layer.cluster_size.sum()
            perplexity.append(float(torch.exp(-(p * (p + 1e-10).log()).sum())))
            dead.append(float(layer.last_restarted))
        return {"perplexity": perplexity, "dead_codes": dead}
