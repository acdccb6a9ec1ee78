"""Diffusion condensation, its building blocks, and level selection."""

from __future__ import annotations

import numpy as np
import pytest

from angioseg.unsupervised.condensation import condense, merge_close, select_levels
from angioseg.unsupervised.diffusion import (
    alpha_decay_kernel,
    diffusion_operator,
    distances,
    eigenvalues,
    fixed_kernel,
    knee,
)


def _blobs(k: int, seed: int, per: int = 30, dim: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 10
    x = np.concatenate([c + 0.5 * rng.normal(size=(per, dim)) for c in centres])
    return x, np.repeat(np.arange(k), per)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize(("k", "seed"), [(2, 0), (3, 1), (4, 2), (5, 3)])
def test_well_separated_blobs_give_exactly_that_many_clusters_on_a_plateau(k: int, seed: int) -> None:
    x, truth = _blobs(k, seed)
    res = condense(x)
    counts = [int(res.counts[lv]) for lv in res.levels]
    assert k in counts
    longest = res.levels[int(np.argmax(res.plateau_lengths))]
    assert res.counts[longest] == k  # the most stable level is the blob partition
    assert _same_partition(res.labels[longest], truth)
    assert res.counts[-1] == 1 and res.counts[0] == len(x)


def test_masses_act_like_coincident_points() -> None:
    """Three blobs given as weighted points condense to the same three groups."""
    x, truth = _blobs(3, 4, per=20)
    res = condense(x, mass=np.arange(1, 61, dtype=float))
    longest = res.levels[int(np.argmax(res.plateau_lengths))]
    assert _same_partition(res.labels[longest], truth)


def test_merge_close_keeps_heaviest_id_and_mass_weighted_mean() -> None:
    x = np.array([[0.0, 0.0], [0.05, 0.0], [5.0, 5.0]])
    mass = np.array([1.0, 3.0, 2.0])
    ids = np.array([10, 11, 12])
    nx, nm, nid, group = merge_close(x, mass, ids, threshold=0.1)
    assert group.tolist() == [0, 0, 1]
    assert nid.tolist() == [11, 12]
    assert nm.tolist() == [4.0, 2.0]
    assert np.allclose(nx[0], [0.0375, 0.0])


def test_select_levels_one_per_stable_plateau() -> None:
    counts = np.array([9, 9, 7, 5, 5, 5, 4, 3, 3, 1])
    levels, lengths = select_levels(counts, n_points=9, min_plateau=2)
    assert levels == [5, 8]  # the 9-plateau (nothing merged yet) and the final 1 are not levels
    assert lengths == [3, 2]


def test_knee_of_two_lines() -> None:
    y = np.concatenate([10 - 2.0 * np.arange(6), 0 - 0.1 * np.arange(1, 15)])
    assert knee(y) == 5
    assert knee(np.ones(10)) == 0


def test_eigenvalues_per_component_match_dense_computation() -> None:
    x, _ = _blobs(3, 5, per=8, dim=3)
    mass = np.random.default_rng(0).uniform(1, 4, len(x))
    kern = alpha_decay_kernel(distances(x), knn=3)
    dense = np.sort(np.linalg.eigvals(diffusion_operator(kern, mass).toarray()).real)
    assert np.allclose(np.sort(eigenvalues(kern, mass)), dense, atol=1e-10)


def test_kernels_are_symmetric_and_thresholded() -> None:
    x, _ = _blobs(2, 6, per=10, dim=4)
    d = distances(x)
    ka = alpha_decay_kernel(d, knn=5)
    assert np.allclose(ka, ka.T) and np.allclose(np.diag(ka), 1.0)
    kf = fixed_kernel(d, eps=1.0)
    assert np.allclose(kf, kf.T)
    assert ((kf == 0) | (kf >= 1e-4)).all()
    p = diffusion_operator(ka).toarray()
    assert np.allclose(p.sum(1), 1.0)
