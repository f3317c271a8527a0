"""Lossless entropy coding of codes with a prior, and sampling codes from it.

Codes are coded frame by frame, codebook 0 first within a frame (the order of the
depth network), each with the frequency table `frequencies(logits)` of the exact prior.
The encoder computes all logits of a chunk at once; the decoder one codebook at a time,
the decoded code feeding the next prediction. `codec.prior.exact` makes both give the
same integers, so the decoder follows the encoder symbol for symbol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from codec.bitstream.rangecoder import RangeDecoder, RangeEncoder
from codec.errors import CodecError
from codec.prior.exact import ExactPrior, PriorState, frequencies

CHUNK_FRAMES = 100  # frames the encoder predicts at once: bounded memory on long files


class EntropyEncoder:
    """Range-code the codes of a stream, chunk by chunk, with a prior.

    Example:
        >>> enc = EntropyEncoder(prior.exact, n_q=12)
        >>> for chunk in chunks:            # [12, F_i] each, in order
        ...     enc.push(chunk)
        >>> payload = enc.finish()
    """

    def __init__(self, exact: ExactPrior, n_q: int, chunk_frames: int = CHUNK_FRAMES) -> None:
        self.exact = exact
        self.state = exact.start(n_q)
        self.chunk_frames = chunk_frames
        self.coder = RangeEncoder()
        self.n_frames = 0

    def push(self, codes: np.ndarray) -> None:
        """Code the next frames `[n_q, F]`."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] != self.state.n_q:
            raise ValueError(f"expected codes [{self.state.n_q}, F], got {list(codes.shape)}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.exact.config.codebook_size):
            raise ValueError("codes outside the prior's codebooks")
        encode = self.coder.encode
        for start in range(0, codes.shape[1], self.chunk_frames):
            part = codes[:, start : start + self.chunk_frames]
            freq = frequencies(self.exact.logits(self.state, part))  # [F, Q, K]
            symbols = part.T[..., None]  # [F, Q, 1]
            high = np.take_along_axis(np.cumsum(freq, axis=-1), symbols, -1)[..., 0]
            width = np.take_along_axis(freq, symbols, -1)[..., 0]
            total = freq.sum(axis=-1)
            for cum, f, t in zip(
                (high - width).ravel().tolist(),
                width.ravel().tolist(),
                total.ravel().tolist(),
                strict=True,
            ):
                encode(cum, f, t)
        self.n_frames += codes.shape[1]

    def finish(self) -> bytes:
        """The range-coded payload."""
        return self.coder.finish()


Chooser = Callable[[int, np.ndarray], int]  # (codebook, logits [K]) -> code


def _frames(
    exact: ExactPrior, state: PriorState, n_frames: int, choose: Chooser
) -> Iterator[np.ndarray]:
    """Frames `[n_q]` one by one, each code chosen by `choose` from its logits."""
    for _ in range(n_frames):
        summary = exact.next_summary(state)
        frame = np.empty(state.n_q, dtype=np.int64)
        running = 0
        for q in range(state.n_q):
            logits = exact.depth_logits(summary, exact.depth_pos[q] + running, q)[0]
            frame[q] = choose(q, logits)
            running = running + exact.depth_embed[q, frame[q]]
        state.last = frame
        yield frame


def _chunked(frames: Iterator[np.ndarray], chunk_frames: int) -> Iterator[np.ndarray]:
    """Frames `[n_q]` gathered into chunks `[n_q, F_i]` of at most `chunk_frames`."""
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == chunk_frames:
            yield np.stack(chunk, axis=1)
            chunk = []
    if chunk:
        yield np.stack(chunk, axis=1)


def decode_codes(
    exact: ExactPrior, payload: bytes, n_q: int, n_frames: int, chunk_frames: int = CHUNK_FRAMES
) -> Iterator[np.ndarray]:
    """Decode an `EntropyEncoder` payload into code chunks `[n_q, F_i]` (F in all)."""
    decoder = RangeDecoder(payload)

    def choose(q: int, logits: np.ndarray) -> int:
        freq = frequencies(logits)
        cum = np.cumsum(freq)
        symbol = int(np.searchsorted(cum, decoder.target(int(cum[-1])), side="right"))
        decoder.consume(int(cum[symbol] - freq[symbol]), int(freq[symbol]))
        return symbol

    yield from _chunked(_frames(exact, exact.start(n_q), n_frames, choose), chunk_frames)
    if decoder.pos < len(payload):  # a consistent stream is read to its end
        raise CodecError(
            f"entropy-coded payload has {len(payload) - decoder.pos} bytes its codes did not "
            "use: it is corrupt or was coded by another prior"
        )


def sampler(
    rng: np.random.Generator, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> Chooser:
    """A chooser that samples from the prior's logits: temperature, then top-k, then
    nucleus (top-p) truncation; greedy at temperature 0."""
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise CodecError("need temperature >= 0, top_k >= 0 and 0 < top_p <= 1")

    def choose(q: int, logits: np.ndarray) -> int:
        if temperature == 0:
            return int(np.argmax(logits))
        z = logits / temperature
        order = np.argsort(-z, kind="stable")
        if top_k:
            order = order[:top_k]
        p = np.exp(z[order] - z[order[0]])
        p /= p.sum()
        if top_p < 1:
            keep = int(np.searchsorted(np.cumsum(p), top_p)) + 1
            order, p = order[:keep], p[:keep] / p[:keep].sum()
        return int(order[rng.choice(len(order), p=p)])

    return choose


def sample_codes(
    exact: ExactPrior,
    n_frames: int,
    n_q: int,
    choose: Chooser,
    prompt: np.ndarray | None = None,
    chunk_frames: int = CHUNK_FRAMES,
) -> Iterator[np.ndarray]:
    """Sample `n_frames` frames as chunks `[n_q, F_i]`, continuing `prompt` `[n_q, P]`
    (not repeated in the output) if given."""
    state = exact.start(n_q)
    if prompt is not None and prompt.shape[1]:
        for start in range(0, prompt.shape[1], chunk_frames):
            exact.summaries(state, prompt[:n_q, start : start + chunk_frames])
    yield from _chunked(_frames(exact, state, n_frames, choose), chunk_frames)
