"""DRIVE (Staal et al., IEEE TMI 2004): retinal photographs, manual vessel masks, FOV masks.

Archive layout (``DRIVE.zip`` as given to registered users)::

    DRIVE/training/images/21_training.tif   1st_manual/21_manual1.gif   mask/21_training_mask.gif
    DRIVE/test/images/01_test.tif           1st_manual/01_manual1.gif   mask/01_test_mask.gif
                                            2nd_manual/01_manual2.gif   (some releases)

Output, with the stems of ``../shared/data/drive_train``::

    OUT/train/images/train_21.png  masks/train_21.png  fov/train_21.png
    OUT/test/images/test_01.png    masks/test_01.png   fov/test_01.png   masks_2nd/test_01.png

Images are "green-channel ready": by default the green channel is written as 8-bit gray (the
channel retinal vessel papers segment, because vessels contrast most there); ``channel="rgb"``
keeps the colour image (angioseg's readers then take ``channel="green"``). A test set without
manual masks (the grand-challenge release) gives images and FOV masks only.
"""

from __future__ import annotations

import re
from pathlib import Path

from angioseg.errors import DataError
from angioseg.public.common import (
    ConvertOptions,
    ConvertResult,
    done,
    image_files,
    read_raw,
    run_batch,
    save_png,
    to_mask,
    walk_dirs,
)

SPLITS = {"training": "train", "train": "train", "test": "test"}
MASK_DIRS = {"1st_manual": "masks", "2nd_manual": "masks_2nd", "mask": "fov"}
CHANNELS = ("green", "rgb")


def _number(path: Path) -> str | None:
    m = re.match(r"(\d+)_", path.name)
    return m.group(1) if m else None


def _index(folder: Path) -> dict[str, Path]:
    """Files of a DRIVE sub-folder by their leading number (``21_manual1.gif`` -> ``"21"``)."""
    out: dict[str, Path] = {}
    for p in image_files(folder):
        n = _number(p)
        if n is not None:
            out[n] = p
    return out


def convert_split(split_dir: Path, split: str, out: Path, options: ConvertOptions) -> ConvertResult:
    """Convert one ``training/`` or ``test/`` folder into ``out/{images,masks,fov,masks_2nd}``."""
    result = ConvertResult(out)
    images = _index(split_dir / "images")
    extras = {dst: _index(split_dir / src) for src, dst in MASK_DIRS.items() if (split_dir / src).is_dir()}
    unnumbered = [p.name for p in image_files(split_dir / "images") if _number(p) is None]
    for name in unnumbered:
        result.failed.append((f"{split}/{name}", "file name does not start with the DRIVE image number"))

    def work(num: str) -> bool:
        stem = f"{split}_{num}"
        outs = {"images": out / "images" / f"{stem}.png"}
        outs.update({dst: out / dst / f"{stem}.png" for dst, files in extras.items() if num in files})
        if done(outs.values(), options.overwrite):
            result.count(split)
            return False
        pixels = read_raw(images[num])
        if options.channel == "green":
            if pixels.ndim != 3:
                raise DataError(images[num], "expected a colour fundus photograph, found a gray image")
            pixels = pixels[..., 1].copy()
        converted = {"images": pixels}
        for dst in outs:
            if dst == "images":
                continue
            raw = read_raw(extras[dst][num])
            if raw.shape[:2] != pixels.shape[:2]:
                raise DataError(
                    extras[dst][num], f"size {raw.shape[:2]} differs from the image's {pixels.shape[:2]}"
                )
            converted[dst] = to_mask(raw)[0]
        for dst, arr in converted.items():
            save_png(outs[dst], arr)
        result.count(split)
        return True

    run_batch(sorted(images), lambda n: f"{split}/{images[n].name}", work, result)
    for dst, files in extras.items():
        missing = sorted(set(images) - set(files))
        if missing:
            result.notes.append(f"{split}: {len(missing)} image(s) have no {dst}/ file, e.g. {missing[:3]}")
    if "masks" not in extras:
        result.notes.append(f"{split}: no 1st_manual/ folder: images and FOV masks only (unlabeled)")
    return result


def convert_drive(src: Path, out: Path, options: ConvertOptions) -> ConvertResult:
    """Convert an extracted DRIVE archive into ``OUT/train`` and ``OUT/test``.

    Raises:
        DataError: an unknown ``options.channel``, or no ``training/`` / ``test/`` folder with
            ``images/`` below ``src``.
    """
    if options.channel not in CHANNELS:
        raise DataError(None, f"DRIVE channel must be one of {CHANNELS}, got {options.channel!r}")
    splits = [d for d in walk_dirs(src) if d.name.lower() in SPLITS and (d / "images").is_dir()]
    if not splits:
        raise DataError(src, "no DRIVE split found (expected training/images/ or test/images/)")
    result = ConvertResult(out)
    for d in splits:
        split = SPLITS[d.name.lower()]
        result.merge(convert_split(d, split, out / split, options))
    result.meta["channel"] = options.channel
    return result
