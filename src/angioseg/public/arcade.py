"""ARCADE (Popov et al., Sci. Data 2024): COCO polygon annotations -> binary masks.

Archive layout (Zenodo record 10390295)::

    arcade/{syntax,stenosis}/{train,val,test}/images/N.png
    arcade/{syntax,stenosis}/{train,val,test}/annotations/{train,val,test}.json   (COCO)

The SYNTAX task annotates each visible coronary segment (categories 1-25, named after the SYNTAX
score segments "1", "2", ..., "16c") with polygons; their union is the vessel mask. The stenosis task
annotates stenotic plaques (category 26, "stenosis"); their union is the stenosis mask. Output::

    OUT/{syntax,stenosis}/{train,val,test}/images/N.png, masks/N.png  (+ segments/N.png with --segments)

Coordinate convention: COCO polygons are ``[x1, y1, x2, y2, ...]`` with x the column and y the
row, in a continuous frame where pixel (r, c) covers ``[c, c+1) x [r, r+1)``, so its centre is at
``(c + 0.5, r + 0.5)`` (this is the convention of the pycocotools rasteriser). A pixel belongs to
the polygon when its centre is inside. :func:`skimage.draw.polygon` tests pixel centres at integer
coordinates, hence the ``-0.5`` shift in :func:`polygon_mask`; without it every mask would sit half
a pixel down and right and grow by one row and column (a 4 x 3 square would cover 5 x 4 pixels).
``bench/coco_convention_check.py`` compares both conventions with pycocotools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from angioseg.errors import DataError
from angioseg.public.common import (
    ConvertOptions,
    ConvertResult,
    done,
    image_files,
    load_picture,
    run_batch,
    save_picture,
    save_png,
    walk_dirs,
)

TASKS = ("syntax", "stenosis")
STENOSIS_NAME = "stenosis"


def polygon_mask(polygons: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise COCO polygons (pixel-centre rule, see the module docstring) into an H x W bool mask.

    Args:
        polygons: each a flat list ``[x1, y1, x2, y2, ...]`` of at least three points.
        shape: ``(H, W)``; parts of polygons outside the image are clipped.

    Raises:
        ValueError: a polygon with an odd number of coordinates or fewer than three points.
    """
    from skimage.draw import polygon

    mask = np.zeros(shape, dtype=bool)
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64)
        if xy.ndim != 1 or len(xy) % 2 or len(xy) < 6:
            raise ValueError(f"a COCO polygon needs an even number (>= 6) of coordinates, got {len(xy)}")
        if not np.isfinite(xy).all():
            raise ValueError("a COCO polygon has a NaN or infinite coordinate")
        rr, cc = polygon(xy[1::2] - 0.5, xy[0::2] - 0.5, shape=shape)
        mask[rr, cc] = True
    return mask


@dataclass
class CocoImage:
    """One entry of a COCO file's ``images`` with its annotations."""

    id: int
    file_name: str
    width: int | None
    height: int | None
    annotations: list[dict[str, Any]]


