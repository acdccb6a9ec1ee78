"""Diffusion-geometry building blocks shared by condensation and spectral clustering (NumPy/SciPy).

Notation: ``X`` is ``n x d`` points, ``w`` their masses (how many pixels a point stands for; 1 each
when every point is a pixel). Kernels follow PHATE/graphtools (Moon et al., Nat. Biotechnol. 2019),
which CUTS uses through CATCH and PHATE; they are written here from the formulas because
graphtools and phate are GPL and CATCH is non-commercial:

* α-decaying kNN kernel ``K(x, y) = exp(−(‖x − y‖ / σ_k(x))^α)``, ``σ_k(x)`` the distance from
  ``x`` to its k-th nearest other point, symmetrised ``(K + Kᵀ) / 2``; entries below ``1e-4`` are
  dropped (graphtools' ``thresh``); ``α = 40`` is graphtools' default ``decay``;
* fixed-bandwidth kernel ``K_ε(x, y) = exp(−(‖x − y‖ / ε)^α)`` (the kernel of the condensation loop);
* mass-weighted diffusion operator ``P = D⁻¹ K W`` with ``W = diag(w)``, ``D = diag(K w)``: a point
  of mass ``w`` acts as ``w`` coincident unit points, which is what makes landmarks a faithful
  stand-in for the pixels they summarise;
* the diffusion time ``t`` at the knee of the von Neumann entropy ``H(t) = −Σ p_i log p_i``,
  ``p = |λ|^t / Σ|λ|^t`` over the eigenvalues of ``P`` (PHATE's rule; CATCH uses it each round).

``P`` is similar to the symmetric ``S = D^{-1/2} W^{1/2} K W^{1/2} D^{-1/2}``, so its eigenvalues
are real and come from ``eigh`` of ``S``, one connected component of the kernel graph at a time.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

KERNEL_THRESHOLD = 1e-4


def distances(x: np.ndarray) -> np.ndarray:
    """Dense ``n x n`` Euclidean distance matrix."""
    return cdist(x, x)


def _decay(ratio: np.ndarray, alpha: float) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore"):
        k = np.exp(-np.power(ratio, alpha))
    k[k < KERNEL_THRESHOLD] = 0.0
    return k


def alpha_decay_kernel(dist: np.ndarray, knn: int, alpha: float = 40.0) -> np.ndarray:
    """Symmetric α-decaying kNN kernel from a distance matrix (``n x n`` -> ``n x n``)."""
    n = dist.shape[0]
    k = min(max(knn, 1), n - 1)
    sigma = np.partition(dist, k, axis=1)[:, k] if n > 1 else np.ones(1)
    sigma = np.maximum(sigma, 1e-12)
    kern = _decay(dist / sigma[:, None], alpha)
    return (kern + kern.T) / 2


def fixed_kernel(dist: np.ndarray, eps: float, alpha: float = 40.0) -> np.ndarray:
    """Fixed-bandwidth kernel ``exp(−(d/ε)^α)`` (symmetric)."""
    return _decay(dist / max(eps, 1e-12), alpha)


def diffusion_operator(kernel: np.ndarray, mass: np.ndarray | None = None) -> sparse.csr_matrix:
    """Row-stochastic ``P = D⁻¹ K W`` as a sparse matrix."""
    k = sparse.csr_matrix(kernel)
    if mass is not None:
        k = k @ sparse.diags(np.asarray(mass, float))
    d = np.asarray(k.sum(1)).ravel()
    return sparse.diags(1.0 / np.maximum(d, 1e-300)) @ k  # type: ignore[no-any-return]


def eigenvalues(kernel: np.ndarray, mass: np.ndarray | None = None) -> np.ndarray:
    """All eigenvalues of ``P = D⁻¹ K W`` (real), computed per connected component of the kernel graph."""
    n = kernel.shape[0]
    w = np.ones(n) if mass is None else np.asarray(mass, float)
    ncomp, comp = connected_components(sparse.csr_matrix(kernel), directed=False)
    sizes = np.bincount(comp, minlength=ncomp)
    vals = [np.ones(int((sizes == 1).sum()))]
    for c in np.flatnonzero(sizes > 1):
        idx = np.flatnonzero(comp == c)
        k = kernel[np.ix_(idx, idx)]
        sw = np.sqrt(w[idx])
        d = k @ w[idx]
        s = k * (sw / np.sqrt(d))[:, None] * (sw / np.sqrt(d))[None, :]
        vals.append(np.linalg.eigvalsh(s))
    return np.concatenate(vals)


def von_neumann_entropy(eigvals: np.ndarray, t_max: int = 50) -> np.ndarray:
    """``H(t)`` for ``t = 0 .. t_max − 1`` from the operator's eigenvalues."""
    lam = np.abs(eigvals)
    lam = lam[lam > 1e-12]
    out = np.empty(t_max)
    for t in range(t_max):
        p = lam**t
        p = p / p.sum()
        p = p[p > 0]
        out[t] = float(-(p * np.log(p)).sum())
    return out


def knee(y: np.ndarray) -> int:
    """Index where two least-squares line segments fit ``y`` (against its index) best.

    Each candidate ``i`` in ``1 .. n − 2`` splits the curve into ``y[:i + 1]`` and ``y[i:]``; the
    knee minimises the summed squared residuals of the two fits. Curves with fewer than 3 points,
    or flat curves, return 0.
    """
    y = np.asarray(y, float)
    n = len(y)
    if n < 3 or np.ptp(y) < 1e-12:
        return 0
    x = np.arange(n, dtype=float)

    def sse(xs: np.ndarray, ys: np.ndarray) -> float:
        if len(xs) < 2:
            return 0.0
        a = np.vstack([xs, np.ones_like(xs)]).T
        res = ys - a @ np.linalg.lstsq(a, ys, rcond=None)[0]
        return float(res @ res)

    errs = [sse(x[: i + 1], y[: i + 1]) + sse(x[i:], y[i:]) for i in range(1, n - 1)]
    return int(np.argmin(errs)) + 1


def vne_time(kernel: np.ndarray, mass: np.ndarray | None = None, t_max: int = 50) -> int:
    """Diffusion time at the knee of the von Neumann entropy (at least 1)."""
    return max(1, knee(von_neumann_entropy(eigenvalues(kernel, mass), t_max)))


def diffuse(x: np.ndarray, operator: sparse.csr_matrix, t: int) -> np.ndarray:
    """``Pᵗ X`` by ``t`` sparse products (``n x d`` -> ``n x d``)."""
    for _ in range(t):
        x = operator @ x
    return np.asarray(x)
