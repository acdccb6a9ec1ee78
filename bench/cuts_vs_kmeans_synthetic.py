"""Does label-free CUTS beat the intensity k-means baseline on synthetic angiograms? (issue 5)

Writes ``--n`` synthetic angiograms (``angioseg.data.synthetic``, ``--data-seed`` 0: the test suite's images
when ``--size 96``), then runs the user's three commands on them: ``angioseg unsupervised fit``
(no mask is read), ``segment`` on the first ``--score`` images and ``evaluate`` against the
synthetic masks, and prints mean Dice of the label-free rows (``cuts`` and the rule on each CUTS
map, ``kmeans_intensity``, ``frangi_otsu``) and of the best-set ORACLE bounds, plus the wall time.
Synthetic data only: nothing here reads the real data sets. Make choices with ``--data-seed 1``
or ``2``; seed 0 is the test suite's. Run alone on the shared CPU::

    flock /tmp/angioseg-heavy.lock python bench/cuts_vs_kmeans_synthetic.py --out runs/cuts_synth/s1 \\
        --n 24 --size 96 --epochs 50 --crop 64 --batch-size 8 --landmarks 200 --score 16 --data-seed 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROWS = (
    "cuts",
    "cuts_spread",
    "cuts_landmarks",
    "cuts_kmeans",
    "cuts_persistent",
    "kmeans_intensity",
    "frangi_otsu",
    "oracle_cuts_landmarks_best_set",
    "oracle_cuts_kmeans_best_set",
    "oracle_cuts_persistent_best_set",
    "oracle_kmeans_intensity_best_set",
)


def main() -> None:
    from angioseg.data.synthetic import write_synthetic_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="work folder (data/, fit/, seg/, eval/)")
    ap.add_argument("--n", type=int, default=24, help="synthetic images to fit on")
    ap.add_argument("--size", type=int, default=96, help="image side (px)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--crop", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--landmarks", type=int, default=200)
    ap.add_argument("--score", type=int, default=6, help="images segmented and scored (first by name)")
    ap.add_argument("--setting", default="cuts2022", help="published loss setting: cuts2022 | cuts2024")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=0,
                    help="synthetic data seed (0 = the test suite's images; make choices on others)")  # fmt: skip
    ap.add_argument("--vessel-map", default=None, help="segment --vessel-map (default: the CLI's)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    data = args.out / "data"
    names = write_synthetic_dataset(data, args.n, size=args.size, seed=args.data_seed)
    fit, seg, rep = args.out / "fit", args.out / "seg", args.out / "eval"

    def call(*a: object) -> None:
        cmd = [sys.executable, "-m", "angioseg", "unsupervised", *map(str, a)]
        if subprocess.call(cmd) != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}")

    if not (fit / "model.json").exists():
        call("fit", "--data", data, "--out", fit, "--epochs", args.epochs, "--crop", args.crop,
             "--batch-size", args.batch_size, "--setting", args.setting, "--seed", args.seed)  # fmt: skip
    images = [data / "images" / f"{n}.png" for n in names[: args.score]]
    call("segment", *images, "--model", fit, "--out", seg, "--landmarks", args.landmarks, "--seed", args.seed,
         "--no-figure", *(["--vessel-map", args.vessel_map] if args.vessel_map else []))  # fmt: skip
    call("evaluate", "--seg", seg, "--truth", data, "--out", rep)
    summary = json.loads((rep / "summary.json").read_text(encoding="utf-8"))
    print(f"n={args.n} size={args.size} epochs={args.epochs} crop={args.crop} landmarks={args.landmarks} "
          f"setting={args.setting} data_seed={args.data_seed} vessel_map={args.vessel_map} scored={args.score}")  # fmt: skip
    for row in ROWS:
        s = summary[row]
        print(f"{row:34s} {s['selection']:22s} Dice {s['dice']:.3f}  clDice {s['cldice']:.3f}")
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
