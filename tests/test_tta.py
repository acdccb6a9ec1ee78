"""Test-time augmentation (infer.engines.TTAEngine) and the test report on the original pixel grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from angioseg.data.datasets import Sample
from angioseg.data.io import read_mask, write_png
from angioseg.data.preprocess import preprocess_image
from angioseg.errors import AngiosegError
from angioseg.infer.engines import TTA_MODES, TorchEngine, TTAEngine, with_tta
from angioseg.metrics.overlap import dice
from angioseg.predict import Segmenter
from angioseg.train.checkpoint import load_model
from angioseg.train.finetune import FinetuneConfig, evaluate_split
from tests.conftest import run_cli
from tests.tiny_model import IMAGE_SIZE, PREPROCESS, held_out


class PixelEngine:
    """A per-pixel 'network' (sigmoid of the input): every view maps back onto the same answer."""

    name = "pixel"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x[:, 0])


@pytest.mark.parametrize("mode", ["flip", "d4"])
def test_each_view_is_mapped_back_onto_the_input_grid(mode: str) -> None:
    x = torch.randn(2, 1, 24, 24 if mode == "d4" else 40)  # flips work on non-square frames
    np.testing.assert_allclose(TTAEngine(PixelEngine(), mode)(x), torch.sigmoid(x[:, 0]), atol=1e-6)


def _views(mode: str) -> list:  # the input transforms each mode averages over
    flips = [lambda t: t, lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.flip(-1).flip(-2)]
    turns = [lambda t: t.rot90(1, (-2, -1)), lambda t: t.transpose(-2, -1)]
    return flips + (turns if mode == "d4" else [])


@pytest.mark.parametrize("mode", ["flip", "d4"])
def test_tta_of_a_real_network_commutes_with_the_views_it_averages(tiny_model: Path, mode: str) -> None:
    """TTA(g x) = g TTA(x) for every view g: the average really runs over the whole group, each view
    undone correctly (a wrong inverse or a missing view breaks this; the bare network does not obey it)."""
    model, _ = load_model(tiny_model)
    image, _ = held_out(1, IMAGE_SIZE, seed=3)[0]
    x = torch.from_numpy(preprocess_image(image, PREPROCESS)[0])[None, None]
    net, tta = TorchEngine(model), TTAEngine(TorchEngine(model), mode)
    base = tta(x)
    for g in _views(mode):
        np.testing.assert_allclose(tta(g(x)), g(base), atol=1e-5)
    assert float((net(x.flip(-1)) - net(x).flip(-1)).abs().max()) > 1e-3  # the test has teeth


def test_no_tta_is_the_engine_itself_and_unknown_modes_are_refused() -> None:
    engine = PixelEngine()
    assert with_tta(engine, "none") is engine
    assert TTA_MODES == ("none", "flip", "d4")
    with pytest.raises(AngiosegError, match="--tta"):
        with_tta(engine, "rot45")


def test_test_report_scores_what_segment_gives_on_the_original_grid(tiny_model: Path, tmp_path: Path) -> None:
    """evaluate_split predicts as ``segment`` does (same TTA, mapped back to the image's own size) and
    scores against the mask as drawn, not one resized to the model's grid."""
    model, meta = load_model(tiny_model)
    size = 2 * IMAGE_SIZE
    pairs = held_out(3, size, seed=5)
    samples = {f"im{i}": Sample(f"im{i}", im, m, Path(f"im{i}.png")) for i, (im, m) in enumerate(pairs)}
    cfg = FinetuneConfig(preprocess=PREPROCESS, tta="flip")
    summary = evaluate_split(model, cfg, samples, list(samples), tmp_path / "test")
    seg = Segmenter(model, meta, tta="flip")
    scores = []
    for name, (image, mask) in zip(samples, pairs, strict=True):
        written = read_mask(tmp_path / "test" / "predictions" / f"{name}.png")
        assert written.shape == (size, size)
        np.testing.assert_array_equal(written, seg.segment(image))
        scores.append(dice(written, mask))
    assert summary["n"] == 3
    assert summary["dice"] == pytest.approx(np.mean(scores))


def test_segment_tta_option(tiny_model: Path, tmp_path: Path) -> None:
    image, _ = held_out(1, 2 * IMAGE_SIZE, seed=7)[0]
    write_png(tmp_path / "in" / "a.png", image)
    args = ["segment", tmp_path / "in", "--model", tiny_model, "--no-overlay", "--no-stats"]
    assert run_cli([*args, "--out", tmp_path / "d4", "--tta", "d4"]) == 0
    model, meta = load_model(tiny_model)
    want = Segmenter(model, meta, tta="d4").segment(image)
    np.testing.assert_array_equal(read_mask(tmp_path / "d4" / "masks" / "a.png"), want)
    assert run_cli([*args, "--out", tmp_path / "bad", "--tta", "maybe"]) == 2
