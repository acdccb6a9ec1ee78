"""Mean teacher with weak/strong views and confidence-filtered pseudo-labels.

Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017 (the teacher is an
exponential moving average of the student); the unlabeled term follows FixMatch (Sohn et al.,
NeurIPS 2020): the teacher labels a weakly augmented view, the student is trained on a strongly
augmented view of the same frame with cross-entropy on the pixels where the teacher is confident
(``threshold``). Weak and strong views share their geometry (flips, 90-degree rotations), so no
inverse warp is needed; the strong view adds intensity changes, blur and noise.

Defaults: EMA decay 0.99 (Tarvainen & Valpola's for short runs), confidence 0.9, unlabeled weight
1.0 ramped up with their sigmoid schedule over the first ``rampup`` fraction of the steps.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F

from angioseg.train.module import SegmentationModule


class MeanTeacherModule(SegmentationModule):
    def __init__(
        self,
        model: dict[str, Any],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        channels_last: bool = False,
        loss: str = "dicece",
        ema: float = 0.99,
        threshold: float = 0.9,
        unlabeled_weight: float = 1.0,
        rampup: float = 0.3,
        total_steps: int = 1000,
        lr_schedule: str = "constant",
    ) -> None:
        super().__init__(model, lr, weight_decay, dice_weight, ce_weight, channels_last, loss, lr_schedule)
        self.teacher = copy.deepcopy(self.model)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def ramp(self) -> float:
        """Sigmoid ramp-up exp(-5 (1 - t)^2) of the unlabeled weight, t = step / (rampup * total)."""
        t = min(1.0, self.global_step / max(1.0, self.hparams["rampup"] * self.hparams["total_steps"]))
        return float(math.exp(-5.0 * (1.0 - t) ** 2))

    def unlabeled_loss(self, weak: torch.Tensor, strong: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked CE of the student on ``strong`` against the teacher's labels on ``weak`` (B x 1 x H x W each)."""
        self.teacher.eval()
        with torch.no_grad():
            prob = self._run(self.teacher, weak).float().softmax(1)
        conf, label = prob.max(1)
        keep = (conf >= self.hparams["threshold"]).float()
        ce = F.cross_entropy(self(strong).float(), label, reduction="none")
        return (ce * keep).sum() / keep.numel(), keep.mean()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        sup = super().training_step(batch, batch_idx)
        if "u_weak" not in batch:
            return sup
        u_loss, kept = self.unlabeled_loss(batch["u_weak"], batch["u_strong"])
        w = self.hparams["unlabeled_weight"] * self.ramp()
        n = len(batch["u_weak"])
        self.log("unlabeled_loss", u_loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("confident_fraction", kept, on_step=False, on_epoch=True, batch_size=n)
        return sup + w * u_loss

    def inference_model(self) -> torch.nn.Module:
        return self.teacher

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        decay = min(self.hparams["ema"], (1 + self.global_step) / (10 + self.global_step))
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters(), strict=True):
                t.lerp_(s.detach().to(t.dtype), 1.0 - decay)
            for tb, sb in zip(self.teacher.buffers(), self.model.buffers(), strict=True):
                tb.copy_(sb)