def load_coco(path: Path) -> tuple[list[CocoImage], dict[int, str]]:
    """Read a COCO json: its images (with their annotations) and the category names by id.

    Raises:
        DataError: not JSON, or not a COCO file (missing ``images`` / ``annotations`` lists, entries
            without ``id`` / ``file_name`` / ``image_id``, an annotation of an unknown image).
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot read COCO json ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(path, "not a COCO annotation file: no 'images' list at the top level")
    if not isinstance(data.get("annotations", []), list):
        raise DataError(path, "not a COCO annotation file: 'annotations' is not a list")
    try:
        return _parse_coco(path, data)
    except (TypeError, ValueError, OverflowError) as exc:  # an id that is a list, a width that is text, ...
        raise DataError(path, f"malformed COCO entry ({exc.__class__.__name__}: {exc})") from None


def _parse_coco(path: Path, data: dict[str, Any]) -> tuple[list[CocoImage], dict[int, str]]:
    images: dict[int, CocoImage] = {}
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise DataError(path, f"images[{i}] has no 'id' or 'file_name'")
        w, h = entry.get("width"), entry.get("height")
        images[entry["id"]] = CocoImage(
            entry["id"],
            str(entry["file_name"]),
            None if w is None else int(w),
            None if h is None else int(h),
            [],
        )
    for i, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise DataError(path, f"annotations[{i}] has no 'image_id'")
        if ann["image_id"] not in images:
            raise DataError(path, f"annotations[{i}] refers to image_id {ann['image_id']}, not in 'images'")
        images[ann["image_id"]].annotations.append(ann)
    categories = {
        int(c["id"]): str(c.get("name", c["id"]))
        for c in data.get("categories", [])
        if isinstance(c, dict) and "id" in c
    }
    return list(images.values()), categories


def _polygons(ann: dict[str, Any], where: str) -> list[list[float]]:
    """The polygons of one annotation (COCO: a list of flat ``[x1, y1, ...]`` lists)."""
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        raise DataError(None, f"{where}: RLE segmentation is not supported (ARCADE uses polygons)")
    if not isinstance(seg, list):
        raise DataError(None, f"{where}: no 'segmentation' polygons")
    if seg and all(isinstance(v, int | float) for v in seg):  # one flat polygon, not wrapped in a list
        return [seg]
    if not all(isinstance(p, list) for p in seg):
        raise DataError(None, f"{where}: 'segmentation' must be a list of [x1, y1, x2, y2, ...] lists")
    return seg


def rasterise(
    image: CocoImage, shape: tuple[int, int], categories: dict[int, str], task: str
) -> tuple[np.ndarray, np.ndarray]:
    """The task's binary mask (H x W bool) and the segment label map (H x W uint8, category ids).

    SYNTAX: every annotation except a "stenosis" one is vessel; stenosis: every annotation.
    Later annotations overwrite earlier ones in the label map.
    """
    mask = np.zeros(shape, dtype=bool)
    labels = np.zeros(shape, dtype=np.uint8)
    for ann in image.annotations:
        cat = ann.get("category_id")
        is_stenosis = categories.get(cat, "") == STENOSIS_NAME if cat is not None else False
        if task == "syntax" and is_stenosis:
            continue
        where = f"{image.file_name} (annotation {ann.get('id')})"
        try:
            region = polygon_mask(_polygons(ann, where), shape)
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataError(None, f"{where}: {exc}") from None
        mask |= region
        if isinstance(cat, int) and 0 < cat < 256:
            labels[region] = cat
    return mask, labels


def convert_coco(
    json_path: Path, image_dir: Path, out: Path, task: str, options: ConvertOptions, prefix: str = ""
) -> ConvertResult:
    """Convert one COCO file and its image folder into ``out/images`` + ``out/masks``.

    Items are skipped when their outputs exist (a rerun resumes); a bad item is recorded in
    ``failed`` and the others go on.
    """
    images, categories = load_coco(json_path)
    result = ConvertResult(out)
    folder = prefix or out.name
    empty: list[str] = []
    want_segments = options.segments and task == "syntax"

    def work(img: CocoImage) -> bool:
        stem = Path(img.file_name).stem
        outs = [out / "images" / f"{stem}.png", out / "masks" / f"{stem}.png"]
        if want_segments:
            outs.append(out / "segments" / f"{stem}.png")
        if done(outs, options.overwrite):
            result.count(folder)
            return False
        src = image_dir / Path(img.file_name).name
        if not src.exists():
            raise DataError(src, f"image listed in {json_path.name} is missing")
        picture = load_picture(src)
        shape = (int(picture.pixels.shape[0]), int(picture.pixels.shape[1]))
        if (img.height, img.width) != (None, None) and (img.height, img.width) != shape:
            raise DataError(
                src, f"image is {shape[1]}x{shape[0]} but {json_path.name} says {img.width}x{img.height}"
            )
        mask, labels = rasterise(img, shape, categories, task)
        if not mask.any():
            empty.append(stem)
        save_picture(picture, outs[0])
        save_png(outs[1], mask.astype(np.uint8) * 255)
        if want_segments:
            save_png(outs[2], labels)
        result.count(folder)
        return True

    run_batch(images, lambda img: f"{folder}/{img.file_name}", work, result)
    listed = {Path(i.file_name).name for i in images}
    unlisted = [p.name for p in image_files(image_dir) if p.name not in listed]
    if unlisted:
        result.notes.append(
            f"{folder}: {len(unlisted)} image(s) not in {json_path.name} were left out, e.g. {unlisted[:3]}"
        )
    if empty and task == "syntax":
        result.notes.append(
            f"{folder}: {len(empty)} image(s) have no vessel polygon (empty mask), e.g. {empty[:3]}"
        )
    if empty and task == "stenosis":
        result.notes.append(f"{folder}: {len(empty)} image(s) have no stenosis (empty mask)")
    if task == "syntax":
        result.meta["syntax_segments"] = {
            str(k): v for k, v in sorted(categories.items()) if v != STENOSIS_NAME
        }
    return result


def _task_of(split_dir: Path, root: Path, json_path: Path) -> str:
    """The task of a split folder: the nearest ``syntax``/``stenosis`` ancestor, else the categories."""
    for p in [split_dir, *split_dir.parents]:
        if p.name.lower() in TASKS:
            return p.name.lower()
        if p == root:
            break
    _, categories = load_coco(json_path)
    return "stenosis" if categories and set(categories.values()) == {STENOSIS_NAME} else "syntax"


def find_splits(root: Path) -> list[tuple[str, str, Path, Path]]:
    """Every ``(task, split, json, image_dir)`` below ``root``: an ``annotations/*.json`` beside ``images/``."""
    found = []
    for d in walk_dirs(root):
        if d.name.lower() != "annotations":
            continue
        split_dir = d.parent
        image_dir = next((split_dir / n for n in ("images", "imgs") if (split_dir / n).is_dir()), None)
        jsons = sorted(p for p in d.iterdir() if p.suffix.lower() == ".json")
        if image_dir is None or not jsons:
            continue
        if len(jsons) > 1:
            raise DataError(d, f"expected one COCO json, found {len(jsons)}: {[p.name for p in jsons]}")
        task = _task_of(split_dir, root, jsons[0])
        found.append((task, split_dir.name, jsons[0], image_dir))
    return found


def convert_arcade(src: Path, out: Path, options: ConvertOptions) -> ConvertResult:
    """Convert an extracted ARCADE archive (or any folder of ``images/`` + ``annotations/x.json``).

    Raises:
        DataError: no COCO split found under ``src``, or an unknown ``options.task``.
    """
    if options.task not in (*TASKS, "all"):
        raise DataError(None, f"ARCADE task must be syntax, stenosis or all, got {options.task!r}")
    splits = find_splits(src)
    if not splits:
        raise DataError(src, "no ARCADE/COCO split found (expected images/ beside annotations/NAME.json)")
    result = ConvertResult(out)
    for task, split, json_path, image_dir in splits:
        if options.task in ("all", task):
            rel = f"{task}/{split}"
            result.merge(convert_coco(json_path, image_dir, out / task / split, task, options, rel))
    if not result.counts and not result.failed:
        raise DataError(src, f"no split of the {options.task!r} task found")
    used = {json_path for _, _, json_path, _ in splits}
    stray = [p for d in walk_dirs(src) for p in sorted(d.glob("*.json")) if p not in used]
    if stray:
        names = [p.relative_to(src).as_posix() for p in stray[:3]]
        result.notes.append(
            f"{len(stray)} json file(s) not in an annotations/ folder beside images/ were ignored: {names}"
        )
    return result
