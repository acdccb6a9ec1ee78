"""Supervised fine-tuning on a few labeled angiograms (the second stage of CM-UNet).

:func:`run_finetune` does, in one run folder:

1. read the dataset, make (or reuse) the disjoint ``splits.json``; with ``--pretrained RUN``,
   refuse a test split with an image the run was pretrained on (by pixel hash, any name or
   format: :mod:`angioseg.data.leakage`);
2. preprocess as in the paper and write the resolved ``config.yaml``;
3. optionally choose learning rate and batch size by k-fold cross-validation on the fine-tuning
   images (a fresh model, with the same pretrained weights, for every fold and setting);
4. train with Dice + CE and the paper's augmentations, pick the best epoch on the validation
   split (never the test split), stop early, save ``checkpoints/last.ckpt`` every epoch for
   ``--resume``;
5. export the best weights as ``model.safetensors`` + ``model.json``;
6. score the test split with every metric of the paper into ``test/``, predicted as ``segment``
   predicts (test-time augmentation ``tta``) on each image's own grid against the mask as drawn
   (the paper scored at the training resolution).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, RandomSampler, Sampler

from angioseg.config import load_config, save_config
from angioseg.data.augment import augmentations
from angioseg.data.datasets import Sample, load_dataset
from angioseg.data.io import write_png
from angioseg.data.leakage import check_pretrained_images
from angioseg.data.preprocess import (
    PreprocessConfig,
    preprocess_image,
    preprocess_pair,
    restore_geometry,
    truth_mask,
)
from angioseg.data.splits import SplitSpec, image_groups, load_or_make_splits
from angioseg.errors import AngiosegError, LeakageError
from angioseg.infer.engines import DEFAULT_TTA, check_tta, predict_proba
from angioseg.metrics.evaluate import score_pairs, write_report
from angioseg.models.unet import UNet, count_parameters, set_memory_format
from angioseg.train.arrays import ArrayDataset
from angioseg.train.checkpoint import load_pretrained, save_run_model
from angioseg.train.distributed import eval_sampler, parse_devices, per_process_batch, process_rank, shard
from angioseg.train.kfold import kfold_search
from angioseg.train.module import SegmentationModule
from angioseg.train.resume import resume_config
from angioseg.train.trainer import make_trainer
from angioseg.utils import seed_everything, write_json


@dataclass
class FinetuneConfig:
    """Everything that defines a fine-tuning run (written to ``config.yaml``)."""

    data: str = ""
    out: str = ""
    labeled: int | None = None
    fraction: float | None = None
    test: float = 0.2
    val: float = 0.1
    seed: int = 0
    test_seed: int = 42
    test_fold: int | None = None
    test_folds: int = 5
    groups: str | None = None
    width: int = 64
    depth: int = 4
    epochs: int = 128
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 30
    min_steps_per_epoch: int = 8
    augment: bool = True
    augment_policy: str = "paper"  # angioseg.data.augment.AUGMENT_POLICIES
    noise_std: float = 0.3
    pretrained: str | None = None
    transfer: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    kfold: int = 0
    kfold_lrs: list[float] = field(default_factory=lambda: [1e-3, 1e-4])
    kfold_batch_sizes: list[int] = field(default_factory=lambda: [4, 8])
    kfold_epochs: int | None = None
    channel: str = "gray"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    num_workers: int = 0
    preset: str = "custom"
    loss: str = "dicece"
    lr_schedule: str = "constant"  # constant or cosine (angioseg.train.module.LR_SCHEDULES)
    unlabeled: str | None = None
    unlabeled_limit: int | None = 300
    semi: str | None = None
    semi_options: dict[str, Any] = field(default_factory=dict)
    mix: str | None = None  # extra labeled frames (e.g. angioseg synth) in every epoch: angioseg.train.mix
    mix_fraction: float = 0.5
    mix_limit: int | None = None
    vesselness: bool = False  # a vesselness input channel inside the network: angioseg.models.vesselness
    tta: str = DEFAULT_TTA  # test-time augmentation of the test report (infer.engines.TTA_MODES)
    teacher: str | None = None  # knowledge distillation (angioseg distill): angioseg.train.distill
    distill_weight: float = 1.0
    distill_temperature: float = 1.0
    distill_init: str = "teacher"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


@dataclass
class FinetuneResult:
    run_dir: Path
    summary: dict[str, float]
    splits: dict[str, list[str]]
    best_epoch: int | None
    train_seconds: float
    parameters: int
    transfer: str | None = None
    interrupted: bool = False
    rank: int = 0  # under DDP, the other processes' results are empty (rank 0 writes and scores)


def data_fingerprint(samples: Sequence[Sample]) -> str:
    h = hashlib.sha1()
    for s in sorted(samples, key=lambda s: s.name):
        h.update(s.name.encode())
        h.update(np.ascontiguousarray(s.image).tobytes())
        if s.mask is not None:
            h.update(np.packbits(s.mask).tobytes())
    return h.hexdigest()[:16]


def _loaders(
    cfg: FinetuneConfig,
    train: tuple[list[np.ndarray], list[np.ndarray]],
    val: tuple[list[np.ndarray], list[np.ndarray]],
    batch_size: int,
    unlabeled: list[np.ndarray] | None = None,
    trainer: Any = None,
    mix: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
) -> tuple[DataLoader[Any], DataLoader[Any]]:
    transform = train_transform(cfg)
    rank = int(trainer.global_rank) if trainer is not None else 0
    if transform is not None and rank:  # each DDP process its own augmentation stream
        transform.set_random_state(int(np.random.SeedSequence([cfg.seed, rank]).generate_state(1)[0]))
    # An epoch holds at least ``min_steps_per_epoch`` full batches (images cycled, each draw freshly
    # augmented): with 5 labeled images a literal epoch would be a single optimiser step.
    train_ds: Dataset[dict[str, torch.Tensor]] = ArrayDataset(
        *train, transform=transform, length=batch_size * max(1, cfg.min_steps_per_epoch)
    )
    if unlabeled:
        from angioseg.semi.data import SemiDataset

        train_ds = SemiDataset(train_ds, unlabeled, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    # Under DDP each process takes its share of the one-process draws, batch_size / N at a time
    # (angioseg.train.distributed); in one process this is DataLoader(shuffle=True, generator=gen).
    sampler: Sampler[int] = RandomSampler(train_ds, generator=gen)  # type: ignore[arg-type]
    if mix:  # a fixed share of each epoch's draws from the extra labeled frames (same augmentations)
        from angioseg.train.mix import MixSampler

        n_real = len(train_ds)  # type: ignore[arg-type]
        extra = ArrayDataset(*mix, transform=transform)
        train_ds = ConcatDataset([train_ds, extra])
        sampler = MixSampler(n_real, len(extra), cfg.mix_fraction, gen)
    tl = DataLoader(
        train_ds,
        batch_size=batch_size if trainer is None else per_process_batch(batch_size, trainer),
        sampler=sampler if trainer is None else shard(sampler, trainer),
        generator=gen,
        num_workers=cfg.num_workers,
        drop_last=len(train_ds) > batch_size,  # type: ignore[arg-type]
    )
    val_ds = ArrayDataset(*val)
    vl = DataLoader(
        val_ds,
        batch_size=max(1, min(8, batch_size)),
        sampler=None if trainer is None else eval_sampler(val_ds, trainer),
        num_workers=cfg.num_workers,
    )
    return tl, vl


def train_transform(cfg: FinetuneConfig) -> Any:
    """The augmentations of ``augment_policy`` (if ``augment``), seeded by ``cfg.seed``."""
    if not cfg.augment:
        return None
    transform = augmentations(cfg.augment_policy, cfg.noise_std)
    transform.set_random_state(cfg.seed)
    return transform


def _new_module(
    cfg: FinetuneConfig, lr: float, announce: Callable[[str], None] | None
) -> tuple[SegmentationModule, str | None]:
    from angioseg.models.vesselness import sigmas_for

    sigmas = sigmas_for(cfg.preprocess.image_size) if cfg.vesselness else None
    model_cfg = UNet(
        in_channels=1, out_channels=2, width=cfg.width, depth=cfg.depth, vesselness=sigmas
    ).config()
    kwargs: dict[str, Any] = dict(
        lr=lr,
        weight_decay=cfg.weight_decay,
        channels_last=cfg.channels_last,
        loss=cfg.loss,
        lr_schedule=cfg.lr_schedule,
    )
    cls: type[SegmentationModule] = SegmentationModule
    if cfg.teacher:
        from angioseg.train.distill import DistillModule

        cls = DistillModule
        kwargs.update(
            teacher=cfg.teacher,
            weight=cfg.distill_weight,
            temperature=cfg.distill_temperature,
            init=cfg.distill_init,
        )
    elif cfg.semi and cfg.semi != "selftrain":
        from angioseg.semi import SEMI_METHODS

        cls = SEMI_METHODS[cfg.semi]
        kwargs.update(total_steps=cfg.epochs * max(1, cfg.min_steps_per_epoch), **cfg.semi_options)
    module = cls(model_cfg, **kwargs)
    report = None
    if cfg.pretrained:
        rep = load_pretrained(module.model, cfg.pretrained, cfg.transfer)
        report = str(rep)
        if announce:
            announce(report)
    return module, report


def _prepare(
    cfg: FinetuneConfig, samples: dict[str, Sample], names: Sequence[str], train: bool = False
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Preprocessed images and masks; masks are cleaned (small holes) only for ``train`` images.

    Validation and test masks are the annotation as drawn (binarised and resized only).
    """
    imgs, masks = [], []
    for n in names:
        x, m = preprocess_pair(samples[n].image, samples[n].mask, cfg.preprocess, train=train)
        imgs.append(x)
        masks.append(m)
    return imgs, masks  # type: ignore[return-value]


