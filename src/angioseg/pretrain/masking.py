"""Random patch masks, one per image, with an exact number of masked patches.

The CM-UNet authors drew a mask per image and then applied image 0's mask to the whole batch
(``UNet_encoder.py:156``); here every image keeps its own mask, in the input *and* in the loss.

Masks are drawn as in the MAE and SparK reference code: sort uniform noise per image and keep the
``round(L * (1 - ratio))`` patches with the smallest noise, so the number of masked patches is the
same for every image: ``L - round(L * (1 - ratio))``. This reproduces the counts of the seeds:
127 of 196 patches for CM-UNet (224 px, 16 px patches, ratio 0.65) and 154 of 256 for SparK
(256 px, ratio 0.6).
"""

from __future__ import annotations

import torch


def num_masked(num_patches: int, ratio: float) -> int:
    """Masked patches out of ``num_patches``: ``L - round(L * (1 - ratio))`` (SparK's ``len_keep`` rule)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    return num_patches - round(num_patches * (1.0 - ratio))


def patch_grid(size: tuple[int, int], patch: int) -> tuple[int, int]:
    """Patch-grid shape ``(H / patch, W / patch)``; the image side must be a multiple of ``patch``."""
    h, w = size
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the {patch}-pixel mask patch")
    return h // patch, w // patch


def random_patch_mask(
    batch: int,
    grid: tuple[int, int],
    ratio: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool ``B x gh x gw`` mask, True = masked, exactly :func:`num_masked` True per image.

    Each image gets its own mask: argsort of i.i.d. uniform noise (MAE's ``random_masking``).
    """
    gh, gw = grid
    n = gh * gw
    k = num_masked(n, ratio)
    noise = torch.rand(batch, n, generator=generator)
    order = noise.argsort(dim=1)
    mask = torch.zeros(batch, n, dtype=torch.bool)
    mask.scatter_(1, order[:, n - k :], True)
    return mask.view(batch, gh, gw).to(device)


def upsample_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """``B x gh x gw`` (bool) -> ``B x 1 x gh*factor x gw*factor`` by repeating each cell (same dtype)."""
    return mask[:, None].repeat_interleave(factor, 2).repeat_interleave(factor, 3)


def random_pixel_mask(x: torch.Tensor, patch: int, ratio: float) -> torch.Tensor:
    """Per-image mask for images ``x`` (``B x C x H x W``): ``B x 1 x H x W`` in ``x``'s dtype, 1 = masked."""
    grid = patch_grid((x.shape[-2], x.shape[-1]), patch)
    return upsample_mask(random_patch_mask(x.shape[0], grid, ratio, x.device), patch).to(x.dtype)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``B x C x H x W`` -> ``B x L x (C * patch^2)`` with ``L = (H / patch) * (W / patch)``, row-major patches."""
    b, c, h, w = x.shape
    gh, gw = patch_grid((h, w), patch)
    x = x.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, gh * gw, patch * patch * c)


def unpatchify(x: torch.Tensor, patch: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``B x L x (C * patch^2)`` -> ``B x C x H x W``."""
    b, _, d = x.shape
    gh, gw = patch_grid(size, patch)
    c = d // (patch * patch)
    x = x.reshape(b, gh, gw, patch, patch, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, gh * patch, gw * patch)
