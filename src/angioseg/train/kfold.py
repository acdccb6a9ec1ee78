"""Learning rate and batch size by k-fold cross-validation on the fine-tuning images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from angioseg.errors import AngiosegError
from angioseg.train.trainer import make_trainer
from angioseg.utils import seed_everything, write_json

if TYPE_CHECKING:
    from angioseg.train.finetune import FinetuneConfig


def kfold_search(
    cfg: FinetuneConfig,
    data: tuple[list[np.ndarray], list[np.ndarray]],
    run_dir: Path,
    progress: bool,
    truth: Sequence[np.ndarray] | None = None,
    unlabeled: list[np.ndarray] | None = None,
    mix: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
) -> tuple[float, int, list[dict[str, Any]]]:
    """Pick (lr, batch size) by mean best validation Dice over ``cfg.kfold`` folds of the fine-tuning set.

    ``data`` holds the images and their training masks; a fold's held-out images are scored against
    ``truth`` (the masks as drawn, same order; default: the training masks). Each fold trains as the
    run itself will: with the ``unlabeled`` frames of a semi-supervised method or distillation and
    the extra labeled frames of ``--mix`` or of self-training (its pseudo-labels, made by round 1,
    which saw every fine-tuning image: a fold's held-out images are then not wholly unseen, alike
    for every setting compared).

    A fresh model (re-loaded from the pretrained weights) is trained for every fold and setting;
    the authors' code kept training one model across folds, so later folds had seen their own
    validation images.
    """
    from sklearn.model_selection import KFold

    from angioseg.train.finetune import _loaders, _new_module

    n = len(data[0])
    scored = list(data[1] if truth is None else truth)
    k = min(cfg.kfold, n)
    if k < 2:
        raise AngiosegError(f"--kfold needs at least 2 fine-tuning images, got {n}")
    rows: list[dict[str, Any]] = []
    # a fold trains for kfold_epochs: a semi-supervised method's ramp-up follows that length
    fold_cfg = replace(cfg, epochs=cfg.kfold_epochs or cfg.epochs)
    folds = list(KFold(k, shuffle=True, random_state=cfg.seed).split(np.arange(n)))
    for lr in cfg.kfold_lrs:
        for bs in cfg.kfold_batch_sizes:
            scores = []
            for f, (tr, va) in enumerate(folds):
                seed_everything(cfg.seed + f)
                module, _ = _new_module(fold_cfg, lr, None)
                sub = run_dir / "kfold" / f"lr{lr:g}_bs{bs}_fold{f}"
                tl, vl = _loaders(
                    cfg,
                    ([data[0][i] for i in tr], [data[1][i] for i in tr]),
                    ([data[0][i] for i in va], [scored[i] for i in va]),
                    bs,
                    unlabeled,
                    None,
                    mix,
                )
                trainer = make_trainer(
                    sub,
                    cfg.kfold_epochs or cfg.epochs,
                    patience=cfg.patience,
                    precision=cfg.precision,
                    progress=progress,
                )
                trainer.fit(module, tl, vl)
                best = trainer.checkpoint_callback.best_model_score  # type: ignore[union-attr]
                scores.append(float(best) if best is not None else 0.0)
            rows.append(
                {"lr": lr, "batch_size": bs, "mean_val_dice": float(np.mean(scores)), "folds": scores}
            )
    best_row = max(rows, key=lambda r: float(r["mean_val_dice"]))
    write_json(run_dir / "kfold.json", {"folds": k, "results": rows, "chosen": best_row})
    return float(best_row["lr"]), int(best_row["batch_size"]), rows
