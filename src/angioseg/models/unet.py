"""The UNet of the CM-UNet paper, for 2D and 3D.

Written here rather than taken from MONAI because the paper's network is a specific plain UNet
(DoubleConv = [conv3 -> BN -> ReLU] x 2, max-pool down, transposed-conv up, concatenated skips,
1x1 head; widths 64-128-256-512 and a 1024 bottleneck, 31.04 M parameters) that none of MONAI's
UNets reproduces, and because the self-supervised methods need the encoder and the decoder as
separately addressable modules (``unet.encoder``, ``unet.decoder``, ``unet.head``) whose state-dict
keys are stable across methods.

The CoronarySegmentation variant (LeakyReLU, dropout in the encoder) is available through ``act``
and ``dropout``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from angioseg.models.vesselness import Vesselness

M = TypeVar("M", bound=nn.Module)

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONVT = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BN = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_DROP = {2: nn.Dropout2d, 3: nn.Dropout3d}


def _act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leakyrelu":
        return nn.LeakyReLU(0.01, inplace=True)
    raise ValueError(f"unknown activation {name!r}; expected 'relu' or 'leakyrelu'")


class DoubleConv(nn.Sequential):
    """[Conv3 -> BN -> act] x 2, with optional dropout between the two (CoronarySegmentation)."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, act: str = "relu", dropout: float = 0.0):
        layers: list[nn.Module] = [
            _CONV[spatial_dims](cin, cout, 3, padding=1),
            _BN[spatial_dims](cout),
            _act(act),
        ]
        if dropout > 0:
            layers.append(_DROP[spatial_dims](dropout))
        layers += [_CONV[spatial_dims](cout, cout, 3, padding=1), _BN[spatial_dims](cout), _act(act)]
        super().__init__(*layers)


class UNetEncoder(nn.Module):
    """Contracting path. ``forward(x)`` returns ``depth + 1`` feature maps, finest first.

    Shapes (2D, width w, input B x C x H x W): ``[B x w x H x W, B x 2w x H/2 x W/2, ...,
    B x w*2^depth x H/2^depth x W/2^depth]``; the last one is the bottleneck.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        width: int = 64,
        depth: int = 4,
        act: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.channels = [width * 2**i for i in range(depth + 1)]
        chans = [in_channels, *self.channels]
        self.stages = nn.ModuleList(
            DoubleConv(spatial_dims, chans[i], chans[i + 1], act, dropout) for i in range(depth + 1)
        )
        self.pool = _POOL[spatial_dims](2)

    @property
    def downsample(self) -> int:
        """Total downsampling factor between the input and the bottleneck (16 for depth 4)."""
        return int(2 ** (len(self.stages) - 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.pool(x)
            x = stage(x)
            feats.append(x)
        return feats


class UNetDecoder(nn.Module):
    """Expanding path: ``forward(feats)`` takes the encoder's list and returns B x width x H x W."""

    def __init__(self, spatial_dims: int = 2, width: int = 64, depth: int = 4, act: str = "relu") -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        # ups[i] brings level i+1 to level i; blocks[i] fuses it with the level-i skip.
        self.ups = nn.ModuleList(
            _CONVT[spatial_dims](chans[i + 1], chans[i], 2, stride=2) for i in range(depth)
        )
        self.blocks = nn.ModuleList(
            DoubleConv(spatial_dims, 2 * chans[i], chans[i], act) for i in range(depth)
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for i in reversed(range(len(self.ups))):
            x = self.ups[i](x)
            x = self.blocks[i](torch.cat([feats[i], x], dim=1))
        return x


class UNet(nn.Module):
    """Plain UNet: ``encoder`` -> ``decoder`` -> 1x1 ``head``.

    Args:
        spatial_dims: 2 for images, 3 for volumes.
        in_channels: input channels (1 for angiograms; 2 with a centerline channel).
        out_channels: classes of the softmax output (2 = background, vessel).
        width: channels of the first level; 64 is the paper's network (31.04 M parameters).
        depth: number of poolings (4 in the paper: a 16x downsample).
        act: ``"relu"`` (CM-UNet) or ``"leakyrelu"`` (CoronarySegmentation).
        dropout: dropout inside the encoder blocks (CoronarySegmentation uses 0.05).
        vesselness: scales (pixels) of a vesselness channel computed from the first input channel
            inside the network and given to the encoder beside the input (2D only;
            :mod:`angioseg.models.vesselness`); ``None``: no such channel.

    Inputs whose size is not a multiple of ``2**depth`` are zero-padded and the output cropped back.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        width: int = 64,
        depth: int = 4,
        act: str = "relu",
        dropout: float = 0.0,
        vesselness: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if vesselness is not None and spatial_dims != 2:
            raise ValueError("the vesselness channel is 2D only")
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be positive, got width={width}, depth={depth}")
        self._config = dict(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            width=width,
            depth=depth,
            act=act,
            dropout=dropout,
        )
        self.vesselness: Vesselness | None = None
        if vesselness is not None:  # only then in the config: older configs rebuild unchanged
            self.vesselness = Vesselness(vesselness)
            self._config["vesselness"] = list(self.vesselness.sigmas)
        extra = 0 if self.vesselness is None else 1
        self.encoder = UNetEncoder(spatial_dims, in_channels + extra, width, depth, act, dropout)
        self.decoder = UNetDecoder(spatial_dims, width, depth, act)
        self.head = _CONV[spatial_dims](width, out_channels, 1)

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this network (stored beside every checkpoint)."""
        return dict(self._config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder + decoder: B x C x spatial -> B x width x spatial (no head)."""
        size = x.shape[2:]
        m = self.encoder.downsample
        pad: list[int] = []
        for s in reversed(size):
            pad += [0, (-s) % m]
        if self.vesselness is not None:  # on the image itself, before any padding
            x = torch.cat([x, self.vesselness(x[:, :1]).to(x.dtype)], dim=1)
        if any(pad):
            x = F.pad(x, pad)
        y = self.decoder(self.encoder(x))
        if any(pad):
            y = y[(..., *[slice(0, s) for s in size])]
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x in_channels x spatial -> B x out_channels x spatial logits."""
        return self.head(self.forward_features(x))


def build_model(config: dict[str, Any]) -> UNet:
    """Rebuild a UNet from :meth:`UNet.config` output (unknown keys are an error)."""
    allowed = {
        "spatial_dims",
        "in_channels",
        "out_channels",
        "width",
        "depth",
        "act",
        "dropout",
        "vesselness",
    }
    extra = set(config) - allowed
    if extra:
        raise ValueError(f"unknown UNet config keys {sorted(extra)}; expected a subset of {sorted(allowed)}")
    return UNet(**config)


def set_memory_format(model: M, channels_last: bool) -> M:
    """Move 4D weights to channels_last (or back); faster convolutions on CPU with bf16."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(memory_format=fmt)  # type: ignore[call-overload,no-any-return]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
