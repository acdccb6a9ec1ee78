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
    read_raw,
    run_batch,
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


def convert_folder_tree(src: Path, out: Path, options: ConvertOptions) -> ConvertResult:
    """Mirror every folder of images below ``src`` into ``out`` as PNG (see the module docstring).

    Raises:
        DataError: no image file anywhere below ``src``, or two source folders that map onto the
            same output folder (e.g. ``test/img`` and ``test/images``).
    """
    result = ConvertResult(out)
    plan: dict[Path, tuple[Path, bool]] = {}
    for d in walk_dirs(src):
        if not image_files(d):
            continue
        rel, is_mask = output_folder(d.relative_to(src))
        if rel in plan:
            raise DataError(d, f"both {plan[rel][0]} and this folder would be written to {out / rel}")
        plan[rel] = (d, is_mask)
    if not plan:
        raise DataError(src, "no image files found in the folder or below it")
    non_binary: list[str] = []
    for rel, (folder, is_mask) in sorted(plan.items()):
        label = rel.as_posix()

        def work(p: Path, rel: Path = rel, is_mask: bool = is_mask, label: str = label) -> bool:
            dst = out / rel / f"{p.stem}.png"
            if done([dst], options.overwrite):
                result.count(label)
                return False
            arr = read_raw(p)
            if is_mask:
                arr, odd = to_mask(arr)
                if odd:
                    non_binary.append(f"{label}/{p.name}")
            save_png(dst, arr)
            result.count(label)
            return True

        files = image_files(folder)
        stems = [p.stem for p in files]
        if len(set(stems)) != len(stems):
            dup = sorted({s for s in stems if stems.count(s) > 1})
            raise DataError(
                folder, f"several files share the stem(s) {dup[:3]}; they would overwrite each other"
            )
        run_batch(files, lambda p, label=label: f"{label}/{p.name}", work, result)  # type: ignore[misc]
    for rel, (_, is_mask) in plan.items():
        if is_mask:
            imgs = rel.parent / "images"
            if imgs in plan:
                a = {p.stem for p in image_files(plan[imgs][0])}
                b = {p.stem for p in image_files(plan[rel][0])}
                if a != b:
                    result.notes.append(
                        f"{rel.parent.as_posix()}: {len(a - b)} image(s) without a mask, {len(b - a)} mask(s) without an image"
                    )
    if non_binary:
        result.notes.append(
            f"{len(non_binary)} mask(s) were not binary and were thresholded at > 0, e.g. {non_binary[:3]}"
        )
    result.meta["folders"] = {
        rel.as_posix(): str(folder.relative_to(src)) for rel, (folder, _) in sorted(plan.items())
    }
    return result


def convert_xcad(src: Path, out: Path, options: ConvertOptions) -> ConvertResult:
    """Convert an extracted XCAD archive (see the module docstring for the folder mapping)."""
    return convert_folder_tree(src, out, options)
