"""A small ensemble as a few-label candidate: the mean vessel probability of several finished
label-efficiency cells of the same fold (e.g. the synth and scratch models, or two seeds of synth),
against each member alone, in validation Dice (the choice) and test Dice (for the record).

    python bench/ensemble_check.py --study studies/label_eff --members synth scratch --budget 5
    python bench/ensemble_check.py --study studies/label_eff --members synth --seeds 0 1 --budget 5

Members of one fold must share its validation and test images (same fold and seed draw; with
``--seeds`` the validation images differ, so only the test split is compared). Each member is
predicted with the default test-time flips and scored on the images' own grid against the masks as
drawn, like ``finetune``'s test report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.data.datasets import load_dataset
from angioseg.data.preprocess import PreprocessConfig, preprocess_image, restore_geometry
from angioseg.infer.engines import DEFAULT_TTA, predict_proba
from angioseg.metrics.overlap import dice
from angioseg.train.checkpoint import load_model


def probabilities(cell: Path, samples: dict[str, Any], names: list[str]) -> list[np.ndarray]:
    model, meta = load_model(cell / "model.safetensors")
    prep = PreprocessConfig.from_dict(meta.get("preprocess"))
    prepared = [preprocess_image(samples[n].image, prep) for n in names]
    probs = predict_proba(model, [x for x, _ in prepared], tta=DEFAULT_TTA, batch_size=8)
    return [restore_geometry(p, g) for p, (_, g) in zip(probs, prepared, strict=True)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, required=True)
    ap.add_argument("--members", nargs="+", required=True, help="methods (cell folders) to average")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--budget", default="5")
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/xca_cimat40"
    )
    args = ap.parse_args(argv)
    samples = {s.name: s for s in load_dataset(args.data) if s.mask is not None}
    splits = ["test"] if len(args.seeds) > 1 else ["val", "test"]
    gains: dict[str, list[float]] = {s: [] for s in splits}
    for fold in args.folds:
        cells = [
            args.study / m / f"n{args.budget}" / f"fold{fold}_seed{s}"
            for m in args.members
            for s in args.seeds
        ]
        if not all((c / "model.safetensors").is_file() for c in cells):
            continue
        for split in splits:
            names = json.loads((cells[0] / "splits.json").read_text(encoding="utf-8"))[split]
            probs = [probabilities(c, samples, names) for c in cells]
            truth = [np.asarray(samples[n].mask, bool) for n in names]
            single = [
                float(np.mean([dice(p >= 0.5, t) for p, t in zip(ps, truth, strict=True)])) for ps in probs
            ]
            mean = [np.mean([ps[i] for ps in probs], axis=0) for i in range(len(names))]
            ens = float(np.mean([dice(p >= 0.5, t) for p, t in zip(mean, truth, strict=True)]))
            gains[split].append(ens - max(single))
            members = ", ".join(
                f"{c.parent.parent.name}/{c.name} {d:.3f}" for c, d in zip(cells, single, strict=True)
            )
            print(f"fold {fold} {split}: ensemble {ens:.3f}; members {members}", flush=True)
    for split, g in gains.items():
        if g:
            print(
                f"{split}: ensemble minus its best member {statistics.mean(g):+.3f} on average, "
                f"better in {sum(x > 0 for x in g)}/{len(g)} folds"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
