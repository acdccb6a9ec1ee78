"""Lightning DDP on this CPU: ``--devices 2 --strategy ddp`` (gloo) against one process.

The 2-process runs are the real command line (``python -m angioseg ... --devices 2 --strategy
ddp`` in a subprocess): Lightning's launcher re-runs that command for rank 1, exactly as a user's
run does (``ddp_spawn`` would instead pickle the module and data loaders into spawned workers, a
path users of the CLI never take, and spawning from inside pytest re-imports the test module). The
1-process references run in-process (no second start-up). Tolerances: docs/scaling.md.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from angioseg.errors import AngiosegError
from angioseg.train.distributed import eval_sampler, per_process_batch, shard
from tests.conftest import run_cli

SRC = Path(__file__).resolve().parents[1] / "src"
# |val_loss(2 processes) - val_loss(1 process)| per epoch, without augmentation: the only difference
# is BatchNorm's statistics over batch/2 images per process (measured: docs/scaling.md).
VAL_LOSS_TOL = 0.02
# relative difference of the per-epoch MAE loss (measured 1.2 % and 8.0 % in epochs 1 and 2): besides
# BatchNorm, the random masks differ (one process draws 4 per step, two processes 2 each, alike)
PRETRAIN_LOSS_TOL = 0.15


def _trainer(world: int, rank: int) -> SimpleNamespace:
    return SimpleNamespace(world_size=world, global_rank=rank)


# --------------------------------------------------------------------------- sharding, no processes


def test_the_processes_batches_together_are_the_one_process_batches() -> None:
    data = list(range(24))

    def batches(world: int, rank: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(7)
        trainer = _trainer(world, rank)
        loader = DataLoader(
            data,  # type: ignore[arg-type]
            batch_size=per_process_batch(8, trainer),
            sampler=shard(RandomSampler(data, generator=gen), trainer),  # type: ignore[arg-type]
            generator=gen,
            drop_last=True,
        )
        return [b.tolist() for epoch in range(2) for b in loader]  # two epochs: fresh draws each

    one = batches(1, 0)
    r0, r1 = batches(2, 0), batches(2, 1)
    assert len(r0) == len(r1) == len(one) == 6  # the same number of optimiser steps
    assert [sorted(a + b) for a, b in zip(r0, r1, strict=True)] == [sorted(b) for b in one]
    assert all(not set(a) & set(b) for a, b in zip(r0, r1, strict=True))  # no sample on both
    assert one[:3] != one[3:]  # the second epoch is a new order


def test_validation_items_are_split_without_repetition() -> None:
    data = list(range(5))
    parts = [list(eval_sampler(data, _trainer(2, r)) or []) for r in (0, 1)]  # type: ignore[arg-type]
    assert sorted(parts[0] + parts[1]) == data  # Lightning's default would pad 5 to 6 (one twice)
    assert eval_sampler(data, _trainer(1, 0)) is None  # type: ignore[arg-type]
    with pytest.raises(AngiosegError, match="1 item.*2 processes"):
        eval_sampler([0], _trainer(2, 0))  # type: ignore[arg-type]
    with pytest.raises(AngiosegError, match="--batch-size 3 cannot be split over 2"):
        per_process_batch(3, _trainer(2, 0))


# --------------------------------------------------------------------------- real 2-process runs


def _ddp(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.update(OMP_NUM_THREADS="1", COLUMNS="200")
    cmd = [sys.executable, "-m", "angioseg", *args, "--devices", "2", "--strategy", "ddp"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _epochs(run: Path, key: str) -> list[float]:
    """``key`` per epoch from the run's CSV log (one log folder: no other process wrote one)."""
    assert [p.name for p in (run / "logs").iterdir()] == ["version_0"]
    rows = list(csv.DictReader((run / "logs" / "version_0" / "metrics.csv").open(encoding="utf-8")))
    return [float(r[key]) for r in rows if r.get(key)]


def _steps(run: Path) -> int:
    return int(
        torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    )


def _files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "events.out" not in p.name}


