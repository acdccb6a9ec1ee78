"""ROI centroids and merging on hand-made point sets, crops at borders, grids, the centerline channel."""

from __future__ import annotations

import numpy as np
import pytest

from angioseg.cta.channel import centerline_channel, empty_channel, stack_input
from angioseg.cta.sampling import (
    Box,
    centerline_boxes_2d,
    centerline_boxes_3d,
    dbscan_centroids,
    extract,
    grid_boxes,
    kmeans_centroids,
    merge_centroids,
    plan_boxes,
    slab_range,
    with_foreground,
)
from angioseg.errors import AngiosegError


def _sorted(a: np.ndarray) -> list[list[float]]:
    return sorted(np.asarray(a).tolist())


def test_dbscan_chains_points_within_eps_and_splits_far_ones() -> None:
    # (0,0)-(0,3)-(0,6) are linked by steps of 3 <= eps 5 although the ends are 6 apart.
    pts = np.array([[0, 0], [0, 3], [0, 6], [100, 100], [100, 104]], float)
    assert _sorted(dbscan_centroids(pts, eps=5)) == [[0.0, 3.0], [100.0, 102.0]]
    # eps 2.9 separates every point of the chain.
    assert len(dbscan_centroids(pts[:3], eps=2.9)) == 3


def test_merge_is_transitive_and_replaces_groups_by_their_truncated_mean() -> None:
    c = np.array([[0, 0], [0, 40], [0, 81], [200, 200]], float)
    # 0-40 and 40-81 are <= 50 apart, 0-81 is not: one group by transitivity, mean (0, 40.33) -> (0, 40).
    assert _sorted(merge_centroids(c, 50)) == [[0, 40], [200, 200]]
    assert merge_centroids(c, 50).dtype.kind == "i"


def test_merge_threshold_2d_50_vs_3d_64() -> None:
    c = np.array([[10, 10], [10, 70]], float)  # 60 apart
    assert len(merge_centroids(c, 50)) == 2
    assert _sorted(merge_centroids(c, 64)) == [[10, 40]]
    # identical centroids are merged (the seed's 0 < d kept duplicates)
    assert len(merge_centroids(np.array([[5, 5], [5, 5]], float), 50)) == 1


def test_kmeans_takes_the_smallest_k_whose_windows_hold_every_point() -> None:
    pts = np.column_stack([np.zeros(201), np.arange(201)]).astype(float)  # a 200-px line
    c = kmeans_centroids(pts, window=128)
    assert len(c) == 2  # k = 1 leaves points 100 px from the centre (> 64)
    # the halves 0..99 / 100..200 (or 0..100 / 101..200): centres at 49.5-50 and 150-150.5, truncated
    np.testing.assert_allclose(_sorted(c), [[0, 50], [0, 150]], atol=1)


def test_centerline_boxes_2d_one_crop_per_merged_centroid_per_slice() -> None:
    pts = np.array([[3, 10, 10], [3, 12, 10], [3, 100, 100], [5, 50, 50]], float)
    boxes = centerline_boxes_2d(pts, crop=32)
    assert set(boxes) == {
        Box((3, 11 - 16, 10 - 16), (1, 32, 32)),
        Box((3, 100 - 16, 100 - 16), (1, 32, 32)),
        Box((5, 50 - 16, 50 - 16), (1, 32, 32)),
    }


def test_slab_range_rounds_up_to_the_depth_without_the_seed_extra_slab() -> None:
    assert slab_range(0, 31, 32, 100) == (0, 32)  # the seed gave (0, 64)
    assert slab_range(10, 20, 32, 100) == (10, 42)
    assert slab_range(90, 99, 32, 100) == (68, 100)  # moved back at the end of the volume
    assert slab_range(3, 40, 32, 50) == (0, 64)  # shallower than two slabs: padded


