"""MoCo v2 with the UNet encoder (He et al., CVPR 2020; Chen et al., arXiv:2003.04297).

Query encoder = UNet encoder -> global average pooling of the bottleneck (``16 * width``
channels, 1024 at width 64) -> MLP head (``16w -> 16w -> 128``, MoCo v2's ``dim_mlp -> dim_mlp ->
dim``). The key encoder and head are momentum copies (m = 0.999). Keys of past batches wait in a
queue of negatives (default 65 536, **clamped to the number of training images** so that a small
dataset does not fill the queue with stale copies of the current images); InfoNCE with tau = 0.07.

Views (the CM-UNet authors' ``moco_data_module.py``, two independent draws of one transform):
rotation U(-180, 180) with p 0.5, random resized crop (7/8 of the side, scale 0.2-1), Gaussian blur
(kernel 5-9, sigma 0.1-2) with p 0.5, horizontal and vertical flips, Gaussian noise sigma = max/10
with p 0.5. Optimiser: SGD lr 0.03 (MoCo v2 and the seed's class default; their command line ran
0.08 at batch 128), momentum 0.9, weight decay 1e-4, cosine schedule.

Differences from the seed: the seed had no MLP head (``use_mlp`` would crash: the UNet encoder has
no ``.fc``), so MoCo v2's head is added; without a GPU cluster there is no shuffling BatchNorm
across devices (the key encoder's BatchNorm sees the same batch as the query encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from angioseg.models.unet import build_model
from angioseg.pretrain.base import PretrainMethod, ViewTransform
from angioseg.pretrain.cmunet import default_crop
from angioseg.pretrain.heads import mlp
from angioseg.pretrain.losses import moco_logits
from angioseg.pretrain.momentum import ema_update, momentum_copy
from angioseg.pretrain.optim import OptimSpec
from angioseg.pretrain.views import (
    random_blur,
    random_flip,
    random_resized_crop,
    random_rotate,
    relative_noise,
)


@dataclass(frozen=True)
class MoCoViews:
    """``1 x S x S`` -> ``{"query", "key"}``: two independent ``1 x C x C`` augmentations."""

    crop: int

    def one(self, image: torch.Tensor) -> torch.Tensor:
        x = random_rotate(image, 180.0, p=0.5)
        x = random_resized_crop(x, self.crop, (0.2, 1.0))
        x = random_blur(x, (0.1, 2.0), (5, 7, 9), p=0.5)
        x = random_flip(random_flip(x, 0.5, -1), 0.5, -2)
        return relative_noise(x, p=0.5)

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"query": self.one(image), "key": self.one(image)}


class MoCo(PretrainMethod):
    """Momentum contrast v2; the exported UNet has the query encoder only (no decoder)."""

    name = "moco"
    reconstructs = False
    paper_epochs = 500
    optim = OptimSpec(name="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4, schedule="cosine")
    queue: torch.Tensor
    queue_ptr: torch.Tensor

    def __init__(
        self,
        model: dict[str, Any],
        image_size: int = 256,
        queue_size: int = 65536,
        dim: int = 128,
        tau: float = 0.07,
        momentum: float = 0.999,
        crop_size: int | None = None,
    ) -> None:
        super().__init__(model, image_size)
        if queue_size < 1:
            raise ValueError(f"queue_size must be positive, got {queue_size}")
        self.queue_size, self.dim, self.tau, self.momentum = queue_size, dim, tau, momentum
        self.crop = crop_size or default_crop(image_size)
        self.encoder = build_model(self.model_config).encoder
        feat = self.encoder.channels[-1]
        self.head = mlp(feat, feat, dim, norm=False, last_bias=True)
        self.key_encoder = momentum_copy(self.encoder)
        self.key_head = momentum_copy(self.head)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @staticmethod
    def resolve_options(options: dict[str, Any], num_images: int) -> dict[str, Any]:
        """Clamp the queue to the number of training images."""
        size = int(options.get("queue_size", 65536))
        return {**options, "queue_size": max(1, min(size, num_images))}

    @property
    def view_transform(self) -> ViewTransform:
        return MoCoViews(self.crop)

    def options(self) -> dict[str, Any]:
        keys = ("queue_size", "dim", "tau", "momentum")
        return {"crop_size": self.crop, **{k: getattr(self, k) for k in keys}}

    def backbone_unet(self) -> torch.nn.Module:
        return torch.nn.ModuleDict({"encoder": self.encoder})

    def embed(self, encoder: torch.nn.Module, head: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``B x 1 x C x C`` -> L2-normalised ``B x dim`` (bottleneck -> global mean -> head)."""
        return F.normalize(head(encoder(x)[-1].float().mean(dim=(2, 3))), dim=1)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """FIFO: write ``keys`` (N x dim) over the oldest entries of the ring buffer."""
        k, n = self.queue.shape[0], keys.shape[0]
        keys = keys.detach().to(self.queue.dtype)
        if n >= k:
            self.queue.copy_(keys[-k:])
            self.queue_ptr.zero_()
            return
        ptr = int(self.queue_ptr)
        idx = (torch.arange(n, device=keys.device) + ptr) % k
        self.queue[idx] = keys
        self.queue_ptr.fill_((ptr + n) % k)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``query``, ``key``: ``B x 1 x C x C`` -> ``{"loss"}`` (InfoNCE against key + queue)."""
        q = self.embed(self.encoder, self.head, batch["query"])
        with torch.no_grad():
            k = self.embed(self.key_encoder, self.key_head, batch["key"])
        logits = moco_logits(q, k, self.queue.clone(), self.tau)
        loss = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
        self.enqueue(self.gather(k))
        return {"loss": loss}

    def after_step(self, progress: float) -> None:
        ema_update(self.key_encoder, self.encoder, self.momentum)
        ema_update(self.key_head, self.head, self.momentum)
