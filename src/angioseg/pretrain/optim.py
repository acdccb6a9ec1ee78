"""Optimisers and schedules of the pretraining methods, as one declarative :class:`OptimSpec`.

Each method declares the recipe of its seed code (CMAE/CM-UNet: AdamW, linear warm-up then cosine;
Models Genesis and the authors' MAE: SGD with StepLR; SparK: LAMB with a cosine weight-decay
schedule; MoCo v2: SGD with cosine); :func:`build_optimizer` turns it into a PyTorch optimiser
and a per-step ``LambdaLR``, so the Lightning module needs no method-specific code.

LAMB is written here because PyTorch has none (and timm cannot be installed beside the pinned
torch); it follows You et al., "Large Batch Optimization for Deep Learning: Training BERT in
76 minutes" (ICLR 2020), Algorithm 2, with the layer-wise trust ratio applied, as in timm, only to
parameters that have weight decay.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adamw", "sgd", "lamb")
SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class OptimSpec:
    """An optimiser recipe. ``lr`` is per 256 images when ``scale_lr`` (lr = lr * batch / 256)."""

    name: str = "adamw"
    lr: float = 1e-3
    scale_lr: bool = False
    weight_decay: float = 0.0
    weight_decay_end: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_fraction: float = 0.0
    warmup_start: float = 1e-4
    step_epochs: int = 40
    step_gamma: float = 0.5
    grad_clip: float | None = None

    def with_overrides(self, overrides: dict[str, Any]) -> OptimSpec:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown optimiser option(s) {unknown}; expected some of {sorted(known)}")
        fixed: dict[str, Any] = {k: tuple(v) if k == "betas" else v for k, v in overrides.items()}
        spec = dataclasses.replace(self, **fixed)
        if spec.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimiser {spec.name!r}; expected one of {OPTIMIZERS}")
        if spec.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {spec.schedule!r}; expected one of {SCHEDULES}")
        return spec

    def peak_lr(self, batch_size: int) -> float:
        return self.lr * batch_size / 256 if self.scale_lr else self.lr


class Lamb(torch.optim.Optimizer):
    """LAMB: Adam moments (bias-corrected), update ``r = m / (sqrt(v) + eps) + wd * theta``, step
    ``theta -= lr * trust * r`` with ``trust = ||theta|| / ||r||`` (1 when either norm is 0 or wd is 0)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["m"], state["v"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                r = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])
                trust = 1.0
                if group["weight_decay"] > 0:
                    r = r.add(p, alpha=group["weight_decay"])
                    w_norm, r_norm = float(p.norm()), float(r.norm())
                    if w_norm > 0 and r_norm > 0:
                        trust = w_norm / r_norm
                p.add_(r, alpha=-group["lr"] * trust)
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: decay for weight matrices/kernels; none for biases, norm weights and mask tokens."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or "mask_token" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "decay": True}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "decay": False})
    return groups


# The CM-UNet authors' ``Transformation_based`` script (their Models Genesis and "MAE" baselines):
# SGD lr 1e-2 (the original Models Genesis used 1), momentum 0.9, StepLR halving every 40 epochs.
GENESIS_SGD = OptimSpec(name="sgd", lr=1e-2, momentum=0.9, schedule="step", step_epochs=40, step_gamma=0.5)


def lr_factor(spec: OptimSpec, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at optimisation ``step`` (0-based) of ``total_steps``.

    Linear warm-up from ``warmup_start`` over ``warmup_fraction`` of the run (CMAE: 40 of 300
    epochs, from 1e-4), then cosine to 0, StepLR (``step_gamma`` every ``step_epochs``) or constant.
    """
    warm = round(spec.warmup_fraction * total_steps)
    if step < warm:
        return spec.warmup_start + (1.0 - spec.warmup_start) * step / warm
    if spec.schedule == "cosine":
        span = max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, span) / span))
    if spec.schedule == "step":
        return float(spec.step_gamma ** ((step // max(1, steps_per_epoch)) // spec.step_epochs))
    return 1.0


def weight_decay_at(spec: OptimSpec, progress: float) -> float:
    """SparK's cosine weight-decay schedule from ``weight_decay`` to ``weight_decay_end``."""
    if spec.weight_decay_end is None:
        return spec.weight_decay
    progress = min(max(progress, 0.0), 1.0)
    return spec.weight_decay_end + (spec.weight_decay - spec.weight_decay_end) * 0.5 * (
        1.0 + math.cos(math.pi * progress)
    )


def build_optimizer(model: nn.Module, spec: OptimSpec, lr: float) -> torch.optim.Optimizer:
    """The optimiser of ``spec`` over ``model``'s trainable parameters at peak learning rate ``lr``."""
    groups = param_groups(model, spec.weight_decay)
    if spec.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=spec.betas)
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=spec.momentum)
    return Lamb(groups, lr=lr, betas=spec.betas)
