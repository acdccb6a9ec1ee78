"""CT intensity preprocessing: HU clipping, then one of three normalisations.

* ``global`` (default, the seed's 'standard'): ``(HU - (-440.90224)) / sqrt(269087.00438)``, the
  ASOCA training-set mean and variance hard-coded in CoronarySegmentation (``utils/loaders.py``).
* ``minmax`` (the seed's 'min_max'): ``(HU + 1024) / 4550``.
* ``volume``: per-volume z-score (mean and std of the clipped volume).

Clipping to ``[-1024, 3071]`` (the 12-bit CT range) is our default; the seed did not clip. A
narrower window (e.g. ``[-200, 1000]``) can be set with ``hu_min`` / ``hu_max``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from angioseg.errors import AngiosegError

SEED_MEAN = -440.90224
SEED_STD = math.sqrt(269087.00438)
NORMALISATIONS = ("global", "minmax", "volume")


@dataclass
class IntensityConfig:
    """HU window and normalisation (stored in every CT model's metadata)."""

    hu_min: float | None = -1024.0
    hu_max: float | None = 3071.0
    normalise: str = "global"
    mean: float = SEED_MEAN
    std: float = SEED_STD

    def __post_init__(self) -> None:
        if self.normalise not in NORMALISATIONS:
            raise AngiosegError(f"--normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")
        if self.hu_min is not None and self.hu_max is not None and self.hu_min >= self.hu_max:
            raise AngiosegError(f"HU window [{self.hu_min}, {self.hu_max}] is empty")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IntensityConfig:
        return cls(**(d or {}))


def normalise_ct(hu: np.ndarray, cfg: IntensityConfig) -> np.ndarray:
    """Clipped and normalised float32 copy of a raw HU volume (any shape)."""
    x = np.asarray(hu, np.float32)
    if cfg.hu_min is not None or cfg.hu_max is not None:
        x = np.clip(x, cfg.hu_min, cfg.hu_max)
    if cfg.normalise == "global":
        return ((x - cfg.mean) / cfg.std).astype(np.float32)
    if cfg.normalise == "minmax":
        return ((x + 1024.0) / 4550.0).astype(np.float32)
    std = float(x.std())
    return ((x - float(x.mean())) / (std if std > 0 else 1.0)).astype(np.float32)
