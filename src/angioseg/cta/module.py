"""Lightning module for CT: the shared :class:`SegmentationModule` with the seed's loss and optimiser.

From CoronarySegmentation (``seed_repositories_notes.md`` §2.5-2.6): UNet widths 32-64-128-256-512
with LeakyReLU(0.01) and dropout 0.05 in the encoder blocks (``angioseg.models.UNet(act="leakyrelu",
dropout=0.05)``), focal + Dice loss (:mod:`angioseg.cta.losses`), AdamW(lr 4e-4, betas (0.9, 0.999),
weight decay 0.05, none on normalisation parameters), gradient-norm clipping 1.0 (set on the
Trainer) and early stopping on the validation loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from angioseg.cta.losses import SEED_DICE_WEIGHT, SEED_FOCAL_WEIGHT, FocalDiceLoss
from angioseg.train.module import SegmentationModule

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm3d)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: normalisation-layer parameters without weight decay, the rest with it.

    The seed selected them by name ('bn'/'norm'); our UNet's BatchNorm layers sit in ``nn.Sequential``
    with numeric names, so they are found by type.
    """
    no_decay = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    decay = [p for p in model.parameters() if id(p) not in no_decay]
    rest = [p for p in model.parameters() if id(p) in no_decay]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


class CTAModule(SegmentationModule):
    """2D or 3D UNet trained with focal + Dice and AdamW; logs ``train_loss``, ``val_loss``, ``val_dice``."""

    def __init__(
        self,
        model: dict[str, Any],
        lr: float = 4e-4,
        weight_decay: float = 0.05,
        focal_weight: float = SEED_FOCAL_WEIGHT,
        dice_weight: float = SEED_DICE_WEIGHT,
        class_weights: Sequence[float] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(model, lr=lr, weight_decay=weight_decay, channels_last=channels_last)
        self.loss = FocalDiceLoss(focal_weight, dice_weight, class_weights)  # type: ignore[assignment]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            param_groups(self.model, self.hparams["weight_decay"]), lr=self.hparams["lr"], betas=(0.9, 0.999)
        )
