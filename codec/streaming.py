"""Encode and decode as audio arrives: frame-synchronous streaming for causal models.

    enc = StreamingEncoder(model, bitrate=6, chunk_frames=1)
    dec = StreamingDecoder(model, chunk_frames=1)
    for block in microphone():            # any block sizes
        codes = enc.push(block)           # [Q, F]: every whole frame so far
        play(dec.push(codes))             # [F * hop] samples
    play(dec.push(enc.flush()))           # the last, zero-padded frame

Every causal convolution keeps the tail of its history between calls, so nothing is
recomputed and the output is that of the whole signal processed at once. The work is
done in fixed groups of `chunk_frames` frames, whatever the sizes of the pushed blocks,
so a stream gives bit for bit the same codes and audio as `encode_file`/`decode_file`
(which stream in groups of the same default size) however its input was split.

Latency: the model's algorithmic latency is one frame (`hop_length` samples, 20 ms for
the 16 kHz models): a frame's codes are known once its last sample has arrived, and
decoding looks no further ahead. `chunk_frames` adds `chunk_frames - 1` frames of
buffering; use `chunk_frames=1` for the lowest latency, larger groups for throughput.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from codec.errors import CodecError
from codec.models.codec import CodecModel
from codec.models.postfilter import PostFilter
from codec.nn.conv import ConvTranspose1d, set_streaming

CHUNK_FRAMES = 100  # 2 s at 50 Hz: activations stay in cache, calls stay few


def _streaming_copy(model: CodecModel, part: str, compile: bool) -> torch.nn.Module:
    if not model.config.causal:
        raise CodecError("streaming needs a causal model; this one looks ahead")
    # A private copy holds this stream's history, so one model can serve many streams.
    module = set_streaming(copy.deepcopy(getattr(model, part)).eval())
    if not compile:
        return module
    # Transposed convolutions stay eager: inductor's code for their polyphase GEMM and
    # interleave is twice as slow as eager on CPU. The graph breaks there, and each
    # residual unit between them compiles on its own (12 in the default decoder), more
    # than dynamo's default of 8 compilations of one function.
    for m in module.modules():
        if isinstance(m, ConvTranspose1d):
            m._forward_streaming = torch.compiler.disable(m._forward_streaming)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(module, dynamic=False)


class StreamingEncoder:
    """Audio in, codes out, one frame at a time or many.

    Args:
        model: a causal `CodecModel`.
        bitrate: kbps, as for `model.encode` (default: all codebooks).
        chunk_frames: frames encoded per model call (see the module docstring).
        compile: run the encoder through `torch.compile` (inductor).
    """

    def __init__(
        self,
        model: CodecModel,
        bitrate: float | None = None,
        chunk_frames: int = CHUNK_FRAMES,
        *,
        compile: bool = False,
    ) -> None:
        if chunk_frames < 1:
            raise CodecError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.model = model
        self.n_codebooks = model.n_codebooks_for(bitrate)
        self.hop = model.hop_length
        self.chunk = chunk_frames * model.hop_length
        self.encoder = _streaming_copy(model, "encoder", compile)
        self._pending = np.zeros(0, dtype=np.float32)
        self.samples_in = 0  # samples pushed so far (the original length)

    @torch.inference_mode()
    def push(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Add mono samples `[N]` at the model's rate; returns the codes `[Q, F]` of the
        groups of frames they complete (F may be 0)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.isfinite(x).all():
            raise CodecError("audio contains NaN or infinite samples")
        self.samples_in += len(x)
        self._pending = np.concatenate([self._pending, x]) if len(self._pending) else x
        whole = len(self._pending) // self.chunk * self.chunk
        ready, self._pending = self._pending[:whole], self._pending[whole:]
        return self._encode(ready)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """Codes of what is left, the last partial frame zero-padded (as `model.encode`
        pads). The stream is finished after this."""
        left = len(self._pending)
        padded = np.zeros(-(-left // self.hop) * self.hop, dtype=np.float32)
        padded[:left] = self._pending
        self._pending = np.zeros(0, dtype=np.float32)
        return self._encode(padded)

    def _encode(self, x: np.ndarray) -> torch.Tensor:
        codes = [torch.zeros(self.n_codebooks, 0, dtype=torch.long)]
        for start in range(0, len(x), self.chunk):
            wav = torch.from_numpy(np.ascontiguousarray(x[start : start + self.chunk]))
            z = self.encoder(wav[None, None])
            codes.append(self.model.quantizer.encode(z, self.n_codebooks)[0])
        return torch.cat(codes, dim=1)


class StreamingDecoder:
    """Codes in, audio out: `push(codes [Q, F])` returns the samples of every complete
    group of `chunk_frames` frames; `flush()` returns the rest."""

    def __init__(
        self, model: CodecModel, chunk_frames: int = CHUNK_FRAMES, *, compile: bool = False
    ) -> None:
        if chunk_frames < 1:
            raise CodecError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.model = model
        self.chunk_frames = chunk_frames
        self.decoder = _streaming_copy(model, "decoder", compile)
        self.n_codebooks: int | None = None
        self._pending: torch.Tensor | None = None

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode the next frames `[Q, F]` (Q fixed for the whole stream)."""
        if codes.dim() != 2:
            raise CodecError(f"expected codes [Q, F], got shape {tuple(codes.shape)}")
        q = codes.shape[0]
        if not 1 <= q <= self.model.config.n_codebooks:
            raise CodecError(f"expected 1 to {self.model.config.n_codebooks} codebooks, got {q}")
        if self.n_codebooks not in (None, q):
            raise CodecError(f"the stream started with {self.n_codebooks} codebooks, not {q}")
        self.n_codebooks = q
        codes = codes.long()
        pending = codes if self._pending is None else torch.cat([self._pending, codes], 1)
        whole = pending.shape[1] // self.chunk_frames * self.chunk_frames
        self._pending = pending[:, whole:]
        return self._decode(pending[:, :whole])

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """Audio of the frames still buffered (fewer than `chunk_frames`)."""
        if self._pending is None:
            return torch.zeros(0)
        rest, self._pending = self._pending, self._pending[:, :0]
        return self._decode(rest)

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        out = [torch.zeros(0)]
        for start in range(0, codes.shape[1], self.chunk_frames):
            z = self.model.quantizer.decode(codes[None, :, start : start + self.chunk_frames])
            out.append(self.decoder(z)[0, 0])
        return torch.cat(out)


