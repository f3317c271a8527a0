"""Streaming: codes and audio as samples arrive, equal to processing the whole signal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from codec.errors import CodecError
from codec.inference import decode_chunks, encode_chunks
from codec.models.codec import CodecModel
from codec.streaming import StreamingDecoder, StreamingEncoder
from tests.conftest import TINY, make_tiny_model, tone


@pytest.fixture(scope="module", params=[None, "snake"], ids=["elu", "snake"])
def model(request) -> CodecModel:
    # Few, well-separated codewords, so float rounding cannot flip a nearest codeword.
    return make_tiny_model(
        config=dataclasses.replace(TINY, codebook_size=16, activation=request.param)
    )


def encode_in_pieces(model, wav, sizes, chunk_frames=4):
    enc = StreamingEncoder(model, chunk_frames=chunk_frames)
    codes, start = [], 0
    for size in sizes:
        codes.append(enc.push(wav[start : start + size]))
        start += size
    codes.append(enc.push(wav[start:]))
    codes.append(enc.flush())
    return torch.cat(codes, dim=1)


def test_codes_do_not_depend_on_how_the_input_was_split(model):
    wav = tone(2.3)
    one_block = encode_in_pieces(model, wav, [])
    rng = np.random.default_rng(0)
    for _ in range(3):
        sizes = rng.integers(1, 3000, size=20).tolist()
        assert torch.equal(encode_in_pieces(model, wav, sizes), one_block)


def test_streamed_codes_equal_whole_signal_codes(model):
    wav = tone(2.3)
    whole = model.encode(torch.from_numpy(wav))
    for chunk_frames in (1, 3, 50):
        streamed = torch.cat(
            list(encode_chunks(model, np.array_split(wav, 7), None, chunk_frames)), 1
        )
        assert torch.equal(streamed, whole), chunk_frames


def test_streamed_audio_equals_whole_decoding(model):
    codes = model.encode(torch.from_numpy(tone(2.3)))
    whole = model.decode(codes)
    for chunk_frames in (1, 5, 500):
        streamed = torch.cat(list(decode_chunks(model, codes, chunk_frames)))
        assert streamed.shape == whole.shape
        torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=0)
    # pushing frames one at a time or all at once gives the same bits
    dec_a, dec_b = StreamingDecoder(model, chunk_frames=2), StreamingDecoder(model, chunk_frames=2)
    a = torch.cat(
        [dec_a.push(codes[:, i : i + 1]) for i in range(codes.shape[1])] + [dec_a.flush()]
    )
    b = torch.cat([dec_b.push(codes), dec_b.flush()])
    assert torch.equal(a, b)


def test_a_frame_is_ready_as_soon_as_its_last_sample_arrives(model):
    hop = model.hop_length
    enc = StreamingEncoder(model, chunk_frames=1)
    dec = StreamingDecoder(model, chunk_frames=1)
    wav = tone(0.1)
    assert enc.push(wav[: hop - 1]).shape == (TINY.n_codebooks, 0)
    codes = enc.push(wav[hop - 1 : hop])
    assert codes.shape == (TINY.n_codebooks, 1)  # latency: one frame, no lookahead
    assert dec.push(codes).shape == (hop,)


def test_flush_pads_the_last_frame_and_counts_the_samples(model):
    enc = StreamingEncoder(model, chunk_frames=4)
    enc.push(tone(0.05)[:700])
    codes = enc.flush()
    assert codes.shape[1] == -(-700 // model.hop_length)
    assert enc.samples_in == 700


def test_bitrate_selects_the_codebooks(model):
    enc = StreamingEncoder(model, bitrate=model.bitrates()[0], chunk_frames=1)
    assert enc.push(tone(0.1)).shape[0] == 1


def test_a_non_causal_model_cannot_stream():
    model = CodecModel(dataclasses.replace(TINY, causal=False)).eval()
    with pytest.raises(CodecError, match="causal"):
        StreamingEncoder(model)
    with pytest.raises(CodecError, match="causal"):
        StreamingDecoder(model)


def test_bad_input_is_refused(model):
    with pytest.raises(CodecError, match="NaN"):
        StreamingEncoder(model).push(np.full(400, np.nan, np.float32))
    dec = StreamingDecoder(model)
    with pytest.raises(CodecError, match=r"\[Q, F\]"):
        dec.push(torch.zeros(5, dtype=torch.long))
    dec.push(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(CodecError, match="started with 2 codebooks"):
        dec.push(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(CodecError, match="chunk_frames"):
        StreamingEncoder(model, chunk_frames=0)


def test_streams_are_independent(model):
    wav_a, wav_b = tone(0.5, seed=1), tone(0.5, seed=2)
    a, b = StreamingEncoder(model, chunk_frames=1), StreamingEncoder(model, chunk_frames=1)
    interleaved_a = []
    for i in range(0, len(wav_a), 640):
        interleaved_a.append(a.push(wav_a[i : i + 640]))
        b.push(wav_b[i : i + 640])
    alone = encode_in_pieces(model, wav_a, [], chunk_frames=1)
    assert torch.equal(torch.cat(interleaved_a + [a.flush()], 1), alone)


@pytest.mark.slow
def test_compiled_streaming_gives_the_same_codes_and_close_audio(model):
    wav = tone(1.0)
    plain = torch.cat(list(encode_chunks(model, [wav], None, 10)), 1)
    compiled = torch.cat(list(encode_chunks(model, [wav], None, 10, compile=True)), 1)
    assert torch.equal(compiled, plain)
    audio = torch.cat(list(decode_chunks(model, plain, 10)))
    audio_compiled = torch.cat(list(decode_chunks(model, plain, 10, compile=True)))
    torch.testing.assert_close(audio_compiled, audio, atol=1e-4, rtol=0)
