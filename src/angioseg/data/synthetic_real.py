"""Synthetic angiograms on real backgrounds, for label-free supervised pretraining.

:func:`angioseg.data.synthetic.synthetic_angiogram` draws everything (background included); a
network pretrained on it learns that smooth noise is background, but real frames have ribs, the
spine, the diaphragm, catheters and wires. Here the background is a real unlabeled angiogram whose
own vessels are removed, and the vessels drawn on it follow the statistics of annotated masks:

* **background**: a real frame resized to ``size``, randomly flipped / rotated by 90 degrees, with
  its dark thin structures (vessels, wires, the catheter) removed. Two ways (``background``):

  - ``"inpaint"``: the frame's dark thin structures are found by a black top-hat (a grayscale
    closing with a disc wider than any vessel, minus the frame) with hysteresis thresholds, grown
    by 2 px, and only those pixels are replaced: filled from their surroundings (normalised
    Gaussian convolution, the smallest scale that reaches them) plus noise at the local fine-texture
    level. Every other pixel is the real frame's, texture included.
  - ``"closing"`` (how ``builtin:xca_synth_pretrained`` was made): the whole frame is replaced by
    its grayscale closing with a square (``closing_radius``), lightly smoothed, with the frame's
    fine texture added back where it is not much darker than the closing. Cheaper, but it leaves
    square plateaus and bright outlines where the frame's vessels were;
* **vessels**: one or two branching trees of tapering radius from
  a random walk (:func:`angioseg.data.synthetic._tree` in the :data:`ANNOTATED` style), sized like the 40 CIMAT masks at 256 pixels (vessel
  diameter median 4 px, 5-95 % 2-10 px; 3.6-8 % of the image), with at most three children a
  segment and no branch thinner than 2 px (annotators do not draw what they cannot see);
* **contrast**: Beer-Lambert absorption, ``I = B * exp(-mu * chord)``, with ``mu`` drawn so that a
  vessel of ``ref_diameter`` px is ``contrast`` (relative) darker than its surroundings (CIMAT:
  5-95 % of 8-27 %, median 17 %);
* **catheter** (probability ``catheter_prob``): a long tube of constant radius, darker than the
  vessels, never in the mask; then blur and signal-dependent noise.

The mask is the set of pixels whose centre lies inside a drawn vessel (exact truth).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from angioseg.data.synthetic import TreeStyle, _rasterise, _tree, _walk


@dataclass
class RealSynthConfig:
    size: int = 256
    trees: tuple[int, int] = (1, 2)
    root_radius: tuple[float, float] = (2.2, 4.0)  # px at 256: root diameters 4.4-8
    branch_depth: int = 2
    contrast: tuple[float, float] = (0.08, 0.3)  # relative darkening of a ref_diameter vessel
    ref_diameter: float = 5.0
    catheter_prob: float = 0.5
    closing_radius: int = 7
    noise: float = 0.03
    blur: tuple[float, float] = (0.5, 1.1)
    background: str = "closing"  # BACKGROUNDS: how the real frame's own vessels are removed


BACKGROUNDS = ("closing", "inpaint")


def check_background(method: str) -> str:
    """``method`` if it is one of :data:`BACKGROUNDS`, else an error naming them."""
    if method not in BACKGROUNDS:
        from angioseg.errors import AngiosegError

        raise AngiosegError(f"--background-removal {method!r} is not one of: {', '.join(BACKGROUNDS)}")
    return method


# A tree like an annotator draws one: 1-3 children a segment, no branch thinner than 2 px.
ANNOTATED = TreeStyle(
    end_ratio=(0.55, 0.8),
    min_radius=1.0,
    stop_radius=1.5,
    children=(1, 4),
    child_angle=(0.4, 1.1),
    child_radius=(0.55, 0.85),
    child_length=(0.3, 0.65),
    curvature=(0.03, 0.08),
    clip_children=True,
)


def _as_unit_image(frame: np.ndarray, size: int) -> np.ndarray:
    """A frame (any size, gray or RGB, uint8 or float) as a float64 ``size`` x ``size`` image in [0, 1]."""
    from skimage.transform import resize

    img = np.asarray(frame, np.float32)
    if img.ndim == 3:
        img = img[..., :3].mean(-1)
    return np.asarray(resize(img / max(float(img.max()), 1.0), (size, size), order=1, anti_aliasing=True))


def inpainted_background(
    frame: np.ndarray,
    size: int,
    rng: np.random.Generator | int | None = None,
    radius: int | None = None,
    low: float = 0.02,
    high: float = 0.06,
    grow: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """The real frame at ``size`` with only its dark thin structures replaced (module docstring,
    ``"inpaint"``): ``(image float32 in [0, 1], replaced bool)``.

    A pixel is replaced where the black top-hat (closing with a disc of ``radius`` px, by default
    6 px per 256 of ``size``, wider than the widest vessel drawn; minus the frame; both smoothed at
    1 px) exceeds ``low`` and is connected to where it exceeds ``high``, grown by ``grow`` px; and
    only inside the exposed field (bright surroundings), so a collimator's dark border stays dark.
    """
    from skimage.filters import apply_hysteresis_threshold
    from skimage.morphology import disk

    img = _as_unit_image(frame, size).astype(np.float32)
    # on the frame smoothed at 1 px, so that pixel noise does not count as dark structure
    smooth = ndimage.gaussian_filter(img, 1.0)
    if radius is None:
        radius = max(2, round(6 * size / 256))
    closed = ndimage.grey_closing(smooth, footprint=disk(radius))
    dark = apply_hysteresis_threshold(closed - smooth, low, high)
    if grow > 0:  # (scipy dilates until nothing changes for iterations < 1: the whole frame)
        dark = ndimage.binary_dilation(dark, iterations=grow)
    dark &= closed > 0.2
    if not dark.any():
        return img, dark
    keep = (~dark).astype(np.float32)
    fill = np.zeros_like(img)
    todo = dark.copy()
    for sigma in (2, 4, 8, 16, 32, 64):  # the smallest scale whose window holds enough kept pixels
        weight = ndimage.gaussian_filter(keep, sigma)
        ok = todo & (weight > 0.1)
        fill[ok] = ndimage.gaussian_filter(img * keep, sigma)[ok] / weight[ok]
        todo &= ~ok
    fill[todo] = float(np.median(img[~dark])) if (~dark).any() else float(img.mean())
    # the kept pixels' fine texture (their local sd), continued into the filled ones as noise
    fine = img - ndimage.gaussian_filter(img, 1.5)
    local_sd = np.sqrt(
        ndimage.gaussian_filter(fine * fine * keep, 8) / np.maximum(ndimage.gaussian_filter(keep, 8), 1e-3)
    )
    noise = ndimage.gaussian_filter(np.random.default_rng(rng).standard_normal(img.shape), 0.7)
    noise /= noise.std() + 1e-8
    out = np.where(dark, fill + local_sd * noise, img)
    return np.clip(out, 0.0, 1.0).astype(np.float32), dark


def vessel_free_background(
    frame: np.ndarray,
    size: int,
    closing_radius: int,
    method: str = "closing",
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """A real frame (any size, uint8 or float) as a float image in [0, 1] of ``size`` x ``size`` without its dark thin structures.

    ``method`` is one of :data:`BACKGROUNDS` (module docstring); ``rng`` seeds ``"inpaint"``'s texture noise.
    """
    if check_background(method) == "inpaint":
        return inpainted_background(frame, size, rng)[0]
    img = _as_unit_image(frame, size)
    # A square footprint: separable, so ~20x faster than a disc, and as good at removing thin lines.
    closed = ndimage.grey_closing(img, size=(2 * closing_radius + 1,) * 2)
    smooth = ndimage.gaussian_filter(closed, 1.5)
    # Fine texture of the frame (what the closing flattened), kept only where the frame was not
    # much darker than the closed background (i.e. not on its own vessels).
    fine = img - ndimage.gaussian_filter(img, 2.0)
    keep = (closed - img) < 0.04
    return np.clip(smooth + 0.7 * fine * keep, 0.0, 1.0).astype(np.float32)


def realistic_angiogram(
    background: np.ndarray, rng: np.random.Generator | int | None = None, cfg: RealSynthConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic angiogram drawn on a real ``background`` frame: ``(image uint8, mask bool)``."""
    cfg = cfg or RealSynthConfig()
    rng = np.random.default_rng(rng)
    n = cfg.size
    bg = vessel_free_background(background, n, cfg.closing_radius, cfg.background, rng)
    bg = np.rot90(bg, int(rng.integers(4)))
    if rng.random() < 0.5:
        bg = bg[:, ::-1]
    segments = []
    for _ in range(rng.integers(cfg.trees[0], cfg.trees[1] + 1)):
        theta = rng.uniform(0, 2 * np.pi)
        start = np.array([n / 2, n / 2]) + rng.uniform(0.3, 0.45) * n * np.array(
            [np.sin(theta), np.cos(theta)]
        )
        inward = theta + np.pi + rng.uniform(-0.6, 0.6)
        segments += _tree(rng, n, rng.uniform(*cfg.root_radius), cfg.branch_depth, start, inward, ANNOTATED)
    # Vessels are not seen (nor drawn) where the collimator blanks the frame.
    thick = _rasterise((n, n), segments) * (ndimage.gaussian_filter(bg, 2.0) > 0.15)
    mu = -np.log(1.0 - rng.uniform(*cfg.contrast)) / cfg.ref_diameter
    img = bg * np.exp(-mu * thick)
    if rng.random() < cfg.catheter_prob:
        theta = rng.uniform(0, 2 * np.pi)
        start = np.array([n / 2, n / 2]) + 0.6 * n * np.array([np.sin(theta), np.cos(theta)])
        r = rng.uniform(2.0, 2.8)
        pts, radii = _walk(
            rng, start, theta + np.pi + rng.uniform(-0.3, 0.3), int(rng.uniform(0.5, 0.9) * n), r, r, 0.02
        )
        img = img * np.exp(-1.5 * mu * _rasterise((n, n), [(pts, radii)]))
    img = ndimage.gaussian_filter(img, rng.uniform(*cfg.blur))
    img = img + cfg.noise * np.sqrt(np.clip(img, 0, None)) * rng.standard_normal(img.shape)
    return np.clip(img * 255, 0, 255).astype(np.uint8), thick > 0


