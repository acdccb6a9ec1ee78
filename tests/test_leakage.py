"""No test image is pretrained on: pixel hashes of pretraining images vs the test split.

A copy of a test image under another name and format in a pretraining folder is refused by
``run_pretrain(exclude=...)``, ``angioseg finetune --pretrained RUN`` and ``angioseg experiment``;
a disjoint folder passes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from angioseg.data.datasets import load_dataset
from angioseg.data.io import read_image
from angioseg.data.leakage import (
    HASH_FILE,
    check_no_test_images,
    check_pretrained_images,
    pixel_hash,
    read_image_hashes,
    sample_hashes,
)
from angioseg.data.preprocess import PreprocessConfig
from angioseg.errors import LeakageError
from angioseg.pretrain.data import load_unlabeled
from angioseg.pretrain.run import PretrainConfig, run_pretrain
from tests.conftest import run_cli

TEST_IMAGE = "synth_0009"  # in the test split of synth_dir's 24 names (test 0.2, test_seed 42)
TINY = ["--width", "4", "--image-size", "32", "--batch-size", "4", "--precision", "fp32"]


def _pretrain_folder(synth_dir: Path, root: Path, leak: bool) -> Path:
    """4 images of synth_dir outside its test split, plus (``leak``) the test image as ``arcade_17.tif``."""
    folder = root / ("leaky" if leak else "disjoint")
    folder.mkdir()
    for i in range(4):
        shutil.copy(synth_dir / "images" / f"synth_{i:04d}.png", folder / f"a{i}.png")
    if leak:  # same pixels, another name and format (uint8 TIFF written from the decoded PNG)
        pixels = read_image(synth_dir / "images" / f"{TEST_IMAGE}.png")
        tifffile.imwrite(folder / "arcade_17.tif", pixels.astype(np.uint8))
    return folder


def _test_split(synth_dir: Path) -> dict[str, str]:
    labeled = {s.name: s for s in load_dataset(synth_dir)}
    return sample_hashes(labeled, [TEST_IMAGE, "synth_0015"])


def test_pixel_hash_sees_through_names_and_formats(synth_dir: Path, tmp_path: Path) -> None:
    png = synth_dir / "images" / f"{TEST_IMAGE}.png"
    pixels = read_image(png)
    np.save(tmp_path / "copy.npy", pixels)
    tifffile.imwrite(tmp_path / "other_name.tif", pixels.astype(np.uint8))
    h = pixel_hash(pixels)
    assert pixel_hash(read_image(tmp_path / "copy.npy")) == h
    assert pixel_hash(read_image(tmp_path / "other_name.tif")) == h
    changed = pixels.copy()
    changed[5, 7] += 1
    assert pixel_hash(changed) != h  # one pixel differs
    assert pixel_hash(np.zeros((8, 32), np.float32)) != pixel_hash(np.zeros((16, 16), np.float32))


def test_check_names_every_clashing_pair() -> None:
    test = {"cimat/images/7.png": "h7", "cimat/images/8.png": "h8"}
    check_no_test_images([("arcade/1.png", "h1"), ("arcade/2.png", "h2")], test, "arcade")  # disjoint
    with pytest.raises(LeakageError) as err:
        check_no_test_images([("arcade/1.png", "h1"), ("arcade/copy.tif", "h8")], test, "arcade")
    msg = str(err.value)
    assert msg.startswith("arcade: 1 pretraining image(s)")
    assert "arcade/copy.tif = test image cimat/images/8.png" in msg and "arcade/1.png" not in msg


def test_hashes_are_kept_in_the_cache(synth_dir: Path, tmp_path: Path) -> None:
    folder = _pretrain_folder(synth_dir, tmp_path, leak=True)
    cfg = PreprocessConfig(image_size=32)
    first = load_unlabeled(folder, cfg, cache_dir=tmp_path / "cache")
    again = load_unlabeled(folder, cfg, cache_dir=tmp_path / "cache")  # from the cache
    assert len(first.hashes) == 5 and again.hashes == first.hashes and again.sources == first.sources
    assert first.sources[-1] == str(folder / "arcade_17.tif")
    assert first.hashes[-1] == _test_split(synth_dir)[str(synth_dir / "images" / f"{TEST_IMAGE}.png")]


def test_run_pretrain_refuses_excluded_images_before_writing(synth_dir: Path, tmp_path: Path) -> None:
    folder = _pretrain_folder(synth_dir, tmp_path, leak=True)
    cfg = PretrainConfig(method="cmunet", data=str(folder), out=str(tmp_path / "run"), epochs=1, width=4)
    with pytest.raises(LeakageError, match=r"arcade_17\.tif = test image .*synth_0009\.png"):
        run_pretrain(cfg, progress=False, announce=None, exclude=_test_split(synth_dir))
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_finetune_refuses_a_run_pretrained_on_a_test_image(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "pre"
    leaky = _pretrain_folder(synth_dir, tmp_path, leak=True)
    args = ["pretrain", "--method", "cmunet", "--data", leaky, "--out", run, "--epochs", "1", *TINY]
    assert run_cli(args) == 0  # pretraining alone cannot know the test split; it records the hashes
    recorded = read_image_hashes(run)
    assert recorded is not None and len(recorded) == 5
    assert json.loads((run / HASH_FILE).read_text(encoding="utf-8"))["data"] == str(leaky)

    ft = tmp_path / "ft"
    ft_args = ["finetune", "--data", synth_dir, "--out", ft, "--pretrained", run, "--labeled", "5"]
    capsys.readouterr()
    assert run_cli([*ft_args, "--width", "4", "--image-size", "32", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "arcade_17.tif" in err and f"test image {synth_dir / 'images' / TEST_IMAGE}.png" in err
    assert not (ft / "config.yaml").exists()  # refused before training

    labeled = {s.name: s for s in load_dataset(synth_dir)}
    assert check_pretrained_images(run, labeled, ["synth_0015", "synth_0016"])  # disjoint test split
    with pytest.raises(LeakageError):
        check_pretrained_images(run / "model.safetensors", labeled, [TEST_IMAGE])  # a file in the run
    notes: list[str] = []
    assert not check_pretrained_images(tmp_path, labeled, [TEST_IMAGE], notes.append)  # nothing recorded
    assert notes and HASH_FILE in notes[0]


def _experiment(tmp_path: Path, synth_dir: Path, pretrain_data: Path) -> Path:
    cfg = {
        "labeled_data": str(synth_dir),
        "pretrain_data": str(pretrain_data),
        "methods": ["none", "mae"],
        "budgets": [2],
        "seeds": [0],
        "width": 4,
        "image_size": 32,
        "finetune": {"epochs": 1, "batch_size": 2, "min_steps_per_epoch": 1, "precision": "fp32"},
        "pretrain": {"epochs": 1, "batch_size": 4, "precision": "fp32"},
    }
    path = tmp_path / f"{pretrain_data.name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_experiment_refuses_an_external_folder_with_a_test_image(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from angioseg.experiment.config import load_experiment
    from angioseg.experiment.plan import make_plan
    from angioseg.experiment.runner import check_external_pretraining

    leaky = _pretrain_folder(synth_dir, tmp_path, leak=True)
    out = tmp_path / "study"
    capsys.readouterr()
    assert (
        run_cli(["experiment", _experiment(tmp_path, synth_dir, leaky), "--out", out, "--no-progress"]) == 2
    )
    err = capsys.readouterr().err
    assert "arcade_17.tif" in err and f"{TEST_IMAGE}.png" in err
    assert not (out / "cells").exists() and not (out / "pretrain").exists()  # nothing ran

    disjoint = _pretrain_folder(synth_dir, tmp_path, leak=False)
    cfg = load_experiment(_experiment(tmp_path, synth_dir, disjoint))
    samples = {s.name: s for s in load_dataset(synth_dir)}
    plan = make_plan(cfg, tmp_path / "study2", sorted(samples))
    assert TEST_IMAGE in plan.test_names
    check_external_pretraining(cfg, plan, samples, tmp_path / "study2")  # passes
    assert list((tmp_path / "study2" / "cache").glob("pretrain-*.npz"))  # read once, for the pretraining too
