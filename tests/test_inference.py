"""Compressing files: chunked processing, lengths, and the .codes round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from codec import bitstream, pretrained
from codec.audio import load_audio, save_audio
from codec.errors import AudioError, ModelMismatchError
from codec.inference import decode_chunks, decode_file, encode_chunks, encode_file
from tests.conftest import TINY, make_tiny_model, tone


def test_chunked_encoding_equals_whole_signal_encoding():
    # Few, well-separated codewords: float rounding that differs between chunk lengths
    # cannot flip a nearest-codeword choice, so the codes must match exactly.
    model = make_tiny_model(config=dataclasses.replace(TINY, codebook_size=16))
    wav = tone(3.1)
    whole = model.encode(torch.from_numpy(wav))
    blocks = np.array_split(wav, 7)  # uneven blocks, unrelated to the chunk size
    chunked = torch.cat(list(encode_chunks(model, blocks, chunk_frames=13)), dim=1)
    assert chunked.shape == whole.shape
    assert torch.equal(chunked, whole)


def test_chunked_decoding_equals_whole_decoding():
    model = make_tiny_model()
    codes = model.encode(torch.from_numpy(tone(3.1)))
    whole = model.decode(codes)
    chunked = torch.cat(list(decode_chunks(model, codes, chunk_frames=11)))
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)


def test_encode_file_writes_codes_of_the_requested_bitrate(tmp_path, speech_wav):
    model = pretrained.load(make_dir(tmp_path))
    header = encode_file(model, speech_wav, tmp_path / "x.codes", bitrate=model.bitrates()[1])
    f = bitstream.read(tmp_path / "x.codes", expected_model_id=model.model_id)
    assert f.codes.shape == (2, header.n_frames)
    assert header.original_length == len(load_audio(speech_wav, 16000))
    assert header.n_frames == -(-header.original_length // model.hop_length)
    assert header.bitrate == pytest.approx(model.bitrates()[1] * 1000)


def test_decode_file_restores_the_original_length(tmp_path, speech_wav):
    model = pretrained.load(make_dir(tmp_path))
    encode_file(model, speech_wav, tmp_path / "x.codes")
    decode_file(model, tmp_path / "x.codes", tmp_path / "y.flac")
    assert len(load_audio(tmp_path / "y.flac", 16000)) == len(load_audio(speech_wav, 16000))


def test_other_sample_rates_and_stereo_are_converted(tmp_path):
    model = pretrained.load(make_dir(tmp_path))
    stereo = np.stack([tone(1.0, 44100), tone(1.0, 44100, seed=1)], axis=1)
    import soundfile as sf

    sf.write(tmp_path / "in.wav", stereo, 44100)
    header = encode_file(model, tmp_path / "in.wav", tmp_path / "x.codes")
    assert abs(header.original_length - 16000) <= 2


def test_decoding_with_another_model_is_refused(tmp_path, speech_wav):
    a = pretrained.load(make_dir(tmp_path, seed=0, name="a"))
    b = pretrained.load(make_dir(tmp_path, seed=1, name="b"))
    encode_file(a, speech_wav, tmp_path / "x.codes")
    with pytest.raises(ModelMismatchError):
        decode_file(b, tmp_path / "x.codes", tmp_path / "y.wav")
    assert not (tmp_path / "y.wav").exists()


def test_silence_encodes_and_nan_is_refused(tmp_path):
    model = pretrained.load(make_dir(tmp_path))
    save_audio(tmp_path / "silence.wav", np.zeros(8000, np.float32), 16000)
    encode_file(model, tmp_path / "silence.wav", tmp_path / "s.codes")
    import soundfile as sf

    sf.write(tmp_path / "nan.wav", np.full(800, np.nan, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        encode_file(model, tmp_path / "nan.wav", tmp_path / "n.codes")
    assert not (tmp_path / "n.codes").exists()


def make_dir(tmp_path, seed: int = 0, name: str = "tiny"):
    path = tmp_path / name
    pretrained.save(make_tiny_model(seed), path)
    return path


def test_long_input_is_processed_in_bounded_chunks():
    model = make_tiny_model()
    seen = []
    model.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    blocks = (tone(1.0, seed=i) for i in range(20))  # 20 s, streamed
    frames = sum(c.shape[-1] for c in encode_chunks(model, blocks, chunk_frames=50))
    assert frames == 20 * 16000 // model.hop_length
    assert seen and max(seen) == 50 * model.hop_length  # no overlap recomputed
