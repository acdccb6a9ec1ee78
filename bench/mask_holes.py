"""How large are the holes in real vessel masks, and what does filling them do to the vessel area?

The evidence behind ``PreprocessConfig.max_hole_area`` (docs/results/ground_truth.md). Only the
images outside the fixed test split (``test_seed`` 42, 20 %) are used for the choice; the test
images are listed separately, for information.

    python bench/mask_holes.py --data ../shared/data/xca_cimat40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

from angioseg.data.io import read_mask
from angioseg.data.preprocess import fill_small_holes
from angioseg.data.splits import SplitSpec, make_splits

THRESHOLDS = (0, 1, 4, 16, 27, 64, 256, None)


def hole_areas(mask: np.ndarray) -> list[int]:
    """Areas of the background regions enclosed by the mask (not 4-connected to the border)."""
    holes = np.asarray(ndimage.binary_fill_holes(mask)) & ~mask
    labels, n = ndimage.label(holes)
    return [int(a) for a in np.bincount(labels.ravel())[1:]] if n else []


def report(title: str, masks: dict[str, np.ndarray]) -> None:
    areas = sorted(a for m in masks.values() for a in hole_areas(m))
    drawn = sum(int(m.sum()) for m in masks.values())
    with_holes = sum(1 for m in masks.values() if hole_areas(m))
    print(f"\n{title}: {len(masks)} masks, {with_holes} with enclosed holes, vessel area {drawn} px")
    print(f"hole areas (px), smallest first: {areas}")
    print("max_hole_area | holes filled | vessel area change | masks changed")
    for t in THRESHOLDS:
        filled = {n: fill_small_holes(m, t) for n, m in masks.items()}
        area = sum(int(f.sum()) for f in filled.values())
        changed = sum(1 for n in masks if not np.array_equal(filled[n], masks[n]))
        count = len(areas) if t is None else sum(a <= t for a in areas)
        label = "None (all)" if t is None else str(t)
        print(f"{label:>13} | {count:>12} | {100 * (area - drawn) / drawn:>+17.3f} % | {changed:>13}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/xca_cimat40"))
    ap.add_argument("--test", type=float, default=0.2)
    ap.add_argument("--test-seed", type=int, default=42)
    args = ap.parse_args()
    files = sorted((args.data / "masks").glob("*.png"))
    masks = {f.stem: read_mask(f) for f in files}
    splits = make_splits(sorted(masks), SplitSpec(args.test, 0.1, None, None, 0, args.test_seed))
    test = set(splits["test"])
    report(
        "images outside the test split (used for the choice)",
        {n: m for n, m in masks.items() if n not in test},
    )
    report("test split (not used for the choice)", {n: m for n, m in masks.items() if n in test})


if __name__ == "__main__":
    main()
