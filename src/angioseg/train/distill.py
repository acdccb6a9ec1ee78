"""Knowledge distillation: a narrow student UNet learns a wide teacher's soft probabilities.

Pixel-wise distillation (Hinton, Vinyals & Dean, "Distilling the knowledge in a neural network",
2015; applied per pixel to segmentation by Liu et al., "Structured knowledge distillation for
semantic segmentation", CVPR 2019): the student minimises, besides the supervised Dice + CE on the
labeled images, the KL divergence from the teacher's class distribution to its own at every pixel,
at temperature ``T`` and scaled by ``T**2`` (Hinton's scaling keeps the gradient size independent
of ``T``). Teacher and student see the *same* augmented view of each image ("consistent teaching",
Beyer et al., "Knowledge distillation: a good teacher is patient and consistent", CVPR 2022); the
teacher runs frozen, in eval mode, on every batch.

With ``--unlabeled`` each batch also carries as many unlabeled frames (``u_weak`` of
:class:`angioseg.semi.data.SemiDataset`: flipped / rotated, no intensity change); they go through
the same forward pass as the labeled images and learn only the teacher's answer. The teacher must
not have seen a test image (:func:`angioseg.train.finetune.run_finetune` checks its recorded
images against the test split), so the student is scored on the teacher's own test split.

The student starts either from scratch or (``init="teacher"``, the default when the shapes allow)
from the teacher itself, slimmed to the student's width (:func:`slim_init`): every feature map
keeps the channels whose BatchNorm scale is largest ("network slimming", Liu et al., ICCV 2017),
the upsampled maps those that the next convolution weighs most (L1 norm of its input weights, as
in Li et al., "Pruning filters for efficient ConvNets", ICLR 2017). On 28 CIMAT images a width-8
student from scratch was still far from the teacher after 40 epochs; see docs/results/speed.md.

Defaults: weight 1 (the KL term beside Dice + CE), ``T = 1`` (for two classes a higher temperature
mostly flattens the confident background; both are options of ``angioseg distill``).
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import torch
import torch.nn.functional as F

from angioseg.models.unet import UNet, set_memory_format
from angioseg.train.module import SegmentationModule

INITS = ("teacher", "scratch")


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over pixels of KL(teacher || student) of ``B x C x H x W`` logits at ``temperature``, times its square."""
    t = F.log_softmax(teacher.float() / temperature, 1)
    s = F.log_softmax(student.float() / temperature, 1)
    return (t.exp() * (t - s)).sum(1).mean() * temperature**2


def _convs(block: torch.nn.Module) -> list[torch.nn.Conv2d]:
    return [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]


