"""CT-like coronary phantoms (``angioseg cta synth``): HU volume, exact lumen label, centerline.

What is drawn, in HU (typical CCTA values, e.g. Hounsfield-unit tables in Lell et al.,
Radiology 2015; the phantom is a test object, not a simulation of a scanner):

* mediastinal soft tissue 30-50, epicardial fat -100 to -60 around the heart and vessels, lungs
  about -850 far from the heart;
* a heart: an ellipsoid fitted to the tree (principal axes of its points) with myocardium
  100-140 and contrast-filled chambers, kept 1.5-3.5 mm away from every lumen (a fat layer);
* an aorta (radius 12-15 mm) rising from the ostia, as bright as the chambers;
* coronary lumens of tapering radius (see :mod:`angioseg.cta.trees`), 300-500 HU at the ostium,
  fading by up to 20 % distally, with a linear partial-volume edge one voxel wide;
* 0-6 calcium spots (600-1200 HU, radius 0.6-1.4 mm) touching the lumen wall, outside the label;
* a Gaussian partial-volume blur (sigma 0.4 mm) and correlated Gaussian noise (sigma 15-40 HU).

The label is the lumen (voxel centre within the radius of the nearest centerline point).
Volumes are sized to the tree plus a margin at a chosen isotropic spacing, so they stay small for
CPU tests (about 50 x 40 x 50 voxels at 2.5 mm) and get realistic at 0.5-0.8 mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from angioseg.cta.centerlines import Centerline, write_centerline
from angioseg.cta.trees import Tree, TreeConfig, load_real_centerline, random_tree, real_tree, resample
from angioseg.cta.volume_io import FORMAT_EXT, Volume, write_volume


@dataclass
class PhantomConfig:
    """Geometry and appearance of a phantom.

    Attributes:
        spacing: isotropic voxel size in mm.
        margin: mm added around the tree's bounding box (all axes).
        fov: in-plane field of view in mm (None: the tree's box plus margin), to add background as
            in a real 512 x 512 CT slice.
        shape: ``(D, H, W)`` for random trees (ignored with a real centerline).
        noise: range of the noise standard deviation in HU.
        blur: partial-volume Gaussian sigma in mm.
        calcium: maximum number of calcium spots.
        min_radius: smallest lumen radius in voxels (0.9 keeps the label of a thin vessel connected
            on a coarse grid: every voxel centre within 0.87 voxel of the axis is inside).
        tree: radii and jitter of the coronary tree.
    """

    spacing: float = 0.8
    margin: float = 10.0
    fov: float | None = None
    shape: tuple[int, int, int] = (48, 64, 64)
    noise: tuple[float, float] = (15.0, 40.0)
    blur: float = 0.4
    calcium: int = 6
    min_radius: float = 0.9
    tree: TreeConfig = field(default_factory=TreeConfig)


def _grid_for(points: np.ndarray, cfg: PhantomConfig) -> tuple[tuple[int, int, int], np.ndarray]:
    """Volume shape (D, H, W) and origin (x, y, z) holding ``points`` plus the margin."""
    lo, hi = points.min(0) - cfg.margin, points.max(0) + cfg.margin
    extent = hi - lo
    if cfg.fov is not None:
        centre = (lo + hi) / 2
        extent[:2] = np.maximum(extent[:2], cfg.fov)
        lo[:2] = centre[:2] - extent[:2] / 2
    size = np.ceil(extent / cfg.spacing).astype(int) + 1
    return (int(size[2]), int(size[1]), int(size[0])), lo


def _lumen(
    tree: Tree, shape: tuple[int, int, int], origin: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel: signed depth inside the lumen in mm (> 0 inside; -inf far away) and the arc
    fraction (0 proximal .. 1 distal) of the nearest centerline point.

    Points are resampled every spacing/3 and each voxel centre is tested against the spheres of its
    8 nearest points; only voxels within the largest radius + 1 voxel of the tree are tested.
    """
    pts, rad, frac = [], [], []
    for b in tree.branches:
        p = resample(b.points, spacing / 3)
        s = np.linspace(0, 1, len(p))
        pts.append(p)
        rad.append(np.interp(s, np.linspace(0, 1, len(b.radius)), b.radius))
        frac.append(s)
    P, R, F = np.concatenate(pts), np.concatenate(rad), np.concatenate(frac)
    depth = np.full(shape, -np.inf)
    near_frac = np.zeros(shape)
    seeds = np.zeros(shape, bool)
    ijk = np.floor((P - origin) / spacing + 0.5).astype(int)[:, ::-1]
    ok = np.all((ijk >= 0) & (ijk < np.array(shape)), axis=1)
    if not ok.any():
        return depth, near_frac
    seeds[tuple(ijk[ok].T)] = True
    band = ndi.distance_transform_edt(~seeds, sampling=spacing) <= R.max() + 1.5 * spacing
    vox = np.argwhere(band)
    world = vox[:, ::-1] * spacing + origin
    k = min(8, len(P))
    d, j = cKDTree(P).query(world, k=k)
    d, j = d.reshape(len(vox), k), j.reshape(len(vox), k)
    score = R[j] - d
    best = score.argmax(1)
    rows = np.arange(len(vox))
    depth[tuple(vox.T)] = score[rows, best]
    near_frac[tuple(vox.T)] = F[j[rows, best]]
    return depth, near_frac


def render(
    tree: Tree, shape: tuple[int, int, int], origin: np.ndarray, cfg: PhantomConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(hu, label)``: int16 and uint8 ``D x H x W`` volumes of ``tree`` on the grid ``(shape, origin)``."""
    s = cfg.spacing
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    world = np.stack([xx, yy, zz], -1).reshape(-1, 3) * s + origin
    depth, frac = _lumen(tree, shape, origin, s)
    label = depth >= 0
    lumen_frac = np.clip(depth / s + 0.5, 0.0, 1.0)
    dist_vessel = ndi.distance_transform_edt(~label, sampling=s) if label.any() else np.full(shape, 1e3)

    # Heart: ellipsoid on the principal axes of the tree points, kept off the vessels by a fat layer.
    pts = tree.all_points()
    centre = pts.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((pts - centre).T))
    rel = (world - centre) @ evecs / np.sqrt(np.maximum(evals, 1e-6))
    maha = np.linalg.norm(rel, axis=1).reshape(shape)
    k = np.median(np.linalg.norm((pts - centre) @ evecs / np.sqrt(np.maximum(evals, 1e-6)), axis=1))
    heart = (maha <= k) & (dist_vessel > rng.uniform(1.5, 3.5))
    inner = ndi.distance_transform_edt(heart, sampling=s)
    septum_normal = rng.normal(size=3)
    septum_normal /= np.linalg.norm(septum_normal)
    septum = np.abs(((world - centre) @ septum_normal).reshape(shape)) < rng.uniform(3, 5)
    chamber = heart & (inner > rng.uniform(6, 10)) & ~septum

    blood = rng.uniform(300, 500)
    hu = np.full(shape, rng.uniform(30, 50), np.float32)
    dist_heart = ndi.distance_transform_edt(~heart, sampling=s) if heart.any() else np.full(shape, 1e3)
    hu[np.minimum(dist_heart, dist_vessel) < rng.uniform(6, 10)] = rng.uniform(-100, -60)
    lung_field = ndi.gaussian_filter(rng.normal(size=shape).astype(np.float32), 8 / s)
    hu[(dist_heart > 15) & (dist_vessel > 8) & (lung_field > 0)] = -850
    hu[heart] = rng.uniform(100, 140)
    hu[chamber] = blood * rng.uniform(0.9, 1.1)

    # Aorta: a vertical cylinder touching each ostium on the side away from the heart centre.
    r_ao = rng.uniform(12, 15)
    for ost in tree.ostia[:1]:
        away = (ost - centre) * np.array([1, 1, 0])
        away /= max(float(np.linalg.norm(away)), 1e-6)
        axis = ost + away * (r_ao + 1.0)
        aorta = (np.hypot(world[:, 0] - axis[0], world[:, 1] - axis[1]) < r_ao) & (
            world[:, 2] > ost[2] - r_ao
        )
        aorta = aorta.reshape(shape) & (dist_vessel > 1.0)
        hu[aorta] = blood

    lumen_hu = blood * (1.0 - rng.uniform(0.0, 0.2) * frac)
    hu = (hu * (1 - lumen_frac) + lumen_hu * lumen_frac).astype(np.float32)

    # Calcium: small bright spheres centred just outside the lumen wall.
    all_pts, all_r = tree.all_points(), tree.all_radii()
    for _ in range(int(rng.integers(0, cfg.calcium + 1))):
        i = int(rng.integers(len(all_pts)))
        rc = rng.uniform(0.6, 1.4)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        c = all_pts[i] + direction * (all_r[i] + rc * 0.6)
        spot = (np.linalg.norm(world - c, axis=1) < rc).reshape(shape) & ~label
        hu[spot] = rng.uniform(600, 1200)

    hu = ndi.gaussian_filter(hu, cfg.blur / s)
    noise = ndi.gaussian_filter(rng.normal(size=shape).astype(np.float32), 0.5)
    noise *= rng.uniform(*cfg.noise) / max(float(noise.std()), 1e-6)
    hu = np.clip(hu + noise, -1024, 3071)
    return np.rint(hu).astype(np.int16), label.astype(np.uint8)


def make_phantom(
    rng: np.random.Generator, cfg: PhantomConfig, paths: list[np.ndarray] | None = None
) -> tuple[Volume, np.ndarray, Centerline]:
    """One phantom: ``(hu Volume, label D x H x W uint8, centerline in voxel coordinates)``.

    With ``paths`` (the real centerline's paths) the tree follows them (jittered); otherwise a random
    tree on an ellipsoid filling the middle of a ``cfg.shape`` volume.
    """
    if paths is not None:
        tree = real_tree(paths, rng, cfg.tree)
        shape, origin = _grid_for(tree.all_points(), cfg)
    else:
        shape = cfg.shape
        origin = np.zeros(3)
        extent = np.array(shape[::-1], float) * cfg.spacing
        centre = extent / 2 + rng.uniform(-0.05, 0.05, 3) * extent
        radii = extent * rng.uniform(0.25, 0.32, 3)
        tree = random_tree(rng, centre, radii, cfg.tree)
    for b in tree.branches:
        b.radius = np.maximum(b.radius, cfg.min_radius * cfg.spacing)
    hu, label = render(tree, shape, origin, cfg, rng)
    vol = Volume(hu, (cfg.spacing,) * 3, tuple(float(o) for o in origin), np.eye(3))  # type: ignore[arg-type]
    pts = np.concatenate([resample(b.points, cfg.spacing) for b in tree.branches])
    branch = np.concatenate(
        [np.full(len(resample(b.points, cfg.spacing)), i) for i, b in enumerate(tree.branches)]
    )
    cl = Centerline(vol.world_to_index(pts), branch)
    inside = np.all((cl.points >= -0.5) & (cl.points <= np.array(shape) - 0.5), axis=1)
    return vol, label, Centerline(cl.points[inside], cl.branch[inside])


def write_phantoms(
    out: str | Path,
    n: int,
    cfg: PhantomConfig,
    seed: int = 0,
    centerline: str | Path | None = None,
    fmt: str = "nrrd",
    start: int = 0,
) -> list[str]:
    """Write ``images/``, ``labels/`` and ``centerlines/`` (world-mm CSV) for phantoms ``start .. start+n-1``.

    Phantom ``i`` depends only on ``(seed, i)``; existing complete cases are kept (resumable).
    """
    out = Path(out)
    paths = load_real_centerline(centerline) if centerline else None
    names = []
    for i in range(start, start + n):
        name = f"phantom_{i:03d}"
        names.append(name)
        img_p = out / "images" / f"{name}{FORMAT_EXT[fmt]}"
        lab_p = out / "labels" / f"{name}{FORMAT_EXT[fmt]}"
        cl_p = out / "centerlines" / f"{name}.csv"
        if img_p.exists() and lab_p.exists() and cl_p.exists():
            continue
        vol, label, cl = make_phantom(np.random.default_rng([seed, i]), cfg, paths)
        write_volume(lab_p, label, vol)
        write_centerline(cl_p, cl, vol)
        write_volume(img_p, vol.array, vol)  # last: its presence marks a complete case
    return names
