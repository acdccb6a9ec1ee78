"""Copy a finished fine-tuning run into the package's model zoo (``src/angioseg/zoo/NAME.*``).

Writes ``NAME.safetensors`` + ``NAME.json`` (the run's checkpoint, with a ``zoo`` entry: summary,
test Dice, source commit), ``NAME.pretrain_images.json`` (pixel hashes of every real image the
model was trained or selected on, so that ``finetune --pretrained builtin:NAME`` refuses a test
split holding one) and the model card ``NAME.md``.

    python bench/ship_model.py RUN NAME --summary "..." --command "angioseg finetune ..." \\
        [--real-images DIR --real-limit N]   # for a model trained on synthetic frames drawn on real ones
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from angioseg.config import load_config
from angioseg.data.datasets import load_dataset
from angioseg.data.leakage import frame_label, pixel_hash
from angioseg.train.finetune import FinetuneConfig
from angioseg.utils import write_json
from angioseg.zoo import ZOO_DIR, sha256

CIMAT = (
    'CIMAT coronary angiograms (github.com/fercer/Coronary), BSD-3-Clause, "Copyright (c) 2016, fercer"; '
    "Cruz-Aceves et al., Biomed. Signal Process. Control 25 (2016) 76-85; Cervantes-Sanchez et al., "
    "Applied Sciences 9(24):5507 (2019)"
)
ARCADE = (
    "ARCADE X-ray angiograms, CC BY 4.0: Popov et al., Scientific Data 11, 20 (2024), "
    "doi:10.1038/s41597-023-02871-z"
)


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--summary", required=True, help="one line: what the model is for")
    ap.add_argument("--role", choices=("segmenter", "starting-point"), required=True)
    ap.add_argument(
        "--method", help="what the model was trained by, shown when it is loaded (e.g. synthetic)"
    )
    ap.add_argument("--command", required=True, help="the command(s) that trained it")
    ap.add_argument("--data-note", default="", help="extra lines on the training data")
    ap.add_argument(
        "--real-images", type=Path, help="real frames the (synthetic) training images were drawn on"
    )
    ap.add_argument("--real-limit", type=int)
    args = ap.parse_args()

    run, name = args.run, args.name
    cfg = load_config(FinetuneConfig, run / "config.yaml")
    splits = json.loads((run / "splits.json").read_text(encoding="utf-8"))
    summary = json.loads((run / "test" / "summary.json").read_text(encoding="utf-8"))
    meta = json.loads((run / "model.json").read_text(encoding="utf-8"))
    test_dice = summary.get("dice") if summary.get("n") else None
    commit = _commit()
    if args.method:
        meta["method"] = args.method
    meta["zoo"] = {
        "summary": args.summary,
        "role": args.role,
        "test_dice": test_dice,
        "commit": commit,
        "card": f"{name}.md",
    }

    weights = ZOO_DIR / f"{name}.safetensors"
    shutil.copyfile(run / "model.safetensors", weights)
    write_json(weights.with_suffix(".json"), meta)

    if args.real_images:
        samples = load_dataset(args.real_images, limit=args.real_limit)
        seen = [(frame_label(s.source.name, s.name), pixel_hash(s.image)) for s in samples]
    else:
        labeled = {s.name: s for s in load_dataset(cfg.data)}
        seen = [
            (frame_label(labeled[n].source.name, n), pixel_hash(labeled[n].image))
            for n in splits["finetune"] + splits["val"]
        ]
    write_json(
        ZOO_DIR / f"{name}.pretrain_images.json",
        {"data": str(args.real_images or cfg.data), "images": [{"file": f, "sha256": h} for f, h in seen]},
    )

    keys = ("dice", "cldice", "iou", "mhd", "pcc", "ba_bias", "n")
    table = "\n".join(f"| {k} | {summary[k]:.3f} |" for k in keys if isinstance(summary.get(k), float))
    card = f"""# builtin:{name}

{args.summary}

| | |
|---|---|
| network | UNet, width {cfg.width}, depth {cfg.depth}, {meta["model"]}; input: preprocessed gray frame at {cfg.preprocess.image_size} px |
| weights | `{weights.name}`, {weights.stat().st_size / 1e6:.1f} MB, SHA-256 `{sha256(weights)}` |
| trained by | angioseg commit `{commit}` |
| training images | {len(splits["finetune"])} (+ {len(splits["val"])} validation images that chose the best epoch {meta.get("best_epoch")}) |
| test images | {len(splits["test"])}: {", ".join(splits["test"]) or "none"} |

## Data and licences
{args.data_note}

- {CIMAT}
- {ARCADE}

The pixel hashes of every real image it was trained or selected on are in `{name}.pretrain_images.json`:
`angioseg finetune --pretrained builtin:{name}` refuses a test split holding one of them.

## Command
```
{args.command}
```

## Measured on its test images (masks as drawn; `{run.name}/test/summary.json`)
| metric | value |
|---|---|
{table}
"""
    (ZOO_DIR / f"{name}.md").write_text(card, encoding="utf-8")
    print(f"shipped {weights} ({weights.stat().st_size / 1e6:.1f} MB), test Dice {test_dice}")


if __name__ == "__main__":
    main()