def _bns(block: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def _largest(score: torch.Tensor, k: int) -> torch.Tensor:
    return score.detach().abs().topk(k).indices.sort().values


def _copy_conv(
    dst: torch.nn.Conv2d, src: torch.nn.Conv2d, out_idx: torch.Tensor, in_idx: torch.Tensor
) -> None:
    dst.weight.data.copy_(src.weight.data[out_idx][:, in_idx])
    if src.bias is not None and dst.bias is not None:
        dst.bias.data.copy_(src.bias.data[out_idx])


def _slim_double_conv(dst: torch.nn.Module, src: torch.nn.Module, in_idx: torch.Tensor) -> torch.Tensor:
    """Copy the kept channels of a DoubleConv; return the indices of its output channels kept."""
    idx = in_idx
    for d, s, db, sb in zip(_convs(dst), _convs(src), _bns(dst), _bns(src), strict=True):
        keep = _largest(sb.weight, d.out_channels)
        _copy_conv(d, s, keep, idx)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(db, name).data.copy_(getattr(sb, name).data[keep])
        idx = keep
    return idx


def slim_problem(student: dict[str, Any], teacher: dict[str, Any]) -> str | None:
    """Why a student (UNet config) cannot start from the teacher slimmed (:func:`slim_init`), or None."""
    same = ("spatial_dims", "in_channels", "out_channels", "depth", "act", "vesselness")
    if any(student.get(k) != teacher.get(k) for k in same) or student.get("spatial_dims") != 2:
        return (
            f"a student initialised from its teacher needs the teacher's 2D architecture (depth "
            f"{teacher.get('depth')}, activation {teacher.get('act')}, vesselness channel "
            f"{teacher.get('vesselness')}); got depth {student.get('depth')}, vesselness channel "
            f"{student.get('vesselness')}: "
            "give the teacher's depth or start from scratch"
        )
    if student["width"] > teacher["width"]:
        return f"the student (width {student['width']}) is wider than its teacher (width {teacher['width']})"
    return None


def slim_init(student: UNet, teacher: UNet) -> None:
    """Initialise a narrower 2D ``student`` from ``teacher`` (same depth and channels), channel by channel.

    Raises:
        ValueError: the student is not a narrower copy of the teacher's architecture (:func:`slim_problem`).
    """
    s = student.config()
    problem = slim_problem(s, teacher.config())
    if problem:
        raise ValueError(problem)
    idx = torch.arange(s["in_channels"] + (1 if s.get("vesselness") else 0))  # the encoder's inputs
    skips = []
    for d, src in zip(student.encoder.stages, teacher.encoder.stages, strict=True):
        idx = _slim_double_conv(d, src, idx)
        skips.append(idx)
    for i in reversed(range(s["depth"])):
        up_d = cast(torch.nn.ConvTranspose2d, student.decoder.ups[i])
        up_t = cast(torch.nn.ConvTranspose2d, teacher.decoder.ups[i])
        c = up_t.out_channels
        # the upsampled channels the next block's first convolution weighs most
        weight_in = _convs(teacher.decoder.blocks[i])[0].weight.abs().sum((0, 2, 3))[c:]
        up = _largest(weight_in, up_d.out_channels)
        up_d.weight.data.copy_(up_t.weight.data[idx][:, up])
        if up_d.bias is not None and up_t.bias is not None:
            up_d.bias.data.copy_(up_t.bias.data[up])
        idx = _slim_double_conv(
            student.decoder.blocks[i], teacher.decoder.blocks[i], torch.cat([skips[i], c + up])
        )
    head_s, head_t = cast(torch.nn.Conv2d, student.head), cast(torch.nn.Conv2d, teacher.head)
    _copy_conv(head_s, head_t, torch.arange(s["out_channels"]), idx)


class DistillModule(SegmentationModule):
    """A student UNet (``model``) trained on labels and on a frozen teacher's soft probabilities."""

    def __init__(
        self,
        model: dict[str, Any],
        teacher: str = "",
        weight: float = 1.0,
        temperature: float = 1.0,
        init: str = "teacher",
        **options: Any,
    ) -> None:
        """``options``: those of :class:`SegmentationModule` (lr, loss, channels_last, ...)."""
        from angioseg.train.checkpoint import load_model

        super().__init__(model, **options)
        channels_last = bool(self.hparams["channels_last"])
        net, _ = load_model(teacher)
        if init == "teacher":
            slim_init(self.model, net)
        elif init != "scratch":
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.teacher = net.eval()
        # Lightning warns about modules in eval mode at the start of fit: the frozen teacher's are, on purpose
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        if channels_last:
            set_memory_format(self.teacher, True)

    def train(self, mode: bool = True) -> DistillModule:
        super().train(mode)
        self.teacher.eval()  # frozen: its BatchNorm keeps its running statistics
        return self

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.teacher, x).float()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch["image"]
        n = len(x)
        if "u_weak" in batch:  # one forward pass for labeled and unlabeled frames
            x = torch.cat([x, batch["u_weak"]])
        logits = self(x).float()
        sup = self.loss(logits[:n], batch["mask"])
        kd = distill_loss(logits, self.teacher_logits(x), self.hparams["temperature"])
        self.log("train_loss", sup, prog_bar=True, on_step=False, on_epoch=True, batch_size=n)
        self.log("distill_loss", kd, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(x))
        return sup + self.hparams["weight"] * kd

    def configure_optimizers(self) -> Any:
        from angioseg.train.module import optimizer_with_schedule

        opt = torch.optim.Adam(
            self.model.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        return optimizer_with_schedule(self, opt)
