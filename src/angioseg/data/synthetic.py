"""Synthetic X-ray angiograms with exact vessel masks.

An image is a textured, bright background (smooth multi-scale noise, a few broad darker structures
standing in for the spine and diaphragm) inside a circular collimator, with one or two branching
vessel trees of tapering radius drawn as absorbing cylinders (intensity × exp(−μ·thickness)),
optionally a catheter (a long tube of constant radius, not part of the mask), then blur and
signal-dependent noise. The mask is the set of pixels whose centre lies inside a vessel and
inside the collimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage


@dataclass
class SynthConfig:
    size: int = 256
    trees: tuple[int, int] = (1, 3)
    root_radius: tuple[float, float] = (2.5, 4.5)
    branch_depth: int = 3
    catheter_prob: float = 0.5
    noise: float = 0.04
    contrast: float = 0.09


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / (n.std() + 1e-8)


def _walk(
    rng: np.random.Generator,
    start: np.ndarray,
    angle: float,
    length: int,
    r0: float,
    r1: float,
    curvature: float = 0.06,
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random path of ``length`` unit steps with radius going linearly from r0 to r1."""
    turn = ndimage.gaussian_filter1d(rng.standard_normal(length), 6.0) * curvature * 2.5
    angles = angle + np.cumsum(turn)
    steps = np.stack([np.sin(angles), np.cos(angles)], axis=1)
    pts = start + np.cumsum(steps, axis=0)
    radii = np.linspace(r0, r1, length)
    return pts, radii


@dataclass(frozen=True)
class TreeStyle:
    """How :func:`_tree` branches: ranges are drawn uniformly, in the order of the fields used.

    The default is this module's dense, hair-thin trees; :mod:`angioseg.data.synthetic_real`
    uses a sparser style like an annotator's masks.
    """

    end_ratio: tuple[float, float] = (0.45, 0.7)  # radius at a segment's end / at its start
    min_radius: float = 0.8  # no segment end (nor, with clip_children, child) thinner than this
    stop_radius: float = 1.2  # a segment thinner than this at its start has no children
    children: tuple[int, int] = (2, 5)  # integers in [low, high)
    child_angle: tuple[float, float] = (0.45, 1.2)
    child_radius: tuple[float, float] = (0.55, 0.8)
    child_length: tuple[float, float] = (0.35, 0.7)
    curvature: tuple[float, float] | None = None  # drawn per segment; None: _walk's default
    clip_children: bool = False


def _tree(
    rng: np.random.Generator,
    size: int,
    r_root: float,
    depth: int,
    start: np.ndarray,
    angle: float,
    style: TreeStyle = TreeStyle(),
) -> list[tuple[np.ndarray, np.ndarray]]:
    segments: list[tuple[np.ndarray, np.ndarray]] = []
    stack = [(start, angle, r_root, depth, int(size * rng.uniform(0.5, 0.9)))]
    while stack:
        s, a, r, d, length = stack.pop()
        r_end = max(style.min_radius, r * rng.uniform(*style.end_ratio))
        if style.curvature is None:
            pts, radii = _walk(rng, s, a, length, r, r_end)
        else:
            pts, radii = _walk(rng, s, a, length, r, r_end, curvature=rng.uniform(*style.curvature))
        segments.append((pts, radii))
        if d == 0 or r < style.stop_radius:
            continue
        for _ in range(rng.integers(*style.children)):
            k = int(rng.uniform(0.15, 0.85) * length)
            side = rng.choice([-1.0, 1.0])
            child_angle = a + side * rng.uniform(*style.child_angle)
            child_r = radii[k] * rng.uniform(*style.child_radius)
            if style.clip_children:
                child_r = max(style.min_radius, child_r)
            stack.append(
                (pts[k], child_angle, child_r, d - 1, int(length * rng.uniform(*style.child_length)))
            )
    return segments


