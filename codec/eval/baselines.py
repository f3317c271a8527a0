"""Classical codecs to compare against, run through their command-line tools.

- Opus (RFC 6716): `opusenc`/`opusdec` from opus-tools >= 0.2 (Debian `opus-tools`). VBR,
  20 ms frames, complexity 10 and the `--speech` tuning hint, so low bitrates use the
  SILK speech mode as a speech codec would.
- Codec 2: `c2enc`/`c2dec` (Debian `codec2`), 8 kHz speech in modes 3200 to 700C bit/s.
- Speex: `speexenc`/`speexdec` (Debian `speex`), narrowband (8 kHz) or wideband (16 kHz)
  CELP at quality 0 to 10, complexity 10.

Every `run_*` takes a mono signal `[T]`, returns it decoded at the same sample rate and
length with the codec's delay removed, and measures what the coded file holds. A spec
such as `opus:6,8,12`, `codec2:1600,3200` or `speex:wb4,nb8` names one `Baseline` per
setting (`parse_baselines`).
"""

import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import soxr

from codec.errors import CodecError

OPUS_MIN_KBPS = 6.0
OPUS_MAX_KBPS = 256.0
_OPUSENC_FLAGS = (
    "--framesize", "20",
    "--speech",  # tune low bitrates for speech rather than trusting auto-detection
    "--padding", "0",  # no reserved metadata space inflating the file size
    "--serial", "1",  # fixed Ogg stream serial: identical input gives identical files
    "--quiet",
)  # fmt: skip

CODEC2_RATE = 8000
# Mode -> delay of c2dec's output behind c2enc's input, in samples at 8 kHz: the shift
# that maximises mean STOI over 23 files of speech16k-mini (20 ms; 700C 30 ms).
CODEC2_DELAY = {
    "3200": 160, "2400": 160, "1600": 160, "1400": 160, "1300": 160, "1200": 160, "700C": 240,
}  # fmt: skip
# Mode -> (bits, samples at 8 kHz) per frame. c2enc stores each frame in whole bytes,
# which the packet size below does not count (28 bits of 700C take 4 bytes on disk).
_CODEC2_FRAMES = {
    "3200": (64, 160), "2400": (48, 160), "1600": (64, 320), "1400": (56, 320),
    "1300": (52, 320), "1200": (48, 320), "700C": (28, 320),
}  # fmt: skip
_CODEC2_MAGIC = b"\xc0\xde\xc2"
_CODEC2_HEADER = 7  # magic, version major and minor, mode, flags

# Band -> (speexenc flag, sample rate, delay of the decoded signal in samples at that
# rate). speexdec removes the delay, and one sample more, only when the audio spans more
# than one Ogg page: it takes the amount from the first audio page's granule position,
# and on a page that also ends the stream reads it as a cut at the end instead.
SPEEX_BANDS = {"nb": ("--narrowband", 8000, 79), "wb": ("--wideband", 16000, 222)}

_PACKAGES = {
    "opusenc": "opus-tools", "opusdec": "opus-tools",
    "c2enc": "codec2", "c2dec": "codec2",
    "speexenc": "speex", "speexdec": "speex",
}  # fmt: skip
_TOOLS = {
    "opus": ("opusenc", "opusdec"),
    "codec2": ("c2enc", "c2dec"),
    "speex": ("speexenc", "speexdec"),
}


class BaselineError(CodecError):
    """A baseline codec's tool is missing, rejects its arguments, or fails."""


@dataclass(frozen=True)
class BaselineResult:
    """A signal passed through a baseline codec.

    Args:
        decoded: `[T]` float32 at the input sample rate, delay-compensated, same length
            as the input.
        payload_bytes: size of the whole coded file (headers and container included).
        packet_bytes: bytes of the codec's frames or packets alone (no Ogg pages, no
            headers), comparable to the size of a neural codec's codes.
        bitrate_kbps: `payload_bytes * 8 / duration / 1000`.
    """

    decoded: np.ndarray
    payload_bytes: int
    packet_bytes: int
    bitrate_kbps: float


