"""SparK for the UNet: sparse masked modelling of a CNN (Tian et al., "Designing BERT for
Convolutional Networks: Sparse and Hierarchical Masked Modeling", ICLR 2023).

Defaults of the CM-UNet authors' port with ``--full_unet`` (``seed_repositories_notes.md`` 1.5):

* the mask patch is the encoder's total downsampling (16 px for 4 poolings), ratio 0.6 (keep
  ``round(L * 0.4)`` cells: 102 of 256 at 256 px), one mask per image;
* the encoder runs on the masked image with **sparse** semantics: after every convolution the
  features outside the visible cells are set back to zero, BatchNorm statistics are computed over
  visible positions only, and max-pooled maps are masked again. This is done here by walking the
  unchanged :class:`~angioseg.models.unet.UNetEncoder` layer by layer (:func:`sparse_encode`), so
  the UNet's state-dict keys stay those of the segmentation network;
* at every scale the empty positions are filled with a learnable mask token (one per scale,
  ``1 x C x 1 x 1``, truncated normal std 0.02); no densifying norm or projection (``--full_unet``);
* the full UNet decoder and a 1x1 head reconstruct the image; the loss is the MSE on masked
  patches against per-patch normalised targets;
* views: random resized crop (scale 0.67-1) and horizontal flip; LAMB (beta2 0.95, SparK's value
  for CNNs: the authors' run had beta2 = 0 because ``ada`` defaulted to 0 for non-ResNet models),
  lr 2e-4 per 256 images, weight decay cosine 0.04 -> 0.2, warm-up 40 of 1600 epochs, grad clip 5.

The authors' model also registered SparK's densify projections (3 x 3 convolutions, 3.13 M
parameters at width 64) although ``--full_unet`` never calls them; that is the difference between
the paper's 34.18 M and our 31.04 M + 1 984 mask-token values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from angioseg.models.unet import UNetEncoder, build_model
from angioseg.pretrain.base import PretrainMethod, Reconstruction, ViewTransform
from angioseg.pretrain.losses import denormalize_target, masked_mse, normalize_target
from angioseg.pretrain.masking import random_patch_mask, upsample_mask
from angioseg.pretrain.optim import OptimSpec
from angioseg.pretrain.views import random_flip, random_resized_crop


def sparse_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the ``active`` (``B x 1 x H x W`` bool) positions of ``x`` only; zeros elsewhere."""
    sel = active[:, 0]
    flat = x.permute(0, 2, 3, 1)[sel].float()  # N_active x C
    training = bn.training or not bn.track_running_stats
    momentum = bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    y = F.batch_norm(
        flat, bn.running_mean, bn.running_var, bn.weight, bn.bias, training, momentum or 0.0, bn.eps
    )
    out = x.new_zeros(x.shape[0], x.shape[2], x.shape[3], x.shape[1])
    out[sel] = y.to(out.dtype)
    return out.permute(0, 3, 1, 2)


def sparse_encode(encoder: UNetEncoder, x: torch.Tensor, active: torch.Tensor) -> list[torch.Tensor]:
    """Run ``encoder`` with sparse-convolution semantics; ``active`` is ``B x gh x gw`` at the bottleneck.

    Returns the encoder's ``depth + 1`` maps (finest first), zero outside the visible cells.
    """
    down = encoder.downsample
    feats = []
    for i, stage in enumerate(encoder.stages):
        mask = upsample_mask(active, down >> i)
        x = (encoder.pool(x) if i > 0 else x) * mask
        for layer in stage.children():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                x = sparse_batch_norm(layer, x, mask)  # type: ignore[arg-type]
            elif isinstance(layer, nn.modules.conv._ConvNd):
                x = layer(x) * mask
            else:  # activation / dropout: 0 stays 0
                x = layer(x)
        feats.append(x)
    return feats


@dataclass(frozen=True)
class CropFlip:
    """``1 x S x S`` -> ``{"image": random resized crop (scale 0.67-1) + horizontal flip}``."""

    image_size: int
    scale: tuple[float, float] = (0.67, 1.0)

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image": random_flip(random_resized_crop(image, self.image_size, self.scale), 0.5, -1)}


class SparK(PretrainMethod):
    """Sparse masked modelling with a UNet encoder, per-scale mask tokens and the full UNet decoder."""

    name = "spark"
    reconstructs = True
    paper_epochs = 1600
    optim = OptimSpec(
        name="lamb",
        lr=2e-4,
        scale_lr=True,
        weight_decay=0.04,
        weight_decay_end=0.2,
        betas=(0.9, 0.95),
        schedule="cosine",
        warmup_fraction=40 / 1600,
        grad_clip=5.0,
    )

    def __init__(self, model: dict[str, Any], image_size: int = 256, mask_ratio: float = 0.6) -> None:
        super().__init__(model, image_size)
        self.mask_ratio = mask_ratio
        self.backbone = build_model(self.model_config)
        self.patch_size = self.backbone.encoder.downsample
        self.mask_tokens = nn.ParameterList()
        for c in self.backbone.encoder.channels:
            p = nn.Parameter(torch.zeros(1, c, 1, 1))
            nn.init.trunc_normal_(p, std=0.02, a=-0.02, b=0.02)
            self.mask_tokens.append(p)

    @property
    def view_transform(self) -> ViewTransform:
        return CropFlip(self.image_size)

    def options(self) -> dict[str, Any]:
        return {"mask_ratio": self.mask_ratio}

    def export_state(self) -> dict[str, torch.Tensor]:
        state = super().export_state()
        state.update({f"mask_tokens.{i}": p.detach().float() for i, p in enumerate(self.mask_tokens)})
        return state

    def load_export(self, state: dict[str, torch.Tensor]) -> None:
        super().load_export({k: v for k, v in state.items() if not k.startswith("mask_tokens.")})
        with torch.no_grad():
            for i, p in enumerate(self.mask_tokens):
                if f"mask_tokens.{i}" in state:
                    p.copy_(state[f"mask_tokens.{i}"])

    def active_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``B x gh x gw`` bool, True = visible, exactly ``round(L * (1 - ratio))`` per image."""
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        return ~random_patch_mask(x.shape[0], grid, self.mask_ratio, x.device)

    def predict(self, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Sparse-encode the visible cells, fill holes with mask tokens, decode: ``B x 1 x H x W``."""
        feats = sparse_encode(self.backbone.encoder, x * upsample_mask(active, self.patch_size), active)
        dense = []
        for i, (f, tok) in enumerate(zip(feats, self.mask_tokens, strict=True)):
            keep = upsample_mask(active, self.patch_size >> i)
            dense.append(torch.where(keep, f, tok.to(f.dtype)))
        return self.backbone.head(self.backbone.decoder(dense))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``image`` ``B x 1 x S x S`` -> ``{"loss"}``: per-patch-normalised MSE on masked patches."""
        x = batch["image"]
        active = self.active_mask(x)
        rec = self.predict(x, active)
        masked = (~upsample_mask(active, self.patch_size)).to(rec.dtype)
        return {"loss": masked_mse(rec, normalize_target(x, "patch", self.patch_size), masked)}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        active = self.active_mask(images)
        keep = upsample_mask(active, self.patch_size)
        rec = denormalize_target(self.predict(images, active).float(), images, "patch", self.patch_size)
        return Reconstruction(images, images * keep, torch.where(keep, images.float(), rec))
