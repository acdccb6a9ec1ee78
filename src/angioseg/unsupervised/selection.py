"""Which clusters are vessel? A label-free rule (the default) and the ground-truth oracle (evaluation only).

**Label-free rule** (:func:`select_vessel_clusters`, ours; CUTS has none): vessels in angiograms and in
the green channel of fundus photographs are *darker* than their surroundings and *tubular*. Inside
the region of interest, each cluster gets its mean intensity and its mean Frangi vesselness.
Clusters darker than the average ROI pixel are ranked by mean vesselness, and the vessel class is
the top-ranked prefix that maximises Otsu's between-class variance of the pixel vesselness
(``ω₁ω₀(μ₁ − μ₀)²``, selected vs the rest), i.e. an Otsu threshold on the size-weighted cluster
means. At most ``max_fraction`` of the ROI may be selected.

**Label spreading on the landmark graph** (:func:`spread_vessel_mask`, ours): the rule above, applied
to the fine landmark clusters, is a noisy seed (on synthetic angiograms about 60 % of what it
selects is background; on DRIVE it finds only a fifth of the vessels, because thin vessels have a
weak Frangi response). The CUTS embedding says which landmarks look alike, so the decision is spread along
it: the rule's clusters are *vessel* seeds, the clusters whose mean vesselness is at most the
``negative_percentile``-th percentile of the clusters' mean vesselness are *background* seeds, and
label spreading (Zhou et al., NeurIPS 2003, with the row-stochastic diffusion operator ``P`` of the
landmarks) solves ``F = αPF + (1 − α)Y`` for the two score columns; a cluster is vessel when its
vessel score exceeds its background score. Seeds may flip (that is how false-positive seeds are
dropped). ``negative_percentile = 60`` and ``α = 0.8`` were chosen on development data only (see
docs/results/unsupervised.md, "Label spreading").

**Oracles** read the ground truth, so they are only used in evaluation reports, always labelled,
never by ``fit`` or ``segment``:

* :func:`oracle_hint`: the CUTS authors' ``label_hint``, the one cluster that occurs most often
  under the true vessel mask. It bounds single-cluster choices only: a label-free rule that takes
  several clusters can beat it.
* :func:`oracle_best_set`: the union of clusters with the highest Dice, an exact upper bound on
  the Dice of *any* cluster choice from that label map (ours).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve


def cluster_table(
    labels: np.ndarray, image: np.ndarray, vess: np.ndarray, roi: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, sizes, mean_intensity, mean_vesselness)`` of the clusters inside ``roi`` (labels >= 0)."""
    inside = labels >= 0 if roi is None else roi & (labels >= 0)
    lab = labels[inside]
    ids, inv = np.unique(lab, return_inverse=True)
    sizes = np.bincount(inv, minlength=len(ids)).astype(np.float64)
    mi = np.bincount(inv, weights=image[inside].astype(np.float64), minlength=len(ids)) / sizes
    mv = np.bincount(inv, weights=vess[inside].astype(np.float64), minlength=len(ids)) / sizes
    return ids, sizes, mi, mv


def select_vessel_clusters(
    labels: np.ndarray,
    image: np.ndarray,
    vess: np.ndarray,
    roi: np.ndarray | None = None,
    max_fraction: float = 0.5,
) -> np.ndarray:
    """Ids of the clusters chosen as vessel by the label-free rule (see the module docstring)."""
    ids, sizes, mi, mv = cluster_table(labels, image, vess, roi)
    if len(ids) == 0:
        return ids
    total = sizes.sum()
    mean_intensity = float((mi * sizes).sum() / total)
    mean_v = float((mv * sizes).sum() / total)
    eligible = np.flatnonzero(mi < mean_intensity)
    if eligible.size == 0:
        eligible = np.arange(len(ids))
    order = eligible[np.argsort(-mv[eligible], kind="stable")]
    best_k, best_score = 1, -1.0
    n1 = s1 = 0.0
    for k, c in enumerate(order, start=1):
        n1 += sizes[c]
        s1 += sizes[c] * mv[c]
        if k > 1 and n1 > max_fraction * total:
            break
        n0 = total - n1
        if n0 <= 0:
            break
        mu1, mu0 = s1 / n1, (mean_v * total - s1) / n0
        score = (n1 / total) * (n0 / total) * (mu1 - mu0) ** 2
        if score > best_score:
            best_k, best_score = k, score
    return np.sort(ids[order[:best_k]])


def mask_of(labels: np.ndarray, selected: np.ndarray, roi: np.ndarray | None = None) -> np.ndarray:
    m = np.isin(labels, selected) & (labels >= 0)
    return m if roi is None else m & roi


