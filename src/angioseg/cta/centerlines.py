"""Coronary centerlines: read from files, extracted from a label, or from a coarse prediction.

A :class:`Centerline` is a list of points in voxel coordinates ``(z, y, x)`` (array order) with a
branch id per point. Files (``centerlines/<case>.npy|.csv|.txt``) hold ``N x 3`` points, optionally
with a 4th column giving the branch id, in one of three spaces:

* ``world``: physical ``(x, y, z)`` in mm in the image's ITK/LPS frame (what SimpleITK reports);
* ``world-ras``: physical ``(x, y, z)`` in RAS (3D Slicer), i.e. x and y negated;
* ``voxel``: continuous ITK index ``(i, j, k)`` = ``(x, y, z)`` voxel coordinates;
* ``auto`` (default): whichever of the three puts the most points inside the volume.

Without a branch column, branches are split where consecutive points jump by more than
``jump`` times the median step (the orCaScore tree in ``shared/data/ct_centerline`` is stored as
concatenated polylines; its steps are 0.25 mm and branch jumps 14-98 mm).

Skeletons: scikit-image's 3D ``skeletonize`` (Lee 1994) returns nothing for tubes of even width
(a 4 x 4 cross-section gives 0 voxels; scikit-image#3757). :func:`skeletonize_3d` upsamples the
mask 2x (every run becomes even), removes one voxel layer on one side of every axis (every run
becomes odd), skeletonises and maps the result back; it finds the axis of every tube tested
(see ``tests/test_cta_centerlines.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from angioseg.cta.postprocess import remove_small
from angioseg.cta.volume_io import Volume
from angioseg.errors import DataError
from angioseg.utils import atomic_open

SPACES = ("auto", "world", "world-ras", "voxel")
CENTERLINE_EXTS = (".npy", ".csv", ".txt")


@dataclass
class Centerline:
    """``points``: N x 3 float voxel coordinates ``(z, y, x)``; ``branch``: N int branch ids."""

    points: np.ndarray
    branch: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, float).reshape(-1, 3)
        if len(self.branch) != len(self.points):
            self.branch = np.zeros(len(self.points), int)
        self.branch = np.asarray(self.branch, int)

    def __len__(self) -> int:
        return len(self.points)

    def branches(self) -> list[np.ndarray]:
        """The points of each branch, in file order (``M_b x 3`` arrays)."""
        return [self.points[self.branch == b] for b in np.unique(self.branch)]


def split_branches(points: np.ndarray, jump: float = 10.0) -> np.ndarray:
    """Branch ids for concatenated polylines: a new branch starts after a step > ``jump`` x median step."""
    pts = np.asarray(points, float)
    if len(pts) < 2:
        return np.zeros(len(pts), int)
    steps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    med = float(np.median(steps[steps > 0])) if (steps > 0).any() else 1.0
    return np.concatenate([[0], np.cumsum(steps > jump * med)]).astype(int)


def load_npy(path: Path) -> np.ndarray:
    """``np.load`` without pickles; ``encoding="latin1"`` reads arrays saved by Python 2 (the orCaScore file)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*created on Python 2.*")
        return np.asarray(np.load(path, allow_pickle=False, encoding="latin1"))


