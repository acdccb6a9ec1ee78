"""Spectral k-means, landmarks, persistent structures."""

from __future__ import annotations

import numpy as np
import pytest

from angioseg.unsupervised.landmarks import make_landmarks
from angioseg.unsupervised.persistence import persistent_structures
from angioseg.unsupervised.spectral import SpectralConfig, diffusion_potential, eigengap_k, spectral_kmeans


def _blobs(k: int, seed: int = 0, per: int = 25) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 6)) * 10
    return np.concatenate([c + 0.5 * rng.normal(size=(per, 6)) for c in centres]), np.repeat(
        np.arange(k), per
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_spectral_kmeans_recovers_blobs(seed: int) -> None:
    x, truth = _blobs(4, seed)
    labels = spectral_kmeans(x, np.full(len(x), 3.0), SpectralConfig(n_clusters=4))
    assert len(set(zip(labels.tolist(), truth.tolist(), strict=True))) == 4


def test_eigengap_chooses_the_number_of_blobs() -> None:
    x, _ = _blobs(3)
    _, vals = diffusion_potential(x, np.ones(len(x)), knn=5)
    assert eigengap_k(vals) == 3
    labels = spectral_kmeans(x, None, SpectralConfig(n_clusters=0))
    assert len(np.unique(labels)) == 3


def test_landmarks_partition_all_points() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    lm = make_landmarks(x, n_landmarks=50, pca_dims=8, seed=0, fit_size=1000)
    assert lm.assign.shape == (3000,) and lm.points.shape[1] == 8
    assert lm.mass.sum() == 3000 and (lm.mass > 0).all()
    assert lm.assign.max() == len(lm.points) - 1
    exact = make_landmarks(x[:40], n_landmarks=100, pca_dims=8)
    assert np.array_equal(exact.assign, np.arange(40)) and (exact.mass == 1).all()


def test_persistent_structures_paints_most_persistent_last() -> None:
    # Label 0 is stable from level 1 on (as {0, 1}); label 1 exists only at level 0; labels 2 and 3
    # never change. Label 1 is painted first and covered by label 0's stable region.
    levels = np.array([[0, 1, 2, 3], [0, 0, 2, 3], [0, 0, 2, 3], [0, 0, 0, 3]])
    assert persistent_structures(levels).tolist() == [0, 0, 1, 2]


def test_persistent_structures_measure_change_in_pixels() -> None:
    """A 1 % change (by mass) keeps a region "the same"; with unit masses the same change is 50 %."""
    levels = np.array([[0, 0, 1, 2], [0, 0, 0, 2], [0, 0, 0, 2]])
    # Masses: label 0 (100 px) absorbs 1 px -> stable from level 0, painted at level 0, point 2 kept apart.
    assert persistent_structures(levels, np.array([50.0, 50.0, 1.0, 5.0])).tolist() == [0, 0, 1, 2]
    # Unit masses: 2 -> 3 points is not stable; label 0's stable run starts at level 1 and covers point 2.
    assert persistent_structures(levels).tolist() == [0, 0, 0, 1]
