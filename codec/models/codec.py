"""The codec: SEANet encoder -> residual VQ -> SEANet decoder (SoundStream / EnCodec).

A pure `nn.Module`: tensors in, tensors out, no files. `encode` and `decode` are the
inference API; `forward` is the training pass that also returns the losses the
quantiser owns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from codec.config import CodecConfig
from codec.errors import CodecError
from codec.nn.seanet import ResidualUnit, SEANetDecoder, SEANetEncoder
from codec.quantize.rvq import ResidualVectorQuantizer


@dataclass
class CodecOutput:
    """Result of a training pass over `[B, 1, T]` audio."""

    audio: torch.Tensor  # [B, 1, T] reconstruction, same length as the input
    codes: torch.Tensor  # [B, Q, F]
    commitment_loss: torch.Tensor  # scalar
    n_codebooks: torch.Tensor  # [B] codebooks each item used (quantizer dropout)


class CodecModel(nn.Module):
    """Neural audio codec built from a `CodecConfig`.

    Example:
        >>> model = CodecModel(CodecConfig()).eval()
        >>> codes = model.encode(torch.zeros(16000), bitrate=6.0)   # [12, 50]
        >>> wav = model.decode(codes)                                # [16000]
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        seanet = dict(
            channels=config.channels,
            latent_dim=config.latent_dim,
            ratios=config.ratios,
            dilations=config.dilations,
            outer_dilations=config.outer_dilations,
            kernel_size=config.kernel_size,
            residual_kernel_size=config.residual_kernel_size,
            causal=config.causal,
            activation=config.activation or "elu",
        )
        self.encoder = SEANetEncoder(**seanet)
        self.decoder = SEANetDecoder(**seanet)
        self.quantizer = ResidualVectorQuantizer(
            config.latent_dim,
            config.n_codebooks,
            config.codebook_size,
            quantizer_dropout=config.quantizer_dropout,
            decay=config.ema_decay,
            kmeans_iters=config.kmeans_iters,
            threshold_ema_dead_code=config.threshold_ema_dead_code,
            commitment_weight=config.commitment_weight,
        )

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def bitrates(self) -> list[float]:
        """Every bitrate this model can code at, in kbps (one per number of codebooks)."""
        step = self.config.kbps_per_codebook
        return [round(step * n, 3) for n in range(1, self.config.n_codebooks + 1)]

    def n_codebooks_for(self, bitrate: float | None) -> int:
        """Codebooks needed for `bitrate` kbps (None: all); must be one of `bitrates()`."""
        if bitrate is None:
            return self.config.n_codebooks
        n = bitrate / self.config.kbps_per_codebook
        if (
            not math.isclose(n, round(n), abs_tol=1e-6)
            or not 1 <= round(n) <= self.config.n_codebooks
        ):
            choices = ", ".join(f"{b:g}" for b in self.bitrates())
            raise CodecError(f"bitrate {bitrate:g} kbps is not available; choose one of {choices}")
        return round(n)

    def forward(self, audio: torch.Tensor) -> CodecOutput:
        """Training pass: `[B, 1, T] -> CodecOutput` with audio trimmed back to `T`."""
        length = audio.shape[-1]
        z = self.encoder(self._pad(audio))
        # Nearest-codeword search and EMA statistics need float32 under bf16 autocast.
        with torch.autocast(device_type=z.device.type, enabled=False):
            q = self.quantizer(z.float())
        out = self.decoder(q.quantized)[..., :length]
        return CodecOutput(out, q.codes, q.commitment_loss, q.n_codebooks)

    def encode(self, wav: torch.Tensor, bitrate: float | None = None) -> torch.Tensor:
        """Codes of `wav` at `bitrate` kbps: `[T] -> [Q, F]` or `[B, T] -> [B, Q, F]`,
        with `F = ceil(T / hop_length)`."""
        batched = wav.dim() == 2
        x = (wav if batched else wav[None])[:, None, :]
        codes = self.quantizer.encode(self.encoder(self._pad(x)), self.n_codebooks_for(bitrate))
        return codes if batched else codes[0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Audio from codes: `[Q, F] -> [F * hop]` or `[B, Q, F] -> [B, F * hop]`."""
        batched = codes.dim() == 3
        c = codes if batched else codes[None]
        if not 1 <= c.shape[1] <= self.config.n_codebooks:
            raise CodecError(f"expected 1 to {self.config.n_codebooks} codebooks, got {c.shape[1]}")
        wav = self.decoder(self.quantizer.decode(c))[:, 0]
        return wav if batched else wav[0]

    def receptive_field(self) -> tuple[int, int]:
        """(encoder, decoder) history each output depends on: samples of input audio
        per code frame, and code frames per output sample. Used to pick the context of
        chunked processing so chunk boundaries change nothing."""
        return _receptive_field(self.encoder), _receptive_field(self.decoder)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        extra = -x.shape[-1] % self.hop_length
        return nn.functional.pad(x, (0, extra))


def transfer_weights(source: CodecModel, target: CodecModel) -> None:
    """Copy `source`'s weights and codebooks into `target`, a model of the same
    architecture or one whose stages keep some of `source`'s residual units and drop
    the others (e.g. a smaller `outer_dilations`): a start for fine-tuning a faster
    model. Each residual unit is an identity plus a correction, so the pruned model
    still works before it has learned to do without the units it lost."""
    for part in ("encoder", "decoder"):
        src = list(getattr(source, part).model)
        i = 0
        for layer in getattr(target, part).model:
            while (
                i < len(src) and isinstance(src[i], ResidualUnit) and not _same_layer(src[i], layer)
            ):
                i += 1  # a residual unit the target has dropped
            if i == len(src) or not _same_layer(src[i], layer):
                raise CodecError(f"the {part}s differ beyond dropped residual units")
            layer.load_state_dict(src[i].state_dict())
            i += 1
        if any(not isinstance(m, ResidualUnit) for m in src[i:]):
            raise CodecError(f"the {part}s differ beyond dropped residual units")
    target.quantizer.load_state_dict(source.quantizer.state_dict())


def _same_layer(a: nn.Module, b: nn.Module) -> bool:
    if type(a) is not type(b) or getattr(a, "dilation", None) != getattr(b, "dilation", None):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def _receptive_field(module: nn.Module) -> int:
    """Receptive field, in input steps, of a stack of convolutions and transposed ones."""
    field, scale = 1.0, 1.0  # scale: input steps per step of the current layer
    for m in module.modules():
        if isinstance(m, nn.Conv1d):
            (k,), (s,), (d,) = m.kernel_size, m.stride, m.dilation
            field += (k - 1) * d * scale
            scale *= s
        elif isinstance(m, nn.ConvTranspose1d):
            (k,), (s,) = m.kernel_size, m.stride
            scale /= s
            field += (k - 1) * scale
    return math.ceil(field)
