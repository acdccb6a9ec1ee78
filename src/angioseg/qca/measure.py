"""MLD, reference diameter, %DS, %AS and lesion length from a diameter profile.

Definitions (DICOM PS3.17 annex T.4 and TID 3213/3214, quantitative arterial analysis):

* **Reference, interpolated** (default): a straight reference line ``ref(s) = a + b s`` fitted by
  least squares through the *healthy* samples of the profile, read at the MLD position. Healthy
  means outside the lesion (the contiguous run around the MLD where the diameter is more than
  ``HEALTHY_MARGIN`` = 5 % below the line) and within ``OUTLIER`` = 20 % of the line (which drops
  side branches, overlapping vessels and other narrowings). It starts from a Theil-Sen line
  (robust to up to ~29 % outliers) and is refitted ``ITERATIONS`` times. On a tapering artery the
  line follows the taper, which the mean of the ends cannot.
* **Reference, mean of ends** (``mean-ends``): the mean of the median diameters of the proximal
  and distal ``END_WINDOW`` = 10 % of the analysed length (a constant line); PS3.17's "mean local"
  reference reads the two markers the same way.
* **MLD**: the diameter at the sample where ``diameter / reference`` is smallest (on a vessel of
  constant reference simply the smallest diameter; with a taper, a healthy distal end is not
  taken for the lesion).
* **%DS** = (1 - MLD/RVD) x 100, **%AS** = (1 - (MLD/RVD)^2) x 100 (circular lumen).
* **Lesion length**: the contiguous extent around the MLD where the diameter is more than
  ``lesion_fraction`` (default 20 %, the usual angiographic threshold below which a narrowing is
  called a luminal irregularity) below the reference, its ends interpolated between samples.
  0 when the MLD itself is less than 20 % below the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from angioseg.errors import AngiosegError
from angioseg.qca.profile import Profile

REFERENCES = ("interpolated", "mean-ends")
HEALTHY_MARGIN = 0.05
OUTLIER = 0.20
ITERATIONS = 5
END_WINDOW = 0.10
LESION_FRACTION = 0.20


@dataclass
class Stenosis:
    """QCA numbers of one profile, in pixels (the caller scales them to mm)."""

    mld: float
    mld_index: int
    mld_arc: float
    rvd: float
    ds_percent: float
    as_percent: float
    lesion_start: float
    lesion_end: float
    lesion_length: float
    reference: np.ndarray  # reference diameter at every sample
    healthy: np.ndarray  # bool: samples the reference was fitted on
    reference_method: str
    lesion_fraction: float


def _run_around(below: np.ndarray, i: int) -> tuple[int, int]:
    """[lo, hi] indices of the contiguous True run of ``below`` containing ``i`` (empty: (i, i-1))."""
    if not below[i]:
        return i, i - 1
    lo = i
    while lo > 0 and below[lo - 1]:
        lo -= 1
    hi = i
    while hi < len(below) - 1 and below[hi + 1]:
        hi += 1
    return lo, hi


def _crossing(arc: np.ndarray, excess: np.ndarray, inside: int, outside: int) -> float:
    """Arc length where ``excess`` (negative inside the lesion) crosses 0 between two samples.

    Where the outside sample does not cross (it is invalid, e.g. at a free end, and still below the
    threshold), the lesion ends at the last valid sample: extrapolating there would run off the path.
    """
    if outside < 0 or outside >= len(arc) or not excess[outside] >= 0:
        return float(arc[inside])
    e0, e1 = excess[inside], excess[outside]
    f = e0 / (e0 - e1) if e0 != e1 else 0.0
    return float(arc[inside] + f * (arc[outside] - arc[inside]))


def _mean_ends(arc: np.ndarray, d: np.ndarray, valid: np.ndarray) -> np.ndarray:
    a = arc[valid]
    span = a[-1] - a[0]
    prox = d[valid & (arc <= a[0] + END_WINDOW * span)]
    dist = d[valid & (arc >= a[-1] - END_WINDOW * span)]
    return np.full(len(arc), 0.5 * (np.median(prox) + np.median(dist)))


def _interpolated(arc: np.ndarray, d: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    slope, intercept, _, _ = stats.theilslopes(d[valid], arc[valid])
    healthy = valid.copy()
    for _ in range(ITERATIONS):
        ref = intercept + slope * arc
        i = _min_ratio(d, ref, valid)
        lo, hi = _run_around(valid & (d < (1 - HEALTHY_MARGIN) * ref), i)
        healthy = valid & (np.abs(d - ref) <= OUTLIER * ref)
        healthy[lo : hi + 1] = False
        if healthy.sum() < 5:
            raise AngiosegError(
                "too little healthy vessel outside the lesion to fit a reference line; analyse a longer "
                "segment or use --reference mean-ends"
            )
        slope, intercept = np.polyfit(arc[healthy], d[healthy], 1)
    return intercept + slope * arc, healthy


def _min_ratio(d: np.ndarray, ref: np.ndarray, valid: np.ndarray) -> int:
    ratio = np.where(valid & (ref > 0), d / np.where(ref > 0, ref, 1.0), np.inf)
    return int(np.argmin(ratio))


def stenosis(
    profile: Profile, reference: str = "interpolated", lesion_fraction: float = LESION_FRACTION
) -> Stenosis:
    """MLD, RVD, %DS, %AS and lesion length of a profile (see the module docstring)."""
    if reference not in REFERENCES:
        raise AngiosegError(f"reference must be one of {REFERENCES}, got {reference!r}")
    if not 0 < lesion_fraction < 1:
        raise AngiosegError(f"lesion fraction must be in (0, 1), got {lesion_fraction}")
    arc, d, valid = profile.arc, profile.diameter, profile.valid
    if reference == "interpolated":
        ref, healthy = _interpolated(arc, d, valid)
    else:
        ref = _mean_ends(arc, d, valid)
        healthy = valid.copy()
    ref = np.clip(ref, 1e-6, None)
    i = _min_ratio(d, ref, valid)
    mld, rvd = float(d[i]), float(ref[i])
    excess = d - (1 - lesion_fraction) * ref  # < 0 inside the lesion
    lo, hi = _run_around(valid & (excess < 0), i)
    if hi >= lo:
        start = _crossing(arc, excess, lo, lo - 1)
        end = _crossing(arc, excess, hi, hi + 1)
    else:
        start = end = float(arc[i])
    ratio = min(mld / rvd, 1.0) if rvd > 0 else 1.0
    return Stenosis(
        mld=mld,
        mld_index=i,
        mld_arc=float(arc[i]),
        rvd=rvd,
        ds_percent=100.0 * (1 - ratio),
        as_percent=100.0 * (1 - ratio**2),
        lesion_start=start,
        lesion_end=end,
        lesion_length=end - start,
        reference=ref,
        healthy=healthy,
        reference_method=reference,
        lesion_fraction=lesion_fraction,
    )
