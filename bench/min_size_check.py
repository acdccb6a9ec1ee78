"""Removing small connected components from the predicted mask, as a few-label candidate: validation
Dice and clDice of every finished cell of one method with components of at most N pixels removed
(8-connectivity, on the image's own grid), against none removed; test figures for the record.

    python bench/min_size_check.py --study studies/label_eff --method synth

Each cell's saved model is predicted with the default test-time flips at threshold 0.5 and scored
against the masks as drawn, like ``finetune``'s test report. Scores are cached per cell in
``STUDY/min_size_check.json`` (a finished cell's model never changes).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage

from angioseg.data.datasets import load_dataset
from angioseg.data.preprocess import PreprocessConfig, preprocess_image, restore_geometry
from angioseg.infer.engines import DEFAULT_TTA, TorchEngine, predict_proba
from angioseg.metrics.overlap import dice
from angioseg.metrics.topology import cldice
from angioseg.train.checkpoint import load_model
from angioseg.utils import write_json

SIZES = (0, 10, 20, 40, 80, 150)  # pixels on the 300 x 300 CIMAT grid


def without_small(mask: np.ndarray, max_size: int) -> np.ndarray:
    """``mask`` without its 8-connected components of at most ``max_size`` pixels."""
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())
    keep = sizes > max_size
    keep[0] = False
    return keep[labels]


def cell_scores(cell: Path, samples: dict[str, object], split: str) -> dict[str, float]:
    model, meta = load_model(cell / "model.safetensors")
    prep = PreprocessConfig.from_dict(meta.get("preprocess"))
    names = json.loads((cell / "splits.json").read_text(encoding="utf-8"))[split]
    prepared = [preprocess_image(samples[n].image, prep) for n in names]  # type: ignore[attr-defined]
    probs = predict_proba(
        model, [x for x, _ in prepared], engine=TorchEngine(model), tta=DEFAULT_TTA, batch_size=8
    )
    scores: dict[str, list[float]] = defaultdict(list)
    for n, p, (_, geom) in zip(names, probs, prepared, strict=True):
        pred = restore_geometry(p, geom) >= 0.5
        truth = np.asarray(samples[n].mask, bool)  # type: ignore[attr-defined]
        for s in SIZES:
            kept = without_small(pred, s) if s else pred
            scores[f"dice{s}"].append(dice(kept, truth))
            scores[f"cl{s}"].append(cldice(kept, truth))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, required=True, help="a bench/label_efficiency.py output folder")
    ap.add_argument("--method", default="synth")
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/xca_cimat40"
    )
    args = ap.parse_args(argv)
    samples = {s.name: s for s in load_dataset(args.data) if s.mask is not None}
    cache_path = args.study / "min_size_check.json"
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    cells = sorted(p.parent for p in args.study.glob(f"{args.method}/n*/fold*_seed*/model.safetensors"))
    for cell in cells:
        name = str(cell.relative_to(args.study))
        if name not in cache:
            cache[name] = {split: cell_scores(cell, samples, split) for split in ("val", "test")}
            write_json(cache_path, cache)
    by: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name in (str(c.relative_to(args.study)) for c in cells):
        for split in ("val", "test"):
            for k, v in cache[name][split].items():
                by[(name.split("/")[1], split)][k].append(v)
    print(
        f"{args.method}: mean Dice / clDice with components of <= N pixels removed (flips, threshold 0.5)\n"
    )
    print("| labels | split | cells | " + " | ".join(f"N={s}" for s in SIZES) + " |")
    print("|---" * (3 + len(SIZES)) + "|")
    order = sorted(
        by, key=lambda k: (k[0] == "nall", int(k[0][1:]) if k[0][1:].isdigit() else 0, k[1] != "val")
    )
    for budget, split in order:
        d = by[(budget, split)]
        cols = [f"{np.mean(d[f'dice{s}']):.4f} / {np.mean(d[f'cl{s}']):.4f}" for s in SIZES]
        print(f"| {budget[1:]} | {split} | {len(d['dice0'])} | " + " | ".join(cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
