"""One Lightning module that drives every pretraining method.

Multi-device and multi-node DDP, bf16 autocast, checkpointing, resume and the progress bar come
from Lightning (:func:`angioseg.train.trainer.make_trainer`); this module only calls the method's
``forward`` for the losses, ``after_step`` after each optimiser step (momentum targets) and builds
the optimiser and per-step schedule from the method's :class:`~angioseg.pretrain.optim.OptimSpec`.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from angioseg.models.unet import set_memory_format
from angioseg.pretrain import method_class
from angioseg.pretrain.optim import OptimSpec, build_optimizer, lr_factor, weight_decay_at


class PretrainModule(pl.LightningModule):
    """Wraps ``METHODS[method](model, image_size, **options)``.

    Args:
        method: registry name.
        model: UNet keyword arguments of the backbone.
        image_size: side of the preprocessed images.
        options: method options (mask ratio, temperature, ...), already resolved for the dataset.
        optim: overrides of the method's :class:`OptimSpec` fields.
        batch_size: images per device and step (for the per-256 learning-rate rule).
        lr: peak learning rate; ``None`` = the method's recipe.
        channels_last: channels_last weights and inputs (faster with bf16 on CPU).
    """

    def __init__(
        self,
        method: str,
        model: dict[str, Any],
        image_size: int,
        options: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        batch_size: int = 16,
        lr: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        cls = method_class(method)
        self.method = cls(model, image_size=image_size, **(options or {}))
        self.spec: OptimSpec = cls.optim.with_overrides(optim or {})
        if channels_last:
            set_memory_format(self.method, True)

    def setup(self, stage: str) -> None:
        if self.trainer.world_size > 1:
            self.method.set_distributed(self._gather, self.trainer.global_rank)

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        """All-gather over devices, concatenated on dim 0 (no gradient through other ranks' parts)."""
        gathered = self.all_gather(t.contiguous())
        assert isinstance(gathered, torch.Tensor)
        return gathered.flatten(0, 1)

    def progress(self) -> float:
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return min(1.0, self.trainer.global_step / total)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.hparams["channels_last"]:
            batch = {
                k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                for k, v in batch.items()
            }
        out = self.method(batch)
        n = next(iter(batch.values())).shape[0]
        self.log(
            "loss", out["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=n, sync_dist=True
        )
        for key, value in out.items():
            if key != "loss":
                self.log(key, value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        opt = self.optimizers()
        if isinstance(opt, pl.core.optimizer.LightningOptimizer | torch.optim.Optimizer):
            self.log("lr", opt.param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=n)
        return out["loss"]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.spec.weight_decay_end is None:
            return
        wd = weight_decay_at(self.spec, self.progress())
        opt = self.optimizers()
        for group in opt.param_groups:  # type: ignore[union-attr]
            if group.get("decay", False):
                group["weight_decay"] = wd

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.method.after_step(self.progress())

    def peak_lr(self) -> float:
        if self.hparams["lr"] is not None:
            return float(self.hparams["lr"])
        world = self.trainer.world_size if self._trainer is not None else 1
        return self.spec.peak_lr(int(self.hparams["batch_size"]) * world)

    def configure_optimizers(self) -> Any:
        opt = build_optimizer(self.method, self.spec, self.peak_lr())
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, int(self.trainer.max_epochs or 1)))
        spec = self.spec
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(spec, s, total, per_epoch))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
