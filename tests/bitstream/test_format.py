"""The `.codes` container: round trips, bit packing, and every way a file can be bad."""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from codec.bitstream import format as codes_format
from codec.bitstream.format import CodesHeader, from_bytes, pack_bits, to_bytes, unpack_bits
from codec.errors import CodecError, FormatError, ModelMismatchError

MODEL_ID = bytes(range(16))
OTHER_ID = bytes(range(100, 116))


def make_header(n_codebooks: int = 2, n_frames: int = 3, bits: int = 5, **kw) -> CodesHeader:
    fields = {
        "model_id": MODEL_ID,
        "sample_rate": 16_000,
        "hop_length": 320,
        "n_codebooks": n_codebooks,
        "bits_per_code": bits,
        "n_frames": n_frames,
        "original_length": n_frames * 320 - 17 if n_frames else 0,
    }
    return CodesHeader(**{**fields, **kw})


def small_file() -> tuple[bytes, np.ndarray]:
    codes = np.array([[0, 31, 7], [16, 1, 30]])
    return to_bytes(make_header(), codes), codes


def reseal(data: bytes) -> bytes:
    """Recompute the CRC so a deliberately edited file reaches the later checks."""
    crc = zlib.crc32(data[16:], zlib.crc32(data[:12]))
    return data[:12] + struct.pack("<I", crc) + data[16:]


