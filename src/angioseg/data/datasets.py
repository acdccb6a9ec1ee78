"""Dataset folders: ``images/`` (or the seed's ``imgs/``) and, when labeled, ``masks/`` with matching stems.

A folder holding image files directly (no ``images/`` sub-folder) is read as an unlabeled dataset,
so a flat export of angiograms can be used for pretraining as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from angioseg.data.io import Frame, is_image_file, read_frames, read_mask, unique_stems
from angioseg.errors import DataError

IMAGE_DIRS = ("images", "imgs")
MASK_DIRS = ("masks", "labels")
MASK_SUFFIXES = ("_gt", "_mask", "_label")


@dataclass
class Sample:
    """An image (raw intensities) with its binary mask, or ``None`` when unlabeled."""

    name: str
    image: np.ndarray
    mask: np.ndarray | None
    source: Path
    spacing: tuple[float, float] | None = None


def _mask_key(stem: str, image_names: set[str]) -> str:
    if stem in image_names:
        return stem
    for suf in MASK_SUFFIXES:
        if stem.endswith(suf) and stem[: -len(suf)] in image_names:
            return stem[: -len(suf)]
    return stem


def dataset_dirs(root: str | Path) -> tuple[Path, Path | None]:
    """Return ``(image_dir, mask_dir or None)`` of a dataset folder."""
    root = Path(root)
    if not root.exists():
        raise DataError(root, "dataset folder does not exist")
    if not root.is_dir():
        raise DataError(root, "expected a dataset folder with images/ (and masks/), got a file")
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    mask_dir = next((root / d for d in MASK_DIRS if (root / d).is_dir()), None)
    if image_dir is None:
        if any(is_image_file(p) for p in root.iterdir()):
            return root, None
        raise DataError(root, "no images/ (or imgs/) folder and no image files in the folder")
    return image_dir, mask_dir


def load_dataset(
    root: str | Path,
    require_masks: bool = False,
    channel: str = "gray",
    limit: int | None = None,
) -> list[Sample]:
    """Read a dataset folder into memory.

    Args:
        root: folder with ``images/`` (or ``imgs/``) and optional ``masks/``; or a flat folder of images.
        require_masks: every image must have a mask (fine-tuning, evaluation).
        channel: colour-to-gray rule passed to :func:`~angioseg.data.io.read_frames`.
        limit: read at most this many image files (sorted by name).

    Raises:
        DataError: missing folder, empty dataset, unreadable file, a mask without an image, an image
            without a mask when ``require_masks``, or an image/mask size mismatch.
    """
    image_dir, mask_dir = dataset_dirs(root)
    image_files = sorted(p for p in image_dir.iterdir() if is_image_file(p))
    if limit is not None:
        image_files = image_files[:limit]
    if not image_files:
        raise DataError(image_dir, "dataset is empty: no image files")
    frames: list[Frame] = []
    for p in image_files:
        frames.extend(read_frames(p, channel))
    names = [f.name for f in frames]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(image_dir, f"several images share the name(s) {dup[:5]}")
    masks: dict[str, Path] = {}
    if mask_dir is not None:
        name_set = set(names)
        mask_files = [p for p in sorted(mask_dir.iterdir()) if is_image_file(p)]
        for stem, p in unique_stems(mask_files).items():
            key = _mask_key(stem, name_set)
            if key not in name_set:
                if limit is None:
                    raise DataError(p, f"mask has no matching image in {image_dir}")
                continue
            masks[key] = p
    if require_masks:
        missing = [n for n in names if n not in masks]
        if missing:
            where = mask_dir if mask_dir is not None else Path(root) / "masks"
            raise DataError(where, f"no mask for {len(missing)} image(s), e.g. {missing[:3]}")
    samples = []
    for f in frames:
        mask = None
        if f.name in masks:
            mask = read_mask(masks[f.name])
            if mask.shape != f.image.shape:
                raise DataError(
                    masks[f.name],
                    f"mask size {mask.shape} differs from image size {f.image.shape} ({f.source.name})",
                )
        samples.append(Sample(f.name, f.image, mask, f.source, f.spacing))
    return samples
