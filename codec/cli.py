"""The `codec` command line: parses arguments, calls the library, prints results."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from codec import bitstream, pretrained
from codec.audio import audio_info, find_audio_files, iter_audio_blocks
from codec.commands import err, out, progress_bar
from codec.commands import fail as _fail
from codec.commands import user_errors as _user_errors
from codec.errors import CodecError
from codec.inference import decode_file, encode_file, output_path
from codec.models.codec import CodecModel

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Neural audio codec: compress speech to `.codes` files and back.",
)


def _set_threads(threads: int | None) -> None:
    """Torch uses one thread per core by default; on a machine busy with other work,
    fewer threads avoid OpenMP threads waiting on each other (1 can be 10x faster)."""
    if threads is not None:
        if threads < 1:
            raise CodecError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def _run_tree(
    src: Path, dst: Path, files: list[Path], suffix: str, work: Callable[[Path, Path], None]
):
    """Apply `work` to every file of a folder; report and skip failures, then exit 1 if any."""
    if not files:
        _fail(f"{src}: no input files found")
    failed = 0
    with progress_bar(len(files), f"{len(files)} files") as advance:
        for i, f in enumerate(files):
            try:
                work(f, output_path(f, src, dst, suffix))
            except CodecError as e:
                failed += 1
                err.print(f"[yellow]skipped[/yellow] {e}", highlight=False, soft_wrap=True)
            advance(i + 1)
    out.print(
        f"{len(files) - failed} of {len(files)} files done, {failed} failed -> {dst}",
        highlight=False,
        soft_wrap=True,
    )
    if failed:
        raise typer.Exit(1)


@app.command()
def encode(
    src: Annotated[
        Path,
        typer.Argument(help="Audio file (WAV, FLAC, OGG), a folder of them, or - for stdin."),
    ],
    dst: Annotated[
        Path, typer.Argument(help="Output `.codes` file, a folder if SRC is one, or - (stdout).")
    ],
    bitrate: Annotated[
        float | None,
        typer.Option("--bitrate", "-b", help="Kilobits per second [default: the model's highest]."),
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name or folder.")] = (
        pretrained.DEFAULT_MODEL
    ),
    rate: Annotated[
        int | None,
        typer.Option("--rate", help="Sample rate of raw 16-bit PCM on stdin [default: model's]."),
    ] = None,
    compile_: Annotated[
        bool, typer.Option("--compile", help="torch.compile the encoder (pays off on long audio).")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="CPU threads [default: one per core]; 1 on a busy machine."),
    ] = None,
    entropy: Annotated[
        bool,
        typer.Option(
            "--entropy", help="Range-code the codes with the model's prior: smaller, lossless."
        ),
    ] = False,
) -> None:
    """Compress audio into a `.codes` file.

    With `--entropy`, the codes are also range-coded by the Transformer prior shipped
    with the model (about a third smaller; `codec decode` undoes it exactly).

    On stdin (`-`), a WAV stream or raw 16-bit little-endian mono PCM is encoded as it
    arrives; the result is bit for bit that of the same audio in a file.

    Examples:

        codec encode speech.wav speech.codes

        codec encode speech.flac speech.codes --bitrate 3

        codec encode speech.wav speech.codes --entropy

        codec encode corpus/ codes/        # a/b.flac -> codes/a/b.codes

        arecord -f S16_LE -r 16000 | codec encode - live.codes
    """
    with _user_errors():
        _set_threads(threads)
        m = pretrained.load(model)
        m.n_codebooks_for(bitrate)
        if entropy:
            from codec.inference import prior_for

            prior_for(m)  # a missing prior fails before any audio is read
        if str(src) == "-" or str(dst) == "-":
            _encode_pipe(m, src, dst, bitrate, rate, compile_, entropy)
            return
        if src.is_dir():
            _run_tree(
                src,
                dst,
                find_audio_files(src),
                ".codes",
                lambda a, b: encode_file(m, a, b, bitrate, compile=compile_, entropy=entropy),
            )
            return
        duration = audio_info(src).duration
        start = time.perf_counter()
        with progress_bar(duration, src.name) as progress:
            header = encode_file(m, src, dst, bitrate, progress, compile=compile_, entropy=entropy)
        elapsed = time.perf_counter() - start
        size = dst.stat().st_size
        coded = " entropy-coded," if header.entropy_coded else ""
        out.print(
            f"{src} -> {dst}: {header.duration:.2f} s, {header.bitrate / 1000:g} kbps codes,"
            f"{coded} {size} bytes ({size * 8 / max(header.duration, 1e-9) / 1000:.2f} kbps with "
            f"header), {header.duration / elapsed:.0f}x real time",
            highlight=False,
            soft_wrap=True,
        )


def _encode_pipe(
    m: CodecModel,
    src: Path,
    dst: Path,
    bitrate: float | None,
    rate: int | None,
    compile_: bool,
    entropy: bool,
) -> None:
    """Encode from stdin and/or to stdout (no progress bar: the length is unknown)."""
    from codec.atomic import write_bytes_atomic
    from codec.inference import encode_bytes
    from codec.pcm import read_stream

    if str(src) == "-":
        blocks = read_stream(sys.stdin.buffer, m.sample_rate, rate)
    else:
        blocks = iter_audio_blocks(src, m.sample_rate)
    start = time.perf_counter()
    header, data = encode_bytes(m, blocks, bitrate, compile=compile_, entropy=entropy)
    if str(dst) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_bytes_atomic(dst, data)
    elapsed = time.perf_counter() - start
    err.print(
        f"{src} -> {dst}: {header.duration:.2f} s, {header.bitrate / 1000:g} kbps codes, "
        f"{len(data)} bytes, {header.duration / elapsed:.0f}x real time",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def decode(
    src: Annotated[Path, typer.Argument(help="A `.codes` file, a folder of them, or - for stdin.")],
    dst: Annotated[
        Path, typer.Argument(help="Output audio (.wav or .flac), a folder, or - (stdout).")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model name or folder [default: the one that encoded SRC]."
        ),
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="On stdout, raw 16-bit PCM instead of WAV.")
    ] = False,
    compile_: Annotated[
        bool,
        typer.Option("--compile", help="torch.compile the decoder (slower than eager on CPU)."),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="CPU threads [default: one per core]; 1 on a busy machine."),
    ] = None,
    postfilter: Annotated[
        bool,
        typer.Option(
            "--postfilter/--no-postfilter",
            help="Decode through the model's learnt postfilter, if it has one (the default); "
            "--no-postfilter gives the codec's own output, without the postfilter's latency "
            "(16 ms for speech16k's) and a little faster (docs/postfilter.md).",
        ),
    ] = True,
) -> None:
    """Decompress a `.codes` file into audio.

    To stdout (`-`), a 16-bit WAV stream (or raw PCM with `--raw`) is written as it is
    decoded.

    Examples:

        codec decode speech.codes speech.wav

        codec decode codes/ decoded/       # codes/a/b.codes -> decoded/a/b.wav

        codec decode speech.codes - | aplay
    """
    with _user_errors():
        _set_threads(threads)
        fixed = pretrained.load(model) if model is not None else None
        found: dict[bytes, CodecModel] = {}  # by model id: each model loads once

        def model_for(header: bitstream.CodesHeader) -> CodecModel:
            if fixed is not None:
                return fixed
            if header.model_id not in found:
                found[header.model_id] = pretrained.find_by_id(header.model_id)
            return found[header.model_id]

        if str(src) == "-" or str(dst) == "-":
            _decode_pipe(src, dst, model_for, raw, compile_, postfilter)
            return
        if src.is_dir():
            files = sorted(p for p in src.rglob("*.codes") if p.is_file())
            _run_tree(
                src, dst, files, ".wav",
                lambda a, b: decode_file(
                    model_for(bitstream.read_header(a)), a, b, compile=compile_,
                    postfilter=postfilter,
                ),
            )  # fmt: skip
            return
        header = bitstream.read_header(src)
        m = model_for(header)
        start = time.perf_counter()
        with progress_bar(header.duration, src.name) as progress:
            decode_file(m, src, dst, progress, compile=compile_, postfilter=postfilter)
        elapsed = time.perf_counter() - start
        out.print(
            f"{src} -> {dst}: {header.duration:.2f} s, {header.duration / elapsed:.0f}x real time",
            highlight=False,
            soft_wrap=True,
        )


def _decode_pipe(
    src: Path,
    dst: Path,
    model_for: Callable[[bitstream.CodesHeader], CodecModel],
    raw: bool,
    compile_: bool,
    postfilter: bool,
) -> None:
    """Decode from stdin and/or to stdout, streaming the audio out as it is made."""
    from codec.audio import AudioWriter
    from codec.bitstream.format import MAX_FILE_SIZE, check_model, from_bytes
    from codec.inference import decode_stream
    from codec.pcm import to_pcm16, wav_header

    if str(src) == "-":
        f = from_bytes(sys.stdin.buffer.read(MAX_FILE_SIZE + 1))
    else:
        f = bitstream.read(src)
    m = model_for(f.header)
    check_model(f.header, pretrained.id_of(m))
    start = time.perf_counter()
    blocks = decode_stream(m, f, compile=compile_, postfilter=postfilter)
    if str(dst) == "-":
        sink = sys.stdout.buffer
        if not raw:
            sink.write(wav_header(f.header.original_length, f.header.sample_rate))
        for block in blocks:
            sink.write(to_pcm16(block))
        sink.flush()
    else:
        with AudioWriter(dst, f.header.sample_rate) as writer:
            for block in blocks:
                writer.write(block)
    elapsed = time.perf_counter() - start
    err.print(
        f"{src} -> {dst}: {f.header.duration:.2f} s, {f.header.duration / elapsed:.0f}x real time",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def info(src: Annotated[Path, typer.Argument(help="A `.codes` file.")]) -> None:
    """Show what a `.codes` file holds, without decoding it.

    Example:

        codec info speech.codes
    """
    with _user_errors():
        h = bitstream.read_header(src)
        size = src.stat().st_size
        names = {id_: m.name for id_, m in pretrained.installed_ids().items()}
        rows = [
            ("model id", f"{h.model_id.hex()} ({names.get(h.model_id, 'not installed')})"),
            ("sample rate", f"{h.sample_rate} Hz"),
            ("frame rate", f"{h.frame_rate:g} Hz ({h.hop_length} samples per frame)"),
            ("codebooks", f"{h.n_codebooks} x {h.bits_per_code} bits"),
            ("frames", str(h.n_frames)),
            ("duration", f"{h.duration:.3f} s ({h.original_length} samples)"),
            ("bitrate", f"{h.bitrate / 1000:g} kbps as bit-packed codes"),
            ("file size", f"{size} bytes ({size * 8 / max(h.duration, 1e-9) / 1000:.2f} kbps)"),
        ]
        if h.entropy_coded:
            rows.append(("entropy coding", f"range-coded by prior {h.prior_id.hex()}"))
        table = Table(show_header=False, box=None)
        for k, v in rows:
            table.add_row(k, v)
        out.print(table)


@app.command()
def models() -> None:
    """List the models installed (shipped in `pretrained/` or under `$CODEC_MODELS_DIR`).

    Example:

        codec models
    """
    table = Table("name", "sample rate", "frame rate", "bitrates (kbps)", "size", "path")
    for m in pretrained.available_models():
        c = m.config
        rates = f"{c.kbps_per_codebook:g} to {c.kbps_per_codebook * c.n_codebooks:g}"
        default = " (default)" if m.name == pretrained.DEFAULT_MODEL else ""
        table.add_row(
            m.name + default,
            f"{c.sample_rate} Hz",
            f"{c.frame_rate:g} Hz",
            rates,
            f"{m.size_bytes / 1e6:.1f} MB",
            str(m.path),
        )
    out.print(table)


def _register_subcommands() -> None:
    from codec.commands.evaluate import eval_command
    from codec.commands.mushra import mushra_app
    from codec.commands.postfilter import postfilter_app
    from codec.commands.prior import prior_app, sample_command
    from codec.commands.prosody import prosody_app
    from codec.commands.train import export_command, manifest_command, train_command

    app.command("train", context_settings={"allow_interspersed_args": True})(train_command)
    app.command("export")(export_command)
    app.command("manifest")(manifest_command)
    app.command("eval")(eval_command)
    app.add_typer(mushra_app, name="mushra")
    app.add_typer(prosody_app, name="prosody")
    app.add_typer(prior_app, name="prior")
    app.add_typer(postfilter_app, name="postfilter")
    app.command("sample")(sample_command)


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="codec")


if __name__ == "__main__":
    sys.exit(main())
