"""``angioseg unsupervised fit | segment | evaluate``: CUTS, fully unsupervised segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from angioseg.cli import _opt, app, console, exit_on_failures, out_console, report_failures

unsupervised_app = typer.Typer(
    name="unsupervised",
    help="Fully unsupervised segmentation (CUTS): train a patch encoder on unlabeled images, cluster its "
    "pixel embeddings at every scale, pick the vessel clusters without labels. See docs/unsupervised.md.",
    no_args_is_help=True,
)
app.add_typer(unsupervised_app, name="unsupervised")

CHANNEL_HELP = "Colour to gray: gray (luma), red, green or blue (use green for fundus photographs)."


@unsupervised_app.command()
def fit(
    data: Annotated[
        Path,
        typer.Option("--data", help="Folder of unlabeled images (or a dataset with images/; masks ignored)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder: config, splits, logs, checkpoints, model.")],
    channel: Annotated[str | None, _opt(CHANNEL_HELP, "gray")] = None,
    setting: Annotated[
        str | None,
        _opt("Published loss setting: cuts2022 (λ 0.01, τ 0.5) or cuts2024 (λ 0.001, τ 0.1).", "cuts2022"),
    ] = None,
    contrastive: Annotated[
        str | None, _opt("ntxent (standard NT-Xent) or ratio (the CUTS-2022 code's ratio of sums).", "ntxent")
    ] = None,
    normalise: Annotated[
        str | None,
        _opt(
            "Encoder input: global ([-1, 1], as CUTS) or local (background removed by local contrast "
            "normalisation).",
            "local",
        ),
    ] = None,
    epochs: Annotated[int | None, _opt("Maximum epochs (CUTS: 200).", 200)] = None,
    patience: Annotated[
        int | None, _opt("Early stopping patience on validation loss (CUTS: 10).", 10)
    ] = None,
    batch_size: Annotated[int | None, _opt("Crops per batch (CUTS: 16).", 16)] = None,
    crop: Annotated[int | None, _opt("Training crop side in pixels (CUTS trains on 128 x 128).", 128)] = None,
    lr: Annotated[float | None, _opt("AdamW learning rate (CUTS: 1e-3).", 1e-3)] = None,
    seed: Annotated[int | None, _opt("Seed of the split, crops, anchors and initialisation.", 0)] = None,
    limit: Annotated[int | None, _opt("Use at most this many image files.", "all")] = None,
    precision: Annotated[str | None, _opt("auto (bf16 where the CPU has it), bf16 or fp32.", "auto")] = None,
    config: Annotated[
        Path | None, _opt("YAML file of FitConfig options; options given here override it.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="Show Lightning's progress bar (turn off for logs and batch jobs).")
    ] = True,
) -> None:
    """Train the CUTS encoder (4 x conv5, 128-d pixel embeddings) on unlabeled images. No label is read."""
    from dataclasses import replace

    from angioseg.config import load_config
    from angioseg.unsupervised.fit import FitConfig, run_fit

    cfg = load_config(FitConfig, config) if config else FitConfig()
    given: dict[str, Any] = {
        "channel": channel, "setting": setting, "contrastive": contrastive, "normalise": normalise,
        "epochs": epochs, "patience": patience, "batch_size": batch_size, "crop": crop, "lr": lr,
        "seed": seed, "limit": limit, "precision": precision,
    }  # fmt: skip
    cfg = replace(cfg, data=str(data), out=str(out), **{k: v for k, v in given.items() if v is not None})
    res = run_fit(cfg, resume=resume, progress=progress, announce=lambda s: console.print(s))
    loss = "-" if res.best_val_loss is None else f"{res.best_val_loss:.4f}"
    out_console.print(
        f"trained on {res.images} image(s) in {res.train_seconds:.0f} s; best epoch {res.best_epoch}, "
        f"validation loss {loss}; model: {res.run_dir / 'model.safetensors'}"
    )
    report_failures(res.skipped)


@unsupervised_app.command()
def segment(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    model: Annotated[
        Path, typer.Option("--model", help="Run folder of 'unsupervised fit' (or its model file).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: masks/, labels/ (PNG + .npz), figures/, baselines/.")
    ],
    channel: Annotated[str | None, typer.Option(help=CHANNEL_HELP + " Default: as in training.")] = None,
    roi: Annotated[
        Path | None,
        typer.Option(
            help="Folder of region-of-interest masks named like the images (e.g. DRIVE's field of view); "
            "outside it nothing is clustered or segmented."
        ),
    ] = None,
    clusters: Annotated[
        int, typer.Option(help="Spectral k-means K (CUTS: 10); 0 picks K by the eigengap.")
    ] = 10,
    landmarks: Annotated[
        int, typer.Option(help="Feature-space landmarks the pixels are quantised to (the speed-up).")
    ] = 1000,
    vessel_map: Annotated[
        str,
        typer.Option(
            help="Where the vessel mask comes from: spread (the rule on the landmark clusters, spread "
            "over the landmark graph; the default), kmeans (the spectral k-means map), landmarks (the "
            "rule on the landmark clusters alone) or persistent. Every segment run saves all four."
        ),
    ] = "spread",
    no_baselines: Annotated[
        bool, typer.Option("--no-baselines", help="Skip Frangi + Otsu and intensity k-means.")
    ] = False,
    no_figure: Annotated[
        bool, typer.Option("--no-figure", help="Do not draw the coarse-to-fine figure.")
    ] = False,
    fp32: Annotated[bool, typer.Option("--fp32", help="Embed in fp32 instead of bf16 autocast.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo images that already have labels/<name>.npz.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of landmarks and k-means.")] = 0,
) -> None:
    """Segment images without labels: multi-scale label maps, persistent structures, a vessel mask, baselines."""
    from dataclasses import replace

    from angioseg.config import save_config
    from angioseg.unsupervised.fit import load_encoder
    from angioseg.unsupervised.outputs import segment_inputs
    from angioseg.unsupervised.pipeline import VESSEL_MAPS, SegmentConfig

    if vessel_map not in VESSEL_MAPS:
        raise typer.BadParameter(
            f"must be one of {', '.join(VESSEL_MAPS)}, not {vessel_map!r}", param_hint="--vessel-map"
        )
    enc, meta = load_encoder(model)
    base = SegmentConfig()
    cfg = replace(
        base, landmarks=landmarks, vessel_map=vessel_map, baselines=not no_baselines, fast=not fp32,
        seed=seed, normalise=str(meta.get("normalise", "global")),
        sigma_frac=float(meta.get("sigma_frac", base.sigma_frac)),
        spectral=replace(base.spectral, n_clusters=clusters),
    )  # fmt: skip
    save_config(out / "config.yaml", cfg)
    res = segment_inputs(
        enc, inputs, out, cfg, channel or str(meta.get("channel", "gray")), roi, not no_figure, overwrite,
        announce=lambda s: console.print(s),
    )  # fmt: skip
    msg = f"segmented {len(res.rows)} image(s) into {out}"
    if res.skipped:
        msg += f" ({len(res.skipped)} already done, kept; --overwrite redoes them)"
    out_console.print(msg + f"; masks in {out}/masks, label maps in {out}/labels")
    exit_on_failures(res.failed)


@unsupervised_app.command()
def evaluate(
    seg: Annotated[Path, typer.Option("--seg", help="Output folder of 'unsupervised segment'.")],
    truth: Annotated[
        Path, typer.Option("--truth", help="Dataset folder with masks/ (or a folder of masks).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Report folder: summary.csv/json, one folder per method.")
    ],
) -> None:
    """Score CUTS and the baselines: label-free results, and ORACLE upper bounds that read the true masks.

    Scored inside the region of interest given to 'segment'. The ORACLE rows choose clusters by looking at
    the ground truth (as the CUTS paper did) and are upper bounds, not results.
    """
    from angioseg.terminal import fit_table
    from angioseg.unsupervised.evaluation import TABLE_COLUMNS, evaluate_segmentations, selection_of

    rep = evaluate_segmentations(seg, truth, out)
    rows = [
        [m, selection_of(m), *(f"{s[k]:.3f}" for k in TABLE_COLUMNS), str(int(s["n"]))]
        for m, s in rep.summary.items()
    ]
    columns = ("method", "selection", *TABLE_COLUMNS, "n")
    title = f"unsupervised segmentation vs {truth}"
    out_console.print(fit_table(title, columns, rows, out_console.width, key=0))
    if rep.unmatched:
        console.print(
            f"{len(rep.unmatched)} segmentation(s) without a true mask were skipped, e.g. {rep.unmatched[:3]}"
        )
    out_console.print(f"report: {out}/summary.csv, {out}/summary.json")
    exit_on_failures(rep.failed)
