"""Preprocessing steps of the CM-UNet paper, each checked against its definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from angioseg.data.io import read_image, write_png
from angioseg.data.preprocess import (
    PreprocessConfig,
    dark_corner_mask,
    inpaint_dark_corners,
    preprocess_image,
    restore_geometry,
    to_8bit_range,
    unsharp_mask,
)

RNG = np.random.default_rng(0)


def test_unsharp_matches_its_formula() -> None:
    x = RNG.uniform(0, 255, (64, 64))
    out = unsharp_mask(x, radius=5, amount=2)
    blurred = ndimage.gaussian_filter(x, 5, mode="reflect")
    np.testing.assert_allclose(out, x + 2 * (x - blurred), rtol=1e-4, atol=1e-2)


def test_corner_inpainting_only_touches_dark_corners() -> None:
    img = np.full((100, 100), 120.0, np.float32)
    yy, xx = np.mgrid[:100, :100]
    img[np.hypot(yy - 50, xx - 50) > 62] = 5.0  # collimator corners
    mask = dark_corner_mask(img)
    assert mask.sum() > 100 and not mask[40:60, 40:60].any()
    out = inpaint_dark_corners(img)
    assert out[mask].min() > 60  # filled from the bright field
    assert np.array_equal(out[45:55, 45:55], img[45:55, 45:55])
    small = np.full((100, 100), 120.0, np.float32)
    small[:5, :5] = 0  # only 25 dark pixels: left alone
    assert np.array_equal(inpaint_dark_corners(small), small)


def test_zscore_resize_and_geometry_roundtrip() -> None:
    img = (ndimage.gaussian_filter(RNG.uniform(0, 255, (120, 90)), 4) * 10).astype(np.float32)
    cfg = PreprocessConfig(center_crop=80, image_size=64, inpaint_corners=False, unsharp=False)
    x, geom = preprocess_image(img, cfg)
    assert x.shape == (64, 64) and abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.1
    assert geom.crop_box == (20, 5, 80, 80)
    back = restore_geometry(np.ones((64, 64), np.float32), geom)
    assert back.shape == (120, 90) and back[20:100, 5:85].min() == 1 and back.sum() == 80 * 80


def collimated(
    size: int = 96, field: tuple[float, float] = (0, 1), corners: tuple[float, float] = (0, 0.05)
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth field spanning ``field`` inside a collimator disc, corners spanning ``corners``
    outside it; and the mask of the outside."""
    yy, xx = np.mgrid[:size, :size]
    outside = np.hypot(yy - size / 2, xx - size / 2) > 0.55 * size
    smooth = ndimage.gaussian_filter(RNG.uniform(0, 1, (size, size)), 3)
    img = np.empty((size, size))
    for region, (lo, hi) in ((outside, corners), (~outside, field)):
        v = smooth[region]
        img[region] = lo + (hi - lo) * (v - v.min()) / (v.max() - v.min())
    return img, outside


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        ([0, 10, 255], np.uint8, [0, 10, 255]),  # 8-bit: as is
        ([0, 1, 1], np.uint8, [0, 1, 1]),  # integers are never taken as [0, 1] floats
        ([0, 100, 200], np.uint16, [0, 100, 200]),  # 8-bit data in a 16-bit container
        ([0, 2570, 65535], np.uint16, [0, 10, 255]),  # 16-bit: min-max
        ([-1000, 0, 3000], np.int16, [0, 63.75, 255]),  # signed (DICOM HU-like): min-max
        ([0, 0.5, 1], np.float32, [0, 127.5, 255]),  # float in [0, 1]: x 255
        ([0, 2, 255], np.float64, [0, 2, 255]),  # float already on the 8-bit scale
        ([-1, 0, 1], np.float32, [0, 127.5, 255]),  # any other float range: min-max
        ([0, 0.515, 1.03], np.float32, [0, 127.5, 255]),  # unit range past 1 (resampling): min-max
        ([0, 1, 2], np.uint8, [0, 1, 2]),  # integers are never taken as unit range
        ([300, 300, 300], np.float32, [0, 0, 0]),  # constant, out of range
    ],
)
def test_to_8bit_range_rule(values: list[float], dtype: type, expected: list[float]) -> None:
    out = to_8bit_range(np.array(values, dtype=dtype).reshape(1, 3))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


def test_uint8_uint16_and_float_images_preprocess_alike(tmp_path: Path) -> None:
    """The same angiogram as uint8, 16-bit (x * 257) and float in [0, 1], in memory and in files.

    Its collimator corners are dark on the 8-bit scale: taking the float image as 8-bit (the old
    rule) marks whole corners dark, and inpaints a different region.
    """
    img, outside = collimated(field=(60, 255), corners=(0, 20))
    x8 = np.round(img).astype(np.uint8)
    versions = {"uint8": x8, "uint16": x8.astype(np.uint16) * 257, "float": x8.astype(np.float32) / 255}
    write_png(tmp_path / "u8.png", x8)
    Image.fromarray(versions["uint16"]).save(tmp_path / "u16.png")
    np.save(tmp_path / "f.npy", versions["float"])
    tifffile.imwrite(tmp_path / "f.tif", versions["float"])
    assert read_image(tmp_path / "u16.png").max() == 65535  # the reader keeps the 16-bit values
    for name in ("u8.png", "u16.png", "f.npy", "f.tif"):
        versions[name] = read_image(tmp_path / name)
    corners = dark_corner_mask(x8.astype(np.float32))
    assert corners.sum() > 100 and not (corners & ~outside).any()
    cfg = PreprocessConfig(image_size=None)
    ref, _ = preprocess_image(x8, cfg)
    for name, v in versions.items():
        assert np.array_equal(dark_corner_mask(to_8bit_range(v)), corners), name
        np.testing.assert_allclose(preprocess_image(v, cfg)[0], ref, atol=1e-3, err_msg=name)


def test_high_bit_depth_is_scaled_before_corner_threshold() -> None:
    """12-bit data: corners at 50..150, field at 1000..4000. Min-max puts the corners under the 8-bit
    threshold and the field above it; no scaling would inpaint nothing, a 16-bit scale (/ 257) the
    whole corner squares, field included."""
    img, outside = collimated(128, field=(1000, 4000), corners=(50, 150))
    img = np.round(img).astype(np.uint16)
    scaled = to_8bit_range(img)
    dark = dark_corner_mask(scaled)
    squares = dark_corner_mask(np.zeros(img.shape, np.float32))  # the four corner squares
    assert np.array_equal(dark, squares & outside)
    assert dark.sum() > 100
    cfg = PreprocessConfig(image_size=None, unsharp=False, zscore=False)
    x, _ = preprocess_image(img, cfg)
    assert x[dark].min() > 30  # filled from the bright field
    near = ndimage.binary_dilation(dark, structure=np.ones((5, 5), bool))
    np.testing.assert_allclose(x[~near], scaled[~near], rtol=1e-6)  # the rest: the 8-bit image, untouched


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing options"):
        PreprocessConfig.from_dict({"radius": 3})
