"""Where to crop training patches: centerline ROIs (DBSCAN + merge, or k-means) or a fixed grid.

The CoronarySegmentation algorithm, written from the formulas in
``shared/reference/seed_repositories_notes.md`` §2.3 (no code copied):

* **2D** (crops 128 x 128 of axial slices): for every slice holding centerline points, cluster the
  slice's ``(y, x)`` points with ``DBSCAN(eps=5, min_samples=1)``, take the cluster means, merge
  centroids closer than ``closeness = 50`` px transitively (each group replaced by its mean, cast to
  int), and crop around every centroid with zero padding at the borders.
* **3D** (patches 32 x 128 x 128): extend the centerline's slice range to a multiple of 32, cut it
  into slabs of 32 slices, cluster each slab's ``(z, y, x)`` points with DBSCAN(eps 5), merge the
  ``(y, x)`` centroids within ``closeness = 64`` and crop ``slab x 128 x 128`` around them.
* **k-means** (what the seed's README describes): the smallest ``k`` such that every point of the
  slice/slab lies inside the crop window of its k-means centroid.
* **grid** (the seed's baseline): non-overlapping tiles; training keeps tiles with a label voxel.

Fixed seed bugs: the 3D range is not extended by a full 32 slices when already a multiple of 32;
a slab holds its 32 slices (the seed's ``[start, start + 32]`` took 33); identical centroids are
merged too (the seed's ``0 < d`` kept exact duplicates, giving duplicate crops).

A :class:`Box` is a ``start`` / ``size`` pair in ``(z, y, x)`` voxels; 2D boxes have depth 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from angioseg.errors import AngiosegError

METHODS = ("dbscan", "kmeans", "grid")


@dataclass(frozen=True)
class Box:
    """A crop window: ``start`` (may be negative or run past the volume: padded) and ``size``, (z, y, x)."""

    start: tuple[int, int, int]
    size: tuple[int, int, int]

    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.size, strict=True))  # type: ignore[return-value]


def round_half_up(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves up (the seed's rounding of centerline nodes)."""
    return np.floor(np.asarray(x, float) + 0.5).astype(int)


# --- centroids ---------------------------------------------------------------------------------


def dbscan_centroids(points: np.ndarray, eps: float = 5.0, min_samples: int = 1) -> np.ndarray:
    """Cluster means of ``N x d`` points by DBSCAN (seed: eps 5, min_samples 1) -> ``K x d`` float."""
    from sklearn.cluster import DBSCAN

    pts = np.asarray(points, float)
    if len(pts) == 0:
        return np.zeros((0, pts.shape[1] if pts.ndim == 2 else 2))
    labels = DBSCAN(eps=eps, min_samples=min_samples).fit(pts).labels_
    return np.array([pts[labels == k].mean(0) for k in np.unique(labels) if k >= 0])


