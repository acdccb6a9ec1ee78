"""Lightning module and crop datasets that train the CUTS encoder (no label is ever read).

One training step: random ``crop x crop`` windows of unlabeled images (the encoder is fully
convolutional, so it trains on crops and embeds whole images later), fresh anchors and positives
from :class:`~angioseg.unsupervised.sampler.PatchSampler`, embeddings gathered at those pixels,
``λ·contrastive + (1 − λ)·MSE(recon(anchor embedding), anchor patch)``. Validation uses fixed crops
and, deliberately, the *same* anchors every epoch (a sampler reseeded per validation batch), so the
validation loss that early stopping watches is comparable across epochs.

Optimiser: AdamW, lr 1e-3, weight decay 1e-4 (both CUTS versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import Dataset

from angioseg.unsupervised.cuts import CUTSModel, EncoderConfig, gather_embeddings, gather_patches
from angioseg.unsupervised.losses import cuts_loss
from angioseg.unsupervised.sampler import PatchSampler, SamplerConfig


def _crop(image: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """A ``C x size x size`` window (random, or centred when ``rng`` is None); small images are reflect-padded."""
    _, h, w = image.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        image = np.pad(image, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")
        _, h, w = image.shape
    if rng is None:
        r, c = (h - size) // 2, (w - size) // 2
    else:
        r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return image[:, r : r + size, c : c + size]


class RandomCrops(Dataset[torch.Tensor]):
    """``length`` random crops of randomly chosen images (``C x H x W`` arrays), one RNG advancing forever."""

    def __init__(self, images: Sequence[np.ndarray], crop: int, length: int, seed: int = 0) -> None:
        self.images, self.crop, self.length = list(images), crop, length
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.images[int(self.rng.integers(len(self.images)))]
        return torch.from_numpy(np.ascontiguousarray(_crop(img, self.crop, self.rng))).float()


class FixedCrops(Dataset[torch.Tensor]):
    """``per_image`` crops per image, drawn once (validation)."""

    def __init__(self, images: Sequence[np.ndarray], crop: int, per_image: int = 2, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.crops = [
            np.ascontiguousarray(_crop(img, crop, rng if k else None))
            for img in images
            for k in range(per_image)
        ]

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.crops[i]).float()


class CUTSModule(pl.LightningModule):
    """Trains :class:`~angioseg.unsupervised.cuts.CUTSModel` with the CUTS objective."""

    def __init__(
        self,
        model: dict[str, Any],
        sampler: dict[str, Any],
        lam: float = 0.01,
        tau: float = 0.5,
        contrastive: str = "ntxent",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = CUTSModel(EncoderConfig(**model))
        if channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.sampler_cfg = SamplerConfig(**sampler)
        self.sampler = PatchSampler(self.sampler_cfg, seed=seed)

    def _loss(self, x: torch.Tensor, sampler: PatchSampler) -> tuple[torch.Tensor, ...]:
        anchors, positives = sampler.sample(x.detach().float().cpu().numpy())
        a = torch.from_numpy(anchors).to(x.device)
        p = torch.from_numpy(positives).to(x.device)
        if self.hparams["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        z = self.model(x)
        za, zp = gather_embeddings(z, a), gather_embeddings(z, p)
        b, s, d = za.shape
        recon = self.model.recon(za.reshape(b * s, d))
        patches = gather_patches(x, a, self.sampler_cfg.patch_size).reshape(recon.shape)
        h = self.hparams
        return cuts_loss(za, zp, recon, patches, h["lam"], h["tau"], h["contrastive"])

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss, con, rec = self._loss(batch, self.sampler)
        n = len(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=n)
        self.log("train_contrastive", con, on_step=False, on_epoch=True, batch_size=n)
        self.log("train_recon", rec, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        fixed = PatchSampler(self.sampler_cfg, seed=10_000 + batch_idx)
        loss, con, rec = self._loss(batch, fixed)
        n = len(batch)
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=n)
        self.log("val_contrastive", con, on_epoch=True, batch_size=n)
        self.log("val_recon", rec, on_epoch=True, batch_size=n)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        h = self.hparams
        return torch.optim.AdamW(self.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
