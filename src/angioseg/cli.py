"""The ``angioseg`` command line. Each command is a thin wrapper: it builds a config and calls the library.

Sub-command groups of later features register themselves in :func:`_register`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType

from angioseg import __version__
from angioseg.errors import AngiosegError
from angioseg.terminal import fit_table, unwrap_help

app = typer.Typer(
    name="angioseg",
    help="Coronary artery segmentation when labels are scarce: fine-tune, segment, evaluate, synthesise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console(stderr=True)
out_console = Console()


def _version(value: bool) -> None:
    if value:
        print(f"angioseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """angioseg: coronary artery segmentation when labels are scarce."""


METRIC_COLUMNS = ("dice", "cldice", "iou", "mhd", "hd95", "add", "pcc", "ba_bias", "n")


def metrics_table(summary: dict[str, Any], title: str) -> RenderableType:
    """The summary metrics as a table that fits the terminal (see :func:`~angioseg.terminal.fit_table`)."""
    cells = [
        "-"
        if summary.get(k) is None
        else (f"{summary[k]:.3f}" if isinstance(summary[k], float) else str(summary[k]))
        for k in METRIC_COLUMNS
    ]
    return fit_table(title, METRIC_COLUMNS, [cells], out_console.width)


def report_failures(failed: list[tuple[str, str]]) -> None:
    if failed:
        console.print(f"[bold red]{len(failed)} input(s) failed:[/]")
        for name, why in failed:
            console.print(f"  {name}: {why}", markup=False, highlight=False)


def exit_on_failures(failed: list[tuple[str, str]]) -> None:
    """List the inputs that failed and exit with code 1 if there were any (good outputs are kept)."""
    report_failures(failed)
    if failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------------


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write images/ and masks/ into.")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Number of image/mask pairs.")] = 20,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed; image i depends only on (seed, i).")] = 0,
    catheter: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Probability that an image shows a catheter.")
    ] = 0.5,
    backgrounds: Annotated[
        Path | None,
        typer.Option(
            help="Folder of real unlabeled angiograms: draw the vessels on them (their own vessels removed), "
            "sized like annotated masks; for pretraining (builtin:xca_synth_pretrained was made so)."
        ),
    ] = None,
    background_removal: Annotated[
        str,
        typer.Option(
            help="With --backgrounds, how the frames' own vessels are removed: closing (the whole frame "
            "smoothed; how builtin:xca_synth_pretrained was made) or inpaint (only the vessels replaced, "
            "the real texture kept)."
        ),
    ] = "closing",
) -> None:
    """Write synthetic X-ray angiograms with exact vessel masks (branching, tapering vessel trees)."""
    import numpy as np
    from rich.progress import track

    from angioseg.data.io import list_image_files, write_png
    from angioseg.data.synthetic import SynthConfig, synthetic_angiogram
    from angioseg.data.synthetic_real import check_background, write_realistic_dataset

    check_background(background_removal)
    if backgrounds is None and background_removal != "closing":
        raise AngiosegError(f"--background-removal {background_removal} needs --backgrounds (real frames)")
    if backgrounds is not None:
        frames = list_image_files([backgrounds])
        write_realistic_dataset(
            out,
            frames,
            n,
            size=size,
            seed=seed,
            catheter_prob=catheter,
            progress=True,
            background=background_removal,
        )
        out_console.print(f"wrote {n} synthetic angiograms on {len(frames)} real backgrounds to {out}")
        return
    cfg = SynthConfig(size=size, catheter_prob=catheter)
    for i in track(range(n), description="synthesising", console=console, transient=True):
        image, mask = synthetic_angiogram(np.random.default_rng([seed, i]), cfg)
        write_png(out / "images" / f"synth_{i:04d}.png", image)
        write_png(out / "masks" / f"synth_{i:04d}.png", mask)
    out_console.print(f"wrote {n} synthetic angiograms to {out}/images and {out}/masks")


def _opt(help: str, default: object = None, *names: str) -> Any:
    """A Typer option whose unset value is None, with its effective default named in the help."""
    text = help if default is None else f"{help} (default: {default})"
    return typer.Option(*names, help=text, show_default=False)


@app.command()
def finetune(
    out: Annotated[
        Path, typer.Option("--out", help="Run folder (config, splits, logs, checkpoints, model, test).")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Dataset folder with images/ and masks/ (same file names); optional with --resume.",
            show_default=False,
        ),
    ] = None,
    labeled: Annotated[
        int | None, _opt("Number of labeled fine-tuning images (the label budget).", "all")
    ] = None,
    fraction: Annotated[
        float | None, _opt("Label budget as a fraction of all images (instead of --labeled).")
    ] = None,
    pretrained: Annotated[
        Path | None,
        _opt(
            "Run folder, checkpoint or builtin:NAME to start from; none = random initialisation.",
            "the preset's: builtin:xca_synth_pretrained for cpu, none for paper",
        ),
    ] = None,
    transfer: Annotated[
        str | None,
        _opt(
            "What to load from --pretrained: auto, encoder, encoder+decoder, or all (head included: "
            "continue training a segmentation model such as builtin:xca_vessels).",
            "auto",
        ),
    ] = None,
    preset: Annotated[
        str | None,
        _opt(
            "Settings for width, epochs, batch size, steps, lr and patience: cpu (all labels of a 40-image "
            "set in <= 15 min on 2 cores) or paper (the CM-UNet paper's GPU settings). Options given "
            "override it.",
            "cpu",
        ),
    ] = None,
    width: Annotated[
        int | None,
        _opt("UNet base width; 64 = the paper's 31 M-parameter network, 16 is fast on a CPU.", "preset"),
    ] = None,
    image_size: Annotated[int | None, _opt("Images are resized to this side (paper: 256).", 256)] = None,
    epochs: Annotated[int | None, _opt("Maximum epochs.", "preset")] = None,
    batch_size: Annotated[int | None, _opt("Batch size.", "preset")] = None,
    steps: Annotated[
        int | None, _opt("Minimum optimiser steps per epoch (small budgets cycle their images).", "preset")
    ] = None,
    lr: Annotated[float | None, _opt("Adam learning rate.", "preset")] = None,
    patience: Annotated[
        int | None, _opt("Early-stopping patience in epochs, on validation Dice.", "preset")
    ] = None,
    loss: Annotated[
        str | None,
        _opt("Training loss: dicece (Dice + cross-entropy) or dicecldice (+ soft-clDice).", "dicece"),
    ] = None,
    lr_schedule: Annotated[
        str | None,
        _opt(
            "Learning rate over the epochs: constant, or cosine (half a cosine from --lr down to ~0 "
            "at the last of --epochs).",
            "constant",
        ),
    ] = None,
    augment_policy: Annotated[
        str | None,
        _opt(
            "Training augmentations: paper (flips, rot90, noise, blur, intensity, low resolution) or "
            "strong (also any rotation, scale 0.8-1.25, gamma).",
            "paper",
        ),
    ] = None,
    unlabeled: Annotated[
        Path | None,
        _opt(
            "Folder of unlabeled angiograms for semi-supervised training (with --semi; never test images). "
            "--semi selftrain without it uses the --data images that have no mask."
        ),
    ] = None,
    semi: Annotated[
        str | None,
        _opt(
            "Semi-supervised method: selftrain (a first fine-tuning labels the unlabeled frames, a second "
            "learns from labels and pseudo-labels; twice the time), meanteacher (needs --unlabeled), auto "
            "(the cpu preset's default: selftrain when --data has images without a mask), or none."
        ),
    ] = None,
    mix: Annotated[
        Path | None,
        _opt(
            "Folder of extra labeled frames (images/ and masks/, e.g. from angioseg synth) mixed into every "
            "epoch's training draws; never test images. Validation stays on the real images."
        ),
    ] = None,
    mix_fraction: Annotated[
        float | None, _opt("Share of each epoch's training draws taken from --mix.", 0.5)
    ] = None,
    tta: Annotated[
        str | None,
        _opt("Test-time augmentation of the test report: none, flip (4 views) or d4 (8 views).", "flip"),
    ] = None,
    test: Annotated[float | None, _opt("Test split: fraction (<1) or count.", 0.2)] = None,
    test_fold: Annotated[
        int | None,
        _opt("Rotate the test split instead: fold K (0-4) of 5 disjoint folds covering every image once."),
    ] = None,
    val: Annotated[
        float | None, _opt("Validation split (chooses the best epoch), outside the label budget.", 0.1)
    ] = None,
    seed: Annotated[
        int | None, _opt("Seed of the validation/fine-tune draw, initialisation and augmentation.", 0)
    ] = None,
    groups: Annotated[
        Path | None,
        _opt(
            "CSV with columns name,group (e.g. the patient): each group stays in one split. The frames "
            "of one file always do."
        ),
    ] = None,
    kfold: Annotated[
        int | None, _opt("If >= 2, first choose lr and batch size by k-fold CV on the fine-tuning set.", 0)
    ] = None,
    precision: Annotated[
        str | None, _opt("auto (bf16 where the hardware has it), bf16 or fp32.", "auto")
    ] = None,
    devices: Annotated[
        str | None, _opt("Processes (CPU) or GPUs per node for Lightning: auto or a number.", "auto")
    ] = None,
    strategy: Annotated[
        str | None,
        _opt("Lightning strategy, e.g. ddp; --batch-size stays the batch of one step over all.", "auto"),
    ] = None,
    num_nodes: Annotated[int | None, _opt("Number of nodes (multi-node DDP).", 1)] = None,
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="Disable the paper's augmentations.")
    ] = False,
    vesselness: Annotated[
        bool,
        typer.Option(
            "--vesselness",
            help="Give the network a vesselness channel (multi-scale Hessian ridge filter, computed inside "
            "it) beside the image; from a checkpoint without one, its first-layer weights start at zero.",
        ),
    ] = False,
    config: Annotated[
        Path | None, _opt("YAML file of FinetuneConfig options; options given here override it.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out from its last checkpoint; a larger --epochs extends it.",
        ),
    ] = False,
) -> None:
    """Fine-tune a UNet on a few labeled angiograms with Dice + cross-entropy.

    The best epoch is chosen on a validation split that never overlaps the test split; the test split
    is scored with every metric of the CM-UNet study into RUN_DIR/test/. With --resume, the run's own
    config.yaml is used: a larger --epochs extends the run, and --patience and --tta may change; any
    other option given must match the stored run.
    """
    from dataclasses import replace

    from angioseg.config import from_dict, load_config, read_config_dict, to_dict
    from angioseg.train.finetune import FinetuneConfig, run_finetune
    from angioseg.train.presets import DEFAULT_PRESET, describe
    from angioseg.train.presets import resolve as resolve_preset

    if data is None and not resume:
        raise AngiosegError("finetune: --data is required (it may be omitted only with --resume)")
    stored = out / "config.yaml"
    # Options not given are taken from the run's config.yaml on --resume, from the defaults otherwise;
    # options given (also through --config) override them, and run_finetune refuses a resumed run
    # whose options differ from its stored ones (except a larger --epochs and --patience).
    scratch = pretrained is not None and str(pretrained).lower() == "none"
    given: dict[str, Any] = {
        "labeled": labeled,
        "fraction": fraction,
        "pretrained": None if pretrained is None or scratch else str(pretrained),
        "transfer": transfer,
        "width": width,
        "epochs": epochs,
        "batch_size": batch_size,
        "min_steps_per_epoch": steps,
        "lr": lr,
        "patience": patience,
        "test": test,
        "test_fold": test_fold,
        "loss": loss,
        "lr_schedule": lr_schedule,
        "augment_policy": augment_policy,
        "unlabeled": None if unlabeled is None else str(unlabeled),
        "semi": semi,
        "mix": None if mix is None else str(mix),
        "mix_fraction": mix_fraction,
        "tta": tta,
        "preset": preset if resume else None,
        "val": val,
        "seed": seed,
        "groups": None if groups is None else str(groups),
        "kfold": kfold,
        "precision": precision,
        "devices": devices,
        "strategy": strategy,
        "num_nodes": num_nodes,
    }
    from_file: dict[str, Any] = {}
    if config:
        load_config(FinetuneConfig, config)  # unknown or malformed options: an error naming the file
        from_file = read_config_dict(config)
    note = None
    if resume and stored.is_file():
        base = to_dict(load_config(FinetuneConfig, stored))
    else:
        name = preset or DEFAULT_PRESET
        chosen = {k: from_file.get(k) for k in ("width", "pretrained")}
        chosen.update({k: given[k] for k in ("width", "pretrained") if given[k] is not None})
        if scratch:
            chosen["pretrained"] = "none"
        values, note = resolve_preset(name, chosen)
        base = _merged(to_dict(FinetuneConfig()), {**values, "preset": name})
    base = _merged(base, from_file)
    cfg = from_dict(FinetuneConfig, base, str(config or stored))
    cfg = replace(
        cfg, data=str(data or cfg.data), out=str(out), **{k: v for k, v in given.items() if v is not None}
    )
    if scratch:
        cfg = replace(cfg, pretrained=None)
    if no_augment:
        cfg = replace(cfg, augment=False)
    if vesselness:
        cfg = replace(cfg, vesselness=True)
    if image_size is not None:
        cfg = replace(cfg, preprocess=replace(cfg.preprocess, image_size=image_size))
    from angioseg.train.distributed import process_rank
    from angioseg.train.finetune import auto_may_self_train

    if not resume and process_rank() == 0:
        line = describe(cfg.preset, to_dict(cfg), self_training=auto_may_self_train(cfg))
        console.print(line, highlight=False)
        if note:
            console.print(note, highlight=False)
    res = run_finetune(cfg, resume=resume, announce=lambda s: console.print(s))
    if res.rank != 0:  # DDP: rank 0 scored the test split and reports it
        return
    title = f"test split ({len(res.splits['test'])} images), best epoch {res.best_epoch}"
    out_console.print(metrics_table(res.summary, title))
    out_console.print(f"model: {res.run_dir / 'model.safetensors'}   test report: {res.run_dir / 'test'}")


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, nested mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@app.command()
def segment(
    inputs: Annotated[list[Path], typer.Argument(help="Image files, folders, DICOM files or cine runs.")],
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            help="Fine-tuning run folder, model .safetensors, or a bundled model builtin:NAME (angioseg models).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder: masks/, overlays/, cine/, vessels.csv.")],
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            help="Batched preprocessing at model resolution (resize mode) and, with the torch engine, "
            "channels_last + bf16 autocast.",
        ),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="Inference engine: torch, onnx (ONNX Runtime, fp32) or openvino (OpenVINO; bf16 with --fast "
            "on CPUs with native bf16, the fastest on Intel CPUs; pip install 'angioseg[openvino]')."
        ),
    ] = "torch",
    mode: Annotated[
        str,
        typer.Option(
            help="resize (to the model's square image size, as trained) or sliding (resized to the "
            "training scale keeping the aspect ratio, then Gaussian-weighted windows; for non-square frames)."
        ),
    ] = "resize",
    threshold: Annotated[float, typer.Option(help="Vessel probability threshold.")] = 0.5,
    tta: Annotated[
        str | None,
        _opt(
            "Test-time augmentation: none, flip (mean of 4 flipped views, ~4x the network time) or d4 "
            "(8 views: flips and quarter turns).",
            "flip; none with --fast",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Frames per network call.")] = 8,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default=False,
            help="Threads for the network (and torch's preprocessing) (default: with --fast and the onnx or "
            "openvino engine, one less than the cores, as a second thread decodes and preprocesses the "
            "next batch and a third writes the last; else all cores).",
        ),
    ] = None,
    no_overlay: Annotated[
        bool, typer.Option("--no-overlay", help="Do not write overlay PNGs or cine overlay videos.")
    ] = False,
    no_stats: Annotated[
        bool,
        typer.Option("--no-stats", help="Leave the vessel geometry columns of vessels.csv empty (faster)."),
    ] = False,
    skip_existing: Annotated[
        bool,
        typer.Option("--skip-existing", help="Resume an interrupted batch: keep masks already in --out."),
    ] = False,
) -> None:
    """Segment angiograms: a binary mask PNG and an overlay per image, and vessels.csv with vessel geometry.

    A cine run (multi-frame DICOM, TIFF or NPY) is streamed frame by frame and also gets
    cine/<file>.masks.tif (all its masks) and cine/<file>.overlay.mp4 (an animated GIF when PyAV,
    the 'video' extra, is not installed) instead of one overlay PNG per frame.
    """
    import torch

    from angioseg.infer.engines import DEFAULT_TTA, check_engine, check_tta, pipeline_threads
    from angioseg.predict import Segmenter, segment_inputs

    tta = check_tta(tta if tta is not None else "none" if fast else DEFAULT_TTA)
    threads = threads or (pipeline_threads() if fast and engine != "torch" else None)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        seg = Segmenter.from_checkpoint(
            model,
            fast=fast,
            mode=mode,
            threshold=threshold,
            engine=check_engine(engine),
            tta=tta,
            threads=threads,
        )
        res = segment_inputs(
            seg,
            inputs,
            out,
            overlays=not no_overlay,
            skip_existing=skip_existing,
            batch_size=batch_size,
            stats=not no_stats,
            warn=lambda line: console.print(
                f"warning: {line}", markup=False, highlight=False, soft_wrap=True
            ),
        )
    finally:
        torch.set_num_threads(before)  # as it was (the command may run inside another program)
    out_console.print(f"segmented {len(res.rows)} image(s) into {out}/masks; vessel table: {out}/vessels.csv")
    for path in res.outputs:
        out_console.print(f"cine output: {path}", highlight=False)
    exit_on_failures(res.failed)


@app.command()
def export(
    model: Annotated[
        Path, typer.Option("--model", help="Fine-tuning run folder, model .safetensors or builtin:NAME.")
    ],
    format: Annotated[str, typer.Option("--format", help="Graph format: onnx.")] = "onnx",
    out: Annotated[
        Path | None, _opt("Graph file to write.", "<model>.onnx beside the weights", "--out")
    ] = None,
) -> None:
    """Export a segmentation model as an ONNX graph, with its preprocessing contract in <graph>.json.

    segment --engine onnx then uses the graph beside the weights (when it matches them).
    """
    from angioseg.infer.export import export_model

    path = export_model(model, format, out)
    out_console.print(f"wrote {path} and its preprocessing contract {path}.json", highlight=False)


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Option("--pred", help="Folder of predicted masks.")],
    truth: Annotated[
        Path, typer.Option("--truth", help="Folder of true masks (or a dataset folder with masks/).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for metrics.csv, summary.json, bland_altman.png.")
    ],
) -> None:
    """Score predicted masks against true masks, pairing files by name.

    Suffixes are ignored when pairing: _mask/_pred/_seg on predictions, _gt/_mask/_label on truths.

    Per image: dice, iou, cldice, mhd, hd, hd95, add, diam_pred, diam_true, precision, recall,
    accuracy; across images: means, Pearson r of the diameters and Bland–Altman limits.
    """
    from angioseg.metrics.evaluate import evaluate_folders

    res = evaluate_folders(pred, truth, out, progress=True)
    out_console.print(metrics_table(res.summary, f"{len(res.rows)} image(s)"))
    if res.unmatched:
        console.print(
            f"{len(res.unmatched)} file(s) without a partner were skipped, e.g. {res.unmatched[:3]}"
        )
    out_console.print(f"report: {out}/metrics.csv, {out}/summary.json, {out}/bland_altman.png")
    exit_on_failures(res.failed)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo run and its outputs.")] = Path(
        "demo_output"
    ),
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs (8 steps of 8 images each).")] = 30,
    width: Annotated[int, typer.Option(help="UNet width.")] = 16,
) -> None:
    """Segment the bundled angiograms with the bundled model, then fine-tune on 5 of them and evaluate."""
    from angioseg.demo import run_demo

    summary = run_demo(out, epochs=epochs, width=width, console=out_console)
    out_console.print(metrics_table(summary, "demo: fine-tuned on 5 labels, held-out test images"))


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one line on stderr and exit code 2.

    Returns the exit code (Typer's own usage errors and ``--help`` keep their usual codes).
    """
    try:
        app(args=argv, prog_name="angioseg")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except AngiosegError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    return 0


def entry() -> None:
    sys.exit(main())


# Command groups that live beside their feature (pretraining, CUTS, CT, public datasets, experiments)
# register themselves on ``app`` when imported; a feature that is not installed is simply absent.
PLUGINS = (
    "angioseg.pretrain.cli",
    "angioseg.experiment.cli",
    "angioseg.public.cli",
    "angioseg.unsupervised.cli",
    "angioseg.cta.cli",
    "angioseg.zoo.cli",
    "angioseg.qca.cli",
    "angioseg.app.cli",
    "angioseg.train.distill_cli",
)


def _register() -> None:
    import importlib

    for mod in PLUGINS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if not (exc.name and mod.startswith(exc.name)):
                raise


_register()
unwrap_help(app)
