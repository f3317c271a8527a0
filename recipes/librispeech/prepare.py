"""Write the training manifest of LibriSpeech; download the corpus first only when asked.

Usage: `python recipes/librispeech/prepare.py ROOT [--subsets train-clean-100,dev-clean]
[--download] [--mirror URL] [--out manifest.tsv]`

ROOT holds the extracted tree `LibriSpeech/<subset>/<speaker>/<chapter>/*.flac` (with
`<speaker>-<chapter>.trans.txt` transcripts). The manifest (default `ROOT/manifest.tsv`)
lists every utterance with its duration, speaker, transcript and split: train-* subsets
are "train", dev-* "valid", test-* "test".

With `--download`, each subset (default train-clean-100 and dev-clean) is fetched from
openslr.org into `ROOT/downloads/`, resuming a partial `.part` file, checked against
the published MD5, and extracted under ROOT; finished steps are skipped on a rerun.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from codec.errors import CodecError
from codec.train.manifest import Entry, scan_librispeech, write_manifest

OPENSLR = "https://www.openslr.org/resources/12"
# Published at https://www.openslr.org/resources/12/md5sum.txt (the same values appear in
# PaddlePaddle DeepSpeech's and myrtle.ai's LibriSpeech download scripts).
MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
DEFAULT_DOWNLOAD = ("train-clean-100", "dev-clean")
_BLOCK = 1 << 20


def main(argv: list[str] | None = None) -> int:
    """Run the recipe; returns the exit status (1 with a one-line error on failure)."""
    args = _parser().parse_args(argv)
    subsets = [s.strip() for s in args.subsets.split(",") if s.strip()] if args.subsets else None
    try:
        if args.download:
            subsets = subsets or list(DEFAULT_DOWNLOAD)
            for subset in subsets:
                download_subset(args.root, subset, args.mirror)
        result = scan_librispeech(args.root, subsets)
        out = args.out or args.root / "manifest.tsv"
        write_manifest(out, result.entries)
    except (CodecError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    for line in summary(result.entries):
        print(line)
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable files, e.g.:", file=sys.stderr)
        for reason in result.skipped[:5]:
            print(f"  {reason}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder holding (or to hold) LibriSpeech/")
    parser.add_argument("--subsets", help="comma-separated, e.g. train-clean-100,dev-clean")
    parser.add_argument("--download", action="store_true", help="fetch missing subsets")
    parser.add_argument("--mirror", default=OPENSLR, help="base URL of the archives")
    parser.add_argument("--out", type=Path, help="manifest path (default ROOT/manifest.tsv)")
    return parser


def summary(entries: list[Entry]) -> list[str]:
    """One line per split: files, hours and speakers."""
    lines = []
    for split in sorted({e.split for e in entries}):
        part = [e for e in entries if e.split == split]
        hours = sum(e.seconds for e in part) / 3600
        speakers = len({e.speaker for e in part})
        lines.append(f"{split:<5} {len(part):7d} files {hours:8.2f} h {speakers:5d} speakers")
    return lines


def download_subset(root: Path, subset: str, mirror: str = OPENSLR) -> None:
    """Fetch, verify and extract `<subset>.tar.gz` under `root`, skipping finished steps."""
    if subset not in MD5:
        raise CodecError(f"{subset}: no published MD5 known; download and extract it by hand")
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / f"{subset}.tar.gz"
    marker = downloads / f"{subset}.extracted"
    if marker.is_file() and (root / "LibriSpeech" / subset).is_dir():
        print(f"{subset}: already downloaded and extracted", file=sys.stderr)
        return
    if not archive.is_file():  # only a verified archive gets its final name
        fetch(f"{mirror.rstrip('/')}/{subset}.tar.gz", archive, MD5[subset])
    print(f"{subset}: extracting {archive}", file=sys.stderr)
    extract(archive, root)
    marker.write_text(f"{MD5[subset]}\n")


def fetch(url: str, dest: Path, md5: str) -> None:
    """Download `url` to `dest` through `dest.part`, resuming it, and check its MD5.

    A partial file is resumed with an HTTP Range request; a server that answers with
    the whole file (200) restarts it. On an MD5 mismatch the part file is deleted.
    """
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            _receive(response, part, have, url)
    except urllib.error.HTTPError as e:
        if not (e.code == 416 and have):  # 416: nothing after `have`, the part is whole
            raise CodecError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise CodecError(f"{url}: transfer failed ({reason}); run again to resume") from None
    got = _md5(part)
    if got != md5:
        part.unlink()
        raise CodecError(f"{url}: MD5 {got} is not the published {md5}; download deleted")
    os.replace(part, dest)


def _receive(response: http.client.HTTPResponse, part: Path, have: int, url: str) -> None:
    """Append a 206 answer to the part file, or replace it with a 200 answer."""
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        if not content_range.startswith(f"bytes {have}-"):
            raise CodecError(f"{url}: asked for bytes {have}- but got {content_range!r}")
        size = content_range.rpartition("/")[2]
        total = int(size) if size.isdigit() else 0
    else:
        have, total = 0, int(response.headers.get("Content-Length") or 0)
    with open(part, "ab" if have else "wb") as out:
        last = 0.0
        while block := response.read(_BLOCK):
            out.write(block)
            have += len(block)
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                _progress(part.name, have, total)
    _progress(part.name, have, total)
    print(file=sys.stderr)


def _progress(name: str, done: int, total: int) -> None:
    percent = f" ({100 * done / total:.0f}%)" if total else ""
    print(f"\r{name}: {done / 1e6:,.1f} of {total / 1e6:,.1f} MB{percent}", end="", file=sys.stderr)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def extract(archive: Path, dest: Path) -> None:
    """Unpack a .tar.gz under `dest`, refusing members that could land outside it.

    Only regular files and folders with relative, `..`-free names are accepted (and
    tarfile's "data" filter is applied where this Python has it).
    """
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                _check_member(archive, member)
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, dest, filter="data")
                else:
                    tar.extract(member, dest)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise CodecError(f"{archive}: cannot extract ({e})") from None


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
        raise CodecError(f"{archive}: refusing unsafe member {member.name!r}")


if __name__ == "__main__":
    sys.exit(main())