def label_free_mask(
    labels: np.ndarray,
    image: np.ndarray,
    vess: np.ndarray,
    roi: np.ndarray | None = None,
    max_fraction: float = 0.5,
) -> np.ndarray:
    """Binary vessel mask from a label map by the label-free rule."""
    return mask_of(labels, select_vessel_clusters(labels, image, vess, roi, max_fraction), roi)


def label_spreading(operator: sparse.spmatrix, seeds: np.ndarray, alpha: float = 0.8) -> np.ndarray:
    """``F`` (``n x c``) solving ``F = α P F + (1 − α) Y``: label spreading of the seed matrix ``Y``.

    ``operator`` is a row-stochastic ``n x n`` matrix ``P`` and ``seeds`` is ``Y`` (``n x c``, a 1 in
    column ``j`` for a seed of class ``j``). With ``0 <= α < 1``, ``I − αP`` is invertible and
    ``F = (1 − α)(I − αP)⁻¹Y`` is the limit of the iteration ``F ← αPF + (1 − α)Y``.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    n = operator.shape[0]
    a = (sparse.identity(n, format="csc") - alpha * sparse.csc_matrix(operator)).tocsc()
    out = spsolve(a, (1.0 - alpha) * np.asarray(seeds, np.float64))
    return np.asarray(out, np.float64).reshape(n, -1)


def spread_vessel_mask(
    labels: np.ndarray,
    operator: sparse.spmatrix,
    image: np.ndarray,
    vess: np.ndarray,
    roi: np.ndarray | None = None,
    negative_percentile: float = 60.0,
    alpha: float = 0.8,
    max_fraction: float = 0.5,
) -> np.ndarray:
    """Vessel mask by label spreading over the landmark graph (see the module docstring).

    ``labels`` is the landmark map (landmark ``i`` of ``operator`` has label ``i``; -1 outside the
    ROI) and ``operator`` the landmarks' row-stochastic diffusion operator.
    """
    ids, _, _, mv = cluster_table(labels, image, vess, roi)
    n = operator.shape[0]
    if len(ids) == 0:
        return np.zeros(labels.shape, bool)
    if ids[-1] >= n:
        raise ValueError(f"labels go up to {ids[-1]} but the operator has only {n} landmarks")
    positive = select_vessel_clusters(labels, image, vess, roi, max_fraction)
    seeds = np.zeros((n, 2))
    seeds[ids[mv <= np.percentile(mv, negative_percentile)], 1] = 1.0
    seeds[positive, 1] = 0.0
    seeds[positive, 0] = 1.0
    f = label_spreading(operator, seeds, alpha)
    return mask_of(labels, ids[f[ids, 0] > f[ids, 1]], roi)


def oracle_hint(labels: np.ndarray, truth: np.ndarray, roi: np.ndarray | None = None) -> np.ndarray:
    """ORACLE (reads the ground truth; evaluation only): mask of the cluster most frequent under ``truth``."""
    inside = truth.astype(bool) & (labels >= 0)
    if roi is not None:
        inside &= roi
    if not inside.any():
        return np.zeros(labels.shape, bool)
    ids, counts = np.unique(labels[inside], return_counts=True)
    return mask_of(labels, ids[np.argmax(counts)][None], roi)


def oracle_best_set(labels: np.ndarray, truth: np.ndarray, roi: np.ndarray | None = None) -> np.ndarray:
    """ORACLE (reads the ground truth; evaluation only): the union of clusters with the highest Dice.

    With ``t_i`` true pixels among the ``n_i`` pixels of cluster ``i`` and ``G`` true pixels, a union
    ``S`` has Dice ``2·Σ t_i / (Σ n_i + G)``. If ``D*`` is the best Dice, ``S`` is optimal exactly when
    it maximises ``Σ_S (2 t_i − D* n_i)``, i.e. holds every cluster with ``t_i / n_i > D*/2``: the
    optimum is a prefix of the clusters sorted by ``t_i / n_i`` (descending), found by scanning all
    prefixes. Truth outside ``roi`` (or under label -1) counts in ``G`` but can never be covered.
    """
    inside = labels >= 0 if roi is None else roi & (labels >= 0)
    t = truth.astype(bool) if roi is None else truth.astype(bool) & roi
    g = float(t.sum())
    if g == 0:
        return np.zeros(labels.shape, bool)
    ids, inv = np.unique(labels[inside], return_inverse=True)
    n = np.bincount(inv, minlength=len(ids)).astype(np.float64)
    tp = np.bincount(inv, weights=t[inside].astype(np.float64), minlength=len(ids))
    order = np.argsort(-tp / n, kind="stable")
    dice = 2 * np.cumsum(tp[order]) / (np.cumsum(n[order]) + g)
    k = int(np.argmax(dice)) + 1
    return mask_of(labels, ids[order[:k]], roi)
