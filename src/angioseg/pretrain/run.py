"""``run_pretrain``: the whole pretraining pipeline in one run folder, as a library function.

The run folder holds ``config.yaml`` (resolved options, reused by ``resume``), ``method.json``
(resolved method options, parameter counts, data summary), ``pretrain_images.json`` (every
image's file and pixel hash, so that fine-tuning can refuse a test split that was pretrained on;
:mod:`angioseg.data.leakage`), Lightning's ``checkpoints/last.ckpt``
(every epoch, for resume) and ``logs/``, and finally ``model.safetensors`` + ``model.json``: the
backbone UNet tensors (``encoder.*``, ``decoder.*``, ``head.*``) that ``angioseg finetune
--pretrained RUN_DIR`` loads.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from angioseg.config import load_config, save_config
from angioseg.data.leakage import check_no_test_images, write_image_hashes
from angioseg.data.preprocess import PreprocessConfig
from angioseg.errors import AngiosegError
from angioseg.pretrain import method_class
from angioseg.pretrain.data import UnlabeledImages, ViewDataset, load_unlabeled
from angioseg.train.checkpoint import save_checkpoint
from angioseg.train.distributed import parse_devices, process_rank, shard
from angioseg.train.finetune import _check_run_dir
from angioseg.utils import seed_everything, write_json


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (written to ``config.yaml``).

    ``epochs=None`` means the paper's value for the method (CM-UNet 300, MAE/Genesis 256, SparK
    1600, MoCo 500). ``lr=None`` means the method's recipe (per-256 scaling where the seed had it).
    ``options`` are method options (e.g. ``{"mask_ratio": 0.75}``), ``optim`` overrides fields of
    the method's :class:`~angioseg.pretrain.optim.OptimSpec`.
    """

    method: str = "cmunet"
    data: str = ""
    out: str = ""
    epochs: int | None = None
    width: int = 64
    depth: int = 4
    image_size: int = 256
    batch_size: int = 16
    lr: float | None = None
    seed: int = 0
    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    optim: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    channels_last: bool = True
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    num_workers: int = 0
    channel: str = "gray"
    cache_dir: str | None = None
    show_reconstructions: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


@dataclass
class PretrainResult:
    run_dir: Path
    checkpoint: Path
    method: str
    epochs: int
    steps: int
    train_seconds: float
    final_loss: float | None
    parameters: dict[str, int]
    images: int
    failed: list[tuple[str, str]]
    reconstructions: Path | None = None
    interrupted: bool = False
    rank: int = 0


def check_options(method: str, options: dict[str, Any]) -> None:
    """Unknown method options -> :class:`AngiosegError` listing the valid ones."""
    params = inspect.signature(method_class(method).__init__).parameters
    valid = sorted(k for k in params if k not in ("self", "model", "image_size"))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise AngiosegError(f"unknown option(s) {unknown} for method {method!r}; valid: {', '.join(valid)}")


def build_module(cfg: PretrainConfig, num_images: int) -> Any:
    """The :class:`PretrainModule` of ``cfg`` (options resolved for ``num_images``)."""
    from angioseg.pretrain.module import PretrainModule

    cls = method_class(cfg.method)
    check_options(cfg.method, cfg.options)
    options = cls.resolve_options(dict(cfg.options), num_images)
    model = {"width": cfg.width, "depth": cfg.depth, "in_channels": 1}
    try:
        return PretrainModule(
            cfg.method, model, cfg.image_size, options, cfg.optim, cfg.batch_size, cfg.lr, cfg.channels_last
        )
    except ValueError as exc:
        raise AngiosegError(f"pretraining {cfg.method!r}: {exc}") from None


def _resolve(cfg: PretrainConfig) -> PretrainConfig:
    method_class(cfg.method)  # ValueError for an unknown name
    if cfg.batch_size < 2:
        raise AngiosegError(
            f"--batch-size must be at least 2 (batch statistics, negatives), got {cfg.batch_size}"
        )
    epochs = cfg.epochs if cfg.epochs is not None else method_class(cfg.method).paper_epochs
    return replace(cfg, epochs=epochs, preprocess=replace(cfg.preprocess, image_size=cfg.image_size))


def pretraining_images(cfg: PretrainConfig) -> UnlabeledImages:
    """The images ``cfg`` pretrains on, read (through ``cfg.cache_dir``) exactly as :func:`run_pretrain` reads them.

    Raises:
        AngiosegError: an unknown method or bad batch size; DataError: no readable image.
    """
    try:
        cfg = _resolve(cfg)
    except ValueError as exc:
        raise AngiosegError(str(exc)) from None
    return load_unlabeled(cfg.data, cfg.preprocess, cfg.limit, cfg.channel, cfg.cache_dir)