@dataclass(frozen=True)
class Baseline:
    """One classical codec at one setting, named like its spec: `opus:6`, `codec2:1600`,
    `speex:wb4`.

    Args:
        codec: "opus", "codec2" or "speex".
        setting: kbps for Opus, a mode for Codec 2, band and quality for Speex.
    """

    codec: str
    setting: str

    @property
    def name(self) -> str:
        """The spec of this one setting, e.g. `speex:wb4`."""
        return f"{self.codec}:{self.setting}"

    def missing_tool(self) -> str | None:
        """Why this baseline cannot run here (a tool is not installed), or None."""
        try:
            for tool in _TOOLS[self.codec]:
                _tool(tool)
        except BaselineError as e:
            return str(e)
        return None

    def run(self, wav: np.ndarray, sample_rate: int) -> BaselineResult:
        """Code and decode `wav` `[T]` at `sample_rate` with this codec and setting."""
        if self.codec == "opus":
            return run_opus(wav, sample_rate, float(self.setting))
        if self.codec == "codec2":
            return run_codec2(wav, sample_rate, self.setting)
        return run_speex(wav, sample_rate, int(self.setting[2:]), band=self.setting[:2])


def parse_baselines(specs: Iterable[str]) -> list[Baseline]:
    """Read specs such as `opus:6,8,12`, `codec2:1600,700C`, `speex:wb4,nb8` into one
    `Baseline` per setting, in order; a malformed spec raises `BaselineError`."""
    parsers = {"opus": _opus_setting, "codec2": _codec2_setting, "speex": _speex_setting}
    found: list[Baseline] = []
    for spec in specs:
        codec, colon, values = spec.partition(":")
        codec = codec.strip().lower()
        if not colon or not codec or not values.strip():
            raise BaselineError(f"baseline {spec!r}: expected CODEC:SETTINGS, e.g. opus:6,8,12")
        if codec not in parsers:
            raise BaselineError(
                f"baseline {spec!r}: unknown codec {codec!r} (choose opus, codec2 or speex)"
            )
        for value in values.split(","):
            setting = parsers[codec](value.strip())
            if setting is None:
                raise BaselineError(f"baseline {spec!r}: {value.strip()!r} {_EXPECTED[codec]}")
            baseline = Baseline(codec, setting)
            if baseline in found:
                raise BaselineError(f"baseline {baseline.name} is given twice")
            found.append(baseline)
    return found


_EXPECTED = {
    "opus": f"is not a bitrate of {OPUS_MIN_KBPS:g} to {OPUS_MAX_KBPS:g} kbps",
    "codec2": f"is not a Codec 2 mode ({', '.join(CODEC2_DELAY)})",
    "speex": "is not a Speex band and quality such as wb4 or nb8 (quality 0 to 10)",
}


def _opus_setting(value: str) -> str | None:
    try:
        kbps = float(value)
    except ValueError:
        return None
    return f"{kbps:g}" if OPUS_MIN_KBPS <= kbps <= OPUS_MAX_KBPS else None


def _codec2_setting(value: str) -> str | None:
    mode = value.upper()
    return mode if mode in CODEC2_DELAY else None


def _speex_setting(value: str) -> str | None:
    match = re.fullmatch(r"(nb|wb)(\d{1,2})", value.lower())
    if match is None or int(match[2]) > 10:
        return None
    return f"{match[1]}{int(match[2])}"


def opus_available() -> bool:
    """True when both `opusenc` and `opusdec` are on the PATH."""
    return Baseline("opus", "6").missing_tool() is None


def codec2_available() -> bool:
    """True when both `c2enc` and `c2dec` are on the PATH."""
    return Baseline("codec2", "3200").missing_tool() is None


def speex_available() -> bool:
    """True when both `speexenc` and `speexdec` are on the PATH."""
    return Baseline("speex", "wb4").missing_tool() is None


