"""Format converters: ARCADE COCO polygons, DCA1, DRIVE, XCAD, and the dispatcher with its record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from angioseg.data.datasets import load_dataset
from angioseg.errors import AngiosegError, DataError
from angioseg.public.arcade import polygon_mask
from angioseg.public.common import ConvertOptions
from angioseg.public.convert import RAW_DIR, RECORD, convert
from public_fixtures import coco, disk, gray, make_arcade, make_dca1, make_drive, png, save, zip_folder

# --- COCO polygon rasterisation ------------------------------------------------------------------


def test_polygon_square_covers_exactly_its_pixels() -> None:
    # x = column, y = row; the square spans x in [1, 5], y in [1, 4]: pixel centres 1.5..4.5 x 1.5..3.5
    mask = polygon_mask([[1, 1, 5, 1, 5, 4, 1, 4]], (8, 8))
    expected = np.zeros((8, 8), bool)
    expected[1:4, 1:5] = True
    np.testing.assert_array_equal(mask, expected)
    assert mask.sum() == 4 * 3  # = the polygon's area


def test_polygon_triangle_pixel_exact() -> None:
    # Triangle (0,0), (5,0), (0,4): a pixel (r, c) is inside when 4(c+.5) + 5(r+.5) < 20, i.e.
    # 4c + 5r < 15.5 (no pixel centre lies on the edge): 4 + 3 + 2 + 1 pixels, the triangle's area 10.
    mask = polygon_mask([[0, 0, 5, 0, 0, 4]], (6, 6))
    r, c = np.mgrid[:6, :6]
    np.testing.assert_array_equal(mask, 4 * c + 5 * r < 15.5)
    assert mask.sum() == 10


def test_polygon_clipped_to_the_image_and_bad_polygons_rejected() -> None:
    assert polygon_mask([[-5, -5, 20, -5, 20, 20, -5, 20]], (4, 3)).all()
    with pytest.raises(ValueError, match="even number"):
        polygon_mask([[1, 1, 4, 1, 4]], (8, 8))
    with pytest.raises(ValueError, match=">= 6"):
        polygon_mask([[1, 1, 4, 4]], (8, 8))


# --- ARCADE ----------------------------------------------------------------------------------------


def test_arcade_syntax_and_stenosis(tmp_path: Path) -> None:
    src = make_arcade(tmp_path / "src")
    out = tmp_path / "out"
    res = convert("arcade", src, out, ConvertOptions(segments=True))
    assert res.failed == [] and res.written == 3
    assert res.counts == {"syntax/train": 2, "stenosis/val": 1}
    tr = out / "syntax" / "train"
    # image 1 was RGB with equal channels: stored as 8-bit gray with the same values
    np.testing.assert_array_equal(png(tr / "images" / "1.png"), gray(1))
    np.testing.assert_array_equal(png(tr / "images" / "2.png"), gray(2))
    assert (tr / "images" / "2.png").read_bytes() == (
        src / "syntax" / "train" / "images" / "2.png"
    ).read_bytes()
    vessel = np.zeros((16, 16), np.uint8)
    vessel[1:4, 1:5] = 255  # segment "1": x 1..5, y 1..4
    vessel[10:12, 10:14] = 255  # segment "5": x 10..14, y 10..12; the stenosis polygon is left out
    np.testing.assert_array_equal(png(tr / "masks" / "1.png"), vessel)
    assert not png(tr / "masks" / "2.png").any()  # no polygon: empty mask, with a note
    assert any("1 image(s) have no vessel polygon" in n for n in res.notes)
    seg = png(tr / "segments" / "1.png")
    assert seg[2, 2] == 1 and seg[11, 11] == 5 and set(np.unique(seg)) == {0, 1, 5}
    r, c = np.mgrid[:16, :16]
    np.testing.assert_array_equal(png(out / "stenosis" / "val" / "masks" / "1.png") > 0, 4 * c + 5 * r < 15.5)
    assert not (out / "stenosis" / "val" / "segments").exists()
    record = json.loads((out / RECORD).read_text(encoding="utf-8"))
    assert record["complete"] and record["format"] == "arcade" and record["syntax_segments"]["25"] == "25"
    assert "26" not in record["syntax_segments"]
    # the output is a dataset the rest of angioseg reads
    samples = load_dataset(tr, require_masks=True)
    assert (
        [s.name for s in samples] == ["1", "2"]
        and samples[0].mask is not None
        and samples[0].mask.sum() == 20
    )


def test_arcade_rerun_resumes_and_task_filter(tmp_path: Path) -> None:
    src = make_arcade(tmp_path / "src")
    (src / "syntax" / "test").mkdir()
    (src / "syntax" / "test" / "test.json").write_text("{}")  # not in annotations/: reported, not guessed
    out = tmp_path / "out"
    res = convert("arcade", src, out, ConvertOptions(task="syntax"))
    assert not (out / "stenosis").exists()
    assert any(
        "1 json file(s) not in an annotations/ folder" in n and "syntax/test/test.json" in n
        for n in res.notes
    )
    (out / "syntax" / "train" / "masks" / "2.png").unlink()  # as if interrupted before this write
    res = convert("arcade", src, out, ConvertOptions(task="syntax"))
    assert (res.written, res.skipped) == (1, 1) and (out / "syntax" / "train" / "masks" / "2.png").exists()
    res = convert("arcade", src, out, ConvertOptions(task="syntax", overwrite=True))
    assert (res.written, res.skipped) == (2, 0)


def test_arcade_bad_items_are_listed_and_the_rest_written(tmp_path: Path) -> None:
    d = tmp_path / "split"
    save(d / "images" / "1.png", gray(1))
    save(d / "images" / "2.png", gray(2, (20, 16)))
    save(d / "images" / "4.png", gray(4))
    spec = coco(
        [(1, "1.png", 16, 16), (2, "2.png", 16, 16), (3, "3.png", 16, 16), (5, "4.png", 16, 16)],
        [(1, 3, [1, 1, 5, 1, 5, 4]), (5, 3, [1, 1, 5])],  # image id 5 (4.png) has an odd polygon
    )
    (d / "annotations").mkdir()
    (d / "annotations" / "x.json").write_text(json.dumps(spec))
    res = convert("arcade", d, tmp_path / "out")
    failed = dict(res.failed)
    assert sorted(failed) == ["syntax/split/2.png", "syntax/split/3.png", "syntax/split/4.png"]
    assert "image is 16x20 but x.json says 16x16" in failed["syntax/split/2.png"]
    assert "image listed in x.json is missing" in failed["syntax/split/3.png"]
    assert "even number (>= 6) of coordinates" in failed["syntax/split/4.png"]
    assert (tmp_path / "out" / "syntax" / "split" / "masks" / "1.png").exists()
    assert not json.loads((tmp_path / "out" / RECORD).read_text(encoding="utf-8"))["complete"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read COCO json"),
        ('{"annotations": []}', "no 'images' list"),
        ('{"images": [{"id": 1}]}', r"images\[0\] has no 'id' or 'file_name'"),
        ('{"images": [], "annotations": [{"image_id": 9}]}', "refers to image_id 9"),
    ],
)
def test_arcade_bad_json_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "s" / "images").mkdir(parents=True)
    (tmp_path / "s" / "annotations").mkdir()
    (tmp_path / "s" / "annotations" / "a.json").write_text(content)
    with pytest.raises(DataError, match=message):
        convert("arcade", tmp_path / "s", tmp_path / "out")


def test_arcade_without_annotations_is_a_clear_error(tmp_path: Path) -> None:
    save(tmp_path / "s" / "images" / "1.png", gray(1))
    with pytest.raises(DataError, match="no ARCADE/COCO split found"):
        convert("arcade", tmp_path / "s", tmp_path / "out")


# --- DCA1 ------------------------------------------------------------------------------------------


def test_dca1_pairs_and_unpaired_image(tmp_path: Path) -> None:
    d = make_dca1(tmp_path / "src", n=3)
    save(d / "9.pgm", gray(9), "PPM")  # an image without its _gt mask
    res = convert("dca1", tmp_path / "src", tmp_path / "out")
    assert (
        res.counts == {".": 3}
        and res.failed[0][0] == "9"
        and "image without its mask 9_gt.pgm" in res.failed[0][1]
    )
    for i in (1, 2, 3):
        np.testing.assert_array_equal(png(tmp_path / "out" / "images" / f"{i}.png"), gray(i))
        np.testing.assert_array_equal(png(tmp_path / "out" / "masks" / f"{i}.png"), disk(radius=2 + i))
    samples = load_dataset(tmp_path / "out", require_masks=True)
    assert [s.name for s in samples] == ["1", "2", "3"]


def test_dca1_non_binary_mask_is_thresholded_with_a_note(tmp_path: Path) -> None:
    d = tmp_path / "src"
    save(d / "1.pgm", gray(1), "PPM")
    save(d / "1_gt.pgm", (disk() // 255 * 200 + 1).astype(np.uint8), "PPM")  # values 1 and 201
    res = convert("dca1", d, tmp_path / "out")
    assert png(tmp_path / "out" / "masks" / "1.png").min() == 255  # everything > 0 is vessel
    assert any("not binary" in n for n in res.notes)


@pytest.mark.realdata
def test_dca1_real_data_round_trip(tmp_path: Path) -> None:
    from conftest import shared_data

    real = shared_data("xca_cimat40")
    src = tmp_path / "Database_134_Angiograms"
    names = sorted(p.name for p in (real / "images").iterdir())[:6]
    for i, name in enumerate(names, start=1):
        save(src / f"{i}.pgm", png(real / "images" / name), "PPM")
        save(src / f"{i}_gt.pgm", png(real / "masks" / name), "PPM")
    res = convert("dca1", src, tmp_path / "out")
    assert res.failed == [] and res.written == 6
    for i, name in enumerate(names, start=1):
        np.testing.assert_array_equal(
            png(tmp_path / "out" / "images" / f"{i}.png"), png(real / "images" / name)
        )
        np.testing.assert_array_equal(
            png(tmp_path / "out" / "masks" / f"{i}.png"), png(real / "masks" / name)
        )


# --- DRIVE -----------------------------------------------------------------------------------------


def test_drive_green_channel_masks_and_fov(tmp_path: Path) -> None:
    src = make_drive(tmp_path / "src", test_labels=False)
    res = convert("drive", tmp_path / "src", tmp_path / "out")
    assert res.failed == [] and res.counts == {"train": 2, "test": 1}
    rgb = png(src / "training" / "images" / "21_training.tif")
    np.testing.assert_array_equal(png(tmp_path / "out" / "train" / "images" / "train_21.png"), rgb[..., 1])
    np.testing.assert_array_equal(
        png(tmp_path / "out" / "train" / "masks" / "train_21.png"), disk((16, 12), 3)
    )
    np.testing.assert_array_equal(png(tmp_path / "out" / "train" / "fov" / "train_21.png"), disk((16, 12), 6))
    assert sorted(p.name for p in (tmp_path / "out" / "test").iterdir()) == ["fov", "images"]
    assert any("test: no 1st_manual/ folder" in n for n in res.notes)
    assert [s.name for s in load_dataset(tmp_path / "out" / "train", require_masks=True)] == [
        "train_21",
        "train_22",
    ]


def test_drive_rgb_option_and_bad_channel(tmp_path: Path) -> None:
    src = make_drive(tmp_path / "src")
    convert("drive", tmp_path / "src", tmp_path / "out", ConvertOptions(channel="rgb"))
    rgb = png(src / "test" / "images" / "01_test.tif")
    np.testing.assert_array_equal(png(tmp_path / "out" / "test" / "images" / "test_01.png"), rgb)
    assert (tmp_path / "out" / "test" / "masks" / "test_01.png").exists()
    with pytest.raises(DataError, match="DRIVE channel must be one of"):
        convert("drive", tmp_path / "src", tmp_path / "out2", ConvertOptions(channel="blue"))


# --- XCAD ------------------------------------------------------------------------------------------


def test_xcad_folders_mirrored_labeled_test_set_renamed(tmp_path: Path) -> None:
    root = tmp_path / "src" / "XCAD"
    save(root / "train" / "trainA" / "000_PPA_44.png", gray(1))
    fractal = np.arange(256, dtype=np.uint8).reshape(16, 16)  # a 256-level map: copied unchanged
    save(root / "train" / "trainB" / "00000.png", fractal)
    save(root / "test" / "img" / "t1.png", gray(2))
    save(root / "test" / "gt" / "t1.png", disk())
    out = tmp_path / "out"
    res = convert("xcad", tmp_path / "src", out)
    assert res.failed == [] and res.counts == {
        "test/images": 1,
        "test/masks": 1,
        "train/trainA": 1,
        "train/trainB": 1,
    }
    np.testing.assert_array_equal(png(out / "train" / "trainB" / "00000.png"), fractal)
    samples = load_dataset(out / "test", require_masks=True)
    assert samples[0].name == "t1" and samples[0].mask is not None
    np.testing.assert_array_equal(samples[0].mask, disk() > 0)
    assert [s.mask for s in load_dataset(out / "train" / "trainA")] == [None]  # unlabeled, flat folder
    assert json.loads((out / RECORD).read_text(encoding="utf-8"))["folders"]["test/masks"] == "test/gt"


def test_xcad_colliding_folders_are_refused(tmp_path: Path) -> None:
    save(tmp_path / "src" / "test" / "img" / "a.png", gray(1))
    save(tmp_path / "src" / "test" / "images" / "b.png", gray(2))
    with pytest.raises(DataError, match="would be written to"):
        convert("xcad", tmp_path / "src", tmp_path / "out")


# --- the dispatcher --------------------------------------------------------------------------------


def test_convert_from_zip_removes_the_unpacked_copy(tmp_path: Path) -> None:
    make_dca1(tmp_path / "src", n=2)
    arc = zip_folder(tmp_path / "src" / "Database_134_Angiograms", tmp_path / "DB.zip")
    res = convert("dca1", arc, tmp_path / "out")
    assert res.written == 2 and not (tmp_path / "out" / RAW_DIR).exists()
    assert json.loads((tmp_path / "out" / RECORD).read_text(encoding="utf-8"))["source"] == str(arc)


def test_convert_keeps_the_unpacked_copy_when_inputs_failed(tmp_path: Path) -> None:
    d = make_dca1(tmp_path / "src", n=2)
    (d / "2_gt.pgm").write_bytes(b"P5 broken")
    arc = zip_folder(d, tmp_path / "DB.zip")
    res = convert("dca1", arc, tmp_path / "out")
    assert res.written == 1 and "cannot read image" in res.failed[0][1]
    assert (tmp_path / "out" / RAW_DIR / "DB" / ".angioseg-extracted").exists()


def test_dispatcher_errors(tmp_path: Path) -> None:
    with pytest.raises(
        AngiosegError, match="unknown format 'cadica'; known formats: arcade, dca1, drive, xcad"
    ):
        convert("cadica", tmp_path, tmp_path / "out")
    with pytest.raises(DataError, match="no such file or folder"):
        convert("dca1", tmp_path / "nope", tmp_path / "out")
    make_dca1(tmp_path / "src", n=1)
    with pytest.raises(DataError, match="must not lie inside the source folder"):
        convert("dca1", tmp_path / "src", tmp_path / "src" / "out")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="expected a folder or an archive"):
        convert("dca1", tmp_path / "notes.txt", tmp_path / "out")
    shutil.rmtree(tmp_path / "src")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DCA1 mask found"):
        convert("dca1", tmp_path / "empty", tmp_path / "out")
