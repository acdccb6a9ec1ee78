"""Contour distances: modified Hausdorff (Dubuisson & Jain 1994), Hausdorff and HD95 (2D)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from angioseg.metrics.overlap import _pair


def contour_points(mask: np.ndarray) -> np.ndarray:
    """All iso-0.5 contour points of ``mask`` from ``skimage.measure.find_contours`` (N x 2, row/col).

    The mask is zero-padded by one pixel so that objects touching the border have closed contours
    (the padding is removed from the coordinates).
    """
    from skimage.measure import find_contours

    m = np.pad(np.asarray(mask, bool), 1).astype(float)
    contours = find_contours(m, 0.5)
    if not contours:
        return np.zeros((0, 2))
    return np.concatenate(contours, axis=0) - 1.0


def surface_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each point of ``a`` to its nearest point of ``b`` and the reverse."""
    d_ab, _ = cKDTree(b).query(a)
    d_ba, _ = cKDTree(a).query(b)
    return np.asarray(d_ab), np.asarray(d_ba)


def contour_distances(
    pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float] | None = None
) -> dict[str, float]:
    """``mhd``, ``hd`` and ``hd95`` between the contours of two 2D masks, in pixels (or mm with ``spacing``).

    * mhd = max(mean_a min_b d, mean_b min_a d);
    * hd = the largest, hd95 = the 95th percentile, of the pooled distances of both directions.

    Both masks empty gives 0; exactly one empty gives the image diagonal for all three.
    """
    p, g = _pair(pred, truth)
    if p.ndim != 2:
        raise ValueError(f"contour_distances works on 2D masks, got shape {p.shape}")
    sy, sx = spacing if spacing is not None else (1.0, 1.0)
    a, b = contour_points(p), contour_points(g)
    if len(a) == 0 and len(b) == 0:
        return {"mhd": 0.0, "hd": 0.0, "hd95": 0.0}
    if len(a) == 0 or len(b) == 0:
        diag = float(np.hypot(p.shape[0] * sy, p.shape[1] * sx))
        return {"mhd": diag, "hd": diag, "hd95": diag}
    scale = np.array([sy, sx])
    d_ab, d_ba = surface_distances(a * scale, b * scale)
    both = np.concatenate([d_ab, d_ba])
    return {
        "mhd": float(max(d_ab.mean(), d_ba.mean())),
        "hd": float(both.max()),
        "hd95": float(np.percentile(both, 95)),
    }


def modified_hausdorff(
    pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float] | None = None
) -> float:
    return contour_distances(pred, truth, spacing)["mhd"]