def edit(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one little-endian header field and reseal."""
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, offset, value)
    return reseal(bytes(out))


@st.composite
def codes_and_bits(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    bits = draw(st.integers(1, 16))
    shape = (draw(st.integers(1, 6)), draw(st.integers(0, 40)))
    codes = draw(arrays(np.int64, shape, elements=st.integers(0, 2**bits - 1)))
    return codes, bits


@settings(max_examples=60, deadline=None)
@given(codes_and_bits())
def test_pack_unpack_identity(case: tuple[np.ndarray, int]) -> None:
    codes, bits = case
    packed = pack_bits(codes, bits)
    assert len(packed) == (codes.size * bits + 7) // 8
    restored = unpack_bits(packed, bits, *codes.shape)
    assert restored.dtype == np.int64 and restored.shape == codes.shape
    np.testing.assert_array_equal(restored, codes)


@settings(max_examples=40, deadline=None)
@given(
    codes_and_bits(),
    st.binary(min_size=16, max_size=16),
    st.integers(1, 384_000),
    st.integers(1, 4096),
    st.data(),
)
def test_to_bytes_from_bytes_identity(case, model_id, sample_rate, hop, data) -> None:
    codes, bits = case
    q, f = codes.shape
    original_length = data.draw(st.integers(0, f * hop))
    header = CodesHeader(model_id, sample_rate, hop, q, bits, f, original_length)
    decoded = from_bytes(to_bytes(header, codes), expected_model_id=model_id)
    assert decoded.header == header
    np.testing.assert_array_equal(decoded.codes, codes)


def test_worked_example_from_the_spec() -> None:
    # frame-major 5, 3, 1, 6 -> 101 011 001 110 (+ 4 zero bits of padding)
    assert pack_bits(np.array([[5, 1], [3, 6]]), 3) == bytes([0b10101100, 0b11100000])


def test_a_stream_cuts_at_frame_boundaries() -> None:
    codes = np.random.default_rng(0).integers(0, 1024, (4, 10))
    # 4 codes x 10 bits = 5 bytes per frame, so 6 frames are the first 30 bytes
    assert pack_bits(codes, 10)[:30] == pack_bits(codes[:, :6], 10)


def test_an_hour_of_codes_packs_quickly() -> None:
    codes = np.random.default_rng(0).integers(0, 1024, (12, 180_000))  # 1 h at 50 frames/s
    start = time.perf_counter()
    restored = unpack_bits(pack_bits(codes, 10), 10, 12, 180_000)
    assert time.perf_counter() - start < 5.0  # vectorised: well under a second
    np.testing.assert_array_equal(restored, codes)


def test_layout_matches_the_spec() -> None:
    header = make_header(
        n_codebooks=12,
        n_frames=500,
        bits=10,
        sample_rate=24_000,
        hop_length=480,
        original_length=239_990,
    )
    data = to_bytes(header, np.zeros((12, 500), dtype=np.int64))
    assert data[:8] == codes_format.MAGIC == b"\x89CODES\r\n"
    version, header_size, crc, flags = struct.unpack_from("<HHII", data, 8)
    assert (version, header_size, flags) == (1, 64, 0)
    assert crc == zlib.crc32(data[:12] + data[16:])
    assert data[20:36] == MODEL_ID
    assert struct.unpack_from("<IIHHQQ", data, 36) == (24_000, 480, 12, 10, 500, 239_990)


def test_six_kbps_file_size() -> None:
    # 12 codebooks x 10 bits x 50 frames/s = 6 kbit/s; 10 s is 7500 bytes of payload
    header = make_header(
        n_codebooks=12,
        n_frames=500,
        bits=10,
        sample_rate=16_000,
        hop_length=320,
        original_length=160_000,
    )
    assert header.frame_rate == 50.0 and header.bitrate == 6000.0 and header.duration == 10.0
    data = to_bytes(header, np.ones((12, 500), dtype=np.int64))
    assert len(data) == 7500 + codes_format.HEADER_SIZE == 7564


def test_every_single_bit_flip_is_detected() -> None:
    data, _ = small_file()
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(FormatError):
            from_bytes(bytes(flipped))
        with pytest.raises((FormatError, ModelMismatchError)):
            from_bytes(bytes(flipped), expected_model_id=MODEL_ID)


def test_every_truncation_and_any_extra_byte_is_detected() -> None:
    data, _ = small_file()
    for n in range(len(data)):
        with pytest.raises(FormatError):
            from_bytes(data[:n])
    with pytest.raises(FormatError, match="truncated"):
        from_bytes(data[:-1])
    with pytest.raises(FormatError, match="unexpected bytes"):
        from_bytes(data + b"\0")


def test_wrong_magic() -> None:
    data, _ = small_file()
    with pytest.raises(FormatError, match="not a .codes file"):
        from_bytes(b"RIFF" + data[4:])


def test_newer_version_asks_for_an_upgrade() -> None:
    data, _ = small_file()
    with pytest.raises(FormatError, match="written by format version 2.*upgrade codec"):
        from_bytes(edit(data, 8, "H", 2))


def test_a_corrupt_version_is_reported_as_corruption() -> None:
    data, _ = small_file()
    with pytest.raises(FormatError, match="checksum mismatch"):
        from_bytes(data[:8] + struct.pack("<H", 2) + data[10:])


def test_unknown_flags_are_rejected() -> None:
    data, _ = small_file()
    with pytest.raises(FormatError, match="flags 0x2.*upgrade codec"):
        from_bytes(edit(data, 16, "I", 2))


def test_the_entropy_flag_needs_its_header_extension() -> None:
    data, _ = small_file()
    with pytest.raises(FormatError, match="entropy-coded file has a header of at least 96"):
        from_bytes(edit(data, 16, "I", 1))


def test_model_mismatch_names_both_models() -> None:
    data, _ = small_file()
    with pytest.raises(ModelMismatchError, match="00010203.*646566.*--model"):
        from_bytes(data, expected_model_id=OTHER_ID)


@pytest.mark.parametrize(
    "offset, fmt, value, field",
    [
        (48, "Q", 2**31, "n_frames"),
        (44, "H", 0, "n_codebooks"),
        (44, "H", 60_000, "n_codebooks"),
        (46, "H", 17, "bits_per_code"),
        (36, "I", 0, "sample_rate"),
        (40, "I", 2**31, "hop_length"),
        (56, "Q", 2**63, "original_length"),
        (10, "H", 2**15, "header_size"),
    ],
)
def test_absurd_sizes_are_rejected_before_allocation(offset, fmt, value, field) -> None:
    data, _ = small_file()
    with pytest.raises(FormatError, match=field):
        from_bytes(edit(data, offset, fmt, value))


def test_a_plausible_size_larger_than_the_file_is_truncation() -> None:
    data, _ = small_file()
    with pytest.raises(FormatError, match="truncated"):
        from_bytes(edit(data, 48, "Q", 1_000_000))


@pytest.mark.parametrize(
    "codes",
    [
        np.array([[0, 32, 0], [0, 0, 0]]),
        np.array([[0, -1, 0], [0, 0, 0]]),
        np.zeros((2, 4), dtype=np.int64),
        np.zeros((2, 3), dtype=np.float32),
    ],
)
def test_bad_codes_are_rejected_on_write(codes, tmp_path) -> None:
    with pytest.raises(ValueError):
        codes_format.write(tmp_path / "x.codes", make_header(), codes)
    assert list(tmp_path.iterdir()) == []


def test_write_read_round_trip_leaves_no_temporary_file(tmp_path) -> None:
    header, codes = make_header(), np.array([[0, 31, 7], [16, 1, 30]])
    codes_format.write(tmp_path / "song.codes", header, codes)
    assert [p.name for p in tmp_path.iterdir()] == ["song.codes"]
    decoded = codes_format.read(tmp_path / "song.codes", expected_model_id=MODEL_ID)
    assert decoded.header == header
    np.testing.assert_array_equal(decoded.codes, codes)
    assert codes_format.read_header(tmp_path / "song.codes") == header


def test_read_errors_name_the_file(tmp_path) -> None:
    data, _ = small_file()
    path = tmp_path / "song.codes"
    path.write_bytes(data[:-1])
    with pytest.raises(
        FormatError,
        match=r"song\.codes: truncated \(expected 4 bytes of "
        r"payload, found 3\)",
    ):
        codes_format.read(path)
    path.write_bytes(data)
    with pytest.raises(ModelMismatchError, match=r"song\.codes: encoded by model"):
        codes_format.read(path, expected_model_id=OTHER_ID)


def test_read_header_checks_the_crc(tmp_path) -> None:
    data, _ = small_file()
    path = tmp_path / "x.codes"
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(FormatError, match=r"x\.codes: checksum mismatch"):
        codes_format.read_header(path)


def test_reading_a_missing_file_is_a_codec_error(tmp_path) -> None:
    with pytest.raises(CodecError, match="no such file") as info:
        codes_format.read(tmp_path / "missing.codes")
    assert isinstance(info.value, FormatError)
    with pytest.raises(FormatError, match="no such file"):
        codes_format.read_header(tmp_path / "missing.codes")


def test_header_rejects_out_of_bound_fields() -> None:
    with pytest.raises(ValueError, match="original_length"):
        make_header(original_length=3 * 320 + 1)
    with pytest.raises(ValueError, match="model_id"):
        make_header(model_id=b"short")


# Entropy-coded files (flag bit 0): a 96-byte header and a range-coded payload.

PRIOR_ID = bytes(range(200, 216))


def coded_file(payload: bytes = b"\x12\x34\x56") -> bytes:
    header = make_header(flags=codes_format.FLAG_ENTROPY, prior_id=PRIOR_ID)
    return codes_format.to_bytes_coded(header, payload)


def test_entropy_coded_file_round_trips_header_and_payload() -> None:
    data = coded_file()
    assert len(data) == codes_format.ENTROPY_HEADER_SIZE + 3
    f = from_bytes(data, expected_model_id=MODEL_ID)
    assert f.header.entropy_coded and f.header.prior_id == PRIOR_ID
    assert f.codes is None and f.payload == b"\x12\x34\x56"


def test_entropy_coded_header_needs_a_prior_id_and_plain_headers_refuse_one() -> None:
    with pytest.raises(ValueError, match="prior_id"):
        make_header(flags=codes_format.FLAG_ENTROPY)
    with pytest.raises(ValueError, match="prior_id"):
        make_header(prior_id=PRIOR_ID)
    with pytest.raises(ValueError):
        to_bytes(make_header(flags=codes_format.FLAG_ENTROPY, prior_id=PRIOR_ID), np.zeros((2, 3)))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d[:-1], "checksum mismatch|truncated"),
        (lambda d: reseal(d[:-1]), "truncated"),
        (lambda d: reseal(d + b"\0"), "unexpected bytes"),
        (lambda d: edit(d, 88, "Q", 1), "reserved"),
        (lambda d: edit(d, 80, "Q", 2**40), "payload_size"),
        (lambda d: edit(d, 10, "H", 64), "at least 96"),
        (lambda d: d[:50] + bytes([d[50] ^ 1]) + d[51:], "checksum mismatch"),
        (lambda d: d[:-2] + bytes([d[-2] ^ 4]) + d[-1:], "checksum mismatch"),
    ],
)
def test_bad_entropy_coded_files_are_refused(change, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        from_bytes(change(coded_file()))


def test_a_coded_payload_over_the_bound_is_not_written() -> None:
    header = make_header(
        n_codebooks=1, n_frames=1, flags=codes_format.FLAG_ENTROPY, prior_id=PRIOR_ID
    )
    with pytest.raises(ValueError, match="exceeds the bound"):
        codes_format.to_bytes_coded(header, b"\xff" * 20)
