"""Focal + Dice loss (seed weights, bug fixed) and the optimiser's parameter groups."""

from __future__ import annotations

import math

import pytest
import torch

from angioseg.cta.losses import FocalDiceLoss, focal_loss, seed_class_weights
from angioseg.cta.module import CTAModule, param_groups
from angioseg.models.unet import UNet


def test_focal_of_uniform_logits_is_half_ln2_whatever_the_class_weights() -> None:
    logits = torch.zeros(2, 2, 4, 4)
    target = torch.randint(0, 2, (2, 1, 4, 4))
    expected = 0.5 * math.log(2)  # (1 - pt) * ce with pt = 1/2, ce = ln 2; alpha / mean(alpha) averages to 1
    assert focal_loss(logits, target).item() == pytest.approx(expected)
    assert focal_loss(logits, target, torch.tensor([0.0056, 0.9944])).item() == pytest.approx(expected)


def test_dice_term_is_per_sample_vessel_dice_and_works_at_batch_size_1() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 5, 6, 7)
    target = (torch.rand(3, 1, 5, 6, 7) > 0.7).long()
    loss = FocalDiceLoss(focal_weight=0.0, dice_weight=1.0)
    p = logits.softmax(1)[:, 1]
    g = target[:, 0].float()
    dice = (2 * (p * g).flatten(1).sum(1) + 1e-6) / ((p**2).flatten(1).sum(1) + g.flatten(1).sum(1) + 1e-6)
    assert loss(logits, target).item() == pytest.approx(1 - dice.mean().item(), rel=1e-5)
    # the seed's dice[1] raised IndexError with one image per batch
    assert torch.isfinite(loss(logits[:1], target[:1]))


def test_seed_weights_and_gradient() -> None:
    assert seed_class_weights(128) == (0.0056, 0.9944)
    assert seed_class_weights(100) == (0.0056, 0.9944)  # nearest of 64 / 128 / 256
    loss = FocalDiceLoss()
    assert (loss.focal_weight, loss.dice_weight) == (0.5, 0.425)
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    target = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    target[:, :, 2:5, 3] = 1
    loss(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    perfect = torch.where(torch.cat([1 - target, target], 1).bool(), 20.0, -20.0)
    assert loss(perfect, target).item() < 1e-6


def test_no_weight_decay_on_batchnorm_parameters() -> None:
    model = UNet(3, 2, 2, width=2, depth=2, act="leakyrelu", dropout=0.05)
    decay, no_decay = param_groups(model, 0.05)
    n_bn = sum(
        p.numel()
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.BatchNorm3d)
        for p in m.parameters()
    )
    assert sum(p.numel() for p in no_decay["params"]) == n_bn > 0
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_module_keeps_its_hyperparameters_and_uses_adamw() -> None:
    cfg = UNet(2, 2, 2, width=2, depth=2, act="leakyrelu").config()
    module = CTAModule(cfg, lr=1e-3, focal_weight=0.3, class_weights=(0.1, 0.9))
    assert module.hparams["focal_weight"] == 0.3 and module.hparams["lr"] == 1e-3
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999)
    batch = {"image": torch.randn(2, 2, 16, 16), "mask": torch.zeros(2, 1, 16, 16, dtype=torch.long)}
    assert torch.isfinite(module.loss(module(batch["image"]), batch["mask"]))
