"""Focal + Dice loss of CoronarySegmentation (``utils/losses.py`` there), with its indexing bug fixed.

``L = w_focal * L_focal + w_dice * L_dice`` with the seed's ``w_focal = 0.5`` and
``w_dice = 0.5 * 0.85 = 0.425`` (``seed_repositories_notes.md`` §2.6):

* focal: ``ce`` = per-voxel cross-entropy, ``pt = exp(-ce)``, ``alpha = w[y] / mean(w[y])`` over the
  batch's voxels, ``L_focal = mean(alpha * (1 - pt)^gamma * ce)`` with ``gamma = 1``. Class weights
  ``w`` by crop size are the seed's ``{64: [0.0188, 0.9812], 128: [0.0056, 0.9944],
  256: [0.0019, 0.9981]}`` (ASOCA vessel fractions); only their ratio matters after the division.
  Written here because MONAI's ``FocalLoss`` has no per-batch weight normalisation.
* Dice: MONAI ``DiceLoss`` with softmax, the V-Net squared denominator, smoothing 1e-6 in numerator
  and denominator and the background channel excluded, averaged over the batch: ``1 - mean_n
  dice[n, vessel]``. The seed wrote ``1 - mean(dice[1])``, which indexes batch element 1 (both
  classes) instead of the vessel class, and fails at batch size 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

SEED_CLASS_WEIGHTS = {64: (0.0188, 0.9812), 128: (0.0056, 0.9944), 256: (0.0019, 0.9981)}
SEED_FOCAL_WEIGHT = 0.5
SEED_DICE_WEIGHT = 0.5 * 0.85


def seed_class_weights(crop: int) -> tuple[float, float]:
    """The seed's weights for the nearest of its crop sizes (64, 128, 256)."""
    key = min(SEED_CLASS_WEIGHTS, key=lambda k: abs(k - crop))
    return SEED_CLASS_WEIGHTS[key]


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None, gamma: float = 1.0
) -> torch.Tensor:
    """Class-weighted focal loss. ``logits``: B x K x spatial; ``target``: B x 1 x spatial (long)."""
    y = target[:, 0].long()
    ce = F.cross_entropy(logits.float(), y, reduction="none")
    pt = torch.exp(-ce)
    term = (1 - pt) ** gamma * ce
    if class_weights is not None:
        alpha = class_weights.to(logits.device)[y]
        term = term * alpha / alpha.mean()
    return term.mean()


class FocalDiceLoss(nn.Module):
    """``focal_weight * focal + dice_weight * (1 - soft Dice of the vessel class)``."""

    def __init__(
        self,
        focal_weight: float = SEED_FOCAL_WEIGHT,
        dice_weight: float = SEED_DICE_WEIGHT,
        class_weights: Sequence[float] | None = SEED_CLASS_WEIGHTS[128],
        gamma: float = 1.0,
    ) -> None:
        super().__init__()
        self.focal_weight, self.dice_weight, self.gamma = focal_weight, dice_weight, gamma
        w = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weights", w, persistent=False)
        self.dice = DiceLoss(
            include_background=False,
            to_onehot_y=True,
            softmax=True,
            squared_pred=True,
            smooth_nr=1e-6,
            smooth_dr=1e-6,
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits``: B x 2 x spatial; ``target``: B x 1 x spatial with values {0, 1}."""
        logits = logits.float()
        loss = logits.new_zeros(())
        if self.focal_weight:
            w: torch.Tensor | None = self.class_weights  # type: ignore[assignment]
            loss = loss + self.focal_weight * focal_loss(logits, target, w, self.gamma)
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice(logits, target)
        return loss
