"""Per-volume metrics in 3D with voxel spacing: overlap, surface distances in mm, clDice.

* ``dice``, ``precision``, ``recall``, ``accuracy``: :mod:`angioseg.metrics.overlap` (voxel counts;
  'accuracy' is the voxel accuracy, which the background dominates; the seed's "accuracy" was the
  per-class recall, see ``seed_repositories_notes.md`` §2.7).
* ``hd``, ``hd95``, ``msd``: distances between the surface voxels of the two masks (voxels of the
  mask with a 6-neighbour outside it, the volume border counting as outside), in mm using
  ``spacing``. Pooled over both directions, as the 2D metrics of :mod:`angioseg.metrics.distance`:
  ``hd`` the maximum, ``hd95`` the 95th percentile, ``msd`` the mean (average symmetric surface
  distance). Both masks empty gives 0; exactly one empty gives the volume's diagonal in mm.
* ``cldice``: :func:`angioseg.metrics.topology.cldice` with the even-width-safe 3D skeleton of
  :func:`angioseg.cta.centerlines.skeletonize_3d`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from angioseg.cta.centerlines import skeletonize_3d
from angioseg.metrics.distance import surface_distances
from angioseg.metrics.overlap import _pair, confusion, dice
from angioseg.metrics.topology import cldice

VOLUME_METRICS = ("dice", "precision", "recall", "accuracy", "hd95", "msd", "hd", "cldice")


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """``N x 3`` indices of the voxels of ``mask`` with a face-neighbour outside it."""
    m = np.asarray(mask, bool)
    inner = ndi.binary_erosion(m, structure=ndi.generate_binary_structure(3, 1), border_value=0)
    return np.argwhere(m & ~inner)


def surface_metrics(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> dict[str, float]:
    """``hd``, ``hd95`` and ``msd`` in mm between the surfaces of two 3D masks (see module doc)."""
    p, g = _pair(pred, truth)
    if p.ndim != 3:
        raise ValueError(f"surface_metrics works on 3D masks, got shape {p.shape}")
    sp = np.asarray(spacing, float)
    a, b = surface_voxels(p) * sp, surface_voxels(g) * sp
    if len(a) == 0 and len(b) == 0:
        return {"hd": 0.0, "hd95": 0.0, "msd": 0.0}
    if len(a) == 0 or len(b) == 0:
        diag = float(np.linalg.norm(np.asarray(p.shape) * sp))
        return {"hd": diag, "hd95": diag, "msd": diag}
    d_ab, d_ba = surface_distances(a, b)
    both = np.concatenate([d_ab, d_ba])
    return {"hd": float(both.max()), "hd95": float(np.percentile(both, 95)), "msd": float(both.mean())}


def volume_metrics(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> dict[str, float]:
    """Every metric of :data:`VOLUME_METRICS` for two ``D x H x W`` binary masks; ``spacing`` = (sz, sy, sx) mm."""
    p, g = _pair(pred, truth)
    out = {"dice": dice(p, g), **confusion(p, g), **surface_metrics(p, g, spacing)}
    out["cldice"] = cldice(p, g, skeleton_fn=skeletonize_3d)
    return {k: float(out[k]) for k in VOLUME_METRICS}
