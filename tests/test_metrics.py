"""Metric definitions checked on shapes whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from angioseg.metrics import cldice, contour_distances, dice, image_metrics, iou, mean_diameter, summarize
from angioseg.metrics.agreement import bland_altman, pearson
from angioseg.metrics.vessel import centerline_length, vessel_stats


def bar(width: int, length: int = 200, shape: tuple[int, int] = (64, 256)) -> np.ndarray:
    m = np.zeros(shape, bool)
    r0 = shape[0] // 2 - width // 2
    c0 = (shape[1] - length) // 2
    m[r0 : r0 + width, c0 : c0 + length] = True
    return m


def square(shift: int = 0, side: int = 40, size: int = 100) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[30 : 30 + side, 30 + shift : 30 + side + shift] = True
    return m


@pytest.mark.parametrize("w", [3, 5, 7, 9])
def test_diameter_of_odd_bar_is_its_width(w: int) -> None:
    d = mean_diameter(bar(w))
    assert w - 0.05 < d <= w  # the skeleton's ends pull the mean a little below w


def test_diameter_of_width5_bar_matches_issue_value() -> None:
    assert mean_diameter(bar(5)) == pytest.approx(4.97, abs=0.015)


def test_diameters_from_the_bounding_box_edt_equal_the_whole_image_edt() -> None:
    from scipy import ndimage

    from angioseg.metrics.topology import skeleton
    from angioseg.metrics.vessel import diameter_map

    rng = np.random.default_rng(0)
    masks = []
    for _ in range(40):
        m = np.zeros((48, 64), bool)
        r0, c0 = rng.integers(0, 30), rng.integers(0, 40)  # boxes inside and touching each border
        m[r0 : r0 + rng.integers(3, 30), c0 : c0 + rng.integers(3, 40)] = True
        masks.append(m & (rng.random(m.shape) < 0.85))
    masks.append(np.ones((9, 9), bool))  # no background at all
    for m in masks:
        skel, d = diameter_map(m)
        assert np.array_equal(skel, skeleton(m))
        assert np.array_equal(d, 2.0 * ndimage.distance_transform_edt(m)[skel] - 1.0)


def test_identical_masks() -> None:
    m = bar(5)
    r = image_metrics(m, m)
    assert r["dice"] == 1 and r["iou"] == 1 and r["cldice"] == 1
    assert r["mhd"] == 0 and r["hd"] == 0 and r["hd95"] == 0 and r["add"] == 0
    assert r["precision"] == 1 and r["recall"] == 1 and r["accuracy"] == 1


def test_shifted_square_distances() -> None:
    # Continuous geometry: two s x s squares shifted by d have mean boundary distance d/2 in each
    # direction, so MHD = d/2, and Hausdorff = d. The sub-pixel contours cut the corners slightly.
    d = contour_distances(square(3), square(0))
    assert d["mhd"] == pytest.approx(1.5, abs=0.05)
    assert d["hd"] == pytest.approx(3.0, abs=1e-9)
    assert d["hd95"] == pytest.approx(3.0, abs=1e-9)


def test_overlap_counts() -> None:
    a, b = square(0), square(10)
    inter = 40 * 30
    assert dice(a, b) == pytest.approx(2 * inter / (1600 + 1600))
    assert iou(a, b) == pytest.approx(inter / (3200 - inter))


def test_empty_mask_policy() -> None:
    e = np.zeros((30, 40), bool)
    m = e.copy()
    m[10:15, 5:35] = True
    both = image_metrics(e, e)
    assert both["dice"] == 1 and both["cldice"] == 1 and both["iou"] == 1 and both["mhd"] == 0
    one = image_metrics(e, m)
    diag = np.hypot(30, 40)
    assert one["dice"] == 0 and one["cldice"] == 0 and one["iou"] == 0
    assert one["mhd"] == one["hd"] == one["hd95"] == pytest.approx(diag)
    assert one["diam_pred"] == 0
    s = summarize([both, one])
    assert all(np.isfinite(s[k]) for k in ("dice", "mhd", "hd", "add"))


def test_cldice_rewards_topology() -> None:
    truth = bar(5)
    broken = truth.copy()
    broken[:, 120:130] = False  # cut the vessel: pixels barely change, the centerline breaks
    assert dice(broken, truth) > 0.9
    assert cldice(broken, truth) < dice(broken, truth)
    assert cldice(truth, truth) == 1


def test_cldice_argument_order_is_symmetric_for_swapped_roles() -> None:
    a, b = bar(5), bar(9)
    # Tprec and Tsens swap roles; the harmonic mean is symmetric.
    assert cldice(a, b) == pytest.approx(cldice(b, a))


def test_centerline_length_of_straight_bar() -> None:
    from angioseg.metrics.topology import skeleton

    n = centerline_length(skeleton(bar(5, length=100)))
    assert 94 <= n <= 100


def test_vessel_stats_in_mm() -> None:
    s = vessel_stats(bar(5), spacing=(0.2, 0.2))
    assert s["mean_diam_mm"] == pytest.approx(s["mean_diam_px"] * 0.2)  # type: ignore[operator]
    assert s["area_mm2"] == pytest.approx(5 * 200 * 0.04)
    assert vessel_stats(bar(5))["mean_diam_mm"] is None


def test_bland_altman_and_pearson() -> None:
    pred = [1.0, 2.0, 3.0, 4.0]
    truth = [1.5, 2.5, 3.5, 4.5]
    ba = bland_altman(pred, truth)
    assert ba["ba_bias"] == pytest.approx(-0.5)
    assert ba["ba_loa_low"] == pytest.approx(-0.5) and ba["ba_loa_high"] == pytest.approx(-0.5)
    diffs = np.array([0.1, -0.2, 0.3, 0.0])
    ba = bland_altman(np.array(truth) + diffs, truth)
    sd = diffs.std(ddof=1)
    assert ba["ba_loa_high"] - ba["ba_loa_low"] == pytest.approx(2 * 1.96 * sd)
    r, p = pearson(pred, truth)
    assert r == pytest.approx(1.0) and p < 0.01
    assert np.isnan(pearson([1, 1, 1], [1, 2, 3])[0])
