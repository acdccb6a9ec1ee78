"""Intensity normalisation, dataset folders and the patch dataset (2D / 3D, channel, prior dropout)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from angioseg.cta.centerlines import Centerline, rasterise
from angioseg.cta.dataset import Case, PatchDataset, find_cases
from angioseg.cta.intensity import IntensityConfig, normalise_ct
from angioseg.cta.sampling import Box
from angioseg.cta.volume_io import Volume, write_volume
from angioseg.errors import AngiosegError, DataError


def test_normalisations() -> None:
    hu = np.array([-2000.0, -1024.0, -440.90224, 0.0, 3526.0, 5000.0])
    g = normalise_ct(hu, IntensityConfig())
    std = math.sqrt(269087.00438)
    np.testing.assert_allclose(g, (np.clip(hu, -1024, 3071) + 440.90224) / std, rtol=1e-6)
    assert g[2] == pytest.approx(0.0, abs=1e-6)
    m = normalise_ct(hu, IntensityConfig(hu_min=None, hu_max=None, normalise="minmax"))
    np.testing.assert_allclose(m[[1, 4]], [0.0, 1.0], atol=1e-6)  # (HU + 1024) / 4550
    v = normalise_ct(hu, IntensityConfig(normalise="volume"))
    assert v.mean() == pytest.approx(0.0, abs=1e-5) and v.std() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(AngiosegError, match="--normalise"):
        IntensityConfig(normalise="percentile")
    with pytest.raises(AngiosegError, match="empty"):
        IntensityConfig(hu_min=100, hu_max=0)


def test_find_cases_pairs_by_stem_and_names_missing_labels(tmp_path: Path) -> None:
    vol = Volume(np.zeros((2, 3, 4), np.int16))
    write_volume(tmp_path / "images" / "a.nrrd", vol.array, vol)
    write_volume(tmp_path / "images" / "b.nii.gz", vol.array, vol)
    write_volume(tmp_path / "labels" / "a.nrrd", vol.array, vol)
    with pytest.raises(DataError, match=r"labels: no label for 1 image\(s\), e\.g\. \['b'\]"):
        find_cases(tmp_path)
    cases = find_cases(tmp_path, require_labels=False)
    assert [(c.name, c.label is not None) for c in cases] == [("a", True), ("b", False)]
    with pytest.raises(DataError, match="expected a CT dataset folder"):
        find_cases(tmp_path / "labels")


def _case() -> Case:
    image = np.random.default_rng(0).normal(size=(8, 20, 20)).astype(np.float32)
    label = np.zeros(image.shape, bool)
    label[:, 9:11, 9:11] = True
    cl = Centerline(np.column_stack([np.arange(8.0), np.full(8, 10.0), np.full(8, 10.0)]))
    return Case("c", Volume(image), image, label, cl, rasterise(cl, image.shape))


def test_patch_dataset_2d_and_3d_items() -> None:
    case = _case()
    ds2 = PatchDataset([case], [(0, Box((3, 2, 2), (1, 16, 16)))], dims=2, channel="binary")
    item = ds2[0]
    assert item["image"].shape == (2, 16, 16) and item["mask"].shape == (1, 16, 16)
    assert item["image"][1].sum() == 1.0 and item["image"][1, 8, 8] == 1.0  # the centerline voxel (3, 10, 10)
    np.testing.assert_array_equal(item["image"][0].numpy(), case.image[3, 2:18, 2:18])
    assert int(item["mask"].sum()) == 4
    ds3 = PatchDataset([case], [(0, Box((0, 0, 0), (8, 16, 16)))], dims=3, channel="none")
    item3 = ds3[0]
    assert item3["image"].shape == (1, 8, 16, 16) and item3["mask"].shape == (1, 8, 16, 16)
    assert str(item3["mask"].dtype) == "torch.int64"


def test_prior_dropout_empties_the_channel_in_that_fraction() -> None:
    case = _case()
    boxes = [(0, Box((3, 2, 2), (1, 16, 16)))]
    ds = PatchDataset([case], boxes, dims=2, channel="binary", prior_dropout=0.5, seed=1, length=400)
    empty = sum(float(ds[i]["image"][1].sum()) == 0 for i in range(400))
    assert 160 < empty < 240  # binomial(400, 0.5): mean 200, sd 10
    with pytest.raises(DataError, match="no training patch"):
        PatchDataset([case], [], dims=2)
