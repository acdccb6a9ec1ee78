"""The approximation that makes CUTS clustering fit the time budget: feature-space landmarks.

A 512 x 512 image has 262 144 pixel embeddings; a dense diffusion operator on them is out of reach
on a CPU (CATCH and PHATE themselves switch to 1000 / 500 landmarks above a few thousand points).
Here the pixels are *vector-quantised*:

1. each 128-d embedding is L2-normalised (as CATCH does) and projected on its first 50 principal
   components (CATCH's ``n_pca = 50``), PCA fitted on a random subsample of pixels;
2. k-means with ``n_landmarks`` centres (default 1000, CATCH's landmark count) is fitted on a random
   subsample of pixels and every pixel is assigned to its nearest centre;
3. each landmark is the mean of its pixels' (PCA) embeddings and carries their count as its mass.

Condensation and spectral clustering then run on the landmarks with mass-weighted kernels (a
landmark of mass ``w`` acts as ``w`` coincident pixels, see :mod:`angioseg.unsupervised.diffusion`),
and a pixel takes the label of its landmark. The approximation is exact when the pixels of a
landmark coincide in feature space; its error is the quantisation error, which the benchmark
``bench/bench_unsupervised.py`` measures against the exact (pixel-level) run on a small image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Landmarks:
    """``assign`` (N) maps each point to its landmark; ``points`` (M x d) and ``mass`` (M) describe them."""

    assign: np.ndarray
    points: np.ndarray
    mass: np.ndarray


def normalise_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def pca_project(x: np.ndarray, dims: int, rng: np.random.Generator, fit_size: int = 20000) -> np.ndarray:
    """Project ``N x D`` rows on the top ``dims`` principal axes (fitted on at most ``fit_size`` rows)."""
    if x.shape[1] <= dims:
        return x - x.mean(0)
    sub = x[rng.choice(len(x), min(fit_size, len(x)), replace=False)].astype(np.float64)
    mean = sub.mean(0)
    _, _, vt = np.linalg.svd(sub - mean, full_matrices=False)
    return ((x - mean) @ vt[:dims].T.astype(np.float32)).astype(np.float32)


def nearest_centre(x: np.ndarray, centres: np.ndarray, chunk: int = 32768) -> np.ndarray:
    """Index of the nearest row of ``centres`` for every row of ``x`` (chunked BLAS distances)."""
    c = centres.astype(np.float32)
    c2 = (c * c).sum(1)
    out = np.empty(len(x), np.int64)
    for i in range(0, len(x), chunk):
        xi = x[i : i + chunk].astype(np.float32)
        out[i : i + chunk] = np.argmin(c2[None, :] - 2.0 * xi @ c.T, axis=1)
    return out


def make_landmarks(
    x: np.ndarray,
    n_landmarks: int = 1000,
    pca_dims: int = 50,
    seed: int = 0,
    fit_size: int = 20000,
) -> Landmarks:
    """Vector-quantise ``N x D`` embeddings into at most ``n_landmarks`` landmarks (empty ones dropped).

    With ``n_landmarks >= N`` every point is its own landmark (the exact, pixel-level computation).
    """
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    z = pca_project(normalise_rows(x), pca_dims, rng, fit_size)
    n = len(z)
    if n_landmarks >= n:
        return Landmarks(np.arange(n), z.astype(np.float64), np.ones(n))
    sub = z[rng.choice(n, min(fit_size, n), replace=False)]
    km = KMeans(n_landmarks, n_init=1, max_iter=20, random_state=seed).fit(sub)
    assign = nearest_centre(z, km.cluster_centers_)
    used, assign = np.unique(assign, return_inverse=True)
    mass = np.bincount(assign, minlength=len(used)).astype(np.float64)
    points = np.zeros((len(used), z.shape[1]))
    np.add.at(points, assign, z.astype(np.float64))
    return Landmarks(assign, points / mass[:, None], mass)