def merge_centroids(centroids: np.ndarray, closeness: float) -> np.ndarray:
    """Merge centroids within ``closeness`` of each other, transitively; each group -> its mean, as int.

    Groups are the connected components of the graph "distance <= closeness" (union-find in the
    seed), so a chain a-b-c merges even when a and c are farther apart. The cast to int truncates,
    as in the seed (coordinates are non-negative).
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import cdist

    c = np.asarray(centroids, float)
    if len(c) == 0:
        return np.zeros(c.shape, int)
    _, group = connected_components(cdist(c, c) <= closeness, directed=False)
    merged = np.array([c[group == g].mean(0) for g in range(group.max() + 1)])
    return np.trunc(merged).astype(int)


def kmeans_centroids(points: np.ndarray, window: float, seed: int = 0, max_k: int = 64) -> np.ndarray:
    """Smallest-k k-means whose crops of side ``window`` hold every point (Chebyshev distance <= window/2).

    Returns ``K x d`` int centroids. ``max_k`` bounds the search.
    """
    from sklearn.cluster import KMeans

    pts = np.asarray(points, float)
    if len(pts) == 0:
        return np.zeros((0, pts.shape[1] if pts.ndim == 2 else 2), int)
    uniq = np.unique(pts, axis=0)
    for k in range(1, min(max_k, len(uniq)) + 1):
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(uniq)
        centres = np.trunc(km.cluster_centers_).astype(int)
        if np.abs(uniq - centres[km.labels_]).max() <= window / 2:
            return centres
    return np.trunc(uniq[:max_k]).astype(int)


def _centroids_2d(
    yx: np.ndarray, method: str, eps: float, closeness: float, window: int, seed: int
) -> np.ndarray:
    if method == "kmeans":
        return kmeans_centroids(yx, window, seed)
    return merge_centroids(dbscan_centroids(yx, eps), closeness)


# --- boxes -------------------------------------------------------------------------------------


def centerline_boxes_2d(
    points: np.ndarray,
    crop: int = 128,
    method: str = "dbscan",
    eps: float = 5.0,
    closeness: float = 50.0,
    seed: int = 0,
) -> list[Box]:
    """2D crops (depth 1) around the centroids of each slice's centerline points (``N x 3`` z, y, x)."""
    _check_method(method, allow_grid=False)
    idx = round_half_up(points)
    boxes = []
    for z in np.unique(idx[:, 0]):
        for cy, cx in _centroids_2d(idx[idx[:, 0] == z, 1:], method, eps, closeness, crop, seed):
            boxes.append(Box((int(z), int(cy) - crop // 2, int(cx) - crop // 2), (1, crop, crop)))
    return boxes


def slab_range(first: int, last: int, depth: int, n_slices: int) -> tuple[int, int]:
    """Extend slices ``[first, last]`` to ``[start, stop)`` with ``stop - start`` a multiple of ``depth``.

    The extra slices go after ``last``, or the range moves back when it would pass the last slice
    (a volume shallower than the range gives ``start = 0`` and a padded end). The seed added a full
    ``depth`` when the length already was a multiple; we add 0.
    """
    n = -(-(last - first + 1) // depth)  # ceil
    start = first
    if start + n * depth > n_slices:
        start = max(0, n_slices - n * depth)
    return start, start + n * depth


def centerline_boxes_3d(
    points: np.ndarray,
    n_slices: int,
    crop: int = 128,
    depth: int = 32,
    method: str = "dbscan",
    eps: float = 5.0,
    closeness: float = 64.0,
    seed: int = 0,
) -> list[Box]:
    """3D patches ``depth x crop x crop`` over slabs of the centerline's slice range (see module doc)."""
    _check_method(method, allow_grid=False)
    idx = round_half_up(points)
    if len(idx) == 0:
        return []
    start, stop = slab_range(int(idx[:, 0].min()), int(idx[:, 0].max()), depth, n_slices)
    boxes = []
    for s in range(start, stop, depth):
        sel = idx[(idx[:, 0] >= s) & (idx[:, 0] < s + depth)]
        if len(sel) == 0:
            continue
        if method == "kmeans":
            cents = kmeans_centroids(sel[:, 1:], crop, seed)
        else:
            cents = merge_centroids(dbscan_centroids(sel, eps)[:, 1:], closeness)
        for cy, cx in cents:
            boxes.append(Box((s, int(cy) - crop // 2, int(cx) - crop // 2), (depth, crop, crop)))
    return boxes


def grid_boxes(shape: tuple[int, int, int], crop: int = 128, depth: int = 1) -> list[Box]:
    """Non-overlapping tiles ``depth x crop x crop`` from the origin; the last ones run past the edge (padded)."""
    zs = range(0, shape[0], depth)
    ys = range(0, shape[1], crop)
    xs = range(0, shape[2], crop)
    return [Box((z, y, x), (depth, crop, crop)) for z in zs for y in ys for x in xs]


def with_foreground(boxes: Iterable[Box], label: np.ndarray) -> list[Box]:
    """The boxes holding at least one label voxel (the seed's rule for grid training tiles)."""
    return [b for b in boxes if extract(label, b).any()]


def _check_method(method: str, allow_grid: bool = True) -> None:
    allowed = METHODS if allow_grid else METHODS[:2]
    if method not in allowed:
        raise AngiosegError(f"sampling method must be one of {allowed}, got {method!r}")


# --- cropping ----------------------------------------------------------------------------------


def extract(arr: np.ndarray, box: Box, pad_value: float = 0) -> np.ndarray:
    """``arr[box]`` of exactly ``box.size`` (on the last three axes), padding outside with ``pad_value``.

    ``arr`` is ``D x H x W`` or ``C x D x H x W``. The seed zero-pads (``utils/augmentation.py``).
    """
    spatial = arr.shape[-3:]
    out = np.full((*arr.shape[:-3], *box.size), pad_value, dtype=arr.dtype)
    src: list[slice] = []
    dst: list[slice] = []
    for s, n, dim in zip(box.start, box.size, spatial, strict=True):
        a, b = max(s, 0), min(s + n, dim)
        if a >= b:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - s, b - s))
    out[(Ellipsis, *dst)] = arr[(Ellipsis, *src)]  # type: ignore[index,arg-type]
    return out


def plan_boxes(
    label: np.ndarray | None,
    centerline_points: np.ndarray | None,
    method: str,
    dims: int,
    crop: int = 128,
    depth: int = 32,
    eps: float = 5.0,
    closeness: float | None = None,
    seed: int = 0,
) -> list[Box]:
    """Training boxes of one volume for a sampling ``method`` and ``dims`` (2 or 3).

    ``closeness`` defaults to the seed's 50 (2D) / 64 (3D). Grid boxes keep only tiles with a label
    voxel; centerline methods need ``centerline_points``.
    """
    _check_method(method)
    if dims not in (2, 3):
        raise AngiosegError(f"dims must be 2 or 3, got {dims}")
    if method == "grid":
        if label is None:
            raise AngiosegError("grid sampling for training needs a label volume")
        return with_foreground(grid_boxes(label.shape, crop, 1 if dims == 2 else depth), label)  # type: ignore[arg-type]
    if centerline_points is None or len(centerline_points) == 0:
        return []
    if dims == 2:
        return centerline_boxes_2d(centerline_points, crop, method, eps, closeness or 50.0, seed)
    n_slices = label.shape[0] if label is not None else int(round_half_up(centerline_points)[:, 0].max()) + 1
    return centerline_boxes_3d(centerline_points, n_slices, crop, depth, method, eps, closeness or 64.0, seed)
