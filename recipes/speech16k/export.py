"""Export a training checkpoint as a model folder (safetensors + config.json + card).

Usage: `python recipes/speech16k/export.py RUN_DIR OUT_DIR [--card CARD.md]`
where RUN_DIR holds `checkpoint.pt` and `recipe.json` written by train.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codec import pretrained
from codec.config import Recipe, from_dict
from codec.models.codec import CodecModel
from codec.train.checkpoint import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--card", type=Path, help="model card to copy as README.md")
    args = parser.parse_args()
    recipe = from_dict(Recipe, json.loads((args.run_dir / "recipe.json").read_text()))
    state = load_checkpoint(args.run_dir / "checkpoint.pt")
    model = CodecModel(recipe.model)
    model.load_state_dict(state["model"])
    card = args.card.read_text() if args.card else None
    model_id = pretrained.save(model.eval(), args.out_dir, card=card)
    print(f"exported step {state['step']} to {args.out_dir} (model id {model_id.hex()})")


if __name__ == "__main__":
    main()
