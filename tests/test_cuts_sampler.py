"""The CUTS patch sampler: fresh anchors every call, positives never equal to their anchor."""

from __future__ import annotations

import numpy as np
import pytest

from angioseg.unsupervised.sampler import PatchSampler, SamplerConfig, patch_ssim


def _images(kind: str, b: int = 3, h: int = 32, w: int = 40) -> np.ndarray:
    rng = np.random.default_rng(1)
    if kind == "noise":  # almost no neighbour passes SSIM > 0.5: exercises the fallback
        return rng.standard_normal((b, 1, h, w))
    if kind == "flat":  # every patch identical: SSIM = 1 everywhere
        return np.zeros((b, 1, h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.sin(xx / 6.0 + k)[None] + 0.1 * np.cos(yy / 5.0) for k in range(b)])


@pytest.mark.parametrize("kind", ["noise", "flat", "smooth"])
def test_positive_is_never_the_anchor_and_stays_valid(kind: str) -> None:
    cfg = SamplerConfig(patches_per_image=64)
    sampler = PatchSampler(cfg, seed=0)
    images = _images(kind)
    for _ in range(5):
        a, p = sampler.sample(images)
        assert a.shape == p.shape == (3, 64, 2)
        assert not (a == p).all(-1).any()
        assert np.abs(a - p).max() <= cfg.neighbourhood
        for arr in (a, p):  # every 5 x 5 patch lies inside the 32 x 40 image
            assert arr[..., 0].min() >= 2 and arr[..., 0].max() <= 32 - 3
            assert arr[..., 1].min() >= 2 and arr[..., 1].max() <= 40 - 3


def test_noise_fallback_is_one_pixel_towards_the_centre() -> None:
    sampler = PatchSampler(SamplerConfig(patches_per_image=256, ssim_threshold=2.0), seed=3)
    a, p = sampler.sample(_images("noise", b=1))  # SSIM can never exceed 2: always the fallback
    step = p - a
    assert (np.abs(step).sum(-1) == 1).all()
    centre = np.array([15.5, 19.5])
    assert (np.abs(p - centre).sum(-1) <= np.abs(a - centre).sum(-1)).all()


def test_fresh_anchors_on_every_call_but_reproducible_per_seed() -> None:
    images = _images("smooth")
    s1, s2 = PatchSampler(seed=7), PatchSampler(seed=7)
    first, second = s1.sample(images)[0], s1.sample(images)[0]
    assert not np.array_equal(first, second)  # the authors' sampler returned identical anchors here
    assert np.array_equal(first, s2.sample(images)[0])
    assert np.array_equal(second, s2.sample(images)[0])


def test_smooth_images_get_ssim_gated_positives() -> None:
    cfg = SamplerConfig(patches_per_image=32)
    images = _images("smooth")
    a, p = PatchSampler(cfg, seed=0).sample(images)
    for b in range(3):
        img = images[b, 0] - images[b, 0].min()
        rng = float(img.max())
        pa = np.stack([img[r - 2 : r + 3, c - 2 : c + 3].ravel() for r, c in a[b]])
        pp = np.stack([img[r - 2 : r + 3, c - 2 : c + 3].ravel() for r, c in p[b]])
        assert (patch_ssim(pa, pp, rng) > cfg.ssim_threshold).all()


def test_patch_ssim_equals_scikit_image_single_window() -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    for _ in range(10):
        a, b = rng.random((5, 5)), rng.random((5, 5))
        ref = structural_similarity(a, b, win_size=5, data_range=1.0)
        assert patch_ssim(a.ravel(), b.ravel(), 1.0) == pytest.approx(ref, rel=1e-10, abs=1e-12)
    flat = np.zeros(25)
    assert patch_ssim(flat, flat, 1.0) == pytest.approx(1.0)


def test_too_small_image_is_an_error() -> None:
    with pytest.raises(ValueError, match="too small"):
        PatchSampler().sample(np.zeros((1, 1, 6, 6)))
