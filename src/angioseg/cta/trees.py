"""Coronary trees for the phantoms: the real orCaScore centerline (jittered) or random trees.

A tree is a list of :class:`Branch` objects, each a polyline of physical points ``(x, y, z)`` in
mm with a lumen radius per point, plus the ostia (where the aorta is drawn).

Real tree: ``shared/data/ct_centerline`` holds 18 root-to-leaf paths of one orCaScore case, all
starting at two ostia 2 mm apart (branch starts coincide with points of earlier paths), steps of
0.25 mm, 31-193 mm long. Each path gets a linear taper from a proximal radius to a distal one over
its own length; where paths overlap, the union of the lumens keeps the wider (longer) path, so a
side branch is narrower than its parent from the bifurcation on.

Radii (defaults of :class:`TreeConfig`): proximal 1.5-2.2 mm and distal 0.5-0.8 mm, i.e. lumen
diameters 3-4.4 mm down to 1-1.6 mm, the usual range of coronary diameters in CCTA (left main
about 4.5 mm, distal segments about 1.5 mm; Dodge et al., Circulation 1992).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from angioseg.cta.centerlines import load_npy, split_branches
from angioseg.errors import DataError


@dataclass
class Branch:
    """``points``: M x 3 physical (x, y, z) mm; ``radius``: M lumen radii in mm."""

    points: np.ndarray
    radius: np.ndarray


@dataclass
class Tree:
    branches: list[Branch]
    ostia: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def all_points(self) -> np.ndarray:
        return np.concatenate([b.points for b in self.branches]) if self.branches else np.zeros((0, 3))

    def all_radii(self) -> np.ndarray:
        return np.concatenate([b.radius for b in self.branches]) if self.branches else np.zeros(0)


@dataclass
class TreeConfig:
    """Radii (mm) and jitter of the real tree (rotation in degrees about each axis, isotropic scale)."""

    r_proximal: tuple[float, float] = (1.5, 2.2)
    r_distal: tuple[float, float] = (0.5, 0.8)
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)


def _arclength(p: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])


def _taper(points: np.ndarray, r0: float, r1: float) -> np.ndarray:
    s = _arclength(points)
    return r0 + (r1 - r0) * s / max(float(s[-1]), 1e-6)


def resample(points: np.ndarray, step: float) -> np.ndarray:
    """Polyline resampled at arc-length ``step`` (keeps both ends)."""
    s = _arclength(points)
    if s[-1] == 0:
        return points[:1].copy()
    t = np.append(np.arange(0.0, s[-1], step), s[-1])
    return np.column_stack([np.interp(t, s, points[:, k]) for k in range(3)])


def load_real_centerline(path: str | Path) -> list[np.ndarray]:
    """The paths of the orCaScore centerline file (``N x 3`` world mm, concatenated polylines)."""
    p = Path(path)
    try:
        pts = load_npy(p)
    except (OSError, ValueError) as exc:
        raise DataError(p, f"cannot read centerline ({exc})") from None
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DataError(p, f"expected N x 3 centerline points, got shape {pts.shape}")
    b = split_branches(pts)
    return [pts[b == k] for k in range(int(b.max()) + 1)]


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    ax, ay, az = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rx @ ry @ rz


def real_tree(paths: list[np.ndarray], rng: np.random.Generator, cfg: TreeConfig) -> Tree:
    """The real paths, rotated and scaled about their centroid, with tapering radii per path."""
    centre = np.concatenate(paths).mean(0)
    rot = _rotation(rng, cfg.rotate_deg) * rng.uniform(*cfg.scale)
    r0 = rng.uniform(*cfg.r_proximal)
    branches = []
    for p in paths:
        q = (p - centre) @ rot.T + centre
        branches.append(Branch(q, _taper(q, r0 * rng.uniform(0.9, 1.0), rng.uniform(*cfg.r_distal))))
    ostia = np.array([b.points[0] for b in branches])
    return Tree(branches, np.unique(ostia.round(0), axis=0))


# --- random trees on an ellipsoidal "heart" ----------------------------------------------------


def _project(p: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    u = (p - centre) / radii
    return centre + u / max(float(np.linalg.norm(u)), 1e-9) * radii


def _walk(
    rng: np.random.Generator,
    start: np.ndarray,
    direction: np.ndarray,
    length: float,
    centre: np.ndarray,
    radii: np.ndarray,
    step: float = 0.5,
    bend: float = 0.08,
) -> np.ndarray:
    pts = [start]
    d = direction / np.linalg.norm(direction)
    for _ in range(int(length / step)):
        normal = (pts[-1] - centre) / radii**2
        normal /= np.linalg.norm(normal)
        d = d + bend * rng.normal(size=3)
        d -= normal * (d @ normal)  # stay tangent to the surface
        d /= max(float(np.linalg.norm(d)), 1e-9)
        pts.append(_project(pts[-1] + step * d, centre, radii))
    return np.array(pts)


def random_tree(
    rng: np.random.Generator, centre: np.ndarray, radii: np.ndarray, cfg: TreeConfig, n_roots: int = 2
) -> Tree:
    """Random branching trees on the surface of an ellipsoid (``centre``, semi-axes ``radii``, mm).

    Each root starts on the upper half (the heart's base, where the aorta is), runs 0.8-1.4x the
    largest semi-axis, and spawns 1-3 children (each up to one more generation) with 0.7x the radius
    at the branch point.
    """
    branches: list[Branch] = []
    ostia = []
    for _ in range(n_roots):
        theta = rng.uniform(0, 2 * np.pi)
        start = _project(centre + np.array([np.cos(theta), np.sin(theta), 0.8]) * radii, centre, radii)
        ostia.append(start)
        down = np.array([0.0, 0.0, -1.0]) + 0.4 * rng.normal(size=3)
        queue = [
            (start, down, float(rng.uniform(0.8, 1.4) * radii.max()), float(rng.uniform(*cfg.r_proximal)), 0)
        ]
        while queue:
            p0, d0, length, r0, gen = queue.pop()
            pts = _walk(rng, p0, d0, length, centre, radii)
            r1 = rng.uniform(*cfg.r_distal)
            rad = np.maximum(_taper(pts, r0, r1), r1)
            branches.append(Branch(pts, rad))
            if gen < 2:
                for _ in range(int(rng.integers(1, 4))):
                    i = int(rng.integers(len(pts) // 5, max(len(pts) * 4 // 5, len(pts) // 5 + 1)))
                    side = np.cross(pts[min(i + 1, len(pts) - 1)] - pts[i], pts[i] - centre)
                    child_r = max(0.7 * float(rad[i]), cfg.r_distal[1])
                    queue.append((pts[i], side * rng.choice([-1, 1]), 0.5 * length, child_r, gen + 1))
    return Tree(branches, np.array(ostia))
