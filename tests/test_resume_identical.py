"""A run stopped after an epoch and resumed with ``--resume`` ends with the same weights as the run left alone.

Each training command (finetune with augmentations, pretrain, cta train, unsupervised fit) runs
three epochs uninterrupted, then again "killed" at the start of epoch 2 (an exception from a
callback: nothing is written on the way out, as with ``kill -9`` after epoch 1's checkpoint) and
resumed. The random streams travel in the checkpoint (:mod:`angioseg.train.rng`); without them the
data order and augmentation draws of epoch 2 differ and so do the weights (checked once below).
``bench/kill_resume.py`` does the same with real SIGKILLs at random moments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

import angioseg.train.trainer as trainer_mod
from angioseg.cta import training as cta_training
from angioseg.train import finetune as finetune_mod
from tests.conftest import run_cli


class _Killed(Exception):
    """Stands for the machine going down (no checkpoint is written on the way out)."""


class _KillAt(pl.Callback):
    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise _Killed


def _patch_trainer(monkeypatch: pytest.MonkeyPatch, probe: _KillAt, drop_streams: bool = False) -> None:
    real = trainer_mod.make_trainer

    def make(*a: Any, **k: Any) -> Any:
        trainer = real(*a, **{**k, "callbacks": [*k.get("callbacks", ()), probe]})
        if drop_streams:  # what resuming did before the streams were checkpointed
            from angioseg.train.rng import RandomStreams

            trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, RandomStreams)]
        return trainer

    monkeypatch.setattr(trainer_mod, "make_trainer", make)
    monkeypatch.setattr(finetune_mod, "make_trainer", make)
    monkeypatch.setattr(cta_training, "make_trainer", make)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """The weights after the last epoch (``model.safetensors`` may hold an earlier, best epoch)."""
    assert (run / "model.safetensors").exists()  # the run finished
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2
    return ckpt["state_dict"]


def _killed_and_resumed(
    args: list[Any], run: Path, monkeypatch: pytest.MonkeyPatch, drop_streams: bool = False
) -> dict[str, torch.Tensor]:
    probe = _KillAt(2)
    _patch_trainer(monkeypatch, probe, drop_streams)
    with pytest.raises(_Killed):
        run_cli([*args, "--out", run])
    assert not (run / "model.safetensors").exists()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1  # epochs 0 and 1 done
    probe.epoch = None
    assert run_cli([*args, "--out", run, "--resume"]) == 0
    return _weights(run)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


FINETUNE = ["--labeled", "6", "--width", "4", "--image-size", "48", "--batch-size", "2", "--steps", "2",
            "--epochs", "3", "--precision", "fp32", "--patience", "10"]  # fmt: skip


def test_finetune_with_augmentations_resumes_to_the_same_weights(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args: list[Any] = ["finetune", "--data", synth_dir, *FINETUNE]
    assert run_cli([*args, "--out", tmp_path / "ref"]) == 0
    ref = _weights(tmp_path / "ref")
    resumed = _killed_and_resumed(args, tmp_path / "cut", monkeypatch)
    assert _same(ref, resumed)
    # The check has teeth: without the streams in the checkpoint epoch 2 draws other batches.
    without = _killed_and_resumed(args, tmp_path / "old", monkeypatch, drop_streams=True)
    assert not _same(ref, without)


def test_pretrain_mae_resumes_to_the_same_weights(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args: list[Any] = ["pretrain", "--method", "mae", "--data", synth_dir / "images", "--epochs", "3",
                       "--width", "4", "--image-size", "48", "--batch-size", "4", "--limit", "8",
                       "--precision", "fp32", "--devices", "1"]  # fmt: skip
    assert run_cli([*args, "--out", tmp_path / "ref"]) == 0
    assert _same(_weights(tmp_path / "ref"), _killed_and_resumed(args, tmp_path / "cut", monkeypatch))


def test_cta_train_3d_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "cta"
    synth = ["cta", "synth", "--out", data, "-n", "3", "--spacing", "1.0", "--shape", "16", "32", "32"]
    assert run_cli(synth) == 0
    args: list[Any] = ["cta", "train", "--data", data, "--dims", "3", "--crop", "16", "--crop-depth", "8",
                       "--epochs", "3", "--samples-per-epoch", "4", "--min-size", "5", "--width", "4",
                       "--batch-size", "2", "--val", "1", "--precision", "fp32", "--no-progress"]  # fmt: skip
    assert run_cli([*args, "--out", tmp_path / "ref"]) == 0
    assert _same(_weights(tmp_path / "ref"), _killed_and_resumed(args, tmp_path / "cut", monkeypatch))


def test_unsupervised_fit_resumes_to_the_same_weights(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args: list[Any] = ["unsupervised", "fit", "--data", synth_dir / "images", "--epochs", "3",
                       "--patience", "10", "--batch-size", "4", "--crop", "32", "--limit", "8",
                       "--precision", "fp32", "--no-progress"]  # fmt: skip
    assert run_cli([*args, "--out", tmp_path / "ref"]) == 0
    assert _same(_weights(tmp_path / "ref"), _killed_and_resumed(args, tmp_path / "cut", monkeypatch))


def test_streams_nested_deep_in_a_semi_supervised_loader_are_kept() -> None:
    """SemiDataset wraps the labeled dataset: the OneOf's noise stream sits 9 levels below the loader
    (a depth cap of 8 left it out, and a resumed ``--semi`` run drew other noise than the run left alone)."""
    import numpy as np
    from torch.utils.data import DataLoader

    from angioseg.semi.data import SemiDataset
    from angioseg.train.arrays import ArrayDataset
    from angioseg.train.finetune import FinetuneConfig, train_transform
    from angioseg.train.rng import RandomStreams

    transform = train_transform(FinetuneConfig(augment=True))
    images = [np.zeros((8, 8), np.float32)] * 2
    loader = DataLoader(SemiDataset(ArrayDataset(images, images, transform=transform), images, 0))
    noise = transform.transforms[-1].transforms[-1].rand_gaussian_noise.R  # OneOf -> RandGaussianNoised
    streams = RandomStreams()
    streams.roots.append(loader)
    kept = [id(s) for s in streams.streams()]
    assert id(noise) in kept
    assert id(loader.dataset.rng) in kept and id(transform.R) in kept
