"""Check the COCO polygon convention of ``angioseg.public.arcade.polygon_mask`` against pycocotools.

pycocotools (BSD-2) is the reference rasteriser of COCO polygons but is not an angioseg dependency,
so this is a script, not a test. Run it in any environment that has both packages::

    pip install pycocotools && python bench/coco_convention_check.py

It rasterises random polygons (half with integer, half with fractional vertices) with pycocotools,
with ``polygon_mask`` (pixel centres at +0.5, the COCO frame) and with the naive
``skimage.draw.polygon(y, x)`` call (pixel centres at integer coordinates), and prints how many
pixels each disagrees with pycocotools and the Dice against it. The right convention disagrees only
on boundary pixels (pycocotools rasterises an upsampled, rounded outline); the naive one is shifted
by half a pixel and grows every mask by a row and a column.
"""

from __future__ import annotations

import sys

import numpy as np


def naive_mask(poly: list[float], shape: tuple[int, int]) -> np.ndarray:
    from skimage.draw import polygon

    m = np.zeros(shape, bool)
    rr, cc = polygon(np.asarray(poly[1::2]), np.asarray(poly[0::2]), shape=shape)
    m[rr, cc] = True
    return m


def random_polygons(rng: np.random.Generator, n: int, size: int) -> list[list[float]]:
    """Star-shaped polygons (vertices sorted by angle around their mean), some thin like vessels."""
    polys = []
    for i in range(n):
        k = int(rng.integers(3, 12))
        pts = rng.uniform(2, size - 2, size=(k, 2))
        if i % 3 == 0:  # a thin, vessel-like sliver
            pts[:, 1] = pts[:, 1].mean() + (pts[:, 1] - pts[:, 1].mean()) * 0.1
        centre = pts.mean(axis=0)
        pts = pts[np.argsort(np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0]))]
        if i % 2 == 0:
            pts = np.round(pts)
        polys.append(pts.ravel().tolist())
    return polys


def main() -> int:
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        print("pycocotools is not installed: pip install pycocotools (this check is optional)")
        return 0
    from angioseg.public.arcade import polygon_mask

    size, n = 64, 400
    shape = (size, size)
    rng = np.random.default_rng(0)
    rows = {"angioseg polygon_mask (+0.5)": [], "naive skimage polygon(y, x)": []}
    for poly in random_polygons(rng, n, size):
        ref = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([poly], size, size))).astype(bool)
        if ref.sum() == 0:
            continue
        for name, mask in (
            ("angioseg polygon_mask (+0.5)", polygon_mask([poly], shape)),
            ("naive skimage polygon(y, x)", naive_mask(poly, shape)),
        ):
            dice = 2 * (mask & ref).sum() / (mask.sum() + ref.sum())
            rows[name].append(((mask ^ ref).sum(), ref.sum(), dice))
    print(f"{n} random polygons on a {size}x{size} grid, compared with pycocotools")
    print(
        f"{'method':32s} {'identical':>9s} {'xor px/poly':>12s} {'area px':>8s} {'mean Dice':>10s} {'min Dice':>9s}"
    )
    for name, vals in rows.items():
        arr = np.asarray(vals, dtype=float)
        print(
            f"{name:32s} {np.mean(arr[:, 0] == 0):9.3f} {arr[:, 0].mean():12.2f} {arr[:, 1].mean():8.1f} "
            f"{arr[:, 2].mean():10.4f} {arr[:, 2].min():9.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
