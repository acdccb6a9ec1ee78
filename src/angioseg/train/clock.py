"""Training time kept across ``--resume``: a run's ``train_seconds`` counts every piece, not the last.

:class:`TrainClock`, a callback that :func:`angioseg.train.trainer.make_trainer` adds to every
Trainer, stores the seconds trained so far in each checkpoint and takes them back when ``--resume``
restores one. A run killed after its last checkpoint loses the time since that checkpoint, as it
loses the training done in it.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl


class TrainClock(pl.Callback):
    """Seconds of training of a run, all of its pieces (``seconds()``)."""

    def __init__(self) -> None:
        self.before = 0.0  # the pieces before this one (from the checkpoint resumed)
        self.start: float | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        """Training seconds so far: the earlier pieces plus this fit's."""
        return self.before + (time.perf_counter() - self.start if self.start is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict.get("seconds", 0.0))


def train_clock(trainer: Any) -> TrainClock:
    """The trainer's :class:`TrainClock` (every trainer of ``make_trainer`` has one).

    Raises:
        LookupError: a trainer built without it.
    """
    for cb in trainer.callbacks:
        if isinstance(cb, TrainClock):
            return cb
    raise LookupError("this Trainer has no TrainClock (build it with angioseg.train.trainer.make_trainer)")
