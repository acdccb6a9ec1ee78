"""Projection and prediction MLPs of the contrastive methods."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, norm: bool = True, last_bias: bool = False) -> nn.Sequential:
    """``Linear(in, hidden) -> [BN] -> ReLU -> Linear(hidden, out)``.

    With ``norm=True, last_bias=False`` this is mmselfsup's ``NonLinearNeck`` as CMAE (and CM-UNet)
    configure their projector and predictor (no BN after the last layer). MoCo v2's head is
    ``norm=False, last_bias=True``.
    """
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden)]
    if norm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden, out_dim, bias=last_bias)]
    return nn.Sequential(*layers)