def run_opus(wav: np.ndarray, sample_rate: int, bitrate_kbps: float) -> BaselineResult:
    """Encode and decode `wav` `[T]` with Opus at a target bitrate (VBR, kbit/s).

    `opusdec` removes the encoder's pre-skip (RFC 7845 section 4.2), which includes
    the resampler delay, so the decoded signal is time-aligned with the input; it is
    decoded as float at `sample_rate`, which avoids `opusdec`'s random dither.
    """
    opusenc, opusdec = _tool("opusenc"), _tool("opusdec")
    wav = _check_signal(wav)
    if not OPUS_MIN_KBPS <= bitrate_kbps <= OPUS_MAX_KBPS:
        raise BaselineError(
            f"Opus bitrate must be {OPUS_MIN_KBPS:g} to {OPUS_MAX_KBPS:g} kbps, got {bitrate_kbps}"
        )
    with tempfile.TemporaryDirectory(prefix="codec-opus-") as tmp:
        src, enc, dec = Path(tmp, "in.wav"), Path(tmp, "out.opus"), Path(tmp, "dec.wav")
        sf.write(src, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16")
        _run([opusenc, "--bitrate", f"{bitrate_kbps:g}", *_OPUSENC_FLAGS, str(src), str(enc)])
        _run([opusdec, "--rate", str(sample_rate), "--float", "--quiet", str(enc), str(dec)])
        ogg = enc.read_bytes()
        decoded, _ = sf.read(dec, dtype="float32", always_2d=True)
    decoded = _fit_length(decoded.mean(axis=1), wav.size)
    return _result(decoded, sample_rate, ogg, _packet_bytes(_ogg_pages(ogg, "opusenc")))


def run_codec2(wav: np.ndarray, sample_rate: int, mode: str) -> BaselineResult:
    """Encode and decode `wav` `[T]` with Codec 2 in `mode` (bit/s, e.g. "1600" or "700C").

    Codec 2 codes 8 kHz speech, so the signal is resampled to 8 kHz and back (soxr, linear
    phase, no delay). The input is padded with silence to whole frames covering its end
    plus the codec's delay (`CODEC2_DELAY`), by which the decoded signal is moved earlier.
    `packet_bytes` counts the mode's bits per frame, bit-packed, as the model's codes are.
    """
    if mode not in CODEC2_DELAY:
        raise BaselineError(f"unknown Codec 2 mode {mode!r}: choose {', '.join(CODEC2_DELAY)}")
    c2enc, c2dec = _tool("c2enc"), _tool("c2dec")
    wav = _check_signal(wav)
    narrow = soxr.resample(wav, sample_rate, CODEC2_RATE)
    delay, (bits, frame) = CODEC2_DELAY[mode], _CODEC2_FRAMES[mode]
    # Whole frames up to the input's end plus the delay, so that every sample comes out.
    padded = _fit_length(narrow, math.ceil((narrow.size + delay) / frame) * frame)
    with tempfile.TemporaryDirectory(prefix="codec-codec2-") as tmp:
        src, enc, dec = Path(tmp, "in.raw"), Path(tmp, "out.c2"), Path(tmp, "dec.raw")
        _pcm16(padded).tofile(src)
        _run([c2enc, mode, str(src), str(enc)])
        _run([c2dec, mode, str(enc), str(dec)])
        coded = enc.read_bytes()
        out = np.fromfile(dec, dtype="<i2").astype(np.float32) / 32768
    if not coded.startswith(_CODEC2_MAGIC):
        raise BaselineError("c2enc wrote a file without a Codec 2 header")
    narrow_out = _fit_length(out[delay:], narrow.size)
    decoded = _fit_length(soxr.resample(narrow_out, CODEC2_RATE, sample_rate), wav.size)
    frames = (len(coded) - _CODEC2_HEADER) // math.ceil(bits / 8)
    return _result(decoded, sample_rate, coded, math.ceil(frames * bits / 8))


def run_speex(wav: np.ndarray, sample_rate: int, quality: int, band: str = "wb") -> BaselineResult:
    """Encode and decode `wav` `[T]` with Speex at `quality` (0 to 10) in band "nb" or "wb".

    The signal is resampled to the band's rate (8 or 16 kHz) and back; the codec's delay
    is removed as `speexdec` leaves it (see `SPEEX_BANDS`).
    """
    if band not in SPEEX_BANDS or not 0 <= quality <= 10:
        raise BaselineError(f"Speex needs band nb or wb and quality 0 to 10, got {band}{quality}")
    speexenc, speexdec = _tool("speexenc"), _tool("speexdec")
    wav = _check_signal(wav)
    flag, rate, delay = SPEEX_BANDS[band]
    with tempfile.TemporaryDirectory(prefix="codec-speex-") as tmp:
        src, enc, dec = Path(tmp, "in.wav"), Path(tmp, "out.spx"), Path(tmp, "dec.wav")
        sf.write(src, _pcm16(soxr.resample(wav, sample_rate, rate)), rate, subtype="PCM_16")
        _run([speexenc, flag, "--quality", str(quality), "--comp", "10", str(src), str(enc)])
        _run([speexdec, str(enc), str(dec)])
        ogg = enc.read_bytes()
        out, out_rate = sf.read(dec, dtype="float32", always_2d=True)
    pages = list(_ogg_pages(ogg, "speexenc"))
    first_audio = next((p for p in pages if p.granule > 0), None)
    out = out.mean(axis=1)
    if first_audio is not None and first_audio.last:
        out = out[delay:]  # speexdec did not remove the delay
    else:
        out = np.concatenate([np.zeros(1, np.float32), out])  # it removed one sample too many
    decoded = _fit_length(soxr.resample(out, out_rate, sample_rate), wav.size)
    return _result(decoded, sample_rate, ogg, _packet_bytes(pages))


def _result(decoded: np.ndarray, sample_rate: int, coded: bytes, packets: int) -> BaselineResult:
    seconds = decoded.size / sample_rate
    return BaselineResult(
        decoded=decoded,
        payload_bytes=len(coded),
        packet_bytes=packets,
        bitrate_kbps=len(coded) * 8 / seconds / 1000,
    )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = _PACKAGES[name]
        raise BaselineError(f"{name} not found: install {package} (apt-get install {package})")
    return path


def _check_signal(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0:
        raise BaselineError(f"expected a non-empty 1-D signal [T], got shape {wav.shape}")
    if not np.all(np.isfinite(wav)):
        raise BaselineError("signal holds NaN or infinite samples")
    return wav


def _pcm16(x: np.ndarray) -> np.ndarray:
    """`[T]` float in [-1, 1] -> little-endian 16-bit integers, rounded and clipped."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767).astype("<i2")


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise BaselineError(f"{Path(cmd[0]).name} failed: {reason}")


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad `[T']` to `[length]` float32."""
    out = np.zeros(length, dtype=np.float32)
    n = min(length, x.size)
    out[:n] = x[:n]
    return out


class _OggPage(NamedTuple):
    granule: int
    last: bool  # the end-of-stream flag
    lacing: bytes


def _ogg_pages(ogg: bytes, tool: str) -> Iterator[_OggPage]:
    """The pages of an Ogg stream (RFC 3533 section 6), without their data."""
    pos = 0
    while pos + 27 <= len(ogg):
        if ogg[pos : pos + 4] != b"OggS":
            raise BaselineError(f"{tool} wrote a corrupt Ogg stream")
        granule = int.from_bytes(ogg[pos + 6 : pos + 14], "little", signed=True)
        n_segments = ogg[pos + 26]
        lacing = ogg[pos + 27 : pos + 27 + n_segments]
        yield _OggPage(granule, bool(ogg[pos + 5] & 0x04), lacing)
        pos += 27 + n_segments + sum(lacing)


def _packet_bytes(pages: Iterable[_OggPage]) -> int:
    """Sum the sizes of the audio packets of an Ogg Opus or Speex stream, skipping the two
    header packets (OpusHead and OpusTags; the Speex header and comments).

    A packet ends at a lacing value below 255 (RFC 3533 section 6).
    """
    sizes, current = [], 0
    for page in pages:
        for value in page.lacing:
            current += value
            if value < 255:
                sizes.append(current)
                current = 0
    return sum(sizes[2:])
