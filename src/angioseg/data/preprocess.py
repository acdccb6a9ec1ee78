"""Preprocessing of X-ray angiograms as the CM-UNet paper describes it.

Steps, in order, each switchable in :class:`PreprocessConfig`:

1. masks used for *training* only: filling of enclosed specks up to ``max_hole_area`` pixels at
   native resolution and an optional dilation (the paper's "mask smoothing"; the authors' code fills
   every hole, ``max_hole_area=None``, and dilates by about 1 px, ``mask_dilate=1``). Masks that are
   *scored* (:func:`truth_mask`) are never cleaned: only binarised, cropped and resized;
2. centre crop (the paper crops 512 x 512 FAME2 frames to 475 x 475: ``center_crop=475``);
3. dark-corner inpainting: collimator corners darker than ``corner_threshold`` (8-bit scale) in the
   four ``corner_ratio``-sized corners are filled when there are at least 100 such pixels. The authors
   use OpenCV's Telea inpainting; we use scikit-image's biharmonic inpainting (no OpenCV dependency);
4. unsharp mask, radius 60 (the paper's amount is 1, the authors' notebook used 3);
5. per-image z-score;
6. resize to ``image_size`` (bicubic for images; masks are resized as area fractions and
   thresholded at 0.5, which keeps thin vessels better than the seed's nearest-neighbour resize).

:func:`preprocess_image` also returns a :class:`Geometry` so that a prediction made on the
preprocessed image can be mapped back onto the original pixel grid (:func:`restore_geometry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage

#: Default ``max_hole_area``: enclosed background regions of at most this many pixels (native
#: resolution) are filled in training masks. Chosen on the 32 CIMAT images outside the test split
#: (``docs/results/ground_truth.md``): their only hole this small is a 1-px speck, the smallest region
#: enclosed by real vessels is 28 px, and filling every hole (the authors' code) grew vessel area by
#: 24 % on average because it paints vessel loops.
DEFAULT_MAX_HOLE_AREA = 4


@dataclass
class PreprocessConfig:
    max_hole_area: int | None = DEFAULT_MAX_HOLE_AREA
    mask_dilate: int = 0
    center_crop: int | None = None
    inpaint_corners: bool = True
    corner_ratio: float = 0.3
    corner_threshold: float = 30.0
    unsharp: bool = True
    unsharp_radius: float = 60.0
    unsharp_amount: float = 1.0
    zscore: bool = True
    image_size: int | None = 256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def upgrade(d: dict[str, Any]) -> dict[str, Any]:
        """Translate keys of older configs: ``fill_holes`` (True filled every hole; False none).

        The old key wins over a ``max_hole_area`` beside it: a file written with ``fill_holes`` was
        written before ``max_hole_area`` existed, so a ``max_hole_area`` next to it is a default
        merged in (``--config`` over the defaults), not a choice.
        """
        d = dict(d)
        if "fill_holes" in d:
            d["max_hole_area"] = None if bool(d.pop("fill_holes")) else 0
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PreprocessConfig:
        d = cls.upgrade(dict(d or {}))
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing options {sorted(unknown)}; expected {sorted(known)}")
        return cls(**d)


@dataclass
class Geometry:
    """Where a preprocessed image sits in the original one: crop box and pre-resize size."""

    original_shape: tuple[int, int]
    crop_box: tuple[int, int, int, int]  # row0, col0, height, width in the original image


#: A float image whose maximum is at most this is never taken as 8-bit data (see :func:`to_8bit_range`).
UNIT_FLOAT_MAX = 2.0


def to_8bit_range(image: np.ndarray) -> np.ndarray:
    """Bring raw intensities onto the 8-bit scale (0..255, float32) that the corner threshold assumes.

    The rule, by dtype and range:

    * integer images (uint8, uint16, int16, 12-bit DICOM, ...): kept as they are when all values lie
      in 0..255 (8-bit data, whatever the container), otherwise min-max scaled to 0..255;
    * float images: values in [0, 1] (the usual float convention) are multiplied by 255; values in
      0..255 that reach above :data:`UNIT_FLOAT_MAX` are kept (8-bit data stored as float); any
      other range is min-max scaled to 0..255 -- also a unit-range image that resampling pushed
      slightly past 1 (e.g. [0, 1.03]), which must not be taken for a nearly black 8-bit one.

    The readers (:func:`~angioseg.data.io.read_frames`) return float32 arrays that hold a file's
    integers exactly, so files follow the same rule: 8-bit PNG/JPEG/DICOM data is kept, 12/16-bit
    data is min-max scaled, a float NPY/TIFF in [0, 1] is multiplied by 255. The only case where the
    dtype matters is an all-but-black integer image whose maximum is at most 2 (kept as it is in
    memory; stretched when read from a file).
    A 16-bit copy ``x * 257`` of an 8-bit ``x`` gives ``x`` back when ``x`` spans 0..255. A constant
    image out of range becomes all zeros.
    """
    integer = np.asarray(image).dtype.kind in "ui"
    x = np.array(image, dtype=np.float32)  # a copy: callers may change it
    lo, hi = float(x.min()), float(x.max())
    if not integer and lo >= 0 and hi <= 1:
        return x * np.float32(255)
    if lo >= 0 and hi <= 255 and (integer or hi > UNIT_FLOAT_MAX):
        return x
    if hi <= lo:
        return np.zeros_like(x)
    return (x - lo) * np.float32(255.0 / (hi - lo))


def center_crop_box(shape: tuple[int, ...], size: int | None) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    if size is None:
        return 0, 0, h, w
    ch, cw = min(size, h), min(size, w)
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def dark_corner_mask(image: np.ndarray, ratio: float = 0.3, threshold: float = 30.0) -> np.ndarray:
    """Pixels <= ``threshold`` inside the four ``ratio * min(H, W)`` square corners."""
    h, w = image.shape
    bw = int(min(h, w) * ratio)
    mask = np.zeros(image.shape, bool)
    if bw == 0:
        return mask
    for rows in (slice(0, bw), slice(h - bw, h)):
        for cols in (slice(0, bw), slice(w - bw, w)):
            mask[rows, cols] = image[rows, cols] <= threshold
    return mask


def inpaint_dark_corners(
    image: np.ndarray, ratio: float = 0.3, threshold: float = 30.0, min_pixels: int = 100
) -> np.ndarray:
    """Fill dark collimator corners (8-bit scale input), as in the paper's preprocessing."""
    from skimage.restoration import inpaint_biharmonic

    mask = dark_corner_mask(image, ratio, threshold)
    if mask.sum() < min_pixels:
        return image
    mask = ndimage.binary_dilation(mask, structure=np.ones((5, 5), bool))
    if mask.all():
        return image
    return inpaint_biharmonic(image.astype(np.float64), mask).astype(np.float32)


