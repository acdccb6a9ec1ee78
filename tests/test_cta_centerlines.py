"""3D skeletons (even-width tubes), centerline files in world/voxel space, centerlines from predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from angioseg.cta.centerlines import (
    Centerline,
    centerline_from_prediction,
    rasterise,
    read_centerline,
    skeleton_centerline,
    skeletonize_3d,
    split_branches,
    write_centerline,
)
from angioseg.cta.volume_io import Volume
from angioseg.errors import DataError
from conftest import shared_data


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 6])
def test_skeleton_of_a_straight_tube_is_its_axis(width: int) -> None:
    m = np.zeros((40, 20, 20), bool)
    m[5:35, 5 : 5 + width, 5 : 5 + width] = True
    pts = np.argwhere(skeletonize_3d(m))
    axis = 5 + (width - 1) / 2  # 6.5 for width 4: the skeleton must sit within half a voxel
    assert len(pts) >= 30 - width  # the skeleton shortens by about the radius at each end
    assert np.abs(pts[:, 1:] - axis).max() <= 0.5
    assert len(np.unique(pts[:, 0])) == len(pts)  # one voxel per slice: a curve, not a slab


def test_scikit_image_alone_misses_even_width_tubes() -> None:
    """The pitfall that skeletonize_3d works around (scikit-image#3757)."""
    from skimage.morphology import skeletonize

    m = np.zeros((40, 20, 20), bool)
    m[5:35, 5:9, 5:9] = True
    assert skeletonize(m).sum() == 0
    assert skeletonize_3d(m).sum() > 0


def test_skeleton_of_empty_mask_is_empty() -> None:
    assert not skeletonize_3d(np.zeros((5, 5, 5), bool)).any()


def test_split_branches_at_large_jumps() -> None:
    a = np.column_stack([np.arange(10) * 0.25, np.zeros(10), np.zeros(10)])
    b = a + np.array([0.0, 30.0, 0.0])
    np.testing.assert_array_equal(split_branches(np.concatenate([a, b, a])), [0] * 10 + [1] * 10 + [2] * 10)


def _oblique_volume() -> Volume:
    th = np.deg2rad(30)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    return Volume(np.zeros((20, 30, 40), np.int16), (2.0, 0.5, 0.7), (-10.0, 25.0, 100.0), rot)


@pytest.mark.parametrize("space", ["world", "voxel"])
def test_centerline_file_round_trip_with_auto_space(tmp_path: Path, space: str) -> None:
    vol = _oblique_volume()
    cl = Centerline(np.array([[1.0, 2.0, 3.0], [10.0, 20.5, 30.0], [15.0, 5.0, 35.0]]), np.array([0, 0, 1]))
    write_centerline(tmp_path / "c.csv", cl, vol, space=space)
    back = read_centerline(tmp_path / "c.csv", vol)  # auto-detects the space
    np.testing.assert_allclose(back.points, cl.points, atol=1e-3)
    np.testing.assert_array_equal(back.branch, cl.branch)
    write_centerline(tmp_path / "c.npy", cl, vol, space=space)
    np.testing.assert_allclose(read_centerline(tmp_path / "c.npy", vol, space).points, cl.points, atol=1e-6)


def test_centerline_outside_the_volume_is_a_clear_error(tmp_path: Path) -> None:
    vol = _oblique_volume()
    (tmp_path / "far.txt").write_text("1000 1000 1000\n2000 2000 2000\n")
    with pytest.raises(DataError, match=r"far\.txt.*do not fall inside the volume"):
        read_centerline(tmp_path / "far.txt", vol)
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv.*N x 3"):
        read_centerline(tmp_path / "bad.csv", vol)


def test_centerline_from_prediction_drops_islands_and_follows_the_tube() -> None:
    prob = np.zeros((30, 20, 20), np.float32)
    prob[2:28, 9:12, 9:12] = 0.9  # a tube along z at (10, 10)
    prob[5, 2, 2] = prob[5, 2, 3] = 0.8  # a 2-voxel island
    cl = centerline_from_prediction(prob, threshold=0.5, min_size=10)
    assert len(cl) >= 20
    np.testing.assert_array_equal(np.unique(cl.points[:, 1:]), [10.0])
    assert not centerline_from_prediction(np.zeros((8, 8, 8)), 0.5, 10).points.size


def test_rasterise_joins_sparse_points_when_dense() -> None:
    cl = Centerline(np.array([[0, 0, 0], [0, 0, 10.0], [4, 4, 4], [4, 8, 4]]), np.array([0, 0, 1, 1]))
    assert rasterise(cl, (6, 10, 12), dense=False).sum() == 4
    dense = rasterise(cl, (6, 10, 12), dense=True)
    assert dense.sum() == 11 + 5  # x = 0..10 on row 0 and y = 4..8 at (4, ., 4)
    assert dense[0, 0, :11].all() and dense[4, 4:9, 4].all()


def test_real_orcascore_centerline_reads_as_world_points() -> None:
    from angioseg.cta.trees import load_real_centerline

    path = shared_data("ct_centerline") / "orcascore_case_centerlines.npy"
    paths = load_real_centerline(path)
    assert len(paths) == 18  # 17 jumps of 14-98 mm between 0.25-mm steps
    assert sum(len(p) for p in paths) == 8382
    # every path starts at one of two ostia 2 mm apart
    starts = np.unique(np.array([p[0] for p in paths]).round(1), axis=0)
    assert len(starts) == 2


def test_skeleton_centerline_is_traced_into_adjacent_polylines() -> None:
    """A Y of tubes: raster-ordered skeleton voxels joined in file order would draw chords across the
    volume; traced polylines only join 26-neighbours, so the dense map stays on the skeleton."""
    from scipy import ndimage as ndi

    m = np.zeros((40, 40, 40), bool)
    m[5:35, 18:21, 18:21] = True  # trunk along z
    for k in range(12):  # a branch leaving diagonally in y and x
        m[20 + k, 20 + k : 23 + k, 20 + k : 23 + k] = True
    cl = skeleton_centerline(m)
    for pts in cl.branches():
        if len(pts) > 1:
            assert np.linalg.norm(np.diff(pts, axis=0), axis=1).max() <= np.sqrt(3) + 1e-9
    assert len(np.unique(cl.branch)) >= 2  # the fork starts a new branch
    dense = rasterise(cl, m.shape, dense=True)
    skel = rasterise(cl, m.shape, dense=False)
    assert ndi.distance_transform_edt(~skel)[dense].max() <= 1.0