def _load_table(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            arr = load_npy(path)
        else:
            text = path.read_text(encoding="utf-8").splitlines()
            rows = [
                ln.replace(",", " ").split() for ln in text if ln.strip() and not ln.lstrip().startswith("#")
            ]
            if rows and not _is_number(rows[0][0]):  # header line
                rows = rows[1:]
            arr = np.array(rows, float)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read centerline points ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] not in (3, 4) or len(arr) == 0:
        raise DataError(path, f"expected N x 3 points (or N x 4 with a branch id), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(path, "centerline holds NaN or infinite values")
    return arr


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _to_voxels(xyz: np.ndarray, space: str, vol: Volume) -> np.ndarray:
    if space == "voxel":
        return np.asarray(xyz[:, ::-1], float)
    if space == "world-ras":
        xyz = xyz * np.array([-1.0, -1.0, 1.0])
    return vol.world_to_index(xyz)


def _inside(zyx: np.ndarray, shape: tuple[int, ...]) -> float:
    ok = np.all((zyx >= -0.5) & (zyx <= np.asarray(shape) - 0.5), axis=1)
    return float(ok.mean())


def read_centerline(path: str | Path, vol: Volume, space: str = "auto", jump: float = 10.0) -> Centerline:
    """Read centerline points for ``vol`` and convert them to voxel ``(z, y, x)`` coordinates.

    Raises:
        DataError: unreadable file, wrong shape, or (``auto``) no space puts >= 90 % of the points
            inside the volume.
    """
    p = Path(path)
    if space not in SPACES:
        raise DataError(p, f"unknown centerline space {space!r}; expected one of {SPACES}")
    arr = _load_table(p)
    xyz = arr[:, :3]
    branch = arr[:, 3].astype(int) if arr.shape[1] == 4 else split_branches(xyz, jump)
    if space == "auto":
        scores = {s: _inside(_to_voxels(xyz, s, vol), vol.shape) for s in SPACES[1:]}
        space = max(scores, key=lambda s: scores[s])
        if scores[space] < 0.9:
            raise DataError(
                p,
                "centerline points do not fall inside the volume in any space "
                f"(fraction inside: {', '.join(f'{k} {v:.2f}' for k, v in scores.items())}); "
                "check that it belongs to this image",
            )
    return Centerline(_to_voxels(xyz, space, vol), branch)


def write_centerline(path: str | Path, cl: Centerline, vol: Volume, space: str = "world") -> None:
    """Write ``x,y,z,branch`` rows (world mm or voxel index) as CSV, or an N x 4 ``.npy``; atomically."""
    if space not in ("world", "voxel"):
        raise ValueError(f"space must be 'world' or 'voxel', got {space!r}")
    xyz = vol.index_to_world(cl.points) if space == "world" else cl.points[:, ::-1]
    table = np.column_stack([xyz, cl.branch])
    p = Path(path)
    if p.suffix.lower() == ".npy":
        with atomic_open(p, "wb") as fh:
            np.save(fh, table)
        return
    with atomic_open(p) as fh:
        fh.write(f"# {space} coordinates{' (mm, ITK/LPS)' if space == 'world' else ' (ITK index i,j,k)'}\n")
        fh.write("x,y,z,branch\n")
        for x, y, z, b in table:
            fh.write(f"{x:.4f},{y:.4f},{z:.4f},{int(b)}\n")


def find_centerline_file(folder: Path, stem: str) -> Path | None:
    for ext in CENTERLINE_EXTS:
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return None


# --- skeletons ---------------------------------------------------------------------------------


def skeletonize_3d(mask: np.ndarray) -> np.ndarray:
    """Curve skeleton of a 3D binary mask that also works for even-width tubes (see module doc).

    Input and output: ``D x H x W`` bool. scikit-image's skeleton is kept where it exists (it is
    one voxel thin); the parts of the mask it misses (farther than 1.5 voxels from it) are filled
    in from the skeleton computed at twice the resolution, which never misses a tube but maps back
    to clumps up to 2 voxels thick.
    """
    from skimage.morphology import skeletonize

    m = np.asarray(mask, bool)
    if not m.any():
        return np.zeros_like(m)
    plain = np.asarray(skeletonize(m), bool)
    robust = _skeleton_upsampled(m)
    if not plain.any():
        return robust
    return plain | (robust & (ndi.distance_transform_edt(~plain) > 1.5))


def _skeleton_upsampled(m: np.ndarray) -> np.ndarray:
    """Skeleton at 2x resolution with every run made odd-length, mapped back (bounding box only)."""
    from skimage.morphology import skeletonize

    out = np.zeros_like(m)
    box = ndi.find_objects(m.astype(np.uint8))[0]
    sub = np.pad(m[box], 1)
    up = sub.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    odd = up.copy()
    for ax in range(3):  # one-sided erosion: every run length 2w becomes 2w - 1 (odd)
        odd[(slice(None),) * ax + (slice(1, None),)] &= up[(slice(None),) * ax + (slice(None, -1),)]
        odd[(slice(None),) * ax + (slice(0, 1),)] = False
    idx = np.argwhere(skeletonize(odd)) // 2 - 1
    idx = idx[np.all((idx >= 0) & (idx < np.array(m[box].shape)), axis=1)]
    offset = np.array([s.start for s in box])
    out[tuple((idx + offset).T)] = True
    return out & m


def trace_polylines(voxels: np.ndarray) -> Centerline:
    """Order skeleton voxels (``N x 3`` ints) into polylines of 26-adjacent points.

    Each 26-connected component is walked depth-first from one of its end points; wherever the walk
    jumps back to an earlier fork, a new branch starts. So consecutive points of a branch are always
    neighbours, and :func:`rasterise` may join them (raster-ordered voxels joined in file order would
    draw lines across the volume).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, depth_first_order
    from scipy.spatial import cKDTree

    pts = np.asarray(voxels, float).reshape(-1, 3)
    if len(pts) == 0:
        return Centerline(pts)
    pairs = cKDTree(pts).query_pairs(np.sqrt(3) + 1e-6, output_type="ndarray")
    n = len(pts)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()
    graph = graph + graph.T
    _, comp = connected_components(graph, directed=False)
    degree = np.asarray(graph.sum(1)).ravel()
    order: list[np.ndarray] = []
    for c in range(comp.max() + 1):
        members = np.flatnonzero(comp == c)
        ends = members[degree[members] <= 1]
        start = int(ends[0]) if len(ends) else int(members[0])
        order.append(depth_first_order(graph, start, directed=False, return_predecessors=False))
    seq = np.concatenate(order)
    p = pts[seq]
    jump = np.linalg.norm(np.diff(p, axis=0), axis=1) > np.sqrt(3) + 1e-6
    return Centerline(p, np.concatenate([[0], np.cumsum(jump)]))


def skeleton_centerline(mask: np.ndarray) -> Centerline:
    """Centerline of a binary label (or thresholded prediction): its skeleton traced into polylines."""
    return trace_polylines(np.argwhere(skeletonize_3d(mask)))


def centerline_from_prediction(prob: np.ndarray, threshold: float = 0.5, min_size: int = 20) -> Centerline:
    """Centerline of a coarse probability map (``D x H x W``): threshold, drop islands, skeletonise.

    This is how inference gets its centerline without ground truth (the seed used the GT one).
    """
    return skeleton_centerline(remove_small(np.asarray(prob) >= threshold, min_size))


def rasterise(cl: Centerline, shape: tuple[int, int, int], dense: bool = True) -> np.ndarray:
    """``D x H x W`` bool map of the centerline voxels.

    With ``dense`` the consecutive points of each branch are joined by straight segments sampled
    every half voxel (so sparse file points give a connected curve); without it, only the rounded
    points are marked (the seed's sparse dots).
    """
    out = np.zeros(shape, bool)
    chunks = []
    for pts in cl.branches() if dense else [cl.points]:
        if dense and len(pts) > 1:
            seg = np.diff(pts, axis=0)
            n = np.maximum(1, np.ceil(2 * np.abs(seg).max(1)).astype(int))
            t = [np.arange(k) / k for k in n]
            chunks.append(
                np.concatenate([p + ti[:, None] * s for p, s, ti in zip(pts[:-1], seg, t, strict=True)])
            )
        chunks.append(pts)
    if not chunks:
        return out
    idx = np.floor(np.concatenate(chunks) + 0.5).astype(int)  # round half up, as the seed
    idx = idx[np.all((idx >= 0) & (idx < np.array(shape)), axis=1)]
    out[tuple(idx.T)] = True
    return out
