"""Readers: every supported format, DICOM cine, clear errors naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from angioseg.data.io import list_image_files, read_frames, read_image, read_mask, write_png
from angioseg.errors import DataError
from tests.dicom_utils import write_dicom

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, (20, 30), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".pgm", ".tif", ".bmp"])
def test_lossless_formats_roundtrip(tmp_path: Path, ext: str) -> None:
    p = tmp_path / f"a{ext}"
    Image.fromarray(IMG).save(p)
    assert np.array_equal(read_image(p), IMG.astype(np.float32))


def test_jpeg_is_read_approximately(tmp_path: Path) -> None:
    p = tmp_path / "a.jpg"
    smooth = np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (20, 1))
    Image.fromarray(smooth).save(p, quality=95)
    assert np.abs(read_image(p) - smooth).mean() < 3


def test_rgb_gray_and_green(tmp_path: Path) -> None:
    rgb = np.stack([IMG, IMG // 2, IMG // 4], -1)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    green = read_frames(tmp_path / "c.png", channel="green")[0].image
    assert np.array_equal(green, (IMG // 2).astype(np.float32))
    gray = read_image(tmp_path / "c.png")
    expected = 0.299 * IMG + 0.587 * (IMG // 2) + 0.114 * (IMG // 4)
    np.testing.assert_allclose(gray, expected, rtol=1e-5)


def test_npy_and_multipage_tiff_give_frames(tmp_path: Path) -> None:
    import tifffile

    stack = RNG.integers(0, 4000, (3, 16, 16)).astype(np.uint16)
    np.save(tmp_path / "run.npy", stack)
    tifffile.imwrite(tmp_path / "run2.tif", stack)
    for f in ("run.npy", "run2.tif"):
        frames = read_frames(tmp_path / f)
        assert [fr.name for fr in frames] == [
            f"{Path(f).stem}_f000",
            f"{Path(f).stem}_f001",
            f"{Path(f).stem}_f002",
        ]
        assert np.array_equal(frames[2].image, stack[2].astype(np.float32))


def test_dicom_single_frame_with_spacing(tmp_path: Path) -> None:
    p = write_dicom(tmp_path / "xa.dcm", IMG, spacing=(0.25, 0.25))
    (fr,) = read_frames(p)
    assert fr.name == "xa" and fr.spacing == (0.25, 0.25) and np.array_equal(fr.image, IMG.astype(np.float32))


def test_dicom_cine_without_extension_and_imager_spacing(tmp_path: Path) -> None:
    cine = RNG.integers(0, 1024, (4, 24, 24)).astype(np.uint16)
    p = write_dicom(tmp_path / "IM0001", cine, spacing=(0.2, 0.2), imager_spacing=True)
    frames = read_frames(p)
    assert [f.name for f in frames] == ["IM0001_f000", "IM0001_f001", "IM0001_f002", "IM0001_f003"]
    assert frames[1].spacing == (0.2, 0.2)
    assert np.array_equal(frames[3].image, cine[3].astype(np.float32))
    assert list_image_files([tmp_path]) == [p]


FACTOR = "EstimatedRadiographicMagnificationFactor"
SID_SOD = {"DistanceSourceToDetector": "1000", "DistanceSourceToPatient": "800"}  # magnification 1.25


@pytest.mark.parametrize(
    ("spacing", "imager", "attributes", "expected", "source", "magnification"),
    [
        ((0.3, 0.3), False, {}, (0.3, 0.3), "PixelSpacing", None),
        # PixelSpacing is already in the patient plane: nothing is divided
        (
            (0.3, 0.3),
            False,
            {"ImagerPixelSpacing": ["0.4", "0.4"], FACTOR: "2"},
            (0.3, 0.3),
            "PixelSpacing",
            None,
        ),
        ((0.4, 0.4), True, {FACTOR: "1.6"}, (0.25, 0.25), "ImagerPixelSpacing/magnification", FACTOR),
        ((0.4, 0.2), True, SID_SOD, (0.32, 0.16), "ImagerPixelSpacing/magnification", "SID/SOD"),
        # the estimated factor wins over SID/SOD; a zero factor is no factor
        ((0.4, 0.4), True, {FACTOR: "2", **SID_SOD}, (0.2, 0.2), "ImagerPixelSpacing/magnification", FACTOR),
        (
            (0.4, 0.4),
            True,
            {FACTOR: "0", **SID_SOD},
            (0.32, 0.32),
            "ImagerPixelSpacing/magnification",
            "SID/SOD",
        ),
        # SID without SOD, or nothing: the detector spacing as it is
        (
            (0.4, 0.4),
            True,
            {"DistanceSourceToDetector": "1000"},
            (0.4, 0.4),
            "ImagerPixelSpacing uncorrected",
            None,
        ),
        ((0.4, 0.4), True, {}, (0.4, 0.4), "ImagerPixelSpacing uncorrected", None),
        (None, False, SID_SOD, None, "none", None),
    ],
)
def test_dicom_spacing_and_its_source(
    tmp_path: Path,
    spacing: tuple[float, float] | None,
    imager: bool,
    attributes: dict[str, object],
    expected: tuple[float, float] | None,
    source: str,
    magnification: str | None,
) -> None:
    p = write_dicom(tmp_path / "xa.dcm", IMG, spacing=spacing, imager_spacing=imager, **attributes)
    (fr,) = read_frames(p)
    assert fr.spacing_source == source and fr.magnification_source == magnification
    if expected is None:
        assert fr.spacing is None
    else:
        assert fr.spacing == pytest.approx(expected, rel=1e-12)


def test_non_dicom_has_no_spacing_source(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", IMG)
    (fr,) = read_frames(tmp_path / "a.png")
    assert fr.spacing is None and fr.spacing_source == "none" and fr.magnification_source is None


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    p = write_dicom(tmp_path / "m1.dcm", IMG, photometric="MONOCHROME1")
    im = read_image(p)
    assert np.array_equal(im, IMG.max() - IMG.astype(np.float32))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.png", b"\x89PNG\r\n\x1a\n garbage", "cannot read image"),
        ("broken.dcm", b"not a dicom at all", "not a readable DICOM"),
        ("x.webm", b"whatever", "unsupported file type"),
        ("tiny.npy", None, "at least 8 x 8"),
    ],
)
def test_bad_files_name_file_and_problem(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    p = tmp_path / name
    if content is None:
        np.save(p, np.zeros((3, 3)))
    else:
        p.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_frames(p)
    assert str(p) in str(err.value)


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_frames(tmp_path / "nope.png")
    with pytest.raises(DataError, match="holds no image file"):
        list_image_files([tmp_path])


def test_mask_binarised_with_warning(tmp_path: Path) -> None:
    m = np.zeros((10, 10), np.uint8)
    m[2:5, 2:5] = 255
    write_png(tmp_path / "bin.png", m)
    assert read_mask(tmp_path / "bin.png").sum() == 9
    m[6, 6] = 17
    write_png(tmp_path / "gray.png", m)
    with pytest.warns(UserWarning, match="not binary"):
        assert read_mask(tmp_path / "gray.png").sum() == 10


def test_bilevel_mask_png_is_one_bit_and_reads_back_as_the_same_mask(tmp_path: Path) -> None:
    from PIL import Image

    m = np.random.default_rng(0).random((64, 48)) > 0.8
    write_png(tmp_path / "eight.png", m)
    write_png(tmp_path / "one.png", m, bilevel=True)
    with Image.open(tmp_path / "one.png") as im:
        assert im.mode == "1"
    with Image.open(tmp_path / "eight.png") as im:
        assert im.mode == "L" and np.asarray(im).max() == 255
    for name in ("one.png", "eight.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), m)
    assert (tmp_path / "one.png").stat().st_size < (tmp_path / "eight.png").stat().st_size
    with pytest.raises(TypeError, match="uint8 or bool"):
        write_png(tmp_path / "f.png", m.astype(np.float32), bilevel=True)


def test_write_png_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"
    write_png(target, IMG)
    import PIL.Image

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(PIL.Image.Image, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        write_png(target, np.zeros_like(IMG))
    assert np.array_equal(read_image(target), IMG.astype(np.float32))  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary left
