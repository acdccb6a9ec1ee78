"""How long converting an ARCADE-sized split takes, against plain file copying as the baseline.

Uses the 1000 real 512 x 512 ARCADE angiograms of ``../shared/data/arcade_unlabeled`` with a COCO
file written here (8 random vessel-like polygons per image, since the real annotations are not in
``../shared``), so that the figure predicts ``angioseg data convert arcade`` on the real archive
(3000 images in all). Run (it measures time, so take the shared lock)::

    flock /tmp/angioseg-heavy.lock .venv/bin/python bench/bench_public_convert.py [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "arcade_unlabeled"


def vessel_polygon(rng: np.random.Generator, size: int) -> list[float]:
    """A thin quadrilateral strip, 4-12 pixels wide, like one coronary segment."""
    x0, y0 = rng.uniform(20, size - 20, 2)
    angle = rng.uniform(0, np.pi)
    length, width = rng.uniform(40, 160), rng.uniform(4, 12)
    dx, dy = np.cos(angle) * length, np.sin(angle) * length
    nx, ny = -np.sin(angle) * width / 2, np.cos(angle) * width / 2
    pts = [(x0 + nx, y0 + ny), (x0 + dx + nx, y0 + dy + ny), (x0 + dx - nx, y0 + dy - ny), (x0 - nx, y0 - ny)]
    return [float(np.clip(v, 0, size)) for p in pts for v in p]


def run(files: list[Path], rgb: bool, tmp: Path) -> tuple[float, float, float]:
    """Seconds to copy the source PNGs, to convert them, and to rerun the finished conversion."""
    from PIL import Image

    from angioseg.public.common import ConvertOptions
    from angioseg.public.convert import convert

    rng = np.random.default_rng(0)
    split = tmp / "arcade" / "syntax" / "train"
    (split / "images").mkdir(parents=True)
    (split / "annotations").mkdir()
    for p in files:
        if rgb:  # three equal channels, as RGB PNG: the converter stores it as gray (re-encoding)
            with Image.open(p) as im:
                im.convert("RGB").save(split / "images" / p.name)
        else:  # 8-bit gray PNG: copied byte for byte
            shutil.copyfile(p, split / "images" / p.name)
    spec = {
        "images": [{"id": i, "file_name": p.name, "width": 512, "height": 512} for i, p in enumerate(files)],
        "categories": [{"id": c, "name": str(c)} for c in range(1, 26)],
        "annotations": [
            {
                "id": k,
                "image_id": i,
                "category_id": int(rng.integers(1, 26)),
                "segmentation": [vessel_polygon(rng, 512)],
            }
            for i in range(len(files))
            for k in range(i * 8, i * 8 + 8)
        ],
    }
    (split / "annotations" / "train.json").write_text(json.dumps(spec))
    (tmp / "copy").mkdir()
    t0 = time.perf_counter()
    for p in files:
        shutil.copyfile(split / "images" / p.name, tmp / "copy" / p.name)
    t_copy = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = convert("arcade", tmp / "arcade", tmp / "out", ConvertOptions())
    t_convert = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = convert("arcade", tmp / "arcade", tmp / "out", ConvertOptions())
    t_resume = time.perf_counter() - t0
    assert res.written == len(files) and not res.failed and again.skipped == len(files)
    return t_copy, t_convert, t_resume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="images to convert (at most 1000)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} not found")
        return
    files = sorted(SHARED.glob("*.png"), key=lambda p: int(p.stem))[: args.n]
    n = len(files)
    print(f"{n} ARCADE images (512x512) with 8 polygons each; one image + one mask PNG written per image")
    for rgb, what in (
        (False, "8-bit gray source PNGs (copied)"),
        (True, "RGB source PNGs, equal channels (re-encoded as gray)"),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            t_copy, t_convert, t_resume = run(files, rgb, Path(tmp))
        print(f"{what}:")
        print(f"  baseline, copy the source files: {t_copy:6.2f} s ({n / t_copy:7.1f} images/s)")
        print(
            f"  convert: {t_convert:6.2f} s ({n / t_convert:6.1f} images/s) = {t_convert / t_copy:.0f} x the copy; "
            f"rerun with everything done: {t_resume:.2f} s; 3000 images (all of ARCADE): "
            f"{3000 * t_convert / n / 60:.1f} min"
        )


if __name__ == "__main__":
    main()