def test_centerline_boxes_3d_slabs_of_32_with_merged_centroids() -> None:
    # a vertical line at (y, x) = (60, 60) through slices 0..63, plus a second line 60 px away in slab 2
    line1 = np.column_stack([np.arange(64), np.full(64, 60), np.full(64, 60)])
    line2 = np.column_stack([np.arange(32, 64), np.full(32, 60), np.full(32, 120)])
    boxes = centerline_boxes_3d(np.concatenate([line1, line2]).astype(float), n_slices=64, crop=128, depth=32)
    # slab 0: one centroid; slab 1: two centroids 60 apart, merged at closeness 64 -> their mean x = 90
    assert set(boxes) == {Box((0, -4, -4), (32, 128, 128)), Box((32, -4, 26), (32, 128, 128))}
    boxes50 = centerline_boxes_3d(np.concatenate([line1, line2]).astype(float), 64, 128, 32, closeness=50)
    assert len(boxes50) == 3


def test_extract_pads_with_zeros_at_every_border() -> None:
    arr = np.arange(1000).reshape(10, 10, 10) + 1
    box = Box((-2, 8, 3), (4, 4, 4))
    out = extract(arr, box)
    assert out.shape == (4, 4, 4)
    assert (out[:2] == 0).all()  # slices -2, -1
    assert (out[:, 2:] == 0).all()  # rows 10, 11
    np.testing.assert_array_equal(out[2:, :2], arr[0:2, 8:10, 3:7])
    # channels-first arrays are cropped on their last three axes
    assert extract(np.stack([arr, arr]), box).shape == (2, 4, 4, 4)
    # a box entirely outside gives only padding
    assert not extract(arr, Box((20, 0, 0), (2, 2, 2))).any()


def test_grid_tiles_cover_the_volume_and_training_keeps_labeled_ones() -> None:
    shape = (2, 100, 130)
    boxes = grid_boxes(shape, crop=64, depth=1)
    assert len(boxes) == 2 * 2 * 3
    label = np.zeros(shape, bool)
    label[1, 70, 129] = True
    assert with_foreground(boxes, label) == [Box((1, 64, 128), (1, 64, 64))]
    assert plan_boxes(label, None, "grid", dims=2, crop=64) == [Box((1, 64, 128), (1, 64, 64))]
    with pytest.raises(AngiosegError, match="needs a label"):
        plan_boxes(None, None, "grid", dims=2)
    with pytest.raises(AngiosegError, match="sampling method"):
        plan_boxes(label, None, "random", dims=2)


def test_centerline_channel_binary_and_bright() -> None:
    image = np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4)
    cl = np.zeros(image.shape, bool)
    cl[1, 2, 3] = cl[0, 0, 0] = True
    binary = centerline_channel(image, cl, "binary")
    np.testing.assert_array_equal(binary, cl.astype(np.float32))
    bright = centerline_channel(image, cl, "bright", gain=2.0)
    np.testing.assert_allclose(bright[cl], image[cl] + 2.0)
    np.testing.assert_array_equal(bright[~cl], image[~cl])
    assert not empty_channel(image, "binary").any()
    np.testing.assert_array_equal(empty_channel(image, "bright"), image)
    x = stack_input(image, binary)
    assert x.shape == (2, 2, 3, 4) and x.dtype == np.float32
    assert stack_input(image, None).shape == (1, 2, 3, 4)
    with pytest.raises(AngiosegError):
        centerline_channel(image, cl, "attention")


def test_plan_boxes_kmeans_and_default_closeness() -> None:
    label = np.zeros((40, 200, 200), bool)
    pts = np.column_stack([np.full(150, 5.0), np.full(150, 100.0), np.arange(20, 170.0)])
    boxes = plan_boxes(label, pts, "kmeans", dims=2, crop=128)
    assert len(boxes) == 2 and all(b.start[0] == 5 for b in boxes)  # 150 px: two 128-px windows
    # dbscan links the line into one cluster whose mean is (100, 94)
    assert plan_boxes(label, pts, "dbscan", dims=2, crop=128) == [Box((5, 100 - 64, 94 - 64), (1, 128, 128))]
    boxes3 = plan_boxes(label, pts, "dbscan", dims=3, crop=128, depth=32)
    assert boxes3 == [Box((5, 36, 30), (32, 128, 128))]
    assert plan_boxes(label, None, "dbscan", dims=3) == []
