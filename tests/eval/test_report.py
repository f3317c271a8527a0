"""Report files from a hand-made evaluation result: CSV, JSON, Markdown, PNG and HTML."""

import csv
import io
import json
import math

import numpy as np
import pytest
import soundfile as sf

from codec.eval import report
from codec.eval.runner import Clip, EvalResult, Row, Summary
from tests.conftest import tone

SR = 16000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def summary(system: str, kbps: float, pesq: float, stoi: float, **kw) -> Summary:
    fields = dict(
        system=system, family=system.split(":")[0], files=2, failed=0, kbps_payload=kbps,
        kbps_file=kbps + 0.5, pesq_wb=pesq, pesq_wb_nan=0, pesq_nb=pesq + 0.5, pesq_nb_nan=0,
        stoi=stoi, stoi_nan=0, si_sdr=-3.0, mel_distance=0.4, speed=20.0,
    )  # fmt: skip
    return Summary(**{**fields, **kw})


@pytest.fixture(scope="module")
def result() -> EvalResult:
    wav = tone(1.0)
    rows = [
        Row("a & b.wav", "codec:1.5", "codec", 1.0, 1.5, 2.0, 1.2, 1.6, 0.6, -3.0, 0.4, 20.0),
        Row("a & b.wav", "opus:6", "opus", 1.0, 5.5, 8.0, math.nan, 2.5, 0.8, 5.0, 0.5, 50.0),
        Row("a & b.wav", "codec2:1600", "codec2", 1.0, error="c2enc not found: install codec2"),
    ]
    return EvalResult(
        sample_rate=SR,
        rows=rows,
        summaries=[
            summary("codec:1.5", 1.5, 1.2, 0.6),
            summary("codec:3", 3.0, 1.3, 0.65),
            summary("opus:6", 5.5, math.nan, 0.8, pesq_wb_nan=2),
            summary(
                "codec2:1600",
                math.nan,
                math.nan,
                math.nan,
                files=0,
                status="unavailable: c2enc not found: install codec2",
            ),  # fmt: skip
        ],
        clips=[Clip("a & b.wav", wav, {"codec:1.5": 0.5 * wav, "opus:6": wav})],
        skipped=["broken.wav: cannot read audio (Format not recognised)"],
        files=1,
        seconds=1.0,
    )


@pytest.fixture(scope="module")
def written(result, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, report.write_report(result, out, {"model": "tiny"})


def test_report_writes_every_file(written):
    out, paths = written
    names = sorted(p.relative_to(out).as_posix() for p in paths)
    assert names == [
        "rate_quality.png", "report.html", "results.csv", "spectrograms/01-a_b.png",
        "summary.json", "summary.md",
    ]  # fmt: skip
    assert all(p.is_file() for p in paths)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary leftovers


def test_csv_has_one_row_per_file_and_system_with_empty_nans(written):
    out, _ = written
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert list(rows[0]) == [
        "file", "system", "family", "seconds", "kbps_payload", "kbps_file", "pesq_wb",
        "pesq_nb", "stoi", "si_sdr", "mel_distance", "speed", "error",
    ]  # fmt: skip
    assert [r["system"] for r in rows] == ["codec:1.5", "opus:6", "codec2:1600"]
    assert rows[1]["pesq_wb"] == "" and float(rows[1]["pesq_nb"]) == 2.5
    assert rows[2]["error"] == "c2enc not found: install codec2"


def test_json_holds_per_system_means_nan_counts_and_meta(written):
    out, _ = written
    doc = json.loads((out / "summary.json").read_text())
    assert doc["model"] == "tiny" and doc["files"] == 1 and doc["sample_rate"] == SR
    assert doc["skipped"] == ["broken.wav: cannot read audio (Format not recognised)"]
    opus = doc["systems"][2]
    assert opus["system"] == "opus:6" and opus["pesq_wb"] is None and opus["pesq_wb_nan"] == 2
    assert set(opus) >= {"kbps_payload", "kbps_file", "pesq_nb", "stoi", "si_sdr", "speed"}


def test_plots_are_png_files(written):
    out, _ = written
    for name in ("rate_quality.png", "spectrograms/01-a_b.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)


def test_html_is_self_contained_with_audio_players_and_images(written):
    out, _ = written
    page = (out / "report.html").read_text()
    assert page.count("<audio") == 3  # reference and two systems
    assert page.count('src="data:audio/flac;base64,') == 3
    assert page.count('src="data:image/png;base64,') == 2
    assert "http://" not in page and "https://" not in page
    assert "a &amp; b.wav" in page and "unavailable: c2enc not found" in page


def test_embedded_audio_decodes_to_the_clip():
    clip = tone(1.0)
    html = report._audio(clip, SR)
    data = report.base64.b64decode(html.split("base64,")[1].split('"')[0])
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == SR and np.abs(decoded - clip).max() < 1e-4


def test_markdown_table_and_cells(result):
    table = report.markdown_table(result.summaries).splitlines()
    assert len(table) == 2 + len(result.summaries)
    assert table[2].startswith("| codec:1.5 | 1.50 | 2.00 | 1.20 | 1.70 | 0.600 | -3.0 | 0.400 |")
    assert "2 PESQ NaN" in table[4]
    assert (
        table[5]
        == "| codec2:1600 |" + "  |" * 8 + " unavailable: c2enc not found: install codec2 |"
    )
