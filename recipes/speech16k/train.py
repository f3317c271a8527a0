"""Train the first `speech16k` model.

Usage: `python recipes/speech16k/train.py RECIPE OUT [section.key=value ...]`.

Resumable: run the same command again after an interruption. Export the result with
`python recipes/speech16k/export.py OUT/checkpoint.pt pretrained/speech16k`.
"""

from __future__ import annotations

import sys
import time

from codec.config import load_recipe
from codec.train.loop import train


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    recipe = load_recipe(argv[0], argv[2:])
    start = time.time()
    train(recipe, argv[1], log=lambda s: print(f"[{time.time() - start:7.0f}s] {s}", flush=True))


if __name__ == "__main__":
    main(sys.argv[1:])
