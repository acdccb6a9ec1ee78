"""The CUTS encoder: one embedding per pixel, from the patch centred on it, and a patch decoder.

CUTS (Liu, Amodio et al., "CUTS: A Fully Unsupervised Framework for Medical Image Segmentation",
arXiv:2209.11359) embeds every pixel with a small fully convolutional network that never
downsamples, so ``z[:, :, i, j]`` describes the patch centred on pixel ``(i, j)``. Defaults, all
from the authors' encoder (``src/model/CUTS_model.py`` in both public versions):

* four blocks ``Conv 5x5 (padding "same", replicate) -> BatchNorm -> LeakyReLU(0.01)`` with
  ``K, 2K, 4K, 8K`` channels, ``K = 16``: a 128-d embedding and a 17 x 17 receptive field;
* patch size ``P = 5``; the reconstruction head maps an anchor embedding back to its ``C x 5 x 5``
  patch: ``Linear(128 -> C*25)`` in the 2022 code, ``Linear -> LeakyReLU -> Linear`` in the
  MICCAI-2024 code (``recon_layers = 1 | 2``).

Written from the published description; no code of the seed repositories is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class EncoderConfig:
    """Architecture of :class:`CUTSModel` (stored in the checkpoint's ``model`` entry)."""

    in_channels: int = 1
    num_kernels: int = 16
    kernel_size: int = 5
    patch_size: int = 5
    recon_layers: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def latent_dim(self) -> int:
        return 8 * self.num_kernels


class CUTSEncoder(nn.Sequential):
    """``B x C x H x W -> B x 8K x H x W``: four same-size conv blocks, no downsampling."""

    def __init__(self, in_channels: int = 1, num_kernels: int = 16, kernel_size: int = 5) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd so that embeddings stay centred, got {kernel_size}")
        layers: list[nn.Module] = []
        cin = in_channels
        for mult in (1, 2, 4, 8):
            cout = num_kernels * mult
            layers += [
                nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, padding_mode="replicate"),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.01, inplace=True),
            ]
            cin = cout
        super().__init__(*layers)


class PatchRecon(nn.Module):
    """``N x D -> N x C x P x P``: decode an embedding into the patch centred on its pixel."""

    def __init__(self, latent_dim: int, in_channels: int, patch_size: int, layers: int = 1) -> None:
        super().__init__()
        if layers not in (1, 2):
            raise ValueError(f"recon_layers must be 1 (CUTS 2022) or 2 (CUTS 2024), got {layers}")
        out = in_channels * patch_size * patch_size
        self.shape = (in_channels, patch_size, patch_size)
        self.net: nn.Module = (
            nn.Linear(latent_dim, out)
            if layers == 1
            else nn.Sequential(nn.Linear(latent_dim, out), nn.LeakyReLU(0.01), nn.Linear(out, out))
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


class CUTSModel(nn.Module):
    """Encoder plus reconstruction head. ``forward(x)`` returns the embedding map ``B x D x H x W``."""

    def __init__(self, cfg: EncoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or EncoderConfig()
        c = self.cfg
        self.encoder = CUTSEncoder(c.in_channels, c.num_kernels, c.kernel_size)
        self.recon = PatchRecon(c.latent_dim, c.in_channels, c.patch_size, c.recon_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # type: ignore[no-any-return]

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()


def gather_embeddings(z: torch.Tensor, rc: torch.Tensor) -> torch.Tensor:
    """Embeddings at given pixels: ``z`` B x D x H x W, ``rc`` B x S x 2 (row, col) -> B x S x D."""
    b, d, _, w = z.shape
    flat = z.flatten(2)  # B x D x HW
    idx = (rc[..., 0] * w + rc[..., 1]).long()  # B x S
    return torch.gather(flat, 2, idx[:, None, :].expand(b, d, idx.shape[1])).transpose(1, 2)


def gather_patches(x: torch.Tensor, rc: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Patches centred on given pixels: ``x`` B x C x H x W, ``rc`` B x S x 2 -> B x S x C x P x P.

    Centres must lie at least ``P // 2`` from the border (the sampler guarantees it).
    """
    b, c, _, _ = x.shape
    r = patch_size // 2
    off = torch.arange(-r, r + 1, device=x.device)
    rows = rc[..., 0, None, None] + off[:, None]  # B x S x P x 1
    cols = rc[..., 1, None, None] + off[None, :]  # B x S x 1 x P
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    patches = x.permute(0, 2, 3, 1)[bi, rows, cols]  # B x S x P x P x C
    return patches.permute(0, 1, 4, 2, 3).reshape(b, rc.shape[1], c, patch_size, patch_size)
