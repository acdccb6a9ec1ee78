"""``angioseg cta train``: a 2D or 3D UNet on centerline-ROI or grid patches of CT volumes.

:func:`run_train` does, in one run folder:

1. split the labeled volumes into training and validation (``splits.json``, written once);
2. prepare each volume (intensity, label, centerline from ``centerlines/`` or the label's skeleton);
3. plan the patches (:func:`angioseg.cta.sampling.plan_boxes`) and write their count per volume;
4. train with focal + Dice, AdamW, gradient clipping, early stopping on the validation loss (on
   patches planned the same way), keeping ``checkpoints/last.ckpt`` for ``--resume``;
5. export the best weights as ``model.safetensors`` + ``model.json`` (with a ``cta`` section that
   tells inference the dims, crop, channel and post-processing).

Defaults are the seed's (``seed_repositories_notes.md`` §2): widths 32..512, crops 128 / 32 x 128 x
128, DBSCAN eps 5, merge 50 (2D) / 64 (3D), lr 4e-4, weight decay 0.05, clip 1.0, patience 30,
seed 36. The seed's batch size is a required argument with no documented value; 8 (2D) is ours.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from angioseg.config import load_config, save_config
from angioseg.cta.dataset import CENTERLINE_SOURCES, Case, PatchDataset, find_cases, load_case
from angioseg.cta.intensity import IntensityConfig
from angioseg.cta.losses import SEED_DICE_WEIGHT, SEED_FOCAL_WEIGHT, seed_class_weights
from angioseg.cta.module import CTAModule
from angioseg.cta.sampling import METHODS, Box, plan_boxes
from angioseg.data.splits import SplitSpec, load_or_make_splits
from angioseg.errors import AngiosegError
from angioseg.models.unet import UNet, count_parameters, set_memory_format
from angioseg.train.checkpoint import save_run_model
from angioseg.train.distributed import eval_sampler, parse_devices, per_process_batch, process_rank, shard
from angioseg.train.finetune import _check_run_dir
from angioseg.train.trainer import make_trainer
from angioseg.utils import seed_everything, write_json


@dataclass
class CTATrainConfig:
    """Everything that defines a CT training run (written to ``config.yaml``)."""

    data: str = ""
    out: str = ""
    dims: int = 3
    sampling: str = "dbscan"
    channel: str = "none"
    gain: float = 2.0
    prior_dropout: float = 0.5
    crop: int = 128
    depth: int = 32
    eps: float = 5.0
    closeness: float | None = None
    centerline_source: str = "auto"
    centerline_space: str = "auto"
    width: int = 32
    unet_depth: int = 4
    dropout: float = 0.05
    epochs: int = 100
    max_steps: int = -1
    samples_per_epoch: int | None = None
    batch_size: int = 8
    lr: float = 4e-4
    weight_decay: float = 0.05
    focal_weight: float = SEED_FOCAL_WEIGHT
    dice_weight: float = SEED_DICE_WEIGHT
    class_weights: str = "seed"
    grad_clip: float = 1.0
    patience: int = 30
    val: float = 0.2
    seed: int = 36
    precision: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    min_size: int = 100
    keep_largest: int | None = None
    intensity: IntensityConfig = field(default_factory=IntensityConfig)

    def check(self) -> None:
        if self.dims not in (2, 3):
            raise AngiosegError(f"--dims must be 2 or 3, got {self.dims}")
        if self.sampling not in METHODS:
            raise AngiosegError(
                f"--sampling must be one of {METHODS} (centerline = dbscan), got {self.sampling!r}"
            )
        if self.channel not in ("none", "binary", "bright"):
            raise AngiosegError(f"--channel-kind must be binary or bright, got {self.channel!r}")
        if self.class_weights not in ("seed", "none"):
            raise AngiosegError(f"class_weights must be 'seed' or 'none', got {self.class_weights!r}")
        if self.centerline_source not in CENTERLINE_SOURCES:
            raise AngiosegError(
                f"--centerline-source must be one of {CENTERLINE_SOURCES}, got {self.centerline_source!r}"
            )
        if not 0 <= self.prior_dropout < 1:
            raise AngiosegError(f"--prior-dropout must be in [0, 1), got {self.prior_dropout}")

    def model_config(self) -> dict[str, Any]:
        in_ch = 1 if self.channel == "none" else 2
        return UNet(self.dims, in_ch, 2, self.width, self.unet_depth, "leakyrelu", self.dropout).config()

    def inference_meta(self) -> dict[str, Any]:
        """What inference needs besides the weights (the checkpoint's ``cta`` section)."""
        keys = ("dims", "crop", "depth", "channel", "gain", "sampling", "min_size", "keep_largest")
        return {k: getattr(self, k) for k in keys}


@dataclass
class TrainResult:
    run_dir: Path
    splits: dict[str, list[str]]
    patches: dict[str, int]
    best_epoch: int | None
    best_val_loss: float | None
    train_seconds: float
    parameters: int
    rank: int = 0  # under DDP, rank 0 exports the model; the other processes' results are empty


def _plan(cases: list[Case], cfg: CTATrainConfig) -> tuple[list[tuple[int, Box]], dict[str, int]]:
    boxes: list[tuple[int, Box]] = []
    counts = {}
    for i, c in enumerate(cases):
        pts = c.centerline.points if c.centerline is not None else None
        bs = plan_boxes(
            c.label, pts, cfg.sampling, cfg.dims, cfg.crop, cfg.depth, cfg.eps, cfg.closeness, cfg.seed
        )
        counts[c.name] = len(bs)
        boxes += [(i, b) for b in bs]
    return boxes, counts


def _check_bottleneck(cfg: CTATrainConfig, samples: int, batch: int, world: int) -> None:
    """Refuse a training batch of one patch when the UNet's bottleneck is a single voxel.

    BatchNorm in training needs more than one value per channel; with one patch and a 1-voxel
    bottleneck (a crop of at most ``2**unet_depth`` on every side) the first such batch fails deep
    inside PyTorch.
    """
    sides = [cfg.crop, cfg.crop] + ([cfg.depth] if cfg.dims == 3 else [])
    voxels = math.prod(-(-s // 2**cfg.unet_depth) for s in sides)
    per_process = -(-samples // world)
    last = per_process % batch or batch
    if voxels == 1 and (batch == 1 or last == 1):
        size = "x".join(map(str, sides))
        raise AngiosegError(
            f"a {size} crop leaves a single voxel at the UNet's bottleneck (after {cfg.unet_depth} "
            f"poolings), where BatchNorm cannot train on a batch of one patch, and "
            f"{'every' if batch == 1 else 'the last'} training batch of each epoch holds one "
            f"({samples} patch(es) per epoch, {batch} per batch per process): use a larger --crop / "
            "--crop-depth, or a --batch-size and --samples-per-epoch that give every process batches of 2 or more"
        )


def _loaders(
    cfg: CTATrainConfig, train: list[Case], val: list[Case], trainer: Any
) -> tuple[DataLoader[Any], DataLoader[Any], dict[str, int]]:
    """Training and validation loaders; under DDP each process gets its share of the one-process
    draws (``--batch-size`` per optimiser step, :mod:`angioseg.train.distributed`)."""
    tb, tcounts = _plan(train, cfg)
    vb, vcounts = _plan(val, cfg)
    train_ds = PatchDataset(
        train, tb, cfg.dims, cfg.channel, cfg.gain, cfg.prior_dropout, seed=cfg.seed, length=cfg.batch_size
    )
    val_ds = PatchDataset(val, vb, cfg.dims, cfg.channel, cfg.gain)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = cfg.samples_per_epoch
    sampler = RandomSampler(train_ds, replacement=n is not None, num_samples=n, generator=gen)
    batch = per_process_batch(cfg.batch_size, trainer)
    # run_train checks before writing anything, but without --samples-per-epoch an epoch is every
    # planned patch (at least one batch), known only now: its last batch may hold a single patch.
    _check_bottleneck(cfg, len(sampler), batch, int(trainer.world_size))
    tl = DataLoader(train_ds, batch_size=batch, sampler=shard(sampler, trainer))
    vl = DataLoader(val_ds, batch_size=batch, sampler=eval_sampler(val_ds, trainer, "validation patches"))
    return (
        tl,
        vl,
        {**{f"train/{k}": v for k, v in tcounts.items()}, **{f"val/{k}": v for k, v in vcounts.items()}},
    )


def run_train(
    cfg: CTATrainConfig,
    resume: bool = False,
    progress: bool = True,
    announce: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train, select the best epoch on the validation loss and export the model (see module doc)."""
    run_dir = Path(cfg.out)
    main = process_rank() == 0  # under DDP every process runs this; only rank 0 writes
    if main:
        _check_run_dir(run_dir, resume)
    else:
        announce = None
    if resume:  # the stored run, on the processes given now
        hardware = {k: getattr(cfg, k) for k in ("devices", "strategy", "num_nodes")}
        cfg = replace(load_config(CTATrainConfig, run_dir / "config.yaml"), **hardware)
    cfg.check()
    devices = parse_devices(cfg.devices)
    world = (devices if isinstance(devices, int) else 1) * cfg.num_nodes
    _check_bottleneck(cfg, cfg.samples_per_epoch or cfg.batch_size, max(1, cfg.batch_size // world), world)
    seed_everything(cfg.seed)
    files = {f.name: f for f in find_cases(cfg.data, require_labels=True)}
    if len(files) < 2:
        raise AngiosegError(f"{cfg.data}: training needs at least 2 labeled volumes (one for validation)")
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = SplitSpec(test=0, val=cfg.val, seed=cfg.seed)
    splits = load_or_make_splits(run_dir / "splits.json", sorted(files), spec, write=main)
    train_names, val_names = splits["finetune"], splits["val"]
    if main and not resume:
        save_config(run_dir / "config.yaml", cfg)

    def prepare(names: list[str]) -> list[Case]:
        return [
            load_case(files[n], cfg.intensity, cfg.centerline_source, cfg.centerline_space) for n in names
        ]

    train, val = prepare(train_names), prepare(val_names)
    precision = cfg.precision
    if precision == "auto" and cfg.dims == 3 and not torch.cuda.is_available():
        # An early run found bf16 3D convolutions 2x slower than fp32 on our CPU; later bench/bench_cta.py
        # runs found bf16 1.8-2x faster (docs/cta.md). fp32 stays until bf16 3D convergence is checked.
        precision = "fp32"
    trainer = make_trainer(
        run_dir,
        cfg.epochs,
        monitor="val_loss",
        mode="min",
        patience=cfg.patience,
        precision=precision,
        devices=parse_devices(cfg.devices),
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        progress=progress,
        gradient_clip_val=cfg.grad_clip,
        max_steps=cfg.max_steps,
    )
    tl, vl, counts = _loaders(cfg, train, val, trainer)
    from angioseg.train.rng import track

    track(trainer, tl)  # its random streams go into the checkpoints
    if main:
        write_json(run_dir / "patches.json", counts)
    if announce:
        n_tr = sum(v for k, v in counts.items() if k.startswith("train/"))
        announce(
            f"{len(train)} training / {len(val)} validation volumes, {n_tr} training patches ({cfg.sampling})"
        )
    weights = seed_class_weights(cfg.crop) if cfg.class_weights == "seed" else None
    module = CTAModule(
        cfg.model_config(),
        cfg.lr,
        cfg.weight_decay,
        cfg.focal_weight,
        cfg.dice_weight,
        weights,
        channels_last=cfg.dims == 2,
    )
    from lightning.pytorch.callbacks import EarlyStopping

    for cb in trainer.callbacks:  # a run cut by --max-steps mid-epoch has no val_loss for that epoch
        if isinstance(cb, EarlyStopping):
            cb.strict = False
    last = run_dir / "checkpoints" / "last.ckpt"
    t0 = time.perf_counter()
    trainer.fit(module, tl, vl, ckpt_path=str(last) if resume and last.exists() else None)
    seconds = time.perf_counter() - t0
    if not trainer.is_global_zero:
        return TrainResult(run_dir, splits, counts, None, None, seconds, 0, rank=int(trainer.global_rank))
    best_path = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    best_epoch, best_loss = None, None
    if best_path and Path(best_path).exists():
        ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"])
        best_epoch = int(ckpt.get("epoch", -1))
        score = trainer.checkpoint_callback.best_model_score  # type: ignore[union-attr]
        best_loss = float(score) if score is not None else None
    model = set_memory_format(module.model.float(), False).eval()
    save_run_model(
        run_dir,
        model,
        cfg.intensity.to_dict(),
        method="none",
        best_epoch=best_epoch,
        cta=cfg.inference_meta(),
    )
    result = TrainResult(run_dir, splits, counts, best_epoch, best_loss, seconds, count_parameters(model))
    write_json(
        run_dir / "train_summary.json",
        {
            "best_epoch": best_epoch,
            "best_val_loss": best_loss,
            "train_seconds": seconds,
            "steps": int(trainer.global_step),
            "parameters": result.parameters,
            "train_patches": int(np.sum([v for k, v in counts.items() if k.startswith("train/")])),
        },
    )
    return result
