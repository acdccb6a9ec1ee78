"""Pixel hashes, so that no test image is pretrained on under another name, folder or format.

Pretraining on a test image leaks it even without its mask: the encoder has already seen it. Split
names keep the labeled dataset's own pools disjoint, but a separate pretraining folder (e.g. an
ARCADE export next to CIMAT test images) can hold a copy of a test image under any name. So the
check compares content: :func:`pixel_hash` is the SHA-256 of the image as angioseg decodes it
(:func:`~angioseg.data.io.read_frames`: H x W float32 raw intensities, colour reduced by the
``channel`` rule) together with its shape.

Decoded pixels rather than file bytes: a copy saved in another format (PNG -> TIFF, NPY, DICOM),
with another PNG compression level or other metadata, or as one frame of a stack still matches,
while a hash of the file bytes would miss all of these. What it does not catch: a lossy
re-encoding (JPEG), a resized or cropped copy, or a copy read with another ``channel`` rule
(near duplicates would need perceptual hashes).

Cost: about 0.6 ms per 512 x 512 image on this CPU (1000 ARCADE images: under 1.5 s), computed on
images that are read anyway. A pretraining run records its images' hashes in
``pretrain_images.json`` (:data:`HASH_FILE`) so that a later ``angioseg finetune --pretrained RUN``
checks them against its own test split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from angioseg.data.datasets import Sample
from angioseg.errors import DataError, LeakageError
from angioseg.utils import write_json

HASH_FILE = "pretrain_images.json"
HASH_RULE = "sha256 of the decoded H x W float32 pixels and shape (angioseg.data.leakage.pixel_hash)"
SHOWN = 20  # clashes listed in the error message


def pixel_hash(image: np.ndarray) -> str:
    """SHA-256 hex digest of ``image`` as float32 pixels plus its shape (same pixels, same hash)."""
    a = np.ascontiguousarray(image, dtype=np.float32)
    h = hashlib.sha256("x".join(map(str, a.shape)).encode() + b"|")
    h.update(a.data)
    return h.hexdigest()


def frame_label(source: str | Path, name: str) -> str:
    """``path/to/file.png``, or ``path/to/cine.dcm (frame cine_f003)`` for a frame of a multi-frame file."""
    source = Path(source)
    return str(source) if source.stem == name else f"{source} (frame {name})"


def sample_hashes(samples: Mapping[str, Sample], names: Iterable[str]) -> dict[str, str]:
    """``{label of test image: pixel hash}`` of the samples ``names`` (labels as :func:`frame_label`)."""
    return {frame_label(samples[n].source, n): pixel_hash(samples[n].image) for n in names}


def check_no_test_images(
    pretrain: Iterable[tuple[str, str]], test: Mapping[str, str], where: str | Path, role: str = "pretraining"
) -> None:
    """Refuse pretraining images whose pixels equal a test image's.

    Args:
        pretrain: ``(label, pixel hash)`` of every pretraining image (label: its file, as :func:`frame_label`).
        test: ``{label: pixel hash}`` of every test image (:func:`sample_hashes`).
        where: what holds the pretraining images (a folder or a run folder), for the message.
        role: what the images are for, in the message ("pretraining", or e.g. "unlabeled").

    Raises:
        LeakageError: naming every clashing pair (the first :data:`SHOWN` of them in full).
    """
    by_hash: dict[str, list[str]] = {}
    for label, h in test.items():
        by_hash.setdefault(h, []).append(label)
    clashes = [(label, t) for label, h in pretrain for t in by_hash.get(h, [])]
    if not clashes:
        return
    shown = "; ".join(f"{p} = test image {t}" for p, t in clashes[:SHOWN])
    more = f"; and {len(clashes) - SHOWN} more" if len(clashes) > SHOWN else ""
    if role == "pretraining":
        raise LeakageError(
            f"{where}: {len(clashes)} pretraining image(s) have the same pixels as test images, so the test "
            f"images would be pretrained on: {shown}{more}. Remove them from the pretraining data "
            "(or pretrain on the split's own pool)"
        )
    raise LeakageError(
        f"{where}: {len(clashes)} {role} image(s) have the same pixels as test images, so the test images "
        f"would be trained on: {shown}{more}. Remove them from the {role} images"
    )


def check_samples(samples: Iterable[Sample], test: Mapping[str, str], where: str | Path, role: str) -> None:
    """:func:`check_no_test_images` for loaded samples (each labelled by its file, :func:`frame_label`)."""
    check_no_test_images(
        ((frame_label(s.source, s.name), pixel_hash(s.image)) for s in samples), test, where, role
    )


def write_image_hashes(
    run_dir: str | Path, data: str | Path, labels: Sequence[str], hashes: Sequence[str]
) -> Path:
    """Write ``run_dir/pretrain_images.json``: the pretraining folder and every image's label and hash."""
    if len(labels) != len(hashes):
        raise ValueError(f"{len(labels)} labels for {len(hashes)} hashes")
    path = Path(run_dir) / HASH_FILE
    images = [{"file": label, "sha256": h} for label, h in zip(labels, hashes, strict=True)]
    write_json(path, {"hash": HASH_RULE, "data": str(data), "images": images})
    return path


def read_image_hashes(pretrained: str | Path) -> list[tuple[str, str]] | None:
    """``(label, hash)`` pairs recorded by the pretraining run ``pretrained`` (its folder or a file in it).

    Returns ``None`` when the run has no :data:`HASH_FILE` (a run made before angioseg recorded
    them, or a checkpoint that is not a pretraining run folder).

    Raises:
        DataError: the file exists but is not the expected JSON.
    """
    from angioseg.zoo import builtin_path, is_builtin

    if is_builtin(pretrained):
        path = builtin_path(pretrained).with_suffix("." + HASH_FILE)
    else:
        p = Path(pretrained)
        path = (p if p.is_dir() else p.parent) / HASH_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [(str(d["file"]), str(d["sha256"])) for d in data["images"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(path, f"not a readable list of pretraining image hashes ({exc})") from None


def check_pretrained_images(
    pretrained: str | Path,
    samples: dict[str, Sample],
    test: Sequence[str],
    announce: Callable[[str], None] | None = None,
) -> bool:
    """Refuse a pretraining run that recorded one of the ``test`` images among its own (same pixels).

    Returns whether the check could be made: a run folder without ``pretrain_images.json`` (made
    before angioseg recorded it, or a bare checkpoint) is announced as unchecked.

    Raises:
        LeakageError: listing each pretraining file and the test image it equals.
    """
    from angioseg.zoo import is_builtin

    if not is_builtin(pretrained) and not Path(pretrained).exists():
        return False  # loading it says so
    recorded = read_image_hashes(pretrained)
    if recorded is None:
        if announce:
            announce(
                f"note: {pretrained} has no {HASH_FILE} (pretrained by an older angioseg?); "
                "cannot check that its images exclude the test split"
            )
        return False
    check_no_test_images(recorded, sample_hashes(samples, test), f"--pretrained {pretrained}")
    return True


__all__ = [
    "HASH_FILE",
    "check_no_test_images",
    "check_pretrained_images",
    "check_samples",
    "frame_label",
    "pixel_hash",
    "read_image_hashes",
    "sample_hashes",
    "write_image_hashes",
]
