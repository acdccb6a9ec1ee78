"""The contract every pretraining method fulfils (see :mod:`angioseg.pretrain` for the registry).

A method is an ``nn.Module`` that owns a backbone :class:`~angioseg.models.UNet` (or its encoder)
plus its own heads. The data loader calls its picklable ``view_transform`` on one preprocessed
``1 x S x S`` image at a time; the Lightning module (:mod:`angioseg.pretrain.module`) calls
``forward(batch)`` for the losses, ``after_step`` after every optimiser step (momentum updates) and
builds the optimiser from the class's :class:`~angioseg.pretrain.optim.OptimSpec`. At the end
``export_state`` gives the UNet tensors (``encoder.*``, ``decoder.*``, ``head.*``) that
:func:`angioseg.train.checkpoint.load_pretrained` copies into a segmentation UNet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from angioseg.models.unet import UNet, build_model
from angioseg.pretrain.optim import OptimSpec

ViewTransform = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class Reconstruction:
    """Images for the reconstruction figure, each ``B x 1 x H x W`` (the paper's Figure 6 columns)."""

    original: torch.Tensor
    corrupted: torch.Tensor
    reconstruction: torch.Tensor


def backbone_config(model: dict[str, Any]) -> dict[str, Any]:
    """A UNet config whose 1x1 head predicts the input channels (the reconstruction head)."""
    cfg = build_model({**model, "out_channels": model.get("in_channels", 1)}).config()
    return cfg


class PretrainMethod(nn.Module):
    """Base class. Subclasses set ``name``, ``optim`` and ``reconstructs`` and implement ``forward``.

    Args:
        model: UNet keyword arguments (:meth:`UNet.config`); ``out_channels`` is replaced by
            ``in_channels`` (the backbone's head reconstructs the image).
        image_size: side of the preprocessed square images the data loader provides.
    """

    name: ClassVar[str] = ""
    optim: ClassVar[OptimSpec] = OptimSpec()
    reconstructs: ClassVar[bool] = False
    paper_epochs: ClassVar[int] = 100

    def __init__(self, model: dict[str, Any], image_size: int) -> None:
        super().__init__()
        self.model_config = backbone_config(model)
        self.image_size = int(image_size)
        self.gather: Callable[[torch.Tensor], torch.Tensor] = _identity
        self.rank = 0
        down = 2 ** int(self.model_config.get("depth", 4))
        if self.image_size % down or self.image_size < 2 * down:
            raise ValueError(
                f"image size {self.image_size} must be a multiple of the UNet's downsampling {down} "
                f"and at least {2 * down}"
            )

    # ---- the contract -------------------------------------------------------------------------
    @property
    def view_transform(self) -> ViewTransform:
        """Picklable callable: one ``1 x S x S`` image -> dict of view tensors (no model inside)."""
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover
        """Collated views -> dict of scalar losses; ``"loss"`` is the one optimised."""
        raise NotImplementedError

    def after_step(self, progress: float) -> None:
        """Called after every optimiser step with ``progress`` = step / total steps (EMA updates)."""

    def backbone_unet(self) -> nn.Module:
        """The module whose ``state_dict`` has the UNet keys (``encoder.*``, ...)."""
        return self.get_submodule("backbone")

    def export_state(self) -> dict[str, torch.Tensor]:
        """UNet tensors to save (``encoder.*``, ``decoder.*``, ``head.*``, method extras)."""
        return {k: v.detach().float() for k, v in self.backbone_unet().state_dict().items()}

    def load_export(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`export_state` (used to draw reconstructions from a saved run)."""
        self.backbone_unet().load_state_dict(state, strict=False)

    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        """``B x 1 x S x S`` images -> original / corrupted / reconstructed (eval mode, no grad)."""
        raise NotImplementedError(f"{self.name} is not a reconstruction method")

    @staticmethod
    def resolve_options(options: dict[str, Any], num_images: int) -> dict[str, Any]:
        """Adapt user options to the dataset before construction (MoCo clamps its queue)."""
        return options

    def options(self) -> dict[str, Any]:
        """Resolved method options (stored in the run's config and checkpoint)."""
        return {}

    def set_distributed(self, gather: Callable[[torch.Tensor], torch.Tensor], rank: int) -> None:
        """Use ``gather`` (all-gather over devices, concatenated on dim 0) for keys/negatives."""
        self.gather, self.rank = gather, rank

    def parameter_counts(self) -> dict[str, int]:
        """Trainable values and frozen (momentum-target) values, buffers excluded."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        return {"trainable": trainable, "momentum": frozen, "total": trainable + frozen}


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def make_backbone(method: PretrainMethod) -> UNet:
    """The method's backbone UNet (reconstruction head with ``in_channels`` outputs)."""
    return build_model(method.model_config)
