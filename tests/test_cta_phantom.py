"""CT phantoms: deterministic, CT-like values, labels that follow the tree (random or the real centerline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from angioseg.cta.centerlines import rasterise, read_centerline
from angioseg.cta.dataset import find_cases
from angioseg.cta.phantom import PhantomConfig, make_phantom, write_phantoms
from angioseg.cta.trees import load_real_centerline
from angioseg.cta.volume_io import read_volume
from conftest import shared_data


def test_random_tree_phantom_is_deterministic_and_ct_like() -> None:
    cfg = PhantomConfig(spacing=1.0, shape=(32, 48, 48))
    vol, label, cl = make_phantom(np.random.default_rng([0, 1]), cfg)
    vol2, label2, _ = make_phantom(np.random.default_rng([0, 1]), cfg)
    np.testing.assert_array_equal(vol.array, vol2.array)
    np.testing.assert_array_equal(label, label2)
    assert vol.array.shape == label.shape == (32, 48, 48) and vol.array.dtype == np.int16
    assert 0.0005 < label.mean() < 0.05
    # contrast-filled lumen (300-500 HU, blurred) is brighter than the tissue around it (fat / muscle)
    assert np.median(vol.array[label > 0]) > np.median(vol.array[label == 0]) + 100
    assert vol.array.min() >= -1024 and vol.array.max() <= 3071
    # the centerline lies in the lumen
    on = rasterise(cl, label.shape, dense=False)
    assert label[on].mean() > 0.9


def test_phantom_follows_the_real_centerline() -> None:
    paths = load_real_centerline(shared_data("ct_centerline") / "orcascore_case_centerlines.npy")
    cfg = PhantomConfig(spacing=2.5)
    vol, label, cl = make_phantom(np.random.default_rng(0), cfg, paths)
    # the tree spans about 104 x 76 x 107 mm (x, y, z); jitter scales by 0.9-1.1; 10 mm margins
    d, h, w = vol.shape
    assert 40 <= d <= 60 and 30 <= h <= 45 and 40 <= w <= 60
    on = rasterise(cl, label.shape, dense=False)
    assert label[on].mean() > 0.9
    assert len(np.unique(cl.branch)) == 18


def test_written_dataset_is_readable_and_resumable(tmp_path: Path) -> None:
    cfg = PhantomConfig(spacing=1.5, shape=(16, 24, 24))
    write_phantoms(tmp_path, 2, cfg, seed=3, fmt="nifti")
    cases = find_cases(tmp_path)
    assert [c.name for c in cases] == ["phantom_000", "phantom_001"]
    vol = read_volume(cases[0].image)
    assert vol.spacing == (1.5, 1.5, 1.5)
    assert cases[0].centerline is not None
    cl = read_centerline(cases[0].centerline, vol)
    lab = read_volume(cases[0].label).array
    assert lab[rasterise(cl, vol.shape, dense=False)].mean() > 0.9
    before = cases[1].image.stat().st_mtime_ns
    write_phantoms(tmp_path, 2, cfg, seed=3, fmt="nifti")  # complete cases are kept
    assert cases[1].image.stat().st_mtime_ns == before
