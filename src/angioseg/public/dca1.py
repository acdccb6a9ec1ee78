"""DCA1 (Cervantes-Sanchez et al., Appl. Sci. 2019): ``N.pgm`` angiograms with ``N_gt.pgm`` masks.

Archive layout (``DB_Angiograms_134.zip``)::

    Database_134_Angiograms/1.pgm, 1_gt.pgm, ..., 134.pgm, 134_gt.pgm   (300 x 300, 8-bit)

Output: ``OUT/images/N.png`` and ``OUT/masks/N.png`` (``{0, 255}``). The split used in the
literature (e.g. torch-em's loader) takes images 1-100 for training and 101-134 for testing; it is
recorded in ``dataset.json`` but the files are not moved, so angioseg's own splits apply.
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
    load_picture,
    non_binary_note,
    read_raw,
    run_batch,
    save_picture,
    save_png,
    to_mask,
    walk_dirs,
)

GT_SUFFIX = "_gt"


def _natural(stem: str) -> tuple[int, str]:
    m = re.match(r"\d+", stem)
    return (int(m.group()), stem) if m else (1 << 30, stem)


def find_pairs(src: Path) -> tuple[dict[str, Path], dict[str, Path], Path]:
    """Images and ``_gt`` masks by stem, from the folder below ``src`` that holds the ``_gt`` files."""
    folders = [d for d in walk_dirs(src) if any(p.stem.endswith(GT_SUFFIX) for p in image_files(d))]
    if not folders:
        raise DataError(src, "no DCA1 mask found (expected files named N_gt.pgm beside N.pgm)")
    if len(folders) > 1:
        raise DataError(src, f"DCA1 masks found in several folders: {[str(d) for d in folders[:3]]}")
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for p in image_files(folders[0]):
        if p.stem.endswith(GT_SUFFIX):
            masks[p.stem[: -len(GT_SUFFIX)]] = p
        else:
            images[p.stem] = p
    return images, masks, folders[0]


def convert_dca1(src: Path, out: Path, options: ConvertOptions) -> ConvertResult:
    """Convert an extracted DCA1 archive into ``OUT/images`` + ``OUT/masks``.

    An image without its ``_gt`` mask (or the reverse) is listed as failed; the others are written.
    """
    images, masks, folder = find_pairs(src)
    result = ConvertResult(out)
    non_binary: list[str] = []

    def work(stem: str) -> bool:
        outs = [out / "images" / f"{stem}.png", out / "masks" / f"{stem}.png"]
        if done(outs, options.overwrite):
            result.count(".")
            return False
        if stem not in images:
            raise DataError(masks[stem], f"mask without its image {stem}.pgm")
        if stem not in masks:
            raise DataError(images[stem], f"image without its mask {stem}{GT_SUFFIX}{images[stem].suffix}")
        image, raw_mask = load_picture(images[stem]), read_raw(masks[stem])
        if raw_mask.shape[:2] != image.pixels.shape[:2]:
            raise DataError(
                masks[stem],
                f"mask size {raw_mask.shape[:2]} differs from image size {image.pixels.shape[:2]}",
            )
        mask, odd = to_mask(raw_mask)
        if odd:
            non_binary.append(stem)
        save_picture(image, outs[0])
        save_png(outs[1], mask)
        result.count(".")
        return True

    stems = sorted(set(images) | set(masks), key=_natural)
    run_batch(stems, lambda s: s, work, result)
    if non_binary:
        result.notes.append(non_binary_note(non_binary))
    numbered = sorted((s for s in images if s.isdigit()), key=int)
    if len(numbered) == 134:
        result.meta["literature_split"] = {"train": numbered[:100], "test": numbered[100:]}
    result.meta["source_folder"] = folder.name
    return result
