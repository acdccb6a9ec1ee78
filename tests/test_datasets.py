"""Dataset folders and every bad-input case of the foundation issue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from angioseg.data.datasets import load_dataset
from angioseg.data.io import write_png
from angioseg.errors import DataError


def make(root: Path, names: list[str], image_dir: str = "images", masks: bool = True, size: int = 16) -> Path:
    for n in names:
        write_png(root / image_dir / f"{n}.png", np.full((size, size), 100, np.uint8))
        if masks:
            write_png(root / "masks" / f"{n}.png", np.eye(size, dtype=bool))
    return root


def test_labeled_dataset(tmp_path: Path) -> None:
    s = load_dataset(make(tmp_path, ["a", "b"]), require_masks=True)
    assert [x.name for x in s] == ["a", "b"] and all(x.mask is not None and x.mask.sum() == 16 for x in s)


def test_seed_imgs_folder_and_flat_folder(tmp_path: Path) -> None:
    assert len(load_dataset(make(tmp_path / "a", ["x"], image_dir="imgs"))) == 1
    flat = tmp_path / "flat"
    write_png(flat / "p.png", np.zeros((16, 16), np.uint8))
    (s,) = load_dataset(flat)
    assert s.mask is None


def test_gt_suffix_masks(tmp_path: Path) -> None:
    write_png(tmp_path / "images" / "7.png", np.zeros((16, 16), np.uint8))
    write_png(tmp_path / "masks" / "7_gt.png", np.eye(16, dtype=bool))
    assert load_dataset(tmp_path, require_masks=True)[0].mask is not None


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nothing")


def test_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_dataset(tmp_path)


def test_mask_without_image(tmp_path: Path) -> None:
    make(tmp_path, ["a"])
    write_png(tmp_path / "masks" / "orphan.png", np.eye(16, dtype=bool))
    with pytest.raises(DataError, match="orphan.png: mask has no matching image"):
        load_dataset(tmp_path)


def test_size_mismatch(tmp_path: Path) -> None:
    make(tmp_path, ["a"])
    write_png(tmp_path / "masks" / "a.png", np.eye(12, dtype=bool))
    with pytest.raises(DataError, match=r"a.png: mask size \(12, 12\) differs from image size \(16, 16\)"):
        load_dataset(tmp_path)


def test_unreadable_image(tmp_path: Path) -> None:
    make(tmp_path, ["a"])
    (tmp_path / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match=r"b.png: cannot read image"):
        load_dataset(tmp_path)


def test_image_without_mask_when_required(tmp_path: Path) -> None:
    make(tmp_path, ["a"])
    make(tmp_path, ["b"], masks=False)
    assert [s.mask is None for s in load_dataset(tmp_path)] == [False, True]
    with pytest.raises(DataError, match="no mask for 1 image"):
        load_dataset(tmp_path, require_masks=True)