class StreamingPostFilter:
    """Decoded audio in, postfiltered audio out (`codec.models.postfilter`), in pieces.

    `push(samples)` returns every output sample whose STFT frames are all in, so the
    output runs `config.latency` samples behind the input; `flush()` returns the rest.
    Concatenated, the outputs are `postfilter(audio)`, as long as the input, up to float
    rounding: each causal convolution keeps its history, as in the decoder.
    """

    def __init__(self, postfilter: PostFilter) -> None:
        self.postfilter = set_streaming(copy.deepcopy(postfilter).eval())
        config = postfilter.config
        self.hop, self.lag = config.hop_length, config.latency
        self._input = torch.zeros(self.lag)  # frames start `lag` samples before the audio
        self._tail = torch.zeros(self.lag)  # the overlap-add not yet complete
        self._skip = self.lag  # outputs that come before the audio's first sample
        self.samples_in = self.samples_out = 0

    @torch.inference_mode()
    def push(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Add mono samples `[N]`; returns the filtered samples they complete."""
        x = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        self.samples_in += len(x)
        return self._run(torch.cat([self._input, x]))

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """The last samples, their frames completed with zeros. The stream ends here."""
        pending, emitted = len(self._input) - self.lag, self.samples_out
        out = self._run(torch.cat([self._input, torch.zeros(self.lag + (-pending) % self.hop)]))
        return out[: self.samples_in - emitted]

    def _run(self, buffer: torch.Tensor) -> torch.Tensor:
        n_frames = (len(buffer) - self.lag) // self.hop
        if n_frames < 1:
            self._input = buffer
            return torch.zeros(0)
        pf = self.postfilter
        out = pf.synthesis(
            pf.apply_gains(pf.frames(buffer[None, : n_frames * self.hop + self.lag]))
        )[0]
        out[: self.lag] += self._tail
        self._input = buffer[n_frames * self.hop :]
        done, self._tail = out[: n_frames * self.hop], out[n_frames * self.hop :].clone()
        skip = min(self._skip, len(done))
        self._skip -= skip
        self.samples_out += len(done) - skip
        return done[skip:]
