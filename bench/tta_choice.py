"""How the test-time augmentation default was chosen: validation Dice of every finished
label-efficiency cell with no TTA, flips (4 views) and d4 (8 views: flips and quarter turns), at
probability thresholds 0.4 / 0.5 / 0.6, scored on each image's own pixel grid against the masks as
drawn.

    python bench/tta_choice.py --study studies/label_eff            # validation only (the choice)
    python bench/tta_choice.py --study studies/label_eff --test     # and the test split, for the record

Each cell's saved model (``model.safetensors``, the epoch its validation Dice chose) is run on the
cell's own validation images (4, drawn from outside its test fold). The rule: the mode and threshold
with the highest mean validation Dice over all cells become the default unless another is within
0.002 and cheaper (fewer views, threshold 0.5).

A cell's validation images lie outside its own test fold but may be test images of *other* folds,
so the pooled choice has seen every image. The script therefore also applies the rule per fold, on
that fold's cells alone (whose validation images are never that fold's test images): where every
fold's own choice equals the pooled one, each fold's test figures are as if chosen without its test
images. Scores are cached per cell in ``STUDY/tta_choice.json`` (a finished cell's model never
changes), so a rerun scores only the new cells.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.data.datasets import load_dataset
from angioseg.data.preprocess import PreprocessConfig, preprocess_image, restore_geometry
from angioseg.infer.engines import TTA_MODES, TorchEngine, predict_proba
from angioseg.metrics.overlap import dice
from angioseg.train.checkpoint import load_model
from angioseg.utils import write_json

THRESHOLDS = (0.4, 0.5, 0.6)


def cell_scores(cell: Path, samples: dict[str, Any], split: str) -> dict[str, float]:
    """Mean Dice of ``split`` per ``mode@threshold`` for one finished cell."""
    model, meta = load_model(cell / "model.safetensors")
    prep = PreprocessConfig.from_dict(meta.get("preprocess"))
    names = json.loads((cell / "splits.json").read_text(encoding="utf-8"))[split]
    prepared = [preprocess_image(samples[n].image, prep) for n in names]
    engine = TorchEngine(model)
    scores: dict[str, list[float]] = defaultdict(list)
    for mode in TTA_MODES:
        probs = predict_proba(model, [x for x, _ in prepared], engine=engine, tta=mode, batch_size=8)
        for n, p, (_, geom) in zip(names, probs, prepared, strict=True):
            native = restore_geometry(p, geom)
            truth = np.asarray(samples[n].mask, bool)
            for t in THRESHOLDS:
                scores[f"{mode}@{t}"].append(dice(native >= t, truth))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _score_one(job: tuple[Path, dict[str, Any], str]) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    return cell_scores(*job)


def score_parallel(
    todo: list[tuple[Path, str]],
    samples: dict[str, Any],
    args: argparse.Namespace,
    cache: dict[str, Any],
    cache_path: Path,
) -> None:
    """Score the uncached (cell, split) pairs in ``args.jobs`` processes, caching each as it comes; a
    cell that fails is named and left uncached (the serial pass after this one tries it again)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_score_one, (cell, samples, split)): (cell, split) for cell, split in todo}
        for fut in as_completed(futures):
            cell, split = futures[fut]
            try:
                scores = fut.result()
            except Exception as e:  # one bad cell must not lose the others' scores
                print(f"{cell}: {split} not scored in parallel: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            cache[f"{cell.relative_to(args.study)}:{split}"] = scores
            write_json(cache_path, cache)


def choose(results: dict[str, dict[str, float]], margin: float = 0.002) -> str:
    """The docstring's rule on validation results (cell -> ``mode@threshold`` -> mean Dice): the key
    with the highest mean over the cells, unless a cheaper one (fewer views, then threshold 0.5) is
    within ``margin`` of it."""
    keys = [f"{m}@{t}" for m in TTA_MODES for t in THRESHOLDS]
    mean = {k: statistics.mean(r[k] for r in results.values()) for k in keys}
    best = max(mean.values())

    def cost(k: str) -> tuple[int, bool]:
        mode, t = k.split("@")
        return TTA_MODES.index(mode), float(t) != 0.5

    return min((k for k in keys if mean[k] >= best - margin), key=cost)


def table(results: dict[str, dict[str, float]], title: str) -> str:
    by_budget: dict[str, list[dict[str, float]]] = defaultdict(list)
    for cell, r in results.items():
        by_budget[cell.split("/")[1]].append(r)
        by_budget["all cells"].append(r)
    keys = [f"{m}@{t}" for m in TTA_MODES for t in THRESHOLDS]
    order = sorted(
        by_budget, key=lambda b: (b == "all cells", b == "nall", int(b[1:]) if b[1:].isdigit() else 0)
    )
    lines = [
        f"{title}",
        "",
        "| TTA @ threshold | " + " | ".join(order) + " |",
        "|---" * (len(order) + 1) + "|",
    ]
    for k in keys:
        cells = [statistics.mean(r[k] for r in by_budget[b]) for b in order]
        lines.append(f"| {k} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    counts = " | ".join(str(len(by_budget[b])) for b in order)
    lines.append(f"| cells | {counts} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, required=True, help="a bench/label_efficiency.py output folder")
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/xca_cimat40"
    )
    ap.add_argument("--test", action="store_true", help="also score the test split (after the choice)")
    ap.add_argument("--jobs", type=int, default=1, help="score this many cells at once (one thread each)")
    args = ap.parse_args(argv)
    samples = {s.name: s for s in load_dataset(args.data) if s.mask is not None}
    if args.jobs < 1:
        raise SystemExit("--jobs must be at least 1")
    # finished cells only (a cell cut while scoring its test split has a model but no summary yet)
    cells = sorted(
        p.parents[1]
        for p in args.study.glob("*/n*/fold*_seed*/test/summary.json")
        if (p.parents[1] / "model.safetensors").is_file()
    )
    splits = ["val", "test"] if args.test else ["val"]
    results: dict[str, dict[str, dict[str, float]]] = {s: {} for s in splits}
    cache_path = args.study / "tta_choice.json"
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    todo = [(c, sp) for c in cells for sp in splits if f"{c.relative_to(args.study)}:{sp}" not in cache]
    if args.jobs > 1 and todo:
        score_parallel(todo, samples, args, cache, cache_path)
    for i, cell in enumerate(cells, 1):
        name = str(cell.relative_to(args.study))
        for split in splits:
            key = f"{name}:{split}"
            if key not in cache:
                cache[key] = cell_scores(cell, samples, split)
                write_json(cache_path, cache)
            results[split][name] = cache[key]
        print(
            f"[{i}/{len(cells)}] {name}: val Dice "
            + ", ".join(f"{k} {v:.3f}" for k, v in results["val"][name].items() if k.endswith("@0.5")),
            flush=True,
        )
    for split in splits:
        print()
        print(table(results[split], f"Mean {split} Dice by label budget ({len(cells)} cells)"))
    if results["val"]:
        print(f"\nthe rule's choice on validation Dice: {choose(results['val'])}")
        folds = sorted({c.split("/")[2].split("_")[0] for c in results["val"]})
        own = {
            f: choose({c: r for c, r in results["val"].items() if c.split("/")[2].startswith(f + "_")})
            for f in folds
        }
        print(
            "each fold's own choice (its cells' validation images only): "
            + ", ".join(f"{f} {k}" for f, k in own.items())
        )
        if "test" in results:
            print()
            print(nested_table(results["test"], choose(results["val"]), own))
    return 0


def nested_table(test: dict[str, dict[str, float]], pooled: str, own: dict[str, str]) -> str:
    """Mean test Dice per method and budget with the pooled choice, with each fold's own choice (a
    nested estimate: no test image of a fold took part in its choice) and with no TTA."""
    groups: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for cell, r in test.items():
        method, budget, fs = cell.split("/")
        groups[(method, budget)].append((r[pooled], r[own[fs.split("_")[0]]], r["none@0.5"]))
    lines = [
        f"Mean test Dice: the pooled choice ({pooled}) vs each fold's own choice vs no TTA",
        "",
        "| method | labels | cells | pooled choice | each fold's own | none@0.5 |",
        "|---|---|---|---|---|---|",
    ]
    for (method, budget), v in sorted(groups.items()):
        cols = [statistics.mean(x[i] for x in v) for i in range(3)]
        lines.append(f"| {method} | {budget[1:]} | {len(v)} | " + " | ".join(f"{c:.3f}" for c in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
