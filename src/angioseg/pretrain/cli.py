"""``angioseg pretrain`` and ``angioseg reconstructions`` (registered on :data:`angioseg.cli.app`).

Heavy imports (torch, Lightning) happen inside the commands so that ``angioseg --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from angioseg.cli import app, console, out_console, report_failures
from angioseg.errors import AngiosegError
from angioseg.pretrain import METHOD_NAMES


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``["mask_ratio=0.75", "loss_on=masked"]`` -> ``{"mask_ratio": 0.75, "loss_on": "masked"}`` (YAML values)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AngiosegError(f"--option expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


@app.command()
def pretrain(
    method: Annotated[
        str | None, typer.Option(help=f"Self-supervised method: {', '.join(METHOD_NAMES)}.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Folder of unlabeled angiograms (flat, or images/; masks are ignored)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder: config.yaml, logs/, checkpoints/, model.safetensors + model.json."),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Epochs; default: the paper's (cmunet 300, mae/genesis 256, spark 1600, moco 500)."
        ),
    ] = None,
    width: Annotated[
        int | None, typer.Option(help="UNet base width (default: 64, the paper's 31 M network; 16 for CPUs).")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Images are resized to this side, a multiple of 16 (default: 256).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per device and step (default: 16).")] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Peak learning rate; default: the method's recipe (scaled by batch/256 where the seed was)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of initialisation, views and masks (default: 0).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Use only the first N image files (sorted by name).")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Method option KEY=VALUE, repeatable (e.g. -o mask_ratio=0.75 -o loss_on=masked); "
            "see docs/pretraining.md.",
        ),
    ] = None,
    devices: Annotated[
        str | None, typer.Option(help="Devices per node for Lightning: auto, or a number (default: auto).")
    ] = None,
    num_nodes: Annotated[
        int | None, typer.Option(help="Number of nodes (multi-node DDP) (default: 1).")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="Lightning strategy, e.g. ddp (default: auto).")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="auto (bf16 where the hardware has it), bf16 or fp32.")
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(help="Data-loader worker processes (default: 0).")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Cache the preprocessed images here (saves ~0.25 s per 512 px image on reruns)."),
    ] = None,
    show_reconstructions: Annotated[
        int | None,
        typer.Option(
            help="After training, draw N input / masked / reconstruction rows to RUN_DIR/reconstructions.png."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML file of PretrainConfig options; command-line options override it."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out from its last checkpoint (its config; --epochs may extend it).",
        ),
    ] = False,
) -> None:
    """Self-supervised pretraining of the UNet on unlabeled angiograms (CM-UNet, MAE, Models Genesis, SparK, MoCo v2).

    Writes RUN_DIR/model.safetensors + model.json; fine-tune from it with
    [bold]angioseg finetune --pretrained RUN_DIR[/] (encoder and decoder, never the 1x1 head).
    """
    from dataclasses import replace

    from angioseg.config import load_config
    from angioseg.pretrain.run import PretrainConfig, run_pretrain

    cfg = load_config(PretrainConfig, config) if config else PretrainConfig()
    if out is None:
        raise AngiosegError("--out RUN_DIR is required")
    if not resume and (data is None and not cfg.data):
        raise AngiosegError("--data DIR is required (a folder of unlabeled images)")
    given: dict[str, Any] = {
        "method": method,
        "data": str(data) if data else None,
        "epochs": epochs,
        "width": width,
        "image_size": image_size,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "limit": limit,
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": strategy,
        "precision": precision,
        "num_workers": num_workers,
        "cache_dir": str(cache_dir) if cache_dir else None,
        "show_reconstructions": show_reconstructions,
    }
    cfg = replace(cfg, out=str(out), **{k: v for k, v in given.items() if v is not None})
    if option:
        cfg = replace(cfg, options={**cfg.options, **parse_options(option)})
    if cfg.method not in METHOD_NAMES:
        raise AngiosegError(f"--method must be one of {', '.join(METHOD_NAMES)}, got {cfg.method!r}")
    res = run_pretrain(cfg, resume=resume, announce=lambda s: console.print(s, highlight=False))
    if res.rank != 0:  # DDP: the other processes stay quiet
        return
    p = res.parameters
    out_console.print(
        f"{res.method}: {res.images} images, {res.epochs} epochs ({res.steps} steps) in "
        f"{res.train_seconds:.0f} s, final loss {res.final_loss if res.final_loss is None else round(res.final_loss, 4)}; "
        f"{p['trainable'] / 1e6:.2f} M trainable + {p['momentum'] / 1e6:.2f} M momentum parameters",
        highlight=False,
        soft_wrap=True,
    )
    out_console.print(f"weights: {res.checkpoint}", highlight=False, soft_wrap=True)
    if res.reconstructions:
        out_console.print(f"reconstructions: {res.reconstructions}", highlight=False, soft_wrap=True)
    out_console.print(
        f"fine-tune with: angioseg finetune --pretrained {res.run_dir} --data DIR --out DIR", highlight=False
    )
    report_failures(res.failed)


@app.command()
def reconstructions(
    run: Annotated[Path, typer.Argument(help="Pretraining run folder (or its model.safetensors).")],
    data: Annotated[Path, typer.Option(help="Folder of images to reconstruct (the first N by name).")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Number of images (rows).")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the masks / corruptions.")] = 0,
) -> None:
    """Draw input | masked or corrupted input | reconstruction for a pretraining run (paper's Figure 6).

    Works for cmunet, mae, genesis and spark (moco is contrastive and reconstructs nothing).
    """
    from angioseg.pretrain.recon import reconstructions_from_run

    path = reconstructions_from_run(run, data, out, n=n, seed=seed)
    out_console.print(f"wrote {path}", highlight=False, soft_wrap=True)
