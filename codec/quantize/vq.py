"""One vector-quantisation codebook that learns by exponential moving averages.

VQ-VAE (van den Oord et al. 2017, appendix) updates codewords as EMA cluster means
instead of by gradient; SoundStream and EnCodec add k-means initialisation on the first
batch and restart codes that fall out of use from vectors of the current batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class VQOutput:
    """Result of quantising `[B, D, T]` latents with one codebook."""

    quantized: torch.Tensor  # [B, D, T], straight-through: gradients flow to the input
    codes: torch.Tensor  # [B, T] int64
    commitment_loss: torch.Tensor  # scalar, beta * ||x - sg(q)||^2 (0 in eval mode)


def kmeans(samples: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None):
    """Plain Lloyd k-means. Returns `(centroids [k, D], counts [k])`.

    With fewer samples than `k`, centroids are drawn with replacement, as EnCodec does.
    """
    n = samples.shape[0]
    if n >= k:
        idx = torch.randperm(n, generator=generator, device=samples.device)[:k]
    else:
        idx = torch.randint(0, n, (k,), generator=generator, device=samples.device)
    centroids = samples[idx].clone()
    counts = torch.zeros(k, device=samples.device)
    for _ in range(iters):
        assign = torch.cdist(samples, centroids).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k).to(samples.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, samples)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, counts


def _world_size() -> int:
    """Processes that share this codebook (1 outside `torch.distributed`)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _source_rank(has_vectors: bool, device: torch.device) -> int | None:
    """The lowest rank that has latent vectors this step (None when no rank has any):
    it draws the random vectors that every replica then receives."""
    if _world_size() == 1:
        return 0 if has_vectors else None
    world = _world_size()
    mine = torch.tensor([dist.get_rank() if has_vectors else world], device=device)
    dist.all_reduce(mine, op=dist.ReduceOp.MIN)
    return None if int(mine) == world else int(mine)


class EMAVectorQuantizer(nn.Module):
    """A codebook of `codebook_size` vectors of size `dim`, learnt by EMA.

    Args:
        dim: size of each latent vector.
        codebook_size: number of codewords (1024 gives 10 bits per code).
        decay: EMA decay of cluster sizes and sums (0.99 as in SoundStream/EnCodec).
        epsilon: Laplace smoothing of cluster sizes, so no codeword divides by zero.
        kmeans_iters: k-means iterations on the first training batch (0: random init).
        threshold_ema_dead_code: a code whose EMA cluster size (assignments per step)
            falls below this is restarted from a random vector of the current batch
            (0 disables). See `CodecConfig` for why the default is small.
        commitment_weight: beta of the commitment loss (0.25, VQ-VAE).

    Under `torch.distributed` (data-parallel training) the replicas pool their EMA
    statistics with an all-reduce and take k-means centroids and restarted codes from
    one rank, so every replica keeps the same codebook, as in EnCodec.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int = 1024,
        *,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 0.01,
        commitment_weight: float = 0.25,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.decay = decay
        self.epsilon = epsilon
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.commitment_weight = commitment_weight
        init = (
            torch.randn(codebook_size, dim)
            if kmeans_iters == 0
            else torch.zeros(codebook_size, dim)
        )
        self.register_buffer("initialized", torch.tensor(kmeans_iters == 0))
        self.register_buffer("codebook", init)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", init.clone())
        self.last_restarted = 0  # codes restarted at the last training step, for logging

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> VQOutput:
        """Quantise `x [B, D, T]`. In training mode, update the codebook from the items
        where `mask [B]` is true (all items when `mask` is None)."""
        b, d, t = x.shape
        flat = x.permute(0, 2, 1).reshape(-1, d)
        keep = slice(None) if mask is None else mask.repeat_interleave(t)
        used = flat[keep].detach().float()  # the vectors the codebook learns from
        if self.training and not bool(self.initialized):
            self._kmeans_init(used)
        codes = self.nearest(flat).view(b, t)
        quantized = self.lookup(codes)  # quantise with the codebook as it was, then learn
        if self.training:
            self._learn(used, codes.reshape(-1)[keep])
            err = (x - quantized.detach()).pow(2).mean(dim=(1, 2))
            if mask is not None:
                err = err * mask / mask.float().mean().clamp_min(1e-8)
            commitment = self.commitment_weight * err.mean()
        else:
            commitment = x.new_zeros(())
        quantized = x + (quantized - x).detach()
        return VQOutput(quantized=quantized, codes=codes, commitment_loss=commitment)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the closest codeword for each row of `flat [N, D]` -> `[N]`.

        Ranks `||c||^2 - 2 x.c`, the squared distance less `||x||^2`, which is the same
        for every codeword of a row: one GEMM and one pass over the `[N, K]` scores. In
        float32 even under autocast: bf16 scores would tie codewords that differ."""
        book = self.codebook
        with torch.autocast(flat.device.type, enabled=False):
            x = flat.detach().to(book.dtype)
            scores = torch.addmm(book.pow(2).sum(1), x, book.t(), alpha=-2)
        return scores.argmin(dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codewords for `codes [B, T]` -> `[B, D, T]`."""
        return nn.functional.embedding(codes, self.codebook).permute(0, 2, 1)

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        src = _source_rank(flat.shape[0] > 0, flat.device)
        if src is None:
            return
        if _world_size() == 1 or dist.get_rank() == src:
            centroids, counts = kmeans(flat, self.codebook_size, self.kmeans_iters)
            self.codebook.copy_(centroids)
            self.cluster_size.copy_(counts)
            self.embed_sum.copy_(centroids * counts[:, None])
        if _world_size() > 1:
            for buffer in (self.codebook, self.cluster_size, self.embed_sum):
                dist.broadcast(buffer, src)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _learn(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        if flat.shape[0] == 0 and _world_size() == 1:
            return
        self.ema_update(flat, codes)
        self.last_restarted = self.restart_dead_codes(flat)

    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step of cluster sizes and sums, then Laplace-smoothed means."""
        onehot_counts = torch.bincount(codes, minlength=self.codebook_size).to(flat.dtype)
        batch_sum = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat)
        if _world_size() > 1:
            dist.all_reduce(onehot_counts)
            dist.all_reduce(batch_sum)
        self.cluster_size.mul_(self.decay).add_(onehot_counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(batch_sum, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def restart_dead_codes(self, flat: torch.Tensor) -> int:
        """Replace codes used less than the threshold by random batch vectors.

        A restarted code's statistics are reset to those of an average code (its EMA
        count becomes the mean count), so the next EMA step keeps it where it was put
        instead of pulling it back to its stale mean, and it has as long as an average
        code to win assignments before it can be restarted again. Returns the count.
        """
        if self.threshold_ema_dead_code <= 0:
            return 0
        dead = self.cluster_size < self.threshold_ema_dead_code
        n_dead = int(dead.sum())  # the same on every replica: cluster sizes are pooled
        if n_dead == 0:
            return 0
        src = _source_rank(flat.shape[0] > 0, flat.device)
        if src is None:
            return 0
        if _world_size() == 1 or dist.get_rank() == src:
            picks = flat[torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)]
        else:
            picks = flat.new_empty(n_dead, self.dim)
        if _world_size() > 1:
            dist.broadcast(picks, src)
        count = self.cluster_size.mean().clamp_min(self.threshold_ema_dead_code)
        self.codebook[dead] = picks
        self.cluster_size[dead] = count
        self.embed_sum[dead] = picks * count
        return n_dead
