"""Inference modes at the training scale, and input dtypes, with a tiny model that really segments."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from angioseg.data.io import to_uint8
from angioseg.data.preprocess import PreprocessConfig, preprocess_image
from angioseg.errors import AngiosegError
from angioseg.metrics.overlap import dice
from angioseg.predict import Segmenter, predict_proba, training_scale_shape
from angioseg.train.checkpoint import load_model
from tests.tiny_model import IMAGE_SIZE, held_out

BIG = 4 * IMAGE_SIZE  # held-out frames 4x the training field: 256² for a 64² model


def mean_dice(seg: Segmenter, pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    return float(np.mean([dice(seg.segment(image), mask) for image, mask in pairs]))


def test_training_scale_shape_maps_the_short_side_to_the_image_size() -> None:
    assert training_scale_shape((512, 512), 256) == (256, 256)
    assert training_scale_shape((512, 768), 256) == (256, 384)
    assert training_scale_shape((900, 600), 64) == (96, 64)
    assert training_scale_shape((40, 30), 64) == (85, 64)  # small frames are enlarged as in resize mode


def test_sliding_agrees_with_resize_on_large_square_frames(tiny_model: Path) -> None:
    pairs = held_out(2, BIG)
    resize = mean_dice(Segmenter.from_checkpoint(tiny_model, mode="resize"), pairs)
    sliding = mean_dice(Segmenter.from_checkpoint(tiny_model, mode="sliding"), pairs)
    assert resize > 0.5  # the model segments: the comparison below means something
    assert abs(sliding - resize) <= 0.02
    # The old sliding mode ran the windows on native pixels, where vessels are 4x wider than in
    # training; it must lose clearly, or this test could not tell the two apart.
    model, meta = load_model(tiny_model)
    native = replace(PreprocessConfig.from_dict(meta["preprocess"]), image_size=None)
    old = [
        dice(predict_proba(model, [preprocess_image(im, native)[0]], roi_size=IMAGE_SIZE)[0] >= 0.5, m)
        for im, m in pairs
    ]
    assert float(np.mean(old)) < resize - 0.1


def test_sliding_keeps_the_training_scale_on_a_wide_frame(tiny_model: Path) -> None:
    """Two held-out frames side by side (256 x 512): resize squeezes vessels 2x along the width."""
    (a, ma), (b, mb) = held_out(2, BIG, seed=2)
    wide, truth = np.concatenate([a, b], axis=1), np.concatenate([ma, mb], axis=1)
    sliding = Segmenter.from_checkpoint(tiny_model, mode="sliding")
    resize = Segmenter.from_checkpoint(tiny_model, mode="resize")
    d_sliding, d_resize = dice(sliding.segment(wide), truth), dice(resize.segment(wide), truth)
    assert sliding.probability(wide).shape == wide.shape
    assert d_sliding > d_resize + 0.05
    assert d_sliding > mean_dice(sliding, [(a, ma), (b, mb)]) - 0.05  # as good as on the square halves


def test_sliding_needs_a_model_with_a_training_size(tiny_model: Path) -> None:
    model, meta = load_model(tiny_model)
    native = {**meta, "preprocess": {**meta["preprocess"], "image_size": None}}
    with pytest.raises(AngiosegError, match="--mode sliding needs a model trained at a fixed image size"):
        Segmenter(model, native, mode="sliding")


def test_same_mask_for_uint8_uint16_and_float_inputs(tiny_model: Path) -> None:
    """One angiogram as uint8, as 16-bit (x * 257) and as float in [0, 1]: the same mask.

    Corner inpainting is switched on: its threshold is on the 8-bit scale, so a float image taken
    as 8-bit (all of it "dark") has whole corners inpainted and a different mask.
    """
    model, meta = load_model(tiny_model)
    meta = {**meta, "preprocess": {**meta["preprocess"], "inpaint_corners": True}}
    seg = Segmenter(model, meta)
    image, truth = held_out(1, BIG, seed=3)[0]
    x8 = to_uint8(image)  # spans 0..255, so the 16-bit copy min-max scales back onto it
    masks = [seg.segment(v) for v in (x8, x8.astype(np.uint16) * 257, x8.astype(np.float32) / 255)]
    assert dice(masks[0], truth) > 0.5
    for m in masks[1:]:
        assert np.mean(m != masks[0]) < 1e-3


def test_overlay_tints_only_the_mask_as_the_per_pixel_formula() -> None:
    from angioseg.predict import overlay

    rng = np.random.default_rng(0)
    image = rng.random((40, 50)) * 3000.0
    mask = rng.random((40, 50)) < 0.4
    g = np.round((image - image.min()) * (255.0 / (image.max() - image.min()))).astype(np.uint8)
    per_pixel = (0.55 * g[mask].astype(np.float32)[:, None] + 0.45 * np.array([255.0, 40.0, 40.0])).astype(
        np.float32
    )
    got = overlay(image, mask)
    assert np.array_equal(got[~mask], np.repeat(g[~mask][:, None], 3, axis=1))
    assert np.array_equal(got[mask], np.clip(per_pixel, 0, 255).astype(np.uint8))
