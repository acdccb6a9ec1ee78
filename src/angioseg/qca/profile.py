"""Diameter profile along a centerline path, at a fixed arc-length step.

The pixel path from the skeleton is smoothed (Gaussian, ``sigma`` px, on each coordinate) and
resampled every ``step`` px of arc length; the tangent at each sample gives its normal. Two
diameter estimators:

* ``rays`` (default): the mask, lightly smoothed (Gaussian sigma 0.5 px) and bilinearly
  interpolated, is sampled along the normal every 0.05 px; each wall is where it first falls below
  0.5, interpolated linearly between samples; the diameter is the distance between the two walls.
  This is the QCA convention (width perpendicular to the vessel axis).
* ``edt``: 2 x EDT - 1 at the centerline point (the estimator of :mod:`angioseg.metrics.vessel`:
  a run of w pixels has EDT (w + 1)/2 at its middle). It reads the distance to the *nearest* wall,
  so it needs no normal but mixes in the wall of a neighbouring structure.

The raw diameters are averaged over a moving window of ``window`` px (the open QCA tools use a
7-point average). Samples within one vessel diameter of a free skeleton end are marked invalid
(the rounded end of a mask is not a narrowing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from angioseg.errors import AngiosegError

METHODS = ("rays", "edt")
WALL_SIGMA = 0.5  # px, smoothing of the binary mask before its walls are located


@dataclass
class Profile:
    """Samples along a path; lengths in pixels. ``points`` and ``normals`` are K x 2 (row, col)."""

    arc: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    raw: np.ndarray  # diameter per sample, before the moving average
    diameter: np.ndarray  # after the moving average
    valid: np.ndarray  # bool: usable for MLD and reference (not at a free end)
    method: str


def resample_path(path: np.ndarray, step: float = 0.5, sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """(points K x 2, arc K) of a smoothed pixel path resampled every ``step`` px of arc length."""
    p = np.asarray(path, float)
    if len(p) < 3:
        raise AngiosegError(f"the centerline path is too short to measure ({len(p)} pixels)")
    if sigma > 0:
        p = ndimage.gaussian_filter1d(p, sigma, axis=0, mode="nearest")
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, s[-1] + 1e-9, step)
    pts = np.stack([np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])], axis=1)
    return pts, t


def normals_of(points: np.ndarray) -> np.ndarray:
    """Unit normals (row, col) of a resampled path: the tangent rotated by 90 degrees."""
    tang = np.gradient(points, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True) + 1e-12
    return np.stack([-tang[:, 1], tang[:, 0]], axis=1)


def ray_diameters(
    mask: np.ndarray, points: np.ndarray, normals: np.ndarray, max_half: float, dt: float = 0.05
) -> np.ndarray:
    """Wall-to-wall width of ``mask`` along each normal (pixels); 0 where the point is outside."""
    field = ndimage.gaussian_filter(np.asarray(mask, np.float32), WALL_SIGMA)
    t = np.arange(0.0, max_half + dt, dt)
    widths = np.zeros(len(points))
    rows = np.arange(len(points))
    for sign in (1.0, -1.0):
        coords = points[:, :, None] + sign * normals[:, :, None] * t[None, None, :]  # K x 2 x M
        vals = ndimage.map_coordinates(field, [coords[:, 0], coords[:, 1]], order=1, mode="constant")
        below = vals < 0.5
        j = below.argmax(axis=1)  # first sample outside the wall (0 when the point itself is outside)
        v0 = vals[rows, np.maximum(j - 1, 0)]
        v1 = vals[rows, j]
        frac = np.where(v0 > v1, (v0 - 0.5) / np.where(v0 > v1, v0 - v1, 1.0), 0.0)
        half = np.where(j > 0, t[np.maximum(j - 1, 0)] + frac * dt, 0.0)
        # A ray that never leaves the mask (along a crossing vessel) is capped at max_half.
        widths += np.where(below.any(axis=1), half, max_half)
    inside = ndimage.map_coordinates(field, [points[:, 0], points[:, 1]], order=1) >= 0.5
    return np.where(inside, widths, 0.0)


def edt_diameters(edt: np.ndarray, points: np.ndarray) -> np.ndarray:
    """2 x EDT - 1 at each point (bilinear), clipped at 0 (pixels)."""
    d = ndimage.map_coordinates(edt, [points[:, 0], points[:, 1]], order=1)
    return np.clip(2.0 * d - 1.0, 0.0, None)


def diameter_profile(
    mask: np.ndarray,
    edt: np.ndarray,
    path: np.ndarray,
    method: str = "rays",
    step: float = 0.5,
    window: float = 4.0,
    tips: tuple[bool, bool] = (False, False),
) -> Profile:
    """Diameter profile of ``mask`` along the pixel ``path`` (see the module docstring).

    ``tips`` says whether the path starts / ends at a free end of the skeleton.
    """
    if method not in METHODS:
        raise AngiosegError(f"diameter method must be one of {METHODS}, got {method!r}")
    pts, arc = resample_path(path, step)
    nrm = normals_of(pts)
    if method == "rays":
        max_half = float(3.0 * edt.max() + 3.0)
        raw = ray_diameters(mask, pts, nrm, max_half)
    else:
        raw = edt_diameters(edt, pts)
    k = max(1, round(window / step))
    smooth = ndimage.uniform_filter1d(raw, k, mode="nearest") if k > 1 else raw.copy()
    valid = raw > 0
    typical = float(np.median(raw[valid])) if valid.any() else 0.0
    if tips[0]:
        valid &= arc >= typical
    if tips[1]:
        valid &= arc <= arc[-1] - typical
    if valid.sum() < 5:
        raise AngiosegError(
            f"the analysed segment is too short: {arc[-1]:.1f} px for a vessel about {typical:.1f} px wide"
        )
    return Profile(arc, pts, nrm, raw, smooth, valid, method)
