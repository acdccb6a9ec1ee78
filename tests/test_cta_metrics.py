"""Post-processing and volumetric metrics with spacing on shapes whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from angioseg.cta.metrics3d import surface_metrics, volume_metrics
from angioseg.cta.postprocess import postprocess, remove_small


def _three_objects() -> np.ndarray:
    m = np.zeros((20, 20, 20), bool)
    m[1:6, 1:6, 1:5] = True  # 100 voxels
    m[10:13, 10:12, 10:15] = True  # 30 voxels
    m[18, 18, 17:20] = True  # a 3-voxel island
    return m


def test_postprocess_removes_small_islands_and_keeps_the_largest() -> None:
    m = _three_objects()
    assert postprocess(m, min_size=10, keep_largest=None).sum() == 130
    assert postprocess(m, min_size=10, keep_largest=1).sum() == 100
    assert postprocess(m, min_size=200, keep_largest=None).sum() == 0
    assert remove_small(m, 4).sum() == 130
    assert not postprocess(np.zeros((3, 3, 3), bool)).any()


def test_postprocess_uses_26_connectivity() -> None:
    m = np.zeros((5, 5, 5), bool)
    m[1, 1, 1] = m[2, 2, 2] = m[3, 3, 3] = True  # corner-touching diagonal: one component
    assert postprocess(m, min_size=3, keep_largest=1).sum() == 3


def test_parallel_planes_distances_are_exact_in_mm() -> None:
    a = np.zeros((10, 6, 6), bool)
    b = np.zeros_like(a)
    a[2] = True
    b[5] = True  # 3 slices apart
    d = surface_metrics(a, b, spacing=(2.0, 0.5, 0.5))
    assert d == {"hd": 6.0, "hd95": 6.0, "msd": 6.0}
    assert surface_metrics(a, b)["hd"] == 3.0  # default spacing 1 mm


def test_shifted_cubes_overlap_and_distance() -> None:
    a = np.zeros((12, 12, 12), bool)
    a[4:8, 4:8, 2:6] = True
    b = np.roll(a, 2, axis=2)  # shifted by 2 voxels along x
    m = volume_metrics(a, b, spacing=(1.0, 1.0, 0.7))
    assert m["dice"] == pytest.approx(0.5)  # overlap 32 of 64 + 64
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(1 - 64 / 12**3)
    assert m["hd"] == pytest.approx(2 * 0.7)  # the far faces are 2 voxels from the other surface


def test_identical_even_width_tubes_score_perfectly_including_cldice() -> None:
    m = np.zeros((30, 12, 12), bool)
    m[3:27, 4:8, 4:8] = True  # 4 x 4 cross-section: scikit-image's own skeleton is empty here
    out = volume_metrics(m, m, spacing=(0.6, 0.4, 0.4))
    assert out["dice"] == 1.0 and out["cldice"] == 1.0
    assert out["hd95"] == 0.0 and out["msd"] == 0.0


def test_empty_masks_follow_the_package_policy() -> None:
    empty = np.zeros((4, 5, 6), bool)
    full = empty.copy()
    full[1, 1, 1] = True
    assert volume_metrics(empty, empty)["hd95"] == 0.0
    diag = float(np.linalg.norm([4 * 2.0, 5 * 1.0, 6 * 1.0]))
    assert volume_metrics(empty, full, spacing=(2.0, 1.0, 1.0))["hd95"] == pytest.approx(diag)
    assert volume_metrics(empty, full)["dice"] == 0.0 and volume_metrics(empty, full)["cldice"] == 0.0