@pytest.fixture(scope="module")
def ft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from angioseg.data.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("ddp_synth")
    write_synthetic_dataset(out, 10, size=48, seed=0)
    return out


def test_finetune_on_two_processes_matches_one_process(ft_data: Path, tmp_path: Path) -> None:
    flags = ["--data", str(ft_data), "--labeled", "6", "--val", "2", "--width", "4", "--epochs", "2"]
    flags += ["--batch-size", "4", "--steps", "3", "--image-size", "32", "--no-augment"]
    flags += ["--precision", "fp32", "--pretrained", "none"]
    assert run_cli(["finetune", *flags, "--out", tmp_path / "one"]) == 0
    two = tmp_path / "two"
    proc = _ddp(["finetune", *flags, "--out", str(two)])
    assert proc.stdout.count("test split (") == 1  # one report: rank 1 stays quiet
    # sharded, not duplicated: each process took batch/2 of the same 3 draws per step, so the run
    # made as many optimiser steps as one process (a duplicated epoch would make 2 x 3 per epoch)
    assert _steps(two) == _steps(tmp_path / "one") == 2 * 3
    assert _files(two) == _files(tmp_path / "one")  # rank 0 wrote everything once, nobody else
    for a, b in zip(_epochs(two, "val_loss"), _epochs(tmp_path / "one", "val_loss"), strict=True):
        assert abs(a - b) < VAL_LOSS_TOL


def test_cta_train_on_two_processes_matches_one_process(tmp_path: Path) -> None:
    data = tmp_path / "cta"
    assert (
        run_cli(["cta", "synth", "--out", data, "-n", "3", "--spacing", "1.0", "--shape", "16", "32", "32"])
        == 0
    )
    flags = ["--data", str(data), "--dims", "3", "--crop", "16", "--crop-depth", "8", "--epochs", "2"]
    # 2 patches per process: BatchNorm needs more than one value at the 1 x 1 x 1 bottleneck
    flags += ["--samples-per-epoch", "8", "--batch-size", "4", "--width", "4", "--min-size", "5"]
    flags += ["--precision", "fp32", "--no-progress"]
    assert run_cli(["cta", "train", *flags, "--out", tmp_path / "one"]) == 0
    two = tmp_path / "two"
    proc = _ddp(["cta", "train", *flags, "--out", str(two)])
    assert proc.stdout.count("best epoch") == 1
    assert _steps(two) == _steps(tmp_path / "one") == 2 * 8 // 4  # 8 draws per epoch, 4 per step
    assert _files(two) == _files(tmp_path / "one")
    for key in ("val_loss", "val_dice"):
        for a, b in zip(_epochs(two, key), _epochs(tmp_path / "one", key), strict=True):
            assert abs(a - b) < VAL_LOSS_TOL, key


def test_pretrain_on_two_processes_matches_one_process_with_the_same_global_batch(
    ft_data: Path, tmp_path: Path
) -> None:
    # pretrain's --batch-size is per process (Lightning's convention): 2 x 2 against 1 x 4 images
    flags = ["--method", "mae", "--data", str(ft_data / "images"), "--epochs", "2", "--width", "4"]
    flags += ["--image-size", "32", "--precision", "fp32"]
    assert (
        run_cli(["pretrain", *flags, "--batch-size", "4", "--devices", "1", "--out", tmp_path / "one"]) == 0
    )
    two = tmp_path / "two"
    proc = _ddp(["pretrain", *flags, "--batch-size", "2", "--out", str(two)])
    assert proc.stdout.count("weights:") == 1
    assert _steps(two) == _steps(tmp_path / "one") == 2 * (10 // 4)  # each process half of every batch
    assert _files(two) == _files(tmp_path / "one")
    a, b = _epochs(two, "loss_epoch"), _epochs(tmp_path / "one", "loss_epoch")
    assert len(a) == len(b) == 2 and all(
        abs(x - y) < PRETRAIN_LOSS_TOL * y for x, y in zip(a, b, strict=True)
    )
