"""segment_image contract: every map has the image's shape; the ROI is respected; no label is needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from angioseg.data.synthetic import SynthConfig, synthetic_angiogram
from angioseg.unsupervised.cuts import CUTSModel
from angioseg.unsupervised.fit import scale_image, split_names
from angioseg.unsupervised.pipeline import SegmentConfig, segment_image


@pytest.fixture(scope="module")
def model() -> CUTSModel:
    torch.manual_seed(0)
    return CUTSModel().eval()


@pytest.mark.parametrize("normalise", ["global", "local"])
def test_label_maps_have_the_image_shape(model: CUTSModel, normalise: str) -> None:
    image = synthetic_angiogram(0, SynthConfig(size=64))[0][:40, :52].astype(np.float32)
    seg = segment_image(model, image, SegmentConfig(landmarks=60, normalise=normalise))
    maps = (seg.kmeans, seg.landmarks, seg.persistent, seg.vessel, seg.vessel_persistent, seg.vessel_spread)
    for arr in (*maps, seg.vesselness):
        assert arr.shape == (40, 52)
    assert seg.levels.shape[1:] == (40, 52) and len(seg.levels) == len(seg.granularities) >= 1
    assert np.unique(seg.kmeans).size == 10 and np.unique(seg.landmarks).size <= 60
    assert np.array_equal(seg.vessel, seg.vessel_spread)  # the default vessel map
    assert seg.granularities == sorted(seg.granularities, reverse=True)  # finest first
    for lab, g in zip(seg.levels, seg.granularities, strict=True):
        assert np.unique(lab).size == g
    assert seg.baselines["frangi_otsu"].shape == seg.baselines["kmeans_intensity_labels"].shape == (40, 52)
    assert set(seg.timings) >= {"embed", "landmarks", "spectral", "condensation", "selection", "total"}


def test_roi_outside_is_unlabelled_and_never_vessel(model: CUTSModel) -> None:
    image = synthetic_angiogram(1, SynthConfig(size=48))[0].astype(np.float32)
    roi = np.zeros(image.shape, bool)
    roi[8:40, 4:44] = True
    seg = segment_image(model, image, SegmentConfig(landmarks=40), roi)
    for lab in (seg.kmeans, seg.landmarks, seg.persistent, *seg.levels):
        assert (lab[~roi] == -1).all() and (lab[roi] >= 0).all()
    for mask in (seg.vessel, seg.baselines["frangi_otsu"], seg.baselines["kmeans_intensity"]):
        assert not mask[~roi].any()
    with pytest.raises(ValueError, match="roi"):
        segment_image(model, image, SegmentConfig(landmarks=40), np.zeros(image.shape, bool))


def test_input_scaling() -> None:
    img = np.array([[0.0, 255.0], [127.5, 51.0]])
    assert np.allclose(scale_image(img), [[-1, 1], [0, -0.6]])
    rng = np.random.default_rng(0)
    local = scale_image(rng.uniform(0, 255, (40, 40)) + np.linspace(0, 200, 40)[None], "local")
    assert local.min() >= -1 and local.max() <= 1 and abs(local.mean()) < 0.1


def test_split_is_seeded_disjoint_and_seven_to_three() -> None:
    names = [f"img{i}" for i in range(10)]
    s = split_names(names, 0.3, seed=0)
    assert len(s["val"]) == 3 and sorted(s["train"] + s["val"]) == names
    assert s == split_names(names, 0.3, seed=0) != split_names(names, 0.3, seed=1)
    assert split_names(["a"], 0.3, 0) == {"train": ["a"], "val": ["a"]}
