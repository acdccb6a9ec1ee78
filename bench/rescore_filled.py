"""How much of a change in published Dice comes from *scoring* against hole-filled masks?

Takes the test predictions a study (``angioseg experiment``) or fine-tuning runs saved
(``<run>/test/predictions/*.png``, at the training resolution) and scores the very same predictions
twice: against the masks as drawn (what angioseg scores since 2026-11-30) and against the masks with
every hole filled (what it scored before). The difference is the scoring effect alone; the rest of
a change between two studies comes from training on unfilled masks (and the other fixes).

    python bench/rescore_filled.py studies/xca_cpu --data ../shared/data/xca_cimat40
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from angioseg.config import load_config
from angioseg.data.io import read_mask
from angioseg.data.preprocess import fill_small_holes, truth_mask
from angioseg.metrics.overlap import dice
from angioseg.train.finetune import FinetuneConfig


def rescore(run: Path, data: Path) -> tuple[float, float]:
    """Mean test Dice of ``run``'s saved predictions against drawn and against filled truth."""
    cfg = load_config(FinetuneConfig, run / "config.yaml")
    drawn, filled = [], []
    for p in sorted((run / "test" / "predictions").glob("*.png")):
        pred = read_mask(p)
        truth = read_mask(data / "masks" / p.name)
        drawn.append(dice(pred, truth_mask(truth, cfg.preprocess)))
        filled.append(dice(pred, truth_mask(fill_small_holes(truth, None), cfg.preprocess)))
    return statistics.mean(drawn), statistics.mean(filled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, help="a study folder (cells/<method>/n<budget>/seed<s>/)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/xca_cimat40"))
    args = ap.parse_args()
    table: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for run in sorted(args.study.glob("cells/*/n*/seed*")):
        if (run / "test" / "predictions").is_dir():
            table[(run.parts[-3], run.parts[-2][1:])].append(rescore(run, args.data))
    print("| method | budget | runs | Dice vs drawn masks | Dice vs filled masks | scoring effect |")
    print("|---|---|---|---|---|---|")
    for (method, budget), rows in sorted(table.items(), key=lambda kv: (kv[0][0], int(kv[0][1]))):
        d = statistics.mean(r[0] for r in rows)
        f = statistics.mean(r[1] for r in rows)
        print(f"| {method} | {budget} | {len(rows)} | {d:.3f} | {f:.3f} | {d - f:+.3f} |")


if __name__ == "__main__":
    main()
