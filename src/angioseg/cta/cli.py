"""``angioseg cta synth|train|segment|evaluate``: coronary CT angiography commands (registered on the main app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from angioseg.cli import app, console, exit_on_failures, out_console

cta_app = typer.Typer(
    help="Coronary CT angiography: 3D volumes, centerline ROI crops and channel, 2D/3D UNets.",
    no_args_is_help=True,
)
app.add_typer(cta_app, name="cta")


@cta_app.command()
def synth(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write images/, labels/ and centerlines/ into.")
    ],
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Number of phantoms.")] = 4,
    centerline: Annotated[
        Path | None,
        typer.Option(
            help="Real centerline (.npy, N x 3 world mm, concatenated paths) for the trees to follow, e.g. "
            "../shared/data/ct_centerline/orcascore_case_centerlines.npy; random trees without it."
        ),
    ] = None,
    spacing: Annotated[
        float, typer.Option(help="Isotropic voxel size in mm (tests: 2-2.5; demo: 0.8).")
    ] = 0.8,
    margin: Annotated[float, typer.Option(help="mm of background around the tree.")] = 10.0,
    fov: Annotated[
        float | None, typer.Option(help="In-plane field of view in mm (default: the tree's box plus margin).")
    ] = None,
    shape: Annotated[
        tuple[int, int, int], typer.Option(help="D H W of random-tree phantoms (ignored with --centerline).")
    ] = (48, 64, 64),
    seed: Annotated[int, typer.Option(help="Phantom i depends only on (seed, i).")] = 0,
    start: Annotated[int, typer.Option(help="Index of the first phantom (to add a disjoint test set).")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="nrrd (as ASOCA), nifti or mha.")] = "nrrd",
) -> None:
    """Write CT-like phantoms (heart, aorta, fat, lungs, calcium, noise, blur) with exact lumen labels.

    Existing complete phantoms are kept, so an interrupted run can be restarted with the same command.
    """
    from rich.progress import track

    from angioseg.cta.phantom import PhantomConfig, write_phantoms
    from angioseg.errors import AngiosegError

    if fmt not in ("nrrd", "nifti", "mha"):
        raise AngiosegError(f"--format must be nrrd, nifti or mha, got {fmt!r}")
    cfg = PhantomConfig(spacing=spacing, margin=margin, fov=fov, shape=shape)
    for i in track(range(start, start + n), description="rendering", console=console, transient=True):
        write_phantoms(out, 1, cfg, seed=seed, centerline=centerline, fmt=fmt, start=i)
    out_console.print(f"wrote {n} phantom(s) to {out}/images, {out}/labels, {out}/centerlines")


@cta_app.command()
def train(
    data: Annotated[
        Path, typer.Option("--data", help="Dataset folder: images/, labels/, optional centerlines/.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Run folder (config, splits, logs, checkpoints, model).")
    ],
    dims: Annotated[
        int | None, typer.Option(help="2 (slice-wise UNet) or 3 (volumetric UNet). [default: 3]")
    ] = None,
    sampling: Annotated[
        str | None,
        typer.Option(
            help="Training patches: centerline (= dbscan: DBSCAN + merged centroids, the seed's method), "
            "kmeans, or grid (tiles with a label voxel). [default: centerline]"
        ),
    ] = None,
    centerline_channel: Annotated[
        bool | None,
        typer.Option(
            "--centerline-channel/--no-centerline-channel",
            help="Add the centerline as a second input channel. [default: no]",
        ),
    ] = None,
    channel_kind: Annotated[
        str | None,
        typer.Option(
            help="binary (1 on the centerline, the seed's code) or bright (CT brightened there). [default: binary]"
        ),
    ] = None,
    prior_dropout: Annotated[
        float | None,
        typer.Option(
            help="Fraction of patches trained with an empty channel (for the first pass). [default: 0.5]"
        ),
    ] = None,
    centerline_source: Annotated[
        str | None, typer.Option(help="auto (file, else label skeleton), file, or label. [default: auto]")
    ] = None,
    crop: Annotated[
        int | None, typer.Option(help="In-plane patch side in voxels. [default: 128, the seed's]")
    ] = None,
    crop_depth: Annotated[
        int | None, typer.Option(help="3D patch depth in slices. [default: 32, the seed's]")
    ] = None,
    eps: Annotated[
        float | None, typer.Option(help="DBSCAN radius in voxels. [default: 5, the seed's]")
    ] = None,
    closeness: Annotated[
        float | None,
        typer.Option(help="Merge centroids closer than this, voxels. [default: 50 in 2D, 64 in 3D]"),
    ] = None,
    width: Annotated[
        int | None, typer.Option(help="UNet base width. [default: 32, the seed's 32..512]")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs. [default: 100]")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many optimiser steps. [default: -1, no limit]")
    ] = None,
    samples_per_epoch: Annotated[
        int | None,
        typer.Option(help="Patches drawn (with replacement) per epoch. [default: each patch once]"),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Patches per batch. [default: 8]")] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate. [default: 4e-4, the seed's]")] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="Early-stopping patience in epochs on val_loss. [default: 30, the seed's]"),
    ] = None,
    val: Annotated[
        float | None, typer.Option(help="Validation volumes: fraction (<1) or count. [default: 0.2]")
    ] = None,
    normalise: Annotated[
        str | None,
        typer.Option(help="global (the seed's ASOCA z-score), minmax or volume. [default: global]"),
    ] = None,
    hu_min: Annotated[float | None, typer.Option(help="Clip HU below this first. [default: -1024]")] = None,
    hu_max: Annotated[float | None, typer.Option(help="Clip HU above this first. [default: 3071]")] = None,
    min_size: Annotated[
        int | None, typer.Option(help="Post-processing: smallest kept component in voxels. [default: 100]")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of splits, initialisation and sampling. [default: 36, the seed's]"),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="auto (bf16 for 2D where the hardware has it, fp32 for 3D on CPU), bf16 or fp32."),
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option(
            help="Processes (CPU) or GPUs per node for Lightning: auto or a number. [default: auto]"
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="Lightning strategy, e.g. ddp; --batch-size stays the batch of one step over all. [default: auto]"
        ),
    ] = None,
    num_nodes: Annotated[
        int | None, typer.Option(help="Number of nodes (multi-node DDP). [default: 1]")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML of CTATrainConfig options (see a run's config.yaml); options given here override it."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out from its last checkpoint (its config; --devices, --strategy "
            "and --num-nodes may differ).",
        ),
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="Show Lightning's progress bar (turn off for logs and batch jobs).")
    ] = True,
) -> None:
    """Train a 2D or 3D UNet (focal + Dice, AdamW) on centerline-ROI or grid patches of CT volumes."""
    from dataclasses import replace

    from angioseg.config import load_config
    from angioseg.cta.training import CTATrainConfig, run_train

    cfg = load_config(CTATrainConfig, config) if config else CTATrainConfig()
    given: dict[str, Any] = {
        "dims": dims,
        "sampling": "dbscan" if sampling == "centerline" else sampling,
        "prior_dropout": prior_dropout,
        "centerline_source": centerline_source,
        "crop": crop,
        "depth": crop_depth,
        "eps": eps,
        "closeness": closeness,
        "width": width,
        "epochs": epochs,
        "max_steps": max_steps,
        "samples_per_epoch": samples_per_epoch,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "val": val,
        "min_size": min_size,
        "seed": seed,
        "precision": precision,
        "devices": devices,
        "strategy": strategy,
        "num_nodes": num_nodes,
    }
    if centerline_channel is not None or channel_kind is not None:
        on = centerline_channel if centerline_channel is not None else cfg.channel != "none"
        given["channel"] = (
            (channel_kind or (cfg.channel if cfg.channel != "none" else "binary")) if on else "none"
        )
    intensity: dict[str, Any] = {"normalise": normalise, "hu_min": hu_min, "hu_max": hu_max}
    cfg = replace(
        cfg,
        data=str(data),
        out=str(out),
        **{k: v for k, v in given.items() if v is not None},
        intensity=replace(cfg.intensity, **{k: v for k, v in intensity.items() if v is not None}),
    )
    res = run_train(cfg, resume=resume, progress=progress, announce=lambda s: console.print(s))
    if res.rank != 0:  # DDP: rank 0 reports
        return
    out_console.print(
        f"best epoch {res.best_epoch} (val_loss {res.best_val_loss}), {res.train_seconds:.0f} s; "
        f"model: {res.run_dir / 'model.safetensors'}"
    )


@cta_app.command()
def segment(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Volumes (.nrrd, .nii.gz, .mha), DICOM series folders or folders of them."),
    ],
    model: Annotated[
        Path, typer.Option("--model", help="CT run folder (angioseg cta train --out) or model .safetensors.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder: masks/, centerlines/, segment.csv.")],
    centerlines: Annotated[
        Path | None,
        typer.Option(
            help="Folder of <case>.csv/.npy centerlines to use as the prior instead of the model's first pass."
        ),
    ] = None,
    threshold: Annotated[float, typer.Option(help="Vessel probability threshold.")] = 0.5,
    min_size: Annotated[
        int | None, typer.Option(help="Smallest kept component in voxels (default: the model's).")
    ] = None,
    keep_largest: Annotated[
        int,
        typer.Option(
            help="Keep only this many largest components (0: all above --min-size; -1: the model's)."
        ),
    ] = -1,
    overlap: Annotated[float, typer.Option(help="Sliding-window overlap (0-1).")] = 0.25,
    fast: Annotated[bool, typer.Option("--fast", help="bf16 autocast (faster on CPUs with bf16).")] = False,
    save_prob: Annotated[bool, typer.Option("--save-prob", help="Also write probabilities x 1000.")] = False,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Skip volumes whose mask exists.")
    ] = False,
) -> None:
    """Segment whole CT volumes: sliding windows, centerline prior from a first pass, small islands removed.

    Masks are written in each input's format and geometry (a DICOM series gives a DICOM series).
    """
    from angioseg.cta.infer import CTSegmenter
    from angioseg.cta.pipeline import segment_volumes

    seg = CTSegmenter.from_checkpoint(
        model,
        threshold=threshold,
        min_size=min_size,
        keep_largest=None if keep_largest == 0 else keep_largest,
        fast=fast,
        overlap=overlap,
    )
    res = segment_volumes(seg, inputs, out, centerlines, save_prob=save_prob, skip_existing=skip_existing)
    out_console.print(f"segmented {len(res.rows)} volume(s) into {out}/masks; table: {out}/segment.csv")
    exit_on_failures(res.failed)


@cta_app.command()
def evaluate(
    pred: Annotated[
        Path, typer.Option("--pred", help="Predicted masks (a folder, or a segment --out with masks/).")
    ],
    truth: Annotated[
        Path, typer.Option("--truth", help="Labels (a folder, or a dataset folder with labels/).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics.csv and summary.json.")],
) -> None:
    """Per-volume Dice, precision, recall, accuracy, HD95 / mean surface distance / HD in mm, and 3D clDice."""
    from angioseg.cta.metrics3d import VOLUME_METRICS
    from angioseg.cta.pipeline import evaluate_volumes
    from angioseg.terminal import fit_table

    res = evaluate_volumes(pred, truth, out)
    cells = [f"{res.summary[k]:.3f}±{res.summary[k + '_std']:.3f}" for k in VOLUME_METRICS]
    title = f"{res.summary['n']} volume(s), mean ± sd"
    out_console.print(fit_table(title, VOLUME_METRICS, [cells], out_console.width))
    if res.summary["unmatched"]:
        console.print(
            f"{len(res.summary['unmatched'])} volume(s) without a partner skipped, e.g. {res.summary['unmatched'][:3]}"
        )
    out_console.print(f"report: {out}/metrics.csv, {out}/summary.json")
    exit_on_failures(res.failed)
