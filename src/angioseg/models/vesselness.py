"""A vesselness input channel computed inside the network (``finetune --vesselness``).

Dark tubes on a brighter background, the coronary arteries of an X-ray angiogram, have one large
positive eigenvalue of the image's Hessian across the vessel and a small one along it. At each
scale ``s`` (Gaussian derivatives, scale-normalised by ``s**2``) the response is ``relu(l2 - |l1|)``
(``l2`` the larger eigenvalue: a ridge measure in the spirit of Sato's and Frangi's filters, which
stays low on blobs and edges); the channel is its maximum over the scales, divided by its standard
deviation over the image so that its range does not depend on the image's contrast.

Being a fixed (non-learned) layer of the network, the channel is computed wherever the network
runs: training on augmented images, ``segment``, the ONNX / OpenVINO engines and cine inference,
with nothing to change in the pipelines. It is computed in float32 even under bf16 autocast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SIGMAS = (1.0, 2.0, 3.0)  # pixels at the network's resolution (256²: vessels 2-10 px wide)
SIGMAS_AT = 256  # the input size DEFAULT_SIGMAS are meant for


def sigmas_for(image_size: int | None) -> tuple[float, ...]:
    """:data:`DEFAULT_SIGMAS` scaled to a network input of ``image_size`` pixels (vessels are as many
    pixels wider at a finer grid); unscaled where frames keep their own size (``None``)."""
    if image_size is None:
        return DEFAULT_SIGMAS
    return tuple(round(s * image_size / SIGMAS_AT, 3) for s in DEFAULT_SIGMAS)


def _kernels(sigma: float) -> torch.Tensor:
    """1D Gaussian, first and second derivative kernels (3 x K), K = 2 * ceil(3 sigma) + 1."""
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    d1 = -x / sigma**2 * g
    d2 = (x**2 / sigma**4 - 1 / sigma**2) * g
    d2 = d2 - d2.mean()  # the truncated kernel must not respond to a constant offset
    return torch.stack([g, d1, d2]).float()


class Vesselness(nn.Module):
    """``B x 1 x H x W`` image -> ``B x 1 x H x W`` multi-scale ridge (dark vessel) response."""

    def __init__(self, sigmas: Sequence[float] = DEFAULT_SIGMAS) -> None:
        super().__init__()
        if not sigmas or any(s <= 0 for s in sigmas):
            raise ValueError(f"vesselness scales must be positive, got {list(sigmas)}")
        self.sigmas = tuple(float(s) for s in sigmas)
        for i, s in enumerate(self.sigmas):
            self.register_buffer(f"k{i}", _kernels(s), persistent=False)

    def _sep(self, x: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
        r = kx.numel() // 2
        x = F.pad(x, (r, r, r, r), mode="reflect")
        x = F.conv2d(x, ky.view(1, 1, -1, 1))
        return F.conv2d(x, kx.view(1, 1, 1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float().contiguous()
            best = None
            for i, s in enumerate(self.sigmas):
                g, d1, d2 = getattr(self, f"k{i}").float()  # also in a bf16/half model
                if min(x.shape[-2:]) <= g.numel() // 2:  # reflect padding needs a larger image
                    continue
                hxx = self._sep(x, g, d2) * s**2
                hyy = self._sep(x, d2, g) * s**2
                hxy = self._sep(x, d1, d1) * s**2
                half = (hxx + hyy) / 2
                root = torch.sqrt(((hxx - hyy) / 2) ** 2 + hxy**2 + 1e-12)
                l2, l1 = half + root, half - root
                v = F.relu(l2 - l1.abs())
                best = v if best is None else torch.maximum(best, v)
            if best is None:
                return torch.zeros_like(x)
            scale = best.flatten(1).std(dim=1).clamp_min(1e-6)
            return best / scale.view(-1, 1, 1, 1)


__all__ = ["DEFAULT_SIGMAS", "SIGMAS_AT", "Vesselness", "sigmas_for"]
