"""The centerline graph of a vessel mask, built with skan, and paths through it.

The mask is skeletonised (scikit-image) and turned into skan's pixel graph: one node per skeleton
pixel, edges to its 8-neighbours weighted by their distance (1 or sqrt 2). A path between two
clicked points is the shortest path through that graph (SciPy's Dijkstra on skan's CSR matrix);
without points, skan's branches (junction-to-junction or junction-to-tip paths) are the segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from angioseg.errors import AngiosegError


@dataclass
class Branch:
    """One skan branch: its index, pixel path (K x 2, row/col) and length in pixels."""

    index: int
    path: np.ndarray
    length: float


class CenterlineGraph:
    """Skeleton graph of a binary vessel mask (skan), with the distance transform of the mask."""

    def __init__(self, mask: np.ndarray, min_object_px: int = 20) -> None:
        from skan import Skeleton
        from skimage.morphology import remove_small_objects, skeletonize

        m = np.asarray(mask, bool)
        if m.ndim != 2:
            raise AngiosegError(f"QCA needs a 2D mask, got shape {m.shape}")
        m = remove_small_objects(m, max_size=min_object_px)
        if not m.any():
            raise AngiosegError("the vessel mask is empty: nothing to measure")
        self.mask = m
        self.edt = ndimage.distance_transform_edt(m)
        skel = skeletonize(m)
        if skel.sum() < 2:
            raise AngiosegError("the vessel mask has no centerline longer than one pixel")
        self.skeleton = Skeleton(skel)
        self.coords = np.asarray(self.skeleton.coordinates, float)  # node -> (row, col)
        self.degrees = np.asarray(self.skeleton.degrees)
        self._tree = cKDTree(self.coords)

    def nearest_node(self, xy: tuple[float, float], name: str = "point") -> int:
        """Skeleton node nearest to an ``(x, y)`` pixel position; an error if it is off the vessels."""
        x, y = xy
        h, w = self.mask.shape
        if not (0 <= x < w and 0 <= y < h):
            raise AngiosegError(f"{name} ({x:g}, {y:g}) is outside the {w} x {h} image")
        dist, node = self._tree.query([y, x])
        r = float(self.edt[tuple(self.coords[node].astype(int))])
        if dist > max(5.0, 2.0 * r):
            raise AngiosegError(
                f"{name} ({x:g}, {y:g}) is not on a segmented vessel: the nearest centerline is "
                f"{dist:.1f} px away; click inside the vessel"
            )
        return int(node)

    def path(self, start_xy: tuple[float, float], end_xy: tuple[float, float]) -> np.ndarray:
        """Shortest centerline path (K x 2 row/col pixel coordinates) between two ``(x, y)`` points."""
        a = self.nearest_node(start_xy, "proximal point")
        b = self.nearest_node(end_xy, "distal point")
        if a == b:
            raise AngiosegError("the proximal and distal points fall on the same centerline pixel")
        dist, pred = dijkstra(self.skeleton.graph, directed=False, indices=a, return_predecessors=True)
        if not np.isfinite(dist[b]):
            raise AngiosegError(
                "the proximal and distal points lie on vessels that are not connected in the mask"
            )
        nodes = [b]
        while nodes[-1] != a:
            nodes.append(int(pred[nodes[-1]]))
        return self.coords[nodes[::-1]]

    def is_tip(self, point: np.ndarray) -> bool:
        """True when the skeleton pixel at ``point`` (row, col) is a free end (degree 1)."""
        _, node = self._tree.query(point)
        return bool(self.degrees[node] <= 1)

    def branches(self, min_length: float = 0.0) -> list[Branch]:
        """skan's branches at least ``min_length`` pixels long, longest first."""
        lengths = self.skeleton.path_lengths()
        out = [
            Branch(i, np.asarray(self.skeleton.path_coordinates(i), float), float(lengths[i]))
            for i in range(self.skeleton.n_paths)
            if lengths[i] >= min_length
        ]
        return sorted(out, key=lambda b: -b.length)
