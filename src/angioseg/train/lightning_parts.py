"""Two Lightning parts of every Trainer of :func:`angioseg.train.trainer.make_trainer`.

- :class:`ResumableEarlyStopping`: early stopping whose patience is the one given on ``--resume``.
- :class:`AtomicCheckpointIO`: checkpoints renamed into place, never left half-written.

Both are module-level classes so that a Trainer pickles (``--strategy ddp_spawn`` sends it to its
worker processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import EarlyStopping

from angioseg.utils import atomic_path


class ResumableEarlyStopping(EarlyStopping):
    """Lightning's ``EarlyStopping`` whose patience stays the one given here after a ``--resume``.

    Lightning restores the patience stored in the checkpoint with the rest of the callback state
    (wait count, best score), so a resumed run could not be given a new ``--patience``.
    """

    @property
    def state_key(self) -> str:  # Lightning's own key, so that older checkpoints restore too
        return f"EarlyStopping{dict(monitor=self.monitor, mode=self.mode)!r}"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # Lightning does not restore ``should_stop``: a run resumed after it had stopped early
        # (e.g. cut while scoring its test split) would train one more epoch before stopping again
        if self.wait_count >= self.patience:
            trainer.should_stop = True


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` whose saves are renamed into place.

    Lightning writes through fsspec into a temporary file in the system's temp folder and moves it
    onto the checkpoint: where that folder is another file system (a tmpfs ``/tmp``), the move is a
    copy, and a run killed during it (a SIGKILL, a session's end) leaves a truncated ``last.ckpt``
    that ``--resume`` cannot read. Here the file is written next to the checkpoint (a hidden
    ``.last.ckpt.*.tmp.ckpt``) and replaces it in one ``os.replace``: the old checkpoint or the new
    one, never half of one, also after a power loss (``atomic_path(durable=True)``).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("storage_options are not supported by angioseg's checkpoint writer")
        with atomic_path(path, durable=True) as tmp:
            torch.save(checkpoint, tmp)


def remove_partial_checkpoints(folder: Path) -> None:
    """Remove the temporary files of saves that were killed part-way (``.*.tmp.ckpt``)."""
    for p in folder.glob(".*.tmp.ckpt"):
        p.unlink(missing_ok=True)
