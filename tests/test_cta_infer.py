"""Sliding-window inference (2D and 3D), the two-pass centerline prior, writing in the input's geometry."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from angioseg.cta.centerlines import Centerline
from angioseg.cta.infer import CTSegmenter, sliding_window_proba
from angioseg.cta.pipeline import segment_volumes
from angioseg.cta.volume_io import Volume, read_volume, write_volume
from angioseg.models.unet import UNet


class VoxelwiseModel(nn.Module):
    """Logits (0, x_0 + 3 x_1): its vessel probability is sigmoid(x_0 + 3 x_1), voxel by voxel."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x[:, :1] + (3 * x[:, 1:2] if x.shape[1] > 1 else 0)
        return torch.cat([torch.zeros_like(score), score], 1) + 0 * self.dummy


@pytest.mark.parametrize("dims", [2, 3])
def test_sliding_window_stitches_voxelwise_outputs_exactly(dims: int) -> None:
    x = np.random.default_rng(0).normal(size=(1, 19, 37, 45)).astype(np.float32)
    prob = sliding_window_proba(VoxelwiseModel(), x, dims=dims, crop=16, depth=8)  # type: ignore[arg-type]
    assert prob.shape == (19, 37, 45) and prob.dtype == np.float32
    # Gaussian-weighted averaging of identical per-voxel values must return them unchanged.
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-x[0])), atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_sliding_window_with_a_unet_keeps_the_shape(dims: int) -> None:
    torch.manual_seed(0)
    model = UNet(dims, 2, 2, width=2, depth=2, act="leakyrelu")
    prob = sliding_window_proba(model, np.zeros((2, 9, 21, 23), np.float32), dims, crop=16, depth=8)
    assert prob.shape == (9, 21, 23)
    assert np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()


def _meta(channel: str = "none", dims: int = 3) -> dict:
    return {
        "task": "segmentation",
        "preprocess": {"normalise": "global"},
        "cta": {
            "dims": dims,
            "crop": 16,
            "depth": 8,
            "channel": channel,
            "min_size": 1,
            "keep_largest": None,
        },
    }


def test_two_pass_prior_comes_from_the_first_pass_not_the_truth() -> None:
    hu = np.full((12, 20, 20), -440.90224, np.float32)  # global z-score 0 -> probability 0.5 - eps
    hu[2:10, 9:11, 9:11] = 1000.0  # a bright tube: first-pass probability ~0.94
    seg = CTSegmenter(VoxelwiseModel(), _meta("binary"), threshold=0.5)  # type: ignore[arg-type]
    out = seg.segment(hu)
    assert out.coarse is not None and out.centerline is not None
    # the prior is the skeleton of the first pass, i.e. the tube's axis
    assert len(out.centerline) > 0
    assert np.all(np.abs(out.centerline.points[:, 1:] - 9.5) <= 0.5)
    # the second pass adds 3 on the centerline voxels: their probability rises
    on = tuple(np.round(out.centerline.points).astype(int).T)
    assert (out.prob[on] > out.coarse[on]).all()
    # a given centerline skips the first pass
    given = seg.segment(hu, Centerline(np.array([[5.0, 0.0, 0.0]])))
    assert given.coarse is None and given.prob[5, 0, 0] > 0.9


@pytest.mark.parametrize("name", ["case.nrrd", "case.nii.gz"])
def test_segment_writes_the_mask_in_the_input_format_and_geometry(tmp_path: Path, name: str) -> None:
    th = np.deg2rad(15)
    rot = np.array([[1, 0, 0], [0, np.cos(th), -np.sin(th)], [0, np.sin(th), np.cos(th)]])
    hu = np.full((10, 17, 19), -1000, np.int16)
    hu[3:8, 5:12, 6:13] = 800
    vol = Volume(hu, (1.25, 0.6, 0.7), (-50.0, 12.5, 300.0), rot)
    src = write_volume(tmp_path / "in" / name, hu, vol)
    seg = CTSegmenter(VoxelwiseModel(), _meta(), threshold=0.5)  # type: ignore[arg-type]
    res = segment_volumes(seg, [tmp_path / "in"], tmp_path / "out", save_prob=True)
    assert not res.failed and len(res.rows) == 1
    mask = read_volume(tmp_path / "out" / "masks" / name)
    assert mask.shape == vol.shape
    np.testing.assert_allclose(mask.spacing, vol.spacing, rtol=1e-6)
    np.testing.assert_allclose(mask.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(mask.direction, rot, atol=1e-6)
    np.testing.assert_array_equal(mask.array.astype(bool), hu > 0)  # the bright box, exactly
    assert (tmp_path / "out" / "probabilities" / name).exists()
    assert res.rows[0]["voxels"] == 5 * 7 * 7
    assert src.exists()


def test_segment_batch_keeps_going_past_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.nrrd").write_text("garbage")
    vol = Volume(np.zeros((4, 5, 6), np.int16))
    write_volume(tmp_path / "in" / "good.nrrd", vol.array, vol)
    seg = CTSegmenter(VoxelwiseModel(), _meta(), threshold=0.5)  # type: ignore[arg-type]
    res = segment_volumes(seg, [tmp_path / "in", tmp_path / "nothing_here.nrrd"], tmp_path / "out")
    assert [r["name"] for r in res.rows] == ["good"]
    assert sorted(Path(f).name for f, _ in res.failed) == ["broken.nrrd", "nothing_here.nrrd"]


def test_dicom_series_in_dicom_series_out(tmp_path: Path) -> None:
    hu = np.full((5, 12, 14), -1000, np.int16)
    hu[1:4, 3:9, 4:10] = 700
    vol = Volume(hu, (2.5, 0.7, 0.7), (-120.0, -80.0, 40.0))
    encoding = locale.getpreferredencoding(False)
    write_volume(tmp_path / "in" / "patient1", hu, vol)  # no extension: a DICOM series folder
    assert locale.getpreferredencoding(False) == encoding  # GDCM used to leave the process in ASCII
    seg = CTSegmenter(VoxelwiseModel(), _meta(), threshold=0.5)  # type: ignore[arg-type]
    res = segment_volumes(seg, [tmp_path / "in" / "patient1"], tmp_path / "out")
    assert not res.failed
    out = tmp_path / "out" / "masks" / "patient1"
    assert out.is_dir() and len(list(out.glob("*.dcm"))) == 5
    mask = read_volume(out)
    assert mask.format == "dicom" and mask.shape == vol.shape
    np.testing.assert_allclose(mask.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(mask.spacing, vol.spacing, rtol=1e-6)
    np.testing.assert_array_equal(mask.array.astype(bool), hu > 0)
