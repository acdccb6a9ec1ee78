"""The bundled models: listed, loaded offline, segmenting the bundled sample above a Dice floor."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from angioseg.data.io import read_image, read_mask
from angioseg.data.preprocess import PreprocessConfig, truth_mask
from angioseg.demo import sample_dir, seen_in_training
from angioseg.errors import CheckpointError
from angioseg.metrics.overlap import dice
from angioseg.predict import Segmenter
from angioseg.zoo import PREFIX, ZOO_DIR, builtin_path, bundled_models, sha256
from tests.conftest import run_cli

# Held-out Dice floors on the bundled sample images a model never saw (measured values are in the
# model cards; a floor is a regression guard ~0.05 below them, not a target).
FLOORS = {"xca_vessels": 0.73, "xca_vessels_fast": 0.73, "xca_synth_pretrained": 0.40}


def test_every_bundled_model_has_weights_metadata_card_and_hashes() -> None:
    models = bundled_models()
    assert {m.name for m in models} >= set(FLOORS)
    for m in models:
        assert m.size_bytes <= 10_000_000
        card = m.card.read_text(encoding="utf-8")
        assert sha256(m.weights) in card and "Copyright (c) 2016, fercer" in card and "CC BY 4.0" in card
        assert json.loads((ZOO_DIR / f"{m.name}.pretrain_images.json").read_text(encoding="utf-8"))["images"]


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_bundled_model_segments_held_out_sample_images_offline(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bundled model tried to reach the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    images = sample_dir() / "labeled" / "images"
    seen = seen_in_training(f"{PREFIX}{name}", images)
    held = sorted(p for p in images.glob("*.png") if p.stem not in seen)
    assert held, f"every sample image was a training image of {name}"
    seg = Segmenter.from_checkpoint(f"{PREFIX}{name}")
    scores = []
    for p in held:
        pred = seg.segment(read_image(p))
        truth = truth_mask(read_mask(p.parent.parent / "masks" / p.name), PreprocessConfig(image_size=None))
        scores.append(dice(pred, truth))
    assert float(np.mean(scores)) >= FLOORS[name], scores


def test_unknown_builtin_names_the_bundled_ones() -> None:
    with pytest.raises(CheckpointError, match="xca_vessels"):
        builtin_path("builtin:nope")


def test_models_command_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["models"]) == 0
    out = capsys.readouterr().out
    assert all(f"{PREFIX}{n}" in out for n in FLOORS)


def test_finetune_from_the_bundled_segmenter_refuses_its_training_images_as_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = sample_dir() / "labeled"
    seen = seen_in_training(f"{PREFIX}xca_vessels", data / "images")
    assert seen  # the sample holds images the segmenter was trained on
    code = run_cli(
        [
            "finetune",
            "--data",
            data,
            "--out",
            tmp_path / "r",
            "--pretrained",
            "builtin:xca_vessels",
            "--test",
            "6",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "same pixels" in err.replace("\n", " ")
