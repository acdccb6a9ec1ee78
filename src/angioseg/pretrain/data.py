"""Unlabeled images for pretraining: any folder the foundation reads, masks ignored.

:func:`load_unlabeled` reads every image file of a dataset folder (``images/`` + ``masks/``, or a
flat folder; PNG/TIFF/NPY/DICOM, multi-frame files give one image per frame). Unreadable files are
skipped and returned, so one bad file does not stop a long run; they are listed at the end.
Images are preprocessed as for fine-tuning (:mod:`angioseg.data.preprocess`: corner inpainting,
unsharp mask, per-image z-score, resize to ``image_size``) so the pretrained network sees inputs
like the ones it will be fine-tuned on. Preprocessing costs ~0.25 s per 512 x 512 image on this
CPU, so the result can be cached as one ``.npz`` keyed by the file list and the preprocessing.
Every image's pixel hash (:func:`~angioseg.data.leakage.pixel_hash`, of the decoded image before
preprocessing, ~0.6 ms each) is computed while it is read, so a pretraining run can prove that no
test image is among its images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from angioseg.data.datasets import dataset_dirs
from angioseg.data.io import is_image_file, read_frames
from angioseg.data.leakage import frame_label, pixel_hash
from angioseg.data.preprocess import PreprocessConfig, preprocess_image
from angioseg.errors import DataError
from angioseg.utils import atomic_path


@dataclass
class UnlabeledImages:
    """Preprocessed ``N x S x S`` float32 images, their names, and the files that could not be read.

    ``sources[i]`` names the file of image ``i`` (:func:`~angioseg.data.leakage.frame_label`) and
    ``hashes[i]`` is the pixel hash of its decoded image (before preprocessing).
    """

    images: np.ndarray
    names: list[str]
    failed: list[tuple[str, str]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)


def image_files(root: str | Path, limit: int | None = None) -> list[Path]:
    """Image files of a dataset folder (its ``images/`` or the folder itself), sorted by name."""
    image_dir, _ = dataset_dirs(root)
    files = sorted(p for p in image_dir.iterdir() if is_image_file(p))
    if not files:
        raise DataError(image_dir, "no image files to pretrain on")
    return files[:limit] if limit else files


def cache_key(files: Sequence[Path], cfg: PreprocessConfig, channel: str) -> str:
    """Hash of file names, sizes and modification times plus the preprocessing options."""
    h = hashlib.sha1(json.dumps([cfg.to_dict(), channel]).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_unlabeled(
    root: str | Path,
    cfg: PreprocessConfig,
    limit: int | None = None,
    channel: str = "gray",
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> UnlabeledImages:
    """Read and preprocess the first ``limit`` image files (by name) of ``root``.

    Raises:
        DataError: the folder does not exist, holds no image file, or none could be read.
    """
    files = image_files(root, limit)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"pretrain-{cache_key(files, cfg, channel)}.npz"
        if cache.exists():
            with np.load(cache) as z:
                if "hashes" in z.files:  # (a cache written before the hashes were kept is redone)
                    failed = [tuple(f) for f in json.loads(str(z["failed"]))]
                    return UnlabeledImages(
                        z["images"],
                        [str(n) for n in z["names"]],
                        failed,  # type: ignore[arg-type]
                        [str(s) for s in z["sources"]],
                        [str(h) for h in z["hashes"]],
                    )
    images, names, failed, sources, hashes = [], [], [], [], []
    for i, p in enumerate(files):
        try:
            for frame in read_frames(p, channel):
                x, _ = preprocess_image(frame.image, cfg)
                images.append(x)
                names.append(frame.name)
                sources.append(frame_label(p, frame.name))
                hashes.append(pixel_hash(frame.image))
        except DataError as exc:
            failed.append((str(p), exc.problem))
        if progress is not None:
            progress(i + 1, len(files))
    if not images:
        raise DataError(root, f"none of the {len(files)} image files could be read, e.g. {failed[0][1]}")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(root, f"preprocessing gave images of several sizes {sorted(shapes)}; set image_size")
    out = UnlabeledImages(np.stack(images).astype(np.float32), names, failed, sources, hashes)
    if cache is not None:
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                images=out.images,
                names=np.array(names),
                failed=json.dumps(failed),
                sources=np.array(sources),
                hashes=np.array(hashes),
            )
    return out


class ViewDataset(Dataset[dict[str, torch.Tensor]]):
    """Item ``i`` = ``transform(image_i)`` (``image_i`` a ``1 x S x S`` tensor; views differ per call)
    plus ``"index"``: ``i``, so that a method can tell which queued keys came from the same image."""

    def __init__(self, images: np.ndarray, transform: Callable[[torch.Tensor], dict[str, torch.Tensor]]):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        views = self.transform(torch.from_numpy(self.images[i][None].copy()))
        return {**views, "index": torch.tensor(i, dtype=torch.long)}
