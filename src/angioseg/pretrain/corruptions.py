"""Models Genesis 2D image corruptions (Zhou et al., Medical Image Analysis 67, 2021), in NumPy.

Reimplemented from the paper's definitions and the CM-UNet authors' 2D settings
(``Pretraining/Transformation_based``, see ``seed_repositories_notes.md`` section 1.5); no code is
copied. Every function takes an ``H x W`` float image and a ``numpy.random.Generator``.

Differences from the seed, all deliberate:

* **Noise range matched to the intensity normalisation.** The seed fills painted boxes with
  U[0, 1), which suits Models Genesis' [0, 1] images but not z-scored angiograms; here the noise is
  U[min(x), max(x)) of the image itself, i.e. U[0, 1) after min-max scaling, as in the original.
* **Local pixel shuffling, vectorised.** The seed shuffles 10 000 blocks (side U[1, H // 25]) one by
  one in Python, each read from the *original* image and written over earlier blocks. The result
  is the same in distribution when every pixel takes its value from the last block that covers it,
  permuted within that block; that is computed here with one pass that records the last covering
  block and array indexing. The number of blocks scales with the image area (10 000 at 256 x 256,
  the seed's setting), so the shuffled fraction does not depend on ``image_size``.
* **Bezier curve** sampled at 1 000 points instead of 100 000 (a smooth cubic; no visible change).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np


@dataclass(frozen=True)
class GenesisConfig:
    """Probabilities of the CM-UNet authors' 2D Models Genesis ``config.py``."""

    flip_rate: float = 0.4
    local_rate: float = 0.5
    nonlinear_rate: float = 0.9
    paint_rate: float = 0.9
    inpaint_rate: float = 0.2
    blocks_per_65536_px: int = 10_000
    block_divisor: int = 25  # block side U[1, H // 25] (Models Genesis used H // 10)


def random_flips(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, prob: float
) -> tuple[np.ndarray, np.ndarray]:
    """While U < prob (at most 3 times) flip input and target together along a random axis."""
    for _ in range(3):
        if rng.random() >= prob:
            break
        axis = int(rng.integers(0, 2))
        x, y = np.flip(x, axis), np.flip(y, axis)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def bezier(points: np.ndarray, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Points of the Bezier curve with control ``points`` (k x 2), t from 0 (first point) to 1."""
    k = len(points) - 1
    t = np.linspace(0.0, 1.0, n)
    basis = np.stack([comb(k, i) * (1 - t) ** (k - i) * t**i for i in range(k + 1)])
    xy = points.T @ basis
    return xy[0], xy[1]


def nonlinear_intensity(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map intensities through a random cubic Bezier curve from (min, min) to (max, max).

    Control points 1 and 2 are uniform in the image's range. Half of the time the curve keeps the
    Bezier's pairing of x and y after sorting x only (the seed's "flip": dark becomes bright).
    """
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return x
    pts = np.array([[lo, lo], *(lo + (hi - lo) * rng.random((2, 2))), [hi, hi]])
    xs, ys = bezier(pts)
    if rng.random() < 0.5:
        # The seed evaluates the curve from its last point to its first and sorts only x.
        out = np.interp(x, np.sort(xs), ys[::-1])
    else:
        out = np.interp(x, np.sort(xs), np.sort(ys))
    return out.astype(x.dtype)


def local_pixel_shuffle(x: np.ndarray, rng: np.random.Generator, blocks: int, max_side: int) -> np.ndarray:
    """Shuffle the pixels inside ``blocks`` random rectangles of sides U[1, max_side]."""
    h, w = x.shape
    max_side = max(1, min(max_side, h, w))
    bh = rng.integers(1, max_side + 1, blocks)
    bw = rng.integers(1, max_side + 1, blocks)
    r0 = rng.integers(0, h - bh + 1)
    c0 = rng.integers(0, w - bw + 1)
    owner = np.full((h, w), -1, dtype=np.int64)
    for j in range(blocks):  # later blocks overwrite earlier ones, as in the sequential original
        owner[r0[j] : r0[j] + bh[j], c0[j] : c0[j] + bw[j]] = j
    keys = rng.random((blocks, max_side * max_side))
    keys[np.arange(max_side * max_side)[None] >= (bh * bw)[:, None]] = 2.0
    perm = np.argsort(keys, axis=1)  # perm[b, :n_b] is a permutation of 0 .. n_b - 1
    rows, cols = np.nonzero(owner >= 0)
    b = owner[rows, cols]
    src = perm[b, (rows - r0[b]) * bw[b] + (cols - c0[b])]
    out = x.copy()
    out[rows, cols] = x[r0[b] + src // bw[b], c0[b] + src % bw[b]]
    return out


def _box(rng: np.random.Generator, n: int, side: int) -> int:
    """Top/left of a box of ``side`` kept 3 px away from the border (the seed's rule)."""
    return int(rng.integers(3, max(3, n - side - 3) + 1))


def in_paint(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to 5 boxes (each drawn while U < 0.95) of sides U[H // 6, H // 3] filled with noise."""
    h, w = x.shape
    lo, hi = float(x.min()), float(x.max())
    out = x.copy()
    for _ in range(5):
        if rng.random() >= 0.95:
            break
        sh, sw = int(rng.integers(h // 6, h // 3 + 1)), int(rng.integers(w // 6, w // 3 + 1))
        r, c = _box(rng, h, sh), _box(rng, w, sw)
        out[r : r + sh, c : c + sw] = lo + (hi - lo) * rng.random((sh, sw))
    return out


def out_paint(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise everywhere except one box of sides H - U[2H // 7, 4H // 7] and up to 4 more boxes of
    sides H - U[3H // 7, 4H // 7] (each drawn while U < 0.95), where the image is kept."""
    h, w = x.shape
    lo, hi = float(x.min()), float(x.max())
    out = (lo + (hi - lo) * rng.random(x.shape)).astype(x.dtype)
    for i in range(5):
        if i > 0 and rng.random() >= 0.95:
            break
        a = 2 if i == 0 else 3
        sh = h - int(rng.integers(a * h // 7, 4 * h // 7 + 1))
        sw = w - int(rng.integers(a * w // 7, 4 * w // 7 + 1))
        r, c = _box(rng, h, sh), _box(rng, w, sw)
        out[r : r + sh, c : c + sw] = x[r : r + sh, c : c + sw]
    return out


def genesis_pair(
    image: np.ndarray, rng: np.random.Generator, cfg: GenesisConfig = GenesisConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """``(corrupted input, target)`` for one ``H x W`` image, in the seed's order: flips (both),
    local shuffling, non-linear intensity, then in-painting (20 %) or out-painting (80 %)."""
    y = image.astype(np.float32)
    x, y = random_flips(y.copy(), y, rng, cfg.flip_rate)
    h, w = x.shape
    if rng.random() < cfg.local_rate:
        blocks = max(1, round(cfg.blocks_per_65536_px * h * w / 65536))
        x = local_pixel_shuffle(x, rng, blocks, h // cfg.block_divisor)
    if rng.random() < cfg.nonlinear_rate:
        x = nonlinear_intensity(x, rng)
    if rng.random() < cfg.paint_rate:
        x = in_paint(x, rng) if rng.random() < cfg.inpaint_rate else out_paint(x, rng)
    return x.astype(np.float32), y.astype(np.float32)
