"""Random image transforms for the pretraining views (torch, one ``C x H x W`` image at a time).

Written here rather than taken from MONAI because MONAI has no torchvision-style
``RandomResizedCrop`` (area *and* aspect-ratio sampling) and no noise relative to the image
maximum (the seeds' ``GaussNoise`` with ``sigma = max / 10``); flips, rotation and blur are a few
lines each and then share one random stream. All randomness comes from the global torch RNG, so
:func:`angioseg.utils.seed_everything` (and Lightning's worker seeding) makes views reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def randint(lo: int, hi: int) -> int:
    """Uniform integer in ``[lo, hi]`` (both inclusive)."""
    return int(torch.randint(lo, hi + 1, ()))


def chance(p: float) -> bool:
    return p > 0 and float(torch.rand(())) < p


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic (antialiased when shrinking) resize of ``C x h x w`` to ``C x size``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x[None], size=size, mode="bicubic", align_corners=False, antialias=shrink)[0]


def crop_box(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box ``(top, left, height, width)``: area fraction ~ U(scale),
    log aspect ratio ~ U(log ratio); 10 tries, then the centre crop with the nearest valid ratio."""
    area = h * w
    for _ in range(10):
        target = area * uniform(*scale)
        aspect = math.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return randint(0, h - ch), randint(0, w - cw), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """``C x H x W`` -> ``C x size x size``: a random crop (see :func:`crop_box`) resized bicubically."""
    top, left, ch, cw = crop_box(x.shape[-2], x.shape[-1], scale, ratio)
    return resize(x[:, top : top + ch, left : left + cw], (size, size))


def random_flip(x: torch.Tensor, p: float = 0.5, dim: int = -1) -> torch.Tensor:
    """Flip along ``dim`` (-1 horizontal, -2 vertical) with probability ``p``."""
    return x.flip(dim) if chance(p) else x


def random_rotate(x: torch.Tensor, degrees: float = 180.0, p: float = 0.5) -> torch.Tensor:
    """With probability ``p`` rotate by U(-degrees, degrees) about the centre (bilinear, zero fill)."""
    if not chance(p):
        return x
    a = math.radians(uniform(-degrees, degrees))
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta[None], [1, *x.shape], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-(r**2) / (2 * sigma**2))
    return k / k.sum()


def random_blur(
    x: torch.Tensor,
    sigma: tuple[float, float] = (0.1, 2.0),
    sizes: tuple[int, ...] = (5, 7, 9),
    p: float = 0.5,
) -> torch.Tensor:
    """With probability ``p`` a Gaussian blur, sigma ~ U(sigma), odd kernel size drawn from ``sizes``
    (the MoCo seed: kernel 5-9, sigma 0.1-2); separable, reflect padding."""
    if not chance(p):
        return x
    size = sizes[randint(0, len(sizes) - 1)]
    k = gaussian_kernel(uniform(*sigma), size).to(x)
    c = x.shape[0]
    y = F.pad(x[None], (size // 2,) * 4, mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, size), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, size, 1), groups=c)
    return y[0]


def relative_noise(x: torch.Tensor, p: float = 1.0, fraction: float = 0.1) -> torch.Tensor:
    """With probability ``p`` add N(0, (fraction * max(x))^2) noise (the seeds' ``GaussNoise``, max/10)."""
    if not chance(p):
        return x
    sigma = fraction * float(x.max().clamp_min(0))
    return x + sigma * torch.randn_like(x)