def run_pretrain(
    cfg: PretrainConfig,
    resume: bool = False,
    progress: bool = True,
    announce: Callable[[str], None] | None = print,
    exclude: Mapping[str, str] | None = None,
) -> PretrainResult:
    """Pretrain ``cfg.method`` on the images of ``cfg.data``; return where the weights are.

    With ``resume`` the run folder's ``config.yaml`` is used, except ``cfg.epochs`` when it is set,
    so a finished run can be extended; training continues from ``checkpoints/last.ckpt``.
    ``exclude`` (``{test image: pixel hash}``, :func:`~angioseg.data.leakage.sample_hashes`) are
    images that must not be pretrained on; they are checked once the images are read, before
    anything is written or trained.

    Raises:
        AngiosegError: bad options, an existing run without ``resume`` (or nothing to resume), no
            readable image. Unreadable files are skipped and listed in the result.
        LeakageError: an image of ``cfg.data`` has the same pixels as an image of ``exclude``.
    """
    from angioseg.train.trainer import make_trainer

    run_dir = Path(cfg.out)
    # Under DDP the launcher re-runs this function in every process; only the first one checks and
    # writes the run folder (the others find rank 0's config.yaml already there).
    main_process = process_rank() == 0
    if main_process:
        _check_run_dir(run_dir, resume)
    if resume:  # the saved config rules, except a new number of epochs (to extend a finished run)
        saved = load_config(PretrainConfig, run_dir / "config.yaml")
        cfg = replace(saved, epochs=cfg.epochs if cfg.epochs is not None else saved.epochs)
    try:
        cfg = _resolve(cfg)
    except ValueError as exc:
        raise AngiosegError(str(exc)) from None
    seed_everything(cfg.seed)
    data = load_unlabeled(cfg.data, cfg.preprocess, cfg.limit, cfg.channel, cfg.cache_dir)
    if len(data.images) < 2:
        raise AngiosegError(f"{cfg.data}: pretraining needs at least 2 images, found {len(data.images)}")
    if exclude:
        check_no_test_images(zip(data.sources, data.hashes, strict=True), exclude, cfg.data)
    if data.failed and announce:
        announce(f"skipping {len(data.failed)} unreadable file(s); listed at the end")
    module = build_module(cfg, len(data.images))
    method = module.method
    run_dir.mkdir(parents=True, exist_ok=True)
    if main_process:
        save_config(run_dir / "config.yaml", cfg)
        write_json(
            run_dir / "method.json",
            {
                "method": cfg.method,
                "options": method.options(),
                "optim": vars(module.spec),
                "parameters": method.parameter_counts(),
                "images": len(data.images),
                "failed": data.failed,
            },
        )
        write_image_hashes(run_dir, cfg.data, data.sources, data.hashes)
    batch = min(cfg.batch_size, len(data.images))
    trainer = make_trainer(
        run_dir,
        int(cfg.epochs or 1),
        monitor=None,
        precision=cfg.precision,
        devices=parse_devices(cfg.devices),
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        progress=progress,
        log_every_n_steps=max(1, min(50, len(data.images) // batch)),
        gradient_clip_val=module.spec.grad_clip,
    )
    # --batch-size is per device here (Lightning's convention; the methods' learning rates scale with
    # the global batch): under DDP each process takes its share of the one-process order of images.
    dataset = ViewDataset(data.images, method.view_transform)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=shard(RandomSampler(dataset, generator=gen), trainer),
        drop_last=True,
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
        generator=gen,
    )
    from angioseg.train.rng import track

    track(trainer, loader)  # its random streams go into the checkpoints
    last = run_dir / "checkpoints" / "last.ckpt"
    t0 = time.perf_counter()
    trainer.fit(module, loader, ckpt_path=str(last) if resume and last.exists() else None)
    seconds = time.perf_counter() - t0
    return _finish(cfg, run_dir, module, trainer, data, seconds)


def _finish(
    cfg: PretrainConfig, run_dir: Path, module: Any, trainer: Any, data: UnlabeledImages, seconds: float
) -> PretrainResult:
    """Export the backbone, write ``summary.json`` (and the reconstruction figure) on rank 0."""
    method = module.method.float().to(memory_format=torch.contiguous_format).cpu()
    loss = trainer.callback_metrics.get("loss_epoch")
    final_loss = None if loss is None else float(loss)
    meta = {
        "task": "pretrain",
        "method": cfg.method,
        "model": method.model_config,
        "image_size": cfg.image_size,
        "options": method.options(),
        "preprocess": cfg.preprocess.to_dict(),
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "final_loss": final_loss,
    }
    weights = run_dir / "model.safetensors"
    recon = None
    if trainer.is_global_zero:
        weights = save_checkpoint(run_dir / "model", method.export_state(), meta)
        if cfg.show_reconstructions > 0 and method.reconstructs:
            from angioseg.pretrain.recon import write_reconstruction_grid

            n = min(cfg.show_reconstructions, len(data.images))
            recon = write_reconstruction_grid(
                method, data.images[:n], run_dir / "reconstructions.png", seed=cfg.seed
            )
    result = PretrainResult(
        run_dir,
        weights,
        cfg.method,
        int(trainer.current_epoch),
        int(trainer.global_step),
        seconds,
        final_loss,
        method.parameter_counts(),
        len(data.images),
        data.failed,
        recon,
        bool(trainer.interrupted),
        int(trainer.global_rank),
    )
    if trainer.is_global_zero:
        summary = {k: v for k, v in vars(result).items() if k not in ("run_dir", "rank")}
        write_json(run_dir / "summary.json", summary)
    return result
