"""Lightning module for supervised segmentation (fine-tuning) with Dice + cross-entropy."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from monai.losses import DiceCELoss
from torchmetrics import MeanMetric

from angioseg.models.unet import build_model, set_memory_format


def batch_dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image hard Dice of binary B x 1 x ... tensors (1 when both are empty)."""
    p, g = pred.flatten(1).float(), target.flatten(1).float()
    inter = (p * g).sum(1)
    denom = p.sum(1) + g.sum(1)
    return torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))


LOSSES = ("dicece", "dicecldice")
LR_SCHEDULES = ("constant", "cosine")


def optimizer_with_schedule(module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> Any:
    """``optimizer`` with the module's ``lr_schedule`` (what ``configure_optimizers`` returns).

    ``constant``: the optimizer alone. ``cosine``: the learning rate follows half a cosine from its
    value at epoch 0 down to nearly 0 at the trainer's last epoch (``max_epochs``), stepped once an
    epoch. The total is read when training starts, so a run resumed with a larger ``--epochs``
    stretches the rest of its curve to the new total (the factor is a function of the epoch and the
    total, not state kept in the checkpoint).
    """
    schedule = module.hparams.get("lr_schedule", "constant")
    if schedule == "constant":
        return optimizer
    if schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {schedule!r}; expected one of {', '.join(LR_SCHEDULES)}")
    import math

    total = max(1, int(module.trainer.max_epochs or 1))

    def factor(epoch: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(epoch, total) / total))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def make_loss(name: str, dice_weight: float = 1.0, ce_weight: float = 1.0) -> torch.nn.Module:
    """``dicece``: MONAI Dice + CE; ``dicecldice``: that plus soft-clDice (Shit et al., CVPR 2021).

    soft-clDice is MONAI's ``SoftclDiceLoss`` (3 soft-skeleton iterations, the paper's default) on
    the vessel channel, added with weight 0.5 as in the paper's Dice + clDice combination.
    """
    dicece = DiceCELoss(
        include_background=False, to_onehot_y=True, softmax=True, lambda_dice=dice_weight, lambda_ce=ce_weight
    )
    if name == "dicece":
        return dicece
    if name == "dicecldice":
        from monai.losses import SoftclDiceLoss

        cl = SoftclDiceLoss(iter_=3)

        class _DiceCEclDice(torch.nn.Module):
            def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                vessel = logits.float().softmax(1)[:, 1:]
                return dicece(logits, target) + 0.5 * cl(vessel, target.float())

        return _DiceCEclDice()
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")


class SegmentationModule(pl.LightningModule):
    """UNet + differentiable soft Dice (vessel channel) + cross-entropy, Adam.

    The CM-UNet authors' Dice term thresholded the probabilities and so carried no gradient
    (training was effectively CE-only); MONAI's ``DiceCELoss`` with ``softmax=True`` is differentiable.
    ``include_background=False`` matches their ``ignore_channels=[0]``.
    """

    def __init__(
        self,
        model: dict[str, Any],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        channels_last: bool = False,
        loss: str = "dicece",
        lr_schedule: str = "constant",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(model)
        if channels_last:
            set_memory_format(self.model, True)
        self.loss = make_loss(loss, dice_weight, ce_weight)
        # Validation means over every image, also when DDP splits the images over processes (a
        # metric object sums and counts in each process and reduces both; a logged per-process mean
        # would be averaged with the other processes' means whatever their image counts).
        self.val_loss_mean, self.val_dice_mean = MeanMetric(), MeanMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.model, x)

    def _run(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.hparams["channels_last"] and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return net(x)

    def inference_model(self) -> torch.nn.Module:
        """The network that is validated and exported (a mean teacher's teacher, else the model)."""
        return self.model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.loss(logits.float(), batch["mask"])
        self.log(
            "train_loss",
            loss,
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=len(logits),
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self._run(self.inference_model(), batch["image"]).float()
        loss = self.loss(logits, batch["mask"])
        pred = logits.argmax(1, keepdim=True)
        d = batch_dice(pred, batch["mask"] > 0)
        self.val_loss_mean.update(loss.detach(), weight=len(logits))
        self.val_dice_mean.update(d)
        self.log("val_loss", self.val_loss_mean, prog_bar=True, on_step=False, on_epoch=True)
        self.log("val_dice", self.val_dice_mean, prog_bar=True, on_step=False, on_epoch=True)

    def on_train_start(self) -> None:
        # A resumed run restores the optimizer's learning rate as the schedule left it for the stored
        # total; set it for the epoch it resumes at under the total of this run (optimizer_with_schedule).
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                for group, base, factor in zip(
                    sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True
                ):
                    group["lr"] = base * factor(sched.last_epoch)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        return optimizer_with_schedule(self, opt)
