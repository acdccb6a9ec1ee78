from __future__ import annotations

import numpy as np

from angioseg.data.synthetic import SynthConfig, synthetic_angiogram


def test_vessels_are_dark_tubes_with_exact_masks() -> None:
    img, mask = synthetic_angiogram(3, SynthConfig(size=128))
    assert img.shape == mask.shape == (128, 128) and img.dtype == np.uint8
    assert 0.005 < mask.mean() < 0.3
    assert img[mask].mean() < img[~mask & (img > 40)].mean()  # darker than the lit background


def test_deterministic_and_catheter_not_in_mask() -> None:
    a = synthetic_angiogram(np.random.default_rng([1, 2]), SynthConfig(size=96), catheter=True)
    b = synthetic_angiogram(np.random.default_rng([1, 2]), SynthConfig(size=96), catheter=True)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = synthetic_angiogram(np.random.default_rng([1, 2]), SynthConfig(size=96), catheter=False)
    assert np.array_equal(a[1], c[1]) and not np.array_equal(a[0], c[0])
