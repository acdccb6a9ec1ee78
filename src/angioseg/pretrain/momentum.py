"""Momentum (EMA) targets for CM-UNet (CMAE) and MoCo v2.

``theta_target <- m * theta_target + (1 - m) * theta_online`` after every optimisation step, on
parameters only: the target networks run in training mode, so their BatchNorm statistics come
from their own forward passes, as in MoCo and in mmselfsup's ``MomentumUpdateHook``.

The momentum follows mmselfsup's cosine rule ``m_k = end - (end - base) * (cos(pi k / K) + 1) / 2``;
CM-UNet sets base = end = 0.996 (a constant), MoCo v2 uses a constant 0.999.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_copy(online: nn.Module) -> nn.Module:
    """A frozen deep copy of ``online`` (the initial target: same weights, no gradients)."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """In place: every target parameter becomes ``m * target + (1 - m) * online``."""
    for t, s in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(m).add_(s.detach().to(t.dtype), alpha=1.0 - m)


def cosine_momentum(base: float, end: float, progress: float) -> float:
    """Momentum at ``progress`` = k / K in [0, 1]: ``end - (end - base) * (cos(pi * progress) + 1) / 2``."""
    progress = min(max(progress, 0.0), 1.0)
    return end - (end - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
