"""Label-free baselines for the unsupervised comparison, and the vesselness map they share with CUTS.

* :func:`frangi_otsu`: Frangi vesselness (Frangi et al., MICCAI 1998; ``skimage.filters.frangi``,
  dark ridges) thresholded by Otsu's method inside the region of interest;
* :func:`intensity_kmeans`: k-means on raw pixel intensities (K = 10, the CUTS cluster count), whose
  clusters then go through the same vessel-cluster selection as CUTS' own clusters.

Vesselness scales ``sigmas = (1, 2, 3, 4)`` px cover vessels about 2–10 px wide (coronary arteries in
256–512 px angiograms, retinal vessels in DRIVE); scikit-image's default ``range(1, 10, 2)``
favours structures wider than these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

DEFAULT_SIGMAS = (1.0, 2.0, 3.0, 4.0)


def fill_outside(image: np.ndarray, roi: np.ndarray | None) -> np.ndarray:
    """Copy of ``image`` whose pixels outside ``roi`` take the value of the nearest ROI pixel.

    Removes the strong edge at a field-of-view border, which filters and the encoder would
    otherwise mistake for structure.
    """
    if roi is None or roi.all() or not roi.any():
        return image
    _, idx = ndimage.distance_transform_edt(~roi, return_indices=True)
    return np.asarray(image[idx[0], idx[1]])


def vesselness(image: np.ndarray, sigmas: Sequence[float] = DEFAULT_SIGMAS) -> np.ndarray:
    """Frangi vesselness of dark tubes on a bright background (H x W float32, >= 0)."""
    from skimage.filters import frangi

    x = np.asarray(image, np.float64)
    span = float(x.max() - x.min()) or 1.0
    v = frangi((x - x.min()) / span, sigmas=list(sigmas), black_ridges=True)
    return np.nan_to_num(np.asarray(v, np.float32))


def frangi_otsu(
    image: np.ndarray,
    roi: np.ndarray | None = None,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    vess: np.ndarray | None = None,
) -> np.ndarray:
    """Binary vessel mask: Frangi vesselness above its Otsu threshold (computed inside ``roi``)."""
    from skimage.filters import threshold_otsu

    v = vesselness(image, sigmas) if vess is None else vess
    inside = np.ones(v.shape, bool) if roi is None else roi
    vals = v[inside]
    if vals.size == 0 or np.ptp(vals) == 0:
        return np.zeros(v.shape, bool)
    return np.asarray((v > threshold_otsu(vals)) & inside)


def intensity_kmeans(
    image: np.ndarray, roi: np.ndarray | None = None, k: int = 10, seed: int = 0, fit_size: int = 20000
) -> np.ndarray:
    """k-means labels (``0..k-1``, ``-1`` outside ``roi``) of raw intensities, sorted dark to bright.

    The centres are fitted on at most ``fit_size`` random ROI pixels; every pixel takes its nearest.
    """
    from sklearn.cluster import KMeans

    inside = np.ones(image.shape, bool) if roi is None else roi
    vals = image[inside].astype(np.float64)
    labels = np.full(image.shape, -1, np.int64)
    if vals.size == 0:
        return labels
    k = max(1, min(k, len(np.unique(vals))))
    rng = np.random.default_rng(seed)
    sub = vals[rng.choice(vals.size, min(fit_size, vals.size), replace=False)]
    centres = np.sort(KMeans(k, n_init=4, random_state=seed).fit(sub[:, None]).cluster_centers_[:, 0])
    labels[inside] = np.abs(vals[:, None] - centres[None, :]).argmin(1)
    return labels
