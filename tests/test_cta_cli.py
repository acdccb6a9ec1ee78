"""End-to-end ``angioseg cta synth | train | segment | evaluate`` on tiny phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from angioseg.cta import training
from angioseg.cta.volume_io import read_volume
from angioseg.train.trainer import make_trainer
from conftest import run_cli

TINY = ["--crop", "32", "--crop-depth", "16", "--width", "4", "--batch-size", "2", "--val", "1"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cta_data")
    assert (
        run_cli(["cta", "synth", "--out", out, "-n", "3", "--spacing", "1.0", "--shape", "16", "32", "32"])
        == 0
    )
    return out


def test_train_3d_with_channel_then_segment_and_evaluate(phantoms: Path, tmp_path: Path) -> None:
    run = tmp_path / "run3d"
    args = ["cta", "train", "--data", phantoms, "--out", run, "--dims", "3", "--centerline-channel", *TINY]
    assert run_cli([*args, "--max-steps", "3", "--min-size", "5", "--precision", "fp32"]) == 0
    meta = json.loads((run / "model.json").read_text(encoding="utf-8"))
    assert meta["model"]["in_channels"] == 2 and meta["cta"]["channel"] == "binary"
    assert json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["steps"] == 3
    assert run_cli(args) == 2  # the run folder exists: a clear error, not an overwrite

    seg = tmp_path / "seg"
    assert (
        run_cli(["cta", "segment", phantoms / "images", "--model", run, "--out", seg, "--keep-largest", "0"])
        == 0
    )
    masks = sorted(p.name for p in (seg / "masks").iterdir())
    assert masks == ["phantom_000.nrrd", "phantom_001.nrrd", "phantom_002.nrrd"]
    assert len(list((seg / "centerlines").iterdir())) == 3  # the first-pass prior, one per volume
    assert read_volume(seg / "masks" / masks[0]).shape == read_volume(phantoms / "images" / masks[0]).shape

    ev = tmp_path / "eval"
    assert run_cli(["cta", "evaluate", "--pred", seg, "--truth", phantoms, "--out", ev]) == 0
    summary = json.loads((ev / "summary.json").read_text(encoding="utf-8"))
    assert summary["n"] == 3
    assert 0.0 <= summary["dice"] <= 1.0 and summary["hd95"] >= 0.0
    assert (
        (ev / "metrics.csv")
        .read_text(encoding="utf-8")
        .startswith("name,dice,precision,recall,accuracy,hd95,msd,hd,cldice")
    )


class _Killed(Exception):
    """Stands for the machine going down mid-run (no checkpoint is written on the way out)."""


class _Probe(pl.Callback):
    """Records the epochs each fit trains and the weights it starts from; "kills" the run at ``kill_at``."""

    def __init__(self, kill_at: int | None) -> None:
        self.kill_at = kill_at
        self.epochs: list[int] = []
        self.start: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.epochs, self.start = [], {k: v.detach().clone() for k, v in module.state_dict().items()}

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.kill_at:
            raise _Killed
        self.epochs.append(trainer.current_epoch)


def test_train_2d_grid_resumes_a_run_killed_mid_way(
    phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run2d"
    args = ["cta", "train", "--data", phantoms, "--out", run, "--dims", "2", "--sampling", "grid", *TINY]
    args += ["--epochs", "3", "--samples-per-epoch", "2", "--no-progress"]  # one step per epoch
    probe = _Probe(kill_at=2)
    monkeypatch.setattr(
        training, "make_trainer", lambda *a, **k: make_trainer(*a, **{**k, "callbacks": [probe]})
    )
    with pytest.raises(_Killed):  # killed after epochs 0 and 1
        run_cli(args)
    assert probe.epochs == [0, 1] and not (run / "model.safetensors").exists()
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 1 and saved["global_step"] == 2
    probe.kill_at = None
    capsys.readouterr()
    assert run_cli([*args, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "it/s" not in captured.out + captured.err  # no Lightning progress bar with --no-progress
    # The resumed fit starts from the saved weights and trains only the missing epoch 2. (It is not
    # bit-identical to an uninterrupted run: the sampler's, the patch dataset's and dropout's random
    # states are not in the checkpoint, so epoch 2 draws other patches.)
    assert probe.epochs == [2]
    assert probe.start.keys() == saved["state_dict"].keys()
    assert all(torch.equal(probe.start[k], v) for k, v in saved["state_dict"].items())
    assert json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["steps"] == 3
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 2
    assert json.loads((run / "model.json").read_text(encoding="utf-8"))["model"]["spatial_dims"] == 2


def test_bad_dataset_is_a_one_line_error(tmp_path: Path) -> None:
    assert run_cli(["cta", "train", "--data", tmp_path, "--out", tmp_path / "r"]) == 2
    assert run_cli(["cta", "evaluate", "--pred", tmp_path, "--truth", tmp_path, "--out", tmp_path / "e"]) == 2


def test_a_batch_of_one_patch_at_a_one_voxel_bottleneck_is_refused_before_anything_is_written(
    phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 16 x 16 x 8 crop pools down to one voxel; BatchNorm cannot train on one patch there."""
    base = ["cta", "train", "--data", phantoms, "--dims", "3", "--crop", "16", "--crop-depth", "8",
            "--width", "4", "--val", "1", "--epochs", "1", "--min-size", "5", "--precision", "fp32",
            "--no-progress"]  # fmt: skip
    capsys.readouterr()
    assert run_cli([*base, "--out", tmp_path / "a", "--batch-size", "1", "--samples-per-epoch", "4"]) == 2
    assert "single voxel at the UNet's bottleneck" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    # batches of 2, 2 and then 1: the last batch of each epoch would fail the same way
    assert run_cli([*base, "--out", tmp_path / "b", "--batch-size", "2", "--samples-per-epoch", "5"]) == 2
    assert "the last training batch" in capsys.readouterr().err
    assert run_cli([*base, "--out", tmp_path / "c", "--batch-size", "2", "--samples-per-epoch", "4"]) == 0


def test_without_samples_per_epoch_a_last_batch_of_one_patch_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --samples-per-epoch an epoch is every planned patch: 4 patches in batches of 3 end with one."""
    data = tmp_path / "five"
    assert (
        run_cli(["cta", "synth", "--out", data, "-n", "5", "--spacing", "1.0", "--shape", "16", "32", "32"])
        == 0
    )
    run = tmp_path / "r"
    args = ["cta", "train", "--data", data, "--out", run, "--dims", "3", "--crop", "16", "--crop-depth", "8",
            "--width", "4", "--val", "1", "--epochs", "1", "--min-size", "5", "--precision", "fp32",
            "--no-progress", "--batch-size", "3"]  # fmt: skip
    capsys.readouterr()
    assert run_cli(args) == 2  # was a ValueError from BatchNorm in the first epoch's last batch
    err = capsys.readouterr().err
    assert "the last training batch" in err and "(4 patch(es) per epoch, 3 per batch" in err
    assert not (run / "model.safetensors").exists()
