"""``angioseg distill``: a narrow student from a wide teacher (registered on :data:`angioseg.cli.app`).

The run is a fine-tuning run (:func:`angioseg.train.finetune.run_finetune`: splits, best epoch on
validation, model export, test report) whose module is :class:`angioseg.train.distill.DistillModule`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from angioseg.cli import app, console, metrics_table, out_console
from angioseg.errors import AngiosegError


def teacher_test_dice(teacher: str) -> float | None:
    """The test Dice a teacher recorded: a bundled model's card value, or a run's ``test/summary.json``."""
    from angioseg.train.checkpoint import read_checkpoint

    zoo = read_checkpoint(teacher)[1].get("zoo") or {}
    if zoo.get("test_dice") is not None:
        return float(zoo["test_dice"])
    summary = Path(teacher) / "test" / "summary.json"
    try:
        return float(json.loads(summary.read_text(encoding="utf-8"))["dice"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def distill_config(teacher: str, data: Path, out: Path, **options: Any) -> Any:
    """A :class:`~angioseg.train.finetune.FinetuneConfig` for distilling ``teacher``: its preprocessing,
    a student from scratch, ``options`` (None = default) on top."""
    from angioseg.data.preprocess import PreprocessConfig
    from angioseg.models.unet import UNet
    from angioseg.train.checkpoint import load_model
    from angioseg.train.distill import INITS, slim_problem
    from angioseg.train.finetune import FinetuneConfig

    _, meta = load_model(teacher)  # a clear error for a missing or non-segmentation teacher
    cfg = FinetuneConfig(
        data=str(data),
        out=str(out),
        teacher=teacher,
        preset="distill",
        patience=40,
        epochs=100,
        preprocess=PreprocessConfig.from_dict(meta.get("preprocess")),
        vesselness=bool(meta["model"].get("vesselness")),  # the student sees what its teacher sees
    )
    cfg = replace(cfg, **{k: v for k, v in options.items() if v is not None})
    if cfg.distill_init not in INITS:
        raise AngiosegError(f"--init must be one of {', '.join(INITS)}, got {cfg.distill_init!r}")
    if cfg.distill_init == "teacher":
        sigmas = meta["model"].get("vesselness") if cfg.vesselness else None
        student = UNet(
            in_channels=1, out_channels=2, width=cfg.width, depth=cfg.depth, vesselness=sigmas
        ).config()
        problem = slim_problem(student, meta["model"])
        if problem:
            raise AngiosegError(f"--teacher {teacher}: {problem} (--init scratch)")
    return cfg


@app.command()
def distill(
    teacher: Annotated[
        str, typer.Option("--teacher", help="Teacher: run folder, .safetensors or builtin:NAME.")
    ],
    data: Annotated[Path, typer.Option("--data", help="Labeled dataset folder (images/ and masks/).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder of the student (as for finetune).")],
    unlabeled: Annotated[
        Path | None,
        typer.Option(help="Folder of unlabeled frames that learn the teacher's answer (never test images)."),
    ] = None,
    unlabeled_limit: Annotated[int, typer.Option(help="Read at most this many unlabeled files.")] = 300,
    width: Annotated[int, typer.Option(help="Student UNet base width (the teacher's is usually 16).")] = 8,
    depth: Annotated[int, typer.Option(help="Student UNet levels.")] = 4,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 100,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (validation Dice).")] = 40,
    batch_size: Annotated[int, typer.Option(help="Labeled images per batch (+ as many unlabeled).")] = 8,
    steps: Annotated[int, typer.Option(help="Minimum optimiser steps per epoch.")] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    weight: Annotated[
        float, typer.Option(help="Weight of the distillation (KL) term beside Dice + CE.")
    ] = 1.0,
    temperature: Annotated[float, typer.Option(help="Distillation temperature.")] = 1.0,
    init: Annotated[
        str,
        typer.Option(help="Student start: teacher (the teacher slimmed to --width; same depth) or scratch."),
    ] = "teacher",
    test: Annotated[float | None, typer.Option(help="Test split: fraction (<1) or count.")] = None,
    test_fold: Annotated[
        int | None, typer.Option(help="Test fold K of 5 (use the teacher's: builtin:xca_vessels is fold 0).")
    ] = None,
    val: Annotated[float | None, typer.Option(help="Validation split (the teacher's: --val 4).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the draw, initialisation and augmentation.")] = 0,
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32.")] = "auto",
) -> None:
    """Distil a wide teacher into a narrow student: the student learns the labels and the teacher's
    soft probabilities (on the labeled training images and optional unlabeled frames).

    Use the teacher's split (same --data, --test-fold, --val) so the student is scored on the
    teacher's test images; a teacher that recorded a test image among its own is refused.
    """
    from angioseg.train.finetune import run_finetune

    cfg = distill_config(
        teacher,
        data,
        out,
        unlabeled=None if unlabeled is None else str(unlabeled),
        unlabeled_limit=unlabeled_limit,
        width=width,
        depth=depth,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        min_steps_per_epoch=steps,
        lr=lr,
        distill_weight=weight,
        distill_temperature=temperature,
        distill_init=init,
        test=test,
        test_fold=test_fold,
        val=val,
        seed=seed,
        precision=precision,
    )
    res = run_finetune(cfg, announce=lambda s: console.print(s, highlight=False))
    title = f"student test split ({len(res.splits['test'])} images), best epoch {res.best_epoch}"
    out_console.print(metrics_table(res.summary, title))
    recorded = teacher_test_dice(teacher)
    if recorded is not None and "dice" in res.summary:
        diff = float(res.summary["dice"]) - recorded
        out_console.print(
            f"student Dice {res.summary['dice']:.4f}, teacher's recorded test Dice {recorded:.4f} "
            f"(difference {diff:+.4f}; compare on the same split)",
            highlight=False,
        )
    out_console.print(f"student: {res.run_dir / 'model.safetensors'}   ({res.train_seconds:.0f} s training)")
