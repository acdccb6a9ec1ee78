"""Preprocessing steps of the CM-UNet paper, each checked against its definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from angioseg.data.preprocess import (
    PreprocessConfig,
    dark_corner_mask,
    inpaint_dark_corners,
    preprocess_image,
    restore_geometry,
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


def test_high_bit_depth_is_scaled_before_corner_threshold() -> None:
    img = RNG.uniform(1000, 4000, (64, 64)).astype(np.float32)
    x, _ = preprocess_image(img, PreprocessConfig(image_size=None))
    assert np.isfinite(x).all() and x.shape == (64, 64)


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing options"):
        PreprocessConfig.from_dict({"radius": 3})
