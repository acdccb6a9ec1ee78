"""XCAD (Ma et al., ICCV 2021): unlabeled training angiograms and a labeled test set.

The archive holds folders of 512 x 512 PNGs: unlabeled training angiograms, pre-contrast
"background" frames, synthetic fractal vessel maps, and a test set of angiograms with manual
vessel masks. The exact folder names of the current archive could not be checked from here (the
authors' code refers to ``train/trainA``, ``trainB``, ``trainC`` and ``test/images``,
``test/masks``; other copies use ``img``/``gt``), so this converter does not guess what each
unlabeled folder holds. It mirrors every folder of images into OUT as PNG and renames only the
unambiguous ones:

* a folder named ``images``/``image``/``img``/``imgs`` becomes ``images/``;
* a folder named ``masks``/``mask``/``gt``/``label``/``labels``/``groundtruth`` becomes ``masks/``,
  binarised to ``{0, 255}`` (> 0 is vessel);

so the labeled test set lands in ``OUT/test/images`` + ``OUT/test/masks`` and, e.g., the unlabeled
angiograms in ``OUT/train/trainA`` (a flat folder of images that angioseg reads as unlabeled data).
``dataset.json`` lists every output folder with its image count; ``docs/datasets.md`` says what is
known about each.
"""

from __future__ import annotations

from pathlib import Path

from angioseg.errors import DataError
from angioseg.public.common import (
    ConvertOptions,
    ConvertResult,
    done,
    image_files,
    load_picture,
    non_binary_note,
    run_batch,
    save_picture,
    save_png,
    to_mask,
    walk_dirs,
)

IMAGE_ALIASES = {"images", "image", "img", "imgs"}
MASK_ALIASES = {"masks", "mask", "gt", "label", "labels", "groundtruth", "ground_truth"}


def output_folder(rel: Path) -> tuple[Path, bool]:
    """Where a source folder (relative to the archive root) goes, and whether it holds masks."""
    name = rel.name.lower()
    if name in IMAGE_ALIASES:
        return rel.parent / "images", False
    if name in MASK_ALIASES:
        return rel.parent / "masks", True
    return rel, False


def plan_folders(src: Path, out: Path) -> dict[Path, tuple[Path, bool]]:
    """Output folder (relative to ``out``) -> (source folder, holds masks), checked before writing.

    Raises:
        DataError: no image file below ``src``; two source folders that map onto the same output
            folder (e.g. ``test/img`` and ``test/images``); two files of a folder with one stem.
    """
    plan: dict[Path, tuple[Path, bool]] = {}
    for d in walk_dirs(src):
        files = image_files(d)
        if not files:
            continue
        rel, is_mask = output_folder(d.relative_to(src))
        if rel in plan:
            raise DataError(d, f"both {plan[rel][0]} and this folder would be written to {out / rel}")
        stems = [p.stem for p in files]
        if len(set(stems)) != len(stems):
            dup = sorted({s for s in stems if stems.count(s) > 1})
            raise DataError(d, f"several files share the stem(s) {dup[:3]}; they would overwrite each other")
        plan[rel] = (d, is_mask)
    if not plan:
        raise DataError(src, "no image files found in the folder or below it")
    return plan


def mirror_folder(
    folder: Path, dst: Path, label: str, is_mask: bool, options: ConvertOptions, result: ConvertResult
) -> list[str]:
    """Write every image of ``folder`` to ``dst`` as PNG (masks binarised); returns non-binary masks."""
    non_binary: list[str] = []

    def work(p: Path) -> bool:
        target = dst / f"{p.stem}.png"
        if done([target], options.overwrite):
            result.count(label)
            return False
        picture = load_picture(p)
        if is_mask:
            mask, odd = to_mask(picture.pixels)
            if odd:
                non_binary.append(f"{label}/{p.name}")
            save_png(target, mask)
        else:
            save_picture(picture, target)
        result.count(label)
        return True

    run_batch(image_files(folder), lambda p: f"{label}/{p.name}", work, result)
    return non_binary


def convert_folder_tree(src: Path, out: Path, options: ConvertOptions) -> ConvertResult:
    """Mirror every folder of images below ``src`` into ``out`` as PNG (see the module docstring)."""
    plan = plan_folders(src, out)
    result = ConvertResult(out)
    non_binary: list[str] = []
    for rel, (folder, is_mask) in sorted(plan.items()):
        non_binary += mirror_folder(folder, out / rel, rel.as_posix(), is_mask, options, result)
    for rel, (folder, is_mask) in sorted(plan.items()):
        if is_mask and rel.parent / "images" in plan:
            images = {p.stem for p in image_files(plan[rel.parent / "images"][0])}
            masks = {p.stem for p in image_files(folder)}
            if images != masks:
                result.notes.append(
                    f"{rel.parent.as_posix()}: {len(images - masks)} image(s) without a mask, "
                    f"{len(masks - images)} mask(s) without an image"
                )
    if non_binary:
        result.notes.append(non_binary_note(non_binary))
    result.meta["folders"] = {r.as_posix(): str(f.relative_to(src)) for r, (f, _) in sorted(plan.items())}
    return result


def convert_xcad(src: Path, out: Path, options: ConvertOptions) -> ConvertResult:
    """Convert an extracted XCAD archive (see the module docstring for the folder mapping)."""
    return convert_folder_tree(src, out, options)
