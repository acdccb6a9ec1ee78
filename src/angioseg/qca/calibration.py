"""Millimetres per pixel for QCA, and where they come from (recorded with every result, TID 3205).

The chain, first that applies:

1. ``--spacing MM`` given by the user (``manual``);
2. ``--catheter 6F`` with two points on the contrast-filled guiding catheter (``catheter``): its
   known outer diameter (1 French = 1/3 mm: 5F = 1.67 mm, 6F = 2.0 mm, 7F = 2.33 mm) divided by
   its width measured on the image. An explicit catheter calibration is the user's choice and
   overrides the file's spacing, which is still reported beside it;
3. DICOM ``PixelSpacing`` (patient plane);
4. DICOM ``ImagerPixelSpacing`` divided by the magnification
   (``EstimatedRadiographicMagnificationFactor``, else SID/SOD) — see
   :func:`angioseg.data.io.dicom_spacing`;
5. pixels (``pixels``): every length is in px and labelled so. Detector spacing without a known
   magnification is *not* used: it would overstate every diameter by the magnification (10-40 %).

The catheter's width is measured densitometrically: across the catheter, at up to 25 places between
the two points (the outer 10 % at each end left out), the intensity profile is fitted by an
absorbing cylinder on a sloping background, ``(b0 + b1 x) exp(-k 2 sqrt(r^2 - (x - c)^2))``,
blurred by a Gaussian of fitted width (SciPy least squares); the median 2r over the profiles is the
width. A half-maximum width would read 0.87 of the diameter of a cylinder, and a fit of the
log-intensity reads it narrow because the imaging blur acts on intensities.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from angioseg.data.io import IMAGER_UNCORRECTED, Frame
from angioseg.errors import AngiosegError

FRENCH_MM = 1.0 / 3.0


@dataclass(frozen=True)
class Calibration:
    """``mm_per_px`` (None: results in pixels), the method and its details."""

    mm_per_px: float | None
    method: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        return "px" if self.mm_per_px is None else "mm"

    def to_mm(self, px: float) -> float:
        return px if self.mm_per_px is None else px * self.mm_per_px

    def to_dict(self) -> dict[str, Any]:
        return {"mm_per_px": self.mm_per_px, "method": self.method, "unit": self.unit, **self.detail}


def catheter_mm(size: str) -> float:
    """Outer diameter in mm of a catheter size such as ``6F``, ``5f`` or ``6``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[fF]?\s*", str(size))
    if not m or not 3 <= float(m.group(1)) <= 10:
        raise AngiosegError(f"catheter size must be a French size from 3F to 10F such as 6F, got {size!r}")
    return float(m.group(1)) * FRENCH_MM


def _cylinder(x: np.ndarray, q: np.ndarray, dx: float) -> np.ndarray:
    """Intensity across a cylinder: (b0 + b1 x) exp(-k * chord(x; c, r)), blurred by a Gaussian."""
    c, r, k, b0, b1, sigma = q
    chord = 2.0 * np.sqrt(np.clip(r * r - (x - c) ** 2, 0.0, None))
    return ndimage.gaussian_filter1d(
        (b0 + b1 * x) * np.exp(-k * chord), max(sigma / dx, 1e-3), mode="nearest"
    )


def catheter_width_px(
    image: np.ndarray, start_xy: tuple[float, float], end_xy: tuple[float, float]
) -> tuple[float, int]:
    """(median fitted outer width in px, number of profiles) of a catheter between two (x, y) points."""
    img = np.asarray(image, np.float64)
    p0 = np.array([start_xy[1], start_xy[0]], float)
    p1 = np.array([end_xy[1], end_xy[0]], float)
    length = float(np.linalg.norm(p1 - p0))
    if length < 5:
        raise AngiosegError("the two catheter points must be at least 5 px apart along the catheter")
    h, w = img.shape
    for name, p in (("first", p0), ("second", p1)):
        if not (0 <= p[0] < h and 0 <= p[1] < w):
            raise AngiosegError(f"the {name} catheter point ({p[1]:g}, {p[0]:g}) is outside the image")
    tang = (p1 - p0) / length
    nrm = np.array([-tang[1], tang[0]])
    half, dx = 25.0, 0.5
    x = np.arange(-half, half + dx, dx)
    widths = []
    for s in np.linspace(0.1 * length, 0.9 * length, int(min(25, max(3, 0.8 * length)))):
        c = p0 + s * tang
        pts = c[:, None] + nrm[:, None] * x[None, :]
        prof = ndimage.map_coordinates(img, pts, order=1, mode="nearest")
        b0 = float(np.median(np.concatenate([prof[:20], prof[-20:]])))
        if b0 <= 0:
            continue
        k0 = max(-np.log(max(float(prof.min()), 1e-3) / b0), 0.05) / 6.0
        c0 = float(x[np.argmin(prof)])
        try:
            fit = optimize.least_squares(
                lambda q, prof=prof: _cylinder(x, q, dx) - prof,
                [c0, 3.0, k0, b0, 0.0, 0.8],
                bounds=([-half, 0.3, 0.0, 0.0, -np.inf, 0.1], [half, half, np.inf, np.inf, np.inf, 4.0]),
            )
        except ValueError:
            continue
        if fit.success:
            widths.append(2.0 * float(fit.x[1]))
    if len(widths) < 3:
        raise AngiosegError("could not measure the catheter between the two points: is it visible there?")
    return float(np.median(widths)), len(widths)


def calibrate(
    frame: Frame | None = None,
    spacing: float | None = None,
    catheter: str | None = None,
    catheter_points: tuple[tuple[float, float], tuple[float, float]] | None = None,
    image: np.ndarray | None = None,
) -> Calibration:
    """The calibration of the module docstring's chain for one frame."""
    detail: dict[str, Any] = {}
    file_mm: float | None = None
    if frame is not None and frame.spacing is not None and frame.spacing_source != IMAGER_UNCORRECTED:
        sy, sx = frame.spacing
        file_mm = float(np.sqrt(sy * sx))
        detail["file_spacing_mm"] = [sy, sx]
        detail["file_spacing_source"] = frame.spacing_source
        if frame.magnification_source:
            detail["magnification_source"] = frame.magnification_source
        if abs(sy - sx) > 0.01 * max(sy, sx):
            detail["note"] = "non-square pixels: the geometric mean spacing is used"
    elif frame is not None and frame.spacing_source == IMAGER_UNCORRECTED:
        detail["ignored"] = "ImagerPixelSpacing without a known magnification (detector plane, not patient)"
    if spacing is not None:
        if not spacing > 0:
            raise AngiosegError(f"--spacing must be a positive number of mm per pixel, got {spacing}")
        return Calibration(float(spacing), "manual", detail)
    if catheter is not None:
        if catheter_points is None or image is None:
            raise AngiosegError("--catheter needs two points on the catheter (--catheter-points X0,Y0,X1,Y1)")
        outer = catheter_mm(catheter)
        width, n = catheter_width_px(image, *catheter_points)
        detail.update(catheter=catheter, catheter_mm=round(outer, 4), catheter_px=round(width, 3), profiles=n)
        return Calibration(outer / width, "catheter", detail)
    if file_mm is not None:
        return Calibration(file_mm, str(detail["file_spacing_source"]), detail)
    return Calibration(None, "pixels", detail)
