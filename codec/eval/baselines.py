"""Classical codecs to compare against, run through their command-line tools.

Opus (RFC 6716) runs through `opusenc`/`opusdec` from opus-tools >= 0.2 (Debian package
`opus-tools`). Encoding uses VBR, 20 ms frames, complexity 10 and the `--speech` tuning
hint, so low bitrates use the SILK speech mode as a speech codec would.
"""

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

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


class BaselineError(CodecError):
    """A baseline codec's tool is missing, rejects its arguments, or fails."""


@dataclass(frozen=True)
class BaselineResult:
    """A signal passed through a baseline codec.

    Args:
        decoded: `[T]` float32 at the input sample rate, delay-compensated, same length
            as the input.
        payload_bytes: size of the whole Ogg Opus file (headers and container included).
        packet_bytes: bytes of the Opus audio packets alone (no Ogg pages, no headers),
            comparable to the size of a neural codec's codes.
        bitrate_kbps: `payload_bytes * 8 / duration / 1000`.
    """

    decoded: np.ndarray
    payload_bytes: int
    packet_bytes: int
    bitrate_kbps: float


def opus_available() -> bool:
    """True when both `opusenc` and `opusdec` are on the PATH."""
    return shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


def run_opus(wav: np.ndarray, sample_rate: int, bitrate_kbps: float) -> BaselineResult:
    """Encode and decode `wav` `[T]` with Opus at a target bitrate (VBR, kbit/s).

    `opusdec` removes the encoder's pre-skip (RFC 7845 section 4.2), which includes
    the resampler delay, so the decoded signal is time-aligned with the input; it is
    decoded as float at `sample_rate`, which avoids `opusdec`'s random dither.
    """
    opusenc, opusdec = _tool("opusenc"), _tool("opusdec")
    wav = _check_input(wav, bitrate_kbps)
    with tempfile.TemporaryDirectory(prefix="codec-opus-") as tmp:
        src, enc, dec = Path(tmp, "in.wav"), Path(tmp, "out.opus"), Path(tmp, "dec.wav")
        sf.write(src, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16")
        _run([opusenc, "--bitrate", f"{bitrate_kbps:g}", *_OPUSENC_FLAGS, str(src), str(enc)])
        _run([opusdec, "--rate", str(sample_rate), "--float", "--quiet", str(enc), str(dec)])
        ogg = enc.read_bytes()
        decoded, _ = sf.read(dec, dtype="float32", always_2d=True)
    decoded = _fit_length(decoded.mean(axis=1), wav.size)
    return BaselineResult(
        decoded=decoded,
        payload_bytes=len(ogg),
        packet_bytes=_opus_packet_bytes(ogg),
        bitrate_kbps=len(ogg) * 8 / (wav.size / sample_rate) / 1000,
    )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BaselineError(f"{name} not found: install opus-tools (apt-get install opus-tools)")
    return path


def _check_input(wav: np.ndarray, bitrate_kbps: float) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0:
        raise BaselineError(f"expected a non-empty 1-D signal [T], got shape {wav.shape}")
    if not np.all(np.isfinite(wav)):
        raise BaselineError("signal holds NaN or infinite samples")
    if not OPUS_MIN_KBPS <= bitrate_kbps <= OPUS_MAX_KBPS:
        raise BaselineError(
            f"Opus bitrate must be {OPUS_MIN_KBPS:g} to {OPUS_MAX_KBPS:g} kbps, got {bitrate_kbps}"
        )
    return wav


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


def _opus_packet_bytes(ogg: bytes) -> int:
    """Sum the sizes of the audio packets in an Ogg Opus stream, skipping the two headers.

    Each Ogg page holds a table of lacing values; a packet ends at a value below 255
    (RFC 3533 section 6). The first two packets are OpusHead and OpusTags.
    """
    sizes, current, pos = [], 0, 0
    while pos + 27 <= len(ogg):
        if ogg[pos : pos + 4] != b"OggS":
            raise BaselineError("opusenc wrote a corrupt Ogg stream")
        n_segments = ogg[pos + 26]
        lacing = ogg[pos + 27 : pos + 27 + n_segments]
        for value in lacing:
            current += value
            if value < 255:
                sizes.append(current)
                current = 0
        pos += 27 + n_segments + sum(lacing)
    return sum(sizes[2:])
