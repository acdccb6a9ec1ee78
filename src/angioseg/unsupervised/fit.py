"""``angioseg unsupervised fit``: train the CUTS encoder on a folder of unlabeled images.

Only image files are read: a ``masks/`` folder beside ``images/`` is ignored, never opened. The run
folder receives ``config.yaml``, ``splits.json`` (the 7:3 train/validation split of CUTS, by seed),
Lightning logs and ``checkpoints/{best,last}.ckpt`` (``--resume`` continues from ``last``), the
best-validation weights as ``model.safetensors`` + ``model.json`` and ``fit.json`` (timing, best
epoch and losses).

Defaults (CUTS, both versions unless stated): batch 16, AdamW lr 1e-3, weight decay 1e-4, at most
200 epochs, early stopping with patience 10 on the validation loss, no augmentation, images scaled
to [-1, 1], every epoch at least 5 batches (the authors' ``ExtendedDataset``). The authors train on
whole 128 x 128 images; we train on random 128 x 128 crops of images of any size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from angioseg.config import load_config, save_config, to_dict
from angioseg.data.datasets import dataset_dirs
from angioseg.data.io import is_image_file, read_frames
from angioseg.data.preprocess import to_8bit_range
from angioseg.errors import AngiosegError, CheckpointError, DataError
from angioseg.train.checkpoint import read_checkpoint, save_checkpoint
from angioseg.unsupervised.cuts import CUTSModel, EncoderConfig
from angioseg.unsupervised.losses import CONTRASTIVE, SETTINGS
from angioseg.unsupervised.sampler import SamplerConfig
from angioseg.utils import seed_everything, write_json

METHOD = "cuts"
TASK = "unsupervised"


@dataclass
class FitConfig:
    """Everything that defines a CUTS training run (written to ``config.yaml``)."""

    data: str = ""
    out: str = ""
    channel: str = "gray"
    normalise: str = "local"
    sigma_frac: float = 0.04
    setting: str = "cuts2022"
    contrastive: str = "ntxent"
    lam: float | None = None
    tau: float | None = None
    epochs: int = 200
    patience: int = 10
    batch_size: int = 16
    crop: int = 128
    min_batches: int = 5
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.3
    seed: int = 0
    precision: str = "auto"
    limit: int | None = None
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def loss_weights(self) -> tuple[float, float]:
        if self.setting not in SETTINGS:
            raise AngiosegError(f"--setting must be one of {sorted(SETTINGS)}, got {self.setting!r}")
        if self.contrastive not in CONTRASTIVE:
            raise AngiosegError(f"--contrastive must be one of {CONTRASTIVE}, got {self.contrastive!r}")
        s = SETTINGS[self.setting]
        return (s.lam if self.lam is None else self.lam), (s.tau if self.tau is None else self.tau)


@dataclass
class FitResult:
    run_dir: Path
    best_epoch: int | None
    best_val_loss: float | None
    train_seconds: float
    images: int
    skipped: list[tuple[str, str]]


NORMALISATIONS = ("global", "local")


def scale_image(image: np.ndarray, normalise: str = "global", sigma_frac: float = 0.04) -> np.ndarray:
    """The encoder's input.

    ``global``: raw intensities -> [-1, 1] (8-bit images: ``x / 255 · 2 − 1``, as CUTS scales retina).
    ``local``: local contrast normalisation ``(x − G_σ x) / sqrt(G_σ (x − G_σ x)²)`` with
    ``σ = sigma_frac · min(H, W)``, which removes the slowly varying background, clipped to [-3, 3]
    and divided by 3.
    """
    x = to_8bit_range(np.asarray(image, np.float32)) / 127.5 - 1.0
    if normalise == "global":
        return x.astype(np.float32)
    if normalise != "local":
        raise AngiosegError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    from scipy import ndimage

    sigma = max(1.0, sigma_frac * min(x.shape))
    r = x - ndimage.gaussian_filter(x, sigma, mode="reflect")
    sd = np.sqrt(ndimage.gaussian_filter(r * r, sigma, mode="reflect"))
    y = r / np.maximum(sd, 1e-3 + 0.05 * float(sd.mean()))
    return (np.clip(y, -3, 3) / 3).astype(np.float32)


def read_unlabeled(
    data: str | Path, channel: str = "gray", limit: int | None = None
) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Every frame of every image file of ``data`` (never its masks), plus the files that failed."""
    image_dir, _ = dataset_dirs(data)
    files = sorted(p for p in image_dir.iterdir() if is_image_file(p))[:limit]
    if not files:
        raise DataError(image_dir, "no image files to train on")
    images: dict[str, np.ndarray] = {}
    failed: list[tuple[str, str]] = []
    for p in files:
        try:
            for f in read_frames(p, channel):
                images[f.name] = f.image
        except DataError as exc:
            failed.append((p.name, str(exc)))
    if not images:
        raise AngiosegError(f"{image_dir}: none of the {len(files)} image files could be read")
    return images, failed


