"""The vesselness input channel (``finetune --vesselness``): the filter, the network, loading a
checkpoint without the channel, and every inference engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from angioseg.models.unet import UNet, build_model
from angioseg.models.vesselness import Vesselness
from angioseg.predict import Segmenter
from angioseg.train.checkpoint import load_model, load_pretrained, save_run_model
from tests.conftest import run_cli

TINY = ["--width", "4", "--image-size", "64", "--batch-size", "2", "--steps", "2", "--epochs", "1"]


def _lines(size: int = 64) -> np.ndarray:
    """A bright image with a dark vertical line (3 px), a bright one and a dark-to-bright edge."""
    img = np.full((size, size), 0.6, np.float32)
    img[:, 14:17] = 0.2  # dark vessel
    img[:, 32:35] = 1.0  # bright line: not a vessel in an angiogram
    img[:, 50:] = 0.3  # an edge
    return img


def test_vesselness_responds_to_dark_lines_not_to_bright_lines_or_edges_at_any_contrast() -> None:
    v = Vesselness()
    x = torch.from_numpy(_lines())[None, None]
    r = v(x)[0, 0].numpy()
    rows = slice(8, 56)
    on_vessel = r[rows, 15].mean()
    assert on_vessel > 4 * r[rows, 33].mean()  # bright line
    assert on_vessel > 2.5 * r[rows, 48:53].max(axis=1).mean()  # the dark side of an edge: weaker
    assert on_vessel > 4 * r[rows, 22:28].mean()  # flat background
    # divided by its own spread: the same map whatever the contrast and offset
    np.testing.assert_allclose(v(3 * x + 1)[0, 0].numpy(), r, rtol=1e-3, atol=1e-4)
    # computed in float32 under bf16 autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        np.testing.assert_allclose(v(x)[0, 0].float().numpy(), r, rtol=1e-5, atol=1e-5)
    half = v.to(torch.bfloat16)(x.bfloat16())  # a bf16-true model: kernels and image in bf16
    np.testing.assert_allclose(half[0, 0].float().numpy(), r, atol=0.05 * r.max())
    tiny = v(torch.rand(1, 1, 3, 3))  # smaller than every kernel's reach: no response, no error
    assert tiny.shape == (1, 1, 3, 3) and not tiny.any()
    small = v(torch.rand(1, 1, 5, 5))  # only the finest scale fits
    assert small.shape == (1, 1, 5, 5) and bool(torch.isfinite(small).all())
    with pytest.raises(ValueError, match="positive"):
        Vesselness([0.0])


def test_unet_with_vesselness_rebuilds_from_its_config_and_older_configs_are_unchanged() -> None:
    plain = UNet(width=4, depth=2)
    assert "vesselness" not in plain.config()  # configs of existing models rebuild the same network
    net = UNet(width=4, depth=2, vesselness=(1.0, 2.0))
    assert net.config()["vesselness"] == [1.0, 2.0]
    assert net.encoder.stages[0][0].in_channels == 2
    again = build_model(net.config())
    again.load_state_dict(net.state_dict())  # the filter's kernels are not in the state dict
    x = torch.from_numpy(_lines(40))[None, None]  # not a multiple of 4: padded inside
    net.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(net(x), again(x)) and net(x).shape == (1, 2, 40, 40)
    with pytest.raises(ValueError, match="2D"):
        UNet(spatial_dims=3, vesselness=(1.0,))


def test_finetune_scales_the_vesselness_sigmas_with_the_network_input_size() -> None:
    """The scales (1, 2, 3 px) are for 256² inputs; at 512² vessels are twice as many pixels wide."""
    from angioseg.data.preprocess import PreprocessConfig
    from angioseg.train.finetune import FinetuneConfig, _new_module

    def sigmas(size: int | None) -> list[float]:
        cfg = FinetuneConfig(width=4, vesselness=True, preprocess=PreprocessConfig(image_size=size))
        return list(_new_module(cfg, 1e-3, None)[0].model.config()["vesselness"])

    assert sigmas(256) == [1.0, 2.0, 3.0]
    assert sigmas(512) == [2.0, 4.0, 6.0]
    assert sigmas(None) == [1.0, 2.0, 3.0]  # frames at their own size: unscaled


def test_a_checkpoint_without_the_channel_loads_with_zero_weights_for_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = UNet(width=4, depth=2).eval()
    save_run_model(tmp_path, src, {"image_size": 64}, method="none")
    net = UNet(width=4, depth=2, vesselness=(1.0, 2.0)).eval()
    load_pretrained(net, tmp_path / "model.safetensors", "all")
    w = net.encoder.stages[0][0].weight
    assert not w[:, 1].any() and torch.equal(w[:, :1], src.encoder.stages[0][0].weight)
    x = torch.from_numpy(_lines())[None, None]
    with torch.no_grad():
        assert torch.allclose(net(x), src(x), atol=1e-6)  # the same function until fine-tuned
    other = UNet(in_channels=3, width=4, depth=2)
    with pytest.raises(Exception, match="do not fit"):
        load_pretrained(other, tmp_path / "model.safetensors", "all")


def test_finetune_vesselness_trains_and_every_engine_segments_with_it(
    tmp_path: Path, synth_dir: Path
) -> None:
    run = tmp_path / "r"
    args = ["finetune", "--data", synth_dir, "--labeled", "3", *TINY, "--out", run]
    assert run_cli([*args, "--vesselness", "--pretrained", "none"]) == 0
    model, meta = load_model(run / "model.safetensors")
    assert meta["model"]["vesselness"] and model.vesselness is not None
    assert "vesselness: true" in (run / "config.yaml").read_text(encoding="utf-8")
    image = (np.asarray(_lines(96)) * 255).astype(np.uint8)
    ref = Segmenter.from_checkpoint(run).probability(image)
    for engine in ("onnx", "openvino"):
        pytest.importorskip("onnxruntime" if engine == "onnx" else "openvino")
        got = Segmenter.from_checkpoint(run, engine=engine).probability(image)
        assert np.abs(got - ref).max() < 2e-3, engine
    assert run_cli(["finetune", "--out", run, "--resume", "--epochs", "2"]) == 0  # resumes as stored
    assert json.loads((run / "test" / "summary.json").read_text())["best_epoch"] is not None
    # a student distilled from it sees the channel too, and starts as its teacher (equal width)
    student = tmp_path / "student"
    distill = ["distill", "--teacher", run, "--data", synth_dir, "--out", student, "--width", "4"]
    assert run_cli([*distill, "--epochs", "1", "--batch-size", "2", "--steps", "2"]) == 0
    meta_s = json.loads((student / "model.json").read_text(encoding="utf-8"))
    assert meta_s["model"]["vesselness"] == meta["model"]["vesselness"]
    from angioseg.train.distill import slim_init

    fresh = UNet(width=4, vesselness=tuple(meta["model"]["vesselness"]))
    slim_init(fresh, model)
    assert torch.equal(fresh.encoder.stages[0][0].weight, model.encoder.stages[0][0].weight)
