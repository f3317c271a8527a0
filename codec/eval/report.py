"""Write an evaluation's results: CSV, JSON, Markdown, plots and a self-contained HTML page.

`write_report` puts everything into one folder:

- `results.csv`: one row per file and system (`Row`'s fields; empty cells are NaN).
- `summary.json`: per-system means (`Summary`'s fields, NaN as null) and the run's facts.
- `summary.md`: the summary as a Markdown table, ready for documentation.
- `rate_quality.png`: PESQ-WB and STOI against measured kbps, one line per codec family.
- `spectrograms/NN-NAME.png`: the first clips, reference above each system.
- `report.html`: all of it in one file that opens offline, images and audio embedded.

Plots use Matplotlib's object API with the Agg canvas, so no GUI backend is touched.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from codec.atomic import write_bytes_atomic
from codec.eval.runner import Clip, EvalResult, Row, Summary

CLIP_SECONDS = 6.0  # longest audio embedded in the HTML page and drawn in spectrograms
COLUMNS = (
    "system", "kbps payload", "kbps file", "PESQ-WB", "PESQ-NB", "STOI", "SI-SDR (dB)",
    "mel distance", "x real time", "note",
)  # fmt: skip
_DB_RANGE = 80.0


def write_report(
    result: EvalResult, out_dir: Path, meta: Mapping[str, object] | None = None
) -> list[Path]:
    """Write every output of an evaluation into `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    meta = dict(meta or {})
    written = [out_dir / "results.csv", out_dir / "summary.json", out_dir / "summary.md"]
    write_bytes_atomic(written[0], results_csv(result.rows).encode())
    write_bytes_atomic(written[1], summary_json(result, meta).encode())
    write_bytes_atomic(written[2], markdown_table(result.summaries).encode())
    plot = rate_quality_png(result.summaries)
    written.append(out_dir / "rate_quality.png")
    write_bytes_atomic(written[-1], plot)
    spectrograms = []
    for i, clip in enumerate(result.clips):
        png = spectrogram_png(clip, result.sample_rate)
        spectrograms.append(png)
        written.append(out_dir / "spectrograms" / f"{i + 1:02d}-{_slug(clip.file)}.png")
        write_bytes_atomic(written[-1], png)
    page = report_html(result, meta, plot, spectrograms)
    written.append(out_dir / "report.html")
    write_bytes_atomic(written[-1], page.encode())
    return written


def results_csv(rows: Sequence[Row]) -> str:
    """One line per file and system, with a header of `Row`'s field names."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [f.name for f in dataclasses.fields(Row)]
    writer.writerow(names)
    for row in rows:
        writer.writerow([_csv_cell(getattr(row, name)) for name in names])
    return buffer.getvalue()


def summary_json(result: EvalResult, meta: Mapping[str, object]) -> str:
    """The run's facts and `meta`, and one object per system with NaN written as null."""
    doc = {
        **meta,
        "sample_rate": result.sample_rate,
        "files": result.files,
        "seconds": round(result.seconds, 3),
        "skipped": result.skipped,
        "systems": [_nan_to_none(dataclasses.asdict(s)) for s in result.summaries],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def summary_cells(s: Summary) -> list[str]:
    """A summary formatted as the cells of `COLUMNS`."""
    if s.files == 0:
        return [s.system, *[""] * (len(COLUMNS) - 2), s.status or "no files scored"]
    notes = [s.status] if s.status else []
    notes += [f"{n} {what} NaN" for n, what in ((s.pesq_wb_nan, "PESQ"), (s.stoi_nan, "STOI")) if n]
    return [
        s.system,
        _num(s.kbps_payload, 2),
        _num(s.kbps_file, 2),
        _num(s.pesq_wb, 2),
        _num(s.pesq_nb, 2),
        _num(s.stoi, 3),
        _num(s.si_sdr, 1),
        _num(s.mel_distance, 3),
        _num(s.speed, 0),
        "; ".join(notes),
    ]


def markdown_table(summaries: Sequence[Summary]) -> str:
    """The summaries as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for s in summaries:
        cells = [c.replace("|", "\\|") for c in summary_cells(s)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rate_quality_png(summaries: Sequence[Summary]) -> bytes:
    """PESQ-WB and STOI against measured payload kbps, one line per family, as PNG."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, key, label in zip(
        fig.subplots(1, 2), ("pesq_wb", "stoi"), ("PESQ-WB (MOS-LQO)", "STOI"), strict=True
    ):
        for family in dict.fromkeys(s.family for s in summaries):
            points = sorted(
                (s.kbps_payload, getattr(s, key), s.system.partition(":")[2])
                for s in summaries
                if s.family == family and math.isfinite(s.kbps_payload * getattr(s, key))
            )
            if not points:
                continue
            x, y, names = zip(*points, strict=True)
            ax.plot(x, y, marker="o", label=family)
            for xi, yi, name in points:
                ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("kbps (measured payload)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def spectrogram_png(clip: Clip, sample_rate: int) -> bytes:
    """Log spectrograms of a clip's reference and of each system's decoding, as PNG."""
    from matplotlib.figure import Figure

    signals = {"reference": clip.reference, **clip.decoded}
    fig = Figure(figsize=(8, 1.1 * len(signals) + 0.6), layout="constrained")
    axes = fig.subplots(len(signals), 1, sharex=True, squeeze=False)[:, 0]
    top = None
    for ax, (name, wav) in zip(axes, signals.items(), strict=True):
        freqs, times, power = scipy.signal.spectrogram(
            _head(wav, sample_rate), sample_rate, nperseg=512, noverlap=384
        )
        db = 10 * np.log10(np.maximum(power, 1e-12))
        top = db.max() if top is None else top  # every panel on the reference's scale
        extent = (0.0, float(times[-1] if times.size else 0.0), 0.0, freqs[-1] / 1000)
        ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma",
                  vmin=top - _DB_RANGE, vmax=top)  # fmt: skip
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1].set_xlabel("seconds")
    fig.suptitle(clip.file, fontsize=10)
    return _png(fig, dpi=72)


def report_html(
    result: EvalResult, meta: Mapping[str, object], plot: bytes, spectrograms: Sequence[bytes]
) -> str:
    """One HTML page that needs nothing else: tables, plots and audio as data URIs."""
    facts = [f"{result.files} files, {result.seconds:.1f} s of audio at {result.sample_rate} Hz"]
    facts += [f"{k}: {v}" for k, v in meta.items()]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>codec eval</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Codec evaluation</h1>",
        "<ul>" + "".join(f"<li>{_e(f)}</li>" for f in facts) + "</ul>",
        "<h2>Summary</h2>",
        _html_table(COLUMNS, [summary_cells(s) for s in result.summaries]),
        f'<img alt="rate-quality plot" src="{_data_uri(plot, "image/png")}">',
    ]
    if result.clips:
        parts.append("<h2>Listen</h2>")
    for clip, png in zip(result.clips, spectrograms, strict=True):
        parts += [f"<h3>{_e(clip.file)}</h3>", _clip_table(result, clip)]
        parts.append(f'<img alt="spectrograms" src="{_data_uri(png, "image/png")}">')
    if result.skipped:
        parts.append("<h2>Skipped files</h2>")
        parts.append("<ul>" + "".join(f"<li>{_e(s)}</li>" for s in result.skipped) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _clip_table(result: EvalResult, clip: Clip) -> str:
    scores = {r.system: r for r in result.rows if r.file == clip.file}
    rows = [["reference", _audio(clip.reference, result.sample_rate), "", "", ""]]
    for name, wav in clip.decoded.items():
        r = scores[name]
        rows.append([name, _audio(wav, result.sample_rate), _num(r.kbps_payload, 2),
                     _num(r.pesq_wb, 2), _num(r.stoi, 3)])  # fmt: skip
    header = ("system", "audio", "kbps payload", "PESQ-WB", "STOI")
    return _html_table(header, rows, raw_column=1)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], raw_column: int = -1) -> str:
    def cells(row: Sequence[str], tag: str) -> str:
        return "".join(
            f"<{tag}>{c if i == raw_column else _e(c)}</{tag}>" for i, c in enumerate(row)
        )

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return f"<table><tr>{cells(header, 'th')}</tr>{body}</table>"


def _audio(wav: np.ndarray, sample_rate: int) -> str:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(_head(wav, sample_rate), -1, 1), sample_rate, format="FLAC")
    uri = _data_uri(buffer.getvalue(), "audio/flac")
    return f'<audio controls preload="none" src="{uri}"></audio>'


def _head(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    return wav[: int(CLIP_SECONDS * sample_rate)]


def _png(fig, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _csv_cell(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return value


def _nan_to_none(d: dict) -> dict:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).with_suffix("").as_posix())[:60]


def _e(text: object) -> str:
    return html.escape(str(text))


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "td:first-child,th:first-child,td:last-child{text-align:left}"
    "img{max-width:100%}audio{height:2em}"
)