def write_realistic_dataset(
    out: str | Path,
    backgrounds: Sequence[str | Path],
    n: int,
    size: int = 256,
    seed: int = 0,
    catheter_prob: float = 0.5,
    progress: bool = False,
    background: str = "closing",
) -> list[str]:
    """Write ``n`` pairs ``out/images/synth_NNNN.png`` + ``out/masks/synth_NNNN.png`` on the given frames.

    Image ``i`` uses background ``backgrounds[i % len(backgrounds)]`` and depends only on
    ``(seed, i)`` and that frame, so a larger ``n`` extends a smaller one.
    """
    from angioseg.data.io import read_image, write_png

    if not backgrounds:
        from angioseg.errors import DataError

        raise DataError(out, "no background frames given for realistic synthetic angiograms")
    out = Path(out)
    cfg = RealSynthConfig(size=size, catheter_prob=catheter_prob, background=background)
    names = []
    from rich.progress import track

    for i in track(range(n), description="synthesising", disable=not progress, transient=True):
        frame = read_image(backgrounds[i % len(backgrounds)])
        image, mask = realistic_angiogram(frame, np.random.default_rng([seed, i]), cfg)
        name = f"synth_{i:05d}"
        write_png(out / "images" / f"{name}.png", image)
        write_png(out / "masks" / f"{name}.png", mask)
        names.append(name)
    return names
