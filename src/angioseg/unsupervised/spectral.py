"""Spectral k-means: k-means on the diffusion potential of the (landmark) embeddings.

CUTS fits ``phate.PHATE(knn=100, t=2, n_landmark=500)`` on the pixel embeddings and runs k-means
with **K = 10** on PHATE's diffusion potential (``phate.cluster.kmeans``). PHATE is GPL, so the
potential is built here from its definition (Moon et al. 2019): the mass-weighted α-decay kNN
operator ``P`` of :mod:`angioseg.unsupervised.diffusion`, ``Pᵗ`` with ``t = 2`` (the CUTS setting)
and the log potential ``U = −log(Pᵗ + 1e-7)`` (PHATE's ``gamma = 1``); each row of ``U`` is a point's
coordinates, and k-means is weighted by landmark mass (the number of pixels a landmark stands for).

``knn = 5`` (PHATE's default) rather than CUTS' 100, because the points are landmarks that each
already summarise hundreds of pixels. ``n_clusters = 0`` chooses K by the largest eigengap
``λ_K − λ_{K+1}`` of ``P`` for K in 2..``max_clusters``.

An earlier variant clustered diffusion-map coordinates (eigenvectors scaled by ``λᵗ``); with 20
coordinates at ``t = 2`` it split compact blobs along their internal modes, so it was dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from angioseg.unsupervised.diffusion import alpha_decay_kernel, diffusion_operator, distances


@dataclass
class SpectralConfig:
    n_clusters: int = 10
    knn: int = 5
    decay: float = 40.0
    t: int = 2
    max_clusters: int = 20


def diffusion_potential(
    x: np.ndarray, mass: np.ndarray, knn: int = 5, decay: float = 40.0, t: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """``(U, eigenvalues)``: PHATE's potential ``−log(Pᵗ + 1e-7)`` (``n x n``) and ``P``'s eigenvalues (descending)."""
    kern = alpha_decay_kernel(distances(x), knn, decay)
    p = diffusion_operator(kern, mass).toarray()
    w = np.asarray(mass, float)
    sw = np.sqrt(w / (kern @ w))
    vals = np.sort(np.linalg.eigvalsh(kern * sw[:, None] * sw[None, :]))[::-1]
    return np.asarray(-np.log(np.linalg.matrix_power(p, t) + 1e-7)), vals


def eigengap_k(eigvals: np.ndarray, max_clusters: int = 20) -> int:
    """K with the largest gap ``λ_K − λ_{K+1}`` among K = 2..max_clusters (λ_1 = 1 is the largest)."""
    lam = np.sort(np.asarray(eigvals))[::-1]
    kmax = min(max_clusters, len(lam) - 1)
    if kmax < 2:
        return 1
    gaps = lam[1:kmax] - lam[2 : kmax + 1]  # gaps[j] = λ_{j+2} − λ_{j+3}, 1-based
    return int(np.argmax(gaps)) + 2


def spectral_kmeans(
    x: np.ndarray, mass: np.ndarray | None = None, cfg: SpectralConfig | None = None, seed: int = 0
) -> np.ndarray:
    """Cluster labels (``n`` ints in ``0..K-1``) of the points ``x`` (``n x d``) weighted by ``mass``."""
    from sklearn.cluster import KMeans

    cfg = cfg or SpectralConfig()
    n = len(x)
    w = np.ones(n) if mass is None else np.asarray(mass, float)
    if n <= max(cfg.n_clusters, 2):
        return np.arange(n)
    coords, vals = diffusion_potential(x, w, cfg.knn, cfg.decay, cfg.t)
    k = cfg.n_clusters if cfg.n_clusters > 0 else eigengap_k(vals, cfg.max_clusters)
    km = KMeans(k, n_init=10, random_state=seed).fit(coords, sample_weight=w)
    return np.asarray(km.labels_, np.int64)