def disc_fields(
    shape: tuple[int, int], segments: list[tuple[np.ndarray, np.ndarray]], pad: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: chord length through the union of discs along the paths (max over discs), and the
    signed margin max_i(r_i - |p - c_i|) (> 0 inside; -1e3 farther than ``pad`` px from every disc)."""
    h, w = shape
    thick = np.zeros(shape, np.float32)
    margin = np.full(shape, -1e3, np.float32)
    for pts, radii in segments:
        for (y, x), r in zip(pts, radii, strict=True):
            rr = int(np.ceil(r)) + pad
            y0, y1 = max(int(y) - rr, 0), min(int(y) + rr + 1, h)
            x0, x1 = max(int(x) - rr, 0), min(int(x) + rr + 1, w)
            if y0 >= y1 or x0 >= x1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            d2 = (yy - y) ** 2 + (xx - x) ** 2
            np.maximum(margin[y0:y1, x0:x1], r - np.sqrt(d2), out=margin[y0:y1, x0:x1])
            chord = 2.0 * np.sqrt(np.clip(r * r - d2, 0.0, None))
            np.maximum(thick[y0:y1, x0:x1], chord, out=thick[y0:y1, x0:x1])
    return thick, margin


def _rasterise(shape: tuple[int, int], segments: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Chord length through the union of discs along the paths (max over discs), per pixel."""
    return disc_fields(shape, segments)[0]


def synthetic_angiogram(
    rng: np.random.Generator | int | None = None, cfg: SynthConfig | None = None, catheter: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic angiogram: ``(image uint8 H x W, mask bool H x W)``."""
    cfg = cfg or SynthConfig()
    rng = np.random.default_rng(rng)
    n = cfg.size
    scale = n / 256.0
    shape = (n, n)
    # Background: bright, smooth texture and broad darker anatomy.
    bg = 0.62 + 0.07 * _smooth_noise(rng, shape, 24 * scale) + 0.025 * _smooth_noise(rng, shape, 5 * scale)
    ramp = rng.uniform(-1, 1, 2)
    bg += 0.08 * (ramp[0] * (np.arange(n)[:, None] / n - 0.5) + ramp[1] * (np.arange(n)[None, :] / n - 0.5))
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0, n, 2)
        s = rng.uniform(0.15, 0.35) * n
        bg -= rng.uniform(0.05, 0.15) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    # Vessel trees entering from near the border, heading inwards.
    segments = []
    for _ in range(rng.integers(cfg.trees[0], cfg.trees[1] + 1)):
        theta = rng.uniform(0, 2 * np.pi)
        start = np.array([n / 2, n / 2]) + 0.38 * n * np.array([np.sin(theta), np.cos(theta)])
        inward = theta + np.pi + rng.uniform(-0.5, 0.5)
        r = rng.uniform(*cfg.root_radius) * scale
        segments += _tree(rng, n, r, cfg.branch_depth, start, inward)
    thick = _rasterise(shape, segments)
    # Catheter: constant radius, stronger absorption, never in the mask.
    cath = np.zeros(shape, np.float32)
    if catheter if catheter is not None else rng.random() < cfg.catheter_prob:
        theta = rng.uniform(0, 2 * np.pi)
        start = np.array([n / 2, n / 2]) + 0.6 * n * np.array([np.sin(theta), np.cos(theta)])
        pts, radii = _walk(
            rng, start, theta + np.pi + rng.uniform(-0.3, 0.3), int(0.8 * n), 2.2 * scale, 2.2 * scale, 0.02
        )
        cath = _rasterise(shape, [(pts, radii)])
    # Collimator disc with a soft edge.
    cy, cx = n / 2 + rng.uniform(-0.05, 0.05, 2) * n
    rad = rng.uniform(0.5, 0.62) * n
    dist = np.hypot(yy - cy, xx - cx)
    inside = dist <= rad
    collimator = 1.0 / (1.0 + np.exp((dist - rad) / (1.5 * scale)))
    contrast = cfg.contrast * rng.uniform(0.8, 1.25) / scale
    img = bg * np.exp(-contrast * thick - 1.6 * contrast * cath)
    img = img * (0.08 + 0.92 * collimator)
    img = ndimage.gaussian_filter(img, 0.7 * scale)
    img = img + cfg.noise * np.sqrt(np.clip(img, 0, None)) * rng.standard_normal(shape)
    image = np.clip(img * 255, 0, 255).astype(np.uint8)
    mask = (thick > 0) & inside
    return image, mask


def write_synthetic_dataset(
    out: str | Path, n: int, size: int = 256, seed: int = 0, catheter_prob: float = 0.5
) -> list[str]:
    """Write ``n`` image/mask pairs as ``out/images/synth_NNNN.png`` and ``out/masks/synth_NNNN.png``.

    Image ``i`` depends only on ``(seed, i)``, so a larger ``n`` extends a smaller one.
    """
    from angioseg.data.io import write_png

    out = Path(out)
    cfg = SynthConfig(size=size, catheter_prob=catheter_prob)
    names = []
    for i in range(n):
        image, mask = synthetic_angiogram(np.random.default_rng([seed, i]), cfg)
        name = f"synth_{i:04d}"
        write_png(out / "images" / f"{name}.png", image)
        write_png(out / "masks" / f"{name}.png", mask)
        names.append(name)
    return names
