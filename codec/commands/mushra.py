"""`codec mushra prepare|serve|analyze`: MUSHRA listening tests (ITU-R BS.1534-3).

The library (NumPy, SciPy, matplotlib) is imported inside each command, so that other
`codec` commands start without paying for it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from codec.commands import err, out, user_errors
from codec.errors import CodecError

if TYPE_CHECKING:
    from codec.eval.mushra.analyze import Analysis

mushra_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="MUSHRA listening tests (ITU-R BS.1534-3): prepare stimuli, serve the page, analyse.",
)


@mushra_app.command()
def prepare(
    references: Annotated[Path, typer.Argument(help="Folder of reference clips (the items).")],
    system: Annotated[
        list[str],
        typer.Option(
            "--system", "-s", help="`NAME=DIR`: a system's decoded clips; repeat per system."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Test folder to write.")],
    seed: Annotated[int, typer.Option(help="Seed of every listener's random order.")] = 0,
    sample_rate: Annotated[
        int | None,
        typer.Option(help="Stimulus rate in Hz (default: the highest rate of the references)."),
    ] = None,
    loudness: Annotated[float, typer.Option(help="Target loudness in LUFS (BS.1770).")] = -23.0,
) -> None:
    """Build a test: hidden reference, 3.5 and 7 kHz anchors, systems, loudness matched."""
    from codec.eval import mushra

    with user_errors():
        systems = _parse_systems(system)
        design = mushra.prepare(references, systems, out_dir, seed, sample_rate, loudness)
    out.print(
        f"{len(design.items)} items x {len(design.conditions)} conditions "
        f"at {design.sample_rate} Hz, {design.loudness_lufs:.1f} LUFS -> {out_dir}",
        highlight=False,
    )
    out.print(f"next: codec mushra serve {out_dir}", highlight=False)


@mushra_app.command()
def serve(
    test_dir: Annotated[Path, typer.Argument(help="Test folder written by `mushra prepare`.")],
    host: Annotated[
        str, typer.Option(help="Address to listen on; other than loopback, anyone may connect.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
) -> None:
    """Run the listening page; every trial is saved to TEST_DIR/results as it is submitted."""
    from codec.eval import mushra
    from codec.eval.mushra.server import is_loopback

    if not is_loopback(host):
        err.print(f"[yellow]warning:[/yellow] listening on {host}: reachable from the network")

    def ready(url: str) -> None:
        out.print(f"MUSHRA test at {url}  (Ctrl-C to stop)", highlight=False)

    with user_errors():
        try:
            mushra.serve(test_dir, host, port, on_ready=ready, log=out.print)
        except KeyboardInterrupt:
            out.print(f"stopped; results are in {Path(test_dir, 'results')}", highlight=False)


@mushra_app.command()
def analyze(
    test_dir: Annotated[Path, typer.Argument(help="Test folder with listeners' results.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: TEST_DIR/analysis).")
    ] = None,
) -> None:
    """Post-screen listeners, then mean and 95% CI per system and item, with a box plot."""
    from codec.eval import mushra

    with user_errors():
        analysis = mushra.analyze(test_dir, out_dir)
    _print_screening(analysis)
    _print_stats(analysis)
    written = [analysis.summary_csv, analysis.summary_json, analysis.boxplot]
    out.print("wrote " + ", ".join(str(p) for p in written if p is not None), highlight=False)
    if analysis.boxplot is None:
        err.print("[yellow]warning:[/yellow] no box plot: matplotlib is not installed")


def _parse_systems(specs: list[str]) -> dict[str, Path]:
    systems: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise CodecError(f"--system expects NAME=DIR, got {spec!r}")
        if name in systems:
            raise CodecError(f"--system {name!r} given twice")
        systems[name] = Path(folder)
    return systems


def _print_screening(analysis: Analysis) -> None:
    for s in analysis.listeners:
        verdict = "[red]excluded[/red]" if s.excluded else "kept"
        out.print(
            f"{s.listener}: {s.trials} trials, hidden reference < 90 on "
            f"{s.reference_misses} -> {verdict}",
            highlight=False,
        )


def _print_stats(analysis: Analysis) -> None:
    """One table over all items, then one row per item and condition."""
    from codec.eval.mushra.analyze import ALL_ITEMS

    overall = Table(title="MUSHRA scores over all items (included listeners)")
    per_item = Table(title="MUSHRA scores per item")
    per_item.add_column("item")
    for table in (overall, per_item):
        for name in ("condition", "n", "mean", "95% CI"):
            table.add_column(name, justify="left" if name == "condition" else "right")
    item = None
    for s in analysis.stats:
        cells = (s.condition, str(s.n), f"{s.mean:.1f}", _ci(s.ci95))
        if s.item == ALL_ITEMS:
            overall.add_row(*cells)
            continue
        if item is not None and s.item != item:
            per_item.add_section()
        item = s.item
        per_item.add_row(s.item, *cells)
    out.print(overall)
    out.print(per_item)


def _ci(ci95: float) -> str:
    return "n/a" if math.isnan(ci95) else f"± {ci95:.1f}"