def _several_processes(cfg: FinetuneConfig) -> bool:
    """Whether the run may be spread over several processes: a launcher's world, a strategy or node
    count, more than one device (a count, or a list such as ``0,1``), or ``auto`` devices on a
    machine with several GPUs."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or cfg.strategy != "auto" or cfg.num_nodes != 1:
        return True
    devices = str(cfg.devices).strip()
    if devices == "auto":
        return torch.cuda.is_available() and torch.cuda.device_count() > 1
    if devices.isdigit():
        return int(devices) > 1
    return len([d for d in devices.split(",") if d.strip()]) > 1


def check_options(cfg: FinetuneConfig) -> None:
    """Refuse an unknown loss, learning-rate schedule, semi-supervised method, ``tta`` or augmentation
    policy; ``unlabeled`` without ``semi``, and a ``semi`` other than selftrain without ``unlabeled``;
    selftrain over several processes; ``mix`` beside ``semi``, ``unlabeled`` or a teacher, and a
    ``mix_fraction`` that is unused or outside (0, 1); and a policy other than the default with
    ``augment`` off.

    ``semi="auto"`` (the cpu preset's) is checked as no method: it becomes selftrain only where that
    fits the other options (:func:`resolve_semi`)."""
    from angioseg.semi import SEMI_NAMES
    from angioseg.train.module import LOSSES, LR_SCHEDULES

    if cfg.loss not in LOSSES:
        raise AngiosegError(f"--loss {cfg.loss!r} is not one of: {', '.join(LOSSES)}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise AngiosegError(f"--lr-schedule {cfg.lr_schedule!r} is not one of: {', '.join(LR_SCHEDULES)}")
    if semi_choice(cfg.semi) in (None, SEMI_AUTO):
        cfg = replace(cfg, semi=None)  # auto is checked as no method (resolve_semi decides later)
    if cfg.semi is not None and cfg.semi not in SEMI_NAMES:
        raise AngiosegError(f"--semi {cfg.semi!r} is not one of: {', '.join((SEMI_AUTO, *SEMI_NAMES))}, none")
    if cfg.teacher:  # distillation: unlabeled frames are optional and learn the teacher's answer
        if cfg.semi is not None:
            raise AngiosegError("--semi does not combine with distillation from a --teacher")
    elif cfg.unlabeled and not cfg.semi:
        raise AngiosegError("--unlabeled DIR needs a --semi METHOD (meanteacher or selftrain)")
    elif cfg.semi and cfg.semi != "selftrain" and not cfg.unlabeled:
        raise AngiosegError(
            f"--semi {cfg.semi} needs --unlabeled DIR (only selftrain can use --data's unlabeled images)"
        )
    if cfg.semi == "selftrain" and _several_processes(cfg):
        raise AngiosegError(
            "--semi selftrain runs in one process: give --devices 1 (and leave --strategy and --num-nodes out)"
        )
    if cfg.mix is not None and (cfg.unlabeled or cfg.semi or cfg.teacher):
        raise AngiosegError("--mix does not combine with --unlabeled, --semi or a --teacher")
    if cfg.mix is None and cfg.semi != "selftrain" and cfg.mix_fraction != FinetuneConfig.mix_fraction:
        raise AngiosegError("--mix-fraction needs --mix DIR or an explicit --semi selftrain")
    if cfg.mix is not None or cfg.semi == "selftrain":
        if not 0.0 < cfg.mix_fraction < 1.0:
            raise AngiosegError(f"--mix-fraction must be between 0 and 1 (exclusive), got {cfg.mix_fraction}")
    check_tta(cfg.tta)
    from angioseg.data.augment import check_policy

    check_policy(cfg.augment_policy)
    if not cfg.augment and cfg.augment_policy != "paper":
        raise AngiosegError(
            f"--augment-policy {cfg.augment_policy} has no effect with --no-augment: give one"
        )


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise AngiosegError(
                f"{run_dir}: nothing to resume (no config.yaml); start a new run without --resume"
            )
    elif (run_dir / "config.yaml").exists():
        raise AngiosegError(
            f"{run_dir}: a run already exists here; use --resume to continue it or choose another --out"
        )


def finetune_splits(
    cfg: FinetuneConfig, samples: Sequence[Sample], run_dir: Path, write: bool = True
) -> dict[str, list[str]]:
    """The splits of the labeled ``samples``: ``run_dir/splits.json`` if it exists, else made and written there.

    The frames of one file, and the images of one ``cfg.groups`` group, share a split. The groups
    file is read only when the splits are made (a resumed run does not need it any more).
    """
    spec = SplitSpec(
        cfg.test,
        cfg.val,
        cfg.labeled,
        cfg.fraction,
        cfg.seed,
        cfg.test_seed,
        cfg.groups,
        cfg.test_fold,
        cfg.test_folds,
    )
    split_path = run_dir / "splits.json"
    groups_csv = None if split_path.exists() else cfg.groups
    groups = image_groups({s.name: s.source for s in samples}, groups_csv)
    run_dir.mkdir(parents=True, exist_ok=True)
    return load_or_make_splits(
        split_path, sorted(s.name for s in samples if s.mask is not None), spec, groups, write=write
    )


SEMI_AUTO = "auto"  # the cpu preset's --semi: selftrain where --data has unannotated images (resolve_semi)


def semi_choice(semi: str | None) -> str | None:
    """``--semi`` as the code compares it: ``none`` (any case) is None, ``auto`` (any case) is
    :data:`SEMI_AUTO`, a method name is itself."""
    if isinstance(semi, str) and semi.lower() in ("none", SEMI_AUTO):
        return None if semi.lower() == "none" else SEMI_AUTO
    return semi


def auto_may_self_train(cfg: FinetuneConfig) -> bool:
    """Whether ``--semi auto`` may self-train, whatever the data: not with ``--unlabeled``, ``--mix``,
    a ``--teacher`` or several processes (:func:`resolve_semi`; the preset line says the same)."""
    return not (cfg.unlabeled or cfg.mix or cfg.teacher or _several_processes(cfg))


def resolve_semi(
    cfg: FinetuneConfig, data: Sequence[Sample], test: Mapping[str, str], held_out: Sequence[str]
) -> tuple[FinetuneConfig, str | None, tuple[list[Sample], int] | None]:
    """``cfg`` with ``semi="auto"`` made concrete, a line saying what was chosen (or None), and, when
    it chose self-training, the frames it found (:func:`~angioseg.semi.selftrain.load_frames`'s
    result, so the run does not load and hash them again).

    ``auto`` becomes ``selftrain`` when the ``--data`` set has images without a mask that self-training
    may use (none sharing a file or group with a test or validation image, none a copy of a test image),
    and nothing else rules it out (``--unlabeled``, ``--mix``, a ``--teacher``, several processes);
    otherwise no semi-supervised method. Self-training won on validation at 5 and 10 labels
    (docs/results/label_efficiency.md). Any other ``semi`` is returned as it is.
    """
    if cfg.semi != SEMI_AUTO:
        return cfg, None, None
    off = replace(cfg, semi=None)
    if cfg.unlabeled or cfg.mix or cfg.teacher or not any(s.mask is None for s in data):
        return off, None, None
    if not auto_may_self_train(cfg):  # here: several processes
        return off, "self-training (--semi auto) is off: it runs in one process (--devices 1)", None
    from angioseg.semi.selftrain import load_frames

    on = replace(cfg, semi="selftrain")
    try:
        found = load_frames(on, data, test, held_out)
    except LeakageError as e:
        return off, f"self-training (--semi auto) is off: {e}", None
    except AngiosegError:  # every unannotated image shares a file or group with a held-out image
        return off, None, None
    line = (
        f"self-training (--semi auto): {len(found[0])} image(s) of {cfg.data} have no mask; a first "
        "fine-tuning labels them and a second learns from labels and pseudo-labels (about twice the "
        "time; --semi none turns it off)"
    )
    return on, line, found


def run_finetune(
    cfg: FinetuneConfig,
    resume: bool = False,
    progress: bool = True,
    announce: Callable[[str], None] | None = print,
) -> FinetuneResult:
    """Fine-tune, select the best epoch on validation, export the model and score the test split.

    With ``resume``, ``cfg`` must be the run's stored ``config.yaml`` except for a larger ``epochs``
    (the run trains on up to the new total, also after it had finished), ``patience`` and ``tta``; the new
    values are written into ``config.yaml``. A run that had stopped early keeps its count of epochs
    since the best validation Dice, so it trains on only with a larger patience.
    """
    run_dir = Path(cfg.out)
    main = process_rank() == 0  # under DDP only rank 0 writes (every process runs this function)
    if main:
        _check_run_dir(run_dir, resume)
    else:
        announce = None
    stored = None
    cfg = replace(cfg, semi=semi_choice(cfg.semi))  # --semi none / AUTO
    if resume:
        stored = load_config(FinetuneConfig, run_dir / "config.yaml")
        cfg = resume_config(stored, cfg, str(run_dir / "config.yaml"))
    seed_everything(cfg.seed)
    check_options(cfg)
    all_samples = load_dataset(cfg.data, channel=cfg.channel)
    labeled = {s.name: s for s in all_samples if s.mask is not None}
    if not labeled:
        raise AngiosegError(
            f"{cfg.data}: no labeled image (fine-tuning needs images/ and masks/ with the same names)"
        )
    splits = finetune_splits(cfg, all_samples, run_dir, write=main)
    if not splits["finetune"] or not splits["val"]:
        raise AngiosegError(
            f"{cfg.data}: too few labeled images ({len(labeled)}) for a fine-tuning and a validation split"
        )
    for source in (cfg.pretrained, cfg.teacher):  # neither may have seen a test image
        if source:
            check_pretrained_images(source, labeled, splits["test"], None if resume else announce)
    from angioseg.data.leakage import sample_hashes

    # frames from anywhere but the labels (unlabeled, self-training's, --mix's) may not copy a test image
    test_hashes = sample_hashes(labeled, splits["test"])
    was_auto = cfg.semi == SEMI_AUTO
    held_out = [*splits["test"], *splits["val"]]
    found = None  # the frames to pseudo-label, once loaded
    if was_auto:  # made concrete before the run is recorded (config.yaml keeps the choice)
        cfg, chosen, found = resolve_semi(cfg, all_samples, test_hashes, held_out)
        if chosen and announce:
            announce(chosen)
    frames: list[Sample] = []
    if cfg.semi == "selftrain":  # checked before the run is recorded: a refused run leaves no config
        from angioseg.semi.selftrain import load_frames

        frames, left_out = found or load_frames(cfg, all_samples, test_hashes, held_out)
        if left_out and announce and not resume:
            announce(
                f"self-training leaves out {left_out} unannotated image(s) that share a file or group with "
                "a test or validation image"
            )
    elif announce and not resume and not (was_auto or cfg.semi or cfg.teacher or cfg.mix):
        unannotated = len(all_samples) - len(labeled)
        if unannotated:
            announce(
                f"{unannotated} image(s) of {cfg.data} have no mask and are not used: --semi selftrain "
                "would learn from them too (twice the training time; docs/results/label_efficiency.md)"
            )
    if main and (stored is None or cfg != replace(stored, out=cfg.out)):
        save_config(run_dir / "config.yaml", cfg)
    if main and not resume:
        write_json(
            run_dir / "data.json",
            {
                "fingerprint": data_fingerprint(list(labeled.values())),
                "labeled": len(labeled),
                "images": len(all_samples),
            },
        )
    train = _prepare(cfg, labeled, splits["finetune"], train=True)
    val = _prepare(cfg, labeled, splits["val"])
    unlabeled = None
    mix = None
    if cfg.semi == "selftrain":  # round 1 and its pseudo-labels, then this run is round 2
        from angioseg.semi.selftrain import first_round

        mix = first_round(cfg, frames, progress, announce if main else None)
        seed_everything(cfg.seed)  # round 2 draws as if it had started afresh
    elif cfg.unlabeled:  # semi-supervised or distillation (check_options)
        from angioseg.semi.data import load_unlabeled

        unlabeled = load_unlabeled(
            cfg.unlabeled, cfg.preprocess, test_hashes, cfg.unlabeled_limit, cfg.channel
        )
        if announce and not resume:
            how = f"semi-supervised ({cfg.semi})" if cfg.semi else f"distilling {cfg.teacher}"
            announce(f"{how} with {len(unlabeled)} unlabeled frames from {cfg.unlabeled}")
    if cfg.mix:
        from angioseg.train.mix import load_mix

        mix = load_mix(cfg.mix, cfg.preprocess, test_hashes, cfg.mix_limit, cfg.channel)
        if announce and not resume:
            announce(
                f"mixing {len(mix[0])} labeled frames from {cfg.mix} into training "
                f"({cfg.mix_fraction:.0%} of each epoch's draws)"
            )
    trainer = make_trainer(
        run_dir,
        cfg.epochs,
        patience=cfg.patience,
        precision=cfg.precision,
        devices=parse_devices(cfg.devices),
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        progress=progress,
    )
    if cfg.kfold and trainer.world_size > 1:
        raise AngiosegError(
            "--kfold runs in one process: choose lr and batch size first, then train with DDP"
        )
    lr, bs = cfg.lr, cfg.batch_size
    if cfg.kfold and not (run_dir / "kfold.json").exists():  # also a resume killed during the search
        drawn = [truth_mask(labeled[n].mask, cfg.preprocess) for n in splits["finetune"]]  # type: ignore[arg-type]
        lr, bs, _ = kfold_search(cfg, train, run_dir, progress, truth=drawn, unlabeled=unlabeled, mix=mix)
        if announce:
            announce(f"k-fold search chose lr={lr:g}, batch size={bs}")
        seed_everything(cfg.seed)
    elif cfg.kfold:
        import json

        chosen = json.loads((run_dir / "kfold.json").read_text(encoding="utf-8"))["chosen"]
        lr, bs = float(chosen["lr"]), int(chosen["batch_size"])
    module, transfer = _new_module(cfg, lr, None if resume else announce)
    tl, vl = _loaders(cfg, train, val, bs, unlabeled, trainer, mix)
    from angioseg.train.rng import track

    track(trainer, tl)  # its random streams go into the checkpoints
    last = run_dir / "checkpoints" / "last.ckpt"
    if main:  # a resumed run is unfinished until it is scored again: no stale finished mark meanwhile
        (run_dir / "test" / "summary.json").unlink(missing_ok=True)
    trainer.fit(module, tl, vl, ckpt_path=str(last) if resume and last.exists() else None)
    from angioseg.train.clock import train_clock

    train_seconds = train_clock(trainer).seconds()  # every piece of a resumed run, not only this one
    best_path = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    best_epoch = None
    if not trainer.is_global_zero:
        return FinetuneResult(run_dir, {}, splits, None, train_seconds, 0, rank=int(trainer.global_rank))
    if best_path and Path(best_path).exists():
        ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"])
        best_epoch = int(ckpt.get("epoch", -1))
    model = set_memory_format(module.inference_model().float(), False).eval()
    assert isinstance(model, UNet)
    method = "none"
    if cfg.pretrained:
        from angioseg.train.checkpoint import read_checkpoint

        method = str(read_checkpoint(cfg.pretrained)[1].get("method", "unknown"))
    save_run_model(
        run_dir,
        model,
        cfg.preprocess.to_dict(),
        method=method,
        pretrained=cfg.pretrained,
        transfer=transfer,
        best_epoch=best_epoch,
        lr=lr,
        batch_size=bs,
        **({"teacher": cfg.teacher} if cfg.teacher else {}),
    )
    summary = evaluate_split(
        model,
        cfg,
        labeled,
        splits["test"],
        run_dir / "test",
        extra={"train_seconds": train_seconds, "best_epoch": best_epoch},
    )
    return FinetuneResult(
        run_dir, summary, splits, best_epoch, train_seconds, count_parameters(model), transfer
    )


def evaluate_split(
    model: UNet,
    cfg: FinetuneConfig,
    samples: dict[str, Sample],
    names: Sequence[str],
    out_dir: Path,
    fast: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Predict ``names`` and score them on their own pixel grid against the masks as drawn.

    Each image is preprocessed as in training (resized to the model's size), predicted with the
    test-time augmentation ``cfg.tta``, and its probability mapped back onto the original grid, as
    ``angioseg segment`` does; the masks are only binarised. Writes the predicted masks and the
    metric report into ``out_dir``, and ``scoring.json`` saying how it was scored; ``extra`` (e.g. the
    training time) joins the summary, whose ``summary.json`` is written last. With no image to score,
    the summary is ``{"n": 0}`` and ``extra``, written only when ``extra`` is given.
    """
    (out_dir / "summary.json").unlink(missing_ok=True)  # written again last: present = a whole report
    if not names:
        empty = {"n": 0, **(extra or {})}
        if extra is not None:
            write_json(out_dir / "summary.json", empty)
        return empty
    prepared = [preprocess_image(samples[n].image, cfg.preprocess) for n in names]
    probs = predict_proba(model, [x for x, _ in prepared], fast=fast, tta=cfg.tta)
    pairs = []
    for n, p, (_, geom) in zip(names, probs, prepared, strict=True):
        pred = restore_geometry(p, geom) >= 0.5
        write_png(out_dir / "predictions" / f"{n}.png", pred)
        pairs.append((n, pred, np.asarray(samples[n].mask, dtype=bool)))
    rows, summary = score_pairs(pairs)
    # scoring.json first and summary.json (with ``extra``) last: a scoring cut part-way leaves no summary
    write_json(out_dir / "scoring.json", {"grid": "original", "tta": cfg.tta, "threshold": 0.5})
    full = {**summary, **(extra or {})}
    write_report(out_dir, rows, full)
    return full
