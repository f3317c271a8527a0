"""Reading, writing, resampling and finding audio files."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.audio import (
    AudioInfo,
    AudioWriter,
    audio_info,
    find_audio_files,
    iter_audio_blocks,
    load_audio,
    save_audio,
)
from codec.errors import AudioError

PCM16_STEP = 1 / 32768


def sine(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wav: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sample_rate)[spectrum.argmax()])


def write_float_wav(path: Path, data: np.ndarray, sample_rate: int) -> Path:
    sf.write(path, data, sample_rate, subtype="FLOAT")
    return path


# --- round trips and conversions -------------------------------------------------------


@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_save_then_load_round_trips_within_16_bit_quantisation(tmp_path, ext):
    wav = sine(440, 0.5, 16000)
    path = tmp_path / f"x{ext}"
    save_audio(path, wav, 16000)
    back = load_audio(path, 16000)
    assert back.dtype == np.float32 and back.shape == wav.shape
    np.testing.assert_allclose(back, wav, atol=PCM16_STEP)
    assert audio_info(path).format == ext[1:].upper()


def test_save_accepts_1_by_t_and_clips_to_unit_range(tmp_path):
    wav = np.array([[0.0, 2.0, -3.0, 0.25]], dtype=np.float32)
    save_audio(tmp_path / "x.wav", wav, 8000)
    back = load_audio(tmp_path / "x.wav", 8000)
    np.testing.assert_allclose(back, [0.0, 1.0, -1.0, 0.25], atol=PCM16_STEP)


def test_silence_is_not_an_error(tmp_path):
    save_audio(tmp_path / "quiet.flac", np.zeros(1000, np.float32), 16000)
    assert not load_audio(tmp_path / "quiet.flac", 16000).any()


@pytest.mark.parametrize("channels", [2, 3])
def test_multichannel_files_are_averaged_to_mono(tmp_path, channels):
    data = np.random.default_rng(0).uniform(-0.5, 0.5, (800, channels)).astype(np.float32)
    path = write_float_wav(tmp_path / "multi.wav", data, 8000)
    np.testing.assert_allclose(load_audio(path, 8000), data.mean(axis=1), atol=1e-6)
    assert audio_info(path).channels == channels


@pytest.mark.parametrize("file_rate", [44100, 48000, 8000])
def test_resampling_gives_right_length_and_keeps_frequency(tmp_path, file_rate):
    path = write_float_wav(tmp_path / "x.wav", sine(440, 1.0, file_rate), file_rate)
    wav = load_audio(path, 16000)
    assert abs(len(wav) - 16000) <= 2
    assert abs(peak_frequency(wav, 16000) - 440) <= 1


@pytest.mark.skipif("VORBIS" not in sf.available_subtypes("OGG"), reason="no Vorbis here")
def test_reads_ogg_vorbis(tmp_path):
    path = tmp_path / "x.ogg"
    sf.write(path, sine(440, 1.0, 22050), 22050, format="OGG", subtype="VORBIS")
    wav = load_audio(path, 16000)
    assert abs(len(wav) - 16000) <= 2
    assert abs(peak_frequency(wav, 16000) - 440) <= 1


def test_audio_info_reports_the_header(tmp_path):
    path = write_float_wav(tmp_path / "x.wav", np.zeros((24000, 2), np.float32), 48000)
    assert audio_info(path) == AudioInfo(48000, 2, 24000, "WAV")
    assert audio_info(path).duration == 0.5


# --- streaming reads -------------------------------------------------------------------


@pytest.mark.parametrize("file_rate", [48000, 16000, 8000])
def test_blocks_concatenate_to_load_audio_and_have_the_block_size(tmp_path, file_rate):
    data = np.random.default_rng(1).uniform(-0.5, 0.5, (round(5.3 * file_rate), 2))
    path = write_float_wav(tmp_path / "long.wav", data.astype(np.float32), file_rate)
    blocks = list(iter_audio_blocks(path, 16000, block_seconds=0.5))
    assert len(blocks) == 11
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert [len(b) for b in blocks[:-1]] == [8000] * 10 and 0 < len(blocks[-1]) <= 8000
    np.testing.assert_allclose(np.concatenate(blocks), load_audio(path, 16000), atol=1e-4)


def test_non_finite_samples_in_a_later_block_raise_when_reached(tmp_path):
    data = np.zeros(4000, np.float32)
    data[3500] = np.nan
    blocks = iter_audio_blocks(write_float_wav(tmp_path / "x.wav", data, 8000), 8000, 0.1)
    next(blocks)
    with pytest.raises(AudioError, match="NaN or infinite"):
        list(blocks)


# --- bad input -------------------------------------------------------------------------


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.wav"
    if kind == "folder":
        path.mkdir()
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(2).bytes(4000))
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "zero_frames":
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif kind in ("nan", "inf"):
        data = np.zeros(100, np.float32)
        data[50] = np.nan if kind == "nan" else np.inf
        write_float_wav(path, data, 16000)
    elif kind == "truncated_header":
        save_audio(path, np.zeros(100, np.float32), 16000)
        path.write_bytes(path.read_bytes()[:30])
    return path


BAD_HEADERS = ["missing", "folder", "random_bytes", "zero_bytes", "zero_frames", "truncated_header"]
BAD_FILES = BAD_HEADERS + ["nan", "inf"]
READERS = {
    "load_audio": lambda p: load_audio(p, 16000),
    "iter_audio_blocks": lambda p: list(iter_audio_blocks(p, 16000)),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_raise_one_line_audio_error_naming_the_file(tmp_path, kind, reader):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(AudioError) as err:
        READERS[reader](path)
    message = str(err.value)
    assert "\n" not in message and f"{kind}.wav" in message


@pytest.mark.parametrize("kind", BAD_HEADERS)
def test_audio_info_rejects_bad_files(tmp_path, kind):
    with pytest.raises(AudioError, match=f"{kind}.wav"):
        audio_info(_bad_file(tmp_path, kind))


def test_truncated_wav_loads_partially_or_raises_audio_error(tmp_path):
    path = tmp_path / "cut.wav"
    save_audio(path, sine(440, 0.1, 16000), 16000)
    whole = path.read_bytes()
    for cut in (12, 44, 45, 100, len(whole) - 1):
        path.write_bytes(whole[:cut])
        try:
            assert len(load_audio(path, 16000)) < 1600
        except AudioError:
            pass


@pytest.mark.parametrize("rate", [0, -16000])
def test_non_positive_sample_rate_is_an_audio_error(tmp_path, rate):
    path = tmp_path / "x.wav"
    save_audio(path, np.zeros(10, np.float32), 16000)
    for call in (
        lambda: load_audio(path, rate),
        lambda: iter_audio_blocks(path, rate),
        lambda: save_audio(path, np.zeros(10, np.float32), rate),
    ):
        with pytest.raises(AudioError, match="sample rate"):
            call()


def test_save_rejects_other_extensions_and_writes_nothing(tmp_path):
    with pytest.raises(AudioError, match="x.mp3"):
        save_audio(tmp_path / "x.mp3", np.zeros(10, np.float32), 16000)
    assert list(tmp_path.iterdir()) == []


# --- atomic writes ---------------------------------------------------------------------


def test_save_creates_folders_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "b" / "x.flac"
    save_audio(target, np.zeros(10, np.float32), 16000)
    save_audio(target, np.zeros(20, np.float32), 16000)
    assert list(target.parent.iterdir()) == [target]
    assert audio_info(target).frames == 20


def test_audio_writer_streams_blocks_into_one_file(tmp_path):
    blocks = [sine(440, 0.1, 16000), sine(220, 0.2, 16000)[None], np.zeros(5, np.float32)]
    with AudioWriter(tmp_path / "out.wav", 16000) as writer:
        for block in blocks:
            writer.write(block)
    expected = np.concatenate([np.ravel(b) for b in blocks])
    np.testing.assert_allclose(load_audio(tmp_path / "out.wav", 16000), expected, atol=PCM16_STEP)


def test_failure_mid_write_leaves_old_target_untouched(tmp_path):
    target = tmp_path / "out.flac"
    save_audio(target, np.full(100, 0.25, np.float32), 16000)
    old = target.read_bytes()
    with pytest.raises(KeyError), AudioWriter(target, 16000) as writer:
        writer.write(np.zeros(1000, np.float32))
        raise KeyError("model crashed")
    with pytest.raises(AudioError, match="NaN"):
        save_audio(target, np.array([0.0, np.nan], np.float32), 16000)
    assert target.read_bytes() == old
    assert list(tmp_path.iterdir()) == [target]


def test_failure_before_first_output_creates_nothing(tmp_path):
    with pytest.raises(KeyError), AudioWriter(tmp_path / "new.wav", 16000):
        raise KeyError("model crashed")
    assert list(tmp_path.iterdir()) == []


# --- finding files ---------------------------------------------------------------------


def test_find_audio_files_recurses_sorts_and_filters(tmp_path):
    names = [
        "b.wav", "a.FLAC", "sub/z.ogg", "sub/deeper/c.wav", "notes.txt", "d.mp3",
        ".x.wav.1a2b.tmp.wav", "._resource.wav", ".git/e.wav",
    ]  # fmt: skip
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = find_audio_files(tmp_path)
    assert found == [tmp_path / n for n in ["a.FLAC", "b.wav", "sub/deeper/c.wav", "sub/z.ogg"]]


def test_find_audio_files_needs_an_existing_folder(tmp_path):
    with pytest.raises(AudioError, match="no such folder"):
        find_audio_files(tmp_path / "nope")
    (tmp_path / "x.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="not a folder"):
        find_audio_files(tmp_path / "x.wav")
