"""The shared Trainer factory: a resumed run that had stopped early trains on with a new patience."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from angioseg.train.trainer import make_trainer


class _Flat(pl.LightningModule):
    """A linear model whose validation Dice never improves (so early stopping counts every epoch)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)
        self.epochs_trained: list[int] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.lin(batch[0]).pow(2).mean()

    def on_train_epoch_end(self) -> None:
        self.epochs_trained.append(self.current_epoch)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_dice", 0.5)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(run: Path, epochs: int, patience: int, resume: bool) -> list[int]:
    data = DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=2)
    module = _Flat()
    trainer = make_trainer(
        run, epochs, patience=patience, precision="fp32", progress=False, accelerator="cpu"
    )
    trainer.fit(module, data, data, ckpt_path=str(run / "checkpoints" / "last.ckpt") if resume else None)
    return module.epochs_trained


def test_resume_with_a_larger_patience_trains_on_after_an_early_stop(tmp_path: Path) -> None:
    # Epoch 0 sets the best score, epoch 1 does not improve it: patience 1 stops after epoch 1.
    assert _fit(tmp_path, 10, patience=1, resume=False) == [0, 1]
    # resumed with the same patience (a run cut after training, e.g. while scoring): no epoch more
    assert _fit(tmp_path, 10, patience=1, resume=True) == []
    # Lightning restores the callback's stored patience (1) with its wait count (1); the new patience
    # (3) must win, so epochs 2 and 3 run before the wait count reaches 3 (a restored patience of 1
    # would stop after epoch 2).
    assert _fit(tmp_path, 10, patience=3, resume=True) == [2, 3]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 3
    assert any(k.startswith("EarlyStopping{") and v["patience"] == 3 for k, v in ckpt["callbacks"].items())


def test_a_checkpoint_save_cut_midway_leaves_the_previous_last_ckpt_whole(
    tmp_path: Path, monkeypatch: Any
) -> None:
    assert _fit(tmp_path, 2, patience=0, resume=False) == [0, 1]
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    written: list[Any] = []

    def cut_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        written.append(f)  # Lightning's own writer saves into memory (a BytesIO), then copies from /tmp
        if isinstance(f, (str, Path)):
            Path(f).write_bytes(before[:100])  # half a file, then the process is "killed"
        raise KeyboardInterrupt

    import angioseg.train.lightning_parts as parts

    monkeypatch.setattr(parts.torch, "save", cut_save)
    io = make_trainer(tmp_path, 1, progress=False, accelerator="cpu").strategy.checkpoint_io
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 9}, last)
    # written beside last.ckpt (so the rename cannot become a copy across file systems), then lost
    assert len(written) == 1 and isinstance(written[0], Path)
    assert written[0].parent == last.parent and written[0] != last
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    monkeypatch.undo()
    io.save_checkpoint({"epoch": 9}, last)
    assert torch.load(last, weights_only=False) == {"epoch": 9}
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    # a save killed outright (SIGKILL: no clean-up) leaves its temporary file; the next run removes it
    (last.parent / ".last.ckpt.abc123.tmp.ckpt").write_bytes(before[:100])
    make_trainer(tmp_path, 1, progress=False, accelerator="cpu")
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_checkpoint_reaches_the_disk_before_it_is_renamed_into_place(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Durable saves: the new file is fsync'ed before the rename and the folder after it (else a power
    loss can leave last.ckpt renamed but empty); ordinary atomic writes skip both."""
    import os
    import stat

    import angioseg.utils as utils

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(utils.os, "fsync", fsync)
    monkeypatch.setattr(utils.os, "replace", replace)
    io = make_trainer(tmp_path, 1, progress=False, accelerator="cpu").strategy.checkpoint_io
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True, exist_ok=True)
    io.save_checkpoint({"epoch": 3}, last)
    assert events == ["fsync-file", "replace", "fsync-dir"]
    assert torch.load(last, weights_only=False) == {"epoch": 3}
    events.clear()
    with utils.atomic_open(tmp_path / "report.txt") as fh:  # reports and masks: no fsync
        fh.write("x")
    assert events == ["replace"] and (tmp_path / "report.txt").read_text() == "x"

    def no_folder_fsync(fd: int) -> None:  # some network file systems refuse it: the save stands
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(utils.os, "fsync", no_folder_fsync)
    io.save_checkpoint({"epoch": 4}, last)
    assert torch.load(last, weights_only=False) == {"epoch": 4}


def test_a_trainer_pickles_for_spawned_workers(tmp_path: Path) -> None:
    """--strategy ddp_spawn pickles the Trainer into its workers: no part of it may be a local class."""
    import pickle

    trainer = make_trainer(tmp_path, 1, patience=3, progress=False, accelerator="cpu")
    again = pickle.loads(pickle.dumps(trainer))
    assert type(again.strategy.checkpoint_io).__name__ == "AtomicCheckpointIO"
    assert [type(c).__name__ for c in again.callbacks if "Stopping" in type(c).__name__] == [
        "ResumableEarlyStopping"
    ]


def test_the_atomic_checkpoint_writer_is_left_out_on_tpus(monkeypatch: Any) -> None:
    """Lightning's XLA strategies refuse any checkpoint writer but their own."""
    from lightning.pytorch.accelerators import XLAAccelerator

    from angioseg.train.trainer import _on_xla

    assert _on_xla("tpu") and not _on_xla("cpu") and not _on_xla("gpu")
    monkeypatch.setattr(XLAAccelerator, "is_available", staticmethod(lambda: True))
    assert _on_xla("auto") and not _on_xla("cpu")


def test_cosine_schedule_follows_the_epochs_and_stretches_to_a_resumed_total(tmp_path: Path) -> None:
    """--lr-schedule cosine: lr = lr0 * (1 + cos(pi * epoch / total)) / 2 at each epoch; resumed with a
    larger --epochs, the rest of the curve follows the new total (not the stored one, not a restart)."""
    import math

    from angioseg.models.unet import UNet
    from angioseg.train.module import SegmentationModule

    torch.manual_seed(0)
    batch = {"image": torch.randn(2, 1, 16, 16), "mask": (torch.rand(2, 1, 16, 16) > 0.5).long()}
    data = DataLoader([{k: v[i] for k, v in batch.items()} for i in range(2)], batch_size=2)
    seen: list[float] = []

    class Lr(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    def fit(epochs: int, schedule: str, resume: bool) -> None:
        module = SegmentationModule(
            UNet(in_channels=1, out_channels=2, width=4).config(), lr=1e-3, lr_schedule=schedule
        )
        trainer = make_trainer(
            tmp_path / schedule,
            epochs,
            patience=99,
            precision="fp32",
            progress=False,
            accelerator="cpu",
            callbacks=[Lr()],
        )
        last = tmp_path / schedule / "checkpoints" / "last.ckpt"
        trainer.fit(module, data, data, ckpt_path=str(last) if resume else None)

    def cos(e: int, total: int) -> float:
        return 1e-3 * 0.5 * (1 + math.cos(math.pi * e / total))

    fit(4, "cosine", resume=False)
    assert seen == pytest.approx([cos(e, 4) for e in range(4)])
    seen.clear()
    fit(8, "cosine", resume=True)
    assert seen == pytest.approx([cos(e, 8) for e in range(4, 8)])
    seen.clear()
    fit(3, "constant", resume=False)
    assert seen == pytest.approx([1e-3] * 3)
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        fit(1, "step", resume=False)