def unsharp_mask(image: np.ndarray, radius: float = 60.0, amount: float = 1.0) -> np.ndarray:
    """out = x + amount * (x - G_radius(x)), no clipping (skimage ``preserve_range=True``)."""
    from skimage.filters import unsharp_mask as _unsharp

    return _unsharp(image.astype(np.float64), radius=radius, amount=amount, preserve_range=True).astype(
        np.float32
    )


def zscore(image: np.ndarray) -> np.ndarray:
    std = float(image.std())
    return ((image - image.mean()) / (std if std > 1e-8 else 1.0)).astype(np.float32)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    if image.shape == size:
        return image.astype(np.float32)
    anti = size[0] < image.shape[0] or size[1] < image.shape[1]
    return resize(image, size, order=3, anti_aliasing=anti, preserve_range=True).astype(np.float32)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    if mask.shape == size:
        return mask.astype(bool)
    frac = resize(
        mask.astype(np.float32), size, order=1, anti_aliasing=size[0] < mask.shape[0], preserve_range=True
    )
    return np.asarray(frac >= 0.5)


def fill_small_holes(mask: np.ndarray, max_area: int | None) -> np.ndarray:
    """Fill enclosed background regions of at most ``max_area`` pixels (``None``: every hole; 0: none).

    A hole is background not 4-connected to the image border (``scipy.ndimage.binary_fill_holes``).
    scikit-image's ``remove_small_holes`` is not used because it also fills small background regions
    that touch the border, which are not enclosed by the vessel.
    """
    mask = mask.astype(bool)
    if max_area is not None and max_area <= 0:
        return mask
    filled = np.asarray(ndimage.binary_fill_holes(mask))
    if max_area is None:
        return filled
    labels, n = ndimage.label(filled & ~mask)
    if n == 0:
        return mask
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    small = areas <= max_area
    small[0] = False
    return mask | small[labels]


def training_mask(mask: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """A mask to *train* on: small holes filled, optional dilation, then cropped and resized."""
    mask = fill_small_holes(mask, cfg.max_hole_area)
    if cfg.mask_dilate > 0:
        mask = ndimage.binary_dilation(mask, iterations=cfg.mask_dilate)
    return truth_mask(mask, cfg)


def truth_mask(mask: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """A mask to *score* against: the annotation as drawn, binarised, cropped and resized only."""
    mask = mask.astype(bool)
    r, c, h, w = center_crop_box(mask.shape, cfg.center_crop)
    mask = mask[r : r + h, c : c + w]
    if cfg.image_size is not None:
        mask = resize_mask(mask, (cfg.image_size, cfg.image_size))
    return mask


def preprocess_image(image: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, Geometry]:
    """Apply steps 2-6 to a raw image; return the float32 result and its :class:`Geometry`."""
    image = to_8bit_range(image)  # decides the scale from the dtype: do not cast before
    box = center_crop_box(image.shape, cfg.center_crop)
    r, c, h, w = box
    x = image[r : r + h, c : c + w]
    if cfg.inpaint_corners:
        x = inpaint_dark_corners(x, cfg.corner_ratio, cfg.corner_threshold)
    if cfg.unsharp and cfg.unsharp_amount != 0:
        x = unsharp_mask(x, cfg.unsharp_radius, cfg.unsharp_amount)
    if cfg.zscore:
        x = zscore(x)
    if cfg.image_size is not None:
        x = resize_image(x, (cfg.image_size, cfg.image_size))
    return x.astype(np.float32), Geometry((image.shape[0], image.shape[1]), box)


def preprocess_pair(
    image: np.ndarray, mask: np.ndarray | None, cfg: PreprocessConfig, train: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and mask at the model's resolution; the mask is cleaned only when ``train`` is set."""
    x, _ = preprocess_image(image, cfg)
    if mask is None:
        return x, None
    return x, training_mask(mask, cfg) if train else truth_mask(mask, cfg)


def restore_geometry(prob: np.ndarray, geom: Geometry) -> np.ndarray:
    """Map a (C x) h x w map predicted on the preprocessed image back onto the original grid.

    The map is resized to the crop box and pasted into zeros of the original size.
    """
    from skimage.transform import resize

    r, c, h, w = geom.crop_box
    squeeze = prob.ndim == 2
    p = prob[None] if squeeze else prob
    if p.shape[1:] != (h, w):
        p = np.stack([resize(ch, (h, w), order=1, preserve_range=True) for ch in p]).astype(np.float32)
    out = np.zeros((p.shape[0], *geom.original_shape), dtype=np.float32)
    out[:, r : r + h, c : c + w] = p
    return out[0] if squeeze else out
