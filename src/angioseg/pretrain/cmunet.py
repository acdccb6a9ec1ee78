"""CM-UNet: contrastive masked UNet (CMAE with a UNet backbone).

Huang et al., "Contrastive Masked Autoencoders are Stronger Vision Learners" (TPAMI 46, 2024) and
Challier et al., "CM-UNet" (the seed paper); defaults from the authors' ``cmunet_config.py`` as
recorded in ``seed_repositories_notes.md`` section 1.4:

* views: a random resized crop (scale 0.2-1, aspect 3/4-4/3) of the ``S x S`` image and a
  horizontal flip; the online view is its top-left ``C x C`` crop (224 of 256), the target view a
  ``C x C`` crop shifted by up to 31 px (scaled with ``S``), plus Gaussian noise N(0, (max/10)^2)
  (always applied in the authors' code: ``noise_prob=1``);
* per-image masks of 16 x 16 patches at ratio 0.65 on the online view (masked pixels set to 0);
* reconstruction: encoder -> pixel decoder (the backbone UNet's decoder and 1x1 head) -> MSE on
  masked pixels against the per-patch normalised online view;
* contrast: encoder features -> feature decoder (a second UNet decoder) -> spatial mean ->
  projector (-> 1536 -> 256) -> predictor (256 -> 1536 -> 256); target: momentum encoder bottleneck
  of the target view -> adapter -> spatial mean -> momentum projector; InfoNCE with tau = 0.07
  scaled by 2 tau; loss = 1 * contrastive + 1 * reconstruction;
* EMA m = 0.996 (constant) on the encoder and projector; AdamW beta (0.9, 0.95), weight decay
  0.05, lr 1.5e-4 per 256 images, linear warm-up for 40 of 300 epochs then cosine.

Fixed with respect to the authors' code: each image keeps its own mask (the code applied image 0's
mask to the batch); the target is the *spatially* pooled bottleneck (the code created a new random
1x1 convolution in every forward pass and flattened 256 x 14 x 14 into a 50 176-wide projector,
77 M parameters); the online side is pooled over space, not channels; the reconstruction target is
normalised per patch (the code: per row; ``target_norm="row"`` restores it).

The paper's "adapter for shape compatibility, implemented as a Conv2D layer" sits, as in the paper,
after the contrastive (momentum) encoder: a 1x1 convolution from the bottleneck's ``16 * width``
channels to the feature decoder's ``width``, so that online and target vectors enter projectors of
the same shape, as EMA requires. The target branch carries no gradient (stop-gradient, as in CMAE),
so the adapter is never trained: it is a fixed random map with orthonormal rows, drawn once from the
run's seed and kept in the checkpoint (the authors' code drew a new one in every forward pass). It is
applied after the spatial mean, which is the same as before it for a 1x1 convolution.

Intensity normalisation: the paper z-scores with the dataset's mean and SD; we keep the authors'
code's per-image z-score (``docs/pretraining.md`` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from angioseg.models.unet import UNetDecoder, build_model
from angioseg.pretrain.base import PretrainMethod, Reconstruction, ViewTransform
from angioseg.pretrain.heads import mlp
from angioseg.pretrain.losses import denormalize_target, info_nce, masked_mse, normalize_target
from angioseg.pretrain.masking import patch_grid, random_pixel_mask
from angioseg.pretrain.momentum import cosine_momentum, ema_update, momentum_copy
from angioseg.pretrain.optim import OptimSpec
from angioseg.pretrain.views import randint, random_flip, random_resized_crop, relative_noise


def default_crop(image_size: int, patch: int = 16) -> int:
    """Crop side: 7/8 of the image rounded down to whole patches (224 of 256, 112 of 128)."""
    return max(patch, (image_size * 7 // 8) // patch * patch)


@dataclass(frozen=True)
class ShiftedViews:
    """``1 x S x S`` image -> ``{"online": 1 x C x C, "target": 1 x C x C}`` (pixel-shifted, noisy)."""

    image_size: int
    crop: int
    max_shift: int
    scale: tuple[float, float] = (0.2, 1.0)
    noise_prob: float = 1.0

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        base = random_flip(random_resized_crop(image, self.image_size, self.scale), 0.5, -1)
        c = self.crop
        dy, dx = randint(0, self.max_shift), randint(0, self.max_shift)
        target = relative_noise(base[:, dy : dy + c, dx : dx + c], self.noise_prob)
        return {"online": base[:, :c, :c].contiguous(), "target": target.contiguous()}


class CMUNet(PretrainMethod):
    """Contrastive masked UNet; the exported UNet is the online encoder + pixel decoder."""

    adapter: torch.Tensor

    name = "cmunet"
    reconstructs = True
    paper_epochs = 300
    optim = OptimSpec(
        name="adamw",
        lr=1.5e-4,
        scale_lr=True,
        weight_decay=0.05,
        betas=(0.9, 0.95),
        schedule="cosine",
        warmup_fraction=40 / 300,
    )

    def __init__(
        self,
        model: dict[str, Any],
        image_size: int = 256,
        mask_ratio: float = 0.65,
        patch_size: int = 16,
        crop_size: int | None = None,
        max_shift: int | None = None,
        noise_prob: float = 1.0,
        tau: float = 0.07,
        momentum: float = 0.996,
        momentum_end: float = 0.996,
        proj_hidden: int = 1536,
        proj_dim: int = 256,
        rc_weight: float = 1.0,
        ct_weight: float = 1.0,
        target_norm: str = "patch",
    ) -> None:
        super().__init__(model, image_size)
        crop = crop_size or default_crop(image_size, patch_size)
        patch_grid((crop, crop), patch_size)
        if crop > image_size:
            raise ValueError(f"crop_size {crop} exceeds image_size {image_size}")
        shift = round(31 * image_size / 256) if max_shift is None else max_shift
        self.crop, self.max_shift = crop, min(shift, image_size - crop)
        self.mask_ratio, self.patch_size, self.noise_prob = mask_ratio, patch_size, noise_prob
        self.tau, self.momentum, self.momentum_end = tau, momentum, momentum_end
        self.proj_hidden, self.proj_dim = proj_hidden, proj_dim
        self.rc_weight, self.ct_weight, self.target_norm = rc_weight, ct_weight, target_norm
        normalize_target(torch.zeros(1, 1, patch_size, patch_size), target_norm, patch_size)

        cfg = self.model_config
        width, depth = int(cfg["width"]), int(cfg["depth"])
        bottleneck = width * 2**depth
        self.backbone = build_model(cfg)
        self.feature_decoder = UNetDecoder(cfg["spatial_dims"], width, depth, cfg["act"])
        self.register_buffer("adapter", torch.nn.init.orthogonal_(torch.empty(width, bottleneck)))
        self.projector = mlp(width, proj_hidden, proj_dim)
        self.predictor = mlp(proj_dim, proj_hidden, proj_dim)
        self.target_encoder = momentum_copy(self.backbone.encoder)
        self.target_projector = momentum_copy(self.projector)

    @property
    def view_transform(self) -> ViewTransform:
        return ShiftedViews(self.image_size, self.crop, self.max_shift, noise_prob=self.noise_prob)

    def options(self) -> dict[str, Any]:
        keys = (
            *("mask_ratio", "patch_size", "noise_prob", "tau", "momentum", "momentum_end"),
            *("proj_hidden", "proj_dim", "rc_weight", "ct_weight", "target_norm", "max_shift"),
        )
        return {"crop_size": self.crop, **{k: getattr(self, k) for k in keys}}

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image pixel mask ``B x 1 x H x W`` (1 = masked)."""
        return random_pixel_mask(x, self.patch_size, self.mask_ratio)

    def online_embedding(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Encoder features of the masked view -> ``B x proj_dim`` prediction (feature decoder path)."""
        pooled = self.feature_decoder(feats).float().mean(dim=(2, 3))
        return self.predictor(self.projector(pooled))

    @torch.no_grad()
    def target_embedding(self, target: torch.Tensor) -> torch.Tensor:
        """Momentum encoder bottleneck of the target view -> adapter -> spatial mean -> momentum projector."""
        pooled = self.target_encoder(target)[-1].float().mean(dim=(2, 3))
        return self.target_projector(pooled @ self.adapter.t())

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``online``, ``target``: ``B x 1 x C x C`` -> ``{"loss", "loss_rc", "loss_ct"}``."""
        online, target = batch["online"], batch["target"]
        m = self.mask(online)
        feats = self.backbone.encoder(online * (1 - m))
        recon = self.backbone.head(self.backbone.decoder(feats))
        loss_rc = masked_mse(recon, normalize_target(online, self.target_norm, self.patch_size), m)
        q = self.online_embedding(feats)
        k = self.gather(self.target_embedding(target))
        loss_ct = info_nce(q, k, self.tau, offset=self.rank * q.shape[0])
        loss = self.ct_weight * loss_ct + self.rc_weight * loss_rc
        return {"loss": loss, "loss_rc": loss_rc.detach(), "loss_ct": loss_ct.detach()}

    def after_step(self, progress: float) -> None:
        m = cosine_momentum(self.momentum, self.momentum_end, progress)
        ema_update(self.target_encoder, self.backbone.encoder, m)
        ema_update(self.target_projector, self.projector, m)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        """Masked patches predicted and de-normalised with the true patch statistics (as MAE's figures)."""
        m = self.mask(images)
        corrupted = images * (1 - m)
        pred = denormalize_target(self.backbone(corrupted).float(), images, self.target_norm, self.patch_size)
        return Reconstruction(images, corrupted, torch.where(m > 0, pred, images.float()))