def split_names(names: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """CUTS' random train/validation split; a single image serves as both."""
    if len(names) < 2:
        return {"train": list(names), "val": list(names)}
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = min(len(names) - 1, max(1, round(val_fraction * len(names))))
    return {
        "train": sorted(names[i] for i in order[n_val:]),
        "val": sorted(names[i] for i in order[:n_val]),
    }


def run_fit(
    cfg: FitConfig, resume: bool = False, progress: bool = True, announce: Callable[[str], None] | None = None
) -> FitResult:
    """Train the CUTS encoder and export the best-validation weights into ``cfg.out``."""
    from torch.utils.data import DataLoader

    from angioseg.train.finetune import _check_run_dir
    from angioseg.train.trainer import make_trainer
    from angioseg.unsupervised.training import CUTSModule, FixedCrops, RandomCrops

    run_dir = Path(cfg.out)
    _check_run_dir(run_dir, resume)
    if resume:
        cfg = load_config(FitConfig, run_dir / "config.yaml")
    lam, tau = cfg.loss_weights()
    seed_everything(cfg.seed)
    images, failed = read_unlabeled(cfg.data, cfg.channel, cfg.limit)
    splits = split_names(sorted(images), cfg.val_fraction, cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_config(run_dir / "config.yaml", cfg)
        write_json(run_dir / "splits.json", splits)
    if announce:
        announce(f"training on {len(splits['train'])} image(s), validating on {len(splits['val'])}")
    scaled = {k: scale_image(v, cfg.normalise, cfg.sigma_frac)[None] for k, v in images.items()}
    train = [scaled[n] for n in splits["train"]]
    length = max(len(train), cfg.min_batches * cfg.batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    tl = DataLoader(RandomCrops(train, cfg.crop, length, cfg.seed), batch_size=cfg.batch_size, generator=gen)
    vl = DataLoader(FixedCrops([scaled[n] for n in splits["val"]], cfg.crop, 2, cfg.seed + 1), cfg.batch_size)
    module = CUTSModule(
        cfg.encoder.to_dict(),
        to_dict(cfg.sampler),
        lam=lam,
        tau=tau,
        contrastive=cfg.contrastive,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
    )
    trainer = make_trainer(
        run_dir, cfg.epochs, monitor="val_loss", mode="min", patience=cfg.patience,
        precision=cfg.precision, progress=progress,
    )  # fmt: skip
    # Deterministic algorithms make bf16 + channels_last CPU convolutions ~3x slower; a fixed seed and
    # thread count already make CPU runs repeatable (the lead made them opt-in on main likewise).
    torch.use_deterministic_algorithms(False)
    from angioseg.train.rng import track

    track(trainer, tl)  # its random streams go into the checkpoints
    last = run_dir / "checkpoints" / "last.ckpt"
    t0 = time.perf_counter()
    trainer.fit(module, tl, vl, ckpt_path=str(last) if resume and last.exists() else None)
    seconds = time.perf_counter() - t0
    cb = trainer.checkpoint_callback
    best_epoch, best_loss = None, None
    if cb is not None and cb.best_model_path and Path(cb.best_model_path).exists():  # type: ignore[attr-defined]
        ckpt = torch.load(cb.best_model_path, map_location="cpu", weights_only=True)  # type: ignore[attr-defined]
        module.load_state_dict(ckpt["state_dict"])
        best_epoch = int(ckpt.get("epoch", -1))
        best_loss = float(cb.best_model_score) if cb.best_model_score is not None else None  # type: ignore[attr-defined]
    model = module.model.float().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    meta: dict[str, Any] = {
        "task": TASK,
        "method": METHOD,
        "model": cfg.encoder.to_dict(),
        "channel": cfg.channel,
        "normalise": cfg.normalise,
        "sigma_frac": cfg.sigma_frac,
        "loss": {"setting": cfg.setting, "lam": lam, "tau": tau, "contrastive": cfg.contrastive},
        "best_epoch": best_epoch,
    }
    save_checkpoint(run_dir / "model", model.state_dict(), meta)
    write_json(
        run_dir / "fit.json",
        {
            "train_seconds": seconds,
            "epochs_run": int(trainer.current_epoch),
            "best_epoch": best_epoch,
            "best_val_loss": best_loss,
            "images": len(images),
            "skipped": failed,
        },
    )
    return FitResult(run_dir, best_epoch, best_loss, seconds, len(images), failed)


def load_encoder(path: str | Path) -> tuple[CUTSModel, dict[str, Any]]:
    """Rebuild the trained CUTS model (eval mode) and its metadata from a fit run folder or checkpoint."""
    state, meta = read_checkpoint(path)
    if meta.get("task") != TASK or meta.get("method") != METHOD:
        raise CheckpointError(
            f"{path}: this is a {meta.get('task', '?')!r}/{meta.get('method', '?')!r} checkpoint; "
            "unsupervised segment needs a CUTS encoder (angioseg unsupervised fit --out RUN_DIR)"
        )
    try:
        model = CUTSModel(EncoderConfig(**meta["model"]))
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not match the CUTS encoder config ({exc})") from None
    return model.eval(), meta
