"""Label-free baselines for the unsupervised comparison, and the vesselness map they share with CUTS.

* :func:`frangi_otsu`: Frangi vesselness (Frangi et al., MICCAI 1998; ``skimage.filters.frangi``,
  dark ridges), winsorised at its 99th percentile inside the region of interest
  (:func:`winsorise`), thresholded by Otsu's method inside that region;
* :func:`intensity_kmeans`: k-means on raw pixel intensities (K = 10, the CUTS cluster count), whose
  clusters then go through the same vessel-cluster selection as CUTS' own clusters.

Vesselness scales ``sigmas = (1, 2, 3, 4)`` px cover vessels about 2–10 px wide (coronary arteries in
256–512 px angiograms, retinal vessels in DRIVE); scikit-image's default ``range(1, 10, 2)``
favours structures wider than these.

Why winsorise: Frangi's response spans orders of magnitude, and on raw values Otsu's threshold is
set by the few extreme responses (catheter, strongest vessel segments): on a real angiogram it kept
0.3 % of the pixels. Capping the vesselness at its ROI 99th percentile (``WINSOR_PERCENTILE``) before
Otsu removes that leverage and still keeps every pixel above the cap. The cap was chosen on synthetic
angiograms only (``bench/baseline_rule_synthetic.py``, 32 images: Dice 0.41 -> 0.45; with a
catheter in every image 0.35 -> 0.46; caps at 99.5 and 99.9 lay in between), never on real data.
The same winsorised vesselness feeds the label-free cluster rule (:mod:`.selection`) for CUTS and
the intensity k-means baseline alike; for intensity k-means it was neutral on the same synthetic
images (Dice 0.301 -> 0.298, 0.301 -> 0.302 with catheters), whose clusters never collapsed to one
tiny dark cluster as on real data, so that failure is not shown to be fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

DEFAULT_SIGMAS = (1.0, 2.0, 3.0, 4.0)
WINSOR_PERCENTILE = 99.0


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


def winsorise(
    v: np.ndarray, roi: np.ndarray | None = None, percentile: float = WINSOR_PERCENTILE
) -> np.ndarray:
    """``v`` (H x W) capped at its ``percentile``-th percentile inside ``roi`` (whole image if None)."""
    vals = v if roi is None else v[roi]
    if vals.size == 0:
        return v
    return np.minimum(v, np.float32(np.percentile(vals, percentile)))


def frangi_otsu(
    image: np.ndarray,
    roi: np.ndarray | None = None,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    vess: np.ndarray | None = None,
) -> np.ndarray:
    """Binary vessel mask (H x W bool): winsorised Frangi vesselness above its Otsu threshold.

    Percentile and threshold are computed inside ``roi``; ``vess`` is a precomputed raw vesselness.
    """
    from skimage.filters import threshold_otsu

    inside = np.ones(image.shape, bool) if roi is None else roi
    v = winsorise(vesselness(image, sigmas) if vess is None else vess, inside)
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
