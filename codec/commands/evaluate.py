"""`codec eval`: score the model and classical codecs on a folder of speech."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from codec import pretrained
from codec.commands import err, out, user_errors
from codec.errors import CodecError
from codec.models.codec import CodecModel

if TYPE_CHECKING:
    from codec.eval.runner import Summary

_LOG_EVERY = 25  # files between progress lines when stderr is a log, not a terminal
# The columns of `report.COLUMNS` but the first and the last, in two-line headers.
_TERMINAL_HEADERS = (
    "kbps", "file\nkbps", "PESQ\nWB", "PESQ\nNB", "STOI", "SI-SDR\ndB", "mel\ndist.",
    "x real\ntime",
)  # fmt: skip


def eval_command(
    src: Annotated[
        Path,
        typer.Argument(
            help="Folder of audio (WAV, FLAC, OGG); its `manifest.tsv` lists the files."
        ),
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name or folder.")] = (
        pretrained.DEFAULT_MODEL
    ),
    bitrate: Annotated[
        str | None,
        typer.Option(
            "--bitrate",
            "-b",
            help="Model bitrates in kbps, comma-separated "
            "[default: the model's highest, its half and its quarter].",
        ),
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(
            "--baseline",
            help="A classical codec and its settings; repeatable: "
            "`opus:6,8,12`, `codec2:1600,3200`, `speex:wb4,nb8`.",
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report.")] = Path(
        "eval"
    ),
    split: Annotated[
        str | None, typer.Option("--split", help="Only this split of SRC/manifest.tsv.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N files.")
    ] = None,
    clips: Annotated[
        int, typer.Option("--clips", min=0, help="Files to listen to and see in the report.")
    ] = 3,
    align_ms: Annotated[
        float,
        typer.Option(
            "--align-ms",
            min=0,
            help="Also search this far (ms) for delay by cross-correlation "
            "[default: 0, trust each codec's known delay].",
        ),
    ] = 0.0,
    postfilter: Annotated[
        bool,
        typer.Option(
            "--postfilter/--no-postfilter",
            help="Decode through the model's learnt postfilter, if it has one (the default, "
            "as codec decode does); --no-postfilter scores the codec's own output.",
        ),
    ] = True,
) -> None:
    """Score the model against classical codecs: PESQ, STOI, SI-SDR, mel distance, bitrate
    and speed per file and overall, written as CSV, JSON, plots and an HTML report.

    Examples:

        codec eval corpus/ --baseline opus:6,8,12

        codec eval data/ --split valid -b 1.5,3,6 --baseline codec2:1600 --baseline speex:wb4
    """
    with user_errors():
        from codec.eval import report, runner
        from codec.eval.baselines import parse_baselines

        baselines = parse_baselines(baseline or [])
        m = pretrained.load(model)
        rates = _bitrates(bitrate, m)
        files, durations = runner.find_inputs(src, split, limit)
        with _progress(len(files)) as advance:
            result = runner.evaluate(
                files, m, rates, baselines, root=src, durations=durations,
                n_clips=clips, max_lag_ms=align_ms, progress=advance, postfilter=postfilter,
            )  # fmt: skip
        for reason in result.skipped:
            err.print(f"[yellow]skipped[/yellow] {escape(reason)}", highlight=False, soft_wrap=True)
        meta = {
            "model": model,
            "model_id": pretrained.id_of(m).hex(),
            "split": split or "all",
            "limit": limit,
            "align_ms": align_ms,
            "postfilter": postfilter and pretrained.load_postfilter(m) is not None,
        }
        report.write_report(result, out_dir, meta)
        _print_summary(result.summaries)
        out.print(
            f"{result.files} files, {result.seconds:.1f} s of audio, {len(result.skipped)} "
            f"skipped -> {out_dir / 'report.html'} (and results.csv, summary.json, summary.md, "
            "rate_quality.png, spectrograms/)",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )


def _print_summary(summaries: Sequence[Summary]) -> None:
    """The summary as a table that fits 80 columns, and its notes (NaN counts, failures)
    below it."""
    from codec.eval.report import summary_cells

    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("system", no_wrap=True)
    for header in _TERMINAL_HEADERS:
        table.add_column(header, justify="right")
    notes = []
    for s in summaries:
        *cells, note = summary_cells(s)
        table.add_row(*(Text(c) for c in cells))
        if note:
            notes.append(f"{s.system}: {note}")
    out.print(table)
    for note in notes:
        out.print(note, highlight=False, soft_wrap=True, markup=False)


def _bitrates(text: str | None, model: CodecModel) -> list[float]:
    """`"1.5,3,6"` -> `[1.5, 3.0, 6.0]`; None -> the model's highest, half and quarter."""
    if text is None:
        top = max(model.bitrates())
        return [
            b for b in (top / 4, top / 2, top) if any(math.isclose(b, r) for r in model.bitrates())
        ]
    rates = []
    for part in text.split(","):
        try:
            rates.append(float(part))
        except ValueError:
            raise CodecError(f"--bitrate: {part.strip()!r} is not a number of kbps") from None
    for rate in rates:
        model.n_codebooks_for(rate)
    return rates


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over `total` files on stderr; without a terminal (a log), a line
    every `_LOG_EVERY` files instead."""
    columns = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("", total=total)

        def advance(done: int) -> None:
            bar.update(task, completed=done)
            if not err.is_terminal and done % _LOG_EVERY == 0 and done < total:
                err.print(f"{done} of {total} files scored", highlight=False)

        yield advance
