"""MoCo v2 with the UNet encoder (He et al., CVPR 2020; Chen et al., arXiv:2003.04297).

Query encoder = UNet encoder -> global average pooling of the bottleneck (``16 * width``
channels, 1024 at width 64) -> MLP head (``16w -> 16w -> 128``, MoCo v2's ``dim_mlp -> dim_mlp ->
dim``). The key encoder and head are momentum copies (m = 0.999). Keys of past batches wait in a
FIFO queue of negatives of MoCo v2's size (65 536, independent of the dataset size); InfoNCE with
tau = 0.07.

Two adaptations for small datasets, where the queue holds several keys of every image: each queued
key remembers the index of the image it came from, and a query never uses its *own* image's earlier
keys as negatives (they are stale positives, i.e. false negatives); and slots not yet written are
not used as negatives (MoCo fills the queue with random vectors, overwritten within a few hundred
steps on ImageNet; at CPU budgets of ~2000 keys they would be 97 % of a 65 536 queue and only dilute
the loss). So the first step has no negative and a zero loss.

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

EMPTY = -1  # a queue slot never written
UNKNOWN = -2  # a key whose image index was not given (never equal to a real index)


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
    queue_ids: torch.Tensor
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
        # Image index of each queued key; EMPTY marks a slot never written (not a negative).
        self.register_buffer("queue_ids", torch.full((queue_size,), EMPTY, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

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
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """FIFO: write ``keys`` (N x dim) and their image ``ids`` (N) over the oldest entries."""
        k, n = self.queue.shape[0], keys.shape[0]
        keys = keys.detach().to(self.queue.dtype)
        ids = torch.full((n,), UNKNOWN, dtype=torch.long) if ids is None else ids.to(torch.long)
        ids = ids.to(self.queue_ids.device)
        if n >= k:
            self.queue.copy_(keys[-k:])
            self.queue_ids.copy_(ids[-k:])
            self.queue_ptr.zero_()
            return
        ptr = int(self.queue_ptr)
        idx = (torch.arange(n, device=keys.device) + ptr) % k
        self.queue[idx] = keys
        self.queue_ids[idx.to(self.queue_ids.device)] = ids
        self.queue_ptr.fill_((ptr + n) % k)

    def negatives_mask(self, ids: torch.Tensor | None, batch: int) -> torch.Tensor:
        """``B x K`` bool: True where a queued key is no negative for the query (empty slot, own image)."""
        excluded = (self.queue_ids == EMPTY).expand(batch, -1)
        if ids is None:
            return excluded
        return excluded | (self.queue_ids[None, :] == ids.to(self.queue_ids.device)[:, None])

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``query``, ``key``: ``B x 1 x C x C``; optional ``index`` (B) -> ``{"loss"}``.

        InfoNCE of each query against its key (positive) and the queued keys of *other* images.
        """
        q = self.embed(self.encoder, self.head, batch["query"])
        with torch.no_grad():
            k = self.embed(self.key_encoder, self.key_head, batch["key"])
        ids = batch.get("index")
        logits = moco_logits(q, k, self.queue.clone(), self.tau)
        excluded = self.negatives_mask(ids, q.shape[0])
        logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(excluded, float("-inf"))], dim=1)
        loss = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
        self.enqueue(self.gather(k), None if ids is None else self.gather(ids))
        return {"loss": loss}

    def after_step(self, progress: float) -> None:
        ema_update(self.key_encoder, self.encoder, self.momentum)
        ema_update(self.key_head, self.head, self.momentum)
