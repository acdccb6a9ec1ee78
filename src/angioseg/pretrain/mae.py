"""MAE-UNet: masked-image modelling with a full UNet (the CM-UNet authors' "MAE" baseline).

After He et al., "Masked Autoencoders Are Scalable Vision Learners" (CVPR 2022), adapted to a CNN
as the CM-UNet authors did (``Transformation_based/utils.py``): 16 x 16 patches, **ratio 0.5**,
masked pixels set to 0 (the z-score mean), the full UNet predicts the image, and the loss is MSE on
the **whole image** (``loss_on="all"``, the seed) or on masked pixels only (``loss_on="masked"``,
as in MAE). No augmentation besides the mask (the seed uses none). Optimiser as in their script:
SGD lr 1e-2, momentum 0.9, StepLR halving every 40 epochs.

Fixed: the seed drew a mask per image but applied image 0's mask to the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from angioseg.models.unet import build_model
from angioseg.pretrain.base import PretrainMethod, Reconstruction, ViewTransform
from angioseg.pretrain.losses import masked_mse
from angioseg.pretrain.masking import patch_grid, random_pixel_mask
from angioseg.pretrain.optim import GENESIS_SGD

LOSS_ON = ("all", "masked")


@dataclass(frozen=True)
class ImageOnly:
    """``1 x S x S`` image -> ``{"image": image}`` (masks are drawn per batch in ``forward``)."""

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image": image}


class MAE(PretrainMethod):
    """Masked autoencoder with a UNet: reconstruct the image from 50 % of its 16-px patches."""

    name = "mae"
    reconstructs = True
    paper_epochs = 256
    optim = GENESIS_SGD

    def __init__(
        self,
        model: dict[str, Any],
        image_size: int = 256,
        mask_ratio: float = 0.5,
        patch_size: int = 16,
        loss_on: str = "all",
    ) -> None:
        super().__init__(model, image_size)
        if loss_on not in LOSS_ON:
            raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
        patch_grid((image_size, image_size), patch_size)
        self.mask_ratio, self.patch_size, self.loss_on = mask_ratio, patch_size, loss_on
        self.backbone = build_model(self.model_config)

    @property
    def view_transform(self) -> ViewTransform:
        return ImageOnly()

    def options(self) -> dict[str, Any]:
        return {"mask_ratio": self.mask_ratio, "patch_size": self.patch_size, "loss_on": self.loss_on}

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image pixel mask ``B x 1 x H x W`` (1 = masked) with exactly the ratio's patch count."""
        return random_pixel_mask(x, self.patch_size, self.mask_ratio)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``image`` ``B x 1 x S x S`` -> ``{"loss"}``: MSE of UNet(masked image) vs the image."""
        x = batch["image"]
        m = self.mask(x)
        pred = self.backbone(x * (1 - m))
        if self.loss_on == "masked":
            return {"loss": masked_mse(pred, x, m)}
        return {"loss": F.mse_loss(pred.float(), x.float())}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        m = self.mask(images)
        corrupted = images * (1 - m)
        return Reconstruction(images, corrupted, self.backbone(corrupted).float())
